//! What the membership index keeps of each Group: its policy, its display
//! name and the Users its spec declares (a Group kept in git names people
//! by id or by userName), with the lookups the gate, a login and an
//! AccessGrant make: a group by display name, and the groups declaring a
//! person. Members pushed over SCIM live in slices, indexed beside this.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;

use crate::api::{GroupMember, MemberKind};
use crate::directory::views::GroupNameView;
use crate::identity::fold_user_name;

/// (namespace, group name).
pub type GroupKey = (String, String);

/// A User a Group's spec declares.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Declared {
    /// By SCIM id (object name).
    Id(Box<str>),
    /// By userName, folded as userNames are compared.
    UserName(Box<str>),
}

impl Declared {
    /// The declared User, if `member` is one (nested groups are not).
    fn of(member: &GroupMember) -> Option<Self> {
        if member.kind != MemberKind::User {
            return None;
        }
        Some(match &member.user_name {
            Some(name) => Self::UserName(fold_user_name(name).into()),
            None => Self::Id(member.value.as_str().into()),
        })
    }
}

/// One Group as the index keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub policy: Arc<str>,
    pub display_name: Arc<str>,
    pub declared: Box<[Declared]>,
}

impl GroupEntry {
    pub fn new(policy: &str, display_name: &str, members: &[GroupMember]) -> Self {
        Self {
            policy: crate::directory::intern::intern(policy),
            display_name: Arc::from(display_name),
            declared: members.iter().filter_map(Declared::of).collect(),
        }
    }

    pub fn of_view(group: &GroupNameView) -> (GroupKey, Self) {
        (
            (group.namespace().unwrap_or_default(), group.name_any()),
            Self::new(
                &group.spec.policy,
                &group.spec.display_name,
                &group.spec.members,
            ),
        )
    }
}

/// The Groups of the watched namespaces, with their reverse lookups.
#[derive(Default)]
pub struct GroupNames {
    entries: HashMap<GroupKey, GroupEntry>,
    /// (namespace, policy, display name) -> group name.
    by_display: HashMap<(String, Arc<str>, Arc<str>), String>,
    /// Namespace -> declared User -> the groups declaring it.
    declaring: HashMap<String, HashMap<Declared, Vec<Arc<str>>>>,
}

impl GroupNames {
    pub fn get(&self, key: &GroupKey) -> Option<&GroupEntry> {
        self.entries.get(key)
    }

    /// The name of the Group of `policy` called `display_name`.
    pub fn by_display(&self, namespace: &str, policy: &str, display_name: &str) -> Option<&str> {
        self.by_display
            .get(&(
                namespace.to_owned(),
                Arc::from(policy),
                Arc::from(display_name),
            ))
            .map(String::as_str)
    }

    /// The groups whose spec declares `who`.
    pub fn declaring(&self, namespace: &str, who: &Declared) -> &[Arc<str>] {
        self.declaring
            .get(namespace)
            .and_then(|declared| declared.get(who))
            .map_or(&[], Vec::as_slice)
    }

    pub fn insert(&mut self, key: GroupKey, entry: GroupEntry) {
        self.remove(&key);
        self.link(&key, &entry);
        self.entries.insert(key, entry);
    }

    pub fn remove(&mut self, key: &GroupKey) {
        if let Some(old) = self.entries.remove(key) {
            self.unlink(key, &old);
        }
    }

    /// Replaces the groups of the namespaces a relist covered (`listed`
    /// says which) with what it found.
    pub fn replace(&mut self, listed: impl Fn(&str) -> bool, found: HashMap<GroupKey, GroupEntry>) {
        let gone: Vec<GroupKey> = self
            .entries
            .keys()
            .filter(|(namespace, _)| listed(namespace))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
        for (key, entry) in found {
            self.insert(key, entry);
        }
    }

    fn link(&mut self, (namespace, group): &GroupKey, entry: &GroupEntry) {
        self.by_display.insert(
            (
                namespace.clone(),
                entry.policy.clone(),
                entry.display_name.clone(),
            ),
            group.clone(),
        );
        if entry.declared.is_empty() {
            return;
        }
        let declared = self.declaring.entry(namespace.clone()).or_default();
        let name: Arc<str> = Arc::from(group.as_str());
        for who in &entry.declared {
            let groups = declared.entry(who.clone()).or_default();
            if !groups.contains(&name) {
                groups.push(name.clone());
            }
        }
    }

    fn unlink(&mut self, (namespace, group): &GroupKey, entry: &GroupEntry) {
        let display = (
            namespace.clone(),
            entry.policy.clone(),
            entry.display_name.clone(),
        );
        if self.by_display.get(&display) == Some(group) {
            self.by_display.remove(&display);
        }
        let Some(declared) = self.declaring.get_mut(namespace) else {
            return;
        };
        for who in &entry.declared {
            if let Some(groups) = declared.get_mut(who) {
                groups.retain(|g| **g != **group);
                if groups.is_empty() {
                    declared.remove(who);
                }
            }
        }
        if declared.is_empty() {
            self.declaring.remove(namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_name(name: &str) -> GroupMember {
        GroupMember {
            user_name: Some(name.into()),
            ..Default::default()
        }
    }

    fn by_id(id: &str) -> GroupMember {
        GroupMember {
            value: id.into(),
            ..Default::default()
        }
    }

    fn key(namespace: &str, group: &str) -> GroupKey {
        (namespace.into(), group.into())
    }

    #[test]
    fn a_group_is_found_by_display_name_within_its_policy_and_namespace() {
        let mut names = GroupNames::default();
        names.insert(key("a", "g-1"), GroupEntry::new("p", "Ops", &[]));
        names.insert(key("a", "g-2"), GroupEntry::new("q", "Ops", &[]));
        names.insert(key("b", "g-3"), GroupEntry::new("p", "Ops", &[]));
        assert_eq!(names.by_display("a", "p", "Ops"), Some("g-1"));
        assert_eq!(names.by_display("a", "q", "Ops"), Some("g-2"));
        assert_eq!(names.by_display("b", "p", "Ops"), Some("g-3"));
        assert_eq!(names.by_display("a", "p", "ops"), None);
        // Renamed: the old name no longer finds it.
        names.insert(key("a", "g-1"), GroupEntry::new("p", "Platform", &[]));
        assert_eq!(names.by_display("a", "p", "Ops"), None);
        assert_eq!(names.by_display("a", "p", "Platform"), Some("g-1"));
        names.remove(&key("a", "g-1"));
        assert_eq!(names.by_display("a", "p", "Platform"), None);
    }

    #[test]
    fn declared_members_lead_back_to_their_groups_by_id_and_by_folded_user_name() {
        let mut names = GroupNames::default();
        let members = [by_name("Ada@Example.com"), by_id("u-2")];
        names.insert(key("a", "g-1"), GroupEntry::new("p", "Ops", &members));
        names.insert(
            key("a", "g-2"),
            GroupEntry::new("p", "Dev", &[by_id("u-2")]),
        );
        let ada = Declared::UserName(fold_user_name("ada@example.com").into());
        assert_eq!(names.declaring("a", &ada).len(), 1);
        assert_eq!(names.declaring("b", &ada).len(), 0);
        assert_eq!(names.declaring("a", &Declared::Id("u-2".into())).len(), 2);
        // Ada leaves g-1 in git.
        names.insert(
            key("a", "g-1"),
            GroupEntry::new("p", "Ops", &[by_id("u-2")]),
        );
        assert!(names.declaring("a", &ada).is_empty());
        names.replace(|namespace| namespace == "a", HashMap::new());
        assert!(names.declaring("a", &Declared::Id("u-2".into())).is_empty());
        assert_eq!(names.by_display("a", "p", "Dev"), None);
    }

    #[test]
    fn nested_groups_are_not_declared_users() {
        let nested = GroupMember {
            value: "g-9".into(),
            kind: MemberKind::Group,
            ..Default::default()
        };
        assert!(GroupEntry::new("p", "Ops", &[nested]).declared.is_empty());
    }
}
