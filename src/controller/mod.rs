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
mod user;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};

use kube::{Resource, ResourceExt};

use crate::api::{ConsumedAssertion, Group, GroupMemberSlice, ProvisioningPolicy};
use crate::connectors::ConnectorError;
use crate::directory::views::UserView;
pub use context::Context;

pub use crate::api::DEPROVISION_FINALIZER as FINALIZER;

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

/// Runs the controllers until `shutdown` completes, over one namespace or,
/// with `None`, all of them, with caches of their own.
pub async fn run(
    client: kube::Client,
    namespace: Option<String>,
    instance: Option<String>,
    public_url: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let index = crate::directory::membership::MembershipIndex::default();
    let scope = crate::directory::caches::scopes(&namespace.into_iter().collect::<Vec<_>>());
    index.expect(&scope);
    let (caches, feed) = crate::directory::caches::ScopeCaches::start(
        &client,
        scope.into_iter().next().flatten(),
        &index,
        crate::directory::caches::Keep::Objects,
    );
    let metadata = crate::saml::idp_metadata::MetadataSources::default();
    tokio::select! {
        () = run_with(client, caches, index, instance, public_url, metadata, shutdown) => {}
        () = feed => {}
    }
}

/// [`run`] over the process's caches of one scope (`directory::caches`,
/// which keep feeding `index`), reading IdP metadata (for the policies'
/// SamlTrust condition) through `metadata`.
pub async fn run_with(
    client: kube::Client,
    caches: crate::directory::caches::ScopeCaches,
    index: crate::directory::membership::MembershipIndex,
    instance: Option<String>,
    public_url: Option<String>,
    metadata: crate::saml::idp_metadata::MetadataSources,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use futures::FutureExt;
    let shutdown = shutdown.boxed().shared();
    let namespace = caches.scope.clone();
    // Subscribed before the stores are read for the first round below, so
    // no change falls between the two.
    let (users, groups, policies, slices) = (
        caches.users.store(),
        caches.groups.store(),
        caches.policies.store(),
        caches.slices.store(),
    );
    let mut user_events: Vec<_> = (0..3).map(|_| caches.users.subscribe()).collect();
    let mut group_events: Vec<_> = (0..3).map(|_| caches.groups.subscribe()).collect();
    let mut policy_events: Vec<_> = (0..3).map(|_| caches.policies.subscribe()).collect();
    let mut slice_events: Vec<_> = (0..2).map(|_| caches.slices.subscribe()).collect();
    let slice_index = caches.slice_index.clone();
    let index = Some(index);
    let (policy_nudges, policy_nudged) = tokio::sync::mpsc::unbounded_channel();
    let (user_nudges, user_nudged) = tokio::sync::mpsc::unbounded_channel();
    let (group_nudges, group_nudged) = tokio::sync::mpsc::unbounded_channel();
    let (slice_nudges, slice_nudged) = tokio::sync::mpsc::unbounded_channel();
    let nudges = context::Nudges {
        policies: Some(policy_nudges),
        users: Some(user_nudges),
        groups: Some(group_nudges),
        slices: Some(slice_nudges),
    };
    let first_round = first_round(&caches, nudges.clone());
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
        .with_nudges(nudges)
        .with_readiness(caches.listed()),
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
    // Users at rest are counted once, by the first round.
    let user_triggers = user_events
        .remove(0)
        .filter(|view| std::future::ready(!user::needs_no_reconcile(view)));
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
        () = first_round.then(|()| std::future::pending::<()>()) => {}
    }
}

/// Every object of the caches, queued once when the controllers start: the
/// subscriptions only see changes from then on, and a replica that takes
/// over finds its caches already listed. Users at rest (synced, nothing to
/// do) are counted instead (`roster_reconciles_total{result="at_rest"}`:
/// the Users found at rest when the controllers started).
fn first_round(
    caches: &crate::directory::caches::ScopeCaches,
    queues: context::Nudges,
) -> futures::future::BoxFuture<'static, ()> {
    use futures::FutureExt;
    let caches = caches.clone();
    async move {
        for mut listed in caches.listed() {
            if listed.wait_for(|listed| *listed).await.is_err() {
                return;
            }
        }
        fn queue_all<K: Resource<DynamicType = ()> + Clone>(
            store: &reflector::Store<K>,
            queue: &Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<K>>>,
            wanted: impl Fn(&K) -> bool,
        ) {
            let Some(queue) = queue else { return };
            for object in store.state() {
                if wanted(&object) {
                    let _ = queue.send(ObjectRef::from_obj(object.as_ref()));
                }
            }
        }
        queue_all(&caches.policies.store(), &queues.policies, |_| true);
        queue_all(&caches.users.store(), &queues.users, |view| {
            let at_rest = user::needs_no_reconcile(view);
            if at_rest {
                crate::metrics::METRICS.at_rest("User");
            }
            !at_rest
        });
        queue_all(&caches.groups.store(), &queues.groups, |_| true);
        queue_all(&caches.slices.store(), &queues.slices, |_| true);
    }
    .boxed()
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
