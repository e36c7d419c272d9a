//! The runtime every plumb controller starts in, and the plumbing it is made of, so each
//! controller crate is only its watches and reconcile logic:
//!
//! - [`runtime`]: [`Runtime`] owns the client, shutdown, the ops server, leader election and
//!   Event recorders; every controller is started as `run(&Runtime, Config)`.
//! - [`scope`]: which objects a controller watches (`--watch-namespace`,
//!   `--watch-label-selector`, sharding by `plumb.dev/shard`).
//! - [`leader`]: leader election by a `coordination.k8s.io/v1` Lease.
//! - [`metrics`]: the Prometheus registry with reconcile durations and counts per kind and result.
//! - [`http`]: the operations server with `/metrics`, `/healthz` and `/readyz`.
//! - [`server`]: serving any router with connection, time and body limits (flags `--http-*`).
//! - [`wait`]: an idle keep-alive timeout apart from the header-read timeout.
//! - [`retry`]: exponential backoff after failures.
//! - [`periodic`]: long requeues (periodic passes) in one compact table, out of kube-runtime's
//!   scheduler.
//! - [`telemetry`]: `tracing` initialisation, console or JSON.
//! - [`events`]: Kubernetes Event recording.
//! - [`watch`]: one shared watch per kind, and change filters for triggers.
//! - [`allocator`]: the C allocator's settings for a long-running controller process.

pub mod allocator;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod periodic;
pub mod retry;
pub mod runtime;
pub mod scope;
pub mod server;
pub mod telemetry;
pub mod wait;
pub mod watch;

pub use events::{EventRecorder, EventType};
pub use http::{Readiness, ReadyGate};
pub use leader::{LeaderElectionFlags, LeaderElector, LeaderError, LeaseConfig, parse_duration};
pub use metrics::{Metrics, ReconcileResult};
pub use periodic::{key_of, ref_of};
pub use retry::{Failures, backoff};
pub use runtime::{Runtime, RuntimeError, RuntimeFlags, Started};
pub use scope::{SHARD_LABEL, WatchScope};
pub use server::ServerLimits;
pub use telemetry::{LogFormat, init_tracing};
pub use watch::{LIST_PAGE_SIZE, SharedWatch, changed, keep_selector_metadata, trim_for_cache};
