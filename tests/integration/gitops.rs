//! A Group kept in git beside an identity provider's pushes, against the
//! real API server and a real SCIM application (scim2-server). Argo CD
//! applies the Group with its own field manager, forced, as its server-side
//! apply does, naming people by userName; the identity provider finds the
//! group by displayName and PATCHes members over SCIM, which live in slices.
//! Neither side overwrites the other: git's applies and SCIM's PATCHes
//! interleave without the Group's spec ever changing, both sides' members
//! reach the application, and SCIM is refused (never forced) a field git
//! keeps.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use roster::api::{DeprovisionAction, Group};
use serde_json::{Value, json};

use crate::controller::{eventually, policy_for, synced};
use crate::support::apps::Scim2Server;
use crate::support::env;
use crate::support::scim::ScimServer;

const TOKEN: &str = "idp-token-gitops-0123456789";
/// Argo CD's field manager for server-side apply.
const ARGO_CD: &str = "argocd-controller";

fn patch_op(operations: Value) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": operations
    })
}

#[tokio::test]
async fn a_group_kept_in_git_and_pushed_over_scim_settles_with_both_sides_members() {
    let env = env().await;
    let app = Scim2Server::start(0).await;
    policy_for(&env, "crm", &app, DeprovisionAction::Disable).await;
    let mut tokens = Secret::default();
    tokens.metadata.name = Some("crm-scim-tokens".into());
    tokens.string_data = Some([("t".to_owned(), TOKEN.to_owned())].into());
    env.api::<Secret>()
        .create(&PostParams::default(), &tokens)
        .await
        .unwrap();
    let origin = crate::support::scim::start(env.client.clone()).await;
    let scim = ScimServer::at(&origin, &env.namespace, "crm", TOKEN);
    // The controllers as the operator runs them: with the membership index
    // that finds Users by userName and wakes the groups naming them.
    let index = roster::directory::membership::MembershipIndex::default();
    let (mut caches, feed) = roster::directory::caches::start(
        &env.client,
        std::slice::from_ref(&env.namespace),
        &index,
        roster::directory::caches::Keep::Objects,
    );
    tokio::spawn(feed);
    let controllers = tokio::spawn(roster::controller::run_with(
        env.client.clone(),
        caches.remove(0),
        index,
        Some("test".into()),
        None,
        Default::default(),
        std::future::pending(),
    ));

    let mut ids = std::collections::BTreeMap::new();
    for name in ["ada@example.com", "grace@example.com", "alan@example.com"] {
        let reply = scim.post("/Users", &json!({"userName": name})).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        ids.insert(name, reply.body["id"].as_str().unwrap().to_owned());
    }

    // Git: Ada by userName, in another case than SCIM wrote it, and Linus,
    // who has no User yet.
    let groups: Api<Group> = env.api();
    let manifest = json!({
        "apiVersion": "roster.dev/v1alpha1",
        "kind": "Group",
        "metadata": {"name": "platform"},
        "spec": {
            "policy": "crm",
            "displayName": "Platform",
            "members": [{"userName": "Ada@Example.com"}, {"userName": "linus@example.com"}]
        }
    });
    let argo_apply = || async {
        groups
            .patch(
                "platform",
                &PatchParams::apply(ARGO_CD).force(),
                &Patch::Apply(&manifest),
            )
            .await
            .unwrap()
    };
    argo_apply().await;

    // The identity provider links its group by displayName, as Okta and
    // Entra ID do, then pushes members; Argo CD's self-heal applies between.
    let found = scim
        .get("/Groups?filter=displayName%20eq%20%22Platform%22")
        .await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["id"], "platform");
    let member = |name: &str| json!([{"value": ids[name]}]);
    for round in 0..4 {
        let reply = match round {
            0 => {
                let add =
                    json!([{"op": "add", "path": "members", "value": member("grace@example.com")}]);
                scim.patch("/Groups/platform", &patch_op(add)).await
            }
            1 => {
                let add =
                    json!([{"op": "add", "path": "members", "value": member("alan@example.com")}]);
                scim.patch("/Groups/platform", &patch_op(add)).await
            }
            // A whole replacement: git's displayName (equal), SCIM's own
            // externalId, and the pushed members without Alan.
            2 => {
                let group = json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "Platform", "externalId": "okta-00g1",
                    "members": member("grace@example.com")
                });
                scim.put("/Groups/platform", &group).await
            }
            _ => {
                let same = json!([{"op": "replace", "path": "displayName", "value": "Platform"}]);
                scim.patch("/Groups/platform", &patch_op(same)).await
            }
        };
        assert!(reply.status.is_success(), "round {round}: {}", reply.body);
        argo_apply().await;
    }

    // No side overwrote the other: git's fields are as applied, SCIM's
    // externalId stays beside them, and the spec changed once (the PUT).
    let kept = groups.get("platform").await.unwrap();
    assert_eq!(kept.metadata.generation, Some(2));
    assert_eq!(kept.spec.display_name, "Platform");
    assert_eq!(kept.spec.external_id.as_deref(), Some("okta-00g1"));
    assert_eq!(kept.spec.members.len(), 2);

    // SCIM sees both sides' members: Ada (git, found by userName) and Grace
    // (pushed); Linus has no User, Alan was removed.
    let got = scim.get("/Groups/platform").await;
    let mut members: Vec<&str> = got.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort();
    let mut expected = vec![
        ids["ada@example.com"].as_str(),
        ids["grace@example.com"].as_str(),
    ];
    expected.sort();
    assert_eq!(members, expected, "{}", got.body);

    // A displayName git keeps is refused over SCIM, naming who keeps it.
    let renamed = scim
        .patch(
            "/Groups/platform",
            &patch_op(json!([{"op": "replace", "path": "displayName", "value": "Platform Team"}])),
        )
        .await;
    renamed.assert_error(400, Some("mutability"));
    let detail = renamed.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("displayName") && detail.contains(ARGO_CD),
        "{detail}"
    );
    assert_eq!(
        groups.get("platform").await.unwrap().spec.display_name,
        "Platform"
    );

    // The unknown name is reported, not fatal: the others reach the application.
    let users: Api<roster::api::User> = env.api();
    let ada = synced(&users, &ids["ada@example.com"]).await;
    let grace = synced(&users, &ids["grace@example.com"]).await;
    let condition = |group: &Group, type_: &str| {
        group
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
    };
    let unknown = eventually("the unknown userName in the Members condition", || async {
        let group = groups.get("platform").await.ok()?;
        condition(&group, "Members").filter(|c| c.status == "False")
    })
    .await;
    assert!(
        unknown.message.contains("linus@example.com"),
        "{}",
        unknown.message
    );
    let remote_group = eventually("the group in the application", || async {
        groups.get("platform").await.ok()?.status?.remote_id
    })
    .await;
    let app_members = || async {
        let (_, body) = app.get(&format!("/Groups/{remote_group}")).await;
        let mut members: Vec<String> = body["members"]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        members.sort();
        members
    };
    let mut both = vec![ada, grace];
    both.sort();
    eventually("Ada (git) and Grace (SCIM) in the application", || async {
        (app_members().await == both).then_some(())
    })
    .await;

    // Linus's User arrives later: the group picks him up without a change
    // of its own.
    let arrived = Instant::now();
    let reply = scim
        .post("/Users", &json!({"userName": "linus@example.com"}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let linus_id = reply.body["id"].as_str().unwrap().to_owned();
    let linus = synced(&users, &linus_id).await;
    eventually("Linus in the application's group", || async {
        app_members().await.contains(&linus).then_some(())
    })
    .await;
    eprintln!(
        "a git member's User created to membership in the application: {:?}",
        arrived.elapsed()
    );
    // Settled once the status records Linus synced (the application shows
    // him a moment before) and the Members condition clears.
    let settled = eventually("the Members condition to clear", || async {
        let group = groups.get("platform").await.ok()?;
        let synced = group
            .status
            .as_ref()?
            .synced_members
            .contains_key(&linus_id);
        condition(&group, "Members")
            .filter(|c| c.status == "True" && synced)
            .map(|_| group)
    })
    .await;
    let status = settled.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.member_count, Some(3));

    // Settled: nothing rewrites the Group any more, and another apply from
    // git finds nothing to change (Argo CD would see no drift): the spec and
    // its generation stay. (The API server still restamps the applier's
    // managedFields entry, which alone moves the resourceVersion.)
    let rv = settled.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = groups.get("platform").await.unwrap();
    assert_eq!(later.metadata.resource_version, rv);
    let applied = argo_apply().await;
    assert_eq!(applied.metadata.generation, Some(2));
    assert_eq!(applied.spec, later.spec);
    controllers.abort();
}
