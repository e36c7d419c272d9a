//! The three controllers as separate processes, scoped to one namespace, logging to files.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::{Error, Result, io};

/// One of the plumb controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// `plumb-source-controller`.
    Source,
    /// `plumb-render-controller`.
    Render,
    /// `plumb-sync-controller`.
    Sync,
}

impl Controller {
    /// All three, in the order they are started.
    pub const ALL: [Controller; 3] = [Controller::Source, Controller::Render, Controller::Sync];

    fn binary(self) -> &'static str {
        match self {
            Controller::Source => "plumb-source-controller",
            Controller::Render => "plumb-render-controller",
            Controller::Sync => "plumb-sync-controller",
        }
    }

    /// The name of its Deployment and ServiceAccount in `config/`.
    pub fn deployment(self) -> &'static str {
        match self {
            Controller::Source => "source-controller",
            Controller::Render => "render-controller",
            Controller::Sync => "sync-controller",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Controller::Source => "source",
            Controller::Render => "render",
            Controller::Sync => "sync",
        }
    }
}

/// The label every scenario puts on its Syncs, valued with its namespace: the render controller
/// of a scenario renders only the Syncs carrying its own value.
pub const SCOPE_LABEL: &str = "e2e.plumb.dev/scope";

/// The Secret, in the scenario's namespace, holding the token the controllers share for
/// artifact downloads.
pub const ARTIFACT_TOKEN_SECRET: &str = "plumb-artifact-token";

/// Ports and directories a controller set uses; fixed for its life so restarts keep them.
struct Layout {
    dir: tempfile::TempDir,
    namespace: String,
    ports: BTreeMap<&'static str, u16>,
    installed: Option<Installed>,
    /// Flags added after the usual ones, per controller (e.g. lower limits); one spelled
    /// `--name=value` replaces a usual flag of the same name.
    extra: BTreeMap<Controller, Vec<String>>,
}

/// How `config/` runs the controllers: its arguments, and a kubeconfig per controller.
struct Installed {
    args: BTreeMap<Controller, Vec<String>>,
    kubeconfigs: BTreeMap<Controller, PathBuf>,
    shard: String,
}

impl Layout {
    fn flags(&self, c: Controller) -> Vec<String> {
        let mut flags = match &self.installed {
            Some(installed) => self.installed_flags(installed, c),
            None => self.scoped_flags(c),
        };
        let extra: Vec<String> = self.extra.get(&c).into_iter().flatten().cloned().collect();
        let name = |f: &str| f.split_once('=').map_or(f, |(n, _)| n).to_owned();
        let replaced: std::collections::BTreeSet<String> = extra.iter().map(|f| name(f)).collect();
        flags.retain(|f| !replaced.contains(&name(f)));
        flags.extend(extra);
        flags
    }

    /// `config/`'s arguments, with the addresses and directories of this machine in place of
    /// the Pod's, and the controllers limited to one shard (`plumb.dev/shard`) so they leave
    /// other tests' objects alone while watching the whole cluster, as installed ones do.
    fn installed_flags(&self, installed: &Installed, c: Controller) -> Vec<String> {
        let local: BTreeMap<String, String> = self
            .scoped_flags(c)
            .into_iter()
            .filter_map(|f| {
                let (name, value) = f.split_once('=')?;
                Some((name.to_owned(), value.to_owned()))
            })
            .filter(|(name, _)| name.ends_with("-addr") || name.ends_with("-path"))
            .collect();
        let mut flags: Vec<String> = installed.args[&c]
            .iter()
            .map(|arg| match arg.split_once('=') {
                Some((name, _)) if local.contains_key(name) => format!("{name}={}", local[name]),
                _ => arg.clone(),
            })
            .collect();
        flags.push(format!(
            "--watch-label-selector=plumb.dev/shard={}",
            installed.shard
        ));
        flags
    }

    fn scoped_flags(&self, c: Controller) -> Vec<String> {
        let port = |name: &str| self.ports[name];
        let storage = self.dir.path().join(c.name()).join("storage");
        // As config/ runs them: artifacts only for holders of the shared token, whose Secret
        // lives in the scenario's namespace (the controllers create it).
        let token = format!(
            "--artifact-token-secret={}/{ARTIFACT_TOKEN_SECRET}",
            self.namespace
        );
        let mut flags = match c {
            Controller::Source => vec![
                format!("--storage-path={}", storage.display()),
                format!("--storage-addr=127.0.0.1:{}", port("source-http")),
                format!("--storage-adv-addr=127.0.0.1:{}", port("source-http")),
                format!("--metrics-addr=127.0.0.1:{}", port("source-metrics")),
                format!("--webhook-addr=127.0.0.1:{}", port("source-webhook")),
                "--enable-leader-election=false".into(),
                format!("--watch-namespace={}", self.namespace),
            ],
            Controller::Render => vec![
                format!("--storage-path={}", storage.display()),
                format!("--storage-addr=127.0.0.1:{}", port("render-http")),
                format!("--storage-adv-addr=127.0.0.1:{}", port("render-http")),
                format!("--metrics-addr=127.0.0.1:{}", port("render-metrics")),
                format!("--watch-label-selector={SCOPE_LABEL}={}", self.namespace),
            ],
            Controller::Sync => vec![
                format!("--watch-namespace={}", self.namespace),
                format!("--metrics-addr=127.0.0.1:{}", port("sync-metrics")),
            ],
        };
        flags.push(token);
        flags
    }

    fn log(&self, c: Controller) -> PathBuf {
        self.dir.path().join(format!("{}.log", c.name()))
    }
}

/// How long stopping the controllers waits for one more of the namespace's plumb objects to be
/// finalized (all of them may take longer, as long as they keep going).
const TEARDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The three controllers, each its own process, watching only one namespace.
///
/// Dropping them tears down as a user would: the namespace's Syncs and GitRepositories are
/// deleted and waited for while the controllers still run (so their finalizers are released),
/// and only then are the processes killed. Otherwise the namespace would stay `Terminating` for
/// good, its GitRepository holding a finalizer no controller is left to remove.
pub struct Controllers {
    layout: Layout,
    bin_dir: PathBuf,
    kubeconfig: PathBuf,
    running: BTreeMap<Controller, Child>,
}

impl Controllers {
    /// Builds the controller binaries (debug) if needed and starts all three for `namespace`.
    pub fn start(namespace: &str) -> Result<Self> {
        Self::start_with(namespace, false)
    }

    /// Like [`Controllers::start`] with release builds, for benchmarks.
    pub fn start_release(namespace: &str) -> Result<Self> {
        Self::start_with(namespace, true)
    }

    /// Like [`Controllers::start_release`], with extra flags for some controllers (e.g. the
    /// worker counts a benchmark states).
    pub fn start_release_with_flags(
        namespace: &str,
        extra: BTreeMap<Controller, Vec<String>>,
    ) -> Result<Self> {
        Self::start_layout(namespace, true, None, extra, None)
    }

    /// Starts the three controllers as `config/` runs them (see [`crate::Install`]): with its
    /// arguments, each authenticated by its own kubeconfig, reconciling only the objects
    /// labelled `plumb.dev/shard=<shard>`, and with `POD_NAMESPACE` set to the install's
    /// namespace (where the leader Leases live).
    pub fn start_installed(
        install: &crate::Install,
        kubeconfigs: BTreeMap<Controller, PathBuf>,
        shard: &str,
    ) -> Result<Self> {
        let mut args = BTreeMap::new();
        for c in Controller::ALL {
            args.insert(c, install.args(c)?);
        }
        let installed = Installed {
            args,
            kubeconfigs,
            shard: shard.to_owned(),
        };
        Self::start_layout(shard, false, Some(installed), BTreeMap::new(), None)
    }

    fn start_with(namespace: &str, release: bool) -> Result<Self> {
        Self::start_layout(namespace, release, None, BTreeMap::new(), None)
    }

    /// Like [`Controllers::start`], against the cluster of another kubeconfig than the test
    /// cluster's (e.g. a [`crate::PrivateCluster`]).
    pub fn start_on(kubeconfig: &Path, namespace: &str) -> Result<Self> {
        Self::start_layout(
            namespace,
            false,
            None,
            BTreeMap::new(),
            Some(kubeconfig.to_path_buf()),
        )
    }

    /// Like [`Controllers::start_on`], with extra flags for some controllers (e.g. leader
    /// election on).
    pub fn start_on_with_flags(
        kubeconfig: &Path,
        namespace: &str,
        extra: BTreeMap<Controller, Vec<String>>,
    ) -> Result<Self> {
        Self::start_layout(
            namespace,
            false,
            None,
            extra,
            Some(kubeconfig.to_path_buf()),
        )
    }

    /// Like [`Controllers::start`], with extra flags for some controllers (e.g. lower limits).
    pub fn start_with_flags(
        namespace: &str,
        extra: BTreeMap<Controller, Vec<String>>,
    ) -> Result<Self> {
        Self::start_layout(namespace, false, None, extra, None)
    }

    fn start_layout(
        namespace: &str,
        release: bool,
        installed: Option<Installed>,
        extra: BTreeMap<Controller, Vec<String>>,
        kubeconfig: Option<PathBuf>,
    ) -> Result<Self> {
        let bin_dir = build_binaries(release)?;
        let mut ports = BTreeMap::new();
        for name in [
            "source-http",
            "source-metrics",
            "source-webhook",
            "render-http",
            "render-metrics",
            "sync-metrics",
        ] {
            ports.insert(name, free_port()?);
        }
        let layout = Layout {
            dir: tempfile::tempdir().map_err(io("creating the controllers' dir"))?,
            namespace: namespace.to_owned(),
            ports,
            installed,
            extra,
        };
        let mut controllers = Self {
            layout,
            bin_dir,
            kubeconfig: kubeconfig.unwrap_or_else(plumb_e2e_support::kubeconfig_path),
            running: BTreeMap::new(),
        };
        for c in Controller::ALL {
            controllers.spawn(c)?;
        }
        Ok(controllers)
    }

    /// The `/metrics` URL of a controller, e.g. `http://127.0.0.1:<port>/metrics`.
    pub fn metrics_url(&self, c: Controller) -> String {
        let port = self.layout.ports[format!("{}-metrics", c.name()).as_str()];
        format!("http://127.0.0.1:{port}/metrics")
    }

    /// The source controller's webhook base URL, e.g. `http://127.0.0.1:<port>`.
    pub fn webhook_base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.layout.ports["source-webhook"])
    }

    fn spawn(&mut self, c: Controller) -> Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.layout.log(c))
            .map_err(io("opening a controller log"))?;
        let err = log.try_clone().map_err(io("opening a controller log"))?;
        let kubeconfig = match &self.layout.installed {
            Some(installed) => &installed.kubeconfigs[&c],
            None => &self.kubeconfig,
        };
        let mut command = Command::new(self.bin_dir.join(c.binary()));
        if self.layout.installed.is_some() {
            command.env("POD_NAMESPACE", crate::install::NAMESPACE);
        }
        let child = command
            .args(self.layout.flags(c))
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("PLUMB_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(io(format!("starting {}", c.binary())))?;
        self.running.insert(c, child);
        Ok(())
    }

    /// The storage directory of a controller (artifacts, and the source's git cache).
    pub fn storage_dir(&self, c: Controller) -> PathBuf {
        self.layout.dir.path().join(c.name()).join("storage")
    }

    /// The base URL of a controller's `/metrics`, `/healthz` and `/readyz`, e.g.
    /// `http://127.0.0.1:<port>`.
    pub fn ops_base_url(&self, c: Controller) -> String {
        let port = match c {
            Controller::Source => "source-metrics",
            Controller::Render => "render-metrics",
            Controller::Sync => "sync-metrics",
        };
        format!("http://127.0.0.1:{}", self.layout.ports[port])
    }

    /// The source controller's artifact base URL, e.g. `http://127.0.0.1:<port>`.
    pub fn source_artifact_base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.layout.ports["source-http"])
    }

    /// The exit status of a controller that has ended (crashed or was killed from outside);
    /// None while it runs or when it was never started.
    pub fn exited(&mut self, c: Controller) -> Option<std::process::ExitStatus> {
        self.running.get_mut(&c)?.try_wait().ok().flatten()
    }

    /// The peak resident set of a running controller since start or the last
    /// [`Controllers::reset_peak_rss`], in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self, c: Controller) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(c)?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Resets a running controller's peak resident set to its current one (Linux 4.0+);
    /// false when the kernel refused.
    pub fn reset_peak_rss(&self, c: Controller) -> bool {
        self.pid(c)
            .is_some_and(|pid| std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok())
    }

    /// The process id of a running controller.
    pub fn pid(&self, c: Controller) -> Option<u32> {
        self.running.get(&c).map(Child::id)
    }

    /// Kills one controller (SIGKILL: no clean shutdown, as in a crash).
    pub fn kill(&mut self, c: Controller) {
        if let Some(mut child) = self.running.remove(&c) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills one controller and starts it again with the same flags and storage.
    pub fn restart(&mut self, c: Controller) -> Result<()> {
        self.kill(c);
        self.spawn(c)
    }

    /// The log of one controller so far, for failure messages.
    pub fn log(&self, c: Controller) -> String {
        std::fs::read_to_string(self.layout.log(c)).unwrap_or_default()
    }

    /// The last lines of every controller's log, to print when a scenario fails.
    pub fn logs_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for c in Controller::ALL {
            let log = self.log(c);
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- {} (last {lines} lines)\n", c.binary()));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until Sync `name` of `syncs`'s namespace is Ready with `commit` applied. The
    /// error names what was awaited and holds the Sync's status and the last lines of every
    /// controller's log, for the failure report.
    pub async fn wait_ready_at(
        &self,
        syncs: &kube::Api<plumb_api::Sync>,
        name: &str,
        commit: &str,
        within: std::time::Duration,
    ) -> std::result::Result<(), String> {
        let ready = plumb_e2e_support::wait_for(
            &format!("Sync {name} Ready at {commit}"),
            within,
            || async {
                let status = syncs.get(name).await?.status.unwrap_or_default();
                Ok::<_, kube::Error>(plumb_e2e_support::ready_at(&status, commit).then_some(()))
            },
        )
        .await;
        match ready {
            Ok(()) => Ok(()),
            Err(e) => {
                let status = syncs.get(name).await.ok().and_then(|s| s.status);
                Err(format!("{e}\n{status:#?}\n{}", self.logs_tail(60)))
            }
        }
    }

    /// Waits until Sync `name` of `syncs`'s namespace has condition `kind` (`Ready`,
    /// `Rendered`, ...) `False` with `reason`, and returns that condition. The error names what
    /// was awaited and holds the Sync's status and the last lines of every controller's log.
    pub async fn wait_failed(
        &self,
        syncs: &kube::Api<plumb_api::Sync>,
        name: &str,
        kind: &str,
        reason: &str,
        within: std::time::Duration,
    ) -> std::result::Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition, String>
    {
        use plumb_api::Conditions as _;
        let failed = plumb_e2e_support::wait_for(
            &format!("Sync {name} {kind}=False, {reason}"),
            within,
            || async {
                let status = syncs.get(name).await?.status.unwrap_or_default();
                let condition = status.conditions.get_condition(kind).cloned();
                Ok::<_, kube::Error>(
                    condition.filter(|c| c.status == "False" && c.reason == reason),
                )
            },
        )
        .await;
        match failed {
            Ok(condition) => Ok(condition),
            Err(e) => {
                let status = syncs.get(name).await.ok().and_then(|s| s.status);
                Err(format!("{e}\n{status:#?}\n{}", self.logs_tail(60)))
            }
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        if !self.running.is_empty()
            && let Err(e) = plumb_e2e_support::delete_plumb_objects_blocking(
                &self.kubeconfig,
                &self.layout.namespace,
                TEARDOWN_TIMEOUT,
            )
        {
            eprintln!(
                "plumb-e2e: tearing down namespace {}: {e}\n{}",
                self.layout.namespace,
                self.logs_tail(20)
            );
        }
        for c in Controller::ALL {
            self.kill(c);
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(plumb_e2e_support::free_port()?)
}

/// Variables `cargo test` sets for a test process that a build started from it must not see.
const INHERITED_FROM_CARGO_TEST: [&str; 7] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// `cargo` (the one running the tests) for a nested build of the workspace, without the
/// variables `cargo test` gives the test crate's own build (CARGO_MANIFEST_DIR, CARGO_PKG_*,
/// ...): build scripts that watch one of them (ring's watches CARGO_MANIFEST_DIR) would see
/// it changed from a plain build's and rebuild everything above them, minutes on each side.
pub fn cargo() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    without_cargo_test_env(&mut command);
    command
}

/// Keeps the variables `cargo test` sets for a test process (see [`cargo`]) from `command`, for
/// a command that runs a nested build, like the demo's scripts.
pub fn without_cargo_test_env(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if INHERITED_FROM_CARGO_TEST.contains(&name.as_ref())
            || name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
        {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// Environment variable naming a directory of controller binaries to run instead of building
/// them, e.g. to benchmark an earlier build against the current one.
pub const BIN_DIR_ENV: &str = "PLUMB_E2E_BIN_DIR";

/// Builds the three controller binaries once per process; returns the directory holding them
/// (the one `PLUMB_E2E_BIN_DIR` names, unbuilt, when set).
fn build_binaries(release: bool) -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
                return Ok(PathBuf::from(dir));
            }
            let profile = if release { "release" } else { "debug" };
            let root = plumb_e2e_support::repo_root();
            let out = cargo()
                .args([
                    "build",
                    if release {
                        "--release"
                    } else {
                        "--profile=dev"
                    },
                    "--quiet",
                    "--bins",
                    "-p",
                    "plumb-source",
                    "-p",
                    "plumb-render",
                    "-p",
                    "plumb-sync",
                ])
                .current_dir(&root)
                .output()
                .map_err(|e| format!("running cargo: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            Ok(target_dir(&root).join(profile))
        })
        .clone()
        .map_err(Error::Build)
}

/// The `plumb` command line (debug build), built once per process: the binary users run, with
/// `plumb-cli` (which it runs for every command but a kustomization build) beside it.
pub fn plumb_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = plumb_e2e_support::repo_root();
            let out = cargo()
                .args(["build", "--profile=dev", "--quiet", "--bins", "-p", "plumb"])
                .current_dir(&root)
                .output()
                .map_err(|e| format!("running cargo: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).into_owned());
            }
            Ok(target_dir(&root).join("debug").join("plumb"))
        })
        .clone()
        .map_err(Error::Build)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}
