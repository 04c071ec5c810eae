//! `make bench`: Roster against the local control plane, on this machine.
//!
//! Machines here are shared and noisy, so every figure is compared within
//! one run (as a ratio to a baseline measured in the same run), repeated
//! where that is cheap, and written to BENCHMARKS.md and bench-results.json
//! with its target beside it.
//!
//! Sizes (environment): ROSTER_BENCH_USERS per ingest run (default 2000),
//! ROSTER_BENCH_GROUPS per run (200), ROSTER_BENCH_RUNS (3),
//! ROSTER_BENCH_BIG_GROUP (50000), ROSTER_BENCH_MEM_USERS (100000),
//! ROSTER_BENCH_MEM_GROUPS (10000), ROSTER_BENCH_PROPAGATION changes per
//! kind (30), ROSTER_BENCH_RESYNC_USERS (10000), ROSTER_BENCH_SAML_LOGINS
//! (1000) per run in ROSTER_BENCH_SAML_RUNS (3), ROSTER_BENCH_GATE_CHECKS
//! per concurrency (20000), ROSTER_BENCH_GATE_TRIALS revocations (200),
//! ROSTER_BENCH_ACCESS_GROUPS (500) granted in
//! ROSTER_BENCH_ACCESS_NAMESPACES (20) with
//! ROSTER_BENCH_ACCESS_USERS (1000), ROSTER_BENCH_ACCESS_CHANGES per kind
//! (30) and ROSTER_BENCH_ACCESS_CHURN_S (30), ROSTER_BENCH_PG_USERS into
//! PostgreSQL (10000, in groups of 10) and ROSTER_BENCH_PG_CHANGES (30).
//! ROSTER_BENCH_MEM_HOLD=1 keeps the memory section's filled control plane
//! running until interrupted, for ROSTER_BENCH_MEM_KUBECONFIG runs.
//! ROSTER_BENCH_ONLY=memory,ingest,large,saml,gate,propagation,access,postgres runs
//! just those sections (propagation includes the resync);
//! ROSTER_BENCH_PREVIOUS=bench-results.json keeps the other sections'
//! figures from that earlier run.

mod access;
mod common;
mod gate;
mod ingest;
mod memory;
mod postgres;
mod propagation;
mod report;
mod saml;

use std::time::{Duration, Instant};

use roster::controlplane::{Binaries, ControlPlane};
use serde_json::{Map, Value, json};

use common::{Roster, http, round, rss_mib, size};

fn wanted(section: &str) -> bool {
    std::env::var("ROSTER_BENCH_ONLY")
        .map(|only| only.split(',').any(|s| s.trim() == section))
        .unwrap_or(true)
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`:
    // benchmarks are `make bench`'s job, not the test suite's.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("benchmarks run with `make bench`");
        return;
    }
    let started = Instant::now();
    let plane = ControlPlane::start(&Binaries::from_env().expect("make controlplane"))
        .await
        .expect("starting the control plane");
    let client = kube::Client::try_from(plane.config().await.unwrap()).unwrap();
    roster::cluster::install_crds(&client, &roster::api::crds(), Duration::from_secs(60))
        .await
        .unwrap();
    let kubeconfig = plane.kubeconfig_path();
    let http = http();
    // Sections not run keep their figures from an earlier run's JSON, so a
    // section can be measured again alone and the report stays whole.
    let mut report = match std::env::var("ROSTER_BENCH_PREVIOUS") {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).expect("ROSTER_BENCH_PREVIOUS is readable");
            match serde_json::from_str(&text).expect("ROSTER_BENCH_PREVIOUS holds JSON") {
                Value::Object(previous) => previous,
                _ => panic!("ROSTER_BENCH_PREVIOUS holds a JSON object"),
            }
        }
        Err(_) => Map::new(),
    };
    report.insert(
        "machine".into(),
        json!({"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)}),
    );

    // The SCIM and SAML service alone, without controllers.
    let roster = Roster::start(kubeconfig, None);
    roster.ready(&http, Duration::from_secs(300)).await;
    if wanted("ingest") {
        let users = size("ROSTER_BENCH_USERS", 2_000);
        let groups = size("ROSTER_BENCH_GROUPS", 200);
        let runs = size("ROSTER_BENCH_RUNS", 3);
        let ingest = ingest::ingest(&client, &roster, &http, users, groups, runs).await;
        report.insert("ingest".into(), ingest);
    }
    if wanted("large") {
        let big = size("ROSTER_BENCH_BIG_GROUP", 50_000);
        let large = ingest::large_groups(&client, &roster, &http, big).await;
        report.insert("large_groups".into(), large);
    }
    if wanted("saml") {
        let logins = size("ROSTER_BENCH_SAML_LOGINS", 1_000);
        let runs = size("ROSTER_BENCH_SAML_RUNS", 3);
        let acs = saml::acs(&client, &roster, &http, 100, logins, 8, runs).await;
        report.insert("saml_acs".into(), acs);
    }
    if wanted("gate") {
        // A second replica answers the checks; SCIM writes go to the first.
        let checker = Roster::start(kubeconfig, None);
        checker.ready(&http, Duration::from_secs(300)).await;
        let checks = size("ROSTER_BENCH_GATE_CHECKS", 20_000);
        let trials = size("ROSTER_BENCH_GATE_TRIALS", 200);
        let result = gate::gate(&client, &roster, &checker, &http, checks, trials).await;
        report.insert("gate".into(), result);
    }
    // Only when those sections ran: a partial run keeps the earlier figure.
    if ["ingest", "large", "saml", "gate"].into_iter().any(wanted) {
        report.insert(
            "roster_rss_mib_after_scim_sections".into(),
            json!(round(rss_mib(roster.pid()), 0)),
        );
    }
    drop(roster);

    // The controllers against a real application.
    if wanted("propagation") {
        let app = propagation::App::start(&http).await;
        propagation::setup(&client, &app).await;
        let roster = Roster::start(kubeconfig, Some("bench-prop"));
        roster.ready(&http, Duration::from_secs(300)).await;
        let n = size("ROSTER_BENCH_PROPAGATION", 30);
        let prop = propagation::propagation(&client, &http, &roster, &app, n).await;
        report.insert("propagation".into(), prop);
        let users = size("ROSTER_BENCH_RESYNC_USERS", 10_000);
        let resync = propagation::resync(&client, kubeconfig, &http, roster, &app, users).await;
        report.insert("resync".into(), resync);
    }

    // AccessGrants: RoleBindings kept from the directory.
    if wanted("access") {
        let namespaces = size("ROSTER_BENCH_ACCESS_NAMESPACES", 20);
        access::setup(&client, namespaces).await;
        let roster = access::start(kubeconfig);
        roster.ready(&http, Duration::from_secs(300)).await;
        let sizes = access::Sizes {
            users: size("ROSTER_BENCH_ACCESS_USERS", 1_000),
            groups: size("ROSTER_BENCH_ACCESS_GROUPS", 500),
            namespaces,
            changes: size("ROSTER_BENCH_ACCESS_CHANGES", 30),
            churn: Duration::from_secs(size("ROSTER_BENCH_ACCESS_CHURN_S", 30) as u64),
        };
        let result = access::access(&client, &http, &roster, sizes).await;
        report.insert("access".into(), result);
    }

    // PostgreSQL roles from the directory.
    if wanted("postgres") {
        let sizes = postgres::Sizes {
            users: size("ROSTER_BENCH_PG_USERS", 10_000),
            changes: size("ROSTER_BENCH_PG_CHANGES", 30),
        };
        let result = postgres::postgres(&client, kubeconfig, &http, sizes).await;
        report.insert("postgres".into(), result);
    }

    // Last, on a fresh control plane: what Roster holds for 100k users and
    // 10k groups, uncoloured by the other sections' objects.
    plane.stop();
    if wanted("memory") {
        let users = size("ROSTER_BENCH_MEM_USERS", 100_000);
        let groups = size("ROSTER_BENCH_MEM_GROUPS", 10_000);
        // ROSTER_BENCH_MEM_KUBECONFIG: a control plane an earlier run filled
        // (the fill takes over 20 minutes here), measured again as it is.
        let memory = match std::env::var("ROSTER_BENCH_MEM_KUBECONFIG") {
            Ok(path) => {
                let path = std::path::PathBuf::from(path);
                let config = kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::read_from(&path).expect("a kubeconfig"),
                    &Default::default(),
                )
                .await
                .expect("a usable kubeconfig");
                let client = kube::Client::try_from(config).unwrap();
                memory::measure(&client, &path, &http, users, groups, false).await
            }
            Err(_) => {
                let plane = ControlPlane::start(&Binaries::from_env().expect("make controlplane"))
                    .await
                    .expect("starting a second control plane");
                let client = kube::Client::try_from(plane.config().await.unwrap()).unwrap();
                roster::cluster::install_crds(
                    &client,
                    &roster::api::crds(),
                    Duration::from_secs(60),
                )
                .await
                .unwrap();
                // ROSTER_BENCH_MEM_HOLD: only fill, then keep the control
                // plane for ROSTER_BENCH_MEM_KUBECONFIG runs until interrupted.
                if std::env::var_os("ROSTER_BENCH_MEM_HOLD").is_some() {
                    let filled = memory::fill(&client, users, groups).await;
                    println!(
                        "memory: filled in {filled:.0?}; holding the control plane: ROSTER_BENCH_MEM_KUBECONFIG={}",
                        plane.kubeconfig_path().display()
                    );
                    let _ = tokio::signal::ctrl_c().await;
                    plane.stop();
                    return;
                }
                let memory =
                    memory::measure(&client, plane.kubeconfig_path(), &http, users, groups, true)
                        .await;
                plane.stop();
                memory
            }
        };
        report.insert("memory".into(), memory);
    }
    if std::env::var_os("ROSTER_BENCH_ONLY").is_none() {
        report.insert(
            "bench_wall_s".into(),
            json!(round(started.elapsed().as_secs_f64(), 0)),
        );
    }
    let report = Value::Object(report);
    std::fs::write(
        "bench-results.json",
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write("BENCHMARKS.md", report::markdown(&report)).unwrap();
    println!(
        "wrote BENCHMARKS.md and bench-results.json in {:.0?}",
        started.elapsed()
    );
}
