//! What every writer of a policy's Users and Groups shares: case-insensitive
//! userName uniqueness through `UserNameClaim`s, and the names of the Groups
//! logins create.
//!
//! The SCIM service and the SAML handler (JIT) both create and rename Users,
//! and both must hold a claim for each userName, so of two racing creations of
//! the same userName, by either writer, exactly one succeeds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};

use crate::api::{User, UserNameClaim, UserNameClaimSpec, claim_name};
use crate::deadline::landed_after;
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
    /// The name is held by a User which a request created after it had
    /// been answered 503 (its write landed once a stalled API server
    /// resumed): nobody was told of it, and a creation of the same userName
    /// may [`UserNames::take_over`] this claim and its User.
    #[error("userName is held by user {}, created after its request gave up", .0.spec.user)]
    Abandoned(Box<UserNameClaim>),
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

    /// Reserves `user_name` for user `id`, for a request that stops waiting
    /// at `deadline`. A claim left behind by a user that no longer holds the
    /// name (deleted by hand, a crash mid-rename, a creation whose request
    /// gave up before its User was written) is taken over; a live one is
    /// [`ClaimError::Taken`], or [`ClaimError::Abandoned`] if its User was
    /// written after its own request had given up.
    pub async fn claim(
        &self,
        user_name: &str,
        id: &str,
        deadline: Timestamp,
    ) -> Result<(), ClaimError> {
        let name = claim_name(&self.policy, user_name);
        let mut claim = UserNameClaim::new(
            &name,
            UserNameClaimSpec {
                policy: self.policy.clone(),
                user_name: fold_user_name(user_name),
                user: id.to_owned(),
                pending_until: Some(Time(deadline)),
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
            match standing(&existing, holder.as_ref(), user_name, Timestamp::now()) {
                Standing::Held | Standing::InFlight => {
                    return Err(ClaimError::Taken(user_name.to_owned()));
                }
                Standing::Abandoned => return Err(ClaimError::Abandoned(Box::new(existing))),
                Standing::Stale => {}
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

    /// Makes an abandoned claim (and its User) this request's: its deadline
    /// becomes `deadline`, so its User counts as written in time from now
    /// on, and a second creation of the name is refused. Conditional on the
    /// claim being unchanged, so of two racing takeovers one wins. Returns
    /// the User's name.
    pub async fn take_over(
        &self,
        claim: &UserNameClaim,
        deadline: Timestamp,
    ) -> Result<String, ClaimError> {
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": claim.metadata.resource_version },
            "spec": { "pendingUntil": Time(deadline) },
        });
        match self
            .claims
            .patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(claim.spec.user.clone()),
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Err(ClaimError::Conflict),
            Err(error) => Err(error.into()),
        }
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

/// What a claim held for another user means to a new claim of its name.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    /// A live User holds the name.
    Held,
    /// The claim's User is being created: its request has not given up yet.
    InFlight,
    /// The holder was created after its request gave up (see
    /// [`ClaimError::Abandoned`]).
    Abandoned,
    /// Nobody holds the name any more.
    Stale,
}

fn standing(
    claim: &UserNameClaim,
    holder: Option<&User>,
    user_name: &str,
    now: Timestamp,
) -> Standing {
    let pending_until = claim.spec.pending_until.as_ref().map(|t| t.0);
    match holder {
        Some(user)
            if user.metadata.deletion_timestamp.is_none()
                && same_user_name(&user.spec.user_name, user_name) =>
        {
            let created = user.metadata.creation_timestamp.as_ref().map(|t| t.0);
            match (created, pending_until) {
                (Some(created), Some(deadline)) if landed_after(created, deadline) => {
                    Standing::Abandoned
                }
                _ => Standing::Held,
            }
        }
        Some(_) => Standing::Stale,
        None => {
            // Claims written before requests had deadlines: a minute.
            let until = pending_until.or_else(|| {
                let created = claim.metadata.creation_timestamp.as_ref()?.0;
                Some(created + LEGACY_GRACE)
            });
            if until.is_none_or(|until| now < until) {
                Standing::InFlight
            } else {
                Standing::Stale
            }
        }
    }
}

/// How long a claim without `pendingUntil` and without its user counts as a
/// creation in flight.
const LEGACY_GRACE: SignedDuration = SignedDuration::from_secs(60);

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

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn claim(pending_until: Option<&str>, created: &str) -> UserNameClaim {
        let mut claim = UserNameClaim::new(
            "un-1",
            UserNameClaimSpec {
                policy: "crm".into(),
                user_name: "ada".into(),
                user: "u-1".into(),
                pending_until: pending_until.map(|t| Time(at(t))),
            },
        );
        claim.metadata.creation_timestamp = Some(Time(at(created)));
        claim
    }

    fn user(user_name: &str, created: &str) -> User {
        let mut user = User::new(
            "u-1",
            crate::api::UserSpec {
                policy: "crm".into(),
                user_name: user_name.into(),
                ..Default::default()
            },
        );
        user.metadata.creation_timestamp = Some(Time(at(created)));
        user
    }

    const T0: &str = "2026-12-02T10:00:00Z";
    const DEADLINE: &str = "2026-12-02T10:00:08Z";

    #[test]
    fn a_user_written_within_its_request_holds_the_name() {
        let claim = claim(Some(DEADLINE), T0);
        let held = user("Ada", "2026-12-02T10:00:01Z");
        let now = at("2026-12-02T11:00:00Z");
        assert_eq!(standing(&claim, Some(&held), "ada", now), Standing::Held);
    }

    #[test]
    fn a_user_written_after_its_request_gave_up_is_abandoned() {
        let claim = claim(Some(DEADLINE), T0);
        let late = user("ada", "2026-12-02T10:00:40Z");
        let now = at("2026-12-02T10:01:00Z");
        assert_eq!(
            standing(&claim, Some(&late), "ada", now),
            Standing::Abandoned
        );
    }

    #[test]
    fn a_renamed_or_deleted_holder_leaves_a_stale_claim() {
        let claim = claim(Some(DEADLINE), T0);
        let now = at("2026-12-02T10:00:01Z");
        let renamed = user("grace", "2026-12-02T09:00:00Z");
        assert_eq!(
            standing(&claim, Some(&renamed), "ada", now),
            Standing::Stale
        );
        let mut deleted = user("ada", "2026-12-02T09:00:00Z");
        deleted.metadata.deletion_timestamp = Some(Time(now));
        assert_eq!(
            standing(&claim, Some(&deleted), "ada", now),
            Standing::Stale
        );
    }

    #[test]
    fn a_claim_without_its_user_is_in_flight_until_its_deadline() {
        // Written after a stalled API server resumed: created long after
        // its deadline, so stale at once.
        let claim = claim(Some(DEADLINE), "2026-12-02T10:05:00Z");
        assert_eq!(
            standing(&claim, None, "ada", at("2026-12-02T10:00:07Z")),
            Standing::InFlight
        );
        assert_eq!(
            standing(&claim, None, "ada", at("2026-12-02T10:05:01Z")),
            Standing::Stale
        );
    }

    #[test]
    fn a_claim_without_a_deadline_is_in_flight_for_a_minute() {
        let claim = claim(None, T0);
        let held = standing(&claim, None, "ada", at("2026-12-02T10:00:59Z"));
        assert_eq!(held, Standing::InFlight);
        let stale = standing(&claim, None, "ada", at("2026-12-02T10:01:01Z"));
        assert_eq!(stale, Standing::Stale);
    }
}
