//! The SAML 2.0 service provider of every policy, and JIT provisioning.
//!
//! `/saml/{namespace}/{policy}/metadata` (SP metadata), `/login`
//! (SP-initiated, HTTP-Redirect binding) and `/acs` (HTTP-POST binding).
//! Pure pieces: `checks` (strict XML and assertion checks), `redirect`,
//! `metadata`, the mapping in `jit`, `trust`. I/O: `acs`, `login`, the writer
//! in `jit`. samael verifies signatures (`verify`, blocking).
//!
//! Time: Roster's one time library is jiff (k8s-openapi's); chrono appears
//! only here, where samael's assertions and builder speak it.

pub mod acs;
pub mod checks;
pub mod dsig;
pub mod groups;
pub mod idp_metadata;
pub mod jit;
pub mod limits;
pub mod login;
pub mod metadata;
pub mod page;
#[cfg(test)]
mod precheck_props;
pub mod redirect;
pub mod session;
pub mod trust;
pub mod verify;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::ProvisioningPolicy;
use crate::deadline::{Budget, REQUEST_BUDGET};
use crate::directory::audit::Audit;
use crate::directory::membership::MembershipIndex;
use crate::directory::policies::PolicyCache;
use crate::public_url::PublicUrl;
use session::SessionKey;
use trust::{SpUrls, Trust};

/// What the SAML handlers share.
#[derive(Clone)]
pub struct SamlState {
    pub client: kube::Client,
    /// Where this server is reached; SAML is served only when configured.
    pub public_url: PublicUrl,
    /// Signs the request and session cookies.
    pub key: SessionKey,
    /// Where group members live, shared with the SCIM service.
    pub index: MembershipIndex,
    /// Events for what logins change.
    pub audit: Audit,
    /// The policies, watched (shared with the SCIM service).
    pub policies: PolicyCache,
    /// Bounds on the signature verifications this replica runs.
    pub limits: limits::VerifyLimits,
    /// The IdPs' metadata read from URLs and ConfigMaps.
    pub metadata: idp_metadata::MetadataSources,
}

/// The SAML routes over `state`. Generic over the state of the router they
/// are merged into.
pub fn routes<S>(state: SamlState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/saml/{namespace}/{policy}/metadata", get(serve_metadata))
        .route("/saml/{namespace}/{policy}/login", get(login::start))
        .route("/saml/{namespace}/{policy}/acs", post(acs::consume))
        .layer(DefaultBodyLimit::max(checks::MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            Budget {
                surface: "saml",
                duration: REQUEST_BUDGET,
                expired: page::try_again,
            },
            crate::deadline::bound,
        ))
        .with_state(state)
}

impl SamlState {
    /// Where this server is reached. Only from configuration: an ACS URL or
    /// audience taken from the Host header would let an assertion issued to
    /// another SP that trusts the same IdP key (staging, another realm) be
    /// accepted here. Without one, SAML is not served.
    fn origin(&self, namespace: &str, policy: &str) -> Option<&str> {
        let configured = self.public_url.configured();
        if configured.is_none() {
            tracing::warn!(
                %namespace,
                %policy,
                reason = NO_PUBLIC_URL,
                "SAML request refused: sign-in is not served"
            );
        }
        configured
    }

    async fn policy(
        &self,
        namespace: &str,
        policy: &str,
    ) -> Result<Arc<ProvisioningPolicy>, Response> {
        match self.policies.get(&self.client, namespace, policy).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => {
                tracing::info!(
                    %namespace,
                    %policy,
                    reason = self.policies.why_unknown(namespace),
                    "SAML: unknown application"
                );
                Err(page::page(
                    StatusCode::NOT_FOUND,
                    "Unknown application",
                    "There is no such application.",
                ))
            }
            Err(error) => {
                tracing::warn!(%namespace, %policy, %error, "SAML: could not read the policy");
                Err(page::page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again",
                    "The sign-in could not be completed right now. Try again in a moment.",
                ))
            }
        }
    }

    /// The policy's resolved trust, or the page saying it serves no login.
    pub(crate) async fn trust(&self, namespace: &str, policy: &str) -> Result<Trust, Response> {
        let origin = self.origin(namespace, policy).ok_or_else(not_configured)?;
        let found = self.policy(namespace, policy).await?;
        let metadata = match &found.spec.saml {
            Some(saml) => self
                .metadata
                .get(&self.client, namespace, saml)
                .await
                .map_err(|error| {
                    tracing::warn!(%namespace, %policy, reason = %error, "SAML login refused: no IdP metadata");
                    page::try_again()
                })?,
            None => None,
        };
        Trust::resolve_with(&found, origin, metadata.as_deref()).map_err(|error| {
            tracing::warn!(%namespace, %policy, reason = %error, "SAML login refused: the policy serves no login");
            not_configured()
        })
    }
}

/// Why SAML is not served without `--public-url` (logged, and the
/// policies' `SamlTrust` condition).
pub const NO_PUBLIC_URL: &str = "Roster runs without --public-url (ROSTER_PUBLIC_URL), so SAML is not served: the ACS URL and audience must not come from request headers";

fn not_configured() -> Response {
    page::page(
        StatusCode::FORBIDDEN,
        "Sign-in not configured",
        "Sign-in is not configured for this application.",
    )
}

async fn serve_metadata(
    State(state): State<SamlState>,
    Path((namespace, policy)): Path<(String, String)>,
) -> Response {
    let Some(origin) = state.origin(&namespace, &policy) else {
        return not_configured();
    };
    let found = match state.policy(&namespace, &policy).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let urls = SpUrls::of(&found, origin);
    (
        [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
        metadata::document(&urls),
    )
        .into_response()
}
