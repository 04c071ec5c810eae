//! Which GroupMemberSlices belong to which Group, kept from the same watch
//! events that feed the slice cache, so a Group's reconcile and its slice
//! mapping read its own slices instead of scanning all of them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher;

use crate::api::GroupMemberSlice;

use crate::directory::group_names::GroupKey;

/// Slice names by (namespace, group).
#[derive(Clone, Default)]
pub struct SliceIndex {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Default)]
struct Inner {
    by_group: HashMap<GroupKey, BTreeSet<String>>,
    /// What a relist has seen so far; swapped in when it completes.
    relist: Option<HashMap<GroupKey, BTreeSet<String>>>,
}

fn key(slice: &GroupMemberSlice) -> GroupKey {
    (
        slice.namespace().unwrap_or_default(),
        slice.spec.group.clone(),
    )
}

fn insert(map: &mut HashMap<GroupKey, BTreeSet<String>>, slice: &GroupMemberSlice) {
    map.entry(key(slice)).or_default().insert(slice.name_any());
}

fn remove(map: &mut HashMap<GroupKey, BTreeSet<String>>, slice: &GroupMemberSlice) {
    let key = key(slice);
    if let Some(names) = map.get_mut(&key) {
        names.remove(&slice.name_any());
        if names.is_empty() {
            map.remove(&key);
        }
    }
}

impl SliceIndex {
    /// Takes in one watch event (before the cache does).
    pub fn observe(&self, event: &watcher::Event<GroupMemberSlice>) {
        let mut inner = self.inner.write().expect("slice index lock");
        match event {
            watcher::Event::Apply(slice) => insert(&mut inner.by_group, slice),
            watcher::Event::Delete(slice) => remove(&mut inner.by_group, slice),
            watcher::Event::Init => inner.relist = Some(HashMap::new()),
            watcher::Event::InitApply(slice) => {
                if let Some(relist) = &mut inner.relist {
                    insert(relist, slice);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = inner.relist.take() {
                    inner.by_group = relist;
                }
            }
        }
    }

    /// The names of `group`'s slices in `namespace`.
    pub fn of(&self, namespace: &str, group: &str) -> Vec<String> {
        let inner = self.inner.read().expect("slice index lock");
        inner
            .by_group
            .get(&(namespace.to_owned(), group.to_owned()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GroupMemberSliceSpec;

    fn slice(name: &str, group: &str) -> GroupMemberSlice {
        let mut slice = GroupMemberSlice::new(
            name,
            GroupMemberSliceSpec {
                group: group.into(),
                members: Default::default(),
            },
        );
        slice.metadata.namespace = Some("ns".into());
        slice
    }

    #[test]
    fn slices_are_found_by_group_through_applies_deletes_and_relists() {
        let index = SliceIndex::default();
        index.observe(&watcher::Event::Apply(slice("g1-0", "g1")));
        index.observe(&watcher::Event::Apply(slice("g1-1", "g1")));
        index.observe(&watcher::Event::Apply(slice("g2-0", "g2")));
        assert_eq!(index.of("ns", "g1"), ["g1-0", "g1-1"]);
        index.observe(&watcher::Event::Delete(slice("g1-0", "g1")));
        assert_eq!(index.of("ns", "g1"), ["g1-1"]);
        assert!(index.of("other", "g1").is_empty());
        // A relist replaces what it doesn't list, once it is done.
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(slice("g2-0", "g2")));
        assert_eq!(index.of("ns", "g1"), ["g1-1"]);
        index.observe(&watcher::Event::InitDone);
        assert!(index.of("ns", "g1").is_empty());
        assert_eq!(index.of("ns", "g2"), ["g2-0"]);
    }
}
