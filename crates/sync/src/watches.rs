//! Watches on the objects plumb applied: one label-selected watch per kind present in some
//! inventory, started when a Sync first applies that kind and stopped when no inventory holds it.
//! Each keeps a cache of the live objects (read by reconciles instead of the API server) and
//! turns every change of an object into a reconcile request for the Sync its labels name.
//!
//! The cache holds each object as compact JSON without `metadata.managedFields`,
//! [packed](crate::packed) (deflated against a dictionary of Kubernetes' field names and
//! defaults), and unpacked and parsed when a decision reads it: a parsed tree (and the
//! field-ownership records, often as large as the rest of the object) would take several times
//! the memory, for every object every Sync applied, and the JSON itself three to four times the
//! packed text. Decisions read exactly the JSON the watch received. The few decisions that need
//! field ownership read the object from the API server.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use plumb_api::{SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL, Sync};

use crate::apply::Resolved;
use crate::checked::CheckWatches;
use crate::deps::Key;
use crate::packed::Packer;

/// Objects by [key](key), as [packed](crate::packed) compact JSON.
type ByKey = HashMap<Box<str>, Box<[u8]>>;

/// The key of the object `name` in `namespace` (empty for cluster-scoped objects):
/// `<namespace>/<name>`, one string where a pair of them took two allocations and twice the
/// slot (a namespace name holds no `/`, so the first one separates the two).
fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

/// The live objects of one kind.
#[derive(Default)]
struct Objects {
    by_key: RwLock<ByKey>,
}

impl Objects {
    fn key(obj: &DynamicObject) -> Box<str> {
        key(
            obj.metadata.namespace.as_deref().unwrap_or_default(),
            obj.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    fn get(&self, namespace: Option<&str>, name: &str) -> Option<Value> {
        let map = self.by_key.read().unwrap_or_else(|p| p.into_inner());
        let text = Packer::unpack(map.get(&key(namespace.unwrap_or(""), name))?);
        drop(map);
        serde_json::from_slice(&text?).ok()
    }

    fn set(&self, objects: ByKey) {
        *self.by_key.write().unwrap_or_else(|p| p.into_inner()) = objects;
    }

    fn insert(&self, key: Box<str>, text: Box<[u8]>) {
        let mut map = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        map.insert(key, text);
    }

    fn remove(&self, key: &str) {
        let mut map = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

/// An object as the cache keeps it: [packed](Packer::pack) JSON, without the field-ownership
/// records. (Annotations stay, kubectl's copy of the last applied object included: a render may
/// carry it, and what plumb applied is compared in full.)
fn compact(packer: &Packer, mut obj: DynamicObject) -> Option<Box<[u8]>> {
    obj.metadata.managed_fields = None;
    serde_json::to_vec(&obj).ok().map(|json| packer.pack(&json))
}

struct Watch {
    objects: Arc<Objects>,
    listed: tokio::sync::watch::Receiver<bool>,
    task: JoinHandle<()>,
    /// The Syncs holding the watch, by [`user_id`].
    users: HashSet<u128>,
}

impl Watch {
    fn has_listed(&self) -> bool {
        *self.listed.borrow()
    }
}

/// A Sync as a watch's users are kept: the [short digest](crate::memory::short_digest) of its
/// namespace and name, where a copy of both strings for every kind it applies took some hundred
/// bytes in a B-tree.
fn user_id(user: &Key) -> u128 {
    crate::memory::short_digest(&[&user.0, &user.1])
}

/// The running watches, by kind.
pub struct Watches {
    client: Client,
    trigger: UnboundedSender<ObjectRef<Sync>>,
    running: Mutex<HashMap<GroupVersionKind, Watch>>,
    /// Packs the objects of every watch's cache.
    packer: Arc<Packer>,
    /// The watches of objects named in `spec.healthChecks`.
    pub checks: CheckWatches,
}

fn gvk_of(res: &Resolved) -> GroupVersionKind {
    GroupVersionKind::gvk(&res.ar.group, &res.ar.version, &res.ar.kind)
}

impl Watches {
    /// No watches yet; changes are sent as Sync references to `trigger`.
    pub fn new(client: Client, trigger: UnboundedSender<ObjectRef<Sync>>) -> Self {
        Self {
            client,
            checks: CheckWatches::new(trigger.clone()),
            trigger,
            running: Mutex::default(),
            packer: Arc::default(),
        }
    }

    /// Starts the watch of `res`'s kind for `user` if needed; when this call started it, waits
    /// (at most `timeout`) until its first list is in. Whether the cache has listed.
    pub async fn watch(&self, res: &Resolved, user: &Key, timeout: Duration) -> bool {
        let (mut listed, started) = {
            let Ok(mut running) = self.running.lock() else {
                return false;
            };
            let gvk = gvk_of(res);
            let started = !running.contains_key(&gvk);
            let w = running.entry(gvk).or_insert_with(|| self.start(res));
            w.users.insert(user_id(user));
            (w.listed.clone(), started)
        };
        if *listed.borrow() {
            return true;
        }
        // Only a watch started just now is waited for; one that cannot list (RBAC) must not
        // slow every later reconcile down, and the others read from the API server meanwhile.
        if !started {
            return false;
        }
        tokio::time::timeout(timeout, listed.wait_for(|l| *l))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The live object `name` (in `namespace`) of `res`'s kind, from the cache: `None` when its
    /// watch is not running or has not listed yet, `Some(None)` when the object does not exist.
    pub fn cached(
        &self,
        res: &Resolved,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Option<Value>> {
        let objects = {
            let running = self.running.lock().ok()?;
            let w = running.get(&gvk_of(res))?;
            if !w.has_listed() {
                return None;
            }
            w.objects.clone()
        };
        Some(objects.get(namespace, name))
    }

    /// Records that `user` now holds only the kinds in `kinds`; watches nobody holds are stopped.
    pub fn retain(&self, user: &Key, kinds: &HashSet<GroupVersionKind>) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        running.retain(|gvk, w| {
            if !kinds.contains(gvk) {
                w.users.remove(&user_id(user));
            }
            if w.users.is_empty() {
                tracing::debug!(kind = %gvk.kind, group = %gvk.group, "stopping drift watch");
                w.task.abort();
                false
            } else {
                true
            }
        });
    }

    fn start(&self, res: &Resolved) -> Watch {
        tracing::debug!(kind = %res.ar.kind, group = %res.ar.group, "starting drift watch");
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &res.ar);
        let objects = Arc::new(Objects::default());
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        let trigger = self.trigger.clone();
        // Pages of LIST_PAGE_SIZE: a list parses a whole page (field ownership and all) before
        // the objects are compacted, and a kind may have thousands of applied objects.
        let config = watcher::Config::default()
            .labels(SYNC_NAME_LABEL)
            .page_size(plumb_ops::LIST_PAGE_SIZE);
        let stream = watcher(api, config).default_backoff();
        let cache = objects.clone();
        let packer = self.packer.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // A (re-)list fills a fresh map that replaces the cache once complete, as
            // kube-runtime's reflector does.
            let mut relist: Option<ByKey> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(obj)) => {
                        let key = Objects::key(&obj);
                        if let (Some(map), Some(text)) = (relist.as_mut(), compact(&packer, obj)) {
                            map.insert(key, text);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(map) = relist.take() {
                            cache.set(map);
                        }
                        listed_tx.send_replace(true);
                    }
                    Ok(watcher::Event::Apply(obj)) => {
                        let owner = owner_of(&obj);
                        let key = Objects::key(&obj);
                        if let Some(text) = compact(&packer, obj) {
                            cache.insert(key, text);
                        }
                        if let Some(sync) = owner {
                            let _ = trigger.send(sync);
                        }
                    }
                    Ok(watcher::Event::Delete(obj)) => {
                        cache.remove(&Objects::key(&obj));
                        if let Some(sync) = owner_of(&obj) {
                            let _ = trigger.send(sync);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "drift watch failed; retrying"),
                }
            }
        });
        Watch {
            objects,
            listed,
            task,
            users: HashSet::new(),
        }
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            for w in running.values() {
                w.task.abort();
            }
        }
    }
}

/// The Sync an applied object's owner labels name.
pub fn owner_of(obj: &DynamicObject) -> Option<ObjectRef<Sync>> {
    let labels = obj.metadata.labels.as_ref()?;
    let name = labels.get(SYNC_NAME_LABEL)?;
    let ns = labels.get(SYNC_NAMESPACE_LABEL)?;
    Some(ObjectRef::new(name).within(ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn users_are_told_apart_by_namespace_and_name() {
        let key = |ns: &str, name: &str| (ns.to_owned(), name.to_owned());
        assert_eq!(user_id(&key("a", "bc")), user_id(&key("a", "bc")));
        assert_ne!(user_id(&key("a", "bc")), user_id(&key("ab", "c")));
        assert_ne!(user_id(&key("a", "b")), user_id(&key("b", "a")));
    }

    #[test]
    fn the_cache_keeps_objects_without_field_ownership() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "a", "namespace": "ns", "generation": 1,
                "managedFields": [{"manager": "plumb-sync", "operation": "Apply",
                                   "fieldsV1": {"f:data": {"f:k": {}}}}],
                "annotations": {"keep": "me"}
            },
            "data": {"k": "v"}
        }))
        .unwrap();
        let objects = Objects::default();
        let key = Objects::key(&obj);
        objects.insert(key.clone(), compact(&Packer::new(), obj).unwrap());
        let live = objects.get(Some("ns"), "a").unwrap();
        assert_eq!(live.pointer("/data/k"), Some(&json!("v")));
        assert_eq!(live.pointer("/metadata/generation"), Some(&json!(1)));
        assert_eq!(
            live.pointer("/metadata/annotations/keep"),
            Some(&json!("me"))
        );
        assert!(live.pointer("/metadata/managedFields").is_none());
        assert!(
            objects.get(None, "a").is_none(),
            "a namespaced object is found in its namespace"
        );
        objects.remove(&key);
        assert!(objects.get(Some("ns"), "a").is_none());
    }
}
