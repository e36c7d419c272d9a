//! The source controller's settings, as command-line flags (also embeddable in the `plumb`
//! binary with `#[command(flatten)]`). The flags every controller shares (metrics address,
//! leader election, logs) are the runtime's: [`plumb_ops::RuntimeFlags`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use plumb_ops::WatchScope;

use crate::git::FetchLimits;

/// Flags of `plumb-source-controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Directory for artifacts (served) and the git cache (`.cache/`, not served).
    #[arg(
        long = "storage-path",
        alias = "storage-dir",
        env = "PLUMB_STORAGE_DIR",
        default_value = "/data"
    )]
    pub storage_dir: PathBuf,
    /// Address the artifact file server binds.
    #[arg(
        long = "storage-addr",
        alias = "artifact-addr",
        default_value = "0.0.0.0:9090"
    )]
    pub artifact_addr: SocketAddr,
    /// The address consumers reach the artifact file server at, written into
    /// `status.artifact.url`: `HOST[:PORT]` (served over http) or an `http(s)://` URL; empty
    /// means the address bound.
    #[arg(
        long = "storage-adv-addr",
        alias = "artifact-base-url",
        env = "PLUMB_ARTIFACT_BASE_URL",
        value_parser = plumb_artifact::storage::advertised_base_url,
        default_value = "source-controller.plumb-system.svc"
    )]
    pub artifact_base_url: String,
    /// The Secret (`[NAMESPACE/]NAME`; `$POD_NAMESPACE` when no namespace) holding the bearer
    /// token the plumb controllers share for artifact downloads; created with a random token
    /// when missing. Without it, artifacts are served and fetched without credentials (local
    /// use only: a rendered artifact may contain Secrets).
    #[arg(long, env = "PLUMB_ARTIFACT_TOKEN_SECRET")]
    pub artifact_token_secret: Option<plumb_artifact::TokenSecret>,
    /// Address of the push webhook receiver.
    #[arg(long, default_value = "0.0.0.0:9292")]
    pub webhook_addr: SocketAddr,
    /// Largest webhook delivery body accepted, in bytes (413 beyond it); the other servers'
    /// bodies are bounded by `--http-max-body-size`.
    #[arg(long, default_value_t = plumb_ops::ServerLimits::WEBHOOK_MAX_BODY_BYTES)]
    pub webhook_max_body_size: usize,
    /// GitRepositories reconciled at the same time.
    #[arg(long = "concurrent", alias = "concurrency", default_value_t = 2)]
    pub concurrent: u16,
    /// Allow `file://` URLs (tests and single-machine setups only: they read the controller's disk).
    #[arg(long)]
    pub allow_file_sources: bool,
    /// Artifacts kept per GitRepository (the current one included); older ones are deleted.
    #[arg(
        long = "artifact-retention-records",
        alias = "artifacts-to-keep",
        default_value_t = 3
    )]
    pub artifacts_to_keep: usize,
    /// The most pack data one fetch may receive, in bytes; a fetch crossing it stops at once.
    #[arg(long, default_value_t = FetchLimits::default().max_fetch_bytes)]
    pub max_fetch_size: u64,
    /// The largest single file a repository's tree may hold, in bytes.
    #[arg(long, default_value_t = FetchLimits::default().max_blob_bytes)]
    pub max_blob_size: u64,
    /// The most entries (files and directories) a repository's tree may hold.
    #[arg(long, default_value_t = FetchLimits::default().max_tree_entries)]
    pub max_tree_entries: u64,
    /// The largest artifact (compressed tarball) stored for a GitRepository, in bytes.
    #[arg(long, default_value_t = FetchLimits::default().max_artifact_bytes)]
    pub max_artifact_size: u64,
    /// Which GitRepositories to reconcile.
    #[command(flatten)]
    pub scope: WatchScope,
}

impl Config {
    /// A configuration for tests and embedding: artifacts under `storage_dir` published with
    /// `artifact_base_url`, servers on OS-chosen loopback ports unless the caller sets them.
    pub fn for_storage(storage_dir: PathBuf, artifact_base_url: String) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            storage_dir,
            artifact_addr: any,
            artifact_base_url,
            artifact_token_secret: None,
            webhook_addr: any,
            webhook_max_body_size: plumb_ops::ServerLimits::WEBHOOK_MAX_BODY_BYTES,
            concurrent: 2,
            allow_file_sources: false,
            artifacts_to_keep: 3,
            max_fetch_size: FetchLimits::default().max_fetch_bytes,
            max_blob_size: FetchLimits::default().max_blob_bytes,
            max_tree_entries: FetchLimits::default().max_tree_entries,
            max_artifact_size: FetchLimits::default().max_artifact_bytes,
            scope: WatchScope::default(),
        }
    }

    /// The size limits every fetch and archive is held to.
    pub fn fetch_limits(&self) -> FetchLimits {
        FetchLimits {
            max_fetch_bytes: self.max_fetch_size,
            max_blob_bytes: self.max_blob_size,
            max_tree_entries: self.max_tree_entries,
            max_artifact_bytes: self.max_artifact_size,
        }
    }

    /// First retry delay after a failure; doubled per consecutive failure.
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(750)
    }
}
