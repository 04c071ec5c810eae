//! SCIM conformance: scim2-tester, run through scim2-cli (installed by
//! `make deps`), against the service backed by the real API server.

use std::collections::BTreeMap;

use roster::api::RateLimit;

use crate::support::env;
use crate::support::fixtures::scim_policy;
use crate::support::scim::{create_policy, start};

/// Checks that may end other than SUCCESS, each with the reason.
const NOT_APPLICABLE: &[(&str, &str)] = &[];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_reports_every_check_as_success() {
    let env = env().await;
    // scim2-tester fires hundreds of requests at once: lift the rate limit,
    // which has its own test.
    let mut policy = scim_policy("conformance");
    policy.spec.scim.as_mut().unwrap().rate_limit = RateLimit {
        requests_per_second: 10_000,
        burst: 10_000,
    };
    let token = format!("token-{:016x}", rand::random::<u64>());
    create_policy(&env, policy, &token).await;
    let origin = start(env.client.clone()).await;
    let base_url = format!("{origin}/scim/{}/conformance/v2", env.namespace);
    // The token goes through the environment, not the command line.
    let output = tokio::process::Command::new("scim")
        .args(["--url", &base_url, "test"])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {token}"))
        .output()
        .await
        .expect("scim2-cli's `scim` is on PATH (make deps installs it; make test puts it on PATH)");
    let report = String::from_utf8_lossy(&output.stdout);
    let mut outcomes: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut last: Option<(String, String)> = None;
    for line in report.lines() {
        if let Some(detail) = line.strip_prefix("  ") {
            if let Some((status, check)) = &last {
                outcomes
                    .entry(status.clone())
                    .or_default()
                    .push((check.clone(), detail.to_owned()));
                last = None;
            }
            continue;
        }
        if let Some((status, check)) = line.split_once(' ') {
            if status.chars().all(|c| c.is_ascii_uppercase()) && !check.contains(' ') {
                if let Some((s, c)) = last.take() {
                    outcomes.entry(s).or_default().push((c, String::new()));
                }
                last = Some((status.to_owned(), check.to_owned()));
            }
        }
    }
    if let Some((s, c)) = last.take() {
        outcomes.entry(s).or_default().push((c, String::new()));
    }
    let successes = outcomes.get("SUCCESS").map_or(0, Vec::len);
    assert!(
        successes > 50,
        "scim2-tester ran too few checks:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let failures: Vec<String> = outcomes
        .iter()
        .filter(|(status, _)| status.as_str() != "SUCCESS")
        .flat_map(|(status, checks)| {
            checks
                .iter()
                .filter(|(check, _)| !NOT_APPLICABLE.iter().any(|(name, _)| name == check))
                .map(move |(check, detail)| format!("{status} {check}: {detail}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} checks did not succeed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("scim2-tester: {successes} checks SUCCESS");
}
