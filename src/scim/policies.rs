//! ProvisioningPolicies as the SCIM service reads them: from a watch-fed
//! cache every replica keeps (not just the leader), so a request costs no
//! policy GET. A policy the cache doesn't hold yet (created a moment ago,
//! or the cache is still filling) is read from the API, so it works at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::api::ProvisioningPolicy;

/// The policies of the watched namespaces (or of the whole cluster), shared
/// by every request.
#[derive(Clone)]
pub struct PolicyCache {
    /// One cache per watched namespace, or one over all namespaces: a
    /// reflector store holds what one watch lists, so each watch has its own.
    shards: Arc<Vec<Shard>>,
}

struct Shard {
    /// The namespace watched; `None`: all of them.
    namespace: Option<String>,
    store: Store<ProvisioningPolicy>,
    /// Feeds `store`; taken by the first [`PolicyCache::run`].
    writer: std::sync::Mutex<Option<reflector::store::Writer<ProvisioningPolicy>>>,
    synced: Arc<AtomicBool>,
}

impl Default for PolicyCache {
    /// The policies of every namespace.
    fn default() -> Self {
        Self::new(&[])
    }
}

impl PolicyCache {
    /// The policies of `namespaces` (`--watch-namespace`); empty: of every
    /// namespace. A policy outside them is unknown, without asking the API,
    /// which may not let Roster read there.
    pub fn new(namespaces: &[String]) -> Self {
        let mut scopes: Vec<Option<String>> = namespaces.iter().cloned().map(Some).collect();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            scopes.push(None);
        }
        let shards = scopes
            .into_iter()
            .map(|namespace| {
                let (store, writer) = reflector::store();
                Shard {
                    namespace,
                    store,
                    writer: std::sync::Mutex::new(Some(writer)),
                    synced: Arc::default(),
                }
            })
            .collect();
        Self {
            shards: Arc::new(shards),
        }
    }

    /// Whether the cache holds every policy (its first lists are done). A
    /// cache nobody runs never is; it then reads every policy from the API.
    pub fn is_synced(&self) -> bool {
        self.shards
            .iter()
            .all(|shard| shard.synced.load(Ordering::Acquire))
    }

    /// Whether Roster serves `namespace`: it is watched.
    pub fn serves(&self, namespace: &str) -> bool {
        self.shard(namespace).is_some()
    }

    /// Why a policy of `namespace` is unknown, for the log line of a
    /// refused request.
    pub fn why_unknown(&self, namespace: &str) -> &'static str {
        if self.serves(namespace) {
            "no such policy"
        } else {
            "the namespace is not watched (--watch-namespace)"
        }
    }

    fn shard(&self, namespace: &str) -> Option<&Shard> {
        self.shards
            .iter()
            .find(|shard| shard.namespace.as_deref().is_none_or(|n| n == namespace))
    }

    /// The policy `namespace/name`: cached, else read from the API; none in
    /// a namespace Roster doesn't serve.
    pub async fn get(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ProvisioningPolicy>>, kube::Error> {
        let Some(shard) = self.shard(namespace) else {
            return Ok(None);
        };
        if let Some(policy) = shard.store.get(&ObjectRef::new(name).within(namespace)) {
            return Ok(Some(policy));
        }
        let api: Api<ProvisioningPolicy> = Api::namespaced(client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    /// Keeps the cache fed from a watch per watched namespace (or one of
    /// every namespace), managedFields stripped. Runs until dropped.
    pub async fn run(self, client: kube::Client) {
        let watches = self.shards.iter().filter_map(|shard| {
            let writer = shard.writer.lock().expect("not poisoned").take()?;
            let synced = shard.synced.clone();
            let readiness = shard.store.clone();
            tokio::spawn(async move {
                if readiness.wait_until_ready().await.is_ok() {
                    synced.store(true, Ordering::Release);
                }
            });
            let api = match &shard.namespace {
                Some(namespace) => Api::<ProvisioningPolicy>::namespaced(client.clone(), namespace),
                None => Api::<ProvisioningPolicy>::all(client.clone()),
            };
            Some(
                watcher(api, watcher::Config::default().any_semantic())
                    .default_backoff()
                    .modify(|policy| policy.managed_fields_mut().clear())
                    .reflect(writer)
                    .for_each(|event| async move {
                        if let Err(error) = event {
                            tracing::warn!(%error, "policy watch failed; retrying");
                        }
                    }),
            )
        });
        futures::future::join_all(watches).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scoped_cache_serves_only_its_namespaces() {
        let scoped = PolicyCache::new(&["team-b".into(), "team-a".into(), "team-a".into()]);
        assert!(scoped.serves("team-a") && scoped.serves("team-b"));
        assert!(!scoped.serves("team-c"));
        assert_eq!(scoped.shards.len(), 2);
        assert_eq!(
            scoped.why_unknown("team-c"),
            "the namespace is not watched (--watch-namespace)"
        );
        let everywhere = PolicyCache::default();
        assert!(everywhere.serves("team-c"));
        assert_eq!(everywhere.why_unknown("team-c"), "no such policy");
    }
}
