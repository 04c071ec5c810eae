//! The HTTP server every replica runs: SCIM, health and (later) SAML and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;

use crate::scim;

/// Options of the HTTP server.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address the HTTP server listens on.
    #[arg(long, env = "ROSTER_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Externally visible URL of this server (e.g. `https://roster.example.com`),
    /// used in SCIM `meta.location` and SAML metadata. Unset: taken from each
    /// request's Host header.
    #[arg(long, env = "ROSTER_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// This replica's name, recorded in the Events it publishes (the
    /// chart sets it from the Pod's name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
}

impl Default for ServerArgs {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".parse().expect("a valid default address"),
            public_url: None,
            pod_name: None,
        }
    }
}

/// Whether the process can serve: its CRDs are served, the API server
/// answers, and the membership cache is filled.
#[derive(Clone, Default)]
pub struct Readiness {
    crds: Arc<AtomicBool>,
    api: Arc<AtomicBool>,
    index: Option<scim::membership::MembershipIndex>,
}

impl Readiness {
    pub fn new(index: scim::membership::MembershipIndex) -> Self {
        Self {
            index: Some(index),
            ..Self::default()
        }
    }
    pub fn set_ready(&self) {
        self.crds.store(true, Ordering::Release);
        self.api.store(true, Ordering::Release);
    }
    pub fn set_api_reachable(&self, reachable: bool) {
        self.api.store(reachable, Ordering::Release);
    }
    /// What keeps the process from being ready, if anything.
    fn waiting_for(&self) -> Option<&'static str> {
        if !self.crds.load(Ordering::Acquire) {
            Some("waiting for Roster's CRDs")
        } else if !self.api.load(Ordering::Acquire) {
            Some("the Kubernetes API server is unreachable")
        } else if self.index.as_ref().is_some_and(|i| !i.is_synced()) {
            Some("filling the group membership cache")
        } else {
            None
        }
    }
}

/// The whole HTTP surface.
pub fn router(
    client: kube::Client,
    index: scim::membership::MembershipIndex,
    args: &ServerArgs,
    readiness: Readiness,
) -> Router {
    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness);
    let audit = scim::audit::Audit::new(client.clone(), args.pod_name.clone());
    scim::http::router(scim::http::ScimState {
        client,
        index,
        audit,
        rate_limits: Default::default(),
        public_url: args.public_url.clone(),
    })
    .merge(health)
    .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
    .layer(tower_http::trace::TraceLayer::new_for_http())
    .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
        tower_http::request_id::MakeRequestUuid,
    ))
}

async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::METRICS.encode(),
    )
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, &'static str) {
    match readiness.waiting_for() {
        None => (StatusCode::OK, "ok"),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// Binds `args.listen` and serves until `shutdown` completes, then drains
/// in-flight requests.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
