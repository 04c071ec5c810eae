//! The operator under exactly the chart's RBAC. The chart is rendered with
//! helm; its ServiceAccount, ClusterRole, Roles and bindings are created in
//! the API server as rendered; `roster run` runs in the test process as that
//! ServiceAccount (a token from the TokenRequest API). It must still lead,
//! serve SCIM and SAML, provision through its controllers and write Events,
//! and be refused what the chart does not grant, which also shows the client
//! is not the admin.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::Resource;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::AuthInfo;
use roster::api::{ApplicationKind, GroupMemberSlice, ProvisioningPolicy, SecretKeyRef, User};
use roster::leader::LeaderArgs;
use roster::operator::RunArgs;
use roster::server::ServerArgs;
use serde_json::{Value, json};

use crate::chart::{all, kube_version, parse_objects, render_release};
use crate::controller::{eventually, synced, webhook_policy};
use crate::support::fixtures::jit_policy;
use crate::support::saml::{Idp, PUBLIC_URL, Response, SamlServer};
use crate::support::scim::{ScimServer, create_policy};
use crate::support::{TestEnv, env};

/// Where the chart's rules apply.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Cluster,
    Namespaced,
}

#[tokio::test]
async fn the_operator_works_with_the_cluster_scoped_rules_and_nothing_more() {
    works_with_only_the_chart_rules(Scope::Cluster).await;
}

#[tokio::test]
async fn the_operator_works_with_the_namespaced_rules_and_nothing_more() {
    works_with_only_the_chart_rules(Scope::Namespaced).await;
}

async fn works_with_only_the_chart_rules(scope: Scope) {
    let env = env().await;
    // Another namespace, with a policy of its own: outside the namespaced
    // Roles, so Roster must neither read there nor fail on it.
    let other = crate::support::env().await;
    let release = format!("roster-{:08x}", rand::random::<u32>());
    let mut identity = ChartIdentity::install(&env, &release, scope).await;
    let as_roster = identity.client().await;

    // ----- the client is not the admin: what the chart doesn't grant is refused
    let forbidden = |result: Result<_, kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403, got {other:?}"),
    };
    forbidden(
        Api::<Secret>::namespaced(as_roster.clone(), &env.namespace)
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "listing the Secrets of the watched namespace",
    );
    forbidden(
        Api::<Secret>::all(as_roster.clone())
            .watch(&Default::default(), "0")
            .await
            .map(|_| ()),
        "watching every Secret",
    );
    forbidden(
        Api::<Namespace>::all(as_roster.clone())
            .list(&ListParams::default())
            .await
            .map(|_| ()),
        "listing namespaces",
    );
    forbidden(
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(as_roster.clone(), &env.namespace)
            .create(&PostParams::default(), &core_event())
            .await
            .map(|_| ()),
        "creating a core Event",
    );
    if scope == Scope::Namespaced {
        forbidden(
            Api::<Secret>::namespaced(as_roster.clone(), &other.namespace)
                .get("other-scim-tokens")
                .await
                .map(|_| ()),
            "reading a Secret outside the watched namespaces",
        );
        forbidden(
            Api::<ProvisioningPolicy>::all(as_roster.clone())
                .list(&ListParams::default())
                .await
                .map(|_| ()),
            "listing policies cluster-wide",
        );
    } else {
        // What the cluster-scoped rules are for: every namespace's policies.
        Api::<ProvisioningPolicy>::all(as_roster.clone())
            .list(&ListParams::default())
            .await
            .expect("the ClusterRole lists policies in every namespace");
    }

    // ----- policies, created by the admin: a Scim one and a Jit one, both
    // provisioning into a webhook receiver.
    let key = b"rbac-webhook-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    webhook_policy(&env, "crm", &receiver.url, key).await;
    let token = "rbac-scim-token-0123456789";
    secret(&env, "crm-scim-tokens", "token-1", token).await;
    let idp = Idp::okta();
    let mut wiki = jit_policy("wiki");
    let saml = wiki.spec.saml.as_mut().unwrap();
    saml.idp_entity_id = Some(idp.entity_id.clone());
    saml.idp_certificates = vec![idp.cert_pem.clone()];
    wiki.spec.application.kind = ApplicationKind::Webhook;
    let hook = wiki.spec.application.webhook.as_mut().unwrap();
    hook.url = receiver.url.clone();
    hook.signing_secret_ref = SecretKeyRef {
        name: "crm-hook".into(),
        key: "key".into(),
    };
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &wiki)
        .await
        .unwrap();
    create_policy(
        &other,
        crate::support::fixtures::scim_policy("other"),
        token,
    )
    .await;

    // ----- the operator, as the chart's ServiceAccount
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let origin = format!("http://127.0.0.1:{port}");
    let args = RunArgs {
        server: ServerArgs {
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            public_url: Some(PUBLIC_URL.to_owned()),
            pod_name: Some("rbac-replica".to_owned()),
            ..ServerArgs::default()
        },
        leader: LeaderArgs {
            leader_election: true,
            lease_name: identity.lease_name.clone(),
            lease_namespace: env.namespace.clone(),
            lease_duration_seconds: 4,
            lease_grace_seconds: 1,
        },
        // Also with the cluster-wide rules: controllers over every namespace
        // would reconcile the other tests' objects.
        watch_namespace: vec![env.namespace.clone()],
        serve_only: false,
        initial_lists: Default::default(),
        access_grants: false,
        bindable_cluster_roles: Vec::new(),
        cluster_wide_roles: Vec::new(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(async move {
        roster::operator::run(as_roster, &args, async {
            let _ = stopped.await;
        })
        .await
    });
    let http = reqwest::Client::new();
    eventually("the operator to be ready", || async {
        let reply = http.get(format!("{origin}/readyz")).send().await.ok()?;
        (reply.status() == 200).then_some(())
    })
    .await;

    // ----- leader election: the replica holds the chart's Lease
    let leases: Api<Lease> = env.api();
    let holder = eventually("the replica to lead", || async {
        leases
            .get_opt(&identity.lease_name)
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await;
    assert_eq!(holder, "rbac-replica");

    // ----- SCIM: a user and a group with it as a member
    let scim = ScimServer::at(&origin, &env.namespace, "crm", token);
    let created = scim
        .post(
            "/Users",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "carol@example.com",
                "active": true,
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let carol = created.body["id"].as_str().unwrap().to_owned();
    let group = scim
        .post(
            "/Groups",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Staff",
                "members": [{"value": carol}],
            }),
        )
        .await;
    assert_eq!(group.status, 201, "{}", group.body);
    let staff = group.body["id"].as_str().unwrap().to_owned();

    // ----- the controllers provision both, membership included
    let users: Api<User> = env.api();
    let remote = synced(&users, &carol).await;
    assert!(!remote.is_empty());
    let slices: Api<GroupMemberSlice> = env.api();
    eventually("Carol's membership to be synced", || async {
        slices
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|s| s.spec.group == staff)?
            .status?
            .synced_members
            .contains_key(&carol)
            .then_some(())
    })
    .await;
    let delivered = |kind: &'static str| {
        let receiver = &receiver;
        move || async move {
            receiver
                .accepted()
                .iter()
                .any(|d| d.event_type == kind)
                .then_some(())
        }
    };
    eventually("user.created delivered", delivered("user.created")).await;
    eventually("members added delivered", delivered("group.members_added")).await;

    // ----- Events about Carol: the SCIM audit trail and the controller's
    let events: Api<k8s_openapi::api::events::v1::Event> = env.api();
    for reporter in ["roster-scim", "roster-controller"] {
        eventually(&format!("an Event by {reporter}"), || async {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .any(|e| {
                    e.reporting_controller.as_deref() == Some(reporter)
                        && e.reporting_instance.as_deref() == Some("rbac-replica")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                            == Some(carol.as_str())
                })
                .then_some(())
        })
        .await;
    }

    // ----- SAML: a JIT login creates a user the controller provisions
    let saml = SamlServer::at(&origin, &env.namespace, "wiki");
    let login = Response::okta(&idp, &saml, "dave@example.com", "Dave", "Jones");
    let reply = saml.sp_login(&idp, login).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let dave = eventually("Dave's JIT user", || async {
        users
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|u| u.spec.user_name == "dave@example.com")
    })
    .await;
    assert!(
        dave.status
            .as_ref()
            .and_then(|s| s.last_login.as_ref())
            .is_some(),
        "the login recorded lastLogin in status"
    );
    synced(&users, dave.meta().name.as_deref().unwrap()).await;

    // ----- SCIM deletions: the group with its slices, the user through its finalizer
    assert_eq!(scim.delete(&format!("/Groups/{staff}")).await.status, 204);
    eventually("the group's slices to be gone", || async {
        let left = slices.list(&ListParams::default()).await.ok()?.items;
        (!left.iter().any(|s| s.spec.group == staff)).then_some(())
    })
    .await;
    assert_eq!(scim.delete(&format!("/Users/{carol}")).await.status, 204);
    eventually("Carol to be deprovisioned and gone", || async {
        users.get_opt(&carol).await.ok()?.is_none().then_some(())
    })
    .await;
    eventually("user.deleted delivered", delivered("user.deleted")).await;

    // ----- a namespace outside the watched ones: a clean refusal, no 403 passed on
    if scope == Scope::Namespaced {
        let outside = ScimServer::at(&origin, &other.namespace, "other", token);
        outside.get("/Users").await.assert_error(401, None);
        let saml = SamlServer::at(&origin, &other.namespace, "other");
        assert_eq!(saml.get("metadata").await.status, 404);
    }

    // ----- shutting down releases the Lease
    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), operator)
        .await
        .expect("the operator stops")
        .unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
    identity.uninstall(&env).await;
}

/// The chart's ServiceAccount and RBAC objects, created as rendered.
struct ChartIdentity {
    admin: kube::Client,
    namespace: String,
    /// The ServiceAccount's token, which the client reads.
    token_file: tempfile::NamedTempFile,
    service_account: String,
    lease_name: String,
    cluster_objects: Vec<String>,
}

impl ChartIdentity {
    /// Renders release `release` into the test namespace (which it also
    /// watches, with `Scope::Namespaced`) and creates its RBAC objects.
    async fn install(env: &TestEnv, release: &str, scope: Scope) -> Self {
        let watched = format!("watchNamespaces={{{}}}", env.namespace);
        let mut args = vec![];
        if scope == Scope::Namespaced {
            args = vec!["--set", "rbac.scope=namespaced", "--set", &watched];
        }
        let rendered = render_release(release, &env.namespace, &kube_version(), &args);
        let objects = parse_objects(&rendered);
        let pp = PostParams::default();
        let admin = env.client.clone();
        let service_accounts = all::<ServiceAccount>(&objects, "ServiceAccount");
        assert_eq!(service_accounts.len(), 1);
        let service_account = service_accounts[0].metadata.name.clone().unwrap();
        for object in service_accounts {
            env.api::<ServiceAccount>()
                .create(&pp, &object)
                .await
                .unwrap();
        }
        let mut cluster_objects = Vec::new();
        for object in all::<ClusterRole>(&objects, "ClusterRole") {
            cluster_objects.push(object.metadata.name.clone().unwrap());
            Api::<ClusterRole>::all(admin.clone())
                .create(&pp, &object)
                .await
                .unwrap();
        }
        for object in all::<ClusterRoleBinding>(&objects, "ClusterRoleBinding") {
            Api::<ClusterRoleBinding>::all(admin.clone())
                .create(&pp, &object)
                .await
                .unwrap();
        }
        let roles = all::<Role>(&objects, "Role");
        let bindings = all::<RoleBinding>(&objects, "RoleBinding");
        // With the namespaced rules: the Lease's Role and the watched
        // namespace's; without, the Lease's only.
        let expected = if scope == Scope::Namespaced { 2 } else { 1 };
        assert_eq!((roles.len(), bindings.len()), (expected, expected));
        for object in roles {
            let namespace = object.metadata.namespace.clone().unwrap();
            Api::<Role>::namespaced(admin.clone(), &namespace)
                .create(&pp, &object)
                .await
                .unwrap();
        }
        for object in bindings {
            let namespace = object.metadata.namespace.clone().unwrap();
            Api::<RoleBinding>::namespaced(admin.clone(), &namespace)
                .create(&pp, &object)
                .await
                .unwrap();
        }
        let lease_name = deployment_env(&objects, "ROSTER_LEASE_NAME");
        Self {
            admin,
            namespace: env.namespace.clone(),
            token_file: tempfile::NamedTempFile::new().unwrap(),
            service_account,
            lease_name,
            cluster_objects,
        }
    }

    /// A client that authenticates as the ServiceAccount, with a token from
    /// the TokenRequest API, and nothing else of the admin's identity.
    async fn client(&mut self) -> kube::Client {
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = Api::<ServiceAccount>::namespaced(self.admin.clone(), &self.namespace)
            .create_token_request(&self.service_account, &PostParams::default(), &request)
            .await
            .expect("a token for the ServiceAccount");
        let token = issued.status.expect("the token").token;
        std::fs::write(self.token_file.path(), token).unwrap();
        let mut config = crate::support::config();
        config.auth_info = AuthInfo {
            token_file: Some(self.token_file.path().to_string_lossy().into_owned()),
            ..AuthInfo::default()
        };
        kube::Client::try_from(config).expect("a client for the ServiceAccount")
    }

    async fn uninstall(self, env: &TestEnv) {
        for name in &self.cluster_objects {
            let _ = Api::<ClusterRoleBinding>::all(env.client.clone())
                .delete(name, &DeleteParams::default())
                .await;
            let _ = Api::<ClusterRole>::all(env.client.clone())
                .delete(name, &DeleteParams::default())
                .await;
        }
    }
}

fn deployment_env(objects: &[Value], name: &str) -> String {
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["value"].as_str())
        .unwrap_or_else(|| panic!("{name} is not set"))
        .to_owned()
}

async fn secret(env: &TestEnv, name: &str, key: &str, value: &str) {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.string_data = Some([(key.to_owned(), value.to_owned())].into());
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

fn core_event() -> k8s_openapi::api::core::v1::Event {
    let mut event = k8s_openapi::api::core::v1::Event::default();
    event.metadata.name = Some("rbac-probe".into());
    event.involved_object.kind = Some("User".into());
    event.involved_object.name = Some("nobody".into());
    event
}
