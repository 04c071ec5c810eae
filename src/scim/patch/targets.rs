//! Operations by path form: whole attribute, sub-attribute, filtered values.

use super::*;

/// `attr` (no filter, no sub-attribute).
pub(super) fn whole_attribute(
    container: &mut Map<String, Value>,
    kind: OpKind,
    attribute: &'static Attribute,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if kind == OpKind::Remove {
        return match value {
            // Entra's default dialect removes a member with
            // `{"op":"Remove","path":"members","value":[{"value":"<id>"}]}`.
            // Read literally the RFC would remove every member; the IdP
            // means "remove these", so only the listed values go.
            Some(listed) if attribute.multi_valued && !listed.is_null() => {
                remove_listed(container, attribute, listed)
            }
            _ => unset(container, attribute),
        };
    }
    let value = normalize(attribute, value.unwrap_or(&Value::Null))?;
    if attribute.multi_valued {
        let Value::Array(new) = value else {
            // null is unassigned (RFC 7643 §2.5): replacing with it clears,
            // adding it adds nothing.
            return match kind {
                OpKind::Replace => unset(container, attribute),
                _ => Ok(()),
            };
        };
        match kind {
            // RFC 7644 §3.5.2.1: add appends to a multi-valued attribute.
            OpKind::Add => append(container, attribute, new),
            // RFC 7644 §3.5.2.3: replace without a filter replaces all values.
            _ => {
                let mut values = Vec::new();
                for element in new {
                    let element = new_value(attribute, element)?;
                    if is_assigned(&element) {
                        values.push(element);
                    }
                }
                let touched: Vec<usize> = (0..values.len()).collect();
                clear_other_primaries(attribute, &mut values, &touched)?;
                store_values(container, attribute, values);
                Ok(())
            }
        }
    } else if attribute.is_complex() {
        match value {
            Value::Object(sub_values) => {
                // RFC 7644 §3.5.2.1/§3.5.2.3: sub-attributes not named in
                // the value are left unchanged.
                let object = object_entry(container, attribute);
                merge(object, attribute, sub_values)?;
                if object.is_empty() {
                    take(container, attribute.name);
                }
                Ok(())
            }
            _ => unset(container, attribute),
        }
    } else {
        set(container, attribute, value)
    }
}

/// `attr.sub` of a single-valued complex attribute: `name.givenName`,
/// `...:manager.value`.
pub(super) fn sub_attribute(
    container: &mut Map<String, Value>,
    kind: OpKind,
    attribute: &'static Attribute,
    sub: &'static Attribute,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if kind == OpKind::Remove {
        if let Some(Value::Object(object)) = get_mut(container, attribute.name) {
            unset(object, sub)?;
        }
    } else {
        let value = normalize(sub, value.unwrap_or(&Value::Null))?;
        set(object_entry(container, attribute), sub, value)?;
    }
    if get(container, attribute.name).is_some_and(|object| !is_assigned(object)) {
        take(container, attribute.name);
    }
    Ok(())
}

/// `attr.sub` of a multi-valued attribute without a filter: every value.
pub(super) fn sub_attribute_of_every_value(
    container: &mut Map<String, Value>,
    kind: OpKind,
    attribute: &'static Attribute,
    sub: &'static Attribute,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let mut values = take_values(container, attribute);
    if kind == OpKind::Remove {
        for element in &mut values {
            if let Value::Object(object) = element {
                unset(object, sub)?;
            }
        }
    } else {
        let value = normalize(sub, value.unwrap_or(&Value::Null))?;
        if values.is_empty() {
            values.push(Value::Object(Map::new()));
        }
        for element in &mut values {
            set(as_object(element), sub, value.clone())?;
        }
        let touched: Vec<usize> = (0..values.len()).collect();
        clear_other_primaries(attribute, &mut values, &touched)?;
    }
    store_values(container, attribute, values);
    Ok(())
}

/// `attr[filter]` and `attr[filter].sub` (RFC 7644 §3.5.2).
pub(super) fn filtered(
    container: &mut Map<String, Value>,
    kind: OpKind,
    attribute: &'static Attribute,
    filter: &Filter,
    sub: Option<&'static Attribute>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let mut values = take_values(container, attribute);
    let mut selected: Vec<usize> = (0..values.len())
        .filter(|&index| filter.matches_within(&values[index], attribute))
        .collect();
    if kind == OpKind::Remove {
        match sub {
            // RFC 7644 §3.5.2.2: the values matched by the filter are removed.
            // Removing nothing is not an error: IdPs retry removals.
            None => remove_indices(&mut values, &selected),
            Some(sub) => {
                for &index in &selected {
                    unset(as_object(&mut values[index]), sub)?;
                }
            }
        }
        store_values(container, attribute, values);
        return Ok(());
    }
    if selected.is_empty() {
        // Entra sends `emails[type eq "work"].value` (also as `replace`) for
        // a user without a work email and expects one to be added; RFC 7644
        // §3.5.2.3 would answer noTarget. A filter of `eq` conditions says
        // what the new value is, so add it; anything else has no target.
        let conditions = filter
            .equality_conditions()
            .filter(|_| attribute.multi_valued || values.is_empty());
        let Some(conditions) = conditions else {
            return Err(ScimError::no_target(format!(
                "no value of `{}` matches [{filter}]",
                attribute.name
            )));
        };
        values.push(value_from_conditions(attribute, &conditions)?);
        selected.push(values.len() - 1);
    }
    let value = value.unwrap_or(&Value::Null);
    match sub {
        Some(sub) => {
            let value = normalize(sub, value)?;
            for &index in &selected {
                set(as_object(&mut values[index]), sub, value.clone())?;
            }
        }
        None => match normalize_one(attribute, value)? {
            Value::Object(sub_values) => {
                for &index in &selected {
                    if kind == OpKind::Replace {
                        // RFC 7644 §3.5.2.3: matching values are replaced.
                        // The filter's conditions stay true of the new value
                        // (replacing `emails[type eq "work"]` keeps it work).
                        let conditions = filter.equality_conditions().unwrap_or_default();
                        values[index] = value_from_conditions(attribute, &conditions)?;
                    }
                    merge(as_object(&mut values[index]), attribute, sub_values.clone())?;
                }
            }
            // null: the selected values become unassigned.
            _ => {
                remove_indices(&mut values, &selected);
                selected.clear();
            }
        },
    }
    clear_other_primaries(attribute, &mut values, &selected)?;
    store_values(container, attribute, values);
    Ok(())
}

pub(super) fn remove_indices(values: &mut Vec<Value>, indices: &[usize]) {
    let mut index = 0;
    values.retain(|_| {
        index += 1;
        !indices.contains(&(index - 1))
    });
}

/// Appends values to a multi-valued attribute. A value that is already there
/// (same `value` and compatible `type`, or identical) is updated in place
/// rather than duplicated.
pub(super) fn append(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
    new: Vec<Value>,
) -> Result<(), ScimError> {
    let mut values = take_values(container, attribute);
    let mut touched = Vec::new();
    for element in new {
        let element = new_value(attribute, element)?;
        if !is_assigned(&element) {
            continue;
        }
        match values
            .iter()
            .position(|existing| same_value(attribute, existing, &element))
        {
            Some(index) => {
                if let Value::Object(sub_values) = element {
                    merge(as_object(&mut values[index]), attribute, sub_values)?;
                }
                touched.push(index);
            }
            None => {
                values.push(element);
                touched.push(values.len() - 1);
            }
        }
    }
    clear_other_primaries(attribute, &mut values, &touched)?;
    store_values(container, attribute, values);
    Ok(())
}

/// Removes the listed values of a multi-valued attribute.
pub(super) fn remove_listed(
    container: &mut Map<String, Value>,
    attribute: &'static Attribute,
    listed: &Value,
) -> Result<(), ScimError> {
    let Value::Array(listed) = normalize(attribute, listed)? else {
        return Ok(());
    };
    let listed = listed
        .into_iter()
        .map(|element| new_value(attribute, element))
        .collect::<Result<Vec<_>, _>>()?;
    let mut values = take_values(container, attribute);
    values.retain(|value| !listed.iter().any(|gone| same_value(attribute, value, gone)));
    store_values(container, attribute, values);
    Ok(())
}

/// RFC 7643 §2.4: "The primary attribute value "true" MUST appear no more
/// than once." Setting it on one value clears it on the others.
pub(super) fn clear_other_primaries(
    attribute: &'static Attribute,
    values: &mut [Value],
    touched: &[usize],
) -> Result<(), ScimError> {
    if attribute.sub_attribute("primary").is_none() {
        return Ok(());
    }
    let is_primary = |value: &Value| get_ignore_case(value, "primary") == Some(&Value::Bool(true));
    let mut primaries: Vec<usize> = touched
        .iter()
        .copied()
        .filter(|&i| is_primary(&values[i]))
        .collect();
    primaries.sort_unstable();
    primaries.dedup();
    match primaries[..] {
        [] => Ok(()),
        [primary] => {
            for (index, value) in values.iter_mut().enumerate() {
                if let (Value::Object(object), true) = (value, index != primary) {
                    take(object, "primary");
                }
            }
            Ok(())
        }
        _ => Err(ScimError::invalid_value(format!(
            "only one value of `{}` may be primary (RFC 7643 §2.4)",
            attribute.name
        ))),
    }
}

/// Whether two values of a multi-valued attribute are the same value: for
/// complex values with a `value`, the same `value` (by its caseExact) and no
/// conflicting `type`; otherwise identical.
pub(super) fn same_value(attribute: &'static Attribute, a: &Value, b: &Value) -> bool {
    if let Some(value_definition) = attribute.sub_attribute("value") {
        let (Some(a_value), Some(b_value)) =
            (get_ignore_case(a, "value"), get_ignore_case(b, "value"))
        else {
            return a == b;
        };
        fn type_of(value: &Value) -> Option<&str> {
            get_ignore_case(value, "type").and_then(Value::as_str)
        }
        let types_agree = match (type_of(a), type_of(b)) {
            (Some(a_type), Some(b_type)) => a_type.eq_ignore_ascii_case(b_type),
            _ => true,
        };
        return types_agree && equal_values(value_definition, a_value, b_value);
    }
    equal_values(attribute, a, b)
}

pub(super) fn equal_values(attribute: &Attribute, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) if !attribute.case_exact => {
            a.to_lowercase() == b.to_lowercase()
        }
        _ => a == b,
    }
}

/// The new value a filter of `eq` conditions selects, e.g. `{"type": "work"}`
/// for `emails[type eq "work"]`.
pub(super) fn value_from_conditions(
    attribute: &'static Attribute,
    conditions: &[(&str, &CompValue)],
) -> Result<Value, ScimError> {
    let mut object = Map::new();
    for (name, value) in conditions {
        // The filter was validated, so every name is a sub-attribute.
        if let Some(sub) = attribute.sub_attribute(name) {
            set(&mut object, sub, normalize(sub, &value.to_json())?)?;
        }
    }
    Ok(Value::Object(object))
}
