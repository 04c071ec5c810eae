//! The HTTP server every replica runs: SCIM, health and (later) SAML and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use clap::Args;

use crate::directory::audit::{Audit, Writer as AuditWriter};
use crate::directory::membership::MembershipIndex;
use crate::directory::policies::PolicyCache;
use crate::public_url::PublicUrl;
use crate::saml::session::SessionKey;
use crate::{gate, saml, scim};

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
    /// File holding the key that signs SAML login and session cookies. Every
    /// replica must use the same one, or a login started on one replica
    /// fails on another. Unset: a random key per process (one replica only).
    #[arg(long, env = "ROSTER_SESSION_KEY_FILE")]
    pub session_key_file: Option<std::path::PathBuf>,
    /// The key read from `--session-key-file` (or given by a test).
    #[arg(skip)]
    pub session_key: Option<SessionKey>,
    /// PEM certificate (chain) to serve HTTPS with, e.g. from a cert-manager
    /// Secret. Without it Roster serves plain HTTP and warns.
    #[arg(long, env = "ROSTER_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `--tls-cert-file`.
    #[arg(long, env = "ROSTER_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// SAML signature verifications run at once; more wait briefly or are
    /// answered 503. Unset: half the cores, at least one.
    #[arg(long, env = "ROSTER_SAML_VERIFY_CONCURRENCY")]
    pub saml_verify_concurrency: Option<usize>,
    /// How often IdP metadata read from a URL (`idpMetadataUrl`) is read
    /// again; a ConfigMap's at most every 30 s.
    #[arg(
        long,
        env = "ROSTER_IDP_METADATA_REFRESH_SECONDS",
        default_value_t = 3600
    )]
    pub idp_metadata_refresh_seconds: u64,
    /// PEM bundle of extra CAs trusted for `idpMetadataUrl` (an IdP served
    /// with a cluster-private CA), besides the public roots.
    #[arg(long, env = "ROSTER_IDP_METADATA_CA_FILE")]
    pub idp_metadata_ca_file: Option<std::path::PathBuf>,
    /// The metadata sources built from the two options above, shared by
    /// the SAML service and the controllers of one process (one fetch per
    /// refresh).
    #[arg(skip)]
    pub idp_metadata: Option<saml::idp_metadata::MetadataSources>,
    /// Also serve `/metrics`, `/healthz` and `/readyz` on this address, in
    /// plain HTTP even when the main port serves HTTPS (for Prometheus and
    /// the kubelet's probes).
    #[arg(long, env = "ROSTER_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// After SIGTERM, keep serving this long with `/readyz` failing, so the
    /// Service's endpoints (kube-proxy, Ingress controllers) drop the pod
    /// before it stops accepting connections; then drain.
    #[arg(long, env = "ROSTER_SHUTDOWN_DELAY_SECONDS", default_value_t = 0)]
    pub shutdown_delay_seconds: u64,
}

impl ServerArgs {
    /// The IdP metadata sources these options describe. An unreadable CA
    /// file is reported and left out (`roster run` checks it at start).
    pub fn idp_metadata_sources(&self) -> saml::idp_metadata::MetadataSources {
        if let Some(shared) = &self.idp_metadata {
            return shared.clone();
        }
        let refresh = std::time::Duration::from_secs(self.idp_metadata_refresh_seconds.max(1));
        saml::idp_metadata::MetadataSources::new(refresh, self.idp_metadata_ca_file.as_deref())
            .unwrap_or_else(|error| {
                tracing::error!(%error, "IdP metadata CA file unusable: only the public roots are trusted");
                saml::idp_metadata::MetadataSources::new(refresh, None)
                    .expect("an HTTP client without extra roots builds")
            })
    }
}

impl Default for ServerArgs {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".parse().expect("a valid default address"),
            public_url: None,
            pod_name: None,
            session_key_file: None,
            session_key: None,
            tls_cert_file: None,
            tls_key_file: None,
            saml_verify_concurrency: None,
            metrics_listen: None,
            shutdown_delay_seconds: 0,
            idp_metadata_refresh_seconds: 3600,
            idp_metadata_ca_file: None,
            idp_metadata: None,
        }
    }
}

/// Whether the process can serve: its CRDs are served, the API server
/// answers, and the membership and policy caches are filled.
#[derive(Clone, Default)]
pub struct Readiness {
    crds: Arc<AtomicBool>,
    api: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    index: Option<MembershipIndex>,
    policies: Option<PolicyCache>,
}

impl Readiness {
    pub fn new(index: MembershipIndex) -> Self {
        Self {
            index: Some(index),
            ..Self::default()
        }
    }
    /// Also waits for `policies`, which the SCIM service then reads from.
    pub fn with_policies(mut self, policies: PolicyCache) -> Self {
        self.policies = Some(policies);
        self
    }
    pub fn set_ready(&self) {
        self.crds.store(true, Ordering::Release);
        self.api.store(true, Ordering::Release);
    }
    pub fn set_api_reachable(&self, reachable: bool) {
        self.api.store(reachable, Ordering::Release);
    }
    /// The process is shutting down: it still serves, but is not ready.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    /// Resolves once the membership and policy caches are filled.
    pub async fn caches_filled(&self) {
        let filled = || {
            self.index.as_ref().is_none_or(|i| i.is_synced())
                && self.policies.as_ref().is_none_or(|p| p.is_synced())
        };
        while !filled() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// What keeps the process from being ready, if anything.
    fn waiting_for(&self) -> Option<&'static str> {
        if self.draining.load(Ordering::Acquire) {
            Some("shutting down")
        } else if !self.crds.load(Ordering::Acquire) {
            Some("waiting for Roster's CRDs")
        } else if !self.api.load(Ordering::Acquire) {
            Some("the Kubernetes API server is unreachable")
        } else if self.index.as_ref().is_some_and(|i| !i.is_synced()) {
            Some("filling the group membership cache")
        } else if self.policies.as_ref().is_some_and(|p| !p.is_synced()) {
            Some("filling the policy cache")
        } else {
            None
        }
    }
}

/// The whole HTTP surface. The SCIM service reads policies from the cache
/// `readiness` waits for; without one, from the API on every request.
pub fn router(
    client: kube::Client,
    index: MembershipIndex,
    args: &ServerArgs,
    readiness: Readiness,
) -> Router {
    let policies = readiness.policies.clone().unwrap_or_default();
    let public_url = PublicUrl::new(args.public_url.as_deref());
    let saml = saml::SamlState {
        client: client.clone(),
        public_url: public_url.clone(),
        key: args.session_key.clone().unwrap_or_else(SessionKey::process),
        index: index.clone(),
        audit: Audit::of(AuditWriter::Jit, client.clone(), args.pod_name.clone()),
        policies: policies.clone(),
        limits: saml::limits::VerifyLimits::new(
            args.saml_verify_concurrency
                .unwrap_or_else(saml::limits::VerifyLimits::default_concurrency),
        ),
        metadata: args.idp_metadata_sources(),
    };
    let health = probes()
        .merge(gate::routes(saml.clone()))
        .merge(saml::routes(saml))
        .with_state(readiness);
    scim::http::router(scim::http::ScimState {
        audit: Audit::of(AuditWriter::Scim, client.clone(), args.pod_name.clone()),
        client,
        index,
        rate_limits: Default::default(),
        policies,
        tokens: Default::default(),
        public_url,
    })
    .merge(health)
    .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
    // A 5xx is logged where it is decided, with its reason; the layer's own
    // line (ERROR by default) would also fire for every /readyz 503 while
    // the process starts.
    .layer(
        tower_http::trace::TraceLayer::new_for_http()
            .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG)),
    )
    .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
        tower_http::request_id::MakeRequestUuid,
    ))
}

/// `/healthz`, `/readyz` and `/metrics`: on the main port, and alone on
/// `--metrics-listen` (see [`probes_router`]).
fn probes() -> Router<Readiness> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// What `--metrics-listen` serves: the probes and the metrics only.
pub fn probes_router(readiness: Readiness) -> Router {
    probes().with_state(readiness)
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

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The TLS configuration `args` asks for, or `None` for plain HTTP.
pub async fn tls(
    args: &ServerArgs,
) -> std::io::Result<Option<axum_server::tls_rustls::RustlsConfig>> {
    match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?,
        )),
        _ => {
            tracing::warn!(
                "serving plain HTTP: bearer tokens and SAML responses cross the network in clear unless TLS terminates in front; pass --tls-cert-file and --tls-key-file to serve HTTPS"
            );
            Ok(None)
        }
    }
}

/// How often the certificate files are read for a renewal.
const TLS_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps `config` serving the certificate in `args`' files: when their
/// content changes (cert-manager renewed the Secret, and the kubelet
/// updated the mounted files), the next TLS handshake presents the new
/// certificate; connections already open keep theirs. A pair that does not
/// load (caught mid-update) is retried at the next look.
pub async fn reload_tls(config: axum_server::tls_rustls::RustlsConfig, args: ServerArgs) {
    let (Some(cert), Some(key)) = (args.tls_cert_file, args.tls_key_file) else {
        return;
    };
    let read = || -> Option<Vec<u8>> {
        let mut both = std::fs::read(&cert).ok()?;
        both.extend(std::fs::read(&key).ok()?);
        Some(both)
    };
    let mut served = read();
    loop {
        tokio::time::sleep(TLS_RELOAD_INTERVAL).await;
        let current = read();
        if current.is_none() || current == served {
            continue;
        }
        match config.reload_from_pem_file(&cert, &key).await {
            Ok(()) => {
                tracing::info!(cert = %cert.display(), "serving the renewed TLS certificate");
                served = current;
            }
            Err(error) => {
                tracing::warn!(%error, cert = %cert.display(), "the changed TLS certificate does not load yet; still serving the previous one");
            }
        }
    }
}

/// Serves `router` on `listener` (HTTPS with `tls`) until `shutdown`
/// completes, then stops accepting and lets in-flight requests finish.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.into_std()?;
    let handle = axum_server::Handle::new();
    let signal = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        signal.graceful_shutdown(Some(DRAIN_TIMEOUT));
    });
    let service = router.into_make_service();
    match tls {
        Some(config) => {
            axum_server::tls_rustls::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(service)
                .await
        }
        None => {
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(service)
                .await
        }
    }
}
