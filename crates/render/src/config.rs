//! The render controller's settings, as command-line flags (also embeddable in the `plumb` CLI).
//! The flags every controller shares (metrics address, leader election, logs) are the
//! runtime's: [`plumb_ops::RuntimeFlags`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use plumb_ops::WatchScope;

/// How the render controller runs.
#[derive(clap::Args, Debug, Clone)]
pub struct Config {
    /// Where rendered artifacts are stored.
    #[arg(
        long = "storage-path",
        alias = "storage-dir",
        env = "PLUMB_RENDER_STORAGE_DIR",
        default_value = "/data"
    )]
    pub storage_dir: PathBuf,

    /// The address the artifact file server listens on.
    #[arg(
        long = "storage-addr",
        alias = "artifact-addr",
        default_value = "0.0.0.0:9090"
    )]
    pub artifact_addr: SocketAddr,

    /// The address consumers reach the artifact file server at, written into status:
    /// `HOST[:PORT]` (served over http) or an `http(s)://` URL; empty means the address bound.
    #[arg(
        long = "storage-adv-addr",
        alias = "artifact-base-url",
        value_parser = plumb_artifact::storage::advertised_base_url,
        default_value = "render-controller.plumb-system.svc"
    )]
    pub artifact_base_url: String,

    /// The Secret (`[NAMESPACE/]NAME`; `$POD_NAMESPACE` when no namespace) holding the bearer
    /// token the plumb controllers share for artifact downloads; created with a random token
    /// when missing. Without it, artifacts are served and fetched without credentials (local
    /// use only: a rendered artifact may contain Secrets).
    #[arg(long, env = "PLUMB_ARTIFACT_TOKEN_SECRET")]
    pub artifact_token_secret: Option<plumb_artifact::TokenSecret>,

    /// How many Syncs are rendered at once.
    #[arg(long = "concurrent", alias = "concurrency", default_value_t = 4)]
    pub concurrent: u16,

    /// How long the Syncs a new source revision leaves unchanged wait for the changed ones to be
    /// applied (their `status.lastAttemptedRevision` set by the sync controller) before they
    /// are moved to the new revision, so that their status writes do not compete with those
    /// applies; `0s`: they are moved at once.
    #[arg(long, value_parser = plumb_ops::parse_duration, default_value = "10s")]
    pub apply_first_timeout: Duration,

    /// Refuse Syncs whose sourceRef names another namespace.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,

    /// The largest source artifact that is downloaded, in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_artifact_size: u64,

    /// The largest total size a source artifact may unpack to, in bytes.
    #[arg(long, default_value_t = 512 << 20)]
    pub max_unpacked_size: u64,

    /// The most entries a source artifact may unpack to, the directories its paths imply
    /// included. Checked before anything is written.
    #[arg(long, default_value_t = 100_000)]
    pub max_unpacked_entries: u64,

    /// The most bytes the paths of a source artifact's entries (and the directories they
    /// imply) may add up to: the render controller's index of a tree holds them in memory.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_unpacked_path_bytes: u64,

    /// How many rendered artifacts to keep per Sync.
    #[arg(
        long = "artifact-retention-records",
        alias = "artifacts-to-keep",
        default_value_t = 3
    )]
    pub artifacts_to_keep: usize,

    /// How long a source download may take.
    #[arg(long, value_parser = plumb_ops::parse_duration, default_value = "60s")]
    pub fetch_timeout: Duration,

    /// The largest file a render reads, in bytes (limit max-file-size).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_file_size: u64,

    /// The most bytes one render reads, summed over its files (limit max-render-input-size).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_render_input_size: u64,

    /// The most file reads in one render (limit max-render-files).
    #[arg(long, default_value_t = 10_000)]
    pub max_render_files: usize,

    /// The longest chain of kustomizations including one another (limit
    /// max-kustomization-depth; at most 200).
    #[arg(long, default_value_t = 50)]
    pub max_kustomization_depth: usize,

    /// The largest rendered output, as JSON bytes of its objects (limit max-rendered-size).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_rendered_size: u64,

    /// How long a render may take, before the allowance per MiB of source (limit render-timeout).
    #[arg(long, value_parser = plumb_ops::parse_duration, default_value = "10")]
    pub render_timeout: Duration,

    /// How much longer a render may take per MiB of unpacked source.
    #[arg(long, value_parser = plumb_ops::parse_duration, default_value = "1")]
    pub render_timeout_per_mib: Duration,

    /// The Helm binary that renders charts (`helm template`); else `$PLUMB_HELM`, else `helm`
    /// on PATH. Build the pinned one with crates/helm/go/build.sh.
    #[arg(long)]
    pub helm_binary: Option<PathBuf>,

    /// The most memory one chart render's Helm process may use, in bytes (limit
    /// chart-max-memory).
    #[arg(long, default_value_t = crate::chart::DEFAULT_CHART_MAX_MEMORY)]
    pub chart_max_memory: u64,

    /// How many bytes of `helm template` output are cached, keyed by chart digest and values.
    #[arg(long, default_value_t = 64 << 20)]
    pub chart_cache_size: usize,

    /// Which Syncs to render (Policies are cluster-wide).
    #[command(flatten)]
    pub scope: WatchScope,
}

impl Config {
    /// The limits of one render over a source that unpacked to `source_bytes`.
    pub fn render_options(&self, source_bytes: u64) -> crate::build::RenderOptions {
        let mib = u32::try_from(source_bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX);
        let timeout = self
            .render_timeout
            .saturating_add(self.render_timeout_per_mib.saturating_mul(mib));
        crate::build::RenderOptions {
            limits: plumb_kustomize::Limits {
                max_file_bytes: self.max_file_size,
                max_read_bytes: self.max_render_input_size,
                max_files: self.max_render_files,
                max_kustomization_depth: self.max_kustomization_depth,
                ..plumb_kustomize::Limits::default()
            },
            timeout: Some(timeout),
            max_output_bytes: self.max_rendered_size,
            chart: crate::chart::ChartOptions {
                max_memory: self.chart_max_memory,
                ..Default::default()
            },
            accesses: None,
        }
    }

    /// What a source artifact may unpack to.
    pub fn unpack_limits(&self) -> plumb_artifact::UnpackLimits {
        plumb_artifact::UnpackLimits {
            max_bytes: self.max_unpacked_size,
            max_entries: self.max_unpacked_entries,
            max_path_bytes: self.max_unpacked_path_bytes,
            ..plumb_artifact::UnpackLimits::default()
        }
    }

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
    /// on a free loopback port.
    pub fn local(storage_dir: PathBuf) -> Self {
        Self {
            storage_dir,
            artifact_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            artifact_base_url: String::new(),
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
        assert_eq!(c.scope.selector(), "!plumb.dev/shard");
        assert_eq!(c.concurrent, 4);
        let local = Config::local("/tmp/x".into());
        assert_eq!(local.artifact_addr.port(), 0);
    }

    #[test]
    fn render_limits_follow_the_flags_and_the_source_size() {
        let c = Config::defaults();
        let opts = c.render_options(0);
        assert_eq!(opts.limits, plumb_kustomize::Limits::default());
        assert_eq!(opts.timeout, Some(Duration::from_secs(10)));
        assert_eq!(opts.max_output_bytes, 64 << 20);
        let big = c.render_options((5 << 20) + 1);
        assert_eq!(big.timeout, Some(Duration::from_secs(16)), "6 MiB started");
    }

    #[test]
    fn unpack_limits_follow_the_flags() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            config: Config,
        }
        let defaults = Config::defaults().unpack_limits();
        let set = <Flags as clap::Parser>::parse_from([
            "plumb-render-controller",
            "--max-unpacked-size=1000",
            "--max-unpacked-entries=10",
            "--max-unpacked-path-bytes=100",
        ])
        .config
        .unpack_limits();
        assert_eq!(
            (set.max_bytes, set.max_entries, set.max_path_bytes),
            (1000, 10, 100)
        );
        assert_eq!(
            (
                defaults.max_entries,
                defaults.max_path_bytes,
                defaults.max_depth
            ),
            (100_000, 32 << 20, 128)
        );
    }
}
