//! Subjects are compared exactly and userNames by one fold (`roster::identity`),
//! against the real API server: look-alikes of an existing user's name (NBSP,
//! tab, EM SPACE, zero-width space, Kelvin sign, fullwidth letters, dotless i)
//! sent over SCIM and in signed SAML logins, in Jit and Scim mode. None of
//! them changes the existing User or signs anyone in as it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kube::ResourceExt;
use reqwest::Method;
use roster::api::*;
use serde_json::{Value, json};

use crate::support::fixtures::{jit_policy, scim_policy};
use crate::support::saml::{Idp, OBJECT_ID, Response, SamlServer, serve, snapshot, users};
use crate::support::{TestEnv, env};

const KEVIN: &str = "kevin@corp.com";

/// Look-alikes of [`KEVIN`] that are refused wherever they arrive: as
/// written in the SAML XML (so `&#9;` is a character reference), and what
/// the name is.
const REFUSED: &[(&str, &str)] = &[
    ("kevin@corp.com\u{A0}", "trailing NBSP"),
    ("kevin@corp.com\t", "trailing tab"),
    ("kevin@corp.com&#9;", "trailing tab as &#9;"),
    ("\u{2003}kevin@corp.com", "leading EM SPACE"),
    ("ke\u{200B}vin@corp.com", "zero-width space"),
    ("\u{212A}evin@corp.com", "Kelvin sign"),
    ("\u{FF4B}evin@corp.com", "fullwidth k"),
    (
        "\u{FF2B}\u{FF25}\u{FF36}\u{FF29}\u{FF2E}@corp.com",
        "fullwidth KEVIN",
    ),
];

/// A distinct, valid name: `ı` (dotless i) is its own letter.
const DOTLESS: &str = "kev\u{131}n@corp.com";

/// A Jit policy whose only rules are the identity ones (no email domain
/// allowlist that would refuse these logins for another reason).
fn jit(idp: &Idp) -> ProvisioningPolicy {
    let mut policy = jit_policy("crm");
    policy.spec.saml = Some(idp.trust());
    policy.spec.jit.as_mut().unwrap().allowed_email_domains = Vec::new();
    policy
}

fn scim(idp: &Idp) -> ProvisioningPolicy {
    let mut policy = scim_policy("crm");
    policy.spec.saml = Some(idp.trust());
    policy
}

/// The SCIM endpoint of the policy `serve` created (its token is `SCIM_TOKEN`).
struct Scim<'a> {
    server: &'a SamlServer,
    http: reqwest::Client,
}

impl<'a> Scim<'a> {
    fn new(server: &'a SamlServer) -> Self {
        Self {
            server,
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!(
            "{}/scim/{}/{}/v2{path}",
            self.server.origin, self.server.namespace, self.server.policy
        );
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(crate::support::saml::SCIM_TOKEN)
            .header("Content-Type", "application/scim+json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post_user(&self, user_name: &str) -> (u16, Value) {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": user_name,
            "active": true,
        });
        self.send(Method::POST, "/Users", Some(body)).await
    }

    /// The userNames a `userName <op> "<value>"` filter finds.
    async fn find(&self, op: &str, value: &str) -> Vec<String> {
        let filter = format!("userName {op} {}", json!(value));
        let url = format!(
            "{}/scim/{}/{}/v2/Users",
            self.server.origin, self.server.namespace, self.server.policy
        );
        let response = self
            .http
            .get(url)
            .query(&[("filter", filter.as_str())])
            .bearer_auth(crate::support::saml::SCIM_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{filter}");
        let body: Value = response.json().await.unwrap();
        body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["userName"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn assert_invalid_value(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["scimType"], "invalidValue", "{what}: {body}");
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{what}"
    );
}

async fn user_named(env: &TestEnv, user_name: &str) -> User {
    users(env)
        .await
        .into_iter()
        .find(|u| u.spec.user_name == user_name)
        .unwrap_or_else(|| panic!("no user {user_name:?}"))
}

/// The User id a `roster_session` cookie signs in (its claims are readable).
fn session_user(cookie: &str) -> String {
    let token = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    let body = token.split_once('.').unwrap().0;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
    claims["user"].as_str().unwrap().to_owned()
}

/// Logs in with each refused look-alike NameID: a 403 page, no session, and
/// nothing written at all (the existing user keeps its resourceVersion).
async fn refused_logins_write_nothing(env: &TestEnv, idp: &Idp, server: &SamlServer) {
    let before = snapshot(env).await;
    for (name_id, what) in REFUSED {
        let response = Response::okta(idp, server, name_id, "Mallory", "Look-Alike");
        let reply = server.sp_login(idp, response).await;
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert!(reply.session_cookie().is_none(), "{what}");
        assert_eq!(snapshot(env).await, before, "{what}: nothing written");
    }
}

// ----- SCIM ------------------------------------------------------------------------

#[tokio::test]
async fn scim_refuses_look_alike_user_names_and_filters_never_match_them() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, scim(&idp)).await;
    let scim = Scim::new(&server);
    let (status, kevin) = scim.post_user(KEVIN).await;
    assert_eq!(status, 201, "{kevin}");
    let id = kevin["id"].as_str().unwrap().to_owned();
    let kevin_version = user_named(&env, KEVIN).await.resource_version();

    let before = snapshot(&env).await;
    for (name, what) in REFUSED.iter().filter(|(n, _)| !n.contains('&')) {
        let (status, body) = scim.post_user(name).await;
        assert_invalid_value(status, &body, what);
        // The detail names the attribute and shows the look-alike escaped.
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("userName \"") && detail.is_ascii(),
            "{what}: {body}"
        );
        let put = json!({"userName": name, "active": true});
        let (status, body) = scim
            .send(Method::PUT, &format!("/Users/{id}"), Some(put))
            .await;
        assert_invalid_value(status, &body, what);
        let patch = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "userName", "value": name}],
        });
        let (status, body) = scim
            .send(Method::PATCH, &format!("/Users/{id}"), Some(patch))
            .await;
        assert_invalid_value(status, &body, what);
        assert_eq!(snapshot(&env).await, before, "{what}: nothing written");

        assert!(scim.find("eq", name).await.is_empty(), "{what}");
    }
    assert_eq!(scim.find("eq", "KEVIN@corp.com").await, [KEVIN]);
    assert!(scim.find("sw", "\u{212A}").await.is_empty(), "Kelvin sign");
    assert!(scim.find("sw", "\u{FF4B}").await.is_empty(), "fullwidth k");

    // The dotless i makes another name: a distinct user, kevin untouched.
    let (status, body) = scim.post_user(DOTLESS).await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["id"], kevin["id"]);
    assert_eq!(
        user_named(&env, KEVIN).await.resource_version(),
        kevin_version
    );
    assert_eq!(scim.find("eq", "KEV\u{131}N@corp.com").await, [DOTLESS]);
    assert_eq!(scim.find("eq", "KEVIN@CORP.COM").await, [KEVIN]);
    // An unchanged userName is not re-checked: kevin can still be deactivated.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}],
    });
    let (status, body) = scim
        .send(Method::PATCH, &format!("/Users/{id}"), Some(patch))
        .await;
    assert_eq!(status, 200, "{body}");
}

// ----- SAML, Jit mode --------------------------------------------------------------

#[tokio::test]
async fn jit_look_alike_name_ids_never_reach_the_existing_user() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    let first = Response::okta(&idp, &server, KEVIN, "Kevin", "Flynn");
    let reply = server.sp_login(&idp, first).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let kevin = user_named(&env, KEVIN).await;

    refused_logins_write_nothing(&env, &idp, &server).await;

    // Another case of the NameID is another subject (compared exactly), and
    // its userName is kevin's: refused, never linked.
    let before = snapshot(&env).await;
    let upper = Response::okta(&idp, &server, "KEVIN@corp.com", "Kevin", "Flynn");
    let reply = server.sp_login(&idp, upper).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.session_cookie().is_none());
    assert_eq!(snapshot(&env).await, before);

    // The dotless i is another name: a distinct user, signed in as itself.
    let dotless = Response::okta(&idp, &server, DOTLESS, "Kev", "In");
    let reply = server.sp_login(&idp, dotless).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let other = user_named(&env, DOTLESS).await;
    assert_ne!(other.name_any(), kevin.name_any());
    let cookie = reply.session_cookie().expect("a session");
    assert_eq!(session_user(&cookie), other.name_any());

    let after = user_named(&env, KEVIN).await;
    assert_eq!(after.resource_version(), kevin.resource_version());
    assert_eq!(users(&env).await.len(), 2);

    // The control: kevin himself still signs in.
    let again = Response::okta(&idp, &server, KEVIN, "Kevin", "Flynn");
    let reply = server.sp_login(&idp, again).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.session_cookie().expect("a session");
    assert_eq!(session_user(&cookie), kevin.name_any());
}

#[tokio::test]
async fn jit_a_padded_subject_attribute_never_reaches_the_existing_user() {
    let env = env().await;
    let idp = Idp::entra();
    let mut policy = jit(&idp);
    policy.spec.saml.as_mut().unwrap().attribute_mapping.subject = Some(OBJECT_ID.into());
    let server = serve(&env, policy).await;
    let reply = server
        .sp_login(&idp, Response::entra(&idp, &server, KEVIN, "6f1c-oid"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let before = snapshot(&env).await;
    for oid in ["6f1c-oid\t", "6f1c-oid&#10;", " 6f1c-oid", "6f1c-oid\u{A0}"] {
        let response = Response::entra(&idp, &server, KEVIN, oid);
        let reply = server.sp_login(&idp, response).await;
        assert_eq!(reply.status, 403, "{oid:?}: {}", reply.body);
        assert!(reply.session_cookie().is_none(), "{oid:?}");
        assert_eq!(snapshot(&env).await, before, "{oid:?}: nothing written");
    }
}

// ----- SAML, Scim mode -------------------------------------------------------------

#[tokio::test]
async fn scim_mode_look_alike_name_ids_never_sign_in_as_the_existing_user() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, scim(&idp)).await;
    let (status, body) = Scim::new(&server).post_user(KEVIN).await;
    assert_eq!(status, 201, "{body}");
    let kevin = user_named(&env, KEVIN).await;

    refused_logins_write_nothing(&env, &idp, &server).await;

    // The dotless i names nobody: no account, nothing written.
    let before = snapshot(&env).await;
    let dotless = Response::okta(&idp, &server, DOTLESS, "Kev", "In");
    let reply = server.sp_login(&idp, dotless).await;
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.body.contains("no account"), "{}", reply.body);
    assert!(reply.session_cookie().is_none());
    assert_eq!(snapshot(&env).await, before);
    assert_eq!(
        user_named(&env, KEVIN).await.resource_version(),
        kevin.resource_version()
    );

    // The control: ASCII case is folded, so kevin signs in as KEVIN.
    let upper = Response::okta(&idp, &server, "KEVIN@corp.com", "Kevin", "Flynn");
    let reply = server.sp_login(&idp, upper).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let cookie = reply.session_cookie().expect("a session");
    assert_eq!(session_user(&cookie), kevin.name_any());
}
