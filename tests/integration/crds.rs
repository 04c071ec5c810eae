//! The CRDs as the API server sees them: installed, validated, printed.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use roster::api::*;
use serde_json::json;

use crate::support::fixtures::{group, jit_policy, scim_policy, user};
use crate::support::{env, refusal};

#[test]
fn checked_in_crds_match_what_roster_crds_prints() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("crds")
        .output()
        .expect("running `roster crds`");
    assert!(output.status.success());
    let printed = String::from_utf8(output.stdout).expect("UTF-8 YAML");
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/roster.dev.yaml"))
            .expect("crds/roster.dev.yaml exists");
    assert!(
        printed == checked_in,
        "crds/roster.dev.yaml is stale: run `make crds` and commit the result"
    );
}

#[tokio::test]
async fn crds_are_established() {
    let env = env().await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for name in [
        "provisioningpolicies.roster.dev",
        "users.roster.dev",
        "groups.roster.dev",
    ] {
        let crd = crds.get(name).await.expect("the CRD is installed");
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            "{name} is not Established: {conditions:?}"
        );
    }
}

#[tokio::test]
async fn policies_of_both_modes_users_and_groups_round_trip() {
    let env = env().await;
    let pp = PostParams::default();

    let policies: Api<ProvisioningPolicy> = env.api();
    for sent in [scim_policy("crm"), jit_policy("wiki")] {
        let created = policies
            .create(&pp, &sent)
            .await
            .expect("the policy is accepted");
        let read = policies
            .get(&created.metadata.name.clone().unwrap())
            .await
            .unwrap();
        assert_eq!(read.spec, sent.spec);
    }

    let users: Api<User> = env.api();
    let mut sent = user("u-1", "crm", "Alice@Example.com");
    sent.spec.external_id = Some("00u1abcd".into());
    sent.spec.name = Some(PersonName {
        given_name: Some("Alice".into()),
        family_name: Some("Liddell".into()),
        ..Default::default()
    });
    sent.spec.emails = vec![MultiValuedAttribute {
        value: "alice@example.com".into(),
        kind: Some("work".into()),
        primary: Some(true),
        display: None,
    }];
    sent.spec.enterprise = Some(EnterpriseAttributes {
        department: Some("Research".into()),
        ..Default::default()
    });
    sent.spec.extra_attributes.insert(
        "urn:example:badge".into(),
        json!({"level": 3, "tags": ["a", "b"]}),
    );
    users
        .create(&pp, &sent)
        .await
        .expect("the user is accepted");
    assert_eq!(users.get("u-1").await.unwrap().spec, sent.spec);

    let groups: Api<Group> = env.api();
    let mut sent = group("g-1", "crm", "Engineering");
    sent.spec.members = vec![GroupMember {
        value: "u-1".into(),
        user_name: None,
        kind: MemberKind::User,
        display: Some("Alice".into()),
    }];
    groups
        .create(&pp, &sent)
        .await
        .expect("the group is accepted");
    assert_eq!(groups.get("g-1").await.unwrap().spec, sent.spec);
}

#[tokio::test]
async fn defaults_are_filled_in_by_the_api_server() {
    let env = env().await;
    let users = dynamic::<User>(&env);
    let created = users
        .create(
            &PostParams::default(),
            &dynamic_object::<User>("u-defaults", json!({"policy": "crm", "userName": "bob"})),
        )
        .await
        .expect("a minimal user is accepted");
    // An unset `active` stays unset (SCIM may leave it unassigned) and means active.
    let user: User = serde_json::from_value(serde_json::to_value(&created).unwrap()).unwrap();
    assert_eq!(user.spec.active, None);
    assert!(user.spec.is_active());

    let policies = dynamic::<ProvisioningPolicy>(&env);
    let mut spec = serde_json::to_value(scim_policy("x").spec).unwrap();
    spec["application"]
        .as_object_mut()
        .unwrap()
        .remove("deprovision");
    let created = policies
        .create(
            &PostParams::default(),
            &dynamic_object::<ProvisioningPolicy>("p-defaults", spec),
        )
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"]["application"]["deprovision"],
        json!("Disable")
    );
}

#[tokio::test]
async fn jit_policy_without_saml_trust_is_refused() {
    let env = env().await;
    let mut policy = jit_policy("wiki");
    policy.spec.saml = None;
    let message = refusal(
        env.api::<ProvisioningPolicy>()
            .create(&PostParams::default(), &policy)
            .await,
    );
    assert!(
        message.contains("a Jit policy must set spec.saml"),
        "unexpected message: {message}"
    );
}

#[tokio::test]
async fn saml_trust_without_a_certificate_or_metadata_is_refused() {
    let env = env().await;
    let mut policy = jit_policy("wiki");
    policy.spec.saml.as_mut().unwrap().idp_certificates.clear();
    let message = refusal(
        env.api::<ProvisioningPolicy>()
            .create(&PostParams::default(), &policy)
            .await,
    );
    assert!(
        message.contains("saml needs idpMetadata, idpMetadataUrl or idpMetadataConfigMapRef, or idpEntityId with idpSsoUrl and at least one of idpCertificates"),
        "unexpected message: {message}"
    );
}

#[tokio::test]
async fn scim_policy_without_tokens_is_refused() {
    let env = env().await;
    let mut policy = scim_policy("crm");
    policy.spec.scim = None;
    let message = refusal(
        env.api::<ProvisioningPolicy>()
            .create(&PostParams::default(), &policy)
            .await,
    );
    assert!(
        message.contains("a Scim policy must set spec.scim"),
        "unexpected message: {message}"
    );
}

#[tokio::test]
async fn unknown_mode_is_refused() {
    let env = env().await;
    let mut spec = serde_json::to_value(scim_policy("x").spec).unwrap();
    spec["mode"] = json!("Both");
    let result = dynamic::<ProvisioningPolicy>(&env)
        .create(
            &PostParams::default(),
            &dynamic_object::<ProvisioningPolicy>("both", spec),
        )
        .await;
    let message = refusal(result);
    assert!(
        message
            .contains(r#"spec.mode: Unsupported value: "Both": supported values: "Scim", "Jit""#),
        "unexpected message: {message}"
    );
}

#[tokio::test]
async fn application_settings_must_match_its_kind() {
    let env = env().await;
    let mut policy = scim_policy("crm");
    for (kind, settings) in [
        (
            ApplicationKind::Webhook,
            "Webhook needs application.webhook",
        ),
        (
            ApplicationKind::Postgres,
            "Postgres needs application.postgres",
        ),
        (
            ApplicationKind::ArgoCdRbac,
            "ArgoCDRBAC needs application.argocdRbac",
        ),
    ] {
        policy.spec.application.kind = kind;
        let message = refusal(
            env.api::<ProvisioningPolicy>()
                .create(&PostParams::default(), &policy)
                .await,
        );
        assert!(
            message.contains(&format!(
                "application.kind {settings} and no other connector's settings"
            )),
            "unexpected message: {message}"
        );
    }
}

/// What reaches Argo CD's policy is checked at the door: a key Argo CD
/// would not read (or `policy.csv` itself, the team's), and a role that
/// would break the CSV line (one bad line refuses Argo CD's whole policy).
#[tokio::test]
async fn argocd_rbac_keys_and_roles_that_argo_cd_would_misread_are_refused() {
    let env = env().await;
    let argocd = |key: &str, role: &str| {
        let mut spec = serde_json::to_value(scim_policy("x").spec).unwrap();
        spec["application"] = json!({
            "kind": "ArgoCDRBAC",
            "argocdRbac": {"key": key, "groupRoles": [{"group": "Platform", "roles": [role]}]},
        });
        spec
    };
    let policies = dynamic::<ProvisioningPolicy>(&env);
    let create = |name: &'static str, spec: serde_json::Value| {
        let policies = policies.clone();
        async move {
            policies
                .create(
                    &PostParams::default(),
                    &dynamic_object::<ProvisioningPolicy>(name, spec),
                )
                .await
        }
    };
    for key in ["policy.csv", "roster.csv", "policy.a/b.csv"] {
        let message = refusal(create("bad-key", argocd(key, "role:admin")).await);
        assert!(
            message.contains("key must be policy.<name>.csv"),
            "{key}: {message}"
        );
    }
    for role in [
        "role:a, role:admin",
        "role:\"x",
        "role:x\ng, mallory, role:admin",
        " role:x",
        "role:x ",
        "#role",
    ] {
        let message = refusal(create("bad-role", argocd("policy.roster.csv", role)).await);
        assert!(
            message.contains("groupRoles[0].roles[0]"),
            "{role:?}: {message}"
        );
    }
    let created = create("good", argocd("policy.roster.csv", "role:org-admin")).await;
    assert!(created.is_ok(), "{created:?}");
    let policy = env.api::<ProvisioningPolicy>().get("good").await.unwrap();
    let settings = policy.spec.application.argocd_rbac.unwrap();
    assert_eq!(
        (settings.namespace.as_str(), settings.config_map.as_str()),
        ("argocd", "argocd-rbac-cm"),
        "defaults"
    );
}

#[tokio::test]
async fn empty_or_blank_user_name_is_refused() {
    let env = env().await;
    for (name, user_name) in [("empty", ""), ("blank", "   ")] {
        let message = refusal(
            env.api::<User>()
                .create(&PostParams::default(), &user(name, "crm", user_name))
                .await,
        );
        assert!(
            message.contains("spec.userName: Required value: userName must not be empty"),
            "unexpected message for {user_name:?}: {message}"
        );
    }
}

#[tokio::test]
async fn empty_group_display_name_is_refused() {
    let env = env().await;
    let message = refusal(
        env.api::<Group>()
            .create(&PostParams::default(), &group("g", "crm", ""))
            .await,
    );
    assert!(
        message.contains("displayName must not be empty"),
        "unexpected message: {message}"
    );
}

#[tokio::test]
async fn a_group_member_is_named_by_value_or_user_name_not_both_nor_neither() {
    let env = env().await;
    let groups: Api<Group> = env.api();
    let with_members = |name: &str, members: serde_json::Value| {
        json!({
            "apiVersion": "roster.dev/v1alpha1", "kind": "Group",
            "metadata": {"name": name},
            "spec": {"policy": "crm", "displayName": name, "members": members}
        })
    };
    let create = |object: serde_json::Value| {
        let groups = groups.clone();
        async move {
            let group: Group = serde_json::from_value(object).unwrap();
            groups.create(&PostParams::default(), &group).await
        }
    };
    // By userName, as written in git; by value, as SCIM ids are.
    create(with_members(
        "git",
        json!([{"userName": "ada@example.com"}, {"value": "u-1"}]),
    ))
    .await
    .unwrap();
    // Both, neither, and a group named by userName are refused (sent raw:
    // the Rust type would fill in `type`).
    let raw = |object: serde_json::Value| {
        let groups = groups.clone();
        async move {
            groups
                .patch(
                    object["metadata"]["name"].as_str().unwrap(),
                    &PatchParams::apply("test"),
                    &Patch::Apply(&object),
                )
                .await
        }
    };
    let both = refusal(
        raw(with_members(
            "both",
            json!([{"userName": "ada", "value": "u-1"}]),
        ))
        .await,
    );
    assert!(
        both.contains("either value (a SCIM id) or userName"),
        "{both}"
    );
    let neither = refusal(raw(with_members("neither", json!([{"display": "Ada"}]))).await);
    assert!(
        neither.contains("either value (a SCIM id) or userName"),
        "{neither}"
    );
    let nested = refusal(
        raw(with_members(
            "nested",
            json!([{"userName": "ops", "type": "Group"}]),
        ))
        .await,
    );
    assert!(
        nested.contains("a member named by userName is a User"),
        "{nested}"
    );
}

#[tokio::test]
async fn an_access_grant_binds_at_least_one_role() {
    let env = env().await;
    let grants: Api<roster::api::AccessGrant> = env.api();
    let grant = json!({
        "apiVersion": "roster.dev/v1alpha1", "kind": "AccessGrant",
        "metadata": {"name": "nothing"},
        "spec": {"policy": "crm", "group": "Engineering", "namespaces": ["a"]}
    });
    let message = refusal(
        grants
            .patch(
                "nothing",
                &PatchParams::apply("test"),
                &Patch::Apply(&grant),
            )
            .await,
    );
    assert!(message.contains("binds at least one role"), "{message}");
}

#[tokio::test]
async fn a_user_cannot_move_to_another_policy() {
    let env = env().await;
    let users: Api<User> = env.api();
    users
        .create(&PostParams::default(), &user("u-1", "crm", "alice"))
        .await
        .unwrap();
    let patch = json!({"spec": {"policy": "wiki"}});
    let message = refusal(
        users
            .patch("u-1", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert!(
        message.contains("spec.policy: Forbidden: policy is immutable"),
        "unexpected message: {message}"
    );
    // Other fields stay mutable.
    let patch = json!({"spec": {"userName": "alice.liddell", "active": false}});
    let renamed = users
        .patch("u-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("userName and active may change");
    assert_eq!(renamed.spec.user_name, "alice.liddell");
}

#[tokio::test]
async fn a_group_cannot_move_to_another_policy() {
    let env = env().await;
    let groups: Api<Group> = env.api();
    groups
        .create(&PostParams::default(), &group("g-1", "crm", "Engineering"))
        .await
        .unwrap();
    let patch = json!({"spec": {"policy": "wiki"}});
    let message = refusal(
        groups
            .patch("g-1", &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    );
    assert!(
        message.contains("policy is immutable"),
        "unexpected message: {message}"
    );
}

#[tokio::test]
async fn a_jit_subject_cannot_change_or_be_removed_once_set() {
    let env = env().await;
    let users: Api<User> = env.api();
    let mut sent = user("u-1", "wiki", "alice");
    sent.spec.subject = Some("00u1subject".into());
    users.create(&PostParams::default(), &sent).await.unwrap();
    for patch in [
        json!({"spec": {"subject": "someone-else"}}),
        json!({"spec": {"subject": null}}),
    ] {
        let message = refusal(
            users
                .patch("u-1", &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        );
        assert!(
            message.contains("subject is immutable once set"),
            "unexpected message: {message}"
        );
    }
    // Unset may become set (a user adopted into JIT keying).
    users
        .create(&PostParams::default(), &user("u-2", "wiki", "bob"))
        .await
        .unwrap();
    let patch = json!({"spec": {"subject": "00u2subject"}});
    users
        .patch("u-2", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("a subject can be set once");
}

#[tokio::test]
async fn printer_columns_appear_in_table_output() {
    let env = env().await;
    let pp = PostParams::default();
    env.api::<ProvisioningPolicy>()
        .create(&pp, &scim_policy("crm"))
        .await
        .unwrap();
    env.api::<User>()
        .create(&pp, &user("u-1", "crm", "alice@example.com"))
        .await
        .unwrap();
    env.api::<Group>()
        .create(&pp, &group("g-1", "crm", "Engineering"))
        .await
        .unwrap();

    let rendered = table_of::<ProvisioningPolicy>(&env).await;
    assert_eq!(
        columns(&rendered),
        [
            "Name",
            "Mode",
            "Application",
            "Ready",
            "Reason",
            "Quarantined",
            "Age"
        ]
    );
    assert_eq!(
        &row(&rendered)[..3],
        [json!("crm"), json!("Scim"), json!("Scim")]
    );

    let rendered = table_of::<User>(&env).await;
    assert_eq!(
        columns(&rendered),
        [
            "Name", "UserName", "Active", "Source", "Ready", "Reason", "Policy", "Age"
        ]
    );
    // ACTIVE is the controller's status.active (see the test below).
    assert_eq!(
        &row(&rendered)[..2],
        [json!("u-1"), json!("alice@example.com")]
    );

    let rendered = table_of::<Group>(&env).await;
    assert_eq!(
        columns(&rendered),
        [
            "Name",
            "DisplayName",
            "Members",
            "Ready",
            "Reason",
            "Policy",
            "Age"
        ]
    );
    assert_eq!(&row(&rendered)[..2], [json!("g-1"), json!("Engineering")]);
}

/// `kubectl get users` shows in ACTIVE what Roster acts on, also for a
/// user whose `active` was never sent (unset means active).
#[tokio::test]
async fn the_active_column_shows_what_roster_acts_on() {
    let env = env().await;
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &scim_policy("crm"))
        .await
        .unwrap();
    dynamic::<User>(&env)
        .create(
            &PostParams::default(),
            &dynamic_object::<User>(
                "u-unset",
                json!({"policy": "crm", "userName": "unset@example.com"}),
            ),
        )
        .await
        .unwrap();
    let users = env.api::<User>();
    assert_eq!(users.get("u-unset").await.unwrap().spec.active, None);
    let _controllers = crate::controller::start_controllers(&env);
    let active = || async { users.get("u-unset").await.ok()?.status?.active };
    crate::controller::eventually("status.active", || async { active().await.filter(|a| *a) })
        .await;
    assert_eq!(row(&table_of::<User>(&env).await)[2], json!(true));
    users
        .patch(
            "u-unset",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    crate::controller::eventually("status.active false", || async {
        active().await.filter(|a| !*a)
    })
    .await;
    assert_eq!(row(&table_of::<User>(&env).await)[2], json!(false));
}

#[tokio::test]
async fn kinds_are_in_the_roster_category_with_short_names() {
    let env = env().await;
    let crds: Api<CustomResourceDefinition> = Api::all(env.client.clone());
    for (name, short) in [
        ("provisioningpolicies.roster.dev", "ppol"),
        ("users.roster.dev", "rsu"),
        ("groups.roster.dev", "rsg"),
    ] {
        let names = crds.get(name).await.unwrap().spec.names;
        assert_eq!(names.categories, Some(vec!["roster".to_owned()]));
        assert_eq!(names.short_names, Some(vec![short.to_owned()]));
    }
}

fn dynamic<K>(env: &crate::support::TestEnv) -> Api<DynamicObject>
where
    K: kube::Resource<DynamicType = ()>,
{
    Api::namespaced_with(
        env.client.clone(),
        &env.namespace,
        &ApiResource::erase::<K>(&()),
    )
}

fn dynamic_object<K>(name: &str, spec: serde_json::Value) -> DynamicObject
where
    K: kube::Resource<DynamicType = ()>,
{
    DynamicObject::new(name, &ApiResource::erase::<K>(&())).data(json!({ "spec": spec }))
}

/// The API server's table rendering of a kind, as `kubectl get` requests it.
async fn table_of<K>(env: &crate::support::TestEnv) -> serde_json::Value
where
    K: kube::Resource<DynamicType = ()>,
{
    let resource = ApiResource::erase::<K>(&());
    let uri = format!(
        "/apis/{}/namespaces/{}/{}",
        resource.api_version, env.namespace, resource.plural
    );
    let request = http::Request::get(uri)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    env.client.request(request).await.expect("a Table response")
}

fn columns(table: &serde_json::Value) -> Vec<String> {
    table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn row(table: &serde_json::Value) -> Vec<serde_json::Value> {
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "one object of the kind in the namespace");
    rows[0]["cells"].as_array().unwrap().clone()
}
