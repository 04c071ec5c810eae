//! Consumed assertion and request ids, shared by every replica through the
//! API server: consuming is creating a `ConsumedAssertion` whose name is a
//! hash of the id, so the second consumption, on any replica, fails with
//! AlreadyExists. Objects past their `expiresAt` are swept now and then.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{Timestamp, Unit};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use crate::api::{ConsumedAssertion, ConsumedAssertionSpec, ConsumedKind, consumed_name};

/// Label on every ConsumedAssertion: the policy that consumed it.
pub const POLICY_LABEL: &str = "roster.dev/policy";

/// How often one process sweeps one namespace.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the {0:?} id was already used: a replay")]
    Replayed(ConsumedKind),
    #[error("the Kubernetes API failed: {0}")]
    Api(#[from] kube::Error),
}

/// The consumed ids of one namespace.
pub struct Consumed {
    api: Api<ConsumedAssertion>,
    namespace: String,
    policy: String,
}

impl Consumed {
    pub fn new(client: kube::Client, namespace: &str, policy: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
        }
    }

    /// Consumes `id`, issued by `issuer`: fails with `Replayed` if any
    /// replica consumed it before.
    pub async fn consume(
        &self,
        issuer: &str,
        kind: ConsumedKind,
        id: &str,
        expires_at: Timestamp,
    ) -> Result<(), ReplayError> {
        let name = consumed_name(&self.policy, issuer, kind, id);
        let mut object = ConsumedAssertion::new(
            &name,
            ConsumedAssertionSpec {
                policy: self.policy.clone(),
                kind,
                expires_at: expires_at
                    .round(Unit::Second)
                    .unwrap_or(expires_at)
                    .to_string(),
            },
        );
        object.metadata.labels = Some(
            [
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "roster".to_owned(),
                ),
                (POLICY_LABEL.to_owned(), self.policy.clone()),
            ]
            .into(),
        );
        match self.api.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(ReplayError::Replayed(kind)),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes this namespace's expired ids, at most once a minute per
    /// process. Best effort: a failure only leaves objects for the next sweep.
    pub async fn sweep(&self, now: Timestamp) {
        static LAST: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
        {
            let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
            let last = last.get_or_insert_with(HashMap::new);
            if last
                .get(&self.namespace)
                .is_some_and(|at| at.elapsed() < SWEEP_EVERY)
            {
                return;
            }
            last.insert(self.namespace.clone(), Instant::now());
        }
        sweep_expired(&self.api, now).await;
    }
}

/// Deletes the expired ids `api` sees (one namespace, or all); returns how
/// many went. Best effort: a failure only leaves objects for the next sweep.
pub async fn sweep_expired(api: &Api<ConsumedAssertion>, now: Timestamp) -> usize {
    let params = ListParams::default().labels("app.kubernetes.io/managed-by=roster");
    let list = match api.list(&params).await {
        Ok(list) => list,
        Err(error) => {
            tracing::debug!(%error, "could not list ConsumedAssertions to sweep");
            return 0;
        }
    };
    let mut deleted = 0;
    for object in list.items.iter().filter(|o| is_expired(o, now)) {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: object.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = object.name_any();
        let api = match object.namespace() {
            Some(namespace) => Api::namespaced(api.clone().into_client(), &namespace),
            None => api.clone(),
        };
        match api.delete(&name, &params).await {
            Ok(_) => deleted += 1,
            Err(error) => tracing::debug!(%error, "could not delete an expired ConsumedAssertion"),
        }
    }
    deleted
}

/// Whether an id can be forgotten: it would be refused as expired anyway.
pub fn is_expired(object: &ConsumedAssertion, now: Timestamp) -> bool {
    object
        .spec
        .expires_at
        .parse::<Timestamp>()
        .map(|at| at < now)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_expire_after_their_instant() {
        let object = ConsumedAssertion::new(
            "x",
            ConsumedAssertionSpec {
                policy: "crm".into(),
                kind: ConsumedKind::Assertion,
                expires_at: "2026-01-01T00:10:00Z".into(),
            },
        );
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(!is_expired(&object, at("2026-01-01T00:09:59Z")));
        assert!(is_expired(&object, at("2026-01-01T00:10:01Z")));
    }
}
