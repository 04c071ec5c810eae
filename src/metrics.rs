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
    /// The name of every series the registered metrics can export.
    series: Vec<String>,
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
    pub policy_ready: Family<Policy, Gauge>,
    pub saml_certificate_expiry: Family<Policy, Gauge>,
    pub deprovisioning_pending: Family<Policy, Gauge>,
    pub deprovisioning_oldest: Family<Policy, Gauge>,
    pub scim_last_request: Family<Policy, Gauge>,
}

/// Registers `metric` as `roster_<name>` and notes the names of the series
/// it exports (the exposition leaves out a family until it has a member).
fn register<M>(registry: &mut Registry, series: &mut Vec<String>, name: &str, help: &str, metric: M)
where
    M: prometheus_client::registry::Metric + prometheus_client::encoding::EncodeMetric,
{
    use prometheus_client::metrics::MetricType;
    let full = format!("roster_{name}");
    match metric.metric_type() {
        MetricType::Counter => series.push(format!("{full}_total")),
        MetricType::Histogram => {
            for suffix in ["_bucket", "_sum", "_count"] {
                series.push(format!("{full}{suffix}"));
            }
        }
        _ => series.push(full),
    }
    registry.register(name, help, metric);
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
        let mut series = Vec::new();
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
        let policy_ready = Family::<Policy, Gauge>::default();
        let saml_certificate_expiry = Family::<Policy, Gauge>::default();
        let deprovisioning_pending = Family::<Policy, Gauge>::default();
        let deprovisioning_oldest = Family::<Policy, Gauge>::default();
        let scim_last_request = Family::<Policy, Gauge>::default();
        register(
            &mut registry,
            &mut series,
            "scim_last_request_timestamp_seconds",
            "When this replica last served an authenticated SCIM request of the policy, Unix time",
            scim_last_request.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "policy_ready",
            "1 while the policy's Ready condition is True (exported by the leader)",
            policy_ready.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "saml_certificate_expiry_timestamp_seconds",
            "When the policy's earliest-expiring IdP signing certificate expires, Unix time (exported by the leader)",
            saml_certificate_expiry.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "deprovisioning_pending",
            "Users and Groups being deleted whose account or group is not yet removed from the application (exported by the leader)",
            deprovisioning_pending.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "deprovisioning_oldest_seconds",
            "How long the oldest pending deletion of the policy has waited (exported by the leader)",
            deprovisioning_oldest.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "requests_over_budget",
            "Requests answered 503 because the Kubernetes API did not answer within the request budget",
            over_budget.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "policy_quarantined",
            "1 while the policy's circuit breaker holds deprovisioning for approval",
            quarantined.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "deprovisions",
            "Deprovisioning actions (deactivations, deletions, member removals) admitted or held by the circuit breaker",
            deprovisions.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "scim_requests",
            "SCIM requests by policy, method, resource and status",
            scim_requests.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "scim_request_duration_seconds",
            "SCIM request latency",
            scim_request_seconds.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "saml_logins",
            "SAML logins by outcome",
            saml_logins.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "gate_checks",
            "SSO gate checks by policy and outcome (allowed, or why denied)",
            gate_checks.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "gate_check_duration_seconds",
            "SSO gate check latency",
            gate_check_seconds.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            reconcile_seconds.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "downstream_calls",
            "Calls to applications by connector, operation and outcome",
            downstream_calls.clone(),
        );
        register(
            &mut registry,
            &mut series,
            "leader",
            "1 while this replica holds the Lease and runs the controllers",
            leader.clone(),
        );
        Self {
            registry,
            series,
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
            policy_ready,
            saml_certificate_expiry,
            deprovisioning_pending,
            deprovisioning_oldest,
            scim_last_request,
        }
    }

    /// The name of every series Roster can export, whether or not it has
    /// a value yet.
    pub fn series_names(&self) -> &[String] {
        &self.series
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

    /// The `roster_*` names an alerting rule or dashboard query reads.
    fn referenced_names(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(start) = rest.find("roster_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
        names
    }

    #[test]
    fn the_chart_alerts_and_dashboard_read_only_metrics_roster_exports() {
        let exported: std::collections::BTreeSet<String> = METRICS.series.iter().cloned().collect();
        assert!(exported.contains("roster_leader"), "{exported:?}");
        for (file, text) in [
            (
                "alerts.yaml",
                include_str!("../charts/roster/files/alerts.yaml"),
            ),
            (
                "dashboard.json",
                include_str!("../charts/roster/files/dashboard.json"),
            ),
        ] {
            let referenced = referenced_names(text);
            assert!(!referenced.is_empty(), "{file} reads no metric");
            let unknown: Vec<&String> = referenced.difference(&exported).collect();
            assert!(unknown.is_empty(), "{file} reads {unknown:?}, not exported");
        }
    }
}
