//! Watches on the objects plumb applied: one label-selected watch per kind present in some
//! inventory, started when a Sync first applies that kind and stopped when no inventory holds it.
//! Each keeps a cache of the live objects (read by reconciles instead of the API server) and
//! turns a change of an object into a reconcile request for the Sync its labels name, when the
//! change is one a pass reads ([`signal`](crate::signal)) and not this controller's own apply,
//! which the pass that sent it judged from the API server's answer.
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
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use plumb_api::{SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL};

use crate::apply::Resolved;
use crate::checked::CheckWatches;
use crate::deps::Key;
use crate::packed::Packer;
use crate::signal::{signal, version_of};
use crate::sync_view::SyncView;

/// The key of the object `name` in `namespace` (empty for cluster-scoped objects):
/// `<namespace>/<name>`, one string where a pair of them took two allocations and twice the
/// slot (a namespace name holds no `/`, so the first one separates the two).
fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

/// One live object as the cache keeps it.
struct Entry {
    /// [Packed](crate::packed) compact JSON, without field ownership.
    packed: Box<[u8]>,
    /// Its resourceVersion ([`version_of`]).
    version: u64,
    /// What of it a pass reads ([`signal`]).
    signal: u64,
}

/// This controller's own write of one object, while a pass applies it and until its watch event
/// arrives: the pass judges the object from the API server's answer, so the event of that very
/// write wakes nobody, and events the write supersedes are not passed on.
#[derive(Debug)]
enum Own {
    /// Being applied. `from` is the version cached when the apply began, `seen` the versions of
    /// the events that arrived since (held back), `wake` whether one of them would have woken the
    /// Sync.
    Applying {
        from: Option<u64>,
        seen: Vec<u64>,
        wake: bool,
    },
    /// Answered with `version`, whose event has not arrived yet.
    Answered(u64),
}

/// The live objects of one kind, and this controller's writes of them under way.
#[derive(Default)]
struct State {
    by_key: HashMap<Box<str>, Entry>,
    own: HashMap<Box<str>, Own>,
}

impl State {
    /// Records the event of object `key`, now `entry`; whether its Sync should look again: its
    /// [signal] changed or it is new, and it is not this controller's own write, judged already.
    fn changed(&mut self, key: Box<str>, entry: Entry) -> bool {
        let (version, signal) = (entry.version, entry.signal);
        let wake = self
            .by_key
            .insert(key.clone(), entry)
            .is_none_or(|old| old.signal != signal);
        match self.own.get_mut(&key) {
            Some(Own::Applying { seen, wake: w, .. }) => {
                seen.push(version);
                *w |= wake;
                false
            }
            Some(Own::Answered(ours)) if *ours == version => {
                self.own.remove(&key);
                false
            }
            _ => wake,
        }
    }

    /// Records that object `key` is gone; whether its Sync should look again (always, unless a
    /// pass is applying it: then the answer decides).
    fn deleted(&mut self, key: &str) -> bool {
        self.by_key.remove(key);
        match self.own.get_mut(key) {
            Some(Own::Applying { wake, .. }) => {
                *wake = true;
                false
            }
            Some(Own::Answered(_)) => {
                self.own.remove(key);
                true
            }
            None => true,
        }
    }

    /// A pass starts applying object `key`.
    fn applying(&mut self, key: &str) {
        if matches!(self.own.get(key), Some(Own::Applying { .. })) {
            return;
        }
        let from = self.by_key.get(key).map(|e| e.version);
        self.own.insert(
            key.into(),
            Own::Applying {
                from,
                seen: Vec::new(),
                wake: false,
            },
        );
    }

    /// The apply of object `key` answered with `answer` (the object as stored; `None` when it
    /// failed); whether the Sync should look again for what its events held back. Watch events
    /// come in the order of the writes, so an event before the answer's own is older than the
    /// write and superseded by it, one after it is newer and counts.
    ///
    /// Until the write's own event arrives, the answer stands in for it in the cache: a pass of
    /// another Sync that reads the object meanwhile finds it (and its owner) instead of a miss,
    /// which it would take for an object nobody holds and apply over without a read.
    fn answered(&mut self, key: &str, answer: Option<Entry>) -> bool {
        let (from, seen, wake, recorded) = match self.own.remove(key) {
            Some(Own::Applying { from, seen, wake }) => (from, seen, wake, true),
            _ => (None, Vec::new(), false, false),
        };
        let Some(answer) = answer else {
            return wake;
        };
        let (version, signal) = (answer.version, answer.signal);
        if from == Some(version) {
            // Nothing changed, so the write has no event: every one held back came after it.
            return wake;
        }
        if seen.contains(&version) {
            return match self.by_key.get(key) {
                Some(e) if e.version == version => false,
                Some(e) => e.signal != signal,
                None => true,
            };
        }
        // Only with the record of the apply is every event cached so far known to be older.
        if recorded {
            self.by_key.insert(key.into(), answer);
        }
        self.own.insert(key.into(), Own::Answered(version));
        false
    }

    /// A (re-)list replaced the objects: its objects are as they are, with no event to wait for.
    fn relisted(&mut self, by_key: HashMap<Box<str>, Entry>) {
        self.by_key = by_key;
        self.own.retain(|_, o| matches!(o, Own::Applying { .. }));
    }
}

/// The live objects of one kind.
#[derive(Default)]
struct Objects {
    state: RwLock<State>,
}

impl Objects {
    fn key(obj: &DynamicObject) -> Box<str> {
        key(
            obj.metadata.namespace.as_deref().unwrap_or_default(),
            obj.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    fn get(&self, namespace: Option<&str>, name: &str) -> Option<Value> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let text = Packer::unpack(
            &state
                .by_key
                .get(&key(namespace.unwrap_or(""), name))?
                .packed,
        );
        drop(state);
        serde_json::from_slice(&text?).ok()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// An object as the cache keeps it: [packed](Packer::pack) JSON without the field-ownership
/// records (annotations stay, kubectl's copy of the last applied object included: a render may
/// carry it, and what plumb applied is compared in full), with its version and [signal] (read
/// before the field ownership goes: the signal covers plumb's).
fn entry(packer: &Packer, res: &ApiResource, mut obj: Value) -> Option<Entry> {
    let version = version_of(
        obj.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str),
    );
    let signal = signal(&res.group, &res.kind, &obj);
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let json = serde_json::to_vec(&obj).ok()?;
    Some(Entry {
        packed: packer.pack(&json),
        version,
        signal,
    })
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
    trigger: UnboundedSender<ObjectRef<SyncView>>,
    running: Mutex<HashMap<GroupVersionKind, Watch>>,
    /// The Syncs (by [`user_id`]) with `spec.healthCheckExprs`: every change of their objects
    /// wakes them, as their expressions may read any field.
    custom_health: Arc<Mutex<HashSet<u128>>>,
    /// The watches of objects named in `spec.healthChecks`.
    pub checks: CheckWatches,
}

fn gvk_of(res: &Resolved) -> GroupVersionKind {
    GroupVersionKind::gvk(&res.ar.group, &res.ar.version, &res.ar.kind)
}

impl Watches {
    /// No watches yet; changes are sent as Sync references to `trigger`.
    pub fn new(client: Client, trigger: UnboundedSender<ObjectRef<SyncView>>) -> Self {
        Self {
            client,
            checks: CheckWatches::new(trigger.clone()),
            trigger,
            running: Mutex::default(),
            custom_health: Arc::default(),
        }
    }

    /// Records whether Sync `user` judges health by `spec.healthCheckExprs`.
    pub fn set_custom_health(&self, user: &Key, custom: bool) {
        let mut set = self.custom_health.lock().unwrap_or_else(|p| p.into_inner());
        if custom {
            set.insert(user_id(user));
        } else {
            set.remove(&user_id(user));
        }
    }

    fn objects(&self, res: &Resolved) -> Option<Arc<Objects>> {
        let running = self.running.lock().ok()?;
        Some(running.get(&gvk_of(res))?.objects.clone())
    }

    /// A pass of Sync `owner` starts applying the object `name` (in `namespace`) of `res`'s
    /// kind: its events are held back until [`Watches::applied`].
    pub fn applying(&self, res: &Resolved, namespace: Option<&str>, name: &str) {
        if let Some(objects) = self.objects(res) {
            objects
                .write()
                .applying(&key(namespace.unwrap_or(""), name));
        }
    }

    /// The apply [begun](Watches::applying) by a pass of Sync `owner` answered with `answer` (the
    /// object as the API server stored it; `None` when the apply failed). An event held back
    /// meanwhile that the answer does not account for wakes the Sync again.
    pub fn applied(
        &self,
        res: &Resolved,
        namespace: Option<&str>,
        name: &str,
        answer: Option<&Value>,
        owner: &Key,
    ) {
        let Some(objects) = self.objects(res) else {
            return;
        };
        let answer = answer.and_then(|a| entry(Packer::shared(), &res.ar, a.clone()));
        let wake = objects
            .write()
            .answered(&key(namespace.unwrap_or(""), name), answer);
        if wake {
            let _ = self.trigger.send(ObjectRef::new(&owner.1).within(&owner.0));
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
        let packer = Packer::shared();
        let custom_health = self.custom_health.clone();
        let ar = res.ar.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // A (re-)list fills a fresh map that replaces the cache once complete, as
            // kube-runtime's reflector does.
            let mut relist: Option<HashMap<Box<str>, Entry>> = None;
            let value = |obj: DynamicObject| serde_json::to_value(obj).ok();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(obj)) => {
                        let key = Objects::key(&obj);
                        let kept = value(obj).and_then(|v| entry(packer, &ar, v));
                        if let (Some(map), Some(kept)) = (relist.as_mut(), kept) {
                            map.insert(key, kept);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(map) = relist.take() {
                            cache.write().relisted(map);
                        }
                        listed_tx.send_replace(true);
                    }
                    Ok(watcher::Event::Apply(obj)) => {
                        let owner = owner_of(&obj);
                        let key = Objects::key(&obj);
                        let Some(kept) = value(obj).and_then(|v| entry(packer, &ar, v)) else {
                            continue;
                        };
                        let wake = cache.write().changed(key, kept);
                        if let Some(sync) = owner
                            && (wake || has_custom_health(&custom_health, &sync))
                        {
                            let _ = trigger.send(sync);
                        }
                    }
                    Ok(watcher::Event::Delete(obj)) => {
                        let wake = cache.write().deleted(&Objects::key(&obj));
                        if let Some(sync) = owner_of(&obj)
                            && (wake || has_custom_health(&custom_health, &sync))
                        {
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

fn has_custom_health(set: &Mutex<HashSet<u128>>, sync: &ObjectRef<SyncView>) -> bool {
    let key = (
        sync.namespace.clone().unwrap_or_default(),
        sync.name.clone(),
    );
    set.lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&user_id(&key))
}

/// The Sync an applied object's owner labels name.
pub fn owner_of(obj: &DynamicObject) -> Option<ObjectRef<SyncView>> {
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
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": "a", "namespace": "ns", "generation": 1,
                "managedFields": [{"manager": "plumb-sync", "operation": "Apply",
                                   "fieldsV1": {"f:data": {"f:k": {}}}}],
                "annotations": {"keep": "me"}
            },
            "data": {"k": "v"}
        });
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let objects = Objects::default();
        let kept = entry(&Packer::new(), &ar, obj.clone()).unwrap();
        assert_eq!(
            kept.signal,
            signal("", "ConfigMap", &obj),
            "read with plumb's fields"
        );
        objects.write().changed(key("ns", "a"), kept);
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
        objects.write().deleted(&key("ns", "a"));
        assert!(objects.get(Some("ns"), "a").is_none());
    }

    /// An entry of version `version` and signal `signal`.
    fn at(version: u64, signal: u64) -> Entry {
        Entry {
            packed: Box::new([]),
            version,
            signal,
        }
    }

    #[test]
    fn only_a_change_of_the_signal_or_a_new_or_gone_object_wakes() {
        let mut s = State::default();
        assert!(
            s.changed("ns/a".into(), at(1, 7)),
            "an object not seen before"
        );
        assert!(
            !s.changed("ns/a".into(), at(2, 7)),
            "a status report, same signal"
        );
        assert!(s.changed("ns/a".into(), at(3, 8)), "its signal changed");
        assert!(s.deleted("ns/a"), "gone");
    }

    #[test]
    fn the_event_of_an_apply_judged_from_its_answer_wakes_nobody() {
        // The event comes after the answer (a create).
        let mut s = State::default();
        s.applying("ns/a");
        assert!(!s.answered("ns/a", Some(at(5, 9))));
        assert_eq!(
            s.by_key.get("ns/a").map(|e| e.version),
            Some(5),
            "the answer is cached before its event arrives"
        );
        assert!(!s.changed("ns/a".into(), at(5, 9)), "the write's own event");
        assert!(
            s.changed("ns/a".into(), at(6, 10)),
            "a later change still wakes"
        );
        // The event comes while the pass still waits for the answer (an update).
        s.applying("ns/a");
        assert!(!s.changed("ns/a".into(), at(7, 11)), "held back");
        assert!(!s.answered("ns/a", Some(at(7, 11))));
        assert!(!s.changed("ns/a".into(), at(8, 11)), "same signal after");
        assert!(s.own.is_empty(), "nothing left to wait for");
    }

    #[test]
    fn what_comes_after_the_write_still_wakes_and_what_came_before_does_not() {
        let mut s = State::default();
        s.changed("ns/a".into(), at(1, 1));
        // Someone else's change, then ours, then someone else's again, all before the answer.
        s.applying("ns/a");
        s.changed("ns/a".into(), at(2, 2));
        s.changed("ns/a".into(), at(3, 3));
        s.changed("ns/a".into(), at(4, 4));
        assert!(
            s.answered("ns/a", Some(at(3, 3))),
            "the change after the write counts"
        );
        // A change before the write, whose own event comes later: superseded by the answer.
        s.applying("ns/a");
        s.changed("ns/a".into(), at(5, 5));
        assert!(!s.answered("ns/a", Some(at(6, 6))));
        assert!(!s.changed("ns/a".into(), at(6, 6)));
        // Deleted after the write: the deletion counts.
        s.applying("ns/a");
        s.changed("ns/a".into(), at(7, 7));
        assert!(!s.deleted("ns/a"));
        assert!(s.answered("ns/a", Some(at(7, 7))));
        // A write that changed nothing has no event: everything held back came after it.
        s.changed("ns/a".into(), at(8, 8));
        s.applying("ns/a");
        s.changed("ns/a".into(), at(9, 9));
        assert!(s.answered("ns/a", Some(at(8, 8))));
        // A failed apply passes on what it held back.
        s.applying("ns/a");
        s.changed("ns/a".into(), at(10, 10));
        assert!(s.answered("ns/a", None));
        s.applying("ns/a");
        s.changed("ns/a".into(), at(11, 10));
        assert!(!s.answered("ns/a", None), "nothing that would wake");
    }

    #[test]
    fn an_answer_without_the_record_of_its_apply_does_not_replace_the_cached_object() {
        let mut s = State::default();
        s.changed("ns/a".into(), at(4, 4));
        // No record (the watch started while the apply was under way): the cache may hold newer
        // events than the answer.
        assert!(!s.answered("ns/a", Some(at(3, 3))));
        assert_eq!(s.by_key.get("ns/a").map(|e| e.version), Some(4));
    }

    #[test]
    fn a_relist_forgets_the_events_it_stood_in_for() {
        let mut s = State::default();
        s.applying("ns/a");
        assert!(!s.answered("ns/a", Some(at(5, 9))));
        s.applying("ns/b");
        s.relisted(HashMap::from([(Box::from("ns/a"), at(5, 9))]));
        assert!(matches!(s.own.get("ns/b"), Some(Own::Applying { .. })));
        assert!(!s.own.contains_key("ns/a"));
    }
}
