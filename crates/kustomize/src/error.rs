//! The one error type of the engine.

/// Why a build failed. Every variant names the kustomization (relative to the build root) and the
/// cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The build root itself is unusable.
    #[error("build root {root}: {message}")]
    Root {
        /// The root given.
        root: String,
        /// What is wrong with it.
        message: String,
    },
    /// A directory that should hold a kustomization has none.
    #[error(
        "{dir}: no kustomization file (kustomization.yaml, kustomization.yml or Kustomization) found"
    )]
    NoKustomization {
        /// The directory, relative to the root.
        dir: String,
    },
    /// A referenced path leaves the build root (via `..` or a symlink).
    #[error("kustomization {kustomization}: {path} is outside the build root")]
    OutsideRoot {
        /// The kustomization that referenced it.
        kustomization: String,
        /// The path as written.
        path: String,
    },
    /// A feature this engine refuses on purpose: remote bases, helm, plugins, functions.
    #[error("kustomization {kustomization}: {what} is not supported")]
    Refused {
        /// The kustomization that asked for it.
        kustomization: String,
        /// What was asked for.
        what: String,
    },
    /// Anything else: unreadable or invalid files, conflicts, bad patches.
    #[error("kustomization {kustomization}: {message}")]
    Build {
        /// The kustomization being built.
        kustomization: String,
        /// The cause.
        message: String,
    },
}
