//! The answers of a check in the three conventions ingress controllers
//! speak, and the URL a denied browser came for.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::decide::Denial;
use crate::api::IdentityHeaders;
use crate::directory::views::Person;

/// Who asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// nginx `auth_request` (and ingress-nginx `auth-url`): 200 or 401/403;
    /// nginx itself redirects a 401 to the sign-in URL (`auth-signin`).
    Nginx,
    /// Traefik ForwardAuth: 200, or the answer the browser gets (a redirect
    /// to sign in that returns to `X-Forwarded-Proto/Host/Uri`).
    Traefik,
    /// Envoy `ext_authz` HTTP service: the original path follows the check
    /// path, the original host is the Host header; a denial is passed to
    /// the browser as Traefik's is.
    Envoy,
}

/// 200 with every identity header (empty where the user has no value, so a
/// proxy copying them overwrites what a client sent under those names).
pub fn allowed(
    names: &IdentityHeaders,
    id: &str,
    person: &Person,
    groups: &[Arc<str>],
) -> Response {
    let groups = groups.join(",");
    let values = [
        &person.user_name,
        person.email.as_deref().unwrap_or_default(),
        person.display_name.as_deref().unwrap_or_default(),
        groups.as_str(),
        id,
    ];
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    for (name, value) in names.names().into_iter().zip(values) {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        // UTF-8 passes as obs-text; a value no header can carry (a control
        // character) is sent empty rather than dropped.
        let value = HeaderValue::from_bytes(value.as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""));
        headers.insert(name, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The answer to a denied check. `signin` is where a browser goes to sign
/// in (already carrying the return URL), when one could be built.
pub fn denied(
    convention: Convention,
    denial: Denial,
    method: &Method,
    signin: Option<String>,
) -> Response {
    let status = if denial.signs_in_again() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let navigation = matches!(*method, Method::GET | Method::HEAD);
    let redirect = match convention {
        Convention::Nginx => None,
        Convention::Traefik | Convention::Envoy => signin
            .filter(|_| navigation && denial.signs_in_again())
            .and_then(|to| HeaderValue::from_str(&to).ok()),
    };
    let mut response = match redirect {
        Some(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        None if status == StatusCode::FORBIDDEN && convention != Convention::Nginx => {
            crate::saml::page::page(
                StatusCode::FORBIDDEN,
                "No access",
                "You are signed in, but your account may not use this application. Ask your administrator.",
            )
        }
        None => status.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The URL the browser asked for, from the headers the proxy forwards
/// (`X-Forwarded-Proto/Host/Uri` for Traefik; Envoy's Host header and the
/// path after the check path, `envoy_path`). `None` when they don't make
/// an http(s) URL.
pub fn original_url(
    convention: Convention,
    headers: &HeaderMap,
    envoy_path: Option<&str>,
) -> Option<String> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (proto, host, uri) = match convention {
        Convention::Nginx => return None,
        Convention::Traefik => (
            get("x-forwarded-proto")?,
            get("x-forwarded-host")?,
            get("x-forwarded-uri").unwrap_or("/"),
        ),
        Convention::Envoy => (
            get("x-forwarded-proto").unwrap_or("https"),
            get(header::HOST.as_str())?,
            envoy_path.unwrap_or("/"),
        ),
    };
    let host_chars = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
    if !matches!(proto, "http" | "https")
        || host.is_empty()
        || !host.chars().all(host_chars)
        || !uri.starts_with('/')
        || uri.starts_with("//")
    {
        return None;
    }
    let url = Url::parse(&format!("{proto}://{host}{uri}")).ok()?;
    url.host_str().is_some().then(|| url.to_string())
}

/// The sign-in URL of a policy on Roster at `origin`, returning to `rd`.
pub fn signin_url(origin: &str, namespace: &str, policy: &str, rd: Option<&str>) -> String {
    let base = format!(
        "{}/gate/{namespace}/{policy}/signin",
        origin.trim_end_matches('/')
    );
    match rd {
        Some(rd) => {
            let mut url = Url::parse(&base).expect("the origin is a URL");
            url.query_pairs_mut().append_pair("rd", rd);
            url.to_string()
        }
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saml::session::SessionError;

    fn person() -> Person {
        Person {
            policy: "crm".into(),
            uid: "uid".into(),
            user_name: "zoë@example.com".into(),
            display_name: Some("Zoë".into()),
            email: None,
            active: true,
            sessions_not_before: None,
            subject: None,
        }
    }

    #[test]
    fn an_allowed_check_sends_every_identity_header_even_empty_ones() {
        let groups: Vec<Arc<str>> = vec![Arc::from("Admins"), Arc::from("Dev")];
        let response = allowed(&IdentityHeaders::default(), "u-1", &person(), &groups);
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(
            h["x-auth-request-user"].as_bytes(),
            "zoë@example.com".as_bytes()
        );
        assert_eq!(h["x-auth-request-email"], "");
        assert_eq!(h["x-auth-request-name"].as_bytes(), "Zoë".as_bytes());
        assert_eq!(h["x-auth-request-groups"], "Admins,Dev");
        assert_eq!(h["x-auth-request-user-id"], "u-1");
        assert_eq!(h["cache-control"], "no-store");
    }

    #[test]
    fn nginx_gets_401_or_403_and_never_a_redirect() {
        let r = denied(
            Convention::Nginx,
            Denial::NoSession,
            &Method::GET,
            Some("https://r/x".into()),
        );
        assert_eq!(r.status(), 401);
        let r = denied(Convention::Nginx, Denial::Inactive, &Method::GET, None);
        assert_eq!(r.status(), 403);
    }

    #[test]
    fn traefik_and_envoy_send_browsers_to_sign_in_but_not_posts_or_refused_users() {
        for convention in [Convention::Traefik, Convention::Envoy] {
            let r = denied(
                convention,
                Denial::BadCookie(SessionError::Expired),
                &Method::GET,
                Some("https://roster/gate/a/b/signin?rd=x".into()),
            );
            assert_eq!(r.status(), 302);
            assert_eq!(
                r.headers()["location"],
                "https://roster/gate/a/b/signin?rd=x"
            );
            let r = denied(
                convention,
                Denial::NoSession,
                &Method::POST,
                Some("https://r".into()),
            );
            assert_eq!(r.status(), 401);
            let r = denied(
                convention,
                Denial::NotAllowed,
                &Method::GET,
                Some("https://r".into()),
            );
            assert_eq!(r.status(), 403);
        }
    }

    #[test]
    fn the_original_url_comes_from_the_forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
        h.insert("x-forwarded-uri", "/a/b?c=d".parse().unwrap());
        assert_eq!(
            original_url(Convention::Traefik, &h, None).as_deref(),
            Some("https://app.example.com/a/b?c=d")
        );
        h.insert("x-forwarded-uri", "//evil.example.com/".parse().unwrap());
        assert_eq!(original_url(Convention::Traefik, &h, None), None);
        h.insert("x-forwarded-uri", "/".parse().unwrap());
        h.insert(
            "x-forwarded-host",
            "evil.example.com/@app.example.com".parse().unwrap(),
        );
        assert_eq!(original_url(Convention::Traefik, &h, None), None);
        h.insert("x-forwarded-host", "app.example.com".parse().unwrap());
        h.insert("x-forwarded-proto", "javascript".parse().unwrap());
        assert_eq!(original_url(Convention::Traefik, &h, None), None);

        let mut h = HeaderMap::new();
        h.insert("host", "app.example.com:8443".parse().unwrap());
        assert_eq!(
            original_url(Convention::Envoy, &h, Some("/x?y=1")).as_deref(),
            Some("https://app.example.com:8443/x?y=1")
        );
    }

    #[test]
    fn the_signin_url_carries_the_return_url_encoded() {
        assert_eq!(
            signin_url(
                "https://roster.example.com/",
                "team",
                "crm",
                Some("https://app/x?a=1&b=2")
            ),
            "https://roster.example.com/gate/team/crm/signin?rd=https%3A%2F%2Fapp%2Fx%3Fa%3D1%26b%3D2"
        );
    }
}
