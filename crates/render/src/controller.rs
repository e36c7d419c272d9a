//! The shell around the pure core: watches, the shared [`Context`], and [`run`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use plumb_api::{GitRepository, Policy, Sync};
use plumb_artifact::Storage;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::policy::{CompileError, CompiledPolicy, compile};
use crate::status::Outcome;
use crate::{Config, Error, policy_controller, sync_controller};

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
    pub recorder: Recorder,
    /// Every Policy (cluster-scoped).
    pub policies: Store<Policy>,
    /// Every Sync the controller watches (its shard, when a label selector is set).
    pub syncs: Store<Sync>,
    /// Every Sync in the cluster, metadata only: a Policy's governed count spans all shards.
    pub all_syncs: Store<PartialObjectMeta<Sync>>,
    /// Namespace labels, for Policy namespace selectors.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Compiled Policies by name, with the uid and generation compiled.
    compiled: Mutex<HashMap<String, CompiledEntry>>,
    /// The cache key and verdict of each Sync's last completed render.
    pub rendered: Mutex<HashMap<ObjectRef<Sync>, (String, Outcome)>>,
    /// Consecutive transient failures per Sync, for backoff.
    pub failures: Mutex<HashMap<ObjectRef<Sync>, u32>>,
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
}

/// Labels of the policy findings counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    /// `deny` or `warn`.
    pub action: String,
}

impl RenderMetrics {
    /// Registers the render metrics in a new registry.
    pub fn new() -> Self {
        let ops = plumb_ops::Metrics::new();
        let artifact_size = Histogram::new(exponential_buckets(1024.0, 4.0, 10));
        let findings = Family::<FindingLabels, Counter>::default();
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
        Self {
            ops,
            artifact_size,
            findings,
        }
    }
}

impl Default for RenderMetrics {
    fn default() -> Self {
        Self::new()
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
        self.namespaces
            .get(&ObjectRef::new(name))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default()
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
    pub fn governing(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<Arc<Policy>> {
        let ns_labels = self.namespace_labels(namespace);
        let mut out: Vec<_> = self
            .policies
            .state()
            .into_iter()
            .filter(|p| crate::policy::governs(p, &ns_labels, labels))
            .collect();
        out.sort_by_key(|p| p.name_any());
        out
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, type_: EventType, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let mut note = note;
        if note.len() > 1000 {
            let mut cut = 1000;
            while !note.is_char_boundary(cut) {
                cut -= 1;
            }
            note.truncate(cut);
        }
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Render".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, "publishing event");
        }
    }
}

/// Runs the render controller until the process is asked to stop: the Sync and Policy
/// controllers, the artifact file server, and the health endpoints.
pub async fn run(config: Config) -> Result<(), Error> {
    // Both TLS users (kube, reqwest) need a process-wide crypto provider; another may be set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.map_err(Error::Kube)?;
    run_with_client(client, config).await
}

/// [`run`] with a given client (tests and the all-in-one `plumb` binary use this).
pub async fn run_with_client(client: Client, mut config: Config) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Bind first, so port 0 works and an empty base URL can name the port actually bound.
    let artifact_listener = tokio::net::TcpListener::bind(config.artifact_addr)
        .await
        .map_err(Error::Serve)?;
    let bound = artifact_listener.local_addr().map_err(Error::Serve)?;
    if config.artifact_base_url.is_empty() {
        config.artifact_base_url = format!("http://{bound}");
    }
    tracing::info!(addr = %bound, base = %config.artifact_base_url, "serving rendered artifacts");
    let storage = Storage::new(&config.storage_dir).map_err(Error::Storage)?;
    let http = reqwest::Client::builder()
        .timeout(config.fetch_timeout)
        .build()
        .map_err(Error::Http)?;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );

    let mut sync_watch = watcher::Config::default();
    if !config.watch_label_selector.is_empty() {
        sync_watch = sync_watch.labels(&config.watch_label_selector);
    }
    let policies_api: Api<Policy> = Api::all(client.clone());
    let sync_ctl = Controller::new(Api::<Sync>::all(client.clone()), sync_watch)
        .with_config(controller::Config::default().concurrency(config.concurrent.max(1)));
    let policy_ctl = Controller::new(policies_api.clone(), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(2));

    let metrics = RenderMetrics::new();
    let readiness = plumb_ops::Readiness::default();
    let ops = config.metrics_addr.map(|addr| {
        let (metrics, readiness) = (metrics.ops.clone(), readiness.clone());
        tokio::spawn(plumb_ops::serve_ops(addr, metrics, readiness, async {
            let _ = tokio::signal::ctrl_c().await;
        }))
    });

    // The caches every reconcile reads are filled by their own reflectors, and the controllers
    // start only once all are complete: a Sync is never judged against a partial Policy list.
    let (policies, policy_writer) = reflector::store();
    let (ns_store, ns_writer) = reflector::store();
    let (all_syncs_store, all_syncs_writer) = reflector::store();
    let reflectors = Reflectors(vec![
        spawn_reflector(policy_writer, policies_api.clone()),
        spawn_reflector(
            ns_writer,
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        ),
        spawn_reflector(
            all_syncs_writer,
            Api::<PartialObjectMeta<Sync>>::all(client.clone()),
        ),
    ]);
    policies
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady)?;
    ns_store
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady)?;
    all_syncs_store
        .wait_until_ready()
        .await
        .map_err(|_| Error::StoreNotReady)?;
    readiness.set(true);

    let ctx = Arc::new(Context {
        client: client.clone(),
        storage: storage.clone(),
        http,
        recorder,
        policies,
        syncs: sync_ctl.store(),
        all_syncs: all_syncs_store,
        namespaces: ns_store,
        compiled: Mutex::default(),
        rendered: Mutex::default(),
        failures: Mutex::default(),
        metrics,
        config: config.clone(),
    });

    let syncs_for_source = ctx.syncs.clone();
    let syncs_for_policy = ctx.syncs.clone();
    let sync_loop = sync_ctl
        .watches(
            Api::<GitRepository>::all(client.clone()),
            watcher::Config::default(),
            move |repo| {
                let ns = repo.namespace().unwrap_or_default();
                let name = repo.name_any();
                syncs_for_source
                    .state()
                    .into_iter()
                    .filter(|s| {
                        s.spec.source_ref.name == name
                            && s.spec
                                .source_ref
                                .namespace
                                .as_deref()
                                .unwrap_or(s.metadata.namespace.as_deref().unwrap_or_default())
                                == ns
                    })
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        // A Policy's spec change (or deletion) may change which Syncs it governs, before and
        // after, so every Sync is looked at; the cache key makes that cheap for the unaffected
        // ones. Status-only updates (the governed count moving as Syncs come and go) are not
        // passed on: with many Syncs they would otherwise wake every Sync for each new one.
        .watches(policies_api, watcher::Config::default(), {
            let changes = Mutex::new(PolicyChanges::default());
            move |policy: Policy| {
                if !changes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .affects_syncs(&policy)
                {
                    return Vec::new();
                }
                syncs_for_policy
                    .state()
                    .into_iter()
                    .map(|s| ObjectRef::from_obj(s.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        .shutdown_on_signal()
        .run(
            sync_controller::reconcile,
            sync_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Err(e) = res {
                tracing::debug!(error = %e, "sync reconcile");
            }
            future::ready(())
        });

    // A new, relabelled or deleted Sync may change a Policy's governed count: recount them all.
    // A Sync's status churn cannot, so it is not passed on (deletions without a deletion
    // timestamp are caught by the periodic recount).
    let policies_for_sync = ctx.policies.clone();
    let policy_loop = policy_ctl
        .watches(
            Api::<PartialObjectMeta<Sync>>::all(client.clone()),
            watcher::Config::default(),
            {
                let seen = Mutex::new(HashMap::<(String, String), BTreeMap<String, String>>::new());
                move |sync: PartialObjectMeta<Sync>| {
                    let key = (sync.namespace().unwrap_or_default(), sync.name_any());
                    let labels = sync.labels().clone();
                    let previous = seen
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, labels.clone());
                    if previous.as_ref() == Some(&labels)
                        && sync.metadata.deletion_timestamp.is_none()
                    {
                        return Vec::new();
                    }
                    policies_for_sync
                        .state()
                        .into_iter()
                        .map(|p| ObjectRef::from_obj(p.as_ref()))
                        .collect::<Vec<_>>()
                }
            },
        )
        .shutdown_on_signal()
        .run(
            policy_controller::reconcile,
            policy_controller::error_policy,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Err(e) = res {
                tracing::debug!(error = %e, "policy reconcile");
            }
            future::ready(())
        });

    let sweeper = tokio::spawn(sweep_deleted(ctx.clone()));
    let server = tokio::spawn(async move {
        axum::serve(artifact_listener, plumb_artifact::serve::router(storage))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    });

    let controllers = async {
        tokio::join!(sync_loop, policy_loop);
    };
    let work = async {
        match leader_elector(&client, &config) {
            Some(elector) => elector.run(controllers).await.map_err(Error::Leader),
            None => {
                controllers.await;
                Ok(())
            }
        }
    };
    // Artifacts are served by every replica, leader or not, so consumers never see a gap.
    let result = tokio::select! {
        r = work => r,
        res = server => match res {
            Ok(Err(e)) => Err(Error::Serve(e)),
            _ => Ok(()),
        },
    };
    if let Some(h) = ops {
        h.abort();
    }
    sweeper.abort();
    drop(reflectors);
    result
}

/// How often artifacts and cache entries of deleted Syncs are removed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// Removes, every [`SWEEP_INTERVAL`], the rendered artifacts and cache entries of Syncs that no
/// longer exist, so storage does not grow with churn.
async fn sweep_deleted(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let live: std::collections::HashSet<(String, String)> = ctx
            .all_syncs
            .state()
            .iter()
            .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
            .collect();
        for (namespace, name) in stored_syncs(&ctx.storage) {
            if live.contains(&(namespace.clone(), name.clone())) {
                continue;
            }
            if let Ok(key) = plumb_artifact::ArtifactKey::new(
                crate::sync_controller::ARTIFACT_KIND,
                &namespace,
                &name,
            ) && let Err(e) = ctx.storage.remove_all(&key)
            {
                tracing::warn!(error = %e, %namespace, %name, "removing artifacts of a deleted Sync");
            }
        }
        let gone = |r: &ObjectRef<Sync>| {
            !live.contains(&(r.namespace.clone().unwrap_or_default(), r.name.clone()))
        };
        ctx.rendered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r, _| !gone(r));
        ctx.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r, _| !gone(r));
    }
}

/// `(namespace, name)` of every Sync with artifacts in `storage`.
pub fn stored_syncs(storage: &Storage) -> Vec<(String, String)> {
    let dir = storage.root().join(crate::sync_controller::ARTIFACT_KIND);
    let names = |d: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    };
    names(&dir)
        .into_iter()
        .flat_map(|ns| {
            names(&dir.join(&ns))
                .into_iter()
                .map(move |n| (ns.clone(), n))
        })
        .collect()
}

/// The Lease elector, when leader election is on.
fn leader_elector(client: &Client, config: &Config) -> Option<plumb_ops::LeaderElector> {
    config.leader_election.then(|| {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("plumb-render-{}", std::process::id()));
        plumb_ops::LeaderElector::new(
            client.clone(),
            plumb_ops::LeaseConfig {
                namespace: config.leader_election_namespace.clone(),
                name: "plumb-render-controller".into(),
                identity,
                lease_duration: Duration::from_secs(15),
                renew_period: Duration::from_secs(5),
            },
        )
    })
}

/// What the Sync controller last saw of each Policy, to tell spec changes and deletions (which
/// may change any Sync's verdict) from status-only updates (which cannot).
#[derive(Default)]
pub struct PolicyChanges {
    seen: HashMap<String, (Option<i64>, Option<serde_json::Value>)>,
}

impl PolicyChanges {
    /// Whether this watch event of `policy` may change a Sync's verdict: a new Policy, a new
    /// generation, or an event that changes neither generation nor status (a deletion, or a
    /// label or annotation edit). A status-only update does not.
    pub fn affects_syncs(&mut self, policy: &Policy) -> bool {
        let status = policy
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        let now = (policy.metadata.generation, status);
        match self.seen.insert(policy.name_any(), now.clone()) {
            None => true,
            Some((generation, _)) if generation != now.0 => true,
            Some((_, status)) => status == now.1,
        }
    }
}

/// Reflector tasks, stopped when dropped.
struct Reflectors(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Reflectors {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Keeps `writer`'s store in step with every object of `api`, in a task of its own.
fn spawn_reflector<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + std::marker::Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + std::marker::Sync,
{
    tokio::spawn(
        reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects()
            .for_each(|res| {
                if let Err(e) = res {
                    tracing::warn!(error = %e, "watch failed, retrying");
                }
                future::ready(())
            }),
    )
}

/// Exponential backoff for the `n`th consecutive failure: 2s, 4s, ... capped at `max`.
pub fn backoff(n: u32, max: Duration) -> Duration {
    let secs = 2u64.saturating_pow(n.clamp(1, 16));
    Duration::from_secs(secs).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_only_policy_updates_do_not_wake_syncs() {
        let mut p: Policy = serde_json::from_value(serde_json::json!({
            "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
            "metadata": {"name": "p", "generation": 1}, "spec": {}
        }))
        .unwrap();
        let mut changes = PolicyChanges::default();
        assert!(changes.affects_syncs(&p), "new");
        p.status = Some(plumb_api::PolicyStatus {
            governed_syncs: Some(3),
            ..Default::default()
        });
        assert!(!changes.affects_syncs(&p), "status only");
        p.metadata.generation = Some(2);
        assert!(changes.affects_syncs(&p), "spec change");
        assert!(
            changes.affects_syncs(&p),
            "unchanged event: a deletion or metadata edit"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        assert_eq!(backoff(1, cap), Duration::from_secs(2));
        assert_eq!(backoff(3, cap), Duration::from_secs(8));
        assert_eq!(backoff(40, cap), cap);
    }

    #[test]
    fn stored_syncs_lists_namespace_and_name_of_each_artifact_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = Storage::new(tmp.path()).unwrap();
        for (ns, name) in [("a", "web"), ("b", "api")] {
            let key = plumb_artifact::ArtifactKey::new("sync", ns, name).unwrap();
            storage
                .write_atomic::<std::io::Error>(&key, "x.yaml.gz", |w| w.write_all(b"x"))
                .unwrap()
                .unwrap();
        }
        let mut found = stored_syncs(&storage);
        found.sort();
        assert_eq!(
            found,
            [
                ("a".to_owned(), "web".to_owned()),
                ("b".to_owned(), "api".to_owned())
            ]
        );
    }
}
