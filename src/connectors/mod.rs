//! Where accounts are provisioned: one trait, one module per kind of
//! application. The controller decides what to do (pure plans); connectors
//! only carry it out.
//!
//! Kinds: [`scim::ScimConnector`] (Roster as a SCIM 2.0 client),
//! [`webhook::WebhookConnector`] (signed JSON events) and
//! [`postgres::PostgresConnector`] (PostgreSQL roles) and
//! [`argocd::ArgoCdRbacConnector`] (Argo CD's RBAC ConfigMap). The trait uses `async
//! fn`, which can't be a trait object, so the controller holds an
//! [`AnyConnector`].

pub mod argocd;
pub mod postgres;
pub mod scim;
pub mod webhook;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// A user account as Roster wants it in the application.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredUser {
    /// The User's name in Kubernetes (its SCIM id in Roster).
    pub id: String,
    /// The User's uid: stable for the object's life, never reused.
    pub uid: String,
    /// The spec generation this describes.
    pub generation: i64,
    pub user_name: String,
    pub active: bool,
    /// The user as SCIM JSON (core + enterprise extension), without `id` and
    /// `meta`: the body a SCIM application receives, the `user` of a webhook event.
    pub resource: Value,
}

/// A group as Roster wants it in the application (members travel separately).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredGroup {
    pub id: String,
    pub uid: String,
    pub generation: i64,
    pub display_name: String,
    pub external_id: Option<String>,
}

/// An account found in the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteAccount {
    /// The application's id for it.
    pub id: String,
    /// Whether it is enabled, when the application says.
    pub active: Option<bool>,
}

/// Why a call to the application failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The application could not be reached or failed (network, 5xx):
    /// retry with backoff.
    #[error("the application is unavailable: {0}")]
    Unavailable(String),
    /// The application asked to slow down (429): retry after this long.
    #[error("the application is rate limiting; retry after {0:?}")]
    RateLimited(Duration),
    /// The application refused the request as invalid (4xx other than 404,
    /// 409 and 429): retrying the same request won't help.
    #[error("the application refused the request ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// The connector's own configuration is unusable (bad URL, empty secret).
    #[error("the connector is misconfigured: {0}")]
    Misconfigured(String),
}

pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// What every kind of application can do. Calls are idempotent where the
/// application allows: deleting what is already gone succeeds.
#[allow(async_fn_in_trait)]
pub trait Connector {
    /// An existing account with this userName (case-insensitively), so a
    /// sync that crashed after creating it adopts it instead of creating a
    /// duplicate. `None` when there is none or the application can't be
    /// asked (webhooks).
    async fn find_user(&self, user_name: &str) -> Result<Option<RemoteAccount>>;
    /// Creates the account; returns the application's id for it.
    async fn create_user(&self, user: &DesiredUser) -> Result<String>;
    /// Makes the account match `user`, including its active state.
    async fn update_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()>;
    /// Deactivates the account and keeps it.
    async fn disable_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()>;
    /// Deletes the account; already gone counts as done.
    async fn delete_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()>;

    /// An existing group with this displayName, to adopt.
    async fn find_group(&self, display_name: &str) -> Result<Option<String>>;
    async fn create_group(&self, group: &DesiredGroup) -> Result<String>;
    async fn update_group(&self, remote_id: &str, group: &DesiredGroup) -> Result<()>;
    /// Deletes the group; already gone counts as done.
    async fn delete_group(&self, remote_id: &str, group: &DesiredGroup) -> Result<()>;
    /// Adds and removes members, given as the application's user ids.
    /// `change_id` identifies this change for idempotency (webhook events).
    async fn change_members(
        &self,
        remote_id: &str,
        group: &DesiredGroup,
        add: &[String],
        remove: &[String],
        change_id: &str,
    ) -> Result<()>;
}

impl ConnectorError {
    /// Whether retrying the same call later may succeed: the application was
    /// down or asked to slow down. Anything else waits for a change.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::RateLimited(_))
    }

    /// How long the application asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(wait) => Some(*wait),
            _ => None,
        }
    }

    /// Whether the application said the account or group does not exist
    /// (404 on an update, a disable or a membership change): the remote id
    /// recorded in status is stale, or the account is already gone.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Rejected { status: 404, .. })
    }
}

/// A connector of any kind, so the controller can hold one without knowing
/// which; every call delegates to the inner connector.
#[derive(Clone, Debug)]
pub enum AnyConnector {
    Scim(scim::ScimConnector),
    Webhook(webhook::WebhookConnector),
    /// Boxed, as the next: their settings are several times the others' size.
    Postgres(Box<postgres::PostgresConnector>),
    ArgoCdRbac(Box<argocd::ArgoCdRbacConnector>),
}

impl From<argocd::ArgoCdRbacConnector> for AnyConnector {
    fn from(connector: argocd::ArgoCdRbacConnector) -> Self {
        Self::ArgoCdRbac(Box::new(connector))
    }
}

impl From<postgres::PostgresConnector> for AnyConnector {
    fn from(connector: postgres::PostgresConnector) -> Self {
        Self::Postgres(Box::new(connector))
    }
}

impl From<scim::ScimConnector> for AnyConnector {
    fn from(connector: scim::ScimConnector) -> Self {
        Self::Scim(connector)
    }
}

impl From<webhook::WebhookConnector> for AnyConnector {
    fn from(connector: webhook::WebhookConnector) -> Self {
        Self::Webhook(connector)
    }
}

impl AnyConnector {
    fn kind(&self) -> &'static str {
        match self {
            Self::Scim(_) => "scim",
            Self::Webhook(_) => "webhook",
            Self::Postgres(_) => "postgres",
            Self::ArgoCdRbac(_) => "argocd-rbac",
        }
    }

    /// Counts the call by connector, operation and outcome.
    fn observe<T>(&self, operation: &str, result: &Result<T>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(ConnectorError::Unavailable(_)) => "unavailable",
            Err(ConnectorError::RateLimited(_)) => "rate_limited",
            Err(ConnectorError::Rejected { .. }) => "rejected",
            Err(ConnectorError::Misconfigured(_)) => "misconfigured",
        };
        crate::metrics::METRICS
            .downstream_calls
            .get_or_create(&crate::metrics::DownstreamCall {
                connector: self.kind().to_owned(),
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Calls `$method` on the inner connector and counts its outcome.
macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {{
        use tracing::Instrument;
        let span = tracing::info_span!(
            "downstream",
            connector = $self.kind(),
            operation = stringify!($method)
        );
        let result = async {
            match $self {
                Self::Scim(c) => c.$method($($arg),*).await,
                Self::Webhook(c) => c.$method($($arg),*).await,
                Self::Postgres(c) => c.$method($($arg),*).await,
                Self::ArgoCdRbac(c) => c.$method($($arg),*).await,
            }
        }
        .instrument(span)
        .await;
        $self.observe(stringify!($method), &result);
        result
    }};
}

impl Connector for AnyConnector {
    async fn find_user(&self, user_name: &str) -> Result<Option<RemoteAccount>> {
        delegate!(self.find_user(user_name))
    }

    async fn create_user(&self, user: &DesiredUser) -> Result<String> {
        delegate!(self.create_user(user))
    }

    async fn update_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()> {
        delegate!(self.update_user(remote_id, user))
    }

    async fn disable_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()> {
        delegate!(self.disable_user(remote_id, user))
    }

    async fn delete_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()> {
        delegate!(self.delete_user(remote_id, user))
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>> {
        delegate!(self.find_group(display_name))
    }

    async fn create_group(&self, group: &DesiredGroup) -> Result<String> {
        delegate!(self.create_group(group))
    }

    async fn update_group(&self, remote_id: &str, group: &DesiredGroup) -> Result<()> {
        delegate!(self.update_group(remote_id, group))
    }

    async fn delete_group(&self, remote_id: &str, group: &DesiredGroup) -> Result<()> {
        delegate!(self.delete_group(remote_id, group))
    }

    async fn change_members(
        &self,
        remote_id: &str,
        group: &DesiredGroup,
        add: &[String],
        remove: &[String],
        change_id: &str,
    ) -> Result<()> {
        delegate!(self.change_members(remote_id, group, add, remove, change_id))
    }
}

/// How long one HTTP request to an application may take, connect to last byte.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The wait when a 429 names none, or one we can't read.
pub(crate) const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The longest wait we honour: a misconfigured application saying "come
/// back tomorrow" should not park an object for a day.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// An HTTP client for talking to applications. Redirects are not followed:
/// a POST turned into a GET by a 302 would silently lose a create, and a
/// redirect is a configuration mistake to report, not to paper over.
pub(crate) fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConnectorError::Misconfigured(format!("building the HTTP client: {e}")))
}

/// The wait a `Retry-After` header asks for (RFC 9110 §10.2.3): delay
/// seconds, or an HTTP-date (read as RFC 2822, which IMF-fixdate is a case
/// of). Missing or unreadable → [`DEFAULT_RETRY_AFTER`]; never less than that,
/// so a `0` or a date in the past can't make the controller spin.
pub(crate) fn retry_after_from(header: Option<&str>, now: Timestamp) -> Duration {
    let Some(value) = header.map(str::trim) else {
        return DEFAULT_RETRY_AFTER;
    };
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else if let Ok(at) =
        k8s_openapi::jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value)
    {
        let seconds = at.as_second().saturating_sub(now.as_second());
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    } else {
        DEFAULT_RETRY_AFTER
    };
    wait.clamp(DEFAULT_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// A reqwest error as text, with its causes ("connection refused") but
/// without the URL, which may carry credentials (webhook URLs often do).
pub(crate) fn describe_transport_error(error: reqwest::Error) -> String {
    describe_reqwest_error(error, REQUEST_TIMEOUT)
}

/// A reqwest error as text (see [`describe_transport_error`]), a timeout
/// named with the `timeout` the client had.
pub(crate) fn describe_reqwest_error(error: reqwest::Error, timeout: Duration) -> String {
    let error = error.without_url();
    let mut text = if error.is_timeout() {
        format!("timed out after {}s", timeout.as_secs())
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A URL fit for logs and error messages: scheme, host and port only. Paths
/// and queries of application URLs often hold secrets (webhook tokens).
pub(crate) fn redacted_origin(url: &reqwest::Url) -> String {
    url.origin().ascii_serialization()
}

/// At most `max` characters of an application's answer, for an error message.
pub(crate) fn excerpt(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn retry_after_reads_delay_seconds() {
        assert_eq!(retry_after_from(Some("7"), now()), Duration::from_secs(7));
    }

    #[test]
    fn retry_after_reads_an_http_date() {
        assert_eq!(
            retry_after_from(Some("Thu, 01 Jan 2026 00:00:30 GMT"), now()),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retry_after_defaults_to_one_second_when_missing_unreadable_or_past() {
        for header in [
            None,
            Some("soon"),
            Some("0"),
            Some("-5"),
            Some("Wed, 31 Dec 2025 23:00:00 GMT"),
        ] {
            assert_eq!(
                retry_after_from(header, now()),
                DEFAULT_RETRY_AFTER,
                "{header:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped_at_an_hour() {
        assert_eq!(retry_after_from(Some("86400"), now()), MAX_RETRY_AFTER);
    }

    #[test]
    fn only_unavailable_and_rate_limited_are_transient() {
        assert!(ConnectorError::Unavailable("down".into()).is_transient());
        assert!(ConnectorError::RateLimited(Duration::from_secs(2)).is_transient());
        assert!(
            !ConnectorError::Rejected {
                status: 400,
                detail: "bad".into()
            }
            .is_transient()
        );
        assert!(!ConnectorError::Misconfigured("no url".into()).is_transient());
    }

    #[test]
    fn retry_after_is_only_known_when_rate_limited() {
        assert_eq!(
            ConnectorError::RateLimited(Duration::from_secs(2)).retry_after(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            ConnectorError::Unavailable("down".into()).retry_after(),
            None
        );
    }

    #[test]
    fn a_rejected_404_is_not_found() {
        let gone = ConnectorError::Rejected {
            status: 404,
            detail: "User 'x' not found".into(),
        };
        assert!(gone.is_not_found());
        assert!(!ConnectorError::Unavailable("404".into()).is_not_found());
    }

    #[test]
    fn excerpt_cuts_on_a_character_boundary() {
        assert_eq!(excerpt("  héllo wörld ", 5), "héllo…");
        assert_eq!(excerpt("short", 10), "short");
    }

    #[test]
    fn any_connector_futures_are_send() {
        // kube-runtime runs reconcilers on a multi-threaded runtime.
        fn assert_send<T: Send>(_: &T) {}
        let connector = AnyConnector::from(
            webhook::WebhookConnector::new("http://127.0.0.1:9/hook", b"key").unwrap(),
        );
        let user = DesiredUser {
            id: "alice".into(),
            uid: "u1".into(),
            generation: 1,
            user_name: "alice".into(),
            active: true,
            resource: Value::Null,
        };
        assert_send(&connector.find_user("alice"));
        assert_send(&connector.create_user(&user));
        assert_send(&connector.change_members("g", &group(), &[], &[], "c"));
        let connector =
            AnyConnector::from(scim::ScimConnector::new("http://127.0.0.1:9/", "t").unwrap());
        assert_send(&connector.create_user(&user));
        assert_send(&connector.delete_group("g", &group()));
    }

    fn group() -> DesiredGroup {
        DesiredGroup {
            id: "eng".into(),
            uid: "g1".into(),
            generation: 1,
            display_name: "Eng".into(),
            external_id: None,
        }
    }
}
