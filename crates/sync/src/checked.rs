//! Watches on the objects Syncs name in `spec.healthChecks`: objects plumb did not apply, so the
//! label-selected drift watches do not see them. Each named object gets a watch of its own (a
//! `metadata.name` field selector), made with the client of the Sync that named it (its service
//! account when it has one), so a Sync can only wait for objects it may read. A change of the
//! object wakes every Sync waiting for it; a watch nobody names any more is stopped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::sync_view::SyncView;

use crate::apply::{Resolved, api_message};
use crate::deps::Key;

/// One watched object, as seen by one identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The object's kind.
    pub gvk: GroupVersionKind,
    /// Its namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Who reads it: `system:serviceaccount:<ns>:<name>`, or empty for the controller.
    pub reader: String,
}

struct Watched {
    store: Store<DynamicObject>,
    task: JoinHandle<()>,
    users: Arc<Mutex<BTreeSet<Key>>>,
    error: Arc<Mutex<Option<String>>>,
}

/// What a watch knows of its object.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The object as last seen.
    Found(Value),
    /// The object does not exist.
    Missing,
    /// The watch has not listed yet; the error of its last attempt, if any.
    Unknown(Option<String>),
}

/// The running watches of health-check objects.
pub struct CheckWatches {
    trigger: UnboundedSender<ObjectRef<SyncView>>,
    running: Mutex<HashMap<Target, Watched>>,
}

/// How long a reconcile waits for a watch it just started to list its object.
const FIRST_LIST: Duration = Duration::from_secs(5);

impl CheckWatches {
    /// No watches yet; changes are sent as Sync references to `trigger`.
    pub fn new(trigger: UnboundedSender<ObjectRef<SyncView>>) -> Self {
        Self {
            trigger,
            running: Mutex::default(),
        }
    }

    /// The object `target` (of resource `res`) as its watch sees it, starting the watch with
    /// `client` for `user` if needed.
    pub async fn look(&self, client: &Client, res: &Resolved, target: &Target, user: &Key) -> Seen {
        let (store, error, started) = {
            let Ok(mut running) = self.running.lock() else {
                return Seen::Unknown(None);
            };
            let started = !running.contains_key(target);
            let w = running
                .entry(target.clone())
                .or_insert_with(|| self.start(client, res, target));
            if let Ok(mut users) = w.users.lock() {
                users.insert(user.clone());
            }
            (w.store.clone(), w.error.clone(), started)
        };
        let listed = if started {
            tokio::time::timeout(FIRST_LIST, store.wait_until_ready())
                .await
                .is_ok_and(|r| r.is_ok())
        } else {
            store
                .wait_until_ready()
                .now_or_never()
                .is_some_and(|r| r.is_ok())
        };
        if !listed {
            return Seen::Unknown(error.lock().ok().and_then(|e| e.clone()));
        }
        match store.state().into_iter().next() {
            Some(obj) => Seen::Found(serde_json::to_value(obj.as_ref()).unwrap_or_default()),
            None => Seen::Missing,
        }
    }

    /// Records that `user` now names only `targets`; watches nobody names are stopped.
    pub fn retain(&self, user: &Key, targets: &HashSet<Target>) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        running.retain(|target, w| {
            let Ok(mut users) = w.users.lock() else {
                return true;
            };
            if !targets.contains(target) {
                users.remove(user);
            }
            if users.is_empty() {
                w.task.abort();
                false
            } else {
                true
            }
        });
    }

    fn start(&self, client: &Client, res: &Resolved, target: &Target) -> Watched {
        tracing::debug!(kind = %target.gvk.kind, name = %target.name, "starting health-check watch");
        let api: Api<DynamicObject> = match &target.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &res.ar),
            None => Api::all_with(client.clone(), &res.ar),
        };
        let writer = reflector::store::Writer::new(res.ar.clone());
        let store = writer.as_reader();
        let config = watcher::Config::default().fields(&format!("metadata.name={}", target.name));
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None)
            .reflect(writer);
        let users: Arc<Mutex<BTreeSet<Key>>> = Arc::default();
        let error: Arc<Mutex<Option<String>>> = Arc::default();
        let (trigger, waiting, last_error) = (self.trigger.clone(), users.clone(), error.clone());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let changed = match event {
                    Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => true,
                    Ok(watcher::Event::InitDone) => true,
                    Ok(_) => false,
                    Err(e) => {
                        let why = match &e {
                            watcher::Error::InitialListFailed(k)
                            | watcher::Error::WatchStartFailed(k)
                            | watcher::Error::WatchFailed(k) => api_message(k),
                            other => other.to_string(),
                        };
                        tracing::debug!(error = %why, "health-check watch failed; retrying");
                        if let Ok(mut last) = last_error.lock() {
                            *last = Some(why);
                        }
                        false
                    }
                };
                if changed {
                    if let Ok(mut last) = last_error.lock() {
                        *last = None;
                    }
                    let keys: Vec<Key> = waiting
                        .lock()
                        .map(|u| u.iter().cloned().collect())
                        .unwrap_or_default();
                    for (ns, name) in keys {
                        let _ = trigger.send(ObjectRef::new(&name).within(&ns));
                    }
                }
            }
        });
        Watched {
            store,
            task,
            users,
            error,
        }
    }
}

impl Drop for CheckWatches {
    fn drop(&mut self) {
        if let Ok(running) = self.running.lock() {
            for w in running.values() {
                w.task.abort();
            }
        }
    }
}
