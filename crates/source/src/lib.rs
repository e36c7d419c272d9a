//! The plumb source controller: reconciles `GitRepository` objects into digest-verified tarball
//! artifacts.
//!
//! A poll lists the remote's refs and stops there when the wanted commit is already published;
//! otherwise it fetches into a bare cache per GitRepository (only missing objects travel),
//! archives the commit's tree deterministically straight from the object database, stores it
//! atomically, serves it over HTTP and publishes `status.artifact` by server-side apply.
//!
//! Modules: [`refs`] (which commit, pure), [`git`] (libgit2: auth, host verification, list,
//! fetch, archive), [`known_hosts`], [`webhook`], [`controller`] (the reconcile), [`config`].

pub mod config;
pub mod controller;
pub mod error;
pub mod git;
pub mod known_hosts;
pub mod refs;
pub mod webhook;

use std::sync::Arc;

use futures::StreamExt;
use kube::Api;
use kube::runtime::{Controller, watcher};
use plumb_api::GitRepository;
use plumb_artifact::Storage;
use plumb_ops::{LeaderElector, LeaseConfig, Metrics, Readiness};

pub use config::Config;
pub use error::Error;

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No Kubernetes client could be configured.
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// The storage directory is unusable.
    #[error(transparent)]
    Storage(#[from] plumb_artifact::StorageError),
    /// A server could not bind its address.
    #[error("serving {what}: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The leader Lease was lost.
    #[error(transparent)]
    Leader(#[from] plumb_ops::LeaderError),
    /// The artifact token could not be had.
    #[error(transparent)]
    Token(#[from] plumb_artifact::auth::AuthError),
}

/// Runs the source controller with the in-cluster or kubeconfig client until SIGTERM/ctrl-c.
pub async fn run(config: Config) -> Result<(), RunError> {
    plumb_ops::init_tracing(config.log_format);
    // reqwest/kube need a process-wide rustls provider; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    run_with_client(client, config, Metrics::new(), shutdown).await
}

/// Runs the source controller with `client` until `shutdown` resolves: the artifact server,
/// the ops server, the webhook server and (under leader election when enabled) the controller.
pub async fn run_with_client(
    client: kube::Client,
    config: Config,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let storage = Storage::new(&config.storage_dir)?;
    let token = plumb_artifact::auth::load(&client, config.artifact_token_secret.as_ref()).await?;
    let hooks = webhook::HookIndex::default();
    let ready = Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let servers = {
        let (s, m, r, c, h) = (
            storage.clone(),
            metrics.clone(),
            ready.clone(),
            client.clone(),
            hooks.clone(),
        );
        let hook_ns = config.namespace.clone();
        let (aa, ma, wa) = (
            config.artifact_addr,
            config.metrics_addr,
            config.webhook_addr,
        );
        let (st1, st2, st3) = (stopped(), stopped(), stopped());
        async move {
            tokio::try_join!(
                async {
                    plumb_artifact::serve::serve(aa, s, token, st1)
                        .await
                        .map_err(|source| RunError::Serve {
                            what: "artifacts",
                            source,
                        })
                },
                async {
                    plumb_ops::serve_ops(ma, m, r, st2)
                        .await
                        .map_err(|source| RunError::Serve {
                            what: "metrics",
                            source,
                        })
                },
                async {
                    webhook::serve(wa, c, h, hook_ns, st3)
                        .await
                        .map_err(|source| RunError::Serve {
                            what: "webhooks",
                            source,
                        })
                },
            )
            .map(|_| ())
        }
    };
    let ctx = Arc::new(controller::Context::new(
        client.clone(),
        storage,
        config.clone(),
        metrics,
        hooks,
    ));
    let api: Api<GitRepository> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctrl_shutdown = stopped();
    let ready_flag = ready.clone();
    let controller = async move {
        ready_flag.set(true);
        Controller::new(
            api,
            watcher::Config::default()
                .labels(&plumb_ops::shard::label_selector(config.shard.as_deref()))
                .any_semantic(),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(config.concurrency))
        .graceful_shutdown_on(ctrl_shutdown)
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
        .await;
    };
    let elector = config.leader_election.then(|| {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("plumb-source-{}", std::process::id()));
        LeaderElector::new(
            client.clone(),
            LeaseConfig {
                namespace: config.leader_election_namespace.clone(),
                name: "plumb-source-controller".into(),
                identity,
                lease_duration: std::time::Duration::from_secs(15),
                renew_period: std::time::Duration::from_secs(5),
            },
        )
    });
    let work = async move {
        match elector {
            Some(e) => e.run(controller).await.map_err(RunError::from),
            None => {
                controller.await;
                Ok(())
            }
        }
    };
    // Everything runs until shutdown; a server that cannot bind or a lost Lease ends it early.
    let all = async { tokio::try_join!(servers, work).map(|_| ()) };
    tokio::pin!(all, shutdown);
    let result = tokio::select! {
        r = &mut all => r,
        () = &mut shutdown => {
            // Graceful: the controller finishes in-flight reconciles, the Lease is released and
            // the servers drain before run returns.
            let _ = stop_tx.send(true);
            (&mut all).await
        }
    };
    let _ = stop_tx.send(true);
    result
}
