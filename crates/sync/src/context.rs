//! What every reconcile shares: clients, caches of Syncs, Policies and Namespaces, the drift
//! watches, and the per-Sync [memory](crate::memory) of what was applied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use plumb_ops::periodic::{self, Periodic};
use plumb_ops::{EventRecorder, EventType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use plumb_api::{Policy, Sync};

use crate::apply::Resolver;
use crate::config::Config;
use crate::deps::Key;
pub use crate::deps::key_of;
use crate::memory::Memories;
use crate::sync_view::SyncView;
use crate::watches::Watches;

/// The cache's reference to Sync `key`.
fn sync_ref(key: &Key) -> ObjectRef<SyncView> {
    ObjectRef::new(&key.1).within(&key.0)
}

/// Shared by all reconciles.
pub struct Context {
    /// The controller's own client.
    pub client: Client,
    /// The configuration the client was built from; impersonating clients derive from it.
    pub kube_config: kube::Config,
    /// For downloading artifacts.
    pub http: reqwest::Client,
    /// Publishes Events on Syncs (the runtime's recorder, as `plumb-sync`).
    pub recorder: EventRecorder,
    /// Flags.
    pub settings: Config,
    /// Reconcile and drift metrics.
    pub metrics: SyncMetrics,
    /// Kind to resource resolution.
    pub resolver: Resolver,
    /// Watches on applied objects.
    pub watches: Watches,
    /// Every Sync this controller reconciles, as [views](SyncView).
    pub syncs: Store<SyncView>,
    /// Every Policy.
    pub policies: Store<Policy>,
    /// Every Namespace's metadata (for Policy namespace selectors).
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// What is remembered about each Sync between reconciles.
    pub memories: Memories,
    /// What woke each Sync's next pass.
    pub wakes: crate::wake::Wakes,
    /// When each Sync's next periodic pass is due (long requeues, out of kube-runtime's
    /// scheduler).
    pub periodic: Arc<Periodic<SyncView>>,
    clients: Mutex<HashMap<String, Client>>,
    /// Bounds the Events [announced](Context::announce) at once: each takes a connection of its
    /// own while in flight.
    events_in_flight: Arc<tokio::sync::Semaphore>,
}

/// The most Events [`Context::announce`] has in flight at once, as many as the default workers.
const EVENTS_IN_FLIGHT: usize = 4;

/// The sync controller's metrics, registered in the shared registry.
#[derive(Clone)]
pub struct SyncMetrics {
    /// The shared registry with reconcile durations and counts.
    pub ops: plumb_ops::metrics::Metrics,
    /// Drifted objects re-applied.
    pub drift_corrections: prometheus_client::metrics::counter::Counter,
    /// Drifted objects reported and left alone.
    pub drift_reports: prometheus_client::metrics::counter::Counter,
    /// Objects applied (created or changed).
    pub applied_objects: prometheus_client::metrics::counter::Counter,
    /// Objects pruned.
    pub pruned_objects: prometheus_client::metrics::counter::Counter,
    /// Rendered artifacts downloaded, bytes.
    pub artifact_bytes: prometheus_client::metrics::counter::Counter,
    /// Status writes sent.
    pub status_writes: prometheus_client::metrics::counter::Counter,
    /// Reconciles that left the status as it was, so wrote nothing.
    pub status_unchanged: prometheus_client::metrics::counter::Counter,
    /// Reconciles whose status report was held back (`--progress-report-delay`), so wrote
    /// nothing.
    pub status_held: prometheus_client::metrics::counter::Counter,
    /// Passes, by what woke them and what they did.
    passes: Family<PassLabels, Counter>,
}

/// The labels of `plumb_sync_passes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassLabels {
    woken_by: String,
    did: String,
}

impl SyncMetrics {
    /// Records one phase of a Sync reconcile (`fetch`, `apply`, `prune`, `health`, `status`)
    /// that started at `started`.
    pub fn phase(&self, phase: &str, started: std::time::Instant) {
        self.ops.observe_phase("Sync", phase, started);
    }

    /// Counts a pass woken by `woken` that did `did` (`skipped`, `deleted`, `nothing`, `held`,
    /// `wrote`, `applied`, `applied+held`, `applied+wrote`).
    pub fn pass(&self, woken: crate::wake::Woken, did: &str) {
        self.passes
            .get_or_create(&PassLabels {
                woken_by: woken.label(),
                did: did.to_owned(),
            })
            .inc();
    }

    /// Registers the sync metrics in `ops`'s registry.
    pub fn new(ops: plumb_ops::metrics::Metrics) -> Self {
        let m = Self {
            ops,
            drift_corrections: Default::default(),
            drift_reports: Default::default(),
            applied_objects: Default::default(),
            pruned_objects: Default::default(),
            artifact_bytes: Default::default(),
            status_writes: Default::default(),
            status_unchanged: Default::default(),
            status_held: Default::default(),
            passes: Family::default(),
        };
        m.ops.register(
            "sync_drift_corrections",
            "Drifted objects re-applied",
            m.drift_corrections.clone(),
        );
        m.ops.register(
            "sync_drift_reports",
            "Drifted objects reported and not corrected",
            m.drift_reports.clone(),
        );
        m.ops.register(
            "sync_applied_objects",
            "Objects created or changed by apply",
            m.applied_objects.clone(),
        );
        m.ops.register(
            "sync_pruned_objects",
            "Objects deleted by prune",
            m.pruned_objects.clone(),
        );
        m.ops.register(
            "sync_status_writes",
            "Status writes sent",
            m.status_writes.clone(),
        );
        m.ops.register(
            "sync_status_unchanged",
            "Reconciles whose status stayed as it was (nothing written)",
            m.status_unchanged.clone(),
        );
        m.ops.register(
            "sync_status_held",
            "Reconciles whose report of a state on the way to Ready was held back by --progress-report-delay (nothing written)",
            m.status_held.clone(),
        );
        m.ops.register(
            "sync_passes",
            "Passes over a Sync, by what woke them (sync, object, dependency, policy, secret; timer for none) and what they did (skipped as redundant, deleted, nothing, held a report back, wrote status, applied objects)",
            m.passes.clone(),
        );
        m.ops.register(
            "sync_artifact_bytes",
            "Bytes of rendered artifacts downloaded",
            m.artifact_bytes.clone(),
        );
        m
    }
}

impl Context {
    /// Builds the context.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        kube_config: kube::Config,
        http: reqwest::Client,
        recorder: EventRecorder,
        settings: Config,
        metrics: SyncMetrics,
        watches: Watches,
        syncs: Store<SyncView>,
        policies: Store<Policy>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
    ) -> Self {
        Self {
            resolver: Resolver::new(client.clone()),
            client,
            kube_config,
            http,
            recorder,
            settings,
            metrics,
            watches,
            syncs,
            policies,
            namespaces,
            memories: Memories::default(),
            wakes: Default::default(),
            periodic: Periodic::new(periodic::LONG),
            clients: Mutex::default(),
            events_in_flight: Arc::new(tokio::sync::Semaphore::new(EVENTS_IN_FLIGHT)),
        }
    }

    /// Forgets every remembered Sync that is no longer in the cache (deleted, or moved out of
    /// this controller's shard), releasing its watches.
    pub fn forget_gone(&self) {
        self.wakes.retain(|key| self.sync(key).is_some());
        for key in self.memories.keys() {
            if self.sync(&key).is_none() {
                tracing::debug!(namespace = %key.0, name = %key.1, "Sync gone; releasing its watches");
                self.abandoned(&key);
                self.forget(&key);
            }
        }
    }

    /// Warns when Sync `key` went away (its finalizer removed by hand) while the deletion of its
    /// objects was under way: what was left stays in the cluster, and a person must know.
    fn abandoned(&self, key: &Key) {
        let memory = self.memories.of(key);
        let Ok(memory) = memory.try_lock() else {
            return;
        };
        let Some(left) = memory.left_by_deletion() else {
            return;
        };
        let ids: Vec<&str> = left.iter().map(|e| e.id.as_str()).collect();
        let note = format!(
            "Sync {}/{} went away before its objects were deleted (its finalizer was removed); \
             left in the cluster with its owner labels: {}",
            key.0,
            key.1,
            ids.join(", ")
        );
        tracing::warn!(namespace = %key.0, name = %key.1, left = ?ids, "deletion abandoned");
        let recorder = self.recorder.clone();
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("sync.plumb.dev/v1".into()),
            kind: Some("Sync".into()),
            namespace: Some(key.0.clone()),
            name: Some(key.1.clone()),
            ..Default::default()
        };
        tokio::spawn(async move {
            recorder
                .publish_ref(
                    &reference,
                    EventType::Warning,
                    "DeletionAbandoned",
                    "Delete",
                    &note,
                )
                .await;
        });
    }

    /// What the controller does after a pass over Sync `key` that asks to look again `after`
    /// (none: only on a change); see [`Periodic::action`].
    pub fn next_pass(&self, key: &Key, after: Option<Duration>) -> Action {
        self.periodic.action(&sync_ref(key), after)
    }

    /// Forgets a Sync that is gone, releasing its watches.
    pub fn forget(&self, key: &Key) {
        self.memories.forget(key);
        self.periodic.forget(&sync_ref(key));
        self.watches.set_custom_health(key, false);
        self.watches.retain(key, &HashSet::new());
        self.watches.checks.retain(key, &HashSet::new());
    }

    /// Whether namespace `name` is being deleted (from the Namespace cache).
    pub fn namespace_terminating(&self, name: &str) -> bool {
        self.namespaces
            .get(&ObjectRef::new(name))
            .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
    }

    /// Whether the Policy and Namespace caches have listed once, waiting at most `timeout`.
    pub async fn caches_ready(&self, timeout: std::time::Duration) -> bool {
        let both = async {
            self.policies.wait_until_ready().await.is_ok()
                && self.namespaces.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(timeout, both).await.unwrap_or(false)
    }

    /// The user a Sync in `namespace` acts as: `system:serviceaccount:<namespace>:<sa>` for
    /// `service_account` (or the default one) when set; `None` for the controller itself.
    pub fn identity_for(&self, namespace: &str, service_account: Option<&str>) -> Option<String> {
        let sa = service_account.or(self.settings.default_service_account.as_deref())?;
        Some(format!("system:serviceaccount:{namespace}:{sa}"))
    }

    /// The client to apply with for a Sync in `namespace`: impersonating `service_account`
    /// (or the default one) when set, else the controller's own.
    pub fn client_for(
        &self,
        namespace: &str,
        service_account: Option<&str>,
    ) -> Result<Client, kube::Error> {
        let Some(user) = self.identity_for(namespace, service_account) else {
            return Ok(self.client.clone());
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&user) {
            return Ok(c.clone());
        }
        let mut config = self.kube_config.clone();
        config.auth_info.impersonate = Some(user.clone());
        let client = Client::try_from(config)?;
        clients.insert(user, client.clone());
        Ok(client)
    }

    /// A Sync from the cache, as its [view](SyncView).
    pub fn sync(&self, key: &Key) -> Option<Arc<SyncView>> {
        self.syncs.get(&sync_ref(key))
    }

    /// The Policies governing `sync`, sorted by name.
    pub fn governing(&self, sync: &Sync) -> Vec<Arc<Policy>> {
        let empty = BTreeMap::new();
        let sync_labels = sync.metadata.labels.as_ref().unwrap_or(&empty);
        let ns = sync.metadata.namespace.clone().unwrap_or_default();
        let ns_meta = self.namespaces.get(&ObjectRef::new(&ns));
        let ns_labels = ns_meta
            .as_ref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&empty);
        let mut out: Vec<_> = self
            .policies
            .state()
            .into_iter()
            .filter(|p| p.governs(ns_labels, sync_labels))
            .collect();
        out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        out
    }

    /// Publishes an Event on `sync`; failures are logged, never fatal.
    pub async fn event(&self, sync: &Sync, type_: EventType, reason: &str, note: String) {
        self.recorder
            .publish(sync, type_, reason, "Reconcile", &note)
            .await;
    }

    /// Publishes the Event `note` about `sync` in the background: a reconcile that ends with
    /// an Event does not wait for its round trip (Events are best effort, and the status,
    /// written before, is the record that counts).
    pub fn announce(&self, sync: &Sync, note: crate::status::Note) {
        let recorder = self.recorder.clone();
        let regarding = kube::Resource::object_ref(sync, &());
        let in_flight = self.events_in_flight.clone();
        tokio::spawn(async move {
            // Never closed: the permit is always had.
            let _permit = in_flight.acquire_owned().await;
            recorder
                .publish_ref(
                    &regarding,
                    note.type_,
                    &note.reason,
                    "Reconcile",
                    &note.message,
                )
                .await;
        });
    }
}
