//! SP-initiated login: an AuthnRequest sent by the HTTP-Redirect binding,
//! with an opaque RelayState, and the request bound to this browser by a
//! signed cookie so the response can be matched to it (login CSRF).

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::{self, PendingRequest, REQUEST_COOKIE, REQUEST_TYPE, SameSite};
use super::{SamlState, page, redirect, verify};

/// How long a started login may take at the IdP.
pub const REQUEST_LIFETIME_SECS: i64 = 600;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// Where to go after the login; must be allowed by the policy.
    pub redirect: Option<String>,
}

/// A fresh request ID: 128 random bits (samael's default has 32). XML IDs
/// must not start with a digit.
pub fn request_id() -> String {
    format!("_{:032x}", rand::random::<u128>())
}

pub async fn start(
    State(state): State<SamlState>,
    Path((namespace, policy)): Path<(String, String)>,
    Query(query): Query<LoginQuery>,
) -> Response {
    begin(&state, &namespace, &policy, query.redirect).await
}

/// Starts a login of `namespace/policy` that ends at `redirect` (which must
/// be allowed by the policy): the redirect to the IdP, with the request
/// bound to this browser.
pub async fn begin(
    state: &SamlState,
    namespace: &str,
    policy: &str,
    redirect: Option<String>,
) -> Response {
    let trust = match state.trust(namespace, policy).await {
        Ok(trust) => trust,
        Err(response) => return response,
    };
    if let Some(target) = &redirect {
        if !redirect::allowed(target, &trust.allowed_redirect_urls) {
            tracing::warn!(%namespace, %policy, "SAML login refused: the redirect target is not allowed by the policy");
            return page::bad_request();
        }
    }
    let Some(sso_url) = trust.idp_sso_url.clone() else {
        tracing::warn!(%namespace, %policy, "SAML login refused: the policy names no IdP SSO URL");
        return page::page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-in not configured",
            "Sign-in is not configured for this application.",
        );
    };
    let id = request_id();
    let relay = format!("{:032x}", rand::random::<u128>());
    let url = verify::service_provider(&trust)
        .map_err(|e| e.to_string())
        .and_then(|sp| {
            let mut request = sp
                .make_authentication_request(&sso_url)
                .map_err(|e| e.to_string())?;
            request.id = id.clone();
            request
                .redirect(&relay)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no destination".to_owned())
        });
    let url = match url {
        Ok(url) => url,
        Err(reason) => {
            tracing::warn!(%namespace, %policy, %reason, "SAML login failed to build an AuthnRequest");
            return page::bad_request();
        }
    };
    let pending = PendingRequest {
        typ: REQUEST_TYPE.to_owned(),
        namespace: namespace.to_owned(),
        policy: policy.to_owned(),
        id,
        relay,
        redirect,
        exp: k8s_openapi::jiff::Timestamp::now().as_second() + REQUEST_LIFETIME_SECS,
    };
    let cookie = session::set_cookie(
        REQUEST_COOKIE,
        &state.key.sign(&pending),
        &format!("/saml/{namespace}/{policy}"),
        REQUEST_LIFETIME_SECS,
        SameSite::None,
    );
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url.to_string()),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_have_128_random_bits_and_are_xml_ids() {
        let a = request_id();
        assert_eq!(a.len(), 33);
        assert!(a.starts_with('_'));
        assert_ne!(a, request_id());
    }
}
