//! One watch per kind, shared: a [`SharedWatch`] keeps a cache ([`Store`]) of one kind and hands
//! its changes to any number of controllers (as kube-runtime's shared reflector streams do),
//! plus a signal when an object is deleted, which shared streams do not carry. [`changed`]
//! passes on only the objects whose watched property (a kube-runtime predicate such as
//! `predicates::generation` or `predicates::labels`) changed.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt, future};
use kube::Resource;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{Predicate, PredicateConfig, WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

/// How many changes a subscriber may fall behind before the watch waits for it.
const BUFFER: usize = 1024;

/// Objects per page of a watch's (re-)list. A page is parsed whole before its objects are trimmed
/// and cached, so its size bounds the memory a list takes on top of the cache: 500 (client-go's
/// and kube's default) full objects with their field-ownership records made a controller's peak
/// when it started beside thousands of applied objects. 100 keeps that a fifth, for a few more
/// list requests.
pub const LIST_PAGE_SIZE: u32 = 100;

/// kubectl's copy of the object as it last applied it (client-side apply).
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from an object about to be cached what no controller reads: `metadata.managedFields`
/// (the field-ownership records, often as large as the rest of the object) and kubectl's
/// `last-applied-configuration` annotation (a second copy of the object). A cache of thousands
/// of objects is then a fraction of the size.
pub fn trim_for_cache<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// A watch of one kind whose cache and changes several controllers share.
pub struct SharedWatch<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    deleted: Vec<mpsc::UnboundedSender<()>>,
    /// What the controller drops from each object after [`trim_for_cache`] (nothing unless
    /// [`SharedWatch::keeping_only`] set it).
    trim: Option<fn(&mut K)>,
}

impl<K> SharedWatch<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// A watch not started yet; take subscriptions, then [`SharedWatch::run`] it.
    pub fn new() -> Self {
        let (store, writer) = reflector::store_shared(BUFFER);
        Self {
            store,
            writer,
            deleted: Vec::new(),
            trim: None,
        }
    }

    /// The same watch, with `trim` applied to every object after [`trim_for_cache`] and before
    /// the cache and the subscribers see it: for a controller that reads only part of the kind
    /// (another controller's part of the status, say), so that a cache of thousands of objects
    /// holds only what its decisions read.
    pub fn keeping_only(mut self, trim: fn(&mut K)) -> Self {
        self.trim = Some(trim);
        self
    }

    /// The cache, complete once [`Store::wait_until_ready`] returns.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every object as it is created or changed (and all of them after each full list).
    /// A subscriber must be polled, or the watch waits for it.
    pub fn subscribe(&self) -> ReflectHandle<K> {
        // A writer made by `store_shared` always has a dispatcher.
        self.writer
            .subscribe()
            .unwrap_or_else(|| unreachable!("shared store without dispatcher"))
    }

    /// A tick each time an object of the kind is deleted.
    pub fn deletions(&mut self) -> impl Stream<Item = ()> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        self.deleted.push(tx);
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|()| ((), rx)) },
        )
    }

    /// Runs the watch of `api` with `config` (retrying with backoff on errors, listing
    /// [`LIST_PAGE_SIZE`] objects at a time), feeding the cache and the subscribers with the
    /// objects [trimmed](trim_for_cache); never returns while any is alive.
    pub async fn run(self, api: kube::Api<K>, config: watcher::Config) {
        let kind = K::kind(&Default::default()).into_owned();
        let deleted = self.deleted;
        let trim = self.trim;
        watcher(api, config.page_size(LIST_PAGE_SIZE))
            .default_backoff()
            .modify(move |obj| {
                trim_for_cache(obj);
                if let Some(trim) = trim {
                    trim(obj);
                }
            })
            .reflect_shared(self.writer)
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::Delete(_)) => {
                        for tx in &deleted {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(%kind, error = %e, "watch failed, retrying"),
                }
                future::ready(())
            })
            .await;
    }
}

impl<K> Default for SharedWatch<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    fn default() -> Self {
        Self::new()
    }
}

/// The objects of `objects` whose `predicate` value differs from the last one seen for the
/// same object (new objects always pass), e.g. `changed(sub, predicates::generation)` passes
/// on spec changes and not status updates.
pub fn changed<K, P>(
    objects: impl Stream<Item = Arc<K>> + Send + 'static,
    predicate: P,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource + Clone + Send + Sync + 'static,
    P: Predicate<K> + Send + 'static,
{
    objects
        .map(|obj| Ok::<K, watcher::Error>(K::clone(&obj)))
        .predicate_filter(predicate, PredicateConfig::default())
        .filter_map(|obj| future::ready(obj.ok().map(Arc::new)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::predicates;

    fn cm(name: &str, generation: i64, label: &str) -> Arc<ConfigMap> {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.to_owned());
        c.metadata.uid = Some(format!("uid-{name}"));
        c.metadata.generation = Some(generation);
        c.metadata.labels = Some([("l".to_owned(), label.to_owned())].into());
        Arc::new(c)
    }

    fn names(objs: Vec<Arc<ConfigMap>>) -> Vec<String> {
        objs.iter()
            .map(|o| {
                format!(
                    "{}@{}",
                    o.metadata.name.clone().unwrap_or_default(),
                    o.metadata.generation.unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn cached_objects_lose_field_ownership_and_kubectls_copy() {
        let mut c = ConfigMap::default();
        c.metadata.managed_fields = Some(vec![Default::default()]);
        c.metadata.annotations = Some(
            [
                (LAST_APPLIED_ANNOTATION.to_owned(), "{}".to_owned()),
                ("keep".to_owned(), "me".to_owned()),
            ]
            .into(),
        );
        trim_for_cache(&mut c);
        assert_eq!(c.metadata.managed_fields, None);
        let annotations = c.metadata.annotations.unwrap();
        assert_eq!(annotations.len(), 1);
        assert_eq!(annotations["keep"], "me");
    }

    #[tokio::test]
    async fn only_changes_of_the_watched_property_pass() {
        let events = vec![
            cm("a", 1, "x"),
            cm("a", 1, "y"),
            cm("b", 1, "x"),
            cm("a", 2, "y"),
            cm("a", 2, "y"),
        ];
        let by_generation: Vec<_> = changed(
            futures::stream::iter(events.clone()),
            predicates::generation,
        )
        .collect()
        .await;
        assert_eq!(names(by_generation), ["a@1", "b@1", "a@2"]);
        let by_labels: Vec<_> = changed(futures::stream::iter(events), predicates::labels)
            .collect()
            .await;
        assert_eq!(names(by_labels), ["a@1", "a@1", "b@1"]);
    }
}
