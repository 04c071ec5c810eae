//! AccessGrants: Kubernetes RBAC from the directory.
//!
//! For each grant the leader keeps RoleBindings (one per reached namespace
//! and ClusterRole) whose subjects are the granted Group's active members,
//! read from this process's membership index. Every change the index applies
//! (a deactivation, a member removal, a User deletion) and every namespace
//! change re-plans every grant; a plan that matches the bindings writes
//! nothing. Bindings carry the grant's uid as a label and are deleted with
//! the grant (a finalizer: a RoleBinding cannot be owned across namespaces),
//! with the group, or when the namespace stops matching. Bindings Roster did
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
use k8s_openapi::api::rbac::v1::RoleBinding;
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
use crate::directory::membership::MembershipIndex;
use crate::directory::writers::ACCESS_MANAGER;

/// On every AccessGrant: its RoleBindings are deleted before it goes.
pub const FINALIZER: &str = "roster.dev/access-bindings";

/// What the deployment allows (the chart's `accessGrants` values).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The ClusterRoles grants may bind; Roster also needs `bind` on each.
    pub bindable_cluster_roles: BTreeSet<String>,
}

struct Ctx {
    client: kube::Client,
    index: MembershipIndex,
    namespaces: Store<Namespace>,
    bindings: Store<RoleBinding>,
    options: Options,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Runs the AccessGrant controller over the grants of `scope` (one
/// namespace, or all) until `shutdown`.
pub async fn run(
    client: kube::Client,
    scope: Option<String>,
    index: MembershipIndex,
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let grants: Api<AccessGrant> = match &scope {
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
    let (bindings, bindings_writer) = reflector::store();
    let managed = watcher::Config::default().labels(&format!(
        "{}={}",
        plan::MANAGED_BY_LABEL,
        plan::MANAGED_BY
    ));
    // A binding changed by someone else is planned again (and repaired).
    let binding_changes = watcher(Api::<RoleBinding>::all(client.clone()), managed)
        .default_backoff()
        .reflect(bindings_writer)
        .touched_objects()
        .filter_map(|event| async move {
            let binding = event.ok()?;
            let (namespace, name) = binding
                .annotations()
                .get(plan::GRANT_ANNOTATION)?
                .split_once('/')?;
            Some(ObjectRef::<AccessGrant>::new(name).within(namespace))
        });
    // The directory changed: a burst of events is one re-plan.
    let directory_changes = futures::stream::unfold(index.changes(), |mut changes| async move {
        changes.changed().await.ok()?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        changes.borrow_and_update();
        Some(((), changes))
    });
    let ctx = Arc::new(Ctx {
        client,
        index,
        namespaces,
        bindings,
        options,
    });
    Controller::new(grants, watcher::Config::default())
        .reconcile_all_on(futures::stream::select(
            namespace_changes,
            directory_changes,
        ))
        .reconcile_on(binding_changes)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
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

/// The bindings Roster keeps for `grant`, as the watch last saw them.
fn kept(grant: &AccessGrant, ctx: &Ctx) -> Vec<Arc<RoleBinding>> {
    let uid = grant.uid().unwrap_or_default();
    ctx.bindings
        .state()
        .into_iter()
        .filter(|b| b.labels().get(plan::GRANT_LABEL) == Some(&uid))
        .collect()
}

async fn remove_all(grant: &AccessGrant, ctx: &Ctx) -> Result<(), Error> {
    for binding in kept(grant, ctx) {
        delete(ctx, &binding).await?;
    }
    Ok(())
}

async fn delete(ctx: &Ctx, binding: &RoleBinding) -> Result<(), Error> {
    let api: Api<RoleBinding> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    match api
        .delete(&binding.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
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
    let policies: Api<ProvisioningPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(policy) = policies.get_opt(&spec.policy).await? else {
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
    let kept = kept(grant, ctx);
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
                &ctx.options.bindable_cluster_roles,
            )),
        },
    };
    // Nothing is granted while the grant cannot be planned: access ends
    // with the group, the policy or its naming.
    let wanted = decided
        .as_ref()
        .map(|p| p.bindings.clone())
        .unwrap_or_default();
    let mut failures = Vec::new();
    for binding in &kept {
        let key = (binding.namespace().unwrap_or_default(), binding.name_any());
        if !wanted.contains_key(&key) {
            if let Err(error) = delete(ctx, binding).await {
                failures.push(format!("deleting {}/{}: {error}", key.0, key.1));
            }
        }
    }
    for ((binding_namespace, name), binding) in &wanted {
        let current = kept
            .iter()
            .find(|b| b.namespace().as_deref() == Some(binding_namespace) && b.name_any() == *name);
        if current.is_some_and(|c| plan::same(c, binding)) {
            continue;
        }
        let api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), binding_namespace);
        let mut object = serde_json::to_value(binding).expect("a RoleBinding serialises");
        object["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
        object["kind"] = json!("RoleBinding");
        // No force: a binding of this name that another manager wrote is
        // refused (409), never taken over.
        if let Err(error) = api
            .patch(
                name,
                &PatchParams::apply(ACCESS_MANAGER),
                &Patch::Apply(&object),
            )
            .await
        {
            failures.push(format!("writing {binding_namespace}/{name}: {error}"));
        }
    }

    let mut conditions = Vec::new();
    let status_bindings: Vec<GrantedBinding> = wanted
        .iter()
        .map(|((ns, name), b)| GrantedBinding {
            namespace: ns.clone(),
            name: name.clone(),
            cluster_role: b.role_ref.name.clone(),
            subjects: b.subjects.as_ref().map_or(0, |s| s.len() as i64),
        })
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
                "this deployment may not bind {}: allow them in the chart's accessGrants.bindableClusterRoles",
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
