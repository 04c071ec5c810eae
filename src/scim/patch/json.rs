//! JSON objects with case-insensitive keys, written with the schema's spelling.

use super::*;

pub(super) fn key_of(object: &Map<String, Value>, name: &str) -> Option<String> {
    if object.contains_key(name) {
        return Some(name.to_owned());
    }
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}

pub(super) fn get<'o>(object: &'o Map<String, Value>, name: &str) -> Option<&'o Value> {
    member_ignore_case(object, name)
}

pub(super) fn get_mut<'o>(object: &'o mut Map<String, Value>, name: &str) -> Option<&'o mut Value> {
    let key = key_of(object, name)?;
    object.get_mut(&key)
}

/// Removes the member `name` under every spelling.
pub(super) fn take(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let mut taken = None;
    while let Some(key) = key_of(object, name) {
        taken = object.remove(&key);
    }
    taken
}

pub(super) fn put(object: &mut Map<String, Value>, name: &str, value: Value) {
    take(object, name);
    object.insert(name.to_owned(), value);
}

/// The object of a single-valued complex attribute, created if absent.
pub(super) fn object_entry<'o>(
    container: &'o mut Map<String, Value>,
    attribute: &'static Attribute,
) -> &'o mut Map<String, Value> {
    if !matches!(get(container, attribute.name), Some(Value::Object(_))) {
        put(container, attribute.name, Value::Object(Map::new()));
    }
    as_object(get_mut(container, attribute.name).expect("just inserted"))
}

/// A complex value as an object; anything else stored there is replaced.
pub(super) fn as_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(object) => object,
        _ => unreachable!("just made an object"),
    }
}

/// Takes an attribute's values out as a list (a single-valued complex
/// attribute is a list of at most one) to be put back with `store_values`.
pub(super) fn take_values(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
) -> Vec<Value> {
    match take(container, attribute.name) {
        Some(Value::Array(values)) => values,
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    }
}

pub(super) fn store_values(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
    values: Vec<Value>,
) {
    let mut values: Vec<Value> = values.into_iter().filter(is_assigned).collect();
    if values.is_empty() {
        take(container, attribute.name);
    } else if attribute.multi_valued {
        put(container, attribute.name, Value::Array(values));
    } else {
        put(container, attribute.name, values.swap_remove(0));
    }
}
