//! The Argo CD health check the chart ships (`charts/roster/files/argocd-health.lua`), run by
//! Debian's Lua 5.4 the way Argo CD runs it (a chunk over the global `obj` that returns `hs`),
//! against objects read back from the real API server in each state: not reconciled yet,
//! reconciled for an older generation, Ready, and failing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use roster::api::{AccessGrant, AccessGrantSpec, ProvisioningPolicy, User};
use roster::controller::conditions::{Decided, merge};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::support::env;
use crate::support::fixtures::{scim_policy, user};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/roster/files/argocd-health.lua"
);

/// `value` as a Lua table constructor (JSON null is nil: left out).
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Argo CD's verdict on `object`: (status, message).
fn health(object: &impl serde::Serialize) -> (String, String) {
    let obj = lua(&serde_json::to_value(object).unwrap());
    let output = std::process::Command::new("lua5.4")
        .arg("-e")
        .arg(format!("obj = {obj}"))
        .arg("-e")
        .arg(format!(
            "local hs = dofile({}) print(hs.status) print(hs.message)",
            lua_string(SCRIPT)
        ))
        .output()
        .expect("lua5.4 (Debian's lua5.4; `make test` installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}

/// Writes a Ready condition as Roster's controllers do (the same merge) and
/// `status.observedGeneration`, for `generation`, and returns the object as
/// the API server then holds it.
async fn with_ready<K>(api: &Api<K>, object: &K, ready: Decided, generation: Option<i64>) -> K
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let conditions = merge(
        &[],
        &[ready],
        generation,
        &Time(k8s_openapi::jiff::Timestamp::now()),
    );
    api.patch_status(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"conditions": conditions, "observedGeneration": generation}}),
        ),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn argo_cd_reads_each_state_of_each_kind() {
    let env = env().await;
    let ready = || Decided::new("Ready", true, "Ready", "all conditions are met");

    // A User: not reconciled yet, Ready, changed since, and refused by its application.
    let users: Api<User> = env.api();
    let created = users
        .create(
            &PostParams::default(),
            &user("u-argo", "crm", "argo@example.com"),
        )
        .await
        .unwrap();
    assert_eq!(health(&created).0, "Progressing");
    let generation = created.meta().generation;
    let synced = with_ready(&users, &created, ready(), generation).await;
    assert_eq!(health(&synced).0, "Healthy");
    let changed = users
        .patch(
            "u-argo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"displayName": "Argo"}})),
        )
        .await
        .unwrap();
    let (status, message) = health(&changed);
    assert_eq!(status, "Progressing");
    assert!(message.contains("generation 2"), "{message}");
    let refused = with_ready(
        &users,
        &changed,
        Decided::new(
            "Ready",
            false,
            "ApplicationUnavailable",
            "the application answered 503",
        ),
        changed.meta().generation,
    )
    .await;
    assert_eq!(
        health(&refused),
        (
            "Degraded".to_owned(),
            "ApplicationUnavailable: the application answered 503".to_owned()
        )
    );

    // A policy quarantined by its circuit breaker.
    crate::support::scim::create_policy(&env, scim_policy("crm"), "token-argo-0123456789").await;
    let policies: Api<ProvisioningPolicy> = env.api();
    let policy = policies.get("crm").await.unwrap();
    assert_eq!(health(&policy).0, "Progressing");
    let quarantined = with_ready(
        &policies,
        &policy,
        Decided::new(
            "Ready",
            false,
            "Quarantined",
            "25 deactivations within 600 s: held for approval",
        ),
        policy.meta().generation,
    )
    .await;
    let (status, message) = health(&quarantined);
    assert_eq!(status, "Degraded");
    assert!(message.starts_with("Quarantined: "), "{message}");

    // An AccessGrant, granted.
    let grants: Api<AccessGrant> = env.api();
    let mut grant = AccessGrant::new(
        "argo",
        AccessGrantSpec {
            policy: "crm".into(),
            group: "Engineering".into(),
            cluster_roles: vec!["view".into()],
            ..Default::default()
        },
    );
    grant.metadata.namespace = Some(env.namespace.clone());
    let grant = grants.create(&PostParams::default(), &grant).await.unwrap();
    assert_eq!(health(&grant).0, "Progressing");
    let granted = with_ready(&grants, &grant, ready(), grant.meta().generation).await;
    assert_eq!(health(&granted).0, "Healthy");
}

#[test]
fn strings_reach_lua_intact() {
    let (status, message) = health(&json!({
        "metadata": {"generation": 1},
        "status": {"conditions": [{
            "type": "Ready", "status": "False", "observedGeneration": 1,
            "reason": "Odd", "message": "quote \" backslash \\ tab \t é"
        }]}
    }));
    assert_eq!(status, "Degraded");
    assert_eq!(message, "Odd: quote \" backslash \\ tab \t é");
}

#[test]
fn the_status_observed_generation_wins_over_the_conditions() {
    // kstatus reads status.observedGeneration: a Ready condition carried
    // over from an earlier generation does not make a changed spec Healthy.
    let object = |observed: i64| {
        json!({
            "metadata": {"generation": 3},
            "status": {"observedGeneration": observed, "conditions": [{
                "type": "Ready", "status": "True", "observedGeneration": 3,
                "reason": "Ready", "message": "all conditions are met"
            }]}
        })
    };
    assert_eq!(health(&object(2)).0, "Progressing");
    assert_eq!(health(&object(3)).0, "Healthy");
}
