//! Faults, not just bad input: controllers killed with SIGKILL mid-apply and mid-prune, the git
//! server down while a commit is pushed, the source controller (and its artifact server) down
//! across a commit, the render controller's artifact server gone while the sync controller
//! needs it, and the source's artifact storage full. Each fault must end converged to Git: the
//! objects of the last commit exist with its values, the inventory lists exactly them, nothing
//! else of the Sync's is left and nothing it should keep was pruned.
//!
//! The closing table (`cargo test -p plumb-e2e-scenarios --test faults -- --nocapture`) says
//! how long each took to converge after the fault ended.
//!
//! The API server is restarted in a cluster of the test's own ([`PrivateCluster`]): the shared
//! test cluster serves every test running at the same time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use plumb_api::{GitRepository, Sync};
use plumb_e2e_scenarios::{
    Controller, Controllers, GitFixture, PrivateCluster, SCOPE_LABEL, noise,
};
use plumb_e2e_support::{TestNamespace, wait_for};
use serde::de::DeserializeOwned;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(180);

/// Objects per commit: enough that applying and pruning them takes a while to interrupt.
const OBJECTS: usize = 200;

struct World {
    client: Client,
    namespace: String,
    /// The namespace on the shared test cluster, deleted at the end; None on a private cluster
    /// (it goes with the cluster).
    shared: Option<TestNamespace>,
    controllers: Controllers,
    git: GitFixture,
    rows: Vec<(String, String)>,
    generation: u32,
}

fn config_map(i: usize, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  value: \"{value}\"\n"
    )
}

impl World {
    /// The controllers and a Sync of [`OBJECTS`] ConfigMaps on the shared test cluster.
    async fn start() -> Self {
        let ns = TestNamespace::new("faults").await.unwrap();
        plumb_e2e_support::install_crds(ns.client()).await.unwrap();
        let controllers = Controllers::start(ns.name()).unwrap();
        let (client, namespace) = (ns.client().clone(), ns.name().to_owned());
        Self::with(client, namespace, Some(ns), controllers, OBJECTS).await
    }

    /// The controllers and a Sync of `count` ConfigMaps on `cluster`.
    async fn start_on(cluster: &PrivateCluster, count: usize) -> Self {
        let client = plumb_e2e_support::connect(&cluster.kubeconfig())
            .await
            .unwrap();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace = "faults";
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
            )
            .await
            .unwrap();
        plumb_e2e_support::install_crds(&client).await.unwrap();
        let controllers = Controllers::start_on(&cluster.kubeconfig(), namespace).unwrap();
        Self::with(client, namespace.to_owned(), None, controllers, count).await
    }

    async fn with(
        client: Client,
        namespace: String,
        shared: Option<TestNamespace>,
        controllers: Controllers,
        count: usize,
    ) -> Self {
        let git = GitFixture::new().await.unwrap();
        let w = Self {
            client,
            namespace,
            shared,
            controllers,
            git,
            rows: Vec::new(),
            generation: 0,
        };
        w.write_objects(0..count, "v0");
        w.git.commit("v0").unwrap();
        let repos: Api<GitRepository> = w.api();
        repos
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
                    "metadata": {"name": "app"},
                    "spec": {"url": w.git.url(), "ref": {"branch": "main"}, "interval": "2s", "timeout": "10s"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let syncs: Api<Sync> = w.api();
        syncs
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
                    "metadata": {"name": "app", "labels": {SCOPE_LABEL: &w.namespace}},
                    "spec": {"sourceRef": {"kind": "GitRepository", "name": "app"}, "path": "./app",
                        "interval": "30s", "retryInterval": "2s", "prune": true, "targetNamespace": &w.namespace}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        w.converged("initial apply", &(0..count).collect(), "v0")
            .await;
        w
    }

    /// An [`Api`] for a namespaced kind in the scenario's namespace.
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Replaces the work tree's `app/` with ConfigMaps `which`, valued `value`.
    fn write_objects(&self, which: impl IntoIterator<Item = usize>, value: &str) {
        let dir = self.git.work().join("app");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in which {
            std::fs::write(dir.join(format!("cm-{i}.yaml")), config_map(i, value)).unwrap();
        }
    }

    /// Commits `which` valued with a fresh value; returns the value.
    fn commit(&mut self, which: impl IntoIterator<Item = usize>) -> String {
        self.commit_id(which).0
    }

    /// Commits `which` valued with a fresh value; returns the value and the commit id.
    fn commit_id(&mut self, which: impl IntoIterator<Item = usize>) -> (String, String) {
        self.generation += 1;
        let value = format!("v{}", self.generation);
        self.write_objects(which, &value);
        let id = self.git.commit(&value).unwrap();
        (value, id)
    }

    async fn request_fetch(&self) {
        let repos: Api<GitRepository> = self.api();
        let patch = json!({"metadata": {"annotations": {plumb_api::REQUESTED_AT_ANNOTATION: self.generation.to_string()}}});
        let _ = repos
            .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }

    /// The Sync's ConfigMaps: name → value.
    async fn objects(&self) -> Vec<(String, String)> {
        let cms: Api<ConfigMap> = self.api();
        let lp = ListParams::default().labels(&format!("{}=app", plumb_api::SYNC_NAME_LABEL));
        cms.list(&lp)
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .map(|c| {
                        let v = c
                            .data
                            .and_then(|d| d.get("value").cloned())
                            .unwrap_or_default();
                        (c.metadata.name.unwrap_or_default(), v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The Sync's ConfigMaps: name → uid (an object deleted and created again has a new uid).
    async fn uids(&self) -> BTreeMap<String, String> {
        let cms: Api<ConfigMap> = self.api();
        let lp = ListParams::default().labels(&format!("{}=app", plumb_api::SYNC_NAME_LABEL));
        cms.list(&lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| {
                (
                    c.metadata.name.unwrap_or_default(),
                    c.metadata.uid.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Fails the test when a controller exited or logged a panic.
    fn assert_controllers_ran_throughout(&mut self) {
        for c in Controller::ALL {
            let exited = self.controllers.exited(c);
            assert!(
                exited.is_none(),
                "{c:?} exited ({exited:?}):\n{}",
                self.controllers.logs_tail(40)
            );
            assert!(
                !self.controllers.log(c).contains("panicked at"),
                "{c:?} panicked:\n{}",
                self.controllers.logs_tail(40)
            );
        }
    }

    /// Prints the closing table: each fault, what happened, how long convergence took.
    fn print_table(&self) {
        let mut table = String::from(
            "\n| fault | what happened, and time to converge after it ended |\n| --- | --- |\n",
        );
        for (fault, outcome) in &self.rows {
            let _ = writeln!(table, "| {fault} | {outcome} |");
        }
        println!("{table}");
    }

    /// Waits until the cluster matches Git: exactly `want` exist, all valued `value`, the
    /// inventory lists exactly them, and the Sync is Ready at the head commit.
    async fn converged(&self, what: &str, want: &BTreeSet<usize>, value: &str) -> Duration {
        let started = Instant::now();
        let names: BTreeSet<String> = want.iter().map(|i| format!("cm-{i}")).collect();
        let ids: BTreeSet<String> = want
            .iter()
            .map(|i| format!("{}_cm-{i}__ConfigMap", self.namespace))
            .collect();
        let syncs: Api<Sync> = self.api();
        let result = wait_for(&format!("{what}: converged"), WAIT, || {
            let syncs = syncs.clone();
            let (names, ids) = (&names, &ids);
            async move {
                let objects = self.objects().await;
                let have: BTreeSet<String> = objects.iter().map(|(n, _)| n.clone()).collect();
                let values_ok = objects.iter().all(|(_, v)| v == value);
                let sync = syncs.get("app").await?;
                let status = sync.status.unwrap_or_default();
                let inventory: BTreeSet<String> = status
                    .inventory
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| e.id)
                    .collect();
                let ready = status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                Ok::<_, kube::Error>(
                    (&have == names && values_ok && &inventory == ids && ready).then_some(()),
                )
            }
        })
        .await;
        if let Err(e) = result {
            let objects = self.objects().await;
            let wrong: Vec<_> = objects.iter().filter(|(_, v)| v != value).take(5).collect();
            panic!(
                "{e}\n{} objects (want {}), first with another value: {wrong:?}\nSync status: {:#?}\n{}",
                objects.len(),
                want.len(),
                syncs.get("app").await.ok().and_then(|s| s.status),
                self.controllers.logs_tail(40)
            );
        }
        started.elapsed()
    }

    fn record(&mut self, fault: &str, happened: String, took: Duration) {
        self.rows.push((
            fault.to_owned(),
            format!("{happened}; converged in {:.1}s", took.as_secs_f64()),
        ));
    }

    /// Waits until the first of `total` objects has `value` (the apply of a commit is under
    /// way, the moment to strike); says how far it got.
    async fn apply_under_way(&self, value: &str, total: usize) -> String {
        self.wait_moment(Duration::from_secs(60), || async move {
            let objects = self.objects().await;
            let done = objects.iter().filter(|(_, x)| x == value).count();
            (done > 0).then(|| format!("killed with {done}/{total} objects at the new value"))
        })
        .await
        .unwrap_or_else(|| "the apply was not seen starting; killed after".into())
    }

    /// Polls until `seen` says the fault moment has come (or `limit` passes); returns what it saw.
    async fn wait_moment<F, Fut>(&self, limit: Duration, mut seen: F) -> Option<String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<String>>,
    {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(s) = seen().await {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_end_converged_with_a_consistent_inventory() {
    let mut w = World::start().await;
    let all: BTreeSet<usize> = (0..OBJECTS).collect();

    // 1. The sync controller killed while it applies a new commit.
    let value = w.commit(0..OBJECTS);
    w.request_fetch().await;
    let seen = w.apply_under_way(&value, OBJECTS).await;
    w.controllers.kill(Controller::Sync);
    w.controllers.restart(Controller::Sync).unwrap();
    let took = w.converged("sync killed mid-apply", &all, &value).await;
    w.record("sync controller SIGKILL mid-apply, restarted", seen, took);

    // 2. The sync controller killed while it prunes half the objects.
    let keep: BTreeSet<usize> = (0..OBJECTS / 2).collect();
    let value = w.commit(keep.clone());
    w.request_fetch().await;
    let seen = w
        .wait_moment(Duration::from_secs(60), || {
            let w = &w;
            async move {
                let n = w.objects().await.len();
                (n < OBJECTS).then(|| format!("killed with {n} objects left of {OBJECTS}"))
            }
        })
        .await
        .unwrap_or_else(|| "the prune was not seen starting; killed after".into());
    w.controllers.kill(Controller::Sync);
    w.controllers.restart(Controller::Sync).unwrap();
    let took = w.converged("sync killed mid-prune", &keep, &value).await;
    w.record("sync controller SIGKILL mid-prune, restarted", seen, took);

    // 3. The render controller killed right after a commit is fetched.
    let value = w.commit(keep.clone());
    w.request_fetch().await;
    w.controllers.kill(Controller::Render);
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.controllers.restart(Controller::Render).unwrap();
    let took = w.converged("render killed", &keep, &value).await;
    w.record(
        "render controller SIGKILL after a commit, down 3s, restarted",
        "the Sync kept its applied objects while render was down".into(),
        took,
    );

    // 4. The source controller (and its artifact server) down across a commit.
    w.controllers.kill(Controller::Source);
    let value = w.commit(keep.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = w.objects().await.len();
    w.controllers.restart(Controller::Source).unwrap();
    let took = w.converged("source down", &keep, &value).await;
    w.record(
        "source controller and its artifact server SIGKILLed across a commit, down 5s",
        format!("{before} objects kept while it was down"),
        took,
    );

    // 5. The git server down while a commit is pushed (to its disk).
    w.git.stop_server();
    let value = w.commit(keep.clone());
    w.request_fetch().await;
    let repos: Api<GitRepository> = w.api();
    let failed = wait_for("GitRepository reports the git server down", WAIT, || {
        let repos = repos.clone();
        async move {
            let r = repos.get("app").await?;
            Ok::<_, kube::Error>(
                r.status
                    .unwrap_or_default()
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False")
                    .map(|c| c.reason),
            )
        }
    })
    .await
    .unwrap_or_else(|e| format!("not reported ({e})"));
    let kept = w.objects().await.len();
    assert_eq!(
        kept,
        keep.len(),
        "objects were pruned while the git server was down"
    );
    w.git.start_server().await.unwrap();
    w.request_fetch().await;
    let took = w.converged("git server back", &keep, &value).await;
    w.record(
        "git server stopped while a commit was pushed, then started",
        format!("GitRepository Ready=False {failed} meanwhile, {kept} objects kept"),
        took,
    );

    // 6. The render controller's artifact server gone while the sync controller needs it: a
    //    new render is published, render dies before the sync controller downloads it.
    let (value, commit) = w.commit_id(keep.clone());
    w.request_fetch().await;
    let syncs: Api<Sync> = w.api();
    let seen = w
        .wait_moment(Duration::from_secs(60), || {
            let syncs = syncs.clone();
            let commit = commit.clone();
            async move {
                let status = syncs.get("app").await.ok()?.status?;
                let applied = status
                    .last_applied_revision
                    .as_ref()
                    .is_some_and(|r| r.commit() == commit);
                let rendered = status.render?.source_revision?;
                (rendered.commit() == commit).then(|| {
                    if applied {
                        "render published and the Sync applied it before the kill".to_owned()
                    } else {
                        "render published, not yet applied: killed".to_owned()
                    }
                })
            }
        })
        .await
        .unwrap_or_else(|| "the render was not seen; killed after".into());
    w.controllers.kill(Controller::Render);
    w.controllers.restart(Controller::Sync).unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.controllers.restart(Controller::Render).unwrap();
    let took = w
        .converged("render artifact server back", &keep, &value)
        .await;
    w.record(
        "render controller's artifact server down 5s across a new render (sync restarted meanwhile)",
        seen,
        took,
    );

    // 7. The source controller's artifact storage full.
    storage_full(&mut w, &keep).await;

    w.print_table();
    for c in Controller::ALL {
        assert!(
            !w.controllers.log(c).contains("panicked at"),
            "{c:?} panicked:\n{}",
            w.controllers.logs_tail(40)
        );
    }
    let World { shared, .. } = w;
    shared.unwrap().delete().await.unwrap();
}

/// ConfigMaps of the API-server restart scenario: fewer than [`OBJECTS`], as its cluster is
/// started for it, yet enough that the restart can land while they are applied.
const RESTART_OBJECTS: usize = 100;

/// How long the API server stays down: long enough that every controller's requests and
/// watches fail and back off, shorter than a leader's renew deadline (these controllers run
/// without leader election, as one replica may).
const OUTAGE: Duration = Duration::from_secs(6);

/// The API server killed while the sync controller applies a commit, a second commit made
/// while it is down, then started again on the same etcd: the three controllers, never
/// restarted, must apply the newest commit without deleting anything, and keep working after
/// (a further commit, a drift correction). Runs on a private cluster: the shared one serves
/// every other test at the same time.
#[tokio::test(flavor = "multi_thread")]
async fn api_server_restart_mid_reconcile_is_recovered_from() {
    let cluster = PrivateCluster::start().unwrap();
    let mut w = World::start_on(&cluster, RESTART_OBJECTS).await;
    let all: BTreeSet<usize> = (0..RESTART_OBJECTS).collect();
    let uids = w.uids().await;

    let applying = w.commit(all.clone());
    w.request_fetch().await;
    let seen = w.apply_under_way(&applying, RESTART_OBJECTS).await;
    cluster.kill_apiserver().unwrap();
    let value = w.commit(all.clone());
    tokio::time::sleep(OUTAGE).await;
    if let Err(e) = cluster.start_missing() {
        panic!(
            "{e}\n--- kube-apiserver log\n{}",
            cluster.log_tail("kube-apiserver", 30)
        );
    }
    let took = w.converged("API server restarted", &all, &value).await;
    w.assert_controllers_ran_throughout();
    assert_eq!(
        w.uids().await,
        uids,
        "objects were deleted (pruned, or recreated) across the API server restart"
    );
    w.record(
        &format!(
            "kube-apiserver SIGKILLed mid-apply, down {}s with a commit pushed meanwhile, restarted",
            OUTAGE.as_secs()
        ),
        format!("{seen}; no controller restarted, no object deleted"),
        took,
    );

    // The controllers' watches and polls came back: a commit (found by the source's own poll)
    // and a deleted object (drift) are taken care of without anyone's help.
    let value = w.commit(all.clone());
    let took = w
        .converged("a commit after the restart", &all, &value)
        .await;
    w.record(
        "a commit after the API server restart (no reconcile requested)",
        "applied".into(),
        took,
    );
    let cms: Api<ConfigMap> = w.api();
    cms.delete("cm-0", &DeleteParams::default()).await.unwrap();
    let took = w.converged("drift after the restart", &all, &value).await;
    w.record(
        "a ConfigMap deleted after the API server restart",
        "recreated by drift correction".into(),
        took,
    );
    w.assert_controllers_ran_throughout();
    w.print_table();
    drop(w);
    drop(cluster);
}

/// Mounts a 3 MiB tmpfs over the source controller's storage, commits incompressible data
/// too large for it, checks the GitRepository says so and nothing is pruned, then gives the
/// storage back and checks convergence. Needs root (mount); skipped with a message otherwise.
async fn storage_full(w: &mut World, keep: &BTreeSet<usize>) {
    let storage = w.controllers.storage_dir(Controller::Source);
    w.controllers.kill(Controller::Source);
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&storage)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("storage-full fault skipped: mounting a tmpfs needs root (CI runs as root)");
        w.controllers.restart(Controller::Source).unwrap();
        return;
    }
    w.controllers.restart(Controller::Source).unwrap();
    let big = noise(2 << 20, 7);
    std::fs::write(w.git.work().join("noise.bin"), &big).unwrap();
    let value = w.commit(keep.clone());
    w.request_fetch().await;
    let repos: Api<GitRepository> = w.api();
    let failed = wait_for("GitRepository reports the storage full", WAIT, || {
        let repos = repos.clone();
        async move {
            let r = repos.get("app").await?;
            Ok::<_, kube::Error>(
                r.status
                    .unwrap_or_default()
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False")
                    .map(|c| (c.reason, c.message)),
            )
        }
    })
    .await;
    let kept = w.objects().await.len();
    w.controllers.kill(Controller::Source);
    let unmounted = std::process::Command::new("umount")
        .arg(&storage)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        unmounted,
        "could not unmount the tmpfs at {}",
        storage.display()
    );
    let (reason, message) = failed.unwrap();
    // The operator's disk, not the repository: the reason says so and names the path.
    assert_eq!(reason, "ArtifactStorageFailed", "{message}");
    assert!(
        message.contains(&storage.display().to_string()),
        "the message does not name the storage {}: {message}",
        storage.display()
    );
    let failed = format!("{reason}: {message}");
    assert_eq!(
        kept,
        keep.len(),
        "objects were pruned while the storage was full"
    );
    w.controllers.restart(Controller::Source).unwrap();
    w.request_fetch().await;
    let took = w.converged("storage back", keep, &value).await;
    let shown: String = failed.chars().take(100).collect();
    w.record(
        "source storage full (3 MiB tmpfs, 2 MiB of new data), then space again",
        format!("GitRepository Ready=False {shown}, {kept} objects kept"),
        took,
    );
}
