//! Signed JSON events POSTed to an application's URL.
//!
//! Delivery is at least once: a call retries a few times with backoff, then
//! reports the application unavailable so the controller requeues, and the
//! redelivery carries the same event id. Receivers deduplicate on that id.
//!
//! Each request is signed like Stripe's and GitHub's webhooks: HMAC-SHA256
//! over `<timestamp>.<body>`, so a receiver can check both who sent it and
//! that it is fresh (a captured request can't be replayed later). The
//! signature header names its scheme (`v1=`) and may list several, so keys
//! and schemes can be rotated without a flag day.
//!
//! Or, per policy, as the Standard Webhooks specification says
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>` over
//! `<id>.<timestamp>.<body>`), so a receiver verifies with a maintained
//! library instead of code of its own.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use k8s_openapi::jiff::Timestamp;
use reqwest::Url;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::SignatureScheme;

use super::{
    Connector, ConnectorError, DesiredGroup, DesiredUser, RemoteAccount, Result,
    describe_transport_error, excerpt, http_client, redacted_origin, retry_after_from,
};

pub const EVENT_ID_HEADER: &str = "Roster-Event-Id";
pub const TIMESTAMP_HEADER: &str = "Roster-Timestamp";
pub const SIGNATURE_HEADER: &str = "Roster-Signature";

/// The Standard Webhooks headers.
pub const STANDARD_ID_HEADER: &str = "webhook-id";
pub const STANDARD_TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE_HEADER: &str = "webhook-signature";
/// How a Standard Webhooks secret starts; the base64 key follows.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// The signature scheme: HMAC-SHA256 over `<timestamp>.<body>`, hex.
pub const SIGNATURE_SCHEME: &str = "v1";

/// A sensible receiver tolerance for `Roster-Timestamp`: the retries of one
/// call span under a second, so five minutes only has to absorb clock skew.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// What happened, as the event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    UserCreated,
    UserUpdated,
    UserDeactivated,
    UserDeleted,
    GroupCreated,
    GroupUpdated,
    GroupDeleted,
    GroupMembersAdded,
    GroupMembersRemoved,
}

impl EventType {
    pub const ALL: [EventType; 9] = [
        Self::UserCreated,
        Self::UserUpdated,
        Self::UserDeactivated,
        Self::UserDeleted,
        Self::GroupCreated,
        Self::GroupUpdated,
        Self::GroupDeleted,
        Self::GroupMembersAdded,
        Self::GroupMembersRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::UserDeactivated => "user.deactivated",
            Self::UserDeleted => "user.deleted",
            Self::GroupCreated => "group.created",
            Self::GroupUpdated => "group.updated",
            Self::GroupDeleted => "group.deleted",
            Self::GroupMembersAdded => "group.members_added",
            Self::GroupMembersRemoved => "group.members_removed",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event, its body serialized once: the exact bytes that are signed and
/// sent, identical on every attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The idempotency key, also sent as `Roster-Event-Id`.
    pub id: String,
    pub event_type: EventType,
    pub body: Vec<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<Value>>,
}

/// The idempotency key of a user or group event. The object's uid (never
/// reused) and spec generation name one logical change, so every redelivery
/// of it — after a retry, a requeue or a restart — carries the same key, and
/// a later change gets a new one.
pub fn object_event_id(uid: &str, generation: i64, event_type: EventType) -> String {
    format!("{uid}:{generation}:{event_type}")
}

/// The idempotency key of a membership event: the controller names each
/// membership change (`change_id`) and replays the same one until it lands.
pub fn members_event_id(uid: &str, change_id: &str, event_type: EventType) -> String {
    let direction = match event_type {
        EventType::GroupMembersRemoved => "removed",
        _ => "added",
    };
    format!("{uid}:{change_id}:{direction}")
}

/// `user.*`: the user as SCIM JSON plus Roster's `id` for it, with
/// `userName` and `active` as the User says (`active: false` when deactivated).
pub fn user_event(event_type: EventType, user: &DesiredUser, occurred_at: Timestamp) -> Event {
    let mut resource = match &user.resource {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    resource.remove("meta");
    resource.insert("id".into(), Value::String(user.id.clone()));
    resource.insert("userName".into(), Value::String(user.user_name.clone()));
    let active = user.active && event_type != EventType::UserDeactivated;
    resource.insert("active".into(), Value::Bool(active));
    let id = object_event_id(&user.uid, user.generation, event_type);
    let body = EventBody {
        id: &id,
        event_type: event_type.as_str(),
        occurred_at: rfc3339(occurred_at),
        user: Some(Value::Object(resource)),
        group: None,
        members: None,
    };
    Event {
        body: serde_json::to_vec(&body).expect("JSON values serialize"),
        id,
        event_type,
    }
}

/// `group.created|updated|deleted`.
pub fn group_event(event_type: EventType, group: &DesiredGroup, occurred_at: Timestamp) -> Event {
    let id = object_event_id(&group.uid, group.generation, event_type);
    let body = EventBody {
        id: &id,
        event_type: event_type.as_str(),
        occurred_at: rfc3339(occurred_at),
        user: None,
        group: Some(group_json(group)),
        members: None,
    };
    Event {
        body: serde_json::to_vec(&body).expect("JSON values serialize"),
        id,
        event_type,
    }
}

/// `group.members_added|removed`: the group and the members (user ids) that
/// changed, as `{"value": id}` like SCIM's members so fields can be added later.
pub fn members_event(
    event_type: EventType,
    group: &DesiredGroup,
    members: &[String],
    change_id: &str,
    occurred_at: Timestamp,
) -> Event {
    let id = members_event_id(&group.uid, change_id, event_type);
    let body = EventBody {
        id: &id,
        event_type: event_type.as_str(),
        occurred_at: rfc3339(occurred_at),
        user: None,
        group: Some(group_json(group)),
        members: Some(members.iter().map(|m| json!({"value": m})).collect()),
    };
    Event {
        body: serde_json::to_vec(&body).expect("JSON values serialize"),
        id,
        event_type,
    }
}

fn group_json(group: &DesiredGroup) -> Value {
    let mut value = json!({"id": group.id, "displayName": group.display_name});
    if let Some(external_id) = &group.external_id {
        value["externalId"] = Value::String(external_id.clone());
    }
    value
}

/// RFC 3339 in UTC, to the millisecond.
fn rfc3339(at: Timestamp) -> String {
    Timestamp::from_millisecond(at.as_millisecond())
        .unwrap_or(at)
        .to_string()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The `Roster-Signature` value for a body sent at `timestamp` (unix
/// seconds): `v1=` and the hex HMAC-SHA256 of `<timestamp>.<body>`.
pub fn sign(key: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(key, &[timestamp.to_string().as_bytes(), b".", body]);
    let mut header = String::with_capacity(3 + 64);
    header.push_str(SIGNATURE_SCHEME);
    header.push('=');
    for byte in digest {
        header.push_str(&format!("{byte:02x}"));
    }
    header
}

/// The Standard Webhooks `webhook-signature` value for event `id` sent at
/// `timestamp`: `v1,` and the base64 HMAC-SHA256 of `<id>.<timestamp>.<body>`.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine;
    let digest = mac(
        key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The key of a Standard Webhooks secret (`whsec_` and base64, the prefix
/// optional as in the specification's libraries).
pub fn standard_key(secret: &[u8]) -> Result<Vec<u8>> {
    use base64::Engine;
    let text = std::str::from_utf8(secret)
        .map_err(|_| standard_secret_error())?
        .trim();
    let encoded = text.strip_prefix(STANDARD_SECRET_PREFIX).unwrap_or(text);
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
        .map_err(|_| standard_secret_error())?;
    if key.is_empty() {
        return Err(standard_secret_error());
    }
    Ok(key)
}

fn standard_secret_error() -> ConnectorError {
    ConnectorError::Misconfigured(
        "the webhook signing secret is not a Standard Webhooks secret (whsec_ and a base64 key)"
            .into(),
    )
}

/// Whether `signature_header` (one or more comma-separated `v1=<hex>`) signs
/// `body` at `timestamp` with `key`, and `timestamp` is within
/// `tolerance_secs` of `now` (either way: clocks skew). The comparison is
/// constant-time so the answer's timing reveals nothing of the expected MAC.
pub fn verify(
    key: &[u8],
    timestamp: i64,
    body: &[u8],
    signature_header: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let Ok(tolerance) = u64::try_from(tolerance_secs) else {
        return false;
    };
    if now.abs_diff(timestamp) > tolerance {
        return false;
    }
    let expected = mac(key, &[timestamp.to_string().as_bytes(), b".", body]);
    signature_header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(decode_hex)
        .any(|candidate| bool::from(candidate.as_slice().ct_eq(&expected)))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// How one call retries: `attempts` in all, waiting `initial_backoff`,
/// doubled each time, with jitter so many objects failing together don't
/// retry in lockstep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            initial_backoff: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `n` (1-based), for `jitter` in [0, 1]:
    /// half the doubled backoff plus up to half again ("equal jitter").
    pub fn backoff(&self, n: u32, jitter: f64) -> Duration {
        let full = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)));
        full / 2 + (full / 2).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// What one delivery attempt's answer means.
#[derive(Debug)]
enum Attempt {
    Delivered,
    /// Worth retrying: the receiver is down, timed out or not ready.
    Retry(String),
    /// Don't retry within this call.
    Stop(ConnectorError),
}

/// 2xx delivered; 429 rate limited; 5xx, 408 (timeout), 409 (a concurrent
/// delivery of the same event in progress) and 425 (too early) retried;
/// other answers (4xx, redirects) rejected: the same bytes would be refused again.
fn judge(status: StatusCode, retry_after: Option<&str>, body: &[u8], now: Timestamp) -> Attempt {
    let code = status.as_u16();
    let said = || {
        let text = String::from_utf8_lossy(body);
        let text = excerpt(&text, 200);
        if text.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {text}")
        }
    };
    match code {
        200..=299 => Attempt::Delivered,
        429 => Attempt::Stop(ConnectorError::RateLimited(retry_after_from(
            retry_after,
            now,
        ))),
        408 | 409 | 425 | 500..=599 => Attempt::Retry(format!("the receiver answered {}", said())),
        _ => Attempt::Stop(ConnectorError::Rejected {
            status: code,
            detail: format!("the receiver refused the event: {}", said()),
        }),
    }
}

/// Posts signed events to one URL.
#[derive(Clone)]
pub struct WebhookConnector {
    url: Url,
    key: Arc<[u8]>,
    scheme: SignatureScheme,
    http: reqwest::Client,
    retry: RetryPolicy,
}

impl fmt::Debug for WebhookConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConnector")
            .field("url", &redacted_origin(&self.url))
            .field("key", &"<redacted>")
            .field("scheme", &self.scheme)
            .field("retry", &self.retry)
            .finish()
    }
}

impl WebhookConnector {
    /// Events go to `url`, signed with `key`. Only the URL's origin is ever
    /// logged: webhook URLs often carry a secret in the path.
    pub fn new(url: &str, key: &[u8]) -> Result<Self> {
        let url = Url::parse(url.trim()).map_err(|e| {
            ConnectorError::Misconfigured(format!("the webhook URL is not a URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConnectorError::Misconfigured(format!(
                "the webhook URL must be http or https, not {:?}",
                url.scheme()
            )));
        }
        if key.is_empty() {
            return Err(ConnectorError::Misconfigured(
                "the webhook signing key is empty".into(),
            ));
        }
        Ok(Self {
            url,
            key: Arc::from(key),
            scheme: SignatureScheme::Roster,
            http: http_client()?,
            retry: RetryPolicy::default(),
        })
    }

    /// Events signed per the Standard Webhooks specification, with the key
    /// of `secret` (`whsec_<base64>`).
    pub fn standard(url: &str, secret: &[u8]) -> Result<Self> {
        let key = standard_key(secret)?;
        let mut connector = Self::new(url, &key)?;
        connector.scheme = SignatureScheme::StandardWebhooks;
        Ok(connector)
    }

    /// Replaces the retry policy (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Delivers `event`, retrying within the call; Unavailable when every
    /// attempt failed (the caller requeues and redelivers the same id).
    pub async fn deliver(&self, event: &Event) -> Result<()> {
        let event_id = HeaderValue::from_str(&event.id).map_err(|_| {
            ConnectorError::Misconfigured(format!(
                "the event id {:?} is not a valid HTTP header value",
                event.id
            ))
        })?;
        let attempts = self.retry.attempts.max(1);
        let mut last_failure = String::new();
        for attempt in 1..=attempts {
            if attempt > 1 {
                tokio::time::sleep(self.retry.backoff(attempt - 1, rand::random())).await;
            }
            // Signed afresh each attempt: the timestamp is when it was sent,
            // so a receiver's freshness check holds across retries.
            let timestamp = Timestamp::now().as_second();
            let started = Instant::now();
            let request = self
                .http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/json");
            let request = match self.scheme {
                SignatureScheme::Roster => request
                    .header(EVENT_ID_HEADER, event_id.clone())
                    .header(TIMESTAMP_HEADER, timestamp)
                    .header(SIGNATURE_HEADER, sign(&self.key, timestamp, &event.body)),
                SignatureScheme::StandardWebhooks => request
                    .header(STANDARD_ID_HEADER, event_id.clone())
                    .header(STANDARD_TIMESTAMP_HEADER, timestamp)
                    .header(
                        STANDARD_SIGNATURE_HEADER,
                        standard_signature(&self.key, &event.id, timestamp, &event.body),
                    ),
            };
            let sent = request.body(event.body.clone()).send().await;
            let verdict = match sent {
                Err(error) => Attempt::Retry(describe_transport_error(error)),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    // The body only explains a failure; losing it loses nothing.
                    let body = response.bytes().await.unwrap_or_default();
                    judge(status, retry_after.as_deref(), &body, Timestamp::now())
                }
            };
            tracing::debug!(
                event = %event.id,
                r#type = %event.event_type,
                attempt,
                elapsed_ms = started.elapsed().as_millis() as u64,
                outcome = ?verdict,
                "webhook delivery"
            );
            match verdict {
                Attempt::Delivered => return Ok(()),
                Attempt::Stop(error) => return Err(error),
                Attempt::Retry(why) => last_failure = why,
            }
        }
        Err(ConnectorError::Unavailable(format!(
            "{} event {} to {} not delivered after {attempts} attempts: {last_failure}",
            event.event_type,
            event.id,
            redacted_origin(&self.url)
        )))
    }
}

impl Connector for WebhookConnector {
    /// A webhook can't be asked what it holds.
    async fn find_user(&self, _user_name: &str) -> Result<Option<RemoteAccount>> {
        Ok(None)
    }

    /// Webhooks have no remote ids: the User's id stands in for one.
    async fn create_user(&self, user: &DesiredUser) -> Result<String> {
        self.deliver(&user_event(EventType::UserCreated, user, Timestamp::now()))
            .await?;
        Ok(user.id.clone())
    }

    async fn update_user(&self, _remote_id: &str, user: &DesiredUser) -> Result<()> {
        self.deliver(&user_event(EventType::UserUpdated, user, Timestamp::now()))
            .await
    }

    async fn disable_user(&self, _remote_id: &str, user: &DesiredUser) -> Result<()> {
        self.deliver(&user_event(
            EventType::UserDeactivated,
            user,
            Timestamp::now(),
        ))
        .await
    }

    async fn delete_user(&self, _remote_id: &str, user: &DesiredUser) -> Result<()> {
        self.deliver(&user_event(EventType::UserDeleted, user, Timestamp::now()))
            .await
    }

    async fn find_group(&self, _display_name: &str) -> Result<Option<String>> {
        Ok(None)
    }

    async fn create_group(&self, group: &DesiredGroup) -> Result<String> {
        self.deliver(&group_event(
            EventType::GroupCreated,
            group,
            Timestamp::now(),
        ))
        .await?;
        Ok(group.id.clone())
    }

    async fn update_group(&self, _remote_id: &str, group: &DesiredGroup) -> Result<()> {
        self.deliver(&group_event(
            EventType::GroupUpdated,
            group,
            Timestamp::now(),
        ))
        .await
    }

    async fn delete_group(&self, _remote_id: &str, group: &DesiredGroup) -> Result<()> {
        self.deliver(&group_event(
            EventType::GroupDeleted,
            group,
            Timestamp::now(),
        ))
        .await
    }

    /// One event for the additions, then one for the removals; each has its
    /// own key, so if the second fails the redelivered first is a duplicate
    /// the receiver drops.
    async fn change_members(
        &self,
        _remote_id: &str,
        group: &DesiredGroup,
        add: &[String],
        remove: &[String],
        change_id: &str,
    ) -> Result<()> {
        for (event_type, members) in [
            (EventType::GroupMembersAdded, add),
            (EventType::GroupMembersRemoved, remove),
        ] {
            if !members.is_empty() {
                let event = members_event(event_type, group, members, change_id, Timestamp::now());
                self.deliver(&event).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"whsec_test";

    fn user() -> DesiredUser {
        DesiredUser {
            id: "alice".into(),
            uid: "6f1c2a".into(),
            generation: 4,
            user_name: "alice@example.com".into(),
            active: true,
            resource: json!({
                "userName": "alice@example.com",
                "name": {"givenName": "Alice"},
                "meta": {"resourceType": "User"},
            }),
        }
    }

    fn group() -> DesiredGroup {
        DesiredGroup {
            id: "eng".into(),
            uid: "9a7b".into(),
            generation: 2,
            display_name: "Engineering".into(),
            external_id: Some("ext-eng".into()),
        }
    }

    fn at() -> Timestamp {
        "2026-03-01T12:00:00.123456Z".parse().unwrap()
    }

    fn parsed(event: &Event) -> Value {
        serde_json::from_slice(&event.body).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let digest = mac(b"Jefe", &[b"what do ya want for nothing?"]);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sign_matches_a_fixed_test_vector() {
        // Computed independently: Python's hmac.new(b"whsec_test",
        // b'1700000000.{"id":"evt"}', hashlib.sha256).hexdigest()
        assert_eq!(
            sign(KEY, 1_700_000_000, br#"{"id":"evt"}"#),
            "v1=a94cea056df1fbb92eadafcf2c5cd541dbe0c6ef736e4748202dd53f86694a3e"
        );
    }

    #[test]
    fn a_signature_verifies_within_the_tolerance() {
        let signature = sign(KEY, 1_700_000_000, b"body");
        assert!(verify(
            KEY,
            1_700_000_000,
            b"body",
            &signature,
            1_700_000_000,
            300
        ));
        assert!(verify(
            KEY,
            1_700_000_000,
            b"body",
            &signature,
            1_700_000_300,
            300
        ));
        assert!(
            verify(KEY, 1_700_000_000, b"body", &signature, 1_699_999_800, 300),
            "a sender clock ahead of ours is skew, not staleness"
        );
    }

    #[test]
    fn a_stale_or_future_timestamp_is_refused() {
        let signature = sign(KEY, 1_700_000_000, b"body");
        assert!(!verify(
            KEY,
            1_700_000_000,
            b"body",
            &signature,
            1_700_000_301,
            300
        ));
        assert!(!verify(
            KEY,
            1_700_000_000,
            b"body",
            &signature,
            1_699_999_699,
            300
        ));
        assert!(!verify(
            KEY,
            1_700_000_000,
            b"body",
            &signature,
            1_700_000_000,
            -1
        ));
    }

    #[test]
    fn a_changed_body_key_or_timestamp_is_refused() {
        let signature = sign(KEY, 1_700_000_000, b"body");
        assert!(!verify(
            KEY,
            1_700_000_000,
            b"bodY",
            &signature,
            1_700_000_000,
            300
        ));
        assert!(!verify(
            b"other",
            1_700_000_000,
            b"body",
            &signature,
            1_700_000_000,
            300
        ));
        assert!(!verify(
            KEY,
            1_700_000_001,
            b"body",
            &signature,
            1_700_000_000,
            300
        ));
    }

    #[test]
    fn standard_signatures_match_the_specifications_example() {
        // The example of the Standard Webhooks specification (and its
        // libraries' tests).
        let key = standard_key(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            standard_signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_standard_secret_needs_a_base64_key() {
        assert_eq!(standard_key(b"whsec_a2V5").unwrap(), b"key");
        assert_eq!(standard_key(b"a2V5").unwrap(), b"key", "prefix optional");
        for bad in [&b"whsec_"[..], b"whsec_not base64!", b"\xff"] {
            assert!(
                matches!(standard_key(bad), Err(ConnectorError::Misconfigured(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_signatures_are_refused() {
        for header in ["", "v1=", "v1=zz", "v0=abcd", "a94cea05", "v1=a94c"] {
            assert!(
                !verify(
                    KEY,
                    1_700_000_000,
                    br#"{"id":"evt"}"#,
                    header,
                    1_700_000_000,
                    300
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn any_listed_signature_may_match_for_key_rotation() {
        let signature = sign(KEY, 1_700_000_000, b"body");
        let header = format!("v1={}, {signature}", "00".repeat(32));
        assert!(verify(
            KEY,
            1_700_000_000,
            b"body",
            &header,
            1_700_000_000,
            300
        ));
    }

    #[test]
    fn event_types_have_their_documented_names() {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "user.created",
                "user.updated",
                "user.deactivated",
                "user.deleted",
                "group.created",
                "group.updated",
                "group.deleted",
                "group.members_added",
                "group.members_removed"
            ]
        );
    }

    #[test]
    fn object_event_ids_name_the_uid_generation_and_type() {
        assert_eq!(
            object_event_id("6f1c2a", 4, EventType::UserUpdated),
            "6f1c2a:4:user.updated"
        );
    }

    #[test]
    fn members_event_ids_name_the_uid_change_and_direction() {
        assert_eq!(
            members_event_id("9a7b", "c-17", EventType::GroupMembersAdded),
            "9a7b:c-17:added"
        );
        assert_eq!(
            members_event_id("9a7b", "c-17", EventType::GroupMembersRemoved),
            "9a7b:c-17:removed"
        );
    }

    #[test]
    fn the_same_logical_event_gets_the_same_id_at_any_time() {
        let first = user_event(EventType::UserCreated, &user(), at());
        let later = user_event(
            EventType::UserCreated,
            &user(),
            "2026-03-02T00:00:00Z".parse().unwrap(),
        );
        assert_eq!(first.id, later.id);
        let mut next_generation = user();
        next_generation.generation += 1;
        assert_ne!(
            first.id,
            user_event(EventType::UserCreated, &next_generation, at()).id
        );
    }

    #[test]
    fn a_user_event_carries_the_user_with_roster_id() {
        let event = user_event(EventType::UserCreated, &user(), at());
        assert_eq!(
            parsed(&event),
            json!({
                "id": "6f1c2a:4:user.created",
                "type": "user.created",
                "occurredAt": "2026-03-01T12:00:00.123Z",
                "user": {
                    "id": "alice",
                    "userName": "alice@example.com",
                    "active": true,
                    "name": {"givenName": "Alice"},
                },
            })
        );
    }

    #[test]
    fn the_body_lists_id_type_and_time_first() {
        let event = group_event(EventType::GroupCreated, &group(), at());
        let text = String::from_utf8(event.body).unwrap();
        assert!(
            text.starts_with(
                r#"{"id":"9a7b:2:group.created","type":"group.created","occurredAt":"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_deactivation_says_inactive() {
        let event = user_event(EventType::UserDeactivated, &user(), at());
        assert_eq!(parsed(&event)["user"]["active"], false);
    }

    #[test]
    fn a_group_event_carries_the_group_and_no_members() {
        let event = group_event(EventType::GroupUpdated, &group(), at());
        assert_eq!(
            parsed(&event),
            json!({
                "id": "9a7b:2:group.updated",
                "type": "group.updated",
                "occurredAt": "2026-03-01T12:00:00.123Z",
                "group": {"id": "eng", "displayName": "Engineering", "externalId": "ext-eng"},
            })
        );
    }

    #[test]
    fn a_members_event_lists_the_changed_members() {
        let members = vec!["alice".to_owned(), "bob".to_owned()];
        let event = members_event(
            EventType::GroupMembersRemoved,
            &group(),
            &members,
            "c-17",
            at(),
        );
        let body = parsed(&event);
        assert_eq!(body["id"], "9a7b:c-17:removed");
        assert_eq!(body["type"], "group.members_removed");
        assert_eq!(body["group"]["id"], "eng");
        assert_eq!(
            body["members"],
            json!([{"value": "alice"}, {"value": "bob"}])
        );
    }

    fn judged(status: u16, body: &str) -> Attempt {
        judge(
            StatusCode::from_u16(status).unwrap(),
            None,
            body.as_bytes(),
            at(),
        )
    }

    #[test]
    fn a_2xx_is_delivered() {
        for status in [200, 201, 202, 204] {
            assert!(matches!(judged(status, ""), Attempt::Delivered), "{status}");
        }
    }

    #[test]
    fn server_errors_and_transient_4xx_are_retried() {
        for status in [500, 502, 503, 504, 408, 409, 425] {
            assert!(matches!(judged(status, ""), Attempt::Retry(_)), "{status}");
        }
    }

    #[test]
    fn a_429_stops_and_reports_the_wait() {
        let verdict = judge(StatusCode::TOO_MANY_REQUESTS, Some("30"), b"", at());
        assert!(matches!(
            verdict,
            Attempt::Stop(ConnectorError::RateLimited(d)) if d == Duration::from_secs(30)
        ));
    }

    #[test]
    fn other_client_errors_and_redirects_are_rejected_with_the_answer() {
        for status in [400, 401, 403, 404, 410, 422, 301, 302] {
            match judged(status, "bad signature") {
                Attempt::Stop(ConnectorError::Rejected { status: s, detail }) => {
                    assert_eq!(s, status);
                    assert!(detail.contains("bad signature"), "{detail}");
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_between_half_and_full() {
        let retry = RetryPolicy::default();
        assert_eq!(retry.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(retry.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(retry.backoff(2, 1.0), Duration::from_millis(400));
        assert_eq!(retry.backoff(3, 0.5), Duration::from_millis(600));
    }

    #[test]
    fn the_key_and_url_path_are_never_shown() {
        let connector =
            WebhookConnector::new("https://hooks.example.com/T000/s3cr3t-path", b"k3y-bytes")
                .unwrap();
        let debug = format!("{connector:?}");
        assert!(!debug.contains("k3y-bytes"), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("https://hooks.example.com"), "{debug}");
    }

    #[test]
    fn an_unusable_configuration_is_misconfigured() {
        assert!(matches!(
            WebhookConnector::new("https://hooks.example.com", b""),
            Err(ConnectorError::Misconfigured(_))
        ));
        assert!(matches!(
            WebhookConnector::new("mailto:ops@example.com", b"k"),
            Err(ConnectorError::Misconfigured(_))
        ));
    }
}
