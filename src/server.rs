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

/// Whether the process can serve: set once the CRDs are served.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }
    fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
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

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, &'static str) {
    if readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for Roster's CRDs")
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
