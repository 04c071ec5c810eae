//! What every writer of a policy's Users and Groups shares: case-insensitive
//! userName uniqueness through `UserNameClaim`s, and the names of the Groups
//! logins create.
//!
//! The SCIM service and the SAML handler (JIT) both create and rename Users,
//! and both must hold a claim for each userName, so of two racing creations of
//! the same userName, by either writer, exactly one succeeds.

use std::collections::BTreeMap;

use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::api::{User, UserNameClaim, UserNameClaimSpec, claim_name};
use crate::identity::{fold_user_name, same_user_name};

/// The name of the Group a JIT login creates for `display_name`: derived
/// from the policy and the display name, so two replicas creating it at once
/// make one Group, and SCIM can find it to adopt it after a switch to Scim.
pub fn jit_group_name(policy: &str, display_name: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{policy}\n{}", display_name.to_lowercase()));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Why a userName could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A live User of the policy holds the name.
    #[error("userName \"{0}\" is already taken")]
    Taken(String),
    /// The claim kept changing under us.
    #[error("the userName claim changed concurrently")]
    Conflict,
    #[error(transparent)]
    Api(#[from] kube::Error),
}

/// The userName claims of one policy.
#[derive(Clone)]
pub struct UserNames {
    claims: Api<UserNameClaim>,
    users: Api<User>,
    policy: String,
}

impl UserNames {
    pub fn new(client: kube::Client, namespace: &str, policy: &str) -> Self {
        Self {
            claims: Api::namespaced(client.clone(), namespace),
            users: Api::namespaced(client, namespace),
            policy: policy.to_owned(),
        }
    }

    /// Reserves `user_name` for user `id`. A claim left behind by a user that
    /// no longer holds the name (deleted by hand, or a crash mid-rename) is
    /// taken over; a live one is [`ClaimError::Taken`].
    pub async fn claim(&self, user_name: &str, id: &str) -> Result<(), ClaimError> {
        let name = claim_name(&self.policy, user_name);
        let mut claim = UserNameClaim::new(
            &name,
            UserNameClaimSpec {
                policy: self.policy.clone(),
                user_name: fold_user_name(user_name),
                user: id.to_owned(),
            },
        );
        claim.metadata.labels = Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "roster".to_owned(),
        )]));
        for _ in 0..3 {
            match self.claims.create(&PostParams::default(), &claim).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
            let Some(existing) = self.claims.get_opt(&name).await? else {
                continue; // released meanwhile: try again
            };
            if existing.spec.user == id {
                return Ok(());
            }
            let holder = self.users.get_opt(&existing.spec.user).await?;
            let held = match holder {
                Some(u) => {
                    u.metadata.deletion_timestamp.is_none()
                        && same_user_name(&u.spec.user_name, user_name)
                }
                // A claim is written just before its user: a young claim
                // without a user is a creation in flight, not a leftover.
                None => is_young(&existing),
            };
            if held {
                return Err(ClaimError::Taken(user_name.to_owned()));
            }
            // A stale claim: remove exactly that one, then retry.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: existing.metadata.uid.clone(),
                    resource_version: existing.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match self.claims.delete(&name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Err(ClaimError::Conflict)
    }

    /// The User (not being deleted) that holds `user_name`, if any.
    pub async fn holder(&self, user_name: &str) -> Result<Option<String>, kube::Error> {
        let Some(claim) = self
            .claims
            .get_opt(&claim_name(&self.policy, user_name))
            .await?
        else {
            return Ok(None);
        };
        let holder = self.users.get_opt(&claim.spec.user).await?;
        Ok(holder
            .filter(|u| {
                u.metadata.deletion_timestamp.is_none()
                    && same_user_name(&u.spec.user_name, user_name)
            })
            .map(|_| claim.spec.user))
    }

    /// Releases `user_name` if user `id` holds it. Best effort: a claim left
    /// behind is recognised as stale by the next `claim`.
    pub async fn release(&self, user_name: &str, id: &str) {
        let name = claim_name(&self.policy, user_name);
        if let Ok(Some(claim)) = self.claims.get_opt(&name).await {
            if claim.spec.user == id {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: claim.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                if let Err(error) = self.claims.delete(&name, &params).await {
                    tracing::debug!(%error, claim = name, "could not release a userName claim");
                }
            }
        }
    }
}

/// How long a claim without its user counts as a creation in flight.
const CLAIM_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

fn is_young(claim: &UserNameClaim) -> bool {
    claim
        .metadata
        .creation_timestamp
        .as_ref()
        .is_none_or(|created| {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(created.0);
            age.unsigned_abs() < CLAIM_GRACE
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_group_names_are_stable_uuids_ignoring_case() {
        let a = jit_group_name("wiki", "Engineering");
        assert_eq!(a, jit_group_name("wiki", "engineering"));
        assert_ne!(a, jit_group_name("crm", "Engineering"));
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}
