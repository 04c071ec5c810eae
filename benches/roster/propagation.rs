//! The controllers against a real application (scim2-server): how long a
//! SCIM change takes to reach it, and what a full resync of unchanged,
//! already-synced users costs after a restart.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use roster::api::{
    ApplicationKind, ApplicationSpec, DeprovisionAction, ProvisioningPolicy, ScimConnector,
    SecretKeyRef, User, UserSpec,
};
use serde_json::{Value, json};

use crate::common::{Roster, Sample, namespace, patch_op, round, run, scim_policy, secret};

const NS: &str = "bench-prop";
const APP_TOKEN: &str = "bench-app-token";
/// How often the application is polled while waiting for a change.
const POLL: Duration = Duration::from_millis(10);

/// scim2-server on a free port, killed when dropped.
pub struct App {
    child: Child,
    pub base: String,
}

impl App {
    pub async fn start(http: &reqwest::Client) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let venv = std::env::var_os("HOME")
            .map(|h| std::path::Path::new(&h).join(".cache/roster/venv/bin/scim2-server"))
            .filter(|p| p.exists());
        let child = Command::new(venv.unwrap_or_else(|| "scim2-server".into()))
            .args(["--port", &port.to_string(), "--bearer-token", APP_TOKEN])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("scim2-server (make deps installs it)");
        let app = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if app.get(http, "/ServiceProviderConfig").await.is_some() {
                return app;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("scim2-server did not start");
    }

    async fn get(&self, http: &reqwest::Client, path: &str) -> Option<Value> {
        let reply = http
            .get(format!("{}{path}", self.base))
            .bearer_auth(APP_TOKEN)
            .send()
            .await
            .ok()?;
        if !reply.status().is_success() {
            return None;
        }
        reply.json().await.ok()
    }

    /// Polls `path` until `done` holds for its body; returns how long that took.
    async fn until(
        &self,
        http: &reqwest::Client,
        path: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Duration {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if self.get(http, path).await.is_some_and(|body| done(&body)) {
                return started.elapsed();
            }
            tokio::time::sleep(POLL).await;
        }
        panic!("the application did not reflect the change at {path} within 60 s");
    }

    /// The application's id of the user with `user_name`, once it has one.
    async fn user_id(&self, http: &reqwest::Client, user_name: &str) -> (String, Duration) {
        let path = format!("/Users?filter=userName%20eq%20%22{user_name}%22");
        let waited = self
            .until(http, &path, |b| b["totalResults"].as_u64().unwrap_or(0) > 0)
            .await;
        let body = self.get(http, &path).await.unwrap();
        (
            body["Resources"][0]["id"].as_str().unwrap().to_owned(),
            waited,
        )
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench policy, provisioning into `app`.
pub async fn setup(client: &kube::Client, app: &App) {
    namespace(client, NS).await;
    secret(client, NS, "app-token", "token", APP_TOKEN).await;
    let application = ApplicationSpec {
        kind: ApplicationKind::Scim,
        scim: Some(ScimConnector {
            base_url: app.base.clone(),
            token_secret_ref: SecretKeyRef {
                name: "app-token".into(),
                key: "token".into(),
            },
        }),
        webhook: None,
        postgres: None,
        argocd_rbac: None,
        deprovision: DeprovisionAction::Disable,
        delete_after_seconds: 86_400,
        dry_run: false,
    };
    scim_policy(client, NS, "prop", application).await;
}

async fn scim(
    http: &reqwest::Client,
    roster: &Roster,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    crate::common::scim_call(
        http,
        &format!("{}/scim/{NS}/prop/v2", roster.base),
        method,
        path,
        body,
    )
    .await
}

/// One change at a time (steady state, empty queues), `n` of each kind.
pub async fn propagation(
    client: &kube::Client,
    http: &reqwest::Client,
    roster: &Roster,
    app: &App,
    n: usize,
) -> Value {
    let group = scim(
        http,
        roster,
        reqwest::Method::POST,
        "/Groups",
        json!({"displayName": "propagation"}),
    )
    .await;
    let group_id = group["id"].as_str().unwrap().to_owned();
    let (remote_group, _) = {
        let path = "/Groups?filter=displayName%20eq%20%22propagation%22";
        app.until(http, path, |b| b["totalResults"].as_u64().unwrap_or(0) > 0)
            .await;
        let body = app.get(http, path).await.unwrap();
        (body["Resources"][0]["id"].as_str().unwrap().to_owned(), ())
    };
    let guarded = user_cycles(http, roster, app, (&group_id, &remote_group), "prop", n).await;
    // The same cycles with the circuit breaker off: the breaker's cost is
    // the difference between the two deactivation rows of one run.
    let off = json!({"spec": {"circuitBreaker": {"enabled": false}}});
    Api::<ProvisioningPolicy>::namespaced(client.clone(), NS)
        .patch("prop", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .expect("turning the breaker off");
    let unguarded = user_cycles(http, roster, app, (&group_id, &remote_group), "off", n).await;
    let (created, joined, deactivated) = &guarded;
    let unguarded = &unguarded.2;
    let kinds = [
        ("create", created),
        ("membership change", joined),
        ("deactivate", deactivated),
        ("deactivate, circuit breaker off", unguarded),
    ];
    for (kind, sample) in kinds {
        println!(
            "propagation of {kind}: p50 {:.0} ms p99 {:.0} ms",
            sample.percentile(0.5),
            sample.percentile(0.99)
        );
    }
    let behind = deactivation_behind_burst(http, roster, app).await;
    json!({
        "changes_per_kind": n,
        "poll_interval_ms": POLL.as_millis(),
        "kinds": kinds.iter().map(|(kind, s)| json!({"kind": kind, "p50_ms": round(s.percentile(0.5), 0), "p99_ms": round(s.percentile(0.99), 0)})).collect::<Vec<_>>(),
        "deactivation_behind_burst": behind,
        "target_p99_ms": 1000,
        "deactivation_priority": true,
    })
}

/// `n` users, one at a time: each created, added to the group
/// (`(id, remote id)`) and deactivated over SCIM; the time each change
/// took to reach the application.
async fn user_cycles(
    http: &reqwest::Client,
    roster: &Roster,
    app: &App,
    (group_id, remote_group): (&str, &str),
    prefix: &str,
    n: usize,
) -> (Sample, Sample, Sample) {
    let (mut created, mut joined, mut deactivated) =
        (Sample::default(), Sample::default(), Sample::default());
    for i in 0..n {
        let user_name = format!("{prefix}{i}@example.com");
        let t = Instant::now();
        let user = scim(
            http,
            roster,
            reqwest::Method::POST,
            "/Users",
            json!({"userName": user_name, "active": true}),
        )
        .await;
        let (remote, _) = app.user_id(http, &user_name).await;
        created.latencies.push(t.elapsed());
        let id = user["id"].as_str().unwrap().to_owned();

        let t = Instant::now();
        scim(
            http,
            roster,
            reqwest::Method::PATCH,
            &format!("/Groups/{group_id}"),
            patch_op("add", "members", json!([{"value": id}])),
        )
        .await;
        app.until(http, &format!("/Groups/{remote_group}"), |b| {
            b["members"]
                .as_array()
                .is_some_and(|ms| ms.iter().any(|m| m["value"] == remote.as_str()))
        })
        .await;
        joined.latencies.push(t.elapsed());

        deactivated
            .latencies
            .push(deactivate(http, roster, app, &id, &remote).await);
    }
    (created, joined, deactivated)
}

/// A deactivation sent right after a burst of creates: with the reserved
/// lane it does not wait behind the queued creates.
async fn deactivation_behind_burst(http: &reqwest::Client, roster: &Roster, app: &App) -> Value {
    const BURST: usize = 200;
    let user = scim(
        http,
        roster,
        reqwest::Method::POST,
        "/Users",
        json!({"userName": "leaver@example.com", "active": true}),
    )
    .await;
    let (remote, _) = app.user_id(http, "leaver@example.com").await;
    let id = user["id"].as_str().unwrap().to_owned();
    run(BURST, 16, |i| async move {
        scim(
            http,
            roster,
            reqwest::Method::POST,
            "/Users",
            json!({"userName": format!("burst{i}@example.com")}),
        )
        .await;
    })
    .await;
    let waited = deactivate(http, roster, app, &id, &remote).await;
    println!("deactivation right after {BURST} creates: {waited:.0?}");
    json!({"burst_creates": BURST, "deactivation_ms": round(waited.as_secs_f64() * 1000.0, 0)})
}

/// Deactivates user `id` over SCIM; the time until the application's
/// account `remote` shows it.
async fn deactivate(
    http: &reqwest::Client,
    roster: &Roster,
    app: &App,
    id: &str,
    remote: &str,
) -> Duration {
    let t = Instant::now();
    scim(
        http,
        roster,
        reqwest::Method::PATCH,
        &format!("/Users/{id}"),
        patch_op("replace", "active", json!(false)),
    )
    .await;
    app.until(http, &format!("/Users/{remote}"), |b| b["active"] == false)
        .await;
    t.elapsed()
}

/// Users of the bench namespace whose account is synced at their generation.
async fn synced(users: &Api<User>) -> (usize, usize) {
    let list = users
        .list(&ListParams::default())
        .await
        .expect("listing users");
    let total = list.items.len();
    let done = list
        .items
        .iter()
        .filter(|u| {
            let account = u.status.as_ref().and_then(|s| s.account.as_ref());
            account.and_then(|a| a.synced_generation) == u.metadata.generation
        })
        .count();
    (done, total)
}

/// Provisions `n` users (created straight through the API), then restarts
/// Roster and measures its resync of them all.
pub async fn resync(
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    http: &reqwest::Client,
    roster: Roster,
    app: &App,
    n: usize,
) -> Value {
    let users: Api<User> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    // Provisioned the way the controller leaves them, but written directly:
    // the controller's own provisioning of 10,000 users into scim2-server
    // takes over 15 minutes here, as scim2-server's lookups and uniqueness
    // checks scan every user (quadratic overall).
    let conditions = crate::memory::conditions("the account matches the spec");
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    run(n, 16, |i| {
        let users = users.clone();
        let conditions = conditions.clone();
        let now = now.clone();
        async move {
            let user_name = format!("resync{i}@example.com");
            let reply: Value = http
                .post(format!("{}/Users", app.base))
                .bearer_auth(APP_TOKEN)
                .header("Content-Type", "application/scim+json")
                .body(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name, "active": true}).to_string())
                .send()
                .await
                .expect("scim2-server answers")
                .json()
                .await
                .expect("a created user");
            let remote = reply["id"].as_str().expect("an application id").to_owned();
            let name = format!("resync-{i:06}");
            let mut user = User::new(
                &name,
                UserSpec {
                    policy: "prop".into(),
                    user_name,
                    active: Some(true),
                    ..Default::default()
                },
            );
            user.metadata.finalizers = Some(vec![roster::controller::FINALIZER.to_owned()]);
            users.create(&PostParams::default(), &user).await.expect("creating a user");
            let status = json!({"status": {
                "source": "Manual",
                "account": {"remoteId": remote, "state": "Active", "syncedGeneration": 1, "lastSync": now},
                "conditions": conditions,
            }});
            users
                .patch_status(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status))
                .await
                .expect("a user's status");
        }
    })
    .await;
    // Every user, those of the propagation section too, synced before the restart.
    while synced(&users).await.0 < synced(&users).await.1
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let initial = started.elapsed();
    let total = synced(&users).await.1;
    println!("resync: {total} users provisioned in {initial:.0?}; restarting roster");
    drop(roster);
    let started = Instant::now();
    let roster = Roster::start(kubeconfig, Some(NS));
    roster.ready(http, Duration::from_secs(120)).await;
    let reconciles = loop {
        let count = roster
            .metric(http, "roster_reconciles_total", &[("kind", "User")])
            .await;
        if count >= total as f64 || started.elapsed() > Duration::from_secs(600) {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed();
    // Late writes would show a moment later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = roster
        .metric(http, "roster_downstream_calls_total", &[])
        .await;
    let mut writes = 0.0;
    for op in [
        "create_user",
        "update_user",
        "disable_user",
        "delete_user",
        "create_group",
        "update_group",
        "delete_group",
        "change_members",
    ] {
        writes += roster
            .metric(http, "roster_downstream_calls_total", &[("operation", op)])
            .await;
    }
    let (still_synced, _) = synced(&users).await;
    println!(
        "resync of {total} users: {wall:.1?}, {reconciles} reconciles, {calls} downstream calls of which {writes} writes; {still_synced} synced"
    );
    json!({
        "users": total,
        "initial_provisioning_s": round(initial.as_secs_f64(), 1),
        "resync_wall_s": round(wall.as_secs_f64(), 1),
        "user_reconciles": reconciles,
        "downstream_calls": calls,
        "downstream_writes": writes,
        "users_synced_after": still_synced,
        "target_writes": 0,
    })
}
