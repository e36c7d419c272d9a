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

    /// Reconcile only while holding the leader Lease (off by default: one replica needs none).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,

    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "plumb-system")]
    pub leader_election_namespace: String,

    /// Log format.
    #[arg(long, value_enum, default_value_t = plumb_ops::LogFormat::Plain)]
    pub log_format: plumb_ops::LogFormat,

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

impl Config {
    /// The defaults of every flag, as if none were given.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            config: Config,
        }
        <Flags as clap::Parser>::parse_from(["plumb-render-controller"]).config
    }

    /// A configuration for tests and single-machine runs: artifacts under `storage_dir`, served
    /// on a free loopback port, no leader election.
    pub fn local(storage_dir: PathBuf) -> Self {
        Self {
            storage_dir,
            artifact_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            artifact_base_url: String::new(),
            leader_election: false,
            ..Self::defaults()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_leave_sharded_syncs_alone() {
        let c = Config::defaults();
        assert_eq!(c.watch_label_selector, "!plumb.dev/shard");
        assert!(!c.leader_election);
        assert_eq!(c.concurrent, 4);
        let local = Config::local("/tmp/x".into());
        assert!(!local.leader_election);
        assert_eq!(local.artifact_addr.port(), 0);
    }
}
