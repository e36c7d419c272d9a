//! The render controller's settings, as command-line flags (also embeddable in the `plumb` CLI).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The label that assigns a Sync to one shard of render controllers.
pub const SHARD_LABEL: &str = "plumb.dev/shard";

/// The default `--watch-label-selector`: every Sync not assigned to a shard.
pub const DEFAULT_WATCH_SELECTOR: &str = "!plumb.dev/shard";

/// How the render controller runs.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Where rendered artifacts are stored.
    #[arg(long, env = "PLUMB_RENDER_STORAGE_DIR", default_value = "/data")]
    pub storage_dir: PathBuf,

    /// The address the artifact file server listens on.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub artifact_addr: SocketAddr,

    /// The URL under which consumers reach the artifact file server (written into status);
    /// empty means `http://<the address bound>`.
    #[arg(long, default_value = "http://render-controller.plumb-system.svc")]
    pub artifact_base_url: String,

    /// The address of `/healthz` and `/readyz`; none when unset.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,

    /// How many Syncs are rendered at once.
    #[arg(long, default_value_t = 4)]
    pub concurrent: u16,

    /// Refuse Syncs whose sourceRef names another namespace.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,

    /// The largest source artifact that is downloaded, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_artifact_size: u64,

    /// The largest total size a source artifact may unpack to, in bytes.
    #[arg(long, default_value_t = 512 << 20)]
    pub max_unpacked_size: u64,

    /// How many rendered artifacts to keep per Sync.
    #[arg(long, default_value_t = 3)]
    pub artifacts_to_keep: usize,

    /// How long a source download may take.
    #[arg(long, value_parser = parse_secs, default_value = "60")]
    pub fetch_timeout: Duration,

    /// Only render Syncs matching this label selector. The default leaves Syncs labelled
    /// `plumb.dev/shard` to the controllers started with `plumb.dev/shard=<shard>` (Flux's
    /// sharding convention); an empty value renders every Sync.
    #[arg(long, default_value = DEFAULT_WATCH_SELECTOR)]
    pub watch_label_selector: String,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.trim_end_matches('s')
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{s:?}: expected seconds: {e}"))
}
