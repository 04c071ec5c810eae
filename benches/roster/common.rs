//! What every section shares: timing, /proc readings, Roster processes,
//! bench namespaces and policies.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use roster::api::{
    ApplicationKind, ApplicationSpec, CircuitBreaker, DeprovisionAction, Mode, ProvisioningPolicy,
    ProvisioningPolicySpec, RateLimit, ScimService, SecretKeyRef, SecretRef, WebhookConnector,
};
use serde_json::{Value, json};

/// The bearer token of every bench policy.
pub const TOKEN: &str = "bench-token-0123456789";

/// The session key every bench replica shares (`--session-key-file`), so
/// the gate section can mint sessions as a login would.
pub const SESSION_KEY: &[u8; 32] = b"bench-session-key-0123456789abcd";

pub fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of one phase.
#[derive(Default, Clone)]
pub struct Sample {
    pub latencies: Vec<Duration>,
    pub wall: Duration,
}

impl Sample {
    /// The `p` quantile in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index].as_secs_f64() * 1000.0
    }
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `n` jobs with `concurrency` in flight, timing each.
pub async fn run<F, Fut>(n: usize, concurrency: usize, job: F) -> Sample
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

/// The median of `values` (0 when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Rounds to `digits` decimals, for the report.
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// CPU seconds (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// Resident memory of a process, from /proc/<pid>/status VmRSS.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub async fn namespace(client: &kube::Client, name: &str) {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;
}

pub async fn secret(client: &kube::Client, ns: &str, name: &str, key: &str, value: &str) {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.string_data = Some([(key.to_owned(), value.to_owned())].into());
    let _ = Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await;
}

/// A webhook application nobody listens to: for policies whose
/// controllers don't run, or whose objects are already synced.
pub fn nowhere(name: &str) -> ApplicationSpec {
    ApplicationSpec {
        kind: ApplicationKind::Webhook,
        scim: None,
        webhook: Some(WebhookConnector {
            url: "http://127.0.0.1:9/none".into(),
            signing_secret_ref: SecretKeyRef {
                name: format!("{name}-tokens"),
                key: "token".into(),
            },
            signature_scheme: Default::default(),
        }),
        postgres: None,
        argocd_rbac: None,
        deprovision: DeprovisionAction::Disable,
        delete_after_seconds: 86_400,
        dry_run: false,
    }
}

/// A Scim policy provisioning into `application`, with a rate limit high
/// enough never to answer 429.
pub async fn scim_policy(
    client: &kube::Client,
    ns: &str,
    name: &str,
    application: ApplicationSpec,
) {
    secret(client, ns, &format!("{name}-tokens"), "token", TOKEN).await;
    let policy = ProvisioningPolicy::new(
        name,
        ProvisioningPolicySpec {
            mode: Mode::Scim,
            application,
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
            access: None,
            // On, so its cost is in every figure, but never tripped by a
            // bench that deactivates hundreds of users in a minute.
            kubernetes: None,
            circuit_breaker: CircuitBreaker {
                max_actions: 1_000_000,
                ..Default::default()
            },
        },
    );
    Api::<ProvisioningPolicy>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &policy)
        .await
        .expect("creating a bench policy");
}

/// A release `roster run` child process, killed when dropped.
pub struct Roster {
    pub child: std::process::Child,
    pub base: String,
}

impl Roster {
    /// Starts `roster run` with its controllers over `watch_namespace`, or
    /// with none (`None`: the SCIM and SAML service alone, every namespace).
    pub fn start(kubeconfig: &std::path::Path, watch_namespace: Option<&str>) -> Self {
        Self::start_with(kubeconfig, watch_namespace, &[])
    }

    /// [`Roster::start`] with `extra` arguments.
    pub fn start_with(
        kubeconfig: &std::path::Path,
        watch_namespace: Option<&str>,
        extra: &[&str],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let key_file = std::env::temp_dir().join(format!("roster-bench-session-key-{port}"));
        std::fs::write(&key_file, SESSION_KEY).expect("writing the bench session key");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--session-key-file")
            .arg(&key_file)
            .args(["--public-url", &base])
            .args(match watch_namespace {
                Some(namespace) => vec!["--watch-namespace", namespace],
                None => vec!["--serve-only"],
            })
            .arg("--leader-election=false")
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            // Quiet, also about the 503s of /readyz while it starts.
            .env("RUST_LOG", "error,tower_http=off")
            .spawn()
            .expect("starting roster");
        Self { child, base }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until /readyz answers 200; returns how long that took.
    pub async fn ready(&self, http: &reqwest::Client, timeout: Duration) -> Duration {
        let started = Instant::now();
        while started.elapsed() < timeout {
            let reply = http.get(format!("{}/readyz", self.base)).send().await;
            if reply.is_ok_and(|r| r.status() == 200) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("roster was not ready within {timeout:?}");
    }

    /// The sum of a metric's samples whose labels contain every `labels` pair.
    pub async fn metric(&self, http: &reqwest::Client, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Ok(reply) = http.get(format!("{}/metrics", self.base)).send().await else {
            return 0.0;
        };
        let text = reply.text().await.unwrap_or_default();
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
            .filter(|line| {
                labels
                    .iter()
                    .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |sum, v| sum + v)
    }
}

impl Drop for Roster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client with a pool large enough for the highest concurrency.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// One row of the JSON results.
pub fn row(name: &str, sample: &Sample) -> Value {
    json!({
        "scenario": name,
        "requests": sample.latencies.len(),
        "throughput_per_s": round(sample.throughput(), 1),
        "p50_ms": round(sample.percentile(0.5), 2),
        "p99_ms": round(sample.percentile(0.99), 2),
    })
}

/// One SCIM request with the bench token to `base` (a policy's SCIM base
/// URL); panics unless it succeeds. Returns the JSON body (Null when empty).
pub async fn scim_call(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let reply = http
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("SCIM request");
    assert!(
        reply.status().is_success(),
        "SCIM {path}: {}",
        reply.status()
    );
    reply.json().await.unwrap_or(Value::Null)
}

/// A SCIM PatchOp of one operation.
pub fn patch_op(op: &str, path: &str, value: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": op, "path": path, "value": value}]})
}
