//! The [`Context`] every reconcile shares, and the render controller's metrics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use plumb_api::{GitRepository, Policy};
use plumb_artifact::Storage;
use plumb_ops::periodic::Periodic;
use plumb_ops::{EventRecorder, EventType, Failures};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::Config;
use crate::cache::Record;
use crate::inputs::SharedInputs;
use crate::labels::LabelIndex;
use crate::policy::{CompileError, CompiledPolicy, compile};
use crate::sync_view::SyncView;
use crate::trees::Trees;

/// The name the controller reports Events under.
pub const CONTROLLER_NAME: &str = "plumb-render";

/// What every reconcile shares: the client, config, stores and caches. Nothing global.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The settings.
    pub config: Config,
    /// Rendered artifact storage.
    pub storage: Storage,
    /// HTTP client for source artifacts.
    pub http: reqwest::Client,
    /// Publishes Events.
    pub recorder: EventRecorder,
    /// Every Policy (cluster-scoped).
    pub policies: Store<Policy>,
    /// Every Sync the controller watches (its shard, when a label selector is set).
    pub syncs: Store<SyncView>,
    /// The labels of every Sync in the cluster: a Policy's governed count spans all shards.
    pub all_syncs: LabelIndex,
    /// Namespace labels, for Policy namespace selectors.
    pub namespaces: LabelIndex,
    /// The GitRepositories in the controller's namespace scope (their artifacts).
    pub repos: Store<GitRepository>,
    /// Compiled Policies by name, with the uid and generation compiled.
    pub(crate) compiled: Mutex<HashMap<String, CompiledEntry>>,
    /// Each Sync's last completed render: its key, verdict and inputs, by the Sync's
    /// [compact key](plumb_ops::key_of). Boxed: a hash table keeps up to twice as many slots as
    /// entries, and a record inline is some hundred bytes (heaptrack at 1000 Syncs: 866 KiB of
    /// slots, most of them empty); the compact key keeps a slot at 24 bytes where an
    /// `ObjectRef` took 104 (215 KiB of slots at 1000 Syncs).
    pub rendered: Mutex<HashMap<Box<str>, Box<Record>>>,
    /// One copy of each distinct list of what renders read, shared by their records.
    pub(crate) inputs: Mutex<SharedInputs>,
    /// Source trees, unpacked once per artifact digest and shared by the renders.
    pub trees: Trees,
    /// The Syncs a new source artifact touched, queued ahead of the others, with when they
    /// were queued: the others wait until each has been reconciled since
    /// ([`crate::fanout`]).
    pub waiting: Mutex<HashMap<ObjectRef<SyncView>, std::time::Instant>>,
    /// Counts the reconciles of waited-for Syncs that finished, Sync deletions and (while Syncs
    /// are held for applies) changes of Syncs, to wake what waits for them.
    pub finished: tokio::sync::watch::Sender<u64>,
    /// The Helm engine charts are rendered with (`None`: no binary found; chart renders fail
    /// saying so).
    pub helm: Option<plumb_helm::Helm>,
    /// The cluster's capabilities for charts, from discovery.
    pub capabilities: crate::chart_inputs::CapabilitiesCache,
    /// The Syncs whose last render was a chart: their cache key covers the chart inputs.
    pub charts: Mutex<HashSet<ObjectRef<SyncView>>>,
    /// Consecutive transient failures per Sync, for backoff.
    pub failures: Failures<ObjectRef<SyncView>>,
    /// When each Sync's next periodic render is due (long requeues, out of kube-runtime's
    /// scheduler).
    pub periodic: Arc<Periodic<SyncView>>,
    /// Prometheus metrics.
    pub metrics: RenderMetrics,
}

/// The render controller's metrics, in the shared `plumb-ops` registry.
#[derive(Clone)]
pub struct RenderMetrics {
    /// Reconcile durations and counts (shared by every plumb controller).
    pub ops: plumb_ops::Metrics,
    /// Sizes of published rendered artifacts.
    pub artifact_size: Histogram,
    /// Policy findings, by action.
    pub findings: Family<FindingLabels, Counter>,
    /// Renders run (source tree → kustomize or Helm → artifact).
    pub renders: Counter,
    /// Renders carried to a new source revision without rendering, none of their inputs
    /// having changed.
    pub carried: Counter,
    /// Syncs a new source revision left unchanged, waiting for the ones it changed to be
    /// applied ([`crate::fanout`]).
    pub held: Gauge,
    /// Sync status writes sent (the render controller's part of the status).
    pub status_writes: Counter,
}

/// Labels of the policy findings counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    /// `deny` or `warn`.
    pub action: String,
}

impl RenderMetrics {
    /// Registers the render metrics in `ops`'s registry.
    pub fn new(ops: plumb_ops::Metrics) -> Self {
        let artifact_size = Histogram::new(exponential_buckets(1024.0, 4.0, 10));
        let findings = Family::<FindingLabels, Counter>::default();
        let (renders, carried) = (Counter::default(), Counter::default());
        ops.register(
            "render_renders",
            "Renders run from a source tree",
            renders.clone(),
        );
        ops.register(
            "render_carried_forward",
            "Renders carried to a new source revision unchanged, no file they read having changed",
            carried.clone(),
        );
        let held = Gauge::default();
        ops.register(
            "render_fanout_held_syncs",
            "Syncs a new source revision left unchanged, waiting for the Syncs it changed to be applied",
            held.clone(),
        );
        ops.register(
            "render_artifact_size_bytes",
            "Size of each published rendered artifact",
            artifact_size.clone(),
        );
        ops.register(
            "render_policy_findings",
            "Policy findings in renders, by action",
            findings.clone(),
        );
        let status_writes = Counter::default();
        ops.register(
            "render_status_writes",
            "Sync status writes sent (the render controller's part)",
            status_writes.clone(),
        );
        Self {
            ops,
            artifact_size,
            findings,
            renders,
            carried,
            held,
            status_writes,
        }
    }
}

type CompiledEntry = (
    Option<String>,
    Option<i64>,
    Arc<Result<Arc<CompiledPolicy>, CompileError>>,
);

impl Context {
    /// The labels of namespace `name`; empty when unknown.
    pub fn namespace_labels(&self, name: &str) -> BTreeMap<String, String> {
        self.namespaces.labels(None, name)
    }

    /// `policy` compiled, from the cache when its uid and generation are unchanged.
    pub fn compiled(&self, policy: &Policy) -> Arc<Result<Arc<CompiledPolicy>, CompileError>> {
        let name = policy.name_any();
        let uid = policy.metadata.uid.clone();
        let generation = policy.metadata.generation;
        let mut cache = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((u, g, c)) = cache.get(&name)
            && *u == uid
            && *g == generation
        {
            return c.clone();
        }
        let result = Arc::new(compile(policy).map(Arc::new));
        cache.insert(name, (uid, generation, result.clone()));
        result
    }

    /// The Policies governing a Sync with `labels` in `namespace`, sorted by name.
    ///
    /// When a Policy selects by namespace labels, they are read fresh from the API server (the
    /// namespace watch that woke this reconcile may be ahead of the cache); otherwise no request
    /// is made.
    pub async fn governing(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<Arc<Policy>> {
        let policies = self.policies.state();
        let by_namespace = policies.iter().any(|p| {
            !p.spec.suspend
                && p.spec
                    .selector
                    .as_ref()
                    .is_some_and(|s| s.namespace_selector.is_some())
        });
        let ns_labels = if by_namespace {
            let api: kube::Api<Namespace> = kube::Api::all(self.client.clone());
            match api.get_metadata_opt(namespace).await {
                Ok(Some(ns)) => ns.labels().clone(),
                _ => self.namespace_labels(namespace),
            }
        } else {
            BTreeMap::new()
        };
        let mut out: Vec<_> = policies
            .into_iter()
            .filter(|p| p.governs(&ns_labels, labels))
            .collect();
        out.sort_by_key(|p| p.name_any());
        out
    }

    /// Notes that a reconcile of `sync` that began at `began` finished: a Sync queued ahead of
    /// others since before then is done ([`crate::fanout`]).
    pub fn reconciled(&self, sync: &ObjectRef<SyncView>, began: std::time::Instant) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.get(sync).is_some_and(|queued| *queued <= began) {
            waiting.remove(sync);
            drop(waiting);
            self.finished.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        self.recorder
            .publish(obj, type_, reason, "Render", &note)
            .await;
    }
}
