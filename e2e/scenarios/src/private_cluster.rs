//! A test cluster of one test's own, for faults that must not touch the shared one (stopping
//! its API server, say): `e2e/cluster/up.sh` with a state directory and ports of its own, torn
//! down by `e2e/cluster/down.sh` when dropped, whether the test passed or not.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Error, Result, io};

/// The port variables of `e2e/cluster/lib.sh`; each gets a port of its own.
const PORT_VARIABLES: [&str; 6] = [
    "PLUMB_APISERVER_PORT",
    "PLUMB_ETCD_CLIENT_PORT",
    "PLUMB_ETCD_PEER_PORT",
    "PLUMB_CONTROLLER_MANAGER_PORT",
    "PLUMB_SCHEDULER_PORT",
    "PLUMB_KWOK_PORT",
];

/// How long stopping the API server waits for the process to be gone.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) started for one
/// test from the cached binaries; stopped and its data removed when dropped.
pub struct PrivateCluster {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl PrivateCluster {
    /// Starts a cluster with one fake Node in a new temporary directory, on free loopback
    /// ports, and waits until it is healthy (a few seconds once the binaries are built).
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("plumb-private-cluster-")
            .tempdir()
            .map_err(io("creating the private cluster's directory"))?;
        let mut env = vec![
            (
                plumb_e2e_support::CLUSTER_DIR_ENV.to_owned(),
                dir.path().display().to_string(),
            ),
            ("PLUMB_NODE_COUNT".to_owned(), "1".to_owned()),
        ];
        for name in PORT_VARIABLES {
            env.push((name.to_owned(), plumb_e2e_support::free_port()?.to_string()));
        }
        let cluster = Self { dir, env };
        // Dropping `cluster` on failure runs down.sh, which stops whatever did start.
        cluster.script("up.sh")?;
        Ok(cluster)
    }

    /// Its admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Kills its kube-apiserver (SIGKILL: no graceful shutdown, in-flight requests and watches
    /// break) and waits until the process is gone. etcd keeps the data.
    pub fn kill_apiserver(&self) -> Result<()> {
        let pid_file = self.dir.path().join("pids").join("kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(io(format!("reading {}", pid_file.display())))?;
        let pid = pid.trim();
        let status = Command::new("kill")
            .args(["-KILL", pid])
            .status()
            .map_err(io("running kill"))?;
        if !status.success() {
            return Err(Error::Config(format!(
                "kill -KILL {pid} (kube-apiserver) failed: {status}"
            )));
        }
        let proc = Path::new("/proc").join(pid);
        let until = Instant::now() + STOP_TIMEOUT;
        // up.sh started it detached (setsid), so it is not our child: once dead it is reaped by
        // init, and its /proc entry goes.
        while proc.exists() && !is_zombie(&proc) {
            if Instant::now() > until {
                return Err(Error::Config(format!(
                    "kube-apiserver (pid {pid}) still runs {STOP_TIMEOUT:?} after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the components that are not running (after [`PrivateCluster::kill_apiserver`]:
    /// the API server, on the same port and data) and waits until the cluster is healthy.
    pub fn start_missing(&self) -> Result<()> {
        self.script("up.sh")
    }

    /// The end of a component's log (e.g. `kube-apiserver`), for failure messages.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let log = std::fs::read_to_string(
            self.dir
                .path()
                .join("logs")
                .join(format!("{component}.log")),
        )
        .unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Runs one of `e2e/cluster/`'s scripts for this cluster; its output goes to stderr (the
    /// test's captured output).
    fn script(&self, name: &str) -> Result<()> {
        let script = plumb_e2e_support::repo_root()
            .join("e2e")
            .join("cluster")
            .join(name);
        let out = Command::new("bash")
            .arg(&script)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .output()
            .map_err(io(format!("running {}", script.display())))?;
        eprint!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "{} for the private cluster in {} exited with {}:\n{}",
                script.display(),
                self.dir.path().display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    }
}

fn is_zombie(proc: &Path) -> bool {
    std::fs::read_to_string(proc.join("stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name in parentheses, which may hold spaces.
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace().next().map(|s| s == "Z")
        })
        .unwrap_or(true)
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        if let Err(e) = self.script("down.sh") {
            eprintln!("plumb-e2e: stopping the private cluster: {e}");
        }
    }
}
