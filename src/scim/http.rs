//! The SCIM HTTP surface: `/scim/{namespace}/{policy}/v2/...` (RFC 7644).
//!
//! Handlers authenticate, check the policy's mode, then call the pure pieces
//! (resource mapping, filter, PATCH engine, projection) between a read from
//! and a write to the directory in the Kubernetes API.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::Value;

use super::error::ScimError;
use super::filter::{Filter, IndexLookup, IndexedAttribute};
use super::list::{ListQuery, Projection, page, project};
use super::ratelimit::RateLimits;
use super::resource::{self, Location, etag};
use super::schema::ResourceType;
use super::{discovery, patch};
use crate::api::{Group, GroupMember, MemberKind, Mode, ProvisioningPolicy, User};
use crate::deadline::{self, Deadline};
use crate::directory::audit::{Audit, Change};
use crate::directory::membership::MembershipIndex;
use crate::directory::policies::{PolicyCache, is_policy_ref};
use crate::directory::store::{Directory, MemberWrite, StoreError};
use crate::directory::tokens::TokenCache;
use crate::directory::writers::{self, Writer};
use crate::public_url::PublicUrl;

/// The largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Attempts at a read-modify-write before giving up with 409.
const WRITE_ATTEMPTS: usize = 5;
const SCIM_JSON: &str = "application/scim+json";

/// What every handler needs.
#[derive(Clone)]
pub struct ScimState {
    pub client: kube::Client,
    /// Where each group member lives; run it with [`MembershipIndex::run`].
    pub index: MembershipIndex,
    /// Publishes an Event per change.
    pub audit: Audit,
    /// Token buckets per policy.
    pub rate_limits: RateLimits,
    /// The policies, watched; run it with [`PolicyCache::run`].
    pub policies: PolicyCache,
    /// The token Secrets' hashes, read at most every few seconds.
    pub tokens: TokenCache,
    /// Where clients reach Roster, for `meta.location`.
    pub public_url: PublicUrl,
}

/// The SCIM routes, to be merged into the server's router.
pub fn router(state: ScimState) -> Router {
    let v2 = "/scim/{namespace}/{policy}/v2";
    Router::new()
        .route(
            &format!("{v2}/ServiceProviderConfig"),
            any(service_provider_config),
        )
        .route(&format!("{v2}/ResourceTypes"), any(resource_types))
        .route(&format!("{v2}/ResourceTypes/{{name}}"), any(resource_type))
        .route(&format!("{v2}/Schemas"), any(schemas))
        .route(&format!("{v2}/Schemas/{{id}}"), any(schema))
        .route(&format!("{v2}/Users"), get(list_users).post(create_user))
        .route(
            &format!("{v2}/Users/.search"),
            axum::routing::post(search_users),
        )
        .route(
            &format!("{v2}/Users/{{id}}"),
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(&format!("{v2}/Groups"), get(list_groups).post(create_group))
        .route(
            &format!("{v2}/Groups/.search"),
            axum::routing::post(search_groups),
        )
        .route(
            &format!("{v2}/Groups/{{id}}"),
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route(&format!("{v2}/.search"), axum::routing::post(search_all))
        .route(v2, any(not_found))
        .route(&format!("{v2}/{{*rest}}"), any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            deadline::Budget {
                surface: "scim",
                duration: deadline::REQUEST_BUDGET,
                expired: over_budget,
            },
            deadline::bound,
        ))
        .layer(axum::middleware::from_fn(measure))
        .with_state(state)
}

/// The answer when the Kubernetes API did not answer within the budget.
fn over_budget() -> Response {
    let mut error = ScimError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "the directory did not answer in time; retry later",
    );
    error.retry_after = Some(deadline::RETRY_AFTER_SECONDS);
    error.into_response()
}

tokio::task_local! {
    /// The policy a request authenticated for, which [`authorize`] reports
    /// to [`measure`] (the handler runs inside the middleware's task).
    static AUTHENTICATED: std::cell::RefCell<Option<String>>;
}

/// Counts and times every SCIM request. Every label value comes from a fixed
/// set, except the policy, named only once the request has authenticated for
/// it (so it exists): random paths and methods add no series.
async fn measure(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let method = method_label(request.method());
    let resource = resource_label(request.uri().path());
    let span = tracing::info_span!(
        "scim",
        method,
        resource,
        request = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        policy = tracing::field::Empty,
    );
    let (response, policy) = AUTHENTICATED
        .scope(std::cell::RefCell::new(None), async {
            let response = tracing::Instrument::instrument(next.run(request), span).await;
            (response, AUTHENTICATED.with(|policy| policy.take()))
        })
        .await;
    let metrics = &crate::metrics::METRICS;
    if let Some(policy) = &policy {
        // What the SCIM-push-stopped alert watches.
        metrics
            .scim_last_request
            .get_or_create(&crate::metrics::Policy {
                policy: policy.clone(),
            })
            .set(k8s_openapi::jiff::Timestamp::now().as_second());
    }
    let policy = policy.unwrap_or_else(|| "unauthenticated".to_owned());
    metrics
        .scim_requests
        .get_or_create(&crate::metrics::ScimRequest {
            policy: policy.clone(),
            method: method.to_owned(),
            resource: resource.to_owned(),
            status: response.status().as_u16(),
        })
        .inc();
    metrics
        .scim_request_seconds
        .get_or_create(&crate::metrics::ScimRoute {
            policy,
            method: method.to_owned(),
            resource: resource.to_owned(),
        })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The method as a label: the ones SCIM uses, every other one `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The resource of `/scim/{namespace}/{policy}/v2/{resource}/...` as a
/// label: a known one, else `other`.
fn resource_label(path: &str) -> &'static str {
    match path.split('/').nth(5) {
        Some("Users") => "Users",
        Some("Groups") => "Groups",
        Some("Schemas") => "Schemas",
        Some("ResourceTypes") => "ResourceTypes",
        Some("ServiceProviderConfig") => "ServiceProviderConfig",
        Some(".search") => ".search",
        _ => "other",
    }
}

// ----- responses ------------------------------------------------------------

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, scim_json(&self.to_json())).into_response();
        let retry_after = match (self.retry_after, self.status) {
            (Some(seconds), _) => Some(seconds),
            (None, StatusCode::SERVICE_UNAVAILABLE) => Some(5),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn scim_json(body: &Value) -> impl IntoResponse + use<> {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON))],
        body.to_string(),
    )
}

fn resource_response(status: StatusCode, body: Value) -> Response {
    let mut response = (status, scim_json(&body)).into_response();
    let headers = response.headers_mut();
    if let Some(version) = body["meta"]["version"]
        .as_str()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::ETAG, version);
    }
    if status == StatusCode::CREATED {
        if let Some(location) = body["meta"]["location"]
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::LOCATION, location);
        }
    }
    response
}

impl From<StoreError> for ScimError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UserNameTaken(_) => ScimError::uniqueness(error.to_string()),
            StoreError::KeptElsewhere(_) => ScimError::mutability(error.to_string()),
            StoreError::NotAMember(_) | StoreError::Invalid(_) => {
                ScimError::invalid_value(error.to_string())
            }
            StoreError::Conflict => ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                None,
                "the resource changed since it was read; read it again and retry",
            ),
            StoreError::Unavailable(error) => {
                tracing::warn!(%error, "Kubernetes API unavailable");
                ScimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the directory is temporarily unavailable; retry later",
                )
            }
            StoreError::Refused(kube::Error::Api(status)) if status.code == 422 => {
                ScimError::invalid_value(status.message)
            }
            StoreError::Refused(error) => {
                tracing::error!(%error, "Kubernetes API refused a SCIM write");
                ScimError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "the directory refused the change",
                )
            }
        }
    }
}

async fn not_found() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}

async fn method_not_allowed() -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        "method not allowed on this endpoint",
    )
}

// ----- authentication and mode ------------------------------------------------

/// One request's view: the directory and where it is served.
struct Scope {
    namespace: String,
    policy: String,
    directory: Directory,
    base_url: String,
    audit: Audit,
    request_id: String,
}

/// Every SCIM route's preamble as an extractor: the policy named by the
/// path, the bearer token, the rate limit and the mode, before the body is
/// read.
impl FromRequestParts<ScimState> for Scope {
    type Rejection = ScimError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ScimState,
    ) -> Result<Self, Self::Rejection> {
        let Path(PolicyPath { namespace, policy }) =
            Path::<PolicyPath>::from_request_parts(parts, state)
                .await
                .map_err(|_| ScimError::not_found("no such SCIM endpoint"))?;
        let scope = authorize(state, &namespace, &policy, &parts.headers).await?;
        // Set by the budget layer; a handler called without it gets its own.
        let deadline = parts.extensions.get::<Deadline>().copied();
        Ok(Scope {
            directory: scope
                .directory
                .until(deadline.unwrap_or_else(Deadline::from_now)),
            ..scope
        })
    }
}

/// The `{namespace}/{policy}` every SCIM route starts with.
#[derive(serde::Deserialize)]
struct PolicyPath {
    namespace: String,
    policy: String,
}

/// The `{id}` of a resource or schema route.
#[derive(serde::Deserialize)]
struct Id {
    id: String,
}

/// The `{name}` of a resource type route.
#[derive(serde::Deserialize)]
struct Name {
    name: String,
}

impl Scope {
    fn location(&self) -> Location<'_> {
        Location {
            base_url: &self.base_url,
        }
    }

    fn record<K: kube::Resource<DynamicType = ()>>(
        &self,
        object: &K,
        change: Change,
        note: String,
    ) {
        self.audit
            .record(object, &self.policy, change, &self.request_id, note);
    }
}

/// The Change a new user spec makes to an old one.
fn user_change(before: &User, after: &User) -> Change {
    match (before.spec.is_active(), after.spec.is_active()) {
        (true, false) => Change::Deactivated,
        (false, true) => Change::Reactivated,
        _ => Change::Updated,
    }
}

/// Checks the bearer token against the policy's token Secret (every value
/// counts, compared in constant time; see [`crate::directory::tokens`] for how long a
/// revoked token lingers) and that the policy is in Scim mode.
async fn authorize(
    state: &ScimState,
    namespace: &str,
    policy_name: &str,
    headers: &HeaderMap,
) -> Result<Scope, ScimError> {
    let directory = Directory::new(
        state.client.clone(),
        state.index.clone(),
        namespace,
        policy_name,
    );
    let unauthorized = || {
        ScimError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "a valid bearer token is required",
        )
    };
    // Segments that can't name a policy: no such endpoint, and no lookup.
    if !is_policy_ref(namespace, policy_name) {
        return Err(ScimError::not_found("no such SCIM endpoint"));
    }
    let policy = state
        .policies
        .get(&state.client, namespace, policy_name)
        .await
        .map_err(StoreError::from)?;
    let Some(policy) = policy else {
        tracing::info!(
            namespace,
            policy = policy_name,
            reason = state.policies.why_unknown(namespace),
            "SCIM request for an unknown policy"
        );
        return Err(unauthorized());
    };
    match &policy.spec.scim {
        Some(scim) => {
            let presented = bearer_token(headers).ok_or_else(unauthorized)?;
            let secret = &scim.token_secret_ref.name;
            let accepted = state
                .tokens
                .check(namespace, secret, presented.as_bytes(), || {
                    directory.token_values(secret)
                })
                .await?;
            if !accepted {
                tracing::info!(
                    namespace,
                    policy = policy_name,
                    "SCIM request with a wrong bearer token"
                );
                return Err(unauthorized());
            }
            // Outside `measure` (a handler called directly) there is no slot.
            let _ = AUTHENTICATED.try_with(|slot| {
                slot.replace(Some(format!("{namespace}/{policy_name}")));
            });
            tracing::Span::current().record("policy", format!("{namespace}/{policy_name}"));
            // Only authenticated requests spend the identity provider's budget.
            if let Err(wait) = state
                .rate_limits
                .check(namespace, policy_name, &scim.rate_limit)
            {
                let mut error = ScimError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    None,
                    "too many requests for this policy; retry later",
                );
                error.retry_after = Some(wait.as_secs().max(1));
                return Err(error);
            }
        }
        // No tokens configured: only a Jit policy can be like this (CEL
        // requires them in Scim mode); the mode check below answers it.
        None if policy.spec.mode == Mode::Jit => {}
        None => return Err(unauthorized()),
    }
    writers::may_write(policy.spec.mode, Writer::Scim)
        .map_err(|refusal| ScimError::new(StatusCode::FORBIDDEN, None, refusal.to_string()))?;
    Ok(Scope {
        namespace: namespace.to_owned(),
        policy: policy_name.to_owned(),
        directory,
        base_url: base_url(state, &policy, headers),
        audit: state.audit.clone(),
        request_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned(),
    })
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn base_url(state: &ScimState, policy: &ProvisioningPolicy, headers: &HeaderMap) -> String {
    let origin = state.public_url.origin(headers);
    format!(
        "{origin}/scim/{}/{}/v2",
        policy.metadata.namespace.as_deref().unwrap_or_default(),
        policy.metadata.name.as_deref().unwrap_or_default()
    )
}

// ----- discovery ---------------------------------------------------------------

async fn service_provider_config(method: Method, scope: Scope) -> Result<Response, ScimError> {
    let scope = discovery_scope(scope, &method)?;
    Ok(resource_response(
        StatusCode::OK,
        discovery::service_provider_config(&scope.base_url),
    ))
}

async fn resource_types(method: Method, scope: Scope) -> Result<Response, ScimError> {
    let scope = discovery_scope(scope, &method)?;
    Ok(whole_list(discovery::resource_types(&scope.base_url)))
}

async fn resource_type(
    method: Method,
    scope: Scope,
    Path(Name { name }): Path<Name>,
) -> Result<Response, ScimError> {
    let scope = discovery_scope(scope, &method)?;
    by_id(
        discovery::resource_types(&scope.base_url),
        &name,
        "resource type",
    )
}

async fn schemas(method: Method, scope: Scope) -> Result<Response, ScimError> {
    let scope = discovery_scope(scope, &method)?;
    Ok(whole_list(discovery::schemas(&scope.base_url)))
}

async fn schema(
    method: Method,
    scope: Scope,
    Path(Id { id }): Path<Id>,
) -> Result<Response, ScimError> {
    let scope = discovery_scope(scope, &method)?;
    by_id(discovery::schemas(&scope.base_url), &id, "schema")
}

/// A discovery list, whole, as one ListResponse page.
fn whole_list(all: Vec<Value>) -> Response {
    let count = all.len();
    resource_response(StatusCode::OK, page(all, 1, count))
}

/// The discovery document whose `id` is `id` (compared case-insensitively).
fn by_id(all: Vec<Value>, id: &str, what: &str) -> Result<Response, ScimError> {
    all.into_iter()
        .find(|doc| {
            doc["id"]
                .as_str()
                .is_some_and(|d| d.eq_ignore_ascii_case(id))
        })
        .map(|doc| resource_response(StatusCode::OK, doc))
        .ok_or_else(|| ScimError::not_found(format!("no {what} {id}")))
}

/// A stable order (creation time, then id), so paging is deterministic:
/// Ping finds groups by paging through everything.
fn sort_for_paging(resources: &mut [Value]) {
    resources.sort_by(|a, b| {
        a["meta"]["created"]
            .as_str()
            .cmp(&b["meta"]["created"].as_str())
            .then(a["id"].as_str().cmp(&b["id"].as_str()))
    });
}

/// Discovery endpoints answer GET only (RFC 7644 section 4), after auth.
fn discovery_scope(scope: Scope, method: &Method) -> Result<Scope, ScimError> {
    if method != Method::GET {
        return Err(ScimError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "discovery endpoints answer GET only",
        ));
    }
    Ok(scope)
}

// ----- shared request handling --------------------------------------------------

fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ScimError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("the request body exceeds {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ScimError::invalid_syntax(rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("malformed JSON: {e}")))
}

/// `If-Match` (RFC 7644 section 3.14): `*` or a list of ETags.
fn check_if_match(headers: &HeaderMap, current: &str) -> Result<bool, ScimError> {
    let Some(value) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) else {
        return Ok(false);
    };
    let matches = value.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag == current
            || tag.trim_start_matches("W/") == current.trim_start_matches("W/")
    });
    if matches {
        Ok(true)
    } else {
        Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            format!("If-Match {value} does not match the current version {current}"),
        ))
    }
}

fn parse_filter(
    text: Option<&str>,
    resource_type: ResourceType,
) -> Result<Option<Filter>, ScimError> {
    text.map(|t| {
        let filter = Filter::parse(t)?;
        filter.validate(resource_type)?;
        Ok(filter)
    })
    .transpose()
}

// ----- Users ----------------------------------------------------------------------

async fn list_users(
    scope: Scope,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_params(&params)?;
    Ok(resource_response(
        StatusCode::OK,
        query_users(&scope, &query).await?,
    ))
}

async fn search_users(
    scope: Scope,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_search_body(&json_body(body)?)?;
    Ok(resource_response(
        StatusCode::OK,
        query_users(&scope, &query).await?,
    ))
}

async fn matching_users(scope: &Scope, query: &ListQuery) -> Result<Vec<Value>, ScimError> {
    let filter = parse_filter(query.filter.as_deref(), ResourceType::User)?;
    // The lookup every IdP makes before creating: one claim GET, no list.
    let lookup = filter
        .as_ref()
        .and_then(|f| f.index_lookup(ResourceType::User));
    let users: Vec<User> = match lookup {
        Some(IndexLookup {
            attribute: IndexedAttribute::UserName,
            value,
            ..
        }) => scope
            .directory
            .user_by_name(value)
            .await?
            .into_iter()
            .collect(),
        Some(IndexLookup {
            attribute: IndexedAttribute::Id,
            value,
            ..
        }) => scope.directory.user(value).await?.into_iter().collect(),
        _ => scope.directory.users().await?,
    };
    let location = scope.location();
    let mut resources: Vec<Value> = users
        .iter()
        .map(|u| resource::user_to_scim(u, &location))
        .filter(|r| {
            filter
                .as_ref()
                .is_none_or(|f| f.matches(r, ResourceType::User))
        })
        .collect();
    sort_for_paging(&mut resources);
    Ok(resources)
}

async fn query_users(scope: &Scope, query: &ListQuery) -> Result<Value, ScimError> {
    let resources = matching_users(scope, query).await?;
    let projected = resources
        .into_iter()
        .map(|r| project(r, ResourceType::User, &query.projection))
        .collect();
    Ok(page(projected, query.start_index, query.count))
}

async fn get_user(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let projection = Projection::from_params(&params)?;
    let user = existing_user(&scope, &id).await?;
    let body = resource::user_to_scim(&user, &scope.location());
    Ok(resource_response(
        StatusCode::OK,
        project(body, ResourceType::User, &projection),
    ))
}

async fn existing_user(scope: &Scope, id: &str) -> Result<User, ScimError> {
    scope
        .directory
        .user(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no User with id {id}")))
}

async fn create_user(
    scope: Scope,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let (namespace, policy) = (scope.namespace.as_str(), scope.policy.as_str());
    let projection = Projection::from_params(&params)?;
    let spec = resource::user_from_scim(&json_body(body)?, policy)?;
    resource::check_user_name(&spec, None)?;
    let (user, adopted) = scope
        .directory
        .create_or_adopt_user(spec)
        .await
        .map_err(uniqueness_or)?;
    tracing::info!(
        namespace,
        policy,
        user = user.metadata.name.as_deref(),
        request = scope.request_id,
        "SCIM created a user"
    );
    if adopted {
        scope.record(
            &user,
            Change::Adopted,
            format!(
                "adopted userName {} created just in time before the policy switched to Scim",
                user.spec.user_name
            ),
        );
    } else {
        scope.record(
            &user,
            Change::Created,
            format!("created userName {}", user.spec.user_name),
        );
    }
    let body = resource::user_to_scim(&user, &scope.location());
    Ok(resource_response(
        StatusCode::CREATED,
        project(body, ResourceType::User, &projection),
    ))
}

/// A claim conflict that isn't a live holder ends as a retryable 409.
fn uniqueness_or(error: StoreError) -> ScimError {
    match error {
        StoreError::Conflict => {
            ScimError::uniqueness("the userName is being claimed concurrently; retry")
        }
        other => other.into(),
    }
}

async fn replace_user(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let policy = scope.policy.as_str();
    let projection = Projection::from_params(&params)?;
    let body = json_body(body)?;
    let current = existing_user(&scope, &id).await?;
    let conditional = check_if_match(&headers, &etag(current.metadata.generation))?;
    let mut spec = resource::user_from_scim(&body, policy)?;
    resource::check_user_name(&spec, Some(&current.spec))?;
    // Fields SCIM doesn't carry stay as they are.
    spec.subject = current.spec.subject.clone();
    let rv = conditional
        .then(|| current.metadata.resource_version.clone())
        .flatten();
    let user = scope.directory.replace_user(&current, spec, rv).await?;
    scope.record(
        &user,
        user_change(&current, &user),
        format!("replaced userName {}", user.spec.user_name),
    );
    let body = resource::user_to_scim(&user, &scope.location());
    Ok(resource_response(
        StatusCode::OK,
        project(body, ResourceType::User, &projection),
    ))
}

async fn patch_user(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let policy = scope.policy.as_str();
    let projection = Projection::from_params(&params)?;
    let request = json_body(body)?;
    for _ in 0..WRITE_ATTEMPTS {
        let current = existing_user(&scope, &id).await?;
        let conditional = check_if_match(&headers, &etag(current.metadata.generation))?;
        let before = resource::user_to_scim(&current, &scope.location());
        let after = patch::apply(&before, &request, ResourceType::User)?;
        if after == before {
            return Ok(resource_response(
                StatusCode::OK,
                project(before, ResourceType::User, &projection),
            ));
        }
        let mut spec = resource::user_from_scim(&after, policy)?;
        resource::check_user_name(&spec, Some(&current.spec))?;
        spec.subject = current.spec.subject.clone();
        // Always conditional: a concurrent change makes us re-read, never lose it.
        match scope
            .directory
            .replace_user(&current, spec, current.metadata.resource_version.clone())
            .await
        {
            Ok(user) => {
                scope.record(
                    &user,
                    user_change(&current, &user),
                    format!("patched userName {}", user.spec.user_name),
                );
                let body = resource::user_to_scim(&user, &scope.location());
                return Ok(resource_response(
                    StatusCode::OK,
                    project(body, ResourceType::User, &projection),
                ));
            }
            Err(StoreError::Conflict) if !conditional => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ScimError::new(
        StatusCode::CONFLICT,
        None,
        "the user kept changing concurrently; retry",
    ))
}

async fn delete_user(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let (namespace, policy) = (scope.namespace.as_str(), scope.policy.as_str());
    let current = existing_user(&scope, &id).await?;
    let conditional = check_if_match(&headers, &etag(current.metadata.generation))?;
    let rv = conditional
        .then(|| current.metadata.resource_version.clone())
        .flatten();
    scope.directory.delete_user(&current, rv).await?;
    tracing::info!(
        namespace,
        policy,
        user = id,
        request = scope.request_id,
        "SCIM deleted a user"
    );
    scope.record(
        &current,
        Change::Deleted,
        format!("deleted userName {}", current.spec.user_name),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- Groups ---------------------------------------------------------------------

async fn list_groups(
    scope: Scope,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_params(&params)?;
    Ok(resource_response(
        StatusCode::OK,
        query_groups(&scope, &query).await?,
    ))
}

async fn search_groups(
    scope: Scope,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_search_body(&json_body(body)?)?;
    Ok(resource_response(
        StatusCode::OK,
        query_groups(&scope, &query).await?,
    ))
}

async fn group_to_scim(
    scope: &Scope,
    group: &Group,
    projection: &Projection,
) -> Result<Value, ScimError> {
    // Entra asks for groups with excludedAttributes=members: don't load them.
    let members = if projection.excludes("members") {
        None
    } else {
        Some(scope.directory.members(group).await?)
    };
    Ok(resource::group_to_scim(
        group,
        members.as_deref(),
        &scope.location(),
    ))
}

async fn matching_groups(scope: &Scope, query: &ListQuery) -> Result<Vec<Value>, ScimError> {
    let filter = parse_filter(query.filter.as_deref(), ResourceType::Group)?;
    let needs_members = filter
        .as_ref()
        .is_some_and(|f| f.references(ResourceType::Group, "members"));
    let lookup = filter
        .as_ref()
        .and_then(|f| f.index_lookup(ResourceType::Group));
    let groups: Vec<Group> = match lookup {
        Some(IndexLookup {
            attribute: IndexedAttribute::Id,
            value,
            ..
        }) => scope.directory.group(value).await?.into_iter().collect(),
        _ => scope.directory.groups().await?,
    };
    let mut resources = Vec::new();
    for group in &groups {
        let projection = if needs_members {
            Projection::default()
        } else {
            query.projection.clone()
        };
        let resource = group_to_scim(scope, group, &projection).await?;
        if filter
            .as_ref()
            .is_none_or(|f| f.matches(&resource, ResourceType::Group))
        {
            resources.push(resource);
        }
    }
    sort_for_paging(&mut resources);
    Ok(resources)
}

async fn query_groups(scope: &Scope, query: &ListQuery) -> Result<Value, ScimError> {
    let resources = matching_groups(scope, query).await?;
    let projected = resources
        .into_iter()
        .map(|r| project(r, ResourceType::Group, &query.projection))
        .collect();
    Ok(page(projected, query.start_index, query.count))
}

async fn existing_group(scope: &Scope, id: &str) -> Result<Group, ScimError> {
    scope
        .directory
        .group(id)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no Group with id {id}")))
}

async fn get_group(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let projection = Projection::from_params(&params)?;
    let group = existing_group(&scope, &id).await?;
    let body = group_to_scim(&scope, &group, &projection).await?;
    Ok(resource_response(
        StatusCode::OK,
        project(body, ResourceType::Group, &projection),
    ))
}

async fn create_group(
    scope: Scope,
    Query(params): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let (namespace, policy) = (scope.namespace.as_str(), scope.policy.as_str());
    let projection = Projection::from_params(&params)?;
    let (spec, members) = resource::group_from_scim(&json_body(body)?, policy)?;
    let members = members.unwrap_or_default();
    scope.directory.check_new_members(None, &members).await?;
    let (group, adopted) = scope.directory.create_or_adopt_group(spec, members).await?;
    tracing::info!(
        namespace,
        policy,
        group = group.metadata.name.as_deref(),
        request = scope.request_id,
        adopted,
        "SCIM created a group"
    );
    let (change, verb) = if adopted {
        (Change::Adopted, "adopted the group JIT logins created,")
    } else {
        (Change::Created, "created group")
    };
    scope.record(
        &group,
        change,
        format!("{verb} {}", group.spec.display_name),
    );
    let body = group_to_scim(&scope, &group, &projection).await?;
    Ok(resource_response(
        StatusCode::CREATED,
        project(body, ResourceType::Group, &projection),
    ))
}

async fn replace_group(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let policy = scope.policy.as_str();
    let projection = Projection::from_params(&params)?;
    let body = json_body(body)?;
    let current = existing_group(&scope, &id).await?;
    let conditional = check_if_match(&headers, &etag(current.metadata.generation))?;
    let (spec, members) = resource::group_from_scim(&body, policy)?;
    // PUT replaces: no members listed means none.
    let members = members.unwrap_or_default();
    // Before any write, so a refused member leaves the group as it was.
    scope
        .directory
        .check_new_members(Some(&id), &members)
        .await?;
    let rv = conditional
        .then(|| current.metadata.resource_version.clone())
        .flatten();
    let group = scope.directory.apply_group(&id, &spec, rv).await?;
    scope
        .directory
        .write_members(&group, MemberWrite::Replace(&members))
        .await?;
    scope.record(
        &group,
        Change::Updated,
        format!("replaced group {}", group.spec.display_name),
    );
    let body = group_to_scim(&scope, &group, &projection).await?;
    Ok(resource_response(
        StatusCode::OK,
        project(body, ResourceType::Group, &projection),
    ))
}

async fn patch_group(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let policy = scope.policy.as_str();
    let request = json_body(body)?;
    let mut group = existing_group(&scope, &id).await?;
    let conditional = check_if_match(&headers, &etag(group.metadata.generation))?;
    let before = resource::group_to_scim(&group, None, &scope.location());
    // Members live in slices: the engine says how they change without them.
    let (after, change) = patch::apply_group(&before, &request)?;
    // Before any write, so a refused member leaves the group as it was.
    let added = group_members(change.replace_all.as_ref().unwrap_or(&change.add));
    scope.directory.check_new_members(Some(&id), &added).await?;
    if after != before {
        let (spec, _) = resource::group_from_scim(&after, policy)?;
        let rv = conditional
            .then(|| group.metadata.resource_version.clone())
            .flatten();
        group = scope.directory.apply_group(&id, &spec, rv).await?;
        scope.record(
            &group,
            Change::Updated,
            format!("patched group {}", group.spec.display_name),
        );
    }
    let write = if change.replace_all.is_some() || change.remove_all {
        MemberWrite::Replace(&added)
    } else {
        MemberWrite::Change {
            add: &added,
            remove: &change.remove,
        }
    };
    scope.directory.write_members(&group, write).await?;
    if !change.is_empty() {
        let note = match &change.replace_all {
            Some(all) => format!("replaced the members with {} members", all.len()),
            None => format!(
                "added {} and removed {} members{}",
                change.add.len(),
                change.remove.len(),
                if change.remove_all {
                    " after removing all"
                } else {
                    ""
                }
            ),
        };
        scope.record(&group, Change::MembersChanged, note);
    }
    let params_given = params.keys().any(|k| {
        k.eq_ignore_ascii_case("attributes") || k.eq_ignore_ascii_case("excludedAttributes")
    });
    if !params_given {
        // Entra expects 204 for group PATCH and no member list echoed.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let projection = Projection::from_params(&params)?;
    let body = group_to_scim(&scope, &group, &projection).await?;
    Ok(resource_response(
        StatusCode::OK,
        project(body, ResourceType::Group, &projection),
    ))
}

fn group_members(members: &[patch::Member]) -> Vec<GroupMember> {
    members
        .iter()
        .map(|m| GroupMember {
            value: m.value.clone(),
            user_name: None,
            kind: match m.r#type.as_deref() {
                Some(t) if t.eq_ignore_ascii_case("group") => MemberKind::Group,
                _ => MemberKind::User,
            },
            display: m.display.clone(),
        })
        .collect()
}

async fn delete_group(
    scope: Scope,
    Path(Id { id }): Path<Id>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let (namespace, policy) = (scope.namespace.as_str(), scope.policy.as_str());
    let current = existing_group(&scope, &id).await?;
    let conditional = check_if_match(&headers, &etag(current.metadata.generation))?;
    let rv = conditional
        .then(|| current.metadata.resource_version.clone())
        .flatten();
    scope.directory.delete_group(&current, rv).await?;
    tracing::info!(
        namespace,
        policy,
        group = id,
        request = scope.request_id,
        "SCIM deleted a group"
    );
    scope.record(
        &current,
        Change::Deleted,
        format!("deleted group {}", current.spec.display_name),
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /.search` at the root: Users and Groups together (RFC 7644 section 3.4.3).
async fn search_all(
    scope: Scope,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ScimError> {
    let query = ListQuery::from_search_body(&json_body(body)?)?;
    let mut resources: Vec<Value> = matching_users(&scope, &query)
        .await?
        .into_iter()
        .map(|r| project(r, ResourceType::User, &query.projection))
        .collect();
    resources.extend(
        matching_groups(&scope, &query)
            .await?
            .into_iter()
            .map(|r| project(r, ResourceType::Group, &query.projection)),
    );
    Ok(resource_response(
        StatusCode::OK,
        page(resources, query.start_index, query.count),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_come_from_fixed_sets() {
        for (method, label) in [("GET", "GET"), ("PROPFIND", "other"), ("FOO", "other")] {
            assert_eq!(
                method_label(&Method::from_bytes(method.as_bytes()).unwrap()),
                label
            );
        }
        assert_eq!(resource_label("/scim/ns/p/v2/Users/123"), "Users");
        assert_eq!(resource_label("/scim/ns/p/v2/x7f3a"), "other");
        assert_eq!(resource_label("/elsewhere"), "other");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
    }

    #[test]
    fn if_match_accepts_star_and_the_current_version_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(check_if_match(&headers, "W/\"2\""), Ok(false));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"2\""));
        assert_eq!(check_if_match(&headers, "W/\"2\""), Ok(true));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(check_if_match(&headers, "W/\"2\""), Ok(true));
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"1\""));
        assert_eq!(check_if_match(&headers, "W/\"2\"").unwrap_err().status, 412);
    }
}
