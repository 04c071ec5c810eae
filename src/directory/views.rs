//! Projections: what the watch-fed caches keep of an object, so 100,000
//! Users cost little memory. Each holds the fields decisions read; a
//! reconcile that must act reads the whole object from the API.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use serde::{Deserialize, Deserializer};

use crate::api::{API_VERSION, Account, GROUP, Source, User, VERSION};
use crate::directory::writers::SOURCE_LABEL;

/// A User as the caches keep it: metadata (without annotations and managed
/// fields), the policy and `active` of its spec, and its status with the
/// conditions reduced to digests.
#[derive(Clone, Debug, Deserialize)]
pub struct UserView {
    #[serde(deserialize_with = "trimmed_metadata")]
    pub metadata: ObjectMeta,
    pub spec: UserViewSpec,
    #[serde(default)]
    pub status: Option<UserViewStatus>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserViewSpec {
    pub policy: String,
    #[serde(default)]
    pub active: Option<bool>,
}

impl UserViewSpec {
    /// As [`crate::api::UserSpec::is_active`]: unset means active.
    pub fn is_active(&self) -> bool {
        self.active != Some(false)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserViewStatus {
    #[serde(default)]
    pub source: Option<Source>,
    #[serde(default)]
    pub last_login: Option<Time>,
    #[serde(default)]
    pub account: Option<Account>,
    #[serde(default, deserialize_with = "condition_digests")]
    pub conditions: Vec<ConditionDigest>,
}

/// A condition's type and a digest of what a status write would set
/// (status, reason, message, observed generation): enough to tell whether a
/// write would change it, in a few bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionDigest {
    pub type_: String,
    pub digest: u64,
}

/// The digest of a condition's written fields; the same function digests
/// what the controller decides, so equal digests mean an unchanged condition.
pub fn condition_digest(
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
) -> u64 {
    let mut hasher = DefaultHasher::new();
    (status, reason, message, observed_generation).hash(&mut hasher);
    hasher.finish()
}

fn condition_digests<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ConditionDigest>, D::Error> {
    let conditions = Option::<Vec<Condition>>::deserialize(deserializer)?.unwrap_or_default();
    Ok(conditions
        .into_iter()
        .map(|c| ConditionDigest {
            digest: condition_digest(&c.status, &c.reason, &c.message, c.observed_generation),
            type_: c.type_,
        })
        .collect())
}

/// The metadata fields decisions read; the rest (managed fields above all,
/// the bulk of a watch event) is skipped while parsing, never allocated.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrimmedMetadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    finalizers: Option<Vec<String>>,
}

fn trimmed_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = TrimmedMetadata::deserialize(deserializer)?;
    let labels = m.labels.map(|mut labels| {
        labels.retain(|key, _| key == SOURCE_LABEL);
        labels
    });
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        labels,
        finalizers: m.finalizers,
        ..ObjectMeta::default()
    })
}

impl UserView {
    /// Who wrote the User, from its source label.
    pub fn source(&self) -> Source {
        source_of(&self.metadata)
    }
}

/// Who wrote a User or Group, from its source label.
pub fn source_of(metadata: &ObjectMeta) -> Source {
    match metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SOURCE_LABEL))
        .map(String::as_str)
    {
        Some("scim") => Source::Scim,
        Some("jit") => Source::Jit,
        _ => Source::Manual,
    }
}

impl kube::Resource for UserView {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        <User as kube::Resource>::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        API_VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        <User as kube::Resource>::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_user() -> serde_json::Value {
        json!({
            "apiVersion": API_VERSION,
            "kind": "User",
            "metadata": {
                "name": "u-1", "namespace": "ns", "generation": 3, "uid": "abc",
                "labels": {SOURCE_LABEL: "jit", "team": "x"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "finalizers": ["roster.dev/deprovision"],
                "managedFields": [{"manager": "roster-scim", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {
                "policy": "wiki", "userName": "pat@example.com", "active": false,
                "displayName": "Pat", "emails": [{"value": "pat@example.com"}],
            },
            "status": {
                "source": "Jit",
                "account": {"remoteId": "r-1", "state": "Disabled", "syncedGeneration": 3},
                "conditions": [{
                    "type": "Synced", "status": "True", "reason": "Synced",
                    "message": "the account matches the spec", "observedGeneration": 3,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }],
            },
        })
    }

    #[test]
    fn a_view_keeps_what_decisions_read_and_digests_conditions() {
        let view: UserView = serde_json::from_value(full_user()).unwrap();
        assert_eq!(view.spec.policy, "wiki");
        assert!(!view.spec.is_active());
        assert_eq!(view.source(), Source::Jit);
        assert!(view.metadata.annotations.is_none());
        assert!(view.metadata.managed_fields.is_none());
        assert_eq!(view.metadata.generation, Some(3));
        assert_eq!(view.metadata.finalizers.as_ref().unwrap().len(), 1);
        assert_eq!(view.metadata.labels.as_ref().unwrap().len(), 1);
        let status = view.status.unwrap();
        assert_eq!(status.account.unwrap().remote_id.as_deref(), Some("r-1"));
        assert_eq!(
            status.conditions,
            vec![ConditionDigest {
                type_: "Synced".into(),
                digest: condition_digest("True", "Synced", "the account matches the spec", Some(3)),
            }]
        );
        assert_ne!(
            status.conditions[0].digest,
            condition_digest("True", "Synced", "the account matches the spec", Some(4))
        );
    }

    #[test]
    fn a_user_without_status_or_active_is_active_and_unsynced() {
        let view: UserView = serde_json::from_value(json!({
            "metadata": {"name": "u"},
            "spec": {"policy": "p", "userName": "u@example.com"},
        }))
        .unwrap();
        assert!(view.spec.is_active());
        assert!(view.status.is_none());
        assert_eq!(view.source(), Source::Manual);
    }
}
