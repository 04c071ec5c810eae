//! The connectors against real peers, no Kubernetes needed: `ScimConnector`
//! against scim2-server (a SCIM 2.0 application from PyPI, read back through
//! its own API), and `WebhookConnector` against a receiver that verifies
//! signatures (support/webhook.rs).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster::connectors::scim::ScimConnector;
use roster::connectors::webhook::{RetryPolicy, WebhookConnector};
use roster::connectors::{Connector, ConnectorError, DesiredGroup, DesiredUser};
use serde_json::{Value, json};

use crate::support::webhook::Receiver;

// ---------------------------------------------------------------- scim2-server

/// scim2-server on a free loopback port, killed when dropped.
pub(crate) struct Scim2Server {
    child: Child,
    port: u16,
    token: String,
    /// Its request log (one line per request, on stderr).
    log: tempfile::NamedTempFile,
    http: reqwest::Client,
}

/// The scim2-server binary: on PATH (`make test` puts the venv's bin there),
/// else in the venv `make deps` builds.
fn scim2_server_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("scim2-server"))
            .find(|candidate| candidate.is_file())
    });
    if let Some(binary) = on_path {
        return binary;
    }
    let cache = std::env::var_os("ROSTER_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/roster")))
        .unwrap_or_default();
    let binary = cache.join("venv/bin/scim2-server");
    assert!(
        binary.is_file(),
        "scim2-server is neither on PATH nor at {}: run `make deps` (it installs the Python \
         peers of tests/peers/requirements.txt into that venv)",
        binary.display()
    );
    binary
}

impl Scim2Server {
    pub(crate) async fn start() -> Self {
        let binary = scim2_server_binary();
        let token = format!("app-{:016x}", rand::random::<u64>());
        // A port picked by binding :0 can be taken before scim2-server binds
        // it; then the server exits and we try another.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let log = tempfile::NamedTempFile::new().expect("a log file");
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bearer-token", &token])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.reopen().expect("the log file reopens"))
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
            let mut server = Self {
                child,
                port,
                token: token.clone(),
                log,
                http: reqwest::Client::new(),
            };
            if server.wait_until_ready().await {
                return server;
            }
        }
        panic!("scim2-server did not start on any of three ports");
    }

    /// Whether it answers; false if it exited (port taken).
    async fn wait_until_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!(
                    "scim2-server exited ({status}):\n{}",
                    std::fs::read_to_string(self.log.path()).unwrap_or_default()
                );
                return false;
            }
            let (status, _) = self.try_get("/ServiceProviderConfig").await;
            if status == Some(200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "scim2-server did not answer within 30 s:\n{}",
            std::fs::read_to_string(self.log.path()).unwrap_or_default()
        );
    }

    /// The base URL scim2-server announces (`/v2`; it also serves without).
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    pub(crate) fn connector(&self) -> ScimConnector {
        ScimConnector::new(&self.base_url(), &self.token).expect("a valid connector")
    }

    async fn try_get(&self, path: &str) -> (Option<u16>, Value) {
        let Ok(reply) = self
            .http
            .get(format!("{}{path}", self.base_url()))
            .bearer_auth(&self.token)
            .send()
            .await
        else {
            return (None, Value::Null);
        };
        let status = reply.status().as_u16();
        (Some(status), reply.json().await.unwrap_or(Value::Null))
    }

    /// GET from the application's own API: (status, body).
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.try_get(path).await;
        (status.expect("scim2-server answers"), body)
    }

    /// POST straight to the application, bypassing the connector.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// A request straight to the application, bypassing the connector.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let reply = self
            .http
            .request(method, format!("{}{path}", self.base_url()))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .expect("scim2-server answers");
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    async fn users(&self) -> Vec<Value> {
        let (status, body) = self.get("/Users?count=10000").await;
        assert_eq!(status, 200, "{body}");
        body["Resources"].as_array().cloned().unwrap_or_default()
    }

    /// The member ids of a group, as the application holds them.
    pub(crate) async fn member_ids(&self, group_id: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/Groups/{group_id}")).await;
        assert_eq!(status, 200, "{body}");
        let mut ids: Vec<String> = body["members"]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .map(|m| m["value"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// How many requests with this method and path prefix it logged.
    fn requests_logged(&self, method: &str, path_prefix: &str) -> usize {
        let needle = format!("\"{method} /v2{path_prefix}");
        std::fs::read_to_string(self.log.path())
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(&needle))
            .count()
    }
}

impl Drop for Scim2Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn user(name: &str, user_name: &str) -> DesiredUser {
    DesiredUser {
        id: name.to_owned(),
        uid: format!("uid-{name}"),
        generation: 1,
        user_name: user_name.to_owned(),
        active: true,
        resource: json!({
            "userName": user_name,
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "displayName": "Ada Lovelace",
            "title": "Analyst",
            "emails": [{"value": "ada@example.com", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Engines"},
        }),
    }
}

fn group(name: &str, display_name: &str, external_id: Option<&str>) -> DesiredGroup {
    DesiredGroup {
        id: name.to_owned(),
        uid: format!("uid-{name}"),
        generation: 1,
        display_name: display_name.to_owned(),
        external_id: external_id.map(str::to_owned),
    }
}

#[tokio::test]
async fn scim_creates_a_user_the_application_then_holds() {
    let app = Scim2Server::start().await;
    let connector = app.connector();

    let id = connector
        .create_user(&user("ada", "ada@example.com"))
        .await
        .unwrap();

    let (status, held) = app.get(&format!("/Users/{id}")).await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(held["userName"], "ada@example.com");
    assert_eq!(held["active"], true);
    assert_eq!(held["name"]["familyName"], "Lovelace");
    assert_eq!(
        held["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Engines"
    );
    assert!(
        held["schemas"].as_array().unwrap().contains(&json!(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        )),
        "{held}"
    );
}

#[tokio::test]
async fn scim_finds_a_user_by_user_name_in_any_case() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let id = connector
        .create_user(&user("ada", "Ada@Example.com"))
        .await
        .unwrap();

    let found = connector.find_user("ada@EXAMPLE.com").await.unwrap();

    let found = found.expect("userName matches case-insensitively");
    assert_eq!(found.id, id);
    assert_eq!(found.active, Some(true));
    assert_eq!(
        connector.find_user("grace@example.com").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn scim_finds_user_names_holding_quotes_and_backslashes() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let awkward = r#"o"brien\ops&x=1 %20"#;
    let id = connector.create_user(&user("ob", awkward)).await.unwrap();

    let found = connector.find_user(awkward).await.unwrap();

    assert_eq!(found.map(|f| f.id), Some(id));
    assert_eq!(connector.find_user("o").await.unwrap(), None);
}

#[tokio::test]
async fn scim_adopts_the_account_when_the_application_already_has_the_user_name() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    // A sync created the account, then crashed before recording its id.
    let (status, earlier) = app
        .post(
            "/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ADA@example.com"}),
        )
        .await;
    assert_eq!(status, 201, "{earlier}");

    let id = connector
        .create_user(&user("ada", "ada@example.com"))
        .await
        .unwrap();

    assert_eq!(
        id,
        earlier["id"].as_str().unwrap(),
        "the existing account is adopted"
    );
    assert_eq!(app.users().await.len(), 1, "no duplicate account");
    // And again: create is safe to repeat.
    let again = connector
        .create_user(&user("ada", "ada@example.com"))
        .await
        .unwrap();
    assert_eq!(again, id);
    assert_eq!(app.users().await.len(), 1);
}

#[tokio::test]
async fn scim_update_replaces_the_whole_account() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let mut ada = user("ada", "ada@example.com");
    let id = connector.create_user(&ada).await.unwrap();

    ada.generation = 2;
    ada.resource["name"]["familyName"] = json!("King");
    ada.resource.as_object_mut().unwrap().remove("title");
    connector.update_user(&id, &ada).await.unwrap();

    let (_, held) = app.get(&format!("/Users/{id}")).await;
    assert_eq!(held["name"]["familyName"], "King");
    assert!(held.get("title").is_none(), "PUT replaces: {held}");
    assert_eq!(held["active"], true);
}

#[tokio::test]
async fn scim_update_of_an_unknown_account_is_rejected_as_not_found() {
    let app = Scim2Server::start().await;
    let connector = app.connector();

    let error = connector
        .update_user("no-such-id", &user("ada", "ada@example.com"))
        .await
        .unwrap_err();

    assert!(error.is_not_found(), "{error:?}");
    assert!(!error.is_transient());
}

#[tokio::test]
async fn scim_disable_deactivates_and_keeps_the_account() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let ada = user("ada", "ada@example.com");
    let id = connector.create_user(&ada).await.unwrap();

    connector.disable_user(&id, &ada).await.unwrap();

    let (status, held) = app.get(&format!("/Users/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(held["active"], false);
    assert_eq!(held["title"], "Analyst", "only active changed");
    let found = connector.find_user("ada@example.com").await.unwrap();
    assert_eq!(found.unwrap().active, Some(false));
}

#[tokio::test]
async fn scim_delete_succeeds_when_the_account_is_already_gone() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let ada = user("ada", "ada@example.com");
    let id = connector.create_user(&ada).await.unwrap();

    connector.delete_user(&id, &ada).await.unwrap();
    connector.delete_user(&id, &ada).await.unwrap();

    assert_eq!(app.get(&format!("/Users/{id}")).await.0, 404);
}

#[tokio::test]
async fn scim_groups_are_created_found_renamed_and_deleted() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let mut eng = group("eng", "Engineering", Some("ext-eng"));

    let id = connector.create_group(&eng).await.unwrap();
    let (_, held) = app.get(&format!("/Groups/{id}")).await;
    assert_eq!(held["displayName"], "Engineering");
    assert_eq!(held["externalId"], "ext-eng");
    assert_eq!(
        connector.find_group("engineering").await.unwrap(),
        Some(id.clone())
    );
    assert_eq!(connector.find_group("Sales").await.unwrap(), None);

    eng.display_name = "R&D \"Engines\"".into();
    eng.external_id = Some("ext-rnd".into());
    connector.update_group(&id, &eng).await.unwrap();
    let (_, held) = app.get(&format!("/Groups/{id}")).await;
    assert_eq!(held["displayName"], "R&D \"Engines\"");
    assert_eq!(held["externalId"], "ext-rnd");
    assert_eq!(
        connector.find_group("R&D \"Engines\"").await.unwrap(),
        Some(id.clone())
    );

    connector.delete_group(&id, &eng).await.unwrap();
    connector.delete_group(&id, &eng).await.unwrap();
    assert_eq!(app.get(&format!("/Groups/{id}")).await.0, 404);
}

#[tokio::test]
async fn scim_members_are_added_and_removed() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let mut ids = Vec::new();
    for name in ["ada", "grace", "edsger"] {
        ids.push(
            connector
                .create_user(&user(name, &format!("{name}@example.com")))
                .await
                .unwrap(),
        );
    }
    let eng = group("eng", "Engineering", None);
    let group_id = connector.create_group(&eng).await.unwrap();

    connector
        .change_members(&group_id, &eng, &ids, &[], "c1")
        .await
        .unwrap();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(app.member_ids(&group_id).await, expected);

    connector
        .change_members(&group_id, &eng, &[], &ids[..2], "c2")
        .await
        .unwrap();
    assert_eq!(app.member_ids(&group_id).await, vec![ids[2].clone()]);

    // Removing a member that isn't there is no error.
    connector
        .change_members(&group_id, &eng, &[], &ids[..1], "c3")
        .await
        .unwrap();
    assert_eq!(app.member_ids(&group_id).await, vec![ids[2].clone()]);
}

#[tokio::test]
async fn scim_large_membership_changes_go_in_batches_of_256() {
    let app = Scim2Server::start().await;
    let connector = app.connector();
    let mut ids = Vec::new();
    for i in 0..300 {
        let name = format!("user{i:03}");
        ids.push(
            connector
                .create_user(&user(&name, &format!("{name}@example.com")))
                .await
                .unwrap(),
        );
    }
    let big = group("big", "Everyone", None);
    let group_id = connector.create_group(&big).await.unwrap();

    connector
        .change_members(&group_id, &big, &ids, &[], "c1")
        .await
        .unwrap();
    assert_eq!(app.member_ids(&group_id).await.len(), 300);
    assert_eq!(app.requests_logged("PATCH", "/Groups/"), 2, "256 + 44");

    connector
        .change_members(&group_id, &big, &[], &ids[..260], "c2")
        .await
        .unwrap();
    let mut left = ids[260..].to_vec();
    left.sort();
    assert_eq!(app.member_ids(&group_id).await, left);
    assert_eq!(app.requests_logged("PATCH", "/Groups/"), 4, "then 256 + 4");
}

#[tokio::test]
async fn scim_works_from_the_root_without_v2() {
    let app = Scim2Server::start().await;
    let connector =
        ScimConnector::new(&format!("http://127.0.0.1:{}/", app.port), &app.token).unwrap();

    let id = connector
        .create_user(&user("ada", "ada@example.com"))
        .await
        .unwrap();

    assert_eq!(app.get(&format!("/Users/{id}")).await.0, 200);
}

#[tokio::test]
async fn scim_a_wrong_token_is_rejected_and_never_shown() {
    let app = Scim2Server::start().await;
    let connector = ScimConnector::new(&app.base_url(), "wrong-token-f00d").unwrap();

    let error = connector.find_user("ada").await.unwrap_err();

    assert!(
        matches!(&error, ConnectorError::Rejected { status: 401, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains("f00d"), "{error}");
    assert!(!format!("{error:?} {connector:?}").contains("f00d"));
}

#[tokio::test]
async fn scim_an_application_that_is_not_running_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let connector = ScimConnector::new(&format!("http://127.0.0.1:{port}/v2"), "t").unwrap();

    let error = connector
        .create_user(&user("ada", "ada@example.com"))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, ConnectorError::Unavailable(m) if m.contains("POST /Users")),
        "{error:?}"
    );
    assert!(error.is_transient());
}

// ------------------------------------------------------------------- webhooks

const KEY: &[u8] = b"whsec_integration";

/// Quick retries, so tests of giving up don't wait.
fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        initial_backoff: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn webhook_events_arrive_signed_in_order_with_their_keys() {
    let receiver = Receiver::start(KEY).await;
    let connector = WebhookConnector::new(&receiver.url, KEY).unwrap();
    let ada = user("ada", "ada@example.com");
    let eng = group("eng", "Engineering", Some("ext-eng"));

    let remote = connector.create_user(&ada).await.unwrap();
    connector.update_user(&remote, &ada).await.unwrap();
    connector.disable_user(&remote, &ada).await.unwrap();
    let group_id = connector.create_group(&eng).await.unwrap();
    connector.update_group(&group_id, &eng).await.unwrap();
    connector
        .change_members(
            &group_id,
            &eng,
            std::slice::from_ref(&remote),
            &["grace".into()],
            "chg-1",
        )
        .await
        .unwrap();
    connector.delete_group(&group_id, &eng).await.unwrap();
    connector.delete_user(&remote, &ada).await.unwrap();

    assert_eq!(remote, "ada", "a webhook's remote id is the User's id");
    assert_eq!(group_id, "eng");
    let deliveries = receiver.deliveries();
    assert!(deliveries.iter().all(|d| d.verified), "{deliveries:#?}");
    assert!(deliveries.iter().all(|d| d.answered == 200));
    let seen: Vec<(&str, &str)> = deliveries
        .iter()
        .map(|d| (d.event_type.as_str(), d.event_id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("user.created", "uid-ada:1:user.created"),
            ("user.updated", "uid-ada:1:user.updated"),
            ("user.deactivated", "uid-ada:1:user.deactivated"),
            ("group.created", "uid-eng:1:group.created"),
            ("group.updated", "uid-eng:1:group.updated"),
            ("group.members_added", "uid-eng:chg-1:added"),
            ("group.members_removed", "uid-eng:chg-1:removed"),
            ("group.deleted", "uid-eng:1:group.deleted"),
            ("user.deleted", "uid-ada:1:user.deleted"),
        ]
    );
    for d in &deliveries {
        assert_eq!(d.body["id"], d.event_id.as_str(), "body id = header id");
    }
    assert_eq!(deliveries[0].body["user"]["userName"], "ada@example.com");
    assert_eq!(deliveries[2].body["user"]["active"], false);
    assert_eq!(deliveries[5].body["members"], json!([{"value": "ada"}]));
    assert_eq!(deliveries[6].body["members"], json!([{"value": "grace"}]));
    assert_eq!(deliveries[5].body["group"]["externalId"], "ext-eng");
}

#[tokio::test]
async fn webhook_redelivers_with_the_same_key_once_the_receiver_is_up() {
    let receiver = Receiver::start(KEY).await;
    let connector = WebhookConnector::new(&receiver.url, KEY).unwrap();
    let ada = user("ada", "ada@example.com");
    receiver.down();

    let error = connector.create_user(&ada).await.unwrap_err();
    assert!(
        matches!(&error, ConnectorError::Unavailable(m) if m.contains("3 attempts")),
        "{error:?}"
    );
    assert!(error.is_transient(), "the controller requeues");
    assert!(
        !error.to_string().contains("s3cr3t"),
        "the URL's path stays out of errors: {error}"
    );
    assert_eq!(receiver.deliveries().len(), 3);
    assert!(receiver.accepted().is_empty());

    // The controller's requeue: the same logical event again.
    receiver.up();
    connector.create_user(&ada).await.unwrap();

    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 4);
    assert!(
        deliveries
            .iter()
            .all(|d| d.event_id == "uid-ada:1:user.created" && d.verified),
        "{deliveries:#?}"
    );
    assert_eq!(receiver.accepted().len(), 1);
    assert_eq!(receiver.accepted()[0].event_id, deliveries[0].event_id);
}

#[tokio::test]
async fn webhook_retries_within_a_call_with_the_same_body() {
    let receiver = Receiver::start(KEY).await;
    let connector = WebhookConnector::new(&receiver.url, KEY)
        .unwrap()
        .with_retry(quick());
    receiver.fail_next(2);

    connector
        .create_group(&group("eng", "Engineering", None))
        .await
        .unwrap();

    let deliveries = receiver.deliveries();
    let answered: Vec<u16> = deliveries.iter().map(|d| d.answered).collect();
    assert_eq!(answered, [503, 503, 200]);
    assert!(deliveries.iter().all(|d| d.verified));
    assert!(
        deliveries.iter().all(|d| d.raw == deliveries[0].raw),
        "every attempt carries the same bytes, so the same key and occurredAt"
    );
}

#[tokio::test]
async fn webhook_a_wrong_key_is_rejected_without_retrying() {
    let receiver = Receiver::start(KEY).await;
    let connector = WebhookConnector::new(&receiver.url, b"not-the-key")
        .unwrap()
        .with_retry(quick());

    let error = connector
        .create_user(&user("ada", "ada@example.com"))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, ConnectorError::Rejected { status: 401, .. }),
        "{error:?}"
    );
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "a refusal is not retried");
    assert!(!deliveries[0].verified);
}

#[tokio::test]
async fn webhook_a_throttling_receiver_is_rate_limited_with_its_wait() {
    let receiver = Receiver::start(KEY).await;
    let connector = WebhookConnector::new(&receiver.url, KEY)
        .unwrap()
        .with_retry(quick());
    receiver.throttle(7);

    let error = connector
        .update_user("ada", &user("ada", "ada@example.com"))
        .await
        .unwrap_err();

    assert_eq!(
        error.retry_after(),
        Some(Duration::from_secs(7)),
        "{error:?}"
    );
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test]
async fn webhook_an_unreachable_receiver_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let connector = WebhookConnector::new(&format!("http://127.0.0.1:{port}/hook"), KEY)
        .unwrap()
        .with_retry(quick());

    let error = connector
        .delete_user("ada", &user("ada", "ada@example.com"))
        .await
        .unwrap_err();

    assert!(
        matches!(&error, ConnectorError::Unavailable(m) if m.contains("user.deleted")),
        "{error:?}"
    );
}

#[tokio::test]
async fn webhook_find_asks_nothing() {
    let receiver = Receiver::start(KEY).await;
    let connector = WebhookConnector::new(&receiver.url, KEY).unwrap();

    assert_eq!(connector.find_user("ada").await.unwrap(), None);
    assert_eq!(connector.find_group("eng").await.unwrap(), None);
    assert!(receiver.deliveries().is_empty());
}
