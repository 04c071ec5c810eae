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

mod engine;
mod json;
mod members;
pub mod path;
mod request;
mod targets;
mod values;

use engine::*;
use json::*;
use members::*;
pub use members::{Member, MembersChange};
use path::{PatchPath, PatchTarget};
use request::*;
use targets::*;
use values::*;

#[cfg(test)]
mod tests;
