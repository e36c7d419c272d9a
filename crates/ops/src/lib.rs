//! Controller plumbing every plumb controller needs, so each controller crate is only its
//! reconcile logic:
//!
//! - [`metrics`]: the Prometheus registry with reconcile durations and counts per kind and result.
//! - [`http`]: the operations server with `/metrics`, `/healthz` and `/readyz`.
//! - [`server`]: serving any router with connection, time and body limits.
//! - [`leader`]: leader election by a `coordination.k8s.io/v1` Lease.
//! - [`telemetry`]: `tracing` initialisation, plain or JSON.
//! - [`events`]: Kubernetes Event recording.
//! - [`shard`]: sharding objects across controller instances by label.

pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod server;
pub mod shard;
pub mod telemetry;

pub use events::EventRecorder;
pub use http::{Readiness, serve_ops};
pub use leader::{LeaderElector, LeaderError, LeaseConfig};
pub use metrics::{Metrics, ReconcileResult};
pub use server::ServerLimits;
pub use telemetry::{LogFormat, init_tracing};
