//! The custom resources Roster serves: API group `roster.dev`, version `v1alpha1`.
//!
//! Pure types, no I/O. Descriptions (doc comments) become `kubectl explain` text,
//! and the CEL rules here are enforced by the API server for every writer.

// The `#[kube(printcolumn(...))]` lists repeat `type_ = "string"` by design.
#![allow(clippy::duplicated_attributes)]

mod access;
mod claim;
mod common;
mod consumed;
mod group;
mod policy;
mod slice;
mod user;

pub use access::{
    AccessGrant, AccessGrantSpec, AccessGrantStatus, GrantedBinding, KubernetesNames,
};
pub use claim::{UserNameClaim, UserNameClaimSpec, claim_name};
pub use common::{ConfigMapKeyRef, ObjectRef, SecretKeyRef, SecretRef};
pub use consumed::{ConsumedAssertion, ConsumedAssertionSpec, ConsumedKind, consumed_name};
pub use group::{Group, GroupMember, GroupSpec, GroupStatus, MemberKind};
pub use policy::{
    AccessSpec, AllowedGroup, ApplicationKind, ApplicationSpec, ArgoCdGroupRoles,
    ArgoCdRbacConnector, AttributeMapping, CircuitBreaker, DeprovisionAction, GroupsOverage,
    IdentityHeaders, JitOptions, Mode, PolicyCounts, PostgresConnector, PostgresGroupRoles,
    PostgresTlsMode, ProvisioningPlan, ProvisioningPolicy, ProvisioningPolicySpec,
    ProvisioningPolicyStatus, Quarantine, RateLimit, SamlTrust, ScimConnector, ScimService,
    SignatureScheme, WebhookConnector,
};
pub use slice::{
    GROUP_LABEL, GroupMemberSlice, GroupMemberSliceSpec, GroupMemberSliceStatus, SLICE_CAPACITY,
    SliceMember,
};
pub use user::{
    Account, AccountState, Address, EnterpriseAttributes, MultiValuedAttribute, PersonName, Source,
    User, UserSpec, UserStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every Roster resource.
pub const GROUP: &str = "roster.dev";
/// The one served (and stored) version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Roster object.
pub const API_VERSION: &str = "roster.dev/v1alpha1";

/// On every User and Group: deprovision in the application before deletion
/// (the controllers add and remove it; the caches read it).
pub const DEPROVISION_FINALIZER: &str = "roster.dev/deprovision";

/// The annotation on a policy that approves held actions; its value must
/// be the quarantine's token.
pub const APPROVAL_ANNOTATION: &str = "roster.dev/approve-deprovisioning";

/// Annotation holding when the SCIM or JIT writer last changed the spec, for
/// SCIM's `meta.lastModified` (the object's own timestamps don't record spec
/// changes).
pub const LAST_MODIFIED_ANNOTATION: &str = "roster.dev/last-modified";

/// Annotation on a Group a SCIM POST creates: the request's deadline (RFC
/// 3339). A Group the API server wrote after it belongs to a request that
/// was answered 503 (see [`crate::deadline`]); the Group controller removes
/// it unprovisioned, and the identity provider's retry creates the group.
pub const REQUEST_DEADLINE_ANNOTATION: &str = "roster.dev/request-deadline";

/// Annotation on a User ending its sessions issued before an RFC 3339 time,
/// e.g. `kubectl annotate user <id> roster.dev/sessions-not-before=$(date -u +%FT%TZ) --overwrite`:
/// the SSO gate refuses them at the next check.
pub const SESSIONS_NOT_BEFORE_ANNOTATION: &str = "roster.dev/sessions-not-before";

/// Every CRD Roster installs, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        ProvisioningPolicy::crd(),
        User::crd(),
        Group::crd(),
        GroupMemberSlice::crd(),
        UserNameClaim::crd(),
        ConsumedAssertion::crd(),
        AccessGrant::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream, exactly what `crds/` holds.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_saphyr::to_string(crd).expect("a CRD always serialises to YAML"))
        .map(|doc| format!("---\n{doc}"))
        .collect()
}

/// File name under `crds/` for one CRD, e.g. `users.roster.dev.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn the_api_version_is_the_group_and_the_version() {
        assert_eq!(API_VERSION, format!("{GROUP}/{VERSION}"));
        assert_eq!(User::api_version(&()), API_VERSION);
    }
}
