//! Per-policy rate limiting: a token bucket per policy, sized by the
//! policy's `spec.scim.rateLimit`, kept in this replica's memory.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::api::RateLimit;

/// A policy's limit and the bucket made from it.
type Bucket = (RateLimit, Arc<DefaultDirectRateLimiter>);

/// Buckets by (namespace, policy).
#[derive(Clone, Default)]
pub struct RateLimits {
    buckets: Arc<Mutex<HashMap<(String, String), Bucket>>>,
}

impl RateLimits {
    /// Takes one request from the policy's bucket; `Err` says how long to
    /// wait. A changed limit starts a fresh bucket.
    pub fn check(&self, namespace: &str, policy: &str, limit: &RateLimit) -> Result<(), Duration> {
        let bucket = {
            let mut buckets = self.buckets.lock().expect("rate limit lock");
            let key = (namespace.to_owned(), policy.to_owned());
            match buckets.get(&key) {
                Some((known, bucket)) if known == limit => bucket.clone(),
                _ => {
                    let bucket = Arc::new(RateLimiter::direct(quota(limit)));
                    buckets.insert(key, (limit.clone(), bucket.clone()));
                    bucket
                }
            }
        };
        bucket
            .check()
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

fn quota(limit: &RateLimit) -> Quota {
    let positive = |n: i32| NonZeroU32::new(n.max(1) as u32).expect("at least 1");
    Quota::per_second(positive(limit.requests_per_second)).allow_burst(positive(limit.burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_requests_wait() {
        let limits = RateLimits::default();
        let limit = RateLimit {
            requests_per_second: 1,
            burst: 2,
        };
        assert!(limits.check("ns", "p", &limit).is_ok());
        assert!(limits.check("ns", "p", &limit).is_ok());
        let wait = limits.check("ns", "p", &limit).unwrap_err();
        assert!(wait <= Duration::from_secs(1));
        // Another policy has its own bucket.
        assert!(limits.check("ns", "other", &limit).is_ok());
    }

    #[test]
    fn a_changed_limit_takes_effect() {
        let limits = RateLimits::default();
        let tight = RateLimit {
            requests_per_second: 1,
            burst: 1,
        };
        assert!(limits.check("ns", "p", &tight).is_ok());
        assert!(limits.check("ns", "p", &tight).is_err());
        assert!(limits.check("ns", "p", &RateLimit::default()).is_ok());
    }
}
