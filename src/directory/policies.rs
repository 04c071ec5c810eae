//! ProvisioningPolicies as the SCIM service reads them: from the watch-fed
//! cache every replica keeps (`directory::caches`, the one the controllers
//! read when the replica leads), so a request costs no
//! policy GET. Once the cache has synced, a policy it doesn't hold doesn't
//! exist (the watch delivers a new one within moments): an unknown name
//! costs no call, however many random names a client sends. Before that,
//! a miss is read from the API and a "not found" is remembered briefly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::Api;
use kube::runtime::reflector::ObjectRef;

use crate::api::ProvisioningPolicy;
use crate::directory::caches::{Cache, ScopeCaches, scopes};
use crate::names::{is_dns1123_label, is_dns1123_subdomain};

/// How long an unsynced cache trusts a "not found" from the API.
const ABSENT_TTL: Duration = Duration::from_secs(5);
/// How many "not found" answers it keeps, so random names can't grow it.
const ABSENT_CAPACITY: usize = 1024;

/// The policies of the watched namespaces (or of the whole cluster), shared
/// by every request.
#[derive(Clone)]
pub struct PolicyCache {
    /// One cache per watched namespace, or one over all namespaces.
    shards: Arc<Vec<Shard>>,
    /// Names the API said don't exist, while the cache isn't synced.
    absent: Arc<std::sync::Mutex<Absent>>,
}

struct Shard {
    /// The namespace watched; `None`: all of them.
    namespace: Option<String>,
    /// The process's policy cache of that scope (`directory::caches`);
    /// `None`: not fed, every policy is read from the API.
    cache: Option<Cache<ProvisioningPolicy>>,
}

impl Default for PolicyCache {
    /// The policies of every namespace, read from the API.
    fn default() -> Self {
        Self::new(&[])
    }
}

impl PolicyCache {
    /// The policies of `namespaces` (`--watch-namespace`); empty: of every
    /// namespace. A policy outside them is unknown, without asking the API,
    /// which may not let Roster read there. Not fed by a watch: every
    /// policy is read from the API ([`PolicyCache::over`] is).
    pub fn new(namespaces: &[String]) -> Self {
        Self::of_shards(
            scopes(namespaces)
                .into_iter()
                .map(|namespace| Shard {
                    namespace,
                    cache: None,
                })
                .collect(),
        )
    }

    /// The policies of the process's caches (`directory::caches`).
    pub fn over(caches: &[ScopeCaches]) -> Self {
        Self::of_shards(
            caches
                .iter()
                .map(|caches| Shard {
                    namespace: caches.scope.clone(),
                    cache: Some(caches.policies.clone()),
                })
                .collect(),
        )
    }

    fn of_shards(shards: Vec<Shard>) -> Self {
        Self {
            shards: Arc::new(shards),
            absent: Arc::new(std::sync::Mutex::new(Absent::new(
                ABSENT_TTL,
                ABSENT_CAPACITY,
            ))),
        }
    }

    /// Whether the cache holds every policy (its first lists are done). A
    /// cache no watch feeds never is; it then reads every policy from the API.
    pub fn is_synced(&self) -> bool {
        self.shards.iter().all(Shard::is_synced)
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

    /// The policy `namespace/name`: cached; else none when the names can't
    /// name a policy, Roster doesn't serve the namespace, the cache is
    /// synced, or the API said so a moment ago; else read from the API.
    pub async fn get(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ProvisioningPolicy>>, kube::Error> {
        if !is_policy_ref(namespace, name) {
            return Ok(None);
        }
        let Some(shard) = self.shard(namespace) else {
            return Ok(None);
        };
        let cached = shard
            .cache
            .as_ref()
            .and_then(|cache| cache.store().get(&ObjectRef::new(name).within(namespace)));
        if let Some(policy) = cached {
            return Ok(Some(policy));
        }
        let key = (namespace.to_owned(), name.to_owned());
        if shard.is_synced() || self.absent().holds(&key, Instant::now()) {
            return Ok(None);
        }
        let api: Api<ProvisioningPolicy> = Api::namespaced(client.clone(), namespace);
        let found = api.get_opt(name).await?;
        if found.is_none() {
            self.absent().insert(key, Instant::now());
        }
        Ok(found.map(Arc::new))
    }

    fn absent(&self) -> std::sync::MutexGuard<'_, Absent> {
        self.absent.lock().expect("not poisoned")
    }
}

impl Shard {
    fn is_synced(&self) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|cache| *cache.listed().borrow())
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

/// Whether `namespace` and `name` can name a policy at all (DNS-1123).
pub fn is_policy_ref(namespace: &str, name: &str) -> bool {
    is_dns1123_label(namespace) && is_dns1123_subdomain(name)
}

/// "Not found" answers, each trusted for `ttl`; at most `capacity` of them
/// (the oldest goes first), so a flood of random names costs bounded memory.
struct Absent {
    ttl: Duration,
    capacity: usize,
    since: HashMap<(String, String), Instant>,
}

impl Absent {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            since: HashMap::new(),
        }
    }

    fn holds(&self, key: &(String, String), now: Instant) -> bool {
        self.since
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < self.ttl)
    }

    fn insert(&mut self, key: (String, String), now: Instant) {
        if self.since.len() >= self.capacity && !self.since.contains_key(&key) {
            let ttl = self.ttl;
            self.since.retain(|_, at| now.duration_since(*at) < ttl);
            if self.since.len() >= self.capacity {
                let oldest = self
                    .since
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.since.remove(&oldest);
                }
            }
        }
        self.since.insert(key, now);
    }
}

#[cfg(test)]
mod absent_tests {
    use super::*;

    fn key(name: &str) -> (String, String) {
        ("team-a".to_owned(), name.to_owned())
    }

    #[test]
    fn a_not_found_is_trusted_for_its_ttl_only() {
        let start = Instant::now();
        let mut absent = Absent::new(Duration::from_secs(5), 8);
        absent.insert(key("gone"), start);
        assert!(absent.holds(&key("gone"), start + Duration::from_secs(4)));
        assert!(!absent.holds(&key("gone"), start + Duration::from_secs(5)));
        assert!(!absent.holds(&key("other"), start));
    }

    #[test]
    fn random_names_never_hold_more_than_the_capacity() {
        let start = Instant::now();
        let mut absent = Absent::new(Duration::from_secs(5), 8);
        for i in 0..1000 {
            absent.insert(
                key(&format!("random-{i}")),
                start + Duration::from_millis(i),
            );
        }
        assert_eq!(absent.since.len(), 8);
        // The newest stay, the oldest went.
        let now = start + Duration::from_millis(1000);
        assert!(absent.holds(&key("random-999"), now));
        assert!(!absent.holds(&key("random-0"), now));
    }

    #[test]
    fn expired_answers_make_room_before_live_ones_are_evicted() {
        let start = Instant::now();
        let mut absent = Absent::new(Duration::from_secs(5), 2);
        absent.insert(key("old"), start);
        absent.insert(key("live"), start + Duration::from_secs(4));
        absent.insert(key("new"), start + Duration::from_secs(6));
        let now = start + Duration::from_secs(6);
        assert!(absent.holds(&key("live"), now));
        assert!(absent.holds(&key("new"), now));
    }

    #[test]
    fn only_dns_names_can_name_a_policy() {
        assert!(is_policy_ref("team-a", "wiki"));
        assert!(is_policy_ref("team-a", "wiki.internal"));
        for (namespace, name) in [
            ("team/a", "wiki"),
            ("team-a", "wiki/../x"),
            ("team-a", "wiki?watch=true"),
            ("Team-A", "wiki"),
            ("team.a", "wiki"),
            ("", "wiki"),
            ("team-a", ""),
        ] {
            assert!(!is_policy_ref(namespace, name), "{namespace}/{name}");
        }
    }
}
