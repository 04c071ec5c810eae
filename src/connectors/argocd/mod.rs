//! The Argo CD RBAC connector: one key of Argo CD's RBAC ConfigMap
//! (`policy.roster.csv` in `argocd-rbac-cm` by default), which Argo CD
//! appends to `policy.csv`. Roster writes only that key, by server-side
//! apply with its own field manager; the other keys keep their owners.
//!
//! A line per member (`g,"<userName>",role:x`) rather than a line per IdP
//! group: group claims in a token only change at the next login, while a
//! deactivation here removes the line at Argo CD's next ConfigMap reload.
//!
//! Calls arriving while a write is under way are applied together in the
//! next one (one read and at most one write per batch), so an initial sync
//! of many users costs a few writes, not one per user. The queue is shared
//! by every connector built for the same key (one is built again whenever
//! its policy changes), and each write carries the resourceVersion it read:
//! a write that raced another (a second replica while leadership moves) is
//! refused by the API server and done again on what is there now.

pub mod model;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::sync::oneshot;

use self::model::{Change, Record, Refusal};
use crate::directory::writers::ARGOCD_MANAGER;

use super::{Connector, ConnectorError, DesiredGroup, DesiredUser, RemoteAccount, Result};

/// A ConfigMap holds at most 1 MiB; leave room for the other keys.
const MAX_VALUE: usize = 768 * 1024;

/// Changes waiting for the next write, each with whoever waits for it.
type Pending = Vec<(Change, oneshot::Sender<Result<()>>)>;

/// How often a write that lost a race is done again, after a short
/// random pause, before the callers get a transient error (and retry).
const ATTEMPTS: usize = 8;

/// The writes to one key: its pending changes, and the lock held by the
/// call writing a batch.
#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    writer: tokio::sync::Mutex<()>,
}

/// (namespace, ConfigMap, key) -> its queue.
type Queues = BTreeMap<(String, String, String), Arc<Queue>>;

/// One queue per (namespace, ConfigMap, key) in this process.
fn queue_for(namespace: &str, config_map: &str, key: &str) -> Arc<Queue> {
    static QUEUES: std::sync::LazyLock<Mutex<Queues>> = std::sync::LazyLock::new(Mutex::default);
    QUEUES
        .lock()
        .expect("queues lock")
        .entry((namespace.to_owned(), config_map.to_owned(), key.to_owned()))
        .or_default()
        .clone()
}

#[derive(Clone)]
pub struct ArgoCdRbacConnector {
    config_maps: Api<ConfigMap>,
    namespace: String,
    config_map: String,
    key: String,
    /// Group displayName -> Argo CD roles.
    roles: Arc<BTreeMap<String, Vec<String>>>,
    /// The comment heading the key: which policy keeps it.
    header: Arc<str>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for ArgoCdRbacConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgoCdRbacConnector")
            .field(
                "config_map",
                &format!("{}/{}", self.namespace, self.config_map),
            )
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Another write changed the ConfigMap between our read and our write.
struct Raced;

/// What one write attempt did: see [`ArgoCdRbacConnector::attempt`].
type Attempt = std::result::Result<(Result<()>, Vec<Option<ConnectorError>>), Raced>;

fn refused(refusal: Refusal) -> ConnectorError {
    let status = match refusal {
        Refusal::NotFound(..) => 404,
        Refusal::InvalidValue(..) => 400,
        Refusal::Full(..) => 413,
    };
    ConnectorError::Rejected {
        status,
        detail: refusal.to_string(),
    }
}

impl ArgoCdRbacConnector {
    /// For the policy `owner` (`namespace/name`), which names the key.
    pub fn new(
        client: kube::Client,
        settings: &crate::api::ArgoCdRbacConnector,
        owner: &str,
    ) -> Self {
        let roles = settings
            .group_roles
            .iter()
            .map(|entry| (entry.group.clone(), entry.roles.clone()))
            .collect();
        Self {
            config_maps: Api::namespaced(client, &settings.namespace),
            namespace: settings.namespace.clone(),
            config_map: settings.config_map.clone(),
            key: settings.key.clone(),
            roles: Arc::new(roles),
            header: format!(
                "Managed by Roster for ProvisioningPolicy {owner}: edits are overwritten.\n\
                 The #roster lines record what Roster provisioned; the g lines follow from them."
            )
            .into(),
            queue: queue_for(&settings.namespace, &settings.config_map, &settings.key),
        }
    }

    fn kube_error(&self, error: kube::Error, doing: &str) -> ConnectorError {
        let target = format!("{}/{}", self.namespace, self.config_map);
        match error {
            kube::Error::Api(status) if status.code == 404 => ConnectorError::Unavailable(format!(
                "ConfigMap {target} not found (is Argo CD installed there?)"
            )),
            kube::Error::Api(status) if status.code == 403 => ConnectorError::Rejected {
                status: 403,
                detail: format!(
                    "Roster may not {doing} ConfigMap {target}: list it in the chart's \
                     argocdRbac.configMaps"
                ),
            },
            kube::Error::Api(status) if status.code == 429 || status.code >= 500 => {
                ConnectorError::Unavailable(format!("{doing} {target}: {}", status.message))
            }
            kube::Error::Api(status) => ConnectorError::Rejected {
                status: status.code,
                detail: format!("{doing} {target}: {}", status.message),
            },
            other => ConnectorError::Unavailable(format!("{doing} {target}: {other}")),
        }
    }

    /// The key's current value ("" when absent) and the ConfigMap's
    /// resourceVersion.
    async fn read(&self) -> Result<(String, Option<String>)> {
        let config_map = self
            .config_maps
            .get(&self.config_map)
            .await
            .map_err(|e| self.kube_error(e, "read"))?;
        let version = config_map.metadata.resource_version;
        let value = config_map
            .data
            .and_then(|mut data| data.remove(&self.key))
            .unwrap_or_default();
        Ok((value, version))
    }

    /// What Roster recorded as provisioned.
    async fn record(&self) -> Result<Record> {
        Ok(Record::parse(&self.read().await?.0))
    }

    /// Applies `change` with whatever else is pending, in one write.
    async fn change(&self, change: Change) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.queue
            .pending
            .lock()
            .expect("pending lock")
            .push((change, done));
        {
            let _writing = self.queue.writer.lock().await;
            let batch = std::mem::take(&mut *self.queue.pending.lock().expect("pending lock"));
            if !batch.is_empty() {
                self.write(batch).await;
            }
        }
        result.await.unwrap_or_else(|_| {
            Err(ConnectorError::Unavailable(
                "the Argo CD RBAC write was abandoned".into(),
            ))
        })
    }

    /// Reads the key, applies each change (a refused one is answered and
    /// left out), renders, and writes if the value differs: a hand edit of
    /// the lines is repaired here too. A write that lost a race to another
    /// writer is done again on what that one left.
    async fn write(&self, batch: Pending) {
        let (changes, waiting): (Vec<Change>, Vec<_>) = batch.into_iter().unzip();
        for _ in 0..ATTEMPTS {
            let Ok((result, refusals)) = self.attempt(&changes).await else {
                let pause = rand::random_range(5..50);
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                continue;
            };
            for (done, refusal) in waiting.into_iter().zip(refusals) {
                let _ = done.send(match refusal {
                    Some(refusal) => Err(refusal),
                    None => result.clone(),
                });
            }
            return;
        }
        for done in waiting {
            let _ = done.send(Err(ConnectorError::Unavailable(format!(
                "{}/{} changed under each of {ATTEMPTS} writes",
                self.namespace, self.config_map
            ))));
        }
    }

    /// One read-apply-write: its result, and per change its refusal if
    /// the record refused it.
    async fn attempt(&self, changes: &[Change]) -> Attempt {
        let (current, version) = match self.read().await {
            Ok(read) => read,
            Err(error) => return Ok((Err(error), vec![None; changes.len()])),
        };
        let fitted = model::fit(
            &Record::parse(&current),
            changes,
            &self.header,
            &self.roles,
            MAX_VALUE,
        );
        let refusals = fitted
            .refusals
            .into_iter()
            .map(|r| r.map(refused))
            .collect();
        let result = match fitted.value {
            Err(refusal) => Err(refused(refusal)),
            Ok(value) if value == current => Ok(()),
            Ok(value) => self.apply(value, version).await?,
        };
        Ok((result, refusals))
    }

    /// Writes the key, and only it, by server-side apply, if the ConfigMap
    /// is still at `version`. Forced: the key is Roster's, and a hand edit
    /// (which takes ownership) is undone.
    async fn apply(
        &self,
        value: String,
        version: Option<String>,
    ) -> std::result::Result<Result<()>, Raced> {
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.config_map,
                "namespace": self.namespace,
                "resourceVersion": version,
            },
            "data": {self.key.as_str(): value},
        });
        match self
            .config_maps
            .patch(
                &self.config_map,
                &PatchParams::apply(ARGOCD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
        {
            Ok(_) => Ok(Ok(())),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(Raced),
            Err(error) => Ok(Err(self.kube_error(error, "patch"))),
        }
    }
}

impl Connector for ArgoCdRbacConnector {
    async fn find_user(&self, user_name: &str) -> Result<Option<RemoteAccount>> {
        let record = self.record().await?;
        Ok(record
            .user_named(user_name)
            .map(|(id, account)| RemoteAccount {
                id: id.to_owned(),
                active: Some(account.active),
            }))
    }

    async fn create_user(&self, user: &DesiredUser) -> Result<String> {
        self.update_user(&user.id, user).await?;
        Ok(user.id.clone())
    }

    async fn update_user(&self, remote_id: &str, user: &DesiredUser) -> Result<()> {
        self.change(Change::PutUser {
            id: remote_id.to_owned(),
            subject: user.user_name.clone(),
            active: user.active,
        })
        .await
    }

    async fn disable_user(&self, remote_id: &str, _user: &DesiredUser) -> Result<()> {
        self.change(Change::DisableUser {
            id: remote_id.to_owned(),
        })
        .await
    }

    async fn delete_user(&self, remote_id: &str, _user: &DesiredUser) -> Result<()> {
        self.change(Change::DeleteUser {
            id: remote_id.to_owned(),
        })
        .await
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>> {
        Ok(self
            .record()
            .await?
            .group_named(display_name)
            .map(str::to_owned))
    }

    async fn create_group(&self, group: &DesiredGroup) -> Result<String> {
        self.update_group(&group.id, group).await?;
        Ok(group.id.clone())
    }

    async fn update_group(&self, remote_id: &str, group: &DesiredGroup) -> Result<()> {
        self.change(Change::PutGroup {
            id: remote_id.to_owned(),
            display_name: group.display_name.clone(),
        })
        .await
    }

    async fn delete_group(&self, remote_id: &str, _group: &DesiredGroup) -> Result<()> {
        self.change(Change::DeleteGroup {
            id: remote_id.to_owned(),
        })
        .await
    }

    async fn change_members(
        &self,
        remote_id: &str,
        _group: &DesiredGroup,
        add: &[String],
        remove: &[String],
        _change_id: &str,
    ) -> Result<()> {
        self.change(Change::Members {
            group: remote_id.to_owned(),
            add: add.to_vec(),
            remove: remove.to_vec(),
        })
        .await
    }
}
