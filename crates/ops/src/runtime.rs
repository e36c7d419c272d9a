//! The one runtime every plumb controller starts in: it owns the Kubernetes client, the
//! shutdown signal, the operations server (`/metrics`, `/healthz`, `/readyz`), leader election
//! (a Lease per controller and watch scope) and Event recorders. A controller crate exposes
//! `run(&Runtime, Config)`; its binary, `plumb controllers` and the tests all build a
//! [`Runtime`] and call it, so every controller starts, stops and elects a leader the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use crate::events::EventRecorder;
use crate::http::{Readiness, ReadyGate};
use crate::leader::{LeaderElectionFlags, LeaderElector, LeaderError, process_identity};
use crate::metrics::Metrics;
use crate::scope::WatchScope;
use crate::server::ServerLimits;
use crate::telemetry::LogFormat;

/// The flags of the runtime, the same for every controller (Flux's spelling).
#[derive(Debug, Clone, PartialEq, Eq, Default, clap::Args)]
pub struct RuntimeFlags {
    /// Address of `/metrics`, `/healthz` and `/readyz` (not served when unset).
    #[arg(long = "metrics-addr", alias = "ops-addr")]
    pub metrics_addr: Option<SocketAddr>,
    /// Leader election.
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    /// Log encoding: `console` (human-readable lines) or `json`.
    #[arg(
        long = "log-encoding",
        alias = "log-format",
        value_enum,
        default_value_t = LogFormat::Plain
    )]
    pub log_encoding: LogFormat,
    /// Limits of every HTTP server of the process (`--http-*`).
    #[command(flatten)]
    pub http: ServerLimits,
}

/// Why the runtime or a controller in it could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("kubernetes configuration: {0}")]
    Config(#[from] kube::config::InferConfigError),
    /// The Kubernetes client could not be built.
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
    /// A flag value is unusable.
    #[error("invalid flags: {0}")]
    Flags(String),
    /// The operations server could not bind its address.
    #[error("serving /metrics, /healthz and /readyz on {addr}: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A leader election operation failed (a lost Lease no longer ends [`Runtime::lead`]:
    /// the process stands by for it again).
    #[error(transparent)]
    Leader(#[from] LeaderError),
}

/// The shared parts of a controller process; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    client: kube::Client,
    kube_config: kube::Config,
    metrics: Metrics,
    readiness: Readiness,
    stop: watch::Sender<bool>,
    identity: String,
    leader_election: LeaderElectionFlags,
    server_limits: ServerLimits,
}

impl Runtime {
    /// Starts the runtime of a controller process: logging, the client from the environment
    /// (in-cluster or kubeconfig), the operations server when `--metrics-addr` is set, and
    /// shutdown on SIGTERM or Ctrl-C. Fails at once when any of them cannot start.
    pub async fn start(flags: RuntimeFlags) -> Result<Self, RuntimeError> {
        crate::telemetry::init_tracing(flags.log_encoding);
        let kube_config = kube::Config::infer().await?;
        let client = kube::Client::try_from(kube_config.clone())?;
        let runtime = Self::with_client(client, kube_config, flags.leader_election)?
            .with_server_limits(flags.http);
        if let Some(addr) = flags.metrics_addr {
            runtime.serve_ops(addr).await?;
        }
        let stop = runtime.stop.clone();
        tokio::spawn(async move {
            terminated().await;
            tracing::info!("shutting down");
            let _ = stop.send(true);
        });
        Ok(runtime)
    }

    /// A runtime over a given client (built from `kube_config`, from which impersonating
    /// clients derive), for tests and embedding: no ops server and no signal handling until
    /// asked ([`Runtime::serve_ops`], [`Runtime::shutdown`]).
    pub fn with_client(
        client: kube::Client,
        kube_config: kube::Config,
        leader_election: LeaderElectionFlags,
    ) -> Result<Self, RuntimeError> {
        // kube and reqwest need a process-wide rustls provider; a second install is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        if leader_election.enabled {
            leader_election.validate().map_err(RuntimeError::Flags)?;
        }
        Ok(Self {
            client,
            kube_config,
            metrics: Metrics::new(),
            readiness: Readiness::default(),
            stop: watch::channel(false).0,
            identity: process_identity(),
            leader_election,
            server_limits: ServerLimits::default(),
        })
    }

    /// The same runtime serving HTTP under `limits` (what `--http-*` set).
    pub fn with_server_limits(mut self, limits: ServerLimits) -> Self {
        self.server_limits = limits;
        self
    }

    /// The limits every HTTP server of this runtime's controllers is held to.
    pub fn server_limits(&self) -> ServerLimits {
        self.server_limits
    }

    /// The same runtime recording into `metrics` (e.g. one registry across controller restarts
    /// in a test).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` there until shutdown;
    /// returns the address bound (port 0 picks a free one).
    pub async fn serve_ops(&self, addr: SocketAddr) -> Result<SocketAddr, RuntimeError> {
        let serve_err = |source| RuntimeError::Serve { addr, source };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(serve_err)?;
        let bound = listener.local_addr().map_err(serve_err)?;
        let (metrics, ready, stopped) =
            (self.metrics.clone(), self.readiness.clone(), self.stopped());
        let limits = self.server_limits;
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve_ops(listener, metrics, ready, limits, stopped).await
            {
                tracing::error!(error = %e, "serving /metrics, /healthz and /readyz failed");
            }
        });
        Ok(bound)
    }

    /// The controllers' own client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The configuration the client was built from (impersonating clients derive from it).
    pub fn kube_config(&self) -> &kube::Config {
        &self.kube_config
    }

    /// The metric registry served on `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What `/readyz` reports.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// This process's leader election identity (unique per process).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// An Event recorder reporting as `controller` (e.g. `plumb-source`), instance = pod name.
    pub fn recorder(&self, controller: &str) -> EventRecorder {
        EventRecorder::new(
            self.client.clone(),
            controller,
            std::env::var("POD_NAME").ok(),
        )
    }

    /// Asks every controller in this runtime to stop (as SIGTERM does).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Completes once shutdown was asked for.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Runs a controller's `work` until it ends or shutdown is asked for, holding the Lease
    /// named for `controller` (e.g. `plumb-source-controller`) and `scope` when leader election
    /// is on. `work` gets the controller's readiness gate and sets it once its caches are in;
    /// a replica waiting for the Lease reports ready (standing by is its job).
    ///
    /// `work` must itself stop soon after [`Runtime::stopped`] completes (it is given the
    /// chance to finish what is in flight). A lost Lease (another replica took it, or the API
    /// server did not answer within the renew deadline) drops `work` at once: nothing of the
    /// term goes on acting. The process then stands by for the Lease again, as a fresh replica
    /// would, and starts a new `work` once it holds it; so an API-server outage longer than
    /// the renew deadline costs a term, not a process restart (and no crash loop while the
    /// API server is still down).
    pub async fn lead<F>(
        &self,
        controller: &str,
        scope: &WatchScope,
        mut work: impl FnMut(ReadyGate) -> F,
    ) -> Result<(), RuntimeError>
    where
        F: Future<Output = Result<(), RuntimeError>>,
    {
        let gate = self.readiness.gate();
        if !self.leader_election.enabled {
            return work(gate).await;
        }
        let lease = self
            .leader_election
            .lease(scope.lease_name(controller), self.identity.clone());
        tracing::info!(lease = %lease.name, namespace = %lease.namespace, identity = %lease.identity, "waiting for the leader Lease");
        let elector = LeaderElector::new(self.client.clone(), lease);
        loop {
            gate.set(true);
            let renewed = tokio::select! {
                renewed = elector.acquire() => renewed,
                () = self.stopped() => return Ok(()),
            };
            gate.set(false);
            self.metrics.set_leader(controller, true);
            let result = tokio::select! {
                out = work(gate.clone()) => out,
                lost = elector.hold(renewed) => {
                    self.metrics.leadership_lost(controller);
                    tracing::error!(error = %lost, "leadership lost: stopped reconciling, standing by for the Lease");
                    continue;
                }
            };
            self.metrics.set_leader(controller, false);
            if let Err(e) = elector.release().await {
                tracing::warn!(error = %e, "releasing the leader Lease failed");
            }
            return result;
        }
    }

    /// Spawns a controller (`run(&runtime, config)`) and waits until it is ready, so a test or
    /// embedding caller learns at once when it cannot start: its error is returned here. The
    /// handle resolves when the controller stops.
    pub async fn spawn<F, E>(
        &self,
        controller: F,
    ) -> Result<tokio::task::JoinHandle<Result<(), E>>, Started<E>>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + 'static,
    {
        let mut task = tokio::spawn(controller);
        loop {
            tokio::select! {
                done = &mut task => {
                    return Err(match done {
                        Ok(Err(e)) => Started::Failed(e),
                        Ok(Ok(())) => Started::Stopped,
                        Err(join) => Started::Panicked(join.to_string()),
                    });
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    if self.readiness.get() {
                        return Ok(task);
                    }
                }
            }
        }
    }
}

/// Why [`Runtime::spawn`] returned before the controller was ready.
#[derive(Debug, thiserror::Error)]
pub enum Started<E> {
    /// The controller failed to start.
    #[error("controller failed to start: {0}")]
    Failed(E),
    /// The controller returned before it was ready (shutdown was asked for).
    #[error("controller stopped before it was ready")]
    Stopped,
    /// The controller panicked.
    #[error("controller panicked: {0}")]
    Panicked(String),
}

/// Completes on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
