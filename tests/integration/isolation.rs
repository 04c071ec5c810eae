//! Isolation between policies in one namespace: a group holds only Users of
//! its own policy, and a policy's bearer tokens come only from a Secret meant
//! to hold them.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, PostParams};
use roster::api::{DeprovisionAction, Group, GroupMember, ProvisioningPolicy};
use serde_json::{Value, json};

use crate::controller::{event, eventually, policy_for, start_controllers, synced};
use crate::support::apps::Scim2Server;
use crate::support::fixtures::{group, scim_policy, user};
use crate::support::scim::{Reply, ScimServer, serve};
use crate::support::{TestEnv, env};

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn create_user(server: &ScimServer, user_name: &str) -> String {
    let reply = server
        .post(
            "/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Asserts 400 invalidValue whose detail names `value`.
fn assert_refused_naming(reply: &Reply, value: &str) {
    reply.assert_error(400, Some("invalidValue"));
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains(value), "detail names {value}: {detail}");
}

/// The group's and its slices' resourceVersions: what any write would change.
async fn versions(env: &TestEnv, gid: &str) -> (String, BTreeMap<String, String>) {
    let group = env.api::<Group>().get(gid).await.unwrap();
    let slices = crate::scim::versions(&env.api()).await;
    (group.metadata.resource_version.unwrap(), slices)
}

#[tokio::test]
async fn a_group_write_naming_another_policys_user_is_refused_and_changes_nothing() {
    let env = env().await;
    let crm = serve(&env, "crm", roster::api::Mode::Scim).await;
    let erp = serve(&env, "erp", roster::api::Mode::Scim).await;
    let ours = create_user(&crm, "ada@example.com").await;
    let theirs = create_user(&erp, "bob@example.com").await;
    let created = crm
        .post(
            "/Groups",
            &json!({"schemas": [GROUP], "displayName": "Sales", "members": [{"value": ours}]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let gid = created.body["id"].as_str().unwrap().to_owned();
    let before = versions(&env, &gid).await;
    assert_eq!(before.1.len(), 1, "one slice holds the member");

    // PATCH add (Entra's shape), with a rename in the same request: all or nothing.
    let reply = crm
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": "Renamed"},
                {"op": "add", "path": "members", "value": [{"value": theirs}]}
            ]}),
        )
        .await;
    assert_refused_naming(&reply, &theirs);
    println!("PATCH add foreign: {} {}", reply.status, reply.body);
    // A member id that names no User at all: the same answer.
    let ghost = "2819c223-7f76-453a-919d-413861904646";
    let reply = crm
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": ghost}]}]}),
        )
        .await;
    assert_refused_naming(&reply, ghost);
    // PATCH replace of the whole set and PUT are checked the same way.
    let reply = crm
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members", "value": [{"value": ours}, {"value": theirs}]}]}),
        )
        .await;
    assert_refused_naming(&reply, &theirs);
    let reply = crm
        .put(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [GROUP], "displayName": "Put", "members": [{"value": theirs}]}),
        )
        .await;
    assert_refused_naming(&reply, &theirs);
    assert_eq!(
        versions(&env, &gid).await,
        before,
        "the group and its slices are untouched"
    );
    assert_eq!(
        env.api::<Group>()
            .get(&gid)
            .await
            .unwrap()
            .spec
            .display_name,
        "Sales"
    );

    // POST: no group is created.
    let reply = crm
        .post(
            "/Groups",
            &json!({"schemas": [GROUP], "displayName": "Mixed", "members": [{"value": ours}, {"value": theirs}]}),
        )
        .await;
    assert_refused_naming(&reply, &theirs);
    let groups = env.api::<Group>().list(&Default::default()).await.unwrap();
    assert_eq!(groups.items.len(), 1, "no group from the refused POST");

    // The same PATCH with a user of the group's own policy goes through.
    let second = create_user(&crm, "cy@example.com").await;
    let reply = crm
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": [{"value": second}]}]}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = crm.get(&format!("/Groups/{gid}")).await;
    let mut members: Vec<&str> = reply.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort();
    let mut expected = vec![ours.as_str(), second.as_str()];
    expected.sort();
    assert_eq!(members, expected);
}

fn condition(conditions: &[Condition], type_: &str) -> Option<Condition> {
    conditions.iter().find(|c| c.type_ == type_).cloned()
}

#[tokio::test]
async fn a_hand_written_group_naming_another_policys_user_does_not_push_it() {
    let env = env().await;
    let crm_app = Scim2Server::start(0).await;
    let erp_app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &crm_app, DeprovisionAction::Disable).await;
    policy_for(&env, "erp", &erp_app, DeprovisionAction::Disable).await;
    let users = env.api();
    users
        .create(
            &PostParams::default(),
            &user("u-ada", "crm", "ada@example.com"),
        )
        .await
        .unwrap();
    users
        .create(
            &PostParams::default(),
            &user("u-bob", "erp", "bob@example.com"),
        )
        .await
        .unwrap();
    let mut sales = group("g-sales", "crm", "Sales");
    sales.spec.members = ["u-ada", "u-bob", "u-ghost"]
        .map(|id| GroupMember {
            value: id.into(),
            ..Default::default()
        })
        .into();
    let groups: Api<Group> = env.api();
    groups.create(&PostParams::default(), &sales).await.unwrap();
    let _controllers = start_controllers(&env);

    let ada = synced(&users, "u-ada").await;
    let bob = synced(&users, "u-bob").await;
    let foreign = event(&env, Some("ForeignMember"), Some("g-sales")).await;
    assert_eq!(foreign.type_.as_deref(), Some("Warning"));
    let note = foreign.note.unwrap_or_default();
    assert!(
        note.contains("u-bob") && note.contains("policy erp"),
        "{note}"
    );
    let unknown = event(&env, Some("UnknownMember"), Some("g-sales")).await;
    assert!(unknown.note.unwrap_or_default().contains("u-ghost"));
    println!("ForeignMember Event: {note}");

    let remote = eventually("the group to reach crm's application", || async {
        groups.get("g-sales").await.ok()?.status?.remote_id
    })
    .await;
    let members = eventually("ada to be pushed as a member", || async {
        let (_, body) = crm_app.get(&format!("/Groups/{remote}")).await;
        let members: Vec<String> = body["members"]
            .as_array()?
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_owned())
            .collect();
        (!members.is_empty()).then_some(members)
    })
    .await;
    assert_eq!(members, vec![ada], "only crm's own user, never erp's {bob}");
    let status = eventually("the Members condition", || async {
        let status = groups.get("g-sales").await.ok()?.status?;
        condition(&status.conditions, "Members").map(|members| (status, members))
    })
    .await;
    let (status, members) = status;
    assert_eq!(
        (members.status.as_str(), members.reason.as_str()),
        ("False", "ForeignMember")
    );
    assert!(
        members.message.contains("u-bob (a User of policy erp)")
            && members.message.contains("u-ghost (no such User)"),
        "{}",
        members.message
    );
    assert!(!status.synced_members.contains_key("u-bob"));
    assert_eq!(
        condition(&status.conditions, "Ready").unwrap().reason,
        "ForeignMember"
    );
    println!("Members condition: {}", members.message);
}

/// Creates a Scim policy `name` whose token Secret is `secret` (created first).
async fn policy_with_tokens(env: &TestEnv, name: &str, secret: Secret) {
    let mut secret = secret;
    secret.metadata.name = Some(format!("{name}-scim-tokens"));
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &scim_policy(name))
        .await
        .unwrap();
}

fn opaque(values: &[(&str, &str)]) -> Secret {
    Secret {
        data: Some(
            values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The status of `GET /Users` of `policy` with bearer `token`; a 401 must
/// be a SCIM Error.
async fn users_status(origin: &str, env: &TestEnv, policy: &str, token: &str) -> u16 {
    let reply = reqwest::Client::new()
        .get(format!("{origin}/scim/{}/{policy}/v2/Users", env.namespace))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers");
    let status = reply.status().as_u16();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    if status == 401 {
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{body}"
        );
    }
    status
}

/// Waits for the policy's ScimTokens condition.
async fn scim_tokens(env: &TestEnv, policy: &str) -> Condition {
    let policies: Api<ProvisioningPolicy> = env.api();
    eventually(&format!("{policy}'s ScimTokens condition"), || async {
        condition(
            &policies.get(policy).await.ok()?.status?.conditions,
            "ScimTokens",
        )
    })
    .await
}

#[tokio::test]
async fn a_service_account_token_secret_is_never_a_token_source() {
    let env = env().await;
    let long = "a-value-long-enough-to-be-a-token-0123456789";
    let mut sa = opaque(&[
        ("namespace", &env.namespace),
        ("ca.crt", "-----BEGIN CERTIFICATE-----"),
        ("token", long),
    ]);
    sa.type_ = Some("kubernetes.io/service-account-token".into());
    sa.metadata.annotations = Some(
        [(
            "kubernetes.io/service-account.name".to_owned(),
            "default".to_owned(),
        )]
        .into(),
    );
    policy_with_tokens(&env, "crm", sa).await;
    // The control: the same value in an Opaque Secret is a token.
    policy_with_tokens(&env, "erp", opaque(&[("token", long)])).await;
    let origin = crate::support::scim::start(env.client.clone()).await;

    assert_eq!(
        users_status(&origin, &env, "crm", &env.namespace).await,
        401
    );
    assert_eq!(users_status(&origin, &env, "crm", long).await, 401);
    assert_eq!(users_status(&origin, &env, "erp", long).await, 200);

    let _controllers = start_controllers(&env);
    let tokens = scim_tokens(&env, "crm").await;
    assert_eq!(
        (tokens.status.as_str(), tokens.reason.as_str()),
        ("False", "ServiceAccountTokenSecret")
    );
    assert!(!tokens.message.contains(long), "{}", tokens.message);
    println!("crm ScimTokens: {}", tokens.message);
    assert_eq!(scim_tokens(&env, "erp").await.reason, "TokensPresent");
}

#[tokio::test]
async fn short_and_empty_tokens_are_not_accepted_and_the_condition_names_their_keys() {
    let env = env().await;
    let good = "a-generated-token-0123456789abcdef";
    policy_with_tokens(
        &env,
        "crm",
        opaque(&[("empty", ""), ("good", good), ("short", "changeme")]),
    )
    .await;
    policy_with_tokens(&env, "erp", opaque(&[("short", "changeme\n")])).await;
    let origin = crate::support::scim::start(env.client.clone()).await;

    assert_eq!(users_status(&origin, &env, "crm", "changeme").await, 401);
    assert_eq!(users_status(&origin, &env, "crm", good).await, 200);
    assert_eq!(users_status(&origin, &env, "erp", "changeme").await, 401);

    let _controllers = start_controllers(&env);
    let some = scim_tokens(&env, "crm").await;
    assert_eq!(
        (some.status.as_str(), some.reason.as_str()),
        ("True", "SomeTokensIgnored")
    );
    assert!(
        some.message.contains("key(s) empty, short ignored"),
        "{}",
        some.message
    );
    let none = scim_tokens(&env, "erp").await;
    assert_eq!(
        (none.status.as_str(), none.reason.as_str()),
        ("False", "TokensTooShort")
    );
    for message in [&some.message, &none.message] {
        assert!(!message.contains("changeme"), "no value in {message}");
    }
    println!("crm: {}\nerp: {}", some.message, none.message);
}
