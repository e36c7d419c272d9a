//! The render controller's errors.

/// Why the controller (not one render) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// Rendered artifact storage failed.
    #[error("{0}")]
    Storage(#[source] plumb_artifact::StorageError),
    /// Building the HTTP client failed.
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// The artifact file server stopped.
    #[error("artifact server: {0}")]
    Serve(#[source] std::io::Error),
    /// The leader Lease was lost; the process should exit and be restarted.
    #[error("{0}")]
    Leader(#[source] plumb_ops::LeaderError),
    /// A watch cache never became ready.
    #[error("watch cache not ready")]
    StoreNotReady,
}
