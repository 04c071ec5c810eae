//! `GroupMemberSlice`: one bounded slice of a group's members.
//!
//! A group of 100,000 members cannot be one object (etcd stores at most about
//! 1.5 MiB). Like EndpointSlices, members are split across slice objects
//! labelled with their group, each holding at most [`SLICE_CAPACITY`] members
//! keyed by member id, so a change of k members rewrites O(k) slices of
//! bounded size and never the whole membership.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::group::MemberKind;

/// Members a slice is filled to before a new slice is opened.
pub const SLICE_CAPACITY: usize = 1000;

/// Label on every slice: the name (SCIM id) of its Group.
pub const GROUP_LABEL: &str = "roster.dev/group";

/// Part of a Group's membership. Written by Roster's SCIM service; read by
/// the controller. Not meant to be edited by hand.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "GroupMemberSlice",
    namespaced,
    status = "GroupMemberSliceStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "rsgms",
    doc = "Part of a Group's membership, split across slices so that no object grows past etcd's limit. Managed by Roster.",
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".spec.group",
        description = "The Group these members belong to"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.group"
)]
#[serde(rename_all = "camelCase")]
pub struct GroupMemberSliceSpec {
    /// Name (SCIM id) of the Group, in this namespace, these members belong to.
    #[schemars(length(min = 1, max = 253))]
    pub group: String,
    /// Members by id (the name of the member User or Group). A map, so a JSON
    /// merge patch adds or removes members without reading the slice.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 2000))]
    pub members: BTreeMap<String, SliceMember>,
}

/// What a slice records about one member.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceMember {
    /// Whether the member is a `User` or a nested `Group`.
    #[serde(default, rename = "type")]
    pub kind: MemberKind,
    /// The member's name, for display only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// What the controller has synced of a slice.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMemberSliceStatus {
    /// Members synced to the application: member id -> the application's id
    /// for it (kept so a member can be removed even after its User is gone).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub synced_members: BTreeMap<String, String>,
    /// The generation of the spec last synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
