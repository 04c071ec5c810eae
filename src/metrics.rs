//! Prometheus metrics (prometheus-client), served at `/metrics`.
//!
//! One process-wide registry: every layer records into it without the
//! handle being threaded through each call.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScimRequest {
    /// `namespace/policy`.
    pub policy: String,
    pub method: String,
    /// `Users`, `Groups`, `Schemas`, ...
    pub resource: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScimRoute {
    pub policy: String,
    pub method: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SamlLogin {
    pub policy: String,
    /// `success`, or the refusal's category.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GateCheck {
    pub policy: String,
    /// `allowed`, or the denial's reason.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reconcile {
    pub kind: String,
    /// `ok` or the error's reason.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DownstreamCall {
    /// `scim` or `webhook`.
    pub connector: String,
    pub operation: String,
    /// `ok`, `unavailable`, `rate_limited`, `rejected`, `misconfigured`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Policy {
    /// `namespace/policy`.
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Surface {
    /// `scim`, `saml` or `gate`.
    pub surface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Deprovision {
    /// `admitted` or `held` by the circuit breaker.
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    pub scim_requests: Family<ScimRequest, Counter>,
    pub scim_request_seconds: Family<ScimRoute, Histogram>,
    pub saml_logins: Family<SamlLogin, Counter>,
    pub gate_checks: Family<GateCheck, Counter>,
    pub gate_check_seconds: Histogram,
    pub reconciles: Family<Reconcile, Counter>,
    pub reconcile_seconds: Family<Kind, Histogram>,
    pub downstream_calls: Family<DownstreamCall, Counter>,
    pub leader: Gauge,
    pub quarantined: Family<Policy, Gauge>,
    pub deprovisions: Family<Deprovision, Counter>,
    pub over_budget: Family<Surface, Counter>,
}

fn latency() -> Histogram {
    // 1 ms to ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn fast_latency() -> Histogram {
    // 50 µs to ~0.8 s: a gate check answers from memory.
    Histogram::new(exponential_buckets(0.00005, 2.0, 15))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("roster");
        let scim_requests = Family::<ScimRequest, Counter>::default();
        let scim_request_seconds =
            Family::<ScimRoute, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let saml_logins = Family::<SamlLogin, Counter>::default();
        let gate_checks = Family::<GateCheck, Counter>::default();
        let gate_check_seconds = fast_latency();
        let reconciles = Family::<Reconcile, Counter>::default();
        let reconcile_seconds =
            Family::<Kind, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        let downstream_calls = Family::<DownstreamCall, Counter>::default();
        let leader = Gauge::default();
        let quarantined = Family::<Policy, Gauge>::default();
        let deprovisions = Family::<Deprovision, Counter>::default();
        let over_budget = Family::<Surface, Counter>::default();
        registry.register(
            "requests_over_budget",
            "Requests answered 503 because the Kubernetes API did not answer within the request budget",
            over_budget.clone(),
        );
        registry.register(
            "policy_quarantined",
            "1 while the policy's circuit breaker holds deprovisioning for approval",
            quarantined.clone(),
        );
        registry.register(
            "deprovisions",
            "Deprovisioning actions (deactivations, deletions, member removals) admitted or held by the circuit breaker",
            deprovisions.clone(),
        );
        registry.register(
            "scim_requests",
            "SCIM requests by policy, method, resource and status",
            scim_requests.clone(),
        );
        registry.register(
            "scim_request_duration_seconds",
            "SCIM request latency",
            scim_request_seconds.clone(),
        );
        registry.register("saml_logins", "SAML logins by outcome", saml_logins.clone());
        registry.register(
            "gate_checks",
            "SSO gate checks by policy and outcome (allowed, or why denied)",
            gate_checks.clone(),
        );
        registry.register(
            "gate_check_duration_seconds",
            "SSO gate check latency",
            gate_check_seconds.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            reconcile_seconds.clone(),
        );
        registry.register(
            "downstream_calls",
            "Calls to applications by connector, operation and outcome",
            downstream_calls.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease and runs the controllers",
            leader.clone(),
        );
        Self {
            registry,
            scim_requests,
            scim_request_seconds,
            saml_logins,
            gate_checks,
            gate_check_seconds,
            reconciles,
            reconcile_seconds,
            downstream_calls,
            leader,
            quarantined,
            deprovisions,
            over_budget,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// An object whose cached view showed nothing to do, so it was not
    /// reconciled (`result="at_rest"`).
    pub fn at_rest(&self, kind: &str) {
        self.reconciles
            .get_or_create(&Reconcile {
                kind: kind.to_owned(),
                result: "at_rest".to_owned(),
            })
            .inc();
    }

    pub fn deprovision(&self, admitted: bool) {
        let outcome = if admitted { "admitted" } else { "held" };
        self.deprovisions
            .get_or_create(&Deprovision {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn quarantined(&self, namespace: &str, policy: &str, quarantined: bool) {
        self.quarantined
            .get_or_create(&Policy {
                policy: format!("{namespace}/{policy}"),
            })
            .set(i64::from(quarantined));
    }

    pub fn reconciled(&self, kind: &str, result: &str, took: Duration) {
        self.reconciles
            .get_or_create(&Reconcile {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&Kind {
                kind: kind.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_appear_in_the_exposition() {
        METRICS.reconciled("User", "ok", Duration::from_millis(3));
        let text = METRICS.encode();
        assert!(
            text.contains("roster_reconciles_total{kind=\"User\",result=\"ok\"}"),
            "{text}"
        );
        assert!(text.contains("roster_reconcile_duration_seconds_bucket"));
    }
}
