//! The live objects of a Sync whose page was opened: one watch per kind in its inventory
//! (label-selected by the owner labels the sync controller sets, as its own drift watches are),
//! each event compared with what plumb applied, and the drift/heal transitions kept as the
//! page's drift activity. Tracking starts at the first visit and lasts as long as the process.
//!
//! With a namespace chosen (`-n`), namespaced kinds are watched in each namespace the inventory
//! names rather than across the cluster, so a user whose RBAC allows only some namespaces sees
//! the objects there, and a refusal elsewhere is shown for that namespace only.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use plumb_api::policy::DriftIgnore;
use plumb_api::{
    Digest, ObjectId, SYNC_FIELD_MANAGER, SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL, Sync,
};
use plumb_sync::view::{Manifest, intended, project};
use serde_json::Value;

use super::drift::{ObjectDrift, Transition, field_diffs, transition};
use super::intent::Artifacts;
use super::model;
use super::store::{Store, describe, describe_kube, expired};

/// How long after a failed download of the rendered objects it is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// The longest pause between two attempts to find out how the cluster serves a kind.
const RESOLVE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How many drift transitions a Sync's page lists.
const ACTIVITY_KEPT: usize = 50;

/// What one watch covers: a kind, in one namespace or (`None`) in all of them (and every
/// cluster-scoped kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchKey {
    /// The kind.
    pub gvk: GroupVersionKind,
    /// The namespace, or `None` for all.
    pub namespace: Option<String>,
}

impl WatchKey {
    /// Whether this watch sees object `id`.
    pub fn covers(&self, id: &ObjectId) -> bool {
        self.gvk.group == id.group
            && self.gvk.kind == id.kind
            && self.namespace.as_ref().is_none_or(|ns| *ns == id.namespace)
    }

    /// `apps/v1 Deployment`, with ` in namespace team` for a watch of one namespace.
    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} in namespace {ns}", api_version_kind(&self.gvk)),
            None => api_version_kind(&self.gvk),
        }
    }
}

/// A drift transition seen by this process.
#[derive(Debug, Clone)]
pub struct Activity {
    /// When the watch delivered it.
    pub at: jiff::Timestamp,
    /// The object.
    pub object: ObjectId,
    /// What happened.
    pub transition: Transition,
}

/// One watched object.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The live object.
    pub live: Value,
    /// How it compares with what plumb applied.
    pub drift: ObjectDrift,
}

/// What plumb applied for one object.
#[derive(Debug, Clone)]
struct Intent {
    namespaced: bool,
    resource: ApiResource,
    body: Value,
    /// `body` with the API server's normal form of each value (from a dry-run apply), once a
    /// difference made it worth asking.
    normalized: Option<Value>,
    /// Rendered from SOPS-encrypted input: the controller applies decrypted values.
    encrypted: bool,
    /// Substituted with values from a Secret, which the artifact does not hold: the controller
    /// substitutes them.
    from_secret: bool,
}

/// The tracked state of one Sync.
#[derive(Debug, Default)]
pub struct Tracked {
    /// The objects seen by the watches, by id.
    pub objects: BTreeMap<ObjectId, Seen>,
    /// Drift transitions, newest first.
    pub activity: VecDeque<Activity>,
    /// What does not work, by topic (a watch refused, the artifact unreachable, ...).
    pub problems: BTreeMap<String, String>,
    /// Watches that have listed their objects once.
    pub listed: HashSet<WatchKey>,
    /// Watches failing now (the user may not watch that kind there, for one), with why.
    pub failing: HashMap<WatchKey, String>,
    intents: HashMap<ObjectId, Intent>,
    intent_key: Option<(Digest, String)>,
    /// The key whose load failed last, and when: retried [`RETRY`] later, not in a loop.
    failed: Option<((Digest, String), Instant)>,
    watched: HashSet<WatchKey>,
}

/// The tracked state of one Sync, and the turn its observers take.
#[derive(Default)]
struct Cell {
    state: Mutex<Tracked>,
    /// Held while an object is compared and recorded, and while new rendered objects replace
    /// the old: a comparison made against objects that were replaced meanwhile, or with a live
    /// object older than the one recorded meanwhile, would otherwise be recorded last and stay.
    turn: tokio::sync::Mutex<()>,
}

type Shared = Arc<Cell>;

fn lock(t: &Shared) -> std::sync::MutexGuard<'_, Tracked> {
    t.state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The tracked Syncs of this process.
#[derive(Clone)]
pub struct Trackers {
    client: Client,
    store: Store,
    artifacts: Artifacts,
    tracked: Arc<Mutex<HashMap<(String, String), Shared>>>,
    kinds: Arc<Mutex<HashMap<GroupVersionKind, (ApiResource, bool)>>>,
    /// Watch namespaced kinds one namespace at a time (a namespace was chosen).
    per_namespace: bool,
}

impl Trackers {
    /// Trackers that watch with `client`: namespaced kinds in each namespace of a Sync's
    /// inventory when `per_namespace`, else across the cluster.
    pub fn new(client: Client, store: Store, artifacts: Artifacts, per_namespace: bool) -> Self {
        Self {
            client,
            store,
            artifacts,
            tracked: Arc::default(),
            kinds: Arc::default(),
            per_namespace,
        }
    }

    /// Runs `f` on the tracked state of Sync `namespace/name`, starting to track it on first use.
    pub fn with<T>(&self, namespace: &str, name: &str, f: impl FnOnce(&Tracked) -> T) -> T {
        let key = (namespace.to_owned(), name.to_owned());
        let shared = {
            let mut all = self.tracked.lock().unwrap_or_else(PoisonError::into_inner);
            match all.get(&key) {
                Some(t) => t.clone(),
                None => {
                    let t = Shared::default();
                    all.insert(key.clone(), t.clone());
                    tokio::spawn(self.clone().follow(key, t.clone()));
                    t
                }
            }
        };
        let state = lock(&shared);
        f(&state)
    }

    /// The objects this process sees drifted now in Sync `namespace/name`, if it tracks it.
    pub fn drifted(&self, namespace: &str, name: &str) -> Vec<String> {
        let key = (namespace.to_owned(), name.to_owned());
        let shared = self
            .tracked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        shared.map_or_else(Vec::new, |t| {
            lock(&t)
                .objects
                .iter()
                .filter(|(_, seen)| seen.drift.is_drift())
                .map(|(id, _)| id.to_string())
                .collect()
        })
    }

    /// Follows the Sync: loads what it applied whenever its rendered artifact or the governing
    /// drift ignores change (and again [`RETRY`] after a failed load), and starts a watch for
    /// each new kind in its inventory.
    async fn follow(self, key: (String, String), state: Shared) {
        let mut changes = self.store.subscribe();
        loop {
            let sync = self.store.syncs.get(&ObjectRef::new(&key.1).within(&key.0));
            if let Some(sync) = sync {
                // Watches first: the objects show (health) while the artifact downloads.
                self.watch_new_kinds(&sync, &state);
                self.load_intent(&sync, &state).await;
            }
            // A load that failed is tried again at its time; one whose time has passed was
            // tried above, or has nothing to try (the Sync or its artifact is gone).
            let retry_at = lock(&state)
                .failed
                .as_ref()
                .map(|(_, at)| *at + RETRY)
                .filter(|at| *at > Instant::now());
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = retry => {}
            }
        }
    }

    async fn load_intent(&self, sync: &Sync, state: &Shared) {
        let Some(artifact) = sync
            .status
            .as_ref()
            .and_then(|s| s.render.as_ref())
            .and_then(|r| r.artifact.clone())
        else {
            return;
        };
        let ignores = self.drift_ignores(sync);
        let key = (
            artifact.digest.clone(),
            serde_json::to_string(&ignores).unwrap_or_default(),
        );
        {
            let s = lock(state);
            let failed_lately = s
                .failed
                .as_ref()
                .is_some_and(|(k, at)| *k == key && at.elapsed() < RETRY);
            if s.intent_key.as_ref() == Some(&key) || failed_lately {
                return;
            }
        }
        tracing::debug!(url = %artifact.url, "loading the rendered objects");
        let manifests = match self
            .artifacts
            .manifests(&artifact.url, &artifact.digest)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(url = %artifact.url, error = %e, "loading the rendered objects failed");
                let mut s = lock(state);
                s.problems.insert("rendered objects".into(), e);
                s.failed = Some((key, Instant::now()));
                drop(s);
                self.store.bump();
                return;
            }
        };
        let mut intents = HashMap::new();
        let refs: Vec<&DriftIgnore> = ignores.iter().collect();
        let sync_ns = sync.metadata.namespace.clone().unwrap_or_default();
        let sync_name = sync.metadata.name.clone().unwrap_or_default();
        let placement = sync.placement_namespace();
        for m in manifests.iter() {
            let Some((resource, namespaced)) = self.resolve(&gvk_of(m), state).await else {
                continue;
            };
            let m = as_applied(m);
            let i = intended(&m, namespaced, &sync_ns, &sync_name, &placement, &refs);
            intents.insert(
                i.id,
                Intent {
                    namespaced,
                    resource,
                    body: i.body,
                    normalized: None,
                    encrypted: m.object.get("sops").is_some(),
                    from_secret: plumb_sync::view::substitution_deferred(&m.object),
                },
            );
        }
        // Replaced and compared again in one turn, so no comparison with the old objects is
        // recorded after these.
        let _turn = state.turn.lock().await;
        let live: Vec<(ObjectId, Value)> = {
            let mut s = lock(state);
            s.problems.remove("rendered objects");
            s.failed = None;
            s.intents = intents;
            s.intent_key = Some(key);
            s.objects
                .iter()
                .map(|(id, seen)| (id.clone(), seen.live.clone()))
                .collect()
        };
        for (id, obj) in live {
            self.record(state, id, Some(obj)).await;
        }
        self.store.bump();
    }

    /// The `drift.ignore` rules of the Policies governing `sync`.
    fn drift_ignores(&self, sync: &Sync) -> Vec<DriftIgnore> {
        let policies = self.store.policies.state();
        let ns_labels = model::namespace_labels(&self.store, sync);
        model::governing(&policies, &ns_labels, sync)
            .into_iter()
            .flat_map(|p| {
                p.spec
                    .drift
                    .as_ref()
                    .map(|d| d.ignore.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    async fn resolve(&self, gvk: &GroupVersionKind, state: &Shared) -> Option<(ApiResource, bool)> {
        if let Some(found) = self
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(gvk)
        {
            return Some(found.clone());
        }
        match kube::discovery::pinned_kind(&self.client, gvk).await {
            Ok((ar, caps)) => {
                lock(state)
                    .problems
                    .remove(&format!("kind {}", api_version_kind(gvk)));
                let found = (ar, caps.scope == Scope::Namespaced);
                self.kinds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(gvk.clone(), found.clone());
                Some(found)
            }
            Err(e) => {
                lock(state).problems.insert(
                    format!("kind {}", api_version_kind(gvk)),
                    format!("not served by the cluster: {e}"),
                );
                None
            }
        }
    }

    fn watch_new_kinds(&self, sync: &Sync, state: &Shared) {
        let inventory = sync
            .status
            .as_ref()
            .and_then(|s| s.inventory.clone())
            .unwrap_or_default();
        let mut s = lock(state);
        for entry in inventory {
            let Ok(id) = entry.object_id() else { continue };
            let key = WatchKey {
                gvk: GroupVersionKind::gvk(&id.group, &entry.v, &id.kind),
                // Cluster-scoped objects have no namespace in their id.
                namespace: (self.per_namespace && !id.namespace.is_empty()).then_some(id.namespace),
            };
            if s.watched.insert(key.clone()) {
                let sync_key = (
                    sync.metadata.namespace.clone().unwrap_or_default(),
                    sync.metadata.name.clone().unwrap_or_default(),
                );
                tokio::spawn(self.clone().watch_kind(sync_key, key, state.clone()));
            }
        }
    }

    /// Watches the objects of `key` that Sync `namespace/name` applied.
    async fn watch_kind(self, (namespace, name): (String, String), key: WatchKey, state: Shared) {
        let gvk = &key.gvk;
        // Until the cluster says how it serves the kind (discovery can fail for a while, e.g.
        // while the API server restarts), try again with a growing pause, the problem shown.
        let mut pause = Duration::from_secs(1);
        let resource = loop {
            if let Some((resource, _)) = self.resolve(gvk, &state).await {
                break resource;
            }
            self.store.bump();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RESOLVE_BACKOFF_MAX);
        };
        let topic = format!("watch of {}", key.describe());
        tracing::debug!(watch = %key.describe(), sync = %format!("{namespace}/{name}"), "watching");
        let api: Api<DynamicObject> = match &key.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let selector = format!("{SYNC_NAME_LABEL}={name},{SYNC_NAMESPACE_LABEL}={namespace}");
        let stream = watcher(api, watcher::Config::default().labels(&selector)).default_backoff();
        futures::pin_mut!(stream);
        let mut listing: HashSet<ObjectId> = HashSet::new();
        while let Some(event) = stream.next().await {
            let event = match event {
                // The start of a (re)list is no answer yet: a refused list follows it.
                Ok(e @ watcher::Event::Init) => e,
                Ok(e) => {
                    let mut s = lock(&state);
                    s.problems.remove(&topic);
                    s.failing.remove(&key);
                    e
                }
                Err(e) if expired(&e) => continue,
                Err(e) => {
                    let why = describe(&e);
                    let mut s = lock(&state);
                    s.problems.insert(topic.clone(), why.clone());
                    s.failing.insert(key.clone(), why);
                    drop(s);
                    self.store.bump();
                    continue;
                }
            };
            match event {
                watcher::Event::Init => listing.clear(),
                watcher::Event::InitApply(obj) => {
                    let (id, value) = identify(gvk, obj);
                    listing.insert(id.clone());
                    self.observe(&state, id, Some(value)).await;
                }
                watcher::Event::InitDone => {
                    let gone: Vec<ObjectId> = lock(&state)
                        .objects
                        .keys()
                        .filter(|id| key.covers(id) && !listing.contains(*id))
                        .cloned()
                        .collect();
                    for id in gone {
                        self.observe(&state, id, None).await;
                    }
                    lock(&state).listed.insert(key.clone());
                }
                watcher::Event::Apply(obj) => {
                    let (id, value) = identify(gvk, obj);
                    self.observe(&state, id, Some(value)).await;
                }
                watcher::Event::Delete(obj) => {
                    let (id, _) = identify(gvk, obj);
                    self.observe(&state, id, None).await;
                }
            }
            self.store.bump();
        }
    }

    /// Records the live state of `id` (`None`: deleted), its drift, and the transition, in its
    /// turn.
    async fn observe(&self, state: &Shared, id: ObjectId, live: Option<Value>) {
        let _turn = state.turn.lock().await;
        self.record(state, id, live).await;
    }

    /// [`Trackers::observe`] for a caller that holds the turn.
    async fn record(&self, state: &Shared, id: ObjectId, live: Option<Value>) {
        let drift = match &live {
            Some(obj) => self.compare(state, &id, obj).await,
            None if lock(state).intents.contains_key(&id) => ObjectDrift::Missing,
            None => {
                // Pruned: it left the render, so its absence is what plumb wants.
                lock(state).objects.remove(&id);
                return;
            }
        };
        let mut s = lock(state);
        let before = s.objects.get(&id).map(|seen| seen.drift.clone());
        if let Some(t) = transition(before.as_ref(), &drift) {
            s.activity.push_front(Activity {
                at: jiff::Timestamp::now(),
                object: id.clone(),
                transition: t,
            });
            s.activity.truncate(ACTIVITY_KEPT);
        }
        let live = live.unwrap_or(Value::Null);
        s.objects.insert(id, Seen { live, drift });
    }

    /// Compares `live` with what plumb applied for `id`, normalizing the intent by a dry-run
    /// apply (as the sync controller does) the first time it seems to differ.
    async fn compare(&self, state: &Shared, id: &ObjectId, live: &Value) -> ObjectDrift {
        let intent = {
            let s = lock(state);
            match s.intents.get(id) {
                Some(i) => i.clone(),
                None if s.intent_key.is_none() => {
                    return ObjectDrift::NotCompared(
                        "the rendered objects are not loaded (see the problems above)".into(),
                    );
                }
                None => {
                    return ObjectDrift::NotCompared(
                        "not in the latest render (it will be pruned, or prune is off)".into(),
                    );
                }
            }
        };
        if intent.encrypted {
            return ObjectDrift::NotCompared(
                "encrypted in Git; the sync controller compares the decrypted values".into(),
            );
        }
        if intent.from_secret {
            return ObjectDrift::NotCompared(
                "substituted with values from a Secret; the sync controller compares them".into(),
            );
        }
        let want = intent.normalized.as_ref().unwrap_or(&intent.body);
        let diffs = field_diffs(&id.group, &id.kind, want, live);
        if diffs.is_empty() {
            return ObjectDrift::InSync;
        }
        if intent.normalized.is_some() {
            return ObjectDrift::Drifted(diffs);
        }
        let api: Api<DynamicObject> = if intent.namespaced {
            Api::namespaced_with(self.client.clone(), &id.namespace, &intent.resource)
        } else {
            Api::all_with(self.client.clone(), &intent.resource)
        };
        let params = PatchParams::apply(SYNC_FIELD_MANAGER).force().dry_run();
        let topic = "server's normal form".to_owned();
        match api
            .patch(&id.name, &params, &Patch::Apply(&intent.body))
            .await
        {
            Ok(answer) => {
                let answer = serde_json::to_value(&answer).unwrap_or(Value::Null);
                let normalized = project(&intent.body, &answer);
                let diffs = field_diffs(&id.group, &id.kind, &normalized, live);
                let mut s = lock(state);
                s.problems.remove(&topic);
                if let Some(i) = s.intents.get_mut(id) {
                    i.normalized = Some(normalized);
                }
                if diffs.is_empty() {
                    ObjectDrift::InSync
                } else {
                    ObjectDrift::Drifted(diffs)
                }
            }
            Err(e) => {
                lock(state).problems.insert(
                    topic,
                    format!("a dry-run apply of {id} was refused ({}); values are compared as rendered, so a value the server writes in another form (1000m for 1) may show as drift", describe_kube(&e)),
                );
                ObjectDrift::Drifted(diffs)
            }
        }
    }
}

/// Rendered object `m` under the name and namespace it is applied under: a deferred object's
/// own may hold `${...}` that the sync controller substitutes (the render recorded the result),
/// and the live object, the inventory and the page know it by the substituted ones.
fn as_applied(m: &Manifest) -> Cow<'_, Manifest> {
    match plumb_sync::view::substituted_id(&m.object) {
        Some(id) => Cow::Owned(Manifest {
            name: id.name,
            namespace: id.namespace,
            ..m.clone()
        }),
        None => Cow::Borrowed(m),
    }
}

fn gvk_of(m: &Manifest) -> GroupVersionKind {
    GroupVersionKind::gvk(m.group(), m.version(), &m.kind)
}

fn api_version_kind(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        format!("{} {}", gvk.version, gvk.kind)
    } else {
        format!("{}/{} {}", gvk.group, gvk.version, gvk.kind)
    }
}

/// The id of a watched object, and the object as JSON with its `apiVersion` and `kind` (items
/// of a list arrive without them).
fn identify(gvk: &GroupVersionKind, obj: DynamicObject) -> (ObjectId, Value) {
    let id = ObjectId::new(
        obj.metadata.namespace.as_deref().unwrap_or_default(),
        obj.metadata.name.as_deref().unwrap_or_default(),
        &gvk.group,
        &gvk.kind,
    );
    let mut value = serde_json::to_value(&obj).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(gvk.api_version()));
        map.insert("kind".into(), Value::String(gvk.kind.clone()));
    }
    (id, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_api::reference::DataKind;
    use plumb_render::{Published, RenderOptions, render_published};
    use plumb_substitute::deferred::VariableSource;
    use serde_json::json;

    /// The id plumb applies rendered object `m` under, as the page keys what plumb applied.
    fn intent_id(m: &Manifest) -> ObjectId {
        intended(&as_applied(m), true, "team", "app", "team", &[]).id
    }

    #[test]
    fn a_deferred_object_is_known_by_the_name_and_namespace_it_is_applied_under() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("deploy");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("objects.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-${cluster}\n  namespace: ${tenant}\ndata:\n  dsn: db://app:${password}@db\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: uses-secret\ndata:\n  p: ${password}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain-${cluster}\ndata:\n  c: ${cluster}\n",
        )
        .unwrap();
        let source = |kind, name: &str, pairs: &[(&str, &str)]| VariableSource {
            kind,
            name: name.into(),
            resource_version: "1".into(),
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let sources = [
            source(DataKind::ConfigMap, "vars", &[("cluster", "staging")]),
            source(
                DataKind::Secret,
                "creds",
                &[("password", "s3cr3t"), ("tenant", "shop")],
            ),
        ];
        let spec: plumb_api::SyncSpec = serde_json::from_value(json!({
            "sourceRef": {"kind": "GitRepository", "name": "repo"}, "path": "deploy", "interval": "1m",
        }))
        .unwrap();
        let published =
            render_published(tmp.path(), &spec, &sources, &RenderOptions::default()).unwrap();
        // What the sync controller applies: the substituted objects.
        let applied: Vec<ObjectId> = published
            .objects
            .iter()
            .map(|o| {
                let m = Manifest::from_value(o.clone(), 0).unwrap();
                intent_id(&m)
            })
            .collect();
        let artifact = Published {
            objects: published.objects.clone(),
            deferred: published.deferred.clone(),
        }
        .into_artifact();
        let rendered: Vec<Manifest> = artifact
            .into_iter()
            .enumerate()
            .map(|(i, o)| Manifest::from_value(o, i).unwrap())
            .collect();
        assert_eq!(
            rendered[0].name, "web-${cluster}",
            "published unsubstituted"
        );
        assert!(plumb_sync::view::substitution_deferred(&rendered[0].object));
        let shown: Vec<ObjectId> = rendered.iter().map(intent_id).collect();
        assert_eq!(shown, applied);
        assert_eq!(
            shown.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "shop_web-staging__ConfigMap",
                "team_plain-staging__ConfigMap",
                "team_uses-secret__ConfigMap",
            ]
        );
    }
}
