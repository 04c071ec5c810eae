//! What every reconcile shares: the client, the caches, the connectors'
//! credentials, throttles and per-object backoff.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Error;
use super::breaker::{self, Limits, PolicyBreaker, Request, Subject, Summary, Verdict};
use super::plan::MemberState;
use crate::api::{
    Account, ApplicationKind, Group, GroupMemberSlice, ProvisioningPolicy, SecretKeyRef,
    SignatureScheme, User,
};
use crate::connectors::scim::ScimConnector;
use crate::connectors::webhook::WebhookConnector;
use crate::connectors::{AnyConnector, ConnectorError};
use crate::directory::events::{Note, Publisher};
use crate::directory::slices::SliceIndex;
use crate::directory::views::UserView;
use crate::directory::writers::CONTROLLER_MANAGER;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Downstream calls in flight per application, so one sync of many objects
/// does not flood it. One of them is kept for urgent calls.
pub const CALLS_PER_APPLICATION: usize = 4;

/// How long a built connector is reused before its Secret is read again.
pub const CONNECTOR_TTL: Duration = Duration::from_secs(30);

type CachedConnector = (Option<String>, Instant, AnyConnector);

/// How urgent a downstream call is. Deactivations and deletions take away
/// access, so they must not queue behind a backlog of creations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Normal,
    Urgent,
}

/// One application's permits: normal calls share all but one; urgent calls
/// take any free permit, the reserved one included.
pub struct Throttle {
    shared: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            shared: Arc::new(Semaphore::new(CALLS_PER_APPLICATION - 1)),
            reserved: Arc::new(Semaphore::new(1)),
        }
    }
}

impl Throttle {
    pub async fn acquire(&self, lane: Lane) -> OwnedSemaphorePermit {
        let shared = self.shared.clone().acquire_owned();
        let permit = match lane {
            Lane::Normal => shared.await,
            Lane::Urgent => tokio::select! {
                biased;
                permit = self.reserved.clone().acquire_owned() => permit,
                permit = shared => permit,
            },
        };
        permit.expect("the semaphores are never closed")
    }
}

pub struct Context {
    pub client: kube::Client,
    /// Users as projected views: a reconcile that acts reads the whole User.
    pub users: Store<UserView>,
    pub groups: Store<Group>,
    pub policies: Store<ProvisioningPolicy>,
    pub slices: Store<GroupMemberSlice>,
    /// The slices' names by group, fed with the slice cache.
    pub slice_index: SliceIndex,
    /// The process's membership index, where the operator runs one: finds
    /// the Users a Group kept in git names by userName.
    pub index: Option<crate::directory::membership::MembershipIndex>,
    /// The IdPs' metadata read from URLs and ConfigMaps, for the policies'
    /// SamlTrust condition and certificate gauge.
    pub metadata: crate::saml::idp_metadata::MetadataSources,
    /// Per cache, whether its first full list has arrived.
    listed: Vec<tokio::sync::watch::Receiver<bool>>,
    events: Publisher,
    throttles: Mutex<HashMap<(String, String), Arc<Throttle>>>,
    /// Built connectors by policy: (policy resourceVersion, when, connector).
    connectors: Mutex<HashMap<(String, String), CachedConnector>>,
    failures: Mutex<HashMap<String, u32>>,
    /// Externally visible URL, for the URLs a policy's status publishes.
    pub public_url: Option<String>,
    /// The deprovisioning circuit breaker of each policy.
    breakers: Mutex<HashMap<(String, String), PolicyBreaker>>,
    /// Asks the controllers for a reconcile out of turn.
    nudges: Nudges,
    /// What dry-run policies would do.
    pub plans: super::dry_run::Plans,
}

/// Senders into each controller's queue, for reconciles the watches would
/// not bring: a policy whose breaker tripped, objects an approval released.
#[derive(Clone, Default)]
pub struct Nudges {
    pub policies: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<ProvisioningPolicy>>>,
    pub users: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<UserView>>>,
    pub groups: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<Group>>>,
    pub slices: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<GroupMemberSlice>>>,
}

impl Nudges {
    fn subject(&self, namespace: &str, (kind, name): &Subject) {
        match *kind {
            "User" => send(&self.users, namespace, name),
            "Group" => send(&self.groups, namespace, name),
            _ => send(&self.slices, namespace, name),
        }
    }

    fn policy(&self, namespace: &str, name: &str) {
        send(&self.policies, namespace, name);
    }
}

/// Queues `namespace/name`; a closed queue means the controllers stop.
fn send<K: Resource<DynamicType = ()>>(
    queue: &Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<K>>>,
    namespace: &str,
    name: &str,
) {
    if let Some(queue) = queue {
        let _ = queue.send(ObjectRef::new(name).within(namespace));
    }
}

impl Context {
    pub fn new(
        client: kube::Client,
        stores: (
            Store<UserView>,
            Store<Group>,
            Store<ProvisioningPolicy>,
            Store<GroupMemberSlice>,
        ),
        instance: Option<String>,
        public_url: Option<String>,
    ) -> Self {
        let (users, groups, policies, slices) = stores;
        Self {
            events: Publisher::new(client.clone(), CONTROLLER_MANAGER, instance),
            client,
            users,
            groups,
            policies,
            slices,
            slice_index: SliceIndex::default(),
            index: None,
            metadata: Default::default(),
            listed: Vec::new(),
            throttles: Mutex::default(),
            connectors: Mutex::default(),
            failures: Mutex::default(),
            public_url,
            breakers: Mutex::default(),
            nudges: Nudges::default(),
            plans: Default::default(),
        }
    }

    /// With the queues that reconcile objects out of turn.
    pub fn with_nudges(mut self, nudges: Nudges) -> Self {
        self.nudges = nudges;
        self
    }

    /// Whether a deprovisioning action may reach `policy`'s application
    /// now, by the policy's circuit breaker. A held action is recorded for
    /// the policy's status; the one that trips it warns with an Event.
    pub async fn admit_deprovision(&self, policy: &ProvisioningPolicy, request: Request) -> bool {
        let namespace = policy.namespace().unwrap_or_default();
        let limits = Limits::of(&policy.spec.circuit_breaker);
        let active = policy
            .status
            .as_ref()
            .and_then(|s| s.counts.as_ref())
            .map_or(0, |c| c.active_users.max(0) as u64);
        let verdict = {
            let mut breakers = self.breakers.lock().expect("breaker lock");
            let breaker = breaker_of(&mut breakers, policy);
            let now = (Instant::now(), k8s_openapi::jiff::Timestamp::now());
            breaker.admit(&limits, now, active, request)
        };
        crate::metrics::METRICS.deprovision(matches!(verdict, Verdict::Go));
        match verdict {
            Verdict::Go => true,
            Verdict::Hold { tripped } => {
                if tripped {
                    let reason = self
                        .quarantine_summary(&namespace, &policy.name_any())
                        .map(|s| s.trip.reason)
                        .unwrap_or_default();
                    self.event(
                        policy,
                        true,
                        "Quarantined",
                        format!(
                            "deprovisioning held: {reason}; approve with `kubectl annotate ppol {} {}=<status.quarantine.token>`",
                            policy.name_any(),
                            breaker::APPROVAL_ANNOTATION
                        ),
                    )
                    .await;
                }
                self.nudges.policy(&namespace, &policy.name_any());
                false
            }
        }
    }

    /// `subject` of `policy` needs no held deprovisioning (any more). When
    /// that ends the policy's quarantine, the policy is told.
    pub fn deprovision_not_needed(&self, namespace: &str, policy: &str, subject: &Subject) {
        let ended = {
            let mut breakers = self.breakers.lock().expect("breaker lock");
            match breakers.get_mut(&(namespace.to_owned(), policy.to_owned())) {
                Some(breaker) => breaker.dissolve(subject),
                None => false,
            }
        };
        if ended {
            tracing::info!(%namespace, %policy, "every held deprovisioning was taken back: quarantine over");
            self.nudges.policy(namespace, policy);
        }
    }

    /// The policy's breaker as its status should show it, after taking in
    /// what the policy says: a quarantine recorded by a previous leader, an
    /// operator's approval (whose released objects are reconciled at once),
    /// or the breaker turned off.
    pub async fn settle_quarantine(&self, policy: &ProvisioningPolicy) -> Option<Summary> {
        let namespace = policy.namespace().unwrap_or_default();
        let name = policy.name_any();
        let approval = policy.annotations().get(breaker::APPROVAL_ANNOTATION);
        let limits = Limits::of(&policy.spec.circuit_breaker);
        let (released, summary) = {
            let mut breakers = self.breakers.lock().expect("breaker lock");
            let breaker = breaker_of(&mut breakers, policy);
            let released = if !limits.enabled && breaker.is_tripped() {
                Some(breaker.release_all())
            } else {
                approval.and_then(|token| breaker.approve(token))
            };
            (released, breaker.summary())
        };
        crate::metrics::METRICS.quarantined(&namespace, &name, summary.is_some());
        if let Some(released) = released {
            let why = if limits.enabled {
                "approved"
            } else {
                "the circuit breaker was turned off"
            };
            self.event(
                policy,
                false,
                "DeprovisioningApproved",
                format!("{why}: {} held action(s) go out now", released.len()),
            )
            .await;
            for subject in &released {
                self.nudges.subject(&namespace, subject);
            }
        }
        summary
    }

    fn quarantine_summary(&self, namespace: &str, policy: &str) -> Option<Summary> {
        let breakers = self.breakers.lock().expect("breaker lock");
        breakers
            .get(&(namespace.to_owned(), policy.to_owned()))
            .and_then(PolicyBreaker::summary)
    }

    /// Completes once every cache has had its first full list.
    pub async fn caches_ready(&self) {
        for listed in &self.listed {
            // An error means the feed is gone: the controllers stop with it.
            let _ = listed.clone().wait_for(|listed| *listed).await;
        }
    }

    /// With the caches' first-list flags ([`Context::caches_ready`]).
    pub fn with_readiness(mut self, listed: Vec<tokio::sync::watch::Receiver<bool>>) -> Self {
        self.listed = listed;
        self
    }

    /// Reading IdP metadata through `metadata`.
    pub fn with_metadata(mut self, metadata: crate::saml::idp_metadata::MetadataSources) -> Self {
        self.metadata = metadata;
        self
    }

    /// With the slice index that feeds on the slice cache's watch.
    pub fn with_slice_index(mut self, index: SliceIndex) -> Self {
        self.slice_index = index;
        self
    }

    /// With the process's membership index.
    pub fn with_index(
        mut self,
        index: Option<crate::directory::membership::MembershipIndex>,
    ) -> Self {
        self.index = index;
        self
    }

    /// The ids of the Users of `policy` named `user_names` (keyed by the
    /// folded userName): from the index, and for the names it doesn't know
    /// (a User a moment old, or no index) from the userName claims.
    pub async fn users_named(
        &self,
        namespace: &str,
        policy: &str,
        user_names: &BTreeSet<String>,
    ) -> Result<HashMap<String, String>, Error> {
        let claims = crate::directory::UserNames::new(self.client.clone(), namespace, policy);
        let mut found = HashMap::new();
        for name in user_names {
            let indexed = self
                .index
                .as_ref()
                .and_then(|index| index.user_by_name(namespace, policy, name));
            let id = match indexed {
                Some(id) => Some(id),
                None => claims.holder(name).await.map_err(Error::Kube)?,
            };
            if let Some(id) = id {
                found.insert(crate::identity::fold_user_name(name), id);
            }
        }
        Ok(found)
    }

    /// The slices of `group` in `namespace`, from the cache.
    pub fn slices_of(&self, namespace: &str, group: &str) -> Vec<Arc<GroupMemberSlice>> {
        self.slice_index
            .of(namespace, group)
            .into_iter()
            .filter_map(|name| self.slices.get(&ObjectRef::new(&name).within(namespace)))
            .collect()
    }

    /// The policy, once the policy cache has been filled: right after a
    /// start, a missing policy may only be one not listed yet.
    pub async fn policy(&self, namespace: &str, name: &str) -> Option<Arc<ProvisioningPolicy>> {
        let key = ObjectRef::new(name).within(namespace);
        if let Some(policy) = self.policies.get(&key) {
            return Some(policy);
        }
        let _ =
            tokio::time::timeout(Duration::from_secs(30), self.policies.wait_until_ready()).await;
        self.policies.get(&key)
    }

    pub fn user(&self, namespace: &str, name: &str) -> Option<Arc<UserView>> {
        self.users.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn group(&self, namespace: &str, name: &str) -> Option<Arc<Group>> {
        self.groups.get(&ObjectRef::new(name).within(namespace))
    }

    /// Where member `id` of a group of `policy` stands, from the cache.
    pub fn member_state(&self, namespace: &str, policy: &str, id: &str) -> MemberState {
        match self.user(namespace, id) {
            Some(user) => member_state_of(
                &user.spec.policy,
                &user.metadata,
                user.status.as_ref().and_then(|s| s.account.as_ref()),
                policy,
            ),
            None => MemberState::Unknown,
        }
    }

    /// [`Context::member_state`] of each of `ids`, with those the cache
    /// doesn't hold read from the API: a User created a moment ago may not
    /// have reached the cache, and must not be reported missing.
    pub async fn member_states(
        &self,
        namespace: &str,
        policy: &str,
        ids: &BTreeSet<String>,
    ) -> Result<HashMap<String, MemberState>, Error> {
        let users: Api<User> = Api::namespaced(self.client.clone(), namespace);
        let mut states = HashMap::with_capacity(ids.len());
        for id in ids {
            let mut state = self.member_state(namespace, policy, id);
            if state == MemberState::Unknown {
                if let Some(user) = users.get_opt(id).await.map_err(Error::Kube)? {
                    state = member_state_of(
                        &user.spec.policy,
                        &user.metadata,
                        user.status.as_ref().and_then(|s| s.account.as_ref()),
                        policy,
                    );
                }
            }
            states.insert(id.clone(), state);
        }
        Ok(states)
    }

    /// A permit to call the policy's application.
    pub async fn throttle(
        &self,
        namespace: &str,
        policy: &str,
        lane: Lane,
    ) -> OwnedSemaphorePermit {
        let throttle = {
            let mut throttles = self.throttles.lock().expect("throttle lock");
            throttles
                .entry((namespace.to_owned(), policy.to_owned()))
                .or_default()
                .clone()
        };
        throttle.acquire(lane).await
    }

    /// The policy's connector: built once and reused while the policy is
    /// unchanged, for at most [`CONNECTOR_TTL`] (so a rotated application
    /// Secret is read again), keeping its HTTP connections open between
    /// reconciles.
    pub async fn connector(&self, policy: &ProvisioningPolicy) -> Result<AnyConnector, Error> {
        let key = (policy.namespace().unwrap_or_default(), policy.name_any());
        let version = policy.resource_version();
        if let Some((built_for, at, connector)) =
            self.connectors.lock().expect("connectors lock").get(&key)
        {
            if *built_for == version && at.elapsed() < CONNECTOR_TTL {
                return Ok(connector.clone());
            }
        }
        let connector = self.build_connector(policy).await?;
        self.connectors
            .lock()
            .expect("connectors lock")
            .insert(key, (version, Instant::now(), connector.clone()));
        Ok(connector)
    }

    /// Builds the policy's connector, reading its Secret.
    async fn build_connector(&self, policy: &ProvisioningPolicy) -> Result<AnyConnector, Error> {
        let namespace = policy.namespace().unwrap_or_default();
        let application = &policy.spec.application;
        let misconfigured =
            |what: &str| Error::Connector(ConnectorError::Misconfigured(what.to_owned()));
        match application.kind {
            ApplicationKind::Scim => {
                let scim = application
                    .scim
                    .as_ref()
                    .ok_or_else(|| misconfigured("application.scim is missing"))?;
                let token = self.secret_key(&namespace, &scim.token_secret_ref).await?;
                let token = String::from_utf8(token)
                    .map_err(|_| misconfigured("the application token is not UTF-8"))?;
                Ok(AnyConnector::Scim(
                    ScimConnector::new(&scim.base_url, token.trim()).map_err(Error::Connector)?,
                ))
            }
            ApplicationKind::Webhook => {
                let webhook = application
                    .webhook
                    .as_ref()
                    .ok_or_else(|| misconfigured("application.webhook is missing"))?;
                let key = self
                    .secret_key(&namespace, &webhook.signing_secret_ref)
                    .await?;
                let connector = match webhook.signature_scheme {
                    SignatureScheme::Roster => WebhookConnector::new(&webhook.url, &key),
                    SignatureScheme::StandardWebhooks => {
                        WebhookConnector::standard(&webhook.url, &key)
                    }
                };
                Ok(AnyConnector::Webhook(connector.map_err(Error::Connector)?))
            }
            ApplicationKind::Postgres => {
                let postgres = application
                    .postgres
                    .as_ref()
                    .ok_or_else(|| misconfigured("application.postgres is missing"))?;
                let password = self
                    .secret_key(&namespace, &postgres.password_secret_ref)
                    .await?;
                let password = String::from_utf8(password)
                    .map_err(|_| misconfigured("the PostgreSQL password is not UTF-8"))?;
                let ca = match &postgres.ca_secret_ref {
                    Some(reference) => Some(self.secret_key(&namespace, reference).await?),
                    None => None,
                };
                Ok(AnyConnector::from(
                    crate::connectors::postgres::PostgresConnector::new(
                        postgres,
                        password.trim(),
                        ca.as_deref(),
                    )
                    .map_err(Error::Connector)?,
                ))
            }
            ApplicationKind::ArgoCdRbac => {
                let argocd = application
                    .argocd_rbac
                    .as_ref()
                    .ok_or_else(|| misconfigured("application.argocdRbac is missing"))?;
                Ok(AnyConnector::from(
                    crate::connectors::argocd::ArgoCdRbacConnector::new(
                        self.client.clone(),
                        argocd,
                        &format!("{namespace}/{}", policy.name_any()),
                    ),
                ))
            }
        }
    }

    /// One key of a Secret; a missing Secret or key is a misconfiguration.
    pub async fn secret_key(
        &self,
        namespace: &str,
        reference: &SecretKeyRef,
    ) -> Result<Vec<u8>, Error> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = secrets
            .get_opt(&reference.name)
            .await
            .map_err(Error::Kube)?;
        let value = secret
            .and_then(|s| s.data)
            .and_then(|mut data| data.remove(&reference.key))
            .map(|v| v.0)
            .filter(|v| !v.is_empty());
        value.ok_or_else(|| {
            Error::Connector(ConnectorError::Misconfigured(format!(
                "Secret {}/{} has no key {}",
                namespace, reference.name, reference.key
            )))
        })
    }

    /// Publishes an Event about `object`. Failing to publish is only logged.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        let note = Note {
            warning,
            reason,
            action: reason,
            note,
        };
        self.events.publish(object.object_ref(&()), note).await;
    }

    /// Exponential backoff per object: 1 s doubling to 5 min.
    pub fn backoff(&self, key: String) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let count = failures.entry(key).or_insert(0);
        *count = (*count + 1).min(16);
        Duration::from_secs((1u64 << (*count - 1)).min(300))
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }

    /// Server-side applies a status (with apiVersion and kind) as the controller.
    pub async fn apply_status<K>(&self, object: &K, status: serde_json::Value) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> =
            Api::namespaced(self.client.clone(), &object.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        api.patch_status(
            &object.name_any(),
            &PatchParams::apply(CONTROLLER_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::Kube)?;
        Ok(())
    }

    /// Adds or removes the deprovisioning finalizer, as the controller's own
    /// field (server-side apply), leaving other finalizers alone.
    pub async fn set_finalizer<K>(&self, object: &K, present: bool) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> =
            Api::namespaced(self.client.clone(), &object.namespace().unwrap_or_default());
        let finalizers: Vec<&str> = if present {
            vec![super::FINALIZER]
        } else {
            vec![]
        };
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            // The uid makes this a precondition: never re-create a gone object.
            "metadata": {"name": object.name_any(), "uid": object.uid(), "finalizers": finalizers},
        });
        match api
            .patch(
                &object.name_any(),
                &PatchParams::apply(CONTROLLER_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Already gone: removing the finalizer is done.
            Err(kube::Error::Api(s)) if (s.code == 404 || s.code == 409) && !present => Ok(()),
            Err(error) => Err(Error::Kube(error)),
        }
    }
}

/// The policy's breaker, first restored from its status if it records a
/// quarantine this process doesn't know of.
fn breaker_of<'b>(
    breakers: &'b mut HashMap<(String, String), PolicyBreaker>,
    policy: &ProvisioningPolicy,
) -> &'b mut PolicyBreaker {
    let key = (policy.namespace().unwrap_or_default(), policy.name_any());
    breakers.entry(key).or_insert_with(|| {
        let mut breaker = PolicyBreaker::default();
        if let Some(q) = policy.status.as_ref().and_then(|s| s.quarantine.as_ref()) {
            breaker.restore(&q.token, q.since.0, &q.reason);
        }
        breaker
    })
}

/// Where a member stands, from its User's policy, metadata and account.
fn member_state_of(
    user_policy: &str,
    metadata: &ObjectMeta,
    account: Option<&Account>,
    policy: &str,
) -> MemberState {
    if user_policy != policy {
        return MemberState::Foreign {
            policy: user_policy.to_owned(),
        };
    }
    if metadata.deletion_timestamp.is_some() {
        return MemberState::Waiting;
    }
    match account.and_then(|a| a.remote_id.clone()) {
        Some(remote) => MemberState::Ready(remote),
        None => MemberState::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urgent_calls_pass_a_backlog_of_normal_ones() {
        let throttle = Throttle::default();
        let mut held = Vec::new();
        for _ in 0..CALLS_PER_APPLICATION - 1 {
            held.push(throttle.acquire(Lane::Normal).await);
        }
        let wait = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, throttle.acquire(Lane::Normal))
                .await
                .is_err(),
            "normal calls wait when the shared permits are taken"
        );
        let urgent = tokio::time::timeout(wait, throttle.acquire(Lane::Urgent)).await;
        assert!(urgent.is_ok(), "an urgent call still goes");
        held.pop();
        assert!(
            tokio::time::timeout(wait, throttle.acquire(Lane::Urgent))
                .await
                .is_ok(),
            "urgent calls also use the shared permits"
        );
    }
}
