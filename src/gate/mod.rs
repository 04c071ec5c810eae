//! The SSO gate: forward-auth checks an ingress makes before each request to
//! an application, answered from this replica's watch-fed directory.
//!
//! `/gate/{namespace}/{policy}/auth` (nginx `auth_request`),
//! `/traefik` (ForwardAuth), `/envoy[/...]` (`ext_authz` HTTP service),
//! `/signin?rd=` (where a denied browser goes; starts the SAML login) and
//! `/signout?rd=`. A check reads the session cookie (the User's name, uid and
//! issue time, signed with the key every replica shares), then the User as
//! the membership index holds it now: so a deactivation, a deletion, a group
//! removal or a sessions-not-before annotation refuses the very next check,
//! once this replica's watch has seen it. A check never writes; it reads the
//! API only for a session minted seconds ago whose User this replica's watch
//! has not delivered yet.
//!
//! Pure pieces: `decide` (the verdict) and `respond` (the conventions).

pub mod decide;
pub mod respond;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use crate::api::{AccessSpec, ProvisioningPolicy, User};
use crate::directory::views::Person;
use crate::saml::session::{self, SameSite, Session};
use crate::saml::{SamlState, login, page, redirect, trust};
use decide::{Denial, Rules};
use respond::Convention;

/// How old a session may be for the gate to read its unknown User from the
/// API: a login on another replica a moment ago, not yet seen by this
/// replica's watch. Older sessions of unknown Users are refused without a read.
const FRESH_SESSION_SECS: i64 = 30;

/// The rules of a policy without `spec.access`.
static DEFAULT_ACCESS: std::sync::LazyLock<AccessSpec> =
    std::sync::LazyLock::new(AccessSpec::default);

fn access_of(policy: &ProvisioningPolicy) -> &AccessSpec {
    policy.spec.access.as_ref().unwrap_or(&DEFAULT_ACCESS)
}

/// The gate's routes over the SAML state (the same key, policies, index),
/// shared behind one `Arc`: a check must not pay for cloning the state.
pub fn routes<S>(state: SamlState) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = Arc::new(state);
    Router::new()
        .route("/gate/{namespace}/{policy}/auth", any(nginx))
        .route("/gate/{namespace}/{policy}/traefik", any(traefik))
        .route("/gate/{namespace}/{policy}/envoy", any(envoy))
        .route("/gate/{namespace}/{policy}/envoy/{*rest}", any(envoy))
        .route("/gate/{namespace}/{policy}/signin", get(signin))
        .route(
            "/gate/{namespace}/{policy}/signout",
            get(signout).post(signout),
        )
        .layer(axum::middleware::from_fn_with_state(
            crate::deadline::Budget {
                surface: "gate",
                duration: crate::deadline::REQUEST_BUDGET,
                expired: unavailable,
            },
            crate::deadline::bound,
        ))
        .with_state(state)
}

/// The answer when the Kubernetes API did not answer within the budget
/// (only a fresh session's User the watch hasn't shown is read from it).
fn unavailable() -> Response {
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

#[derive(Deserialize)]
struct PolicyPath {
    namespace: String,
    policy: String,
}

async fn nginx(
    State(state): State<Arc<SamlState>>,
    Path(path): Path<PolicyPath>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    checked(&state, &path, Convention::Nginx, &method, &headers, None).await
}

async fn traefik(
    State(state): State<Arc<SamlState>>,
    Path(path): Path<PolicyPath>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    checked(&state, &path, Convention::Traefik, &method, &headers, None).await
}

async fn envoy(
    State(state): State<Arc<SamlState>>,
    Path(path): Path<PolicyPath>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // Envoy appends the original path and query to the check path.
    let prefix = format!("/gate/{}/{}/envoy", path.namespace, path.policy);
    let original = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .and_then(|pq| pq.strip_prefix(prefix.as_str()))
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or("/")
        .to_owned();
    checked(
        &state,
        &path,
        Convention::Envoy,
        &method,
        &headers,
        Some(&original),
    )
    .await
}

/// A check, timed and counted.
async fn checked(
    state: &SamlState,
    path: &PolicyPath,
    convention: Convention,
    method: &Method,
    headers: &HeaderMap,
    envoy_path: Option<&str>,
) -> Response {
    let started = Instant::now();
    let response = match gate_policy(state, path).await {
        Err(response) => response,
        Ok(policy) => {
            let access = access_of(&policy);
            let outcome = verdict(state, path, &policy, access, headers).await;
            count(path, &outcome);
            match outcome {
                Ok((id, person, groups)) => {
                    respond::allowed(&access.headers, &id, &person, &groups)
                }
                Err(denial) => {
                    let signin = state.public_url.configured().map(|origin| {
                        let rd = respond::original_url(convention, headers, envoy_path);
                        respond::signin_url(origin, &path.namespace, &path.policy, rd.as_deref())
                    });
                    respond::denied(convention, denial, method, signin)
                }
            }
        }
    };
    crate::metrics::METRICS
        .gate_check_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The policy a gate path names, if it serves sign-in; otherwise the answer.
async fn gate_policy(
    state: &SamlState,
    path: &PolicyPath,
) -> Result<Arc<ProvisioningPolicy>, Response> {
    if !state.index.is_synced() {
        // Until the directory is filled every User would look unknown.
        return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
    }
    match state
        .policies
        .get(&state.client, &path.namespace, &path.policy)
        .await
    {
        Ok(Some(policy)) if policy.spec.saml.is_some() => Ok(policy),
        Ok(_) => {
            // Debug: anyone can ask for any path, and a line each would
            // let anonymous requests flood the logs.
            tracing::debug!(namespace = %path.namespace, policy = %path.policy, "gate: no such policy, or it has no spec.saml");
            Err(StatusCode::NOT_FOUND.into_response())
        }
        Err(error) => {
            tracing::warn!(namespace = %path.namespace, policy = %path.policy, %error, "gate: could not read the policy");
            Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

type Passed = (String, Arc<Person>, Vec<Arc<str>>);

/// The verdict on the request's session: who it is, or why not.
async fn verdict(
    state: &SamlState,
    path: &PolicyPath,
    policy: &ProvisioningPolicy,
    access: &AccessSpec,
    headers: &HeaderMap,
) -> Result<Passed, Denial> {
    let now = Timestamp::now().as_second();
    let name = session::session_cookie(&path.namespace, &path.policy);
    let token = session::cookie(headers, &name).ok_or(Denial::NoSession)?;
    let session = Session::verify(&state.key, token, now).map_err(Denial::BadCookie)?;
    let person = match state.index.person(&path.namespace, &session.user) {
        Some(person) => Some(person),
        None if now - session.iat <= FRESH_SESSION_SECS => fresh_user(state, &session).await,
        None => None,
    };
    let groups = match &person {
        Some(_) => state
            .index
            .group_names_of(&path.namespace, &path.policy, &session.user),
        None => Vec::new(),
    };
    let saml = policy.spec.saml.as_ref().expect("a gate policy has SAML");
    let rules = Rules {
        allowed_groups: &access.allowed_groups,
        lifetime_secs: trust::session_lifetime(saml).as_secs() as i64,
    };
    decide::check(
        &session,
        &path.namespace,
        &path.policy,
        person.as_deref(),
        &groups,
        rules,
        now,
    )?;
    let person = person.expect("a passed check has its User");
    Ok((session.user, person, groups))
}

/// The User of a session minted a moment ago, read once from the API and
/// recorded in the index (a read, never a write).
async fn fresh_user(state: &SamlState, session: &Session) -> Option<Arc<Person>> {
    let users: kube::Api<User> = kube::Api::namespaced(state.client.clone(), &session.namespace);
    match users.get_opt(&session.user).await {
        Ok(Some(user)) if user.metadata.deletion_timestamp.is_none() => {
            state.index.observe_user(&user);
            Some(Arc::new(Person::of_user(&user)))
        }
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(user = %session.user, %error, "gate: could not read a new session's User");
            None
        }
    }
}

fn count(path: &PolicyPath, outcome: &Result<Passed, Denial>) {
    let outcome = match outcome {
        Ok(_) => "allowed",
        Err(denial) => {
            // NoSession is every anonymous request: not worth a line each.
            if *denial == Denial::NoSession {
                tracing::debug!(namespace = %path.namespace, policy = %path.policy, reason = denial.reason(), "gate: denied");
            } else {
                tracing::info!(namespace = %path.namespace, policy = %path.policy, reason = denial.reason(), "gate: denied");
            }
            denial.reason()
        }
    };
    crate::metrics::METRICS
        .gate_checks
        .get_or_create(&crate::metrics::GateCheck {
            policy: format!("{}/{}", path.namespace, path.policy),
            outcome: outcome.to_owned(),
        })
        .inc();
}

#[derive(Deserialize)]
struct ReturnTo {
    /// Where to go afterwards (ingress-nginx's `auth-signin` appends `rd`).
    rd: Option<String>,
}

/// Where a denied browser is sent: straight back when its session passes
/// (another tab signed in meanwhile), a refusal page when the directory
/// refuses the user, otherwise a SAML login that returns to `rd`.
async fn signin(
    State(state): State<Arc<SamlState>>,
    Path(path): Path<PolicyPath>,
    Query(query): Query<ReturnTo>,
    headers: HeaderMap,
) -> Response {
    let policy = match gate_policy(&state, &path).await {
        Ok(policy) => policy,
        Err(response) => return response,
    };
    let access = access_of(&policy);
    let allowed_target = query.rd.as_deref().filter(|rd| {
        let allowed = &policy
            .spec
            .saml
            .as_ref()
            .expect("SAML")
            .allowed_redirect_urls;
        redirect::allowed(rd, allowed)
    });
    match verdict(&state, &path, &policy, access, &headers).await {
        Ok(_) => match allowed_target {
            Some(rd) => (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, rd.to_owned()),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
            )
                .into_response(),
            None => page::page(StatusCode::OK, "Signed in", "You are signed in."),
        },
        Err(denial) if !denial.signs_in_again() => {
            respond::denied(Convention::Traefik, denial, &Method::GET, None)
        }
        // `begin` refuses an `rd` the policy does not allow.
        Err(_) => login::begin(&state, &path.namespace, &path.policy, query.rd).await,
    }
}

/// Clears the session cookie, then goes to `rd` when the policy allows it.
async fn signout(
    State(state): State<Arc<SamlState>>,
    Path(path): Path<PolicyPath>,
    Query(query): Query<ReturnTo>,
) -> Response {
    let policy = match gate_policy(&state, &path).await {
        Ok(policy) => policy,
        Err(response) => return response,
    };
    let access = policy.spec.access.clone().unwrap_or_default();
    let allowed = &policy
        .spec
        .saml
        .as_ref()
        .expect("SAML")
        .allowed_redirect_urls;
    let mut response = match query.rd.filter(|rd| redirect::allowed(rd, allowed)) {
        Some(rd) => (StatusCode::SEE_OTHER, [(header::LOCATION, rd)]).into_response(),
        None => page::page(StatusCode::OK, "Signed out", "You are signed out."),
    };
    let cleared = session::set_cookie_for(
        &session::session_cookie(&path.namespace, &path.policy),
        "",
        access.cookie_domain.as_deref(),
        "/",
        0,
        SameSite::Lax,
    );
    if let Ok(value) = HeaderValue::from_str(&cleared) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
