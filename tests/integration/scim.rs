//! The SCIM service against the real API server, replaying what Okta and
//! Entra ID send (shared/reference/scim-idps.md) and checking both the answers
//! and the stored User and Group resources.

use kube::api::Api;
use reqwest::Method;
use roster::api::{
    Group, GroupMember, GroupMemberSlice, GroupSpec, MemberKind, Mode, User, UserNameClaim,
};
use serde_json::{Value, json};

use crate::support::env;
use crate::support::scim::{ScimServer, serve};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn okta_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Isaac Brock",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

async fn stored_user(server: &ScimServer, env: &crate::support::TestEnv, id: &str) -> User {
    let _ = server;
    env.api::<User>()
        .get(id)
        .await
        .expect("the User resource exists")
}

fn id_of(reply: &crate::support::scim::Reply) -> String {
    reply.body["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn okta_user_lifecycle() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;

    // Saving the app config in Okta.
    let reply = server.get("/Users?startIndex=1&count=2").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["totalResults"], 0);
    assert_eq!(reply.body["startIndex"], 1, "paging fields are integers");

    // Before creating: look the user up.
    let reply = server
        .get("/Users?filter=userName%20eq%20%22isaac.brock%40example.com%22&startIndex=1&count=100")
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["totalResults"], 0);
    assert_eq!(reply.body["Resources"], json!([]));

    let created = server
        .post("/Users", &okta_user("isaac.brock@example.com"))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = id_of(&created);
    assert!(
        created.body.get("password").is_none(),
        "the password is never returned"
    );
    assert_eq!(
        created.header("location"),
        Some(format!("{}/Users/{id}", server.base_url).as_str())
    );
    assert_eq!(
        created.body["meta"]["location"],
        format!("{}/Users/{id}", server.base_url)
    );
    assert_eq!(
        created.header("etag"),
        created.body["meta"]["version"].as_str()
    );

    // The resource, owned by the SCIM field manager, without the password.
    let user = stored_user(&server, &env, &id).await;
    assert_eq!(user.spec.user_name, "isaac.brock@example.com");
    assert_eq!(user.spec.policy, "crm");
    assert_eq!(
        user.spec.external_id.as_deref(),
        Some("00ujl29u0le5T6Aj10h7")
    );
    assert_eq!(
        user.labels().get("roster.dev/source").map(String::as_str),
        Some("scim")
    );
    let managers: Vec<_> = user
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(managers, ["roster-scim"]);
    assert!(!serde_json::to_string(&user).unwrap().contains("1mz050nq"));

    // Okta's spec suite: the upper-cased userName finds the user.
    let reply = server
        .get("/Users?filter=userName%20eq%20%22ISAAC.BROCK%40EXAMPLE.COM%22")
        .await;
    assert_eq!(reply.body["totalResults"], 1, "{}", reply.body);
    assert_eq!(reply.body["Resources"][0]["id"], id);

    // A duplicate is 409 uniqueness, whatever the case.
    server
        .post("/Users", &okta_user("Isaac.Brock@Example.com"))
        .await
        .assert_error(409, Some("uniqueness"));

    // Profile update: GET, then PUT of the whole object with id, meta, groups.
    let mut whole = server.get(&format!("/Users/{id}")).await.body;
    whole["name"]["familyName"] = json!("Brock-Smith");
    whole["groups"] = json!([]);
    let reply = server.put(&format!("/Users/{id}"), &whole).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["name"]["familyName"], "Brock-Smith");
    assert_ne!(
        reply.body["meta"]["version"],
        created.body["meta"]["version"]
    );

    // Deactivate and reactivate: path-less replace.
    for active in [false, true] {
        let reply = server
            .patch(
                &format!("/Users/{id}"),
                &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["active"], active);
        assert_eq!(
            stored_user(&server, &env, &id).await.spec.active,
            Some(active)
        );
    }

    // Unknown ids are 404 with an Error body.
    server
        .get("/Users/00000000-0000-0000-0000-000000000000")
        .await
        .assert_error(404, None);
}

use kube::ResourceExt;

#[tokio::test]
async fn entra_user_lifecycle_in_the_default_dialect() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;

    // "Test Connection": a filter on a random value is an empty 200.
    let reply = server
        .get("/Users?filter=userName+eq+%22non-existent-user-48ba1e27%22")
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["totalResults"], 0);

    let reply = server.get("/Users?filter=externalId+eq+%22e-1%22").await;
    assert_eq!(reply.body["totalResults"], 0);

    let created = server
        .post(
            "/Users",
            &json!({
                "schemas": [USER, ENTERPRISE],
                "externalId": "e-1",
                "userName": "Test_User_ab6490ee@contoso.com",
                "active": true,
                "displayName": null,
                "roles": [],
                "emails": [{"primary": true, "type": "work", "value": "Test_User_ab6490ee@contoso.com"}],
                "name": {"formatted": "Test User", "familyName": "User", "givenName": "Test"},
                ENTERPRISE: {"department": "Sales"}
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = id_of(&created);
    assert_eq!(
        server
            .get("/Users?filter=externalId+eq+%22e-1%22")
            .await
            .body["totalResults"],
        1
    );
    // Matching on the work email, as Entra does when an admin picks it:
    // a sub-attribute after the value filter, by GET and by .search.
    let work_email = |address: &str| format!(r#"emails[type eq "work"].value eq "{address}""#);
    for (address, found) in [
        ("Test_User_ab6490ee@contoso.com", 1),
        ("other@contoso.com", 0),
    ] {
        let query = url::form_urlencoded::byte_serialize(work_email(address).as_bytes())
            .collect::<String>();
        let reply = server.get(&format!("/Users?filter={query}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["totalResults"], found, "{address}");
        let reply = server
            .post(
                "/Users/.search",
                &json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": work_email(address),
                }),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["totalResults"], found, "{address}");
    }

    let reply = server
        .patch(
            &format!("/Users/{id}"),
            &json!({
                "schemas": [PATCH_OP],
                "Operations": [
                    {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updated@contoso.com"},
                    {"op": "Replace", "path": "name.givenName", "value": "Tess"},
                    {"op": "Add", "path": format!("{ENTERPRISE}:employeeNumber"), "value": "701984"},
                    {"op": "Replace", "path": "active", "value": "False"}
                ]
            }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let user = stored_user(&server, &env, &id).await;
    assert_eq!(
        user.spec.active,
        Some(false),
        "the string \"False\" disables"
    );
    assert_eq!(user.spec.emails[0].value, "updated@contoso.com");
    assert_eq!(user.spec.name.unwrap().given_name.as_deref(), Some("Tess"));
    let enterprise = user.spec.enterprise.unwrap();
    assert_eq!(enterprise.employee_number.as_deref(), Some("701984"));
    assert_eq!(enterprise.department.as_deref(), Some("Sales"));

    // A disabled user stays readable.
    assert_eq!(
        server.get(&format!("/Users/{id}")).await.body["active"],
        false
    );

    // Hard delete, then 404 for GET and for a second DELETE.
    assert_eq!(server.delete(&format!("/Users/{id}")).await.status, 204);
    server
        .get(&format!("/Users/{id}"))
        .await
        .assert_error(404, None);
    server
        .delete(&format!("/Users/{id}"))
        .await
        .assert_error(404, None);
    assert!(env.api::<User>().get_opt(&id).await.unwrap().is_none());
    // The userName is free again.
    let again = server
        .post(
            "/Users",
            &json!({"schemas": [USER], "userName": "test_user_ab6490ee@contoso.com"}),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_ne!(id_of(&again), id, "ids are never reused");
}

#[tokio::test]
async fn entra_newer_dialect_path_less_replace_with_attribute_path_keys() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let id = id_of(&server.post("/Users", &okta_user("kim@example.com")).await);
    let reply = server
        .patch(
            &format!("/Users/{id}"),
            &json!({
                "schemas": [PATCH_OP],
                "Operations": [{
                    "op": "replace",
                    "value": {
                        "name.givenName": "Kim",
                        "name.familyName": "Lee",
                        format!("{ENTERPRISE}:department"): "Finance",
                        "active": false
                    }
                }]
            }),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let user = stored_user(&server, &env, &id).await;
    let name = user.spec.name.unwrap();
    assert_eq!(
        (name.given_name.as_deref(), name.family_name.as_deref()),
        (Some("Kim"), Some("Lee"))
    );
    assert_eq!(
        user.spec.enterprise.unwrap().department.as_deref(),
        Some("Finance")
    );
    assert_eq!(user.spec.active, Some(false));
}

#[tokio::test]
async fn a_rename_keeps_the_id_and_moves_the_claim() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let id = id_of(&server.post("/Users", &okta_user("old@example.com")).await);
    let other = id_of(&server.post("/Users", &okta_user("other@example.com")).await);
    let reply = server
        .patch(
            &format!("/Users/{id}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": "new@example.com"}]}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], id);
    // The old name is free, the new one taken.
    let reply = server.post("/Users", &okta_user("OLD@example.com")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    server
        .post("/Users", &okta_user("new@example.com"))
        .await
        .assert_error(409, Some("uniqueness"));
    // Renaming onto a taken name is refused and changes nothing.
    let reply = server
        .patch(
            &format!("/Users/{other}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "userName", "value": "NEW@example.com"}]}),
        )
        .await;
    reply.assert_error(409, Some("uniqueness"));
    assert_eq!(
        stored_user(&server, &env, &other).await.spec.user_name,
        "other@example.com"
    );
    let claims: Api<UserNameClaim> = env.api();
    assert_eq!(
        claims.list(&Default::default()).await.unwrap().items.len(),
        3
    );
}

#[tokio::test]
async fn racing_creations_of_one_user_name_make_exactly_one_user() {
    let env = env().await;
    let server = std::sync::Arc::new(serve(&env, "crm", Mode::Scim).await);
    let attempts = 12;
    let handles: Vec<_> = (0..attempts)
        .map(|i| {
            let server = server.clone();
            let name = if i % 2 == 0 {
                "Race@Example.com"
            } else {
                "race@example.com"
            };
            tokio::spawn(async move { server.post("/Users", &okta_user(name)).await })
        })
        .collect();
    let mut created = 0;
    for handle in handles {
        let reply = handle.await.unwrap();
        match reply.status.as_u16() {
            201 => created += 1,
            409 => reply.assert_error(409, Some("uniqueness")),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert_eq!(created, 1);
    let users = env
        .api::<User>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(users.len(), 1, "never a second User with that userName");
}

#[tokio::test]
async fn okta_group_push() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(id_of(
            &server
                .post("/Users", &okta_user(&format!("u{i}@example.com")))
                .await,
        ));
    }
    let reply = server.get("/Groups?startIndex=1&count=100").await;
    assert_eq!(reply.body["totalResults"], 0);

    let created = server
        .post(
            "/Groups",
            &json!({"schemas": [GROUP], "displayName": "Engineering", "members": []}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let gid = id_of(&created);

    // Rename: path-less replace whose value includes the id.
    let reply = server
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "Platform"}}]}),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    assert_eq!(
        env.api::<Group>()
            .get(&gid)
            .await
            .unwrap()
            .spec
            .display_name,
        "Platform"
    );

    // Add three, then remove one and add another in one PATCH.
    let add = |ids: &[&String]| json!({"op": "add", "path": "members", "value": ids.iter().map(|i| json!({"value": i, "display": "x"})).collect::<Vec<_>>()});
    let reply = server
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [add(&[&ids[0], &ids[1], &ids[2]])]}),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    let reply = server
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])},
                add(&[&ids[3]])
            ]}),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    assert_eq!(
        members(&server, &gid).await,
        sorted(&[&ids[1], &ids[2], &ids[3]])
    );

    // A full replace of members replaces the whole set.
    let reply = server
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "members", "value": [{"value": ids[0]}]}]}),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
    assert_eq!(members(&server, &gid).await, vec![ids[0].clone()]);

    assert_eq!(server.delete(&format!("/Groups/{gid}")).await.status, 204);
    server
        .get(&format!("/Groups/{gid}"))
        .await
        .assert_error(404, None);
    let slices: Api<GroupMemberSlice> = env.api();
    assert!(
        slices
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "slices go with the group"
    );
}

#[tokio::test]
async fn entra_group_provisioning() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let a = id_of(&server.post("/Users", &okta_user("a@contoso.com")).await);
    let b = id_of(&server.post("/Users", &okta_user("b@contoso.com")).await);

    let reply = server
        .get("/Groups?excludedAttributes=members&filter=displayName+eq+%22Sales%22")
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["totalResults"], 0);

    let created = server
        .post(
            "/Groups",
            &json!({
                "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "Sales",
                "members": []
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let gid = id_of(&created);
    let reply = server
        .get("/Groups?excludedAttributes=members&filter=displayName+eq+%22Sales%22")
        .await;
    assert_eq!(reply.body["totalResults"], 1);
    assert!(reply.body["Resources"][0].get("members").is_none());

    let reply = server
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Add", "path": "members", "value": [{"$ref": null, "value": a}, {"$ref": null, "value": b}]}
            ]}),
        )
        .await;
    assert_eq!(
        reply.status, 204,
        "Entra expects 204 on group PATCH: {}",
        reply.body
    );
    assert_eq!(members(&server, &gid).await, sorted(&[&a, &b]));

    // The older dialect's Remove with a value list removes only those.
    let reply = server
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "Remove", "path": "members", "value": [{"value": a}]}
            ]}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(members(&server, &gid).await, vec![b.clone()]);

    // The newer dialect removes with a value filter.
    let reply = server
        .patch(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "remove", "path": format!("members[value eq \"{b}\"]")}
            ]}),
        )
        .await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert!(members(&server, &gid).await.is_empty());
}

#[tokio::test]
async fn concurrent_member_patches_lose_no_update() {
    let env = env().await;
    let server = std::sync::Arc::new(serve(&env, "crm", Mode::Scim).await);
    let gid = id_of(
        &server
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "All"}),
            )
            .await,
    );
    let writers = 8;
    let per_writer = 25;
    let ids: Vec<String> = (0..writers)
        .flat_map(|w| (0..per_writer).map(move |i| format!("member-{w}-{i}")))
        .collect();
    crate::support::fixtures::create_users(&env, "crm", &ids).await;
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let server = server.clone();
            let gid = gid.clone();
            tokio::spawn(async move {
                let value: Vec<Value> = (0..per_writer).map(|i| json!({"value": format!("member-{w}-{i}")})).collect();
                server
                    .patch(
                        &format!("/Groups/{gid}"),
                        &json!({"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": "members", "value": value}]}),
                    )
                    .await
            })
        })
        .collect();
    for handle in handles {
        let reply = handle.await.unwrap();
        assert!(reply.status.is_success(), "{}", reply.body);
    }
    assert_eq!(members(&server, &gid).await.len(), writers * per_writer);
}

#[tokio::test]
async fn a_jit_policy_refuses_scim_with_403() {
    let env = env().await;
    let server = serve(&env, "wiki", Mode::Jit).await;
    let reply = server.get("/Users").await;
    reply.assert_error(403, None);
    assert!(
        reply.body["detail"].as_str().unwrap().contains("Jit"),
        "{}",
        reply.body
    );
    let reply = server.post("/Users", &okta_user("x@example.com")).await;
    reply.assert_error(403, None);
    assert!(
        env.api::<User>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn bearer_tokens_are_checked_per_policy() {
    let env = env().await;
    let crm = serve(&env, "crm", Mode::Scim).await;
    let hr = serve(&env, "hr", Mode::Scim).await;
    crm.send_as(Method::GET, "/Users", None, None, &[])
        .await
        .assert_error(401, None);
    crm.send_as(Method::GET, "/Users", None, Some("wrong"), &[])
        .await
        .assert_error(401, None);
    // hr's token does not open crm.
    crm.send_as(Method::GET, "/Users", None, Some(&hr.token), &[])
        .await
        .assert_error(401, None);
    assert_eq!(crm.get("/Users").await.status, 200);
}

#[tokio::test]
async fn bad_requests_get_scim_errors_and_change_nothing() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    server
        .get("/Users?filter=userName+eq")
        .await
        .assert_error(400, Some("invalidFilter"));
    server
        .get("/Users?filter=nosuchattr+eq+%22x%22")
        .await
        .assert_error(400, Some("invalidFilter"));
    let reply = server
        .send_as(Method::POST, "/Users", None, Some(&server.token), &[])
        .await;
    reply.assert_error(400, Some("invalidSyntax"));
    let malformed = reqwest::Client::new()
        .post(format!("{}/Users", server.base_url))
        .bearer_auth(&server.token)
        .body("{\"userName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["scimType"],
        "invalidSyntax"
    );
    server
        .post("/Users", &json!({"userName": "x", "active": {"no": 1}}))
        .await
        .assert_error(400, Some("invalidValue"));
    let huge = json!({"userName": "big", "displayName": "x".repeat(1024 * 1024 + 1)});
    server.post("/Users", &huge).await.assert_error(413, None);
    server.get("/Widgets").await.assert_error(404, None);
    server
        .send(Method::DELETE, "/ServiceProviderConfig", None)
        .await
        .assert_error(405, None);
    assert!(
        env.api::<User>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let created = server.post("/Users", &okta_user("etag@example.com")).await;
    let id = id_of(&created);
    let first = created.header("etag").unwrap().to_owned();
    let patch = |family: &str| json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "name.familyName", "value": family}]});
    let reply = server
        .send_as(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(&patch("One")),
            Some(&server.token),
            &[("If-Match", &first)],
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = server
        .send_as(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(&patch("Two")),
            Some(&server.token),
            &[("If-Match", &first)],
        )
        .await;
    reply.assert_error(412, None);
    assert_eq!(
        stored_user(&server, &env, &id)
            .await
            .spec
            .name
            .unwrap()
            .family_name
            .as_deref(),
        Some("One")
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_503_with_retry_after() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    // The same router, with a client whose API server is gone.
    let mut config = kube::Config::new("https://127.0.0.1:1".parse().unwrap());
    config.connect_timeout = Some(std::time::Duration::from_secs(1));
    let dead = kube::Client::try_from(config).unwrap();
    let origin = crate::support::scim::start(dead).await;
    let reply = reqwest::Client::new()
        .post(format!("{origin}/scim/{}/crm/v2/Users", env.namespace))
        .bearer_auth(&server.token)
        .body(okta_user("down@example.com").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 503);
    assert!(reply.headers().get("retry-after").is_some());
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["status"], "503");
    assert!(
        env.api::<User>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn discovery_endpoints_describe_the_service() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let spc = server.get("/ServiceProviderConfig").await;
    assert_eq!(spc.status, 200);
    assert_eq!(spc.body["patch"]["supported"], true);
    let types = server.get("/ResourceTypes").await;
    assert_eq!(types.body["totalResults"], 2);
    let schemas = server.get("/Schemas").await;
    assert_eq!(schemas.body["totalResults"], 6);
    let user = server.get(&format!("/Schemas/{USER}")).await;
    assert_eq!(user.body["id"], USER);
}

async fn members(server: &ScimServer, gid: &str) -> Vec<String> {
    let reply = server.get(&format!("/Groups/{gid}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut ids: Vec<String> = reply.body["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn requests_over_the_rate_limit_get_429_with_retry_after() {
    let env = env().await;
    let mut policy = crate::support::fixtures::scim_policy("slow");
    policy.spec.scim.as_mut().unwrap().rate_limit = roster::api::RateLimit {
        requests_per_second: 1,
        burst: 3,
    };
    crate::support::scim::create_policy(&env, policy, "slow-token-0123456789abcdef").await;
    let origin = crate::support::scim::start(env.client.clone()).await;
    let url = format!("{origin}/scim/{}/slow/v2/Users", env.namespace);
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let reply = http
            .get(&url)
            .bearer_auth("slow-token-0123456789abcdef")
            .send()
            .await
            .unwrap();
        statuses.push(reply.status().as_u16());
        if reply.status() == 429 && limited.is_none() {
            let retry_after: u64 = reply.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            limited = Some((retry_after, reply.json::<Value>().await.unwrap()));
        }
    }
    assert_eq!(
        &statuses[..3],
        [200, 200, 200],
        "the burst passes: {statuses:?}"
    );
    let (retry_after, body) = limited.expect("requests beyond the burst are limited");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(body["status"], "429");
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
}

#[tokio::test]
async fn a_burst_of_changes_gets_events_up_to_the_limit_then_one_summary_on_the_policy() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let burst = roster::directory::audit::BURST;
    let mut ids = Vec::new();
    for i in 0..burst + 5 {
        let created = server
            .send(
                Method::POST,
                "/Users",
                Some(&okta_user(&format!("burst{i}@example.com"))),
            )
            .await;
        assert_eq!(created.status, 201);
        ids.push(id_of(&created));
    }
    // The window's summary names the policy and counts the rest.
    let summary = crate::controller::event(&env, Some("ScimCreated"), Some("crm")).await;
    let note = summary.note.unwrap_or_default();
    assert!(note.starts_with("5 more ScimCreated changes"), "{note}");
    assert_eq!(
        summary.regarding.and_then(|r| r.kind).as_deref(),
        Some("ProvisioningPolicy")
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    let per_user = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ScimCreated"))
        .filter(|e| {
            e.regarding
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .is_some_and(|name| ids.iter().any(|id| id == name))
        })
        .count();
    assert_eq!(per_user, burst, "one Event per change up to the limit");
}

#[tokio::test]
async fn every_scim_change_is_an_event_naming_the_request() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let created = server
        .send_as(
            Method::POST,
            "/Users",
            Some(&okta_user("audit@example.com")),
            Some(&server.token),
            &[("X-Request-Id", "req-7f3a")],
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("x-request-id"), Some("req-7f3a"));
    let id = id_of(&created);
    let event = crate::controller::event(&env, None, Some(&id)).await;
    assert_eq!(event.reason.as_deref(), Some("ScimCreated"));
    assert_eq!(event.reporting_controller.as_deref(), Some("roster-scim"));
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("req-7f3a") && note.contains("audit@example.com"),
        "{note}"
    );
    assert!(!note.contains("1mz050nq"), "no password in the audit trail");
}

#[tokio::test]
async fn a_group_of_50000_members_pushed_256_at_a_time_stays_in_bounded_slices() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    let gid = id_of(
        &server
            .post(
                "/Groups",
                &json!({"schemas": [GROUP], "displayName": "Everyone"}),
            )
            .await,
    );
    // Written through the directory, as a PATCH writes them after its member
    // check: 50,000 member Users would take minutes to create, and the check
    // (every member a User of the policy) is tested in isolation.rs.
    let index = roster::directory::membership::MembershipIndex::default();
    let (_, feed) = roster::directory::caches::start(
        &env.client,
        &[],
        &index,
        roster::directory::caches::Keep::Nothing,
    );
    tokio::spawn(feed);
    let directory =
        roster::directory::store::Directory::new(env.client.clone(), index, &env.namespace, "crm");
    let total = 50_000;
    let batch = 256;
    let slices: Api<GroupMemberSlice> = env.api();
    let mut last_versions = std::collections::BTreeMap::new();
    let mut start = 0;
    while start < total {
        let end = (start + batch).min(total);
        if end == total {
            // Before the last change: remember every slice's version.
            last_versions = versions(&slices).await;
        }
        let members: Vec<GroupMember> = (start..end)
            .map(|i| GroupMember {
                value: format!("00000000-0000-4000-8000-{i:012}"),
                user_name: None,
                kind: MemberKind::User,
                display: None,
            })
            .collect();
        directory.change_members(&gid, &members, &[]).await.unwrap();
        start = end;
    }
    let after = versions(&slices).await;
    let touched = after
        .iter()
        .filter(|(name, rv)| last_versions.get(*name) != Some(rv))
        .count();
    assert!(
        touched <= 2,
        "the last 256-member change rewrote {touched} slices of {}",
        after.len()
    );

    let all = slices.list(&Default::default()).await.unwrap().items;
    let largest = all
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap().len())
        .max()
        .unwrap();
    assert!(largest < 1024 * 1024, "a slice of {largest} bytes");
    let counted: usize = all.iter().map(|s| s.spec.members.len()).sum();
    assert_eq!(counted, total);
    assert_eq!(all.len(), total.div_ceil(roster::api::SLICE_CAPACITY));
    println!(
        "50,000 members in {} slices, largest {largest} bytes",
        all.len()
    );

    // Entra asks for the group without members; with them, all are there.
    let reply = server.get(&format!("/Groups/{gid}")).await;
    assert_eq!(reply.body["members"].as_array().unwrap().len(), total);
}

pub(crate) async fn versions(
    slices: &Api<GroupMemberSlice>,
) -> std::collections::BTreeMap<String, String> {
    slices
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            (
                s.metadata.name.unwrap(),
                s.metadata.resource_version.unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_group_created_by_jit_logins_is_adopted_when_the_idp_pushes_it() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    // As JIT logins left it before the policy switched to Scim.
    let name = roster::directory::jit_group_name("crm", "engineering");
    let mut group = Group::new(
        &name,
        GroupSpec {
            policy: "crm".into(),
            display_name: "engineering".into(),
            ..Default::default()
        },
    );
    group.metadata.labels = Some([("roster.dev/source".to_owned(), "jit".to_owned())].into());
    env.api::<Group>()
        .create(&Default::default(), &group)
        .await
        .unwrap();
    let directory = roster::directory::store::Directory::new(
        env.client.clone(),
        Default::default(),
        &env.namespace,
        "crm",
    );
    let member = GroupMember {
        value: "jit-user".into(),
        user_name: None,
        kind: MemberKind::User,
        display: None,
    };
    directory
        .change_members(&name, &[member], &[])
        .await
        .unwrap();

    let reply = server
        .post(
            "/Groups",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Engineering",
                "members": [],
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["id"], name.as_str(), "adopted, not duplicated");
    let groups = env.api::<Group>().list(&Default::default()).await.unwrap();
    assert_eq!(groups.items.len(), 1);
    let adopted = &groups.items[0];
    assert_eq!(adopted.spec.display_name, "Engineering");
    assert_eq!(
        adopted
            .labels()
            .get("roster.dev/source")
            .map(String::as_str),
        Some("scim")
    );
    let sliced = directory.in_slices(&name, "jit-user").await.unwrap();
    assert!(!sliced, "the IdP's push sets the members");
    crate::controller::event(&env, Some("ScimAdoptedFromJit"), None).await;
}

#[tokio::test]
async fn a_user_created_just_in_time_is_adopted_when_the_idp_pushes_it() {
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    // As JIT left it before the policy switched to Scim: label, subject, claim.
    let mut jit_user = crate::support::fixtures::user("jit-1", "crm", "Kai@Example.com");
    jit_user.spec.subject = Some("00u-kai".into());
    jit_user.metadata.labels = Some([("roster.dev/source".to_owned(), "jit".to_owned())].into());
    env.api::<User>()
        .create(&Default::default(), &jit_user)
        .await
        .unwrap();
    roster::directory::UserNames::new(env.client.clone(), &env.namespace, "crm")
        .claim(
            "Kai@Example.com",
            "jit-1",
            roster::deadline::Deadline::from_now().wall,
        )
        .await
        .unwrap();

    let reply = server.post("/Users", &okta_user("kai@example.com")).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(
        reply.body["id"], "jit-1",
        "the JIT user is adopted, not duplicated"
    );
    let users = env
        .api::<User>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(users.len(), 1);
    let adopted = &users[0];
    assert_eq!(
        adopted
            .labels()
            .get("roster.dev/source")
            .map(String::as_str),
        Some("scim")
    );
    assert_eq!(
        adopted.spec.subject.as_deref(),
        Some("00u-kai"),
        "the login key stays"
    );
    assert_eq!(
        adopted.spec.external_id.as_deref(),
        Some("00ujl29u0le5T6Aj10h7")
    );
    // A second push is an ordinary duplicate.
    server
        .post("/Users", &okta_user("kai@example.com"))
        .await
        .assert_error(409, Some("uniqueness"));
    let adopted_event = crate::controller::event(&env, Some("ScimAdoptedFromJit"), None).await;
    assert!(adopted_event.note.unwrap().contains("kai@example.com"));
}

#[tokio::test]
async fn an_added_token_works_at_once_and_a_removed_one_stops_within_the_cache_ttl() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Patch, PatchParams};
    let env = env().await;
    let server = serve(&env, "crm", Mode::Scim).await;
    assert_eq!(server.get("/Users").await.status, 200);
    let secrets: Api<Secret> = env.api();
    let add = json!({"stringData": {"token-2": "the-new-token-0123456789"}});
    secrets
        .patch(
            "crm-scim-tokens",
            &PatchParams::default(),
            &Patch::Merge(&add),
        )
        .await
        .unwrap();
    let reply = server
        .send_as(
            Method::GET,
            "/Users",
            None,
            Some("the-new-token-0123456789"),
            &[],
        )
        .await;
    assert_eq!(reply.status, 200, "a new token works without waiting");
    let remove = json!({"data": {"token-1": null}});
    secrets
        .patch(
            "crm-scim-tokens",
            &PatchParams::default(),
            &Patch::Merge(&remove),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now()
        + roster::directory::tokens::TTL
        + roster::directory::tokens::RECHECK
        + std::time::Duration::from_secs(1);
    loop {
        let reply = server
            .send_as(Method::GET, "/Users", None, Some(&server.token), &[])
            .await;
        if reply.status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a removed token still works after the cache TTL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
