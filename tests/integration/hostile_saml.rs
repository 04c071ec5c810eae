//! Hostile input at the SAML ACS, which anyone can POST to before anything is
//! authenticated: signature transforms that cost exponential or cubic time,
//! Reference URIs that point elsewhere, encodings the checks would read
//! differently from libxml, colliding IDs, an assertion issued for another
//! service provider, and SIGTERM in the middle of an attack. Each is refused
//! quickly with nothing written, and SCIM keeps answering meanwhile.

use std::time::{Duration, Instant};

use kube::api::Api;
use roster::api::*;
use serde_json::json;

use crate::support::fixtures::{jit_policy, scim_policy};
use crate::support::saml::{Idp, PUBLIC_URL, Response, SamlServer, Signed, serve, snapshot};
use crate::support::{TestEnv, env};

const SCIM_TOKEN: &str = "hostile-saml-test-token-0123456789";

fn jit(idp: &Idp) -> ProvisioningPolicy {
    let mut policy = jit_policy("crm");
    policy.spec.saml = Some(idp.trust());
    policy
}

/// Doubles its work at each of `depth` levels: 2^depth template calls.
fn xslt_bomb(depth: u32) -> String {
    format!(
        r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xslt-19991116"><xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/"><xsl:call-template name="f"><xsl:with-param name="n" select="{depth}"/></xsl:call-template></xsl:template><xsl:template name="f"><xsl:param name="n"/><xsl:if test="$n &gt; 0"><xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template><xsl:call-template name="f"><xsl:with-param name="n" select="$n - 1"/></xsl:call-template></xsl:if></xsl:template></xsl:stylesheet></ds:Transform>"#
    )
}

/// Cubic in the number of elements.
const XPATH_BOMB: &str = r#"<ds:Transform Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"><ds:XPath>count(//*[count(//*)&gt;1])&gt;0</ds:XPath></ds:Transform>"#;

/// The attacks: a name and the signed response it is made from, changed.
fn attacks(signed: &str, assertion_id: &str) -> Vec<(&'static str, String)> {
    let transforms = |replacement: &str| {
        let start = signed
            .find("<ds:Transforms>")
            .expect("a Transforms element");
        let end = signed.find("</ds:Transforms>").expect("its end") + "</ds:Transforms>".len();
        format!(
            "{}<ds:Transforms>{replacement}</ds:Transforms>{}",
            &signed[..start],
            &signed[end..]
        )
    };
    let uri = |uri: &str| {
        signed.replace(
            &format!("URI=\"#{assertion_id}\""),
            &format!("URI=\"{uri}\""),
        )
    };
    // A few thousand elements for the XPath transform to walk.
    let many: String = (0..3000)
        .map(|i| format!("<saml:AttributeValue>{i}</saml:AttributeValue>"))
        .collect();
    let xpath = transforms(XPATH_BOMB).replace(
        "</saml:Assertion>",
        &format!(r#"<saml:AttributeStatement><saml:Attribute Name="x">{many}</saml:Attribute></saml:AttributeStatement></saml:Assertion>"#),
    );
    vec![
        (
            "XSLT transform, 2^24 template calls",
            transforms(&xslt_bomb(24)),
        ),
        ("XPath transform over 3,000 elements", xpath),
        ("XPointer Reference URI", uri("#xpointer(/)")),
        ("external Reference URI", uri("http://127.0.0.1:9/evil.xml")),
        ("empty Reference URI (the whole document)", uri("")),
        (
            "UTF-7 declaration hiding markup",
            signed.replace(r#"encoding="UTF-8""#, r#"encoding="UTF-7""#),
        ),
        (
            "xml:id naming the signed assertion's ID",
            signed.replace(
                "<samlp:Status>",
                &format!(r#"<samlp:Status xml:id="{assertion_id}">"#),
            ),
        ),
        (
            "a second element with the signed assertion's ID",
            signed.replace(
                "<samlp:Status>",
                &format!(r#"<samlp:Status ID="{assertion_id}">"#),
            ),
        ),
    ]
}

/// A Scim policy beside the Jit one, and a client that lists its users
/// about 40 times a second until told to stop: (answers, answers that were
/// not 200, slowest).
async fn scim_meanwhile(
    env: &TestEnv,
    server: &SamlServer,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<(usize, usize, Duration)>,
) {
    crate::support::scim::create_policy(env, scim_policy("hr"), SCIM_TOKEN).await;
    let url = format!("{}/scim/{}/hr/v2/Users", server.origin, env.namespace);
    let http = reqwest::Client::new();
    crate::controller::eventually("the Scim policy to be served", || async {
        let reply = http.get(&url).bearer_auth(SCIM_TOKEN).send().await.ok()?;
        (reply.status() == 200).then_some(())
    })
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let (mut answered, mut failed, mut slowest) = (0, 0, Duration::ZERO);
        while !*stopped.borrow() {
            let started = Instant::now();
            let status = http
                .get(&url)
                .bearer_auth(SCIM_TOKEN)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            slowest = slowest.max(started.elapsed());
            answered += 1;
            if status != 200 {
                failed += 1;
            }
            // Below the policy's rate limit (50/s): a 429 is not what this
            // measures.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        (answered, failed, slowest)
    });
    (stop, task)
}

#[tokio::test]
async fn expensive_transforms_and_reference_tricks_are_refused_before_any_digest() {
    let env = env().await;
    let idp = Idp::entra();
    let server = serve(&env, jit(&idp)).await;
    let (stop, scim) = scim_meanwhile(&env, &server).await;

    let mut response = Response::okta(&idp, &server, "mallory@example.com", "M", "Allory");
    response.signed = Signed::Assertion;
    let started = server.login(None).await;
    let response = response.answering(&started.request_id);
    let signed = response.sign(&idp);
    let before = snapshot(&env).await;

    for (attack, xml) in attacks(&signed, &response.assertion_id) {
        let sent = Instant::now();
        let reply = server
            .post(&xml, Some(&started.relay_state), Some(&started.cookie))
            .await;
        let took = sent.elapsed();
        println!(
            "{attack}: {} in {took:?} ({} bytes)",
            reply.status,
            xml.len()
        );
        assert_eq!(reply.status, 403, "{attack}: {}", reply.body);
        assert!(reply.session_cookie().is_none(), "{attack}");
        assert!(took < Duration::from_secs(1), "{attack} took {took:?}");
        assert_eq!(snapshot(&env).await, before, "{attack} wrote something");
    }

    stop.send(true).unwrap();
    let (answered, failed, slowest) = scim.await.unwrap();
    println!("SCIM meanwhile: {answered} requests, {failed} not 200, slowest {slowest:?}");
    assert!(answered > 0);
    assert_eq!(failed, 0, "SCIM kept answering during the attacks");

    // The response the attacks were made from is itself good: what refused
    // them is what they changed.
    let reply = server
        .post(&signed, Some(&started.relay_state), Some(&started.cookie))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn an_assertion_for_another_service_provider_is_refused_whatever_the_host_header() {
    let env = env().await;
    let idp = Idp::okta();
    let server = serve(&env, jit(&idp)).await;
    // Issued by the same IdP key to a staging SP of the same policy name.
    let staging = format!("http://roster-staging/saml/{}/crm", env.namespace);
    let mut response = Response::okta(&idp, &server, "alice@example.com", "Alice", "L");
    response.audience = format!("{staging}/metadata");
    response.recipient = format!("{staging}/acs");
    response.destination = Some(format!("{staging}/acs"));
    let before = snapshot(&env).await;
    let started = server.login(None).await;
    let xml = response.answering(&started.request_id).sign(&idp);
    let reply = reqwest::Client::new()
        .post(format!("{}/saml/{}/crm/acs", server.origin, env.namespace))
        .header("host", "roster-staging")
        .header("x-forwarded-proto", "http")
        .header("cookie", &started.cookie)
        .form(&[
            ("SAMLResponse", base64_encode(&xml)),
            ("RelayState", started.relay_state.clone()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    assert_eq!(snapshot(&env).await, before);
    // The metadata names the configured URL, never the Host header.
    let metadata = reqwest::Client::new()
        .get(format!(
            "{}/saml/{}/crm/metadata",
            server.origin, env.namespace
        ))
        .header("host", "roster-staging")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metadata.contains(PUBLIC_URL), "{metadata}");
    assert!(!metadata.contains("roster-staging"), "{metadata}");
}

fn base64_encode(xml: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(xml)
}

#[tokio::test]
async fn without_a_public_url_no_saml_is_served_and_the_policy_says_why() {
    let env = env().await;
    let idp = Idp::okta();
    env.api::<ProvisioningPolicy>()
        .create(&Default::default(), &jit(&idp))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let readiness = roster::server::Readiness::default();
    readiness.set_ready();
    let router = roster::server::router(
        env.client.clone(),
        Default::default(),
        &roster::server::ServerArgs::default(),
        readiness,
    );
    tokio::spawn(roster::server::serve(
        router,
        listener,
        None,
        std::future::pending(),
    ));
    let server = SamlServer::at(&origin, &env.namespace, "crm");
    for path in ["metadata", "login"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
        assert!(reply.body.contains("not configured"), "{}", reply.body);
    }
    let before = snapshot(&env).await;
    let xml = Response::okta(&idp, &server, "alice@example.com", "A", "L").sign(&idp);
    assert_eq!(server.post(&xml, None, None).await.status, 403);
    assert_eq!(snapshot(&env).await, before);

    let _controller = tokio::spawn(roster::controller::run(
        env.client.clone(),
        Some(env.namespace.clone()),
        Some("test".into()),
        None,
        std::future::pending(),
    ));
    let policies: Api<ProvisioningPolicy> = env.api();
    let condition = crate::controller::eventually("the SamlTrust condition", || async {
        let policy = policies.get("crm").await.ok()?;
        policy
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "SamlTrust")
    })
    .await;
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason, "PublicUrlMissing");
    assert!(
        condition.message.contains("--public-url"),
        "{}",
        condition.message
    );
}

#[tokio::test]
async fn sigterm_during_an_attack_exits_within_the_drain_timeout() {
    let env = env().await;
    let idp = Idp::entra();
    env.api::<ProvisioningPolicy>()
        .create(&Default::default(), &jit(&idp))
        .await
        .unwrap();
    let mut replica =
        crate::operator::replica_with("attacked", &env.namespace, &["--public-url", PUBLIC_URL]);
    let base = format!("http://127.0.0.1:{}", replica.port);
    let http = reqwest::Client::new();
    crate::operator::ready(&http, &base).await;
    let server = SamlServer::at(&base, &env.namespace, "crm");
    let mut response = Response::okta(&idp, &server, "mallory@example.com", "M", "A");
    response.signed = Signed::Assertion;
    let signed = response.sign(&idp);
    let (_, bomb) = attacks(&signed, &response.assertion_id).remove(0);
    let form = json!({"SAMLResponse": base64_encode(&bomb)});
    let url = format!("{base}/saml/{}/crm/acs", env.namespace);

    // Eight clients posting the XSLT bomb as fast as they are answered.
    let answers = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let attackers: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, form) = (http.clone(), url.clone(), form.clone());
            let answers = answers.clone();
            tokio::spawn(async move {
                let mut answered = 0usize;
                while let Ok(reply) = http.post(&url).form(&form).send().await {
                    assert_eq!(reply.status(), 403);
                    answered += 1;
                    answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                answered
            })
        })
        .collect();
    // The attack is under way: every client has been answered twice over.
    let attacking = Instant::now();
    while answers.load(std::sync::atomic::Ordering::Relaxed) < 16 {
        assert!(
            attacking.elapsed() < Duration::from_secs(30),
            "the attack posts are answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = nix::unistd::Pid::from_raw(replica.child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let signalled = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(30), replica.child.wait())
        .await
        .expect("the replica exits within the 30 s drain timeout")
        .unwrap();
    let took = signalled.elapsed();
    let mut refused = 0;
    for attacker in attackers {
        refused += attacker.await.unwrap();
    }
    println!("{refused} attack posts refused; exited {took:?} after SIGTERM with {status}");
    assert!(status.success(), "{status}");
    assert!(refused > 0);
}
