//! Values checked against the schema and brought into stored form.

use super::*;

/// Checks a request value against an attribute's definition (400
/// `invalidValue` for the wrong JSON type) and canonicalises it: sub-attribute
/// names spelled as in the schema, Entra's `"True"`/`"False"` strings as
/// booleans, read-only sub-attributes dropped. A multi-valued attribute gets
/// an array (a lone value is wrapped); null stays null (unassigned).
pub(super) fn normalize(attribute: &'static Attribute, value: &Value) -> Result<Value, ScimError> {
    if !attribute.multi_valued {
        return normalize_one(attribute, value);
    }
    let elements: Vec<&Value> = match value {
        Value::Null => return Ok(Value::Null),
        Value::Array(elements) => elements.iter().collect(),
        single => vec![single],
    };
    let mut out = Vec::with_capacity(elements.len());
    for element in elements {
        let element = normalize_one(attribute, element)?;
        if !element.is_null() {
            out.push(element);
        }
    }
    Ok(Value::Array(out))
}

/// One value of an attribute (for a multi-valued attribute, one element).
/// Null sub-attributes stay, meaning "unassign this one" when merged.
pub(super) fn normalize_one(
    attribute: &'static Attribute,
    value: &Value,
) -> Result<Value, ScimError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let normalized = match (attribute.kind, value) {
        (AttributeType::Complex, Value::Object(sub_values)) => {
            let mut out = Map::new();
            for (name, sub_value) in sub_values {
                let Some(sub) = attribute.sub_attribute(name) else {
                    return Err(ScimError::invalid_path(format!(
                        "`{}` has no sub-attribute `{name}`",
                        attribute.name
                    )));
                };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                out.insert(sub.name.to_owned(), normalize_one(sub, sub_value)?);
            }
            Value::Object(out)
        }
        // Entra sets the manager with the bare id as the value; a lone
        // scalar for a complex attribute with a `value` is that `value`.
        (AttributeType::Complex, Value::String(_) | Value::Number(_) | Value::Bool(_))
            if attribute.sub_attribute("value").is_some() =>
        {
            return normalize_one(attribute, &json!({ "value": value }));
        }
        // Entra's default dialect sends booleans as "True" / "False".
        (AttributeType::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("true") => {
            Value::Bool(true)
        }
        (AttributeType::Boolean, Value::String(text)) if text.eq_ignore_ascii_case("false") => {
            Value::Bool(false)
        }
        (AttributeType::Boolean, Value::Bool(_))
        | (
            AttributeType::String | AttributeType::Reference | AttributeType::Binary,
            Value::String(_),
        )
        | (AttributeType::Decimal, Value::Number(_)) => value.clone(),
        (AttributeType::Integer, Value::Number(number)) if number.is_i64() || number.is_u64() => {
            value.clone()
        }
        (AttributeType::DateTime, Value::String(text)) if parse_date_time(text).is_some() => {
            value.clone()
        }
        _ => {
            let mut shown = value.to_string();
            if shown.len() > 64 {
                let cut = (0..=61)
                    .rev()
                    .find(|&i| shown.is_char_boundary(i))
                    .unwrap_or(0);
                shown.truncate(cut);
                shown.push_str("...");
            }
            let expected = match attribute.kind {
                AttributeType::Complex => "an object of sub-attributes",
                AttributeType::Boolean => "a boolean",
                AttributeType::Integer => "an integer",
                AttributeType::Decimal => "a number",
                AttributeType::DateTime => "a dateTime string such as \"2011-05-13T04:42:34Z\"",
                _ => "a string",
            };
            return Err(ScimError::invalid_value(format!(
                "`{}` must be {expected}, not {shown}",
                attribute.name
            )));
        }
    };
    Ok(normalized)
}

/// A new element of a multi-valued attribute in stored form: null
/// sub-attributes left out (Entra sends `"$ref": null`).
pub(super) fn new_value(attribute: &'static Attribute, element: Value) -> Result<Value, ScimError> {
    match element {
        Value::Object(sub_values) => {
            let mut object = Map::new();
            merge(&mut object, attribute, sub_values)?;
            Ok(Value::Object(object))
        }
        other => Ok(other),
    }
}

/// Merges normalised sub-attribute values into a complex value; null
/// unassigns.
pub(super) fn merge(
    object: &mut Map<String, Value>,
    attribute: &'static Attribute,
    sub_values: Map<String, Value>,
) -> Result<(), ScimError> {
    for (name, value) in sub_values {
        if let Some(sub) = attribute.sub_attribute(&name) {
            set(object, sub, value)?;
        }
    }
    Ok(())
}

/// Sets an attribute (or sub-attribute) to a normalised value, null meaning
/// unassign. An immutable attribute that has a value cannot change (RFC 7643
/// §7 `immutable`).
pub(super) fn set(
    object: &mut Map<String, Value>,
    attribute: &'static Attribute,
    value: Value,
) -> Result<(), ScimError> {
    if !is_assigned(&value) {
        return unset(object, attribute);
    }
    let changes_immutable = attribute.mutability == Mutability::Immutable
        && get(object, attribute.name).is_some_and(|current| {
            is_assigned(current) && !equal_values(attribute, current, &value)
        });
    if changes_immutable {
        return Err(ScimError::mutability(format!(
            "`{}` is immutable (RFC 7643 §7) and already set",
            attribute.name
        )));
    }
    put(object, attribute.name, value);
    Ok(())
}

pub(super) fn unset(
    object: &mut Map<String, Value>,
    attribute: &'static Attribute,
) -> Result<(), ScimError> {
    if attribute.mutability == Mutability::Immutable
        && get(object, attribute.name).is_some_and(is_assigned)
    {
        return Err(ScimError::mutability(format!(
            "`{}` is immutable (RFC 7643 §7) and cannot be removed",
            attribute.name
        )));
    }
    take(object, attribute.name);
    Ok(())
}

/// Unassigned per RFC 7643 §2.5: null, an empty array, and (as for `pr`) an
/// empty string or a complex value with nothing assigned.
pub(super) fn is_assigned(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(values) => values.iter().any(is_assigned),
        Value::Object(members) => members.values().any(is_assigned),
        Value::Bool(_) | Value::Number(_) => true,
    }
}
