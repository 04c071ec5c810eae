//! The controllers against the real API server, provisioning into a real
//! SCIM application (scim2-server) whose own API the tests read.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use roster::api::{
    AccountState, ApplicationKind, ApplicationSpec, DeprovisionAction, Group, GroupMember,
    ProvisioningPolicy, ScimConnector, SecretKeyRef, SignatureScheme, User,
};
use serde_json::json;

use crate::support::apps::Scim2Server;
use crate::support::fixtures::{group, scim_policy, user};
use crate::support::{TestEnv, env};

/// The controllers, running in this test's runtime until dropped.
pub struct Running(tokio::task::JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn start_controllers(env: &TestEnv) -> Running {
    // Scoped to the test's namespace: tests run side by side.
    Running(tokio::spawn(roster::controller::run(
        env.client.clone(),
        Some(env.namespace.clone()),
        Some("test".into()),
        Some(crate::support::saml::PUBLIC_URL.into()),
        std::future::pending(),
    )))
}

/// A Scim policy `name` whose application is `app`, deprovisioning by `action`.
pub async fn policy_for(env: &TestEnv, name: &str, app: &Scim2Server, action: DeprovisionAction) {
    policy_at(env, name, &app.base_url(), &app.token, action).await;
}

/// A Scim policy `name` whose application is the SCIM API at `base_url`.
async fn policy_at(
    env: &TestEnv,
    name: &str,
    base_url: &str,
    token: &str,
    action: DeprovisionAction,
) {
    let mut secret = Secret::default();
    secret.metadata.name = Some(format!("{name}-app"));
    secret.string_data = Some([("token".to_owned(), token.to_owned())].into());
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut policy = scim_policy(name);
    policy.spec.application = ApplicationSpec {
        kind: ApplicationKind::Scim,
        scim: Some(ScimConnector {
            base_url: base_url.to_owned(),
            token_secret_ref: SecretKeyRef {
                name: format!("{name}-app"),
                key: "token".into(),
            },
        }),
        webhook: None,
        postgres: None,
        argocd_rbac: None,
        deprovision: action,
        delete_after_seconds: 0,
        dry_run: false,
    };
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

/// Polls `check` until it yields, for up to 30 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

/// Polls `check` until it yields, for up to `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for an Event in the test namespace with `reason` (if given) about
/// the object named `regarding` (if given).
pub async fn event(
    env: &TestEnv,
    reason: Option<&str>,
    regarding: Option<&str>,
) -> k8s_openapi::api::events::v1::Event {
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    let what = format!("an Event {reason:?} about {regarding:?}");
    eventually(&what, || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                reason.is_none_or(|r| e.reason.as_deref() == Some(r))
                    && regarding.is_none_or(|name| {
                        e.regarding.as_ref().and_then(|o| o.name.as_deref()) == Some(name)
                    })
            })
    })
    .await
}

/// Deletes a User and waits until it is gone (its finalizer has run).
async fn delete_and_wait(users: &Api<User>, name: &str) {
    users.delete(name, &DeleteParams::default()).await.unwrap();
    eventually(&format!("{name} to be gone"), || async {
        users.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

/// Waits until the User's current generation is synced; returns its remote id.
pub async fn synced(users: &Api<User>, name: &str) -> String {
    eventually(&format!("user {name} to sync"), || async {
        let user = users.get_opt(name).await.ok()??;
        let account = user.status?.account?;
        (account.synced_generation == user.metadata.generation).then_some(account.remote_id?)
    })
    .await
}

/// Deactivates each of the Users `names`, as an IdP's mass deactivation.
pub async fn deactivate_all(users: &Api<User>, names: impl IntoIterator<Item = String>) {
    for name in names {
        users
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"active": false}})),
            )
            .await
            .unwrap();
    }
}

/// Waits until policy `policy`'s circuit breaker holds `accounts` account
/// actions; returns the quarantine's approval token.
pub async fn held_accounts(
    policies: &Api<ProvisioningPolicy>,
    policy: &str,
    accounts: i64,
) -> String {
    eventually("the quarantine", || async {
        let quarantine = policies.get(policy).await.ok()?.status?.quarantine?;
        (quarantine.held_accounts == accounts).then_some(quarantine.token)
    })
    .await
}

/// Waits until policy `policy`'s dry-run plan adopts one account and
/// creates one.
pub async fn planned_one_adoption_and_one_creation(
    policies: &Api<ProvisioningPolicy>,
    policy: &str,
) {
    eventually("the plan", || async {
        let plan = policies.get(policy).await.ok()?.status?.plan?;
        (plan.counts.get("adoptAccount") == Some(&1)
            && plan.counts.get("createAccount") == Some(&1))
        .then_some(())
    })
    .await;
}

/// Takes policy `policy` out of dry run: its plan is performed.
pub async fn go_live(policies: &Api<ProvisioningPolicy>, policy: &str) {
    policies
        .patch(
            policy,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"application": {"dryRun": false}}})),
        )
        .await
        .unwrap();
}

/// Approves policy `policy`'s held actions with `token`, as an operator does.
pub async fn approve(policies: &Api<ProvisioningPolicy>, policy: &str, token: &str) {
    let approval = json!({"metadata": {"annotations": {
        "roster.dev/approve-deprovisioning": token,
    }}});
    policies
        .patch(policy, &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .unwrap();
}

#[tokio::test]
async fn users_are_created_renamed_deactivated_and_disabled_on_deletion() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();

    let mut alice = user("u-alice", "crm", "alice@example.com");
    alice.spec.display_name = Some("Alice".into());
    users.create(&PostParams::default(), &alice).await.unwrap();
    let remote = synced(&users, "u-alice").await;
    let (status, account) = app.get(&format!("/Users/{remote}")).await;
    assert_eq!(status, 200);
    assert_eq!(account["userName"], "alice@example.com");
    assert_eq!(account["displayName"], "Alice");
    let stored = users.get("u-alice").await.unwrap();
    assert!(
        stored
            .finalizers()
            .contains(&"roster.dev/deprovision".to_owned())
    );
    let ready = stored
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");

    // Rename.
    let patch = json!({"spec": {"userName": "alice.liddell@example.com"}});
    users
        .patch("u-alice", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(synced(&users, "u-alice").await, remote, "the same account");
    assert_eq!(
        app.get(&format!("/Users/{remote}")).await.1["userName"],
        "alice.liddell@example.com"
    );

    // Deactivate.
    let patch = json!({"spec": {"active": false}});
    users
        .patch("u-alice", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    synced(&users, "u-alice").await;
    assert_eq!(
        app.get(&format!("/Users/{remote}")).await.1["active"],
        false
    );
    let account = users
        .get("u-alice")
        .await
        .unwrap()
        .status
        .unwrap()
        .account
        .unwrap();
    assert_eq!(account.state, Some(AccountState::Disabled));

    // Delete under a Disable policy: the account stays, disabled.
    let bob = user("u-bob", "crm", "bob@example.com");
    users.create(&PostParams::default(), &bob).await.unwrap();
    let bob_remote = synced(&users, "u-bob").await;
    delete_and_wait(&users, "u-bob").await;
    let (status, account) = app.get(&format!("/Users/{bob_remote}")).await;
    assert_eq!(status, 200, "Disable keeps the account");
    assert_eq!(account["active"], false);
    assert_eq!(app.users().await.len(), 2, "no duplicate accounts");
}

#[tokio::test]
async fn a_user_written_by_hand_holds_its_user_name() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Delete).await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-hand", "crm", "Hand@example.com"),
        )
        .await
        .unwrap();
    synced(&users, "u-hand").await;
    let claim = env
        .api::<roster::api::UserNameClaim>()
        .get(&roster::api::claim_name("crm", "hand@example.com"))
        .await
        .expect("the controller claimed the userName");
    assert_eq!(claim.spec.user, "u-hand");

    // A second hand-written user with that userName is not provisioned.
    users
        .create(
            &PostParams::default(),
            &user("u-twin", "crm", "HAND@example.com"),
        )
        .await
        .unwrap();
    let condition = eventually("the twin's Synced condition", || async {
        let twin = users.get("u-twin").await.ok()?;
        twin.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Synced" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason, "UserNameTaken");
    assert_eq!(app.users().await.len(), 1, "no second account");
}

#[tokio::test]
async fn deletion_under_a_delete_policy_removes_the_account() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Delete).await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-carol", "crm", "carol@example.com"),
        )
        .await
        .unwrap();
    let remote = synced(&users, "u-carol").await;
    delete_and_wait(&users, "u-carol").await;
    assert_eq!(app.get(&format!("/Users/{remote}")).await.0, 404);
    let left = app.users().await;
    assert!(left.is_empty(), "accounts left: {left:?}");
}

#[tokio::test]
async fn groups_and_memberships_follow_the_resources() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    let groups: Api<Group> = env.api();
    for name in ["dan", "eve"] {
        users
            .create(
                &PostParams::default(),
                &user(&format!("u-{name}"), "crm", &format!("{name}@example.com")),
            )
            .await
            .unwrap();
    }
    let dan = synced(&users, "u-dan").await;
    let eve = synced(&users, "u-eve").await;

    let mut engineering = group("g-eng", "crm", "Engineering");
    engineering.spec.members = vec![GroupMember {
        value: "u-dan".into(),
        ..Default::default()
    }];
    groups
        .create(&PostParams::default(), &engineering)
        .await
        .unwrap();
    let remote = eventually("the group to sync", || async {
        let status = groups.get("g-eng").await.ok()?.status?;
        (status.synced_members.len() == 1).then_some(status.remote_id?)
    })
    .await;
    let members = |body: &serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = body["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let (_, body) = app.get(&format!("/Groups/{remote}")).await;
    assert_eq!(body["displayName"], "Engineering");
    assert_eq!(members(&body), vec![dan.clone()]);

    // Rename, and swap dan for eve.
    let patch = json!({"spec": {"displayName": "Platform", "members": [{"value": "u-eve"}]}});
    groups
        .patch("g-eng", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(
        "the rename and new members to reach the application",
        || async {
            let (_, body) = app.get(&format!("/Groups/{remote}")).await;
            (body["displayName"] == "Platform" && members(&body) == vec![eve.clone()]).then_some(())
        },
    )
    .await;
    let status = groups.get("g-eng").await.unwrap().status.unwrap();
    assert_eq!(status.member_count, Some(1));

    groups
        .delete("g-eng", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the group to be deleted downstream", || async {
        (app.get(&format!("/Groups/{remote}")).await.0 == 404).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_application_outage_is_reported_and_converges_when_it_returns() {
    let env = env().await;
    let mut app = Scim2Server::start(0).await;
    let port = app.port;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let token = app.token.clone();
    app.stop();
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-fay", "crm", "fay@example.com"),
        )
        .await
        .unwrap();
    let condition = eventually("the outage to show in the status", || async {
        let status = users.get("u-fay").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Synced" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason, "ApplicationUnavailable");

    // The application returns, with the same token.
    let app = Scim2Server::start_with_token(port, &token).await;
    let remote = synced(&users, "u-fay").await;
    assert_eq!(
        app.get(&format!("/Users/{remote}")).await.1["userName"],
        "fay@example.com"
    );
}

#[tokio::test]
async fn an_application_that_never_answers_holds_up_only_its_own_policy() {
    let env = env().await;
    // Accepts connections and never answers a byte.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_url = format!("http://{}", stalled.local_addr().unwrap());
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = stalled.accept().await {
            open.push(socket);
        }
    });
    let app = Scim2Server::start(0).await;
    policy_at(
        &env,
        "stuck",
        &stalled_url,
        "a-token",
        DeprovisionAction::Disable,
    )
    .await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let users: Api<User> = env.api();
    for i in 0..10 {
        for policy in ["stuck", "crm"] {
            let id = format!("{policy}-{i}");
            users
                .create(
                    &PostParams::default(),
                    &user(&id, policy, &format!("{id}@example.com")),
                )
                .await
                .unwrap();
        }
    }
    let _controllers = start_controllers(&env);
    for i in 0..10 {
        synced(&users, &format!("crm-{i}")).await;
    }
    // The stalled application's 10 users fail in rounds of its 4 call slots,
    // 10 s each: the last round only after 30 s. Had crm waited behind them,
    // it would have finished after all 10; it finished before the last did.
    let stuck_conditions = || async {
        users
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|u| u.spec.policy == "stuck")
            .filter_map(|u| {
                let status = u.status?;
                status
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Synced" && c.status == "False")
            })
            .collect::<Vec<_>>()
    };
    let reported = stuck_conditions().await.len();
    assert!(reported < 10, "crm waited for the stalled application");
    let stuck = eventually("the stalled application's timeouts to show", || async {
        stuck_conditions().await.into_iter().next()
    })
    .await;
    assert_eq!(stuck.reason, "ApplicationUnavailable");
    assert!(
        stuck.message.contains("timed out after 10s"),
        "{}",
        stuck.message
    );
}

#[tokio::test]
async fn a_restart_mid_sync_of_500_users_leaves_exactly_500_accounts() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let users: Api<User> = env.api();
    let total = 500;
    let creations: Vec<_> = (0..total)
        .map(|i| {
            let users = users.clone();
            async move {
                users
                    .create(
                        &PostParams::default(),
                        &user(
                            &format!("u-{i:03}"),
                            "crm",
                            &format!("user{i:03}@example.com"),
                        ),
                    )
                    .await
                    .unwrap()
            }
        })
        .collect();
    futures::future::join_all(creations).await;

    let first = start_controllers(&env);
    eventually("some accounts to exist", || async {
        (app.users().await.len() >= 50).then_some(())
    })
    .await;
    drop(first); // killed mid-sync
    let partial = app.users().await.len();
    assert!(
        partial < total,
        "the kill came mid-sync ({partial} of {total})"
    );

    let _second = start_controllers(&env);
    eventually("every user to be synced", || async {
        let list = users.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .all(|u| {
                u.status
                    .as_ref()
                    .and_then(|s| s.account.as_ref())
                    .and_then(|a| a.synced_generation)
                    == u.metadata.generation
            })
            .then_some(())
    })
    .await;
    let accounts = app.users().await;
    assert_eq!(accounts.len(), total, "exactly one account per user");
    let mut names: Vec<&str> = accounts
        .iter()
        .map(|a| a["userName"].as_str().unwrap())
        .collect();
    names.dedup();
    assert_eq!(names.len(), total);
}

use kube::ResourceExt;

/// A Jit-free, webhook-fed policy `name` posting to `receiver`.
pub async fn webhook_policy(env: &TestEnv, name: &str, url: &str, key: &[u8]) {
    webhook_policy_signed(env, name, url, key, SignatureScheme::Roster).await;
}

/// [`webhook_policy`], signing with `scheme`.
pub async fn webhook_policy_signed(
    env: &TestEnv,
    name: &str,
    url: &str,
    key: &[u8],
    scheme: SignatureScheme,
) {
    let mut secret = Secret::default();
    secret.metadata.name = Some(format!("{name}-hook"));
    secret.data = Some([("key".to_owned(), k8s_openapi::ByteString(key.to_vec()))].into());
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut policy = scim_policy(name);
    policy.spec.application = ApplicationSpec {
        kind: ApplicationKind::Webhook,
        scim: None,
        webhook: Some(roster::api::WebhookConnector {
            url: url.to_owned(),
            signing_secret_ref: SecretKeyRef {
                name: format!("{name}-hook"),
                key: "key".into(),
            },
            signature_scheme: scheme,
        }),
        postgres: None,
        argocd_rbac: None,
        deprovision: DeprovisionAction::Delete,
        delete_after_seconds: 0,
        dry_run: false,
    };
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
}

/// The Standard Webhooks reference library's receiver
/// (tests/peers/standard_webhooks_receiver.py), and what it printed.
struct StandardReceiver {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _child: tokio::process::Child,
}

impl StandardReceiver {
    async fn start(secret: &str) -> Self {
        use tokio::io::AsyncBufReadExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/standard_webhooks_receiver.py"
        );
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .env("STANDARD_WEBHOOKS_SECRET", secret)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with standardwebhooks (make deps) is on PATH");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        let url = format!("http://127.0.0.1:{port}/hooks");
        eventually("the receiver to listen", || async {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        })
        .await;
        Self {
            url,
            seen,
            _child: child,
        }
    }

    fn seen(&self) -> Vec<serde_json::Value> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn standard_webhooks_events_verify_with_the_reference_library() {
    let env = env().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let receiver = StandardReceiver::start(secret).await;
    webhook_policy_signed(
        &env,
        "wiki",
        &receiver.url,
        secret.as_bytes(),
        SignatureScheme::StandardWebhooks,
    )
    .await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-ada", "wiki", "ada@example.com"),
        )
        .await
        .unwrap();
    synced(&users, "u-ada").await;
    let seen = receiver.seen();
    let created = seen
        .iter()
        .find(|r| r["event"]["type"] == "user.created")
        .unwrap_or_else(|| panic!("no user.created among {seen:?}"));
    assert_eq!(created["verified"], true, "{created}");
    assert_eq!(created["event"]["user"]["userName"], "ada@example.com");
    assert_eq!(
        created["id"], created["event"]["id"],
        "webhook-id is the event id"
    );
    assert!(seen.iter().all(|r| r["verified"] == true), "{seen:?}");

    // A receiver holding another secret refuses every event: the user is
    // not synced, and says why.
    let other = StandardReceiver::start("whsec_b3RoZXIta2V5LW9mLTMyLWJ5dGVzLWZvci10ZXN0cw==").await;
    webhook_policy_signed(
        &env,
        "crm",
        &other.url,
        secret.as_bytes(),
        SignatureScheme::StandardWebhooks,
    )
    .await;
    users
        .create(
            &PostParams::default(),
            &user("u-bob", "crm", "bob@example.com"),
        )
        .await
        .unwrap();
    eventually("the refusal to be reported", || async {
        let user = users.get("u-bob").await.ok()?;
        let synced = user
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Synced")?;
        (synced.status == "False").then_some(())
    })
    .await;
    let refused = other.seen();
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|r| r["verified"] == false),
        "{refused:?}"
    );
}

#[tokio::test]
async fn webhook_events_are_all_delivered_after_an_outage_with_stable_keys() {
    let env = env().await;
    let key = b"a-signing-key-for-tests";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    receiver.down();
    webhook_policy(&env, "wiki", &receiver.url, key).await;
    let users: Api<User> = env.api();
    let groups: Api<Group> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-gil", "wiki", "gil@example.com"),
        )
        .await
        .unwrap();
    let mut team = group("g-team", "wiki", "Team");
    team.spec.members = vec![GroupMember {
        value: "u-gil".into(),
        ..Default::default()
    }];
    groups.create(&PostParams::default(), &team).await.unwrap();
    let _controllers = start_controllers(&env);

    // While the receiver is down, the user is not Synced and says why.
    let condition = eventually("the outage to show", || async {
        let status = users.get("u-gil").await.ok()?.status?;
        status.conditions.into_iter().find(|c| {
            c.type_ == "Synced" && c.status == "False" && c.reason == "ApplicationUnavailable"
        })
    })
    .await;
    assert!(
        condition.message.contains("unavailable"),
        "{}",
        condition.message
    );
    assert!(receiver.accepted().is_empty());

    receiver.up();
    let expected = ["user.created", "group.created", "group.members_added"];
    eventually("every event to be delivered", || async {
        let types: Vec<String> = receiver
            .accepted()
            .into_iter()
            .map(|d| d.event_type)
            .collect();
        expected
            .iter()
            .all(|t| types.iter().any(|got| got == t))
            .then_some(())
    })
    .await;
    let deliveries = receiver.deliveries();
    assert!(
        deliveries.iter().all(|d| d.verified),
        "every delivery is signed with the policy's key"
    );
    let gil = users.get("u-gil").await.unwrap();
    let created = deliveries
        .iter()
        .filter(|d| d.event_type == "user.created")
        .collect::<Vec<_>>();
    assert!(
        created.len() >= 2,
        "the user.created event was retried: {} attempts",
        created.len()
    );
    let key_of_first = &created[0].event_id;
    assert!(
        created.iter().all(|d| &d.event_id == key_of_first),
        "a redelivered event carries the same key"
    );
    assert_eq!(
        key_of_first,
        &format!(
            "{}:{}:user.created",
            gil.metadata.uid.as_deref().unwrap(),
            gil.metadata.generation.unwrap()
        )
    );
    assert_eq!(
        created.last().unwrap().body["user"]["userName"],
        "gil@example.com"
    );
}

#[tokio::test]
async fn a_resync_of_unchanged_objects_makes_no_downstream_call() {
    let env = env().await;
    let key = b"another-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    webhook_policy(&env, "wiki", &receiver.url, key).await;
    let users: Api<User> = env.api();
    for i in 0..20 {
        users
            .create(
                &PostParams::default(),
                &user(&format!("u-{i}"), "wiki", &format!("user{i}@example.com")),
            )
            .await
            .unwrap();
    }
    let first = start_controllers(&env);
    for i in 0..20 {
        synced(&users, &format!("u-{i}")).await;
    }
    drop(first);
    let before = receiver.deliveries().len();
    let versions = |list: Vec<User>| -> Vec<String> {
        list.into_iter()
            .map(|u| u.metadata.resource_version.unwrap())
            .collect()
    };
    let stored = versions(users.list(&Default::default()).await.unwrap().items);

    // A new controller lists everything and reconciles it all: a full resync.
    let _second = start_controllers(&env);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        receiver.deliveries().len(),
        before,
        "no downstream call for unchanged users"
    );
    assert_eq!(
        versions(users.list(&Default::default()).await.unwrap().items),
        stored,
        "and no status write either"
    );
}

#[tokio::test]
async fn policy_status_publishes_urls_counts_and_what_is_wrong() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    // The SCIM tokens the policy names.
    let mut tokens = Secret::default();
    tokens.metadata.name = Some("crm-scim-tokens".into());
    tokens.string_data = Some([("t".to_owned(), "crm-idp-token-0123456789".to_owned())].into());
    env.api::<Secret>()
        .create(&PostParams::default(), &tokens)
        .await
        .unwrap();
    // A second policy for the same application, and one whose credentials are missing.
    let mut twin = scim_policy("crm-twin");
    twin.spec.application = env
        .api::<ProvisioningPolicy>()
        .get("crm")
        .await
        .unwrap()
        .spec
        .application;
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &twin)
        .await
        .unwrap();
    let users: Api<User> = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-1", "crm", "one@example.com"),
        )
        .await
        .unwrap();
    let mut inactive = user("u-2", "crm", "two@example.com");
    inactive.spec.active = Some(false);
    users
        .create(&PostParams::default(), &inactive)
        .await
        .unwrap();
    env.api::<Group>()
        .create(&PostParams::default(), &group("g-1", "crm", "G"))
        .await
        .unwrap();
    let _controllers = start_controllers(&env);

    let policies: Api<ProvisioningPolicy> = env.api();
    let status = eventually("the policy's counts", || async {
        let status = policies.get("crm").await.ok()?.status?;
        let counts = status.counts.clone()?;
        (counts.users == 2 && counts.active_users == 1 && counts.groups == 1).then_some(status)
    })
    .await;
    assert_eq!(
        status.scim_base_url,
        Some(format!(
            "{}/scim/{}/crm/v2",
            crate::support::saml::PUBLIC_URL,
            env.namespace
        ))
    );
    let condition = |status: &roster::api::ProvisioningPolicyStatus, type_: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
            .unwrap()
    };
    assert_eq!(condition(&status, "ScimTokens").status, "True");
    assert_eq!(condition(&status, "Application").status, "True");
    let exclusive = condition(&status, "Exclusive");
    assert_eq!(exclusive.status, "False");
    assert!(
        exclusive.message.contains("crm-twin"),
        "{}",
        exclusive.message
    );
    assert_eq!(condition(&status, "Ready").status, "False");

    let twin = eventually("the twin's status", || async {
        policies.get("crm-twin").await.ok()?.status
    })
    .await;
    let tokens = condition(&twin, "ScimTokens");
    assert_eq!(
        (tokens.status.as_str(), tokens.reason.as_str()),
        ("False", "TokensMissing")
    );
}

#[tokio::test]
async fn what_the_identity_provider_pushes_over_scim_reaches_the_application() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    // The policy's SCIM tokens, for the in-process SCIM service.
    let mut tokens = Secret::default();
    tokens.metadata.name = Some("crm-scim-tokens".into());
    tokens.string_data = Some([("t".to_owned(), "idp-token-0123456789abcdef".to_owned())].into());
    env.api::<Secret>()
        .create(&PostParams::default(), &tokens)
        .await
        .unwrap();
    let origin = crate::support::scim::start(env.client.clone()).await;
    let base = format!("{origin}/scim/{}/crm/v2", env.namespace);
    let http = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth("idp-token-0123456789abcdef")
            .json(&body)
            .send()
    };
    let mut ids = Vec::new();
    for name in ["hal", "ivy", "jon"] {
        let reply = post("/Users", json!({"userName": format!("{name}@example.com")}))
            .await
            .unwrap();
        let body: serde_json::Value = reply.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let reply = post("/Groups", json!({"displayName": "Pushed", "members": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>()}))
        .await
        .unwrap();
    let gid = reply.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _controllers = start_controllers(&env);

    let users: Api<User> = env.api();
    let mut remote_ids = Vec::new();
    for id in &ids {
        remote_ids.push(synced(&users, id).await);
    }
    remote_ids.sort();
    let groups: Api<Group> = env.api();
    let remote_group = eventually("the group to reach the application", || async {
        groups.get(&gid).await.ok()?.status?.remote_id
    })
    .await;
    eventually("all three members to reach the application", || async {
        let (_, body) = app.get(&format!("/Groups/{remote_group}")).await;
        let mut members: Vec<String> = body["members"]
            .as_array()?
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_owned())
            .collect();
        members.sort();
        (members == remote_ids).then_some(())
    })
    .await;
    let status = groups.get(&gid).await.unwrap().status.unwrap();
    assert_eq!(status.member_count, Some(3));
}

#[tokio::test]
async fn jit_users_not_seen_for_deprovision_after_days_are_deactivated() {
    let env = env().await;
    let key = b"idle-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    let mut secret = Secret::default();
    secret.metadata.name = Some("wiki-webhook".into());
    secret.data = Some(
        [(
            "signing-key".to_owned(),
            k8s_openapi::ByteString(key.to_vec()),
        )]
        .into(),
    );
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut policy = crate::support::fixtures::jit_policy("wiki");
    policy.spec.application.webhook.as_mut().unwrap().url = receiver.url.clone();
    policy.spec.jit.as_mut().unwrap().deprovision_after_days = Some(30);
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();

    let users: Api<User> = env.api();
    let jit = |name: &str, user_name: &str| {
        let mut u = user(name, "wiki", user_name);
        u.spec.subject = Some(format!("subject-{name}"));
        u.spec.display_name = Some("Kept".into());
        u.metadata.labels = Some([("roster.dev/source".to_owned(), "jit".to_owned())].into());
        u
    };
    users
        .create(&PostParams::default(), &jit("u-idle", "idle@example.com"))
        .await
        .unwrap();
    users
        .create(
            &PostParams::default(),
            &jit("u-recent", "recent@example.com"),
        )
        .await
        .unwrap();
    // Last logins, as the SAML handler records them.
    for (name, days_ago) in [("u-idle", 45), ("u-recent", 2)] {
        let at = k8s_openapi::jiff::Timestamp::now()
            - k8s_openapi::jiff::SignedDuration::from_hours(24 * days_ago);
        let patch = json!({"apiVersion": "roster.dev/v1alpha1", "kind": "User", "status": {"lastLogin": at.to_string()}});
        users
            .patch_status(
                name,
                &PatchParams::apply("roster-jit").force(),
                &Patch::Apply(&patch),
            )
            .await
            .unwrap();
    }
    let _controllers = start_controllers(&env);

    eventually("the idle user to be deactivated", || async {
        let user = users.get("u-idle").await.ok()?;
        (user.spec.active == Some(false)).then_some(())
    })
    .await;
    synced(&users, "u-idle").await;
    // Never synced before, the account reaches the application disabled.
    let last = receiver
        .accepted()
        .into_iter()
        .rfind(|d| d.body["user"]["userName"] == "idle@example.com")
        .expect("an event about the idle user");
    assert_eq!(last.body["user"]["active"], false, "{}", last.body);
    let idle = users.get("u-idle").await.unwrap();
    assert_eq!(idle.spec.active, Some(false));
    assert_eq!(
        idle.spec.display_name.as_deref(),
        Some("Kept"),
        "nothing else changes"
    );
    assert_eq!(synced(&users, "u-recent").await, "u-recent");
    assert_ne!(
        users.get("u-recent").await.unwrap().spec.active,
        Some(false)
    );
}
