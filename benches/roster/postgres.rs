//! Provisioning into PostgreSQL through the controllers: Users pushed over
//! SCIM become LOGIN roles and Groups (of 10 members) NOLOGIN roles with
//! their grants, on a real PostgreSQL (Debian's, the tests' harness,
//! TLS-only). Figures: the time from the first SCIM POST until every role
//! and grant is in the server, the server transactions per User (every
//! statement Roster sends runs in its own), and one membership change's
//! propagation from the SCIM answer to the grant, p50/p99.

use std::time::{Duration, Instant};

use futures::StreamExt;
use roster::api::{
    ApplicationKind, ApplicationSpec, DeprovisionAction, PostgresConnector, PostgresTlsMode,
    SecretKeyRef,
};
use serde_json::{Value, json};

use crate::common::{Roster, namespace, patch_op, round, scim_call, scim_policy, secret};

// The tests' PostgreSQL harness, shared rather than copied (the bench
// uses part of it).
#[allow(dead_code)]
#[path = "../../tests/integration/support/postgres.rs"]
mod server;

const NS: &str = "bench-pg";
const POLICY: &str = "pg";
const PASSWORD: &str = "bench-admin-password";
/// How often the server is asked while waiting.
const POLL: Duration = Duration::from_millis(10);

/// A free loopback port (the harness asks its parent module for one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Sizes {
    pub users: usize,
    pub changes: usize,
}

fn user_name(i: usize) -> String {
    format!("pgb{i:05}@example.com")
}

fn group_name(j: usize) -> String {
    format!("pgb-group-{j:04}")
}

async fn count(admin: &tokio_postgres::Client, query: &str) -> i64 {
    admin.query_one(query, &[]).await.unwrap().get(0)
}

/// Every transaction the server has counted (all databases).
async fn transactions(admin: &tokio_postgres::Client) -> i64 {
    count(
        admin,
        "SELECT sum(xact_commit + xact_rollback)::int8 FROM pg_stat_database",
    )
    .await
}

pub async fn postgres(
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    http: &reqwest::Client,
    sizes: Sizes,
) -> Value {
    let db = server::Postgres::start(PASSWORD).await;
    let admin = db.connect("postgres", PASSWORD, "postgres").await.unwrap();
    namespace(client, NS).await;
    secret(client, NS, "pg-password", "password", PASSWORD).await;
    let ca = String::from_utf8(db.ca_pem.clone()).unwrap();
    secret(client, NS, "pg-ca", "ca.crt", &ca).await;
    let application = ApplicationSpec {
        kind: ApplicationKind::Postgres,
        scim: None,
        webhook: None,
        postgres: Some(PostgresConnector {
            host: "127.0.0.1".into(),
            port: db.port,
            user: "postgres".into(),
            password_secret_ref: SecretKeyRef {
                name: "pg-password".into(),
                key: "password".into(),
            },
            database: "postgres".into(),
            fallback_owner: "postgres".into(),
            databases: vec![],
            protected_roles: vec![],
            group_roles: vec![],
            tls_mode: PostgresTlsMode::VerifyFull,
            ca_secret_ref: Some(SecretKeyRef {
                name: "pg-ca".into(),
                key: "ca.crt".into(),
            }),
        }),
        argocd_rbac: None,
        deprovision: DeprovisionAction::Disable,
        delete_after_seconds: 0,
        dry_run: false,
    };
    scim_policy(client, NS, POLICY, application).await;
    let roster = Roster::start(kubeconfig, Some(NS));
    roster.ready(http, Duration::from_secs(300)).await;
    let base = format!("{}/scim/{NS}/{POLICY}/v2", roster.base);
    let groups = sizes.users / 10;

    let before = transactions(&admin).await;
    let mut polls = 0_i64;
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..sizes.users)
        .map(|i| {
            let (http, base) = (http, &base);
            async move {
                let body = json!({"userName": user_name(i)});
                let user = scim_call(http, base, reqwest::Method::POST, "/Users", body).await;
                user["id"].as_str().unwrap().to_owned()
            }
        })
        .buffered(16)
        .collect()
        .await;
    let group_ids: Vec<String> = futures::stream::iter(0..groups)
        .map(|j| {
            let (http, base, ids) = (http, &base, &ids);
            async move {
                let members: Vec<Value> = ids[j * 10..j * 10 + 10]
                    .iter()
                    .map(|id| json!({"value": id}))
                    .collect();
                let body = json!({"displayName": group_name(j), "members": members});
                let group = scim_call(http, base, reqwest::Method::POST, "/Groups", body).await;
                group["id"].as_str().unwrap().to_owned()
            }
        })
        .buffered(16)
        .collect()
        .await;
    let pushed = started.elapsed();
    let roles = (sizes.users + groups) as i64;
    let grants = (groups * 10) as i64;
    loop {
        polls += 2;
        let made = count(
            &admin,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgb%'",
        )
        .await;
        let granted = count(&admin, "SELECT count(*) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid WHERE g.rolname LIKE 'pgb-group-%'").await;
        if made == roles && granted == grants {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "{made} of {roles} roles and {granted} of {grants} grants after an hour"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let provisioned = started.elapsed();
    println!(
        "postgres: {} users and {groups} groups pushed in {pushed:.1?}, all in PostgreSQL after {provisioned:.1?}",
        sizes.users
    );
    // Idle backends report their counts within 10 s (PostgreSQL 15).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let sent = transactions(&admin).await - before - polls - 1;

    // Propagation: one member added at a time.
    let mut latencies = Vec::new();
    for k in 0..sizes.changes.min(groups / 2) {
        let (j, i) = (k, (k + groups / 2) * 10);
        let change = patch_op("add", "members", json!([{"value": ids[i]}]));
        scim_call(
            http,
            &base,
            reqwest::Method::PATCH,
            &format!("/Groups/{}", group_ids[j]),
            change,
        )
        .await;
        let answered = Instant::now();
        loop {
            let there: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid \
                     JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = $1 AND m.rolname = $2",
                    &[&group_name(j), &user_name(i)],
                )
                .await
                .unwrap()
                .get(0);
            if there == 1 {
                break;
            }
            assert!(answered.elapsed() < Duration::from_secs(60), "change {k}");
            tokio::time::sleep(POLL).await;
        }
        latencies.push(answered.elapsed());
    }
    latencies.sort();
    let quantile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        round(latencies[index].as_secs_f64() * 1000.0, 0)
    };
    drop(roster);
    json!({
        "users": sizes.users,
        "groups": groups,
        "grants": grants,
        "pushed_s": round(pushed.as_secs_f64(), 1),
        "provisioned_s": round(provisioned.as_secs_f64(), 1),
        "transactions": sent,
        "transactions_per_user": round(sent as f64 / sizes.users as f64, 1),
        "changes": latencies.len(),
        "poll_interval_ms": POLL.as_millis() as u64,
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
    })
}
