//! Bearer tokens: each policy's token Secret, remembered as SHA-256 hashes
//! for [`TTL`] rather than read on every request. RBAC stays get-only on
//! Secrets (no watch of every Secret in the cluster), at a price: a token
//! removed from its Secret keeps working for up to [`TTL`]. A token the
//! cache rejects makes one fresh read of the Secret, so a token just added
//! works at once; those re-reads happen at most once per [`RECHECK`] per
//! Secret, so wrong tokens can't hammer the API server (a new token that
//! arrives right after a wrong one's re-read works within [`RECHECK`]).
//!
//! Only hashes are kept, and nothing here logs a token.
//!
//! Not every value of a Secret is a token: [`screen`] refuses a
//! service-account token Secret outright (its `namespace` and `ca.crt` are
//! public, so anyone who can read the namespace name could authenticate)
//! and ignores values shorter than [`MIN_TOKEN_BYTES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a Secret's tokens are trusted without reading it again: the
/// longest a revoked token keeps working.
pub const TTL: Duration = Duration::from_secs(10);
/// The least time between two re-reads of one Secret for rejected tokens.
pub const RECHECK: Duration = Duration::from_secs(1);

type Hash = [u8; 32];

/// One Secret's tokens as last read.
#[derive(Clone, Debug)]
struct Entry {
    hashes: Vec<Hash>,
    read_at: Instant,
    /// When a rejected token last caused a re-read.
    rechecked_at: Option<Instant>,
}

/// What to do with a presented token.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    Reject,
    /// Read the Secret (again) and decide on what it holds.
    Read,
}

/// Decides from the cache alone; pure, so the TTL and rate limit are tested
/// without an API server.
fn decide(entry: Option<&Entry>, presented: &Hash, now: Instant) -> Verdict {
    let Some(entry) = entry.filter(|e| now.duration_since(e.read_at) < TTL) else {
        return Verdict::Read;
    };
    if matches(&entry.hashes, presented) {
        Verdict::Accept
    } else if entry
        .rechecked_at
        .is_some_and(|at| now.duration_since(at) < RECHECK)
    {
        Verdict::Reject
    } else {
        Verdict::Read
    }
}

/// Compares against every hash in constant time.
fn matches(hashes: &[Hash], presented: &Hash) -> bool {
    let mut matched = subtle::Choice::from(0);
    for hash in hashes {
        matched |= hash.ct_eq(presented);
    }
    matched.into()
}

/// The hashes of a Secret's values; empty values count for nothing.
fn hashes(values: &[Vec<u8>]) -> Vec<Hash> {
    values
        .iter()
        .map(|v| trim_newline(v))
        .filter(|v| !v.is_empty())
        .map(|v| Sha256::digest(v).into())
        .collect()
}

/// Secrets made with `kubectl create secret --from-file` often end in a newline.
fn trim_newline(token: &[u8]) -> &[u8] {
    let mut end = token.len();
    while end > 0 && (token[end - 1] == b'\n' || token[end - 1] == b'\r') {
        end -= 1;
    }
    &token[..end]
}

/// The shortest value accepted as a bearer token, after trimming surrounding
/// whitespace. 20 bytes is at least 80 bits even for a hex token (more for
/// base64), beyond online guessing, and it refuses the short words people
/// type by hand ("changeme", "secret", "test"). Generated tokens are longer
/// (Entra's and Okta's docs use 32+ characters; `openssl rand -hex 16` gives
/// 32), so no real token is refused.
pub const MIN_TOKEN_BYTES: usize = 20;

/// The Secret type whose values Kubernetes fills in itself.
pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";

/// Why a Secret gives no tokens at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The Secret does not exist.
    Missing,
    /// A `kubernetes.io/service-account-token` Secret: never a token source.
    ServiceAccountToken,
}

/// What a token Secret offers: the accepted tokens and, by key, what was
/// left out. Never holds a refused value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Screened {
    /// Accepted tokens, trimmed.
    pub tokens: Vec<Vec<u8>>,
    /// Keys whose value is empty or shorter than [`MIN_TOKEN_BYTES`].
    pub too_short: Vec<String>,
    pub refusal: Option<Refusal>,
}

/// Sorts a Secret's values into tokens and ignored keys. Pure.
pub fn screen(secret: Option<&Secret>) -> Screened {
    let Some(secret) = secret else {
        return Screened {
            refusal: Some(Refusal::Missing),
            ..Default::default()
        };
    };
    if secret.type_.as_deref() == Some(SERVICE_ACCOUNT_TOKEN_TYPE) {
        return Screened {
            refusal: Some(Refusal::ServiceAccountToken),
            ..Default::default()
        };
    }
    let mut screened = Screened::default();
    // BTreeMap: keys in order, so the condition's message is stable.
    for (key, value) in secret.data.iter().flatten() {
        let token = value.0.trim_ascii();
        if token.len() >= MIN_TOKEN_BYTES {
            screened.tokens.push(token.to_vec());
        } else {
            screened.too_short.push(key.clone());
        }
    }
    screened
}

/// Token Secrets by namespace and name, shared by every request.
#[derive(Clone, Default)]
pub struct TokenCache {
    entries: Arc<Mutex<HashMap<(String, String), Entry>>>,
}

impl TokenCache {
    /// Whether `presented` is one of the tokens in Secret `namespace/name`;
    /// `read` fetches the Secret's values when the cache can't decide.
    pub async fn check<E, F, Fut>(
        &self,
        namespace: &str,
        name: &str,
        presented: &[u8],
        read: F,
    ) -> Result<bool, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Vec<u8>>, E>>,
    {
        let presented: Hash = Sha256::digest(presented).into();
        let key = (namespace.to_owned(), name.to_owned());
        let now = Instant::now();
        let recheck = {
            let mut entries = self.entries.lock().expect("not poisoned");
            let entry = entries.get_mut(&key);
            match decide(entry.as_deref(), &presented, now) {
                Verdict::Accept => return Ok(true),
                Verdict::Reject => return Ok(false),
                Verdict::Read => match entry {
                    // A fresh entry that rejected: claim this second's re-read.
                    Some(entry) if now.duration_since(entry.read_at) < TTL => {
                        entry.rechecked_at = Some(now);
                        Some(now)
                    }
                    Some(entry) => entry.rechecked_at,
                    None => None,
                },
            }
        };
        let hashes = hashes(&read().await?);
        let accepted = matches(&hashes, &presented);
        self.entries.lock().expect("not poisoned").insert(
            key,
            Entry {
                hashes,
                read_at: Instant::now(),
                rechecked_at: recheck,
            },
        );
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(token: &str) -> Hash {
        Sha256::digest(token.as_bytes()).into()
    }

    fn entry(tokens: &[&str], read_at: Instant) -> Entry {
        Entry {
            hashes: tokens.iter().map(|t| hash(t)).collect(),
            read_at,
            rechecked_at: None,
        }
    }

    fn secret(type_: Option<&str>, values: &[(&str, &str)]) -> Secret {
        Secret {
            type_: type_.map(str::to_owned),
            data: Some(
                values
                    .iter()
                    .map(|(k, v)| {
                        (
                            (*k).to_owned(),
                            k8s_openapi::ByteString(v.as_bytes().to_vec()),
                        )
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn a_service_account_token_secret_gives_no_token_at_all() {
        let sa = secret(
            Some(SERVICE_ACCOUNT_TOKEN_TYPE),
            &[
                ("namespace", "a-public-namespace-name"),
                ("token", &"x".repeat(900)),
            ],
        );
        let screened = screen(Some(&sa));
        assert_eq!(screened.refusal, Some(Refusal::ServiceAccountToken));
        assert!(screened.tokens.is_empty());
        assert!(
            screen(Some(&secret(Some("Opaque"), &[("t", &"y".repeat(20))])))
                .refusal
                .is_none()
        );
    }

    #[test]
    fn short_and_empty_values_are_named_by_key_and_long_ones_are_tokens() {
        let s = secret(
            None,
            &[
                ("empty", ""),
                ("good", "0123456789abcdef0123\n"),
                ("padded", "   short-but-padded   "),
                ("short", "changeme"),
            ],
        );
        let screened = screen(Some(&s));
        assert_eq!(screened.tokens, vec![b"0123456789abcdef0123".to_vec()]);
        assert_eq!(screened.too_short, ["empty", "padded", "short"]);
        assert_eq!(screened.refusal, None);
        assert_eq!(screen(None).refusal, Some(Refusal::Missing));
    }

    #[test]
    fn nothing_cached_means_read() {
        assert_eq!(decide(None, &hash("a"), Instant::now()), Verdict::Read);
    }

    #[test]
    fn a_fresh_entry_accepts_its_tokens() {
        let now = Instant::now();
        let entry = entry(&["a", "b"], now);
        assert_eq!(decide(Some(&entry), &hash("b"), now), Verdict::Accept);
    }

    #[test]
    fn an_expired_entry_is_read_again_even_for_a_known_token() {
        let then = Instant::now();
        let entry = entry(&["a"], then);
        assert_eq!(decide(Some(&entry), &hash("a"), then + TTL), Verdict::Read);
    }

    #[test]
    fn a_rejected_token_is_rechecked_at_most_once_per_interval() {
        let then = Instant::now();
        let mut entry = entry(&["a"], then);
        assert_eq!(decide(Some(&entry), &hash("x"), then), Verdict::Read);
        entry.rechecked_at = Some(then);
        let soon = then + RECHECK / 2;
        assert_eq!(decide(Some(&entry), &hash("x"), soon), Verdict::Reject);
        assert_eq!(
            decide(Some(&entry), &hash("x"), then + RECHECK),
            Verdict::Read
        );
    }

    #[test]
    fn tokens_match_exactly_and_any_of_several_counts() {
        let stored = hashes(&[b"old-token\n".to_vec(), b"new-token".to_vec()]);
        assert!(matches(&stored, &hash("old-token")));
        assert!(matches(&stored, &hash("new-token")));
        assert!(!matches(&stored, &hash("new-toke")));
        assert!(!matches(&hashes(&[Vec::new()]), &hash("")));
    }

    #[test]
    fn newlines_and_empty_values_are_ignored() {
        let hashes = hashes(&[b"tok\n".to_vec(), b"\r\n".to_vec(), Vec::new()]);
        assert_eq!(hashes, vec![hash("tok")]);
    }

    #[tokio::test]
    async fn a_token_added_to_the_secret_works_at_once_and_bad_ones_read_rarely() {
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        let cache = TokenCache::default();
        let reads = AtomicUsize::new(0);
        let secret = |values: &'static [&'static str]| {
            let reads = &reads;
            move || {
                reads.fetch_add(1, Relaxed);
                let values = values.iter().map(|v| v.as_bytes().to_vec()).collect();
                async move { Ok::<_, ()>(values) }
            }
        };
        let check =
            |token: &'static str, values| cache.check("ns", "s", token.as_bytes(), secret(values));
        assert!(check("old", &["old"]).await.unwrap());
        assert!(check("old", &["old"]).await.unwrap());
        assert_eq!(reads.load(Relaxed), 1);
        // Rotated in: the rejected token makes one re-read, which finds it.
        assert!(check("new", &["old", "new"]).await.unwrap());
        assert_eq!(reads.load(Relaxed), 2);
        // Wrong tokens right after: rejected from the cache, no re-read.
        for _ in 0..3 {
            assert!(!check("bad", &["old", "new"]).await.unwrap());
        }
        assert_eq!(reads.load(Relaxed), 2);
    }
}
