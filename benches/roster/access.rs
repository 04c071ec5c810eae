//! AccessGrants at scale: 500 Groups pushed over SCIM, each granted `view`
//! in 20 namespaces (10,000 RoleBindings), then
//! - propagation: one member removal or addition at a time, from the SCIM
//!   answer to the RoleBinding in one of the namespaces saying so (p50/p99);
//! - churn: member changes, deactivations, reactivations and group
//!   deletions from 8 clients at once for a while, then every RoleBinding
//!   compared with what the directory says: stale subjects (access that
//!   should have ended) and missing ones, after the controller settles.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rand::{Rng, SeedableRng};
use roster::api::{AccessGrant, AccessGrantSpec, ProvisioningPolicy};
use serde_json::{Value, json};

use crate::common::{Roster, Sample, TOKEN, namespace, nowhere, patch_op, round, scim_policy};

const NS: &str = "bench-access";
const POLICY: &str = "acc";
const PREFIX: &str = "oidc:";
/// How often a RoleBinding is read while waiting for a change.
const POLL: Duration = Duration::from_millis(20);

fn target(i: usize) -> String {
    format!("bench-access-{i}")
}

/// The policy (its application is never called: a dry run) and the
/// namespaces grants reach.
pub async fn setup(client: &kube::Client, namespaces: usize) {
    namespace(client, NS).await;
    for i in 0..namespaces {
        namespace(client, &target(i)).await;
    }
    let mut application = nowhere(POLICY);
    application.dry_run = true;
    scim_policy(client, NS, POLICY, application).await;
    let naming = json!({"spec": {"kubernetes": {"usernamePrefix": PREFIX}}});
    Api::<ProvisioningPolicy>::namespaced(client.clone(), NS)
        .patch(POLICY, &PatchParams::default(), &Patch::Merge(&naming))
        .await
        .expect("naming the policy's users for Kubernetes");
}

/// `roster run` with its controllers over the bench namespace and the
/// AccessGrant controller binding `view`.
pub fn start(kubeconfig: &std::path::Path) -> Roster {
    Roster::start_with(
        kubeconfig,
        Some(NS),
        &["--access-grants", "--bindable-cluster-roles", "view"],
    )
}

async fn scim(
    http: &reqwest::Client,
    roster: &Roster,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    crate::common::scim_call(
        http,
        &format!("{}/scim/{NS}/{POLICY}/v2", roster.base),
        method,
        path,
        body,
    )
    .await
}

/// A SCIM PATCH adding or removing one member.
fn member_change(member: &str, remove: bool) -> Value {
    if remove {
        patch_op(
            "remove",
            &format!("members[value eq \"{member}\"]"),
            Value::Null,
        )
    } else {
        patch_op("add", "members", json!([{"value": member}]))
    }
}

/// What the bench pushed: the model every RoleBinding is checked against.
#[derive(Default)]
struct Directory {
    /// User id -> (userName, active).
    users: BTreeMap<String, (String, bool)>,
    /// Group id -> (display name, member ids); deleted groups are removed.
    groups: BTreeMap<String, (String, BTreeSet<String>)>,
    /// Display names of every group created (a grant each).
    granted: Vec<String>,
}

impl Directory {
    /// The subjects a grant's bindings should name: the active members.
    fn subjects(&self, display: &str) -> Option<BTreeSet<String>> {
        let (_, members) = self.groups.values().find(|(d, _)| d == display)?;
        Some(
            members
                .iter()
                .filter_map(|id| self.users.get(id))
                .filter(|(_, active)| *active)
                .map(|(name, _)| format!("{PREFIX}{name}"))
                .collect(),
        )
    }
}

fn grant_name(i: usize) -> String {
    format!("g-{i}")
}

fn subjects_of(binding: &RoleBinding) -> BTreeSet<String> {
    binding
        .subjects
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect()
}

/// Each grant's RoleBindings, by the grant's annotation: (grant name,
/// namespace) -> subjects.
async fn bindings(client: &kube::Client) -> BTreeMap<(String, String), BTreeSet<String>> {
    let list = Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=roster"))
        .await
        .expect("listing RoleBindings");
    list.items
        .iter()
        .filter_map(|b| {
            let grant = b
                .metadata
                .annotations
                .as_ref()?
                .get("roster.dev/access-grant")?;
            let (grant_namespace, name) = grant.split_once('/')?;
            (grant_namespace == NS).then(|| {
                (
                    (
                        name.to_owned(),
                        b.metadata.namespace.clone().unwrap_or_default(),
                    ),
                    subjects_of(b),
                )
            })
        })
        .collect()
}

/// Stale (should not be there) and missing (should be there) subjects over
/// every binding the model expects, plus bindings that should not exist.
fn compare(
    directory: &Directory,
    actual: &BTreeMap<(String, String), BTreeSet<String>>,
    namespaces: usize,
) -> (usize, usize) {
    let (mut stale, mut missing) = (0, 0);
    for (i, display) in directory.granted.iter().enumerate() {
        let expected = directory.subjects(display);
        for n in 0..namespaces {
            let key = (grant_name(i), target(n));
            let have = actual.get(&key);
            match (&expected, have) {
                (Some(want), Some(have)) => {
                    stale += have.difference(want).count();
                    missing += want.difference(have).count();
                }
                (Some(want), None) => missing += want.len(),
                // The group is gone: so must its bindings be.
                (None, Some(have)) => stale += have.len().max(1),
                (None, None) => {}
            }
        }
    }
    (stale, missing)
}

/// Waits until the bindings match the model, or `limit`; returns the time
/// taken and the (stale, missing) counts of the last comparison.
async fn settle(
    client: &kube::Client,
    directory: &Directory,
    namespaces: usize,
    limit: Duration,
) -> (Duration, (usize, usize)) {
    let started = Instant::now();
    loop {
        let counts = compare(directory, &bindings(client).await, namespaces);
        if counts == (0, 0) || started.elapsed() > limit {
            return (started.elapsed(), counts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How big the section runs.
pub struct Sizes {
    pub users: usize,
    pub groups: usize,
    pub namespaces: usize,
    /// Changes timed per kind (removal, addition).
    pub changes: usize,
    pub churn: Duration,
}

pub async fn access(
    client: &kube::Client,
    http: &reqwest::Client,
    roster: &Roster,
    sizes: Sizes,
) -> Value {
    let Sizes {
        users,
        groups,
        namespaces,
        changes,
        churn,
    } = sizes;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut directory = Directory::default();
    // Users and groups over SCIM, 10 members each.
    let created = futures::future::join_all((0..users).map(|i| {
        let name = format!("person{i}@example.com");
        async move {
            let body = scim(
                http,
                roster,
                reqwest::Method::POST,
                "/Users",
                json!({"userName": name}),
            )
            .await;
            (body["id"].as_str().unwrap().to_owned(), name)
        }
    }))
    .await;
    let ids: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
    for (id, name) in created {
        directory.users.insert(id, (name, true));
    }
    let plans: Vec<(String, BTreeSet<String>)> = (0..groups)
        .map(|g| {
            let members = (0..10)
                .map(|_| ids[rng.random_range(0..ids.len())].clone())
                .collect();
            (format!("team-{g}"), members)
        })
        .collect();
    let posted = futures::future::join_all(plans.iter().map(|(display, members)| async move {
        let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
        let body = scim(
            http,
            roster,
            reqwest::Method::POST,
            "/Groups",
            json!({"displayName": display, "members": members}),
        )
        .await;
        body["id"].as_str().unwrap().to_owned()
    }))
    .await;
    for (id, (display, members)) in posted.into_iter().zip(plans) {
        directory.granted.push(display.clone());
        directory.groups.insert(id, (display, members));
    }

    // One grant per group: `view` in every target namespace.
    let grants: Api<AccessGrant> = Api::namespaced(client.clone(), NS);
    let started = Instant::now();
    for (i, display) in directory.granted.iter().enumerate() {
        let grant = AccessGrant::new(
            &grant_name(i),
            AccessGrantSpec {
                policy: POLICY.into(),
                group: display.clone(),
                cluster_roles: vec!["view".into()],
                namespaces: (0..namespaces).map(target).collect(),
                ..Default::default()
            },
        );
        grants
            .create(&PostParams::default(), &grant)
            .await
            .expect("creating a grant");
    }
    let (_, initial_counts) =
        settle(client, &directory, namespaces, Duration::from_secs(900)).await;
    let initial = started.elapsed();
    println!(
        "access: {} RoleBindings for {groups} grants in {initial:.1?} ({initial_counts:?} stale/missing)",
        groups * namespaces
    );

    // Propagation: one change at a time, timed to the binding in one namespace.
    let mut removal = Sample::default();
    let mut addition = Sample::default();
    let group_ids: Vec<String> = directory.groups.keys().cloned().collect();
    for c in 0..changes * 2 {
        let gi = rng.random_range(0..group_ids.len());
        let group = group_ids[gi].clone();
        let grant_index = directory
            .granted
            .iter()
            .position(|d| *d == directory.groups[&group].0)
            .unwrap();
        let members = directory.groups[&group].1.clone();
        let remove = c % 2 == 0 && !members.is_empty();
        let member = if remove {
            members.iter().next().unwrap().clone()
        } else {
            ids[rng.random_range(0..ids.len())].clone()
        };
        if !remove && members.contains(&member) {
            continue;
        }
        let subject = format!("{PREFIX}{}", directory.users[&member].0);
        let active = directory.users[&member].1;
        let operation = member_change(&member, remove);
        let binding_ns = target(rng.random_range(0..namespaces));
        let api: Api<RoleBinding> = Api::namespaced(client.clone(), &binding_ns);
        let name = roster::access::plan::binding_name(NS, &grant_name(grant_index), "view");
        let t = Instant::now();
        scim(
            http,
            roster,
            reqwest::Method::PATCH,
            &format!("/Groups/{group}"),
            operation,
        )
        .await;
        let entry = directory.groups.get_mut(&group).unwrap();
        if remove {
            entry.1.remove(&member);
        } else {
            entry.1.insert(member.clone());
        }
        if !active {
            continue;
        }
        loop {
            let has = api
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .is_some_and(|b| subjects_of(&b).contains(&subject));
            if has != remove {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "a change did not reach its binding"
            );
            tokio::time::sleep(POLL).await;
        }
        if remove {
            removal.latencies.push(t.elapsed());
        } else {
            addition.latencies.push(t.elapsed());
        }
    }

    // Churn from 8 clients: the model is updated with each answered change.
    let directory = std::sync::Arc::new(tokio::sync::Mutex::new(directory));
    let deadline = Instant::now() + churn;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    futures::future::join_all((0..8u64).map(|client_no| {
        let directory = directory.clone();
        let done = done.clone();
        let ids = ids.clone();
        async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(100 + client_no);
            while Instant::now() < deadline {
                let roll = rng.random_range(0..100);
                let mut model = directory.lock().await;
                if roll < 70 {
                    // A member added or removed.
                    let Some(group) = model
                        .groups
                        .keys()
                        .nth(rng.random_range(0..model.groups.len().max(1)))
                        .cloned()
                    else {
                        break;
                    };
                    let member = ids[rng.random_range(0..ids.len())].clone();
                    let remove = model.groups[&group].1.contains(&member);
                    let operation = member_change(&member, remove);
                    drop(model);
                    scim(
                        http,
                        roster,
                        reqwest::Method::PATCH,
                        &format!("/Groups/{group}"),
                        operation,
                    )
                    .await;
                    let mut model = directory.lock().await;
                    if let Some(entry) = model.groups.get_mut(&group) {
                        if remove {
                            entry.1.remove(&member);
                        } else {
                            entry.1.insert(member);
                        }
                    }
                } else if roll < 97 {
                    // A user deactivated or reactivated.
                    let user = ids[rng.random_range(0..ids.len())].clone();
                    let active = !model.users[&user].1;
                    drop(model);
                    scim(
                        http,
                        roster,
                        reqwest::Method::PATCH,
                        &format!("/Users/{user}"),
                        patch_op("replace", "active", json!(active)),
                    )
                    .await;
                    directory.lock().await.users.get_mut(&user).unwrap().1 = active;
                } else {
                    // A group deleted (its grant stays: it must bind nobody).
                    let Some(group) = model
                        .groups
                        .keys()
                        .nth(rng.random_range(0..model.groups.len().max(1)))
                        .cloned()
                    else {
                        break;
                    };
                    model.groups.remove(&group);
                    drop(model);
                    let reply = http
                        .delete(format!(
                            "{}/scim/{NS}/{POLICY}/v2/Groups/{group}",
                            roster.base
                        ))
                        .bearer_auth(TOKEN)
                        .send()
                        .await
                        .expect("SCIM delete");
                    assert!(
                        reply.status().is_success(),
                        "deleting a group: {}",
                        reply.status()
                    );
                }
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }))
    .await;
    let churned = done.load(std::sync::atomic::Ordering::Relaxed);
    let directory = directory.lock().await;
    let (settled, (stale, missing)) =
        settle(client, &directory, namespaces, Duration::from_secs(300)).await;
    println!(
        "access: {churned} changes in {churn:?}; settled in {settled:.1?}: {stale} stale, {missing} missing"
    );
    json!({
        "users": users,
        "groups": groups,
        "namespaces": namespaces,
        "role_bindings": groups * namespaces,
        "initial_s": round(initial.as_secs_f64(), 1),
        "initial_stale_missing": [initial_counts.0, initial_counts.1],
        "poll_interval_ms": POLL.as_millis() as u64,
        "removal": {"changes": removal.latencies.len(), "p50_ms": round(removal.percentile(0.5), 0), "p99_ms": round(removal.percentile(0.99), 0)},
        "addition": {"changes": addition.latencies.len(), "p50_ms": round(addition.percentile(0.5), 0), "p99_ms": round(addition.percentile(0.99), 0)},
        "churn_s": churn.as_secs(),
        "churn_changes": churned,
        "churn_settled_s": round(settled.as_secs_f64(), 1),
        "stale_subjects": stale,
        "missing_subjects": missing,
        "groups_deleted": groups - directory.groups.len(),
    })
}
