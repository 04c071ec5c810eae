//! Talking to the cluster about Roster itself: installing its CRDs and waiting
//! until they are served.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::discovery::Discovery;
use kube::runtime::watcher;

use crate::api;

/// How watch-fed caches get their first full list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum InitialLists {
    /// Stream where the API server's version serves watch-list by default.
    #[default]
    Auto,
    /// Watch-list: one watch that starts with every object, from the API
    /// server's watch cache.
    Stream,
    /// Paginated lists, then a watch.
    Paginate,
}

/// Whether the caches stream their first lists; set once at start.
static STREAMING_LISTS: AtomicBool = AtomicBool::new(false);

/// The first Kubernetes minor version that serves watch-list by default.
const STREAMING_SINCE_MINOR: u32 = 32;

/// Decides, once per process, how caches list. A paginated list of 100,000
/// Users is 200 requests the API server answers from etcd, for each cache
/// that holds them; a streamed one is one watch served from memory.
pub async fn choose_initial_lists(client: &kube::Client, choice: InitialLists) {
    let streaming = match choice {
        InitialLists::Stream => true,
        InitialLists::Paginate => false,
        InitialLists::Auto => match client.apiserver_version().await {
            Ok(info) => serves_watch_list(&info.major, &info.minor),
            Err(error) => {
                tracing::warn!(%error, "could not read the API server's version; caches list in pages");
                false
            }
        },
    };
    tracing::info!(streaming, "initial lists of the caches");
    STREAMING_LISTS.store(streaming, Ordering::Relaxed);
}

/// Whether Kubernetes `major`.`minor` serves watch-list by default
/// (`minor` may carry a `+`, as managed clusters report it).
fn serves_watch_list(major: &str, minor: &str) -> bool {
    let minor: u32 = minor.trim_end_matches('+').parse().unwrap_or(0);
    major == "1" && minor >= STREAMING_SINCE_MINOR
}

/// A watcher configuration with the process's initial-list strategy.
pub fn watch_config() -> watcher::Config {
    let config = watcher::Config::default();
    if STREAMING_LISTS.load(Ordering::Relaxed) {
        config.streaming_lists()
    } else {
        config
    }
}

/// Field manager for CRDs installed by `roster dev` and the test harness.
pub const CRD_MANAGER: &str = "roster-install";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying CRD {name}: {source}")]
    Apply { name: String, source: kube::Error },
    #[error("reading CRD {name}: {source}")]
    Read { name: String, source: kube::Error },
    #[error("CRDs not served within {0:?}: {1}")]
    NotServed(Duration, String),
}

/// Applies the CRDs (server-side apply) and waits until they are served.
pub async fn install_crds(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
    timeout: Duration,
) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(CRD_MANAGER).force();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(|source| Error::Apply { name, source })?;
    }
    wait_until_served(client, crds, timeout).await
}

/// Waits until every CRD is `Established` and discovery lists its kind.
/// Never gives up early on a missing CRD: an operator started before its CRDs
/// should wait for them, not exit.
pub async fn wait_until_served(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
    timeout: Duration,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let missing = unserved(client, crds).await?;
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::NotServed(timeout, missing.join(", ")));
        }
        tracing::debug!(missing = %missing.join(", "), "waiting for CRDs");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Names of the CRDs that are not yet established and discoverable.
async fn unserved(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
) -> Result<Vec<String>, Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut missing = Vec::new();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let stored = api.get_opt(&name).await.map_err(|source| Error::Read {
            name: name.clone(),
            source,
        })?;
        if !stored.as_ref().is_some_and(is_established) {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        return Ok(missing);
    }
    // Established can precede discovery by a moment; clients need discovery.
    let discovery = Discovery::new(client.clone())
        .filter(&[api::GROUP])
        .run()
        .await;
    let Ok(discovery) = discovery else {
        return Ok(vec![format!("discovery of {}", api::GROUP)]);
    };
    for crd in crds {
        let kind = &crd.spec.names.kind;
        let served = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .any(|(resource, _)| &resource.kind == kind);
        if !served {
            missing.push(crd.metadata.name.clone().unwrap_or_default());
        }
    }
    Ok(missing)
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_list_is_streamed_from_kubernetes_1_32() {
        assert!(serves_watch_list("1", "32"));
        assert!(serves_watch_list("1", "35+"));
        assert!(!serves_watch_list("1", "31"));
        assert!(!serves_watch_list("1", "30+"));
        assert!(!serves_watch_list("1", "garbage"));
    }
}
