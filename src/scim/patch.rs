//! The PATCH engine (RFC 7644 §3.5.2) over the SCIM JSON representation of a
//! resource: core attributes at the top level, extension attributes under
//! their schema URN.
//!
//! It speaks every dialect the IdPs send (see scim-idps.md): Entra's
//! capitalised ops, string booleans, one op per attribute path and `Remove
//! members` with a value list; Entra's newer path-less `replace` whose value
//! keys are attribute paths; Okta's path-less `replace` of `active` and of a
//! group's `displayName` (with `id` in the value); value-filtered paths such
//! as `emails[type eq "work"].value`.
//!
//! PATCH is atomic: the engine works on a copy and returns it only when every
//! operation succeeded; on error the caller keeps the original.
//!
//! Large groups keep their members outside the group object, so
//! [`apply_group`] patches the group without its members and describes the
//! member changes as a [`MembersChange`] the caller applies to its store.

use serde_json::{Map, Value, json};

use super::error::ScimError;
use super::filter::{CompValue, CompareOp, Filter};
use super::path::{PatchPath, PatchTarget};
use super::schema::{
    Attribute, AttributeType, GROUP_SCHEMA, Mutability, ResourceType, Schema, get_ignore_case,
    member_ignore_case, parse_date_time,
};

/// The schema every PATCH request body must list (RFC 7644 §3.5.2).
pub use crate::urns::PATCH_OP_SCHEMA;

/// Applies a whole PatchOp request body to a resource and returns the
/// patched resource. Nothing is changed unless every operation succeeds.
pub fn apply(
    resource: &Value,
    request: &Value,
    resource_type: ResourceType,
) -> Result<Value, ScimError> {
    let operations = operations(request)?;
    let mut engine = Engine {
        resource_type,
        members: None,
    };
    engine.run(resource, &operations)
}

/// Applies a PatchOp request to a group whose members are stored elsewhere:
/// returns the patched group (still without members) and what to do with
/// the member set, in the order the operations asked for it.
pub fn apply_group(
    group_without_members: &Value,
    request: &Value,
) -> Result<(Value, MembersChange), ScimError> {
    let operations = operations(request)?;
    let mut members = MembersChange::default();
    let mut engine = Engine {
        resource_type: ResourceType::Group,
        members: Some(&mut members),
    };
    let group = engine.run(group_without_members, &operations)?;
    Ok((group, members))
}

/// One member of a group, as a PATCH names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's id.
    pub value: String,
    /// `User` or `Group`, when the client said.
    pub r#type: Option<String>,
    pub display: Option<String>,
}

impl Member {
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            r#type: None,
            display: None,
        }
    }
}

/// What a PATCH does to a group's member set, without knowing the set. The
/// operations are folded in order, so the fields apply as: if `remove_all`,
/// or if `replace_all` is set, start from the empty set; then take the
/// members of `replace_all`; then remove the ids in `remove`; then add the
/// members in `add` (a member already present is updated). Folding keeps it
/// minimal: with `replace_all` set, `add` and `remove` are empty; with
/// `remove_all`, `remove` is empty; and no id is in both `add` and `remove`.
/// [`MembersChange::apply_to`] is that rule as code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembersChange {
    pub replace_all: Option<Vec<Member>>,
    pub add: Vec<Member>,
    pub remove: Vec<String>,
    pub remove_all: bool,
}

impl MembersChange {
    /// Whether the request left the members alone.
    pub fn is_empty(&self) -> bool {
        self.replace_all.is_none()
            && self.add.is_empty()
            && self.remove.is_empty()
            && !self.remove_all
    }

    /// The member set after this change, for callers that hold the whole
    /// set (small groups, tests).
    pub fn apply_to(&self, mut members: Vec<Member>) -> Vec<Member> {
        if self.remove_all {
            members.clear();
        }
        if let Some(all) = &self.replace_all {
            members = all.clone();
        }
        members.retain(|member| !self.remove.contains(&member.value));
        for member in &self.add {
            upsert(&mut members, member.clone());
        }
        members
    }

    fn add_member(&mut self, member: Member) {
        self.remove.retain(|id| *id != member.value);
        match &mut self.replace_all {
            Some(all) => upsert(all, member),
            None => upsert(&mut self.add, member),
        }
    }

    fn remove_member(&mut self, id: &str) {
        self.add.retain(|member| member.value != id);
        if let Some(all) = &mut self.replace_all {
            all.retain(|member| member.value != id);
            if all.is_empty() {
                self.clear_all();
            }
        } else if !self.remove_all && !self.remove.iter().any(|removed| removed == id) {
            self.remove.push(id.to_owned());
        }
    }

    fn clear_all(&mut self) {
        *self = Self {
            remove_all: true,
            ..Self::default()
        };
    }

    fn replace_members(&mut self, members: Vec<Member>) {
        let mut all = Vec::new();
        for member in members {
            upsert(&mut all, member);
        }
        if all.is_empty() {
            self.clear_all();
        } else {
            *self = Self {
                replace_all: Some(all),
                ..Self::default()
            };
        }
    }
}

/// Adds a member, or updates the one with the same id.
fn upsert(members: &mut Vec<Member>, member: Member) {
    match members.iter_mut().find(|m| m.value == member.value) {
        Some(existing) => *existing = member,
        None => members.push(member),
    }
}

// ---------------------------------------------------------------------------
// The request

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Add,
    Replace,
    Remove,
}

struct Operation<'r> {
    kind: OpKind,
    path: Option<&'r str>,
    /// `None` when the operation has no `value` member at all.
    value: Option<&'r Value>,
}

impl Operation<'_> {
    fn describe(&self, index: usize) -> String {
        let op = match self.kind {
            OpKind::Add => "add",
            OpKind::Replace => "replace",
            OpKind::Remove => "remove",
        };
        match self.path {
            Some(path) => format!("operation {} ({op} {path})", index + 1),
            None => format!("operation {} ({op})", index + 1),
        }
    }
}

/// Reads the PatchOp envelope (RFC 7644 §3.5.2). Member names are matched
/// ignoring case, like attribute names.
fn operations(request: &Value) -> Result<Vec<Operation<'_>>, ScimError> {
    if !request.is_object() {
        return Err(ScimError::invalid_syntax(
            "a PATCH body must be a JSON object",
        ));
    }
    let lists_patch_op = get_ignore_case(request, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas
                .iter()
                .filter_map(Value::as_str)
                .any(|schema| schema.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
        });
    if !lists_patch_op {
        return Err(ScimError::invalid_syntax(format!(
            "a PATCH body must list \"{PATCH_OP_SCHEMA}\" in `schemas` (RFC 7644 §3.5.2)"
        )));
    }
    let Some(operations) = get_ignore_case(request, "Operations").and_then(Value::as_array) else {
        return Err(ScimError::invalid_syntax(
            "a PATCH body needs an `Operations` array (RFC 7644 §3.5.2)",
        ));
    };
    if operations.is_empty() {
        return Err(ScimError::invalid_syntax(
            "`Operations` must hold one or more operations (RFC 7644 §3.5.2)",
        ));
    }
    operations
        .iter()
        .enumerate()
        .map(|(index, operation)| parse_operation(index, operation))
        .collect()
}

fn parse_operation(index: usize, operation: &Value) -> Result<Operation<'_>, ScimError> {
    let number = index + 1;
    if !operation.is_object() {
        return Err(ScimError::invalid_syntax(format!(
            "operation {number} is not a JSON object"
        )));
    }
    // Entra's default dialect capitalises the op: "Add", "Replace", "Remove".
    let kind = match get_ignore_case(operation, "op").and_then(Value::as_str) {
        Some(op) if op.eq_ignore_ascii_case("add") => OpKind::Add,
        Some(op) if op.eq_ignore_ascii_case("replace") => OpKind::Replace,
        Some(op) if op.eq_ignore_ascii_case("remove") => OpKind::Remove,
        Some(op) => {
            return Err(ScimError::invalid_syntax(format!(
                "operation {number}: `op` must be add, replace or remove, not \"{op}\""
            )));
        }
        None => {
            return Err(ScimError::invalid_syntax(format!(
                "operation {number} needs an `op`: add, replace or remove"
            )));
        }
    };
    let path = match get_ignore_case(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(path)) if path.trim().is_empty() => None,
        Some(Value::String(path)) => Some(path.trim()),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "operation {number}: `path` must be a string"
            )));
        }
    };
    Ok(Operation {
        kind,
        path,
        value: get_ignore_case(operation, "value"),
    })
}

// ---------------------------------------------------------------------------
// The engine

struct Engine<'m> {
    resource_type: ResourceType,
    /// Where group member operations go instead of the document, for
    /// [`apply_group`].
    members: Option<&'m mut MembersChange>,
}

impl Engine<'_> {
    fn run(&mut self, resource: &Value, operations: &[Operation<'_>]) -> Result<Value, ScimError> {
        let mut patched = resource.clone();
        let Some(document) = patched.as_object_mut() else {
            return Err(ScimError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "the resource to patch is not a JSON object",
            ));
        };
        for (index, operation) in operations.iter().enumerate() {
            self.operation(document, operation)
                .map_err(|error| ScimError {
                    detail: format!("{}: {}", operation.describe(index), error.detail),
                    ..error
                })?;
        }
        tidy_extensions(document, self.resource_type);
        self.check_required_attributes_kept(resource, &patched)?;
        Ok(patched)
    }

    fn operation(
        &mut self,
        document: &mut Map<String, Value>,
        op: &Operation<'_>,
    ) -> Result<(), ScimError> {
        let Some(path) = op.path else {
            return match op.kind {
                // RFC 7644 §3.5.2.2: "If "path" is unspecified, the operation
                // fails with HTTP status code 400 and a "scimType" error code
                // of "noTarget"."
                OpKind::Remove => Err(ScimError::no_target(
                    "remove needs a `path` (RFC 7644 §3.5.2.2)",
                )),
                kind => {
                    let value = required_value(op.value)?;
                    self.path_less(document, kind, value)
                }
            };
        };
        // A path naming an extension schema targets all its attributes.
        if let Some(extension) = self.resource_type.extension(path) {
            return self.extension(document, op.kind, extension, op.value);
        }
        let target = PatchPath::parse(path)?.resolve(self.resource_type)?;
        if target.is_read_only() {
            return Err(ScimError::mutability(format!(
                "`{path}` is read-only (RFC 7643 §7) and cannot be patched"
            )));
        }
        self.target(document, op.kind, &target, op.value)
    }

    /// RFC 7644 §3.5.2.1/§3.5.2.3 without a path: the value is an object of
    /// attributes. Entra's newer dialect writes the keys as attribute paths
    /// (`name.givenName`, URN-qualified extension attributes).
    fn path_less(
        &mut self,
        document: &mut Map<String, Value>,
        kind: OpKind,
        value: &Value,
    ) -> Result<(), ScimError> {
        let Some(attributes) = value.as_object() else {
            return Err(ScimError::invalid_value(
                "an operation without a `path` needs an object of attributes as its `value`",
            ));
        };
        for (key, value) in attributes {
            self.path_less_attribute(document, kind, key, value)?;
        }
        Ok(())
    }

    fn path_less_attribute(
        &mut self,
        document: &mut Map<String, Value>,
        kind: OpKind,
        key: &str,
        value: &Value,
    ) -> Result<(), ScimError> {
        // The resource's `schemas` follow from its attributes.
        if key.eq_ignore_ascii_case("schemas") {
            return Ok(());
        }
        if let Some(extension) = self.resource_type.extension(key) {
            return self.extension(document, kind, extension, Some(value));
        }
        // Core attributes may be nested under the core URN as well.
        if key.eq_ignore_ascii_case(self.resource_type.core_schema().id) {
            return self.path_less(document, kind, value);
        }
        // Clients send schemas we hold no definition for (OneLogin, Entra's
        // Microsoft group URN); with nothing to validate or store them by,
        // they are skipped, as they are when creating a resource.
        if key
            .get(..4)
            .is_some_and(|start| start.eq_ignore_ascii_case("urn:"))
            && !self.knows_schema_of(key)
        {
            return Ok(());
        }
        let target = PatchPath::parse(key)?.resolve(self.resource_type)?;
        // Okta sends back `id` and `meta` (a group rename carries `id`):
        // read-only attributes in a value are ignored, not rejected.
        if target.is_read_only() {
            return Ok(());
        }
        self.target(document, kind, &target, Some(value))
    }

    /// Whether `key` is qualified with the URN of one of our schemas.
    fn knows_schema_of(&self, key: &str) -> bool {
        std::iter::once(self.resource_type.core_schema())
            .chain(self.resource_type.extensions().iter().copied())
            .any(|schema| {
                let urn = schema.id.len();
                key.get(..urn)
                    .is_some_and(|prefix| prefix.eq_ignore_ascii_case(schema.id))
                    && key[urn..].starts_with(':')
            })
    }

    /// An operation on an extension schema as a whole: `remove` drops all its
    /// attributes, `add`/`replace` take an object of its attributes.
    fn extension(
        &mut self,
        document: &mut Map<String, Value>,
        kind: OpKind,
        extension: &'static Schema,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        if kind == OpKind::Remove {
            take(document, extension.id);
            return Ok(());
        }
        match required_value(value)? {
            Value::Null => {
                take(document, extension.id);
                Ok(())
            }
            Value::Object(attributes) => {
                for (key, value) in attributes {
                    // Clients that model the extension as its own resource
                    // (scim2-tester, pydantic models) send its `schemas` along.
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let path = format!("{}:{key}", extension.id);
                    self.path_less_attribute(document, kind, &path, value)?;
                }
                Ok(())
            }
            _ => Err(ScimError::invalid_value(format!(
                "`{}` needs an object of its attributes",
                extension.id
            ))),
        }
    }

    /// One operation on a resolved path.
    fn target(
        &mut self,
        document: &mut Map<String, Value>,
        kind: OpKind,
        target: &PatchTarget,
        value: Option<&Value>,
    ) -> Result<(), ScimError> {
        let attribute = target.attribute.attribute;
        let is_members = target.attribute.schema.id == GROUP_SCHEMA && attribute.name == "members";
        if let (Some(members), true) = (self.members.as_deref_mut(), is_members) {
            return members_operation(members, kind, target, value);
        }
        let value = match kind {
            OpKind::Remove => value,
            OpKind::Add | OpKind::Replace => Some(required_value(value)?),
        };
        let Some(container) = container(document, target.attribute.schema, kind != OpKind::Remove)
        else {
            // Removing from an extension the resource does not have.
            return Ok(());
        };
        match (&target.filter, target.attribute.sub_attribute) {
            (None, None) => whole_attribute(container, kind, attribute, value),
            (None, Some(sub)) if !attribute.multi_valued => {
                sub_attribute(container, kind, attribute, sub, value)
            }
            (None, Some(sub)) => {
                sub_attribute_of_every_value(container, kind, attribute, sub, value)
            }
            (Some(filter), sub) => filtered(container, kind, attribute, filter, sub, value),
        }
    }

    /// A PATCH cannot remove what the schema requires (RFC 7643 §7
    /// `required`): userName of a User, displayName of a Group.
    fn check_required_attributes_kept(
        &self,
        before: &Value,
        after: &Value,
    ) -> Result<(), ScimError> {
        for attribute in self
            .resource_type
            .core_schema()
            .attributes
            .iter()
            .filter(|a| a.required)
        {
            let had = get_ignore_case(before, attribute.name).is_some_and(is_assigned);
            let has = get_ignore_case(after, attribute.name).is_some_and(is_assigned);
            if had && !has {
                return Err(ScimError::invalid_value(format!(
                    "`{}` is required and cannot be removed",
                    attribute.name
                )));
            }
        }
        Ok(())
    }
}

fn required_value(value: Option<&Value>) -> Result<&Value, ScimError> {
    value.ok_or_else(|| {
        ScimError::invalid_syntax("add and replace need a `value` (RFC 7644 §3.5.2)")
    })
}

/// The object holding a schema's attributes: the resource itself for core
/// attributes, the member named by the URN for an extension (created when
/// `create`, e.g. for the first enterprise attribute of a user).
fn container<'d>(
    document: &'d mut Map<String, Value>,
    schema: &'static Schema,
    create: bool,
) -> Option<&'d mut Map<String, Value>> {
    if !schema.extension {
        return Some(document);
    }
    let exists = matches!(get(document, schema.id), Some(Value::Object(_)));
    if !exists {
        if !create {
            return None;
        }
        put(document, schema.id, Value::Object(Map::new()));
    }
    get_mut(document, schema.id).and_then(Value::as_object_mut)
}

/// Drops empty extension objects and keeps `schemas` listing exactly the
/// extensions present (RFC 7643 §3).
fn tidy_extensions(document: &mut Map<String, Value>, resource_type: ResourceType) {
    for extension in resource_type.extensions() {
        let present = get(document, extension.id).is_some_and(is_assigned);
        if !present {
            take(document, extension.id);
        }
        let Some(Value::Array(schemas)) = get_mut(document, "schemas") else {
            continue;
        };
        let listed = |schema: &Value| {
            schema
                .as_str()
                .is_some_and(|schema| schema.eq_ignore_ascii_case(extension.id))
        };
        if present && !schemas.iter().any(listed) {
            schemas.push(json!(extension.id));
        } else if !present {
            schemas.retain(|schema| !listed(schema));
        }
    }
}

// ---------------------------------------------------------------------------
// Operations by path form

/// `attr` (no filter, no sub-attribute).
fn whole_attribute(
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
fn sub_attribute(
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
fn sub_attribute_of_every_value(
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
fn filtered(
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

fn remove_indices(values: &mut Vec<Value>, indices: &[usize]) {
    let mut index = 0;
    values.retain(|_| {
        index += 1;
        !indices.contains(&(index - 1))
    });
}

/// Appends values to a multi-valued attribute. A value that is already there
/// (same `value` and compatible `type`, or identical) is updated in place
/// rather than duplicated.
fn append(
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
fn remove_listed(
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
fn clear_other_primaries(
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
fn same_value(attribute: &'static Attribute, a: &Value, b: &Value) -> bool {
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

fn equal_values(attribute: &Attribute, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) if !attribute.case_exact => {
            a.to_lowercase() == b.to_lowercase()
        }
        _ => a == b,
    }
}

/// The new value a filter of `eq` conditions selects, e.g. `{"type": "work"}`
/// for `emails[type eq "work"]`.
fn value_from_conditions(
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

// ---------------------------------------------------------------------------
// Group members kept outside the group

/// A member operation of [`apply_group`], folded into `change`.
fn members_operation(
    change: &mut MembersChange,
    kind: OpKind,
    target: &PatchTarget,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let members = target.attribute.attribute;
    if target.attribute.sub_attribute.is_some() {
        return Err(ScimError::invalid_path(
            "members are added, removed or replaced whole; their sub-attributes cannot be patched one by one",
        ));
    }
    match (&target.filter, kind) {
        // Okta: `remove members[value eq "a"]`; Entra's newer dialect too.
        (Some(filter), OpKind::Remove) => {
            for id in member_ids_selected_by(filter)? {
                change.remove_member(id);
            }
        }
        (Some(_), _) => {
            return Err(ScimError::invalid_path(
                "a filtered `members` path can only be removed; add or replace members with `path: members`",
            ));
        }
        (None, OpKind::Add) => {
            for member in parse_members(members, required_value(value)?)? {
                change.add_member(member);
            }
        }
        // Okta replaces the whole set with `replace members`.
        (None, OpKind::Replace) => {
            change.replace_members(parse_members(members, required_value(value)?)?)
        }
        (None, OpKind::Remove) => match value {
            None | Some(Value::Null) => change.clear_all(),
            // Entra's default dialect: remove only the listed members.
            Some(listed) => {
                for member in parse_members(members, listed)? {
                    change.remove_member(&member.value);
                }
            }
        },
    }
    Ok(())
}

/// The ids of `members[value eq "a"]` or `members[value eq "a" or value eq
/// "b"]`: the only member filters a store can apply without the member list.
fn member_ids_selected_by(filter: &Filter) -> Result<Vec<&str>, ScimError> {
    match filter {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::String(id),
        } if path.urn.is_none()
            && path.sub_attribute.is_none()
            && path.name.eq_ignore_ascii_case("value") =>
        {
            Ok(vec![id])
        }
        Filter::Or(left, right) => {
            let mut ids = member_ids_selected_by(left)?;
            ids.extend(member_ids_selected_by(right)?);
            Ok(ids)
        }
        _ => Err(ScimError::invalid_filter(format!(
            "members can be selected only by id: `members[value eq \"<id>\"]`, or several joined with `or`; [{filter}] is not supported"
        ))),
    }
}

fn parse_members(members: &'static Attribute, value: &Value) -> Result<Vec<Member>, ScimError> {
    let Value::Array(elements) = normalize(members, value)? else {
        return Ok(Vec::new());
    };
    let text = |element: &Value, name: &str| {
        get_ignore_case(element, name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut parsed = Vec::with_capacity(elements.len());
    for element in elements {
        let element = new_value(members, element)?;
        if !is_assigned(&element) {
            continue;
        }
        let value = text(&element, "value").ok_or_else(|| {
            ScimError::invalid_value("each member needs a `value`: the id of the user or group")
        })?;
        parsed.push(Member {
            value,
            r#type: text(&element, "type"),
            display: text(&element, "display"),
        });
    }
    Ok(parsed)
}

// ---------------------------------------------------------------------------
// Values: checked against the schema and brought into stored form

/// Checks a request value against an attribute's definition (400
/// `invalidValue` for the wrong JSON type) and canonicalises it: sub-attribute
/// names spelled as in the schema, Entra's `"True"`/`"False"` strings as
/// booleans, read-only sub-attributes dropped. A multi-valued attribute gets
/// an array (a lone value is wrapped); null stays null (unassigned).
fn normalize(attribute: &'static Attribute, value: &Value) -> Result<Value, ScimError> {
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
fn normalize_one(attribute: &'static Attribute, value: &Value) -> Result<Value, ScimError> {
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
fn new_value(attribute: &'static Attribute, element: Value) -> Result<Value, ScimError> {
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
fn merge(
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
fn set(
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

fn unset(object: &mut Map<String, Value>, attribute: &'static Attribute) -> Result<(), ScimError> {
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
fn is_assigned(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(values) => values.iter().any(is_assigned),
        Value::Object(members) => members.values().any(is_assigned),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

// ---------------------------------------------------------------------------
// JSON objects with case-insensitive keys, written with the schema's spelling

fn key_of(object: &Map<String, Value>, name: &str) -> Option<String> {
    if object.contains_key(name) {
        return Some(name.to_owned());
    }
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
}

fn get<'o>(object: &'o Map<String, Value>, name: &str) -> Option<&'o Value> {
    member_ignore_case(object, name)
}

fn get_mut<'o>(object: &'o mut Map<String, Value>, name: &str) -> Option<&'o mut Value> {
    let key = key_of(object, name)?;
    object.get_mut(&key)
}

/// Removes the member `name` under every spelling.
fn take(object: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let mut taken = None;
    while let Some(key) = key_of(object, name) {
        taken = object.remove(&key);
    }
    taken
}

fn put(object: &mut Map<String, Value>, name: &str, value: Value) {
    take(object, name);
    object.insert(name.to_owned(), value);
}

/// The object of a single-valued complex attribute, created if absent.
fn object_entry<'o>(
    container: &'o mut Map<String, Value>,
    attribute: &'static Attribute,
) -> &'o mut Map<String, Value> {
    if !matches!(get(container, attribute.name), Some(Value::Object(_))) {
        put(container, attribute.name, Value::Object(Map::new()));
    }
    as_object(get_mut(container, attribute.name).expect("just inserted"))
}

/// A complex value as an object; anything else stored there is replaced.
fn as_object(value: &mut Value) -> &mut Map<String, Value> {
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
fn take_values(container: &mut Map<String, Value>, attribute: &'static Attribute) -> Vec<Value> {
    match take(container, attribute.name) {
        Some(Value::Array(values)) => values,
        Some(Value::Null) | None => Vec::new(),
        Some(single) => vec![single],
    }
}

fn store_values(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::error::ScimType;
    use crate::scim::schema::{ENTERPRISE_USER_SCHEMA as ENTERPRISE, USER_SCHEMA};

    fn request(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
    }

    fn patch_user(user: &Value, operations: Value) -> Value {
        apply(user, &request(operations), ResourceType::User)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn user_error(user: &Value, operations: Value) -> ScimError {
        apply(user, &request(operations), ResourceType::User).expect_err("the patch should fail")
    }

    fn patch_group(group: &Value, operations: Value) -> (Value, MembersChange) {
        apply_group(group, &request(operations)).unwrap_or_else(|error| panic!("{error}"))
    }

    fn group_error(operations: Value) -> ScimError {
        apply_group(&tour_guides(), &request(operations)).expect_err("the patch should fail")
    }

    fn barbara() -> Value {
        json!({
            "schemas": [USER_SCHEMA],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "externalId": "bjensen",
            "userName": "bjensen@example.com",
            "name": {"familyName": "Jensen", "givenName": "Barbara", "middleName": "Jane"},
            "displayName": "Babs Jensen",
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"resourceType": "User", "created": "2010-01-23T04:56:22Z", "lastModified": "2011-05-13T04:42:34Z"}
        })
    }

    /// A user with nothing but the required userName.
    fn bare_user() -> Value {
        json!({"schemas": [USER_SCHEMA], "id": "u1", "userName": "pat@example.com"})
    }

    /// A group as `apply_group` gets it: without members.
    fn tour_guides() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "meta": {"resourceType": "Group"}
        })
    }

    fn member(id: &str) -> Member {
        Member::new(id)
    }

    fn assert_error(error: &ScimError, scim_type: ScimType, detail: &str) {
        assert_eq!(error.status.as_u16(), 400, "{error}");
        assert_eq!(error.scim_type, Some(scim_type), "{error}");
        assert!(
            error.detail.contains(detail),
            "{:?} does not contain {detail:?}",
            error.detail
        );
    }

    // --- the request ---------------------------------------------------------

    #[test]
    fn the_request_must_list_the_patch_op_schema() {
        let body = json!({"Operations": [{"op": "replace", "path": "active", "value": false}]});
        let error = apply(&barbara(), &body, ResourceType::User).unwrap_err();
        assert_error(&error, ScimType::InvalidSyntax, PATCH_OP_SCHEMA);
    }

    #[test]
    fn the_patch_op_schema_and_envelope_names_ignore_case() {
        let body = json!({
            "SCHEMAS": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
            "operations": [{"OP": "replace", "Path": "active", "VALUE": false}]
        });
        let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
        assert_eq!(patched["active"], false);
    }

    #[test]
    fn the_request_needs_one_or_more_operations() {
        let error = apply(
            &barbara(),
            &json!({"schemas": [PATCH_OP_SCHEMA]}),
            ResourceType::User,
        )
        .unwrap_err();
        assert_error(&error, ScimType::InvalidSyntax, "`Operations` array");
        let error = user_error(&barbara(), json!([]));
        assert_error(&error, ScimType::InvalidSyntax, "one or more");
    }

    #[test]
    fn an_unknown_op_is_invalid_syntax() {
        let error = user_error(
            &barbara(),
            json!([{"op": "merge", "path": "title", "value": "x"}]),
        );
        assert_error(&error, ScimType::InvalidSyntax, "not \"merge\"");
        let error = user_error(&barbara(), json!([{"path": "title", "value": "x"}]));
        assert_error(&error, ScimType::InvalidSyntax, "needs an `op`");
    }

    #[test]
    fn ops_are_matched_ignoring_case() {
        // Entra's default dialect capitalises them.
        let patched = patch_user(
            &barbara(),
            json!([
                {"op": "Add", "path": "nickName", "value": "Babs"},
                {"op": "Replace", "path": "title", "value": "Tour Guide"},
                {"op": "REMOVE", "path": "displayName"}
            ]),
        );
        assert_eq!(patched["nickName"], "Babs");
        assert_eq!(patched["title"], "Tour Guide");
        assert!(patched.get("displayName").is_none());
    }

    #[test]
    fn add_and_replace_need_a_value() {
        let error = user_error(&barbara(), json!([{"op": "replace", "path": "title"}]));
        assert_error(&error, ScimType::InvalidSyntax, "need a `value`");
    }

    #[test]
    fn errors_name_the_failing_operation() {
        let error = user_error(
            &barbara(),
            json!([
                {"op": "replace", "path": "title", "value": "x"},
                {"op": "replace", "path": "shoeSize", "value": 42}
            ]),
        );
        assert_error(
            &error,
            ScimType::InvalidPath,
            "operation 2 (replace shoeSize): ",
        );
    }

    #[test]
    fn one_failing_operation_fails_the_whole_patch() {
        let original = barbara();
        let result = apply(
            &original,
            &request(json!([
                {"op": "replace", "path": "active", "value": false},
                {"op": "replace", "path": "id", "value": "stolen"}
            ])),
            ResourceType::User,
        );
        assert_eq!(result.unwrap_err().scim_type, Some(ScimType::Mutability));
        assert_eq!(original, barbara(), "the caller's resource is untouched");
    }

    // --- simple attributes -------------------------------------------------

    #[test]
    fn replace_sets_a_single_valued_attribute() {
        // Entra, "Update User [Single-valued properties]".
        let patched = patch_user(
            &barbara(),
            json!([{
                "op": "Replace",
                "path": "userName",
                "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
            }]),
        );
        assert_eq!(
            patched["userName"],
            "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
        );
    }

    #[test]
    fn replace_of_an_absent_attribute_adds_it() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "replace", "path": "title", "value": "Guide"}]),
        );
        assert_eq!(patched["title"], "Guide");
    }

    #[test]
    fn add_sets_a_single_valued_attribute() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "path": "displayName", "value": "B. Jensen"}]),
        );
        assert_eq!(patched["displayName"], "B. Jensen");
    }

    #[test]
    fn remove_unassigns_an_attribute() {
        let patched = patch_user(&barbara(), json!([{"op": "remove", "path": "externalId"}]));
        assert!(patched.get("externalId").is_none());
    }

    #[test]
    fn remove_of_an_absent_attribute_changes_nothing() {
        let patched = patch_user(&barbara(), json!([{"op": "remove", "path": "nickName"}]));
        assert_eq!(patched, barbara());
    }

    #[test]
    fn remove_without_a_path_is_no_target() {
        let error = user_error(&barbara(), json!([{"op": "remove"}]));
        assert_error(&error, ScimType::NoTarget, "needs a `path`");
        let error = user_error(&barbara(), json!([{"op": "remove", "path": ""}]));
        assert_eq!(error.scim_type, Some(ScimType::NoTarget));
    }

    #[test]
    fn null_unassigns() {
        let patched = patch_user(
            &barbara(),
            json!([
                {"op": "replace", "path": "displayName", "value": null},
                {"op": "add", "path": "externalId", "value": null},
                {"op": "replace", "value": {"name": null}}
            ]),
        );
        assert!(patched.get("displayName").is_none());
        assert!(patched.get("externalId").is_none());
        assert!(patched.get("name").is_none());
    }

    #[test]
    fn a_required_attribute_cannot_be_removed() {
        let error = user_error(&barbara(), json!([{"op": "remove", "path": "userName"}]));
        assert_error(&error, ScimType::InvalidValue, "`userName` is required");
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "value": {"userName": null}}]),
        );
        assert_error(&error, ScimType::InvalidValue, "`userName` is required");
    }

    #[test]
    fn the_password_is_set_like_any_write_only_string() {
        // The caller drops it before storing.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "path": "password", "value": "t1meMa$heen"}]),
        );
        assert_eq!(patched["password"], "t1meMa$heen");
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "path": "password", "value": 1234}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn resource_keys_in_another_case_are_replaced_by_the_schema_spelling() {
        let user = json!({"UserName": "a", "TITLE": "x"});
        let patched = patch_user(
            &user,
            json!([{"op": "replace", "path": "title", "value": "y"}]),
        );
        assert_eq!(patched, json!({"UserName": "a", "title": "y"}));
    }

    // --- booleans ----------------------------------------------------------

    #[test]
    fn entra_string_booleans_are_coerced() {
        // Entra's default dialect: {"op":"Replace","path":"active","value":"False"}.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        );
        assert_eq!(patched["active"], false);
        let patched = patch_user(
            &patched,
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        );
        assert_eq!(patched["active"], true);
        let patched = patch_user(
            &barbara(),
            json!([{"op": "Replace", "value": {"active": "false"}}]),
        );
        assert_eq!(patched["active"], false);
    }

    #[test]
    fn string_booleans_are_coerced_in_sub_attributes_too() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "Add", "path": "roles", "value": [{"value": "admin", "primary": "True"}]}]),
        );
        assert_eq!(
            patched["roles"],
            json!([{"value": "admin", "primary": true}])
        );
    }

    #[test]
    fn entra_disables_a_user() {
        // Entra, "Disable User".
        let body = json!({
            "Operations": [{"op": "Replace", "path": "active", "value": false}],
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]
        });
        let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
        assert_eq!(patched["active"], false);
    }

    // --- wrong types ---------------------------------------------------------

    #[test]
    fn values_of_the_wrong_json_type_are_invalid_values() {
        for (path, value, expected) in [
            (
                "active",
                json!("maybe"),
                "`active` must be a boolean, not \"maybe\"",
            ),
            ("active", json!(1), "`active` must be a boolean"),
            ("userName", json!(5), "`userName` must be a string, not 5"),
            ("title", json!(["a"]), "`title` must be a string"),
            (
                "name",
                json!("Barbara"),
                "`name` must be an object of sub-attributes",
            ),
            (
                "name.givenName",
                json!({"x": 1}),
                "`givenName` must be a string",
            ),
            (
                "emails",
                json!([{"value": 42}]),
                "`value` must be a string, not 42",
            ),
            (
                "emails",
                json!([[1]]),
                "`emails` must be an object of sub-attributes",
            ),
        ] {
            let error = user_error(
                &barbara(),
                json!([{"op": "replace", "path": path, "value": value}]),
            );
            assert_error(&error, ScimType::InvalidValue, expected);
        }
    }

    // --- unknown and read-only attributes ------------------------------------

    #[test]
    fn an_unknown_attribute_is_an_invalid_path() {
        let error = user_error(
            &barbara(),
            json!([{"op": "add", "path": "shoeSize", "value": "42"}]),
        );
        assert_error(
            &error,
            ScimType::InvalidPath,
            "`shoeSize` is not an attribute of User",
        );
        let error = user_error(
            &barbara(),
            json!([{"op": "add", "value": {"shoeSize": "42"}}]),
        );
        assert_error(
            &error,
            ScimType::InvalidPath,
            "`shoeSize` is not an attribute of User",
        );
    }

    #[test]
    fn an_unknown_sub_attribute_in_a_value_is_an_invalid_path() {
        let error = user_error(
            &barbara(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "a@b", "kind": "work"}]}]),
        );
        assert_error(
            &error,
            ScimType::InvalidPath,
            "`emails` has no sub-attribute `kind`",
        );
    }

    #[test]
    fn an_enterprise_attribute_without_its_urn_is_an_invalid_path() {
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "path": "employeeNumber", "value": "1"}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    }

    #[test]
    fn a_path_in_an_unknown_schema_is_an_invalid_path() {
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User:badge", "value": "1"}]),
        );
        assert_error(&error, ScimType::InvalidPath, "is not a schema of User");
    }

    #[test]
    fn an_extension_value_may_carry_its_own_schemas() {
        let patched = apply(
            &json!({"schemas": [USER_SCHEMA], "id": "u1", "userName": "pat@example.com"}),
            &json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{
                "op": "add",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
                "value": {
                    "schemas": ["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "department": "R&D"
                }
            }]}),
            ResourceType::User,
        )
        .unwrap();
        assert_eq!(
            patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            json!({"department": "R&D"})
        );
    }

    #[test]
    fn attributes_of_unknown_schemas_in_a_value_are_skipped() {
        // OneLogin and Entra put schemas in bodies that no server knows.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "value": {
                "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User:badge": "1",
                "urn:ietf:params:scim:schemas:extension:CustomExtension:2.0:User": {"badge": "1"},
                "schemas": ["urn:example:anything"],
                "title": "Guide"
            }}]),
        );
        let mut expected = barbara();
        expected["title"] = json!("Guide");
        assert_eq!(patched, expected);
    }

    #[test]
    fn writing_a_read_only_attribute_by_path_is_a_mutability_error() {
        for path in [
            "id",
            "meta",
            "meta.lastModified",
            "groups",
            "urn:ietf:params:scim:schemas:core:2.0:User:id",
        ] {
            let error = user_error(
                &barbara(),
                json!([{"op": "replace", "path": path, "value": "x"}]),
            );
            assert_error(&error, ScimType::Mutability, "is read-only");
        }
        let error = user_error(&barbara(), json!([{"op": "remove", "path": "groups"}]));
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
        let error = user_error(
            &barbara(),
            json!([{"op": "add", "path": format!("{ENTERPRISE}:manager.displayName"), "value": "x"}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
    }

    #[test]
    fn read_only_attributes_in_a_value_are_ignored() {
        // Okta sends back what it read, `id`, `meta` and `groups` included.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "value": {
                "id": "someone-else",
                "meta": {"lastModified": "2030-01-01T00:00:00Z"},
                "groups": [{"value": "g1"}],
                "displayName": "Babs"
            }}]),
        );
        assert_eq!(patched["id"], barbara()["id"]);
        assert_eq!(patched["meta"], barbara()["meta"]);
        assert!(patched.get("groups").is_none());
        assert_eq!(patched["displayName"], "Babs");
    }

    #[test]
    fn read_only_sub_attributes_in_a_value_are_ignored() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": {"value": "m1", "displayName": "Boss"}}]),
        );
        assert_eq!(patched[ENTERPRISE]["manager"], json!({"value": "m1"}));
    }

    // --- complex attributes --------------------------------------------------

    #[test]
    fn a_sub_attribute_path_sets_one_part() {
        // Entra, "Update User [Multi-valued properties]", second operation.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}]),
        );
        assert_eq!(
            patched["name"],
            json!({"familyName": "updatedFamilyName", "givenName": "Barbara", "middleName": "Jane"})
        );
    }

    #[test]
    fn a_sub_attribute_path_creates_the_complex_attribute() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "add", "path": "name.givenName", "value": "Pat"}]),
        );
        assert_eq!(patched["name"], json!({"givenName": "Pat"}));
    }

    #[test]
    fn removing_the_last_sub_attribute_removes_the_complex_attribute() {
        let user = json!({"userName": "a", "name": {"givenName": "Pat"}});
        let patched = patch_user(&user, json!([{"op": "remove", "path": "name.givenName"}]));
        assert_eq!(patched, json!({"userName": "a"}));
    }

    #[test]
    fn a_complex_value_merges_into_the_attribute() {
        // RFC 7644 §3.5.2.3: sub-attributes not named are left unchanged.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs", "middleName": null}}]),
        );
        assert_eq!(
            patched["name"],
            json!({"familyName": "Jensen", "givenName": "Babs"})
        );
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "value": {"name": {"honorificPrefix": "Ms."}}}]),
        );
        assert_eq!(patched["name"]["honorificPrefix"], "Ms.");
        assert_eq!(patched["name"]["familyName"], "Jensen");
    }

    #[test]
    fn sub_attribute_names_in_values_take_the_schema_spelling() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "add", "path": "NAME", "value": {"GIVENNAME": "Pat"}}]),
        );
        assert_eq!(patched["name"], json!({"givenName": "Pat"}));
    }

    // --- multi-valued attributes ---------------------------------------------

    #[test]
    fn add_appends_to_a_multi_valued_attribute() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "b@other.org", "type": "other"}]}]),
        );
        let emails = patched["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 3);
        assert_eq!(emails[2], json!({"value": "b@other.org", "type": "other"}));
    }

    #[test]
    fn add_does_not_duplicate_an_identical_value() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "type": "home"}]}]),
        );
        assert_eq!(patched["emails"], barbara()["emails"]);
    }

    #[test]
    fn add_compares_values_by_their_case_exactness() {
        // emails.value is caseExact=false: the same address in capitals is
        // the same value, written with the new spelling.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "BABS@jensen.org"}]}]),
        );
        assert_eq!(
            patched["emails"][1],
            json!({"value": "BABS@jensen.org", "type": "home"})
        );
        assert_eq!(patched["emails"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn add_of_a_known_value_updates_it_in_place() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "babs@jensen.org", "display": "Babs at home"}]}]),
        );
        let emails = patched["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 2);
        assert_eq!(
            emails[1],
            json!({"value": "babs@jensen.org", "type": "home", "display": "Babs at home"})
        );
    }

    #[test]
    fn a_lone_value_for_a_multi_valued_attribute_is_one_value() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "add", "path": "emails", "value": {"value": "p@x.org"}}]),
        );
        assert_eq!(patched["emails"], json!([{"value": "p@x.org"}]));
    }

    #[test]
    fn replace_without_a_filter_replaces_all_values() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "path": "emails", "value": [{"value": "new@example.com", "type": "work"}]}]),
        );
        assert_eq!(
            patched["emails"],
            json!([{"value": "new@example.com", "type": "work"}])
        );
    }

    #[test]
    fn empty_arrays_and_nulls_are_tolerated() {
        // Entra sends `roles: []` and nulls.
        let patched = patch_user(
            &barbara(),
            json!([
                {"op": "add", "path": "roles", "value": []},
                {"op": "replace", "value": {"roles": [], "nickName": null, "phoneNumbers": null}},
                {"op": "add", "path": "emails", "value": [{"value": "x@y.org", "display": null, "type": null}]}
            ]),
        );
        assert!(patched.get("roles").is_none());
        assert!(patched.get("nickName").is_none());
        assert_eq!(patched["emails"][2], json!({"value": "x@y.org"}));
    }

    #[test]
    fn replace_with_an_empty_array_clears_the_attribute() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "path": "emails", "value": []}]),
        );
        assert!(patched.get("emails").is_none());
    }

    #[test]
    fn remove_with_a_value_list_removes_only_those_values() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "remove", "path": "emails", "value": [{"value": "babs@jensen.org"}]}]),
        );
        assert_eq!(
            patched["emails"],
            json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
        );
    }

    #[test]
    fn remove_without_a_value_removes_all_values() {
        let patched = patch_user(&barbara(), json!([{"op": "remove", "path": "emails"}]));
        assert!(patched.get("emails").is_none());
    }

    #[test]
    fn a_sub_attribute_without_a_filter_applies_to_every_value() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "path": "emails.display", "value": "Babs"}]),
        );
        assert!(
            patched["emails"]
                .as_array()
                .unwrap()
                .iter()
                .all(|email| email["display"] == "Babs")
        );
        let patched = patch_user(
            &patched,
            json!([{"op": "remove", "path": "emails.display"}]),
        );
        assert_eq!(patched["emails"], barbara()["emails"]);
    }

    // --- value filters -------------------------------------------------------

    #[test]
    fn a_filtered_sub_attribute_path_updates_the_matching_value() {
        // Entra, "Update User [Multi-valued properties]", first operation.
        let patched = patch_user(
            &barbara(),
            json!([{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"}]),
        );
        assert_eq!(
            patched["emails"][0],
            json!({"value": "updatedEmail@microsoft.com", "type": "work", "primary": true})
        );
        assert_eq!(patched["emails"][1], barbara()["emails"][1]);
    }

    #[test]
    fn entra_updates_several_attributes_one_op_each() {
        // Entra, "Update User [Multi-valued properties]", the whole request.
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
            ]
        });
        let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
        assert_eq!(patched["emails"][0]["value"], "updatedEmail@microsoft.com");
        assert_eq!(patched["name"]["familyName"], "updatedFamilyName");
    }

    #[test]
    fn a_filtered_path_with_no_match_adds_the_value_the_filter_describes() {
        // Entra adds a work phone with one op per sub-attribute.
        let patched = patch_user(
            &bare_user(),
            json!([
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "pat@example.com"},
                {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
                {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "100 Universal City Plaza"},
                {"op": "Add", "path": "addresses[type eq \"work\"].locality", "value": "Hollywood"},
                {"op": "Replace", "path": "addresses[type eq \"work\"].country", "value": "USA"}
            ]),
        );
        assert_eq!(
            patched["emails"],
            json!([{"type": "work", "value": "pat@example.com"}])
        );
        assert_eq!(
            patched["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555 0100"}])
        );
        assert_eq!(
            patched["addresses"],
            json!([{"type": "work", "streetAddress": "100 Universal City Plaza", "locality": "Hollywood", "country": "USA"}])
        );
    }

    #[test]
    fn a_filtered_path_with_no_match_and_no_equality_is_no_target() {
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "path": "emails[value co \"nowhere\"].display", "value": "x"}]),
        );
        assert_error(&error, ScimType::NoTarget, "no value of `emails` matches");
    }

    #[test]
    fn a_filtered_path_without_sub_attribute_merges_or_replaces_matching_values() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "path": "emails[type eq \"home\"]", "value": {"display": "Home"}}]),
        );
        assert_eq!(
            patched["emails"][1],
            json!({"value": "babs@jensen.org", "type": "home", "display": "Home"})
        );
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "new@jensen.org"}}]),
        );
        assert_eq!(
            patched["emails"][1],
            json!({"value": "new@jensen.org", "type": "home"})
        );
    }

    #[test]
    fn remove_with_a_filter_removes_only_matching_values() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        );
        assert_eq!(
            patched["emails"],
            json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
        );
    }

    #[test]
    fn remove_with_a_filter_and_sub_attribute_removes_that_part() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]),
        );
        assert_eq!(
            patched["emails"][0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
    }

    #[test]
    fn remove_with_a_filter_that_matches_nothing_changes_nothing() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
        );
        assert_eq!(patched, barbara());
    }

    #[test]
    fn removing_every_value_removes_the_attribute() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "remove", "path": "emails[value ew \"org\" or value ew \"com\"]"}]),
        );
        assert!(patched.get("emails").is_none());
    }

    #[test]
    fn a_filter_that_does_not_fit_the_attribute_is_an_invalid_filter() {
        let error = user_error(
            &barbara(),
            json!([{"op": "remove", "path": "emails[primary gt true]"}]),
        );
        assert_eq!(error.scim_type, Some(ScimType::InvalidFilter));
    }

    #[test]
    fn a_malformed_path_is_an_invalid_path() {
        let error = user_error(
            &barbara(),
            json!([{"op": "remove", "path": "emails[type eq \"work\""}]),
        );
        assert_error(&error, ScimType::InvalidPath, "expected `]`");
    }

    // --- primary ---------------------------------------------------------------

    #[test]
    fn adding_a_primary_value_clears_primary_on_the_others() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com", "primary": true}]}]),
        );
        let emails = patched["emails"].as_array().unwrap();
        assert_eq!(
            emails[0],
            json!({"value": "bjensen@example.com", "type": "work"})
        );
        assert_eq!(
            emails[2],
            json!({"value": "new@example.com", "primary": true})
        );
    }

    #[test]
    fn making_a_value_primary_by_filter_clears_the_others() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]),
        );
        assert_eq!(patched["emails"][0].get("primary"), None);
        assert_eq!(patched["emails"][1]["primary"], true);
    }

    #[test]
    fn two_primary_values_in_one_operation_are_invalid() {
        let error = user_error(
            &barbara(),
            json!([{"op": "replace", "path": "emails", "value": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}]),
        );
        assert_error(
            &error,
            ScimType::InvalidValue,
            "only one value of `emails` may be primary",
        );
    }

    // --- the enterprise extension ----------------------------------------------

    #[test]
    fn entra_sets_an_enterprise_attribute_by_its_urn_path() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber", "value": "701984"}]),
        );
        assert_eq!(patched[ENTERPRISE], json!({"employeeNumber": "701984"}));
        assert_eq!(
            patched["schemas"],
            json!([USER_SCHEMA, ENTERPRISE]),
            "the extension is listed"
        );
    }

    #[test]
    fn the_manager_value_is_set_by_sub_attribute_path() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "replace", "path": format!("{ENTERPRISE}:manager.value"), "value": "26118915-6090-4610-87e4-49d8ca9f808d"}]),
        );
        assert_eq!(
            patched[ENTERPRISE]["manager"],
            json!({"value": "26118915-6090-4610-87e4-49d8ca9f808d"})
        );
    }

    #[test]
    fn a_bare_id_as_the_manager_is_its_value() {
        // Entra sets the manager with its id as the whole value.
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "Add", "path": format!("{ENTERPRISE}:manager"), "value": "26118915-6090-4610-87e4-49d8ca9f808d"}]),
        );
        assert_eq!(
            patched[ENTERPRISE]["manager"],
            json!({"value": "26118915-6090-4610-87e4-49d8ca9f808d"})
        );
    }

    #[test]
    fn an_extension_object_in_a_value_sets_its_attributes() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "add", "value": {ENTERPRISE: {"department": "Tour Operations", "costCenter": "4130"}}}]),
        );
        assert_eq!(
            patched[ENTERPRISE],
            json!({"department": "Tour Operations", "costCenter": "4130"})
        );
    }

    #[test]
    fn an_extension_urn_as_the_path_targets_the_whole_extension() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "add", "path": ENTERPRISE, "value": {"division": "Theme Parks"}}]),
        );
        assert_eq!(patched[ENTERPRISE], json!({"division": "Theme Parks"}));
        let patched = patch_user(&patched, json!([{"op": "remove", "path": ENTERPRISE}]));
        assert_eq!(patched, bare_user());
    }

    #[test]
    fn removing_the_last_enterprise_attribute_drops_the_extension() {
        let user = patch_user(
            &bare_user(),
            json!([{"op": "add", "path": format!("{ENTERPRISE}:department"), "value": "Ops"}]),
        );
        let patched = patch_user(
            &user,
            json!([{"op": "remove", "path": format!("{ENTERPRISE}:department")}]),
        );
        assert_eq!(patched, bare_user());
    }

    #[test]
    fn removing_an_enterprise_attribute_the_user_lacks_changes_nothing() {
        let patched = patch_user(
            &bare_user(),
            json!([{"op": "remove", "path": format!("{ENTERPRISE}:manager")}]),
        );
        assert_eq!(patched, bare_user());
    }

    // --- Entra's newer dialect and Okta -----------------------------------------

    #[test]
    fn entra_path_less_replace_with_attribute_paths_as_keys() {
        // Entra with `aadOptscim062020`: keys are attribute paths.
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "replace",
                "value": {
                    "displayName": "Pat Doe",
                    "name.givenName": "Pat",
                    "name.familyName": "Doe",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Tech Infrastructure",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value": "m-42",
                    "emails[type eq \"work\"].value": "pat.doe@example.com",
                    "active": false
                }
            }]
        });
        let patched = apply(&barbara(), &body, ResourceType::User).unwrap();
        assert_eq!(patched["displayName"], "Pat Doe");
        assert_eq!(
            patched["name"],
            json!({"givenName": "Pat", "familyName": "Doe", "middleName": "Jane"})
        );
        assert_eq!(
            patched[ENTERPRISE],
            json!({"department": "Tech Infrastructure", "manager": {"value": "m-42"}})
        );
        assert_eq!(patched["emails"][0]["value"], "pat.doe@example.com");
        assert_eq!(patched["active"], false);
        assert_eq!(patched["schemas"], json!([USER_SCHEMA, ENTERPRISE]));
    }

    #[test]
    fn entra_newer_dialect_path_less_add() {
        let patched = patch_user(
            &barbara(),
            json!([{"op": "add", "value": {"nickName": "Babs"}}]),
        );
        assert_eq!(patched["nickName"], "Babs");
    }

    #[test]
    fn okta_deactivates_and_reactivates_with_a_path_less_replace() {
        let deactivate = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": false}}]
        });
        let patched = apply(&barbara(), &deactivate, ResourceType::User).unwrap();
        assert_eq!(patched["active"], false);
        let reactivate = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": true}}]
        });
        assert_eq!(
            apply(&patched, &reactivate, ResourceType::User).unwrap(),
            barbara()
        );
    }

    #[test]
    fn a_path_less_value_must_be_an_object() {
        let error = user_error(&barbara(), json!([{"op": "replace", "value": "x"}]));
        assert_error(&error, ScimType::InvalidValue, "needs an object");
    }

    // --- groups with members inline (apply) ---------------------------------------

    fn group_with_members() -> Value {
        json!({
            "id": "g1",
            "displayName": "Tour Guides",
            "members": [
                {"value": "a", "type": "User", "display": "Ann"},
                {"value": "b", "type": "User"}
            ]
        })
    }

    fn patch_inline_group(operations: Value) -> Result<Value, ScimError> {
        apply(
            &group_with_members(),
            &request(operations),
            ResourceType::Group,
        )
    }

    #[test]
    fn inline_members_are_added_removed_and_filtered() {
        let patched = patch_inline_group(json!([
            {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "c"}]},
            {"op": "Remove", "path": "members", "value": [{"value": "a"}]},
            {"op": "remove", "path": "members[value eq \"b\"]"}
        ]))
        .unwrap();
        assert_eq!(patched["members"], json!([{"value": "c"}]));
    }

    #[test]
    fn an_immutable_sub_attribute_cannot_change() {
        let error = patch_inline_group(
            json!([{"op": "replace", "path": "members[value eq \"a\"].value", "value": "z"}]),
        )
        .unwrap_err();
        assert_error(&error, ScimType::Mutability, "`value` is immutable");
        let error = patch_inline_group(
            json!([{"op": "replace", "path": "members[value eq \"a\"].type", "value": "Group"}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
    }

    #[test]
    fn an_immutable_sub_attribute_may_be_set_once_or_to_the_same_value() {
        let patched = patch_inline_group(json!([
            {"op": "replace", "path": "members[value eq \"a\"].value", "value": "a"},
            {"op": "add", "path": "members[value eq \"a\"].$ref", "value": "https://example.com/v2/Users/a"}
        ]))
        .unwrap();
        assert_eq!(
            patched["members"][0]["$ref"],
            "https://example.com/v2/Users/a"
        );
    }

    #[test]
    fn a_group_display_name_is_required() {
        let error =
            patch_inline_group(json!([{"op": "remove", "path": "displayName"}])).unwrap_err();
        assert_error(&error, ScimType::InvalidValue, "`displayName` is required");
    }

    // --- groups with members stored elsewhere (apply_group) ----------------------

    #[test]
    fn entra_adds_members() {
        // Entra, "Update Group [Add Members]".
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "Add",
                "path": "members",
                "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]
            }]
        });
        let (group, change) = apply_group(&tour_guides(), &body).unwrap();
        assert_eq!(group, tour_guides());
        assert_eq!(
            change,
            MembersChange {
                add: vec![member("f648f8d5ea4e4cd38e9c")],
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn entra_removes_only_the_listed_members() {
        // Entra, "Update Group [Remove Members]": not every member.
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "Remove",
                "path": "members",
                "value": [{"$ref": null, "value": "f648f8d5ea4e4cd38e9c"}]
            }]
        });
        let (_, change) = apply_group(&tour_guides(), &body).unwrap();
        assert_eq!(
            change,
            MembersChange {
                remove: vec!["f648f8d5ea4e4cd38e9c".into()],
                ..MembersChange::default()
            }
        );
        assert!(!change.remove_all);
    }

    #[test]
    fn entra_newer_dialect_removes_a_member_by_filter() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([{"op": "remove", "path": "members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"}]),
        );
        assert_eq!(change.remove, ["7f4bc1a3-285e-48ae-8202-5accb43efb0e"]);
    }

    #[test]
    fn entra_renames_a_group() {
        // Entra, "Update Group [Non-member attributes]".
        let (group, change) = patch_group(
            &tour_guides(),
            json!([{"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]),
        );
        assert_eq!(
            group["displayName"],
            "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"
        );
        assert!(change.is_empty());
    }

    #[test]
    fn okta_renames_a_group_with_its_id_in_the_value() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{
                "op": "replace",
                "value": {"id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b", "displayName": "Test SCIMv2"}
            }]
        });
        let (group, change) = apply_group(&tour_guides(), &body).unwrap();
        assert_eq!(group["id"], tour_guides()["id"], "id in a value is ignored");
        assert_eq!(group["displayName"], "Test SCIMv2");
        assert!(change.is_empty());
    }

    #[test]
    fn okta_removes_and_adds_members_in_one_patch() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "remove", "path": "members[value eq \"89bb1940-b905-4575-9e7f-6f887cfb368e\"]"},
                {"op": "add", "path": "members", "value": [
                    {"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"}
                ]}
            ]
        });
        let (_, change) = apply_group(&tour_guides(), &body).unwrap();
        assert_eq!(change.remove, ["89bb1940-b905-4575-9e7f-6f887cfb368e"]);
        assert_eq!(
            change.add,
            [Member {
                value: "23a35c27-23d3-4c03-b4c5-6443c09e7173".into(),
                r#type: None,
                display: Some("test.user@okta.local".into())
            }]
        );
    }

    #[test]
    fn okta_replaces_the_whole_member_set() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([{"op": "replace", "path": "members", "value": [{"value": "a", "type": "User"}, {"value": "b"}]}]),
        );
        let a = Member {
            r#type: Some("User".into()),
            ..member("a")
        };
        assert_eq!(
            change,
            MembersChange {
                replace_all: Some(vec![a, member("b")]),
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn members_joined_with_or_are_all_removed() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([{"op": "remove", "path": "members[value eq \"a\" or value eq \"b\" or VALUE Eq \"c\"]"}]),
        );
        assert_eq!(change.remove, ["a", "b", "c"]);
    }

    #[test]
    fn other_member_filters_are_invalid_filters() {
        for path in [
            "members[display eq \"Ann\"]",
            "members[value co \"a\"]",
            "members[value eq \"a\" and type eq \"User\"]",
            "members[not (value eq \"a\")]",
        ] {
            let error = group_error(json!([{"op": "remove", "path": path}]));
            assert_error(
                &error,
                ScimType::InvalidFilter,
                "members can be selected only by id",
            );
        }
    }

    #[test]
    fn remove_members_without_a_value_removes_all() {
        let (_, change) = patch_group(&tour_guides(), json!([{"op": "remove", "path": "members"}]));
        assert_eq!(
            change,
            MembersChange {
                remove_all: true,
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn remove_members_with_an_empty_list_removes_none() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([{"op": "remove", "path": "members", "value": []}]),
        );
        assert!(change.is_empty());
    }

    #[test]
    fn replace_members_with_nothing_removes_all() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([{"op": "replace", "path": "members", "value": []}]),
        );
        assert_eq!(
            change,
            MembersChange {
                remove_all: true,
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn path_less_values_may_carry_members() {
        let (group, change) = patch_group(
            &tour_guides(),
            json!([
                {"op": "replace", "value": {"displayName": "Guides", "members": [{"value": "a"}]}},
                {"op": "add", "value": {"members": [{"value": "b"}]}}
            ]),
        );
        assert_eq!(group["displayName"], "Guides");
        assert!(group.get("members").is_none());
        assert_eq!(
            change,
            MembersChange {
                replace_all: Some(vec![member("a"), member("b")]),
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn replace_then_add_is_a_replacement_with_both() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([
                {"op": "replace", "path": "members", "value": [{"value": "a"}]},
                {"op": "add", "path": "members", "value": [{"value": "b"}]}
            ]),
        );
        assert_eq!(
            change,
            MembersChange {
                replace_all: Some(vec![member("a"), member("b")]),
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn remove_then_add_of_the_same_member_leaves_it_present() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([
                {"op": "remove", "path": "members[value eq \"a\"]"},
                {"op": "add", "path": "members", "value": [{"value": "a"}]}
            ]),
        );
        assert_eq!(
            change,
            MembersChange {
                add: vec![member("a")],
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn add_then_remove_of_the_same_member_leaves_it_absent() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([
                {"op": "add", "path": "members", "value": [{"value": "a"}]},
                {"op": "remove", "path": "members", "value": [{"value": "a"}]}
            ]),
        );
        assert_eq!(
            change,
            MembersChange {
                remove: vec!["a".into()],
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn remove_all_then_add_keeps_only_the_added() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([
                {"op": "remove", "path": "members"},
                {"op": "add", "path": "members", "value": [{"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"z\"]"}
            ]),
        );
        assert_eq!(
            change,
            MembersChange {
                remove_all: true,
                add: vec![member("a")],
                ..MembersChange::default()
            }
        );
        assert_eq!(
            change.apply_to(vec![member("x"), member("z")]),
            [member("a")]
        );
    }

    #[test]
    fn replace_then_remove_of_every_member_removes_all() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([
                {"op": "replace", "path": "members", "value": [{"value": "a"}]},
                {"op": "remove", "path": "members[value eq \"a\"]"}
            ]),
        );
        assert_eq!(
            change,
            MembersChange {
                remove_all: true,
                ..MembersChange::default()
            }
        );
    }

    #[test]
    fn adding_the_same_member_twice_keeps_one_with_the_latest_details() {
        let (_, change) = patch_group(
            &tour_guides(),
            json!([{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "a", "display": "Ann"}]}]),
        );
        assert_eq!(
            change.add,
            [Member {
                display: Some("Ann".into()),
                ..member("a")
            }]
        );
    }

    #[test]
    fn a_member_needs_a_value() {
        let error =
            group_error(json!([{"op": "add", "path": "members", "value": [{"display": "Ann"}]}]));
        assert_error(
            &error,
            ScimType::InvalidValue,
            "each member needs a `value`",
        );
        let error = group_error(json!([{"op": "add", "path": "members", "value": [{"value": 7}]}]));
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
    }

    #[test]
    fn member_sub_attributes_cannot_be_patched_one_by_one() {
        let error = group_error(
            json!([{"op": "replace", "path": "members[value eq \"a\"].display", "value": "Ann"}]),
        );
        assert_error(
            &error,
            ScimType::InvalidPath,
            "sub-attributes cannot be patched",
        );
        let error = group_error(
            json!([{"op": "add", "path": "members[value eq \"a\"]", "value": {"display": "Ann"}}]),
        );
        assert_error(&error, ScimType::InvalidPath, "can only be removed");
    }

    #[test]
    fn a_failing_member_operation_fails_the_whole_group_patch() {
        let result = apply_group(
            &tour_guides(),
            &request(json!([
                {"op": "replace", "path": "displayName", "value": "New"},
                {"op": "remove", "path": "members[display eq \"Ann\"]"}
            ])),
        );
        assert!(result.is_err());
    }

    #[test]
    fn the_members_change_applies_in_its_documented_order() {
        let change = MembersChange {
            replace_all: None,
            add: vec![
                member("c"),
                Member {
                    display: Some("Bee".into()),
                    ..member("b")
                },
            ],
            remove: vec!["a".into()],
            remove_all: false,
        };
        let after = change.apply_to(vec![member("a"), member("b")]);
        assert_eq!(
            after,
            [
                Member {
                    display: Some("Bee".into()),
                    ..member("b")
                },
                member("c")
            ]
        );
    }

    #[test]
    fn other_group_attributes_patch_as_usual() {
        let (group, change) = patch_group(
            &tour_guides(),
            json!([{"op": "add", "path": "externalId", "value": "okta-123"}]),
        );
        assert_eq!(group["externalId"], "okta-123");
        assert!(change.is_empty());
        let error = group_error(json!([{"op": "replace", "path": "id", "value": "x"}]));
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
        let error = group_error(json!([{"op": "remove", "path": "displayName"}]));
        assert_eq!(error.scim_type, Some(ScimType::InvalidValue));
    }
}
