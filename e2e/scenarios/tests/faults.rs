//! Faults, not just bad input: controllers killed with SIGKILL mid-apply and mid-prune, the git
//! server down while a commit is pushed, the source controller (and its artifact server) down
//! across a commit, the render controller's artifact server gone while the sync controller
//! needs it, and the source's artifact storage full. Each fault must end converged to Git: the
//! objects of the last commit exist with its values, the inventory lists exactly them, nothing
//! else of the Sync's is left and nothing it should keep was pruned.
//!
//! Nothing is applied twice into a half state: a [`Watchdog`] lists the Sync's objects over
//! and over while each fault lasts and checks every list against what that moment allows. Each
//! object holds exactly one commit's content (its value, and a key named for that value: an
//! object half of one commit and half of another, or keeping a field of an older commit, is
//! caught); while a new commit cannot be rendered or fetched, no object shows it; no object
//! that Git keeps is ever missing. Once converged, the Sync has applied the head commit, every
//! object is owned by plumb-sync's apply alone, and the objects that stayed kept their uids.
//!
//! The closing table (`cargo test -p plumb-e2e-scenarios --test faults -- --nocapture`) says
//! how long each took to converge after the fault ended.
//!
//! The API server is restarted in a cluster of the test's own ([`PrivateCluster`]): the shared
//! test cluster serves every test running at the same time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use plumb_api::{GitRepository, Sync};
use plumb_e2e_scenarios::{
    Controller, Controllers, GitFixture, PrivateCluster, SCOPE_LABEL, noise,
};
use plumb_e2e_support::{TestNamespace, ready_at, wait_for};
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
    watchdog: Watchdog,
}

/// ConfigMap `cm-{i}` of the commit valued `value`: the value, and a key named for it, so an
/// object holding parts of two commits shows it (see [`one_commit`]).
fn config_map(i: usize, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  value: \"{value}\"\n  commit-{value}: \"{i}\"\n"
    )
}

/// The value of a ConfigMap holding exactly one commit's content, or why it does not.
fn one_commit(cm: &ConfigMap) -> Result<String, String> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let data = cm.data.clone().unwrap_or_default();
    let value = data
        .get("value")
        .ok_or_else(|| format!("{name} has no value: {data:?}"))?;
    if data.len() != 2 || !data.contains_key(&format!("commit-{value}")) {
        let keys: Vec<&String> = data.keys().collect();
        return Err(format!(
            "{name} mixes commits: value {value:?} with keys {keys:?}"
        ));
    }
    Ok(value.clone())
}

/// What the Sync's objects may look like while a fault lasts.
#[derive(Clone, Debug)]
struct Phase {
    /// What is going on, for the report.
    name: String,
    /// The values an object may hold.
    allowed: BTreeSet<String>,
    /// The objects that must exist in every list.
    required: BTreeSet<String>,
}

impl Phase {
    /// Nothing may move: a new commit cannot be fetched or rendered, so every object stays at
    /// `value` and none of `required` goes.
    fn hold(name: &str, value: &str, required: &BTreeSet<usize>) -> Self {
        Self::moving(name, &[value], required)
    }

    /// Objects move between the commits valued `values` (an apply under way); none of
    /// `required` goes missing.
    fn moving(name: &str, values: &[&str], required: &BTreeSet<usize>) -> Self {
        Self {
            name: name.to_owned(),
            allowed: values.iter().map(|v| (*v).to_owned()).collect(),
            required: required.iter().map(|i| format!("cm-{i}")).collect(),
        }
    }

    /// What is wrong with one list of the Sync's ConfigMaps.
    fn check(&self, items: &[ConfigMap]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut present = BTreeSet::new();
        for cm in items {
            let name = cm.metadata.name.clone().unwrap_or_default();
            match one_commit(cm) {
                Ok(v) if !self.allowed.contains(&v) => {
                    problems.push(format!("{name} at {v}, allowed {:?}", self.allowed));
                }
                Ok(_) => {}
                Err(e) => problems.push(e),
            }
            present.insert(name);
        }
        let missing: Vec<&String> = self.required.difference(&present).take(5).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} objects Git keeps are missing, e.g. {missing:?}",
                self.required.difference(&present).count()
            ));
        }
        problems
    }
}

/// What the [`Watchdog`] saw.
#[derive(Default)]
struct Seen {
    /// Bumped at each phase change: a list begun under an earlier phase is not judged.
    epoch: u64,
    phase: Option<Phase>,
    /// Lists checked against the current phase.
    checked: u64,
    violations: Vec<String>,
}

/// Lists the Sync's ConfigMaps over and over in the background and checks every list against
/// the current [`Phase`]: a half state shows in the lists taken while it lasts.
struct Watchdog {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    fn start(api: Api<ConfigMap>) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let lp =
                    ListParams::default().labels(&format!("{}=app", plumb_api::SYNC_NAME_LABEL));
                loop {
                    let (epoch, phase) = {
                        let s = seen.lock().unwrap();
                        (s.epoch, s.phase.clone())
                    };
                    // A list fails while the API server is down: nothing to judge then.
                    if let Some(phase) = phase
                        && let Ok(list) = api.list(&lp).await
                    {
                        let problems = phase.check(&list.items);
                        let mut s = seen.lock().unwrap();
                        if s.epoch == epoch {
                            s.checked += 1;
                            for p in problems {
                                if s.violations.len() < 20 {
                                    s.violations.push(format!("{}: {p}", phase.name));
                                }
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Self { seen, task }
    }

    /// From now on, lists are judged against `phase`.
    fn enter(&self, phase: Phase) {
        let mut s = self.seen.lock().unwrap();
        s.epoch += 1;
        s.phase = Some(phase);
        s.checked = 0;
    }

    /// Lists judged against the current phase so far.
    fn checked(&self) -> u64 {
        self.seen.lock().unwrap().checked
    }

    /// Waits until a list taken in the current phase was judged, so the phase was looked at
    /// and not only declared.
    async fn looked(&self) {
        wait_for(
            "the watchdog judged a list of the current phase",
            WAIT,
            || async { Ok::<_, String>((self.checked() > 0).then_some(())) },
        )
        .await
        .unwrap();
    }

    /// What broke a phase's rules so far (at most 20).
    fn violations(&self) -> Vec<String> {
        self.seen.lock().unwrap().violations.clone()
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.task.abort();
    }
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

    /// The controllers, with `flags` added, and a Sync of `count` ConfigMaps on `cluster`.
    async fn start_on(
        cluster: &PrivateCluster,
        count: usize,
        flags: BTreeMap<Controller, Vec<String>>,
    ) -> Self {
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
        let controllers =
            Controllers::start_on_with_flags(&cluster.kubeconfig(), namespace, flags).unwrap();
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
        let watchdog = Watchdog::start(Api::namespaced(client.clone(), &namespace));
        let w = Self {
            client,
            namespace,
            shared,
            controllers,
            git,
            rows: Vec::new(),
            generation: 0,
            watchdog,
        };
        w.write_objects(0..count, "v0");
        let commit = w.git.commit("v0").unwrap();
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
        w.converged("initial apply", &(0..count).collect(), "v0", &commit)
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
    /// inventory lists exactly them, and the Sync is Ready having applied `commit`.
    async fn converged(
        &self,
        what: &str,
        want: &BTreeSet<usize>,
        value: &str,
        commit: &str,
    ) -> Duration {
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
                let ready = ready_at(&status, commit);
                let inventory: BTreeSet<String> = status
                    .inventory
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| e.id)
                    .collect();
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

    /// After [`World::converged`]: every object holds one commit's content and is owned by
    /// plumb-sync's apply alone, the objects of `want` that existed `before` (name → uid) are
    /// the same objects, and the watchdog saw no half state while the fault lasted. Says how
    /// many lists the watchdog judged.
    async fn settled(
        &self,
        what: &str,
        want: &BTreeSet<usize>,
        before: &BTreeMap<String, String>,
    ) -> String {
        let judged = self.watchdog.checked();
        let violations = self.watchdog.violations();
        assert!(
            violations.is_empty(),
            "{what}: the watchdog saw a half state:\n{}",
            violations.join("\n")
        );
        let cms: Api<ConfigMap> = self.api();
        let lp = ListParams::default().labels(&format!("{}=app", plumb_api::SYNC_NAME_LABEL));
        for cm in cms.list(&lp).await.unwrap() {
            let name = cm.metadata.name.clone().unwrap_or_default();
            if let Err(e) = one_commit(&cm) {
                panic!("{what}: {e}");
            }
            let managers: BTreeSet<(String, String)> = cm
                .metadata
                .managed_fields
                .iter()
                .flatten()
                .map(|m| {
                    (
                        m.manager.clone().unwrap_or_default(),
                        m.operation.clone().unwrap_or_default(),
                    )
                })
                .collect();
            let sole = BTreeSet::from([("plumb-sync".to_owned(), "Apply".to_owned())]);
            assert_eq!(managers, sole, "{what}: {name} has other field managers");
        }
        let uids = self.uids().await;
        for i in want {
            let name = format!("cm-{i}");
            if let Some(old) = before.get(&name) {
                assert_eq!(
                    uids.get(&name),
                    Some(old),
                    "{what}: {name} was deleted and created again (or lost)"
                );
            }
        }
        format!("watchdog judged {judged} lists, no half state, uids kept")
    }

    /// Commits `want` anew, with no reconcile asked for (the source's own poll finds it), and
    /// records how long it took to converge from `value`; the objects of `before` (name → uid)
    /// must stay. Returns the new value and commit.
    async fn polled_commit(
        &mut self,
        what: &str,
        value: &str,
        want: &BTreeSet<usize>,
        before: &BTreeMap<String, String>,
    ) -> (String, String) {
        let (next, commit) = self.commit_id(want.clone());
        self.watchdog
            .enter(Phase::moving(what, &[value, &next], want));
        let took = self.converged(what, want, &next, &commit).await;
        let checks = self.settled(what, want, before).await;
        self.record(what, format!("applied; {checks}"), took);
        (next, commit)
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
    let mut value = "v0".to_owned();

    // 1. The sync controller killed while it applies a new commit.
    let before = w.uids().await;
    let (next, commit) = w.commit_id(0..OBJECTS);
    w.watchdog.enter(Phase::moving(
        "sync killed mid-apply",
        &[&value, &next],
        &all,
    ));
    w.request_fetch().await;
    let seen = w.apply_under_way(&next, OBJECTS).await;
    w.controllers.kill(Controller::Sync);
    w.controllers.restart(Controller::Sync).unwrap();
    let took = w
        .converged("sync killed mid-apply", &all, &next, &commit)
        .await;
    let checks = w.settled("sync killed mid-apply", &all, &before).await;
    w.record(
        "sync controller SIGKILL mid-apply, restarted",
        format!("{seen}; {checks}"),
        took,
    );
    value = next;

    // 2. The sync controller killed while it prunes half the objects.
    let keep: BTreeSet<usize> = (0..OBJECTS / 2).collect();
    let before = w.uids().await;
    let (next, commit) = w.commit_id(keep.clone());
    w.watchdog.enter(Phase::moving(
        "sync killed mid-prune",
        &[&value, &next],
        &keep,
    ));
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
    let took = w
        .converged("sync killed mid-prune", &keep, &next, &commit)
        .await;
    let checks = w.settled("sync killed mid-prune", &keep, &before).await;
    w.record(
        "sync controller SIGKILL mid-prune, restarted",
        format!("{seen}; {checks}"),
        took,
    );
    value = next;

    // 3. The render controller killed right after a commit is fetched.
    let before = w.uids().await;
    let (next, commit) = w.commit_id(keep.clone());
    w.watchdog
        .enter(Phase::moving("render killed", &[&value, &next], &keep));
    w.request_fetch().await;
    w.controllers.kill(Controller::Render);
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.controllers.restart(Controller::Render).unwrap();
    let took = w.converged("render killed", &keep, &next, &commit).await;
    let checks = w.settled("render killed", &keep, &before).await;
    w.record(
        "render controller SIGKILL after a commit, down 3s, restarted",
        format!("the Sync kept its applied objects while render was down; {checks}"),
        took,
    );
    value = next;

    // 4. The source controller (and its artifact server) down across a commit: until it is
    //    back, nothing of the new commit may show.
    let before = w.uids().await;
    w.watchdog
        .enter(Phase::hold("source down, commit unfetched", &value, &keep));
    w.controllers.kill(Controller::Source);
    let (next, commit) = w.commit_id(keep.clone());
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.watchdog.looked().await;
    let held = w.watchdog.checked();
    let kept = w.objects().await.len();
    w.watchdog
        .enter(Phase::moving("source back", &[&value, &next], &keep));
    w.controllers.restart(Controller::Source).unwrap();
    let took = w.converged("source down", &keep, &next, &commit).await;
    let checks = w.settled("source down", &keep, &before).await;
    w.record(
        "source controller and its artifact server SIGKILLed across a commit, down 5s",
        format!("{kept} objects kept at the old commit while it was down ({held} lists); {checks}"),
        took,
    );
    value = next;

    // 5. The git server down while a commit is pushed (to its disk).
    let before = w.uids().await;
    w.watchdog
        .enter(Phase::hold("git server down", &value, &keep));
    w.git.stop_server();
    let (next, commit) = w.commit_id(keep.clone());
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
    w.watchdog.looked().await;
    let held = w.watchdog.checked();
    let kept = w.objects().await.len();
    assert_eq!(
        kept,
        keep.len(),
        "objects were pruned while the git server was down"
    );
    w.watchdog
        .enter(Phase::moving("git server back", &[&value, &next], &keep));
    w.git.start_server().await.unwrap();
    w.request_fetch().await;
    let took = w.converged("git server back", &keep, &next, &commit).await;
    let checks = w.settled("git server back", &keep, &before).await;
    w.record(
        "git server stopped while a commit was pushed, then started",
        format!(
            "GitRepository Ready=False {failed} meanwhile, {kept} objects kept at the old commit ({held} lists); {checks}"
        ),
        took,
    );
    value = next;

    // 6. The render controller's artifact server gone while the sync controller needs it: a
    //    new render is published, render dies before the sync controller downloads it.
    let before = w.uids().await;
    let (next, commit) = w.commit_id(keep.clone());
    w.watchdog.enter(Phase::moving(
        "render artifact server down",
        &[&value, &next],
        &keep,
    ));
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
        .converged("render artifact server back", &keep, &next, &commit)
        .await;
    let checks = w
        .settled("render artifact server back", &keep, &before)
        .await;
    w.record(
        "render controller's artifact server down 5s across a new render (sync restarted meanwhile)",
        format!("{seen}; {checks}"),
        took,
    );
    value = next;

    // 7. A commit that cannot be rendered (one file is not YAML): while the render fails,
    //    nothing of that commit is applied and nothing is pruned; a fixed commit follows.
    let before = w.uids().await;
    w.watchdog
        .enter(Phase::hold("a commit that does not render", &value, &keep));
    w.generation += 1;
    let unrendered = format!("v{}", w.generation);
    w.write_objects(keep.iter().copied(), &unrendered);
    std::fs::write(w.git.work().join("app/broken.yaml"), "kind: [unclosed\n").unwrap();
    w.git.commit(&unrendered).unwrap();
    w.request_fetch().await;
    let syncs: Api<Sync> = w.api();
    let failed = wait_for("the Sync reports the render failed", WAIT, || {
        let syncs = syncs.clone();
        async move {
            let status = syncs.get("app").await?.status.unwrap_or_default();
            Ok::<_, kube::Error>(
                status
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Rendered" && c.status == "False")
                    .map(|c| c.reason),
            )
        }
    })
    .await;
    let failed = match failed {
        Ok(reason) => reason,
        Err(e) => panic!("{e}\n{}", w.controllers.logs_tail(20)),
    };
    w.watchdog.looked().await;
    let held = w.watchdog.checked();
    let kept = w.objects().await.len();
    // The fixed commit replaces app/ whole, broken.yaml included.
    let (next, commit) = w.commit_id(keep.clone());
    w.watchdog
        .enter(Phase::moving("a fixed commit", &[&value, &next], &keep));
    w.request_fetch().await;
    let took = w.converged("a fixed commit", &keep, &next, &commit).await;
    let checks = w.settled("a fixed commit", &keep, &before).await;
    w.record(
        "a commit that does not render (a file that is not YAML), then a fixed one",
        format!(
            "Rendered=False {failed}; {kept} objects kept at the commit before, none of the unrendered one ({held} lists); {checks}"
        ),
        took,
    );
    value = next;

    // 8. The source controller's artifact storage full.
    storage_full(&mut w, &keep, &value).await;

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
    let mut w = World::start_on(&cluster, RESTART_OBJECTS, BTreeMap::new()).await;
    let all: BTreeSet<usize> = (0..RESTART_OBJECTS).collect();
    let uids = w.uids().await;

    let (applying, _) = w.commit_id(all.clone());
    w.watchdog.enter(Phase::moving(
        "API server restarted mid-apply",
        &["v0", &applying, &format!("v{}", w.generation + 1)],
        &all,
    ));
    w.request_fetch().await;
    let seen = w.apply_under_way(&applying, RESTART_OBJECTS).await;
    cluster.kill_apiserver().unwrap();
    let (value, commit) = w.commit_id(all.clone());
    tokio::time::sleep(OUTAGE).await;
    if let Err(e) = cluster.start_missing() {
        panic!(
            "{e}\n--- kube-apiserver log\n{}",
            cluster.log_tail("kube-apiserver", 30)
        );
    }
    let took = w
        .converged("API server restarted", &all, &value, &commit)
        .await;
    w.assert_controllers_ran_throughout();
    let checks = w.settled("API server restarted", &all, &uids).await;
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
        format!("{seen}; no controller restarted, no object deleted; {checks}"),
        took,
    );

    // The controllers' watches and polls came back: a commit (found by the source's own poll)
    // and a deleted object (drift) are taken care of without anyone's help.
    let (next, commit) = w
        .polled_commit(
            "a commit after the API server restart (no reconcile requested)",
            &value,
            &all,
            &uids,
        )
        .await;
    let others: BTreeSet<usize> = (1..RESTART_OBJECTS).collect();
    w.watchdog
        .enter(Phase::hold("drift after the restart", &next, &others));
    let cms: Api<ConfigMap> = w.api();
    cms.delete("cm-0", &DeleteParams::default()).await.unwrap();
    let took = w
        .converged("drift after the restart", &all, &next, &commit)
        .await;
    let mut kept = uids.clone();
    kept.remove("cm-0");
    let checks = w.settled("drift after the restart", &all, &kept).await;
    w.record(
        "a ConfigMap deleted after the API server restart",
        format!("recreated by drift correction; {checks}"),
        took,
    );
    w.assert_controllers_ran_throughout();
    w.print_table();
    drop(w);
    drop(cluster);
}

/// The controllers' leader election metrics, scraped from `/metrics`: whether it leads now,
/// and how many terms it lost.
async fn leadership(w: &World, c: Controller) -> Option<(bool, u64)> {
    let lease = format!(
        "plumb-{}-controller",
        c.deployment().trim_end_matches("-controller")
    );
    let text = reqwest::get(format!("{}/metrics", w.controllers.ops_base_url(c)))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let value = |metric: &str| {
        let prefix = format!("{metric}{{controller=\"{lease}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        value("plumb_leader") == Some(1),
        value("plumb_leader_terms_lost_total").unwrap_or(0),
    ))
}

/// Leader election on, and an API-server outage longer than the renew deadline (10s): each
/// controller's term ends (it stops reconciling; the process goes on, standing by), a commit
/// pushed meanwhile is applied once the API server is back and each controller holds its Lease
/// again, with nothing deleted; no controller exits, none lost more than that one term. The
/// outage ends when every controller has reported its lost term (`/metrics`), not after a set
/// time.
#[tokio::test(flavor = "multi_thread")]
async fn leader_election_survives_an_api_server_outage_longer_than_the_renew_deadline() {
    let cluster = PrivateCluster::start().unwrap();
    let leader_flags = vec![
        "--enable-leader-election=true".to_owned(),
        "--leader-election-namespace=faults".to_owned(),
    ];
    let flags = Controller::ALL
        .into_iter()
        .map(|c| (c, leader_flags.clone()))
        .collect();
    let mut w = World::start_on(&cluster, RESTART_OBJECTS, flags).await;
    let all: BTreeSet<usize> = (0..RESTART_OBJECTS).collect();
    let uids = w.uids().await;
    for c in Controller::ALL {
        assert_eq!(
            leadership(&w, c).await,
            Some((true, 0)),
            "{c:?} leads before the outage"
        );
    }

    let old = format!("v{}", w.generation);
    cluster.kill_apiserver().unwrap();
    let (value, commit) = w.commit_id(all.clone());
    w.watchdog.enter(Phase::moving(
        "API server down past the renew deadline",
        &[&old, &value],
        &all,
    ));
    let started = Instant::now();
    let lost = wait_for("every controller lost its term", WAIT, || {
        let w = &w;
        async move {
            let mut all_lost = true;
            for c in Controller::ALL {
                let l = leadership(w, c).await;
                all_lost &= matches!(l, Some((false, n)) if n >= 1);
            }
            Ok::<_, String>(all_lost.then_some(()))
        }
    })
    .await;
    let outage = started.elapsed();
    w.assert_controllers_ran_throughout();
    if let Err(e) = lost {
        panic!("{e}\n{}", w.controllers.logs_tail(20));
    }
    if let Err(e) = cluster.start_missing() {
        panic!(
            "{e}\n--- kube-apiserver log\n{}",
            cluster.log_tail("kube-apiserver", 30)
        );
    }
    let took = w
        .converged("API server back, leaders again", &all, &value, &commit)
        .await;
    w.assert_controllers_ran_throughout();
    let checks = w
        .settled("API server back, leaders again", &all, &uids)
        .await;
    let mut terms = Vec::new();
    for c in Controller::ALL {
        // The commit was fetched, rendered and applied: each controller led again.
        let l = leadership(&w, c).await;
        assert_eq!(
            l,
            Some((true, 1)),
            "{c:?} leads again, having lost one term"
        );
        terms.push(format!("{c:?}"));
    }
    w.record(
        "kube-apiserver SIGKILLed with leader election on, down until every controller lost its Lease (renew deadline 10s), a commit pushed meanwhile, restarted",
        format!(
            "down {:.1}s; each of {} lost one term and stood by without exiting, then led again; {checks}",
            outage.as_secs_f64(),
            terms.join(", ")
        ),
        took,
    );

    // The new terms keep working: a commit found by the source's own poll.
    w.polled_commit(
        "a commit after the leaders' new terms (no reconcile requested)",
        &value,
        &all,
        &uids,
    )
    .await;
    w.assert_controllers_ran_throughout();
    w.print_table();
    drop(w);
    drop(cluster);
}

/// A tmpfs mounted over a directory; unmounted when dropped, so a failing test leaves no
/// mount behind.
struct TmpfsMount {
    at: std::path::PathBuf,
    mounted: bool,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (as mount(8) writes it: `3m`) over `at`; Err with what
    /// mount(8) said when it cannot (not root, or a container without CAP_SYS_ADMIN).
    fn mount(at: &std::path::Path, size: &str) -> Result<Self, String> {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs over {} exited with {}: {}",
                at.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            at: at.to_path_buf(),
            mounted: true,
        })
    }

    /// Unmounts it; every process using it must be gone.
    fn unmount(&mut self) -> Result<(), String> {
        let out = std::process::Command::new("umount")
            .arg(&self.at)
            .output()
            .map_err(|e| format!("running umount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "umount {} exited with {}: {}",
                self.at.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        self.mounted = false;
        Ok(())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        if self.mounted {
            // Detached at once, freed once no process uses it.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.at)
                .status();
        }
    }
}

/// Mounts a 3 MiB tmpfs over the source controller's storage, commits incompressible data
/// too large for it, checks the GitRepository says so and that nothing of the new commit is
/// applied and nothing pruned, then gives the storage back and checks convergence. Needs the
/// right to mount (root here and in CI); skipped, saying why, otherwise.
async fn storage_full(w: &mut World, keep: &BTreeSet<usize>, value: &str) {
    let storage = w.controllers.storage_dir(Controller::Source);
    let before = w.uids().await;
    w.watchdog
        .enter(Phase::hold("source storage full", value, keep));
    w.controllers.kill(Controller::Source);
    let mut mount = match TmpfsMount::mount(&storage, "3m") {
        Ok(m) => m,
        Err(e) => {
            println!("storage-full fault skipped: {e}");
            w.record(
                "source storage full",
                format!("SKIPPED: {e}"),
                Duration::ZERO,
            );
            w.controllers.restart(Controller::Source).unwrap();
            return;
        }
    };
    w.controllers.restart(Controller::Source).unwrap();
    let big = noise(2 << 20, 7);
    std::fs::write(w.git.work().join("noise.bin"), &big).unwrap();
    let (next, commit) = w.commit_id(keep.clone());
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
    w.watchdog.looked().await;
    let held = w.watchdog.checked();
    let kept = w.objects().await.len();
    w.controllers.kill(Controller::Source);
    mount.unmount().unwrap();
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
    w.watchdog
        .enter(Phase::moving("source storage back", &[value, &next], keep));
    w.controllers.restart(Controller::Source).unwrap();
    w.request_fetch().await;
    let took = w.converged("storage back", keep, &next, &commit).await;
    let checks = w.settled("storage back", keep, &before).await;
    let shown: String = failed.chars().take(100).collect();
    w.record(
        "source storage full (3 MiB tmpfs, 2 MiB of new data), then space again",
        format!(
            "GitRepository Ready=False {shown}, {kept} objects kept at the old commit ({held} lists); {checks}"
        ),
        took,
    );
}
