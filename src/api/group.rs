//! `Group`: a named set of users in one application's directory.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::user::Source;

/// A group of users in one application's directory, pushed over SCIM or
/// declared in git. The object's name is its SCIM `id`.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "Group",
    namespaced,
    status = "GroupStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "rsg",
    category = "roster",
    doc = "A group of users in one application's directory, provisioned into that application as a group.",
    printcolumn(
        name = "DisplayName",
        type_ = "string",
        json_path = ".spec.displayName",
        description = "The group's name"
    ),
    printcolumn(
        name = "Members",
        type_ = "integer",
        json_path = ".status.memberCount",
        description = "How many members the group has"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the application's group matches the spec"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why the group does or does not match (the Ready condition's reason)"
    ),
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.policy",
        priority = 1,
        description = "The ProvisioningPolicy the group belongs to"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.policy"
)]
#[serde(rename_all = "camelCase")]
pub struct GroupSpec {
    /// Name of the ProvisioningPolicy, in this namespace, whose application
    /// this group belongs to. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("policy is immutable: a group cannot move to another application").reason(Reason::FieldValueForbidden))]
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// The group's name, unique within the policy.
    #[x_kube(validation = Rule::new("self.matches('\\\\S')").message("displayName must not be empty").reason(Reason::FieldValueRequired))]
    #[schemars(length(max = 512))]
    pub display_name: String,
    /// The identity provider's own identifier for the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub external_id: Option<String>,
    /// Members declared inline: for groups kept in git. Large groups pushed
    /// over SCIM keep their members in separate membership objects instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub members: Vec<GroupMember>,
}

/// One member of a group: a SCIM id (`value`), as identity providers push
/// members, or a `userName`, as a person writes them in git.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.value) != has(self.userName)").message("a member names either value (a SCIM id) or userName, not both").reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.userName) || !has(self.type) || self.type == 'User'").message("a member named by userName is a User").reason(Reason::FieldValueInvalid))]
pub struct GroupMember {
    /// SCIM id (object name) of the member User or Group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(min = 1, max = 253))]
    pub value: String,
    /// The member User's userName, within the group's policy: how a Group
    /// kept in git names people. A name no User has yet is reported in the
    /// Members condition and joins when that User appears.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub user_name: Option<String>,
    /// Whether the member is a `User` (default) or a nested `Group`.
    #[serde(default, rename = "type")]
    pub kind: MemberKind,
    /// The member's name, for display only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

impl GroupMember {
    /// Whether this declared member is User `id` named `user_name` (as
    /// userNames compare).
    pub fn is(&self, id: &str, user_name: &str) -> bool {
        match &self.user_name {
            Some(name) => crate::identity::same_user_name(name, user_name),
            None => self.value == id,
        }
    }
}

/// Kinds of group member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MemberKind {
    /// A User.
    #[default]
    User,
    /// A nested Group.
    Group,
}

/// Observed state of a group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// Who created the group: `Scim`, `Jit` or `Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// The application's id for the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_id: Option<String>,
    /// How many members the group has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// The spec generation last synced to the application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_generation: Option<i64>,
    /// Members declared in the spec that are synced: member id -> the
    /// application's id for it. (Members in slices are tracked per slice.)
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub synced_members: std::collections::BTreeMap<String, String>,
    /// The roles the policy's `groupRoles` map gave the group when it
    /// was last synced (PostgreSQL roles granted to the group's role, Argo
    /// CD roles of its members). A change of the map syncs the group again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mapped_roles: Vec<String>,
    /// When the group was last synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<Time>,
    /// The generation of the spec the controller last acted on: with the
    /// Ready condition, what GitOps tools (kstatus, Argo CD) read as done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` summarises the others; one condition per aspect says what is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
