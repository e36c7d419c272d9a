//! What the page shows, kept current by watches of the user's client: GitRepositories, Syncs,
//! Policies, Namespaces (their labels decide which Policies govern a Sync) and the Events of
//! Syncs and GitRepositories. Every change bumps one counter that open pages follow.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::runtime::reflector::{self, Store as Reader};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use plumb_api::{GitRepository, Policy, Sync};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// The watched objects, shared by every request.
#[derive(Clone)]
pub struct Store {
    /// GitRepositories in scope.
    pub repos: Reader<GitRepository>,
    /// Syncs in scope.
    pub syncs: Reader<Sync>,
    /// All Policies (cluster-scoped).
    pub policies: Reader<Policy>,
    /// Namespaces, for the labels Policies select by.
    pub namespaces: Reader<Namespace>,
    /// Events about Syncs in scope.
    pub sync_events: Reader<Event>,
    /// Events about GitRepositories in scope.
    pub repo_events: Reader<Event>,
    changes: Arc<watch::Sender<u64>>,
    errors: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Store {
    /// Starts the watches of `client`, in namespace `scope` or all namespaces.
    pub fn start(client: Client, scope: Option<String>) -> Self {
        let (changes, _) = watch::channel(0u64);
        let changes = Arc::new(changes);
        let errors = Arc::new(Mutex::new(BTreeMap::new()));
        let spawn = Spawner {
            changes: changes.clone(),
            errors: errors.clone(),
        };
        let scoped = |client: &Client| -> (Api<GitRepository>, Api<Sync>, Api<Event>) {
            match &scope {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
                None => (
                    Api::all(client.clone()),
                    Api::all(client.clone()),
                    Api::all(client.clone()),
                ),
            }
        };
        let (repos, syncs, events) = scoped(&client);
        Self {
            repos: spawn.reflect("GitRepositories", repos, watcher::Config::default()),
            syncs: spawn.reflect("Syncs", syncs, watcher::Config::default()),
            policies: spawn.reflect(
                "Policies",
                Api::all(client.clone()),
                watcher::Config::default(),
            ),
            namespaces: spawn.reflect(
                "Namespaces",
                Api::all(client.clone()),
                watcher::Config::default(),
            ),
            sync_events: spawn.reflect(
                "Events of Syncs",
                events.clone(),
                watcher::Config::default().fields("involvedObject.kind=Sync"),
            ),
            repo_events: spawn.reflect(
                "Events of GitRepositories",
                events,
                watcher::Config::default().fields("involvedObject.kind=GitRepository"),
            ),
            changes,
            errors,
        }
    }

    /// Waits (a few seconds at most) until the first list of GitRepositories and Syncs is in,
    /// so the first page is complete; a watch that fails shows on the page instead.
    pub async fn wait_listed(&self) {
        let both = async {
            let _ = self.repos.wait_until_ready().await;
            let _ = self.syncs.wait_until_ready().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), both).await;
    }

    /// A receiver that sees every change of what the page shows.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The number of changes so far: a page built after reading it shows at least this
    /// version of the cluster, and the event stream tells it of any later one.
    pub fn version(&self) -> u64 {
        *self.changes.borrow()
    }

    /// Marks that something the page shows changed (for state kept outside the watches).
    pub fn bump(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The watches failing now, with their last error (e.g. the user may not list Policies).
    pub fn errors(&self) -> BTreeMap<&'static str, String> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Spawner {
    changes: Arc<watch::Sender<u64>>,
    errors: Arc<Mutex<BTreeMap<&'static str, String>>>,
}

impl Spawner {
    /// Runs a reflector of `api` in the background and returns its store; each event bumps the
    /// change counter, each error is kept under `what` until the watch works again.
    fn reflect<K>(&self, what: &'static str, api: Api<K>, config: watcher::Config) -> Reader<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + std::marker::Sync + 'static,
        K::DynamicType: Default + Eq + Hash + Clone,
    {
        let (reader, writer) = reflector::store();
        let changes = self.changes.clone();
        let errors = self.errors.clone();
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let mut errors = errors.lock().unwrap_or_else(PoisonError::into_inner);
                match event {
                    Ok(_) => {
                        errors.remove(what);
                    }
                    Err(e) => {
                        tracing::debug!(watch = what, error = %e, "watch failed");
                        errors.insert(what, e.to_string());
                    }
                }
                drop(errors);
                changes.send_modify(|n| *n += 1);
            }
        });
        reader
    }
}
