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
//! of many users costs a few writes, not one per user.

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
    pending: Arc<Mutex<Pending>>,
    /// Held by the call writing a batch.
    writer: Arc<tokio::sync::Mutex<()>>,
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

fn refused(refusal: Refusal) -> ConnectorError {
    let status = match refusal {
        Refusal::NotFound(..) => 404,
        Refusal::InvalidValue(..) => 400,
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
            pending: Arc::default(),
            writer: Arc::default(),
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

    /// The key's current value ("" when absent).
    async fn read(&self) -> Result<String> {
        let config_map = self
            .config_maps
            .get(&self.config_map)
            .await
            .map_err(|e| self.kube_error(e, "read"))?;
        Ok(config_map
            .data
            .and_then(|mut data| data.remove(&self.key))
            .unwrap_or_default())
    }

    /// What Roster recorded as provisioned.
    async fn record(&self) -> Result<Record> {
        Ok(Record::parse(&self.read().await?))
    }

    /// Applies `change` with whatever else is pending, in one write.
    async fn change(&self, change: Change) -> Result<()> {
        let (done, result) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .push((change, done));
        {
            let _writing = self.writer.lock().await;
            let batch = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
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
    /// the lines is repaired here too.
    async fn write(&self, batch: Pending) {
        let current = match self.read().await {
            Ok(current) => current,
            Err(error) => {
                let detail = error.to_string();
                for (_, done) in batch {
                    let _ = done.send(Err(ConnectorError::Unavailable(detail.clone())));
                }
                return;
            }
        };
        let mut record = Record::parse(&current);
        let mut applied = Vec::new();
        for (change, done) in batch {
            match record.apply(&change) {
                Ok(()) => applied.push(done),
                Err(refusal) => {
                    let _ = done.send(Err(refused(refusal)));
                }
            }
        }
        let outcome = match record.render(&self.header, &self.roles) {
            Err(refusal) => Err(refused(refusal)),
            Ok(value) if value == current => Ok(()),
            Ok(value) if value.len() > MAX_VALUE => Err(ConnectorError::Rejected {
                status: 413,
                detail: format!(
                    "the Argo CD RBAC key would hold {} bytes, over {MAX_VALUE}",
                    value.len()
                ),
            }),
            Ok(value) => self.apply(value).await,
        };
        for done in applied {
            let _ = done.send(match &outcome {
                Ok(()) => Ok(()),
                Err(error) => Err(error.clone()),
            });
        }
    }

    /// Writes the key, and only it, by server-side apply. Forced: the key
    /// is Roster's, and a hand edit (which takes ownership) is undone.
    async fn apply(&self, value: String) -> Result<()> {
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.config_map, "namespace": self.namespace},
            "data": {self.key.as_str(): value},
        });
        self.config_maps
            .patch(
                &self.config_map,
                &PatchParams::apply(ARGOCD_MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await
            .map(drop)
            .map_err(|e| self.kube_error(e, "patch"))
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
