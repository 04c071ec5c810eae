//! Roster as a SCIM 2.0 client (RFC 7644) of an application that speaks SCIM.
//!
//! Every call is one or a few plain requests; what each HTTP answer means is a
//! pure function ([`error_for`]) so the mapping is tested without a server.
//! Creates are made safe to repeat by adoption: a 409 on create means the
//! application already holds that userName (perhaps from a sync that crashed
//! before recording the id), so the existing account's id is returned.

use std::fmt;
use std::time::Instant;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, StatusCode};
use k8s_openapi::jiff::Timestamp;
use reqwest::Url;
use serde_json::{Map, Value, json};

use super::{
    Connector, ConnectorError, DesiredGroup, DesiredUser, RemoteAccount, Result,
    describe_transport_error, excerpt, http_client, retry_after_from,
};
use crate::identity;

pub use crate::urns::{GROUP_SCHEMA, PATCH_OP_SCHEMA, USER_SCHEMA};

/// The most members one membership PATCH carries. Applications cap request
/// sizes (Entra and Okta send membership in pages of a few hundred); 256 keeps
/// a request well under the usual 1 MiB body limits.
pub const MAX_MEMBERS_PER_PATCH: usize = 256;

const SCIM_JSON: &str = "application/scim+json";

/// A SCIM service provider at `base_url`, authenticated with a bearer token.
#[derive(Clone)]
pub struct ScimConnector {
    base: Url,
    /// `Bearer <token>`, marked sensitive so even hyper's Debug hides it.
    authorization: HeaderValue,
    http: reqwest::Client,
}

impl fmt::Debug for ScimConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimConnector")
            .field("base_url", &self.base_url())
            .field("token", &"<redacted>")
            .finish()
    }
}

impl ScimConnector {
    /// `base_url` is the service provider's root, where `/Users` and
    /// `/Groups` live (for example `https://app.example.com/scim/v2`).
    pub fn new(base_url: &str, token: &str) -> Result<Self> {
        let mut base = Url::parse(base_url.trim()).map_err(|e| {
            ConnectorError::Misconfigured(format!("the SCIM base URL is not a URL: {e}"))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConnectorError::Misconfigured(format!(
                "the SCIM base URL must be http or https, not {:?}",
                base.scheme()
            )));
        }
        // Path segments are appended to the base; a query or fragment on it
        // would end up in the wrong place.
        base.set_query(None);
        base.set_fragment(None);
        let token = token.trim();
        if token.is_empty() {
            return Err(ConnectorError::Misconfigured(
                "the SCIM bearer token is empty".into(),
            ));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ConnectorError::Misconfigured(
                    "the SCIM bearer token holds characters not allowed in an HTTP header".into(),
                )
            })?;
        authorization.set_sensitive(true);
        Ok(Self {
            base,
            authorization,
            http: http_client()?,
        })
    }

    /// The base URL without credentials, for logs.
    pub fn base_url(&self) -> String {
        let mut url = self.base.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.as_str().trim_end_matches('/').to_owned()
    }

    /// `base/segments...`, each segment percent-encoded (remote ids are the
    /// application's and may hold any character).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in new(): the base URL can be a base")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Sends one request and reads the whole answer. Transport failures are
    /// `Unavailable`; the status is left for the caller to judge.
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let url = self.url(segments);
        let what = format!("{method} /{}", segments.join("/"));
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(ACCEPT, "application/scim+json, application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, SCIM_JSON)
                .body(body.to_string());
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| {
            ConnectorError::Unavailable(format!("{what}: {}", describe_transport_error(e)))
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| {
            ConnectorError::Unavailable(format!(
                "{what}: reading the answer: {}",
                describe_transport_error(e)
            ))
        })?;
        tracing::debug!(
            request = %what,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "SCIM call"
        );
        Ok(Answer {
            what,
            status,
            retry_after,
            location,
            body: bytes.to_vec(),
        })
    }

    /// Sends and insists on a 2xx.
    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let answer = self.send(method, segments, query, body).await?;
        match answer.error(Timestamp::now()) {
            None => Ok(answer),
            Some(error) => Err(error),
        }
    }

    /// DELETE where "already gone" (404) counts as done.
    async fn delete(&self, endpoint: &str, remote_id: &str) -> Result<()> {
        let answer = self
            .send(Method::DELETE, &[endpoint, remote_id], &[], None)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        match answer.error(Timestamp::now()) {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// The resources of a filtered list, from `GET /{endpoint}?filter=...`.
    async fn search(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Vec<Value>> {
        let answer = self.call(Method::GET, &[endpoint], query, None).await?;
        let list = answer.json()?;
        Ok(match list.get("Resources") {
            Some(Value::Array(resources)) => resources.clone(),
            _ => Vec::new(),
        })
    }

    async fn patch(&self, endpoint: &str, remote_id: &str, operations: Vec<Value>) -> Result<()> {
        let body = patch_request(operations);
        self.call(Method::PATCH, &[endpoint, remote_id], &[], Some(&body))
            .await?;
        Ok(())
    }
}

impl Connector for ScimConnector {
    async fn find_user(&self, user_name: &str) -> Result<Option<RemoteAccount>> {
        let filter = eq_filter("userName", user_name);
        let resources = self.search("Users", &[("filter", &filter)]).await?;
        Ok(
            pick(&resources, "userName", user_name).map(|user| RemoteAccount {
                id: user["id"].as_str().unwrap_or_default().to_owned(),
                active: user.get("active").and_then(Value::as_bool),
            }),
        )
    }

    async fn create_user(&self, user: &DesiredUser) -> Result<String> {
        let body = user_body(user, None);
        let answer = self
            .send(Method::POST, &["Users"], &[], Some(&body))
            .await?;
        if answer.status == StatusCode::CONFLICT {
            // RFC 7644 §3.3: 409 uniqueness — the application has this
            // userName already. Adopt it rather than fail or duplicate.
            return match self.find_user(&user.user_name).await? {
                Some(existing) => {
                    tracing::info!(
                        user = %user.id,
                        remote_id = %existing.id,
                        "adopted the application's existing account"
                    );
                    Ok(existing.id)
                }
                // The conflict is on another unique attribute (externalId,
                // an email): not ours to resolve.
                None => Err(answer.error(Timestamp::now()).expect("a 409 is an error")),
            };
        }
        if let Some(error) = answer.error(Timestamp::now()) {
            return Err(error);
        }
        answer.created_id()
    }

    async fn update_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()> {
        let body = user_body(user, Some(remote_id));
        self.call(Method::PUT, &["Users", remote_id], &[], Some(&body))
            .await?;
        Ok(())
    }

    async fn disable_user(&self, remote_id: &str, _user: &DesiredUser) -> Result<()> {
        // PATCH rather than PUT: it changes `active` alone, so nothing the
        // application added to the account is lost on the way out.
        self.patch(
            "Users",
            remote_id,
            vec![json!({"op": "replace", "path": "active", "value": false})],
        )
        .await
    }

    async fn delete_user(&self, remote_id: &str, _user: &DesiredUser) -> Result<()> {
        self.delete("Users", remote_id).await
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>> {
        let filter = eq_filter("displayName", display_name);
        // Members can be many thousands; adoption only needs the id.
        let resources = self
            .search(
                "Groups",
                &[("filter", &filter), ("excludedAttributes", "members")],
            )
            .await?;
        Ok(pick(&resources, "displayName", display_name)
            .and_then(|group| group["id"].as_str())
            .map(str::to_owned))
    }

    async fn create_group(&self, group: &DesiredGroup) -> Result<String> {
        let body = group_body(group);
        let answer = self
            .send(Method::POST, &["Groups"], &[], Some(&body))
            .await?;
        if answer.status == StatusCode::CONFLICT {
            return match self.find_group(&group.display_name).await? {
                Some(existing) => Ok(existing),
                None => Err(answer.error(Timestamp::now()).expect("a 409 is an error")),
            };
        }
        if let Some(error) = answer.error(Timestamp::now()) {
            return Err(error);
        }
        answer.created_id()
    }

    async fn update_group(&self, remote_id: &str, group: &DesiredGroup) -> Result<()> {
        // PATCH, not PUT: a PUT must carry the members, and replacing
        // thousands of them to rename a group is what the slices avoid.
        self.patch("Groups", remote_id, group_update_operations(group))
            .await
    }

    async fn delete_group(&self, remote_id: &str, _group: &DesiredGroup) -> Result<()> {
        self.delete("Groups", remote_id).await
    }

    async fn change_members(
        &self,
        remote_id: &str,
        _group: &DesiredGroup,
        add: &[String],
        remove: &[String],
        _change_id: &str,
    ) -> Result<()> {
        for operations in member_patches(add, remove) {
            self.patch("Groups", remote_id, operations).await?;
        }
        Ok(())
    }
}

/// One HTTP answer, read whole.
struct Answer {
    /// `METHOD /path`, for messages.
    what: String,
    status: StatusCode,
    retry_after: Option<String>,
    location: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self, now: Timestamp) -> Option<ConnectorError> {
        error_for(
            &self.what,
            self.status,
            self.retry_after.as_deref(),
            self.location.as_deref(),
            &self.body,
            now,
        )
    }

    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ConnectorError::Unavailable(format!(
                "{} answered {} with a body that is not JSON: {e}",
                self.what, self.status
            ))
        })
    }

    /// The `id` of a created resource. A 2xx without one is a broken answer;
    /// it is reported as transient because the retry will hit 409 and adopt
    /// whatever was created.
    fn created_id(&self) -> Result<String> {
        match self.json()?.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(ConnectorError::Unavailable(format!(
                "{} answered {} without the new resource's id",
                self.what, self.status
            ))),
        }
    }
}

/// What a SCIM answer means: `None` for success (2xx), else the error.
///
/// - 429 → `RateLimited` (its `Retry-After`, default 1 s);
/// - 5xx and 408 (the server gave up waiting) → `Unavailable`;
/// - 3xx → `Rejected`: redirects are not followed (see `http_client`), the
///   base URL should name the final location;
/// - other 4xx, 404 included → `Rejected` with the SCIM error's `detail`
///   (RFC 7644 §3.12). Callers for whom 404 means "already gone" check for it
///   before calling this.
pub fn error_for(
    what: &str,
    status: StatusCode,
    retry_after: Option<&str>,
    location: Option<&str>,
    body: &[u8],
    now: Timestamp,
) -> Option<ConnectorError> {
    if status.is_success() {
        return None;
    }
    let code = status.as_u16();
    Some(match code {
        429 => ConnectorError::RateLimited(retry_after_from(retry_after, now)),
        408 | 500..=599 => ConnectorError::Unavailable(format!(
            "{what} answered {status}{}",
            detail_of(body)
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )),
        300..=399 => ConnectorError::Rejected {
            status: code,
            detail: format!(
                "{what} was redirected to {}; set the base URL to the final location",
                location.unwrap_or("an unnamed location")
            ),
        },
        _ => ConnectorError::Rejected {
            status: code,
            detail: detail_of(body).unwrap_or_else(|| {
                format!(
                    "{what}: {}",
                    status.canonical_reason().unwrap_or("no reason given")
                )
            }),
        },
    })
}

/// The `detail` of a SCIM error body, else a short excerpt of the body.
fn detail_of(body: &[u8]) -> Option<String> {
    if let Ok(error) = serde_json::from_slice::<Value>(body) {
        let detail = error.get("detail").and_then(Value::as_str);
        let scim_type = error.get("scimType").and_then(Value::as_str);
        return match (detail, scim_type) {
            (Some(detail), Some(scim_type)) => {
                Some(format!("{} ({scim_type})", excerpt(detail, 500)))
            }
            (Some(detail), None) => Some(excerpt(detail, 500)),
            (None, Some(scim_type)) => Some(scim_type.to_owned()),
            (None, None) => None,
        };
    }
    let text = String::from_utf8_lossy(body);
    (!text.trim().is_empty()).then(|| excerpt(&text, 200))
}

/// `attribute eq "value"` with the value as a JSON string (RFC 7644 §3.4.2.2:
/// string values are JSON strings), so `"` and `\` are escaped. The whole
/// filter is URL-encoded when it becomes the query.
pub fn eq_filter(attribute: &str, value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            // Control characters would break the filter's JSON string.
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    format!("{attribute} eq {quoted}")
}

/// The resource whose `attribute` equals `value`: an exact match first, else a
/// case-insensitive one (userName and displayName are caseExact=false, RFC
/// 7643 §4.1.1, §4.2). Checked here rather than trusting the filter, because an
/// application that ignores a filter it doesn't support returns everyone, and
/// adopting "the first user" would hijack someone else's account. A userName
/// folds as Roster's own do ([`identity`]): a remote `\u{212A}evin` (Kelvin
/// sign) is never kevin's account.
fn pick<'a>(resources: &'a [Value], attribute: &str, value: &str) -> Option<&'a Value> {
    let has_id = |r: &&Value| {
        r.get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty())
    };
    let named = |r: &&Value| r.get(attribute).and_then(Value::as_str).map(str::to_owned);
    resources
        .iter()
        .filter(has_id)
        .find(|r| named(r).as_deref() == Some(value))
        .or_else(|| {
            let same = |name: &str| match attribute {
                "userName" => identity::same_user_name(name, value),
                _ => name.to_lowercase() == value.to_lowercase(),
            };
            resources
                .iter()
                .filter(has_id)
                .find(|r| named(r).is_some_and(|n| same(&n)))
        })
}

/// The body of a user create (`remote_id: None`) or full replace: the
/// desired resource with `schemas` completed, `active` from the User, and
/// `id` when replacing (RFC 7644 §3.5.1). `meta` is the server's and dropped.
pub fn user_body(user: &DesiredUser, remote_id: Option<&str>) -> Value {
    let mut resource = match &user.resource {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    resource.remove("meta");
    resource.remove("id");
    resource.insert("userName".into(), Value::String(user.user_name.clone()));
    resource.insert("active".into(), Value::Bool(user.active));
    complete_schemas(&mut resource, USER_SCHEMA);
    if let Some(id) = remote_id {
        resource.insert("id".into(), Value::String(id.to_owned()));
    }
    Value::Object(resource)
}

/// `schemas` must list the core schema and every extension the resource
/// carries (RFC 7643 §3): extensions are the top-level keys that are URNs.
fn complete_schemas(resource: &mut Map<String, Value>, core: &str) {
    let mut schemas: Vec<Value> = match resource.remove("schemas") {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let mut wanted = vec![core.to_owned()];
    wanted.extend(
        resource
            .iter()
            .filter(|(key, value)| key.starts_with("urn:") && value.is_object())
            .map(|(key, _)| key.clone()),
    );
    for urn in wanted {
        if !schemas.iter().any(|s| s.as_str() == Some(&urn)) {
            schemas.push(Value::String(urn));
        }
    }
    resource.insert("schemas".into(), Value::Array(schemas));
}

/// A group create: no members yet — they follow through `change_members`, so
/// a huge group is never one request.
pub fn group_body(group: &DesiredGroup) -> Value {
    let mut body = json!({
        "schemas": [GROUP_SCHEMA],
        "displayName": group.display_name,
        "members": [],
    });
    if let Some(external_id) = &group.external_id {
        body["externalId"] = Value::String(external_id.clone());
    }
    body
}

/// Replaces displayName, and externalId when the Group has one.
pub fn group_update_operations(group: &DesiredGroup) -> Vec<Value> {
    let mut operations = vec![json!({
        "op": "replace", "path": "displayName", "value": group.display_name,
    })];
    if let Some(external_id) = &group.external_id {
        operations.push(json!({"op": "replace", "path": "externalId", "value": external_id}));
    }
    operations
}

/// The PATCH operations of a membership change, one request's worth each, at
/// most [`MAX_MEMBERS_PER_PATCH`] members per request. Additions travel as one
/// `add` with a value list; removals as one `remove` per member with a value
/// filter (`members[value eq "id"]`, RFC 7644 §3.5.2.2) — the form every
/// server understands, unlike a `remove` with a value list. Within a request
/// additions come before removals. No change, no request.
pub fn member_patches(add: &[String], remove: &[String]) -> Vec<Vec<Value>> {
    let mut requests = Vec::new();
    let mut adds = add.chunks(MAX_MEMBERS_PER_PATCH);
    let mut removes = remove.iter().peekable();
    loop {
        let mut operations = Vec::new();
        let mut room = MAX_MEMBERS_PER_PATCH;
        if let Some(chunk) = adds.next() {
            let values: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
            operations.push(json!({"op": "add", "path": "members", "value": values}));
            room -= chunk.len();
        }
        while room > 0 {
            let Some(id) = removes.next() else { break };
            operations.push(
                json!({"op": "remove", "path": format!("members[value eq {}]", json_string(id))}),
            );
            room -= 1;
        }
        if operations.is_empty() {
            return requests;
        }
        requests.push(operations);
    }
}

fn json_string(value: &str) -> String {
    Value::String(value.to_owned()).to_string()
}

/// A PatchOp request (RFC 7644 §3.5.2).
pub fn patch_request(operations: Vec<Value>) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn user() -> DesiredUser {
        DesiredUser {
            id: "alice".into(),
            uid: "0b1c".into(),
            generation: 2,
            user_name: "alice@example.com".into(),
            active: true,
            resource: json!({
                "userName": "alice@example.com",
                "name": {"givenName": "Alice"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            }),
        }
    }

    fn group(external_id: Option<&str>) -> DesiredGroup {
        DesiredGroup {
            id: "eng".into(),
            uid: "9f8e".into(),
            generation: 1,
            display_name: "Engineering".into(),
            external_id: external_id.map(str::to_owned),
        }
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn status_error(status: u16, body: &str) -> Option<ConnectorError> {
        error_for(
            "POST /Users",
            StatusCode::from_u16(status).unwrap(),
            None,
            None,
            body.as_bytes(),
            now(),
        )
    }

    #[test]
    fn the_filter_escapes_quotes_and_backslashes() {
        assert_eq!(
            eq_filter("userName", r#"o"brien\x"#),
            r#"userName eq "o\"brien\\x""#
        );
        assert_eq!(eq_filter("userName", "bob"), r#"userName eq "bob""#);
    }

    #[test]
    fn the_filter_is_url_encoded_in_the_query() {
        let connector = ScimConnector::new("http://app.test/scim/v2/", "t").unwrap();
        let mut url = connector.url(&["Users"]);
        url.query_pairs_mut()
            .append_pair("filter", &eq_filter("userName", "a&b=\"c\""));
        assert_eq!(
            url.as_str(),
            "http://app.test/scim/v2/Users?filter=userName+eq+%22a%26b%3D%5C%22c%5C%22%22"
        );
    }

    #[test]
    fn remote_ids_are_encoded_as_one_path_segment() {
        let connector = ScimConnector::new("http://app.test/scim/v2", "t").unwrap();
        assert_eq!(
            connector.url(&["Users", "a/b c?"]).as_str(),
            "http://app.test/scim/v2/Users/a%2Fb%20c%3F"
        );
    }

    #[test]
    fn success_is_no_error() {
        for status in [200, 201, 204] {
            assert!(status_error(status, "").is_none());
        }
    }

    #[test]
    fn server_errors_and_timeouts_are_unavailable() {
        for status in [500, 502, 503, 504, 408] {
            let error = status_error(status, r#"{"detail": "database down"}"#).unwrap();
            assert!(
                matches!(&error, ConnectorError::Unavailable(m) if m.contains("database down")),
                "{status}: {error:?}"
            );
        }
    }

    #[test]
    fn too_many_requests_is_rate_limited_with_the_servers_wait() {
        let error = error_for(
            "GET /Users",
            StatusCode::TOO_MANY_REQUESTS,
            Some("12"),
            None,
            b"",
            now(),
        );
        assert!(matches!(
            error,
            Some(ConnectorError::RateLimited(d)) if d == Duration::from_secs(12)
        ));
        assert!(matches!(
            status_error(429, ""),
            Some(ConnectorError::RateLimited(d)) if d == Duration::from_secs(1)
        ));
    }

    #[test]
    fn client_errors_are_rejected_with_the_scim_detail() {
        let error = status_error(
            400,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"400","scimType":"invalidValue","detail":"userName is required"}"#,
        );
        match error {
            Some(ConnectorError::Rejected { status, detail }) => {
                assert_eq!(status, 400);
                assert_eq!(detail, "userName is required (invalidValue)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_404_is_rejected_when_not_already_gone() {
        assert!(matches!(
            status_error(404, r#"{"detail": "User 'x' not found"}"#),
            Some(ConnectorError::Rejected { status: 404, detail }) if detail == "User 'x' not found"
        ));
    }

    #[test]
    fn an_error_without_a_scim_body_falls_back_to_the_text_or_the_reason() {
        assert!(matches!(
            status_error(403, "<html>Forbidden by WAF</html>"),
            Some(ConnectorError::Rejected { status: 403, detail }) if detail == "<html>Forbidden by WAF</html>"
        ));
        assert!(matches!(
            status_error(401, ""),
            Some(ConnectorError::Rejected { status: 401, detail }) if detail == "POST /Users: Unauthorized"
        ));
    }

    #[test]
    fn a_redirect_is_rejected_naming_where_it_points() {
        let error = error_for(
            "GET /Users",
            StatusCode::MOVED_PERMANENTLY,
            None,
            Some("https://app.test/v2/Users"),
            b"",
            now(),
        );
        assert!(matches!(
            error,
            Some(ConnectorError::Rejected { status: 301, detail }) if detail.contains("https://app.test/v2/Users")
        ));
    }

    #[test]
    fn a_user_body_completes_schemas_and_sets_active_and_user_name() {
        let mut u = user();
        u.active = false;
        u.resource["meta"] = json!({"resourceType": "User"});
        u.resource["active"] = json!(true);
        let body = user_body(&u, None);
        assert_eq!(
            body["schemas"],
            json!([
                USER_SCHEMA,
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
            ])
        );
        assert_eq!(body["active"], false, "the User's active wins");
        assert_eq!(body["userName"], "alice@example.com");
        assert!(body.get("meta").is_none());
        assert!(body.get("id").is_none());
    }

    #[test]
    fn a_user_body_keeps_given_schemas_and_adds_the_missing_core() {
        let mut u = user();
        u.resource["schemas"] =
            json!(["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]);
        let body = user_body(&u, Some("remote-1"));
        assert_eq!(
            body["schemas"],
            json!([
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                USER_SCHEMA
            ])
        );
        assert_eq!(body["id"], "remote-1", "a replace carries the id");
    }

    #[test]
    fn a_group_body_has_no_members_and_the_external_id_when_set() {
        assert_eq!(
            group_body(&group(Some("ext-1"))),
            json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering", "externalId": "ext-1", "members": []})
        );
        assert!(group_body(&group(None)).get("externalId").is_none());
    }

    #[test]
    fn a_group_update_replaces_the_display_name_and_the_external_id_when_set() {
        assert_eq!(
            group_update_operations(&group(None)),
            vec![json!({"op": "replace", "path": "displayName", "value": "Engineering"})]
        );
        assert_eq!(group_update_operations(&group(Some("x"))).len(), 2);
    }

    fn ids(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn no_member_change_sends_nothing() {
        assert!(member_patches(&[], &[]).is_empty());
    }

    #[test]
    fn members_are_added_in_one_operation_and_removed_one_filter_each() {
        let patches = member_patches(&ids("a", 2), &[r#"r"1"#.to_owned()]);
        assert_eq!(
            patches,
            vec![vec![
                json!({"op": "add", "path": "members", "value": [{"value": "a0"}, {"value": "a1"}]}),
                json!({"op": "remove", "path": r#"members[value eq "r\"1"]"#}),
            ]]
        );
    }

    #[test]
    fn membership_changes_are_batched_at_256_members_per_request() {
        let patches = member_patches(&ids("a", 300), &ids("r", 300));
        let members = |ops: &Vec<Value>| -> usize {
            ops.iter()
                .map(|op| op["value"].as_array().map_or(1, Vec::len))
                .sum()
        };
        assert!(
            patches
                .iter()
                .all(|ops| members(ops) <= MAX_MEMBERS_PER_PATCH)
        );
        assert_eq!(patches.iter().map(members).sum::<usize>(), 600);
        assert_eq!(patches.len(), 3, "600 members in requests of at most 256");
        // Every id travels exactly once, in order.
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for op in patches.iter().flatten() {
            match op["op"].as_str() {
                Some("add") => added.extend(
                    op["value"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| m["value"].as_str().unwrap().to_owned()),
                ),
                _ => removed.push(op["path"].as_str().unwrap().to_owned()),
            }
        }
        assert_eq!(added, ids("a", 300));
        let expected: Vec<String> = ids("r", 300)
            .iter()
            .map(|id| format!("members[value eq \"{id}\"]"))
            .collect();
        assert_eq!(removed, expected);
    }

    #[test]
    fn the_resource_matching_the_name_is_picked_exact_case_first() {
        let resources = vec![
            json!({"id": "1", "userName": "someone-else"}),
            json!({"id": "2", "userName": "ALICE"}),
            json!({"id": "3", "userName": "alice"}),
        ];
        assert_eq!(pick(&resources, "userName", "alice").unwrap()["id"], "3");
        assert_eq!(pick(&resources, "userName", "Alice").unwrap()["id"], "2");
        assert!(pick(&resources, "userName", "bob").is_none());
    }

    #[test]
    fn a_look_alike_remote_user_name_is_never_picked() {
        let resources = vec![
            json!({"id": "1", "userName": "\u{212A}evin"}),
            json!({"id": "2", "userName": "\u{FF4B}evin"}),
        ];
        assert!(pick(&resources, "userName", "kevin").is_none());
    }

    #[test]
    fn the_token_is_never_shown() {
        let connector =
            ScimConnector::new("https://user:pw@app.test/scim/v2", "s3cr3t-token").unwrap();
        let debug = format!("{connector:?}");
        assert!(!debug.contains("s3cr3t-token"), "{debug}");
        assert!(!debug.contains("pw"), "{debug}");
        assert!(debug.contains("https://app.test/scim/v2"), "{debug}");
        assert!(!format!("{:?}", connector.authorization).contains("s3cr3t"));
    }

    #[test]
    fn an_unusable_configuration_is_misconfigured_without_echoing_the_token() {
        for (url, token) in [
            ("not a url", "t"),
            ("ftp://app.test/scim", "t"),
            ("https://app.test/scim", "  "),
            ("https://app.test/scim", "bad\ntoken-value"),
        ] {
            match ScimConnector::new(url, token) {
                Err(ConnectorError::Misconfigured(message)) => {
                    assert!(!message.contains("token-value"), "{message}")
                }
                other => panic!("{url} {token:?}: {other:?}"),
            }
        }
    }
}
