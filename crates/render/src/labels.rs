//! The labels of every object of one kind, and nothing else: what Policy selectors read of
//! Namespaces (`namespaceSelector`) and of every Sync (a Policy's governed count spans all
//! shards).
//!
//! A metadata watch feeds a [`LabelTable`]: each object is its key (`namespace/name`, or the name
//! of a cluster-scoped object) and its labels packed in one string. A cached
//! `PartialObjectMeta` held the whole metadata struct, a B-tree node of some 540 bytes for even
//! one label, the strings of its cache key and the change filter's record: some 1.4 KB an
//! object, against about 150 bytes here. The table also tells which objects are new, relabelled
//! or gone, so no change filter keeps a record of its own.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

/// One object's labels, each key and value followed by a NUL: the API server admits neither
/// with one (keys are qualified names, values at most 63 of `[A-Za-z0-9_.-]`), and a map of
/// two labels packs into one allocation instead of a B-tree node and four strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(Box<str>);

impl Labels {
    /// `labels` packed.
    pub fn pack(labels: &BTreeMap<String, String>) -> Labels {
        let mut packed =
            String::with_capacity(labels.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
        for (k, v) in labels {
            packed.push_str(k);
            packed.push('\0');
            packed.push_str(v);
            packed.push('\0');
        }
        Labels(packed.into_boxed_str())
    }

    /// The keys and values, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut parts = self.0.split_terminator('\0');
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    /// The labels as the map selectors take.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// The key of an object: `namespace/name`, or `name` for a cluster-scoped one (a name holds no
/// `/`).
fn key(namespace: Option<&str>, name: &str) -> Box<str> {
    match namespace {
        Some(ns) => format!("{ns}/{name}").into_boxed_str(),
        None => name.into(),
    }
}

/// The labels of each object, by key, and the changes a watch event or a relist makes: the
/// pure core of [`LabelIndex`], fed as a kube-runtime reflector is.
#[derive(Debug, Default)]
pub struct LabelTable {
    objects: HashMap<Box<str>, Labels>,
    /// The objects of a relist under way, which replace `objects` once it is complete.
    relisted: Option<HashMap<Box<str>, Labels>>,
}

/// The key and labels of `obj`.
fn entry<K>(obj: &PartialObjectMeta<K>) -> (Box<str>, Labels) {
    let meta = &obj.metadata;
    let labels = meta.labels.as_ref().map(Labels::pack).unwrap_or_default();
    (
        key(
            meta.namespace.as_deref(),
            meta.name.as_deref().unwrap_or_default(),
        ),
        labels,
    )
}

impl LabelTable {
    /// Applies one watch event; returns the keys of the objects it created, relabelled or
    /// deleted (a relist reports them once it is complete, against what it replaces).
    pub fn apply<K>(&mut self, event: watcher::Event<PartialObjectMeta<K>>) -> Vec<Box<str>> {
        match event {
            watcher::Event::Apply(obj) => {
                let (key, labels) = entry(&obj);
                match self.objects.get(&key) {
                    Some(old) if *old == labels => Vec::new(),
                    _ => {
                        self.objects.insert(key.clone(), labels);
                        vec![key]
                    }
                }
            }
            watcher::Event::Delete(obj) => {
                let (key, _) = entry(&obj);
                self.objects.remove(&key).map(|_| key).into_iter().collect()
            }
            watcher::Event::Init => {
                self.relisted = Some(HashMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) => {
                let (key, labels) = entry(&obj);
                self.relisted.get_or_insert_default().insert(key, labels);
                Vec::new()
            }
            watcher::Event::InitDone => {
                let relisted = self.relisted.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.objects, relisted);
                let mut changed: Vec<Box<str>> = self
                    .objects
                    .iter()
                    .filter(|(k, labels)| old.get(*k) != Some(*labels))
                    .map(|(k, _)| k.clone())
                    .collect();
                changed.extend(old.into_keys().filter(|k| !self.objects.contains_key(k)));
                changed
            }
        }
    }

    /// The labels of the object `name` (in `namespace`, for a namespaced kind).
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<&Labels> {
        self.objects.get(&key(namespace, name))
    }

    /// Every object: its namespace (none for a cluster-scoped kind), name and labels.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, &str, &Labels)> {
        self.objects
            .iter()
            .map(|(k, labels)| match k.split_once('/') {
                Some((ns, name)) => (Some(ns), name, labels),
                None => (None, &**k, labels),
            })
    }
}

/// A [`LabelTable`] kept by a metadata watch, shared by the reconciles that read it.
#[derive(Clone)]
pub struct LabelIndex {
    table: Arc<RwLock<LabelTable>>,
    /// True once the first list is complete.
    ready: watch::Sender<bool>,
}

impl Default for LabelIndex {
    fn default() -> Self {
        Self {
            table: Arc::default(),
            ready: watch::Sender::new(false),
        }
    }
}

impl LabelIndex {
    /// Reads the table.
    pub fn read<T>(&self, f: impl FnOnce(&LabelTable) -> T) -> T {
        f(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The labels of the object `name` (in `namespace`, for a namespaced kind); empty when
    /// unknown.
    pub fn labels(&self, namespace: Option<&str>, name: &str) -> BTreeMap<String, String> {
        self.read(|t| t.get(namespace, name).map(Labels::to_map))
            .unwrap_or_default()
    }

    /// Returns once the first list is complete (never, when the watch ended before).
    pub async fn wait_until_ready(&self) {
        let mut ready = self.ready.subscribe();
        // An error means the index is gone: nothing will ever be ready.
        if ready.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Runs the watch of `api` with `config` (retrying with backoff on errors, listing
    /// [`plumb_ops::LIST_PAGE_SIZE`] objects at a time), and sends the key of each object
    /// created, relabelled or deleted to `changes` (a closed receiver is no error: the index is
    /// kept all the same); never returns.
    pub async fn run<K>(
        self,
        api: Api<PartialObjectMeta<K>>,
        config: watcher::Config,
        changes: mpsc::Sender<Box<str>>,
    ) where
        K: kube::Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
        K::DynamicType: Default,
    {
        let kind = K::kind(&Default::default()).into_owned();
        let events = watcher(api, config.page_size(plumb_ops::LIST_PAGE_SIZE)).default_backoff();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "watch failed, retrying");
                    continue;
                }
            };
            let listed = matches!(event, watcher::Event::InitDone);
            let changed = self
                .table
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(event);
            if listed {
                self.ready.send_replace(true);
            }
            for key in changed {
                let _ = changes.send(key).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::ObjectMeta;

    fn meta(ns: Option<&str>, name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: ns.map(Into::into),
                labels: (!labels.is_empty()).then(|| {
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect()
                }),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    fn keys(changed: Vec<Box<str>>) -> Vec<String> {
        let mut out: Vec<String> = changed.into_iter().map(String::from).collect();
        out.sort();
        out
    }

    #[test]
    fn labels_pack_and_unpack_as_the_map_they_were() {
        let map: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", "web"),
            ("empty", ""),
            ("team", "a"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let packed = Labels::pack(&map);
        assert_eq!(packed.to_map(), map);
        assert_eq!(packed.iter().count(), 3);
        assert_eq!(Labels::pack(&BTreeMap::new()).to_map(), BTreeMap::new());
        assert_eq!(Labels::pack(&BTreeMap::new()), Labels::default());
    }

    #[test]
    fn an_event_reports_new_relabelled_and_deleted_objects_only() {
        let mut t = LabelTable::default();
        let ev = |labels: &[(&str, &str)]| watcher::Event::Apply(meta(Some("team"), "app", labels));
        assert_eq!(keys(t.apply(ev(&[("env", "dev")]))), ["team/app"], "new");
        assert!(t.apply(ev(&[("env", "dev")])).is_empty(), "same labels");
        assert_eq!(
            keys(t.apply(ev(&[("env", "prod")]))),
            ["team/app"],
            "relabelled"
        );
        assert_eq!(t.get(Some("team"), "app").unwrap().to_map()["env"], "prod");
        assert!(
            t.get(None, "app").is_none(),
            "namespaces tell objects apart"
        );
        let gone = watcher::Event::Delete(meta(Some("team"), "app", &[]));
        assert_eq!(keys(t.apply(gone)), ["team/app"]);
        assert!(t.get(Some("team"), "app").is_none());
        let unknown = watcher::Event::Delete(meta(Some("team"), "other", &[]));
        assert!(t.apply(unknown).is_empty());
    }

    #[test]
    fn a_relist_replaces_the_table_when_complete_and_reports_what_differs() {
        let mut t = LabelTable::default();
        for (name, env) in [("kept", "dev"), ("relabelled", "dev"), ("gone", "dev")] {
            t.apply(watcher::Event::Apply(meta(None, name, &[("env", env)])));
        }
        assert!(t.apply::<Namespace>(watcher::Event::Init).is_empty());
        for (name, env) in [("kept", "dev"), ("relabelled", "prod"), ("new", "dev")] {
            let listed = watcher::Event::InitApply(meta(None, name, &[("env", env)]));
            assert!(t.apply(listed).is_empty());
        }
        assert!(
            t.get(None, "gone").is_some(),
            "the old table serves until the list is complete"
        );
        assert!(t.get(None, "new").is_none());
        assert_eq!(
            keys(t.apply::<Namespace>(watcher::Event::InitDone)),
            ["gone", "new", "relabelled"]
        );
        let mut all: Vec<(Option<&str>, &str, String)> = t
            .iter()
            .map(|(ns, name, l)| (ns, name, l.to_map()["env"].clone()))
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                (None, "kept", "dev".to_owned()),
                (None, "new", "dev".to_owned()),
                (None, "relabelled", "prod".to_owned())
            ]
        );
    }

    #[test]
    fn iteration_splits_namespace_and_name() {
        let mut t = LabelTable::default();
        t.apply(watcher::Event::Apply(meta(Some("ns"), "a", &[("k", "v")])));
        let all: Vec<_> = t.iter().map(|(ns, name, _)| (ns, name)).collect();
        assert_eq!(all, [(Some("ns"), "a")]);
    }
}
