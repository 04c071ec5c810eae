//! `AccessGrant`: Kubernetes RBAC from a policy's Group.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Grants the active members of one of a policy's Groups ClusterRoles in
/// namespaces: Roster keeps one RoleBinding per namespace and role whose
/// subjects are the members as Kubernetes user names (the userName with the
/// policy's `kubernetes.usernamePrefix`). A deactivation, a member removal
/// or a User deletion removes the person from every binding within seconds.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "AccessGrant",
    namespaced,
    status = "AccessGrantStatus",
    derive = "PartialEq",
    derive = "Default",
    shortname = "rag",
    category = "roster",
    doc = "Grants the active members of a policy's Group ClusterRoles in namespaces, as RoleBindings Roster keeps.",
    printcolumn(
        name = "Group",
        type_ = "string",
        json_path = ".spec.group",
        description = "The Group (display name) whose members are granted"
    ),
    printcolumn(
        name = "Roles",
        type_ = "string",
        json_path = ".spec.clusterRoles",
        description = "The ClusterRoles bound"
    ),
    printcolumn(
        name = "Bindings",
        type_ = "integer",
        json_path = ".status.bindingCount",
        description = "How many RoleBindings Roster keeps for the grant"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the bindings match the directory"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why (not) ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.clusterRoles) && size(self.clusterRoles) > 0) || (has(self.clusterWideRoles) && size(self.clusterWideRoles) > 0)").message("an AccessGrant binds at least one role: clusterRoles (in namespaces) or clusterWideRoles").reason(Reason::FieldValueRequired))]
pub struct AccessGrantSpec {
    /// Name of the ProvisioningPolicy, in this namespace, whose Group is
    /// granted. The policy must set `kubernetes.usernamePrefix`.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// Display name of the policy's Group whose active members are granted.
    #[schemars(length(min = 1, max = 512))]
    pub group: String,
    /// ClusterRoles bound in each namespace (e.g. `view`, `edit`). Roster
    /// binds only those its deployment allows (the chart's
    /// `accessGrants.bindableClusterRoles`); others are reported, not bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub cluster_roles: Vec<String>,
    /// ClusterRoles bound cluster-wide (one ClusterRoleBinding each), only
    /// those the deployment allows cluster-wide (the chart's
    /// `accessGrants.clusterWideRoles`, empty by default); others are
    /// reported, not bound.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub cluster_wide_roles: Vec<String>,
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,
    /// Namespaces by label, including those created or labelled later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// What Roster keeps for a grant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrantStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// How many bindings (RoleBindings and ClusterRoleBindings) Roster
    /// keeps for the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_count: Option<i64>,
    /// The bindings, with how many subjects each has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<GrantedBinding>,
    /// `Ready` (with kstatus semantics) summarises; `Synced` says whether
    /// the last write succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One binding Roster keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantedBinding {
    /// The RoleBinding's namespace; empty for a ClusterRoleBinding.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    pub cluster_role: String,
    pub subjects: i64,
}

/// How a policy's Users and Groups are named to Kubernetes: as the API
/// server's `--oidc-username-prefix` and `--oidc-groups-prefix` name them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesNames {
    /// Prefix of a User's Kubernetes user name (`<prefix><userName>`), e.g.
    /// `oidc:`. Required, so a directory name can never be a `system:` name.
    #[x_kube(validation = Rule::new("!self.startsWith('system:')").message("usernamePrefix must not start with system:"))]
    #[schemars(length(min = 1, max = 64))]
    pub username_prefix: String,
    /// Prefix of a Group's Kubernetes group name. Set: bindings also name
    /// the group itself (`<prefix><displayName>`), for tokens carrying groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!self.startsWith('system:')").message("groupsPrefix must not start with system:"))]
    #[schemars(length(min = 1, max = 64))]
    pub groups_prefix: Option<String>,
}
