//! Where clients reach this server: `--public-url`, passed as a value to
//! whatever builds URLs (SCIM `meta.location`, SAML endpoints, status URLs).

use std::sync::Arc;

use http::HeaderMap;

/// The externally visible URL of Roster (e.g. `https://roster.example.com`),
/// if configured; without a trailing slash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublicUrl(Option<Arc<str>>);

impl PublicUrl {
    pub fn new(configured: Option<&str>) -> Self {
        Self(configured.map(|url| Arc::from(url.trim_end_matches('/'))))
    }

    /// The configured URL. SAML is served only with one: an ACS URL or
    /// audience taken from a request's Host header would let an assertion
    /// issued to another SP trusting the same IdP key be accepted here.
    pub fn configured(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The scheme and host clients reach this server at: the configured URL,
    /// else the request's Host (and X-Forwarded-Proto from a proxy). Only for
    /// URLs Roster returns to the same client (SCIM `meta.location`).
    pub fn origin(&self, headers: &HeaderMap) -> String {
        match self.configured() {
            Some(url) => url.to_owned(),
            None => {
                let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
                let host = header("host").unwrap_or("localhost");
                let scheme = header("x-forwarded-proto").unwrap_or("http");
                format!("{scheme}://{host}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_url_wins_over_request_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "evil.example".parse().unwrap());
        let url = PublicUrl::new(Some("https://roster.example.com/"));
        assert_eq!(url.configured(), Some("https://roster.example.com"));
        assert_eq!(url.origin(&headers), "https://roster.example.com");
    }

    #[test]
    fn without_one_the_origin_comes_from_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "roster:8080".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let url = PublicUrl::default();
        assert_eq!(url.configured(), None);
        assert_eq!(url.origin(&headers), "https://roster:8080");
        assert_eq!(url.origin(&HeaderMap::new()), "http://localhost");
    }
}
