//! What to do downstream, decided purely from (desired state, what the
//! status says was synced, what the application holds). Reconcilers fetch,
//! call these, then act.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Account, AccountState, DeprovisionAction};
use crate::connectors::RemoteAccount;

/// One step for a user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserAction {
    /// Nothing to do: the account matches this generation.
    Nothing,
    /// Ask the application whether an account with the userName exists
    /// (after a crash between creating it and recording its id).
    Lookup,
    Create,
    /// Take over an account found by userName, then make it match.
    Adopt(String),
    /// An inactive User whose userName names an account Roster never
    /// managed: taking it over would disable it, so it is left alone.
    LeaveUnmanaged(String),
    Update(String),
    Disable(String),
    Delete(String),
}

/// Keeping an account in line with a live (not deleting) User.
/// `found` is the answer to a previous `Lookup`, if one was made.
pub fn plan_sync(
    generation: i64,
    active: bool,
    account: Option<&Account>,
    found: Option<Option<&RemoteAccount>>,
) -> UserAction {
    let remote_id = account.and_then(|a| a.remote_id.clone());
    let synced = account.and_then(|a| a.synced_generation) == Some(generation);
    match (remote_id, found) {
        // The fast path of every resync: no downstream call at all.
        (Some(_), _) if synced => UserAction::Nothing,
        (Some(id), _) => {
            let was_active = account.and_then(|a| a.state) != Some(AccountState::Disabled);
            if was_active && !active {
                UserAction::Disable(id)
            } else {
                UserAction::Update(id)
            }
        }
        (None, None) => UserAction::Lookup,
        (None, Some(Some(remote))) if !active => UserAction::LeaveUnmanaged(remote.id.clone()),
        (None, Some(Some(remote))) => UserAction::Adopt(remote.id.clone()),
        (None, Some(None)) => UserAction::Create,
    }
}

/// Deprovisioning a User being deleted, as the policy says. Only an
/// account recorded in the User's status (created or adopted by Roster) is
/// ever disabled or deleted: one merely found by userName may be someone
/// else's, so none is looked up.
pub fn plan_deprovision(action: DeprovisionAction, account: Option<&Account>) -> UserAction {
    let Some(id) = account.and_then(|a| a.remote_id.clone()) else {
        return UserAction::Nothing;
    };
    match action {
        DeprovisionAction::Delete => UserAction::Delete(id),
        DeprovisionAction::Disable => {
            if account.and_then(|a| a.state) == Some(AccountState::Disabled) {
                UserAction::Nothing
            } else {
                UserAction::Disable(id)
            }
        }
    }
}

/// The next step for a deleted User's account under `deleteAfterSeconds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GraceStep {
    /// Disable the account now; delete it later.
    Disable(String),
    /// Disabled: look again after this long.
    Wait(std::time::Duration),
    /// The period is over (or an operator forced it): delete the account.
    Delete(String),
    /// A User with the same userName came back and takes the account over:
    /// let this one go without a downstream call.
    HandOver,
}

/// Deleting `remote_id` (disabled or not, as `disabled` says) under a grace
/// period that ends at `delete_at`; `taken_back`: a live User of the
/// policy has the same userName; `forced`: an operator asked for it now.
pub fn plan_grace(
    now_seconds: i64,
    delete_at_seconds: i64,
    remote_id: &str,
    disabled: bool,
    taken_back: bool,
    forced: bool,
) -> GraceStep {
    if taken_back {
        GraceStep::HandOver
    } else if forced || now_seconds >= delete_at_seconds {
        GraceStep::Delete(remote_id.to_owned())
    } else if !disabled {
        GraceStep::Disable(remote_id.to_owned())
    } else {
        GraceStep::Wait(std::time::Duration::from_secs(
            (delete_at_seconds - now_seconds) as u64,
        ))
    }
}

/// Where a JIT user stands against the policy's `deprovisionAfterDays`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inactivity {
    /// Not seen for longer than allowed: deactivate.
    Expired,
    /// Look again after this long.
    CheckIn(std::time::Duration),
}

/// JIT never deprovisions on its own (no login, no signal), so a user not
/// seen for `days` since `last_seen` is deactivated.
pub fn inactivity(now_seconds: i64, last_seen_seconds: i64, days: i32) -> Inactivity {
    let allowed = i64::from(days.max(1)) * 86_400;
    let idle = now_seconds - last_seen_seconds;
    if idle >= allowed {
        Inactivity::Expired
    } else {
        Inactivity::CheckIn(std::time::Duration::from_secs((allowed - idle) as u64))
    }
}

/// Where a group's member stands, as the controller's caches tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// A User of the group's policy whose account has this remote id.
    Ready(String),
    /// A User of the group's policy without an account yet (or being
    /// deleted): sync it later.
    Waiting,
    /// A User of another policy: its account is another application's.
    Foreign { policy: String },
    /// No such User.
    Unknown,
}

/// A member that is never pushed downstream, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub id: String,
    /// The other policy the User belongs to; `None`: no such User.
    pub foreign_policy: Option<String>,
}

impl Skipped {
    /// The Event and condition reason.
    pub fn reason(&self) -> &'static str {
        match self.foreign_policy {
            Some(_) => "ForeignMember",
            None => "UnknownMember",
        }
    }

    pub fn describe(&self) -> String {
        match &self.foreign_policy {
            Some(policy) => format!("{} (a User of policy {policy})", self.id),
            None => format!("{} (no such User)", self.id),
        }
    }
}

/// How a group's members must change downstream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberDiff {
    /// (member id, remote id) to add.
    pub add: Vec<(String, String)>,
    /// (member id, remote id) to remove.
    pub remove: Vec<(String, String)>,
    /// Members whose account has no remote id yet: sync them later.
    pub waiting: Vec<String>,
    /// Members that are not Users of the group's policy: never pushed; a
    /// foreign one pushed before members were checked is removed downstream.
    pub skipped: Vec<Skipped>,
}

impl MemberDiff {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// `desired` members against `synced` (member id -> remote id, as last
/// recorded); `state` says where each member stands.
pub fn diff_members(
    desired: &BTreeSet<String>,
    synced: &BTreeMap<String, String>,
    state: impl Fn(&str) -> MemberState,
) -> MemberDiff {
    let mut diff = MemberDiff::default();
    let mut kept = BTreeSet::new();
    for id in desired {
        let skipped = |foreign_policy| Skipped {
            id: id.clone(),
            foreign_policy,
        };
        match state(id) {
            MemberState::Foreign { policy } => diff.skipped.push(skipped(Some(policy))),
            MemberState::Unknown => {
                // Synced once, so a User of this policy then, deleted since:
                // left as it was (its account is deprovisioned on its own,
                // and the application may no longer know the id).
                if synced.contains_key(id) {
                    kept.insert(id);
                }
                diff.skipped.push(skipped(None));
            }
            _ if synced.contains_key(id) => {
                kept.insert(id);
            }
            MemberState::Ready(remote) => {
                kept.insert(id);
                diff.add.push((id.clone(), remote));
            }
            MemberState::Waiting => diff.waiting.push(id.clone()),
        }
    }
    for (id, remote) in synced {
        if !kept.contains(id) {
            diff.remove.push((id.clone(), remote.clone()));
        }
    }
    diff
}

/// The synced map after applying `diff`.
pub fn apply_diff(
    synced: &BTreeMap<String, String>,
    diff: &MemberDiff,
) -> BTreeMap<String, String> {
    let mut out = synced.clone();
    for (id, _) in &diff.remove {
        out.remove(id);
    }
    for (id, remote) in &diff.add {
        out.insert(id.clone(), remote.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(
        remote: Option<&str>,
        state: Option<AccountState>,
        generation: Option<i64>,
    ) -> Account {
        Account {
            remote_id: remote.map(str::to_owned),
            state,
            synced_generation: generation,
            last_sync: None,
            delete_at: None,
        }
    }

    fn remote(id: &str) -> RemoteAccount {
        RemoteAccount {
            id: id.into(),
            active: Some(true),
        }
    }

    #[test]
    fn a_synced_generation_means_no_downstream_call() {
        let a = account(Some("r1"), Some(AccountState::Active), Some(3));
        assert_eq!(plan_sync(3, true, Some(&a), None), UserAction::Nothing);
    }

    #[test]
    fn a_new_user_is_looked_up_before_it_is_created() {
        assert_eq!(plan_sync(1, true, None, None), UserAction::Lookup);
        assert_eq!(plan_sync(1, true, None, Some(None)), UserAction::Create);
        let found = remote("r9");
        assert_eq!(
            plan_sync(1, true, None, Some(Some(&found))),
            UserAction::Adopt("r9".into())
        );
    }

    #[test]
    fn deactivation_disables_and_other_changes_update() {
        let a = account(Some("r1"), Some(AccountState::Active), Some(1));
        assert_eq!(
            plan_sync(2, false, Some(&a), None),
            UserAction::Disable("r1".into())
        );
        assert_eq!(
            plan_sync(2, true, Some(&a), None),
            UserAction::Update("r1".into())
        );
        let disabled = account(Some("r1"), Some(AccountState::Disabled), Some(2));
        assert_eq!(
            plan_sync(3, true, Some(&disabled), None),
            UserAction::Update("r1".into())
        );
        assert_eq!(
            plan_sync(3, false, Some(&disabled), None),
            UserAction::Update("r1".into())
        );
    }

    #[test]
    fn deprovisioning_follows_the_policy() {
        let a = account(Some("r1"), Some(AccountState::Active), Some(1));
        assert_eq!(
            plan_deprovision(DeprovisionAction::Delete, Some(&a)),
            UserAction::Delete("r1".into())
        );
        assert_eq!(
            plan_deprovision(DeprovisionAction::Disable, Some(&a)),
            UserAction::Disable("r1".into())
        );
        let disabled = account(Some("r1"), Some(AccountState::Disabled), Some(1));
        assert_eq!(
            plan_deprovision(DeprovisionAction::Disable, Some(&disabled)),
            UserAction::Nothing
        );
    }

    #[test]
    fn an_account_roster_never_recorded_is_never_deprovisioned() {
        assert_eq!(
            plan_deprovision(DeprovisionAction::Delete, None),
            UserAction::Nothing
        );
        let unsynced = account(None, None, None);
        assert_eq!(
            plan_deprovision(DeprovisionAction::Disable, Some(&unsynced)),
            UserAction::Nothing
        );
    }

    #[test]
    fn a_grace_period_disables_first_deletes_at_its_end_and_yields_to_a_comeback() {
        assert_eq!(
            plan_grace(100, 200, "r1", false, false, false),
            GraceStep::Disable("r1".into())
        );
        assert_eq!(
            plan_grace(100, 200, "r1", true, false, false),
            GraceStep::Wait(std::time::Duration::from_secs(100))
        );
        assert_eq!(
            plan_grace(200, 200, "r1", true, false, false),
            GraceStep::Delete("r1".into())
        );
        assert_eq!(
            plan_grace(100, 200, "r1", false, false, true),
            GraceStep::Delete("r1".into()),
            "forced"
        );
        assert_eq!(
            plan_grace(300, 200, "r1", true, true, false),
            GraceStep::HandOver,
            "a User that came back keeps the account, even late"
        );
    }

    #[test]
    fn an_inactive_user_never_takes_over_an_account_it_would_disable() {
        let found = remote("theirs");
        assert_eq!(
            plan_sync(1, false, None, Some(Some(&found))),
            UserAction::LeaveUnmanaged("theirs".into())
        );
        assert_eq!(plan_sync(1, false, None, Some(None)), UserAction::Create);
    }

    #[test]
    fn a_jit_user_idle_past_the_limit_expires_and_otherwise_is_checked_when_it_would() {
        let day = 86_400;
        assert_eq!(inactivity(91 * day, 0, 90), Inactivity::Expired);
        assert_eq!(inactivity(90 * day, 0, 90), Inactivity::Expired);
        assert_eq!(
            inactivity(89 * day, 0, 90),
            Inactivity::CheckIn(std::time::Duration::from_secs(day as u64))
        );
    }

    #[test]
    fn member_diffs_add_remove_and_wait_for_unsynced_users() {
        let desired: BTreeSet<String> = ["a", "b", "c"].map(String::from).into();
        let synced = BTreeMap::from([
            ("a".to_owned(), "ra".to_owned()),
            ("z".to_owned(), "rz".to_owned()),
        ]);
        let diff = diff_members(&desired, &synced, |id| match id {
            "b" => MemberState::Ready("rb".to_owned()),
            _ => MemberState::Waiting,
        });
        assert_eq!(diff.add, vec![("b".to_owned(), "rb".to_owned())]);
        assert_eq!(diff.remove, vec![("z".to_owned(), "rz".to_owned())]);
        assert_eq!(diff.waiting, vec!["c".to_owned()]);
        assert!(diff.skipped.is_empty());
        let after = apply_diff(&synced, &diff);
        assert_eq!(after.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn members_of_another_policy_or_none_are_skipped_and_foreign_ones_pushed_before_are_removed() {
        let desired: BTreeSet<String> = ["ours", "theirs", "ghost", "old-theirs"]
            .map(String::from)
            .into();
        let synced = BTreeMap::from([
            ("old-theirs".to_owned(), "r-other-app".to_owned()),
            ("ghost".to_owned(), "r-deleted".to_owned()),
        ]);
        let diff = diff_members(&desired, &synced, |id| match id {
            "ours" => MemberState::Ready("r1".to_owned()),
            "ghost" => MemberState::Unknown,
            _ => MemberState::Foreign {
                policy: "b".to_owned(),
            },
        });
        assert_eq!(diff.add, vec![("ours".to_owned(), "r1".to_owned())]);
        assert_eq!(
            diff.remove,
            vec![("old-theirs".to_owned(), "r-other-app".to_owned())],
            "a foreign member pushed before the check is taken out; a deleted one is left"
        );
        let skipped: Vec<String> = diff.skipped.iter().map(Skipped::describe).collect();
        assert_eq!(
            skipped,
            [
                "ghost (no such User)",
                "old-theirs (a User of policy b)",
                "theirs (a User of policy b)"
            ]
        );
        assert_eq!(diff.skipped[0].reason(), "UnknownMember");
        assert_eq!(diff.skipped[1].reason(), "ForeignMember");
    }
}
