//! Gauges of what the controllers see, for alerts and the dashboard: each
//! policy's Ready condition, the expiry of its earliest IdP signing
//! certificate, and its deprovisioning that waits (Users and Groups being
//! deleted whose finalizer has not run yet, and for how long).
//!
//! Computed from the caches every [`EVERY`] by the leader only. A former
//! leader must not keep exporting its last values, so every series a
//! publisher set is removed when it stops (its task is dropped with the
//! controllers) or when its policy is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::Context;
use super::policy::earliest_certificate_expiry;
use crate::api::ProvisioningPolicy;
use crate::metrics::{METRICS, Policy};

const EVERY: Duration = Duration::from_secs(15);

/// One policy's gauges.
#[derive(Debug, Default, PartialEq)]
struct PolicyGauges {
    ready: bool,
    certificate_expiry: Option<Timestamp>,
    pending: i64,
    oldest_pending_seconds: i64,
}

/// What the gauges say for `policy` at `now`, given the deletion times of
/// its Users and Groups that are being deleted. Pure.
fn gauges_of(
    policy: &ProvisioningPolicy,
    metadata: Option<&str>,
    deleting_since: &[Timestamp],
    now: Timestamp,
) -> PolicyGauges {
    let ready = policy.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    });
    let oldest = deleting_since.iter().min();
    PolicyGauges {
        ready,
        certificate_expiry: policy
            .spec
            .saml
            .as_ref()
            .and_then(|saml| earliest_certificate_expiry(saml, metadata)),
        pending: deleting_since.len() as i64,
        oldest_pending_seconds: oldest
            .map(|since| now.duration_since(*since).as_secs().max(0))
            .unwrap_or(0),
    }
}

/// Publishes the gauges for the policies `ctx` watches until dropped.
pub async fn publish(ctx: Arc<Context>) {
    ctx.caches_ready().await;
    let mut published = Published::default();
    loop {
        published.refresh(&ctx, Timestamp::now());
        tokio::time::sleep(EVERY).await;
    }
}

/// The series this publisher set, removed when it stops.
#[derive(Default)]
struct Published(BTreeSet<String>);

impl Published {
    fn refresh(&mut self, ctx: &Context, now: Timestamp) {
        let mut deleting: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
        let mut note = |namespace: Option<String>, policy: &str, since: Option<Timestamp>| {
            if let Some(since) = since {
                let key = format!("{}/{policy}", namespace.unwrap_or_default());
                deleting.entry(key).or_default().push(since);
            }
        };
        for user in ctx.users.state() {
            let since = user.metadata.deletion_timestamp.as_ref().map(|t| t.0);
            note(user.namespace(), &user.spec.policy, since);
        }
        for group in ctx.groups.state() {
            let since = group.metadata.deletion_timestamp.as_ref().map(|t| t.0);
            note(group.namespace(), &group.spec.policy, since);
        }
        let mut now_published = BTreeSet::new();
        for policy in ctx.policies.state() {
            let key = format!(
                "{}/{}",
                policy.namespace().unwrap_or_default(),
                policy.name_any()
            );
            let since = deleting.get(&key).map(Vec::as_slice).unwrap_or_default();
            let namespace = policy.namespace().unwrap_or_default();
            let metadata = policy
                .spec
                .saml
                .as_ref()
                .and_then(|saml| ctx.metadata.peek(&namespace, saml));
            let gauges = gauges_of(&policy, metadata.as_deref(), since, now);
            let label = Policy {
                policy: key.clone(),
            };
            METRICS
                .policy_ready
                .get_or_create(&label)
                .set(i64::from(gauges.ready));
            match gauges.certificate_expiry {
                Some(expiry) => {
                    METRICS
                        .saml_certificate_expiry
                        .get_or_create(&label)
                        .set(expiry.as_second());
                }
                None => {
                    METRICS.saml_certificate_expiry.remove(&label);
                }
            }
            METRICS
                .deprovisioning_pending
                .get_or_create(&label)
                .set(gauges.pending);
            METRICS
                .deprovisioning_oldest
                .get_or_create(&label)
                .set(gauges.oldest_pending_seconds);
            now_published.insert(key);
        }
        for gone in self.0.difference(&now_published) {
            remove(gone);
        }
        self.0 = now_published;
    }
}

fn remove(policy: &str) {
    let label = Policy {
        policy: policy.to_owned(),
    };
    METRICS.policy_ready.remove(&label);
    METRICS.saml_certificate_expiry.remove(&label);
    METRICS.deprovisioning_pending.remove(&label);
    METRICS.deprovisioning_oldest.remove(&label);
}

impl Drop for Published {
    fn drop(&mut self) {
        for policy in &self.0 {
            remove(policy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ProvisioningPolicyStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn policy(ready: &str) -> ProvisioningPolicy {
        let mut policy = super::super::bare_policy("crm", crate::api::Mode::Scim);
        policy.status = Some(ProvisioningPolicyStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: "Test".into(),
                message: String::new(),
                last_transition_time: Time(Timestamp::now()),
                observed_generation: None,
            }],
            ..Default::default()
        });
        policy
    }

    #[test]
    fn ready_and_pending_deletions_with_the_oldest_age() {
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let since: Vec<Timestamp> = ["2026-12-02T09:00:00Z", "2026-12-02T09:59:00Z"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        let gauges = gauges_of(&policy("True"), None, &since, now);
        assert!(gauges.ready);
        assert_eq!(gauges.pending, 2);
        assert_eq!(gauges.oldest_pending_seconds, 3600);
        assert_eq!(gauges.certificate_expiry, None, "no SAML");
        let idle = gauges_of(&policy("False"), None, &[], now);
        assert_eq!(
            idle,
            PolicyGauges {
                ready: false,
                ..Default::default()
            }
        );
    }
}
