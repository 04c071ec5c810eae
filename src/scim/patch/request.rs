//! The PatchOp envelope: operations read leniently (Entra capitalises ops).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OpKind {
    Add,
    Replace,
    Remove,
}

pub(super) struct Operation<'r> {
    pub(super) kind: OpKind,
    pub(super) path: Option<&'r str>,
    /// `None` when the operation has no `value` member at all.
    pub(super) value: Option<&'r Value>,
}

impl Operation<'_> {
    pub(super) fn describe(&self, index: usize) -> String {
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
pub(super) fn operations(request: &Value) -> Result<Vec<Operation<'_>>, ScimError> {
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

pub(super) fn parse_operation(index: usize, operation: &Value) -> Result<Operation<'_>, ScimError> {
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
