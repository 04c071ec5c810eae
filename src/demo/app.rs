//! The demo application `roster dev` runs behind Roster's SSO gate: for
//! each request it asks the gate of one policy, as Traefik's ForwardAuth
//! does (`X-Forwarded-Proto/Host/Uri` and the browser's cookies), and then
//! either shows the identity headers the gate answered with, or passes the
//! gate's refusal on (a redirect to sign in, or "No access").
//!
//! Only in the `dev` feature; only `roster dev` starts it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// What the app needs to ask the gate.
pub struct DemoApp {
    /// Where the gate is reached from this process, e.g. `http://127.0.0.1:8080`.
    pub roster: String,
    /// The public URL browsers use for Roster, e.g. `http://localhost:8080`.
    pub public_url: String,
    pub namespace: String,
    pub policy: String,
    http: reqwest::Client,
}

impl DemoApp {
    pub fn new(roster: &str, public_url: &str, namespace: &str, policy: &str) -> Self {
        Self {
            roster: roster.trim_end_matches('/').to_owned(),
            public_url: public_url.trim_end_matches('/').to_owned(),
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("a reqwest client"),
        }
    }

    fn gate(&self, last: &str) -> String {
        format!("/gate/{}/{}/{last}", self.namespace, self.policy)
    }
}

pub fn router(app: Arc<DemoApp>) -> axum::Router {
    axum::Router::new().fallback(serve).with_state(app)
}

/// Identity headers of the default names (oauth2-proxy's) and any other
/// the policy configured are all `x-auth-request-*` unless renamed; the app
/// shows every header the gate answered with except the transport's.
fn identity_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let transport = [
        "content-length",
        "content-type",
        "date",
        "cache-control",
        "connection",
    ];
    headers
        .iter()
        .filter(|(name, _)| !transport.contains(&name.as_str()))
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

async fn serve(State(app): State<Arc<DemoApp>>, uri: Uri, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut check = app
        .http
        .get(format!("{}{}", app.roster, app.gate("traefik")))
        .header("x-forwarded-proto", "http")
        .header("x-forwarded-host", &host)
        .header("x-forwarded-uri", &path)
        .header("x-forwarded-method", "GET");
    if let Some(cookie) = headers.get(header::COOKIE) {
        check = check.header(header::COOKIE, cookie.clone());
    }
    let answer = match check.send().await {
        Ok(answer) => answer,
        Err(error) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Roster did not answer",
                &format!(
                    "<p>The gate check failed: {}</p>",
                    super::escape(&error.to_string())
                ),
            );
        }
    };
    let status = answer.status();
    if status.is_success() {
        let rows: String = identity_headers(answer.headers())
            .into_iter()
            .map(|(name, value)| {
                format!(
                    "<tr><td><code>{}</code></td><td>{}</td></tr>",
                    super::escape(&name),
                    super::escape(&value)
                )
            })
            .collect();
        let signout = format!(
            "{}{}?rd={}",
            app.public_url,
            app.gate("signout"),
            url::form_urlencoded::byte_serialize(format!("http://{host}/").as_bytes())
                .collect::<String>()
        );
        // With the default header names, a command to try the revocation.
        let deactivate = answer
            .headers()
            .get("x-auth-request-user-id")
            .and_then(|id| id.to_str().ok())
            .map(|id| {
                format!(
                    "<p>Deactivate the user, and the next request here is refused:</p><pre>kubectl -n {} patch user {} --type merge -p '{{\"spec\":{{\"active\":false}}}}'</pre>",
                    app.namespace,
                    super::escape(id)
                )
            })
            .unwrap_or_default();
        return page(
            StatusCode::OK,
            "Signed in",
            &format!(
                "<p>Roster's SSO gate let this request through and told the application who you are, in these headers:</p><table id=\"identity\">{rows}</table>{deactivate}<p><a href=\"{signout}\">Sign out</a></p>"
            ),
        );
    }
    // A refusal is passed on as the proxy would: the gate's status, its
    // Location (the sign-in) and its page.
    let mut response = Response::builder().status(status.as_u16());
    for name in [header::LOCATION, header::CONTENT_TYPE, header::SET_COOKIE] {
        for value in answer.headers().get_all(name.as_str()) {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    response
        .body(axum::body::Body::from(body))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    super::page(
        status,
        "Roster demo application",
        "<p style=\"background:#bfdbfe;padding:.5em\"><strong>Demo application of <code>roster dev</code></strong>, behind Roster's SSO gate.</p>",
        title,
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_the_identity_headers_and_not_the_transport() {
        let mut headers = HeaderMap::new();
        headers.insert("x-auth-request-user", "ada@example.com".parse().unwrap());
        headers.insert("content-length", "0".parse().unwrap());
        assert_eq!(
            identity_headers(&headers),
            vec![(
                "x-auth-request-user".to_owned(),
                "ada@example.com".to_owned()
            )]
        );
    }
}
