//! End-to-end harness: a Git repository served over smart HTTP on loopback ([`GitFixture`]) and
//! the three plumb controllers running as separate processes against the test cluster
//! ([`Controllers`]), so scenarios exercise exactly what users run.

pub mod bench;
mod controllers;
pub mod demo;
mod git;
mod install;
mod private_cluster;
mod syncs;

pub use controllers::{
    ARTIFACT_TOKEN_SECRET, BIN_DIR_ENV, Controller, Controllers, SCOPE_LABEL, cargo, plumb_binary,
    without_cargo_test_env,
};
pub use git::{GitFixture, copy_tree, files_under};
pub use install::{Install, NAMESPACE as INSTALL_NAMESPACE};
pub use private_cluster::PrivateCluster;
pub use syncs::create_sync;

/// `len` bytes that do not compress (xorshift from `seed`), so pack, artifact and storage sizes
/// are what a test means.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // The low byte of the state: truncation is the point.
            x as u8
        })
        .collect()
}

/// Why the harness could not do what a scenario asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("git {args}: {stderr}")]
    Git {
        /// The arguments of the command.
        args: String,
        /// What git printed.
        stderr: String,
    },
    /// Building the controller binaries failed.
    #[error("building the controllers failed:\n{0}")]
    Build(String),
    /// The git server could not start.
    #[error(transparent)]
    GitServer(#[from] plumb_git_server::Error),
    /// `config/` could not be rendered or does not hold what a controller needs, or a
    /// kubeconfig for it could not be written.
    #[error("{0}")]
    Config(String),
    /// A Kubernetes API call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// The demo (e2e/demo/up.sh) could not be brought up or stopped.
    #[error("the demo: {0}")]
    Demo(String),
    /// The test support failed (applying objects, waiting).
    #[error(transparent)]
    Support(#[from] plumb_e2e_support::Error),
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
