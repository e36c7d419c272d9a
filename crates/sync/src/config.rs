//! The sync controller's settings, as command-line flags (also embeddable in the `plumb` CLI).
//! The flags every controller shares (metrics address, leader election, logs) are the
//! runtime's: [`plumb_ops::RuntimeFlags`].

use plumb_ops::WatchScope;

/// The default of [`Config::progress_report_delay`].
pub const DEFAULT_PROGRESS_REPORT_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// Flags of `plumb-sync-controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// How many Syncs are reconciled at once.
    #[arg(
        long = "concurrent",
        alias = "concurrency",
        default_value_t = 4,
        env = "PLUMB_SYNC_CONCURRENCY"
    )]
    pub concurrency: u16,
    /// Apply as this ServiceAccount (of the Sync's namespace) when a Sync names none.
    #[arg(long, env = "PLUMB_DEFAULT_SERVICE_ACCOUNT")]
    pub default_service_account: Option<String>,
    /// Refuse Syncs whose sourceRef points into another namespace.
    #[arg(long, env = "PLUMB_NO_CROSS_NAMESPACE_REFS")]
    pub no_cross_namespace_refs: bool,
    /// Refuse rendered artifacts larger than this many bytes.
    #[arg(long, default_value_t = 256 << 20, env = "PLUMB_MAX_ARTIFACT_SIZE")]
    pub max_artifact_size: u64,
    /// The Secret (`[NAMESPACE/]NAME`; `$POD_NAMESPACE` when no namespace) holding the bearer
    /// token the plumb controllers share for artifact downloads; created with a random token
    /// when missing. Without it, artifacts are served and fetched without credentials (local
    /// use only: a rendered artifact may contain Secrets).
    #[arg(long, env = "PLUMB_ARTIFACT_TOKEN_SECRET")]
    pub artifact_token_secret: Option<plumb_artifact::TokenSecret>,
    /// The Secret (`[NAMESPACE/]NAME`; `$POD_NAMESPACE` when no namespace) whose `*.agekey`
    /// (age) and `*.asc` (PGP) entries decrypt the SOPS files of Syncs whose `spec.decryption`
    /// names no `secretRef` (as Flux's `--sops-age-secret`).
    #[arg(long, env = "PLUMB_SOPS_AGE_SECRET")]
    pub sops_age_secret: Option<plumb_artifact::TokenSecret>,
    /// How long a Sync may sit in a state on its way to Ready (waiting for its first render,
    /// waiting for the objects just applied to become healthy) before the status reports it: a
    /// state that ends sooner is never written, and the status goes from what it said before
    /// straight to the outcome, one write instead of two. Nothing waits for this delay: the
    /// outcome is written as soon as it is known. `0s`: every state is reported at once.
    #[arg(
        long,
        value_parser = plumb_ops::parse_duration,
        default_value = "2s",
        env = "PLUMB_PROGRESS_REPORT_DELAY"
    )]
    pub progress_report_delay: std::time::Duration,
    /// Which Syncs to reconcile.
    #[command(flatten)]
    pub scope: WatchScope,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            concurrency: 4,
            default_service_account: None,
            no_cross_namespace_refs: false,
            max_artifact_size: 256 << 20,
            artifact_token_secret: None,
            sops_age_secret: None,
            progress_report_delay: DEFAULT_PROGRESS_REPORT_DELAY,
            scope: WatchScope::default(),
        }
    }
}
