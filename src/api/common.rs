//! Small reference types shared by the resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Secret in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the same namespace as the ProvisioningPolicy.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One key of a Secret in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as the ProvisioningPolicy.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data whose value is used.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// One key of a ConfigMap in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap, in the same namespace as the ProvisioningPolicy.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the ConfigMap's data whose value is used.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A reference to another Roster object by its SCIM id, with the name shown for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// SCIM id of the referenced object (its `metadata.name`).
    pub value: String,
    /// Human-readable name of the referenced object, for display only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// Schema of a map whose values may be any JSON. The API server keeps such
/// values only when the schema says `x-kubernetes-preserve-unknown-fields`.
pub(super) fn free_form_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}
