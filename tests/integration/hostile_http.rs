//! Unauthenticated requests cost nothing lasting: random paths and methods
//! add no metric series and no memory, and requests for policies, Users or
//! Groups that don't exist (or that no object could be named) cost no API
//! call. Each test prints what it sent, what came back and how long it took.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use roster::api::RateLimit;
use serde_json::Value;

use crate::support::fixtures::scim_policy;
use crate::support::scim::{create_policy, start, start_watching};
use crate::support::{config, env};

const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The calls a server made to the API server, as `METHOD /path?query`.
#[derive(Clone, Default)]
struct ApiCalls(Arc<Mutex<Vec<String>>>);

impl ApiCalls {
    /// An admin client for the test cluster that records every call here.
    fn client(&self) -> kube::Client {
        kube::client::ClientBuilder::try_from(config())
            .expect("a client for the test cluster")
            .with_layer(self)
            .build()
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// The calls that read one policy, User or Group by name.
fn named_reads(calls: &[String]) -> Vec<&String> {
    calls
        .iter()
        .filter(|call| {
            let path = call.split('?').next().unwrap_or_default();
            ["provisioningpolicies", "users", "groups"]
                .iter()
                .any(|plural| path.contains(&format!("/{plural}/")))
        })
        .collect()
}

impl<S> tower::Layer<S> for ApiCalls {
    type Service = Recorded<S>;
    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            calls: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    calls: ApiCalls,
}

impl<S, B> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> S::Future {
        let target = request.uri().path_and_query().map_or("", |p| p.as_str());
        let call = format!("{} {target}", request.method());
        self.calls.0.lock().unwrap().push(call);
        self.inner.call(request)
    }
}

/// 48 random bits as lower-case hex: a fresh name no label may ever carry.
fn random_token() -> String {
    format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

/// A request: method, path (below the origin), bearer token.
struct Probe {
    method: Method,
    path: String,
    token: Option<String>,
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

/// Sends `probes`, 16 at a time; the answers in order.
async fn send_all(origin: &str, probes: Vec<Probe>) -> Vec<Answer> {
    let http = reqwest::Client::new();
    futures::stream::iter(probes)
        .map(|probe| {
            let http = http.clone();
            async move {
                let mut request = http.request(probe.method, format!("{origin}{}", probe.path));
                if let Some(token) = &probe.token {
                    request = request.bearer_auth(token);
                }
                let response = request.send().await.expect("the server answers");
                let status = response.status();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = response.text().await.unwrap_or_default();
                Answer {
                    status,
                    content_type,
                    body,
                }
            }
        })
        .buffered(16)
        .collect()
        .await
}

fn status_counts(answers: &[Answer]) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        *counts.entry(answer.status.as_u16()).or_default() += 1;
    }
    counts
}

/// Resident memory of this process (where the server runs), in KiB, after
/// handing freed heap back (as the operator does every few seconds), so
/// what other tests here allocated and freed doesn't count.
#[allow(unsafe_code)]
fn resident_kib() -> u64 {
    // SAFETY: malloc_trim is thread-safe; it takes the arenas' locks.
    unsafe {
        libc::malloc_trim(0);
    }
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// The series of the exposition (its sample lines) and every label value.
fn series_and_label_values(exposition: &str) -> (usize, HashSet<(String, String)>) {
    let samples: Vec<&str> = exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect();
    let mut values = HashSet::new();
    for sample in &samples {
        let Some(labels) = sample
            .split_once('{')
            .and_then(|(_, rest)| rest.rsplit_once('}'))
            .map(|(labels, _)| labels)
        else {
            continue;
        };
        // Roster's label values never hold `",`, so this split is exact.
        for pair in labels.split("\",") {
            if let Some((name, value)) = pair.split_once("=\"") {
                values.insert((name.to_owned(), value.trim_end_matches('"').to_owned()));
            }
        }
    }
    (samples.len(), values)
}

/// The series of the request metrics these requests could add to: those
/// unauthenticated or naming a policy in `namespace` (other tests in this
/// process add theirs to the same registry).
fn request_series(exposition: &str, namespace: &str) -> usize {
    let own_policy = format!("policy=\"{namespace}/");
    exposition
        .lines()
        .filter(|line| {
            [
                "roster_scim_requests_total{",
                "roster_scim_request_duration_seconds_count{",
                "roster_saml_logins_total{",
            ]
            .iter()
            .any(|family| line.starts_with(family))
        })
        .filter(|line| line.contains("policy=\"unauthenticated\"") || line.contains(&own_policy))
        .count()
}

async fn scrape(origin: &str) -> String {
    reqwest::get(format!("{origin}/metrics"))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .unwrap()
}

/// Methods of a hostile client: SCIM's, WebDAV's, made-up ones, and a fresh
/// random one each time (`None`).
const METHODS: [Option<&str>; 8] = [
    Some("GET"),
    Some("POST"),
    Some("PUT"),
    Some("PATCH"),
    Some("DELETE"),
    Some("PROPFIND"),
    Some("FOO"),
    None,
];

/// Paths of a hostile client, each with fresh random segments (`t`), under
/// `/scim` (unknown and existing policies), `/saml` and elsewhere.
fn hostile_path(shape: usize, known: &str, t: &str) -> String {
    match shape {
        0 => format!("/scim/n{t}/p{t}/v2/Users"),
        1 => format!("/scim/n{t}/p{t}/v2/r{t}/x{t}"),
        2 => format!("/scim/{known}/v2/r{t}"),
        3 => format!("/scim/{known}/v2/Users/{t}"),
        4 => format!("/scim/{known}/v2/Users/.search/{t}"),
        5 => format!("/scim/a%2F{t}/p%3F{t}/v2/Users"),
        6 => format!("/scim/{t}"),
        7 => format!("/saml/n{t}/p{t}/login"),
        8 => format!("/saml/n{t}/p{t}/r{t}"),
        9 => format!("/saml/{known}/r{t}"),
        _ => format!("/r{t}/x{t}"),
    }
}
const SHAPES: usize = 11;

/// Every (shape, method) pair once, with fresh random segments; returns the
/// probes and every random string they carry.
fn hostile_round(known: &str, rounds: usize) -> (Vec<Probe>, Vec<String>) {
    let mut probes = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..rounds {
        let t = random_token();
        let method = match METHODS[(i / SHAPES) % METHODS.len()] {
            Some(method) => method.to_owned(),
            None => {
                let made_up = format!("X{}", random_token().to_uppercase());
                tokens.push(made_up.clone());
                made_up
            }
        };
        probes.push(Probe {
            method: Method::from_bytes(method.as_bytes()).unwrap(),
            path: hostile_path(i % SHAPES, known, &t),
            token: None,
        });
        tokens.push(t);
    }
    (probes, tokens)
}

#[tokio::test]
async fn random_unauthenticated_paths_and_methods_add_no_series_and_no_memory() {
    let env = env().await;
    create_policy(&env, scim_policy("wiki"), "hostile-http-secret-token").await;
    let origin = start_watching(env.client.clone()).await;
    let known = format!("{}/wiki", env.namespace);

    // Warm-up: every shape with every method, 12 times, so each fixed-set
    // series these requests can make exists, and the connection pools and
    // allocator have grown, before the count.
    let (warm_up, _) = hostile_round(&known, 12 * SHAPES * METHODS.len());
    send_all(&origin, warm_up).await;
    let exposition = scrape(&origin).await;
    let (series_before, _) = series_and_label_values(&exposition);
    let ours_before = request_series(&exposition, &env.namespace);
    let rss_before = resident_kib();

    let (probes, tokens) = hostile_round(&known, 10_000);
    let started = Instant::now();
    let answers = send_all(&origin, probes).await;
    let took = started.elapsed();

    let rss_after = resident_kib();
    let exposition = scrape(&origin).await;
    let (series_after, label_values) = series_and_label_values(&exposition);
    let ours_after = request_series(&exposition, &env.namespace);
    let statuses = status_counts(&answers);
    eprintln!(
        "10,000 random unauthenticated requests in {took:?}: statuses {statuses:?}; \
         series {series_before} -> {series_after} \
         (of request metrics, unauthenticated or this test's: {ours_before} -> {ours_after}); VmRSS {rss_before} KiB -> {rss_after} KiB"
    );

    assert!(
        answers
            .iter()
            .all(|a| a.status.is_client_error() && a.status != StatusCode::TOO_MANY_REQUESTS),
        "statuses: {statuses:?}"
    );
    // No label value came from a request: no random segment, no made-up method.
    let tokens: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let leaked: Vec<_> = label_values
        .iter()
        .filter(|(_, value)| tokens.iter().any(|t| value.contains(t)))
        .collect();
    assert!(leaked.is_empty(), "label values from requests: {leaked:?}");
    for (name, value) in &label_values {
        if name == "method" {
            assert!(
                [
                    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"
                ]
                .contains(&value.as_str()),
                "method label {value}"
            );
        }
    }
    // The requests above had every shape and method in the warm-up, so they
    // add no series; tests running alongside may add a few unauthenticated
    // ones meanwhile, never thousands.
    assert!(
        ours_after <= ours_before + 20,
        "request series grew from {ours_before} to {ours_after}"
    );
    let grown_kib = rss_after.saturating_sub(rss_before);
    assert!(
        grown_kib < 20 * 1024,
        "resident memory grew by {grown_kib} KiB"
    );
}

/// What a request for something that doesn't exist answered, per kind.
fn assert_all(answers: &[Answer], status: u16, scim_error: bool, what: &str) {
    for answer in answers {
        assert_eq!(answer.status.as_u16(), status, "{what}: {}", answer.body);
        if scim_error {
            let body: Value = serde_json::from_str(&answer.body).expect("a JSON body");
            assert_eq!(body["schemas"][0], SCIM_ERROR, "{what}");
            assert_eq!(body["status"], status.to_string(), "{what}");
        } else {
            assert!(answer.content_type.starts_with("text/html"), "{what}");
        }
    }
}

fn probes(count: usize, token: Option<&str>, path: impl Fn(&str) -> String) -> Vec<Probe> {
    (0..count)
        .map(|_| Probe {
            method: Method::GET,
            path: path(&random_token()),
            token: token.map(str::to_owned),
        })
        .collect()
}

/// A random UUID, as Roster mints User and Group ids.
fn random_uuid() -> String {
    let bits = rand::random::<u128>();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xffff,
        (bits >> 68) & 0xfff,
        (bits >> 56) & 0xfff,
        bits & 0xffff_ffff_ffff
    )
}

/// The kube-apiserver's count of GETs of Roster's policies and Users that
/// answered 404, from its own /metrics.
async fn apiserver_not_found_gets(client: &kube::Client) -> u64 {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client
        .request_text(request)
        .await
        .expect("apiserver /metrics");
    text.lines()
        .filter(|line| {
            line.starts_with("apiserver_request_total{")
                && line.contains("code=\"404\"")
                && line.contains("verb=\"GET\"")
                && line.contains("group=\"roster.dev\"")
                && (line.contains("resource=\"provisioningpolicies\"")
                    || line.contains("resource=\"users\"")
                    || line.contains("resource=\"groups\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test]
async fn requests_for_what_does_not_exist_cost_no_api_call() {
    let env = env().await;
    let token = "wiki-token-0123456789abcdef";
    let mut policy = scim_policy("wiki");
    // The authenticated probes below come faster than an IdP's budget.
    if let Some(scim) = policy.spec.scim.as_mut() {
        scim.rate_limit = RateLimit {
            requests_per_second: 100_000,
            burst: 100_000,
        };
    }
    create_policy(&env, policy, token).await;
    let calls = ApiCalls::default();
    let origin = start_watching(calls.client()).await;
    let ns = env.namespace.clone();
    let scim = format!("/scim/{ns}/wiki/v2");

    // The counter sees calls: an authenticated read of a valid, unknown id is
    // one GET (the API is the only one who knows).
    let control = send_all(
        &origin,
        probes(10, Some(token), |_| {
            format!("{scim}/Users/{}", random_uuid())
        }),
    )
    .await;
    assert_all(&control, 404, true, "an unknown valid id");
    let control_reads = named_reads(&calls.take()).len();
    assert_eq!(control_reads, 10, "one GET per authenticated unknown id");

    let apiserver_before = apiserver_not_found_gets(&env.client).await;
    let hostile: [(&str, Vec<Probe>, u16, bool); 10] = [
        (
            "unknown policy, no token",
            probes(250, None, |t| format!("/scim/{ns}/p{t}/v2/Users")),
            401,
            true,
        ),
        (
            "unknown policy, a made-up token",
            probes(100, Some("made-up"), |t| {
                format!("/scim/{ns}/p{t}/v2/Groups")
            }),
            401,
            true,
        ),
        (
            "unknown policy, SAML login and metadata",
            probes(150, None, |t| format!("/saml/{ns}/p{t}/login"))
                .into_iter()
                .chain(probes(50, None, |t| format!("/saml/{ns}/p{t}/metadata")))
                .collect(),
            404,
            false,
        ),
        (
            "existing policy, a User id, no token",
            probes(150, None, |_| format!("{scim}/Users/{}", random_uuid())),
            401,
            true,
        ),
        (
            "ids no object can have",
            probes(50, Some(token), |t| format!("{scim}/Users/a%2F{t}"))
                .into_iter()
                .chain(probes(25, Some(token), |t| {
                    format!("{scim}/Users/{t}%3Fwatch=true")
                }))
                .chain(probes(25, Some(token), |t| {
                    format!("{scim}/Groups/..%2F..%2Fsecrets%2F{t}")
                }))
                .chain(probes(25, Some(token), |t| {
                    format!("{scim}/Groups/UPPER{t}")
                }))
                .collect(),
            404,
            true,
        ),
        (
            "filter on an id no object can have",
            probes(25, Some(token), |t| {
                format!("{scim}/Users?filter=id%20eq%20%22x%2F{t}%22")
            })
            .into_iter()
            .chain(probes(25, Some(token), |t| {
                format!("{scim}/Groups?filter=id%20eq%20%22{t}%3Fx%22")
            }))
            .collect(),
            200,
            false,
        ),
        (
            "percent-encoded / in the namespace",
            probes(50, Some(token), |t| format!("/scim/a%2F{t}/wiki/v2/Users")),
            404,
            true,
        ),
        (
            "percent-encoded ? in the policy",
            probes(50, Some(token), |t| {
                format!("/scim/{ns}/wiki%3F{t}/v2/Users")
            }),
            404,
            true,
        ),
        (
            "percent-encoded / and ? in a SAML path",
            probes(25, None, |t| format!("/saml/a%2F{t}/wiki/login"))
                .into_iter()
                .chain(probes(25, None, |t| {
                    format!("/saml/{ns}/wiki%3F{t}/metadata")
                }))
                .collect(),
            404,
            false,
        ),
        (
            "a policy name longer than any object's",
            probes(25, None, |t| {
                format!("/scim/{ns}/{}/v2/Users", t.repeat(22))
            }),
            404,
            true,
        ),
    ];
    let mut sent = 0;
    for (what, probes, status, scim_error) in hostile {
        let count = probes.len();
        let started = Instant::now();
        let answers = send_all(&origin, probes).await;
        let took = started.elapsed();
        if status == 200 {
            for answer in &answers {
                assert_eq!(answer.status, 200, "{what}: {}", answer.body);
                let body: Value = serde_json::from_str(&answer.body).unwrap();
                assert_eq!(body["totalResults"], 0, "{what}");
            }
        } else {
            assert_all(&answers, status, scim_error, what);
        }
        let made = calls.take();
        eprintln!(
            "{what}: {count} requests -> {status} in {took:?}; API calls: {} ({} named reads)",
            made.len(),
            named_reads(&made).len()
        );
        assert_eq!(named_reads(&made), Vec::<&String>::new(), "{what}");
        sent += count;
    }
    let apiserver_after = apiserver_not_found_gets(&env.client).await;
    eprintln!(
        "{sent} requests; kube-apiserver GETs of policies/Users/Groups answered 404: \
         {apiserver_before} -> {apiserver_after}"
    );
    // The apiserver's counter is shared with tests running alongside (which
    // may read what they just deleted); 1,000 requests costing a call each
    // would show as 1,000.
    assert!(
        apiserver_after - apiserver_before < 100,
        "{apiserver_before} -> {apiserver_after}"
    );
}

#[tokio::test]
async fn before_the_policy_cache_syncs_a_not_found_is_asked_once() {
    let env = env().await;
    let calls = ApiCalls::default();
    // No policy cache runs: every policy is read from the API.
    let origin = start(calls.client()).await;
    let names: Vec<String> = (0..4).map(|_| format!("p{}", random_token())).collect();
    let probes: Vec<Probe> = (0..200)
        .map(|i| Probe {
            method: Method::GET,
            path: format!(
                "/scim/{}/{}/v2/Users",
                env.namespace,
                names[i % names.len()]
            ),
            token: None,
        })
        .collect();
    let started = Instant::now();
    let answers = send_all_in_order(&origin, probes).await;
    let took = started.elapsed();
    assert_all(&answers, 401, true, "an unknown policy");
    let made = calls.take();
    eprintln!(
        "unsynced cache: 200 requests for 4 unknown policies in {took:?}; API calls: {made:?}"
    );
    let reads = named_reads(&made);
    assert_eq!(
        reads.len(),
        names.len(),
        "one GET per unknown name: {reads:?}"
    );
}

/// Sends `probes` one after another (so the first answer for a name is in
/// before the next request for it).
async fn send_all_in_order(origin: &str, probes: Vec<Probe>) -> Vec<Answer> {
    let mut answers = Vec::new();
    for probe in probes {
        answers.extend(send_all(origin, vec![probe]).await);
    }
    answers
}
