//! Query parameters, paging and attribute projection (RFC 7644 sections
//! 3.4.2 and 3.9). Pure functions.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::attr_path::AttrPath;
use super::error::ScimError;
use super::schema::{self, ResourceType, Returned};

pub use crate::urns::{LIST_RESPONSE_SCHEMA, SEARCH_REQUEST_SCHEMA};

/// Results a page holds when the client doesn't say.
pub const DEFAULT_COUNT: usize = 100;
/// The most results one page holds (advertised as `filter.maxResults`).
pub const MAX_COUNT: usize = 1000;

/// What a client asked for with `attributes` and `excludedAttributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

/// A list or search request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub filter: Option<String>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub projection: Projection,
}

impl ListQuery {
    /// From query parameters; names are matched case-insensitively.
    pub fn from_params(params: &HashMap<String, String>) -> Result<Self, ScimError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        Ok(Self {
            filter: get("filter").map(str::to_owned),
            start_index: start_index(get("startIndex").map(parse_int).transpose()?),
            count: count(get("count").map(parse_int).transpose()?),
            projection: Projection::from_params(params)?,
        })
    }

    /// From a `POST .search` body (RFC 7644 section 3.4.3).
    pub fn from_search_body(body: &Value) -> Result<Self, ScimError> {
        let object = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be a JSON object"))?;
        let get = |name: &str| schema::get_ignore_case(body, name).filter(|v| !v.is_null());
        let _ = object;
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            match get(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
                Some(Value::String(s)) => parse_int(s.as_str()).map(Some),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "{name} must be an integer"
                ))),
            }
        };
        let paths = |name: &str| -> Result<Vec<AttrPath>, ScimError> {
            match get(name) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str()
                            .ok_or_else(|| {
                                ScimError::invalid_value(format!("{name} must list strings"))
                            })
                            .and_then(parse_path)
                    })
                    .collect(),
                Some(Value::String(s)) => parse_paths(s.as_str()),
                Some(_) => Err(ScimError::invalid_value(format!("{name} must be an array"))),
            }
        };
        let filter = match get("filter") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ScimError::invalid_filter("filter must be a string")),
        };
        Ok(Self {
            filter,
            start_index: start_index(int("startIndex")?),
            count: count(int("count")?),
            projection: Projection {
                attributes: paths("attributes")?,
                excluded: paths("excludedAttributes")?,
            },
        })
    }
}

impl Projection {
    pub fn from_params(params: &HashMap<String, String>) -> Result<Self, ScimError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        Ok(Self {
            attributes: get("attributes")
                .map(parse_paths)
                .transpose()?
                .unwrap_or_default(),
            excluded: get("excludedAttributes")
                .map(parse_paths)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// Whether the client asked not to see `attribute` (e.g. Entra's
    /// `excludedAttributes=members`), so the caller can skip loading it.
    pub fn excludes(&self, attribute: &str) -> bool {
        let named =
            |p: &AttrPath| p.sub_attribute.is_none() && p.name.eq_ignore_ascii_case(attribute);
        self.excluded.iter().any(named)
            || (!self.attributes.is_empty()
                && !self
                    .attributes
                    .iter()
                    .any(|p| p.name.eq_ignore_ascii_case(attribute)))
    }
}

fn parse_int(text: &str) -> Result<i64, ScimError> {
    text.trim()
        .parse()
        .map_err(|_| ScimError::invalid_value(format!("\"{text}\" is not an integer")))
}

/// RFC 7644 section 3.4.2.4: below 1 means 1.
fn start_index(value: Option<i64>) -> usize {
    value.map_or(1, |v| v.max(1) as usize)
}

/// RFC 7644 section 3.4.2.4: below 0 means 0; never more than we advertise.
fn count(value: Option<i64>) -> usize {
    value.map_or(DEFAULT_COUNT, |v| (v.max(0) as usize).min(MAX_COUNT))
}

fn parse_paths(text: &str) -> Result<Vec<AttrPath>, ScimError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_path)
        .collect()
}

fn parse_path(text: &str) -> Result<AttrPath, ScimError> {
    AttrPath::parse(text)
        .map_err(|detail| ScimError::invalid_value(format!("attributes: {detail}")))
}

/// One page of `resources` (already filtered) as a ListResponse.
pub fn page(resources: Vec<Value>, start_index: usize, count: usize) -> Value {
    let total = resources.len();
    let items: Vec<Value> = resources
        .into_iter()
        .skip(start_index - 1)
        .take(count)
        .collect();
    json!({
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

/// Keeps what the client asked for (RFC 7644 section 3.9): `returned: always`
/// attributes stay, `never` ones go, `request` ones only when named.
pub fn project(resource: Value, resource_type: ResourceType, projection: &Projection) -> Value {
    let Value::Object(map) = resource else {
        return resource;
    };
    let mut out = Map::new();
    for (key, value) in map {
        if key == "schemas" || key == "id" {
            out.insert(key, value);
            continue;
        }
        if key.starts_with("urn:") {
            // An extension: project its attributes the same way.
            let Some(extension) = resource_type.extension(&key) else {
                if projection.attributes.is_empty()
                    && !excluded_whole(&projection.excluded, Some(&key), None)
                {
                    out.insert(key, value);
                }
                continue;
            };
            let Value::Object(inner) = value else {
                continue;
            };
            let mut kept = Map::new();
            for (name, v) in inner {
                let returned = extension
                    .attribute(&name)
                    .map_or(Returned::Default, |a| a.returned);
                if let Some(v) = keep(Some(extension.id), &name, v, returned, projection) {
                    kept.insert(name, v);
                }
            }
            if !kept.is_empty() {
                out.insert(key, Value::Object(kept));
            }
            continue;
        }
        let returned = schema::find_attribute(resource_type, None, &key)
            .map_or(Returned::Default, |(_, a)| a.returned);
        if let Some(v) = keep(None, &key, value, returned, projection) {
            out.insert(key, v);
        }
    }
    Value::Object(out)
}

fn urn_matches(path: &AttrPath, urn: Option<&str>) -> bool {
    match (path.urn.as_deref(), urn) {
        (None, None) => true,
        (Some(p), None) => p
            .to_ascii_lowercase()
            .starts_with("urn:ietf:params:scim:schemas:core:"),
        (Some(p), Some(u)) => p.eq_ignore_ascii_case(u),
        (None, Some(_)) => false,
    }
}

fn excluded_whole(excluded: &[AttrPath], urn: Option<&str>, name: Option<&str>) -> bool {
    excluded.iter().any(|p| {
        p.sub_attribute.is_none()
            && match name {
                Some(name) => urn_matches(p, urn) && p.name.eq_ignore_ascii_case(name),
                None => p.urn.is_none() && urn.is_some_and(|u| p.name.eq_ignore_ascii_case(u)),
            }
    })
}

fn keep(
    urn: Option<&str>,
    name: &str,
    value: Value,
    returned: Returned,
    projection: &Projection,
) -> Option<Value> {
    match returned {
        Returned::Always => return Some(value),
        Returned::Never => return None,
        _ => {}
    }
    let named: Vec<&AttrPath> = projection
        .attributes
        .iter()
        .filter(|p| urn_matches(p, urn) && p.name.eq_ignore_ascii_case(name))
        .collect();
    if !projection.attributes.is_empty() {
        if named.is_empty() {
            return None;
        }
        if named.iter().any(|p| p.sub_attribute.is_none()) {
            return Some(value);
        }
        let subs: Vec<&str> = named
            .iter()
            .filter_map(|p| p.sub_attribute.as_deref())
            .collect();
        return Some(map_sub_attributes(value, |sub| {
            subs.iter().any(|s| s.eq_ignore_ascii_case(sub))
        }));
    }
    if returned == Returned::Request {
        return None;
    }
    if excluded_whole(&projection.excluded, urn, Some(name)) {
        return None;
    }
    let excluded_subs: Vec<&str> = projection
        .excluded
        .iter()
        .filter(|p| urn_matches(p, urn) && p.name.eq_ignore_ascii_case(name))
        .filter_map(|p| p.sub_attribute.as_deref())
        .collect();
    if excluded_subs.is_empty() {
        Some(value)
    } else {
        Some(map_sub_attributes(value, |sub| {
            !excluded_subs.iter().any(|s| s.eq_ignore_ascii_case(sub))
        }))
    }
}

/// Keeps the sub-attributes `keep` accepts, in a complex value or in each
/// value of a multi-valued one.
fn map_sub_attributes(value: Value, keep: impl Fn(&str) -> bool + Copy) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.into_iter().filter(|(k, _)| keep(k)).collect()),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| map_sub_attributes(item, keep))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn alice() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": "u-1",
            "userName": "alice",
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [{"value": "a@x", "type": "work"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D", "costCenter": "7"},
            "meta": {"resourceType": "User"}
        })
    }

    #[test]
    fn paging_is_one_based_and_clamped() {
        let q = ListQuery::from_params(&params(&[("startIndex", "0"), ("count", "-5")])).unwrap();
        assert_eq!((q.start_index, q.count), (1, 0));
        let q =
            ListQuery::from_params(&params(&[("startindex", "3"), ("COUNT", "100000")])).unwrap();
        assert_eq!((q.start_index, q.count), (3, MAX_COUNT));
        let q = ListQuery::from_params(&params(&[])).unwrap();
        assert_eq!((q.start_index, q.count), (1, DEFAULT_COUNT));
    }

    #[test]
    fn a_non_numeric_count_is_invalid_value() {
        let err = ListQuery::from_params(&params(&[("count", "ten")])).unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
    }

    #[test]
    fn a_page_never_holds_more_than_count_and_reports_the_total() {
        let resources: Vec<Value> = (0..5).map(|i| json!({"id": i})).collect();
        let page = page(resources, 2, 2);
        assert_eq!(page["totalResults"], 5);
        assert_eq!(page["itemsPerPage"], 2);
        assert_eq!(page["startIndex"], 2);
        assert_eq!(page["Resources"], json!([{"id": 1}, {"id": 2}]));
    }

    #[test]
    fn attributes_keep_only_what_is_named_plus_id_and_schemas() {
        let projection = Projection::from_params(&params(&[(
            "attributes",
            "userName,name.givenName,urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        )]))
        .unwrap();
        let out = project(alice(), ResourceType::User, &projection);
        assert_eq!(
            out,
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": "u-1",
                "userName": "alice",
                "name": {"givenName": "Alice"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"}
            })
        );
    }

    #[test]
    fn excluded_attributes_drop_whole_attributes_and_sub_attributes() {
        let projection =
            Projection::from_params(&params(&[("excludedAttributes", "emails,name.familyName")]))
                .unwrap();
        let out = project(alice(), ResourceType::User, &projection);
        assert!(out.get("emails").is_none());
        assert_eq!(out["name"], json!({"givenName": "Alice"}));
        assert_eq!(out["userName"], "alice");
    }

    #[test]
    fn id_cannot_be_excluded() {
        let projection = Projection::from_params(&params(&[("excludedAttributes", "id")])).unwrap();
        assert_eq!(
            project(alice(), ResourceType::User, &projection)["id"],
            "u-1"
        );
    }

    #[test]
    fn excluding_members_is_recognised_before_loading_them() {
        let projection =
            Projection::from_params(&params(&[("excludedAttributes", "members")])).unwrap();
        assert!(projection.excludes("members"));
        assert!(!Projection::default().excludes("members"));
    }

    #[test]
    fn a_search_body_reads_like_query_parameters() {
        let q = ListQuery::from_search_body(&json!({
            "schemas": [SEARCH_REQUEST_SCHEMA],
            "attributes": ["displayName"],
            "filter": "displayName sw \"smith\"",
            "startIndex": 1,
            "count": 10
        }))
        .unwrap();
        assert_eq!(q.filter.as_deref(), Some("displayName sw \"smith\""));
        assert_eq!(q.count, 10);
        assert_eq!(q.projection.attributes.len(), 1);
    }
}
