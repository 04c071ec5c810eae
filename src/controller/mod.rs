//! kube-runtime controllers for ProvisioningPolicy, User, Group and
//! GroupMemberSlice. Each reconcile is observe -> plan (pure, `plan`) ->
//! apply (a connector) -> status; a finalizer on every User and Group makes
//! sure the application account is deprovisioned before the object goes.

pub mod breaker;
pub mod conditions;
pub mod context;
pub mod dry_run;
mod gauges;
mod group;
pub mod plan;
mod policy;
pub mod slices;
mod user;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::api::{ConsumedAssertion, Group, GroupMemberSlice, ProvisioningPolicy};
use crate::connectors::ConnectorError;
use crate::directory::views::UserView;
pub use context::Context;

/// On every User and Group: deprovision in the application before deletion.
pub const FINALIZER: &str = "roster.dev/deprovision";

/// Whether `object` carries [`FINALIZER`].
fn holds_finalizer(object: &impl Resource) -> bool {
    object
        .meta()
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

/// Errors of a reconcile; each names its Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("{0}")]
    Connector(#[source] ConnectorError),
    #[error("the ProvisioningPolicy {0} does not exist")]
    PolicyNotFound(String),
    #[error("userName {0:?} is held by another user of the policy: not provisioned")]
    UserNameTaken(String),
    #[error(
        "held: policy {0} is quarantined by its circuit breaker (mass deprovisioning); see its status.quarantine"
    )]
    DeprovisionHeld(String),
    #[error(
        "not provisioned: the user is inactive, and account {0} of its userName was never Roster's (taking it over would disable it)"
    )]
    AccountNotManaged(String),
}

impl Error {
    /// The reason a condition and an Event give for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesError",
            Self::Connector(ConnectorError::Unavailable(_)) => "ApplicationUnavailable",
            Self::Connector(ConnectorError::RateLimited(_)) => "ApplicationRateLimited",
            Self::Connector(ConnectorError::Rejected { .. }) => "ApplicationRejected",
            Self::Connector(ConnectorError::Misconfigured(_)) => "ConnectorMisconfigured",
            Self::PolicyNotFound(_) => "PolicyNotFound",
            Self::UserNameTaken(_) => "UserNameTaken",
            Self::DeprovisionHeld(_) => "DeprovisionHeld",
            Self::AccountNotManaged(_) => "AccountNotManaged",
        }
    }

    /// A bad spec or configuration: retrying without a change won't help.
    pub fn needs_change(&self) -> bool {
        matches!(
            self,
            Self::Connector(ConnectorError::Rejected { .. })
                | Self::Connector(ConnectorError::Misconfigured(_))
                | Self::PolicyNotFound(_)
                | Self::UserNameTaken(_)
                | Self::AccountNotManaged(_)
        )
    }
}

/// Counts and times a reconcile by kind and result.
async fn measured<K, Fut>(
    kind: &'static str,
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    // Every reconcile reads the other kinds' caches (a Group its members'
    // accounts, a User its policy): until all are filled, a miss would be
    // read from the API instead, 100,000 times at a start.
    ctx.caches_ready().await;
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        kind,
        object = %ObjectRef::from_obj(object.as_ref()),
    );
    let result = tracing::Instrument::instrument(reconcile(object, ctx), span).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) => error.reason(),
    };
    crate::metrics::METRICS.reconciled(kind, outcome, started.elapsed());
    result
}

/// What to do after a failed reconcile: wait for the application's
/// Retry-After, back off exponentially per object, or wait for a change
/// (with a long safety resync, since a Secret fix doesn't touch the object).
fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    if let Error::Connector(ConnectorError::RateLimited(wait)) = error {
        return Action::requeue(*wait);
    }
    if let Error::DeprovisionHeld(_) = error {
        // An approval reconciles it at once; this only re-registers what a
        // new leader's breaker holds.
        return Action::requeue(HELD_RECHECK);
    }
    if error.needs_change() {
        return Action::requeue(Duration::from_secs(300));
    }
    let key = format!("{}", ObjectRef::from_obj(object.as_ref()));
    let wait = ctx.backoff(key);
    tracing::info!(object = %ObjectRef::from_obj(object.as_ref()), %error, ?wait, "reconcile failed; backing off");
    Action::requeue(wait)
}

/// Never read by the controllers, and the bulk of a small object (kubectl's
/// last-applied copy, audit annotations): not cached.
fn strip<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().clear();
}

/// [`strip`], but a policy keeps the operator's approval of held
/// deprovisioning (the one annotation the controllers read).
fn strip_policy(policy: &mut ProvisioningPolicy) {
    let approval = policy
        .annotations_mut()
        .remove_entry(breaker::APPROVAL_ANNOTATION);
    strip(policy);
    policy.annotations_mut().extend(approval);
}

/// [`strip`], but a group keeps the deadline of the SCIM request that
/// created it, which tells an abandoned creation (see `group::abandoned`).
fn strip_group(group: &mut Group) {
    let deadline = group
        .annotations_mut()
        .remove_entry(crate::api::REQUEST_DEADLINE_ANNOTATION);
    strip(group);
    group.annotations_mut().extend(deadline);
}

/// [`strip`], and the labels too: nothing reads a slice's labels (its
/// group is in its spec), and each label map costs half a kilobyte.
fn strip_slice(slice: &mut GroupMemberSlice) {
    strip(slice);
    slice.labels_mut().clear();
}

/// A shared cache for `K`, each object trimmed by `trim`: the store, `n`
/// subscriptions to its changes (one per controller reading it), whether
/// its first full list has arrived, and the future that keeps it fed.
///
/// Readiness is a watch channel, not `Store::wait_until_ready`: that one
/// wakes only the last of several waiters, and every reconcile waits.
fn cached<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    n: usize,
    trim: fn(&mut K),
    observe: impl Fn(&watcher::Event<K>) + Send + 'static,
) -> (
    reflector::Store<K>,
    Vec<reflector::ReflectHandle<K>>,
    tokio::sync::watch::Receiver<bool>,
    impl std::future::Future<Output = ()> + Send + 'static,
)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store_shared(1024);
    let subscribers = (0..n)
        .map(|_| writer.subscribe().expect("a shared store has subscribers"))
        .collect();
    let (listed, ready) = tokio::sync::watch::channel(false);
    let api = match namespace {
        Some(namespace) => Api::<K>::namespaced(client.clone(), namespace),
        None => Api::<K>::all(client.clone()),
    };
    // A streamed first list where the API server serves one, else pages of
    // 500; never `resourceVersion=0`: the API server ignores the limit for
    // those and answers 100,000 Users in one response, which times out (504)
    // under load, is retried, and leaves Roster's heap at the size of the
    // biggest answer.
    let feed = watcher(api, crate::cluster::watch_config())
        .default_backoff()
        .modify(trim)
        .inspect(move |event| {
            if let Ok(event) = event {
                observe(event);
                if matches!(event, watcher::Event::InitDone) {
                    listed.send_replace(true);
                }
            }
        })
        .reflect_shared(writer)
        .applied_objects()
        .for_each(|event| async move {
            if let Err(error) = event {
                tracing::warn!(%error, kind = K::kind(&()).as_ref(), "watch failed; retrying");
            }
        });
    (reader, subscribers, ready, feed)
}

/// Runs the controllers until `shutdown` completes, over one namespace or,
/// with `None`, all of them.
pub async fn run(
    client: kube::Client,
    namespace: Option<String>,
    instance: Option<String>,
    public_url: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let metadata = crate::saml::idp_metadata::MetadataSources::default();
    run_with(
        client, namespace, instance, public_url, metadata, None, shutdown,
    )
    .await
}

/// [`run`], reading IdP metadata (for the policies' SamlTrust condition)
/// through `metadata`, and finding Users by userName (for Groups kept in
/// git) in the process's membership `index`, when there is one.
pub async fn run_with(
    client: kube::Client,
    namespace: Option<String>,
    instance: Option<String>,
    public_url: Option<String>,
    metadata: crate::saml::idp_metadata::MetadataSources,
    index: Option<crate::directory::membership::MembershipIndex>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    let (users, mut user_events, users_ready, users_feed) =
        cached::<UserView>(&client, namespace.as_deref(), 3, |_| {}, |_| {});
    let (groups, mut group_events, groups_ready, groups_feed) =
        cached::<Group>(&client, namespace.as_deref(), 3, strip_group, |_| {});
    let (policies, mut policy_events, policies_ready, policies_feed) =
        cached::<ProvisioningPolicy>(&client, namespace.as_deref(), 3, strip_policy, |_| {});
    let slice_index = slices::SliceIndex::default();
    let (slices, mut slice_events, slices_ready, slices_feed) = {
        let index = slice_index.clone();
        cached::<GroupMemberSlice>(
            &client,
            namespace.as_deref(),
            2,
            strip_slice,
            move |event| index.observe(event),
        )
    };
    let (policy_nudges, policy_nudged) = tokio::sync::mpsc::unbounded_channel();
    let (user_nudges, user_nudged) = tokio::sync::mpsc::unbounded_channel();
    let (group_nudges, group_nudged) = tokio::sync::mpsc::unbounded_channel();
    let (slice_nudges, slice_nudged) = tokio::sync::mpsc::unbounded_channel();
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            (
                users.clone(),
                groups.clone(),
                policies.clone(),
                slices.clone(),
            ),
            instance,
            public_url,
        )
        .with_slice_index(slice_index.clone())
        .with_index(index.clone())
        .with_metadata(metadata)
        .with_nudges(context::Nudges {
            policies: Some(policy_nudges),
            users: Some(user_nudges),
            groups: Some(group_nudges),
            slices: Some(slice_nudges),
        })
        .with_readiness(vec![
            users_ready,
            groups_ready,
            policies_ready,
            slices_ready,
        ]),
    );

    // A policy's spec change reaches its Users that have something to do;
    // a User at rest would only be found settled (its status writes alone
    // used to queue every User of the policy, 100,000 of them).
    let users_of_policy = {
        let users = users.clone();
        move |policy: Arc<ProvisioningPolicy>| {
            let namespace = policy.namespace();
            let name = policy.name_any();
            users
                .state()
                .into_iter()
                .filter(|u| u.namespace() == namespace && *u.spec.policy == *name)
                .filter(|u| !user::needs_no_reconcile(u))
                .map(|u| ObjectRef::from_obj(u.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let policy_spec_changes = policy_events.remove(0).filter(spec_changed());
    let user_triggers = user_events.remove(0).filter(|view| {
        let at_rest = user::needs_no_reconcile(view);
        if at_rest {
            crate::metrics::METRICS.at_rest("User");
        }
        std::future::ready(!at_rest)
    });
    let user_controller = Controller::for_shared_stream(user_triggers, users.clone())
        .watches_shared_stream(policy_spec_changes, users_of_policy)
        .reconcile_on(queue(user_nudged))
        .with_config(controller::Config::default().concurrency(USER_RECONCILES_IN_FLIGHT))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, c| measured("User", o, c, user::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let group_of_slice = |slice: Arc<GroupMemberSlice>| {
        Some(
            ObjectRef::<Group>::new(&slice.spec.group)
                .within(&slice.namespace().unwrap_or_default()),
        )
    };
    // A policy's spec change (a dry run going live, say) reaches its Groups
    // that are not synced, and those its groupRoles map now gives other roles.
    let groups_of_policy = {
        let groups = groups.clone();
        move |policy: Arc<ProvisioningPolicy>| {
            let namespace = policy.namespace();
            let name = policy.name_any();
            groups
                .state()
                .into_iter()
                .filter(|g| g.namespace() == namespace && g.spec.policy == name)
                .filter(|g| {
                    let Some(status) = &g.status else {
                        return true;
                    };
                    let synced = status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == conditions::SYNCED && c.status == "True");
                    let mapped = policy.spec.application.mapped_roles(&g.spec.display_name);
                    !synced || status.mapped_roles != mapped
                })
                .map(|g| ObjectRef::from_obj(g.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let group_policy_changes = policy_events.remove(0).filter(spec_changed());
    // A User reaches the Groups kept in git that name it (by id or
    // userName): one that names someone before they exist picks them up.
    let groups_declaring = move |user: Arc<UserView>| {
        let namespace = user.namespace().unwrap_or_default();
        index
            .as_ref()
            .map(|index| index.groups_declaring(&namespace, &user.name_any()))
            .unwrap_or_default()
            .into_iter()
            .map(|group| ObjectRef::<Group>::new(&group).within(&namespace))
            .collect::<Vec<_>>()
    };
    let group_controller = Controller::for_shared_stream(group_events.remove(0), groups.clone())
        .watches_shared_stream(group_policy_changes, groups_of_policy)
        .watches_shared_stream(user_events.remove(0), groups_declaring)
        .watches_shared_stream(slice_events.remove(0), group_of_slice)
        .reconcile_on(queue(group_nudged))
        .with_config(controller::Config::default().concurrency(RECONCILES_IN_FLIGHT))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, c| measured("Group", o, c, group::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let slices_of_group = {
        let index = slice_index.clone();
        move |group: Arc<Group>| {
            let namespace = group.namespace().unwrap_or_default();
            index
                .of(&namespace, &group.name_any())
                .into_iter()
                .map(|name| ObjectRef::new(&name).within(&namespace))
                .collect::<Vec<_>>()
        }
    };
    let slice_controller = Controller::for_shared_stream(slice_events.remove(0), slices.clone())
        .watches_shared_stream(group_events.remove(0), slices_of_group)
        .reconcile_on(queue(slice_nudged))
        .with_config(controller::Config::default().concurrency(RECONCILES_IN_FLIGHT))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |o, c| measured("GroupMemberSlice", o, c, group::reconcile_slice),
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let policy_of = |namespace: Option<String>, policy: &str| {
        Some(ObjectRef::<ProvisioningPolicy>::new(policy).within(&namespace.unwrap_or_default()))
    };
    let policy_controller =
        Controller::for_shared_stream(policy_events.remove(0), policies.clone())
            .watches_shared_stream(user_events.remove(0), move |u: Arc<UserView>| {
                policy_of(u.namespace(), &u.spec.policy)
            })
            .watches_shared_stream(group_events.remove(0), move |g: Arc<Group>| {
                policy_of(g.namespace(), &g.spec.policy)
            })
            .reconcile_on(queue(policy_nudged))
            // Every User and Group change asks for its policy's counts: one
            // reconcile per quiet second instead of one per change (100,000
            // at start, each scanning every user and reading a Secret).
            .with_config(controller::Config::default().debounce(POLICY_DEBOUNCE))
            .graceful_shutdown_on(shutdown.clone())
            .run(
                |o, c| measured("ProvisioningPolicy", o, c, policy::reconcile),
                error_policy,
                ctx.clone(),
            )
            .for_each(|_| async {});

    let sweeper = sweep_consumed_ids(client.clone(), namespace.clone());
    let gauges = gauges::publish(ctx.clone());

    // The feeds stop when the controllers do.
    tokio::select! {
        _ = async { tokio::join!(user_controller, group_controller, slice_controller, policy_controller) } => {}
        _ = sweeper => {}
        _ = gauges => {}
        _ = users_feed => {}
        _ = groups_feed => {}
        _ = policies_feed => {}
        _ = slices_feed => {}
    }
}

/// The objects sent into an out-of-turn queue ([`context::Nudges`]).
fn queue<T: Send + 'static>(
    receiver: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// A stream filter that passes an object only when its generation differs
/// from the last one it passed (the spec changed; not a status write).
fn spec_changed<K: Resource<DynamicType = ()>>() -> impl FnMut(&Arc<K>) -> std::future::Ready<bool>
{
    let mut seen: std::collections::HashMap<ObjectRef<K>, Option<i64>> =
        std::collections::HashMap::new();
    move |object| {
        let generation = object.meta().generation;
        let previous = seen.insert(ObjectRef::from_obj(object.as_ref()), generation);
        std::future::ready(previous != Some(generation))
    }
}

/// Reconciles in flight per controller. Unbounded, a start over 100,000
/// Users holds 100,000 reconcile futures at once and sends every API read
/// or write they need in the same second.
const RECONCILES_IN_FLIGHT: u16 = 32;

/// Reconciles in flight for Users. More than for the other kinds: a
/// deactivation must get a slot while a burst of creates waits for the
/// application (the throttle's reserved lane only helps a reconcile that
/// runs). With 32, one sent after 200 SCIM creates waited 3 s for a slot.
/// A User reconcile holds one User (a few KB) while it waits.
const USER_RECONCILES_IN_FLIGHT: u16 = 256;

/// How often an action held by a policy's circuit breaker is looked at again.
const HELD_RECHECK: Duration = Duration::from_secs(60);

/// How long a policy's reconcile waits for its Users and Groups to stop
/// changing (its counts are all it reads of them).
const POLICY_DEBOUNCE: Duration = Duration::from_secs(1);

/// How often the leader deletes expired SAML ids.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Deletes expired ConsumedAssertions now and then, so they don't pile up in
/// namespaces where nobody logs in any more (logins also sweep their own).
async fn sweep_consumed_ids(client: kube::Client, namespace: Option<String>) {
    let api: Api<ConsumedAssertion> = match &namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    };
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        let deleted =
            crate::directory::consumed::sweep_expired(&api, k8s_openapi::jiff::Timestamp::now())
                .await;
        if deleted > 0 {
            tracing::info!(deleted, "swept expired SAML assertion and request ids");
        }
    }
}

/// A policy with a webhook application and nothing else configured, for
/// the controllers' unit tests.
#[cfg(test)]
pub(crate) fn bare_policy(name: &str, mode: crate::api::Mode) -> ProvisioningPolicy {
    ProvisioningPolicy::new(
        name,
        crate::api::ProvisioningPolicySpec {
            mode,
            application: crate::api::ApplicationSpec {
                kind: crate::api::ApplicationKind::Webhook,
                scim: None,
                webhook: None,
                postgres: None,
                argocd_rbac: None,
                deprovision: crate::api::DeprovisionAction::Disable,
                delete_after_seconds: 86_400,
                dry_run: false,
            },
            scim: None,
            saml: None,
            jit: None,
            access: None,
            kubernetes: None,
            circuit_breaker: Default::default(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_new_generation_passes_the_spec_filter() {
        let mut filter = spec_changed::<Group>();
        let policy = |name: &str, generation: i64| {
            let mut p = Group::new(name, Default::default());
            p.metadata.namespace = Some("ns".into());
            p.metadata.generation = Some(generation);
            Arc::new(p)
        };
        assert!(filter(&policy("crm", 1)).await, "first sight");
        assert!(!filter(&policy("crm", 1)).await, "a status write");
        assert!(filter(&policy("crm", 2)).await, "a spec change");
        assert!(filter(&policy("wiki", 2)).await, "another policy");
    }
}
