//! Status conditions by the Kubernetes conventions. Pure functions.
//!
//! `lastTransitionTime` changes only when a condition's status flips, so an
//! unchanged object gets an identical status and the controller does not
//! wake itself up.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::directory::views::{ConditionDigest, condition_digest};

/// Condition types.
pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

/// A condition as a reconcile decides it, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Decided {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The new condition list: `decided` replaces conditions of the same type,
/// keeping `lastTransitionTime` when the status is unchanged; other types
/// are kept as they are.
pub fn merge(
    existing: &[Condition],
    decided: &[Decided],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !decided.iter().any(|d| d.type_ == c.type_))
        .cloned()
        .collect();
    for d in decided {
        let previous = existing.iter().find(|c| c.type_ == d.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == status_str(d.status) => p.last_transition_time.clone(),
            _ => now.clone(),
        };
        out.push(Condition {
            type_: d.type_.to_owned(),
            status: status_str(d.status).to_owned(),
            reason: d.reason.clone(),
            message: d.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// `Ready` summarising the others: True when all are, else the first False one's reason.
/// Whether writing `decided` at `generation` would leave conditions whose
/// digests are `existing` unchanged (what [`merge`] would keep).
pub fn unchanged(
    existing: &[ConditionDigest],
    decided: &[Decided],
    generation: Option<i64>,
) -> bool {
    decided.iter().all(|d| {
        let digest = condition_digest(
            d.type_,
            status_str(d.status),
            &d.reason,
            &d.message,
            generation,
        );
        existing.contains(&digest)
    })
}

pub fn summary(decided: &[Decided]) -> Decided {
    match decided.iter().find(|d| !d.status) {
        Some(failing) => Decided::new(
            READY,
            false,
            failing.reason.clone(),
            failing.message.clone(),
        ),
        None => Decided::new(READY, true, "Ready", "all conditions are met"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_flips() {
        let first = merge(
            &[],
            &[Decided::new(SYNCED, true, "Synced", "ok")],
            Some(1),
            &at(100),
        );
        let same = merge(
            &first,
            &[Decided::new(SYNCED, true, "Synced", "still ok")],
            Some(2),
            &at(200),
        );
        assert_eq!(same[0].last_transition_time, at(100));
        assert_eq!(same[0].observed_generation, Some(2));
        assert_eq!(same[0].message, "still ok");
        let flipped = merge(
            &same,
            &[Decided::new(SYNCED, false, "Unavailable", "down")],
            Some(2),
            &at(300),
        );
        assert_eq!(flipped[0].last_transition_time, at(300));
        assert_eq!(flipped[0].status, "False");
    }

    #[test]
    fn other_condition_types_are_kept() {
        let existing = merge(
            &[],
            &[Decided::new("Other", true, "Fine", "")],
            None,
            &at(1),
        );
        let merged = merge(
            &existing,
            &[Decided::new(SYNCED, true, "Synced", "")],
            None,
            &at(2),
        );
        assert_eq!(merged.len(), 2);
    }

    #[test]
    fn unchanged_compares_the_written_fields_by_digest() {
        let decided = [Decided::new(SYNCED, true, "Synced", "ok")];
        let written = merge(&[], &decided, Some(2), &at(1));
        let digests: Vec<ConditionDigest> = written.iter().map(ConditionDigest::of).collect();
        assert!(unchanged(&digests, &decided, Some(2)));
        assert!(!unchanged(&digests, &decided, Some(3)));
        assert!(!unchanged(
            &digests,
            &[Decided::new(SYNCED, true, "Synced", "changed")],
            Some(2)
        ));
        assert!(!unchanged(
            &digests,
            &[Decided::new(SYNCED, false, "Synced", "ok")],
            Some(2)
        ));
        assert!(!unchanged(&[], &decided, Some(2)));
    }

    #[test]
    fn ready_summarises_the_first_failing_condition() {
        let ready = summary(&[
            Decided::new(SYNCED, true, "Synced", ""),
            Decided::new(
                "Application",
                false,
                "SecretMissing",
                "the Secret x is missing",
            ),
        ]);
        assert!(!ready.status);
        assert_eq!(ready.reason, "SecretMissing");
        assert!(summary(&[Decided::new(SYNCED, true, "Synced", "")]).status);
    }
}
