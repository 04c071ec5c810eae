//! The SSO gate's real surroundings: Roster replicas serving it from their
//! own watch-fed directory, Debian's nginx in front of an upstream that
//! echoes the headers it receives, and a browser that keeps cookies the way
//! one does (by name, for every port of the host), all on loopback.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use roster::directory::membership::MembershipIndex;
use roster::directory::policies::PolicyCache;
use roster::saml::session::SessionKey;
use roster::server::{self, Readiness, ServerArgs};
use serde_json::Value;

use super::TestEnv;
use super::free_port;
use super::saml::{Idp, PUBLIC_URL, Response, SamlServer};

/// A Roster replica as the operator runs one: the membership index and the
/// policy cache watched, `key` shared with its peers, [`PUBLIC_URL`]
/// advertised. Returns its origin once it is ready.
pub async fn replica(env: &TestEnv, key: &SessionKey) -> String {
    start_replica(env, key, false).await
}

/// As [`replica`], advertising its own origin (`http://localhost:<port>`),
/// for a real browser, which cannot resolve [`PUBLIC_URL`].
pub async fn replica_advertising_itself(env: &TestEnv, key: &SessionKey) -> String {
    start_replica(env, key, true).await
}

async fn start_replica(env: &TestEnv, key: &SessionKey, advertise_self: bool) -> String {
    let client = env.client.clone();
    let index = MembershipIndex::default();
    let (caches, feed) = roster::directory::caches::start(
        &client,
        &[],
        &index,
        roster::directory::caches::Keep::Nothing,
    );
    tokio::spawn(feed);
    let policies = PolicyCache::over(&caches);
    let readiness = Readiness::new(index.clone()).with_policies(policies);
    readiness.set_ready();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let origin = if advertise_self {
        format!("http://localhost:{port}")
    } else {
        format!("http://127.0.0.1:{port}")
    };
    let args = ServerArgs {
        public_url: Some(if advertise_self {
            origin.clone()
        } else {
            PUBLIC_URL.to_owned()
        }),
        session_key: Some(key.clone()),
        ..ServerArgs::default()
    };
    let router = server::router(client, index, &args, readiness);
    tokio::spawn(server::serve(
        router,
        listener,
        None,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http.get(format!("{origin}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return origin;
        }
        assert!(Instant::now() < deadline, "the replica did not get ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An upstream application that answers every request with the request's
/// headers as JSON (lower-case names).
pub async fn echo_upstream() -> String {
    async fn echo(headers: HeaderMap) -> axum::Json<BTreeMap<String, String>> {
        axum::Json(
            headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(echo);
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

/// Debian's nginx with `auth_request` in front of `upstream`, asking the
/// gate of `namespace/policy` on `roster`; a 401 is sent to the sign-in URL
/// on `public` (Roster's public URL) as ingress-nginx's `auth-signin` does.
/// Reached at `http://localhost:<port>`. Stopped when dropped.
pub struct Nginx {
    pub origin: String,
    child: Child,
    _dir: tempfile::TempDir,
}

const IDENTITY_HEADERS: [&str; 5] = [
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Name",
    "X-Auth-Request-Groups",
    "X-Auth-Request-User-Id",
];

impl Nginx {
    pub async fn start(
        roster: &str,
        public: &str,
        namespace: &str,
        policy: &str,
        upstream: &str,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let origin = format!("http://localhost:{port}");
        let path = dir.path().display().to_string();
        let mut copy = String::new();
        for (i, header) in IDENTITY_HEADERS.iter().enumerate() {
            let variable = header.to_lowercase().replace('-', "_");
            copy.push_str(&format!(
                "      auth_request_set $id{i} $upstream_http_{variable};\n      proxy_set_header {header} $id{i};\n"
            ));
        }
        let config = format!(
            r#"worker_processes 1;
daemon off;
pid {path}/nginx.pid;
error_log {path}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {path}/body;
  proxy_temp_path {path}/proxy;
  fastcgi_temp_path {path}/fastcgi;
  uwsgi_temp_path {path}/uwsgi;
  scgi_temp_path {path}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location = /_roster_check {{
      internal;
      proxy_pass {roster}/gate/{namespace}/{policy}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
    }}
    location @signin {{
      return 302 {public}/gate/{namespace}/{policy}/signin?rd=$scheme://$http_host$request_uri;
    }}
    location / {{
      auth_request /_roster_check;
      error_page 401 = @signin;
{copy}      proxy_pass {upstream};
    }}
  }}
}}
"#
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting nginx (Debian's nginx package; `make test` installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            origin,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

/// A browser: cookies by name (a cookie is for a host, not a port, so one
/// set by Roster at 127.0.0.1 goes to nginx at 127.0.0.1 too), no automatic
/// redirects, and [`PUBLIC_URL`] resolved to one replica.
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
    /// Where [`PUBLIC_URL`] leads.
    pub roster: String,
    http: reqwest::Client,
}

/// A page as the browser got it.
pub struct Page {
    pub status: u16,
    /// The `Set-Cookie` headers, whole.
    pub set_cookies: Vec<String>,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }
}

impl Browser {
    pub fn new(roster: &str) -> Self {
        Self {
            cookies: BTreeMap::new(),
            roster: roster.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    fn resolve(&self, url: &str) -> String {
        match url.strip_prefix(PUBLIC_URL) {
            Some(rest) => format!("{}{rest}", self.roster),
            None => url.to_owned(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// GET `url` with the cookies and `extra` headers; keeps what it sets.
    pub async fn get(&mut self, url: &str, extra: &[(&str, &str)]) -> Page {
        let mut request = self.http.get(self.resolve(url));
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        self.keep(request.send().await.expect("an answer")).await
    }

    async fn keep(&mut self, response: reqwest::Response) -> Page {
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        for set in &set_cookies {
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        Page {
            status: response.status().as_u16(),
            set_cookies,
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap(),
        }
    }

    /// Follows a sign-in URL through a login answered by `response` from
    /// `idp` (posted to the ACS as the IdP's auto-submitting form would):
    /// the page the ACS answers with.
    pub async fn sign_in(
        &mut self,
        signin_url: &str,
        idp: &Idp,
        response: impl FnOnce(&SamlServer) -> Response,
        namespace: &str,
        policy: &str,
    ) -> Page {
        let to_idp = self.get(signin_url, &[]).await;
        assert_eq!(to_idp.status, 303, "sign-in: {}", to_idp.body);
        let request = self
            .cookies
            .get("roster_saml_request")
            .expect("a login request cookie")
            .clone();
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(request.split_once('.').unwrap().0)
                .unwrap(),
        )
        .unwrap();
        let server = SamlServer::at(&self.roster, namespace, policy);
        let xml = response(&server)
            .answering(claims["id"].as_str().unwrap())
            .sign(idp);
        let form = [
            (
                "SAMLResponse",
                base64::engine::general_purpose::STANDARD.encode(xml),
            ),
            ("RelayState", claims["relay"].as_str().unwrap().to_owned()),
        ];
        let posted = self
            .http
            .post(server.acs_url().replace(PUBLIC_URL, &self.roster))
            .header("cookie", self.cookie_header())
            .form(&form)
            .send()
            .await
            .unwrap();
        self.keep(posted).await
    }

    /// The session cookie of `namespace/policy`, if the browser holds one.
    pub fn session(&self, namespace: &str, policy: &str) -> Option<&String> {
        self.cookies
            .get(&format!("roster_session.{namespace}.{policy}"))
    }
}

impl Browser {
    /// GETs `url` until it answers `status`, for at most `limit`: how long
    /// that took, or a panic naming the last answer.
    pub async fn wait_for(&mut self, url: &str, status: u16, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let page = self.get(url, &[]).await;
            if page.status == status {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{url} still answers {} after {limit:?}: {}",
                page.status,
                page.body
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A test identity provider for a real browser: `/sso` takes the
/// HTTP-Redirect AuthnRequest, signs a response for `email` answering it
/// (xmlsec1, as every SAML test signs), and serves a page that posts it to
/// the ACS by itself, as Okta's and Entra's pages do. Returns its origin.
pub async fn auto_posting_idp(
    idp: std::sync::Arc<Idp>,
    roster: &str,
    namespace: &str,
    policy: &str,
    email: &str,
) -> String {
    use axum::extract::Query;
    use std::collections::HashMap;
    let (roster, namespace, policy) = (roster.to_owned(), namespace.to_owned(), policy.to_owned());
    let base = format!("{roster}/saml/{namespace}/{policy}");
    let (acs, audience) = (format!("{base}/acs"), format!("{base}/metadata"));
    let sp = move || SamlServer::at(&roster, &namespace, &policy);
    let email = email.to_owned();
    let sso = move |Query(query): Query<HashMap<String, String>>| {
        let (idp, acs, audience, email) =
            (idp.clone(), acs.clone(), audience.clone(), email.clone());
        let mut response = Response::okta(&idp, &sp(), &email, "Dana", "Scully");
        async move {
            let request = base64::engine::general_purpose::STANDARD
                .decode(&query["SAMLRequest"])
                .unwrap();
            let mut xml = String::new();
            std::io::Read::read_to_string(
                &mut flate2::read::DeflateDecoder::new(&request[..]),
                &mut xml,
            )
            .unwrap();
            let id = xml
                .split(" ID=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            response = response.answering(id);
            response.audience = audience;
            response.recipient = acs.clone();
            response.destination = Some(acs.clone());
            let signed = tokio::task::spawn_blocking(move || response.sign(&idp))
                .await
                .unwrap();
            let encoded = base64::engine::general_purpose::STANDARD.encode(signed);
            let relay = &query["RelayState"];
            axum::response::Html(format!(
                r#"<!DOCTYPE html><html><head><title>Test identity provider</title></head><body>
<h1>Test identity provider</h1><p>A test double: it signs in {email} and posts the response to Roster.</p>
<form method="post" action="{acs}"><input type="hidden" name="SAMLResponse" value="{encoded}">
<input type="hidden" name="RelayState" value="{relay}"><button>Continue</button></form>
<script>setTimeout(function () {{ document.forms[0].submit(); }}, 1000);</script></body></html>"#
            ))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://localhost:{}", listener.local_addr().unwrap().port());
    let app = axum::Router::new().route("/sso", axum::routing::get(sso));
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}
