//! Signed cookies: the pending login request (binds InResponseTo to the
//! browser) and the session set after a successful login, which the SSO
//! gate reads.
//!
//! A cookie's value is `base64url(JSON) "." base64url(HMAC-SHA256)`. The key
//! must be the same on every replica, since the IdP may post the response to
//! a replica other than the one that started the login and any replica may
//! answer a gate check: the server takes it from `--session-key-file` (the
//! chart mounts a shared Secret). Without one, each process generates its own
//! random key, which is right for a single replica and for tests, and logs
//! out everyone at restart.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

/// The cookie holding the pending AuthnRequest of this browser.
pub const REQUEST_COOKIE: &str = "roster_saml_request";
/// The session cookie set after a successful login is this prefix, then
/// `.{namespace}.{policy}`: one per policy, so gates of two applications
/// under one cookie domain never overwrite each other's session.
pub const SESSION_COOKIE_PREFIX: &str = "roster_session";

/// The name of the session cookie of `namespace/policy`. Both are DNS
/// names, so the name is a valid cookie token.
pub fn session_cookie(namespace: &str, policy: &str) -> String {
    format!("{SESSION_COOKIE_PREFIX}.{namespace}.{policy}")
}

/// The HMAC-SHA256 key cookies are signed with.
#[derive(Clone)]
pub struct SessionKey(Arc<Vec<u8>>);

static PROCESS: OnceLock<SessionKey> = OnceLock::new();

/// Never prints the key.
impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A key from secret bytes (at least 32 of them).
    pub fn new(secret: &[u8]) -> Result<Self, &'static str> {
        if secret.len() < 32 {
            return Err("a session key needs at least 32 bytes");
        }
        Ok(Self(Arc::new(secret.to_vec())))
    }

    /// 256 random bits.
    pub fn random() -> Self {
        Self(Arc::new(rand::random::<[u8; 32]>().to_vec()))
    }

    /// One random key for the life of the process: what a router uses when
    /// none is configured.
    pub fn process() -> Self {
        PROCESS.get_or_init(Self::random).clone()
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// A signed token carrying `claims`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{tag}")
    }

    /// The claims of a token signed with this key (tag compared in constant
    /// time), or `None`.
    pub fn open<T: DeserializeOwned>(&self, token: &str) -> Option<T> {
        serde_json::from_slice(&self.verified(token)?).ok()
    }

    /// The body of a token signed with this key, decoded but not parsed.
    fn verified(&self, token: &str) -> Option<Vec<u8>> {
        let (body, tag) = token.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).ok()?;
        URL_SAFE_NO_PAD.decode(body).ok()
    }
}

/// A login this browser started: the AuthnRequest ID its response must
/// answer, the opaque RelayState sent with it, and where to go afterwards.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingRequest {
    pub typ: String,
    pub namespace: String,
    pub policy: String,
    pub id: String,
    pub relay: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    pub exp: i64,
}

/// A signed-in user. The gate trusts nothing else in it: each check looks
/// the User up by name and compares its uid, state and revocation time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub typ: String,
    pub namespace: String,
    pub policy: String,
    /// Name of the User object.
    pub user: String,
    /// The User's uid: a User deleted and created again under the same name
    /// is another person's account.
    pub uid: String,
    pub subject: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Why a session cookie does not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is not signed with this key (tampered, or another key)")]
    BadSignature,
    #[error("the session cookie has expired")]
    Expired,
    #[error("the cookie is not a session")]
    NotASession,
}

pub const REQUEST_TYPE: &str = "saml-request";
pub const SESSION_TYPE: &str = "session";

impl PendingRequest {
    /// The request in `token`, if signed by `key`, unexpired at `now`, and
    /// for this policy.
    pub fn open(
        key: &SessionKey,
        token: &str,
        namespace: &str,
        policy: &str,
        now: i64,
    ) -> Option<Self> {
        let request: Self = key.open(token)?;
        (request.typ == REQUEST_TYPE
            && request.namespace == namespace
            && request.policy == policy
            && now < request.exp)
            .then_some(request)
    }
}

impl Session {
    /// The session in `token`, if signed by `key` and unexpired at `now`.
    pub fn open(key: &SessionKey, token: &str, now: i64) -> Option<Self> {
        Self::verify(key, token, now).ok()
    }

    /// As [`Session::open`], saying why not.
    pub fn verify(key: &SessionKey, token: &str, now: i64) -> Result<Self, SessionError> {
        // A token that is signed but does not parse as a session is some
        // other signed cookie (a login request).
        let body = key.verified(token).ok_or(SessionError::BadSignature)?;
        let session: Self = serde_json::from_slice(&body).map_err(|_| SessionError::NotASession)?;
        if session.typ != SESSION_TYPE {
            return Err(SessionError::NotASession);
        }
        if now >= session.exp {
            return Err(SessionError::Expired);
        }
        Ok(session)
    }
}

/// How a cookie may travel cross-site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// Sent on the IdP's cross-site POST to the ACS (the request cookie
    /// must be, or the response could not be matched to the browser).
    None,
    /// Sent on top-level navigations only.
    Lax,
}

/// A `Set-Cookie` value: always Secure and HttpOnly.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
    same_site: SameSite,
) -> String {
    set_cookie_for(name, value, None, path, max_age_secs, same_site)
}

/// As [`set_cookie`], for `domain` and the hosts under it when given.
pub fn set_cookie_for(
    name: &str,
    value: &str,
    domain: Option<&str>,
    path: &str,
    max_age_secs: i64,
    same_site: SameSite,
) -> String {
    let same_site = match same_site {
        SameSite::None => "None",
        SameSite::Lax => "Lax",
    };
    let domain = domain.map(|d| format!("; Domain={d}")).unwrap_or_default();
    format!(
        "{name}={value}{domain}; Path={path}; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite={same_site}"
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(exp: i64) -> PendingRequest {
        PendingRequest {
            typ: REQUEST_TYPE.into(),
            namespace: "team".into(),
            policy: "crm".into(),
            id: "_abc".into(),
            relay: "r".into(),
            redirect: None,
            exp,
        }
    }

    #[test]
    fn a_signed_request_opens_only_with_its_key_for_its_policy_before_expiry() {
        let key = SessionKey::random();
        let token = key.sign(&pending(100));
        assert_eq!(
            PendingRequest::open(&key, &token, "team", "crm", 99),
            Some(pending(100))
        );
        assert_eq!(PendingRequest::open(&key, &token, "team", "crm", 100), None);
        assert_eq!(PendingRequest::open(&key, &token, "team", "wiki", 99), None);
        assert_eq!(
            PendingRequest::open(&SessionKey::random(), &token, "team", "crm", 99),
            None
        );
    }

    #[test]
    fn a_tampered_token_does_not_open() {
        let key = SessionKey::random();
        let token = key.sign(&pending(100));
        let (body, tag) = token.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&pending(i64::MAX)).unwrap());
        assert_eq!(
            PendingRequest::open(&key, &format!("{other}.{tag}"), "team", "crm", 0),
            None
        );
        assert_eq!(PendingRequest::open(&key, body, "team", "crm", 0), None);
    }

    #[test]
    fn a_request_token_is_not_a_session() {
        let key = SessionKey::random();
        let token = key.sign(&pending(100));
        assert_eq!(Session::open(&key, &token, 0), None);
        assert_eq!(
            Session::verify(&key, &token, 0),
            Err(SessionError::NotASession)
        );
    }

    #[test]
    fn a_session_says_why_it_does_not_open() {
        let key = SessionKey::random();
        let session = Session {
            typ: SESSION_TYPE.into(),
            namespace: "team".into(),
            policy: "crm".into(),
            user: "u".into(),
            uid: "uid".into(),
            subject: "s".into(),
            iat: 10,
            exp: 100,
        };
        let token = key.sign(&session);
        assert_eq!(Session::verify(&key, &token, 99), Ok(session));
        assert_eq!(
            Session::verify(&key, &token, 100),
            Err(SessionError::Expired)
        );
        assert_eq!(
            Session::verify(&SessionKey::random(), &token, 0),
            Err(SessionError::BadSignature)
        );
        assert_eq!(
            Session::verify(&key, "garbage", 0),
            Err(SessionError::BadSignature)
        );
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
    }

    #[test]
    fn cookies_are_secure_http_only_and_scoped() {
        let c = set_cookie("n", "v", "/saml/a/b", 600, SameSite::None);
        assert_eq!(
            c,
            "n=v; Path=/saml/a/b; Max-Age=600; HttpOnly; Secure; SameSite=None"
        );
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, "a=1; n=v.w; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, "n"), Some("v.w"));
        assert_eq!(
            set_cookie_for("n", "", Some("example.com"), "/", 0, SameSite::Lax),
            "n=; Domain=example.com; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(session_cookie("team", "crm"), "roster_session.team.crm");
        assert_eq!(cookie(&headers, "x"), None);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(SessionKey::new(&[0; 31]).is_err());
        assert!(SessionKey::new(&[0; 32]).is_ok());
    }
}
