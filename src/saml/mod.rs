//! The SAML 2.0 service provider of every policy, and JIT provisioning.
//!
//! `/saml/{namespace}/{policy}/metadata` (SP metadata), `/login`
//! (SP-initiated, HTTP-Redirect binding) and `/acs` (HTTP-POST binding).
//! Pure pieces: `checks` (strict XML and assertion checks), `redirect`,
//! `metadata`, the mapping in `jit`, `trust`. I/O: `acs`, `login`, the writer
//! in `jit`, `replay`. samael verifies signatures (`verify`, blocking).

pub mod acs;
pub mod checks;
pub mod groups;
pub mod jit;
pub mod login;
pub mod metadata;
pub mod page;
#[cfg(test)]
mod precheck_props;
pub mod redirect;
pub mod replay;
pub mod session;
pub mod trust;
pub mod verify;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::api::ProvisioningPolicy;
use crate::scim::audit::{Audit, Writer as AuditWriter};
use crate::scim::membership::MembershipIndex;
use crate::scim::policies::PolicyCache;
use crate::server::ServerArgs;
use session::SessionKey;
use trust::{SpUrls, Trust};

/// What the SAML handlers share.
#[derive(Clone)]
pub struct SamlState {
    pub client: kube::Client,
    /// Externally visible URL of this server; unset: from the Host header.
    pub public_url: Option<String>,
    /// Signs the request and session cookies.
    pub key: SessionKey,
    /// Where group members live, shared with the SCIM service.
    pub index: MembershipIndex,
    /// Events for what logins change.
    pub audit: Audit,
    /// The policies, watched (shared with the SCIM service).
    pub policies: PolicyCache,
}

/// The SAML routes, with the process's session key (see [`SessionKey`]).
/// Generic over the state of the router it is merged into.
pub fn router<S>(
    client: kube::Client,
    index: MembershipIndex,
    policies: PolicyCache,
    args: &ServerArgs,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes(SamlState {
        audit: Audit::of(AuditWriter::Jit, client.clone(), args.pod_name.clone()),
        client,
        public_url: args.public_url.clone(),
        key: SessionKey::process(),
        index,
        policies,
    })
}

/// The SAML routes over `state`.
pub fn routes<S>(state: SamlState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/saml/{namespace}/{policy}/metadata", get(serve_metadata))
        .route("/saml/{namespace}/{policy}/login", get(login::start))
        .route("/saml/{namespace}/{policy}/acs", post(acs::consume))
        .layer(DefaultBodyLimit::max(checks::MAX_FORM_BYTES))
        .with_state(state)
}

impl SamlState {
    fn origin(&self, headers: &HeaderMap) -> String {
        crate::server::origin(self.public_url.as_deref(), headers)
    }

    async fn policy(
        &self,
        namespace: &str,
        policy: &str,
    ) -> Result<Arc<ProvisioningPolicy>, Response> {
        match self.policies.get(&self.client, namespace, policy).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(page::page(
                StatusCode::NOT_FOUND,
                "Unknown application",
                "There is no such application.",
            )),
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
    pub(crate) async fn trust(
        &self,
        namespace: &str,
        policy: &str,
        headers: &HeaderMap,
    ) -> Result<Trust, Response> {
        let found = self.policy(namespace, policy).await?;
        Trust::resolve(&found, &self.origin(headers)).map_err(|error| {
            tracing::warn!(%namespace, %policy, reason = %error, "SAML login refused: the policy serves no login");
            page::page(
                StatusCode::FORBIDDEN,
                "Sign-in not configured",
                "Sign-in is not configured for this application.",
            )
        })
    }
}

async fn serve_metadata(
    State(state): State<SamlState>,
    Path((namespace, policy)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let found = match state.policy(&namespace, &policy).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let urls = SpUrls::of(&found, &state.origin(&headers));
    (
        [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
        metadata::document(&urls),
    )
        .into_response()
}
