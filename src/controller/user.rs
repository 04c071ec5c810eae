//! Reconciling a User: its account in the policy's application.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::breaker::{Removal, Request};
use super::conditions::{self, Decided, SYNCED};
use super::context::Lane;
use super::dry_run::Planned;
use super::plan::{self, GraceStep, Inactivity, UserAction};
use super::{Context, Error, holds_finalizer};
use crate::api::API_VERSION;
use crate::api::{Account, AccountState, Mode, ProvisioningPolicy, Source, User};
use crate::connectors::{AnyConnector, Connector, ConnectorError, DesiredUser};
use crate::directory::views::{UserView, source_of};
use crate::directory::writers::JIT_INACTIVITY_MANAGER;
use crate::directory::{ClaimError, UserNames};
use crate::scim::resource::{Location, user_to_scim};

/// Reconciles a User from its cached view. A resync of a settled User (the
/// common case, e.g. every User at start) decides from the view alone and
/// makes no API call; anything else reads the whole User first.
pub async fn reconcile(view: Arc<UserView>, ctx: Arc<Context>) -> Result<Action, Error> {
    if let Some(action) = settled(&view, &ctx).await {
        return Ok(action);
    }
    let namespace = view.namespace().unwrap_or_default();
    let api: Api<User> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.get_opt(&view.name_any()).await.map_err(Error::Kube)? {
        Some(user) => reconcile_user(Arc::new(user), ctx).await,
        // Gone (its finalizer already removed): nothing left to do.
        None => Ok(Action::await_change()),
    }
}

/// What to do without reading the whole User, when its view says it needs
/// nothing: not being deleted, finalizer set, not due for JIT inactivity,
/// its account synced at this generation, and its status as the
/// controller would write it.
async fn settled(view: &UserView, ctx: &Context) -> Option<Action> {
    if view.metadata.deletion_timestamp.is_some() {
        return (!view.holds_finalizer).then(Action::await_change);
    }
    if !at_rest(view) {
        return None;
    }
    let status = view.status.as_ref()?;
    match inactivity_check(
        view,
        view.source(),
        status.last_login.as_ref(),
        &view.spec.policy,
        view.spec.is_active(),
        ctx,
    )
    .await
    {
        None => Some(Action::await_change()),
        Some((Inactivity::CheckIn(wait), _)) => {
            Some(Action::requeue(wait.min(Duration::from_secs(86_400))))
        }
        Some((Inactivity::Expired, _)) => None,
    }
}

/// Whether a User needs no reconcile at all: a non-JIT User (JIT ones are
/// timed for inactivity) at rest. Such Users never enter the controller's
/// queue, which keeps the memory of its largest burst: 100,000 at a start.
pub fn needs_no_reconcile(view: &UserView) -> bool {
    view.source() != Source::Jit && at_rest(view)
}

/// Not being deleted, finalizer set, account synced at this generation,
/// and the status as the controller would write it: nothing to do but,
/// for JIT users, the inactivity check.
fn at_rest(view: &UserView) -> bool {
    if view.metadata.deletion_timestamp.is_some() || !view.holds_finalizer {
        return false;
    }
    let Some(status) = view.status.as_ref() else {
        return false;
    };
    let generation = view.metadata.generation.unwrap_or_default();
    let action = plan::plan_sync(
        generation,
        view.spec.is_active(),
        status.account.as_ref(),
        None,
    );
    if action != UserAction::Nothing
        || status.source != Some(view.source())
        // A status written before `status.active` existed stays settled:
        // rewriting every User's status for a column would flood the API
        // server at an upgrade (the 100k-user bench never got ready).
        || status
            .active
            .is_some_and(|active| active != view.spec.is_active())
    {
        return false;
    }
    let synced = Decided::new(SYNCED, true, "Synced", SYNCED_MESSAGE);
    let decided = [conditions::summary(std::slice::from_ref(&synced)), synced];
    conditions::unchanged(&status.conditions, &decided, view.metadata.generation)
}

async fn reconcile_user(user: Arc<User>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!(
        "{}",
        kube::runtime::reflector::ObjectRef::from_obj(user.as_ref())
    );
    let deleting = user.metadata.deletion_timestamp.is_some();
    let has_finalizer = holds_finalizer(user.as_ref());
    let result = if deleting {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        deprovision(&user, &ctx).await
    } else {
        if !has_finalizer {
            ctx.set_finalizer(user.as_ref(), true).await?;
        }
        match expire_inactive(&user, &ctx).await? {
            // Deactivated: the spec change brings the next reconcile.
            None => Ok(Action::await_change()),
            Some(check_in) => sync(&user, &ctx).await.map(|action| match check_in {
                Some(wait) => Action::requeue(wait.min(Duration::from_secs(86_400))),
                None => action,
            }),
        }
    };
    match result {
        Ok(action) => {
            ctx.succeeded(&key);
            let namespace = user.namespace().unwrap_or_default();
            let subject = ("User", user.name_any());
            ctx.deprovision_not_needed(&namespace, &user.spec.policy, &subject);
            Ok(action)
        }
        Err(error) => {
            record_failure(&user, &ctx, &error, deleting).await;
            Err(error)
        }
    }
}

/// The Synced condition's message when the account matches.
const SYNCED_MESSAGE: &str = "the account matches the spec";

/// Where a user stands with JIT inactivity, and the policy's
/// `deprovisionAfterDays` (`None`: it doesn't apply: not a JIT user,
/// inactive already, or no `deprovisionAfterDays`).
async fn inactivity_check<K: Resource>(
    user: &K,
    source: Source,
    last_login: Option<&Time>,
    policy_name: &str,
    active: bool,
    ctx: &Context,
) -> Option<(Inactivity, i32)> {
    if !active || source != Source::Jit {
        return None;
    }
    let namespace = user.meta().namespace.clone().unwrap_or_default();
    let policy = ctx.policy(&namespace, policy_name).await?;
    let days = policy
        .spec
        .jit
        .as_ref()
        .and_then(|j| j.deprovision_after_days);
    let (Mode::Jit, Some(days)) = (policy.spec.mode, days) else {
        return None;
    };
    let last_seen = last_login.or(user.meta().creation_timestamp.as_ref())?;
    let inactivity = plan::inactivity(now().0.as_second(), last_seen.0.as_second(), days);
    Some((inactivity, days))
}

/// JIT's missing deprovisioning: a Jit user of a Jit policy with
/// `deprovisionAfterDays`, not seen for that long, is deactivated. Returns `None` when
/// it deactivated the user, else when to look again (if ever).
async fn expire_inactive(user: &User, ctx: &Context) -> Result<Option<Option<Duration>>, Error> {
    let last_login = user.status.as_ref().and_then(|s| s.last_login.as_ref());
    let check = inactivity_check(
        user,
        source_of(&user.metadata),
        last_login,
        &user.spec.policy,
        user.spec.is_active(),
        ctx,
    )
    .await;
    match check {
        None => Ok(Some(None)),
        Some((Inactivity::CheckIn(wait), _)) => Ok(Some(Some(wait))),
        Some((Inactivity::Expired, days)) => {
            let namespace = user.namespace().unwrap_or_default();
            let api: Api<User> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({
                "apiVersion": API_VERSION,
                "kind": "User",
                "metadata": {"name": user.name_any(), "uid": user.uid()},
                "spec": {"active": false},
            });
            api.patch(
                &user.name_any(),
                &PatchParams::apply(JIT_INACTIVITY_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::Kube)?;
            ctx.event(
                user,
                false,
                "InactiveDeactivated",
                format!("no login for {days} days: deactivated (policy deprovisionAfterDays)"),
            )
            .await;
            Ok(None)
        }
    }
}

/// The account as the application should hold it.
fn desired(user: &User) -> DesiredUser {
    let mut resource = user_to_scim(user, &Location { base_url: "" });
    if let Some(object) = resource.as_object_mut() {
        object.remove("id");
        object.remove("meta");
    }
    DesiredUser {
        id: user.name_any(),
        uid: user.uid().unwrap_or_default(),
        generation: user.metadata.generation.unwrap_or_default(),
        user_name: user.spec.user_name.clone(),
        active: user.spec.is_active(),
        resource,
    }
}

fn source(user: &User) -> Source {
    source_of(&user.metadata)
}

async fn sync(user: &User, ctx: &Context) -> Result<Action, Error> {
    let namespace = user.namespace().unwrap_or_default();
    let generation = user.metadata.generation.unwrap_or_default();
    let status = user.status.clone().unwrap_or_default();
    let account = status.account.as_ref();
    let mut action = plan::plan_sync(generation, user.spec.is_active(), account, None);
    if action == UserAction::Nothing {
        // Resync of an unchanged user: no downstream call, and the status
        // write below is skipped when nothing changed.
        write_status(user, ctx, status.account.clone(), synced_condition(Ok(()))).await?;
        return Ok(Action::await_change());
    }
    let policy = ctx
        .policy(&namespace, &user.spec.policy)
        .await
        .ok_or_else(|| Error::PolicyNotFound(format!("{namespace}/{}", user.spec.policy)))?;
    if source(user) == Source::Manual {
        claim_user_name(user, ctx).await?;
    }
    let connector = ctx.connector(&policy).await?;
    let lane = match action {
        UserAction::Disable(_) | UserAction::Delete(_) => Lane::Urgent,
        _ if !user.spec.is_active() => Lane::Urgent,
        _ => Lane::Normal,
    };
    let _permit = ctx.throttle(&namespace, &user.spec.policy, lane).await;
    let want = desired(user);
    if action == UserAction::Lookup {
        let found = connector
            .find_user(&want.user_name)
            .await
            .map_err(Error::Connector)?;
        action = plan::plan_sync(generation, want.active, account, Some(found.as_ref()));
    }
    if let UserAction::LeaveUnmanaged(id) = action {
        return Err(Error::AccountNotManaged(id));
    }
    if policy.spec.application.dry_run {
        return plan_only(user, ctx, &action).await;
    }
    pass_breaker(ctx, &policy, user, &action).await?;
    let (remote_id, state, reason) = execute(&connector, &action, &want).await?;
    let account = Account {
        remote_id: Some(remote_id.clone()),
        state: Some(state),
        synced_generation: Some(generation),
        last_sync: Some(now()),
        delete_at: None,
    };
    write_status(user, ctx, Some(account), synced_condition(Ok(()))).await?;
    ctx.event(
        user,
        false,
        reason,
        format!("account {remote_id} for {} is {state:?}", want.user_name),
    )
    .await;
    Ok(Action::await_change())
}

/// A User written by hand (kubectl, GitOps) holds its userName like SCIM's
/// and JIT's users do, so neither can create a second user of that name; a
/// hand-written duplicate is not provisioned. Checked whenever the spec
/// changed, so a resync costs nothing.
async fn claim_user_name(user: &User, ctx: &Context) -> Result<(), Error> {
    let namespace = user.namespace().unwrap_or_default();
    UserNames::new(ctx.client.clone(), &namespace, &user.spec.policy)
        .claim(
            &user.spec.user_name,
            &user.name_any(),
            crate::deadline::Deadline::from_now().wall,
        )
        .await
        .map_err(|error| match error {
            ClaimError::Taken(name) => Error::UserNameTaken(name),
            ClaimError::Abandoned(_) => Error::UserNameTaken(user.spec.user_name.clone()),
            ClaimError::Conflict => Error::UserNameTaken(user.spec.user_name.clone()),
            ClaimError::Api(error) => Error::Kube(error),
        })
}

/// Carries out one action; returns the remote id, the account's state and
/// the Event reason.
async fn execute(
    connector: &AnyConnector,
    action: &UserAction,
    want: &DesiredUser,
) -> Result<(String, AccountState, &'static str), Error> {
    let state = if want.active {
        AccountState::Active
    } else {
        AccountState::Disabled
    };
    let done = match action {
        UserAction::Create => {
            let id = connector
                .create_user(want)
                .await
                .map_err(Error::Connector)?;
            (id, state, "Created")
        }
        UserAction::Adopt(id) => {
            connector
                .update_user(id, want)
                .await
                .map_err(Error::Connector)?;
            (id.clone(), state, "Adopted")
        }
        UserAction::Update(id) => {
            connector
                .update_user(id, want)
                .await
                .map_err(Error::Connector)?;
            (id.clone(), state, "Updated")
        }
        UserAction::Disable(id) => {
            connector
                .disable_user(id, want)
                .await
                .map_err(Error::Connector)?;
            (id.clone(), AccountState::Disabled, "Disabled")
        }
        UserAction::Delete(id) => {
            connector
                .delete_user(id, want)
                .await
                .map_err(Error::Connector)?;
            (id.clone(), AccountState::Deleted, "Deleted")
        }
        UserAction::Nothing | UserAction::Lookup | UserAction::LeaveUnmanaged(_) => {
            unreachable!("planned away before execution")
        }
    };
    Ok(done)
}

async fn deprovision(user: &User, ctx: &Context) -> Result<Action, Error> {
    let namespace = user.namespace().unwrap_or_default();
    let account = user.status.as_ref().and_then(|s| s.account.clone());
    let Some(policy) = ctx.policy(&namespace, &user.spec.policy).await else {
        // Without its policy there is no application to deprovision in.
        ctx.event(
            user,
            true,
            "PolicyNotFound",
            "deleted without deprovisioning: its policy is gone".into(),
        )
        .await;
        ctx.set_finalizer(user, false).await?;
        return Ok(Action::await_change());
    };
    let deprovision = policy.spec.application.deprovision;
    let mut action = plan::plan_deprovision(deprovision, account.as_ref());
    if policy.spec.application.dry_run && action != UserAction::Nothing {
        // The finalizer holds until the policy goes live and does it.
        return plan_only(user, ctx, &action).await;
    }
    let grace = policy.spec.application.delete_after_seconds;
    if let (UserAction::Delete(remote_id), true) = (&action, grace > 0) {
        match grace_step(user, ctx, remote_id, grace).await? {
            GraceStep::Delete(_) => {}
            GraceStep::HandOver => {
                ctx.event(
                    user,
                    false,
                    "HandedOver",
                    format!(
                        "account {remote_id} kept: a User with userName {} came back within the grace period",
                        user.spec.user_name
                    ),
                )
                .await;
                action = UserAction::Nothing;
            }
            GraceStep::Disable(remote_id) => {
                return disable_before_deletion(user, ctx, &policy, remote_id, grace).await;
            }
            GraceStep::Wait(wait) => {
                let account = pending_deletion(user, grace);
                write_status(user, ctx, Some(account.clone()), deletion_pending(&account)).await?;
                return Ok(Action::requeue(wait.min(GRACE_RECHECK)));
            }
        }
    }
    if action != UserAction::Nothing {
        pass_breaker(ctx, &policy, user, &action).await?;
        let connector = ctx.connector(&policy).await?;
        let _permit = ctx
            .throttle(&namespace, &user.spec.policy, Lane::Urgent)
            .await;
        let mut want = desired(user);
        want.active = false;
        let (remote_id, state, reason) = execute(&connector, &action, &want).await?;
        ctx.event(
            user,
            false,
            reason,
            format!("deprovisioned account {remote_id} ({state:?}) before deletion"),
        )
        .await;
    }
    // The userName is free at once for a User that comes back under it
    // (a stale claim would hold it for a minute).
    UserNames::new(ctx.client.clone(), &namespace, &user.spec.policy)
        .release(&user.spec.user_name, &user.name_any())
        .await;
    ctx.set_finalizer(user, false).await?;
    Ok(Action::await_change())
}

/// For a dry-run policy: records what `action` would do, in the policy's
/// plan and the User's Synced condition, and does nothing downstream.
async fn plan_only(user: &User, ctx: &Context, action: &UserAction) -> Result<Action, Error> {
    let planned = match action {
        UserAction::Create => Planned::one("createAccount", "create an account"),
        UserAction::Adopt(id) => Planned::one("adoptAccount", format!("adopt account {id}")),
        UserAction::Update(id) => Planned::one("updateAccount", format!("update account {id}")),
        UserAction::Disable(id) => Planned::one("disableAccount", format!("disable account {id}")),
        UserAction::Delete(id) => Planned::one("deleteAccount", format!("delete account {id}")),
        UserAction::Nothing | UserAction::Lookup | UserAction::LeaveUnmanaged(_) => {
            unreachable!("planned away before a dry run")
        }
    };
    let synced = Decided::new(
        SYNCED,
        false,
        "Planned",
        format!("dry run: would {}", planned.text),
    );
    let namespace = user.namespace().unwrap_or_default();
    let subject = ("User", user.name_any());
    ctx.plans
        .record(&namespace, &user.spec.policy, subject, vec![planned]);
    let account = user.status.as_ref().and_then(|s| s.account.clone());
    write_status(user, ctx, account, synced).await?;
    Ok(Action::await_change())
}

/// An annotation on a User being deleted under a grace period that deletes
/// its account now.
pub const DELETE_NOW_ANNOTATION: &str = "roster.dev/delete-now";

/// How often a User waiting out its grace period is looked at (a User
/// that comes back under its userName is noticed at the latest then).
const GRACE_RECHECK: Duration = Duration::from_secs(300);

/// Where a User deleted under a `deleteAfterSeconds` of `grace` stands.
async fn grace_step(
    user: &User,
    ctx: &Context,
    remote_id: &str,
    grace: i32,
) -> Result<GraceStep, Error> {
    let now = now().0.as_second();
    let deleted_at = user
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or(now, |t| t.0.as_second());
    let disabled = user
        .status
        .as_ref()
        .and_then(|s| s.account.as_ref())
        .and_then(|a| a.state)
        == Some(AccountState::Disabled);
    // A User that comes back under the name claims it from this one.
    let namespace = user.namespace().unwrap_or_default();
    let holder = UserNames::new(ctx.client.clone(), &namespace, &user.spec.policy)
        .holder(&user.spec.user_name)
        .await
        .map_err(Error::Kube)?;
    let taken_back = holder.is_some_and(|id| id != user.name_any());
    let forced = user.annotations().contains_key(DELETE_NOW_ANNOTATION);
    Ok(plan::plan_grace(
        now,
        deleted_at + i64::from(grace),
        remote_id,
        disabled,
        taken_back,
        forced,
    ))
}

/// The account as recorded while its deletion waits out `grace`.
fn pending_deletion(user: &User, grace: i32) -> Account {
    let mut account = user
        .status
        .as_ref()
        .and_then(|s| s.account.clone())
        .unwrap_or_default();
    let deleted_at = user
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or_else(k8s_openapi::jiff::Timestamp::now, |t| t.0);
    account.delete_at = Some(Time(
        deleted_at + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(grace)),
    ));
    account
}

fn deletion_pending(account: &Account) -> Decided {
    let at = account
        .delete_at
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    Decided::new(
        SYNCED,
        true,
        "DeletionPending",
        format!(
            "the account is disabled and will be deleted at {at}, unless a User with this userName comes back first (annotate {DELETE_NOW_ANNOTATION} to delete it now)"
        ),
    )
}

/// Disables the account of a User deleted under a grace period, and
/// records when the account will be deleted.
async fn disable_before_deletion(
    user: &User,
    ctx: &Context,
    policy: &ProvisioningPolicy,
    remote_id: String,
    grace: i32,
) -> Result<Action, Error> {
    let action = UserAction::Disable(remote_id);
    pass_breaker(ctx, policy, user, &action).await?;
    let connector = ctx.connector(policy).await?;
    let namespace = user.namespace().unwrap_or_default();
    let _permit = ctx
        .throttle(&namespace, &user.spec.policy, Lane::Urgent)
        .await;
    let mut want = desired(user);
    want.active = false;
    let (remote_id, _, _) = execute(&connector, &action, &want).await?;
    let mut account = pending_deletion(user, grace);
    account.state = Some(AccountState::Disabled);
    account.last_sync = Some(now());
    write_status(user, ctx, Some(account.clone()), deletion_pending(&account)).await?;
    let at = account
        .delete_at
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    ctx.event(
        user,
        false,
        "DisabledUntilDeletion",
        format!("account {remote_id} disabled; deleted at {at} unless the user comes back"),
    )
    .await;
    Ok(Action::requeue(
        Duration::from_secs(grace as u64).min(GRACE_RECHECK),
    ))
}

/// A deactivation or deletion goes out only if the policy's circuit breaker
/// admits it; otherwise it is held (the User keeps its desired state and
/// is reconciled again on approval).
async fn pass_breaker(
    ctx: &Context,
    policy: &ProvisioningPolicy,
    user: &User,
    action: &UserAction,
) -> Result<(), Error> {
    let what = match action {
        UserAction::Disable(_) => "Disable",
        UserAction::Delete(_) => "Delete",
        _ => return Ok(()),
    };
    let request = Request {
        subject: ("User", user.name_any()),
        removal: Removal::Account,
        count: 1,
        action: what.to_owned(),
    };
    if ctx.admit_deprovision(policy, request).await {
        Ok(())
    } else {
        Err(Error::DeprovisionHeld(policy.name_any()))
    }
}

/// Writes the status if it differs from what the object has.
/// The Synced condition after a sync that succeeded or failed.
fn synced_condition(outcome: Result<(), &Error>) -> Decided {
    match outcome {
        Ok(()) => Decided::new(SYNCED, true, "Synced", SYNCED_MESSAGE),
        Err(error) => Decided::new(SYNCED, false, error.reason(), error.to_string()),
    }
}

async fn write_status(
    user: &User,
    ctx: &Context,
    account: Option<Account>,
    synced: Decided,
) -> Result<(), Error> {
    let current = user.status.clone().unwrap_or_default();
    let decided = vec![conditions::summary(std::slice::from_ref(&synced)), synced];
    let generation = user.metadata.generation;
    let merged = conditions::merge(&current.conditions, &decided, generation, &now());
    let status = crate::api::UserStatus {
        source: Some(source(user)),
        active: Some(user.spec.is_active()),
        last_login: current.last_login.clone(),
        account,
        observed_generation: generation,
        conditions: merged,
    };
    if status == current {
        return Ok(());
    }
    ctx.apply_status(
        user,
        json!({
            "source": status.source,
            "active": status.active,
            "account": status.account,
            "observedGeneration": status.observed_generation,
            "conditions": status.conditions,
        }),
    )
    .await
}

async fn record_failure(user: &User, ctx: &Context, error: &Error, deleting: bool) {
    if let Error::Connector(ConnectorError::RateLimited(_)) = error {
        return;
    }
    let account = user.status.as_ref().and_then(|s| s.account.clone());
    if let Err(status_error) = write_status(user, ctx, account, synced_condition(Err(error))).await
    {
        tracing::warn!(%status_error, "could not record a failed sync");
    }
    if error.needs_change() || deleting {
        let what = if deleting {
            "deprovisioning waits: "
        } else {
            ""
        };
        ctx.event(user, true, error.reason(), format!("{what}{error}"))
            .await;
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
