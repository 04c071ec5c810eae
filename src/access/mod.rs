//! AccessGrants: Kubernetes RBAC from the directory.
//!
//! For each grant the leader keeps RoleBindings (one per reached namespace
//! and ClusterRole), and ClusterRoleBindings for the roles the deployment
//! allows cluster-wide, whose subjects are the granted Group's active members,
//! read from this process's membership index. A change the index applies (a
//! deactivation, a member removal, a User deletion) re-plans the grants of
//! the groups it touched; a namespace or policy change re-plans every grant;
//! a plan that matches the bindings writes nothing. Bindings carry the
//! grant's uid as a label and are deleted with the grant (a finalizer: a
//! RoleBinding cannot be owned across namespaces; in the grant's own
//! namespace it is also owned), with the group, or when the namespace stops
//! matching. Bindings Roster did
//! not create are never written: server-side apply without force refuses a
//! name another manager holds.
//!
//! The pure part is `plan`.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{AccessGrant, AccessGrantStatus, GrantedBinding, ProvisioningPolicy};
use crate::controller::conditions::{Decided, READY, SYNCED, merge};
use crate::directory::caches::ScopeCaches;
use crate::directory::membership::MembershipIndex;
use crate::directory::writers::ACCESS_MANAGER;

/// On every AccessGrant: its RoleBindings are deleted before it goes.
pub const FINALIZER: &str = "roster.dev/access-bindings";

pub use plan::Options;

struct Ctx {
    client: kube::Client,
    index: MembershipIndex,
    namespaces: Store<Namespace>,
    policies: Store<ProvisioningPolicy>,
    bindings: Store<RoleBinding>,
    /// Watched only where the deployment allows cluster-wide roles.
    cluster_bindings: Option<Store<ClusterRoleBinding>>,
    options: Options,
    events: crate::directory::events::Publisher,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Runs the AccessGrant controller over the grants of `caches`' scope (one
/// namespace, or all) until `shutdown`. Policies come from the process's
/// shared caches; namespaces, bindings and grants are watched here, as
/// nothing else reads them.
pub async fn run(
    client: kube::Client,
    caches: ScopeCaches,
    index: MembershipIndex,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let grants: Api<AccessGrant> = match &caches.scope {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (namespaces, namespaces_writer) = reflector::store();
    let namespace_changes = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(namespaces_writer)
    .applied_objects()
    .filter_map(|event| async move { event.ok().map(|_| ()) });
    // A binding changed by someone else is planned again (and repaired).
    let (bindings, binding_changes) = watch_managed::<RoleBinding>(&client);
    let (cluster_bindings, cluster_binding_changes) = if options.cluster_wide_roles.is_empty() {
        (None, futures::stream::empty().boxed())
    } else {
        let (store, changes) = watch_managed::<ClusterRoleBinding>(&client);
        (Some(store), changes.boxed())
    };
    // A policy's naming (its kubernetes prefixes) reaches all its grants.
    let policies = caches.policies.store();
    let policy_changes = caches.policies.subscribe().map(|_| ());
    let controller = Controller::new(grants, watcher::Config::default());
    // The directory changed: the grants of the groups it touched are
    // planned again (all of them after a relist); a burst is one round.
    let reader = index.track_group_changes();
    let directory_changes = {
        let index = index.clone();
        let grants = controller.store();
        futures::stream::unfold(index.changes(), |mut changes| async move {
            changes.changed().await.ok()?;
            tokio::time::sleep(DIRECTORY_DEBOUNCE).await;
            changes.borrow_and_update();
            Some(((), changes))
        })
        .flat_map(move |()| {
            let changed = index.take_changed_groups(reader);
            let touched: Vec<ObjectRef<AccessGrant>> = grants
                .state()
                .iter()
                .filter(|grant| changed.all || changed.groups.contains(&group_of(grant)))
                .map(|grant| ObjectRef::from_obj(grant.as_ref()))
                .collect();
            futures::stream::iter(touched)
        })
    };
    let ctx = Arc::new(Ctx {
        events: crate::directory::events::Publisher::new(client.clone(), ACCESS_MANAGER, None),
        client,
        index,
        namespaces,
        policies,
        bindings,
        cluster_bindings,
        options,
    });
    controller
        .reconcile_all_on(futures::stream::select(namespace_changes, policy_changes))
        .reconcile_on(futures::stream::select_all([
            binding_changes.boxed(),
            cluster_binding_changes,
            directory_changes.boxed(),
        ]))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// How long a burst of directory changes gathers before its grants are
/// planned again.
const DIRECTORY_DEBOUNCE: Duration = Duration::from_millis(50);

/// The group a grant names, as [`MembershipIndex::take_changed_groups`]
/// reports groups.
fn group_of(grant: &AccessGrant) -> (String, Arc<str>, Arc<str>) {
    (
        grant.namespace().unwrap_or_default(),
        Arc::from(grant.spec.policy.as_str()),
        Arc::from(grant.spec.group.as_str()),
    )
}

/// A cache of the bindings Roster manages (by label), and the grants whose
/// bindings changed.
fn watch_managed<K>(
    client: &kube::Client,
) -> (
    Store<K>,
    impl futures::Stream<Item = ObjectRef<AccessGrant>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        plan::MANAGED_BY_LABEL,
        plan::MANAGED_BY
    ));
    let changes = watcher(Api::<K>::all(client.clone()), managed)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .filter_map(|event| async move {
            let binding = event.ok()?;
            let (namespace, name) = binding
                .annotations()
                .get(plan::GRANT_ANNOTATION)?
                .split_once('/')?;
            Some(ObjectRef::<AccessGrant>::new(name).within(namespace))
        });
    (store, changes)
}

fn error_policy(_: Arc<AccessGrant>, error: &Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(%error, "access grant reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(grant: Arc<AccessGrant>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !ctx.index.is_synced() {
        // Until the directory is filled every group would look empty.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = grant.namespace().unwrap_or_default();
    let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, grant, |event| async {
        match event {
            Finalizer::Apply(grant) => apply(&grant, &ctx).await,
            Finalizer::Cleanup(grant) => {
                remove_all(&grant, &ctx).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// The bindings of `store` Roster keeps for `grant`, as the watch last saw them.
fn kept<K: Resource<DynamicType = ()> + Clone>(
    grant: &AccessGrant,
    store: &Store<K>,
) -> Vec<Arc<K>> {
    let uid = grant.uid().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|b| b.labels().get(plan::GRANT_LABEL) == Some(&uid))
        .collect()
}

/// The API of a RoleBinding's namespace.
fn role_bindings(ctx: &Ctx, namespace: &str) -> Api<RoleBinding> {
    Api::namespaced(ctx.client.clone(), namespace)
}

fn cluster_role_bindings(ctx: &Ctx, _: &str) -> Api<ClusterRoleBinding> {
    Api::all(ctx.client.clone())
}

async fn remove_all(grant: &AccessGrant, ctx: &Ctx) -> Result<(), Error> {
    for binding in kept(grant, &ctx.bindings) {
        let api = role_bindings(ctx, &binding.namespace().unwrap_or_default());
        delete(&api, &binding.name_any()).await?;
    }
    if let Some(store) = &ctx.cluster_bindings {
        for binding in kept(grant, store) {
            delete(&cluster_role_bindings(ctx, ""), &binding.name_any()).await?;
        }
    }
    Ok(())
}

async fn delete<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What a reconcile changed, for its Event.
#[derive(Default)]
struct Changed {
    written: usize,
    deleted: usize,
    failures: Vec<String>,
}

/// Makes the bindings of one kind what the plan wants: deletes those kept
/// but not wanted, writes those that differ. Failures are collected, not
/// fatal: the others are still written.
async fn converge<K>(
    kept: &[Arc<K>],
    wanted: &BTreeMap<(String, String), K>,
    api: impl Fn(&str) -> Api<K>,
    changed: &mut Changed,
) where
    K: Resource<DynamicType = ()>
        + plan::Binding
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let key = |b: &K| (b.namespace().unwrap_or_default(), b.name_any());
    for binding in kept {
        let at = key(binding);
        if !wanted.contains_key(&at) {
            match delete(&api(&at.0), &at.1).await {
                Ok(()) => changed.deleted += 1,
                Err(error) => {
                    changed
                        .failures
                        .push(format!("deleting {} {}: {error}", K::kind(&()), at.1))
                }
            }
        }
    }
    for (at, binding) in wanted {
        let current = kept.iter().find(|b| key(b) == *at);
        if current.is_some_and(|c| plan::same(c.as_ref(), binding)) {
            continue;
        }
        let mut object = serde_json::to_value(binding).expect("a binding serialises");
        object["apiVersion"] = json!(K::api_version(&()));
        object["kind"] = json!(K::kind(&()));
        // No force: a binding of this name that another manager wrote is
        // refused (409), never taken over.
        match api(&at.0)
            .patch(
                &at.1,
                &PatchParams::apply(ACCESS_MANAGER),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => changed.written += 1,
            Err(error) => {
                changed
                    .failures
                    .push(format!("writing {} {}: {error}", K::kind(&()), at.1))
            }
        }
    }
}

/// Why a grant binds nobody: its reason and message.
type Blocked = (&'static str, String);

/// The active members' userNames and the policy's naming, or why not.
async fn subjects_of(
    grant: &AccessGrant,
    ctx: &Ctx,
) -> Result<Result<(crate::api::KubernetesNames, BTreeSet<String>), Blocked>, Error> {
    let namespace = grant.namespace().unwrap_or_default();
    let spec = &grant.spec;
    // Right after a start, a missing policy may only be one not listed yet.
    let _ = tokio::time::timeout(Duration::from_secs(30), ctx.policies.wait_until_ready()).await;
    let Some(policy) = ctx
        .policies
        .get(&ObjectRef::new(&spec.policy).within(&namespace))
    else {
        return Ok(Err((
            "PolicyNotFound",
            format!("the ProvisioningPolicy {} does not exist", spec.policy),
        )));
    };
    let Some(names) = policy.spec.kubernetes.clone() else {
        return Ok(Err((
            "NoKubernetesNames",
            format!(
                "the ProvisioningPolicy {} sets no kubernetes.usernamePrefix",
                spec.policy
            ),
        )));
    };
    let Some(members) = ctx
        .index
        .active_member_names(&namespace, &spec.policy, &spec.group)
    else {
        return Ok(Err((
            "GroupNotFound",
            format!(
                "the policy {} has no Group named {:?}",
                spec.policy, spec.group
            ),
        )));
    };
    Ok(Ok((names, members)))
}

async fn apply(grant: &AccessGrant, ctx: &Ctx) -> Result<Action, Error> {
    let namespace = grant.namespace().unwrap_or_default();
    let uid = grant.uid().unwrap_or_default();
    let cluster: Vec<(String, BTreeMap<String, String>)> = ctx
        .namespaces
        .state()
        .iter()
        // A namespace being deleted takes its bindings with it.
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    let decided = match subjects_of(grant, ctx).await? {
        Err(blocked) => Err(blocked),
        Ok((names, members)) => match plan::namespaces(&grant.spec, &cluster) {
            Err(message) => Err(("InvalidSelector", message)),
            Ok(reached) => Ok(plan::plan(
                &namespace,
                &grant.name_any(),
                &uid,
                &grant.spec,
                &names,
                &members,
                &reached,
                &ctx.options,
            )),
        },
    };
    // Nothing is granted while the grant cannot be planned: access ends
    // with the group, the policy or its naming.
    let planned = decided.as_ref().ok();
    let wanted = planned.map(|p| p.bindings.clone()).unwrap_or_default();
    let wanted_cluster: BTreeMap<(String, String), ClusterRoleBinding> = planned
        .map(|p| {
            p.cluster_bindings
                .iter()
                .map(|(name, b)| ((String::new(), name.clone()), b.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut changed = Changed::default();
    converge(
        &kept(grant, &ctx.bindings),
        &wanted,
        |namespace| role_bindings(ctx, namespace),
        &mut changed,
    )
    .await;
    if let Some(store) = &ctx.cluster_bindings {
        converge(
            &kept(grant, store),
            &wanted_cluster,
            |namespace| cluster_role_bindings(ctx, namespace),
            &mut changed,
        )
        .await;
    }
    let failures = &changed.failures;

    let mut conditions = Vec::new();
    let granted = |(ns, name): &(String, String), b: &dyn plan::Binding| {
        let (_, role, subjects) = b.parts();
        GrantedBinding {
            namespace: ns.clone(),
            name: name.clone(),
            cluster_role: role.name.clone(),
            subjects: subjects.len() as i64,
        }
    };
    let status_bindings: Vec<GrantedBinding> = wanted_cluster
        .iter()
        .map(|(at, b)| granted(at, b))
        .chain(wanted.iter().map(|(at, b)| granted(at, b)))
        .collect();
    conditions.push(if failures.is_empty() {
        Decided::new(SYNCED, true, "Synced", "the bindings match the plan")
    } else {
        Decided::new(SYNCED, false, "WriteFailed", failures.join("; "))
    });
    let ready = match &decided {
        Err((reason, message)) => Decided::new(READY, false, *reason, message.clone()),
        Ok(plan) if !plan.refused_roles.is_empty() => Decided::new(
            READY,
            false,
            "RoleNotBindable",
            format!(
                "this deployment may not bind {}: allow them in the chart's accessGrants.bindableClusterRoles (clusterWideRoles for cluster-wide ones)",
                plan.refused_roles.join(", ")
            ),
        ),
        Ok(_) if !failures.is_empty() => {
            Decided::new(READY, false, "WriteFailed", failures.join("; "))
        }
        Ok(_) => Decided::new(
            READY,
            true,
            "Granted",
            format!(
                "{} bindings keep the group's active members",
                status_bindings.len()
            ),
        ),
    };
    // What operators need to see: bindings changed, and why a grant does
    // not grant (repeats of a Warning are held back by the publisher).
    if changed.written + changed.deleted > 0 {
        let note = crate::directory::events::Note {
            warning: false,
            reason: "BindingsUpdated",
            action: "Bind",
            note: format!(
                "wrote {} and deleted {} bindings; {} keep the group's active members",
                changed.written,
                changed.deleted,
                status_bindings.len()
            ),
        };
        ctx.events.publish(grant.object_ref(&()), note).await;
    }
    if !ready.status {
        let note = crate::directory::events::Note {
            warning: true,
            reason: &ready.reason,
            action: "Bind",
            note: ready.message.clone(),
        };
        ctx.events.publish(grant.object_ref(&()), note).await;
    }
    conditions.push(ready);
    let existing = grant
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let generation = grant.meta().generation;
    let status = AccessGrantStatus {
        observed_generation: generation,
        binding_count: Some(status_bindings.len() as i64),
        bindings: status_bindings,
        conditions: merge(
            &existing,
            &conditions,
            generation,
            &Time(k8s_openapi::jiff::Timestamp::now()),
        ),
    };
    if grant.status.as_ref() != Some(&status) {
        let api: Api<AccessGrant> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(
            &grant.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    }
    Ok(if failures.is_empty() {
        Action::requeue(Duration::from_secs(600))
    } else {
        Action::requeue(Duration::from_secs(5))
    })
}
