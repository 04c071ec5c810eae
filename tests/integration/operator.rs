//! `roster run` as a process: two replicas against the test control plane.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use roster::api::User;

use crate::controller::{eventually, synced};
use crate::support::fixtures::user;
use crate::support::{env, free_port, kubeconfig_path};

pub(crate) struct Replica {
    name: String,
    pub(crate) port: u16,
    pub(crate) child: tokio::process::Child,
    /// Everything the process logged.
    log: tempfile::NamedTempFile,
}

impl Replica {
    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

fn replica(name: &str, namespace: &str) -> Replica {
    replica_with(name, namespace, &[])
}

pub(crate) fn replica_with(name: &str, namespace: &str, extra: &[&str]) -> Replica {
    replica_logging(name, namespace, extra, "warn")
}

/// A replica whose log (`Replica::log`) is filtered by `rust_log`.
fn replica_logging(name: &str, namespace: &str, extra: &[&str], rust_log: &str) -> Replica {
    replica_in(name, namespace, extra, rust_log, &[])
}

/// [`replica_logging`] with extra environment variables.
fn replica_in(
    name: &str,
    namespace: &str,
    extra: &[&str],
    rust_log: &str,
    environment: &[(&str, &str)],
) -> Replica {
    let log = tempfile::NamedTempFile::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("run")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--pod-name", name])
        .args(["--lease-namespace", namespace])
        .args(["--watch-namespace", namespace])
        .args([
            "--lease-duration-seconds",
            "4",
            // Renew 2 s before expiry: with 1 s, a replica stalled by a
            // loaded machine (the whole suite on two cores) lost the Lease
            // while it still reconciled.
            "--lease-grace-seconds",
            "2",
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig_path())
        .env("RUST_LOG", rust_log)
        .envs(environment.iter().copied())
        .stderr(log.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("roster starts");
    Replica {
        name: name.to_owned(),
        port,
        child,
        log,
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("roster-controller")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// How many times the Lease changed hands.
async fn transitions(leases: &Api<Lease>) -> i32 {
    leases
        .get("roster-controller")
        .await
        .ok()
        .and_then(|l| l.spec?.lease_transitions)
        .unwrap_or(0)
}

/// Who published the Event about `user`'s account: the replica that reconciled it.
async fn reconciled_by(events: &Api<Event>, user: &str) -> Option<String> {
    events
        .list(&Default::default())
        .await
        .ok()?
        .items
        .into_iter()
        .find(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(user)
                && e.reporting_controller.as_deref() == Some("roster-controller")
        })?
        .reporting_instance
}

#[tokio::test]
async fn only_the_listed_namespaces_are_provisioned() {
    let key = b"scope-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    let (first, second, other) = (env().await, env().await, env().await);
    for env in [&first, &second, &other] {
        crate::controller::webhook_policy(env, "wiki", &receiver.url, key).await;
        env.api::<User>()
            .create(
                &PostParams::default(),
                &user("u-1", "wiki", "one@example.com"),
            )
            .await
            .unwrap();
    }
    let listed = format!("{},{}", first.namespace, second.namespace);
    let _replica = replica_with(
        "scoped",
        &first.namespace,
        &["--leader-election=false", "--watch-namespace", &listed],
    );
    synced(&first.api(), "u-1").await;
    synced(&second.api(), "u-1").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outside = other.api::<User>().get("u-1").await.unwrap();
    assert!(
        outside.status.is_none() && outside.finalizers().is_empty(),
        "a namespace not listed is left alone: {outside:?}"
    );
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let env = env().await;
    let key = b"failover-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    crate::controller::webhook_policy(&env, "wiki", &receiver.url, key).await;
    scim_tokens(&env, "wiki", "failover-token-0123456789").await;
    let mut replicas = [
        replica("replica-a", &env.namespace),
        replica("replica-b", &env.namespace),
    ];
    let leases: Api<Lease> = env.api();
    eventually("a leader", || holder(&leases)).await;
    let transitions_before = transitions(&leases).await;

    let users: Api<User> = env.api();
    let events: Api<Event> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-1", "wiki", "one@example.com"),
        )
        .await
        .unwrap();
    synced(&users, "u-1").await;
    let reconciler = eventually("the reconciling replica", || reconciled_by(&events, "u-1")).await;
    // Read after the reconcile: on a loaded machine the Lease may change
    // hands once before it; what must hold is that its holder reconciled.
    let first = eventually("a leader", || holder(&leases)).await;
    if reconciler != first {
        // Only a change of hands in between excuses it: then the reconcile
        // happened under the earlier holder.
        assert!(
            transitions(&leases).await > transitions_before,
            "{reconciler} reconciled, but {first} held the Lease throughout"
        );
        eprintln!("the Lease changed hands during the reconcile (a loaded machine)");
    }
    let (leader, standby) = match &mut replicas {
        [a, b] if a.name == first => (a, b),
        [a, b] if b.name == first => (b, a),
        _ => panic!("the Lease holder {first} is neither replica"),
    };

    // Kill the leader hard: the standby takes over once the Lease expires.
    leader.child.start_kill().unwrap();
    let killed = Instant::now();
    let http = reqwest::Client::new();
    let standby_url = format!(
        "http://127.0.0.1:{}/scim/{}/wiki/v2/Users",
        standby.port, env.namespace
    );
    let new_leader = eventually("a new leader", || async {
        // The standby keeps serving meanwhile.
        let reply = http
            .get(&standby_url)
            .bearer_auth("failover-token-0123456789")
            .send()
            .await
            .expect("the standby serves SCIM throughout");
        assert_eq!(reply.status(), 200);
        holder(&leases).await.filter(|h| h == &standby.name)
    })
    .await;
    let takeover = killed.elapsed();
    assert_eq!(new_leader, standby.name);
    assert!(
        // The 4 s Lease plus the standby's polling; slack for a loaded CI machine.
        takeover < Duration::from_secs(4 + 5),
        "took over after {takeover:?}"
    );
    println!("standby took over {takeover:?} after the leader was killed");

    users
        .create(
            &PostParams::default(),
            &user("u-2", "wiki", "two@example.com"),
        )
        .await
        .unwrap();
    synced(&users, "u-2").await;
    assert_eq!(
        eventually("the reconciling replica", || reconciled_by(&events, "u-2")).await,
        standby.name
    );
}

#[tokio::test]
async fn sigterm_releases_the_lease_so_the_standby_leads_at_once() {
    let env = env().await;
    let mut replicas = [
        replica("replica-a", &env.namespace),
        replica("replica-b", &env.namespace),
    ];
    let leases: Api<Lease> = env.api();
    let first = eventually("a leader", || holder(&leases)).await;
    let (leader, standby) = match &mut replicas {
        [a, b] if a.name == first => (a, b),
        [a, b] if b.name == first => (b, a),
        _ => panic!("the Lease holder {first} is neither replica"),
    };
    let pid = nix::unistd::Pid::from_raw(leader.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let terminated = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(20), leader.child.wait())
        .await
        .expect("the leader exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "a clean exit: {status:?}");
    // Released on the way out, not left to expire.
    let after_exit = holder(&leases).await;
    assert_ne!(
        after_exit.as_deref(),
        Some(leader.name.as_str()),
        "the lease was released"
    );
    eventually("the standby to lead", || async {
        holder(&leases).await.filter(|h| h == &standby.name)
    })
    .await;
    // The standby notices at its next look, at most one Lease duration on.
    let takeover = terminated.elapsed();
    assert!(
        takeover < Duration::from_secs(4 + 5),
        "took over after {takeover:?}"
    );
    println!(
        "after SIGTERM the leader exited cleanly, released the lease, and the standby led within {takeover:?}"
    );
}

/// Waits until the replica at `base` answers /readyz with 200.
pub(crate) async fn ready(http: &reqwest::Client, base: &str) {
    eventually("the replica to be ready", || async {
        let reply = http.get(format!("{base}/readyz")).send().await.ok()?;
        (reply.status() == 200).then_some(())
    })
    .await;
}

/// The Secret holding `policy`'s SCIM bearer token.
async fn scim_tokens(env: &crate::support::TestEnv, policy: &str, token: &str) {
    let mut tokens = k8s_openapi::api::core::v1::Secret::default();
    tokens.metadata.name = Some(format!("{policy}-scim-tokens"));
    tokens.string_data = Some([("t".to_owned(), token.to_owned())].into());
    env.api::<k8s_openapi::api::core::v1::Secret>()
        .create(&PostParams::default(), &tokens)
        .await
        .unwrap();
}

/// `name value` of the first exposition line starting with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_expose_scim_requests_reconciles_downstream_calls_and_leadership() {
    let env = env().await;
    let key = b"metrics-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    crate::controller::webhook_policy(&env, "wiki", &receiver.url, key).await;
    scim_tokens(&env, "wiki", "metrics-token-0123456789").await;
    let replica = replica("replica-m", &env.namespace);
    let base = format!("http://127.0.0.1:{}", replica.port);
    let http = reqwest::Client::new();
    ready(&http, &base).await;
    let scim = format!("{base}/scim/{}/wiki/v2/Users", env.namespace);
    let created = http
        .post(&scim)
        .bearer_auth("metrics-token-0123456789")
        .json(&serde_json::json!({"userName": "metered@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        http.get(&scim)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let users: Api<User> = env.api();
    synced(&users, &id).await;

    let metrics = eventually("the metrics", || async {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        // A reconcile is counted when it ends, after its downstream call.
        (text.contains("roster_downstream_calls_total{connector=\"webhook\"")
            && text.contains("roster_reconciles_total{kind=\"User\",result=\"ok\"}"))
        .then_some(text)
    })
    .await;
    let ns = &env.namespace;
    let posted = format!(
        "roster_scim_requests_total{{policy=\"{ns}/wiki\",method=\"POST\",resource=\"Users\",status=\"201\"}}"
    );
    assert_eq!(sample(&metrics, &posted), Some(1.0), "{metrics}");
    let refused = "roster_scim_requests_total{policy=\"unauthenticated\",method=\"GET\",resource=\"Users\",status=\"401\"}";
    assert_eq!(sample(&metrics, refused), Some(1.0));
    let latency = format!(
        "roster_scim_request_duration_seconds_count{{policy=\"{ns}/wiki\",method=\"POST\",resource=\"Users\"}}"
    );
    assert_eq!(sample(&metrics, &latency), Some(1.0));
    assert!(
        sample(
            &metrics,
            "roster_reconciles_total{kind=\"User\",result=\"ok\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &metrics,
            "roster_reconcile_duration_seconds_count{kind=\"User\"}"
        )
        .unwrap()
            >= 1.0
    );
    let delivered = "roster_downstream_calls_total{connector=\"webhook\",operation=\"create_user\",outcome=\"ok\"}";
    assert_eq!(sample(&metrics, delivered), Some(1.0));
    assert_eq!(sample(&metrics, "roster_leader "), Some(1.0));
}

#[tokio::test]
async fn https_is_served_with_the_given_certificate() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let replica = replica_with(
        "replica-tls",
        &env.namespace,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    );
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/healthz", replica.port);
    let reply = eventually("the HTTPS server", || async {
        https.get(&url).send().await.ok()
    })
    .await;
    assert_eq!(reply.status(), 200);
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", replica.port)).await;
    assert!(
        plain.is_err() || plain.unwrap().status() != 200,
        "plain HTTP is not served on the TLS port"
    );
}

/// A self-signed certificate for 127.0.0.1 written to `dir`, and a client
/// that trusts it alone (each call: a new connection, a new handshake).
fn certificate(dir: &std::path::Path) -> reqwest::Client {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    // Written beside and renamed over, as the kubelet swaps a Secret's files.
    for (name, pem) in [
        ("tls.crt", certified.cert.pem()),
        ("tls.key", certified.signing_key.serialize_pem()),
    ] {
        let next = dir.join(format!(".{name}.next"));
        std::fs::write(&next, pem).unwrap();
        std::fs::rename(&next, dir.join(name)).unwrap();
    }
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_metrics_stay_plain_http() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let first = certificate(dir.path());
    let metrics_port = free_port();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let replica = replica_logging(
        "replica-renew",
        &env.namespace,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--metrics-listen",
            &metrics_listen,
        ],
        "warn,roster::server=info",
    );
    let url = format!("https://127.0.0.1:{}/healthz", replica.port);
    let reply = eventually("HTTPS with the first certificate", || async {
        first.get(&url).send().await.ok()
    })
    .await;
    assert_eq!(reply.status(), 200);
    // Prometheus and the probes: plain HTTP on their own port.
    let metrics = reqwest::get(format!("http://{metrics_listen}/metrics"))
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("roster_leader"));

    // cert-manager renews the Secret; the kubelet swaps the files.
    let renewed = certificate(dir.path());
    let reply = eventually("HTTPS with the renewed certificate", || async {
        renewed.get(&url).send().await.ok()
    })
    .await;
    assert_eq!(reply.status(), 200);
    assert!(
        first.get(&url).send().await.is_err(),
        "a new handshake no longer presents the first certificate"
    );
    assert!(
        replica
            .log_text()
            .contains("serving the renewed TLS certificate")
    );
}

#[tokio::test]
async fn after_sigterm_a_replica_is_unready_but_serves_until_the_delay_ends() {
    let env = env().await;
    let metrics_listen = format!("127.0.0.1:{}", free_port());
    let delay = Duration::from_secs(5);
    let mut replica = replica_with(
        "replica-delay",
        &env.namespace,
        &[
            "--metrics-listen",
            &metrics_listen,
            "--shutdown-delay-seconds",
            &delay.as_secs().to_string(),
        ],
    );
    let http = reqwest::Client::new();
    let readyz = format!("http://{metrics_listen}/readyz");
    ready(&http, &format!("http://{metrics_listen}")).await;
    let pid = nix::unistd::Pid::from_raw(replica.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let terminated = Instant::now();
    eventually("/readyz to fail", || async {
        let status = http.get(&readyz).send().await.ok()?.status();
        (status == 503).then_some(())
    })
    .await;
    // Still accepting new connections while the endpoints drop the pod.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let reply = fresh
        .get(format!("http://127.0.0.1:{}/healthz", replica.port))
        .send()
        .await
        .expect("a new connection is accepted during the delay");
    assert_eq!(reply.status(), 200);
    assert!(
        terminated.elapsed() < delay,
        "the check itself took the delay"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), replica.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(
        terminated.elapsed() >= delay,
        "stopped after {:?}, before the delay ended",
        terminated.elapsed()
    );
}

/// An OTLP/HTTP (JSON) receiver: every export request's body.
async fn otlp_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use axum::routing::post;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).expect("OTLP JSON"));
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (origin, received)
}

/// The exported spans: (trace id, name, attributes as strings).
fn spans(received: &[serde_json::Value]) -> Vec<(String, String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for export in received {
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let attributes = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| {
                            let value = &a["value"];
                            let text = value["stringValue"]
                                .as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| value.to_string());
                            (a["key"].as_str().unwrap().to_owned(), text)
                        })
                        .collect();
                    out.push((
                        span["traceId"].as_str().unwrap_or_default().to_owned(),
                        span["name"].as_str().unwrap_or_default().to_owned(),
                        attributes,
                    ));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn spans_of_scim_requests_reconciles_and_downstream_calls_are_exported_over_otlp() {
    let env = env().await;
    let key = b"otel-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    crate::controller::webhook_policy(&env, "wiki", &receiver.url, key).await;
    scim_tokens(&env, "wiki", "otel-token-0123456789abcdef").await;
    let (collector, received) = otlp_receiver().await;
    let replica = replica_in(
        "replica-otel",
        &env.namespace,
        &[],
        "warn,roster=info",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    let base = format!("http://127.0.0.1:{}", replica.port);
    let http = reqwest::Client::new();
    ready(&http, &base).await;
    let created = http
        .post(format!("{base}/scim/{}/wiki/v2/Users", env.namespace))
        .bearer_auth("otel-token-0123456789abcdef")
        .json(&serde_json::json!({"userName": "otel@example.com", "active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let policy = format!("{}/wiki", env.namespace);
    let exported = eventually("the spans to be exported", || async {
        let all = spans(&received.lock().unwrap());
        let scim = all
            .iter()
            .any(|(_, name, a)| name == "scim" && a.get("policy") == Some(&policy));
        let call = all
            .iter()
            .find(|(_, name, a)| {
                name == "downstream"
                    && a.get("operation").map(String::as_str) == Some("create_user")
            })
            .cloned();
        call.filter(|_| scim).map(|call| (all, call))
    })
    .await;
    let (all, (trace, _, call)) = exported;
    assert_eq!(call.get("connector").map(String::as_str), Some("webhook"));
    // The call ran inside the User's reconcile: one trace.
    assert!(
        all.iter().any(|(t, name, a)| t == &trace
            && name == "reconcile"
            && a.get("kind").map(String::as_str) == Some("User")),
        "no User reconcile in the call's trace: {all:?}"
    );
    let service =
        received.lock().unwrap()[0]["resourceSpans"][0]["resource"]["attributes"].to_string();
    assert!(service.contains("roster"), "{service}");
}

#[tokio::test]
async fn in_flight_scim_requests_complete_after_sigterm() {
    let env = env().await;
    let key = b"drain-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    crate::controller::webhook_policy(&env, "wiki", &receiver.url, key).await;
    scim_tokens(&env, "wiki", "drain-token-0123456789abcdef").await;
    // Members must be Users of the policy: 3,000, shared by the groups.
    let ids: Vec<String> = (0..3000).map(|m| format!("member-{m}")).collect();
    crate::support::fixtures::create_users(&env, "wiki", &ids).await;
    // tower_http logs each request as its handling starts: what tells that
    // all of them are in flight.
    let mut replica = replica_logging("replica-d", &env.namespace, &[], "warn,tower_http=debug");
    let base = format!("http://127.0.0.1:{}", replica.port);
    let http = reqwest::Client::new();
    ready(&http, &base).await;
    // Slow requests: groups created with 3,000 members each.
    let url = format!("{base}/scim/{}/wiki/v2/Groups", env.namespace);
    let requests: Vec<_> = (0..8)
        .map(|g| {
            let http = http.clone();
            let url = url.clone();
            let members: Vec<serde_json::Value> = ids
                .iter()
                .map(|id| serde_json::json!({"value": id}))
                .collect();
            tokio::spawn(async move {
                let sent = http
                    .post(&url)
                    .bearer_auth("drain-token-0123456789abcdef")
                    .json(&serde_json::json!({"displayName": format!("group-{g}"), "members": members}))
                    .send()
                    .await;
                (Instant::now(), sent.map(|r| r.status().as_u16()))
            })
        })
        .collect();
    // SIGTERM once the server has read every request's head: a connection
    // still waiting to be accepted when the listener closes is refused by
    // the kernel, which is not what this test is about.
    eventually("every group POST to be in flight", || async {
        let log = std::fs::read_to_string(replica.log.path()).ok()?;
        let started = log
            .lines()
            .filter(|l| l.contains("started processing request") && l.contains("/Groups"))
            .count();
        (started >= 8).then_some(())
    })
    .await;
    let pid = nix::unistd::Pid::from_raw(replica.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let terminated = Instant::now();
    let mut completed_after_sigterm = 0;
    for request in requests {
        let (finished, outcome) = request.await.unwrap();
        match outcome {
            Ok(status) => {
                assert_eq!(status, 201, "an in-flight request completed");
                if finished > terminated {
                    completed_after_sigterm += 1;
                }
            }
            // Not yet connected when the listener closed: refused, never cut off.
            Err(error) => assert!(error.is_connect(), "a request was cut off: {error}"),
        }
    }
    assert!(
        completed_after_sigterm > 0,
        "some requests were still in flight at SIGTERM"
    );
    let status = tokio::time::timeout(Duration::from_secs(30), replica.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    println!("{completed_after_sigterm} in-flight SCIM requests completed after SIGTERM");
}

#[tokio::test]
async fn logs_never_contain_bearer_tokens_or_passwords() {
    let env = env().await;
    let key = b"log-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    crate::controller::webhook_policy(&env, "wiki", &receiver.url, key).await;
    scim_tokens(&env, "wiki", "token-that-must-not-leak").await;
    let mut replica = replica_with("replica-l", &env.namespace, &["--log-level", "trace"]);
    let base = format!("http://127.0.0.1:{}", replica.port);
    let http = reqwest::Client::new();
    ready(&http, &base).await;
    let users = format!("{base}/scim/{}/wiki/v2/Users", env.namespace);
    let created = http
        .post(&users)
        .bearer_auth("token-that-must-not-leak")
        .json(&serde_json::json!({"userName": "secretive@example.com", "password": "password-that-must-not-leak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = http
        .get(&users)
        .bearer_auth("wrong-token-that-must-not-leak")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    synced(
        &Api::<User>::namespaced(env.client.clone(), &env.namespace),
        &id,
    )
    .await;
    replica.child.start_kill().unwrap();
    let _ = replica.child.wait().await;
    let log = std::fs::read_to_string(replica.log.path()).unwrap();
    assert!(
        log.contains("SCIM created a user"),
        "the log is captured at trace level"
    );
    use base64::Engine;
    for secret in [
        "token-that-must-not-leak",
        "password-that-must-not-leak",
        "log-key",
    ] {
        assert!(!log.contains(secret), "{secret} appears in the log");
        // Nor as the API server returns Secrets.
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(
            !log.contains(&encoded),
            "{secret} appears base64-encoded in the log"
        );
    }
}
