//! Group memberships from JIT logins: which groups a login joins and leaves
//! (pure), and the writes that carry it out (I/O, at the bottom).
//!
//! Only groups the policy allowlists are ever touched by a login's group
//! claim: unknown values are ignored, an absent claim or Entra ID's overage
//! claim changes nothing (never a silent wipe), and memberships declared by
//! people (a Group's `spec.members`) are never removed. `defaultGroups` are
//! joined once, when the login creates the user.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::jit::{GroupClaim, granted_groups};
use crate::api::API_VERSION;
use crate::api::{Group, GroupMember, JitOptions, MemberKind, User};
use crate::directory::audit::{Audit, Change};
use crate::directory::jit_group_name;
use crate::directory::membership::MembershipIndex;
use crate::directory::store::{Directory, StoreError};
use crate::directory::writers::{JIT_MANAGER, SOURCE_LABEL};

/// The Group display names a login joins and leaves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupChanges {
    pub join: BTreeSet<String>,
    pub leave: BTreeSet<String>,
}

impl GroupChanges {
    pub fn is_empty(&self) -> bool {
        self.join.is_empty() && self.leave.is_empty()
    }
}

/// What a login of a user (just `created`, or known) does to its groups.
///
/// A listed claim joins the allowlisted groups it names and leaves the other
/// allowlisted groups; groups outside the allowlist are never left.
pub fn plan(claim: &GroupClaim, options: &JitOptions, created: bool) -> GroupChanges {
    let mut join: BTreeSet<String> = BTreeSet::new();
    if created {
        join.extend(options.default_groups.iter().cloned());
    }
    let mut leave = BTreeSet::new();
    if let Some(granted) = granted_groups(claim, &options.allowed_groups) {
        leave = options
            .allowed_groups
            .iter()
            .map(|a| a.group.clone().unwrap_or_else(|| a.value.clone()))
            .filter(|g| !granted.contains(g) && !join.contains(g))
            .collect();
        join.extend(granted);
    }
    GroupChanges { join, leave }
}

// ----- I/O ---------------------------------------------------------------------

/// What a login changed: display names joined and left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub joined: Vec<String>,
    pub left: Vec<String>,
}

/// A policy's groups, as logins change them.
pub struct JitGroups {
    api: Api<Group>,
    directory: Directory,
    index: MembershipIndex,
    namespace: String,
    policy: String,
}

impl JitGroups {
    pub fn new(
        client: kube::Client,
        index: MembershipIndex,
        namespace: &str,
        policy: &str,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            directory: Directory::new(client, index.clone(), namespace, policy),
            index,
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
        }
    }

    /// Carries out `changes` for `user`: joins (creating a missing Group as
    /// `roster-jit`) and leaves, each a change of the user's own slice entry.
    pub async fn apply(
        &self,
        user: &User,
        changes: &GroupChanges,
        assertion_id: &str,
        audit: &Audit,
    ) -> Result<Applied, StoreError> {
        let mut applied = Applied::default();
        if changes.is_empty() {
            return Ok(applied);
        }
        let id = user.name_any();
        let groups = self.groups().await?;
        let member = GroupMember {
            value: id.clone(),
            user_name: None,
            kind: MemberKind::User,
            display: Some(user.spec.user_name.clone()),
        };
        for name in &changes.join {
            let group = match groups.get(&name.to_lowercase()) {
                Some(group) => group.clone(),
                None => self.create(name).await?,
            };
            let declared = group
                .spec
                .members
                .iter()
                .any(|m| m.is(&id, &user.spec.user_name));
            if declared || self.directory.in_slices(&group.name_any(), &id).await? {
                continue;
            }
            self.directory
                .change_members(&group.name_any(), std::slice::from_ref(&member), &[])
                .await?;
            let note = format!("{} joined {}", user.spec.user_name, group.spec.display_name);
            audit.record(
                &group,
                &group.spec.policy,
                Change::MembersChanged,
                assertion_id,
                note,
            );
            applied.joined.push(group.spec.display_name.clone());
        }
        for name in &changes.leave {
            let Some(group) = groups.get(&name.to_lowercase()) else {
                continue;
            };
            if !self.directory.in_slices(&group.name_any(), &id).await? {
                continue;
            }
            self.directory
                .change_members(&group.name_any(), &[], std::slice::from_ref(&id))
                .await?;
            let note = format!("{} left {}", user.spec.user_name, group.spec.display_name);
            audit.record(
                group,
                &group.spec.policy,
                Change::MembersChanged,
                assertion_id,
                note,
            );
            applied.left.push(group.spec.display_name.clone());
        }
        Ok(applied)
    }

    /// The policy's groups by lowercased display name. Served from the API
    /// server's watch cache: a group created a moment ago and missed here is
    /// found again by its derived name when the login creates it.
    async fn groups(&self) -> Result<BTreeMap<String, Group>, kube::Error> {
        let params = ListParams::default()
            .fields(&format!("spec.policy={}", self.policy))
            .match_any();
        let list = self.api.list(&params).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|g| g.metadata.deletion_timestamp.is_none())
            .map(|g| (g.spec.display_name.to_lowercase(), g))
            .collect())
    }

    /// Creates the Group a login grants, or finds the one a concurrent login
    /// just created: server-side apply of the same derived name is idempotent.
    async fn create(&self, display_name: &str) -> Result<Group, kube::Error> {
        let name = jit_group_name(&self.policy, display_name);
        let object = json!({
            "apiVersion": API_VERSION,
            "kind": "Group",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": { SOURCE_LABEL: "jit" },
            },
            "spec": { "policy": self.policy, "displayName": display_name },
        });
        let params = PatchParams::apply(JIT_MANAGER);
        let group = self
            .api
            .patch(&name, &params, &Patch::Apply(&object))
            .await?;
        // The gate names the user's groups right after this login.
        self.index.observe_group(&group);
        Ok(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AllowedGroup;

    fn allow(value: &str, group: Option<&str>) -> AllowedGroup {
        AllowedGroup {
            value: value.into(),
            group: group.map(Into::into),
        }
    }

    fn options() -> JitOptions {
        JitOptions {
            default_groups: vec!["everyone".into()],
            allowed_groups: vec![
                allow("okta-eng", Some("engineering")),
                allow("okta-sec", Some("security")),
                allow("sales", None),
            ],
            ..Default::default()
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_first_login_joins_the_default_and_granted_groups_and_leaves_the_other_allowlisted() {
        let claim = GroupClaim::Listed(vec!["okta-eng".into(), "not-allowlisted".into()]);
        let changes = plan(&claim, &options(), true);
        assert_eq!(changes.join, names(&["engineering", "everyone"]));
        assert_eq!(changes.leave, names(&["sales", "security"]));
    }

    #[test]
    fn later_logins_do_not_rejoin_default_groups() {
        let claim = GroupClaim::Listed(vec!["okta-sec".into()]);
        let changes = plan(&claim, &options(), false);
        assert_eq!(changes.join, names(&["security"]));
        assert_eq!(changes.leave, names(&["engineering", "sales"]));
    }

    #[test]
    fn an_absent_or_overage_claim_never_leaves_a_group() {
        for claim in [GroupClaim::Absent, GroupClaim::Overage] {
            assert_eq!(plan(&claim, &options(), false), GroupChanges::default());
            let created = plan(&claim, &options(), true);
            assert_eq!(created.join, names(&["everyone"]));
            assert!(created.leave.is_empty());
        }
    }

    #[test]
    fn a_group_granted_by_any_of_its_values_is_not_left() {
        let options = JitOptions {
            allowed_groups: vec![
                allow("oid-1", Some("admins")),
                allow("oid-2", Some("admins")),
            ],
            ..Default::default()
        };
        let changes = plan(&GroupClaim::Listed(vec!["oid-2".into()]), &options, false);
        assert_eq!(changes.join, names(&["admins"]));
        assert!(changes.leave.is_empty());
    }
}
