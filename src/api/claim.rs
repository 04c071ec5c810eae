//! `UserNameClaim`: what makes a userName unique within a policy.
//!
//! Kubernetes has no uniqueness constraint across objects, but creating an
//! object whose name is taken fails atomically. Each User holds one claim whose
//! name is derived from (policy, folded userName; see [`crate::identity`]), so of two racing
//! creations of the same userName exactly one succeeds, and a case-insensitive
//! lookup by userName is one GET.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A userName held by one User. Managed by Roster.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "UserNameClaim",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    doc = "Reserves a userName, case-insensitively, for one User of a policy. Managed by Roster.",
    printcolumn(
        name = "UserName",
        type_ = "string",
        json_path = ".spec.userName",
        description = "The claimed userName, case-folded"
    ),
    printcolumn(
        name = "User",
        type_ = "string",
        json_path = ".spec.user",
        description = "The User holding it"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct UserNameClaimSpec {
    /// The policy the userName is unique within.
    pub policy: String,
    /// The claimed userName, case-folded.
    pub user_name: String,
    /// Name (SCIM id) of the User holding the claim.
    pub user: String,
    /// The deadline of the request that wrote the claim. Until then a claim
    /// whose User does not exist yet is a creation in flight; a User
    /// created after it was written by a request that had already been
    /// answered 503, and the next creation of this userName takes it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// The claim's object name for a userName in a policy: case-insensitive and
/// always a valid name, whatever characters the userName has.
pub fn claim_name(policy: &str, user_name: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(policy.as_bytes());
    hash.update([0]);
    hash.update(crate::identity::fold_user_name(user_name).as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("un-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_ignore_case_but_not_policy() {
        assert_eq!(
            claim_name("crm", "Alice@Example.com"),
            claim_name("crm", "alice@example.com")
        );
        assert_ne!(claim_name("crm", "alice"), claim_name("wiki", "alice"));
        assert_ne!(claim_name("crm", "alice"), claim_name("crm", "alicf"));
        assert_eq!(claim_name("crm", "x").len(), 43);
    }
}
