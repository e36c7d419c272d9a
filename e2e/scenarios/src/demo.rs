//! The demo `make demo` brings up (e2e/demo/up.sh), for tests that check what it shows or that
//! run its "Try next" steps: one already running is used and left running; one started here is
//! stopped again by [`Demo::stop_if_started`] (its processes only: the cluster stays).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Error, Result, io, without_cargo_test_env};

/// The namespace of the demo's GitRepository and Syncs.
pub const NAMESPACE: &str = "plumb-demo";

/// The demo's processes, each with a pid file and a log in [`dir`].
pub const PROCESSES: [&str; 4] = [
    "git-server",
    "source-controller",
    "render-controller",
    "sync-controller",
];

/// The demo's state directory: `<cluster dir>/demo`, next to the local cluster's kubeconfig.
pub fn dir() -> PathBuf {
    let kubeconfig = plumb_e2e_support::default_kubeconfig_path();
    kubeconfig
        .parent()
        .map(|cluster| cluster.join("demo"))
        .unwrap_or_else(|| PathBuf::from("demo"))
}

/// Whether every demo process recorded in `dir` is alive.
pub fn running(dir: &Path) -> bool {
    PROCESSES.iter().all(|name| {
        std::fs::read_to_string(dir.join(format!("{name}.pid")))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    })
}

/// The last `lines` lines of each demo process's log, for failure messages.
pub fn logs_tail(lines: usize) -> String {
    let dir = dir();
    let mut out = String::new();
    for name in PROCESSES {
        let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        out.push_str(&format!("--- {name}.log (last {lines} lines)\n"));
        for line in &all[all.len().saturating_sub(lines)..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The demo on the local cluster.
pub struct Demo {
    dir: PathBuf,
    started: bool,
}

impl Demo {
    /// Brings the demo up as `make demo` does (idempotent: a running demo is kept as it is),
    /// on the local cluster, which must be the one the tests use.
    pub fn up() -> Result<Self> {
        let kubeconfig = plumb_e2e_support::default_kubeconfig_path();
        let tests = plumb_e2e_support::kubeconfig_path();
        if std::fs::canonicalize(&tests).ok() != std::fs::canonicalize(&kubeconfig).ok() {
            return Err(Error::Demo(format!(
                "the demo runs on the local cluster ({}); PLUMB_TEST_KUBECONFIG names another ({})",
                kubeconfig.display(),
                tests.display()
            )));
        }
        let dir = dir();
        let started = !running(&dir);
        let demo = Self { dir, started };
        demo.up_again()?;
        Ok(demo)
    }

    /// Runs e2e/demo/up.sh again, e.g. to bring back an object a test deleted.
    pub fn up_again(&self) -> Result<()> {
        run_script("e2e/demo/up.sh", &[])
    }

    /// The demo's state directory (its Git work tree is `work/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the demo's processes if [`Demo::up`] started them; the cluster stays.
    pub fn stop_if_started(self) -> Result<()> {
        if self.started {
            run_script("e2e/demo/down.sh", &["--keep-cluster"])?;
        }
        Ok(())
    }
}

/// Runs a script of the repository, its output going to the test's output; the nested
/// `cargo build` of up.sh does not see the variables `cargo test` set.
fn run_script(script: &str, args: &[&str]) -> Result<()> {
    let root = plumb_e2e_support::repo_root();
    let mut command = Command::new("bash");
    without_cargo_test_env(&mut command);
    let status = command
        .arg(root.join(script))
        .args(args)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(std::io::stderr())
        .status()
        .map_err(io(format!("running {script}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Demo(format!("{script} {args:?} failed: {status}")))
    }
}
