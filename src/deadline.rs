//! How long a request may wait on the Kubernetes API.
//!
//! An API server that hangs (a partition, an overloaded control plane, an
//! etcd stall) keeps connections open and answers nothing; kube's client
//! would wait minutes. Every SCIM, SAML and gate request therefore has a
//! budget: when it passes, the request's work is dropped and the answer is
//! 503 with `Retry-After`, so an IdP retries instead of counting a hung call.
//!
//! A write already sent may still land once the API server resumes. So the
//! first write of anything a request creates records the request's
//! [`Deadline`]: a userName claim or Group created after it belongs to a
//! request that was answered 503, and the retry can tell such a leftover
//! from a live conflict (see `directory::claims` and the Group controller).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The longest a request waits for the API server: an IdP then gets a 503
/// it retries with backoff, well before its client gives up on a hung call
/// and counts it as a failure. A SCIM write normally takes milliseconds; the
/// largest (a group POST with thousands of members) a few seconds.
pub const REQUEST_BUDGET: Duration = Duration::from_secs(8);

/// What `Retry-After` says when the budget ran out.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// When a request stops waiting, on the monotonic clock (for the timer) and
/// on the wall clock (to record in what it writes).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub at: tokio::time::Instant,
    pub wall: Timestamp,
}

impl Deadline {
    /// `budget` from now. The wall clock deadline is rounded up to the
    /// second, as Kubernetes keeps timestamps: recorded, it is never earlier
    /// than the timer's.
    pub fn after(budget: Duration) -> Self {
        let wall = Timestamp::now()
            .checked_add(SignedDuration::try_from(budget).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MAX);
        let whole = wall.as_second() + i64::from(wall.subsec_nanosecond() > 0);
        Self {
            at: tokio::time::Instant::now() + budget,
            wall: Timestamp::from_second(whole).unwrap_or(wall),
        }
    }

    /// The deadline of work done outside a request (a controller's write):
    /// the whole budget from now.
    pub fn from_now() -> Self {
        Self::after(REQUEST_BUDGET)
    }
}

/// Whether an object created at `created` (the API server's second-truncated
/// `creationTimestamp`) was written after its request's `deadline` had
/// passed: the request was answered 503 and nobody was told of the object.
/// Strict: an object stamped in the deadline's own second may have been
/// answered in time.
pub fn landed_after(created: Timestamp, deadline: Timestamp) -> bool {
    created.as_second() > deadline.as_second()
}

/// A router's budget, and what it answers when the budget runs out.
#[derive(Clone, Copy)]
pub struct Budget {
    /// `scim`, `saml` or `gate`: the metric's label.
    pub surface: &'static str,
    pub duration: Duration,
    pub expired: fn() -> Response,
}

/// Middleware: runs the request within its budget (the [`Deadline`] is in
/// the request's extensions for handlers that write), or answers
/// `budget.expired` when it runs out.
pub async fn bound(State(budget): State<Budget>, mut request: Request, next: Next) -> Response {
    let deadline = Deadline::after(budget.duration);
    request.extensions_mut().insert(deadline);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match tokio::time::timeout_at(deadline.at, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(
                %method,
                path,
                budget_ms = budget.duration.as_millis() as u64,
                "the Kubernetes API did not answer within the request budget: answered 503"
            );
            crate::metrics::METRICS
                .over_budget
                .get_or_create(&crate::metrics::Surface {
                    surface: budget.surface.to_owned(),
                })
                .inc();
            (budget.expired)()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    fn expired() -> Response {
        StatusCode::SERVICE_UNAVAILABLE.into_response()
    }

    fn app() -> Router {
        let budget = Budget {
            surface: "test",
            duration: Duration::from_millis(50),
            expired,
        };
        Router::new()
            .route("/quick", get(|| async { "done" }))
            .route(
                "/hung",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "never"
                }),
            )
            .route(
                "/deadline",
                get(|axum::Extension(d): axum::Extension<Deadline>| async move {
                    let left = d.at - tokio::time::Instant::now();
                    format!("{}", left <= Duration::from_millis(50))
                }),
            )
            .layer(axum::middleware::from_fn_with_state(budget, bound))
    }

    async fn status_of(path: &str) -> (StatusCode, String) {
        let request = Request::builder().uri(path).body(axum::body::Body::empty());
        let response = app().oneshot(request.unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn work_within_the_budget_is_answered_as_it_ends() {
        assert_eq!(status_of("/quick").await, (StatusCode::OK, "done".into()));
    }

    #[tokio::test]
    async fn hung_work_is_dropped_and_answered_when_the_budget_ends() {
        let started = tokio::time::Instant::now();
        assert_eq!(status_of("/hung").await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn handlers_see_the_deadline() {
        assert_eq!(
            status_of("/deadline").await,
            (StatusCode::OK, "true".into())
        );
    }

    #[test]
    fn the_recorded_deadline_is_whole_seconds_and_never_early() {
        let before = Timestamp::now();
        let deadline = Deadline::after(Duration::from_millis(1500));
        assert_eq!(deadline.wall.subsec_nanosecond(), 0);
        assert!(deadline.wall >= before + SignedDuration::from_millis(1500));
        assert!(deadline.wall <= Timestamp::now() + SignedDuration::from_millis(2500));
    }

    #[test]
    fn only_an_object_stamped_after_the_deadline_second_landed_after_it() {
        let deadline: Timestamp = "2026-12-02T10:00:00.700Z".parse().unwrap();
        let stamped = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(!landed_after(stamped("2026-12-02T09:59:59Z"), deadline));
        // Truncated: it may have been written at 10:00:00.5, in time.
        assert!(!landed_after(stamped("2026-12-02T10:00:00Z"), deadline));
        assert!(landed_after(stamped("2026-12-02T10:00:01Z"), deadline));
    }
}
