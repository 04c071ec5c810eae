//! SCIM JSON <-> `User`/`Group` resources. Pure functions.
//!
//! The SCIM representation (RFC 7643) is the lingua franca of the service: the
//! filter evaluator and the PATCH engine work on it, and these functions are
//! the only place that knows how it maps onto the custom resources.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Map, Value, json};

use super::error::ScimError;
use crate::api::{Group, GroupMember, GroupSpec, User, UserSpec};
use crate::identity;

pub use crate::api::LAST_MODIFIED_ANNOTATION;
use crate::urns::{ENTERPRISE_USER_SCHEMA as ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// Core User attributes stored in typed spec fields, by their SCIM names.
const USER_TYPED: &[&str] = &[
    "userName",
    "externalId",
    "active",
    "name",
    "displayName",
    "nickName",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "emails",
    "phoneNumbers",
    "addresses",
];

/// Core User attributes kept as given in `extraAttributes`.
const USER_EXTRA: &[&str] = &[
    "profileUrl",
    "ims",
    "photos",
    "entitlements",
    "roles",
    "x509Certificates",
];

/// Attributes a client may send but never sets: server-assigned or derived
/// (RFC 7643 section 3.1, `groups` is readOnly). Okta PUTs them back; ignore.
const READ_ONLY: &[&str] = &["id", "meta", "groups", "schemas"];

/// Where a resource is served, for `meta.location`.
#[derive(Clone, Debug)]
pub struct Location<'a> {
    /// The policy's SCIM base URL, e.g. `https://roster.example.com/scim/ns/crm/v2`.
    pub base_url: &'a str,
}

impl Location<'_> {
    pub fn user(&self, id: &str) -> String {
        format!("{}/Users/{id}", self.base_url)
    }
    pub fn group(&self, id: &str) -> String {
        format!("{}/Groups/{id}", self.base_url)
    }
}

/// The ETag of a resource: its spec generation. Status writes don't change
/// it, and the SCIM id is never reused, so (id, generation) is unique.
pub fn etag(generation: Option<i64>) -> String {
    format!("W/\"{}\"", generation.unwrap_or(0))
}

fn meta(resource_type: &str, metadata: &kube::api::ObjectMeta, location: String) -> Value {
    let created = metadata.creation_timestamp.as_ref().map(rfc3339);
    let last_modified = metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LAST_MODIFIED_ANNOTATION))
        .cloned()
        .or_else(|| created.clone());
    json!({
        "resourceType": resource_type,
        "created": created,
        "lastModified": last_modified,
        "location": location,
        "version": etag(metadata.generation),
    })
}

fn rfc3339(time: &Time) -> String {
    time.0.to_string()
}

/// A User as SCIM JSON.
pub fn user_to_scim(user: &User, location: &Location) -> Value {
    let id = user.metadata.name.clone().unwrap_or_default();
    let mut out = match serde_json::to_value(&user.spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    out.remove("policy");
    out.remove("subject");
    out.remove("extraAttributes");
    let enterprise = out.remove("enterprise");
    for (key, value) in &user.spec.extra_attributes {
        out.insert(key.clone(), value.clone());
    }
    let mut schemas = vec![json!(USER_SCHEMA)];
    if let Some(mut enterprise) =
        enterprise.filter(|e| e.as_object().is_some_and(|m| !m.is_empty()))
    {
        // The manager's `$ref` is derived, not stored (a CRD schema can't name a field `$ref`).
        if let Some(manager) = enterprise.get_mut("manager").and_then(Value::as_object_mut) {
            if let Some(id) = manager.get("value").and_then(Value::as_str) {
                let reference = location.user(id);
                manager.insert("$ref".into(), json!(reference));
            }
        }
        out.insert(ENTERPRISE_SCHEMA.to_owned(), enterprise);
        schemas.push(json!(ENTERPRISE_SCHEMA));
    }
    for key in user.spec.extra_attributes.keys() {
        if key.starts_with("urn:") {
            schemas.push(json!(key));
        }
    }
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), json!(id));
    out.insert(
        "meta".into(),
        meta("User", &user.metadata, location.user(&id)),
    );
    Value::Object(out)
}

/// A User spec from SCIM JSON (a POST or PUT body, or the result of a PATCH).
/// Read-only attributes are ignored, `password` is dropped (never stored),
/// `null` means unassigned, and Entra's string booleans are accepted.
pub fn user_from_scim(body: &Value, policy: &str) -> Result<UserSpec, ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a User must be a JSON object"))?;
    let mut spec = Map::new();
    let mut extra = BTreeMap::new();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        if let Some(known) = USER_TYPED.iter().find(|k| k.eq_ignore_ascii_case(key)) {
            spec.insert((*known).to_owned(), value.clone());
        } else if let Some(known) = USER_EXTRA.iter().find(|k| k.eq_ignore_ascii_case(key)) {
            if !is_empty(value) {
                extra.insert((*known).to_owned(), value.clone());
            }
        } else if key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            spec.insert("enterprise".into(), enterprise_from_scim(value)?);
        } else if key.starts_with("urn:") || key.starts_with("URN:") {
            // An extension we don't model (OneLogin, Okta custom): keep it.
            extra.insert(key.clone(), value.clone());
        } else if key.eq_ignore_ascii_case("password")
            || READ_ONLY.iter().any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        } else {
            return Err(ScimError::invalid_value(format!(
                "unknown User attribute \"{key}\""
            )));
        }
    }
    let mut spec = Value::Object(spec);
    strip_nulls(&mut spec);
    coerce_booleans(&mut spec, &["active"]);
    for list in ["emails", "phoneNumbers", "addresses"] {
        if let Some(Value::Array(items)) = spec.get_mut(list) {
            for item in items {
                coerce_booleans(item, &["primary"]);
            }
        }
    }
    spec["policy"] = json!(policy);
    if !extra.is_empty() {
        spec["extraAttributes"] = serde_json::to_value(extra).expect("a map serialises");
    }
    if spec
        .get("userName")
        .is_none_or(|u| u.as_str().is_none_or(|s| s.trim().is_empty()))
    {
        return Err(ScimError::invalid_value("userName is required"));
    }
    serde_json::from_value(spec).map_err(|e| ScimError::invalid_value(e.to_string()))
}

/// A new or changed userName must pass [`identity::validate_user_name`].
/// One the user already has is left alone, so a user stored before the rule
/// can still be deactivated or deleted.
pub fn check_user_name(spec: &UserSpec, current: Option<&UserSpec>) -> Result<(), ScimError> {
    if current.is_some_and(|c| c.user_name == spec.user_name) {
        return Ok(());
    }
    identity::validate_user_name(&spec.user_name).map_err(|refusal| {
        // Escaped to ASCII, so a Kelvin sign shows as \u{212a}, not as K.
        let shown = spec.user_name.escape_default();
        ScimError::invalid_value(format!("userName \"{shown}\" {refusal}"))
    })
}

fn enterprise_from_scim(value: &Value) -> Result<Value, ScimError> {
    let mut value = value.clone();
    strip_nulls(&mut value);
    let object = value
        .as_object_mut()
        .ok_or_else(|| ScimError::invalid_value("the enterprise extension must be an object"))?;
    // Entra's older dialect sets the manager as a bare id string.
    if let Some(manager) = object.get_mut("manager") {
        if let Value::String(id) = manager {
            *manager = json!({ "value": id });
        }
        if let Some(m) = manager.as_object_mut() {
            m.remove("$ref");
            if m.get("value").is_none() {
                object.remove("manager");
            }
        }
    }
    Ok(value)
}

/// A Group as SCIM JSON; `members` come from wherever the caller stores them.
pub fn group_to_scim(group: &Group, members: Option<&[GroupMember]>, location: &Location) -> Value {
    let id = group.metadata.name.clone().unwrap_or_default();
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": id,
        "displayName": group.spec.display_name,
        "meta": meta("Group", &group.metadata, location.group(&id)),
    });
    if let Some(external_id) = &group.spec.external_id {
        out["externalId"] = json!(external_id);
    }
    if let Some(members) = members {
        out["members"] = Value::Array(
            members
                .iter()
                .map(|m| {
                    let mut member = json!({
                        "value": m.value,
                        "type": m.kind,
                        "$ref": match m.kind {
                            crate::api::MemberKind::User => location.user(&m.value),
                            crate::api::MemberKind::Group => location.group(&m.value),
                        },
                    });
                    if let Some(display) = &m.display {
                        member["display"] = json!(display);
                    }
                    member
                })
                .collect(),
        );
    }
    out
}

/// A Group spec (without members) from SCIM JSON, and the members the body
/// lists (`None` when it has no `members` key).
pub fn group_from_scim(
    body: &Value,
    policy: &str,
) -> Result<(GroupSpec, Option<Vec<GroupMember>>), ScimError> {
    let object = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("a Group must be a JSON object"))?;
    let mut display_name = None;
    let mut external_id = None;
    let mut members = None;
    for (key, value) in object {
        match key.to_ascii_lowercase().as_str() {
            "displayname" => display_name = Some(value),
            "externalid" => external_id = Some(value),
            "members" => members = Some(value),
            _ => {} // read-only attributes and unknown extension URNs (Entra adds one)
        }
    }
    let display_name = match display_name {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            return Err(ScimError::invalid_value("displayName is required"));
        }
        Some(_) => return Err(ScimError::invalid_value("displayName must be a string")),
    };
    let external_id = match external_id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ScimError::invalid_value("externalId must be a string")),
    };
    let members = match members {
        None | Some(Value::Null) => None,
        Some(value) => Some(members_from_scim(value)?),
    };
    Ok((
        GroupSpec {
            policy: policy.to_owned(),
            display_name,
            external_id,
            members: Vec::new(),
        },
        members,
    ))
}

/// Members as SCIM sends them: `[{"value": "<id>", "type": "User", "display": ...}]`.
pub fn members_from_scim(value: &Value) -> Result<Vec<GroupMember>, ScimError> {
    let items = value
        .as_array()
        .ok_or_else(|| ScimError::invalid_value("members must be an array"))?;
    items
        .iter()
        .map(|item| {
            let value = item
                .get("value")
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| ScimError::invalid_value("every member needs a string value"))?;
            let kind = match item.get("type").and_then(Value::as_str) {
                Some(t) if t.eq_ignore_ascii_case("group") => crate::api::MemberKind::Group,
                _ => crate::api::MemberKind::User,
            };
            Ok(GroupMember {
                value: value.to_owned(),
                user_name: None,
                kind,
                display: item
                    .get("display")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        })
        .collect()
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Removes `null` members of objects, recursively: SCIM `null` means unassigned.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Entra's older PATCH dialect and some bodies carry booleans as "True"/"False".
fn coerce_booleans(value: &mut Value, keys: &[&str]) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    for key in keys {
        if let Some(v) = map.get_mut(*key) {
            if let Some(s) = v.as_str() {
                if s.eq_ignore_ascii_case("true") {
                    *v = json!(true);
                } else if s.eq_ignore_ascii_case("false") {
                    *v = json!(false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_user_name_is_checked_and_an_unchanged_one_left_alone() {
        let spec = |name: &str| UserSpec {
            user_name: name.into(),
            ..Default::default()
        };
        let kelvin = spec("\u{212A}evin");
        let error = check_user_name(&kelvin, None).unwrap_err();
        assert_eq!(error.status.as_u16(), 400);
        assert_eq!(
            error.scim_type,
            Some(crate::scim::error::ScimType::InvalidValue)
        );
        assert!(error.detail.contains(r"\u{212a}evin"), "{error:?}");
        assert!(check_user_name(&kelvin, Some(&spec("kevin"))).is_err());
        // Stored before the rule: it can still be deactivated or deleted.
        assert!(check_user_name(&kelvin, Some(&kelvin)).is_ok());
        assert!(check_user_name(&spec("kevin"), None).is_ok());
    }

    const LOCATION: Location = Location {
        base_url: "https://roster.example.com/scim/ns/crm/v2",
    };

    fn okta_create() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "userName": "isaac.brock@example.com",
            "name": {"givenName": "Isaac", "familyName": "Brock"},
            "emails": [{"primary": true, "value": "isaac.brock@example.com", "type": "work"}],
            "displayName": "Isaac Brock",
            "locale": "en-US",
            "externalId": "00ujl29u0le5T6Aj10h7",
            "groups": [],
            "password": "1mz050nq",
            "active": true
        })
    }

    #[test]
    fn okta_create_round_trips_without_the_password() {
        let spec = user_from_scim(&okta_create(), "crm").unwrap();
        assert_eq!(spec.user_name, "isaac.brock@example.com");
        assert_eq!(spec.policy, "crm");
        assert_eq!(spec.emails[0].primary, Some(true));
        let mut user = User::new("1b9d", spec);
        user.metadata.generation = Some(3);
        let scim = user_to_scim(&user, &LOCATION);
        assert_eq!(scim["id"], "1b9d");
        assert_eq!(scim["name"]["familyName"], "Brock");
        assert_eq!(scim["meta"]["version"], "W/\"3\"");
        assert_eq!(
            scim["meta"]["location"],
            format!("{}/Users/1b9d", LOCATION.base_url)
        );
        assert!(scim.get("password").is_none());
        assert!(
            !serde_json::to_string(&user.spec)
                .unwrap()
                .contains("1mz050nq")
        );
    }

    #[test]
    fn the_enterprise_extension_maps_to_its_urn_and_back() {
        let mut body = okta_create();
        body[ENTERPRISE_SCHEMA] = json!({"department": "R&D", "manager": "m-1"});
        let spec = user_from_scim(&body, "crm").unwrap();
        let enterprise = spec.enterprise.clone().unwrap();
        assert_eq!(enterprise.department.as_deref(), Some("R&D"));
        assert_eq!(enterprise.manager.unwrap().value, "m-1");
        let scim = user_to_scim(&User::new("u", spec), &LOCATION);
        assert_eq!(scim[ENTERPRISE_SCHEMA]["department"], "R&D");
        assert_eq!(
            scim[ENTERPRISE_SCHEMA]["manager"]["$ref"],
            LOCATION.user("m-1")
        );
        assert!(
            scim["schemas"]
                .as_array()
                .unwrap()
                .contains(&json!(ENTERPRISE_SCHEMA))
        );
    }

    #[test]
    fn entra_nulls_empty_roles_and_string_booleans_are_tolerated() {
        let body = json!({
            "userName": "Test_User_ab6490ee@contoso.com",
            "active": "False",
            "displayName": null,
            "roles": [],
            "emails": [{"value": "x@contoso.com", "type": "work", "primary": "True"}],
            "name": {"givenName": null, "familyName": "Smith"}
        });
        let spec = user_from_scim(&body, "crm").unwrap();
        assert_eq!(spec.active, Some(false));
        assert_eq!(spec.emails[0].primary, Some(true));
        assert!(spec.display_name.is_none());
        assert!(spec.extra_attributes.is_empty());
        assert_eq!(spec.name.unwrap().family_name.as_deref(), Some("Smith"));
    }

    #[test]
    fn unknown_extensions_are_kept_and_returned() {
        let mut body = okta_create();
        body["urn:okta:custom:1.0:User"] = json!({"badge": 7});
        let spec = user_from_scim(&body, "crm").unwrap();
        let scim = user_to_scim(&User::new("u", spec), &LOCATION);
        assert_eq!(scim["urn:okta:custom:1.0:User"]["badge"], 7);
    }

    #[test]
    fn a_missing_user_name_is_invalid_value() {
        let err = user_from_scim(&json!({"displayName": "x"}), "crm").unwrap_err();
        assert_eq!(err.scim_type, Some(super::super::ScimType::InvalidValue));
    }

    #[test]
    fn a_wrongly_typed_attribute_is_invalid_value() {
        let err = user_from_scim(&json!({"userName": "x", "emails": "x@y"}), "crm").unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.scim_type, Some(super::super::ScimType::InvalidValue));
    }

    #[test]
    fn group_members_are_read_with_or_without_ref_and_type() {
        let body = json!({
            "schemas": [GROUP_SCHEMA, "urn:ietf:params:scim:schemas:extension:microsoft:2.0:Group"],
            "displayName": "Engineering",
            "externalId": "e-1",
            "members": [{"$ref": null, "value": "u-1"}, {"value": "g-2", "type": "Group"}]
        });
        let (spec, members) = group_from_scim(&body, "crm").unwrap();
        assert_eq!(spec.display_name, "Engineering");
        let members = members.unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[1].kind, crate::api::MemberKind::Group);
    }

    #[test]
    fn a_group_needs_a_display_name() {
        let err = group_from_scim(&json!({"members": []}), "crm").unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
    }
}
