//! Watches on the objects plumb applied: one label-selected watch per kind present in some
//! inventory, started when a Sync first applies that kind and stopped when no inventory holds it.
//! Each keeps a cache of the live objects (read by reconciles instead of the API server) and
//! turns every change of an object into a reconcile request for the Sync its labels name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use plumb_api::{SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL, Sync};

use crate::apply::Resolved;
use crate::checked::CheckWatches;
use crate::deps::Key;

struct Watch {
    store: Store<DynamicObject>,
    task: JoinHandle<()>,
    users: BTreeSet<Key>,
}

/// The running watches, by kind.
pub struct Watches {
    client: Client,
    trigger: UnboundedSender<ObjectRef<Sync>>,
    running: Mutex<HashMap<GroupVersionKind, Watch>>,
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
        }
    }

    /// The cache of live objects of `res`'s kind, starting its watch for `user` if needed, and
    /// waiting (at most `timeout`) until the first list is in.
    pub async fn store(
        &self,
        res: &Resolved,
        user: &Key,
        timeout: Duration,
    ) -> Option<Store<DynamicObject>> {
        let (store, started) = {
            let mut running = self.running.lock().ok()?;
            let gvk = gvk_of(res);
            let started = !running.contains_key(&gvk);
            let w = running.entry(gvk).or_insert_with(|| self.start(res));
            w.users.insert(user.clone());
            (w.store.clone(), started)
        };
        // Only a watch started just now is waited for; one that cannot list (RBAC) must not
        // slow every later reconcile down.
        let wait = if started { timeout } else { Duration::ZERO };
        tokio::time::timeout(wait, store.wait_until_ready())
            .await
            .ok()?
            .ok()?;
        Some(store)
    }

    /// The cache of `res`'s kind if its watch is running and has listed.
    pub fn ready_store(&self, res: &Resolved) -> Option<Store<DynamicObject>> {
        let running = self.running.lock().ok()?;
        let w = running.get(&gvk_of(res))?;
        let ready = w
            .store
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok());
        ready.then(|| w.store.clone())
    }

    /// Records that `user` now holds only the kinds in `kinds`; watches nobody holds are stopped.
    pub fn retain(&self, user: &Key, kinds: &HashSet<GroupVersionKind>) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        running.retain(|gvk, w| {
            if !kinds.contains(gvk) {
                w.users.remove(user);
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
        let writer = reflector::store::Writer::new(res.ar.clone());
        let store = writer.as_reader();
        let trigger = self.trigger.clone();
        let stream = watcher(api, watcher::Config::default().labels(SYNC_NAME_LABEL))
            .default_backoff()
            .reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(obj) | watcher::Event::Delete(obj)) => {
                        if let Some(sync) = owner_of(&obj) {
                            let _ = trigger.send(sync);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "drift watch failed; retrying"),
                }
            }
        });
        Watch {
            store,
            task,
            users: BTreeSet::new(),
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
