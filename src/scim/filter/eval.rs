//! Resolving a filter's attributes against the schemas, and comparing values.

use super::*;

pub(super) fn invalid(path: &AttrPath, why: impl fmt::Display) -> ScimError {
    ScimError::invalid_filter(format!("invalid filter on `{path}`: {why}"))
}

/// Where a filter's paths are resolved: at the top of a resource, or inside
/// one value of a complex attribute (a value filter's brackets).
#[derive(Clone, Copy)]
pub(super) enum Scope {
    Resource(ResourceType),
    Element(&'static Attribute),
}

/// A path resolved in a scope: where its values are and what they are.
pub(super) struct Resolved {
    /// The extension URN key holding the attribute, if any.
    pub(super) container: Option<&'static str>,
    pub(super) attribute: &'static Attribute,
    pub(super) sub: Option<&'static Attribute>,
}

impl Scope {
    pub(super) fn resolve(self, path: &AttrPath) -> Result<Resolved, ScimError> {
        let resolved = match self {
            Self::Resource(resource_type) => {
                let found = path
                    .resolve_or_explain(resource_type)
                    .map_err(|why| ScimError::invalid_filter(format!("invalid filter: {why}")))?;
                Resolved {
                    container: found.container(),
                    attribute: found.attribute,
                    sub: found.sub_attribute,
                }
            }
            Self::Element(parent) => {
                if path.urn.is_some() || path.sub_attribute.is_some() {
                    return Err(invalid(
                        path,
                        format!(
                            "inside `{}[...]` name a sub-attribute of `{}` alone",
                            parent.name, parent.name
                        ),
                    ));
                }
                let attribute = sub_attribute_or_explain(parent, &path.name)
                    .map_err(|why| ScimError::invalid_filter(format!("invalid filter: {why}")))?;
                Resolved {
                    container: None,
                    attribute,
                    sub: None,
                }
            }
        };
        // Comparing a writeOnly value (the password) would make filters an
        // oracle for it; it is never returned, so it cannot be filtered.
        if resolved.attribute.mutability == Mutability::WriteOnly {
            return Err(invalid(path, "it is write-only and cannot be filtered"));
        }
        Ok(resolved)
    }
}

impl Resolved {
    /// The definition values are compared with: the sub-attribute, else a
    /// simple attribute itself, else (RFC 7644 §3.4.2.2, a complex attribute
    /// with no sub-attribute named) its `value` sub-attribute.
    pub(super) fn compared(&self) -> Option<&'static Attribute> {
        match self.sub {
            Some(sub) => Some(sub),
            None if self.attribute.is_complex() => self.attribute.sub_attribute("value"),
            None => Some(self.attribute),
        }
    }

    /// The JSON values the path reaches in `object`, one per value of a
    /// multi-valued attribute. With `comparing`, a complex attribute named
    /// without a sub-attribute yields its values' `value`s.
    pub(super) fn values<'v>(&self, object: &'v Value, comparing: bool) -> Vec<&'v Value> {
        let container = match self.container {
            Some(urn) => get_ignore_case(object, urn),
            None => Some(object),
        };
        let Some(value) = container.and_then(|c| get_ignore_case(c, self.attribute.name)) else {
            return Vec::new();
        };
        let values: Vec<&Value> = match value {
            Value::Array(items) if self.attribute.multi_valued => items.iter().collect(),
            other => vec![other],
        };
        let sub = match self.sub {
            Some(sub) => sub.name,
            None if comparing && self.attribute.is_complex() => "value",
            None => return values,
        };
        values
            .into_iter()
            .filter_map(|value| get_ignore_case(value, sub))
            .collect()
    }
}

/// RFC 7644 §3.4.2.2 `pr`: the attribute has a non-empty value. Null, an
/// empty string, an empty array and a complex value without any present
/// sub-attribute are all unassigned (RFC 7643 §2.5).
pub(super) fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

pub(super) fn check_comparison(
    path: &AttrPath,
    attribute: &Attribute,
    op: CompareOp,
    value: &CompValue,
) -> Result<(), ScimError> {
    let kind = attribute.kind;
    if *value == CompValue::Null {
        return if matches!(op, CompareOp::Eq | CompareOp::Ne) {
            Ok(())
        } else {
            Err(invalid(path, format!("`{op}` cannot compare with null")))
        };
    }
    // RFC 7644 §3.4.2.2: gt/ge/lt/le on a boolean or binary attribute
    // "SHALL cause a failed response ... invalidFilter".
    if op.is_ordering() && matches!(kind, AttributeType::Boolean | AttributeType::Binary) {
        return Err(invalid(
            path,
            format!("`{op}` does not apply to a {} attribute", kind.as_str()),
        ));
    }
    if op.is_substring() && !matches!(value, CompValue::String(_)) {
        return Err(invalid(path, format!("`{op}` needs a string to look for")));
    }
    let fits = match (kind, value) {
        (AttributeType::String | AttributeType::Reference | AttributeType::Binary, v) => {
            matches!(v, CompValue::String(_))
        }
        (AttributeType::DateTime, CompValue::String(text)) => {
            op.is_substring() || schema::parse_date_time(text).is_some()
        }
        (AttributeType::Boolean, v) => !op.is_substring() && matches!(v, CompValue::Bool(_)),
        (AttributeType::Integer | AttributeType::Decimal, v) => {
            !op.is_substring() && matches!(v, CompValue::Number(_))
        }
        _ => false,
    };
    if fits {
        return Ok(());
    }
    let expected = match kind {
        AttributeType::DateTime => "a dateTime string such as \"2011-05-13T04:42:34Z\"",
        AttributeType::Boolean => "true or false, with eq or ne",
        AttributeType::Integer | AttributeType::Decimal => {
            "a number, with an operator other than co, sw or ew"
        }
        _ => "a string in double quotes",
    };
    Err(invalid(
        path,
        format!(
            "it is a {} attribute, so `{op} {value}` does not apply; compare it with {expected}",
            kind.as_str()
        ),
    ))
}

/// One comparison of an attribute value with a filter value, by the
/// attribute's type (RFC 7644 §3.4.2.2). Mismatched types never match.
pub(super) fn compare(
    attribute: &Attribute,
    actual: &Value,
    op: CompareOp,
    expected: &CompValue,
) -> bool {
    match (attribute.kind, actual, expected) {
        (AttributeType::Boolean, Value::Bool(a), CompValue::Bool(e)) => match op {
            CompareOp::Eq => a == e,
            CompareOp::Ne => a != e,
            _ => false,
        },
        (
            AttributeType::Integer | AttributeType::Decimal,
            Value::Number(a),
            CompValue::Number(e),
        ) => compare_numbers(a, e).is_some_and(|ordering| ordering_matches(op, ordering)),
        (AttributeType::DateTime, Value::String(a), CompValue::String(e)) if !op.is_substring() => {
            // Chronological, so offsets and fractions compare correctly; a
            // value that is not a dateTime falls back to its text.
            match (schema::parse_date_time(a), schema::parse_date_time(e)) {
                (Some(a), Some(e)) => ordering_matches(op, a.cmp(&e)),
                _ => compare_strings(a.clone(), e.clone(), op),
            }
        }
        (
            AttributeType::String
            | AttributeType::Reference
            | AttributeType::Binary
            | AttributeType::DateTime,
            Value::String(a),
            CompValue::String(e),
        ) => compare_strings(comparable(attribute, a), comparable(attribute, e), op),
        _ => false,
    }
}

/// A string value in the form it compares in. RFC 7643 §2.3.1:
/// caseExact=false attributes compare ignoring case. The unique one
/// (userName) folds as its uniqueness does, so a filter finds exactly the
/// user a claim would, and a look-alike such as the Kelvin sign finds nobody.
pub(super) fn comparable(attribute: &Attribute, value: &str) -> String {
    if attribute.case_exact {
        value.to_owned()
    } else if attribute.uniqueness == Uniqueness::Server {
        identity::fold_user_name(value)
    } else {
        value.to_lowercase()
    }
}

pub(super) fn compare_strings(actual: String, expected: String, op: CompareOp) -> bool {
    match op {
        CompareOp::Co => actual.contains(&expected),
        CompareOp::Sw => actual.starts_with(&expected),
        CompareOp::Ew => actual.ends_with(&expected),
        // Lexicographic order for gt/ge/lt/le, RFC 7644 §3.4.2.2.
        _ => ordering_matches(op, actual.cmp(&expected)),
    }
}

pub(super) fn compare_numbers(actual: &Number, expected: &Number) -> Option<Ordering> {
    if let (Some(a), Some(e)) = (actual.as_i64(), expected.as_i64()) {
        return Some(a.cmp(&e));
    }
    if let (Some(a), Some(e)) = (actual.as_u64(), expected.as_u64()) {
        return Some(a.cmp(&e));
    }
    actual.as_f64()?.partial_cmp(&expected.as_f64()?)
}

pub(super) fn ordering_matches(op: CompareOp, ordering: Ordering) -> bool {
    match op {
        CompareOp::Eq => ordering.is_eq(),
        CompareOp::Ne => ordering.is_ne(),
        CompareOp::Gt => ordering.is_gt(),
        CompareOp::Ge => ordering.is_ge(),
        CompareOp::Lt => ordering.is_lt(),
        CompareOp::Le => ordering.is_le(),
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
