//! The one error type of the test-support crate.

use std::path::PathBuf;
use std::time::Duration;

/// Why the test cluster, a client for it, or a helper failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kubeconfig could not be read or turned into a client configuration.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What was wrong with it.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client could not be built from a valid configuration.
    #[error("client for {path}: {source}")]
    Client {
        /// The kubeconfig file.
        path: PathBuf,
        /// What kube reported.
        #[source]
        source: kube::Error,
    },
    /// The cluster named by a kubeconfig we do not manage does not answer.
    #[error(
        "the cluster of {path} (from PLUMB_TEST_KUBECONFIG) is not reachable: {reason}; \
         unset PLUMB_TEST_KUBECONFIG to use the local test cluster"
    )]
    Unreachable {
        /// The kubeconfig file.
        path: PathBuf,
        /// The last error of the reachability check.
        reason: String,
    },
    /// `e2e/cluster/up.sh` failed or left a cluster that does not answer.
    #[error(
        "starting the test cluster failed: {0} (up.sh printed which component and its log above)"
    )]
    ClusterStart(String),
    /// A test that needs the cluster ran where none may be used (`make unit-test`); the text
    /// says how to mark it (kept in the variant so that `unwrap()` prints it too).
    #[error("{0}")]
    ClusterTestNotMarked(&'static str),
    /// A Kubernetes API call failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, e.g. `create namespace plumb-test-x1y2z`.
        action: String,
        /// What the API server or the client said.
        #[source]
        source: kube::Error,
    },
    /// A YAML document could not be parsed into a Kubernetes object.
    #[error("YAML document {index}: {message}")]
    Yaml {
        /// Zero-based index of the document in the stream.
        index: usize,
        /// What was wrong with it.
        message: String,
    },
    /// A local I/O operation of the test support failed (binding a port, reading a file).
    #[error("{0}")]
    Io(String),
    /// A controller the test depends on ended while the test was waiting for it.
    #[error("the {name} stopped: {reason}")]
    ControllerStopped {
        /// The controller, as the test named it.
        name: String,
        /// Its error, or the message of its panic.
        reason: String,
    },
    /// A condition did not hold within its time limit.
    #[error("timed out after {waited:?} waiting for {what}{}", last.as_deref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    Timeout {
        /// What was awaited, as the caller described it.
        what: String,
        /// How long it waited.
        waited: Duration,
        /// The last error or observation the condition reported, if any.
        last: Option<String>,
    },
}

impl Error {
    /// Wraps a kube error with a description of the call that failed.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
