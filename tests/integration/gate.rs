//! The SSO gate with real parts: Debian's nginx (`auth_request`) in front of
//! an upstream that echoes what it receives, Roster replicas with their own
//! watches of the real API server, logins signed at test time. What the
//! directory says (a SCIM deactivation, a group removal, a deletion, a
//! sessions-not-before annotation) refuses the next request through nginx.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use roster::api::*;
use roster::saml::session::SessionKey;
use serde_json::json;

use crate::support::browser::{body_text, chrome, wait_until_at};
use crate::support::fixtures::{jit_policy, scim_policy};
use crate::support::gate::{
    Browser, Nginx, auto_posting_idp, echo_upstream, replica, replica_advertising_itself,
};
use crate::support::saml::{Idp, PUBLIC_URL, Response, SCIM_TOKEN, snapshot, users};
use crate::support::scim::ScimServer;
use crate::support::{TestEnv, env};

/// How soon a change must refuse the next request: the p99 target
/// is 1 s; a test on a loaded machine gets 3.
const REVOKED_WITHIN: Duration = Duration::from_secs(3);

fn with_gate(mut policy: ProvisioningPolicy, idp: &Idp, app: &str) -> ProvisioningPolicy {
    policy.spec.saml = Some(SamlTrust {
        allowed_redirect_urls: vec![format!("{app}/")],
        ..idp.trust()
    });
    policy
}

async fn create(env: &TestEnv, policy: &ProvisioningPolicy) {
    crate::support::saml::create_policy(env, policy).await;
}

/// Waits until the replica at `origin` serves `policy` (its policy cache has
/// the object created a moment ago; until then it is unknown there).
async fn served(origin: &str, namespace: &str, policy: &str) {
    let url = format!("{origin}/saml/{namespace}/{policy}/metadata");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = reqwest::get(&url).await.unwrap();
        if reply.status() == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url}: {}",
            reply.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn through_nginx_a_jit_login_reaches_the_app_as_itself_and_a_deactivation_refuses_the_next_request()
 {
    let env = env().await;
    let ns = env.namespace.clone();
    let idp = Idp::okta();
    let roster = replica(&env, &SessionKey::random()).await;
    let nginx = Nginx::start(&roster, PUBLIC_URL, &ns, "crm", &echo_upstream().await).await;
    create(&env, &with_gate(jit_policy("crm"), &idp, &nginx.origin)).await;
    served(&roster, &ns, "crm").await;
    let app = format!("{}/app/page", nginx.origin);

    // Anonymous: nginx sends the browser to sign in, returning here.
    let mut browser = Browser::new(&roster);
    let first = browser.get(&app, &[]).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let signin = first.location.unwrap();
    assert_eq!(
        signin,
        format!("{PUBLIC_URL}/gate/{ns}/crm/signin?rd={app}")
    );
    let back = browser
        .sign_in(
            &signin,
            &idp,
            |sp| Response::okta(&idp, sp, "alice@example.com", "Alice", "Liddell"),
            &ns,
            "crm",
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(back.location.as_deref(), Some(app.as_str()));
    assert!(browser.session(&ns, "crm").is_some());
    let user = users(&env).await.pop().expect("the JIT user");

    // In, as itself: what the client claims under the identity headers
    // never reaches the application.
    let seen = browser
        .get(
            &app,
            &[
                ("X-Auth-Request-User", "mallory@example.com"),
                ("X-Auth-Request-Groups", "admins"),
            ],
        )
        .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let headers = seen.json();
    assert_eq!(headers["x-auth-request-user"], "alice@example.com");
    assert_eq!(headers["x-auth-request-email"], "alice@example.com");
    assert_eq!(headers["x-auth-request-groups"], "everyone");
    assert_eq!(headers["x-auth-request-user-id"], user.name_any());

    // Without a session, forged headers get nowhere.
    let mut stranger = Browser::new(&roster);
    let refused = stranger
        .get(&app, &[("X-Auth-Request-User", "alice@example.com")])
        .await;
    assert_eq!(refused.status, 302);

    // Deactivated with kubectl: the next request is refused (403: signing
    // in again would not help).
    env.api::<User>()
        .patch(
            &user.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    let took = browser.wait_for(&app, 403, REVOKED_WITHIN).await;
    eprintln!("deactivation refused after {took:?}");
}

#[tokio::test]
async fn through_nginx_scim_changes_and_kubectl_end_access_at_the_next_request() {
    let env = env().await;
    let ns = env.namespace.clone();
    let idp = Idp::okta();
    let roster = replica(&env, &SessionKey::random()).await;
    let nginx = Nginx::start(&roster, PUBLIC_URL, &ns, "crm", &echo_upstream().await).await;
    let mut policy = with_gate(scim_policy("crm"), &idp, &nginx.origin);
    policy.spec.access = Some(AccessSpec {
        allowed_groups: vec!["Support".into()],
        ..AccessSpec::default()
    });
    create(&env, &policy).await;
    served(&roster, &ns, "crm").await;
    let app = format!("{}/tickets", nginx.origin);

    // The IdP pushes Erin and the Support group over SCIM.
    let scim = ScimServer::at(&roster, &ns, "crm", SCIM_TOKEN);
    let created = scim
        .post(
            "/Users",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "erin@example.com", "active": true, "displayName": "Erin Hannon",
                "emails": [{"value": "erin@example.com", "primary": true}],
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let group = scim
        .post(
            "/Groups",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Support", "members": [{"value": id}],
            }),
        )
        .await;
    assert_eq!(group.status, 201, "{}", group.body);
    let group_id = group.body["id"].as_str().unwrap().to_owned();

    let mut browser = Browser::new(&roster);
    let signin = browser.get(&app, &[]).await.location.expect("to sign in");
    let back = browser
        .sign_in(
            &signin,
            &idp,
            |sp| Response::okta(&idp, sp, "erin@example.com", "Erin", "Hannon"),
            &ns,
            "crm",
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    let seen = browser.get(&app, &[]).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.json()["x-auth-request-groups"], "Support");
    assert_eq!(seen.json()["x-auth-request-name"], "Erin Hannon");

    let member = |op: &str| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": op, "path": "members", "value": [{"value": id}]}],
        })
    };
    let active = |value: bool| {
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": value}],
        })
    };

    // Removed from the only allowed group: refused, 403.
    let removed = scim
        .patch(&format!("/Groups/{group_id}"), &member("remove"))
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    let took = browser.wait_for(&app, 403, REVOKED_WITHIN).await;
    eprintln!("group removal refused after {took:?}");
    scim.patch(&format!("/Groups/{group_id}"), &member("add"))
        .await;
    browser.wait_for(&app, 200, REVOKED_WITHIN).await;

    // Deactivated over SCIM: refused; reactivated: in again.
    let off = scim.patch(&format!("/Users/{id}"), &active(false)).await;
    assert_eq!(off.status, 200, "{}", off.body);
    let took = browser.wait_for(&app, 403, REVOKED_WITHIN).await;
    eprintln!("SCIM deactivation refused after {took:?}");
    scim.patch(&format!("/Users/{id}"), &active(true)).await;
    browser.wait_for(&app, 200, REVOKED_WITHIN).await;

    // Sessions ended on purpose with kubectl annotate: back to sign-in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    env.api::<User>()
        .patch(
            &id,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {SESSIONS_NOT_BEFORE_ANNOTATION: now}}}),
            ),
        )
        .await
        .unwrap();
    browser.wait_for(&app, 302, REVOKED_WITHIN).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = browser
        .sign_in(
            &signin,
            &idp,
            |sp| Response::okta(&idp, sp, "erin@example.com", "Erin", "Hannon"),
            &ns,
            "crm",
        )
        .await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(browser.get(&app, &[]).await.status, 200);

    // Deleted with kubectl: back to sign-in, which no longer knows Erin.
    env.api::<User>()
        .delete(&id, &DeleteParams::default())
        .await
        .unwrap();
    let took = browser.wait_for(&app, 302, REVOKED_WITHIN).await;
    eprintln!("deletion refused after {took:?}");
}

#[tokio::test]
async fn replicas_sharing_a_key_share_sessions_and_no_bad_cookie_passes_or_writes() {
    let env = env().await;
    let ns = env.namespace.clone();
    let idp = Idp::okta();
    let key = SessionKey::random();
    let (a, b) = (replica(&env, &key).await, replica(&env, &key).await);
    let other_key = replica(&env, &SessionKey::random()).await;
    let app = "https://app.example.com";
    let mut crm = with_gate(jit_policy("crm"), &idp, app);
    crm.spec.access = Some(AccessSpec {
        cookie_domain: Some("example.com".into()),
        ..AccessSpec::default()
    });
    create(&env, &crm).await;
    create(&env, &with_gate(jit_policy("wiki"), &idp, app)).await;
    for origin in [&a, &b, &other_key] {
        served(origin, &ns, "crm").await;
        served(origin, &ns, "wiki").await;
    }

    // Signed in on replica a...
    let mut browser = Browser::new(&a);
    let signin = format!("{PUBLIC_URL}/gate/{ns}/crm/signin?rd={app}/home");
    let back = browser
        .sign_in(
            &signin,
            &idp,
            |sp| Response::okta(&idp, sp, "pam@example.com", "Pam", "Beesly"),
            &ns,
            "crm",
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(
        back.location.as_deref(),
        Some("https://app.example.com/home")
    );
    let token = browser.session(&ns, "crm").unwrap().clone();
    let cookie = |name: &str, value: &str| format!("{name}={value}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let check = |origin: &str, policy: &str, cookie: String| {
        let request = http
            .get(format!("{origin}/gate/{ns}/{policy}/auth"))
            .header("cookie", cookie);
        async move { request.send().await.unwrap() }
    };
    let session_name = format!("roster_session.{ns}.crm");

    // ... checks pass on replica b, immediately (a login a moment ago).
    let passed = check(&b, "crm", cookie(&session_name, &token)).await;
    assert_eq!(passed.status(), 200);
    assert_eq!(passed.headers()["x-auth-request-user"], "pam@example.com");

    let before = snapshot(&env).await;
    // Another key, a tampered payload, another policy's cookie name, a
    // login-request cookie in place of a session: 401 each.
    let (body, tag) = token.split_once('.').unwrap();
    let mut flipped = body.as_bytes().to_vec();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
    let wiki_name = format!("roster_session.{ns}.wiki");
    for (origin, policy, sent) in [
        (&other_key, "crm", cookie(&session_name, &token)),
        (&b, "crm", cookie(&session_name, &tampered)),
        (&b, "wiki", cookie(&wiki_name, &token)),
        (&b, "crm", String::new()),
    ] {
        let refused = check(origin, policy, sent.clone()).await;
        assert_eq!(refused.status(), 401, "{policy} {sent}");
        assert!(refused.headers().get("x-auth-request-user").is_none());
    }
    assert_eq!(snapshot(&env).await, before, "a check never writes");

    // Traefik: a browser is sent to sign in, returning where it was going.
    let traefik = http
        .get(format!("{b}/gate/{ns}/crm/traefik"))
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/reports?q=1")
        .send()
        .await
        .unwrap();
    assert_eq!(traefik.status(), 302);
    assert_eq!(
        traefik.headers()["location"],
        format!(
            "{PUBLIC_URL}/gate/{ns}/crm/signin?rd=https%3A%2F%2Fapp.example.com%2Freports%3Fq%3D1"
        )
        .as_str()
    );
    // Envoy: the original path follows the check path, the host is Host.
    let envoy = http
        .get(format!("{b}/gate/{ns}/crm/envoy/reports?q=1"))
        .header("host", "app.example.com")
        .header("cookie", cookie(&session_name, &token))
        .send()
        .await
        .unwrap();
    assert_eq!(envoy.status(), 200);
    assert_eq!(envoy.headers()["x-auth-request-user"], "pam@example.com");

    // Sign-out clears the cookie and goes back to an allowed URL only.
    let mut out = browser
        .get(
            &format!("{PUBLIC_URL}/gate/{ns}/crm/signout?rd={app}/bye"),
            &[],
        )
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location.as_deref(), Some("https://app.example.com/bye"));
    assert!(
        browser.session(&ns, "crm").is_none(),
        "the cookie is cleared"
    );
    out = browser
        .get(
            &format!("{PUBLIC_URL}/gate/{ns}/crm/signout?rd=https://evil.example.com/"),
            &[],
        )
        .await;
    assert_eq!(out.status, 200, "no open redirect");
    // An open redirect is refused at sign-in too.
    let evil = browser
        .get(
            &format!("{PUBLIC_URL}/gate/{ns}/crm/signin?rd=https://evil.example.com/"),
            &[],
        )
        .await;
    assert_eq!(evil.status, 400);

    let metrics = http
        .get(format!("{b}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "roster_gate_checks_total{{policy=\"{ns}/crm\",outcome=\"bad_signature\"}} 2"
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn in_a_real_browser_the_app_leads_through_the_idp_back_to_the_app_and_a_deactivation_shows_the_refusal()
 {
    let env = env().await;
    let ns = env.namespace.clone();
    let idp = std::sync::Arc::new(Idp::okta());
    let roster = replica_advertising_itself(&env, &SessionKey::random()).await;
    let idp_origin = auto_posting_idp(idp.clone(), &roster, &ns, "crm", "dana@example.com").await;
    let nginx = Nginx::start(&roster, &roster, &ns, "crm", &echo_upstream().await).await;
    let mut policy = jit_policy("crm");
    policy.spec.saml = Some(SamlTrust {
        allowed_redirect_urls: vec![format!("{}/", nginx.origin)],
        idp_sso_url: Some(format!("{idp_origin}/sso")),
        ..idp.trust()
    });
    create(&env, &policy).await;
    served(&roster, &ns, "crm").await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gate-browser");
    std::fs::create_dir_all(&shots).unwrap();
    let (mut driver, browser) = chrome().await;
    let shoot = |name: &'static str| {
        let (browser, path) = (browser.clone(), shots.join(name));
        async move { std::fs::write(path, browser.screenshot().await.unwrap()).unwrap() }
    };

    // The app's URL: nginx -> Roster's sign-in -> the IdP's page.
    let app = format!("{}/dashboard", nginx.origin);
    browser.goto(&app).await.unwrap();
    let at_idp = browser.current_url().await.unwrap();
    assert!(at_idp.as_str().starts_with(&idp_origin), "at {at_idp}");
    assert!(body_text(&browser).await.contains("Test identity provider"));
    shoot("1-identity-provider.png").await;

    // It posts itself to the ACS, which sends the browser back to the app,
    // which shows who signed in.
    let text = wait_until_at(&browser, &app, "dana@example.com", Duration::from_secs(30)).await;
    assert!(text.contains("x-auth-request-user"), "{text}");
    shoot("2-signed-in-at-the-app.png").await;

    // Deactivated: a reload shows the refusal.
    let user = users(&env).await.pop().expect("the JIT user");
    env.api::<User>()
        .patch(
            &user.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + REVOKED_WITHIN;
    loop {
        browser.refresh().await.unwrap();
        let text = body_text(&browser).await;
        if text.contains("403") {
            assert!(!text.contains("dana@example.com"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still in: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shoot("3-refused-after-deactivation.png").await;
    eprintln!("screenshots in {}", shots.display());
    browser.close().await.unwrap();
    let _ = driver.kill();
    let _ = driver.wait();
}

#[tokio::test]
async fn a_jit_user_deactivated_for_inactivity_is_refused_at_the_next_request() {
    let env = env().await;
    let ns = env.namespace.clone();
    let idp = Idp::okta();
    let key = b"gate-idle-key";
    let receiver = crate::support::webhook::Receiver::start(key).await;
    let mut secret = Secret::default();
    secret.metadata.name = Some("crm-webhook".into());
    secret.data = Some(
        [(
            "signing-key".to_owned(),
            k8s_openapi::ByteString(key.to_vec()),
        )]
        .into(),
    );
    env.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let roster = replica(&env, &SessionKey::random()).await;
    let nginx = Nginx::start(&roster, PUBLIC_URL, &ns, "crm", &echo_upstream().await).await;
    let mut policy = with_gate(jit_policy("crm"), &idp, &nginx.origin);
    policy.spec.application.webhook.as_mut().unwrap().url = receiver.url.clone();
    policy.spec.jit.as_mut().unwrap().deprovision_after_days = Some(30);
    create(&env, &policy).await;
    served(&roster, &ns, "crm").await;
    let app = format!("{}/wiki", nginx.origin);

    let mut browser = Browser::new(&roster);
    let signin = browser.get(&app, &[]).await.location.expect("to sign in");
    let back = browser
        .sign_in(
            &signin,
            &idp,
            |sp| Response::okta(&idp, sp, "idle@example.com", "Idle", "Person"),
            &ns,
            "crm",
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert_eq!(browser.get(&app, &[]).await.status, 200);

    // Last seen 45 days ago (as the SAML handler records it); the
    // controllers deactivate the user, and the gate refuses the next request.
    let id = users(&env).await.pop().unwrap().name_any();
    let at = k8s_openapi::jiff::Timestamp::now()
        - k8s_openapi::jiff::SignedDuration::from_hours(24 * 45);
    let patch =
        json!({"apiVersion": API_VERSION, "kind": "User", "status": {"lastLogin": at.to_string()}});
    env.api::<User>()
        .patch_status(
            &id,
            &PatchParams::apply("roster-jit").force(),
            &Patch::Apply(&patch),
        )
        .await
        .unwrap();
    let _controllers = crate::controller::start_controllers(&env);
    crate::controller::eventually("the idle user to be deactivated", || async {
        let user = env.api::<User>().get(&id).await.ok()?;
        (user.spec.active == Some(false)).then_some(())
    })
    .await;
    let took = browser.wait_for(&app, 403, REVOKED_WITHIN).await;
    eprintln!("inactivity deactivation refused after {took:?}");
}
