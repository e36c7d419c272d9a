//! `plumb controllers`: run any subset of the three controllers in one process, in one
//! [`plumb_ops::Runtime`]. The runtime's flags (`--metrics-addr`, `--enable-leader-election`,
//! `--log-encoding`, ...) are given once, as to any controller binary; each controller's own
//! flags follow `--source-arg`, `--render-arg` or `--sync-arg` (repeatable), spelled exactly as
//! its binary takes them, so the one-process and the per-Deployment setups take the same
//! settings.

use std::path::PathBuf;

use clap::Parser;

/// Flags of `plumb controllers`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Which controllers to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "source,render,sync")]
    pub only: Vec<Which>,
    /// Storage for artifacts: the source controller uses `<dir>/source`, the render controller
    /// `<dir>/render` (unless their own `--storage-path` is passed through).
    #[arg(long = "storage-path", alias = "storage-dir")]
    pub storage_dir: Option<PathBuf>,
    /// The runtime the controllers share: metrics address, leader election, logs.
    #[command(flatten)]
    pub runtime: plumb_ops::RuntimeFlags,
    /// A flag for the source controller, e.g. `--source-arg=--allow-file-sources` (repeatable).
    #[arg(long = "source-arg", allow_hyphen_values = true)]
    pub source_args: Vec<String>,
    /// A flag for the render controller (repeatable).
    #[arg(long = "render-arg", allow_hyphen_values = true)]
    pub render_args: Vec<String>,
    /// A flag for the sync controller (repeatable).
    #[arg(long = "sync-arg", allow_hyphen_values = true)]
    pub sync_args: Vec<String>,
}

/// One of the controllers.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The source controller (GitRepository).
    Source,
    /// The render controller (Sync render, Policy).
    Render,
    /// The sync controller (apply, prune, health, drift).
    Sync,
}

#[derive(Parser)]
struct SourceFlags {
    #[command(flatten)]
    config: plumb_source::Config,
}

#[derive(Parser)]
struct RenderFlags {
    #[command(flatten)]
    config: plumb_render::Config,
}

#[derive(Parser)]
struct SyncFlags {
    #[command(flatten)]
    config: plumb_sync::Config,
}

/// The passed-through flags, with `--storage-path=<base>/<name>` first unless given (in either
/// spelling).
fn argv(name: &str, base: Option<&PathBuf>, args: &[String]) -> Vec<String> {
    let mut argv = vec![format!("plumb-{name}-controller")];
    let has_storage = args
        .iter()
        .any(|a| a.starts_with("--storage-path") || a.starts_with("--storage-dir"));
    if let (Some(base), false) = (base, has_storage) {
        argv.push(format!("--storage-path={}", base.join(name).display()));
    }
    argv.extend(args.iter().cloned());
    argv
}

/// Parses every selected controller's flags (so a typo fails before anything starts), then runs
/// them together until one stops.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let base = args.storage_dir.as_ref();
    let pick = |w| args.only.contains(&w);
    let source = pick(Which::Source)
        .then(|| SourceFlags::try_parse_from(argv("source", base, &args.source_args)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("source controller flags: {e}"))?;
    let render = pick(Which::Render)
        .then(|| RenderFlags::try_parse_from(argv("render", base, &args.render_args)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("render controller flags: {e}"))?;
    let sync = pick(Which::Sync)
        .then(|| SyncFlags::try_parse_from(argv("sync", None, &args.sync_args)))
        .transpose()
        .map_err(|e| anyhow::anyhow!("sync controller flags: {e}"))?;
    if source.is_none() && render.is_none() && sync.is_none() {
        anyhow::bail!("--only names no controller");
    }
    let runtime = plumb_ops::Runtime::start(args.runtime.clone()).await?;

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(f) = source {
        let rt = runtime.clone();
        tasks.spawn(async move {
            plumb_source::run(&rt, f.config)
                .await
                .map_err(|e| anyhow::anyhow!("source controller: {e}"))
        });
    }
    if let Some(f) = render {
        let rt = runtime.clone();
        tasks.spawn(async move {
            plumb_render::run(&rt, f.config)
                .await
                .map_err(|e| anyhow::anyhow!("render controller: {e}"))
        });
    }
    if let Some(f) = sync {
        let rt = runtime.clone();
        tasks.spawn(async move {
            plumb_sync::run(&rt, f.config)
                .await
                .map_err(|e| anyhow::anyhow!("sync controller: {e}"))
        });
    }
    // The first controller to stop ends the process: a half-running set would look healthy.
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(anyhow::anyhow!("a controller panicked: {e}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn storage_path_is_split_per_controller_unless_passed_through() {
        let base = PathBuf::from("/data");
        assert_eq!(
            argv("source", Some(&base), &[]),
            ["plumb-source-controller", "--storage-path=/data/source"]
        );
        for own in ["--storage-path=/x", "--storage-dir=/x"] {
            assert_eq!(
                argv("render", Some(&base), &[own.to_owned()]),
                ["plumb-render-controller", own]
            );
        }
        assert_eq!(argv("sync", None, &[]), ["plumb-sync-controller"]);
    }

    /// A controller binary's command line: the runtime's flags and the controller's own, as in
    /// each `main.rs`.
    #[derive(Parser)]
    struct Binary<C: clap::Args> {
        #[command(flatten)]
        runtime: plumb_ops::RuntimeFlags,
        #[command(flatten)]
        config: C,
    }

    #[test]
    fn every_controllers_own_flags_parse_as_in_its_binary() {
        let source = Binary::<plumb_source::Config>::try_parse_from([
            "s",
            "--storage-path=/d",
            "--allow-file-sources",
            "--enable-leader-election=false",
        ])
        .unwrap();
        assert!(source.config.allow_file_sources);
        assert!(!source.runtime.leader_election.enabled);
        let own = SourceFlags::try_parse_from(["s", "--storage-path=/d", "--allow-file-sources"])
            .unwrap();
        assert!(own.config.allow_file_sources);
        assert!(RenderFlags::try_parse_from(["r", "--storage-path=/d"]).is_ok());
        assert!(SyncFlags::try_parse_from(["s"]).is_ok());
        assert!(SourceFlags::try_parse_from(["s", "--no-such-flag"]).is_err());
    }

    #[test]
    fn one_spelling_per_idea_and_the_old_ones_still_parse() {
        let new = [
            "c",
            "--watch-namespace=team",
            "--watch-label-selector=plumb.dev/shard=a",
            "--concurrent=7",
            "--metrics-addr=127.0.0.1:8080",
            "--enable-leader-election",
            "--log-encoding=json",
        ];
        let source = Binary::<plumb_source::Config>::try_parse_from(new).unwrap();
        let render = Binary::<plumb_render::Config>::try_parse_from(new).unwrap();
        let sync = Binary::<plumb_sync::Config>::try_parse_from(new).unwrap();
        assert_eq!(source.runtime, render.runtime);
        assert_eq!(render.runtime, sync.runtime);
        assert_eq!(source.config.scope, render.config.scope);
        assert_eq!(render.config.scope, sync.config.scope);
        assert_eq!(
            (
                source.config.concurrent,
                render.config.concurrent,
                sync.config.concurrency
            ),
            (7, 7, 7)
        );
        assert!(sync.runtime.leader_election.enabled);

        // The artifact servers' storage flags, as Flux's source-controller spells them.
        let storage = [
            "c",
            "--storage-path=/d",
            "--storage-addr=127.0.0.1:9",
            "--storage-adv-addr=source.example:80",
        ];
        let old_storage = [
            "c",
            "--storage-dir=/d",
            "--artifact-addr=127.0.0.1:9",
            "--artifact-base-url=http://source.example:80",
        ];
        for args in [storage, old_storage] {
            let source = Binary::<plumb_source::Config>::try_parse_from(args).unwrap();
            let render = Binary::<plumb_render::Config>::try_parse_from(args).unwrap();
            for (dir, addr, base) in [
                (
                    &source.config.storage_dir,
                    source.config.artifact_addr,
                    &source.config.artifact_base_url,
                ),
                (
                    &render.config.storage_dir,
                    render.config.artifact_addr,
                    &render.config.artifact_base_url,
                ),
            ] {
                assert_eq!(dir, &PathBuf::from("/d"), "{args:?}");
                assert_eq!(addr.to_string(), "127.0.0.1:9", "{args:?}");
                assert_eq!(base, "http://source.example:80", "{args:?}");
            }
        }

        let old_source = Binary::<plumb_source::Config>::try_parse_from([
            "s",
            "--namespace=team",
            "--shard=a",
            "--concurrency=7",
            "--leader-election=true",
            "--log-format=plain",
        ])
        .unwrap();
        assert_eq!(old_source.config.scope.namespace.as_deref(), Some("team"));
        assert_eq!(old_source.config.scope.selector(), "plumb.dev/shard=a");
        assert_eq!(old_source.config.concurrent, 7);
        assert!(old_source.runtime.leader_election.enabled);
        let old_sync = Binary::<plumb_sync::Config>::try_parse_from([
            "s",
            "--watch-namespace=team",
            "--ops-addr=127.0.0.1:1",
            "--concurrency=2",
        ])
        .unwrap();
        assert_eq!(old_sync.config.scope.namespace.as_deref(), Some("team"));
        assert!(old_sync.runtime.metrics_addr.is_some());
        assert_eq!(old_sync.config.concurrency, 2);
    }

    /// The args of the Deployment in `config/<name>-controller.yaml`, as the kubelet passes them.
    fn deployment_args(name: &str) -> Vec<String> {
        let path = format!(
            "{}/../../config/{name}-controller.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let doc = serde_yaml::Value::deserialize(doc).unwrap();
            if doc["kind"] == "Deployment" {
                let args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
                    .as_sequence()
                    .unwrap();
                let mut argv = vec![format!("plumb-{name}-controller")];
                argv.extend(args.iter().map(|a| {
                    a.as_str()
                        .unwrap()
                        .replace("$(POD_NAMESPACE)", "plumb-system")
                }));
                return argv;
            }
        }
        panic!("no Deployment in {path}");
    }

    #[test]
    fn the_install_manifests_pass_flags_each_controller_accepts() {
        let source =
            Binary::<plumb_source::Config>::try_parse_from(deployment_args("source")).unwrap();
        assert!(source.runtime.leader_election.enabled);
        let render =
            Binary::<plumb_render::Config>::try_parse_from(deployment_args("render")).unwrap();
        assert!(render.runtime.leader_election.enabled);
        let sync = Binary::<plumb_sync::Config>::try_parse_from(deployment_args("sync")).unwrap();
        assert!(sync.runtime.leader_election.enabled);
        assert_eq!(sync.runtime.leader_election.namespace, "plumb-system");
    }
}
