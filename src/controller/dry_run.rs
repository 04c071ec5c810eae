//! The plan of a dry-run policy (`spec.application.dryRun`): what each User
//! and Group would change in the application, as their reconciles find it,
//! summed up for the policy's status. Held in memory by the leader and
//! rebuilt after a restart, since planned objects are never at rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::api::ProvisioningPlan;

use super::breaker::Subject;

/// How many planned changes a policy's status names.
pub const SAMPLE: usize = 10;

/// One planned change: its kind as the status counts it (e.g.
/// `adoptAccount`), how many (members added), and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub kind: &'static str,
    pub count: u64,
    pub text: String,
}

impl Planned {
    pub fn one(kind: &'static str, text: impl Into<String>) -> Self {
        Self {
            kind,
            count: 1,
            text: text.into(),
        }
    }
}

/// One policy's planned changes, by object.
type PolicyPlan = BTreeMap<Subject, Vec<Planned>>;

/// The planned changes of every dry-run policy, by (namespace, policy).
#[derive(Default)]
pub struct Plans(Mutex<HashMap<(String, String), PolicyPlan>>);

impl Plans {
    /// What `subject` of `namespace/policy` would change; nothing forgets it.
    pub fn record(&self, namespace: &str, policy: &str, subject: Subject, planned: Vec<Planned>) {
        let mut plans = self.0.lock().expect("plans lock");
        let key = (namespace.to_owned(), policy.to_owned());
        let of_policy = plans.entry(key).or_default();
        if planned.is_empty() {
            of_policy.remove(&subject);
        } else {
            of_policy.insert(subject, planned);
        }
    }

    /// The policy went live (or is gone): its plan is being carried out.
    pub fn forget_policy(&self, namespace: &str, policy: &str) {
        let mut plans = self.0.lock().expect("plans lock");
        plans.remove(&(namespace.to_owned(), policy.to_owned()));
    }

    /// Counts by kind and the first [`SAMPLE`] changes.
    pub fn summary(&self, namespace: &str, policy: &str) -> ProvisioningPlan {
        let plans = self.0.lock().expect("plans lock");
        let mut summary = ProvisioningPlan::default();
        let Some(of_policy) = plans.get(&(namespace.to_owned(), policy.to_owned())) else {
            return summary;
        };
        for ((kind, name), planned) in of_policy {
            for change in planned {
                *summary.counts.entry(change.kind.to_owned()).or_default() += change.count as i64;
            }
            if summary.sample.len() < SAMPLE {
                let texts: Vec<&str> = planned.iter().map(|p| p.text.as_str()).collect();
                summary
                    .sample
                    .push(format!("{kind} {name}: {}", texts.join("; ")));
            }
        }
        summary
    }
}

/// The full plan of `namespace/policy`, as `roster plan` prints it: the
/// policy's counts, then one line per User and Group with a planned change
/// (read from their Synced conditions).
pub async fn report(
    client: kube::Client,
    namespace: &str,
    policy: &str,
) -> Result<String, kube::Error> {
    use crate::api::{Group, ProvisioningPolicy, User};
    use kube::ResourceExt;
    use kube::api::{Api, ListParams};

    let of_policy = ListParams::default().fields(&format!("spec.policy={policy}"));
    let object: ProvisioningPolicy = Api::namespaced(client.clone(), namespace)
        .get(policy)
        .await?;
    let mut out = String::new();
    if !object.spec.application.dry_run {
        out.push_str(&format!(
            "policy {namespace}/{policy} is live (spec.application.dryRun is false): nothing is only planned\n"
        ));
    }
    let plan = object.status.and_then(|s| s.plan).unwrap_or_default();
    for (kind, count) in &plan.counts {
        out.push_str(&format!("{kind}: {count}\n"));
    }
    let planned = |conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]| {
        conditions
            .iter()
            .find(|c| c.type_ == super::conditions::SYNCED && c.reason == "Planned")
            .map(|c| c.message.trim_start_matches("dry run: ").to_owned())
    };
    let users: Api<User> = Api::namespaced(client.clone(), namespace);
    for user in users.list(&of_policy).await?.items {
        let conditions = user.status.as_ref().map(|s| s.conditions.as_slice());
        if let Some(change) = planned(conditions.unwrap_or_default()) {
            out.push_str(&format!(
                "User {} ({}): {change}\n",
                user.name_any(),
                user.spec.user_name
            ));
        }
    }
    let groups: Api<Group> = Api::namespaced(client, namespace);
    for group in groups.list(&of_policy).await?.items {
        let conditions = group.status.as_ref().map(|s| s.conditions.as_slice());
        if let Some(change) = planned(conditions.unwrap_or_default()) {
            out.push_str(&format!(
                "Group {} ({}): {change}\n",
                group.name_any(),
                group.spec.display_name
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_by_kind_and_names_a_bounded_sample() {
        let plans = Plans::default();
        for i in 0..15 {
            let kind = if i < 12 {
                "adoptAccount"
            } else {
                "createAccount"
            };
            let name = format!("u{i:02}");
            plans.record("ns", "crm", ("User", name), vec![Planned::one(kind, "x")]);
        }
        let members = Planned {
            kind: "addMember",
            count: 30,
            text: "add 30 member(s)".into(),
        };
        let group = Planned::one("createGroup", "create the group");
        plans.record("ns", "crm", ("Group", "eng".into()), vec![group, members]);
        let summary = plans.summary("ns", "crm");
        assert_eq!(summary.counts["adoptAccount"], 12);
        assert_eq!(summary.counts["createAccount"], 3);
        assert_eq!(summary.counts["addMember"], 30);
        assert_eq!(summary.sample.len(), SAMPLE);
        assert_eq!(
            summary.sample[0],
            "Group eng: create the group; add 30 member(s)"
        );
        plans.record("ns", "crm", ("Group", "eng".into()), Vec::new());
        assert!(!plans.summary("ns", "crm").counts.contains_key("addMember"));
        plans.forget_policy("ns", "crm");
        assert_eq!(plans.summary("ns", "crm"), ProvisioningPlan::default());
        assert_eq!(plans.summary("ns", "other"), ProvisioningPlan::default());
    }
}
