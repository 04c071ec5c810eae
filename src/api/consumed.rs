//! `ConsumedAssertion`: a SAML message id that has been used once.
//!
//! Every replica serves the ACS, so a replayed response may reach a replica
//! other than the one that accepted it. Creating an object is atomic across
//! all of them: the object's name is derived from the id, so the second
//! creation fails with AlreadyExists, which is how a replay is recognised.
//! `expiresAt` says when the id can no longer be accepted anyway, so the
//! object may then be deleted.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A SAML assertion id or request id consumed by a login. Managed by Roster.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "ConsumedAssertion",
    namespaced,
    derive = "PartialEq",
    derive = "Default",
    doc = "A SAML assertion or request id already used by a login, kept until it expires so a replay is refused on every replica. Managed by Roster.",
    printcolumn(
        name = "Policy",
        type_ = "string",
        json_path = ".spec.policy",
        description = "The policy whose login consumed the id"
    ),
    printcolumn(
        name = "Expires",
        type_ = "date",
        json_path = ".spec.expiresAt",
        description = "When the id could no longer be accepted anyway"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumedAssertionSpec {
    /// The policy whose login consumed the id.
    pub policy: String,
    /// What the id names: `Assertion` (an assertion's ID) or `Request` (the
    /// AuthnRequest id an assertion answered).
    pub kind: ConsumedKind,
    /// After this instant (RFC 3339) the id would be refused as expired, so
    /// the object may be deleted.
    pub expires_at: String,
}

/// Kinds of consumed ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConsumedKind {
    /// The `ID` of an Assertion.
    #[default]
    Assertion,
    /// The `InResponseTo` of an Assertion: the AuthnRequest it answered.
    Request,
}

/// The object name for an id: a hash, so any id (whatever its characters or
/// length) gives a valid name, and ids of different policies, issuers or
/// kinds never collide.
pub fn consumed_name(policy: &str, issuer: &str, kind: ConsumedKind, id: &str) -> String {
    let mut hash = Sha256::new();
    for part in [policy, issuer, kind_str(kind), id] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("sa-{hex}")
}

fn kind_str(kind: ConsumedKind) -> &'static str {
    match kind {
        ConsumedKind::Assertion => "assertion",
        ConsumedKind::Request => "request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumed_names_separate_policies_issuers_and_kinds() {
        let a = consumed_name("crm", "idp", ConsumedKind::Assertion, "_1");
        assert_eq!(
            a,
            consumed_name("crm", "idp", ConsumedKind::Assertion, "_1")
        );
        assert_ne!(
            a,
            consumed_name("wiki", "idp", ConsumedKind::Assertion, "_1")
        );
        assert_ne!(
            a,
            consumed_name("crm", "idp2", ConsumedKind::Assertion, "_1")
        );
        assert_ne!(a, consumed_name("crm", "idp", ConsumedKind::Request, "_1"));
        assert_eq!(a.len(), 43);
    }
}
