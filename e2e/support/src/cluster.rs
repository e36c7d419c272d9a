//! Finding, starting and connecting to the local test cluster.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::{Error, Result};

/// Environment variable naming the kubeconfig tests use instead of `.cluster/kubeconfig`.
pub const KUBECONFIG_ENV: &str = "PLUMB_TEST_KUBECONFIG";

/// Environment variable that moves the local test cluster's state (and
/// kubeconfig) out of `<repo root>/.cluster`; honoured by up.sh too.
pub const CLUSTER_DIR_ENV: &str = "PLUMB_CLUSTER_DIR";

/// Environment variable `make unit-test` sets: no test may use the cluster. A test that needs it
/// and runs anyway was not marked as a cluster test, and [`client`] refuses it with a message
/// saying how to mark it.
pub const NO_CLUSTER_ENV: &str = "PLUMB_NO_CLUSTER";

/// How long one reachability check of the API server may take. A cluster that is down refuses
/// the connection at once; one that is up but busy (a loaded CI machine) may take seconds, and a
/// probe that gives up too soon fails every test of the process.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The root of the plumb repository (found at compile time from this crate's location).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate lives at <root>/e2e/support.
    match manifest_dir.ancestors().nth(2) {
        Some(root) => root.to_path_buf(),
        None => manifest_dir.join("../.."),
    }
}

/// The kubeconfig of the local test cluster that `e2e/cluster/up.sh` writes:
/// `<repo root>/.cluster/kubeconfig`, or `$PLUMB_CLUSTER_DIR/kubeconfig` when
/// that variable moves the cluster elsewhere (as it does for up.sh).
pub fn default_kubeconfig_path() -> PathBuf {
    let cluster_dir = match std::env::var_os(CLUSTER_DIR_ENV) {
        // Relative to the repository root, as up.sh reads it.
        Some(dir) if !dir.is_empty() => repo_root().join(dir),
        _ => repo_root().join(".cluster"),
    };
    cluster_dir.join("kubeconfig")
}

/// The kubeconfig tests use: `$PLUMB_TEST_KUBECONFIG` when set, else the local
/// test cluster's ([`default_kubeconfig_path`]).
pub fn kubeconfig_path() -> PathBuf {
    match std::env::var_os(KUBECONFIG_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => default_kubeconfig_path(),
    }
}

/// The Kubernetes release the test cluster is built from (e.g. `v1.35.8`), as
/// pinned in `e2e/cluster/go.mod`.
pub fn pinned_kubernetes_version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        include_str!("../../cluster/go.mod")
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("k8s.io/kubernetes"), Some(version)) => Some(version.to_owned()),
                    _ => None,
                }
            })
            .next()
            .unwrap_or_default()
    });
    &VERSION
}

/// A client for the test cluster, starting the cluster first if it does not answer.
///
/// Uses [`kubeconfig_path`]. When that is the local test cluster and it is not
/// reachable, runs `e2e/cluster/up.sh` (once per process; the script's lock
/// makes concurrent test processes take turns), so `cargo test` works without a
/// prior `make cluster-up` — the first run on a fresh machine builds the
/// control plane, which takes several minutes.
///
/// Each call returns a new client: a `kube::Client` is bound to the Tokio
/// runtime that created it, and every `#[tokio::test]` has its own.
pub async fn client() -> Result<Client> {
    refuse_when_no_cluster()?;
    let path = kubeconfig_path();
    ensure_cluster(&path).await?;
    connect(&path).await
}

/// The client configuration of the test cluster ([`kubeconfig_path`]), e.g. for a controller
/// runtime that derives impersonating clients from it.
pub async fn kube_config() -> Result<Config> {
    refuse_when_no_cluster()?;
    read_config(&kubeconfig_path()).await
}

async fn read_config(path: &Path) -> Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
}

/// A client from the kubeconfig at `path`, without checking that the cluster answers.
pub async fn connect(path: &Path) -> Result<Client> {
    refuse_when_no_cluster()?;
    let config = read_config(path).await?;
    Client::try_from(config).map_err(|source| Error::Client {
        path: path.to_path_buf(),
        source,
    })
}

/// What a cluster test that is not marked as one is told under `make unit-test`.
const NOT_MARKED: &str = "this test needs the cluster, but PLUMB_NO_CLUSTER is set (make \
     unit-test runs only tests that need none): mark its test target as a cluster test in its \
     crate's Cargo.toml with [[test]] name = \"<file name>\", required-features = \
     [\"cluster-tests\"] (see e2e/cluster/README.md)";

/// Fails when [`NO_CLUSTER_ENV`] says this run must not use the cluster (`make unit-test`): the
/// calling test needs the cluster but its test target lacks `required-features =
/// ["cluster-tests"]`, so it would have started a cluster in the fast loop.
fn refuse_when_no_cluster() -> Result<()> {
    match std::env::var_os(NO_CLUSTER_ENV) {
        Some(value) if !value.is_empty() && value != "0" => {
            Err(Error::ClusterTestNotMarked(NOT_MARKED))
        }
        _ => Ok(()),
    }
}

/// Why the cluster could not be used; kept for the whole process so every
/// test fails fast with the same message.
#[derive(Clone)]
enum Failure {
    /// A cluster we do not manage does not answer.
    Unreachable(String),
    /// up.sh failed, or the cluster it started does not answer.
    Start(String),
}

/// Makes sure the cluster of `path` answers; the outcome is remembered for the process.
async fn ensure_cluster(path: &Path) -> Result<()> {
    static CHECKED: OnceCell<std::result::Result<(), Failure>> = OnceCell::const_new();
    let outcome = CHECKED
        .get_or_init(|| async {
            let Err(reason) = probe(path).await else {
                return Ok(());
            };
            if !is_local_cluster(path) {
                return Err(Failure::Unreachable(reason));
            }
            tracing::info!(%reason, "test cluster not reachable; running e2e/cluster/up.sh");
            start_cluster().await.map_err(Failure::Start)?;
            probe(path).await.map_err(|reason| {
                Failure::Start(format!(
                    "up.sh succeeded but the API server does not answer: {reason}"
                ))
            })
        })
        .await;
    match outcome.clone() {
        Ok(()) => Ok(()),
        Err(Failure::Unreachable(reason)) => Err(Error::Unreachable {
            path: path.to_path_buf(),
            reason,
        }),
        Err(Failure::Start(message)) => Err(Error::ClusterStart(message)),
    }
}

/// Whether `path` is the kubeconfig of the local cluster that up.sh manages.
fn is_local_cluster(path: &Path) -> bool {
    let local = default_kubeconfig_path();
    if path == local {
        return true;
    }
    // The file may not exist yet; compare the directories it would live in.
    let canonical = |p: &Path| {
        let dir = p.parent().and_then(|d| std::fs::canonicalize(d).ok());
        dir.zip(p.file_name().map(|f| f.to_os_string()))
    };
    canonical(path).is_some_and(|c| Some(c) == canonical(&local))
}

/// Succeeds when the API server of `path` answers a version request.
async fn probe(path: &Path) -> std::result::Result<(), String> {
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let client = connect(path).await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// Runs `e2e/cluster/up.sh`, its output going straight to the terminal (a cold
/// build takes minutes and should show progress).
async fn start_cluster() -> std::result::Result<(), String> {
    let script = repo_root().join("e2e").join("cluster").join("up.sh");
    eprintln!(
        "plumb-e2e-support: the test cluster is not running; starting it with {}",
        script.display()
    );
    let status = tokio::process::Command::new("bash")
        .arg(&script)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(std::io::stderr())
        .status()
        .await
        .map_err(|e| format!("could not run {}: {e}", script.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} exited with {status}", script.display()))
    }
}
