//! Figures for the whole loop, against the local cluster (`make cluster-up` first):
//!
//! 1. commit → applied: a commit is pushed, the webhook is called (GitLab style), and the time
//!    until the changed ConfigMap is in the cluster is measured, over several commits.
//! 2. N Syncs from one repository (default 1000; `PLUMB_BENCH_SYNCS`), each a Deployment (0
//!    replicas), Service, ServiceAccount and ConfigMap named by substitution, with `wait`: the
//!    time from creating them to all Ready, and the peak memory (VmHWM) of each controller.
//!
//! Run: `cargo run --release -p plumb-e2e-scenarios --example bench_loop` (or `make bench-loop`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the failure report

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{ListParams, PostParams};
use plumb_api::{Conditions, GitRepository, Sync, condition_type};
use plumb_e2e_scenarios::bench::{FLEET_APP, load_average, print_phases, proc_stats};
use plumb_e2e_scenarios::{Controller, Controllers, GitFixture, SCOPE_LABEL};
use plumb_e2e_support::{TestNamespace, wait_for};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "bench-webhook-token";

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
    let path =
        wait_for("the webhook path", Duration::from_secs(60), || {
            let repos = repos.clone();
            async move {
                Ok::<_, kube::Error>(repos.get("app").await?.status.and_then(|s| s.webhook_path))
            }
        })
        .await
        .unwrap();
    let config_maps: Api<ConfigMap> = ns.api();
    let mut samples = vec![];
    for round in 0..rounds {
        let value = format!("round-{round}");
        git.write("latency/cm.yaml", &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latency\ndata:\n  round: {value}\n"))
            .unwrap();
        let start = Instant::now();
        git.commit(&value).unwrap();
        post_webhook(&controllers.webhook_base_url(), &path).await;
        loop {
            let cm = config_maps.get_opt("latency").await.unwrap();
            if cm
                .and_then(|c| c.data)
                .and_then(|d| d.get("round").cloned())
                .as_deref()
                == Some(value.as_str())
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "round {round} not applied within 60s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "commit → applied (git push + webhook, {rounds} commits): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.9).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

async fn fleet(ns: &TestNamespace, controllers: &Controllers, count: usize) {
    let syncs: Api<Sync> = ns.api();
    let start = Instant::now();
    for i in 0..count {
        create(&syncs, json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": format!("fleet-{i}"), "labels": { SCOPE_LABEL: ns.name(), "bench": "fleet" } },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": "./fleet",
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
    git.write("fleet/app.yaml", FLEET_APP).unwrap();
    git.commit("bench").unwrap();
    let controllers = Controllers::start_release(ns.name()).unwrap();
    commit_to_applied(&ns, &git, &controllers, rounds).await;
    fleet(&ns, &controllers, count).await;
}
