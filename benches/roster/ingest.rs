//! SCIM ingest against a plain kube client creating the same objects, at
//! several concurrencies, each repeated; and PATCH latency on large groups.

use std::time::Instant;

use kube::api::{Api, PostParams};
use roster::api::{
    Group, GroupMemberSlice, GroupMemberSliceSpec, GroupSpec, SliceMember, User, UserSpec,
};
use serde_json::{Value, json};

use crate::common::{
    Roster, Sample, TOKEN, cpu_seconds, median, namespace, nowhere, round, row, run, scim_policy,
};

/// One repetition at one concurrency.
struct Repetition {
    scim: Sample,
    baseline: Sample,
    patches: Sample,
    base_patches: Sample,
    cpu_ms_per_post: f64,
    cpu_ms_per_patch: f64,
    /// The bench's own CPU per baseline create: what one API write costs a
    /// kube-rs client on this machine, the floor for each write a POST makes.
    client_cpu_ms_per_create: f64,
    /// Roster's CPU per baseline User it only saw through its watch.
    cpu_ms_per_watched_user: f64,
}

/// Every concurrency level, `runs` times each, `users` and `groups` per run.
pub async fn ingest(
    client: &kube::Client,
    roster: &Roster,
    http: &reqwest::Client,
    users: usize,
    groups: usize,
    runs: usize,
) -> Value {
    let mut levels = Vec::new();
    for concurrency in [1usize, 8, 32] {
        let mut reps = Vec::new();
        for rep in 0..runs {
            let ns = format!("bench-c{concurrency}-r{rep}");
            namespace(client, &ns).await;
            scim_policy(client, &ns, "scim", nowhere("scim")).await;
            let r = repetition(client, roster, http, &ns, concurrency, users, groups).await;
            println!(
                "c={concurrency} run {rep}: SCIM {:.0}/s p99 {:.1} ms vs baseline {:.0}/s p99 {:.1} ms; {:.3} ms CPU/POST, {:.2} ms CPU/PATCH; kube client {:.3} ms CPU/create, Roster {:.3} ms CPU/watched user",
                r.scim.throughput(),
                r.scim.percentile(0.99),
                r.baseline.throughput(),
                r.baseline.percentile(0.99),
                r.cpu_ms_per_post,
                r.cpu_ms_per_patch,
                r.client_cpu_ms_per_create,
                r.cpu_ms_per_watched_user,
            );
            reps.push(r);
        }
        let med = |f: &dyn Fn(&Repetition) -> f64| median(reps.iter().map(f).collect());
        levels.push(json!({
            "concurrency": concurrency,
            "runs": runs,
            "users_per_run": users,
            "groups_per_run": groups,
            "median": {
                "scim_users_per_s": round(med(&|r| r.scim.throughput()), 1),
                "baseline_users_per_s": round(med(&|r| r.baseline.throughput()), 1),
                "throughput_ratio": round(med(&|r| r.scim.throughput() / r.baseline.throughput()), 3),
                "scim_p99_ms": round(med(&|r| r.scim.percentile(0.99)), 2),
                "baseline_p99_ms": round(med(&|r| r.baseline.percentile(0.99)), 2),
                "p99_ratio": round(med(&|r| r.scim.percentile(0.99) / r.baseline.percentile(0.99)), 2),
                "scim_patches_per_s": round(med(&|r| r.patches.throughput()), 1),
                "baseline_patches_per_s": round(med(&|r| r.base_patches.throughput()), 1),
                "cpu_ms_per_user_post": round(med(&|r| r.cpu_ms_per_post), 3),
                "cpu_ms_per_256_member_patch": round(med(&|r| r.cpu_ms_per_patch), 2),
                "client_cpu_ms_per_create": round(med(&|r| r.client_cpu_ms_per_create), 3),
                "cpu_ms_per_watched_user": round(med(&|r| r.cpu_ms_per_watched_user), 3),
            },
            "runs_detail": reps.iter().map(|r| json!({
                "users": {"scim": row("SCIM POST /Users", &r.scim), "baseline": row("kube create User", &r.baseline)},
                "memberships": {"scim": row("SCIM PATCH +256 members", &r.patches), "baseline": row("kube create Group + slice", &r.base_patches)},
                "cpu_ms_per_user_post": round(r.cpu_ms_per_post, 3),
                "cpu_ms_per_256_member_patch": round(r.cpu_ms_per_patch, 2),
            })).collect::<Vec<_>>(),
        }));
    }
    json!(levels)
}

async fn repetition(
    client: &kube::Client,
    roster: &Roster,
    http: &reqwest::Client,
    ns: &str,
    concurrency: usize,
    users: usize,
    groups: usize,
) -> Repetition {
    let pid = roster.pid();
    // Baseline: the same User objects straight through the Kubernetes API.
    let api: Api<User> = Api::namespaced(client.clone(), ns);
    let (client_before, roster_before) = (cpu_seconds(std::process::id()), cpu_seconds(pid));
    let baseline = run(users, concurrency, |i| {
        let api = api.clone();
        async move {
            let user = User::new(
                &format!("baseline-{i}"),
                UserSpec {
                    policy: "baseline".into(),
                    user_name: format!("base{i}@example.com"),
                    ..Default::default()
                },
            );
            api.create(&PostParams::default(), &user)
                .await
                .expect("baseline create");
        }
    })
    .await;
    let client_cpu_ms_per_create =
        (cpu_seconds(std::process::id()) - client_before) / users as f64 * 1000.0;
    // Roster's watch delivers the baseline's Users a moment later.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let cpu_ms_per_watched_user = (cpu_seconds(pid) - roster_before) / users as f64 * 1000.0;

    let url = format!("{}/scim/{ns}/scim/v2/Users", roster.base);
    let before = cpu_seconds(pid);
    let scim = run(users, concurrency, |i| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let reply = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"userName": format!("user{i}@example.com"), "name": {"givenName": "U", "familyName": format!("{i}")}}))
                .send()
                .await
                .expect("SCIM POST");
            assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap_or_default());
        }
    })
    .await;
    let cpu_ms_per_post = (cpu_seconds(pid) - before) / users as f64 * 1000.0;

    // Groups: created empty, then 256 members each in one PATCH. Members
    // must be Users of the policy: the ones just pushed.
    let member_ids: Vec<String> = api
        .list(&kube::api::ListParams::default().fields("spec.policy=scim"))
        .await
        .expect("listing the pushed users")
        .items
        .into_iter()
        .filter_map(|u| u.metadata.name)
        .collect();
    assert!(member_ids.len() >= 256, "256 distinct members per group");
    let member_ids = &member_ids;
    let groups_url = format!("{}/scim/{ns}/scim/v2/Groups", roster.base);
    let mut ids = Vec::new();
    for g in 0..groups {
        let reply: Value = http
            .post(&groups_url)
            .bearer_auth(TOKEN)
            .json(&json!({"displayName": format!("group-{g}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(reply["id"].as_str().unwrap().to_owned());
    }
    let before = cpu_seconds(pid);
    let patches = run(groups, concurrency, |g| {
        let http = http.clone();
        let url = format!("{groups_url}/{}", ids[g]);
        async move {
            let members: Vec<Value> = member_ids
                .iter()
                .cycle()
                .skip(g * 256)
                .take(256)
                .map(|id| json!({"value": id}))
                .collect();
            let reply = http
                .patch(&url)
                .bearer_auth(TOKEN)
                .json(&json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": members}]}))
                .send()
                .await
                .expect("SCIM PATCH");
            assert_eq!(reply.status(), 204);
        }
    })
    .await;
    let cpu_ms_per_patch = (cpu_seconds(pid) - before) / groups as f64 * 1000.0;

    // Baseline for memberships: the same slices written directly.
    let slices: Api<GroupMemberSlice> = Api::namespaced(client.clone(), ns);
    let groups_api: Api<Group> = Api::namespaced(client.clone(), ns);
    let base_patches = run(groups, concurrency, |g| {
        let slices = slices.clone();
        let groups_api = groups_api.clone();
        async move {
            let name = format!("baseline-group-{g}");
            let group = Group::new(
                &name,
                GroupSpec {
                    policy: "baseline".into(),
                    display_name: name.clone(),
                    ..Default::default()
                },
            );
            groups_api
                .create(&PostParams::default(), &group)
                .await
                .expect("baseline group");
            let members = (0..256)
                .map(|m| (format!("member-{g}-{m}"), SliceMember::default()))
                .collect();
            let slice = GroupMemberSlice::new(
                &format!("{name}-0"),
                GroupMemberSliceSpec {
                    group: name,
                    members,
                },
            );
            slices
                .create(&PostParams::default(), &slice)
                .await
                .expect("baseline slice");
        }
    })
    .await;
    Repetition {
        scim,
        baseline,
        patches,
        base_patches,
        cpu_ms_per_post,
        cpu_ms_per_patch,
        client_cpu_ms_per_create,
        cpu_ms_per_watched_user,
    }
}

/// PATCH latency for +256 members at 1,000, 10,000 and `big_group` members.
pub async fn large_groups(
    client: &kube::Client,
    roster: &Roster,
    http: &reqwest::Client,
    big_group: usize,
) -> Value {
    let ns = "bench-big";
    namespace(client, ns).await;
    scim_policy(client, ns, "scim", nowhere("scim")).await;
    // Members must be Users of the group's policy: every id the PATCHes add
    // exists, synced, before the first one.
    let members = big_group.max(10_000) + 3 * 20 * 256;
    crate::memory::synced_users(client, ns, "scim", members, |m| format!("m-{m:08}")).await;
    let groups_url = format!("{}/scim/{ns}/scim/v2/Groups", roster.base);
    let reply: Value = http
        .post(&groups_url)
        .bearer_auth(TOKEN)
        .json(&json!({"displayName": "big"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = format!("{groups_url}/{}", reply["id"].as_str().unwrap());
    let mut next = 0usize;
    let add = |next: &mut usize, count: usize| {
        let members: Vec<Value> = (*next..*next + count)
            .map(|m| json!({"value": format!("m-{m:08}")}))
            .collect();
        *next += count;
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": members}]})
    };
    let mut large = Vec::new();
    for target in [1_000usize, 10_000, big_group] {
        while next + 256 <= target {
            let body = add(&mut next, 256);
            http.patch(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
        }
        let mut sample = Sample::default();
        let started = Instant::now();
        for _ in 0..20 {
            let body = add(&mut next, 256);
            let t = Instant::now();
            let reply = http
                .patch(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 204);
            sample.latencies.push(t.elapsed());
        }
        sample.wall = started.elapsed();
        println!(
            "group of {target}: +256 members p50 {:.1} ms p99 {:.1} ms",
            sample.percentile(0.5),
            sample.percentile(0.99)
        );
        large.push(json!({"group_size": target, "p50_ms": round(sample.percentile(0.5), 1), "p99_ms": round(sample.percentile(0.99), 1)}));
    }
    json!(large)
}
