//! The process's watch-fed caches: one watch per kind and scope (a watched
//! namespace, or all of them), started once per process and read by both
//! sides. The HTTP side's membership index and policy cache are fed from
//! the same events as the stores the controllers read when this replica
//! leads, so each object is listed, sent and parsed once per process, and a
//! replica that takes over leads with warm caches.
//!
//! Each store keeps a trimmed copy (see the `trim_*` functions and
//! [`UserView`]); what the index keeps of Users and Groups is split off the
//! same parsed event before the copy is stored.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::api::{Group, GroupMemberSlice, ProvisioningPolicy};
use crate::directory::membership::MembershipIndex;
use crate::directory::slices::SliceIndex;
use crate::directory::views::{GroupNameView, SliceWatch, UserView, UserWatch};

/// Events a subscriber may fall behind before the watch waits for it.
const BUFFER: usize = 1024;

/// One watch's store, and subscriptions to its changes.
pub struct Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    /// A subscription drained by the feed itself: each new subscriber is a
    /// copy of it, so it starts at the latest change. (A shared store
    /// hands out subscriptions only before it is fed.)
    keeper: Arc<Mutex<Pin<Box<ReflectHandle<K>>>>>,
    listed: tokio::sync::watch::Receiver<bool>,
}

impl<K> Clone for Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            keeper: self.keeper.clone(),
            listed: self.listed.clone(),
        }
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The changes from now on (not the objects already listed: read the
    /// store for those). Drain it, or the watch waits for it.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        let keeper = self.keeper.lock().expect("cache keeper lock");
        Pin::get_ref(keeper.as_ref()).clone()
    }

    /// Whether the first full list has arrived (true from then on).
    pub fn listed(&self) -> tokio::sync::watch::Receiver<bool> {
        self.listed.clone()
    }
}

/// A cache of `K` fed by a watch of `W` (the same kind, parsed as `W`):
/// with [`Keep::Objects`] each event is turned into `K`'s by `project`
/// (which may also feed an index); with [`Keep::Nothing`] it only goes to
/// `observe` (which feeds the index), and no `K` is built. The cache, and
/// the future that feeds it, forever.
fn cache<W, K>(
    api: Api<W>,
    keep: Keep,
    project: impl FnMut(watcher::Event<W>) -> watcher::Event<K> + Send + 'static,
    mut observe: impl FnMut(watcher::Event<W>) + Send + 'static,
) -> (Cache<K>, BoxFuture<'static, ()>)
where
    W: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store_shared(BUFFER);
    let keeper = Arc::new(Mutex::new(Box::pin(
        writer.subscribe().expect("a shared store has subscribers"),
    )));
    let (listed_tx, listed) = tokio::sync::watch::channel(false);
    // A streamed first list where the API server serves one, else pages of
    // 500; never `resourceVersion=0` (see `cluster::watch_config`).
    let events = watcher(api, crate::cluster::watch_config()).default_backoff();
    let failed = |error: watcher::Error| {
        tracing::warn!(%error, kind = K::kind(&()).as_ref(), "watch failed; retrying");
    };
    let feed = match keep {
        // Listed once the store holds the list (after `reflect_shared`).
        Keep::Objects => events
            .map_ok(project)
            .reflect_shared(writer)
            .for_each(move |event| {
                match event {
                    Ok(watcher::Event::InitDone) => drop(listed_tx.send_replace(true)),
                    Ok(_) => {}
                    Err(error) => failed(error),
                }
                std::future::ready(())
            })
            .boxed(),
        // The writer goes: the store stays empty, its subscriptions end.
        Keep::Nothing => events
            .for_each(move |event| {
                match event {
                    Ok(event) => {
                        let listed = matches!(event, watcher::Event::InitDone);
                        observe(event);
                        if listed {
                            listed_tx.send_replace(true);
                        }
                    }
                    Err(error) => failed(error),
                }
                std::future::ready(())
            })
            .boxed(),
    };
    // Polled with the feed, in one task: a subscription that read a change
    // whose object is gone again answers Pending without a wake-up, and the
    // feed's next event polls it again.
    let drain = {
        let keeper = keeper.clone();
        futures::future::poll_fn(move |cx| {
            let mut keeper = keeper.lock().expect("cache keeper lock");
            while let Poll::Ready(next) = keeper.as_mut().poll_next(cx) {
                if next.is_none() {
                    return Poll::Ready(());
                }
            }
            Poll::Pending
        })
    };
    let run = async move {
        futures::join!(feed, drain);
    };
    (
        Cache {
            store,
            keeper,
            listed,
        },
        run.boxed(),
    )
}

/// Whether a cache keeps the objects (for controllers), or only feeds the
/// index and tells when it has listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Objects,
    Nothing,
}

/// The caches of one scope: a watched namespace, or all of them (`None`).
#[derive(Clone)]
pub struct ScopeCaches {
    pub scope: Option<String>,
    pub users: Cache<UserView>,
    pub groups: Cache<Group>,
    pub policies: Cache<ProvisioningPolicy>,
    pub slices: Cache<GroupMemberSlice>,
    /// The slices of each Group, from the slice events.
    pub slice_index: SliceIndex,
}

impl ScopeCaches {
    /// Starts the caches of `scope`, feeding `index` (which must expect
    /// the scope: [`MembershipIndex::expect`]): the caches, and the future
    /// that feeds them, forever. With `keep` [`Keep::Nothing`] (a process
    /// that never runs controllers) the stores of Users, Groups and slices
    /// stay empty; policies are kept either way, for the policy cache.
    pub fn start(
        client: &kube::Client,
        scope: Option<String>,
        index: &MembershipIndex,
        keep: Keep,
    ) -> (Self, BoxFuture<'static, ()>) {
        fn api<K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>>(
            client: &kube::Client,
            scope: &Option<String>,
        ) -> Api<K> {
            match scope {
                Some(namespace) => Api::namespaced(client.clone(), namespace),
                None => Api::all(client.clone()),
            }
        }
        let (users, users_feed) = {
            let api = api::<UserWatch>(client, &scope);
            let (index, scope) = (index.clone(), scope.clone());
            let people = {
                let (index, scope) = (index.clone(), scope.clone());
                move |event| index.apply_user(&scope, map(event, UserWatch::into_person))
            };
            let people_and_views = move |event| {
                let (people, views) = split(event, UserWatch::split);
                index.apply_user(&scope, people);
                views
            };
            cache(api, keep, people_and_views, people)
        };
        let (groups, groups_feed) = {
            let api = api::<Group>(client, &scope);
            let (index, scope) = (index.clone(), scope.clone());
            let names = move |event: &watcher::Event<Group>| {
                index.apply_group(&scope, project(event, GroupNameView::of_group));
            };
            let kept = {
                let names = names.clone();
                move |event: watcher::Event<Group>| {
                    names(&event);
                    event.modify(trim_group)
                }
            };
            cache(api, keep, kept, move |event| names(&event))
        };
        let slice_index = SliceIndex::default();
        let (slices, slices_feed) = {
            let api = api::<SliceWatch>(client, &scope);
            let (index, scope, slice_index) = (index.clone(), scope.clone(), slice_index.clone());
            // The index takes the slice; a kept slice holds its members a
            // second time.
            let members = move |event: watcher::Event<GroupMemberSlice>| {
                slice_index.observe(&event);
                index.apply_slices(&scope, event);
            };
            let kept = {
                let members = members.clone();
                move |event| {
                    let slice = map(event, SliceWatch::into_slice);
                    let kept = slice.clone();
                    members(slice);
                    kept
                }
            };
            cache(api, keep, kept, move |event| {
                members(map(event, SliceWatch::into_slice))
            })
        };
        let (policies, policies_feed) = cache(
            api::<ProvisioningPolicy>(client, &scope),
            Keep::Objects,
            |event: watcher::Event<ProvisioningPolicy>| event.modify(trim_policy),
            drop,
        );
        let feed = async move {
            futures::join!(users_feed, groups_feed, slices_feed, policies_feed);
        };
        (
            Self {
                scope,
                users,
                groups,
                policies,
                slices,
                slice_index,
            },
            feed.boxed(),
        )
    }

    /// Whether every cache of the scope has its first full list.
    pub fn listed(&self) -> Vec<tokio::sync::watch::Receiver<bool>> {
        vec![
            self.users.listed(),
            self.groups.listed(),
            self.policies.listed(),
            self.slices.listed(),
        ]
    }
}

/// The caches of every watched namespace (`--watch-namespace`; none: one
/// set over all namespaces), feeding `index`, keeping objects as `keep`
/// says: the caches, and the future that feeds them, forever.
pub fn start(
    client: &kube::Client,
    namespaces: &[String],
    index: &MembershipIndex,
    keep: Keep,
) -> (Vec<ScopeCaches>, BoxFuture<'static, ()>) {
    let scopes = scopes(namespaces);
    index.expect(&scopes);
    let (caches, feeds): (Vec<_>, Vec<_>) = scopes
        .into_iter()
        .map(|scope| ScopeCaches::start(client, scope, index, keep))
        .unzip();
    let feed = async move {
        futures::future::join_all(feeds).await;
    };
    (caches, feed.boxed())
}

/// One scope per watched namespace, sorted, or `None` for all of them.
pub fn scopes(namespaces: &[String]) -> Vec<Option<String>> {
    let mut scopes: Vec<Option<String>> = namespaces.iter().cloned().map(Some).collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        scopes.push(None);
    }
    scopes
}

/// `event` with each object turned into `A`'s and `B`'s.
fn split<W, A, B>(
    event: watcher::Event<W>,
    split: impl Fn(W) -> (A, B),
) -> (watcher::Event<A>, watcher::Event<B>) {
    use watcher::Event::*;
    match event {
        Apply(object) => {
            let (a, b) = split(object);
            (Apply(a), Apply(b))
        }
        Delete(object) => {
            let (a, b) = split(object);
            (Delete(a), Delete(b))
        }
        Init => (Init, Init),
        InitApply(object) => {
            let (a, b) = split(object);
            (InitApply(a), InitApply(b))
        }
        InitDone => (InitDone, InitDone),
    }
}

/// `event` with each object turned into `f`'s.
fn map<W, K>(event: watcher::Event<W>, f: impl Fn(W) -> K) -> watcher::Event<K> {
    use watcher::Event::*;
    match event {
        Apply(object) => Apply(f(object)),
        Delete(object) => Delete(f(object)),
        Init => Init,
        InitApply(object) => InitApply(f(object)),
        InitDone => InitDone,
    }
}

/// `event` with each object projected by `f`.
fn project<K, P>(event: &watcher::Event<K>, f: impl Fn(&K) -> P) -> watcher::Event<P> {
    use watcher::Event::*;
    match event {
        Apply(object) => Apply(f(object)),
        Delete(object) => Delete(f(object)),
        Init => Init,
        InitApply(object) => InitApply(f(object)),
        InitDone => InitDone,
    }
}

/// Never read from the caches, and the bulk of a small object (kubectl's
/// last-applied copy, audit annotations): not cached.
fn trim<K: Resource>(object: &mut K) {
    object.managed_fields_mut().clear();
    object.annotations_mut().clear();
}

/// [`trim`], but a policy keeps the operator's approval of held
/// deprovisioning (the one annotation the controllers read).
fn trim_policy(policy: &mut ProvisioningPolicy) {
    let approval = policy
        .annotations_mut()
        .remove_entry(crate::api::APPROVAL_ANNOTATION);
    trim(policy);
    policy.annotations_mut().extend(approval);
}

/// [`trim`], but a group keeps the deadline of the SCIM request that
/// created it, which tells an abandoned creation.
fn trim_group(group: &mut Group) {
    let deadline = group
        .annotations_mut()
        .remove_entry(crate::api::REQUEST_DEADLINE_ANNOTATION);
    trim(group);
    group.annotations_mut().extend(deadline);
}
