//! A Roster HTTP server in the test process, serving one test's namespace,
//! and a small SCIM client for it.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use reqwest::{Method, StatusCode};
use roster::api::{Mode, ProvisioningPolicy};
use roster::server::{self, Readiness, ServerArgs};
use serde_json::Value;

use super::TestEnv;
use super::fixtures::{jit_policy, scim_policy};

/// A running server and one policy's SCIM endpoint.
pub struct ScimServer {
    pub origin: String,
    pub base_url: String,
    pub token: String,
    pub policy: String,
    http: reqwest::Client,
}

/// Creates a policy named `policy` in `mode` with a fresh token, and serves it.
pub async fn serve(env: &TestEnv, policy: &str, mode: Mode) -> ScimServer {
    let token = format!("token-{:016x}", rand::random::<u64>());
    let object = match mode {
        Mode::Scim => scim_policy(policy),
        Mode::Jit => jit_policy(policy),
    };
    create_policy(env, object, &token).await;
    let origin = start(env.client.clone()).await;
    ScimServer {
        base_url: format!("{origin}/scim/{}/{policy}/v2", env.namespace),
        origin,
        token,
        policy: policy.to_owned(),
        http: reqwest::Client::new(),
    }
}

/// Creates `policy` and, if it has SCIM tokens, their Secret with `token`.
pub async fn create_policy(env: &TestEnv, policy: ProvisioningPolicy, token: &str) {
    if let Some(scim) = &policy.spec.scim {
        let mut secret = Secret::default();
        secret.metadata.name = Some(scim.token_secret_ref.name.clone());
        secret.string_data = Some([("token-1".to_owned(), token.to_owned())].into());
        let secrets: Api<Secret> = env.api();
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("creating the token Secret");
    }
    env.api::<ProvisioningPolicy>()
        .create(&PostParams::default(), &policy)
        .await
        .expect("creating the policy");
}

/// Serves Roster's router on a free loopback port for as long as the test's
/// runtime lives; returns `http://127.0.0.1:<port>`. Policies are read from
/// the API on every request (no policy cache runs).
pub async fn start(client: kube::Client) -> String {
    let readiness = Readiness::default();
    readiness.set_ready();
    let index = roster::directory::membership::MembershipIndex::default();
    let (_, feed) = roster::directory::caches::start(
        &client,
        &[],
        &index,
        roster::directory::caches::Keep::Nothing,
    );
    tokio::spawn(feed);
    start_with(client, index, readiness, &ServerArgs::default()).await
}

/// Serves Roster's router as the operator does: policies from a watch-fed
/// cache, and only once that cache has synced. `client` is what the server
/// talks to the API with (a test may count its calls).
pub async fn start_watching(client: kube::Client) -> String {
    let index = roster::directory::membership::MembershipIndex::default();
    let (caches, feed) = roster::directory::caches::start(
        &client,
        &[],
        &index,
        roster::directory::caches::Keep::Nothing,
    );
    tokio::spawn(feed);
    let policies = roster::directory::policies::PolicyCache::over(&caches);
    let readiness = Readiness::default().with_policies(policies);
    readiness.set_ready();
    // With a public URL, as deployed: SAML answers (404 for an unknown policy).
    let args = ServerArgs {
        public_url: Some(super::saml::PUBLIC_URL.to_owned()),
        ..ServerArgs::default()
    };
    let origin = start_with(client, index, readiness, &args).await;
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{origin}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            return origin;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy cache did not sync"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn start_with(
    client: kube::Client,
    index: roster::directory::membership::MembershipIndex,
    readiness: Readiness,
    args: &ServerArgs,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let router = server::router(client, index, args, readiness);
    tokio::spawn(server::serve(
        router,
        listener,
        None,
        std::future::pending(),
    ));
    origin
}

/// A response: status, headers and the JSON body (Null when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a SCIM error with this status and `scimType`.
    pub fn assert_error(&self, status: u16, scim_type: Option<&str>) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "body: {}",
            self.body
        );
        assert_eq!(
            self.body["status"],
            status.to_string(),
            "status must be a string"
        );
        match scim_type {
            Some(t) => assert_eq!(self.body["scimType"], t, "body: {}", self.body),
            None => assert!(self.body.get("scimType").is_none(), "body: {}", self.body),
        }
    }
}

impl ScimServer {
    /// The SCIM endpoint of `namespace/policy` on a server at `origin`.
    pub fn at(origin: &str, namespace: &str, policy: &str, token: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            base_url: format!("{origin}/scim/{namespace}/{policy}/v2"),
            token: token.to_owned(),
            policy: policy.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends `method path` with the policy's token; `path` is relative to the base URL.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        self.send_as(method, path, body, Some(&self.token), &[])
            .await
    }

    /// Sends as [`send`](Self::send) does, with `token` and `headers`. A
    /// 429 is sent again after its `Retry-After`, as identity providers do:
    /// the policy's rate limit (50/s, burst 100 by default) is not what a
    /// test sending a few hundred requests in a fast second is about. The
    /// rate limit's own test reads the 429s with a plain client.
    pub async fn send_as(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut attempts = 0;
        loop {
            let reply = self
                .send_once(method.clone(), path, body, token, headers)
                .await;
            attempts += 1;
            if reply.status != StatusCode::TOO_MANY_REQUESTS || attempts == 10 {
                return reply;
            }
            let wait: u64 = reply
                .headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .expect("a 429 says when to retry");
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header("Content-Type", "application/scim+json");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }
}
