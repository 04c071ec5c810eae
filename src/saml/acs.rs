//! The assertion consumer (HTTP-POST binding): the I/O edge that runs the
//! checks, consumes the ids, writes the user, and signs the browser in.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use chrono::Utc;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::checks::{self, Rejection};
use super::groups::{self, Applied, GroupChanges, JitGroups};
use super::jit::{self, Decision, Login, LoginError, Users, Written};
use super::limits::Busy;
use super::session::{self, PendingRequest, REQUEST_COOKIE, SESSION_TYPE, SameSite, Session};
use super::trust::{MAX_ISSUE_AGE, Trust};
use super::{SamlState, page, redirect, verify};
use crate::api::{ConsumedKind, User};
use crate::deadline::Deadline;
use crate::directory::audit::Change;
use crate::directory::consumed::{Consumed, ReplayError};

#[derive(Debug, Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    pub saml_response: String,
    #[serde(rename = "RelayState")]
    pub relay_state: Option<String>,
}

/// Why a login ended without signing in, with the page the browser sees.
enum Failure {
    Rejected(Rejection),
    Login(LoginError),
    Replay(ReplayError),
    Busy(Busy),
    Internal(String),
}

impl Failure {
    fn respond(self, namespace: &str, policy: &str) -> Response {
        let reason = match &self {
            Failure::Rejected(r) => r.to_string(),
            Failure::Login(e) => e.to_string(),
            Failure::Replay(e) => e.to_string(),
            Failure::Busy(e) => e.to_string(),
            Failure::Internal(e) => e.clone(),
        };
        // One line with the precise reason; never the assertion.
        tracing::warn!(%namespace, %policy, %reason, "SAML login refused");
        let outcome = match &self {
            Failure::Rejected(_) => "rejected",
            Failure::Login(_) => "refused",
            Failure::Replay(_) => "replayed",
            Failure::Busy(_) => "busy",
            Failure::Internal(_) => "error",
        };
        count_login(namespace, policy, outcome);
        match self {
            Failure::Rejected(_) | Failure::Replay(ReplayError::Replayed(_)) => page::refused(),
            Failure::Busy(_) => page::try_again_after(1),
            Failure::Login(LoginError::UnknownUser) => page::page(
                StatusCode::FORBIDDEN,
                "No account",
                "You have no account in this application. Ask your administrator to assign the application to you in your identity provider.",
            ),
            Failure::Login(LoginError::Inactive(_)) => page::page(
                StatusCode::FORBIDDEN,
                "Account deactivated",
                "Your account in this application is deactivated. Ask your administrator.",
            ),
            Failure::Login(LoginError::UserNameTaken(_)) => page::page(
                StatusCode::FORBIDDEN,
                "Account conflict",
                "An account with your user name exists and is not linked to your identity. Ask your administrator.",
            ),
            Failure::Login(LoginError::Mapping(_)) => page::page(
                StatusCode::FORBIDDEN,
                "Sign-in refused",
                "Your identity provider's answer does not allow an account in this application. Ask your administrator.",
            ),
            Failure::Login(LoginError::Api(_))
            | Failure::Replay(ReplayError::Api(_))
            | Failure::Internal(_) => page::try_again(),
        }
    }
}

impl From<Rejection> for Failure {
    fn from(r: Rejection) -> Self {
        Failure::Rejected(r)
    }
}
impl From<LoginError> for Failure {
    fn from(e: LoginError) -> Self {
        Failure::Login(e)
    }
}
impl From<ReplayError> for Failure {
    fn from(e: ReplayError) -> Self {
        Failure::Replay(e)
    }
}

pub async fn consume(
    State(state): State<SamlState>,
    Path((namespace, policy)): Path<(String, String)>,
    headers: HeaderMap,
    deadline: Option<Extension<Deadline>>,
    form: Result<Form<AcsForm>, FormRejection>,
) -> Response {
    // Set by the budget layer; a handler called without it gets its own.
    let deadline = deadline.map_or_else(Deadline::from_now, |Extension(d)| d);
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            tracing::warn!(%namespace, %policy, reason = %rejection.body_text(), "SAML login refused: bad form");
            return page::bad_request();
        }
    };
    let trust = match state.trust(&namespace, &policy).await {
        Ok(trust) => trust,
        Err(response) => return response,
    };
    let pending = session::cookie(&headers, REQUEST_COOKIE)
        .and_then(|token| {
            PendingRequest::open(
                &state.key,
                token,
                &namespace,
                &policy,
                Timestamp::now().as_second(),
            )
        })
        // The RelayState must be the opaque token sent with this browser's request.
        .filter(|p| form.relay_state.as_deref() == Some(p.relay.as_str()));
    let span = tracing::info_span!("saml_login", policy = %format!("{namespace}/{policy}"));
    let accepted = accept(&state, &trust, &form, pending.as_ref(), deadline);
    match tracing::Instrument::instrument(accepted, span).await {
        Ok(response) => response,
        Err(failure) => failure.respond(&namespace, &policy),
    }
}

/// samael's instants are chrono's; Roster's own are jiff's (k8s-openapi's).
fn from_samael(instant: chrono::DateTime<Utc>) -> Timestamp {
    Timestamp::from_second(instant.timestamp()).unwrap_or(Timestamp::MAX)
}

async fn accept(
    state: &SamlState,
    trust: &Trust,
    form: &AcsForm,
    pending: Option<&PendingRequest>,
    deadline: Deadline,
) -> Result<Response, Failure> {
    // samael's clock: it compares chrono instants.
    let now = Utc::now();
    let xml = checks::decode(&form.saml_response)?;
    let wrapper = checks::precheck(&xml, &trust.acs_url)?;
    checks::check_wrapper_time(&wrapper, now, trust.skew, MAX_ISSUE_AGE)?;
    let request_id = pending.map(|p| p.id.clone());
    let verifying = trust.clone();
    let (assertion, checked) = state
        .limits
        .run(move || verify::verify(&verifying, &xml, request_id.as_deref(), now))
        .await
        .map_err(Failure::Busy)??;

    let login = Login::from_assertion(&assertion, &wrapper.padded);
    let mapped = jit::map(&login, &trust.mapping).map_err(LoginError::from)?;
    let users = Users::new(
        state.client.clone(),
        state.index.clone(),
        &trust.namespace,
        &trust.policy,
    )
    .until(deadline);
    let decision = users.decide(trust.mode, &mapped, &trust.jit).await?;

    // Consumed only once the login will be accepted, so a refused login
    // writes nothing; from here on a replay fails on every replica.
    let consumed = Consumed::new(state.client.clone(), &trust.namespace, &trust.policy);
    // The request first: a second answer to it writes nothing at all.
    if let (Some(request), Some(pending)) = (&checked.in_response_to, pending) {
        let expires = Timestamp::from_second(pending.exp).unwrap_or_else(|_| Timestamp::now());
        consumed
            .consume(&trust.sp_entity_id, ConsumedKind::Request, request, expires)
            .await?;
    }
    consumed
        .consume(
            &checked.issuer,
            ConsumedKind::Assertion,
            &checked.id,
            from_samael(checked.expires_at),
        )
        .await?;
    tokio::spawn(async move { consumed.sweep(Timestamp::now()).await });

    let group_changes = match &decision {
        Decision::Touch(_) => GroupChanges::default(),
        Decision::Create => groups::plan(&mapped.groups, &trust.jit, true),
        Decision::Update(_) => groups::plan(&mapped.groups, &trust.jit, false),
    };
    let (user, written) = users.execute(decision, &mapped, &checked.id).await?;
    let name = kube::ResourceExt::name_any(&user);
    let applied = JitGroups::new(
        state.client.clone(),
        state.index.clone(),
        &trust.namespace,
        &trust.policy,
    )
    .apply(&user, &group_changes, &checked.id, &state.audit)
    .await
    .map_err(|e| Failure::Internal(format!("could not change group memberships: {e}")))?;
    record(state, &user, written, &applied, &checked.id);
    tracing::info!(
        namespace = %trust.namespace,
        policy = %trust.policy,
        user = %name,
        assertion = %checked.id,
        mode = ?trust.mode,
        joined = ?applied.joined,
        left = ?applied.left,
        "SAML login"
    );
    count_login(&trust.namespace, &trust.policy, "success");

    let lifetime = trust.session_lifetime.as_secs() as i64;
    let session = Session {
        typ: SESSION_TYPE.to_owned(),
        namespace: trust.namespace.clone(),
        policy: trust.policy.clone(),
        user: name,
        uid: user.metadata.uid.clone().unwrap_or_default(),
        subject: mapped.subject.clone(),
        iat: now.timestamp(),
        exp: now.timestamp() + lifetime,
    };
    // The gate on another replica may be asked before its watch shows
    // the User: record it here, and the gate reads a fresh session's
    // unknown User from the API once.
    state.index.observe_user(&user);
    let session_cookie = session::set_cookie_for(
        &session::session_cookie(&trust.namespace, &trust.policy),
        &state.key.sign(&session),
        trust.access.cookie_domain.as_deref(),
        "/",
        lifetime,
        SameSite::Lax,
    );
    let cleared = session::set_cookie(
        REQUEST_COOKIE,
        "",
        &format!("/saml/{}/{}", trust.namespace, trust.policy),
        0,
        SameSite::None,
    );
    // After an SP-initiated login, where the login asked to go (checked
    // again); after an IdP-initiated one, the RelayState if it is allowed.
    let target = match pending {
        Some(p) => p.redirect.clone(),
        None => form.relay_state.clone(),
    }
    .filter(|t| redirect::allowed(t, &trust.allowed_redirect_urls));
    let mut response = match target {
        Some(target) => (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response(),
        None => page::page(
            StatusCode::OK,
            "Signed in",
            "You are signed in. You can close this page.",
        ),
    };
    let headers = response.headers_mut();
    for cookie in [session_cookie, cleared] {
        if let Ok(value) = cookie.parse() {
            headers.append(header::SET_COOKIE, value);
        }
    }
    headers.insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("a valid header"),
    );
    Ok(response)
}

/// An Event on the user for what the login wrote, naming the assertion.
fn record(state: &SamlState, user: &User, written: Written, applied: &Applied, assertion: &str) {
    let mut parts = Vec::new();
    let change = match written {
        Written::Created => {
            parts.push(format!("created {}", user.spec.user_name));
            Change::Created
        }
        Written::Updated => {
            parts.push(format!("updated the attributes of {}", user.spec.user_name));
            Change::Updated
        }
        Written::Unchanged => Change::MembersChanged,
    };
    if !applied.joined.is_empty() {
        parts.push(format!("joined {}", applied.joined.join(", ")));
    }
    if !applied.left.is_empty() {
        parts.push(format!("left {}", applied.left.join(", ")));
    }
    if !parts.is_empty() {
        state
            .audit
            .record(user, &user.spec.policy, change, assertion, parts.join("; "));
    }
}

/// Counts a login by outcome (`roster_saml_logins_total`). Only a known
/// policy's name becomes a label, so label values stay bounded.
fn count_login(namespace: &str, policy: &str, outcome: &str) {
    crate::metrics::METRICS
        .saml_logins
        .get_or_create(&crate::metrics::SamlLogin {
            policy: format!("{namespace}/{policy}"),
            outcome: outcome.to_owned(),
        })
        .inc();
}
