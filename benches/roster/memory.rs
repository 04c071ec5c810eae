//! Roster's memory with 100,000 Users and 10,000 Groups in the cluster, at
//! steady state: every object already synced (finalizer, status), so the
//! controllers' first reconciles write nothing and the figure is what the
//! caches hold, not a provisioning storm.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use roster::api::{
    GROUP_LABEL, Group, GroupMemberSlice, GroupMemberSliceSpec, GroupSpec, SliceMember, User,
};
use roster::controller::FINALIZER;
use roster::controller::conditions::{Decided, SYNCED, merge, summary};
use roster::directory::writers::SOURCE_LABEL;
use serde_json::{Value, json};

use crate::common::{Roster, namespace, nowhere, round, rss_mib, run, scim_policy};

const NS: &str = "bench-mem";
const MEMBERS_PER_GROUP: usize = 10;

/// The conditions the controller writes for a synced object.
pub fn conditions(message: &str) -> Value {
    conditions_of(vec![Decided::new(SYNCED, true, "Synced", message)])
}

/// The conditions the controller writes for a synced Group of `policy`
/// whose members are all valid.
fn group_conditions(policy: &str) -> Value {
    conditions_of(vec![
        Decided::new(
            SYNCED,
            true,
            "Synced",
            "the application's group matches the spec",
        ),
        Decided::new(
            "Members",
            true,
            "AllMembersValid",
            format!("every member is a User of policy {policy}"),
        ),
    ])
}

fn conditions_of(aspects: Vec<Decided>) -> Value {
    let mut decided = vec![summary(&aspects)];
    decided.extend(aspects);
    json!(merge(
        &[],
        &decided,
        Some(1),
        &Time(k8s_openapi::jiff::Timestamp::now())
    ))
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(SOURCE_LABEL.to_owned(), "scim".to_owned())])
}

/// Creates `count` Users of `policy` named by `name`, each already synced
/// (finalizer, status), straight through the API: the controllers' first
/// reconcile of them writes nothing.
pub async fn synced_users(
    client: &kube::Client,
    ns: &str,
    policy: &str,
    count: usize,
    name: fn(usize) -> String,
) {
    let user_api: Api<User> = Api::namespaced(client.clone(), ns);
    let user_conditions = conditions("the account matches the spec");
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    run(count, 32, |i| {
        let api = user_api.clone();
        let conditions = user_conditions.clone();
        let now = now.clone();
        async move {
            let body = json!({
                "userName": format!("person{i}@example.com"),
                "externalId": format!("00u{i:012}"),
                "displayName": format!("Person {i}"),
                "name": {"givenName": "Person", "familyName": format!("{i}")},
                "emails": [{"value": format!("person{i}@example.com"), "type": "work", "primary": true}],
                "title": "Engineer",
                "active": true,
            });
            let spec = roster::scim::resource::user_from_scim(&body, policy).unwrap();
            let name = name(i);
            let mut user = User::new(&name, spec);
            user.metadata.labels = Some(labels());
            user.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
            api.create(&PostParams::default(), &user).await.expect("creating a user");
            let status = json!({"status": {
                "source": "Scim",
                "account": {"remoteId": format!("r-{i}"), "state": "Active", "syncedGeneration": 1, "lastSync": now},
                "conditions": conditions,
            }});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("a user's status");
        }
    })
    .await;
}

/// Creates `users` synced Users and `groups` synced Groups of
/// [`MEMBERS_PER_GROUP`] members each, straight through the API.
pub async fn fill(client: &kube::Client, users: usize, groups: usize) -> Duration {
    namespace(client, NS).await;
    scim_policy(client, NS, "mem", nowhere("mem")).await;
    let started = Instant::now();
    synced_users(client, NS, "mem", users, |i| format!("u-{i:06}")).await;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let group_api: Api<Group> = Api::namespaced(client.clone(), NS);
    let slice_api: Api<GroupMemberSlice> = Api::namespaced(client.clone(), NS);
    let group_conditions = group_conditions("mem");
    run(groups, 32, |g| {
        let groups = group_api.clone();
        let slices = slice_api.clone();
        let conditions = group_conditions.clone();
        let now = now.clone();
        async move {
            let name = format!("g-{g:05}");
            let mut group = Group::new(
                &name,
                GroupSpec {
                    policy: "mem".into(),
                    display_name: format!("Group {g}"),
                    external_id: Some(format!("00g{g:012}")),
                    ..Default::default()
                },
            );
            group.metadata.labels = Some(labels());
            group.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
            groups
                .create(&PostParams::default(), &group)
                .await
                .expect("creating a group");
            let members: Vec<String> = (0..MEMBERS_PER_GROUP)
                .map(|m| format!("u-{:06}", (g * MEMBERS_PER_GROUP + m) % users.max(1)))
                .collect();
            let mut slice = GroupMemberSlice::new(
                &format!("{name}-0"),
                GroupMemberSliceSpec {
                    group: name.clone(),
                    members: members
                        .iter()
                        .map(|m| (m.clone(), SliceMember::default()))
                        .collect(),
                },
            );
            slice.metadata.labels = Some(BTreeMap::from([(GROUP_LABEL.to_owned(), name.clone())]));
            slices
                .create(&PostParams::default(), &slice)
                .await
                .expect("creating a slice");
            let synced: BTreeMap<&String, String> = members
                .iter()
                .map(|m| {
                    (
                        m,
                        format!(
                            "r-{}",
                            m.trim_start_matches("u-").parse::<usize>().unwrap_or(0)
                        ),
                    )
                })
                .collect();
            slices
                .patch_status(
                    &format!("{name}-0"),
                    &PatchParams::default(),
                    &Patch::Merge(
                        &json!({"status": {"syncedMembers": synced, "observedGeneration": 1}}),
                    ),
                )
                .await
                .expect("a slice's status");
            let status = json!({"status": {
                "source": "Scim",
                "remoteId": format!("rg-{g}"),
                "memberCount": MEMBERS_PER_GROUP,
                "syncedGeneration": 1,
                "lastSync": now,
                "conditions": conditions,
            }});
            groups
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("a group's status");
        }
    })
    .await;
    started.elapsed()
}

/// Fills the cluster (when `fill_first`), starts Roster over it, and reads
/// its RSS once ready and again once the controllers have reconciled
/// everything.
pub async fn measure(
    client: &kube::Client,
    kubeconfig: &std::path::Path,
    http: &reqwest::Client,
    users: usize,
    groups: usize,
    fill_first: bool,
) -> Value {
    if fill_first {
        let filled = fill(client, users, groups).await;
        println!("memory: created {users} users and {groups} groups in {filled:.0?}");
    }
    let requests_before = apiserver_requests(client).await;
    let apiserver = apiserver_pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = apiserver.map(|pid| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_mib(pid) as u64, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let roster = Roster::start(kubeconfig, Some(NS));
    let ready = roster.ready(http, Duration::from_secs(600)).await;
    let rss_ready = rss_mib(roster.pid());
    // Ready once the process's caches hold their lists (the controllers
    // read the same ones); wait for every object's first reconcile.
    let started = Instant::now();
    let mut reconciled = (0.0, 0.0);
    while started.elapsed() < Duration::from_secs(600) {
        reconciled = (
            roster
                .metric(http, "roster_reconciles_total", &[("kind", "User")])
                .await,
            roster
                .metric(http, "roster_reconciles_total", &[("kind", "Group")])
                .await,
        );
        if reconciled.0 >= users as f64 && reconciled.1 >= groups as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = started.elapsed() + ready;
    // Steady state: Roster returns freed heap to the OS every 10 s.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let rss_settled = rss_mib(roster.pid());
    let downstream = roster
        .metric(http, "roster_downstream_calls_total", &[])
        .await;
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    let requests = delta(&requests_before, &apiserver_requests(client).await);
    let failed = |class: char| -> f64 {
        requests
            .iter()
            .filter(|((_, _, code), _)| code.starts_with(class))
            .fold(0.0, |sum, (_, n)| sum + n)
    };
    let (client_errors, server_errors) = (failed('4'), failed('5'));
    let mut by_verb: BTreeMap<String, f64> = BTreeMap::new();
    for ((verb, resource, _), n) in &requests {
        *by_verb.entry(format!("{verb} {resource}")).or_default() += n;
    }
    println!(
        "memory: API requests during the start {by_verb:?}; {client_errors} 4xx, {server_errors} 5xx; kube-apiserver peak {} MiB",
        peak.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!(
        "memory: ready after {ready:.1?} at {rss_ready:.0} MiB; reconciled {} users, {} groups after {settled:.1?} at {rss_settled:.0} MiB; {downstream} downstream calls",
        reconciled.0, reconciled.1
    );
    json!({
        "users": users,
        "groups": groups,
        "members_per_group": MEMBERS_PER_GROUP,
        "ready_after_s": round(ready.as_secs_f64(), 1),
        "rss_mib_ready": round(rss_ready, 0),
        "reconciled_after_s": round(settled.as_secs_f64(), 1),
        "user_reconciles": reconciled.0,
        "group_reconciles": reconciled.1,
        "rss_mib_reconciled": round(rss_settled, 0),
        "downstream_calls": downstream,
        "target_mb": 300,
        "api_requests": by_verb,
        "api_4xx": client_errors,
        "api_5xx": server_errors,
        "apiserver_peak_rss_mib": peak.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// (verb, resource, code) → count, from the API server's own
/// `apiserver_request_total`. Only Roster talks to the server while it starts,
/// so the difference of two readings is what Roster asked for.
type Requests = BTreeMap<(String, String, String), f64>;

async fn apiserver_requests(client: &kube::Client) -> Requests {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap_or_default();
    let mut counts = Requests::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        if label("group") != "roster.dev"
            && label("resource") != "events"
            && label("resource") != "leases"
        {
            continue;
        }
        let key = (label("verb"), label("resource"), label("code"));
        *counts.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    counts
}

fn delta(before: &Requests, after: &Requests) -> Requests {
    after
        .iter()
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect()
}

/// The one kube-apiserver on this machine (the bench's).
fn apiserver_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "kube-apiserver").then_some(pid)
        })
}
