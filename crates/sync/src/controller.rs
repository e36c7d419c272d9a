//! Wiring: the Sync controller with its watches on Syncs (dependencies), Policies, Namespaces
//! and the applied objects (drift).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use plumb_api::{Policy, Sync};

use crate::context::{Context, Settings, SyncMetrics, key_of};
use crate::deps;
use crate::reconcile::{error_policy, reconcile};
use crate::watches::Watches;

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("kubernetes configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The client could not be built.
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// Leadership was lost; the process should exit and be restarted.
    #[error(transparent)]
    Leader(#[from] plumb_ops::leader::LeaderError),
    /// The HTTP client for artifacts could not be built.
    #[error("artifact HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    /// The artifact token could not be had.
    #[error(transparent)]
    Token(#[from] plumb_artifact::auth::AuthError),
}

/// Runs the sync controller with the configuration found in the environment until Ctrl-C or
/// SIGTERM:
/// serves /metrics, /healthz and /readyz when asked, and reconciles only while holding the
/// leader Lease when leader election is on.
pub async fn run(settings: Settings) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kube_config = kube::Config::infer().await?;
    let client = Client::try_from(kube_config.clone())?;
    let metrics = plumb_ops::metrics::Metrics::new();
    let ready = plumb_ops::http::Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    if let Some(addr) = settings.ops_addr {
        let (metrics, ready) = (metrics.clone(), ready.clone());
        let stop = stopped();
        tokio::spawn(async move {
            if let Err(e) = plumb_ops::http::serve_ops(addr, metrics, ready, stop).await {
                tracing::error!(error = %e, "serving operations endpoints failed");
            }
        });
    }
    let shutdown = stopped();
    let work = run_with(
        client.clone(),
        kube_config,
        settings.clone(),
        metrics,
        shutdown,
    );
    ready.set(true);
    match settings
        .leader_election
        .then_some(&settings.leader_election_namespace)
    {
        None => work.await,
        Some(namespace) => {
            let identity = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("plumb-sync-{}", std::process::id()));
            let lease = plumb_ops::leader::LeaseConfig {
                namespace: namespace.clone(),
                name: "plumb-sync-controller".into(),
                identity,
                lease_duration: std::time::Duration::from_secs(15),
                renew_period: std::time::Duration::from_secs(5),
            };
            plumb_ops::leader::LeaderElector::new(client, lease)
                .run(work)
                .await?
        }
    }
}

/// Completes on Ctrl-C or SIGTERM (how Kubernetes stops a pod).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the sync controller on `client` (built from `kube_config`, from which impersonating
/// clients are derived) until `shutdown` completes.
pub async fn run_with(
    client: Client,
    kube_config: kube::Config,
    settings: Settings,
    metrics: plumb_ops::metrics::Metrics,
    shutdown: impl Future<Output = ()> + Send + std::marker::Sync + 'static,
) -> Result<(), Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let token =
        plumb_artifact::auth::load(&client, settings.artifact_token_secret.as_ref()).await?;
    let http = plumb_artifact::auth::client_builder(token.as_ref())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let syncs: Api<Sync> = match &settings.watch_namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut wc = watcher::Config::default();
    if !settings.watch_label_selector.is_empty() {
        wc = wc.labels(&settings.watch_label_selector);
    }

    // Policies and Namespaces, cached for governance.
    let (policies, policy_writer) = reflector::store::<Policy>();
    let policy_task = tokio::spawn(
        watcher(
            Api::<Policy>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(policy_writer)
        .for_each(|_| async {}),
    );
    let (namespaces, ns_writer) = reflector::store();
    let ns_task = tokio::spawn(
        watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(ns_writer)
        .for_each(|_| async {}),
    );

    let (trigger_tx, trigger_rx) = tokio::sync::mpsc::unbounded_channel();
    let drift_triggers = futures::stream::unfold(trigger_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let controller = Controller::new(syncs, wc.clone())
        .with_config(controller::Config::default().concurrency(settings.concurrency));
    let store = controller.store();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "plumb-sync".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(Context::new(
        client.clone(),
        kube_config,
        http,
        recorder,
        settings,
        SyncMetrics::new(metrics),
        Watches::new(client.clone(), trigger_tx),
        store.clone(),
        policies,
        namespaces,
    ));

    // Syncs deleted (or leaving the shard) release their drift watches.
    let gc_ctx = ctx.clone();
    let gc_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tick.tick().await;
            gc_ctx.forget_gone();
        }
    });

    // A Sync whose status changes wakes the Syncs that depend on it.
    let dep_store = store.clone();
    let dependents = move |changed: Sync| {
        let key = key_of(&changed);
        dep_store
            .state()
            .into_iter()
            .filter(|s| deps::dependencies(s).contains(&key))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect::<Vec<_>>()
    };
    // A Policy change may change drift mode, ignored paths or windows of any Sync.
    let all_store = store.clone();
    let everyone = move |_: Policy| {
        all_store
            .state()
            .iter()
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect::<Vec<_>>()
    };

    controller
        .watches(Api::<Sync>::all(client.clone()), wc, dependents)
        .watches(
            Api::<Policy>::all(client.clone()),
            watcher::Config::default(),
            everyone,
        )
        .reconcile_on(drift_triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile error");
            }
        })
        .await;
    ns_task.abort();
    gc_task.abort();
    policy_task.abort();
    Ok(())
}
