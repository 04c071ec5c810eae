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

/// The policies of the cluster, shared by every request.
#[derive(Clone)]
pub struct PolicyCache {
    store: Store<ProvisioningPolicy>,
    /// Feeds `store`; taken by the first [`PolicyCache::run`].
    writer: Arc<std::sync::Mutex<Option<reflector::store::Writer<ProvisioningPolicy>>>>,
    synced: Arc<AtomicBool>,
}

impl Default for PolicyCache {
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer: Arc::new(std::sync::Mutex::new(Some(writer))),
            synced: Arc::default(),
        }
    }
}

impl PolicyCache {
    /// Whether the cache holds every policy (its first list is done). A
    /// cache nobody runs never is; it then reads every policy from the API.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The policy `namespace/name`: cached, else read from the API.
    pub async fn get(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ProvisioningPolicy>>, kube::Error> {
        if let Some(policy) = self.store.get(&ObjectRef::new(name).within(namespace)) {
            return Ok(Some(policy));
        }
        let api: Api<ProvisioningPolicy> = Api::namespaced(client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    /// Keeps the cache fed from a watch of every namespace's policies,
    /// managedFields stripped. Runs until dropped.
    pub async fn run(self, client: kube::Client) {
        let Some(writer) = self.writer.lock().expect("not poisoned").take() else {
            return; // already running
        };
        let synced = self.synced.clone();
        let readiness = self.store.clone();
        tokio::spawn(async move {
            if readiness.wait_until_ready().await.is_ok() {
                synced.store(true, Ordering::Release);
            }
        });
        watcher(
            Api::<ProvisioningPolicy>::all(client),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff()
        .modify(|policy| policy.managed_fields_mut().clear())
        .reflect(writer)
        .for_each(|event| async move {
            if let Err(error) = event {
                tracing::warn!(%error, "policy watch failed; retrying");
            }
        })
        .await;
    }
}
