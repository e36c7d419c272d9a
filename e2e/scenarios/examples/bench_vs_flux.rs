//! plumb and Flux side by side on the local cluster (`make bench-vs-flux`), one after the other,
//! with the same workload: N apps from one Git repository, each in a namespace of its own, each a
//! ServiceAccount, ConfigMap, Service and Deployment named by substitution, health awaited.
//!
//! Flux is its source-controller and kustomize-controller built from their Go modules by
//! `e2e/flux/build.sh` (cached); plumb is its three controllers, release builds. For each N
//! (`BENCH_SYNCS`, comma-separated, default `100,1000`) it prints, per system: the time from the
//! first create to all Ready (and from the last create), the API server's write requests over
//! that time by verb and resource (every client's, from its `apiserver_request_total`), each
//! controller's peak resident memory and CPU seconds over the run, the API server's CPU seconds,
//! each controller's CPU over an idle minute (`BENCH_IDLE_SECONDS`), and how long an edit of an
//! applied ConfigMap stays before it is reverted; then the plumb/Flux ratios, and the API server's own ceiling for the same writes:
//! the fleet's objects server-side applied from one client with as many requests in flight as
//! the apply workers (4).
//!
//! Both systems run with their defaults, which are the same worker counts (source 2; Flux's
//! kustomize-controller 4 for build and apply, plumb's render 4 and sync 4). Neither limits its
//! requests on the client side here: kube-rs has no client-side limiter, and Flux turns its own
//! (`--kube-api-qps=50 --kube-api-burst=300`) off when the API server has Priority and Fairness,
//! as this one has. The cluster's own controllers have limits too, and both systems wait for their
//! reports (a Deployment is healthy once the deployment controller has observed it): the bench
//! prints the ones kube-controller-manager and kube-scheduler run with (`e2e/cluster/README.md`).
//!
//! Beside each peak it prints the controller's resident memory once the drift probe was Ready,
//! before the fleet was created, and what each app added: (peak - before) / N.
//!
//! `BENCH_SYSTEMS` (comma-separated, default `flux,plumb,api`) picks what runs: `flux`, `plumb`,
//! `api` for the API server's ceiling, and `floor` for the API server's floor for plumb's
//! workload (`floor.rs`: exactly the writes plumb makes per app, from one client with the
//! controllers' concurrency and no controller logic, timed to all Ready as plumb's run is; once
//! with the Syncs created first, once with the writes following the creates as in plumb's run;
//! `BENCH_FLOOR_WORKERS` gives it more requests in flight than the controllers' 4, to show
//! whether the API server or the workers set the floor); `BENCH_SYSTEMS=plumb` measures plumb
//! alone (no Flux build), e.g. while working on plumb's own figures. The ratios are printed when
//! both systems ran. After each plumb run it prints where the render and sync controllers'
//! reconciles spent their time (from their `/metrics`).
//!
//! Run: `make bench-vs-flux`, or `cargo run --release -p plumb-e2e-scenarios --example
//! bench_vs_flux` against the cluster of `PLUMB_TEST_KUBECONFIG` (a cluster of its own is best:
//! other tests disturb the figures, and 1000 apps disturb other tests).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams,
};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use plumb_api::{SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL};
use plumb_e2e_scenarios::bench::{
    FLEET_APP, ProcStats, http_get, load_average, print_phases, proc_stats, write_requests,
    writes_between,
};
use plumb_e2e_scenarios::{Controller, Controllers, GitFixture, SCOPE_LABEL};
use plumb_e2e_support::TestNamespace;
use timeline::Timeline;

#[path = "bench_vs_flux/floor.rs"]
mod floor;
#[path = "bench_vs_flux/timeline.rs"]
mod timeline;

/// The label of every app of a run (the drift probe too).
const APP_LABEL: &str = "bench.plumb.dev/app";
/// Requests in flight when measuring the API server's ceiling: the apply workers of each system.
const APPLY_WORKERS: usize = 4;
/// The longest a run may take to get every app Ready.
const READY_LIMIT: Duration = Duration::from_secs(3600);
/// Field manager of the drift edit and of the ceiling's applies.
const BENCH_MANAGER: &str = "plumb-bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Flux,
    Plumb,
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Flux => "Flux",
            System::Plumb => "plumb",
        }
    }

    fn repo_kind(self) -> ApiResource {
        match self {
            System::Flux => resource("source.toolkit.fluxcd.io", "v1", "GitRepository"),
            System::Plumb => resource("source.plumb.dev", "v1", "GitRepository"),
        }
    }

    fn app_kind(self) -> ApiResource {
        match self {
            System::Flux => resource("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
            System::Plumb => resource("sync.plumb.dev", "v1", "Sync"),
        }
    }

    fn repo(self, url: &str) -> Value {
        let ar = self.repo_kind();
        json!({
            "apiVersion": ar.api_version, "kind": ar.kind, "metadata": { "name": "app" },
            "spec": { "url": url, "ref": { "branch": "main" }, "interval": "10m" }
        })
    }

    /// The selector of the Deployments the apps of run `ctl` apply, and their label naming
    /// the app.
    fn deployments_of(self, ctl: &str) -> (String, &'static str) {
        match self {
            System::Flux => (
                format!("kustomize.toolkit.fluxcd.io/namespace={ctl}"),
                "kustomize.toolkit.fluxcd.io/name",
            ),
            System::Plumb => (format!("{SYNC_NAMESPACE_LABEL}={ctl}"), SYNC_NAME_LABEL),
        }
    }

    /// App `id`, applied to namespace `target`, reconciled every `interval`.
    fn app(self, control: &str, id: &str, target: &str, interval: &str) -> Value {
        let ar = self.app_kind();
        let name = format!("app-{id}");
        let source = json!({ "kind": "GitRepository", "name": "app" });
        match self {
            System::Flux => json!({
                "apiVersion": ar.api_version, "kind": ar.kind,
                "metadata": { "name": name, "labels": { APP_LABEL: id } },
                "spec": { "sourceRef": source, "path": "./fleet", "interval": interval,
                          "prune": true, "wait": true, "timeout": "5m", "targetNamespace": target,
                          "postBuild": { "substitute": { "id": id } } }
            }),
            System::Plumb => json!({
                "apiVersion": ar.api_version, "kind": ar.kind,
                "metadata": { "name": name, "labels": { APP_LABEL: id, SCOPE_LABEL: control } },
                "spec": { "sourceRef": source, "path": "./fleet", "interval": interval,
                          "prune": true, "wait": true, "timeout": "5m", "targetNamespace": target,
                          "substitute": { "id": id } }
            }),
        }
    }
}

/// Flux's two controllers as processes, killed when dropped.
struct FluxProcesses {
    dir: tempfile::TempDir,
    children: Vec<(&'static str, Child)>,
}

impl FluxProcesses {
    fn start(out: &Path, kubeconfig: &Path, namespace: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let port = || plumb_e2e_support::free_port().unwrap();
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let storage_port = port();
        let source = vec![
            format!("--storage-path={}", storage.display()),
            format!("--storage-addr={}", addr(storage_port)),
            format!("--storage-adv-addr={}", addr(storage_port)),
            format!("--metrics-addr={}", addr(port())),
            format!("--health-addr={}", addr(port())),
            "--enable-leader-election=false".into(),
            "--watch-all-namespaces=false".into(),
            "--concurrent=2".into(),
        ];
        let kustomize = vec![
            format!("--metrics-addr={}", addr(port())),
            format!("--health-addr={}", addr(port())),
            "--enable-leader-election=false".into(),
            "--watch-all-namespaces=false".into(),
            "--concurrent=4".into(),
        ];
        let mut children = Vec::new();
        for (name, args) in [
            ("source-controller", source),
            ("kustomize-controller", kustomize),
        ] {
            let log = std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap();
            let child = Command::new(out.join("bin").join(name))
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("RUNTIME_NAMESPACE", namespace)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting Flux's {name}: {e}"));
            children.push((name, child));
        }
        Self { dir, children }
    }

    fn logs_tail(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let _ = writeln!(out, "--- {name}");
            for l in &lines[lines.len().saturating_sub(15)..] {
                let _ = writeln!(out, "{l}");
            }
        }
        out
    }
}

impl Drop for FluxProcesses {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The controllers of one system, running.
enum Running {
    Flux(FluxProcesses),
    Plumb(Controllers),
}

impl Running {
    fn pids(&self) -> Vec<(&'static str, u32)> {
        match self {
            Running::Flux(f) => f.children.iter().map(|(n, c)| (*n, c.id())).collect(),
            Running::Plumb(c) => [
                ("source", Controller::Source),
                ("render", Controller::Render),
                ("sync", Controller::Sync),
            ]
            .into_iter()
            .filter_map(|(n, k)| Some((n, c.pid(k)?)))
            .collect(),
        }
    }

    fn stats(&self) -> Vec<(&'static str, ProcStats)> {
        self.pids()
            .into_iter()
            .map(|(n, pid)| (n, proc_stats(pid).unwrap_or_default()))
            .collect()
    }

    fn logs_tail(&self) -> String {
        match self {
            Running::Flux(f) => f.logs_tail(),
            Running::Plumb(c) => c.logs_tail(15),
        }
    }

    /// Stops the processes without any clean-up of theirs (the run's namespaces are deleted
    /// afterwards, finalizers and all).
    fn kill(self) {
        match self {
            Running::Flux(f) => drop(f),
            Running::Plumb(mut c) => {
                for k in Controller::ALL {
                    c.kill(k);
                }
            }
        }
    }
}

/// What one run of one system measured.
struct Figures {
    system: System,
    apps: usize,
    created: Duration,
    ready: Duration,
    /// Per controller: peak memory over its life, CPU seconds from the first create to all Ready.
    controllers: Vec<(&'static str, u64, f64)>,
    /// Per controller: its figures once the drift probe was Ready, before the fleet.
    before: Vec<(&'static str, ProcStats)>,
    /// Per controller: its figures once the fleet was Ready.
    at_ready: Vec<(&'static str, ProcStats)>,
    apiserver_cpu: Option<f64>,
    idle_cpu: Vec<(&'static str, f64)>,
    idle_seconds: u64,
    drift: Result<Duration, Duration>,
    load: String,
    /// The API server's write requests from the first create to all Ready (every client's):
    /// verb, resource, count.
    writes: Vec<(String, String, f64)>,
}

impl Figures {
    fn peak_mib(&self) -> f64 {
        self.controllers.iter().map(|c| c.1).sum::<u64>() as f64 / 1024.0
    }

    /// Resident memory of all controllers before the fleet, MiB.
    fn before_mib(&self) -> f64 {
        self.before.iter().map(|c| c.1.rss_kib).sum::<u64>() as f64 / 1024.0
    }

    /// What each app added to the peak of all controllers, KiB: (peak - before) / apps.
    fn growth_kib(&self) -> f64 {
        (self.peak_mib() - self.before_mib()) * 1024.0 / self.apps.max(1) as f64
    }

    fn cpu(&self) -> f64 {
        self.controllers.iter().map(|c| c.2).sum()
    }

    fn idle(&self) -> f64 {
        self.idle_cpu.iter().map(|c| c.1).sum()
    }

    fn drift_text(&self) -> String {
        match self.drift {
            Ok(d) => format!("{:.1} s", d.as_secs_f64()),
            Err(limit) => format!("not within {} s", limit.as_secs()),
        }
    }

    /// From the last create to all Ready.
    fn after_last_create(&self) -> Duration {
        self.ready.saturating_sub(self.created)
    }

    fn print(&self) {
        println!(
            "{} N={}: created in {:.1} s, all Ready after {:.1} s ({:.1} s after the last create); peak RSS {:.0} MiB ({:.0} MiB before the fleet, {:.1} KiB per app), {:.1} CPU s (API server {}); idle {:.2} CPU s over {} s; drift reverted: {}; load {}",
            self.system.name(),
            self.apps,
            self.created.as_secs_f64(),
            self.ready.as_secs_f64(),
            self.after_last_create().as_secs_f64(),
            self.peak_mib(),
            self.before_mib(),
            self.growth_kib(),
            self.cpu(),
            self.apiserver_cpu
                .map_or("unknown".into(), |c| format!("{c:.1} CPU s")),
            self.idle(),
            self.idle_seconds,
            self.drift_text(),
            self.load,
        );
        let mib = |kib: u64| kib as f64 / 1024.0;
        let per_controller = self.controllers.iter().zip(&self.idle_cpu);
        let states = self.before.iter().zip(&self.at_ready);
        for (((name, peak, cpu), (_, idle)), ((_, before), (_, ready))) in
            per_controller.zip(states)
        {
            println!(
                "    {name}: peak RSS {:.1} MiB ({:.1} MiB before the fleet, {:.1} KiB per app), {cpu:.1} CPU s to Ready, {idle:.2} CPU s idle; resident file-backed + anonymous: {:.1} + {:.1} MiB before the fleet, {:.1} + {:.1} MiB at Ready",
                mib(*peak),
                mib(before.rss_kib),
                peak.saturating_sub(before.rss_kib) as f64 / self.apps.max(1) as f64,
                mib(before.file_kib),
                mib(before.anon_kib),
                mib(ready.file_kib),
                mib(ready.anon_kib),
            );
        }
        let n = self.apps.max(1) as f64;
        let total: f64 = self.writes.iter().map(|w| w.2).sum();
        println!(
            "    API writes from the first create to all Ready, every client's (the bench's creates, the controllers', kube-controller-manager's, kwok's): {total:.0}, {:.1} per app",
            total / n
        );
        for (verb, resource, count) in &self.writes {
            println!(
                "      {verb} {resource}: {count:.0} ({:.2} per app)",
                count / n
            );
        }
    }
}

/// The process of the cluster's component `name` (`kube-apiserver`, `kube-controller-manager`,
/// ...), when the cluster is a local one started by `e2e/cluster/up.sh`.
fn component_pid(name: &str) -> Option<u32> {
    let dir = plumb_e2e_support::kubeconfig_path().parent()?.to_path_buf();
    std::fs::read_to_string(dir.join("pids").join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn apiserver_cpu() -> Option<f64> {
    component_pid("kube-apiserver")
        .and_then(proc_stats)
        .map(|s| s.cpu_seconds)
}

/// The client rate limits component `name` runs with, from its command line: its
/// `--kube-api-qps`/`--kube-api-burst` flags, or the stock limits it has without them.
fn component_limits(name: &str, stock: &str) -> String {
    let Some(cmdline) =
        component_pid(name).and_then(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
    else {
        return format!("{name}: unknown (not a cluster of e2e/cluster/up.sh)");
    };
    let flags: Vec<String> = cmdline
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .filter(|arg| arg.starts_with("--kube-api-qps=") || arg.starts_with("--kube-api-burst="))
        .collect();
    if flags.is_empty() {
        format!("{name}: its stock {stock}")
    } else {
        format!("{name}: {}", flags.join(" "))
    }
}

/// The API server's write requests so far, by verb and resource (empty when its `/metrics`
/// cannot be read).
async fn apiserver_writes(client: &Client) -> BTreeMap<(String, String), f64> {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    match client.request_text(request).await {
        Ok(text) => write_requests(&text),
        Err(e) => {
            eprintln!("  the API server's /metrics: {e}");
            BTreeMap::new()
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn is_ready(obj: &DynamicObject) -> bool {
    obj.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Waits until `count` objects of `api` selected by `selector` are Ready; returns the time since
/// `start`. Watches instead of listing, so the waiting costs the API server next to nothing.
async fn wait_ready(
    api: &Api<DynamicObject>,
    selector: &str,
    count: usize,
    start: Instant,
    logs: &dyn Fn() -> String,
) -> Duration {
    let stream = watcher(api.clone(), watcher::Config::default().labels(selector));
    let mut stream = std::pin::pin!(stream);
    let mut ready = HashSet::new();
    let mut last_report = Instant::now();
    loop {
        if let Ok(next) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
            match next.expect("the watch ended") {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    if is_ready(&o) {
                        ready.insert(o.name_any());
                    } else {
                        ready.remove(&o.name_any());
                    }
                }
                Ok(watcher::Event::Delete(o)) => {
                    ready.remove(&o.name_any());
                }
                Ok(watcher::Event::Init) => ready.clear(),
                Ok(watcher::Event::InitDone) => {}
                Err(e) => eprintln!("  watch: {e}"),
            }
        }
        if ready.len() >= count {
            return start.elapsed();
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "  {}/{count} Ready after {:.0} s (load {})",
                ready.len(),
                start.elapsed().as_secs_f64(),
                load_average()
            );
            last_report = Instant::now();
        }
        assert!(
            start.elapsed() < READY_LIMIT,
            "{}/{count} Ready after {} s\n{}",
            ready.len(),
            READY_LIMIT.as_secs(),
            logs()
        );
    }
}

/// Creates `count` namespaces `<prefix>-<i>` (and `<prefix>-drift`) carrying `labels`.
async fn create_namespaces(
    client: &Client,
    prefix: &str,
    count: usize,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = (0..count)
        .map(|i| format!("{prefix}-{i}"))
        .chain([format!("{prefix}-drift")])
        .collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let api = api.clone();
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name),
                    labels: Some(labels.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            async move { api.create(&PostParams::default(), &ns).await.unwrap() }
        })
        .buffer_unordered(APPLY_WORKERS)
        .collect::<Vec<_>>()
        .await;
    names
}

/// Removes the finalizers of the run's apps and repositories left in the control namespace (their
/// controllers are stopped); a patch that fails is tried again by the next call.
async fn unfinalize(client: &Client, namespace: &str, system: System) {
    let merge = PatchParams::default();
    let unfinalize = Patch::Merge(json!({ "metadata": { "finalizers": null } }));
    for ar in [system.app_kind(), system.repo_kind()] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
        let Ok(list) = api.list_metadata(&ListParams::default()).await else {
            continue;
        };
        let names: Vec<String> = list
            .items
            .iter()
            .filter(|o| {
                o.metadata
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty())
            })
            .map(|o| o.name_any())
            .collect();
        futures::stream::iter(names)
            .map(|n| {
                let (api, merge, unfinalize) = (api.clone(), merge.clone(), unfinalize.clone());
                async move { api.patch(&n, &merge, &unfinalize).await.ok() }
            })
            .buffer_unordered(APPLY_WORKERS * 2)
            .collect::<Vec<_>>()
            .await;
    }
}

/// Deletes the run's namespaces and waits until they are gone, so the next run starts on a
/// quiet API server. Finalizers of the stopped controllers' objects are removed first, and again
/// while the control namespace is still there (a patch the loaded API server refused or timed
/// out would otherwise hold it, Terminating, for good).
async fn delete_run(client: &Client, control: TestNamespace, system: System, owner: &str) {
    let started = Instant::now();
    let control_name = control.name().to_owned();
    unfinalize(client, &control_name, system).await;
    control.delete().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selector =
        ListParams::default().labels(&format!("{}={owner}", plumb_e2e_support::OWNER_LABEL));
    let names: Vec<String> = namespaces
        .list_metadata(&selector)
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    futures::stream::iter(names)
        .map(|n| {
            let api = namespaces.clone();
            async move { api.delete(&n, &DeleteParams::background()).await.ok() }
        })
        .buffer_unordered(APPLY_WORKERS * 2)
        .collect::<Vec<_>>()
        .await;
    loop {
        let left = namespaces
            .list_metadata(&selector)
            .await
            .unwrap()
            .items
            .len();
        let control_left = namespaces
            .get_metadata_opt(&control_name)
            .await
            .unwrap()
            .is_some();
        if left == 0 && !control_left {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{left} namespaces of the run (control namespace left: {control_left}) still there after 30 minutes"
        );
        if control_left {
            unfinalize(client, &control_name, system).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!("  cleaned up in {:.0} s", started.elapsed().as_secs_f64());
}

/// Edits the drift probe's ConfigMap as a person with kubectl would, and returns how long the
/// edit stayed (`Err(limit)` when it was not reverted within `limit`).
async fn drift_revert(
    client: &Client,
    namespace: &str,
    limit: Duration,
) -> Result<Duration, Duration> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let edit = Patch::Merge(json!({ "data": { "id": "edited by hand" } }));
    let params = PatchParams {
        field_manager: Some(BENCH_MANAGER.into()),
        ..Default::default()
    };
    api.patch("app-drift", &params, &edit).await.unwrap();
    let start = Instant::now();
    loop {
        let cm = api.get("app-drift").await.unwrap();
        if cm
            .data
            .as_ref()
            .and_then(|d| d.get("id"))
            .map(String::as_str)
            == Some("app-drift")
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            return Err(limit);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_all(api: &Api<DynamicObject>, objects: Vec<Value>) {
    for o in objects {
        let obj: DynamicObject = serde_json::from_value(o).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap();
    }
}

/// One run: `system` takes `count` apps to Ready, idles, and reverts a drift.
async fn run(
    client: &Client,
    system: System,
    count: usize,
    git: &GitFixture,
    flux: &Path,
) -> Figures {
    let control = TestNamespace::new(&format!("bvf-{}", system.name().to_lowercase()))
        .await
        .unwrap();
    let ctl = control.name().to_owned();
    eprintln!("{} N={count}: namespaces {ctl}-*", system.name());
    create_namespaces(client, &ctl, count, &control.test_labels()).await;
    let running = match system {
        System::Flux => Running::Flux(FluxProcesses::start(
            flux,
            &plumb_e2e_support::kubeconfig_path(),
            &ctl,
        )),
        System::Plumb => {
            let workers = |n: u16| vec![format!("--concurrent={n}")];
            let flags = BTreeMap::from([
                (Controller::Source, workers(2)),
                (Controller::Render, workers(4)),
                (Controller::Sync, workers(4)),
            ]);
            Running::Plumb(Controllers::start_release_with_flags(&ctl, flags).unwrap())
        }
    };
    let repos: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ctl, &system.repo_kind());
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ctl, &system.app_kind());
    create_all(&repos, vec![system.repo(&git.url())]).await;
    // The drift probe first: once it is Ready, every controller is up and has done one round.
    let drift_ns = format!("{ctl}-drift");
    create_all(&apps, vec![system.app(&ctl, "drift", &drift_ns, "1m")]).await;
    wait_ready(
        &apps,
        &format!("{APP_LABEL}=drift"),
        1,
        Instant::now(),
        &|| running.logs_tail(),
    )
    .await;

    let before = running.stats();
    let apiserver_before = apiserver_cpu();
    let writes_before = apiserver_writes(client).await;
    let start = Instant::now();
    let fleet: Vec<Value> = (0..count)
        .map(|i| system.app(&ctl, &i.to_string(), &format!("{ctl}-{i}"), "10m"))
        .collect();
    let (deployments, owner_label) = system.deployments_of(&ctl);
    let timeline = Timeline::watch(client, &apps, APP_LABEL, &deployments, owner_label, start);
    for o in fleet {
        let obj: DynamicObject = serde_json::from_value(o).unwrap();
        apps.create(&PostParams::default(), &obj).await.unwrap();
        timeline.created(&obj.name_any());
    }
    let created = start.elapsed();
    let ready = wait_ready(&apps, APP_LABEL, count + 1, start, &|| running.logs_tail()).await;
    let after = running.stats();
    let apiserver_cpu = apiserver_before.zip(apiserver_cpu()).map(|(a, b)| b - a);
    let load = load_average();
    let writes = writes_between(&writes_before, &apiserver_writes(client).await);
    timeline.finish();
    if let Running::Plumb(c) = &running {
        print_phases(c).await;
    }
    let controllers = after
        .iter()
        .zip(&before)
        .map(|((name, a), (_, b))| (*name, a.peak_rss_kib, a.cpu_seconds - b.cpu_seconds))
        .collect();

    let idle_seconds = env_or("BENCH_IDLE_SECONDS", 60u64);
    let reconciles_before = reconciles(&running).await;
    tokio::time::sleep(Duration::from_secs(idle_seconds)).await;
    let idle = running.stats();
    let reconciles_after = reconciles(&running).await;
    if !reconciles_before.is_empty() {
        let during: Vec<String> = reconciles_after
            .iter()
            .zip(&reconciles_before)
            .map(|((name, a), (_, b))| format!("{name} {:.0}", a - b))
            .collect();
        println!("  reconciles while idle: {}", during.join(", "));
    }
    let idle_cpu = idle
        .iter()
        .zip(&after)
        .map(|((name, i), (_, a))| (*name, i.cpu_seconds - a.cpu_seconds))
        .collect();
    let limit = Duration::from_secs(env_or("BENCH_DRIFT_WAIT", 150u64));
    let drift = drift_revert(client, &drift_ns, limit).await;
    let figures = Figures {
        system,
        apps: count,
        created,
        ready,
        controllers,
        apiserver_cpu,
        idle_cpu,
        idle_seconds,
        drift,
        load,
        writes,
        before,
        at_ready: after,
    };
    figures.print();
    running.kill();
    delete_run(client, control, system, &ctl).await;
    figures
}

/// How many reconciles plumb's render and sync controllers have run so far (`/metrics`);
/// nothing for Flux.
async fn reconciles(running: &Running) -> Vec<(&'static str, f64)> {
    let Running::Plumb(controllers) = running else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, c) in [("render", Controller::Render), ("sync", Controller::Sync)] {
        let text = http_get(&controllers.metrics_url(c))
            .await
            .unwrap_or_default();
        let n = text
            .lines()
            .filter(|l| l.starts_with("plumb_reconcile_duration_seconds_count{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        out.push((name, n));
    }
    out
}

/// The objects of app `id` as the systems apply them, into `namespace`.
fn rendered_app(id: usize, namespace: &str) -> Vec<Value> {
    let text = FLEET_APP.replace("${id}", &id.to_string());
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
            v["metadata"]["namespace"] = json!(namespace);
            v
        })
        .collect()
}

/// The API server's ceiling for the workload: the fleet's objects server-side applied from one
/// client, `APPLY_WORKERS` requests in flight. Returns (objects, seconds).
async fn apply_ceiling(client: &Client, count: usize) -> (usize, Duration) {
    let control = TestNamespace::new("bvf-ssa").await.unwrap();
    let ctl = control.name().to_owned();
    create_namespaces(client, &ctl, count, &control.test_labels()).await;
    let objects: Vec<Value> = (0..count)
        .flat_map(|i| rendered_app(i, &format!("{ctl}-{i}")))
        .collect();
    let n = objects.len();
    let params = PatchParams::apply(BENCH_MANAGER).force();
    let start = Instant::now();
    futures::stream::iter(objects)
        .map(|o| {
            let (client, params) = (client.clone(), params.clone());
            async move {
                let api_version = o["apiVersion"].as_str().unwrap();
                let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
                let ar = resource(group, version, o["kind"].as_str().unwrap());
                let ns = o["metadata"]["namespace"].as_str().unwrap();
                let name = o["metadata"]["name"].as_str().unwrap();
                let api: Api<DynamicObject> = Api::namespaced_with(client, ns, &ar);
                api.patch(name, &params, &Patch::Apply(&o)).await.unwrap();
            }
        })
        .buffer_unordered(APPLY_WORKERS)
        .collect::<Vec<_>>()
        .await;
    let took = start.elapsed();
    delete_run(client, control, System::Plumb, &ctl).await;
    (n, took)
}

fn flux_build() -> PathBuf {
    let script = plumb_e2e_support::repo_root().join("e2e/flux/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "{} failed", script.display());
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

async fn install_flux_crds(client: &Client, out: &Path) {
    let mut files: Vec<_> = std::fs::read_dir(out.join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let yaml = std::fs::read_to_string(&f).unwrap();
        plumb_e2e_support::apply_yaml(client, &yaml, BENCH_MANAGER)
            .await
            .unwrap();
    }
    // Established before use: list each kind until the API server serves it.
    for system in [System::Flux] {
        for ar in [system.repo_kind(), system.app_kind()] {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            plumb_e2e_support::wait_for(
                &format!("{} to be served", ar.kind),
                Duration::from_secs(60),
                || {
                    let api = api.clone();
                    async move {
                        Ok::<_, kube::Error>(
                            api.list_metadata(&ListParams::default())
                                .await
                                .ok()
                                .map(|_| ()),
                        )
                    }
                },
            )
            .await
            .unwrap();
        }
    }
}

fn ratio(flux: f64, plumb: f64) -> String {
    if plumb > 0.0 {
        format!("{:.1}×", flux / plumb)
    } else {
        "n/a".into()
    }
}

/// What `BENCH_SYSTEMS` asks to run.
struct Selection {
    flux: bool,
    plumb: bool,
    ceiling: bool,
    floor: bool,
}

fn selection() -> Selection {
    let text = std::env::var("BENCH_SYSTEMS").unwrap_or_else(|_| "flux,plumb,api".into());
    let names: Vec<String> = text.split(',').map(|s| s.trim().to_lowercase()).collect();
    for n in &names {
        assert!(
            ["flux", "plumb", "api", "floor"].contains(&n.as_str()),
            "BENCH_SYSTEMS: {n:?} is none of flux, plumb, api, floor"
        );
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    Selection {
        flux: has("flux"),
        plumb: has("plumb"),
        ceiling: has("api"),
        floor: has("floor"),
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SYNCS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SYNCS: numbers separated by commas")
        })
        .collect();
    let selected = selection();
    let flux = if selected.flux {
        flux_build()
    } else {
        PathBuf::new()
    };
    let client = plumb_e2e_support::client().await.unwrap();
    plumb_e2e_support::install_crds(&client).await.unwrap();
    if selected.flux {
        install_flux_crds(&client, &flux).await;
    }
    let git = GitFixture::new().await.unwrap();
    git.write("fleet/app.yaml", FLEET_APP).unwrap();
    git.commit("fleet").unwrap();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if selected.flux {
        println!(
            "plumb vs Flux (source-controller and kustomize-controller from {}), {cores} cores",
            flux.display()
        );
    } else {
        println!(
            "plumb alone (BENCH_SYSTEMS), {cores} cores; load {}",
            load_average()
        );
    }
    println!(
        "workers: Flux source 2, kustomize 4 (--concurrent, its defaults); plumb source 2, render 4, sync 4 (--concurrent, its defaults)"
    );
    println!(
        "client rate limits: none on either side (kube-rs has no client-side limiter; Flux's --kube-api-qps=50/--kube-api-burst=300 are switched off by Flux when the API server has Priority and Fairness, on by default)"
    );
    // Both systems wait for health, and a new Deployment is healthy once the deployment
    // controller has reported on it: the cluster's own limits bound the time to Ready too.
    println!(
        "the cluster's controllers (whose reports on each Deployment both systems wait for): {}; {}",
        component_limits(
            "kube-controller-manager",
            "--kube-api-qps=20 --kube-api-burst=30"
        ),
        component_limits("kube-scheduler", "--kube-api-qps=50 --kube-api-burst=100"),
    );
    let mut table = Vec::new();
    for &n in &sizes {
        let f = if selected.flux {
            Some(run(&client, System::Flux, n, &git, &flux).await)
        } else {
            None
        };
        let p = if selected.plumb {
            Some(run(&client, System::Plumb, n, &git, &flux).await)
        } else {
            None
        };
        let ceiling = if selected.ceiling {
            let (objects, took) = apply_ceiling(&client, n).await;
            let per_second = objects as f64 / took.as_secs_f64();
            println!(
                "API server ceiling N={n}: {objects} objects server-side applied from one client, {APPLY_WORKERS} in flight, in {:.1} s ({per_second:.0} applies/s); load {}",
                took.as_secs_f64(),
                load_average()
            );
            Some((objects, took))
        } else {
            None
        };
        let mut floors = Vec::new();
        if selected.floor {
            for paced in [false, true] {
                floors.push(floor::floor(&client, n, paced).await);
            }
        }
        table.push((n, f, p, ceiling, floors));
    }
    println!();
    println!(
        "| N | | all Ready after (after the last create) | peak RSS, all controllers (per app) | CPU seconds (API server) | idle CPU s/min | drift reverted after |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (n, f, p, ceiling, floors) in &table {
        for x in [f, p].into_iter().flatten() {
            println!(
                "| {} | {} | {:.1} s ({:.1} s; created in {:.1} s) | {:.0} MiB ({:.1} KiB) | {:.1} ({}) | {:.2} | {} |",
                x.apps,
                x.system.name(),
                x.ready.as_secs_f64(),
                x.after_last_create().as_secs_f64(),
                x.created.as_secs_f64(),
                x.peak_mib(),
                x.growth_kib(),
                x.cpu(),
                x.apiserver_cpu
                    .map_or("unknown".into(), |c| format!("{c:.1}")),
                x.idle() * 60.0 / x.idle_seconds.max(1) as f64,
                x.drift_text(),
            );
        }
        if let (Some(f), Some(p)) = (f, p) {
            println!(
                "| {n} | Flux/plumb | {} faster | {} less memory | {} less CPU | | |",
                ratio(f.ready.as_secs_f64(), p.ready.as_secs_f64()),
                ratio(f.peak_mib(), p.peak_mib()),
                ratio(f.cpu(), p.cpu()),
            );
        }
        if let Some((objects, took)) = ceiling {
            println!(
                "| {n} | API server alone | {:.1} s for the {objects} objects from one client ({:.0}/s) | | | | |",
                took.as_secs_f64(),
                *objects as f64 / took.as_secs_f64()
            );
        }
        for row in floor::table_rows(*n, floors) {
            println!("{row}");
        }
    }
}
