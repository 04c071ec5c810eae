//! One policy's SCIM directory in the Kubernetes API: Users, Groups, their
//! userName claims and member slices. All I/O of the SCIM service is here.
//!
//! Writes use server-side apply with the `roster-scim` field manager (force:
//! SCIM is the source of truth wherever it is on), or JSON merge patches for
//! member slices, which touch only the members they change.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::membership::{self, GroupSlices, MembershipIndex};
use super::tokens;
use crate::api::{API_VERSION, LAST_MODIFIED_ANNOTATION, REQUEST_DEADLINE_ANNOTATION};
use crate::api::{
    GROUP_LABEL, Group, GroupMember, GroupMemberSlice, GroupMemberSliceSpec, GroupSpec, MemberKind,
    User, UserNameClaim, UserSpec, claim_name,
};
use crate::deadline::Deadline;
use crate::directory::views::SliceWatch;
use crate::directory::writers::{SCIM_MANAGER, SOURCE_LABEL};
use crate::directory::{ClaimError, UserNames};
use crate::identity::same_user_name;

/// Why a directory read or write failed. No protocol status: SCIM maps
/// these to its errors, SAML to its pages.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A precondition failed: the object changed since it was read.
    #[error("the resource changed concurrently")]
    Conflict,
    /// Fields the write would change are kept by another writer (a Group
    /// applied from git): theirs to change, never overwritten.
    #[error("{0}")]
    KeptElsewhere(String),
    /// The userName is held by another live User of the policy.
    #[error("userName \"{0}\" is already taken")]
    UserNameTaken(String),
    /// A member to add is not a User or Group of the policy.
    #[error("member value \"{0}\" is not a User or Group of this policy")]
    NotAMember(String),
    /// What the caller asked to write is not a valid object.
    #[error("{0}")]
    Invalid(String),
    #[error("the Kubernetes API is unavailable: {0}")]
    Unavailable(kube::Error),
    #[error("the Kubernetes API refused the write: {0}")]
    Refused(kube::Error),
}

impl From<kube::Error> for StoreError {
    fn from(error: kube::Error) -> Self {
        match &error {
            kube::Error::Api(status) if status.code == 409 => match kept_elsewhere(status) {
                Some(fields) => Self::KeptElsewhere(fields),
                None => Self::Conflict,
            },
            kube::Error::Api(status) if status.code == 422 || status.code == 400 => {
                Self::Refused(error)
            }
            kube::Error::Api(status) if status.code == 403 || status.code == 404 => {
                Self::Refused(error)
            }
            _ => Self::Unavailable(error),
        }
    }
}

/// What a server-side apply conflict names: the fields and the field
/// managers that keep them, e.g. `.spec.displayName (kept by
/// argocd-controller)`. `None` for other conflicts (a stale resourceVersion).
fn kept_elsewhere(status: &kube::core::Status) -> Option<String> {
    let causes: Vec<String> = status
        .details
        .as_ref()?
        .causes
        .iter()
        .filter(|cause| cause.reason == "FieldManagerConflict")
        .map(|cause| {
            let manager = cause
                .message
                .split('"')
                .nth(1)
                .unwrap_or("another field manager");
            format!("{} (kept by {manager})", cause.field)
        })
        .collect();
    (!causes.is_empty()).then(|| {
        format!(
            "{} of this resource {} managed outside SCIM (e.g. in git): change {} there",
            causes.join(", "),
            if causes.len() == 1 { "is" } else { "are" },
            if causes.len() == 1 { "it" } else { "them" },
        )
    })
}

/// Whether a SCIM id can be an object's name. Roster mints UUIDs, but a
/// User or Group written by hand may have any valid name and stays
/// reachable; anything else names nothing, costs no GET, and never reaches
/// an API path.
fn is_object_name(id: &str) -> bool {
    crate::names::is_dns1123_subdomain(id)
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A claim of `user_name` that failed. Held by an abandoned user is taken,
/// for every write but a creation (which takes that user over).
fn claim_error(error: ClaimError, user_name: &str) -> StoreError {
    match error {
        ClaimError::Taken(name) => StoreError::UserNameTaken(name),
        ClaimError::Abandoned(_) => StoreError::UserNameTaken(user_name.to_owned()),
        ClaimError::Conflict => StoreError::Conflict,
        ClaimError::Api(error) => error.into(),
    }
}

/// A policy's directory: namespace + policy name.
#[derive(Clone)]
pub struct Directory {
    client: kube::Client,
    index: MembershipIndex,
    namespace: String,
    policy: String,
    /// When the request this directory serves stops waiting, recorded in
    /// the claims and Groups it creates (see [`crate::deadline`]).
    deadline: Timestamp,
}

impl Directory {
    pub fn new(
        client: kube::Client,
        index: MembershipIndex,
        namespace: &str,
        policy: &str,
    ) -> Self {
        Self {
            client,
            index,
            namespace: namespace.to_owned(),
            policy: policy.to_owned(),
            deadline: Deadline::from_now().wall,
        }
    }

    /// For a request that stops waiting at `deadline`.
    pub fn until(mut self, deadline: Deadline) -> Self {
        self.deadline = deadline.wall;
        self
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn by_policy(&self) -> ListParams {
        ListParams::default().fields(&format!("spec.policy={}", self.policy))
    }

    /// The bearer tokens the Secret named `name` holds: its values that
    /// [`tokens::screen`] accepts as tokens.
    pub async fn token_values(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        let secret = self.api::<Secret>().get_opt(name).await?;
        Ok(tokens::screen(secret.as_ref()).tokens)
    }

    // ----- Users -------------------------------------------------------

    /// The user with SCIM id `id`, if it belongs to this policy and is not
    /// being deleted (a deleted user is gone for SCIM even while the
    /// controller deprovisions it).
    pub async fn user(&self, id: &str) -> Result<Option<User>> {
        if !is_object_name(id) {
            return Ok(None);
        }
        let user = self.api::<User>().get_opt(id).await?;
        Ok(
            user.filter(|u| {
                u.spec.policy == self.policy && u.metadata.deletion_timestamp.is_none()
            }),
        )
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let list = self.api::<User>().list(&self.by_policy()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|u| u.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// The user holding `user_name` (case-insensitively): one claim lookup.
    pub async fn user_by_name(&self, user_name: &str) -> Result<Option<User>> {
        let Some(claim) = self
            .api::<UserNameClaim>()
            .get_opt(&claim_name(&self.policy, user_name))
            .await?
        else {
            return Ok(None);
        };
        let user = self.user(&claim.spec.user).await?;
        Ok(user.filter(|u| same_user_name(&u.spec.user_name, user_name)))
    }

    /// Creates a user with a fresh SCIM id. The userName is claimed first, so
    /// of two racing creations exactly one wins; the loser gets 409.
    pub async fn create_user(&self, spec: UserSpec) -> Result<User> {
        let id = uuid::Uuid::new_v4().to_string();
        match self
            .user_names()
            .claim(&spec.user_name, &id, self.deadline)
            .await
        {
            Ok(()) => {}
            Err(ClaimError::Abandoned(claim)) => {
                // This is the retry of the request that created it (or a
                // later creation of the same userName): the user it asks
                // for becomes that one, so there is exactly one.
                let abandoned = self
                    .user_names()
                    .take_over(&claim, self.deadline)
                    .await
                    .map_err(|error| claim_error(error, &spec.user_name))?;
                tracing::info!(
                    namespace = self.namespace,
                    policy = self.policy,
                    user = abandoned,
                    "took over a user written after its request had been answered 503"
                );
                return self.apply_user(&abandoned, &spec, None).await;
            }
            Err(error) => return Err(claim_error(error, &spec.user_name)),
        }
        match self.apply_user(&id, &spec, None).await {
            Ok(user) => Ok(user),
            Err(error) => {
                // Nothing half-written: give the userName back.
                self.release(&spec.user_name, &id).await;
                Err(error)
            }
        }
    }

    /// Creates a user, or adopts the one JIT created with this userName: when
    /// a policy switches from Jit to Scim, the IdP pushes the users that
    /// logged in before, and they must become SCIM's without a duplicate or
    /// a 409 loop. Returns the user and whether it was adopted.
    ///
    /// The claim is tried first: a new userName (the common case) then costs
    /// no lookup, and only a taken one is looked at for a JIT holder.
    pub async fn create_or_adopt_user(&self, spec: UserSpec) -> Result<(User, bool)> {
        let taken = match self.create_user(spec.clone()).await {
            Err(error @ StoreError::UserNameTaken(_)) => error,
            created => return created.map(|user| (user, false)),
        };
        match self.user_by_name(&spec.user_name).await? {
            Some(existing)
                if existing.labels().get(SOURCE_LABEL).map(String::as_str) == Some("jit") =>
            {
                let mut spec = spec;
                // The JIT key stays: the same person may still log in.
                spec.subject = existing.spec.subject.clone();
                let rv = existing.metadata.resource_version.clone();
                let user = self.replace_user(&existing, spec, rv).await?;
                Ok((user, true))
            }
            _ => Err(taken),
        }
    }

    /// Replaces a user's spec. `resource_version` makes the write conditional.
    pub async fn replace_user(
        &self,
        current: &User,
        spec: UserSpec,
        resource_version: Option<String>,
    ) -> Result<User> {
        let id = current.name_any();
        let renamed = !same_user_name(&current.spec.user_name, &spec.user_name);
        if renamed {
            self.claim(&spec.user_name, &id).await?;
        }
        match self.apply_user(&id, &spec, resource_version).await {
            Ok(user) => {
                if renamed {
                    self.release(&current.spec.user_name, &id).await;
                }
                Ok(user)
            }
            Err(error) => {
                if renamed {
                    self.release(&spec.user_name, &id).await;
                }
                Err(error)
            }
        }
    }

    pub async fn delete_user(&self, user: &User, resource_version: Option<String>) -> Result<()> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: user.metadata.uid.clone(),
                resource_version,
            }),
            ..Default::default()
        };
        self.api::<User>().delete(&user.name_any(), &params).await?;
        self.release(&user.spec.user_name, &user.name_any()).await;
        Ok(())
    }

    async fn apply_user(
        &self,
        id: &str,
        spec: &UserSpec,
        resource_version: Option<String>,
    ) -> Result<User> {
        let mut object = json!({
            "apiVersion": API_VERSION,
            "kind": "User",
            "metadata": {
                "name": id,
                "labels": { SOURCE_LABEL: "scim" },
                "annotations": { LAST_MODIFIED_ANNOTATION: now() },
            },
            "spec": spec,
        });
        if let Some(rv) = resource_version {
            object["metadata"]["resourceVersion"] = json!(rv);
        }
        let params = PatchParams::apply(SCIM_MANAGER).force();
        let user = self
            .api::<User>()
            .patch(id, &params, &Patch::Apply(&object))
            .await?;
        // Read our own write: the user may join a group in the next request.
        self.index.observe_user(&user);
        Ok(user)
    }

    /// Reserves `user_name` for user `id` (see [`crate::directory`]); a live
    /// holder means 409 uniqueness.
    async fn claim(&self, user_name: &str, id: &str) -> Result<()> {
        self.user_names()
            .claim(user_name, id, self.deadline)
            .await
            .map_err(|error| claim_error(error, user_name))
    }

    /// Releases `user_name` if user `id` holds it. Best effort.
    async fn release(&self, user_name: &str, id: &str) {
        self.user_names().release(user_name, id).await
    }

    fn user_names(&self) -> UserNames {
        UserNames::new(self.client.clone(), &self.namespace, &self.policy)
    }

    // ----- Groups ------------------------------------------------------

    /// Checks that every member a write would add to `group` (`None`: a new
    /// group) is a User — or, typed `Group`, a Group — of this policy, so no
    /// request can put another application's user, or an id that names no
    /// one, into a group (RFC 7644 section 3.5.2: an invalid member is 400
    /// `invalidValue`). Members the group's slices already hold are not
    /// checked again; Users are looked up in the index, and only those it
    /// doesn't know yet (created a moment ago) are read, at most
    /// [`MEMBER_READS`] at a time. A foreign id and a missing one get the same
    /// answer: the reply must not tell that another policy has such a user.
    pub async fn check_new_members(
        &self,
        group: Option<&str>,
        members: &[GroupMember],
    ) -> Result<()> {
        let mut seen = BTreeSet::new();
        let mut unresolved = Vec::new();
        for member in members {
            if !seen.insert(member.value.as_str()) {
                continue;
            }
            let present = group.is_some_and(|group| {
                self.index.contains(&self.namespace, group, &member.value) == Some(true)
            });
            if present {
                continue;
            }
            if !could_be_an_id(&member.value) {
                return Err(not_a_member(&member.value));
            }
            let known = match member.kind {
                MemberKind::User => self.index.user_policy(&self.namespace, &member.value),
                MemberKind::Group => None,
            };
            match known {
                Some(policy) if policy == self.policy => {}
                Some(_) => return Err(not_a_member(&member.value)),
                None => unresolved.push((member.value.clone(), member.kind)),
            }
        }
        // In request order, so the first bad value is the one named.
        let found: Vec<(String, Result<bool>)> = futures::stream::iter(unresolved)
            .map(|(value, kind)| self.is_member_of_policy(value, kind))
            .buffered(MEMBER_READS)
            .collect()
            .await;
        for (value, found) in found {
            if !found? {
                return Err(not_a_member(&value));
            }
        }
        Ok(())
    }

    async fn is_member_of_policy(&self, value: String, kind: MemberKind) -> (String, Result<bool>) {
        let found = match kind {
            MemberKind::User => self.user(&value).await.map(|u| u.is_some()),
            MemberKind::Group => self.group(&value).await.map(|g| g.is_some()),
        };
        (value, found)
    }

    /// The group with SCIM id `id`, as [`Directory::user`].
    pub async fn group(&self, id: &str) -> Result<Option<Group>> {
        if !is_object_name(id) {
            return Ok(None);
        }
        let group = self.api::<Group>().get_opt(id).await?;
        Ok(group
            .filter(|g| g.spec.policy == self.policy && g.metadata.deletion_timestamp.is_none()))
    }

    pub async fn groups(&self) -> Result<Vec<Group>> {
        let list = self.api::<Group>().list(&self.by_policy()).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|g| g.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// Creates a group with its members. The members' slices are written
    /// first and the Group last, so the group appears whole or not at all;
    /// the Group records the request's deadline, so one that lands after
    /// the request gave up is recognised (and removed by the controller),
    /// and slices whose Group never came are swept (see `controller::group`).
    pub async fn create_group(&self, spec: GroupSpec, members: Vec<GroupMember>) -> Result<Group> {
        let id = uuid::Uuid::new_v4().to_string();
        let written = match self.change_members(&id, &members, &[]).await {
            Ok(()) => {
                self.write_group(&id, &spec, None, Some(self.deadline), false)
                    .await
            }
            Err(error) => Err(error),
        };
        if written.is_err() {
            // Nothing half-written: the members of a group that isn't go.
            self.delete_slices(&id).await.ok();
        }
        written
    }

    /// Creates a group, or adopts the one JIT logins created with this
    /// displayName (after a switch from Jit to Scim): the IdP's push becomes
    /// its spec and its members. Returns the group and whether it was adopted.
    pub async fn create_or_adopt_group(
        &self,
        spec: GroupSpec,
        members: Vec<GroupMember>,
    ) -> Result<(Group, bool)> {
        let jit_name = crate::directory::jit_group_name(&self.policy, &spec.display_name);
        if let Some(existing) = self.group(&jit_name).await? {
            if existing.labels().get(SOURCE_LABEL).map(String::as_str) == Some("jit") {
                let rv = existing.metadata.resource_version.clone();
                // Taken over from the JIT writer, whose fields SCIM now keeps.
                let group = self.write_group(&jit_name, &spec, rv, None, true).await?;
                self.replace_members(&group, &members).await?;
                return Ok((group, true));
            }
        }
        Ok((self.create_group(spec, members).await?, false))
    }

    pub async fn apply_group(
        &self,
        id: &str,
        spec: &GroupSpec,
        resource_version: Option<String>,
    ) -> Result<Group> {
        self.write_group(id, spec, resource_version, None, false)
            .await
    }

    /// Applies a group; a creation records its request's `deadline`.
    /// `take_over`: the fields other writers keep become SCIM's (a JIT group
    /// adopted); otherwise a field kept elsewhere refuses the write.
    async fn write_group(
        &self,
        id: &str,
        spec: &GroupSpec,
        resource_version: Option<String>,
        deadline: Option<Timestamp>,
        take_over: bool,
    ) -> Result<Group> {
        let mut object = json!({
            "apiVersion": API_VERSION,
            "kind": "Group",
            "metadata": {
                "name": id,
                "labels": { SOURCE_LABEL: "scim" },
                "annotations": { LAST_MODIFIED_ANNOTATION: now() },
            },
            "spec": {
                "policy": spec.policy,
                "displayName": spec.display_name,
                "externalId": spec.external_id,
            },
        });
        if let Some(rv) = resource_version {
            object["metadata"]["resourceVersion"] = json!(rv);
        }
        if let Some(deadline) = deadline {
            object["metadata"]["annotations"][REQUEST_DEADLINE_ANNOTATION] =
                json!(deadline.to_string());
        }
        // Not forced: a field git keeps (Argo CD applies the Group too) is
        // refused, never taken over, so neither side keeps overwriting the
        // other; equal values are simply kept by both.
        let mut params = PatchParams::apply(SCIM_MANAGER);
        params.force = take_over;
        let group = self
            .api::<Group>()
            .patch(id, &params, &Patch::Apply(&object))
            .await?;
        // Read-your-writes for the gate's group names, as for users.
        self.index.observe_group(&group);
        Ok(group)
    }

    pub async fn delete_group(
        &self,
        group: &Group,
        resource_version: Option<String>,
    ) -> Result<()> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: group.metadata.uid.clone(),
                resource_version,
            }),
            ..Default::default()
        };
        self.api::<Group>()
            .delete(&group.name_any(), &params)
            .await?;
        self.delete_slices(&group.name_any()).await
    }

    async fn delete_slices(&self, group: &str) -> Result<()> {
        let params = ListParams::default().labels(&format!("{GROUP_LABEL}={group}"));
        self.api::<GroupMemberSlice>()
            .delete_collection(&DeleteParams::default(), &params)
            .await?;
        self.index.forget_group(&self.namespace, group);
        Ok(())
    }

    async fn list_slices(&self, group: &str) -> Result<Vec<GroupMemberSlice>> {
        let params = ListParams::default().labels(&format!("{GROUP_LABEL}={group}"));
        Ok(self.api::<GroupMemberSlice>().list(&params).await?.items)
    }

    /// A group's slices: from the index, or listed while it is not synced.
    async fn group_slices(&self, group: &str) -> Result<GroupSlices> {
        if let Some(slices) = self.index.group(&self.namespace, group) {
            return Ok(slices);
        }
        let mut slices = GroupSlices::default();
        for slice in self.list_slices(group).await? {
            slices.observe(&slice.name_any(), 0, slice.spec.members);
        }
        Ok(slices)
    }

    /// Whether `member` is in one of the group's slices (not its spec).
    pub async fn in_slices(&self, group: &str, member: &str) -> Result<bool> {
        if let Some(found) = self.index.contains(&self.namespace, group, member) {
            return Ok(found);
        }
        Ok(self
            .list_slices(group)
            .await?
            .iter()
            .any(|s| s.spec.members.contains_key(member)))
    }

    /// A group's members: those declared in its spec (one named by a
    /// userName no User of the policy has is left out) and those in its
    /// slices.
    pub async fn members(&self, group: &Group) -> Result<Vec<GroupMember>> {
        let mut members: Vec<GroupMember> = group
            .spec
            .members
            .iter()
            .filter_map(|member| match &member.user_name {
                None => Some(member.clone()),
                Some(name) => {
                    let id = self
                        .index
                        .user_by_name(&self.namespace, &self.policy, name)?;
                    Some(GroupMember {
                        value: id,
                        user_name: None,
                        kind: member.kind,
                        display: Some(name.clone()),
                    })
                }
            })
            .collect();
        let declared: BTreeSet<String> = members.iter().map(|m| m.value.clone()).collect();
        let sliced = self.group_slices(&group.name_any()).await?.members();
        members.extend(sliced.into_iter().filter(|m| !declared.contains(&m.value)));
        Ok(members)
    }

    /// Adds `add` and removes `remove`. Each touched slice changes by a JSON
    /// merge patch of just those members, so concurrent changes to one group
    /// never lose each other's members, and the work is proportional to the
    /// members changed.
    pub async fn change_members(
        &self,
        group: &str,
        add: &[GroupMember],
        remove: &[String],
    ) -> Result<()> {
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        // Planned inside the index, without copying the group's membership:
        // the work stays proportional to the members changed.
        let plan = match self.index.plan(&self.namespace, group, add, remove) {
            Some(plan) => plan,
            None => {
                // Not synced yet, or removing a member the index doesn't
                // know (another replica may have added it a moment ago): ask
                // the API.
                let mut slices = GroupSlices::default();
                for slice in self.list_slices(group).await? {
                    slices.observe(&slice.name_any(), 0, slice.spec.members);
                }
                membership::plan(group, &slices, add, remove)
            }
        };
        let api = self.api::<GroupMemberSlice>();
        // Patches answer without the managed fields, which list every
        // member of the slice again.
        let patches = self.api::<SliceWatch>();
        for (name, members) in plan.patches {
            let written = if plan.create.contains(&name) {
                let mut slice = GroupMemberSlice::new(
                    &name,
                    GroupMemberSliceSpec {
                        group: group.to_owned(),
                        members: serde_json::from_value(serde_json::Value::Object(members.clone()))
                            .map_err(|e| StoreError::Invalid(e.to_string()))?,
                    },
                );
                slice.metadata.labels =
                    Some(BTreeMap::from([(GROUP_LABEL.to_owned(), group.to_owned())]));
                match api.create(&PostParams::default(), &slice).await {
                    Ok(created) => created,
                    // Another request opened the same slice: merge into it.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let patch = json!({ "spec": { "members": members } });
                        patches
                            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?
                            .into_slice()
                    }
                    Err(error) => return Err(error.into()),
                }
            } else {
                let patch = json!({ "spec": { "members": members } });
                patches
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?
                    .into_slice()
            };
            self.index.observe(&written);
        }
        Ok(())
    }

    /// Writes a change of `group`'s members, however it is kept (slices
    /// patched member by member, or replaced as a whole).
    pub async fn write_members(&self, group: &Group, write: MemberWrite<'_>) -> Result<()> {
        match write {
            MemberWrite::Replace(members) => self.replace_members(group, members).await,
            MemberWrite::Change { add, remove } => {
                self.change_members(&group.name_any(), add, remove).await
            }
        }
    }

    /// Makes the group's slice members exactly `members`.
    pub async fn replace_members(&self, group: &Group, members: &[GroupMember]) -> Result<()> {
        let current = self.group_slices(&group.name_any()).await?;
        let wanted: BTreeSet<&str> = members.iter().map(|m| m.value.as_str()).collect();
        let remove: Vec<String> = current
            .member_slice
            .keys()
            .filter(|id| !wanted.contains(id.as_str()))
            .cloned()
            .collect();
        self.change_members(&group.name_any(), members, &remove)
            .await
    }
}

/// A change of a group's members, as a writer asks for it.
#[derive(Clone, Copy, Debug)]
pub enum MemberWrite<'a> {
    /// The members become exactly these.
    Replace(&'a [GroupMember]),
    /// These are added (or updated) and those ids removed.
    Change {
        add: &'a [GroupMember],
        remove: &'a [String],
    },
}

/// Reads in flight when checking members the index doesn't know.
pub const MEMBER_READS: usize = 8;

fn not_a_member(value: &str) -> StoreError {
    StoreError::NotAMember(value.to_owned())
}

/// Whether `value` could name a User or Group: ids are Kubernetes object
/// names (RFC 1123 subdomains). Anything else is refused without a read.
fn could_be_an_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_apply_conflict_names_the_fields_and_who_keeps_them() {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"argocd-controller\" using roster.dev/v1alpha1: .spec.displayName",
            "details": {"causes": [{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"argocd-controller\" using roster.dev/v1alpha1",
                "field": ".spec.displayName"
            }]}
        }))
        .unwrap();
        let error = StoreError::from(kube::Error::Api(Box::new(status)));
        assert_eq!(
            error.to_string(),
            ".spec.displayName (kept by argocd-controller) of this resource is managed outside SCIM (e.g. in git): change it there"
        );
        // A stale resourceVersion is a plain conflict.
        let stale: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "the object has been modified"
        }))
        .unwrap();
        assert!(matches!(
            StoreError::from(kube::Error::Api(Box::new(stale))),
            StoreError::Conflict
        ));
    }

    #[test]
    fn only_kubernetes_object_names_can_be_member_ids() {
        assert!(could_be_an_id("2819c223-7f76-453a-919d-413861904646"));
        assert!(could_be_an_id("u-alice"));
        for bad in [
            "",
            "Alice",
            "a/b",
            "../x",
            "-a",
            "a-",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!could_be_an_id(bad), "{bad:?}");
        }
    }
}
