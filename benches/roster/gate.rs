//! The SSO gate: checks per second and latency per check on one replica at
//! several concurrencies, Roster CPU per check, and revocation latency from
//! a SCIM deactivation's 2xx on one replica to the first refused check on
//! another (the watch carries it; on the replica that wrote, it is
//! immediate), with 1,000 live sessions checked in the background.
//!
//! Sessions are minted with the replicas' shared key exactly as the ACS
//! mints them (the SAML section measures logins); the Users, Groups and
//! memberships behind them are pushed over SCIM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, PostParams};
use roster::api::{
    AttributeMapping, Mode, ProvisioningPolicy, ProvisioningPolicySpec, RateLimit, SamlTrust,
    ScimService, SecretRef,
};
use roster::saml::session::{SESSION_TYPE, Session, SessionKey, session_cookie};
use serde_json::{Value, json};

use crate::common::{
    Roster, SESSION_KEY, Sample, TOKEN, cpu_seconds, namespace, nowhere, round, row, run, secret,
};

const NS: &str = "bench-gate";
const POLICY: &str = "portal";
const GROUPS: usize = 10;

async fn policy(client: &kube::Client, cert: &std::path::Path) {
    namespace(client, NS).await;
    secret(client, NS, &format!("{POLICY}-tokens"), "token", TOKEN).await;
    let policy = ProvisioningPolicy::new(
        POLICY,
        ProvisioningPolicySpec {
            mode: Mode::Scim,
            application: nowhere(POLICY),
            scim: Some(ScimService {
                token_secret_ref: SecretRef {
                    name: format!("{POLICY}-tokens"),
                },
                rate_limit: RateLimit {
                    requests_per_second: 100_000,
                    burst: 100_000,
                },
            }),
            saml: Some(SamlTrust {
                idp_metadata: None,
                idp_metadata_url: None,
                idp_metadata_config_map_ref: None,
                idp_entity_id: Some("http://www.okta.com/exkgate".into()),
                idp_sso_url: Some("https://example.okta.com/app/sso/saml".into()),
                idp_certificates: vec![std::fs::read_to_string(cert).unwrap()],
                sp_entity_id: None,
                attribute_mapping: AttributeMapping::default(),
                clock_skew_seconds: 120,
                allow_idp_initiated: false,
                allowed_redirect_urls: Vec::new(),
                session_lifetime_seconds: 3600,
            }),
            jit: None,
            access: None,
            kubernetes: None,
            circuit_breaker: Default::default(),
        },
    );
    Api::<ProvisioningPolicy>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &policy)
        .await
        .expect("creating the gate bench policy");
}

/// `sessions` Users over SCIM, spread over [`GROUPS`] Groups; a minted
/// session cookie per User (the Cookie header value) and its id.
async fn people(
    client: &kube::Client,
    roster: &Roster,
    http: &reqwest::Client,
    sessions: usize,
) -> Vec<(String, String)> {
    let base = format!("{}/scim/{NS}/{POLICY}/v2", roster.base);
    // The policy was created a moment ago: wait until this replica's cache has it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let probe = http
            .get(format!("{base}/Users?count=0"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if probe.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gate bench policy never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: Vec<String> = futures::stream::iter(0..sessions)
        .map(|n| {
            let request = http
                .post(format!("{base}/Users"))
                .bearer_auth(TOKEN)
                .json(&json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("person{n}@example.com"), "active": true,
                    "displayName": format!("Person {n}"),
                    "emails": [{"value": format!("person{n}@example.com"), "primary": true}],
                }));
            async move {
                let reply = request.send().await.expect("SCIM answers");
                let status = reply.status();
                assert_eq!(
                    status,
                    201,
                    "creating a gate bench user: {}",
                    reply.text().await.unwrap_or_default()
                );
                reply.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        })
        .buffered(8)
        .collect()
        .await;
    for g in 0..GROUPS {
        let members: Vec<Value> = ids
            .iter()
            .skip(g)
            .step_by(GROUPS)
            .map(|id| json!({"value": id}))
            .collect();
        let reply = http
            .post(format!("{base}/Groups"))
            .bearer_auth(TOKEN)
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": format!("Team {g}"), "members": members,
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 201, "creating a gate bench group");
    }
    let key = SessionKey::new(SESSION_KEY).unwrap();
    let users: Api<roster::api::User> = Api::namespaced(client.clone(), NS);
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut out = Vec::new();
    for id in ids {
        let user = users.get(&id).await.unwrap();
        let session = Session {
            typ: SESSION_TYPE.into(),
            namespace: NS.into(),
            policy: POLICY.into(),
            user: id.clone(),
            uid: user.metadata.uid.unwrap(),
            subject: user.spec.user_name,
            iat: now,
            exp: now + 3600,
        };
        let cookie = format!("{}={}", session_cookie(NS, POLICY), key.sign(&session));
        out.push((cookie, id));
    }
    out
}

/// One check with `cookie`: its status.
async fn check(http: &reqwest::Client, url: &str, cookie: &str) -> u16 {
    http.get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("the gate answers")
        .status()
        .as_u16()
}

pub async fn gate(
    client: &kube::Client,
    writer: &Roster,
    checker: &Roster,
    http: &reqwest::Client,
    checks: usize,
    trials: usize,
) -> Value {
    let idp = crate::saml::Idp::new();
    policy(client, &idp.cert).await;
    let sessions = people(client, writer, http, 1_000).await;
    let url = format!("{}/gate/{NS}/{POLICY}/auth", checker.base);
    // The checker's watch has every User once one passes.
    let last = &sessions[sessions.len() - 1].0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while check(http, &url, last).await != 200 {
        assert!(Instant::now() < deadline, "the checker never saw the users");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let pid = checker.pid();
    let mut levels = Vec::new();
    for concurrency in [1usize, 8, 32] {
        let n = if concurrency == 1 { checks / 4 } else { checks };
        let before = cpu_seconds(pid);
        let sample: Sample = run(n, concurrency, |i| {
            let (url, cookie) = (&url, &sessions[i % sessions.len()].0);
            async move { assert_eq!(check(http, url, cookie).await, 200) }
        })
        .await;
        let cpu_us = (cpu_seconds(pid) - before) / n as f64 * 1e6;
        println!(
            "gate checks (c={concurrency}): {:.0}/s p50 {:.2} ms p99 {:.2} ms, {cpu_us:.0} µs CPU/check",
            sample.throughput(),
            sample.percentile(0.5),
            sample.percentile(0.99)
        );
        let mut level = row(&format!("gate check, concurrency {concurrency}"), &sample);
        level["concurrency"] = json!(concurrency);
        level["cpu_us_per_check"] = json!(round(cpu_us, 0));
        levels.push(level);
    }

    // Revocation: the other sessions keep being checked while, one user at a
    // time, a SCIM PATCH deactivates a user on the writer and the checker is
    // asked until it refuses that user's session.
    let stop = Arc::new(AtomicBool::new(false));
    let background = {
        let (stop, http, url) = (stop.clone(), http.clone(), url.clone());
        let cookies: Vec<String> = sessions[trials..].iter().map(|s| s.0.clone()).collect();
        tokio::spawn(async move {
            let mut i = 0usize;
            let mut checked = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = check(&http, &url, &cookies[i % cookies.len()]).await;
                i += 1;
                checked += 1;
            }
            checked
        })
    };
    let base = format!("{}/scim/{NS}/{POLICY}/v2", writer.base);
    let started = Instant::now();
    let mut latencies = Vec::new();
    for (cookie, id) in sessions.iter().take(trials) {
        let reply = http
            .patch(format!("{base}/Users/{id}"))
            .bearer_auth(TOKEN)
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}],
            }))
            .send()
            .await
            .unwrap();
        assert!(
            reply.status().is_success(),
            "deactivating: {}",
            reply.status()
        );
        let t0 = Instant::now();
        loop {
            if check(http, &url, cookie).await == 403 {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "never refused");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t0.elapsed());
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let background_checks = background.await.unwrap();
    let revocation = Sample { latencies, wall };
    println!(
        "gate revocation (SCIM 2xx on one replica -> refused on another): p50 {:.1} ms p99 {:.1} ms over {trials} trials, {:.0} background checks/s",
        revocation.percentile(0.5),
        revocation.percentile(0.99),
        background_checks as f64 / wall.as_secs_f64()
    );
    json!({
        "live_sessions": sessions.len(),
        "groups": GROUPS,
        "levels": levels,
        "revocation": {
            "trials": trials,
            "p50_ms": round(revocation.percentile(0.5), 1),
            "p99_ms": round(revocation.percentile(0.99), 1),
            "max_ms": round(revocation.percentile(1.0), 1),
            "background_checks_per_s": round(background_checks as f64 / wall.as_secs_f64(), 0),
        },
        "target_p99_ms": 2,
        "target_checks_per_s": 5000,
        "target_revocation_p99_ms": 1000,
    })
}
