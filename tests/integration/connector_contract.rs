//! One contract, run against every connector (SCIM against scim2-server,
//! PostgreSQL against real 15 and 18 servers, Argo CD RBAC against the real
//! API server's ConfigMap judged by Argo CD's Casbin, webhooks against a
//! receiver that keeps what the events say), in the spirit of ConnId's
//! contract tests. What each peer reports comes from the application
//! itself: SCIM's own API, a real PostgreSQL login, Argo CD's policy
//! evaluation, the receiver's state.
//!
//! A webhook receiver can't be asked what it holds (`find_user` is always
//! `None`, so nothing is adopted and drift can't be seen): for it the
//! contract's find steps don't apply, and drift is repaired by the next
//! change, whose event carries a new key. Its delivery, retry and signature
//! tests stay in connectors.rs. Unmanaged and protected objects are per
//! kind: postgres.rs (hand-made and protected roles) and argocd_rbac.rs (the
//! other keys of the ConfigMap, a hand edit undone).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use roster::connectors::argocd::ArgoCdRbacConnector;
use roster::connectors::postgres::PostgresConnector;
use roster::connectors::{AnyConnector, Connector, DesiredGroup, DesiredUser};
use serde_json::json;

use crate::argocd_rbac::{argocd_namespace, connector_settings, edit_by_hand, may, rbac_data};
use crate::connectors::Scim2Server;
use crate::support::env;
use crate::support::postgres::{Postgres, Release};
use crate::support::webhook::Receiver;

/// What the contract asks of an application, answered by the application.
trait Peer {
    fn connector(&self) -> AnyConnector;
    /// Whether `user_name` can use the application now (SCIM: the account
    /// is active; PostgreSQL: a login succeeds; Argo CD: its policy lets
    /// the person sync as a member of the group the contract made).
    async fn can_use(&self, user_name: &str) -> bool;
    /// The userNames the application holds as members of the group.
    async fn members(&self, group_id: &str, display_name: &str) -> BTreeSet<String>;
    /// Takes `user_name`'s use of the application away out of band.
    async fn tamper(&self, remote_id: &str, user_name: &str);
    /// Whether the application can be asked what it holds (`find_user`,
    /// `find_group`): what adoption and drift repair at the same
    /// generation rely on.
    fn answers_find(&self) -> bool {
        true
    }
}

/// The User at spec `generation` (a webhook event's key names it).
fn desired_user(id: &str, user_name: &str, active: bool, generation: i64) -> DesiredUser {
    DesiredUser {
        id: id.into(),
        uid: format!("uid-{id}"),
        generation,
        user_name: user_name.into(),
        active,
        resource: json!({"userName": user_name, "active": active}),
    }
}

fn desired_group(id: &str, display_name: &str) -> DesiredGroup {
    DesiredGroup {
        id: id.into(),
        uid: format!("uid-{id}"),
        generation: 1,
        display_name: display_name.into(),
        external_id: None,
    }
}

const GROUP: &str = "Platform";

/// The contract. Each step says what a controller relies on.
async fn contract(peer: &impl Peer) {
    let connector = peer.connector();
    let finds = peer.answers_find();
    let ada = desired_user("u-ada", "ada@example.com", true, 1);
    let grace = desired_user("u-grace", "grace@example.com", true, 1);

    // Create, then find by userName in any case: a sync that crashed after
    // creating adopts the account instead of making a second one.
    let ada_id = connector.create_user(&ada).await.unwrap();
    let grace_id = connector.create_user(&grace).await.unwrap();
    if finds {
        let found = connector.find_user("ADA@Example.com").await.unwrap();
        assert_eq!(
            found.map(|a| a.id),
            Some(ada_id.clone()),
            "adopt by userName"
        );
    }
    // Updates are idempotent.
    for _ in 0..2 {
        connector.update_user(&ada_id, &ada).await.unwrap();
    }

    let platform = desired_group("g-platform", GROUP);
    let group_id = connector.create_group(&platform).await.unwrap();
    if finds {
        assert_eq!(
            connector.find_group(GROUP).await.unwrap().as_deref(),
            Some(group_id.as_str()),
            "adopt a group by displayName"
        );
    }

    // Membership changes are idempotent, each way.
    let both = [ada_id.clone(), grace_id.clone()];
    for change in ["c1", "c1-again"] {
        connector
            .change_members(&group_id, &platform, &both, &[], change)
            .await
            .unwrap();
    }
    let names = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        peer.members(&group_id, GROUP).await,
        names(&["ada@example.com", "grace@example.com"])
    );
    assert!(peer.can_use("ada@example.com").await);
    for change in ["c2", "c2-again"] {
        connector
            .change_members(&group_id, &platform, &[], &both[1..], change)
            .await
            .unwrap();
    }
    assert_eq!(
        peer.members(&group_id, GROUP).await,
        names(&["ada@example.com"])
    );

    // Disabled (the User's spec changed): proven by the application, and
    // reported by find.
    let disabled = desired_user("u-ada", "ada@example.com", false, 2);
    connector.disable_user(&ada_id, &disabled).await.unwrap();
    assert!(!peer.can_use("ada@example.com").await, "disabled");
    if finds {
        let found = connector
            .find_user("ada@example.com")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.active, Some(false));
    }
    // Enabled again by an update (the spec changed back).
    let ada = desired_user("u-ada", "ada@example.com", true, 3);
    connector.update_user(&ada_id, &ada).await.unwrap();
    assert!(peer.can_use("ada@example.com").await, "enabled again");

    // Drift made out of band is repaired by the next update: at the same
    // generation where the application can be read, else at the next one.
    peer.tamper(&ada_id, "ada@example.com").await;
    assert!(!peer.can_use("ada@example.com").await, "tampered");
    let ada = desired_user("u-ada", "ada@example.com", true, if finds { 3 } else { 4 });
    connector.update_user(&ada_id, &ada).await.unwrap();
    assert!(peer.can_use("ada@example.com").await, "repaired");

    // Deleting twice counts as done.
    for _ in 0..2 {
        connector.delete_user(&ada_id, &ada).await.unwrap();
    }
    assert!(!peer.can_use("ada@example.com").await, "deleted");
    for _ in 0..2 {
        connector.delete_group(&group_id, &platform).await.unwrap();
    }
    if !finds {
        // The other account is untouched by all of it.
        assert!(peer.can_use("grace@example.com").await);
        return;
    }
    assert_eq!(connector.find_user("ada@example.com").await.unwrap(), None);
    assert_eq!(connector.find_group(GROUP).await.unwrap(), None);
    // The other account is untouched by all of it.
    let grace_found = connector.find_user("grace@example.com").await.unwrap();
    assert_eq!(
        grace_found.map(|a| (a.id, a.active)),
        Some((grace_id, Some(true)))
    );
}

// ---------------------------------------------------------------- SCIM

impl Peer for Scim2Server {
    fn connector(&self) -> AnyConnector {
        AnyConnector::Scim(Scim2Server::connector(self))
    }

    async fn can_use(&self, user_name: &str) -> bool {
        let filter = format!("/Users?filter=userName%20eq%20%22{user_name}%22");
        let (_, body) = self.get(&filter).await;
        body["Resources"]
            .as_array()
            .and_then(|users| users.first())
            .is_some_and(|user| user["active"] == json!(true))
    }

    async fn members(&self, group_id: &str, _: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        for id in self.member_ids(group_id).await {
            let (_, user) = self.get(&format!("/Users/{id}")).await;
            names.insert(user["userName"].as_str().unwrap().to_owned());
        }
        names
    }

    async fn tamper(&self, remote_id: &str, _: &str) {
        let (status, body) = self
            .send(
                reqwest::Method::PATCH,
                &format!("/Users/{remote_id}"),
                &json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "active", "value": false}],
                }),
            )
            .await;
        assert!(status == 200 || status == 204, "{status} {body}");
    }
}

#[tokio::test]
async fn the_scim_connector_keeps_the_contract() {
    contract(&Scim2Server::start().await).await;
}

// ---------------------------------------------------------------- PostgreSQL

const ADMIN_PASSWORD: &str = "admin-password-0123";
/// Set out of band, as the cluster's own authentication would be.
const USER_PASSWORD: &str = "user-password-0123";

struct PostgresPeer {
    server: Postgres,
    admin: tokio_postgres::Client,
    connector: PostgresConnector,
}

impl PostgresPeer {
    async fn start(release: Release) -> Self {
        let server = Postgres::start_release(release, ADMIN_PASSWORD).await;
        let admin = server
            .connect("postgres", ADMIN_PASSWORD, "postgres")
            .await
            .unwrap();
        let settings = roster::api::PostgresConnector {
            host: "127.0.0.1".into(),
            port: server.port,
            user: "postgres".into(),
            password_secret_ref: Default::default(),
            database: "postgres".into(),
            fallback_owner: "postgres".into(),
            databases: vec![],
            protected_roles: vec![],
            group_roles: vec![],
            tls_mode: roster::api::PostgresTlsMode::VerifyFull,
            ca_secret_ref: None,
        };
        let connector =
            PostgresConnector::new(&settings, ADMIN_PASSWORD, Some(&server.ca_pem)).unwrap();
        Self {
            server,
            admin,
            connector,
        }
    }
}

impl Peer for PostgresPeer {
    fn connector(&self) -> AnyConnector {
        AnyConnector::from(self.connector.clone())
    }

    async fn can_use(&self, user_name: &str) -> bool {
        // The password is the cluster's business, set here by hand.
        let set = self
            .admin
            .execute(
                &format!(
                    "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = {0}) THEN \
                     EXECUTE format('ALTER ROLE %I PASSWORD %L', {0}, {1}); END IF; END $$",
                    quote_literal(user_name),
                    quote_literal(USER_PASSWORD)
                ),
                &[],
            )
            .await;
        set.unwrap();
        self.server
            .connect(user_name, USER_PASSWORD, "postgres")
            .await
            .is_ok()
    }

    async fn members(&self, _: &str, display_name: &str) -> BTreeSet<String> {
        self.admin
            .query(
                "SELECT m.rolname::text FROM pg_auth_members a \
                 JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
                 WHERE g.rolname = $1",
                &[&display_name],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    async fn tamper(&self, _: &str, user_name: &str) {
        self.admin
            .execute(
                &format!(
                    "DO $$ BEGIN EXECUTE format('ALTER ROLE %I NOLOGIN', {}); END $$",
                    quote_literal(user_name)
                ),
                &[],
            )
            .await
            .unwrap();
    }
}

/// A SQL string literal (the test's own values; the connector uses the
/// server's `format`).
fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[tokio::test]
async fn the_postgres_connector_keeps_the_contract() {
    contract(&PostgresPeer::start(Release::Debian).await).await;
}

#[tokio::test]
async fn the_postgres_connector_keeps_the_contract_on_postgres_18() {
    contract(&PostgresPeer::start(Release::Recent).await).await;
}

// ---------------------------------------------------------------- Argo CD RBAC

struct ArgoPeer {
    config_maps: Api<ConfigMap>,
    connector: ArgoCdRbacConnector,
}

impl Peer for ArgoPeer {
    fn connector(&self) -> AnyConnector {
        AnyConnector::from(self.connector.clone())
    }

    async fn can_use(&self, user_name: &str) -> bool {
        may(&rbac_data(&self.config_maps).await, user_name, "sync").await
    }

    async fn members(&self, _: &str, _: &str) -> BTreeSet<String> {
        // Whom Argo CD's policy gives the group's role.
        let data = rbac_data(&self.config_maps).await;
        let mut members = BTreeSet::new();
        for user_name in ["ada@example.com", "grace@example.com"] {
            if may(&data, user_name, "sync").await {
                members.insert(user_name.to_owned());
            }
        }
        members
    }

    async fn tamper(&self, _: &str, user_name: &str) {
        // Someone deletes the person's line by hand.
        let data = rbac_data(&self.config_maps).await;
        let edited: String = data["policy.roster.csv"]
            .lines()
            .filter(|line| !line.starts_with(&format!("g,\"{user_name}\"")))
            .map(|line| format!("{line}\n"))
            .collect();
        edit_by_hand(&self.config_maps, &edited).await;
    }
}

#[tokio::test]
async fn the_argocd_rbac_connector_keeps_the_contract() {
    let env = env().await;
    let (namespace, config_maps) = argocd_namespace(&env).await;
    let settings = connector_settings(&namespace, &[(GROUP, &["role:admin"])]);
    let peer = ArgoPeer {
        connector: ArgoCdRbacConnector::new(env.client.clone(), &settings, "test/argo"),
        config_maps,
    };
    contract(&peer).await;
    assert!(
        !rbac_data(&peer.config_maps).await["policy.roster.csv"].contains("u-ada"),
        "a deleted user leaves no record"
    );
}

// ---------------------------------------------------------------- webhooks

const WEBHOOK_KEY: &[u8] = b"whsec_contract";

/// A receiver that keeps what the events say, as an application would:
/// each verified event applied once, by its key (`Roster-Event-Id`).
struct WebhookPeer {
    receiver: Receiver,
    connector: roster::connectors::webhook::WebhookConnector,
    /// Out-of-band changes: (deliveries before it, the user it disabled).
    tampered: std::sync::Mutex<Vec<(usize, String)>>,
}

/// The receiver's state: users by id (userName, active), groups by id
/// (member ids).
#[derive(Default)]
struct Received {
    users: std::collections::BTreeMap<String, (String, bool)>,
    groups: std::collections::BTreeMap<String, BTreeSet<String>>,
}

impl WebhookPeer {
    fn received(&self) -> Received {
        let deliveries = self.receiver.accepted();
        let tampered = self.tampered.lock().unwrap().clone();
        let mut state = Received::default();
        let mut seen = BTreeSet::new();
        for i in 0..=deliveries.len() {
            for (_, user) in tampered.iter().filter(|(at, _)| *at == i) {
                if let Some(account) = state.users.get_mut(user) {
                    account.1 = false;
                }
            }
            let Some(delivery) = deliveries.get(i) else {
                break;
            };
            assert!(delivery.verified, "{delivery:?}");
            if !seen.insert(delivery.event_id.clone()) {
                continue;
            }
            let body = &delivery.body;
            let id = |of: &str| body[of]["id"].as_str().unwrap().to_owned();
            let members = || {
                body["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            };
            match delivery.event_type.as_str() {
                "user.created" | "user.updated" | "user.deactivated" => {
                    let user = &body["user"];
                    let name = user["userName"].as_str().unwrap().to_owned();
                    state
                        .users
                        .insert(id("user"), (name, user["active"] == json!(true)));
                }
                "user.deleted" => {
                    state.users.remove(&id("user"));
                }
                "group.created" | "group.updated" => {
                    state.groups.entry(id("group")).or_default();
                }
                "group.deleted" => {
                    state.groups.remove(&id("group"));
                }
                "group.members_added" => {
                    state
                        .groups
                        .entry(id("group"))
                        .or_default()
                        .extend(members());
                }
                "group.members_removed" => {
                    let group = state.groups.entry(id("group")).or_default();
                    for member in members() {
                        group.remove(&member);
                    }
                }
                other => panic!("unknown event type {other}"),
            }
        }
        state
    }
}

impl Peer for WebhookPeer {
    fn connector(&self) -> AnyConnector {
        AnyConnector::Webhook(self.connector.clone())
    }

    async fn can_use(&self, user_name: &str) -> bool {
        self.received()
            .users
            .values()
            .any(|(name, active)| name.eq_ignore_ascii_case(user_name) && *active)
    }

    async fn members(&self, group_id: &str, _: &str) -> BTreeSet<String> {
        let state = self.received();
        state.groups[group_id]
            .iter()
            .map(|id| state.users[id].0.clone())
            .collect()
    }

    async fn tamper(&self, remote_id: &str, _: &str) {
        let at = self.receiver.accepted().len();
        self.tampered
            .lock()
            .unwrap()
            .push((at, remote_id.to_owned()));
    }

    fn answers_find(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn the_webhook_connector_keeps_the_contract() {
    let receiver = Receiver::start(WEBHOOK_KEY).await;
    let connector =
        roster::connectors::webhook::WebhookConnector::new(&receiver.url, WEBHOOK_KEY).unwrap();
    let peer = WebhookPeer {
        receiver,
        connector,
        tampered: Default::default(),
    };
    contract(&peer).await;
    // Every repeated call above went out with the key of its change, so a
    // receiver that applies each key once saw each change once.
    let keys: Vec<String> = peer
        .receiver
        .accepted()
        .into_iter()
        .map(|d| d.event_id)
        .collect();
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert!(distinct.len() < keys.len(), "repeats carried their keys");
    assert!(keys.contains(&"uid-g-platform:c1:added".to_owned()));
}
