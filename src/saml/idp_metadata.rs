//! Where a policy's IdP metadata comes from: inline in the policy, a URL the
//! IdP publishes it at, or a ConfigMap. Fetched copies are kept and read
//! again after the refresh interval, so a signing key rollover at the IdP
//! reaches every replica without an edit; while a source fails, the last
//! good copy keeps serving logins.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::api::SamlTrust;

/// The largest metadata accepted (the inline field's limit too).
pub const MAX_METADATA_BYTES: usize = 256 * 1024;
/// How long one fetch of a URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a ConfigMap's copy is used before it is read again, at most.
const CONFIG_MAP_TTL: Duration = Duration::from_secs(30);
/// How soon a failed source is tried again while its last copy serves.
const RETRY_FAILED: Duration = Duration::from_secs(60);

/// Why a policy's metadata could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("fetching the IdP metadata from {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("reading the IdP metadata from ConfigMap {name} key {key}: {reason}")]
    ConfigMap {
        name: String,
        key: String,
        reason: String,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Source {
    Url(String),
    ConfigMap {
        namespace: String,
        name: String,
        key: String,
    },
}

struct Copy {
    xml: Arc<str>,
    /// When the source is read again.
    next_read: Instant,
}

/// The metadata sources of every policy, with their last copies. Cheap to
/// clone; clones share the copies.
#[derive(Clone)]
pub struct MetadataSources {
    http: reqwest::Client,
    refresh: Duration,
    copies: Arc<Mutex<HashMap<Source, Copy>>>,
}

impl MetadataSources {
    /// Sources read again every `refresh`; URLs' certificates verified
    /// against the public roots and, if given, the PEM bundle at
    /// `extra_roots` (a cluster-private CA).
    pub fn new(refresh: Duration, extra_roots: Option<&Path>) -> anyhow::Result<Self> {
        // Never from https to http, and not endlessly.
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.url().scheme() != "https" {
                attempt.error("redirected away from https")
            } else if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else {
                attempt.follow()
            }
        });
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(redirects)
            .https_only(true)
            .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = extra_roots {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Self {
            http: builder.build()?,
            refresh,
            copies: Default::default(),
        })
    }

    /// The metadata XML `saml` (of a policy in `namespace`) names: inline,
    /// or read from its source when the copy is due. `None`: no metadata.
    pub async fn get(
        &self,
        client: &kube::Client,
        namespace: &str,
        saml: &SamlTrust,
    ) -> Result<Option<Arc<str>>, MetadataError> {
        if let Some(inline) = &saml.idp_metadata {
            return Ok(Some(Arc::from(inline.as_str())));
        }
        let Some(source) = source_of(namespace, saml) else {
            return Ok(None);
        };
        let now = Instant::now();
        let last = {
            let copies = self.copies.lock().expect("not poisoned");
            copies
                .get(&source)
                .map(|copy| (copy.xml.clone(), copy.next_read))
        };
        if let Some((xml, next_read)) = &last {
            if now < *next_read {
                return Ok(Some(xml.clone()));
            }
        }
        let read = match &source {
            Source::Url(url) => self.fetch(url).await,
            Source::ConfigMap {
                namespace,
                name,
                key,
            } => read_config_map(client, namespace, name, key).await,
        };
        let ttl = match &source {
            Source::Url(_) => self.refresh,
            Source::ConfigMap { .. } => self.refresh.min(CONFIG_MAP_TTL),
        };
        match read {
            Ok(xml) => {
                let xml: Arc<str> = Arc::from(xml);
                self.keep(source, xml.clone(), now + ttl);
                Ok(Some(xml))
            }
            Err(error) => match last {
                Some((xml, _)) => {
                    tracing::warn!(%error, "IdP metadata source failing: logins use the last copy");
                    self.keep(source, xml.clone(), now + RETRY_FAILED.min(ttl));
                    Ok(Some(xml))
                }
                None => Err(error),
            },
        }
    }

    /// How often a URL is read again.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// Whether `saml`'s metadata is read from a URL or a ConfigMap.
    pub fn has_source(saml: &SamlTrust) -> bool {
        source_of("", saml).is_some()
    }

    /// What is known of `saml`'s metadata without reading a source: inline,
    /// or the last copy read.
    pub fn peek(&self, namespace: &str, saml: &SamlTrust) -> Option<Arc<str>> {
        if let Some(inline) = &saml.idp_metadata {
            return Some(Arc::from(inline.as_str()));
        }
        let source = source_of(namespace, saml)?;
        let copies = self.copies.lock().expect("not poisoned");
        copies.get(&source).map(|copy| copy.xml.clone())
    }

    fn keep(&self, source: Source, xml: Arc<str>, next_read: Instant) {
        let mut copies = self.copies.lock().expect("not poisoned");
        copies.insert(source, Copy { xml, next_read });
    }

    async fn fetch(&self, url: &str) -> Result<String, MetadataError> {
        let failed = |reason: String| MetadataError::Url {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| failed(describe(e)))?;
        if response
            .content_length()
            .is_some_and(|length| length > MAX_METADATA_BYTES as u64)
        {
            return Err(failed(format!("larger than {MAX_METADATA_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(describe(e)))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_METADATA_BYTES {
                return Err(failed(format!("larger than {MAX_METADATA_BYTES} bytes")));
            }
        }
        String::from_utf8(body).map_err(|_| failed("not UTF-8".into()))
    }
}

/// A failed fetch in words: the error and its causes (a TLS failure says
/// why the certificate was refused), without the URL, which the caller names.
fn describe(error: reqwest::Error) -> String {
    crate::connectors::describe_reqwest_error(error, FETCH_TIMEOUT)
}

impl std::fmt::Debug for MetadataSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataSources")
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl Default for MetadataSources {
    /// An hour's refresh, the public roots.
    fn default() -> Self {
        Self::new(Duration::from_secs(3600), None)
            .expect("an HTTP client without extra roots builds")
    }
}

fn source_of(namespace: &str, saml: &SamlTrust) -> Option<Source> {
    if let Some(url) = &saml.idp_metadata_url {
        return Some(Source::Url(url.clone()));
    }
    saml.idp_metadata_config_map_ref
        .as_ref()
        .map(|reference| Source::ConfigMap {
            namespace: namespace.to_owned(),
            name: reference.name.clone(),
            key: reference.key.clone(),
        })
}

async fn read_config_map(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, MetadataError> {
    let failed = |reason: String| MetadataError::ConfigMap {
        name: name.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let map = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| failed(e.to_string()))?
        .ok_or_else(|| failed("no such ConfigMap".into()))?;
    let xml = map
        .data
        .and_then(|mut data| data.remove(key))
        .ok_or_else(|| failed("no such key".into()))?;
    if xml.len() > MAX_METADATA_BYTES {
        return Err(failed(format!("larger than {MAX_METADATA_BYTES} bytes")));
    }
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saml() -> SamlTrust {
        serde_json::from_value(serde_json::json!({})).unwrap()
    }

    #[test]
    fn inline_metadata_needs_no_source_and_the_url_wins_over_the_config_map() {
        let sources = MetadataSources::new(Duration::from_secs(60), None).unwrap();
        let mut inline = saml();
        inline.idp_metadata = Some("<md/>".into());
        assert_eq!(sources.peek("ns", &inline).as_deref(), Some("<md/>"));
        assert_eq!(source_of("ns", &inline), None);
        let mut both = saml();
        both.idp_metadata_url = Some("https://idp.example.com/md".into());
        both.idp_metadata_config_map_ref = Some(crate::api::ConfigMapKeyRef {
            name: "idp".into(),
            key: "metadata.xml".into(),
        });
        assert_eq!(
            source_of("ns", &both),
            Some(Source::Url("https://idp.example.com/md".into()))
        );
        assert_eq!(sources.peek("ns", &both), None, "nothing read yet");
    }
}
