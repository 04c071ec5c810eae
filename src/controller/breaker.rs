//! The deprovisioning circuit breaker: per policy, how many deactivations,
//! deletions and member removals have gone out within a sliding window, and
//! which are held once that exceeds the limit. Pure state; the controllers
//! consult it through [`super::Context`] before each deprovisioning call.
//!
//! Account actions (deactivations, deletions) and member removals are
//! counted apart, each against the same limit, so deleting 20 people does
//! not also count their 60 memberships.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use crate::api::CircuitBreaker;

pub use crate::api::APPROVAL_ANNOTATION;

/// How many held actions a policy's status names.
pub const NAMED: usize = 10;

/// What a deprovisioning action takes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// An account deactivated or deleted.
    Account,
    /// Members taken out of a group (or a group deleted with its members).
    Membership,
}

/// A policy's limits, from its spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub enabled: bool,
    pub minimum: u64,
    pub percent: u64,
    pub window: Duration,
}

impl Limits {
    pub fn of(spec: &CircuitBreaker) -> Self {
        Self {
            enabled: spec.enabled,
            minimum: spec.max_actions.max(1) as u64,
            percent: spec.max_percent.clamp(0, 100) as u64,
            window: Duration::from_secs(spec.window_seconds.max(1) as u64),
        }
    }

    /// Actions of one kind allowed within the window, for `base` active users.
    pub fn allowed(&self, base: u64) -> u64 {
        self.minimum.max((base * self.percent).div_ceil(100))
    }
}

/// The object whose action is held, e.g. `("User", "alice")`.
pub type Subject = (&'static str, String);

/// One deprovisioning action, as the breaker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub subject: Subject,
    pub removal: Removal,
    /// How many removals it makes (members taken out of a group).
    pub count: u64,
    /// What it would do, e.g. `Disable` or `remove 3 member(s)`.
    pub action: String,
}

/// One held action.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HeldAction {
    removal: Removal,
    count: u64,
    /// What it would do, e.g. `Disable` or `remove 3 members`.
    action: String,
}

/// Why and since when deprovisioning is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    pub token: String,
    pub since: Timestamp,
    pub reason: String,
    /// Restored from the policy's status after a restart or a change of
    /// leader: what it held then is not known until those objects come back
    /// to be held again, so it only ends by approval.
    pub restored: bool,
}

/// The breaker's answer to one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Held; `tripped` when this action tripped the breaker.
    Hold {
        tripped: bool,
    },
}

/// What a policy's status shows of a quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub trip: Trip,
    pub held_accounts: u64,
    pub held_member_removals: u64,
    pub named: Vec<String>,
}

/// One policy's breaker.
#[derive(Debug, Default)]
pub struct PolicyBreaker {
    /// Actions let through within the window: when, what, how many.
    recent: VecDeque<(Instant, Removal, u64)>,
    /// Active users when the window's first action went out: the share is
    /// of the policy as it was before the burst, not as the burst left it.
    base: Option<u64>,
    trip: Option<Trip>,
    held: BTreeMap<Subject, HeldAction>,
    /// Held when an approval came: these go out once each, uncounted.
    approved: BTreeSet<Subject>,
}

impl PolicyBreaker {
    /// Decides one action, for a policy of `active_users`.
    pub fn admit(
        &mut self,
        limits: &Limits,
        (now, wall): (Instant, Timestamp),
        active_users: u64,
        request: Request,
    ) -> Verdict {
        let Request {
            subject,
            removal,
            count,
            action,
        } = request;
        if !limits.enabled {
            self.release_all();
            return Verdict::Go;
        }
        if self.approved.remove(&subject) {
            return Verdict::Go;
        }
        let mut tripped = false;
        if self.trip.is_none() {
            self.forget_before(now, limits.window);
            let base = *self.base.get_or_insert(active_users);
            let allowed = limits.allowed(base);
            let spent: u64 = self
                .recent
                .iter()
                .filter(|(_, r, _)| *r == removal)
                .map(|(_, _, n)| n)
                .sum();
            if spent + count <= allowed {
                self.recent.push_back((now, removal, count));
                self.held.remove(&subject);
                return Verdict::Go;
            }
            let what = match removal {
                Removal::Account => "account deactivations and deletions",
                Removal::Membership => "member removals",
            };
            self.trip = Some(Trip {
                token: token(),
                since: wall,
                reason: format!(
                    "{} {what} within {}s would exceed the limit of {allowed} (max({}, {}% of {base} active users))",
                    spent + count,
                    limits.window.as_secs(),
                    limits.minimum,
                    limits.percent,
                ),
                restored: false,
            });
            tripped = true;
        }
        self.held.insert(
            subject,
            HeldAction {
                removal,
                count,
                action,
            },
        );
        Verdict::Hold { tripped }
    }

    /// `subject` needs no deprovisioning any more (the identity provider
    /// took it back, or it was done). Returns whether that ended the
    /// quarantine: the last held action dissolved.
    pub fn dissolve(&mut self, subject: &Subject) -> bool {
        if self.held.remove(subject).is_none() {
            return false;
        }
        let ends = self.held.is_empty() && self.trip.as_ref().is_some_and(|t| !t.restored);
        if ends {
            self.trip = None;
            self.forget_all_recent();
        }
        ends
    }

    /// An operator's approval: with the trip's token, every held action
    /// goes out once, and the window starts afresh. Returns the subjects
    /// released, or `None` when the token is not this trip's.
    pub fn approve(&mut self, token: &str) -> Option<Vec<Subject>> {
        if self.trip.as_ref().map(|t| t.token.as_str()) != Some(token) {
            return None;
        }
        Some(self.release_all())
    }

    /// Ends any trip, approving what it held (the breaker was turned off).
    pub fn release_all(&mut self) -> Vec<Subject> {
        self.trip = None;
        self.forget_all_recent();
        let released: Vec<Subject> = std::mem::take(&mut self.held).into_keys().collect();
        self.approved.extend(released.iter().cloned());
        released
    }

    /// A quarantine recorded in the policy's status, for a breaker that
    /// knows none (just started, or just became leader).
    pub fn restore(&mut self, token: &str, since: Timestamp, reason: &str) {
        if self.trip.is_none() {
            self.trip = Some(Trip {
                token: token.to_owned(),
                since,
                reason: reason.to_owned(),
                restored: true,
            });
        }
    }

    pub fn is_tripped(&self) -> bool {
        self.trip.is_some()
    }

    pub fn summary(&self) -> Option<Summary> {
        let trip = self.trip.clone()?;
        let mut summary = Summary {
            trip,
            held_accounts: 0,
            held_member_removals: 0,
            named: Vec::new(),
        };
        for ((kind, name), held) in &self.held {
            match held.removal {
                Removal::Account => summary.held_accounts += held.count,
                Removal::Membership => summary.held_member_removals += held.count,
            }
            if summary.named.len() < NAMED {
                summary
                    .named
                    .push(format!("{kind} {name}: {}", held.action));
            }
        }
        Some(summary)
    }

    fn forget_before(&mut self, now: Instant, window: Duration) {
        while let Some((at, _, _)) = self.recent.front() {
            if now.duration_since(*at) < window {
                break;
            }
            self.recent.pop_front();
        }
        if self.recent.is_empty() {
            self.base = None;
        }
    }

    fn forget_all_recent(&mut self) {
        self.recent.clear();
        self.base = None;
    }
}

/// A fresh approval token: short enough to type, never reused.
fn token() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..10)
        .map(|_| char::from(b"abcdefghjkmnpqrstuvwxyz23456789"[rng.random_range(0..31)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::of(&CircuitBreaker::default())
    }

    fn user(name: &str) -> Subject {
        ("User", name.to_owned())
    }

    fn request(subject: Subject, removal: Removal, count: u64, action: &str) -> Request {
        Request {
            subject,
            removal,
            count,
            action: action.into(),
        }
    }

    fn admit(b: &mut PolicyBreaker, at: Instant, active: u64, name: &str) -> Verdict {
        let disable = request(user(name), Removal::Account, 1, "Disable");
        b.admit(&limits(), (at, Timestamp::UNIX_EPOCH), active, disable)
    }

    #[test]
    fn the_limit_is_the_larger_of_the_minimum_and_the_share() {
        assert_eq!(limits().allowed(0), 20);
        assert_eq!(limits().allowed(150), 20);
        assert_eq!(limits().allowed(1000), 100);
        assert_eq!(limits().allowed(1001), 101);
    }

    #[test]
    fn actions_beyond_the_limit_trip_and_are_held_until_approved() {
        let mut b = PolicyBreaker::default();
        let t = Instant::now();
        for i in 0..100 {
            assert_eq!(admit(&mut b, t, 1000, &format!("u{i}")), Verdict::Go);
        }
        assert_eq!(
            admit(&mut b, t, 1000, "u100"),
            Verdict::Hold { tripped: true }
        );
        assert_eq!(
            admit(&mut b, t, 1000, "u101"),
            Verdict::Hold { tripped: false }
        );
        let summary = b.summary().unwrap();
        assert_eq!(summary.held_accounts, 2);
        assert_eq!(summary.named, ["User u100: Disable", "User u101: Disable"]);
        assert!(
            summary.trip.reason.starts_with("101 account"),
            "{}",
            summary.trip.reason
        );

        assert_eq!(
            b.approve("not-the-token"),
            None,
            "an old approval releases nothing"
        );
        let token = summary.trip.token.clone();
        let released = b.approve(&token).unwrap();
        assert_eq!(released, [user("u100"), user("u101")]);
        assert!(!b.is_tripped());
        assert_eq!(admit(&mut b, t, 1000, "u100"), Verdict::Go);
        assert_eq!(admit(&mut b, t, 1000, "u101"), Verdict::Go);
        assert_eq!(b.approve(&token), None, "a token releases once");
    }

    #[test]
    fn the_window_slides_and_the_share_is_of_the_policy_before_the_burst() {
        let mut b = PolicyBreaker::default();
        let t = Instant::now();
        for i in 0..20 {
            assert_eq!(admit(&mut b, t, 100, &format!("a{i}")), Verdict::Go);
        }
        // The active count falls as the burst lands; the limit does not.
        assert_eq!(admit(&mut b, t, 0, "a20"), Verdict::Hold { tripped: true });
        let mut b = PolicyBreaker::default();
        for i in 0..20 {
            assert_eq!(admit(&mut b, t, 100, &format!("b{i}")), Verdict::Go);
        }
        let later = t + Duration::from_secs(600);
        assert_eq!(
            admit(&mut b, later, 100, "b20"),
            Verdict::Go,
            "the window moved on"
        );
    }

    #[test]
    fn account_actions_and_member_removals_are_counted_apart() {
        let mut b = PolicyBreaker::default();
        let t = Instant::now();
        let l = limits();
        let group = ("Group", "eng".to_owned());
        let at = (t, Timestamp::UNIX_EPOCH);
        let twenty = request(
            group.clone(),
            Removal::Membership,
            20,
            "remove 20 member(s)",
        );
        let verdict = b.admit(&l, at, 0, twenty);
        assert_eq!(verdict, Verdict::Go);
        assert_eq!(admit(&mut b, t, 0, "a"), Verdict::Go);
        let one = request(group, Removal::Membership, 1, "remove 1 member(s)");
        let verdict = b.admit(&l, at, 0, one);
        assert_eq!(verdict, Verdict::Hold { tripped: true });
        assert_eq!(b.summary().unwrap().held_member_removals, 1);
    }

    #[test]
    fn held_actions_taken_back_dissolve_and_end_the_quarantine() {
        let mut b = PolicyBreaker::default();
        let t = Instant::now();
        for i in 0..22 {
            admit(&mut b, t, 0, &format!("u{i}"));
        }
        assert!(b.is_tripped());
        assert!(!b.dissolve(&user("u20")));
        assert!(!b.dissolve(&user("nobody")));
        assert!(b.dissolve(&user("u21")), "the last one ends it");
        assert!(!b.is_tripped());
    }

    #[test]
    fn a_restored_quarantine_holds_everything_and_ends_only_by_approval() {
        let mut b = PolicyBreaker::default();
        b.restore("tok", Timestamp::UNIX_EPOCH, "before the restart");
        let t = Instant::now();
        assert_eq!(admit(&mut b, t, 0, "u1"), Verdict::Hold { tripped: false });
        assert!(!b.dissolve(&user("u1")), "what else it held is unknown");
        assert!(b.is_tripped());
        admit(&mut b, t, 0, "u2");
        assert_eq!(b.approve("tok").unwrap(), [user("u2")]);
        assert_eq!(admit(&mut b, t, 0, "u2"), Verdict::Go);
    }

    #[test]
    fn a_breaker_turned_off_lets_everything_through_and_releases_what_it_held() {
        let mut b = PolicyBreaker::default();
        let t = Instant::now();
        for i in 0..21 {
            admit(&mut b, t, 0, &format!("u{i}"));
        }
        assert!(b.is_tripped());
        let off = Limits {
            enabled: false,
            ..limits()
        };
        let delete = request(user("x"), Removal::Account, 1000, "Delete");
        let verdict = b.admit(&off, (t, Timestamp::UNIX_EPOCH), 0, delete);
        assert_eq!(verdict, Verdict::Go);
        assert!(!b.is_tripped());
    }
}
