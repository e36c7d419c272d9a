//! The plumb source controller: reconciles `GitRepository` objects into digest-verified tarball
//! artifacts.
//!
//! A poll lists the remote's refs and stops there when the wanted commit is already published;
//! otherwise it fetches into a bare cache per GitRepository (only missing objects travel),
//! archives the commit's tree deterministically straight from the object database, stores it
//! atomically, serves it over HTTP and publishes `status.artifact` by server-side apply.
//!
//! Modules: [`refs`] (which commit, pure), [`git`] (libgit2: auth, host verification, list,
//! fetch, archive), [`deadline`] (ending a stalled network wait at `spec.timeout`),
//! [`known_hosts`], [`webhook`], [`controller`] (the reconcile), [`config`].

pub mod config;
pub mod controller;
pub mod deadline;
pub mod error;
pub mod git;
pub mod known_hosts;
pub mod refs;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, reflector, watcher};
use plumb_api::GitRepository;
use plumb_artifact::Storage;
use plumb_ops::{Runtime, RuntimeError};
use tokio::net::TcpListener;

pub use config::Config;
pub use error::Error;

/// The name of the source controller's leader Lease (with the watch scope appended when
/// sharded).
pub const LEASE_NAME: &str = "plumb-source-controller";

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The storage directory is unusable.
    #[error(transparent)]
    Storage(#[from] plumb_artifact::StorageError),
    /// A server could not bind or serve its address.
    #[error("serving {what} on {addr}: {source}")]
    Serve {
        /// Which server.
        what: &'static str,
        /// Its address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The artifact token could not be had.
    #[error(transparent)]
    Token(#[from] plumb_artifact::auth::AuthError),
    /// The runtime could not run the controller.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Serve { what, addr, source })
}

/// Completes once shutdown was asked for while the GitRepository cache has never listed (the
/// CRD not installed yet, or no permission to list): kube-runtime's graceful shutdown waits for
/// that first list before it lets the controller end, which would ignore SIGTERM until the CRD
/// appears. Nothing was ever reconciled then, so there is nothing to wait for. Never completes
/// otherwise (the controller's own graceful shutdown ends it).
async fn stop_unlisted(runtime: &Runtime, cache: &reflector::Store<GitRepository>) {
    runtime.stopped().await;
    if futures::FutureExt::now_or_never(cache.wait_until_ready()).is_none() {
        tracing::info!("stopping before GitRepositories were ever listed");
        return;
    }
    std::future::pending::<()>().await;
}

/// Runs the source controller in `runtime` until it shuts down: the artifact server and the
/// webhook receiver (on every replica), and the controller (under the leader Lease when
/// leader election is on). Storage and addresses are checked before anything runs, so a
/// controller that cannot start says why at once.
pub async fn run(runtime: &Runtime, mut config: Config) -> Result<(), RunError> {
    let storage = Storage::new(&config.storage_dir)?;
    let token =
        plumb_artifact::auth::load(runtime.client(), config.artifact_token_secret.as_ref()).await?;
    let artifacts = bind("artifacts", config.artifact_addr).await?;
    if config.artifact_base_url.is_empty() {
        // An empty --storage-adv-addr advertises the address bound (port 0 included).
        let bound = artifacts.local_addr().map_err(|source| RunError::Serve {
            what: "artifacts",
            addr: config.artifact_addr,
            source,
        })?;
        config.artifact_base_url = format!("http://{bound}");
    }
    let webhooks = bind("webhooks", config.webhook_addr).await?;
    let hooks = webhook::HookIndex::default();
    let served = |what, addr| move |source| RunError::Serve { what, addr, source };
    let artifact_server = plumb_artifact::serve::serve_on(
        artifacts,
        storage.clone(),
        token,
        runtime.server_limits(),
        runtime.stopped(),
    );
    let webhook_server = webhook::serve(
        webhooks,
        runtime.client().clone(),
        hooks.clone(),
        config.scope.namespace.clone(),
        runtime
            .server_limits()
            .with_max_body(config.webhook_max_body_size),
        runtime.stopped(),
    );
    let servers = async {
        tokio::try_join!(
            async {
                artifact_server
                    .await
                    .map_err(served("artifacts", config.artifact_addr))
            },
            async {
                webhook_server
                    .await
                    .map_err(served("webhooks", config.webhook_addr))
            },
        )
        .map(|_| ())
    };
    let ctx = Arc::new(controller::Context::new(
        runtime,
        storage,
        config.clone(),
        hooks,
    ));
    let scope = config.scope.clone();
    // Each leadership term starts the controller afresh over the same context, whose record of
    // fetches still running keeps a new term off a cache an old term's fetch thread still uses.
    let controller = runtime.lead(LEASE_NAME, &scope, |ready| {
        let ctx = ctx.clone();
        let config = &config;
        async move {
            ready.set(true);
            // Only a change worth a fetch triggers a reconcile: the controller's own status writes
            // would otherwise wake a failing GitRepository at once, bypassing the error back-off,
            // and a few failing objects would hold every worker in a hot loop.
            let (reader, writer) = reflector::store();
            let triggers = watcher(
                config.scope.api::<GitRepository>(runtime.client().clone()),
                config.scope.watcher_config().any_semantic(),
            )
            .default_backoff()
            .reflect(writer)
            .applied_objects()
            .predicate_filter(controller::wants_reconcile, PredicateConfig::default());
            let cache = reader.clone();
            let reconciles = Controller::for_stream(triggers, reader)
                .with_config(
                    kube::runtime::controller::Config::default().concurrency(config.concurrent),
                )
                .graceful_shutdown_on(runtime.stopped())
                .run(controller::reconcile, controller::error_policy, ctx)
                .for_each(|res| async move {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "reconcile loop");
                    }
                });
            tokio::select! {
                () = reconciles => {}
                () = stop_unlisted(runtime, &cache) => {}
            }
            Ok(())
        }
    });
    // Both run until shutdown; a server failing ends the controller early.
    let controller = async { controller.await.map_err(RunError::from) };
    let result = tokio::try_join!(servers, controller).map(|_| ());
    runtime.shutdown();
    result
}
