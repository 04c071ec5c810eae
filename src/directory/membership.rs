//! Where each member of each group lives: an index over GroupMemberSlices.
//!
//! A membership change must cost work proportional to the members it
//! changes, not to the group's size, so the service never lists a group's
//! slices to find a member. This index is fed by the process's watch-fed
//! caches of the watched namespaces (`directory::caches`: the same events
//! the controllers' stores get) and by the service's own writes (so a
//! replica reads its own writes at once).
//! `plan` decides, purely, which slice each change goes to.
//!
//! It also keeps, per User, the few fields the SSO gate checks (policy, uid,
//! names, active, sessions-not-before) and, per Group, its display name, with
//! a reverse index member -> groups: a membership change checks that its new
//! members are Users of the group's own policy, and a gate check answers who
//! someone is and which groups they are in, without an API read. One watch
//! of each kind per process.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::watcher;
use serde_json::{Map, Value};

use crate::api::{Group, GroupMember, GroupMemberSlice, SLICE_CAPACITY, SliceMember, User};
use crate::directory::group_names::{Declared, GroupEntry, GroupNames};
use crate::directory::views::{GroupNameView, Person, PersonView};
use crate::identity::fold_user_name;

pub use crate::directory::group_names::GroupKey;

/// One group's slices as last seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupSlices {
    /// Slice name -> (resourceVersion, its members).
    pub slices: BTreeMap<String, (u64, BTreeMap<String, SliceMember>)>,
    /// Member id -> slice name (one shared copy per slice).
    pub member_slice: HashMap<String, Arc<str>>,
}

impl GroupSlices {
    /// Records a slice as written or watched; older versions are ignored.
    pub fn observe(&mut self, name: &str, version: u64, members: BTreeMap<String, SliceMember>) {
        if let Some((known, _)) = self.slices.get(name) {
            if *known > version {
                return;
            }
        }
        self.forget(name);
        let shared: Arc<str> = Arc::from(name);
        for id in members.keys() {
            self.member_slice.insert(id.clone(), shared.clone());
        }
        self.slices.insert(name.to_owned(), (version, members));
    }

    pub fn forget(&mut self, name: &str) {
        if let Some((_, members)) = self.slices.remove(name) {
            for id in members.keys() {
                if self.member_slice.get(id).is_some_and(|s| **s == *name) {
                    self.member_slice.remove(id);
                }
            }
        }
    }

    pub fn members(&self) -> Vec<GroupMember> {
        let mut seen = BTreeSet::new();
        self.slices
            .values()
            .flat_map(|(_, members)| members.iter())
            .filter(|(id, _)| seen.insert(id.as_str()))
            .map(|(id, m)| GroupMember {
                value: id.clone(),
                user_name: None,
                kind: m.kind,
                display: m.display.clone(),
            })
            .collect()
    }

    pub fn member_count(&self) -> usize {
        self.member_slice.len()
    }
}

/// What to write: per slice, a JSON merge patch of its `spec.members`
/// (a member id mapped to its entry, or to null to remove it); slices in
/// `create` don't exist yet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlicePlan {
    pub patches: BTreeMap<String, Map<String, Value>>,
    pub create: BTreeSet<String>,
}

/// Plans adding `add` and removing `remove`: removals go to the slice that
/// holds the member, additions of members not yet present fill the existing
/// slices in name order and then open new ones named `<group>-<n>`.
pub fn plan(
    group: &str,
    slices: &GroupSlices,
    add: &[GroupMember],
    remove: &[String],
) -> SlicePlan {
    let mut plan = SlicePlan::default();
    let removing: BTreeSet<&str> = remove.iter().map(String::as_str).collect();
    for id in &removing {
        if let Some(slice) = slices.member_slice.get(*id) {
            plan.patches
                .entry(slice.to_string())
                .or_default()
                .insert((*id).to_owned(), Value::Null);
        }
    }
    let mut sizes: Vec<(String, usize)> = slices
        .slices
        .iter()
        .map(|(name, (_, members))| (name.clone(), members.len()))
        .collect();
    let mut next_index = slices
        .slices
        .keys()
        .filter_map(|name| name.rsplit('-').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |max| max + 1);
    let mut seen = BTreeSet::new();
    let mut pending = add
        .iter()
        .filter(|m| !slices.member_slice.contains_key(&m.value) && seen.insert(m.value.as_str()))
        .peekable();
    let mut cursor = 0;
    while pending.peek().is_some() {
        if cursor == sizes.len() {
            let name = format!("{group}-{next_index}");
            next_index += 1;
            plan.create.insert(name.clone());
            sizes.push((name, 0));
        }
        let (name, size) = &mut sizes[cursor];
        while *size < SLICE_CAPACITY {
            let Some(member) = pending.next() else { break };
            *size += 1;
            let entry = SliceMember {
                kind: member.kind,
                display: member.display.clone(),
            };
            plan.patches.entry(name.clone()).or_default().insert(
                member.value.clone(),
                serde_json::to_value(entry).expect("serialisable"),
            );
        }
        cursor += 1;
    }
    plan
}

/// The shared index, fed by [`MembershipIndex::run`].
#[derive(Clone, Default)]
pub struct MembershipIndex {
    inner: Arc<Mutex<Inner>>,
    /// Counts the watch events applied, so readers (the AccessGrant
    /// controller) learn that something changed.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Namespace -> its Users.
type People = HashMap<String, NamespacePeople>;

/// One namespace's Users: what the gate reads of each, by id, the ids by
/// SAML subject, so a login finds its User without listing, and by userName
/// (hashed with the policy), so a Group kept in git finds the people it
/// names. Only names some Group declares are in `by_name`: pushed groups
/// name people by id, and a lookup of every User would cost ~80 bytes each.
#[derive(Default)]
struct NamespacePeople {
    by_id: HashMap<String, Arc<Person>>,
    by_subject: HashMap<Box<str>, Vec<String>>,
    by_name: HashMap<u64, Box<str>>,
}

/// The key of (policy, userName) in [`NamespacePeople::by_name`].
fn name_key(policy: &str, user_name: &str) -> u64 {
    use std::hash::BuildHasher;
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default)
        .hash_one((policy, fold_user_name(user_name).as_str()))
}

impl NamespacePeople {
    fn insert(&mut self, id: String, person: Person) {
        self.remove(&id);
        if let Some(subject) = &person.subject {
            self.by_subject
                .entry(subject.clone())
                .or_default()
                .push(id.clone());
        }
        self.by_id.insert(id, Arc::new(person));
    }

    /// Makes User `id` findable by its userName.
    fn index_name(&mut self, id: &str) {
        if let Some(person) = self.by_id.get(id) {
            let key = name_key(&person.policy, &person.user_name);
            self.by_name.insert(key, id.into());
        }
    }

    /// Rebuilds the userName lookup: the Users whose (folded) userName
    /// `declared` says some Group names.
    fn index_names(&mut self, declared: impl Fn(&str) -> bool) {
        self.by_name = self
            .by_id
            .iter()
            .filter(|(_, person)| declared(&fold_user_name(&person.user_name)))
            .map(|(id, person)| {
                (
                    name_key(&person.policy, &person.user_name),
                    id.as_str().into(),
                )
            })
            .collect();
    }

    /// The User of `policy` named `user_name`.
    fn by_name(&self, policy: &str, user_name: &str) -> Option<&str> {
        let id = self.by_name.get(&name_key(policy, user_name))?;
        let person = self.by_id.get(&**id)?;
        // A hash, so confirmed (a collision finds nobody rather than someone else).
        (*person.policy == *policy
            && fold_user_name(&person.user_name) == fold_user_name(user_name))
        .then_some(&**id)
    }

    fn remove(&mut self, id: &str) {
        let Some(old) = self.by_id.remove(id) else {
            return;
        };
        if let Some(subject) = &old.subject
            && let Some(ids) = self.by_subject.get_mut(subject)
        {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.by_subject.remove(subject);
            }
        }
        let key = name_key(&old.policy, &old.user_name);
        if self.by_name.get(&key).is_some_and(|named| **named == *id) {
            self.by_name.remove(&key);
        }
    }
}
/// Namespace -> member id -> the groups (names) holding it.
type MemberGroups = HashMap<String, HashMap<String, Vec<Arc<str>>>>;

#[derive(Default)]
struct Inner {
    groups: HashMap<GroupKey, GroupSlices>,
    /// False until the first full lists: until then callers read the API.
    synced: bool,
    /// Per watch (one namespace, or `None` for all): the slices seen during
    /// its relist, swapped in for that watch's namespaces when it completes.
    relists: HashMap<Option<String>, HashMap<GroupKey, GroupSlices>>,
    /// The watches of each kind whose first full list is still to come.
    listing: BTreeSet<(Kind, Option<String>)>,
    /// Users not being deleted.
    people: People,
    /// Per watch: the Users seen during its relist, swapped in when it completes.
    people_relists: HashMap<Option<String>, People>,
    /// Reverse of `groups`: which groups each member is in.
    member_groups: MemberGroups,
    group_names: GroupNames,
    group_name_relists: HashMap<Option<String>, HashMap<GroupKey, GroupEntry>>,
    /// Per reader ([`MembershipIndex::track_group_changes`]): the groups
    /// whose members (or their state) changed since it last took them.
    changed_groups: Vec<ChangedGroups>,
}

/// Groups whose members changed: by (namespace, policy, display name), as
/// an AccessGrant names them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChangedGroups {
    /// A relist: any group may have changed.
    pub all: bool,
    pub groups: HashSet<(String, Arc<str>, Arc<str>)>,
}

/// The kinds the index watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Slices,
    Users,
    Groups,
}

/// Records `person` (User `id` in `namespace`) in `map`, or forgets it once
/// it is being deleted (a deleted user is gone for SCIM and the gate).
fn observe_person(
    map: &mut People,
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    person: Person,
) {
    let namespace = metadata.namespace.clone().unwrap_or_default();
    let id = metadata.name.clone().unwrap_or_default();
    if metadata.deletion_timestamp.is_some() {
        forget_person(map, &namespace, &id);
    } else {
        map.entry(namespace).or_default().insert(id, person);
    }
}

fn forget_person(map: &mut People, namespace: &str, id: &str) {
    if let Some(users) = map.get_mut(namespace) {
        users.remove(id);
        if users.by_id.is_empty() {
            map.remove(namespace);
        }
    }
}

fn version(slice: &GroupMemberSlice) -> u64 {
    slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn key(slice: &GroupMemberSlice) -> GroupKey {
    (
        slice.namespace().unwrap_or_default(),
        slice.spec.group.clone(),
    )
}

fn in_scope(scope: &Option<String>, namespace: &str) -> bool {
    scope.as_ref().is_none_or(|s| s == namespace)
}

/// The ids in exactly one of `a` and `b`: the members a slice write changed.
fn changed_ids<V>(a: Option<&BTreeMap<String, V>>, b: &BTreeMap<String, V>) -> Vec<String> {
    let empty = BTreeMap::new();
    let a = a.unwrap_or(&empty);
    a.keys()
        .filter(|id| !b.contains_key(*id))
        .chain(b.keys().filter(|id| !a.contains_key(*id)))
        .cloned()
        .collect()
}

impl Inner {
    fn set_synced(&mut self) {
        self.synced = self.listing.is_empty();
    }

    /// Notes that group `key`'s members changed.
    fn mark(&mut self, key: &GroupKey) {
        if self.changed_groups.is_empty() {
            return;
        }
        if let Some(entry) = self.group_names.get(key) {
            for changed in &mut self.changed_groups {
                changed.groups.insert((
                    key.0.clone(),
                    entry.policy.clone(),
                    entry.display_name.clone(),
                ));
            }
        }
    }

    fn mark_all(&mut self) {
        for changed in &mut self.changed_groups {
            changed.all = true;
        }
    }

    /// The groups User `id` is in, pushed or declared (by id or userName).
    fn groups_of(&self, namespace: &str, id: &str) -> Vec<GroupKey> {
        let mut names: Vec<Arc<str>> = self
            .member_groups
            .get(namespace)
            .and_then(|members| members.get(id))
            .cloned()
            .unwrap_or_default();
        names.extend_from_slice(
            self.group_names
                .declaring(namespace, &Declared::Id(id.into())),
        );
        if let Some(person) = self.people.get(namespace).and_then(|p| p.by_id.get(id)) {
            let name = Declared::UserName(fold_user_name(&person.user_name).into());
            names.extend_from_slice(self.group_names.declaring(namespace, &name));
        }
        names
            .into_iter()
            .map(|group| (namespace.to_owned(), group.to_string()))
            .collect()
    }

    /// Applies `change` to the Users, marking the groups of User `id`
    /// before and after it (a rename leaves groups declaring the old name).
    fn change_person(&mut self, namespace: &str, id: &str, change: impl FnOnce(&mut People)) {
        let tracking = !self.changed_groups.is_empty();
        let before = if tracking {
            self.groups_of(namespace, id)
        } else {
            Vec::new()
        };
        change(&mut self.people);
        if let Some(people) = self.people.get_mut(namespace)
            && let Some(person) = people.by_id.get(id)
        {
            let name = Declared::UserName(fold_user_name(&person.user_name).into());
            if !self.group_names.declaring(namespace, &name).is_empty() {
                people.index_name(id);
            }
        }
        if tracking {
            for key in before.iter().chain(&self.groups_of(namespace, id)) {
                self.mark(key);
            }
        }
    }

    /// Records (or, with `None`, forgets) Group `key`, marking it under its
    /// old and its new name.
    fn set_group(&mut self, key: GroupKey, entry: Option<GroupEntry>) {
        self.mark(&key);
        let names_unknown = entry.as_ref().is_some_and(|entry| {
            let before = self.group_names.get(&key);
            let people = self.people.get(&key.0);
            entry.declared.iter().any(|who| match who {
                Declared::UserName(name) => {
                    before.is_none_or(|before| !before.declared.contains(who))
                        && people.is_some_and(|p| p.by_name(&entry.policy, name).is_none())
                }
                Declared::Id(_) => false,
            })
        });
        match entry {
            Some(entry) => self.group_names.insert(key.clone(), entry),
            None => self.group_names.remove(&key),
        }
        if names_unknown {
            // A name no Group declared before: its User is found by one
            // pass over the namespace's Users.
            let namespace = key.0.clone();
            self.index_names(|other| other == namespace);
        }
        self.mark(&key);
    }

    /// Rebuilds the userName lookup of the namespaces `listed` says.
    fn index_names(&mut self, listed: impl Fn(&str) -> bool) {
        let group_names = &self.group_names;
        for (namespace, people) in &mut self.people {
            if listed(namespace) {
                people.index_names(|name| {
                    !group_names
                        .declaring(namespace, &Declared::UserName(name.into()))
                        .is_empty()
                });
            }
        }
    }

    /// Records one slice of a group, keeping the reverse index in step.
    fn observe_slice(
        &mut self,
        key: GroupKey,
        name: &str,
        version: u64,
        members: BTreeMap<String, SliceMember>,
    ) {
        let group = self.groups.entry(key.clone()).or_default();
        let changed = changed_ids(group.slices.get(name).map(|(_, m)| m), &members);
        group.observe(name, version, members);
        if !changed.is_empty() {
            self.mark(&key);
        }
        self.reindex(&key, changed);
    }

    fn forget_slice(&mut self, key: &GroupKey, name: &str) {
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        let changed = group
            .slices
            .get(name)
            .map(|(_, m)| m.keys().cloned().collect())
            .unwrap_or_default();
        group.forget(name);
        self.mark(key);
        self.reindex(key, changed);
    }

    /// Sets, for each of `ids`, whether it is in group `key` now.
    fn reindex(&mut self, key: &GroupKey, ids: Vec<String>) {
        let (namespace, group) = key;
        let group_slices = self.groups.get(key);
        for id in ids {
            let present = group_slices.is_some_and(|g| g.member_slice.contains_key(&id));
            let members = self.member_groups.entry(namespace.clone()).or_default();
            let groups = members.entry(id.clone()).or_default();
            let at = groups.iter().position(|g| **g == **group);
            match (present, at) {
                (true, None) => groups.push(Arc::from(group.as_str())),
                (false, Some(at)) => {
                    groups.swap_remove(at);
                    if groups.is_empty() {
                        members.remove(&id);
                    }
                }
                _ => {}
            }
        }
    }

    /// Rebuilds the reverse index of the namespaces `scope` covers.
    fn reindex_scope(&mut self, scope: &Option<String>) {
        self.member_groups
            .retain(|namespace, _| !in_scope(scope, namespace));
        for ((namespace, group), slices) in &self.groups {
            if !in_scope(scope, namespace) {
                continue;
            }
            let group: Arc<str> = Arc::from(group.as_str());
            let members = self.member_groups.entry(namespace.clone()).or_default();
            for id in slices.member_slice.keys() {
                members.entry(id.clone()).or_default().push(group.clone());
            }
        }
    }
}

impl MembershipIndex {
    /// Changes whenever a watch event was applied.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn is_synced(&self) -> bool {
        self.inner.lock().expect("index lock").synced
    }

    /// A copy of one group's slices, if the index is synced.
    pub fn group(&self, namespace: &str, group: &str) -> Option<GroupSlices> {
        let inner = self.inner.lock().expect("index lock");
        inner.synced.then(|| {
            inner
                .groups
                .get(&(namespace.to_owned(), group.to_owned()))
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Whether `member` is in one of the group's slices; `None` until the
    /// index is synced.
    pub fn contains(&self, namespace: &str, group: &str, member: &str) -> Option<bool> {
        let inner = self.inner.lock().expect("index lock");
        inner.synced.then(|| {
            inner
                .groups
                .get(&(namespace.to_owned(), group.to_owned()))
                .is_some_and(|g| g.member_slice.contains_key(member))
        })
    }

    /// Plans a membership change against the index without copying the
    /// group; `None` when the index can't answer (not synced, or a member to
    /// remove it doesn't know).
    pub fn plan(
        &self,
        namespace: &str,
        group: &str,
        add: &[GroupMember],
        remove: &[String],
    ) -> Option<SlicePlan> {
        let inner = self.inner.lock().expect("index lock");
        if !inner.synced {
            return None;
        }
        let empty = GroupSlices::default();
        let slices = inner
            .groups
            .get(&(namespace.to_owned(), group.to_owned()))
            .unwrap_or(&empty);
        if remove
            .iter()
            .any(|id| !slices.member_slice.contains_key(id))
        {
            return None;
        }
        Some(plan(group, slices, add, remove))
    }

    /// Records a slice the service just wrote or read.
    pub fn observe(&self, slice: &GroupMemberSlice) {
        let mut inner = self.inner.lock().expect("index lock");
        inner.observe_slice(
            key(slice),
            &slice.name_any(),
            version(slice),
            slice.spec.members.clone(),
        );
    }

    /// The policy of User `id`, if the index knows it. Unknown does not mean
    /// absent: it may have been created a moment ago (on another replica).
    pub fn user_policy(&self, namespace: &str, id: &str) -> Option<String> {
        self.person(namespace, id).map(|p| p.policy.to_string())
    }

    /// What the gate reads of User `id`, if the index knows it (and it is
    /// not being deleted).
    pub fn person(&self, namespace: &str, id: &str) -> Option<Arc<Person>> {
        let inner = self.inner.lock().expect("index lock");
        inner.people.get(namespace)?.by_id.get(id).cloned()
    }

    /// The id of the User of `policy` whose SAML subject is `subject`, if
    /// the index knows one. A hint: the caller reads the User to confirm.
    pub fn user_by_subject(&self, namespace: &str, policy: &str, subject: &str) -> Option<String> {
        let inner = self.inner.lock().expect("index lock");
        let people = inner.people.get(namespace)?;
        people
            .by_subject
            .get(subject)?
            .iter()
            .find(|id| people.by_id.get(*id).is_some_and(|p| *p.policy == *policy))
            .cloned()
    }

    /// The id of the User of `policy` whose userName is `user_name` (as
    /// userNames compare), if the index knows one: only names a Group
    /// declares are kept, so the caller falls back to the userName claim.
    pub fn user_by_name(&self, namespace: &str, policy: &str, user_name: &str) -> Option<String> {
        let inner = self.inner.lock().expect("index lock");
        Some(
            inner
                .people
                .get(namespace)?
                .by_name(policy, user_name)?
                .to_owned(),
        )
    }

    /// The userNames of the active Users in the Group of `policy` whose
    /// display name is `display_name` (pushed into its slices or declared in
    /// its spec); `None` if there is no such Group. Members that are groups
    /// (nested) are not Users and are left out.
    pub fn active_member_names(
        &self,
        namespace: &str,
        policy: &str,
        display_name: &str,
    ) -> Option<BTreeSet<String>> {
        let inner = self.inner.lock().expect("index lock");
        let group = inner
            .group_names
            .by_display(namespace, policy, display_name)?;
        let key = (namespace.to_owned(), group.to_owned());
        let people = inner.people.get(namespace);
        let pushed = inner
            .groups
            .get(&key)
            .into_iter()
            .flat_map(|slices| slices.member_slice.keys())
            .map(String::as_str);
        let declared = inner
            .group_names
            .get(&key)
            .into_iter()
            .flat_map(|entry| entry.declared.iter())
            .filter_map(|who| match who {
                Declared::Id(id) => Some(&**id),
                Declared::UserName(name) => people?.by_name(policy, name),
            });
        let names = pushed
            .chain(declared)
            .filter_map(|id| people?.by_id.get(id))
            .filter(|person| person.active && *person.policy == *policy)
            .map(|person| person.user_name.to_string())
            .collect();
        Some(names)
    }

    /// The display names of the groups of `policy` that User `id` is in
    /// (pushed or declared), sorted.
    pub fn group_names_of(&self, namespace: &str, policy: &str, id: &str) -> Vec<Arc<str>> {
        let inner = self.inner.lock().expect("index lock");
        let pushed = inner
            .member_groups
            .get(namespace)
            .and_then(|members| members.get(id))
            .map_or(&[][..], Vec::as_slice);
        let by_id = inner
            .group_names
            .declaring(namespace, &Declared::Id(id.into()));
        let by_name = inner
            .people
            .get(namespace)
            .and_then(|people| people.by_id.get(id))
            .map_or(&[][..], |person| {
                let name = Declared::UserName(fold_user_name(&person.user_name).into());
                inner.group_names.declaring(namespace, &name)
            });
        let mut names: Vec<Arc<str>> = pushed
            .iter()
            .chain(by_id)
            .chain(by_name)
            .filter_map(|group| {
                let entry = inner
                    .group_names
                    .get(&(namespace.to_owned(), group.to_string()))?;
                (*entry.policy == *policy).then(|| entry.display_name.clone())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The groups whose spec declares User `id`, by id or by its userName.
    pub fn groups_declaring(&self, namespace: &str, id: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("index lock");
        let mut groups: Vec<String> = inner
            .group_names
            .declaring(namespace, &Declared::Id(id.into()))
            .iter()
            .map(|group| group.to_string())
            .collect();
        if let Some(person) = inner.people.get(namespace).and_then(|p| p.by_id.get(id)) {
            let name = Declared::UserName(fold_user_name(&person.user_name).into());
            groups.extend(
                inner
                    .group_names
                    .declaring(namespace, &name)
                    .iter()
                    .map(|group| group.to_string()),
            );
        }
        groups
    }

    /// Records a User the service just wrote.
    pub fn observe_user(&self, user: &User) {
        let mut inner = self.inner.lock().expect("index lock");
        let (namespace, id) = (user.namespace().unwrap_or_default(), user.name_any());
        inner.change_person(&namespace, &id, |people| {
            observe_person(people, &user.metadata, Person::of_user(user))
        });
    }

    /// Records a Group the service just wrote: its display name.
    pub fn observe_group(&self, group: &Group) {
        let mut inner = self.inner.lock().expect("index lock");
        inner.set_group(
            (group.namespace().unwrap_or_default(), group.name_any()),
            Some(GroupEntry::new(
                &group.spec.policy,
                &group.spec.display_name,
                &group.spec.members,
            )),
        );
    }

    pub fn forget_group(&self, namespace: &str, group: &str) {
        let mut inner = self.inner.lock().expect("index lock");
        let key = (namespace.to_owned(), group.to_owned());
        if let Some(slices) = inner.groups.remove(&key) {
            let ids = slices.member_slice.into_keys().collect();
            inner.reindex(&key, ids);
        }
        inner.mark(&key);
    }

    /// From now on, records for a new reader which groups' members change;
    /// it takes them with [`MembershipIndex::take_changed_groups`] and the
    /// reader id this returns (each reader sees every change).
    pub fn track_group_changes(&self) -> usize {
        let mut inner = self.inner.lock().expect("index lock");
        inner.changed_groups.push(ChangedGroups::default());
        inner.changed_groups.len() - 1
    }

    /// The groups whose members (or their state) changed since `reader`
    /// last took them.
    pub fn take_changed_groups(&self, reader: usize) -> ChangedGroups {
        let mut inner = self.inner.lock().expect("index lock");
        inner
            .changed_groups
            .get_mut(reader)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Applies an event of the slice watch over `scope` (one namespace,
    /// or all).
    pub(crate) fn apply_slices(
        &self,
        scope: &Option<String>,
        event: watcher::Event<GroupMemberSlice>,
    ) {
        self.apply_slices_quietly(scope, event);
        self.changed();
    }

    fn apply_slices_quietly(
        &self,
        scope: &Option<String>,
        event: watcher::Event<GroupMemberSlice>,
    ) {
        let mut inner = self.inner.lock().expect("index lock");
        match event {
            watcher::Event::Apply(slice) => {
                let version = version(&slice);
                inner.observe_slice(key(&slice), &slice.name_any(), version, slice.spec.members);
            }
            watcher::Event::Delete(slice) => inner.forget_slice(&key(&slice), &slice.name_any()),
            watcher::Event::Init => {
                inner.relists.insert(scope.clone(), HashMap::new());
            }
            watcher::Event::InitApply(slice) => {
                if let Some(relist) = inner.relists.get_mut(scope) {
                    relist.entry(key(&slice)).or_default().observe(
                        &slice.name_any(),
                        version(&slice),
                        slice.spec.members,
                    );
                }
            }
            watcher::Event::InitDone => {
                if let Some(mut relist) = inner.relists.remove(scope) {
                    let listed_scope: Vec<GroupKey> = inner
                        .groups
                        .keys()
                        .filter(|(namespace, _)| in_scope(scope, namespace))
                        .cloned()
                        .collect();
                    // Keep our own writes that are newer than the list.
                    for group_key in listed_scope {
                        let current = inner.groups.remove(&group_key).unwrap_or_default();
                        let listed = relist.entry(group_key).or_default();
                        for (name, (rv, members)) in current.slices {
                            if listed
                                .slices
                                .get(&name)
                                .is_none_or(|(listed_rv, _)| *listed_rv < rv)
                            {
                                listed.observe(&name, rv, members);
                            }
                        }
                    }
                    inner.groups.extend(relist);
                    inner.reindex_scope(scope);
                }
                inner.listing.remove(&(Kind::Slices, scope.clone()));
                inner.mark_all();
                inner.set_synced();
            }
        }
    }

    /// Applies an event of the User watch over `scope`.
    pub(crate) fn apply_user(&self, scope: &Option<String>, event: watcher::Event<PersonView>) {
        self.apply_user_quietly(scope, event);
        self.changed();
    }

    fn apply_user_quietly(&self, scope: &Option<String>, event: watcher::Event<PersonView>) {
        let mut inner = self.inner.lock().expect("index lock");
        match event {
            watcher::Event::Apply(user) => {
                let person = Person::of_view(&user);
                let (namespace, id) = (user.namespace().unwrap_or_default(), user.name_any());
                inner.change_person(&namespace, &id, |people| {
                    observe_person(people, &user.metadata, person)
                });
            }
            watcher::Event::Delete(user) => {
                let (namespace, id) = (user.namespace().unwrap_or_default(), user.name_any());
                inner.change_person(&namespace, &id, |people| {
                    forget_person(people, &namespace, &id)
                });
            }
            watcher::Event::Init => {
                inner.people_relists.insert(scope.clone(), HashMap::new());
            }
            watcher::Event::InitApply(user) => {
                if let Some(relist) = inner.people_relists.get_mut(scope) {
                    observe_person(relist, &user.metadata, Person::of_view(&user));
                }
            }
            watcher::Event::InitDone => {
                // The list wins for the namespaces this watch covers: a user
                // missing from it is read from the API when SCIM asks, and a
                // session naming it is refused until it shows up.
                inner.listing.remove(&(Kind::Users, scope.clone()));
                inner.set_synced();
                inner.mark_all();
                if let Some(relist) = inner.people_relists.remove(scope) {
                    inner
                        .people
                        .retain(|namespace, _| !in_scope(scope, namespace));
                    inner.people.extend(relist);
                    inner.index_names(|namespace| in_scope(scope, namespace));
                }
            }
        }
    }

    /// Applies an event of the Group watch over `scope`.
    pub(crate) fn apply_group(&self, scope: &Option<String>, event: watcher::Event<GroupNameView>) {
        self.apply_group_quietly(scope, event);
        self.changed();
    }

    fn apply_group_quietly(&self, scope: &Option<String>, event: watcher::Event<GroupNameView>) {
        let mut inner = self.inner.lock().expect("index lock");
        match event {
            watcher::Event::Apply(group) => {
                let (key, entry) = GroupEntry::of_view(&group);
                inner.set_group(key, Some(entry));
            }
            watcher::Event::Delete(group) => {
                inner.set_group(GroupEntry::of_view(&group).0, None);
            }
            watcher::Event::Init => {
                inner
                    .group_name_relists
                    .insert(scope.clone(), HashMap::new());
            }
            watcher::Event::InitApply(group) => {
                if let Some(relist) = inner.group_name_relists.get_mut(scope) {
                    let (key, entry) = GroupEntry::of_view(&group);
                    relist.insert(key, entry);
                }
            }
            watcher::Event::InitDone => {
                inner.listing.remove(&(Kind::Groups, scope.clone()));
                inner.mark_all();
                inner.set_synced();
                if let Some(relist) = inner.group_name_relists.remove(scope) {
                    inner
                        .group_names
                        .replace(|namespace| in_scope(scope, namespace), relist);
                    inner.index_names(|namespace| in_scope(scope, namespace));
                }
            }
        }
    }

    /// Expects the first lists of Slices, Users and Groups of `scopes`
    /// (namespaces, or `None` for all): until each has arrived, the index
    /// is not synced. Called once, before the caches that feed it start
    /// (`directory::caches`).
    pub fn expect(&self, scopes: &[Option<String>]) {
        let mut inner = self.inner.lock().expect("index lock");
        inner.listing = scopes
            .iter()
            .flat_map(|s| [Kind::Slices, Kind::Users, Kind::Groups].map(|k| (k, s.clone())))
            .collect();
        inner.synced = inner.listing.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> GroupMember {
        GroupMember {
            value: id.into(),
            user_name: None,
            ..Default::default()
        }
    }

    fn slices_with(counts: &[(&str, usize)]) -> GroupSlices {
        let mut slices = GroupSlices::default();
        for (name, count) in counts {
            let members = (0..*count)
                .map(|i| (format!("{name}/m{i}"), SliceMember::default()))
                .collect();
            slices.observe(name, 1, members);
        }
        slices
    }

    fn slice_in(namespace: &str, group: &str, member: &str) -> GroupMemberSlice {
        let mut slice = GroupMemberSlice::new(
            &format!("{group}-0"),
            crate::api::GroupMemberSliceSpec {
                group: group.into(),
                members: [(member.to_owned(), SliceMember::default())].into(),
            },
        );
        slice.metadata.namespace = Some(namespace.into());
        slice.metadata.resource_version = Some("1".into());
        slice
    }

    #[test]
    fn one_namespaces_relist_leaves_the_other_namespaces_groups_alone() {
        let index = MembershipIndex::default();
        let (a, b) = (Some("a".to_owned()), Some("b".to_owned()));
        index.inner.lock().unwrap().listing =
            [(Kind::Slices, a.clone()), (Kind::Slices, b.clone())].into();
        for (scope, namespace) in [(&a, "a"), (&b, "b")] {
            index.apply_slices(scope, watcher::Event::Init);
            index.apply_slices(
                scope,
                watcher::Event::InitApply(slice_in(namespace, "g", "m")),
            );
            assert!(!index.is_synced(), "synced before every namespace listed");
            index.apply_slices(scope, watcher::Event::InitDone);
        }
        assert!(index.is_synced());
        // Namespace a relists and finds its slice changed: b's group stays.
        let mut changed = slice_in("a", "g", "n");
        changed.metadata.resource_version = Some("2".into());
        index.apply_slices(&a, watcher::Event::Init);
        index.apply_slices(&a, watcher::Event::InitApply(changed));
        index.apply_slices(&a, watcher::Event::InitDone);
        assert_eq!(index.contains("a", "g", "m"), Some(false));
        assert_eq!(index.contains("a", "g", "n"), Some(true));
        assert_eq!(index.contains("b", "g", "m"), Some(true));
    }

    fn group_named(namespace: &str, name: &str, policy: &str, display: &str) -> GroupNameView {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"policy": policy, "displayName": display},
        }))
        .unwrap()
    }

    fn slice_of(group: &str, n: usize, members: &[&str], rv: &str) -> GroupMemberSlice {
        let mut slice = slice_in("a", group, members.first().copied().unwrap_or("x"));
        slice.metadata.name = Some(format!("{group}-{n}"));
        slice.metadata.resource_version = Some(rv.into());
        slice.spec.members = members
            .iter()
            .map(|m| ((*m).to_owned(), SliceMember::default()))
            .collect();
        slice
    }

    #[test]
    fn the_groups_of_a_member_follow_every_slice_change_and_relist() {
        let index = MembershipIndex::default();
        let scope = None;
        index.inner.lock().unwrap().listing = [(Kind::Groups, None)].into();
        index.apply_group(&scope, watcher::Event::Init);
        for (name, policy, display) in [
            ("g1", "p", "Admins"),
            ("g2", "p", "Dev"),
            ("g3", "q", "Other"),
        ] {
            index.apply_group(
                &scope,
                watcher::Event::InitApply(group_named("a", name, policy, display)),
            );
        }
        index.apply_group(&scope, watcher::Event::InitDone);
        let names = |id: &str| -> Vec<String> {
            index
                .group_names_of("a", "p", id)
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        index.apply_slices(
            &scope,
            watcher::Event::Apply(slice_of("g1", 0, &["m", "n"], "1")),
        );
        index.apply_slices(
            &scope,
            watcher::Event::Apply(slice_of("g2", 0, &["m"], "2")),
        );
        index.apply_slices(
            &scope,
            watcher::Event::Apply(slice_of("g3", 0, &["m"], "3")),
        );
        assert_eq!(names("m"), ["Admins", "Dev"], "only the policy's groups");
        assert_eq!(names("n"), ["Admins"]);
        // A removal in one slice, a member in two slices of one group.
        index.apply_slices(
            &scope,
            watcher::Event::Apply(slice_of("g1", 0, &["n"], "4")),
        );
        index.apply_slices(
            &scope,
            watcher::Event::Apply(slice_of("g2", 1, &["m"], "5")),
        );
        index.apply_slices(
            &scope,
            watcher::Event::Delete(slice_of("g2", 0, &["m"], "6")),
        );
        assert_eq!(names("m"), ["Dev"]);
        index.forget_group("a", "g2");
        assert!(names("m").is_empty());
        // A relist rebuilds it from what was listed.
        index.apply_slices(&scope, watcher::Event::Init);
        index.apply_slices(
            &scope,
            watcher::Event::InitApply(slice_of("g2", 0, &["n", "m"], "9")),
        );
        index.apply_slices(&scope, watcher::Event::InitDone);
        assert_eq!(names("m"), ["Dev"]);
        assert_eq!(names("n"), ["Admins", "Dev"]);
        // A renamed group shows its new name.
        index.apply_group(
            &scope,
            watcher::Event::Apply(group_named("a", "g2", "p", "Developers")),
        );
        assert_eq!(names("n"), ["Admins", "Developers"]);
    }

    #[test]
    fn additions_fill_the_open_slice_then_open_new_ones() {
        let slices = slices_with(&[("g-0", SLICE_CAPACITY), ("g-1", SLICE_CAPACITY - 2)]);
        let add: Vec<_> = (0..5).map(|i| member(&format!("new{i}"))).collect();
        let plan = plan("g", &slices, &add, &[]);
        assert_eq!(plan.patches["g-1"].len(), 2);
        assert_eq!(plan.patches["g-2"].len(), 3);
        assert_eq!(plan.create, BTreeSet::from(["g-2".to_owned()]));
        assert!(
            !plan.patches.contains_key("g-0"),
            "a full slice is not touched"
        );
    }

    #[test]
    fn a_change_of_k_members_touches_slices_in_proportion_to_k_not_to_the_group() {
        let big = slices_with(
            &(0..50)
                .map(|i| {
                    (
                        ["g-", &i.to_string()].concat().leak() as &str,
                        SLICE_CAPACITY,
                    )
                })
                .collect::<Vec<_>>(),
        );
        let add: Vec<_> = (0..256).map(|i| member(&format!("new{i}"))).collect();
        let plan = plan("g", &big, &add, &[]);
        assert_eq!(plan.patches.len(), 1, "256 new members fit one new slice");
        assert_eq!(plan.create.len(), 1);
    }

    #[test]
    fn removals_go_to_the_slice_holding_the_member_and_unknown_ones_are_ignored() {
        let slices = slices_with(&[("g-0", 3), ("g-1", 3)]);
        let plan = plan(
            "g",
            &slices,
            &[],
            &["g-1/m2".to_owned(), "stranger".to_owned()],
        );
        assert_eq!(plan.patches.len(), 1);
        assert_eq!(plan.patches["g-1"]["g-1/m2"], Value::Null);
    }

    #[test]
    fn present_and_repeated_members_are_not_added_twice() {
        let slices = slices_with(&[("g-0", 2)]);
        let plan = plan(
            "g",
            &slices,
            &[member("g-0/m0"), member("x"), member("x")],
            &[],
        );
        assert_eq!(plan.patches["g-0"].len(), 1);
        assert!(plan.patches["g-0"].contains_key("x"));
    }

    #[test]
    fn an_older_version_of_a_slice_does_not_overwrite_a_newer_one() {
        let mut slices = GroupSlices::default();
        slices.observe(
            "g-0",
            5,
            BTreeMap::from([("a".to_owned(), SliceMember::default())]),
        );
        slices.observe("g-0", 4, BTreeMap::new());
        assert_eq!(slices.member_count(), 1);
        slices.observe("g-0", 6, BTreeMap::new());
        assert_eq!(slices.member_count(), 0);
    }

    #[test]
    fn a_login_finds_its_user_by_subject_within_the_policy_only() {
        let index = MembershipIndex::default();
        let user = |id: &str, policy: &str, subject: Option<&str>| {
            let mut user = crate::api::User::new(
                id,
                crate::api::UserSpec {
                    policy: policy.into(),
                    user_name: format!("{id}@example.com"),
                    subject: subject.map(str::to_owned),
                    ..Default::default()
                },
            );
            user.metadata.namespace = Some("ns".into());
            user
        };
        index.observe_user(&user("a", "wiki", Some("okta|1")));
        index.observe_user(&user("b", "crm", Some("okta|1")));
        assert_eq!(
            index.user_by_subject("ns", "wiki", "okta|1").as_deref(),
            Some("a")
        );
        assert_eq!(
            index.user_by_subject("ns", "crm", "okta|1").as_deref(),
            Some("b")
        );
        assert_eq!(index.user_by_subject("other", "wiki", "okta|1"), None);
        // A changed subject moves the entry; a deleted user leaves none.
        index.observe_user(&user("a", "wiki", Some("okta|2")));
        assert_eq!(index.user_by_subject("ns", "wiki", "okta|1"), None);
        assert_eq!(
            index.user_by_subject("ns", "wiki", "okta|2").as_deref(),
            Some("a")
        );
        let mut deleted = user("a", "wiki", Some("okta|2"));
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        index.observe_user(&deleted);
        assert_eq!(index.user_by_subject("ns", "wiki", "okta|2"), None);
        assert_eq!(
            index.user_by_subject("ns", "crm", "okta|1").as_deref(),
            Some("b")
        );
    }

    #[test]
    fn a_group_kept_in_git_reaches_its_people_by_user_name_and_they_reach_it() {
        let index = MembershipIndex::default();
        let user = |id: &str, user_name: &str, active: bool| {
            let mut user = crate::api::User::new(
                id,
                crate::api::UserSpec {
                    policy: "p".into(),
                    user_name: user_name.into(),
                    active: Some(active),
                    ..Default::default()
                },
            );
            user.metadata.namespace = Some("a".into());
            user
        };
        index.observe_user(&user("u-ada", "ada@example.com", true));
        index.observe_user(&user("u-bob", "bob@example.com", false));
        // No Group names Ada yet: her userName is not kept.
        assert_eq!(index.user_by_name("a", "p", "ada@example.com"), None);
        let scope = Some("a".to_owned());
        let declared: GroupNameView = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "g-git", "namespace": "a"},
            "spec": {"policy": "p", "displayName": "Platform", "members": [
                {"userName": "Ada@Example.com"}, {"userName": "bob@example.com"},
                {"userName": "nobody@example.com"}, {"value": "u-carl"}
            ]},
        }))
        .unwrap();
        index.apply_group(&scope, watcher::Event::Apply(declared.clone()));
        assert_eq!(
            index.user_by_name("a", "p", "ADA@example.com").as_deref(),
            Some("u-ada")
        );
        assert_eq!(index.user_by_name("a", "q", "ada@example.com"), None);
        index.observe_user(&user("u-carl", "carl@example.com", true));
        // Declared before the User exists: found once it does.
        assert_eq!(index.user_by_name("a", "p", "nobody@example.com"), None);
        index.observe_user(&user("u-nobody", "nobody@example.com", false));
        assert_eq!(
            index
                .user_by_name("a", "p", "nobody@example.com")
                .as_deref(),
            Some("u-nobody")
        );
        // Relists of either kind rebuild the lookup.
        index.apply_user(&scope, watcher::Event::Init);
        for (id, name) in [("u-ada", "ada@example.com"), ("u-eve", "eve@example.com")] {
            let view: PersonView =
                serde_json::from_value(serde_json::to_value(user(id, name, true)).unwrap())
                    .unwrap();
            index.apply_user(&scope, watcher::Event::InitApply(view));
        }
        index.apply_user(&scope, watcher::Event::InitDone);
        assert_eq!(
            index.user_by_name("a", "p", "ada@example.com").as_deref(),
            Some("u-ada")
        );
        assert_eq!(index.user_by_name("a", "p", "nobody@example.com"), None);
        assert_eq!(index.user_by_name("a", "p", "eve@example.com"), None);
        index.apply_group(&scope, watcher::Event::Init);
        index.apply_group(&scope, watcher::Event::InitApply(declared));
        index.apply_group(&scope, watcher::Event::InitDone);
        assert_eq!(
            index.user_by_name("a", "p", "ada@example.com").as_deref(),
            Some("u-ada")
        );
        for (id, name) in [("u-bob", "bob@example.com"), ("u-carl", "carl@example.com")] {
            index.observe_user(&user(id, name, id == "u-carl"));
        }
        // Bob is inactive; nobody has no User.
        assert_eq!(
            index.active_member_names("a", "p", "Platform"),
            Some(
                ["ada@example.com", "carl@example.com"]
                    .map(String::from)
                    .into()
            )
        );
        assert_eq!(
            index.group_names_of("a", "p", "u-ada"),
            vec![Arc::from("Platform")]
        );
        assert_eq!(
            index.group_names_of("a", "p", "u-carl"),
            vec![Arc::from("Platform")]
        );
        assert!(index.group_names_of("a", "q", "u-ada").is_empty());
        assert_eq!(
            index.groups_declaring("a", "u-ada"),
            vec!["g-git".to_owned()]
        );
        // Renamed: the userName no longer matches.
        index.observe_user(&user("u-ada", "ada.lovelace@example.com", true));
        assert_eq!(index.user_by_name("a", "p", "ada@example.com"), None);
        assert!(index.group_names_of("a", "p", "u-ada").is_empty());
    }

    #[test]
    fn the_groups_a_change_touches_are_reported_once_asked_for() {
        let index = MembershipIndex::default();
        let scope = Some("a".to_owned());
        let ops = || group_named("a", "g-ops", "p", "Ops");
        index.apply_group(&scope, watcher::Event::Apply(ops()));
        index.observe(&slice_in("a", "g-ops", "u-1"));
        let reader = index.track_group_changes();
        let other = index.track_group_changes();
        index.apply_group(
            &scope,
            watcher::Event::Apply(group_named("a", "g-dev", "p", "Dev")),
        );
        index.take_changed_groups(reader);
        let key = |display: &str| ("a".to_owned(), Arc::from("p"), Arc::from(display));
        // A member joins Ops: Ops, not Dev.
        index.observe(&slice_of("g-ops", 0, &["u-1", "u-2"], "2"));
        let changed = index.take_changed_groups(reader);
        assert_eq!(changed.groups, [key("Ops")].into());
        assert!(!changed.all);
        assert_eq!(
            index.take_changed_groups(reader),
            ChangedGroups::default(),
            "taken"
        );
        // u-2 deactivated: the groups it is in.
        let mut user = crate::api::User::new(
            "u-2",
            crate::api::UserSpec {
                policy: "p".into(),
                user_name: "u2@example.com".into(),
                active: Some(false),
                ..Default::default()
            },
        );
        user.metadata.namespace = Some("a".into());
        index.observe_user(&user);
        assert_eq!(
            index.take_changed_groups(reader).groups,
            [key("Ops")].into()
        );
        // Renamed: the old display name and the new one.
        index.apply_group(
            &scope,
            watcher::Event::Apply(group_named("a", "g-ops", "p", "Operations")),
        );
        assert_eq!(
            index.take_changed_groups(reader).groups,
            [key("Ops"), key("Operations")].into()
        );
        // A relist: anything may have changed.
        index.apply_group(&scope, watcher::Event::Init);
        index.apply_group(&scope, watcher::Event::InitDone);
        assert!(index.take_changed_groups(reader).all);
        // Another reader sees every change too, and only once.
        let seen = index.take_changed_groups(other);
        assert!(seen.all && seen.groups.contains(&key("Operations")));
        assert_eq!(index.take_changed_groups(other), ChangedGroups::default());
    }
}
