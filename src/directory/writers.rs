//! Who may write what under which mode. Pure decisions, no I/O.
//!
//! SCIM and JIT never both feed one application: a login would overwrite what
//! SCIM set, the audit trail would no longer say who changed what, and
//! deprovisioning would become unreliable. Every writer asks here first.

use crate::api::Mode;

/// Field manager of the SCIM service: User/Group spec, Scim policies only.
pub const SCIM_MANAGER: &str = "roster-scim";
/// Field manager of the SAML handler: User spec, Jit policies only.
pub const JIT_MANAGER: &str = "roster-jit";
/// Field manager of the one JIT change the controller makes: `spec.active`
/// set to false for users idle past `deprovisionAfterDays`. Its own name, so
/// the JIT writer's other fields are untouched (server-side apply would drop
/// fields a manager stops sending).
pub const JIT_INACTIVITY_MANAGER: &str = "roster-jit-inactivity";
/// Field manager of the controllers: status and finalizers.
pub const CONTROLLER_MANAGER: &str = "roster-controller";

/// Field manager of the AccessGrant controller: the RoleBindings it keeps.
pub const ACCESS_MANAGER: &str = "roster-access";
/// Field manager of the Argo CD RBAC connector: the one key of Argo CD's
/// RBAC ConfigMap it keeps.
pub const ARGOCD_MANAGER: &str = "roster-argocd";
/// Field manager of `roster dev` (`make run`): the examples it applies,
/// and the demo IdP's trust it writes into their SAML policies.
pub const EXAMPLES_MANAGER: &str = "roster-dev";

/// Label recording which writer created a User or Group (`scim`, `jit`);
/// absent means it was written directly (kubectl, GitOps).
pub const SOURCE_LABEL: &str = "roster.dev/source";

/// A writer of identity attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    Scim,
    Jit,
}

/// Why a write is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this application is provisioned just in time (policy mode Jit): SCIM requests are refused; switch the policy to mode Scim to use SCIM"
    )]
    ScimInJitMode,
    #[error(
        "this application is provisioned by SCIM (policy mode Scim): logins never create or change users"
    )]
    JitInScimMode,
}

/// Whether `writer` may write identity attributes under a policy in `mode`.
pub fn may_write(mode: Mode, writer: Writer) -> Result<(), Refusal> {
    match (mode, writer) {
        (Mode::Scim, Writer::Scim) | (Mode::Jit, Writer::Jit) => Ok(()),
        (Mode::Jit, Writer::Scim) => Err(Refusal::ScimInJitMode),
        (Mode::Scim, Writer::Jit) => Err(Refusal::JitInScimMode),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_admits_exactly_its_own_writer() {
        assert_eq!(may_write(Mode::Scim, Writer::Scim), Ok(()));
        assert_eq!(may_write(Mode::Jit, Writer::Jit), Ok(()));
        assert_eq!(
            may_write(Mode::Jit, Writer::Scim),
            Err(Refusal::ScimInJitMode)
        );
        assert_eq!(
            may_write(Mode::Scim, Writer::Jit),
            Err(Refusal::JitInScimMode)
        );
    }

    #[test]
    fn the_scim_refusal_says_the_application_is_in_jit_mode() {
        assert!(
            Refusal::ScimInJitMode
                .to_string()
                .contains("just in time (policy mode Jit)")
        );
    }
}
