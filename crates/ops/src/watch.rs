//! One watch per kind, shared: a [`SharedWatch`] keeps a cache ([`Store`]) of one kind and hands
//! its changes to any number of controllers (as kube-runtime's shared reflector streams do),
//! plus a signal when an object is deleted, which shared streams do not carry. [`changed`]
//! passes on only the objects whose watched property (a kube-runtime predicate such as
//! `predicates::generation` or `predicates::labels`) changed.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, future};
use kube::Resource;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::{Predicate, WatchStreamExt, watcher};
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

/// Keeps of an object's metadata only what selector decisions read: its name, namespace and uid
/// (its identity), labels and deletion timestamp; the resourceVersion, finalizers, annotations,
/// owners, timestamps and the type's name strings go. For a [`SharedWatch::keeping_only`] of
/// metadata watches (Namespaces for Policy namespace selectors, Syncs counted by Policies): with
/// a thousand objects each it saves some 150 bytes an object.
pub fn keep_selector_metadata<K>(obj: &mut kube::core::PartialObjectMeta<K>) {
    let meta = std::mem::take(&mut obj.metadata);
    obj.types = None;
    obj.metadata = kube::api::ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        labels: meta.labels,
        deletion_timestamp: meta.deletion_timestamp,
        ..Default::default()
    };
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

/// How long a property value seen is remembered (kube-runtime's `predicate_filter` default): an
/// object not seen for longer passes again, and the memory of deleted objects is given back.
const PREDICATE_TTL: Duration = Duration::from_secs(3600);

/// The objects of `objects` whose `predicate` value differs from the last one seen for the
/// same object (new objects always pass), e.g. `changed(sub, predicates::generation)` passes
/// on spec changes and not status updates.
///
/// It decides as kube-runtime's `predicate_filter` does (an object is its name, namespace and
/// uid; a value is remembered for an hour; an object the predicate cannot value always passes)
/// but over the shared objects as they are: that filter takes each object by value, so every
/// change of every object was deep-copied to be judged, and it keeps the three strings of each
/// object's identity, some 280 bytes per object for each filter. Here an object's identity is
/// kept as 128 bits of two keyed hashes of it (keys drawn at random per filter, so no one can
/// make two objects share it), about 70 bytes per object.
pub fn changed<K, P>(
    objects: impl Stream<Item = Arc<K>> + Send + 'static,
    predicate: P,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource + Send + Sync + 'static,
    P: Predicate<K> + Send + 'static,
{
    changed_within(objects, predicate, PREDICATE_TTL)
}

fn changed_within<K, P>(
    objects: impl Stream<Item = Arc<K>> + Send + 'static,
    predicate: P,
    ttl: Duration,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource + Send + Sync + 'static,
    P: Predicate<K> + Send + 'static,
{
    let mut seen = Seen::new(ttl);
    objects.filter(move |obj| future::ready(seen.changed(obj.as_ref(), &predicate)))
}

/// The last property value seen of each object, by a 128-bit identity of the object.
struct Seen {
    ttl: Duration,
    keys: (std::hash::RandomState, std::hash::RandomState),
    values: HashMap<u128, (u64, Instant)>,
    last_evicted: Instant,
}

impl Seen {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            keys: Default::default(),
            values: HashMap::new(),
            last_evicted: Instant::now(),
        }
    }

    /// The identity of `obj`: its name, namespace and uid, hashed under both keys.
    fn identity<K: Resource>(&self, obj: &K) -> u128 {
        let meta = obj.meta();
        let id = (&meta.name, &meta.namespace, &meta.uid);
        (u128::from(self.keys.0.hash_one(id)) << 64) | u128::from(self.keys.1.hash_one(id))
    }

    /// Whether `obj` passes: new, not seen within the ttl, or with another value of `predicate`.
    fn changed<K: Resource, P: Predicate<K>>(&mut self, obj: &K, predicate: &P) -> bool {
        let now = Instant::now();
        if now.duration_since(self.last_evicted) >= self.ttl {
            let ttl = self.ttl;
            self.values
                .retain(|_, (_, seen)| now.duration_since(*seen) < ttl);
            self.last_evicted = now;
        }
        let Some(value) = predicate.hash_property(obj) else {
            return true;
        };
        let identity = self.identity(obj);
        match self.values.insert(identity, (value, now)) {
            Some((last, seen)) => last != value || now.duration_since(seen) >= self.ttl,
            None => true,
        }
    }
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
    fn selector_metadata_keeps_identity_labels_and_deletion() {
        use k8s_openapi::api::core::v1::Namespace;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let mut ns: kube::core::PartialObjectMeta<Namespace> =
            serde_json::from_value(serde_json::json!({
                "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                "metadata": {"name": "team", "uid": "u1", "resourceVersion": "7",
                             "labels": {"env": "prod"}, "annotations": {"a": "b"},
                             "finalizers": ["kubernetes"],
                             "creationTimestamp": "2026-01-01T00:00:00Z",
                             "deletionTimestamp": "2026-01-02T00:00:00Z"}
            }))
            .unwrap();
        keep_selector_metadata(&mut ns);
        assert!(ns.types.is_none());
        let m = &ns.metadata;
        assert_eq!(m.name.as_deref(), Some("team"));
        assert_eq!(m.uid.as_deref(), Some("u1"));
        assert_eq!(m.labels.as_ref().unwrap()["env"], "prod");
        assert!(matches!(m.deletion_timestamp, Some(Time(_))));
        assert!(m.resource_version.is_none() && m.annotations.is_none());
        assert!(m.finalizers.is_none() && m.creation_timestamp.is_none());
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
        let by_labels: Vec<_> = changed(futures::stream::iter(events.clone()), predicates::labels)
            .collect()
            .await;
        assert_eq!(names(by_labels), ["a@1", "a@1", "b@1"]);
        // The same name under another uid is another object.
        let mut again = ConfigMap::clone(&events[0]);
        again.metadata.uid = Some("uid-a-again".to_owned());
        let recreated: Vec<_> = changed(
            futures::stream::iter([events[0].clone(), Arc::new(again)]),
            predicates::generation,
        )
        .collect()
        .await;
        assert_eq!(recreated.len(), 2);
        // An object the predicate cannot value always passes.
        let unvalued: Vec<_> = changed(futures::stream::iter(events.clone()), |_: &ConfigMap| None)
            .collect()
            .await;
        assert_eq!(unvalued.len(), events.len());
    }

    #[tokio::test]
    async fn a_value_older_than_the_ttl_is_forgotten() {
        let events = vec![cm("a", 1, "x"), cm("a", 1, "x")];
        let kept: Vec<_> = changed_within(
            futures::stream::iter(events.clone()),
            predicates::generation,
            Duration::from_secs(3600),
        )
        .collect()
        .await;
        assert_eq!(kept.len(), 1);
        let forgotten: Vec<_> = changed_within(
            futures::stream::iter(events),
            predicates::generation,
            Duration::ZERO,
        )
        .collect()
        .await;
        assert_eq!(forgotten.len(), 2);
    }
}
