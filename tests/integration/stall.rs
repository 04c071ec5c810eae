//! A stalled API server (connections open, nothing answered): every SCIM
//! and SAML request is answered 503 with Retry-After within the request
//! budget, and what its writes leave behind when the API server resumes
//! never blocks the identity provider's retry, which writes exactly once.

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use reqwest::Method;
use roster::api::{
    DeprovisionAction, GROUP_LABEL, Group, GroupMemberSlice, GroupMemberSliceSpec,
    REQUEST_DEADLINE_ANNOTATION, User, UserNameClaim, UserNameClaimSpec, claim_name,
};
use roster::deadline::{REQUEST_BUDGET, RETRY_AFTER_SECONDS};
use serde_json::{Value, json};

use crate::controller::{event, eventually, policy_for, start_controllers};
use crate::support::apps::Scim2Server;
use crate::support::cut::Cut;
use crate::support::env;
use crate::support::fixtures::{group, scim_policy, user};
use crate::support::saml::{Idp, Response};
use crate::support::scim::{Reply, ScimServer, create_policy, serve};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// The longest a request may take to be answered during a stall: the budget
/// and a margin for this machine.
const ANSWERED_WITHIN: Duration = Duration::from_secs(10);

fn user_body(user_name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": "Stella", "familyName": "Stall"},
        "active": true
    })
}

/// Sends the request again, as an identity provider does after a 503,
/// until it is answered otherwise.
async fn retried(server: &ScimServer, method: Method, path: &str, body: &Value) -> Reply {
    for _ in 0..20 {
        let reply = server.send(method.clone(), path, Some(body)).await;
        if reply.status != 503 {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{method} {path} still 503 after the stall ended");
}

fn assert_try_later(reply: &Reply) {
    reply.assert_error(503, None);
    assert_eq!(
        reply.header("retry-after"),
        Some(RETRY_AFTER_SECONDS.to_string().as_str())
    );
}

#[tokio::test]
async fn scim_requests_during_a_stall_are_503_in_bounded_time_and_each_retry_writes_once() {
    assert!(REQUEST_BUDGET < ANSWERED_WITHIN);
    let env = env().await;
    let token = format!("token-{:016x}", rand::random::<u64>());
    create_policy(&env, scim_policy("crm"), &token).await;
    let cut = Cut::to_api_server().await;
    let origin = crate::support::scim::start_watching(cut.client()).await;
    let server = ScimServer::at(&origin, &env.namespace, "crm", &token);
    let known = server
        .send(
            Method::POST,
            "/Users",
            Some(&user_body("known@example.com")),
        )
        .await;
    assert_eq!(known.status, 201, "{}", known.body);
    let known = known.body["id"].as_str().unwrap().to_owned();

    cut.freeze(true);
    let new_user = user_body("stalled@example.com");
    let new_group = json!({
        "schemas": [GROUP],
        "displayName": "Stalled",
        "members": [{"value": known}]
    });
    let deactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}]
    });
    let known_path = format!("/Users/{known}");
    let started = Instant::now();
    let (post_user, post_group, patch_user) = tokio::join!(
        server.send(Method::POST, "/Users", Some(&new_user)),
        server.send(Method::POST, "/Groups", Some(&new_group)),
        server.send(Method::PATCH, &known_path, Some(&deactivate)),
    );
    let waited = started.elapsed();
    for reply in [&post_user, &post_group, &patch_user] {
        assert_try_later(reply);
    }
    assert!(
        waited < ANSWERED_WITHIN,
        "answered after {waited:?} (budget {REQUEST_BUDGET:?})"
    );
    println!("three SCIM requests during the stall answered 503 after {waited:?}");

    // The API server resumes and carries out whatever it was sent; the
    // identity provider retries each request.
    cut.freeze(false);
    let created = retried(&server, Method::POST, "/Users", &new_user).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let group = retried(&server, Method::POST, "/Groups", &new_group).await;
    assert_eq!(group.status, 201, "{}", group.body);
    let patched = retried(&server, Method::PATCH, &known_path, &deactivate).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["active"], false);

    let users: Vec<User> = env
        .api::<User>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let stalled: Vec<&User> = users
        .iter()
        .filter(|u| u.spec.user_name == "stalled@example.com")
        .collect();
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0].name_any(), id);
    let claim = env
        .api::<UserNameClaim>()
        .get(&claim_name("crm", "stalled@example.com"))
        .await
        .unwrap();
    assert_eq!(claim.spec.user, id, "the one claim names the one User");
    let groups: Vec<Group> = env
        .api::<Group>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let stalled: Vec<&Group> = groups
        .iter()
        .filter(|g| g.spec.display_name == "Stalled")
        .collect();
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    let read = server
        .get(&format!("/Groups/{}", stalled[0].name_any()))
        .await;
    assert_eq!(read.body["members"][0]["value"], known.as_str());
    assert_eq!(read.body["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_user_written_after_its_request_gave_up_is_taken_over_once_by_the_retry() {
    let env = env().await;
    let server = serve(&env, "crm", roster::api::Mode::Scim).await;
    // What a stalled API server leaves when it resumes: the claim and the
    // User of a POST that had been answered 503 a minute ago.
    let deadline = Timestamp::now() - SignedDuration::from_secs(60);
    let claim = UserNameClaim::new(
        &claim_name("crm", "late@example.com"),
        UserNameClaimSpec {
            policy: "crm".into(),
            user_name: "late@example.com".into(),
            user: "u-late".into(),
            pending_until: Some(Time(deadline)),
        },
    );
    env.api::<UserNameClaim>()
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    env.api::<User>()
        .create(
            &PostParams::default(),
            &user("u-late", "crm", "late@example.com"),
        )
        .await
        .unwrap();

    let retry = server
        .send(Method::POST, "/Users", Some(&user_body("late@example.com")))
        .await;
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(
        retry.body["id"], "u-late",
        "the retry is answered with that user"
    );
    assert_eq!(retry.body["name"]["familyName"], "Stall");
    let users = env.api::<User>().list(&Default::default()).await.unwrap();
    assert_eq!(users.items.len(), 1);

    // Taken over, the user is known: a second creation is a conflict.
    server
        .send(Method::POST, "/Users", Some(&user_body("late@example.com")))
        .await
        .assert_error(409, Some("uniqueness"));
    // A user written in time holds its name as ever.
    let in_time = server
        .send(
            Method::POST,
            "/Users",
            Some(&user_body("prompt@example.com")),
        )
        .await;
    assert_eq!(in_time.status, 201);
    server
        .send(
            Method::POST,
            "/Users",
            Some(&user_body("prompt@example.com")),
        )
        .await
        .assert_error(409, Some("uniqueness"));
}

#[tokio::test]
async fn a_saml_login_during_a_stall_gets_the_try_again_page_in_bounded_time() {
    let env = env().await;
    let idp = Idp::okta();
    let mut policy = crate::support::fixtures::jit_policy("crm");
    policy.spec.saml = Some(idp.trust());
    crate::support::saml::create_policy(&env, &policy).await;
    let cut = Cut::to_api_server().await;
    let server = crate::support::saml::start_with(cut.client(), &env, "crm").await;
    let started = server.login(None).await;
    let signed = Response::okta(&idp, &server, "stella@example.com", "Stella", "Stall")
        .answering(&started.request_id)
        .sign(&idp);

    cut.freeze(true);
    let sent = Instant::now();
    let reply = server
        .post(&signed, Some(&started.relay_state), Some(&started.cookie))
        .await;
    let waited = sent.elapsed();
    cut.freeze(false);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("Try again"), "{}", reply.body);
    assert_eq!(
        reply.headers.get("retry-after").unwrap(),
        &RETRY_AFTER_SECONDS.to_string()
    );
    assert!(waited < ANSWERED_WITHIN, "answered after {waited:?}");
    println!("a login during the stall answered 503 after {waited:?}");

    // After the stall a new login goes through, creating the user once.
    let again = Response::okta(&idp, &server, "stella@example.com", "Stella", "Stall");
    let reply = server.sp_login(&idp, again).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let users = crate::support::saml::users(&env).await;
    assert_eq!(users.len(), 1, "{users:?}");
}

#[tokio::test]
async fn a_group_written_after_its_request_gave_up_is_removed_before_provisioning() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let groups: Api<Group> = env.api();
    let slices: Api<GroupMemberSlice> = env.api();
    env.api::<User>()
        .create(
            &PostParams::default(),
            &user("u-dan", "crm", "dan@example.com"),
        )
        .await
        .unwrap();
    // A SCIM creation writes the members first and the Group last; this
    // Group landed a minute after its request's deadline.
    let mut slice = GroupMemberSlice::new(
        "g-late-0",
        GroupMemberSliceSpec {
            group: "g-late".into(),
            members: serde_json::from_value(json!({"u-dan": {"type": "User"}})).unwrap(),
        },
    );
    slice.metadata.labels = Some([(GROUP_LABEL.to_owned(), "g-late".to_owned())].into());
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let stamped = |group: &mut Group, deadline: Timestamp| {
        group.metadata.annotations =
            Some([(REQUEST_DEADLINE_ANNOTATION.to_owned(), deadline.to_string())].into());
    };
    let mut late = group("g-late", "crm", "Late");
    stamped(&mut late, Timestamp::now() - SignedDuration::from_secs(60));
    groups.create(&PostParams::default(), &late).await.unwrap();
    // One written in time is provisioned as ever.
    let mut prompt = group("g-prompt", "crm", "Prompt");
    stamped(
        &mut prompt,
        Timestamp::now() + SignedDuration::from_secs(60),
    );
    groups
        .create(&PostParams::default(), &prompt)
        .await
        .unwrap();

    let _controllers = start_controllers(&env);
    eventually("the prompt group to be provisioned", || async {
        groups.get("g-prompt").await.ok()?.status?.remote_id
    })
    .await;
    eventually(
        "the abandoned group and its slices to be removed",
        || async {
            let gone = groups.get_opt("g-late").await.unwrap().is_none();
            let no_slices = slices
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty();
            (gone && no_slices).then_some(())
        },
    )
    .await;
    let removed = event(&env, Some("Abandoned"), Some("g-late")).await;
    assert_eq!(removed.type_.as_deref(), Some("Warning"));
    let (_, listed) = app.get("/Groups").await;
    let names: Vec<&str> = listed["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["displayName"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Prompt"],
        "the abandoned group never reached the application"
    );
}
