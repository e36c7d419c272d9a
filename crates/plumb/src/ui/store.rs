//! What the page shows, kept current by watches of the user's client: GitRepositories, Syncs,
//! Policies, Namespaces (their labels decide which Policies govern a Sync) and the Events of
//! Syncs and GitRepositories. Every change bumps one counter that open pages follow.
//!
//! With a namespace chosen, nothing namespaced is read outside it, so a user whose RBAC allows
//! only that namespace sees it whole: its Namespace object is watched when they may watch
//! Namespaces, else read again every [`NAMESPACE_REREAD`] (a Role in a namespace can grant
//! reading that namespace, not watching it); Policies, being cluster-scoped, show when they may
//! be listed, and otherwise the page says that they cannot be read and why.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::runtime::reflector::{self, Store as Reader};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use plumb_api::{GitRepository, Policy, Sync};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// How often the scope's Namespace is read again when the user may read it but not watch it.
pub const NAMESPACE_REREAD: Duration = Duration::from_secs(30);

/// The name under which a failing watch of Policies is kept in [`Store::errors`].
const POLICIES: &str = "Policies";

/// The watched objects, shared by every request.
#[derive(Clone)]
pub struct Store {
    /// GitRepositories in scope.
    pub repos: Reader<GitRepository>,
    /// Syncs in scope.
    pub syncs: Reader<Sync>,
    /// All Policies (cluster-scoped), as far as the user may list them.
    pub policies: Reader<Policy>,
    /// Namespaces in scope (all, or the chosen one), for the labels Policies select by.
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
                POLICIES,
                Api::all(client.clone()),
                watcher::Config::default(),
            ),
            namespaces: match &scope {
                Some(ns) => spawn.follow_namespace(Api::all(client.clone()), ns.clone()),
                None => spawn.reflect(
                    "Namespaces",
                    Api::all(client.clone()),
                    watcher::Config::default(),
                ),
            },
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

    /// The Policies, or why they cannot be read: none are known and their watch fails (the
    /// user may not list them, for one: they are cluster-scoped, so a Role in a namespace
    /// cannot grant it).
    pub fn policies(&self) -> Result<Vec<Arc<Policy>>, String> {
        let policies = self.policies.state();
        if policies.is_empty()
            && let Some(why) = self.errors().remove(POLICIES)
        {
            return Err(why);
        }
        Ok(policies)
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
        let report = self.reporter(what);
        let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
        tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match &event {
                    // The start of a (re)list is no answer yet: a refused list follows it.
                    Ok(watcher::Event::Init) => {}
                    Ok(_) => report(None),
                    Err(e) if expired(e) => {}
                    Err(e) => report(Some(describe(e))),
                }
            }
        });
        reader
    }

    /// Keeps Namespace `name` in the returned store: watched while the user may watch it, else
    /// read again every [`NAMESPACE_REREAD`]; a change bumps the change counter.
    fn follow_namespace(&self, api: Api<Namespace>, name: String) -> Reader<Namespace> {
        const WHAT: &str = "Namespace";
        let (reader, mut writer) = reflector::store();
        let report = self.reporter(WHAT);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let watched = watcher(api.clone(), config).default_backoff();
        let shown = reader.clone();
        tokio::spawn(async move {
            futures::pin_mut!(watched);
            while let Some(event) = watched.next().await {
                match event {
                    Ok(event) => {
                        writer.apply_watcher_event(&event);
                        if !matches!(event, watcher::Event::Init) {
                            report(None);
                        }
                    }
                    // Watching Namespaces takes a ClusterRole; reading one's own does not.
                    Err(e) if forbidden(&e) => break,
                    Err(e) if expired(&e) => {}
                    Err(e) => report(Some(describe(&e))),
                }
            }
            tracing::debug!(namespace = %name, "may not watch Namespaces: reading it every {NAMESPACE_REREAD:?}");
            loop {
                match api.get(&name).await {
                    Ok(namespace) => {
                        let before = shown.state().first().map(|n| n.metadata.labels.clone());
                        let labels = namespace.metadata.labels.clone();
                        writer.apply_watcher_event(&watcher::Event::Apply(namespace));
                        if before != Some(labels) {
                            report(None);
                        }
                    }
                    Err(e) => report(Some(format!(
                        "reading Namespace {name}: {}",
                        describe_kube(&e)
                    ))),
                }
                tokio::time::sleep(NAMESPACE_REREAD).await;
            }
        });
        reader
    }

    /// A function that records the outcome of one step of the watch `what` (`Some(error)`:
    /// it failed, kept until a later step works) and bumps the change counter.
    fn reporter(&self, what: &'static str) -> impl Fn(Option<String>) + Send + 'static {
        let changes = self.changes.clone();
        let errors = self.errors.clone();
        move |failure| {
            let mut errors = errors.lock().unwrap_or_else(PoisonError::into_inner);
            match failure {
                None => {
                    errors.remove(what);
                }
                Some(e) => {
                    tracing::debug!(watch = what, error = %e, "watch failed");
                    errors.insert(what, e);
                }
            }
            drop(errors);
            changes.send_modify(|n| *n += 1);
        }
    }
}

/// The API server's answer inside a watch's failure, if it gave one.
fn status_of(e: &watcher::Error) -> Option<&kube::core::Status> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchError(s) => Some(s.as_ref()),
        _ => None,
    }
}

/// Whether the API server refused the watch (RBAC).
pub fn forbidden(e: &watcher::Error) -> bool {
    status_of(e).is_some_and(|s| s.code == 403)
}

/// Whether the watch ended because the version it resumed from is gone (410): the watcher
/// lists again by itself, so nothing is missing from the page.
pub fn expired(e: &watcher::Error) -> bool {
    status_of(e).is_some_and(|s| s.code == 410)
}

/// A watch's failure in words: for an answer of the API server its message (a refusal names
/// the user, the verb and the resource), else the client's error.
pub fn describe(e: &watcher::Error) -> String {
    match status_of(e) {
        Some(s) => describe_status(s),
        None => e.to_string(),
    }
}

/// [`describe`] for a request's failure.
pub fn describe_kube(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => describe_status(s),
        other => other.to_string(),
    }
}

fn describe_status(s: &kube::core::Status) -> String {
    if s.code == 403 {
        format!("your kubeconfig's user may not do this: {}", s.message)
    } else {
        format!("{} ({} {})", s.message, s.code, s.reason)
    }
}
