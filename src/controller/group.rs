//! Reconciling a Group (its group in the application, and the members it
//! declares inline) and its GroupMemberSlices (the members pushed over SCIM).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::breaker::{Removal, Request};
use super::conditions::{self, Decided, SYNCED};
use super::context::Lane;
use super::dry_run::Planned;
use super::plan::{self, MemberDiff, MemberState, Skipped};
use super::{Context, Error, holds_finalizer};
use crate::api::{
    GROUP_LABEL, Group, GroupMemberSlice, ProvisioningPolicy, REQUEST_DEADLINE_ANNOTATION, Source,
};
use crate::connectors::{AnyConnector, Connector, DesiredGroup};
use crate::deadline::landed_after;
use crate::directory::writers::SOURCE_LABEL;

/// How soon to look again at members whose users have no account yet.
const WAITING_FOR_MEMBERS: Duration = Duration::from_secs(3);
/// How soon to look again for members that name no User (Users don't wake
/// Groups up, and one applied from git after its group should still join).
const UNKNOWN_MEMBERS_RECHECK: Duration = Duration::from_secs(30);
/// The condition saying whether every member is a User of the group's policy.
const MEMBERS: &str = "Members";
/// How many skipped members an Event or condition names.
const NAMED: usize = 10;

fn desired(group: &Group) -> DesiredGroup {
    DesiredGroup {
        id: group.name_any(),
        uid: group.uid().unwrap_or_default(),
        generation: group.metadata.generation.unwrap_or_default(),
        display_name: group.spec.display_name.clone(),
        external_id: group.spec.external_id.clone(),
    }
}

pub async fn reconcile(group: Arc<Group>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!("{}", ObjectRef::from_obj(group.as_ref()));
    let has_finalizer = holds_finalizer(group.as_ref());
    let result = if group.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        delete(&group, &ctx).await
    } else {
        if !has_finalizer {
            if let Some(deadline) = abandoned(&group) {
                return remove_abandoned(&group, deadline, &ctx).await;
            }
            ctx.set_finalizer(group.as_ref(), true).await?;
        }
        sync(&group, &ctx).await
    };
    match result {
        Ok(action) => {
            ctx.succeeded(&key);
            let namespace = group.namespace().unwrap_or_default();
            let subject = ("Group", group.name_any());
            ctx.deprovision_not_needed(&namespace, &group.spec.policy, &subject);
            Ok(action)
        }
        Err(error) => {
            if let Err(status_error) =
                write_status(&group, &ctx, None, None, Err(failed(&error))).await
            {
                tracing::warn!(%status_error, "could not record a failed group sync");
            }
            if error.needs_change() {
                ctx.event(group.as_ref(), true, error.reason(), error.to_string())
                    .await;
            }
            Err(error)
        }
    }
}

async fn sync(group: &Group, ctx: &Context) -> Result<Action, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let generation = group.metadata.generation.unwrap_or_default();
    let status = group.status.clone().unwrap_or_default();
    let (declared, unknown_names) = declared_members(group, ctx).await?;
    let mut diff = diff_members(group, ctx, &declared, &status.synced_members).await?;
    diff.skipped
        .extend(unknown_names.into_iter().map(|name| Skipped {
            id: name,
            foreign_policy: None,
        }));
    warn_skipped(group, ctx, &diff.skipped).await;
    let cached_policy = ctx.policy(&namespace, &group.spec.policy).await;
    // A change of the policy's groupRoles map is the group's to apply.
    let mapped_roles = cached_policy
        .as_ref()
        .map(|p| p.spec.application.mapped_roles(&group.spec.display_name))
        .unwrap_or_default();
    let settled =
        status.synced_generation == Some(generation) && status.mapped_roles == mapped_roles;
    if let Some(policy) = cached_policy.filter(|p| p.spec.application.dry_run) {
        if let Some(planned) = plan_only(group, ctx, &policy, &diff, settled).await? {
            return Ok(planned);
        }
    }
    let held = hold_removals(group, ctx, ("Group", group.name_any()), &mut diff).await;
    let in_sync = status.remote_id.is_some() && settled && diff.is_empty();
    if in_sync {
        // Held removals: the failure path writes the status, once.
        held?;
        let synced = Synced {
            remote_id: status.remote_id.clone(),
            members: Some(status.synced_members.clone()),
            mapped_roles,
        };
        write_status(group, ctx, Some(synced), Some(&diff.skipped), Ok(())).await?;
        return Ok(requeue_if_waiting(&diff));
    }
    let policy = ctx
        .policy(&namespace, &group.spec.policy)
        .await
        .ok_or_else(|| Error::PolicyNotFound(format!("{namespace}/{}", group.spec.policy)))?;
    let connector = ctx.connector(&policy).await?;
    let _permit = ctx
        .throttle(&namespace, &group.spec.policy, Lane::Normal)
        .await;
    let want = desired(group);
    let remote_id = match &status.remote_id {
        Some(id) => {
            if !settled {
                connector
                    .update_group(id, &want)
                    .await
                    .map_err(Error::Connector)?;
                let roles = if status.mapped_roles == mapped_roles {
                    String::new()
                } else {
                    format!(", with roles [{}]", mapped_roles.join(", "))
                };
                ctx.event(
                    group,
                    false,
                    "Updated",
                    format!("group {id} is {}{roles}", want.display_name),
                )
                .await;
            }
            id.clone()
        }
        None => {
            let found = connector
                .find_group(&want.display_name)
                .await
                .map_err(Error::Connector)?;
            let (id, reason) = match found {
                Some(id) => {
                    connector
                        .update_group(&id, &want)
                        .await
                        .map_err(Error::Connector)?;
                    (id, "Adopted")
                }
                None => (
                    connector
                        .create_group(&want)
                        .await
                        .map_err(Error::Connector)?,
                    "Created",
                ),
            };
            ctx.event(
                group,
                false,
                reason,
                format!("group {id} for {}", want.display_name),
            )
            .await;
            id
        }
    };
    let members = change_members(
        &connector,
        &remote_id,
        &want,
        &status.synced_members,
        &diff,
        &format!("{}-{generation}", want.uid),
    )
    .await?;
    let synced = Synced {
        remote_id: Some(remote_id),
        members: Some(members),
        mapped_roles,
    };
    write_status(group, ctx, Some(synced), Some(&diff.skipped), Ok(())).await?;
    held.map(|()| requeue_if_waiting(&diff))
}

/// For a dry-run policy: records what syncing the group would do (the
/// group itself, and its members inline and in slices), in the policy's
/// plan and the group's Synced condition, and does nothing downstream.
/// `None`: nothing to plan, the group is in sync.
async fn plan_only(
    group: &Group,
    ctx: &Context,
    policy: &ProvisioningPolicy,
    diff: &MemberDiff,
    settled: bool,
) -> Result<Option<Action>, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let status = group.status.clone().unwrap_or_default();
    let mut planned = Vec::new();
    match &status.remote_id {
        None => {
            let connector = ctx.connector(policy).await?;
            let found = connector
                .find_group(&group.spec.display_name)
                .await
                .map_err(Error::Connector)?;
            planned.push(match found {
                Some(id) => Planned::one("adoptGroup", format!("adopt group {id}")),
                None => Planned::one("createGroup", "create the group"),
            });
        }
        Some(id) if !settled => {
            planned.push(Planned::one("updateGroup", format!("update group {id}")));
        }
        Some(_) => {}
    }
    // A member whose User has no account yet would get one first.
    let mut adds = (diff.add.len() + diff.waiting.len()) as u64;
    let mut removes = diff.remove.len() as u64;
    for slice in ctx.slices_of(&namespace, &group.name_any()) {
        let desired: BTreeSet<String> = slice.spec.members.keys().cloned().collect();
        let synced = slice
            .status
            .as_ref()
            .map(|s| s.synced_members.clone())
            .unwrap_or_default();
        let of_slice = diff_members(group, ctx, &desired, &synced).await?;
        adds += (of_slice.add.len() + of_slice.waiting.len()) as u64;
        removes += of_slice.remove.len() as u64;
    }
    for (kind, count, verb) in [
        ("addMember", adds, "add"),
        ("removeMember", removes, "remove"),
    ] {
        if count > 0 {
            planned.push(Planned {
                kind,
                count,
                text: format!("{verb} {count} member(s)"),
            });
        }
    }
    let texts: Vec<String> = planned.iter().map(|p| p.text.clone()).collect();
    let subject = ("Group", group.name_any());
    let nothing = planned.is_empty();
    ctx.plans
        .record(&namespace, &group.spec.policy, subject, planned);
    if nothing {
        return Ok(None);
    }
    let synced = Decided::new(
        SYNCED,
        false,
        "Planned",
        format!("dry run: would {}", texts.join("; ")),
    );
    write_status(group, ctx, None, Some(&diff.skipped), Err(synced)).await?;
    Ok(Some(Action::await_change()))
}

/// Member removals go out only if the policy's circuit breaker admits
/// them; held ones are taken out of `diff` (so they stay recorded as
/// synced, and are tried again), and the result says they were held.
async fn hold_removals(
    group: &Group,
    ctx: &Context,
    subject: (&'static str, String),
    diff: &mut MemberDiff,
) -> Result<(), Error> {
    let count = diff.remove.len() as u64;
    if count == 0 {
        return Ok(());
    }
    let namespace = group.namespace().unwrap_or_default();
    // Without its policy the sync fails anyway, and nothing goes out.
    let Some(policy) = ctx.policy(&namespace, &group.spec.policy).await else {
        return Ok(());
    };
    let request = Request {
        subject,
        removal: Removal::Membership,
        count,
        action: format!("remove {count} member(s)"),
    };
    if ctx.admit_deprovision(&policy, request).await {
        return Ok(());
    }
    diff.remove.clear();
    Err(Error::DeprovisionHeld(policy.name_any()))
}

/// `desired` members against `synced`: members that are not Users of the
/// group's policy are skipped — never pushed, since their account id is
/// another application's (or nobody's).
/// The ids of the Users the group's spec declares (by id, or by a userName
/// a User of its policy has), and the userNames no such User has (yet).
async fn declared_members(
    group: &Group,
    ctx: &Context,
) -> Result<(BTreeSet<String>, Vec<String>), Error> {
    let names: BTreeSet<String> = group
        .spec
        .members
        .iter()
        .filter_map(|m| m.user_name.clone())
        .collect();
    let found = if names.is_empty() {
        Default::default()
    } else {
        let namespace = group.namespace().unwrap_or_default();
        ctx.users_named(&namespace, &group.spec.policy, &names)
            .await?
    };
    let mut ids = BTreeSet::new();
    let mut unknown = Vec::new();
    for member in &group.spec.members {
        match &member.user_name {
            None => {
                ids.insert(member.value.clone());
            }
            Some(name) => match found.get(&crate::identity::fold_user_name(name)) {
                Some(id) => {
                    ids.insert(id.clone());
                }
                None => unknown.push(name.clone()),
            },
        }
    }
    Ok((ids, unknown))
}

async fn diff_members(
    group: &Group,
    ctx: &Context,
    desired: &BTreeSet<String>,
    synced: &BTreeMap<String, String>,
) -> Result<MemberDiff, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let states = ctx
        .member_states(&namespace, &group.spec.policy, desired)
        .await?;
    Ok(plan::diff_members(desired, synced, |id| {
        states.get(id).cloned().unwrap_or(MemberState::Unknown)
    }))
}

/// A Warning Event on the group per reason, naming the skipped members.
/// Repeats are held back by the publisher, so a resync doesn't re-warn.
async fn warn_skipped(group: &Group, ctx: &Context, skipped: &[Skipped]) {
    for reason in ["ForeignMember", "UnknownMember"] {
        let of_reason: Vec<&Skipped> = skipped.iter().filter(|s| s.reason() == reason).collect();
        if !of_reason.is_empty() {
            ctx.event(
                group,
                true,
                reason,
                format!(
                    "not provisioned, members of a group must be Users of policy {}: {}",
                    group.spec.policy,
                    name_some(&of_reason)
                ),
            )
            .await;
        }
    }
}

/// The first [`NAMED`] skipped members, and how many more.
fn name_some(skipped: &[&Skipped]) -> String {
    let mut named: Vec<String> = skipped.iter().take(NAMED).map(|s| s.describe()).collect();
    if skipped.len() > NAMED {
        named.push(format!("and {} more", skipped.len() - NAMED));
    }
    named.join(", ")
}

/// The Members condition for the members declared in the spec.
fn members_condition(group: &Group, skipped: &[Skipped]) -> Decided {
    match skipped.first() {
        None => Decided::new(
            MEMBERS,
            true,
            "AllMembersValid",
            format!("every member is a User of policy {}", group.spec.policy),
        ),
        Some(first) => Decided::new(
            MEMBERS,
            false,
            first.reason(),
            format!(
                "not provisioned: {}",
                name_some(&skipped.iter().collect::<Vec<_>>())
            ),
        ),
    }
}

async fn change_members(
    connector: &AnyConnector,
    remote_id: &str,
    want: &DesiredGroup,
    synced: &BTreeMap<String, String>,
    diff: &MemberDiff,
    change_id: &str,
) -> Result<BTreeMap<String, String>, Error> {
    if diff.is_empty() {
        return Ok(synced.clone());
    }
    let add: Vec<String> = diff.add.iter().map(|(_, r)| r.clone()).collect();
    let remove: Vec<String> = diff.remove.iter().map(|(_, r)| r.clone()).collect();
    connector
        .change_members(remote_id, want, &add, &remove, change_id)
        .await
        .map_err(Error::Connector)?;
    Ok(plan::apply_diff(synced, diff))
}

fn requeue_if_waiting(diff: &MemberDiff) -> Action {
    if !diff.waiting.is_empty() {
        Action::requeue(WAITING_FOR_MEMBERS)
    } else if diff.skipped.iter().any(|s| s.foreign_policy.is_none()) {
        Action::requeue(UNKNOWN_MEMBERS_RECHECK)
    } else {
        Action::await_change()
    }
}

/// The deadline of the SCIM request that created `group`, if the API server
/// wrote the Group after it: that request was answered 503, so nobody was
/// told of the group, and the identity provider's retry creates another.
fn abandoned(group: &Group) -> Option<Timestamp> {
    let deadline: Timestamp = group
        .annotations()
        .get(REQUEST_DEADLINE_ANNOTATION)?
        .parse()
        .ok()?;
    let created = group.metadata.creation_timestamp.as_ref()?.0;
    landed_after(created, deadline).then_some(deadline)
}

/// Removes an abandoned group before it is ever provisioned: the Group and
/// its slices.
async fn remove_abandoned(
    group: &Group,
    deadline: Timestamp,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    ctx.event(
        group,
        true,
        "Abandoned",
        format!(
            "written after its SCIM request had been answered 503 at its deadline {deadline}; removed before provisioning (the identity provider's retry creates the group)"
        ),
    )
    .await;
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: group.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match Api::<Group>::namespaced(ctx.client.clone(), &namespace)
        .delete(&name, &params)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(error) => return Err(Error::Kube(error)),
    }
    delete_slices_of(ctx, &namespace, &name).await?;
    Ok(Action::await_change())
}

async fn delete_slices_of(ctx: &Context, namespace: &str, group: &str) -> Result<(), Error> {
    let slices = ListParams::default().labels(&format!("{GROUP_LABEL}={group}"));
    Api::<GroupMemberSlice>::namespaced(ctx.client.clone(), namespace)
        .delete_collection(&DeleteParams::default(), &slices)
        .await
        .map_err(Error::Kube)?;
    Ok(())
}

/// How long a slice waits for its Group before it counts as orphaned: a
/// SCIM creation writes a new group's slices first and its Group within the
/// request's budget.
const ORPHAN_SLICE_AGE: Duration = Duration::from_secs(120);

/// A slice whose Group does not exist: from a SCIM creation that gave up
/// before its Group was written, or a Group deleted by hand. Once it is
/// older than [`ORPHAN_SLICE_AGE`] and the API confirms there is no such
/// Group, the group's slices are removed.
async fn sweep_orphan(slice: &GroupMemberSlice, ctx: &Context) -> Result<Action, Error> {
    let age = slice
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| Timestamp::now().duration_since(t.0))
        .and_then(|age| Duration::try_from(age).ok())
        .unwrap_or_default();
    if age < ORPHAN_SLICE_AGE {
        return Ok(Action::requeue(ORPHAN_SLICE_AGE - age));
    }
    let namespace = slice.namespace().unwrap_or_default();
    let group = &slice.spec.group;
    let groups = Api::<Group>::namespaced(ctx.client.clone(), &namespace);
    if groups.get_opt(group).await.map_err(Error::Kube)?.is_some() {
        return Ok(Action::await_change());
    }
    tracing::info!(
        %namespace,
        group,
        slice = slice.name_any(),
        "removing the member slices of a group that does not exist"
    );
    delete_slices_of(ctx, &namespace, group).await?;
    Ok(Action::await_change())
}

async fn delete(group: &Group, ctx: &Context) -> Result<Action, Error> {
    let namespace = group.namespace().unwrap_or_default();
    let remote_id = group.status.as_ref().and_then(|s| s.remote_id.clone());
    if let (Some(remote_id), Some(policy)) =
        (remote_id, ctx.policy(&namespace, &group.spec.policy).await)
    {
        // Deleting the group takes every member out of it.
        let members = member_count(group, ctx).max(1) as u64;
        let request = Request {
            subject: ("Group", group.name_any()),
            removal: Removal::Membership,
            count: members,
            action: format!("delete the group ({members} member(s))"),
        };
        if !ctx.admit_deprovision(&policy, request).await {
            return Err(Error::DeprovisionHeld(policy.name_any()));
        }
        let connector = ctx.connector(&policy).await?;
        let _permit = ctx
            .throttle(&namespace, &group.spec.policy, Lane::Urgent)
            .await;
        connector
            .delete_group(&remote_id, &desired(group))
            .await
            .map_err(Error::Connector)?;
        ctx.event(
            group,
            false,
            "Deleted",
            format!("group {remote_id} deleted before the Group"),
        )
        .await;
    }
    ctx.set_finalizer(group, false).await?;
    Ok(Action::await_change())
}

fn member_count(group: &Group, ctx: &Context) -> i64 {
    let namespace = group.namespace().unwrap_or_default();
    let name = group.name_any();
    // Declared by id or by userName: one each (a person named both ways
    // counts twice until the spec says it once).
    let mut members: BTreeSet<String> = group
        .spec
        .members
        .iter()
        .map(|m| match &m.user_name {
            Some(name) => format!("userName:{}", crate::identity::fold_user_name(name)),
            None => m.value.clone(),
        })
        .collect();
    for slice in ctx.slices_of(&namespace, &name) {
        members.extend(slice.spec.members.keys().cloned());
    }
    members.len() as i64
}

/// The Synced condition of a failed sync.
fn failed(error: &Error) -> Decided {
    Decided::new(SYNCED, false, error.reason(), error.to_string())
}

/// Writes the status if it differs; with `Err(synced)` only the
/// conditions (and counts) change, not what is recorded as synced.
/// What a successful sync left in the application.
struct Synced {
    remote_id: Option<String>,
    /// `None`: unchanged.
    members: Option<BTreeMap<String, String>>,
    mapped_roles: Vec<String>,
}

async fn write_status(
    group: &Group,
    ctx: &Context,
    synced: Option<Synced>,
    skipped: Option<&[Skipped]>,
    outcome: Result<(), Decided>,
) -> Result<(), Error> {
    let current = group.status.clone().unwrap_or_default();
    let ok = outcome.is_ok();
    let verdict = match outcome {
        Ok(()) => Decided::new(
            SYNCED,
            true,
            "Synced",
            "the application's group matches the spec",
        ),
        Err(verdict) => verdict,
    };
    // Without a verdict on the members (a failed sync), the last one stays.
    let mut aspects = vec![verdict];
    aspects.extend(skipped.map(|skipped| members_condition(group, skipped)));
    let mut decided = vec![conditions::summary(&aspects)];
    decided.extend(aspects);
    let mut status = current.clone();
    status.source = Some(match group.labels().get(SOURCE_LABEL).map(String::as_str) {
        Some("scim") => Source::Scim,
        Some("jit") => Source::Jit,
        _ => Source::Manual,
    });
    status.member_count = Some(member_count(group, ctx));
    status.observed_generation = group.metadata.generation;
    status.conditions = conditions::merge(
        &current.conditions,
        &decided,
        group.metadata.generation,
        &now(),
    );
    if let (true, Some(synced)) = (ok, synced) {
        if synced.remote_id != current.remote_id
            || current.synced_generation != group.metadata.generation
            || synced.mapped_roles != current.mapped_roles
        {
            status.last_sync = Some(now());
        }
        status.remote_id = synced.remote_id;
        status.synced_generation = group.metadata.generation;
        status.mapped_roles = synced.mapped_roles;
        if let Some(members) = synced.members {
            status.synced_members = members;
        }
    }
    if status == current {
        return Ok(());
    }
    ctx.apply_status(
        group,
        serde_json::to_value(&status).expect("a status serialises"),
    )
    .await
}

/// A slice's members, synced into its group in the application.
pub async fn reconcile_slice(
    slice: Arc<GroupMemberSlice>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = slice.namespace().unwrap_or_default();
    let policy = ctx
        .group(&namespace, &slice.spec.group)
        .map(|group| group.spec.policy.clone());
    let subject = ("GroupMemberSlice", slice.name_any());
    let result = sync_slice(slice, &ctx).await;
    if let (Ok(_), Some(policy)) = (&result, policy) {
        ctx.deprovision_not_needed(&namespace, &policy, &subject);
    }
    result
}

async fn sync_slice(slice: Arc<GroupMemberSlice>, ctx: &Context) -> Result<Action, Error> {
    let namespace = slice.namespace().unwrap_or_default();
    let Some(group) = ctx.group(&namespace, &slice.spec.group) else {
        return sweep_orphan(&slice, ctx).await;
    };
    let Some(remote_id) = group.status.as_ref().and_then(|s| s.remote_id.clone()) else {
        // The group's own reconcile creates it first; its status change wakes us.
        return Ok(Action::await_change());
    };
    if group.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let dry_run = ctx.policy(&namespace, &group.spec.policy).await;
    if dry_run.is_some_and(|p| p.spec.application.dry_run) {
        // The group's plan counts this slice's members.
        return Ok(Action::await_change());
    }
    let status = slice.status.clone().unwrap_or_default();
    let desired_members: BTreeSet<String> = slice.spec.members.keys().cloned().collect();
    let mut diff = diff_members(&group, ctx, &desired_members, &status.synced_members).await?;
    // The SCIM service refuses such members; these were written some other way.
    warn_skipped(&group, ctx, &diff.skipped).await;
    let subject = ("GroupMemberSlice", slice.name_any());
    let held = hold_removals(&group, ctx, subject, &mut diff).await;
    if diff.is_empty() {
        return held.map(|()| requeue_if_waiting(&diff));
    }
    let policy = ctx
        .policy(&namespace, &group.spec.policy)
        .await
        .ok_or_else(|| Error::PolicyNotFound(format!("{namespace}/{}", group.spec.policy)))?;
    let connector = ctx.connector(&policy).await?;
    // Removing members takes access away: it goes first.
    let lane = if diff.remove.is_empty() {
        Lane::Normal
    } else {
        Lane::Urgent
    };
    let _permit = ctx.throttle(&namespace, &group.spec.policy, lane).await;
    let change_id = format!(
        "{}-{}",
        slice.uid().unwrap_or_default(),
        slice.metadata.resource_version.clone().unwrap_or_default()
    );
    let synced = change_members(
        &connector,
        &remote_id,
        &desired(&group),
        &status.synced_members,
        &diff,
        &change_id,
    )
    .await?;
    ctx.apply_status(
        slice.as_ref(),
        json!({"syncedMembers": synced, "observedGeneration": slice.metadata.generation}),
    )
    .await?;
    ctx.event(
        group.as_ref(),
        false,
        "MembersChanged",
        format!(
            "added {} and removed {} members",
            diff.add.len(),
            diff.remove.len()
        ),
    )
    .await;
    held.map(|()| requeue_if_waiting(&diff))
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GroupSpec;

    fn group(created: &str, deadline: Option<&str>) -> Group {
        let mut group = Group::new(
            "g-1",
            GroupSpec {
                policy: "crm".into(),
                display_name: "Engineering".into(),
                ..Default::default()
            },
        );
        group.metadata.creation_timestamp = Some(Time(created.parse().unwrap()));
        if let Some(deadline) = deadline {
            group
                .annotations_mut()
                .insert(REQUEST_DEADLINE_ANNOTATION.into(), deadline.into());
        }
        group
    }

    #[test]
    fn only_a_group_written_after_its_requests_deadline_is_abandoned() {
        let deadline = "2026-12-02T10:00:08Z";
        assert_eq!(
            abandoned(&group("2026-12-02T10:00:09Z", Some(deadline))),
            Some(deadline.parse().unwrap())
        );
        assert_eq!(
            abandoned(&group("2026-12-02T10:00:08Z", Some(deadline))),
            None
        );
        assert_eq!(
            abandoned(&group("2026-12-02T10:00:01Z", Some(deadline))),
            None
        );
        // Written by hand or GitOps, or replaced since: no deadline.
        assert_eq!(abandoned(&group("2026-12-02T10:00:09Z", None)), None);
        assert_eq!(
            abandoned(&group("2026-12-02T10:00:09Z", Some("soon"))),
            None
        );
    }
}
