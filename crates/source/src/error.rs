//! The source controller's errors and the condition reasons they map to.

use plumb_api::reason;

use crate::git::GitError;
use crate::refs::RefError;

/// Everything that can stop a GitRepository from getting a new artifact.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A git operation failed.
    #[error(transparent)]
    Git(GitError),
    /// The wanted ref does not exist.
    #[error(transparent)]
    Ref(RefError),
    /// The artifact could not be written.
    #[error(transparent)]
    Storage(plumb_artifact::StorageError),
    /// The git cache could not be prepared.
    #[error("git cache: {0}")]
    Cache(String),
    /// A referenced Secret does not exist.
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// A referenced Secret lacks a required key.
    #[error("secret {0:?} has no key {1:?}")]
    SecretKeyMissing(String, &'static str),
    /// The spec is invalid in a way the schema cannot catch.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The Kubernetes API refused a request.
    #[error("kubernetes API: {0}")]
    Kube(kube::Error),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// The condition reason, and whether retrying without a spec change is pointless (Stalled).
    pub fn reason(&self) -> (&'static str, bool) {
        match self {
            Error::Git(GitError::Auth(_)) => (reason::AUTHENTICATION_FAILED, false),
            Error::Git(GitError::Url(_)) => (reason::INVALID_SPEC, true),
            // Not stalled: a new commit can bring the repository back under the limit.
            Error::Git(GitError::Limit(_)) => (reason::LIMIT_EXCEEDED, false),
            // The controller's disk, not the repository: retried, and the operator is told.
            Error::Git(GitError::Storage { .. }) => (reason::ARTIFACT_STORAGE_FAILED, false),
            Error::Git(_) | Error::Cache(_) => (reason::GIT_OPERATION_FAILED, false),
            Error::Ref(RefError::InvalidSemver { .. }) => (reason::INVALID_SPEC, true),
            Error::Ref(_) => (reason::REF_NOT_FOUND, false),
            Error::Storage(_) => (reason::ARTIFACT_STORAGE_FAILED, false),
            Error::SecretNotFound(_) | Error::SecretKeyMissing(..) => {
                (reason::AUTHENTICATION_FAILED, false)
            }
            Error::InvalidSpec(_) => (reason::INVALID_SPEC, true),
            Error::Kube(_) | Error::Finalizer(_) => (reason::GIT_OPERATION_FAILED, false),
        }
    }
}
