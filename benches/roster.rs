//! `make bench`: Roster against the local control plane, on this machine.
//!
//! Machines here are shared and noisy, so every figure is compared within
//! one run (as a ratio to a baseline measured in the same run) and the
//! results are written to BENCHMARKS.md and bench-results.json.
//!
//! Sizes: ROSTER_BENCH_USERS (default 10000), ROSTER_BENCH_GROUPS (1000),
//! ROSTER_BENCH_BIG_GROUP (50000).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use roster::api::{
    ApplicationKind, ApplicationSpec, DeprovisionAction, Group, GroupMemberSlice,
    GroupMemberSliceSpec, GroupSpec, Mode, ProvisioningPolicy, ProvisioningPolicySpec, RateLimit,
    ScimService, SecretKeyRef, SecretRef, SliceMember, User, UserSpec, WebhookConnector,
};
use roster::controlplane::{Binaries, ControlPlane};
use serde_json::{Value, json};

const TOKEN: &str = "bench-token";

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of one phase.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1000.0
    }
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `n` jobs with `concurrency` in flight, timing each.
async fn run<F, Fut>(n: usize, concurrency: usize, job: F) -> Sample
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let latencies = futures::stream::iter(0..n)
        .map(|i| {
            let fut = job(i);
            async move {
                let t = Instant::now();
                fut.await;
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    Sample {
        latencies,
        wall: started.elapsed(),
    }
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn namespace(client: &kube::Client, name: &str) {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

/// A Scim policy whose application is a webhook nobody listens to (the
/// controllers don't watch the bench namespace), with a high rate limit.
async fn policy(client: &kube::Client, ns: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut secret = Secret::default();
    secret.metadata.name = Some(format!("{name}-tokens"));
    secret.string_data = Some([("token".to_owned(), TOKEN.to_owned())].into());
    let _ = secrets.create(&PostParams::default(), &secret).await;
    let policy = ProvisioningPolicy::new(
        name,
        ProvisioningPolicySpec {
            mode: Mode::Scim,
            application: ApplicationSpec {
                kind: ApplicationKind::Webhook,
                scim: None,
                webhook: Some(WebhookConnector {
                    url: "http://127.0.0.1:9/none".into(),
                    signing_secret_ref: SecretKeyRef {
                        name: format!("{name}-tokens"),
                        key: "token".into(),
                    },
                }),
                deprovision: DeprovisionAction::Disable,
            },
            scim: Some(ScimService {
                token_secret_ref: SecretRef {
                    name: format!("{name}-tokens"),
                },
                rate_limit: RateLimit {
                    requests_per_second: 100_000,
                    burst: 100_000,
                },
            }),
            saml: None,
            jit: None,
        },
    );
    Api::<ProvisioningPolicy>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &policy)
        .await
        .expect("creating a bench policy");
}

struct Roster {
    child: std::process::Child,
    base: String,
}

impl Drop for Roster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_roster(kubeconfig: &std::path::Path) -> Roster {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        // The controllers watch an empty namespace: these figures are the SCIM service's.
        .args([
            "--watch-namespace",
            "roster-bench-idle",
            "--leader-election=false",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "error")
        .spawn()
        .expect("starting roster");
    Roster {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

fn row(name: &str, sample: &Sample) -> Value {
    json!({
        "scenario": name,
        "requests": sample.latencies.len(),
        "throughput_per_s": (sample.throughput() * 10.0).round() / 10.0,
        "p50_ms": (sample.percentile(0.5) * 100.0).round() / 100.0,
        "p99_ms": (sample.percentile(0.99) * 100.0).round() / 100.0,
    })
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`:
    // benchmarks are `make bench`'s job, not the test suite's.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("benchmarks run with `make bench`");
        return;
    }
    let users = size("ROSTER_BENCH_USERS", 10_000);
    let groups = size("ROSTER_BENCH_GROUPS", 1_000);
    let big_group = size("ROSTER_BENCH_BIG_GROUP", 50_000);
    let plane = ControlPlane::start(&Binaries::from_env().expect("make controlplane"))
        .await
        .expect("starting the control plane");
    let client = kube::Client::try_from(plane.config().await.unwrap()).unwrap();
    roster::cluster::install_crds(&client, &roster::api::crds(), Duration::from_secs(60))
        .await
        .unwrap();
    let roster = start_roster(plane.kubeconfig_path());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    for _ in 0..300 {
        if http
            .get(format!("{}/readyz", roster.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = roster.child.id();
    let mut results = Vec::new();
    let mut cpu = BTreeMap::new();

    for concurrency in [1usize, 8, 32] {
        let ns = format!("bench-c{concurrency}");
        namespace(&client, &ns).await;
        policy(&client, &ns, "scim").await;

        // Baseline: the same User objects straight through the Kubernetes API.
        let api: Api<User> = Api::namespaced(client.clone(), &ns);
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
        let cpu_per_post = (cpu_seconds(pid) - before) / users as f64 * 1000.0;

        // Groups: created empty, then 256 members each in one PATCH.
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
                let members: Vec<Value> = (0..256).map(|m| json!({"value": format!("member-{g}-{m}")})).collect();
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
        let cpu_per_patch = (cpu_seconds(pid) - before) / groups as f64 * 1000.0;

        // Baseline for memberships: the same slices written directly.
        let slices: Api<GroupMemberSlice> = Api::namespaced(client.clone(), &ns);
        let groups_api: Api<Group> = Api::namespaced(client.clone(), &ns);
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

        println!(
            "c={concurrency}: SCIM {:.0}/s p99 {:.1} ms vs baseline {:.0}/s p99 {:.1} ms; {cpu_per_post:.3} ms CPU/POST, {cpu_per_patch:.2} ms CPU/PATCH",
            scim.throughput(),
            scim.percentile(0.99),
            baseline.throughput(),
            baseline.percentile(0.99)
        );
        results.push(json!({
            "concurrency": concurrency,
            "users": {"scim": row("SCIM POST /Users", &scim), "baseline": row("kube create User", &baseline),
                      "throughput_ratio": scim.throughput() / baseline.throughput(),
                      "p99_ratio": scim.percentile(0.99) / baseline.percentile(0.99)},
            "memberships": {"scim": row("SCIM PATCH +256 members", &patches), "baseline": row("kube create Group + slice", &base_patches),
                            "throughput_ratio": patches.throughput() / base_patches.throughput()},
        }));
        cpu.insert(
            concurrency,
            json!({"ms_per_user_post": cpu_per_post, "ms_per_256_member_patch": cpu_per_patch}),
        );
    }

    // Large groups: PATCH latency for +256 members at 1,000, 10,000 and 50,000.
    let ns = "bench-big";
    namespace(&client, ns).await;
    policy(&client, ns, "scim").await;
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
        large.push(json!({"group_size": target, "p50_ms": sample.percentile(0.5), "p99_ms": sample.percentile(0.99)}));
    }
    let rss = rss_mib(pid);

    let report = json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "sizes": {"users": users, "groups": groups, "big_group": big_group},
        "ingest": results,
        "roster_cpu": cpu,
        "large_groups": large,
        "roster_rss_mib_after_run": rss,
    });
    std::fs::write(
        "bench-results.json",
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    std::fs::write("BENCHMARKS.md", markdown(&report)).unwrap();
    println!("wrote BENCHMARKS.md and bench-results.json");
    drop(roster);
    plane.stop();
}

fn markdown(report: &Value) -> String {
    let mut out = String::from(
        "# Benchmarks\n\nWritten by `make bench` (benches/roster.rs) on this machine; every ratio compares figures of the same run.\n\n",
    );
    out += &format!(
        "Sizes: {} users and {} groups per concurrency level; one group grown to {} members.\n\n",
        report["sizes"]["users"], report["sizes"]["groups"], report["sizes"]["big_group"]
    );
    out += "## SCIM ingest against a plain kube client (same objects, same concurrency)\n\n| concurrency | SCIM users/s | baseline users/s | ratio (target ≥ 0.8) | SCIM p99 ms | baseline p99 ms | p99 ratio (target ≤ 2) | SCIM PATCH +256/s | baseline/s |\n|---|---|---|---|---|---|---|---|---|\n";
    for level in report["ingest"].as_array().unwrap() {
        let u = &level["users"];
        let m = &level["memberships"];
        out += &format!(
            "| {} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {} |\n",
            level["concurrency"],
            u["scim"]["throughput_per_s"],
            u["baseline"]["throughput_per_s"],
            u["throughput_ratio"].as_f64().unwrap_or(0.0),
            u["scim"]["p99_ms"],
            u["baseline"]["p99_ms"],
            u["p99_ratio"].as_f64().unwrap_or(0.0),
            m["scim"]["throughput_per_s"],
            m["baseline"]["throughput_per_s"]
        );
    }
    out += "\n## Roster CPU per request (from /proc, excluding the API server)\n\n| concurrency | ms per user POST (target ≤ 0.3) | ms per 256-member PATCH (target ≤ 5) |\n|---|---|---|\n";
    for (c, v) in report["roster_cpu"].as_object().unwrap() {
        out += &format!(
            "| {c} | {:.3} | {:.2} |\n",
            v["ms_per_user_post"].as_f64().unwrap_or(0.0),
            v["ms_per_256_member_patch"].as_f64().unwrap_or(0.0)
        );
    }
    out += "\n## Large groups: PATCH adding 256 members (target: the same latency at every size)\n\n| group size | p50 ms | p99 ms |\n|---|---|---|\n";
    for g in report["large_groups"].as_array().unwrap() {
        out += &format!(
            "| {} | {:.1} | {:.1} |\n",
            g["group_size"],
            g["p50_ms"].as_f64().unwrap_or(0.0),
            g["p99_ms"].as_f64().unwrap_or(0.0)
        );
    }
    out += &format!(
        "\nRoster RSS after the run: {:.0} MiB.\n\nNot measured yet: propagation to the application, a 10,000-user resync, memory with 100,000 users and 10,000 groups, SAML ACS throughput.\n",
        report["roster_rss_mib_after_run"].as_f64().unwrap_or(0.0)
    );
    out
}
