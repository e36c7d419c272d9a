//! The shell around the pure core, started by [`run`]: one shared watch per kind, the Sync
//! render controller and the Policy controller over them, and the artifact file server.
//!
//! Watches: the Syncs this controller renders (its scope), Policies and GitRepositories, each
//! into a shared cache; and the labels of every Sync (a Policy's governed count spans all
//! shards) and of Namespaces, each into a [`LabelIndex`]. Each kind is watched once; the
//! controllers share the caches and take their triggers from the same streams, filtered by
//! kube-runtime predicates ([`crate::watches`]), or from the label indexes' changes.

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use plumb_api::reference::DataKind;
use plumb_api::{GitRepository, Policy, Sync};
use plumb_artifact::Storage;
use plumb_ops::periodic::{self, Periodic};
use plumb_ops::{ReadyGate, Runtime, RuntimeError, SharedWatch};
use tokio::sync::mpsc;

use crate::context::{CONTROLLER_NAME, Context, RenderMetrics};
use crate::labels::LabelIndex;
use crate::sync_view::SyncView;
use crate::{Config, Error, reconcile_policy, reconcile_sync, watches};

/// How many changes of Namespace or Sync labels may wait for the controllers before their
/// watch waits.
const CHANGES_BUFFER: usize = 1024;

/// The name of the render controller's leader Lease (with the watch scope appended when
/// sharded).
pub const LEASE_NAME: &str = "plumb-render-controller";

/// Runs the render controller in `runtime` until it shuts down: the artifact file server (on
/// every replica, so consumers never see a gap), and the Sync and Policy controllers (under
/// the leader Lease when leader election is on). Storage, the address and the HTTP client are
/// checked before anything runs, so a controller that cannot start says why at once.
pub async fn run(runtime: &Runtime, mut config: Config) -> Result<(), Error> {
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
    let token =
        plumb_artifact::auth::load(runtime.client(), config.artifact_token_secret.as_ref()).await?;
    let http = plumb_artifact::auth::client_builder(token.as_ref())
        .timeout(config.fetch_timeout)
        .build()
        .map_err(Error::Http)?;
    let server = plumb_artifact::serve::serve_on(
        artifact_listener,
        storage.clone(),
        token,
        runtime.server_limits(),
        runtime.stopped(),
    );
    let server = async { server.await.map_err(Error::Serve) };
    let scope = config.scope.clone();
    let helm = helm_engine(&config);
    let parts = Parts {
        storage,
        http,
        config,
        helm,
    };
    let work = async {
        runtime
            .lead(LEASE_NAME, &scope, |ready| {
                controllers(runtime, parts.clone(), ready)
            })
            .await
            .map_err(Error::Runtime)
    };
    let result = tokio::try_join!(server, work).map(|_| ());
    runtime.shutdown();
    result
}

/// What [`run`] prepared for the controllers (each leadership term gets a copy).
#[derive(Clone)]
struct Parts {
    storage: Storage,
    http: reqwest::Client,
    config: Config,
    helm: Option<plumb_helm::Helm>,
}

/// The Helm engine of `--helm-binary`, `$PLUMB_HELM` or `helm` on PATH; without one, the
/// controller still runs and chart renders fail saying what to install.
fn helm_engine(config: &Config) -> Option<plumb_helm::Helm> {
    let binary = match &config.helm_binary {
        Some(b) => b.clone(),
        None => match plumb_helm::Helm::locate() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "charts cannot be rendered");
                return None;
            }
        },
    };
    tracing::info!(helm = %binary.display(), "rendering charts with Helm");
    Some(plumb_helm::Helm::new(binary, config.chart_cache_size))
}

/// Changes of ConfigMaps or Secrets (metadata only: values are read when a render needs them)
/// in the controller's scope, for `spec.helm.valuesFrom`.
fn values_changes<K>(
    scope: &plumb_ops::WatchScope,
    client: &kube::Client,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + std::marker::Sync
        + 'static,
    K::DynamicType: Default,
{
    use kube::runtime::WatchStreamExt;
    watcher(
        scope.api::<PartialObjectMeta<K>>(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
}

/// The items sent to `rx`, as a stream.
fn receiver_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

/// The watches and the two controllers, until shutdown.
async fn controllers(
    runtime: &Runtime,
    parts: Parts,
    ready: ReadyGate,
) -> Result<(), RuntimeError> {
    let client = runtime.client().clone();
    let scope = parts.config.scope.clone();
    let mut policies = SharedWatch::<Policy>::new();
    // Of Namespaces and of every Sync only what Policy selectors and counts read: labels.
    let (namespaces, all_syncs) = (LabelIndex::default(), LabelIndex::default());
    let (relabelled_namespaces, namespace_changes) = mpsc::channel::<Box<str>>(CHANGES_BUFFER);
    let (changed_syncs, sync_changes) = mpsc::channel::<Box<str>>(CHANGES_BUFFER);
    // Of the Syncs in scope, what their renders read, compactly.
    let mut syncs = SharedWatch::<SyncView>::new();
    let mut repos = SharedWatch::<GitRepository>::new();
    let ctx = Arc::new(Context {
        client: client.clone(),
        storage: parts.storage,
        http: parts.http,
        recorder: runtime.recorder(CONTROLLER_NAME),
        policies: policies.store(),
        syncs: syncs.store(),
        all_syncs: all_syncs.clone(),
        namespaces: namespaces.clone(),
        repos: repos.store(),
        compiled: Mutex::default(),
        rendered: Mutex::default(),
        inputs: Mutex::default(),
        trees: Default::default(),
        waiting: Mutex::default(),
        finished: tokio::sync::watch::Sender::new(0),
        helm: parts.helm,
        capabilities: Default::default(),
        charts: Mutex::default(),
        failures: Default::default(),
        periodic: Periodic::new(periodic::LONG),
        metrics: RenderMetrics::new(runtime.metrics().clone()),
        config: parts.config,
    });

    let sync_store = ctx.syncs.clone();
    let (for_policy, for_namespace) = (sync_store.clone(), sync_store.clone());
    let (for_config_maps, for_secrets) = (sync_store.clone(), sync_store.clone());
    let triggers = watches::render_input_changes(syncs.subscribe());
    // A new source artifact wakes its Syncs through the fan-out plan: those it touches first.
    let (planned_tx, planned_rx) = tokio::sync::mpsc::unbounded_channel();
    let planner = crate::fanout::run(
        ctx.clone(),
        watches::artifact_changes(repos.subscribe()),
        syncs.deletions(),
        planned_tx,
    );
    let planned = futures::stream::unfold(planned_rx, |mut rx| async move {
        rx.recv().await.map(|s| (s, rx))
    });
    // A plan holding Syncs back for applies looks again at each change of a Sync (the sync
    // controller's status writes among them); no state is kept per Sync for it.
    let attempts = {
        let ctx = ctx.clone();
        syncs.subscribe().for_each(move |_| {
            if ctx.metrics.held.get() > 0 {
                ctx.finished.send_modify(|n| *n = n.wrapping_add(1));
            }
            future::ready(())
        })
    };
    let sync_loop = Controller::for_shared_stream(triggers, sync_store)
        .with_config(controller::Config::default().concurrency(ctx.config.concurrent.max(1)))
        .reconcile_on(planned)
        // Periodic passes, kept out of kube-runtime's scheduler (plumb_ops::periodic).
        .reconcile_on(ctx.periodic.clone().triggers())
        // A source gone: its Syncs say so (the others find their render current and write nothing).
        .reconcile_all_on(repos.deletions())
        .watches_shared_stream(
            watches::policy_spec_changes(policies.subscribe()),
            move |_| watches::every_sync(&for_policy.state()),
        )
        .reconcile_all_on(policies.deletions())
        // A namespace seen for the first time or relabelled may come under (or leave) a
        // Policy's namespace selector.
        .reconcile_on(receiver_stream(namespace_changes).flat_map(move |ns| {
            let in_ns = watches::in_namespace(&for_namespace, &ns);
            futures::stream::iter(watches::syncs_in_namespace(&in_ns, &ns))
        }))
        // One metadata watch per kind wakes both the Syncs reading chart values from the object
        // (`helm.valuesFrom`) and those taking substitution variables from it (`substituteFrom`).
        .watches_stream(values_changes::<ConfigMap>(&scope, &client), move |cm| {
            let ns = cm.metadata.namespace.as_deref().unwrap_or_default();
            let in_ns = watches::in_namespace(&for_config_maps, ns);
            watches::readers_of_changed(&in_ns, DataKind::ConfigMap, &cm)
        })
        .watches_stream(values_changes::<Secret>(&scope, &client), move |s| {
            let ns = s.metadata.namespace.as_deref().unwrap_or_default();
            let in_ns = watches::in_namespace(&for_secrets, ns);
            watches::readers_of_changed(&in_ns, DataKind::Secret, &s)
        })
        .graceful_shutdown_on(runtime.stopped())
        .run(
            reconcile_sync::reconcile,
            reconcile_sync::error_policy,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Err(e) = res {
                tracing::debug!(error = %e, "sync reconcile");
            }
            future::ready(())
        });

    let policy_store = ctx.policies.clone();
    let policy_loop = Controller::for_shared_stream(policies.subscribe(), policy_store)
        .with_config(controller::Config::default().concurrency(2))
        // A Sync created, relabelled or deleted may change any Policy's governed count.
        .reconcile_all_on(receiver_stream(sync_changes).map(|_| ()))
        .graceful_shutdown_on(runtime.stopped())
        .run(
            reconcile_policy::reconcile,
            reconcile_policy::error_policy,
            ctx.clone(),
        )
        .for_each(|res| {
            if let Err(e) = res {
                tracing::debug!(error = %e, "policy reconcile");
            }
            future::ready(())
        });

    let feeds = async {
        tokio::join!(
            policies.run(Api::all(client.clone()), watcher::Config::default()),
            namespaces.run(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                watcher::Config::default(),
                relabelled_namespaces,
            ),
            all_syncs.run(
                Api::<PartialObjectMeta<Sync>>::all(client.clone()),
                watcher::Config::default(),
                changed_syncs,
            ),
            syncs.run(scope.api(client.clone()), scope.watcher_config()),
            repos.run(scope.api(client.clone()), watcher::Config::default()),
        );
    };
    let caches = async {
        // The controllers start only once every cache is complete: a Sync is never judged
        // against a partial Policy list.
        let all = async {
            tokio::join!(
                ctx.namespaces.wait_until_ready(),
                ctx.all_syncs.wait_until_ready()
            );
            futures::future::try_join3(
                ctx.policies.wait_until_ready(),
                ctx.syncs.wait_until_ready(),
                ctx.repos.wait_until_ready(),
            )
            .await
        };
        tokio::select! {
            r = all => r.is_ok(),
            () = runtime.stopped() => false,
        }
    };
    let controllers = async {
        if !caches.await {
            return;
        }
        ready.set(true);
        let sweeper = crate::sweep::sweep_deleted(ctx.clone());
        tokio::select! {
            _ = future::join(sync_loop, policy_loop) => {}
            () = sweeper => {}
            () = planner => {}
            () = attempts => {}
        }
    };
    // The watches feed the caches and the controllers; they end with the controllers.
    tokio::select! {
        () = controllers => {}
        () = feeds => {}
    }
    Ok(())
}
