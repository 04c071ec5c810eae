//! AccessGrants against the real API server, proved by the API server's own
//! authorizer: a SubjectAccessReview is what `kubectl auth can-i --as`
//! asks. Members pushed over SCIM may edit the granted namespaces, others
//! may not; a SCIM deactivation takes access away within seconds; a
//! namespace labelled later is reached; roles the deployment may not bind
//! are refused; deleting the grant removes every binding.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use roster::api::{AccessGrant, AccessGrantSpec, KubernetesNames, ProvisioningPolicy};
use serde_json::json;

use crate::controller::eventually;
use crate::support::env;
use crate::support::fixtures::scim_policy;
use crate::support::scim::{ScimServer, create_policy};

/// Whether `user` may create Deployments in `namespace`, as the API
/// server's authorizer says.
async fn can_edit(client: &kube::Client, user: &str, namespace: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some("create".into()),
                group: Some("apps".into()),
                resource: Some("deployments".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .is_some_and(|s| s.allowed)
}

/// Waits until `user`'s access to `namespace` is `allowed`; returns how long.
async fn until_access(
    client: &kube::Client,
    user: &str,
    namespace: &str,
    allowed: bool,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    while can_edit(client, user, namespace).await != allowed {
        assert!(
            started.elapsed() < limit,
            "{user} in {namespace}: still {} after {limit:?}",
            !allowed
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(name.to_owned());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
}

/// A Scim policy `crm` naming its users `oidc:<userName>` for Kubernetes,
/// served over SCIM, with the leader's side: its own membership index and
/// the AccessGrant controller of the test's namespace, allowed `options`.
async fn serve_with_grants(
    env: &crate::support::TestEnv,
    options: roster::access::Options,
) -> ScimServer {
    let (ns, client) = (env.namespace.clone(), env.client.clone());
    let token = &format!("token-{:016x}", rand::random::<u64>());
    let mut policy = scim_policy("crm");
    policy.spec.kubernetes = Some(KubernetesNames {
        username_prefix: "oidc:".into(),
        groups_prefix: None,
    });
    create_policy(env, policy, token).await;
    let origin = crate::support::scim::start(client.clone()).await;
    let index = roster::directory::membership::MembershipIndex::default();
    let (mut caches, feed) = roster::directory::caches::start(
        &client,
        std::slice::from_ref(&ns),
        &index,
        roster::directory::caches::Keep::Nothing,
    );
    tokio::spawn(feed);
    tokio::spawn(roster::access::run(
        client,
        caches.remove(0),
        index,
        options,
        std::future::pending(),
    ));
    ScimServer::at(&origin, &ns, "crm", token)
}

/// Changes the Kubernetes user-name prefix of the test's policy `crm`.
async fn name_users_with(client: &kube::Client, ns: &str, prefix: &str) {
    Api::<ProvisioningPolicy>::namespaced(client.clone(), ns)
        .patch(
            "crm",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"kubernetes": {"usernamePrefix": prefix}}})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn group_members_get_the_granted_roles_and_lose_them_with_the_directory() {
    let env = env().await;
    let ns = env.namespace.clone();
    let client = env.client.clone();
    let (team_a, team_b) = (format!("{ns}-a"), format!("{ns}-b"));
    create_namespace(&client, &team_a).await;
    create_namespace(&client, &team_b).await;
    // Its own role: the built-in `edit` is aggregated by the controller
    // manager, which this control plane does not run, so it has no rules.
    let role = format!("{ns}-deployer");
    let cluster_role: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": role},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get", "list"]}]
    }))
    .unwrap();
    Api::<ClusterRole>::all(client.clone())
        .create(&PostParams::default(), &cluster_role)
        .await
        .unwrap();

    // The leader's side: its own membership index and the grant controller,
    // allowed to bind that role and `view` only (the role also cluster-wide).
    let scim = serve_with_grants(
        &env,
        roster::access::Options {
            bindable_cluster_roles: [role.clone(), "view".to_owned()].into(),
            cluster_wide_roles: [role.clone()].into(),
        },
    )
    .await;

    let mut ids = BTreeMap::new();
    for name in ["ada@example.com", "grace@example.com", "alan@example.com"] {
        let reply = scim
            .post("/Users", &json!({"userName": name, "active": true}))
            .await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        ids.insert(name, reply.body["id"].as_str().unwrap().to_owned());
    }
    let reply = scim
        .post(
            "/Groups",
            &json!({"displayName": "Engineering", "members": [
                {"value": ids["ada@example.com"]}, {"value": ids["grace@example.com"]}
            ]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);

    let grants: Api<AccessGrant> = env.api();
    let mut grant = AccessGrant::new(
        "engineering-edit",
        AccessGrantSpec {
            policy: "crm".into(),
            group: "Engineering".into(),
            cluster_roles: vec![role.clone()],
            cluster_wide_roles: Vec::new(),
            namespaces: vec![team_a.clone()],
            namespace_selector: Some(LabelSelector {
                match_labels: Some([("roster-test".to_owned(), ns.clone())].into()),
                ..Default::default()
            }),
        },
    );
    grant.metadata.namespace = Some(ns.clone());
    grants.create(&PostParams::default(), &grant).await.unwrap();

    // Members can, a non-member can't, and nobody in an unlisted namespace.
    let limit = Duration::from_secs(10);
    until_access(&client, "oidc:ada@example.com", &team_a, true, limit).await;
    until_access(&client, "oidc:grace@example.com", &team_a, true, limit).await;
    assert!(!can_edit(&client, "oidc:alan@example.com", &team_a).await);
    assert!(
        !can_edit(&client, "ada@example.com", &team_a).await,
        "only the prefixed name"
    );
    assert!(!can_edit(&client, "oidc:ada@example.com", &team_b).await);
    let ready = eventually("the grant to be Ready", || async {
        let grant = grants.get("engineering-edit").await.ok()?;
        let status = grant.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "True" && status.observed_generation == grant.metadata.generation)
            .then_some(status)
    })
    .await;
    assert_eq!(ready.binding_count, Some(1));
    assert_eq!(ready.bindings[0].subjects, 2);

    // Deactivated over SCIM: refused within seconds; the others keep access.
    let patched = scim
        .patch(
            &format!("/Users/{}", ids["ada@example.com"]),
            &json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]
            }),
        )
        .await;
    assert_eq!(patched.status, 200);
    let revoked = until_access(&client, "oidc:ada@example.com", &team_a, false, limit).await;
    eprintln!("SCIM deactivation to access refused: {revoked:?}");
    assert!(can_edit(&client, "oidc:grace@example.com", &team_a).await);

    // A namespace labelled later is reached.
    Api::<Namespace>::all(client.clone())
        .patch(
            &team_b,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"roster-test": ns}}})),
        )
        .await
        .unwrap();
    until_access(&client, "oidc:grace@example.com", &team_b, true, limit).await;

    // The policy's naming changes: every binding follows (the controller
    // reads policies from the process's shared caches).
    name_users_with(&client, &ns, "sso:").await;
    until_access(&client, "sso:grace@example.com", &team_a, true, limit).await;
    until_access(&client, "oidc:grace@example.com", &team_a, false, limit).await;
    until_access(&client, "sso:grace@example.com", &team_b, true, limit).await;
    name_users_with(&client, &ns, "oidc:").await;
    until_access(&client, "oidc:grace@example.com", &team_b, true, limit).await;
    until_access(&client, "sso:grace@example.com", &team_b, false, limit).await;

    // A role this deployment may not bind is refused, and said so.
    grants
        .patch(
            "engineering-edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterRoles": [role, "cluster-admin"]}})),
        )
        .await
        .unwrap();
    eventually("the grant to report the refused role", || async {
        let status = grants.get("engineering-edit").await.ok()?.status?;
        let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "False" && ready.reason == "RoleNotBindable").then_some(())
    })
    .await;
    // And told as Events: the bindings written, and the refusal.
    let written =
        crate::controller::event(&env, Some("BindingsUpdated"), Some("engineering-edit")).await;
    assert!(
        written
            .note
            .unwrap_or_default()
            .contains("keep the group's active members")
    );
    let refused =
        crate::controller::event(&env, Some("RoleNotBindable"), Some("engineering-edit")).await;
    assert_eq!(refused.type_.as_deref(), Some("Warning"));
    assert!(refused.note.unwrap_or_default().contains("cluster-admin"));
    let bindings: Api<RoleBinding> = Api::all(client.clone());
    let kept = bindings
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=roster"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|b| {
            b.metadata
                .namespace
                .as_deref()
                .is_some_and(|n| n == team_a || n == team_b)
        })
        .collect::<Vec<_>>();
    assert_eq!(
        kept.len(),
        2,
        "the role in both namespaces, no cluster-admin"
    );
    assert!(kept.iter().all(|b| b.role_ref.name == role));

    // Cluster-wide, where the deployment allows that role cluster-wide: a
    // namespace the grant does not list is reached too; `view` is not
    // allowed cluster-wide and is refused.
    let team_c = format!("{ns}-c");
    create_namespace(&client, &team_c).await;
    assert!(!can_edit(&client, "oidc:grace@example.com", &team_c).await);
    grants
        .patch(
            "engineering-edit",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "clusterRoles": [role], "clusterWideRoles": [role, "view"]
            }})),
        )
        .await
        .unwrap();
    until_access(&client, "oidc:grace@example.com", &team_c, true, limit).await;
    assert!(
        !can_edit(&client, "oidc:ada@example.com", &team_c).await,
        "deactivated"
    );
    let status = eventually("the cluster-wide binding in the status", || async {
        let status = grants.get("engineering-edit").await.ok()?.status?;
        (status.binding_count == Some(3)).then_some(status)
    })
    .await;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "RoleNotBindable");
    assert!(
        ready.message.contains("view (cluster-wide)"),
        "{}",
        ready.message
    );
    let cluster_wide = status
        .bindings
        .iter()
        .find(|b| b.namespace.is_empty())
        .unwrap();
    assert_eq!(
        (cluster_wide.cluster_role.as_str(), cluster_wide.subjects),
        (role.as_str(), 1)
    );

    // The grant deleted: every binding goes, and with it the access.
    grants
        .delete("engineering-edit", &DeleteParams::default())
        .await
        .unwrap();
    until_access(&client, "oidc:grace@example.com", &team_c, false, limit).await;
    let cluster_left = Api::<ClusterRoleBinding>::all(client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=roster"))
        .await
        .unwrap();
    let grant_ref = format!("{ns}/engineering-edit");
    assert!(
        !cluster_left.items.iter().any(|b| {
            b.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("roster.dev/access-grant"))
                == Some(&grant_ref)
        }),
        "no ClusterRoleBinding of the grant is left"
    );
    until_access(&client, "oidc:grace@example.com", &team_a, false, limit).await;
    until_access(&client, "oidc:grace@example.com", &team_b, false, limit).await;
    eventually("the grant to be gone", || async {
        grants
            .get_opt("engineering-edit")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    for namespace in [&team_a, &team_b] {
        let left = Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=roster"))
            .await
            .unwrap();
        assert!(left.items.is_empty(), "{namespace}: {:?}", left.items);
    }
    Api::<ClusterRole>::all(client.clone())
        .delete(&role, &DeleteParams::default())
        .await
        .unwrap();
}

/// Churn, at test scale (`make bench` runs 500 groups × 20 namespaces; here
/// 20 × 4):
/// member changes, deactivations, reactivations and group deletions from
/// several SCIM clients at once, then every RoleBinding must name exactly
/// the active members of its group — no access that should have ended.
#[tokio::test]
async fn after_churn_no_binding_names_anyone_the_directory_does_not() {
    use rand::{Rng, SeedableRng};

    let env = env().await;
    let ns = env.namespace.clone();
    let client = env.client.clone();
    let mut targets: Vec<String> = (0..3).map(|i| format!("{ns}-churn-{i}")).collect();
    for target in &targets {
        create_namespace(&client, target).await;
    }
    // Also the grants' own namespace, where the bindings are owned by them.
    targets.push(ns.clone());
    let scim = serve_with_grants(
        &env,
        roster::access::Options {
            bindable_cluster_roles: ["view".to_owned()].into(),
            ..Default::default()
        },
    )
    .await;

    // 40 users, 20 groups of 5, a grant each.
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let mut users: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for i in 0..40 {
        let name = format!("churn{i}@example.com");
        let reply = scim.post("/Users", &json!({"userName": name})).await;
        users.insert(reply.body["id"].as_str().unwrap().to_owned(), (name, true));
    }
    let ids: Vec<String> = users.keys().cloned().collect();
    let mut groups: BTreeMap<String, (usize, std::collections::BTreeSet<String>)> = BTreeMap::new();
    let grants: Api<AccessGrant> = env.api();
    for g in 0..20 {
        let members: std::collections::BTreeSet<String> = (0..5)
            .map(|_| ids[rng.random_range(0..ids.len())].clone())
            .collect();
        let values: Vec<_> = members.iter().map(|id| json!({"value": id})).collect();
        let reply = scim
            .post(
                "/Groups",
                &json!({"displayName": format!("team-{g}"), "members": values}),
            )
            .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        groups.insert(reply.body["id"].as_str().unwrap().to_owned(), (g, members));
        let mut grant = AccessGrant::new(
            &format!("churn-{g}"),
            AccessGrantSpec {
                policy: "crm".into(),
                group: format!("team-{g}"),
                cluster_roles: vec!["view".into()],
                namespaces: targets.clone(),
                ..Default::default()
            },
        );
        grant.metadata.namespace = Some(ns.clone());
        grants.create(&PostParams::default(), &grant).await.unwrap();
    }

    // 150 changes, 5 at a time.
    let patch = |operations: serde_json::Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
    for _ in 0..30 {
        let mut batch = Vec::new();
        for _ in 0..5 {
            let roll = rng.random_range(0..100);
            if roll < 60 && !groups.is_empty() {
                let group = groups
                    .keys()
                    .nth(rng.random_range(0..groups.len()))
                    .unwrap()
                    .clone();
                let member = ids[rng.random_range(0..ids.len())].clone();
                let entry = groups.get_mut(&group).unwrap();
                let body = if entry.1.remove(&member) {
                    patch(
                        json!([{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]),
                    )
                } else {
                    entry.1.insert(member.clone());
                    patch(json!([{"op": "add", "path": "members", "value": [{"value": member}]}]))
                };
                batch.push((
                    reqwest::Method::PATCH,
                    format!("/Groups/{group}"),
                    Some(body),
                ));
            } else if roll < 96 {
                let user = ids[rng.random_range(0..ids.len())].clone();
                let entry = users.get_mut(&user).unwrap();
                entry.1 = !entry.1;
                let body = patch(json!([{"op": "replace", "path": "active", "value": entry.1}]));
                batch.push((reqwest::Method::PATCH, format!("/Users/{user}"), Some(body)));
            } else if let Some(group) = groups
                .keys()
                .nth(rng.random_range(0..groups.len()))
                .cloned()
            {
                groups.remove(&group);
                batch.push((reqwest::Method::DELETE, format!("/Groups/{group}"), None));
            }
        }
        // Changes to one resource are sent in order; a batch's run at once.
        let mut seen = std::collections::BTreeSet::new();
        let (parallel, serial): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|(_, path, _)| seen.insert(path.clone()));
        let replies = futures::future::join_all(
            parallel
                .iter()
                .map(|(method, path, body)| scim.send(method.clone(), path, body.as_ref())),
        )
        .await;
        for (method, path, body) in &serial {
            let reply = scim.send(method.clone(), path, body.as_ref()).await;
            assert!(reply.status.is_success(), "{method} {path}: {}", reply.body);
        }
        for reply in replies {
            assert!(reply.status.is_success(), "{}", reply.body);
        }
    }

    // What every binding must say now.
    let mut expected: BTreeMap<(String, String), std::collections::BTreeSet<String>> =
        BTreeMap::new();
    for (g, members) in groups.values() {
        let subjects = members
            .iter()
            .filter(|id| users[*id].1)
            .map(|id| format!("oidc:{}", users[id].0))
            .collect::<std::collections::BTreeSet<_>>();
        for target in &targets {
            expected.insert(
                (format!("{ns}/churn-{g}"), target.clone()),
                subjects.clone(),
            );
        }
    }
    let actual = || async {
        let list = Api::<RoleBinding>::all(client.clone())
            .list(&ListParams::default().labels("app.kubernetes.io/managed-by=roster"))
            .await
            .unwrap();
        list.items
            .into_iter()
            .filter_map(|b| {
                let grant = b
                    .metadata
                    .annotations
                    .as_ref()?
                    .get("roster.dev/access-grant")?
                    .clone();
                grant.starts_with(&format!("{ns}/churn-")).then(|| {
                    let subjects = b
                        .subjects
                        .iter()
                        .flatten()
                        .map(|s| s.name.clone())
                        .collect();
                    (
                        (grant, b.metadata.namespace.clone().unwrap_or_default()),
                        subjects,
                    )
                })
            })
            .collect::<BTreeMap<_, std::collections::BTreeSet<String>>>()
    };
    let started = Instant::now();
    let mut last = actual().await;
    while last != expected && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = actual().await;
    }
    let stale: usize = last
        .iter()
        .map(|(key, have)| match expected.get(key) {
            Some(want) => have.difference(want).count(),
            None => have.len().max(1),
        })
        .sum();
    let differing: Vec<String> = expected
        .keys()
        .chain(last.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|key| expected.get(*key) != last.get(*key))
        .map(|key| {
            format!(
                "{key:?}: want {:?}, have {:?}",
                expected.get(key),
                last.get(key)
            )
        })
        .collect();
    assert_eq!(stale, 0, "stale subjects after the churn: {differing:#?}");
    assert!(differing.is_empty(), "bindings differ: {differing:#?}");
    eprintln!(
        "churn settled {:?} after the last change",
        started.elapsed()
    );
    let owned = Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=roster"))
        .await
        .unwrap();
    assert!(!owned.items.is_empty());
    for binding in owned.items {
        let owners = binding.metadata.owner_references.unwrap_or_default();
        let name = binding.metadata.name.unwrap_or_default();
        assert_eq!(owners.len(), 1, "{name} is owned by its grant: {owners:?}");
        assert_eq!(owners[0].kind, "AccessGrant", "{name}");
    }
}
