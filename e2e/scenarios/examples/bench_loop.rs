//! Figures for the whole loop, against the local cluster (`make cluster-up` first):
//!
//! 1. commit → applied: a commit is pushed, the webhook is called (GitLab style), and the time
//!    from the webhook call (the push done) until the changed ConfigMap is in the cluster is
//!    measured, over several commits.
//! 2. N Syncs from one repository (default 1000; `PLUMB_BENCH_SYNCS`), each its own directory
//!    of the repository (`fleet/<i>`, as apps of a monorepo) with a Deployment (0 replicas),
//!    Service, ServiceAccount and ConfigMap named by substitution, with `wait`: the time from
//!    creating them to all Ready, and the peak memory (VmHWM) of each controller.
//! 3. One-app commits in that fleet (`PLUMB_BENCH_FANOUT_COMMITS`, default 5): a commit changes
//!    one app's ConfigMap, is pushed, the webhook is called, and it prints the time from the
//!    webhook call until that ConfigMap changed in the cluster, how many renders ran and how
//!    many were carried to the new revision unchanged (render controller), how many objects were
//!    applied (sync controller), and when all N Syncs reported the new revision as applied.
//!
//! Run: `cargo run --release -p plumb-e2e-scenarios --example bench_loop` (or `make bench-loop`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use plumb_api::{Conditions, GitRepository, Sync, condition_type};
use plumb_e2e_scenarios::bench::{FLEET_APP, http_get, load_average, print_phases, proc_stats};
use plumb_e2e_scenarios::{Controller, Controllers, GitFixture, SCOPE_LABEL};
use plumb_e2e_support::{TestNamespace, wait_for};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "bench-webhook-token";

/// Commits the work tree and pushes it, as a developer does before the Git host calls the
/// webhook; returns the commit id and how long that took. The figures start after it: the time
/// a commit spends in the developer's `git add`, `git commit` and `git push` (which grows with
/// the work tree's files) is not the controllers'; it is printed beside them.
fn commit_and_push(git: &GitFixture, message: &str) -> (String, Duration) {
    let start = Instant::now();
    let sha = git.commit(message).unwrap();
    (sha, start.elapsed())
}

async fn post_webhook(base: &str, path: &str) {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"object_kind":"push","ref":"refs/heads/main"}"#;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-Gitlab-Token: {TOKEN}\r\nX-Gitlab-Event: Push Hook\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 2"), "webhook refused: {resp}");
}

/// The path GitRepository `app` takes pushes on.
async fn webhook_path(ns: &TestNamespace) -> String {
    let repos: Api<GitRepository> = ns.api();
    wait_for("the webhook path", Duration::from_secs(60), || {
        let repos = repos.clone();
        async move {
            Ok::<_, kube::Error>(repos.get("app").await?.status.and_then(|s| s.webhook_path))
        }
    })
    .await
    .unwrap()
}

/// Waits (looking every 10 ms) until ConfigMap `name` holds `key: value`, at most 10 minutes
/// from `start`.
async fn wait_value(
    config_maps: &Api<ConfigMap>,
    name: &str,
    (key, value): (&str, &str),
    start: Instant,
) {
    loop {
        let cm = config_maps.get_opt(name).await.unwrap();
        if cm
            .and_then(|c| c.data)
            .and_then(|d| d.get(key).cloned())
            .as_deref()
            == Some(value)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "{name} did not hold {key}: {value} within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
}

async fn commit_to_applied(
    ns: &TestNamespace,
    git: &GitFixture,
    controllers: &Controllers,
    rounds: usize,
) {
    let secrets: Api<Secret> = ns.api();
    create(
        &secrets,
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "hook" },
                             "stringData": { "token": TOKEN } }),
    )
    .await;
    let repos: Api<GitRepository> = ns.api();
    create(&repos, json!({
        "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository", "metadata": { "name": "app" },
        "spec": { "url": git.url(), "ref": { "branch": "main" }, "interval": "10m",
                  "webhook": { "secretRef": { "name": "hook" } } }
    }))
    .await;
    let syncs: Api<Sync> = ns.api();
    create(
        &syncs,
        json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": "app", "labels": { SCOPE_LABEL: ns.name() } },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": "./latency",
                      "targetNamespace": ns.name(), "interval": "10m" }
        }),
    )
    .await;
    let path = webhook_path(ns).await;
    let config_maps: Api<ConfigMap> = ns.api();
    let mut samples = vec![];
    let mut pushes = vec![];
    for round in 0..rounds {
        let value = format!("round-{round}");
        git.write("latency/cm.yaml", &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latency\ndata:\n  round: {value}\n"))
            .unwrap();
        let (_, pushed) = commit_and_push(git, &value);
        let start = Instant::now();
        post_webhook(&controllers.webhook_base_url(), &path).await;
        wait_value(&config_maps, "latency", ("round", &value), start).await;
        samples.push(start.elapsed());
        pushes.push(pushed);
    }
    samples.sort();
    pushes.sort();
    println!(
        "commit → applied (pushed, then the webhook → the ConfigMap changed, {rounds} commits): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms; before it, git add + commit + push took p50 {:.0} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        percentile(&pushes, 0.5).as_secs_f64() * 1e3,
    );
}

async fn fleet(ns: &TestNamespace, controllers: &Controllers, count: usize) {
    let syncs: Api<Sync> = ns.api();
    let start = Instant::now();
    for i in 0..count {
        create(&syncs, json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": format!("fleet-{i}"), "labels": { SCOPE_LABEL: ns.name(), "bench": "fleet" } },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": format!("./fleet/{i}"),
                      "targetNamespace": ns.name(), "interval": "30m", "wait": true, "timeout": "5m",
                      "substitute": { "id": format!("{i}") } }
        }))
        .await;
    }
    let created = start.elapsed();
    let lp = ListParams::default().labels("bench=fleet");
    let mut last_report = Instant::now();
    loop {
        let list = syncs.list(&lp).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|s| {
                s.status
                    .as_ref()
                    .is_some_and(|st| st.conditions.is_true(condition_type::READY))
            })
            .count();
        if ready == count {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "  {ready}/{count} Ready after {:.0}s",
                start.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "{ready}/{count} Ready after 30 minutes"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let total = start.elapsed();
    println!("  load average (1, 5, 15 min): {}", load_average());
    println!(
        "{count} Syncs (Deployment, Service, ServiceAccount, ConfigMap each; wait): created in {:.1}s, all Ready after {:.1}s ({:.1} Syncs/s)",
        created.as_secs_f64(),
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64()
    );
    for c in Controller::ALL {
        let pid = controllers.pid(c).unwrap();
        let stats = proc_stats(pid).unwrap_or_default();
        println!(
            "  {c:?} controller: peak memory (VmHWM) {:.1} MiB, resident now {:.1} MiB, {:.1} CPU seconds",
            stats.peak_rss_kib as f64 / 1024.0,
            stats.rss_kib as f64 / 1024.0,
            stats.cpu_seconds
        );
    }
    print_phases(controllers).await;
}

/// The counters a one-app commit is judged by, from the controllers' `/metrics`: renders run
/// and carried forward (render), objects applied and status writes (sync).
const FANOUT_COUNTERS: [(Controller, &str); 4] = [
    (Controller::Render, "plumb_render_renders_total"),
    (Controller::Render, "plumb_render_carried_forward_total"),
    (Controller::Sync, "plumb_sync_applied_objects_total"),
    (Controller::Sync, "plumb_sync_status_writes_total"),
];

async fn fanout_counters(controllers: &Controllers) -> Vec<f64> {
    let mut out = Vec::new();
    for (c, name) in FANOUT_COUNTERS {
        let text = http_get(&controllers.metrics_url(c))
            .await
            .unwrap_or_default();
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0);
        out.push(value);
    }
    out
}

/// Waits until every Sync labelled `bench=fleet` reports `revision` as applied; the time since
/// `start`. Watches, so the waiting costs the API server little.
async fn all_applied(syncs: &Api<Sync>, count: usize, revision: &str, start: Instant) -> Duration {
    let stream = watcher(
        syncs.clone(),
        watcher::Config::default().labels("bench=fleet"),
    );
    let mut stream = std::pin::pin!(stream);
    let mut done = HashSet::new();
    while done.len() < count {
        let event = tokio::time::timeout(Duration::from_secs(600), stream.next())
            .await
            .expect("no Sync changed for 10 minutes")
            .expect("the watch ended")
            .unwrap();
        let (watcher::Event::Apply(s) | watcher::Event::InitApply(s)) = event else {
            continue;
        };
        let applied = s
            .status
            .as_ref()
            .and_then(|st| st.last_applied_revision.as_ref())
            .is_some_and(|r| r.to_string() == revision);
        if applied {
            done.insert(s.name_any());
        } else {
            done.remove(&s.name_any());
        }
    }
    start.elapsed()
}

/// Commits a change of one app of the fleet `rounds` times (a different app each time) and
/// prints what each cost.
async fn one_app_commits(
    ns: &TestNamespace,
    git: &GitFixture,
    controllers: &Controllers,
    count: usize,
    rounds: usize,
) {
    let path = webhook_path(ns).await;
    let config_maps: Api<ConfigMap> = ns.api();
    let syncs: Api<Sync> = ns.api();
    let mut samples = Vec::new();
    for round in 0..rounds {
        let app = (count / 2 + round * 7919) % count;
        let value = format!("fanout-{round}");
        let changed = FLEET_APP.replace(
            "  id: \"app-${id}\"\n",
            &format!("  id: \"app-${{id}}\"\n  commit: {value}\n"),
        );
        git.write(&format!("fleet/{app}/app.yaml"), &changed)
            .unwrap();
        let before = fanout_counters(controllers).await;
        let (sha, pushed) = commit_and_push(git, &value);
        let start = Instant::now();
        post_webhook(&controllers.webhook_base_url(), &path).await;
        let name = format!("app-{app}");
        wait_value(&config_maps, &name, ("commit", &value), start).await;
        let applied = start.elapsed();
        let load = load_average();
        let revision = format!("main@sha1:{}", sha.trim());
        let all = all_applied(&syncs, count, &revision, start).await;
        let after = fanout_counters(controllers).await;
        let d: Vec<f64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
        println!(
            "  one-app commit {round} (app {app} of {count}): applied {:.0} ms after the push (load {load}; git add + commit + push took {:.0} ms before it); renders {:.0}, carried forward {:.0}, objects applied {:.0}, sync status writes {:.0}; all {count} Syncs at the new revision after {:.1} s (load {})",
            applied.as_secs_f64() * 1e3,
            pushed.as_secs_f64() * 1e3,
            d[0],
            d[1],
            d[2],
            d[3],
            all.as_secs_f64(),
            load_average(),
        );
        samples.push(applied);
    }
    samples.sort();
    println!(
        "one-app commit in a fleet of {count} (pushed, then the webhook → that app's ConfigMap changed, {rounds} commits): p50 {:.0} ms, max {:.0} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("PLUMB_BENCH_SYNCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: usize = std::env::var("PLUMB_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ns = TestNamespace::new("bench-loop").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write(
        "latency/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latency\ndata:\n  round: start\n",
    )
    .unwrap();
    for i in 0..count {
        git.write(&format!("fleet/{i}/app.yaml"), FLEET_APP)
            .unwrap();
    }
    git.commit("bench").unwrap();
    let fanout_rounds: usize = std::env::var("PLUMB_BENCH_FANOUT_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let controllers = Controllers::start_release(ns.name()).unwrap();
    commit_to_applied(&ns, &git, &controllers, rounds).await;
    fleet(&ns, &controllers, count).await;
    one_app_commits(&ns, &git, &controllers, count, fanout_rounds).await;
}
