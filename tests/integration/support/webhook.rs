//! A webhook receiver in the test process: it checks each delivery's
//! signature with `roster::connectors::webhook::verify`, the way an
//! application would, records every delivery, and can be switched down
//! (503) and up (200) to exercise redelivery.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use roster::connectors::webhook::{
    DEFAULT_TOLERANCE_SECS, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify,
};
use serde_json::Value;

/// The path events are posted to; a secret-looking segment, as real webhook
/// URLs have, so tests also show it never leaks into errors.
const PATH: &str = "/hooks/roster-s3cr3t";

/// One request the receiver got, whatever it answered.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// `Roster-Event-Id`, empty when missing.
    pub event_id: String,
    /// The body's `type`.
    pub event_type: String,
    /// `Roster-Timestamp`, 0 when missing or unreadable.
    pub timestamp: i64,
    /// The body as JSON (Null when it isn't).
    pub body: Value,
    /// The exact bytes received.
    pub raw: Vec<u8>,
    /// Whether `Roster-Signature` verified with the receiver's key.
    pub verified: bool,
    /// The status the receiver answered.
    pub answered: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    /// Every delivery gets 503.
    Down,
    /// Every delivery gets 429 with `Retry-After: <seconds>`.
    Throttled(u64),
}

struct Inner {
    mode: Mode,
    /// Deliveries still to answer 503 before the mode applies again.
    failures_left: u32,
    deliveries: Vec<Delivery>,
}

struct Shared {
    key: Vec<u8>,
    inner: Mutex<Inner>,
}

/// A running receiver; it serves until the test's runtime ends.
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Listens on a free loopback port; deliveries must be signed with `key`.
    pub async fn start(key: &[u8]) -> Self {
        let shared = Arc::new(Shared {
            key: key.to_vec(),
            inner: Mutex::new(Inner {
                mode: Mode::Up,
                failures_left: 0,
                deliveries: Vec::new(),
            }),
        });
        let router = Router::new()
            .route(PATH, post(receive))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the webhook receiver");
        let url = format!("http://{}{PATH}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the webhook receiver serves")
        });
        Self { url, shared }
    }

    /// Answers 503 to every delivery until `up`.
    pub fn down(&self) {
        self.inner().mode = Mode::Down;
    }

    /// Answers 200 to deliveries whose signature verifies (401 otherwise).
    pub fn up(&self) {
        let mut inner = self.inner();
        inner.mode = Mode::Up;
        inner.failures_left = 0;
    }

    /// Answers 503 to the next `n` deliveries, then as before.
    pub fn fail_next(&self, n: u32) {
        self.inner().failures_left = n;
    }

    /// Answers 429 with `Retry-After: <seconds>` until `up`.
    pub fn throttle(&self, seconds: u64) {
        self.inner().mode = Mode::Throttled(seconds);
    }

    /// Every delivery so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner().deliveries.clone()
    }

    /// The deliveries answered 2xx.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .collect()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap()
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = header(TIMESTAMP_HEADER).parse::<i64>().unwrap_or(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified = verify(
        &shared.key,
        timestamp,
        &body,
        &header(SIGNATURE_HEADER),
        now,
        DEFAULT_TOLERANCE_SECS,
    );
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut inner = shared.inner.lock().unwrap();
    let response = if inner.failures_left > 0 {
        inner.failures_left -= 1;
        (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response()
    } else {
        match inner.mode {
            Mode::Down => (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response(),
            Mode::Throttled(seconds) => (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", seconds.to_string())],
                "slow down",
            )
                .into_response(),
            Mode::Up if !verified => {
                (StatusCode::UNAUTHORIZED, "signature does not verify").into_response()
            }
            Mode::Up => StatusCode::OK.into_response(),
        }
    };
    inner.deliveries.push(Delivery {
        event_id: header(EVENT_ID_HEADER),
        event_type: json["type"].as_str().unwrap_or_default().to_owned(),
        timestamp,
        raw: body.to_vec(),
        body: json,
        verified,
        answered: response.status().as_u16(),
    });
    response
}
