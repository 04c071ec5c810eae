//! Deprovisioning safety rails against the real API server and a real SCIM
//! application (scim2-server): the circuit breaker holds mass removals,
//! and accounts Roster never managed are never touched.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use reqwest::Method;
use roster::api::{DeprovisionAction, Group, GroupMember, ProvisioningPolicy, User};
use serde_json::{Value, json};

use crate::controller::{
    event, eventually, eventually_within, policy_for, start_controllers, synced,
};
use crate::support::apps::Scim2Server;
use crate::support::fixtures::{create_users, group, user};
use crate::support::scim::ScimServer;
use crate::support::{TestEnv, env};

const IDP_TOKEN: &str = "idp-token-0123456789abcdef";

/// Policy `crm` provisioning into `app`, with a SCIM service for the IdP
/// that lets a test push fast.
async fn crm(env: &TestEnv, app: &Scim2Server) -> ScimServer {
    policy_for(env, "crm", app, DeprovisionAction::Disable).await;
    let mut tokens = Secret::default();
    tokens.metadata.name = Some("crm-scim-tokens".into());
    tokens.string_data = Some([("t".to_owned(), IDP_TOKEN.to_owned())].into());
    env.api::<Secret>()
        .create(&PostParams::default(), &tokens)
        .await
        .unwrap();
    let fast =
        json!({"spec": {"scim": {"rateLimit": {"requestsPerSecond": 10000, "burst": 10000}}}});
    env.api::<ProvisioningPolicy>()
        .patch("crm", &PatchParams::default(), &Patch::Merge(&fast))
        .await
        .unwrap();
    let origin = crate::support::scim::start(env.client.clone()).await;
    ScimServer::at(&origin, &env.namespace, "crm", IDP_TOKEN)
}

/// POSTs `n` users over SCIM; returns their ids.
async fn push_users(idp: &ScimServer, n: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let body = json!({"userName": format!("person{i:04}@example.com")});
            let reply = idp.send(Method::POST, "/Users", Some(&body)).await;
            assert_eq!(reply.status.as_u16(), 201, "{}", reply.body);
            reply.body["id"].as_str().unwrap().to_owned()
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Sets `active` on each user over SCIM, as Okta and Entra ID do; every
/// request must be accepted (the IdP is never blocked).
async fn set_active(idp: &ScimServer, ids: &[String], active: bool) {
    futures::stream::iter(ids)
        .map(|id| async move {
            let body = json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": active}}],
            });
            let reply = idp
                .send(Method::PATCH, &format!("/Users/{id}"), Some(&body))
                .await;
            assert_eq!(reply.status.as_u16(), 200, "{}", reply.body);
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// How many of the application's accounts are inactive.
async fn inactive_accounts(app: &Scim2Server) -> usize {
    app.users()
        .await
        .iter()
        .filter(|u| u["active"] == Value::Bool(false))
        .count()
}

async fn policy(env: &TestEnv) -> ProvisioningPolicy {
    env.api::<ProvisioningPolicy>().get("crm").await.unwrap()
}

/// Waits until the policy's status holds `held` account actions; returns
/// the approval token.
async fn quarantined_holding(env: &TestEnv, accounts: i64, members: i64) -> String {
    eventually(
        &format!("the policy to hold {accounts} accounts and {members} member removals"),
        || async {
            let q = policy(env).await.status?.quarantine?;
            (q.held_accounts == accounts && q.held_member_removals == members).then_some(q.token)
        },
    )
    .await
}

async fn approve(env: &TestEnv, token: &str) {
    let approval =
        json!({"metadata": {"annotations": {"roster.dev/approve-deprovisioning": token}}});
    env.api::<ProvisioningPolicy>()
        .patch("crm", &PatchParams::default(), &Patch::Merge(&approval))
        .await
        .unwrap();
}

fn condition(policy: &ProvisioningPolicy, type_: &str) -> (String, String) {
    let c = policy
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

/// How long the debug build gets to provision or deactivate 1,000 users
/// in a Python application while the whole suite shares two cores.
const BULK: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until every User's account is synced at its generation.
async fn all_synced(users: &Api<User>, n: usize) {
    eventually_within(&format!("{n} users to sync"), BULK, || async {
        let list = users.list(&Default::default()).await.ok()?;
        let done = list
            .items
            .iter()
            .filter(|u| {
                let account = u.status.as_ref().and_then(|s| s.account.as_ref());
                account.and_then(|a| a.synced_generation) == u.metadata.generation
            })
            .count();
        (done == n).then_some(())
    })
    .await;
}

/// Waits until `n` Users are synced and the policy counts them active,
/// the share its circuit breaker's limit is taken of.
async fn provisioned(env: &TestEnv, users: &Api<User>, n: i64) {
    all_synced(users, n as usize).await;
    eventually(&format!("the policy to count {n} active users"), || async {
        let counts = policy(env).await.status?.counts?;
        (counts.active_users == n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_mass_deactivation_is_held_at_the_limit_until_an_operator_approves_it() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    let idp = crm(&env, &app).await;
    let ids = push_users(&idp, 1000).await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    provisioned(&env, &users, 1000).await;

    // A wrong scope in the IdP: everyone is deactivated.
    set_active(&idp, &ids, false).await;
    // The limit is max(20, 10 % of 1000) = 100; the other 900 are held.
    let token = quarantined_holding(&env, 900, 0).await;
    assert_eq!(inactive_accounts(&app).await, 100, "exactly the limit left");
    let held = policy(&env).await;
    assert_eq!(
        condition(&held, "Quarantined"),
        ("True".into(), "DeprovisioningHeld".into())
    );
    assert_eq!(
        condition(&held, "Ready"),
        ("False".into(), "Quarantined".into())
    );
    let quarantine = held.status.as_ref().unwrap().quarantine.clone().unwrap();
    assert_eq!(quarantine.held.len(), 10, "a bounded sample is named");
    assert!(quarantine.held[0].starts_with("User ") && quarantine.held[0].ends_with(": Disable"));
    let warning = event(&env, Some("Quarantined"), Some("crm")).await;
    assert!(
        warning
            .note
            .unwrap_or_default()
            .contains(&quarantine.reason)
    );
    // Nothing is lost: the Users keep their desired state.
    let inactive = users.list(&Default::default()).await.unwrap();
    assert!(inactive.items.iter().all(|u| u.spec.active == Some(false)));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        inactive_accounts(&app).await,
        100,
        "nothing else leaves while held"
    );

    // An approval with an old token releases nothing.
    approve(&env, "not-this-quarantine").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(inactive_accounts(&app).await, 100);

    approve(&env, &token).await;
    eventually_within(
        "all 1000 deactivations to reach the application",
        BULK,
        || async { (inactive_accounts(&app).await == 1000).then_some(()) },
    )
    .await;
    eventually("the quarantine to end", || async {
        policy(&env)
            .await
            .status?
            .quarantine
            .is_none()
            .then_some(())
    })
    .await;
    let released = policy(&env).await;
    assert_eq!(condition(&released, "Quarantined").0, "False");
    event(&env, Some("DeprovisioningApproved"), Some("crm")).await;
}

#[tokio::test]
async fn held_deactivations_the_identity_provider_takes_back_never_leave() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    let idp = crm(&env, &app).await;
    let ids = push_users(&idp, 200).await;
    let _controllers = start_controllers(&env);
    let users: Api<User> = env.api();
    provisioned(&env, &users, 200).await;

    set_active(&idp, &ids, false).await;
    // max(20, 10 % of 200) = 20 go out; 180 are held.
    quarantined_holding(&env, 180, 0).await;
    assert_eq!(inactive_accounts(&app).await, 20);

    // The IdP's scope is fixed: everyone is active again.
    set_active(&idp, &ids, true).await;
    eventually("the quarantine to dissolve", || async {
        policy(&env)
            .await
            .status?
            .quarantine
            .is_none()
            .then_some(())
    })
    .await;
    eventually(
        "the 20 deactivated accounts to be enabled again",
        || async { (inactive_accounts(&app).await == 0).then_some(()) },
    )
    .await;
    all_synced(&users, 200).await;
    let disables = app
        .users()
        .await
        .iter()
        .filter(|u| u["active"] == Value::Bool(false))
        .count();
    assert_eq!(disables, 0, "none of the 180 held deactivations went out");
}

#[tokio::test]
async fn a_group_emptied_through_git_keeps_its_members_until_approved() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    let _idp = crm(&env, &app).await;
    let ids: Vec<String> = (0..30).map(|i| format!("m-{i:02}")).collect();
    create_users(&env, "crm", &ids).await;
    let mut team = group("team", "crm", "Team");
    team.spec.members = ids
        .iter()
        .map(|id| GroupMember {
            value: id.clone(),
            ..Default::default()
        })
        .collect();
    let groups: Api<Group> = env.api();
    groups.create(&PostParams::default(), &team).await.unwrap();
    let _controllers = start_controllers(&env);
    let remote = eventually("the group and its 30 members to sync", || async {
        let status = groups.get("team").await.ok()?.status?;
        (status.synced_members.len() == 30).then_some(status.remote_id?)
    })
    .await;
    let members = || async {
        let (_, body) = app.get(&format!("/Groups/{remote}")).await;
        body["members"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(members().await, 30);

    // A mis-applied commit empties the group.
    let emptied = json!({"spec": {"members": []}});
    groups
        .patch("team", &PatchParams::default(), &Patch::Merge(&emptied))
        .await
        .unwrap();
    let token = quarantined_holding(&env, 0, 30).await;
    let synced = eventually("the group to say its removals are held", || async {
        let status = groups.get("team").await.ok()?.status?;
        let c = status.conditions.iter().find(|c| c.type_ == "Synced")?;
        (c.reason == "DeprovisionHeld").then_some(status.synced_members.len())
    })
    .await;
    assert_eq!(
        synced, 30,
        "the members stay recorded as in the application"
    );
    assert_eq!(
        members().await,
        30,
        "no member left the application's group"
    );

    approve(&env, &token).await;
    eventually("the members to be removed", || async {
        (members().await == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_account_roster_never_managed_is_never_disabled_or_deleted() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Delete).await;
    // An account the application had before Roster.
    let reply = reqwest::Client::new()
        .post(format!("{}/Users", app.base_url()))
        .bearer_auth(&app.token)
        .header("Content-Type", "application/scim+json")
        .body(
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "zed@example.com",
                "active": true,
            })
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 201);
    let theirs: Value = reply.json().await.unwrap();
    let theirs = theirs["id"].as_str().unwrap().to_owned();

    let users: Api<User> = env.api();
    let mut zed = user("u-zed", "crm", "zed@example.com");
    zed.spec.active = Some(false);
    users.create(&PostParams::default(), &zed).await.unwrap();
    let _controllers = start_controllers(&env);
    let reason = eventually("the inactive user to be refused the account", || async {
        let status = users.get("u-zed").await.ok()?.status?;
        let c = status.conditions.iter().find(|c| c.type_ == "Synced")?;
        (c.status == "False").then(|| c.reason.clone())
    })
    .await;
    assert_eq!(reason, "AccountNotManaged");
    users.delete("u-zed", &Default::default()).await.unwrap();
    eventually("the user to be gone", || async {
        users
            .get_opt("u-zed")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let (status, account) = app.get(&format!("/Users/{theirs}")).await;
    assert_eq!(status, 200, "the account was not deleted");
    assert_eq!(account["active"], true, "nor disabled");

    // An active user adopts it; Roster manages it from then on.
    users
        .create(
            &PostParams::default(),
            &user("u-zed2", "crm", "zed@example.com"),
        )
        .await
        .unwrap();
    assert_eq!(synced(&users, "u-zed2").await, theirs);
}

#[tokio::test]
async fn a_deleted_user_keeps_a_disabled_account_for_the_grace_period_and_can_come_back() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Delete).await;
    let grace = json!({"spec": {"application": {"deleteAfterSeconds": 15}}});
    env.api::<ProvisioningPolicy>()
        .patch("crm", &PatchParams::default(), &Patch::Merge(&grace))
        .await
        .unwrap();
    let users: Api<User> = env.api();
    for (id, name) in [("u-ann", "ann"), ("u-bob", "bob"), ("u-cat", "cat")] {
        users
            .create(
                &PostParams::default(),
                &user(id, "crm", &format!("{name}@example.com")),
            )
            .await
            .unwrap();
    }
    let _controllers = start_controllers(&env);
    let ann = synced(&users, "u-ann").await;
    let bob = synced(&users, "u-bob").await;
    let cat = synced(&users, "u-cat").await;
    let account = |remote: String| {
        let app = &app;
        async move { app.get(&format!("/Users/{remote}")).await }
    };

    for id in ["u-ann", "u-bob", "u-cat"] {
        users.delete(id, &Default::default()).await.unwrap();
    }
    for remote in [&ann, &bob, &cat] {
        eventually("the account to be disabled at once", || async {
            let (status, body) = account(remote.clone()).await;
            (status == 200 && body["active"] == false).then_some(())
        })
        .await;
    }
    let pending = eventually("the User to show its pending deletion", || async {
        let status = users.get_opt("u-bob").await.ok()??.status?;
        let synced = status.conditions.iter().find(|c| c.type_ == "Synced")?;
        (synced.reason == "DeletionPending").then_some(status.account?.delete_at)
    })
    .await;
    assert!(pending.is_some(), "status.account.deleteAt says when");

    // Ann comes back under her userName: the same account, enabled, data intact.
    users
        .create(
            &PostParams::default(),
            &user("u-ann-again", "crm", "ann@example.com"),
        )
        .await
        .unwrap();
    assert_eq!(synced(&users, "u-ann-again").await, ann);
    let (_, body) = account(ann.clone()).await;
    assert_eq!(body["active"], true);

    // An operator deletes Cat's account now.
    let now = json!({"metadata": {"annotations": {"roster.dev/delete-now": "true"}}});
    users
        .patch("u-cat", &PatchParams::default(), &Patch::Merge(&now))
        .await
        .unwrap();
    eventually("the forced deletion", || async {
        (account(cat.clone()).await.0 == 404).then_some(())
    })
    .await;

    // Bob's period ends: his account is deleted and the User goes.
    eventually("bob's account to be deleted after the period", || async {
        (account(bob.clone()).await.0 == 404).then_some(())
    })
    .await;
    eventually("the Users to be gone", || async {
        let ann_gone = users.get_opt("u-ann").await.ok()?.is_none();
        let bob_gone = users.get_opt("u-bob").await.ok()?.is_none();
        (ann_gone && bob_gone).then_some(())
    })
    .await;
    let (status, body) = account(ann).await;
    assert_eq!(
        (status, body["active"].clone()),
        (200, json!(true)),
        "ann's account was handed over, not deleted"
    );
}

#[tokio::test]
async fn a_dry_run_plans_adoptions_and_creates_and_going_live_performs_exactly_them() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    let _idp = crm(&env, &app).await;
    let dry = json!({"spec": {"application": {"dryRun": true}}});
    let policies: Api<ProvisioningPolicy> = env.api();
    policies
        .patch("crm", &PatchParams::default(), &Patch::Merge(&dry))
        .await
        .unwrap();
    // The application already has 200 accounts; 150 of them are Users'.
    let http = reqwest::Client::new();
    let mut existing = std::collections::BTreeMap::new();
    for i in 0..200 {
        let reply = http
            .post(format!("{}/Users", app.base_url()))
            .bearer_auth(&app.token)
            .header("Content-Type", "application/scim+json")
            .body(
                json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("acct{i:03}@example.com"),
                })
                .to_string(),
            )
            .send()
            .await
            .unwrap();
        let body: Value = reply.json().await.unwrap();
        existing.insert(i, body["id"].as_str().unwrap().to_owned());
    }
    let users: Api<User> = env.api();
    let ids: Vec<(String, String)> = (0..150)
        .map(|i| (format!("u-acct{i:03}"), format!("acct{i:03}@example.com")))
        .chain((0..50).map(|i| (format!("u-new{i:03}"), format!("new{i:03}@example.com"))))
        .collect();
    futures::stream::iter(&ids)
        .map(|(id, name)| {
            let users = users.clone();
            async move {
                users
                    .create(&PostParams::default(), &user(id, "crm", name))
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut team = group("team", "crm", "Team");
    team.spec.members = ids[..10]
        .iter()
        .map(|(id, _)| GroupMember {
            value: id.clone(),
            ..Default::default()
        })
        .collect();
    env.api::<Group>()
        .create(&PostParams::default(), &team)
        .await
        .unwrap();
    let _controllers = start_controllers(&env);

    let plan = eventually("the plan to be complete", || async {
        let plan = policies.get("crm").await.ok()?.status?.plan?;
        let complete = plan.counts.get("adoptAccount") == Some(&150)
            && plan.counts.get("createAccount") == Some(&50)
            && plan.counts.get("createGroup") == Some(&1)
            && plan.counts.get("addMember") == Some(&10);
        complete.then_some(plan)
    })
    .await;
    assert_eq!(plan.sample.len(), 10);
    let (ready, reason) = condition(&policies.get("crm").await.unwrap(), "Ready");
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "DryRun"));
    let report = roster::controller::dry_run::report(env.client.clone(), &env.namespace, "crm")
        .await
        .unwrap();
    assert_eq!(
        report.lines().filter(|l| l.starts_with("User ")).count(),
        200,
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "User u-acct007 (acct007@example.com): would adopt account {}",
            existing[&7]
        )),
        "{report}"
    );
    assert!(
        report.contains("User u-new003 (new003@example.com): would create an account"),
        "{report}"
    );
    assert!(
        report.contains("Group team (Team): would create the group; add 10 member(s)"),
        "{report}"
    );
    assert_eq!(app.users().await.len(), 200, "a dry run writes nothing");

    let live = json!({"spec": {"application": {"dryRun": false}}});
    policies
        .patch("crm", &PatchParams::default(), &Patch::Merge(&live))
        .await
        .unwrap();
    all_synced(&users, 200).await;
    let accounts = app.users().await;
    assert_eq!(accounts.len(), 250, "150 adopted, 50 created, no duplicate");
    for i in [0, 7, 149] {
        let remote = synced(&users, &format!("u-acct{i:03}")).await;
        assert_eq!(remote, existing[&i], "adopted, not re-created");
    }
    let remote_group = eventually("the group and its members to go live", || async {
        let status = env.api::<Group>().get("team").await.ok()?.status?;
        (status.synced_members.len() == 10).then_some(status.remote_id?)
    })
    .await;
    let (_, body) = app.get(&format!("/Groups/{remote_group}")).await;
    assert_eq!(body["members"].as_array().map_or(0, Vec::len), 10);
    eventually("the plan to leave the status", || async {
        policies
            .get("crm")
            .await
            .ok()?
            .status?
            .plan
            .is_none()
            .then_some(())
    })
    .await;
}
