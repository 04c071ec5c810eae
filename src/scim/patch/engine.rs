//! The engine: operations applied in order to a copy of the resource.

use super::*;

pub(super) struct Engine<'m> {
    pub(super) resource_type: ResourceType,
    /// Where group member operations go instead of the document, for
    /// [`apply_group`].
    pub(super) members: Option<&'m mut MembersChange>,
}

impl Engine<'_> {
    pub(super) fn run(
        &mut self,
        resource: &Value,
        operations: &[Operation<'_>],
    ) -> Result<Value, ScimError> {
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

    pub(super) fn operation(
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
    pub(super) fn path_less(
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

    pub(super) fn path_less_attribute(
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
    pub(super) fn knows_schema_of(&self, key: &str) -> bool {
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
    pub(super) fn extension(
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
    pub(super) fn target(
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
    pub(super) fn check_required_attributes_kept(
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

pub(super) fn required_value(value: Option<&Value>) -> Result<&Value, ScimError> {
    value.ok_or_else(|| {
        ScimError::invalid_syntax("add and replace need a `value` (RFC 7644 §3.5.2)")
    })
}

/// The object holding a schema's attributes: the resource itself for core
/// attributes, the member named by the URN for an extension (created when
/// `create`, e.g. for the first enterprise attribute of a user).
pub(super) fn container<'d>(
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
pub(super) fn tidy_extensions(document: &mut Map<String, Value>, resource_type: ResourceType) {
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
