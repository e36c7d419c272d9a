//! Benchmark: how fast plumb-sync corrects drift, and what a no-op reconcile costs.
//!
//! Against the local test cluster (started if needed): one Sync applying a ConfigMap `target` and
//! `EXTRA` more objects. Prints p50/p99/max of the time from a kubectl-edit-style update of
//! `target` to the watch event showing plumb's correction, over `EDITS` edits; then the API
//! requests the controller makes while reconciling the unchanged Sync every 2 s. Then a Helm
//! chart's Deployment (rendered by the pinned Helm through the render path): `kubectl scale` (a
//! patch of the scale subresource) to the watch event showing the chart's replicas again, over
//! `SCALES` scales, with the machine's load average.
//!
//! Run: `cargo run -p plumb-sync --example bench_drift` (env: EDITS=100, EXTRA=50, SCALES=30).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use sha2::Digest as _;

type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Counts every request the controller's client sends, by method (watches apart).
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    counts: Counts,
}

impl<S, B> tower::Service<http::Request<B>> for Counting<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
        let key = format!("{}{}", req.method(), if watch { " (watch)" } else { "" });
        *self.counts.lock().unwrap().entry(key).or_default() += 1;
        self.inner.call(req)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn reconciles(metrics: &plumb_ops::Metrics) -> u64 {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("plumb_reconcile_total{") && l.contains("kind=\"Sync\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let edits: usize = std::env::var("EDITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let extra: usize = std::env::var("EXTRA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let client = plumb_e2e_support::client().await?;
    let kc = Kubeconfig::read_from(plumb_e2e_support::kubeconfig_path())?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    plumb_e2e_support::install_crds(&client).await?;

    // The controller, its client counted.
    let counts: Counts = Arc::default();
    let layer_counts = counts.clone();
    let counted = kube::client::ClientBuilder::try_from(config.clone())?
        .with_layer(&tower::layer::layer_fn(move |inner| Counting {
            inner,
            counts: layer_counts.clone(),
        }))
        .build();
    let run_id = format!("bench-{}", std::process::id());
    let settings = plumb_sync::Config {
        scope: plumb_ops::WatchScope::shard(&run_id),
        ..Default::default()
    };
    let runtime = plumb_ops::Runtime::with_client(counted, config, Default::default())?;
    let metrics = runtime.metrics().clone();
    let rt = runtime.clone();
    runtime
        .spawn(async move { plumb_sync::run(&rt, settings).await })
        .await?;

    // The rendered artifact.
    let ns = plumb_e2e_support::TestNamespace::new("bench-drift").await?;
    let n = ns.name().to_owned();
    let mut yaml = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: target\ndata:\n  key: git\n",
    );
    for i in 0..extra {
        yaml.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-{i}\ndata:\n  key: \"{i}\"\n"));
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(yaml.as_bytes())?;
    let bytes = enc.finish()?;
    let hex = hex::encode(sha2::Sha256::digest(&bytes));
    let files = plumb_e2e_support::FileServer::start().await?;
    files.put("/a.yaml.gz", bytes);
    let url = files.url("/a.yaml.gz");

    let syncs: Api<plumb_api::Sync> = Api::namespaced(client.clone(), &n);
    let sync: plumb_api::Sync = serde_json::from_value(json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": {"name": "bench", "labels": {plumb_ops::SHARD_LABEL: run_id}},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo"}, "interval": "1h"},
    }))?;
    syncs.create(&PostParams::default(), &sync).await?;
    let render = json!({"apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": {"render": {"artifact": {
        "revision": format!("main@sha1:{}", &hex[..40]), "digest": format!("sha256:{hex}"), "url": url,
        "lastUpdateTime": "2026-01-01T00:00:00Z"}}}});
    syncs
        .patch_status(
            "bench",
            &PatchParams::apply("plumb-render").force(),
            &Patch::Apply(&render),
        )
        .await?;
    let applied = Instant::now();
    loop {
        let s = syncs.get("bench").await?;
        if s.status
            .as_ref()
            .and_then(|st| st.last_applied_revision.as_ref())
            .is_some()
        {
            break;
        }
        anyhow::ensure!(
            applied.elapsed() < Duration::from_secs(60),
            "Sync not applied: {:?}",
            s.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "initial apply of {} objects: {:?}",
        extra + 1,
        applied.elapsed()
    );

    // Drift: edit, then wait for the watch event showing the correction.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &n);
    let wc = watcher::Config::default().fields("metadata.name=target");
    let mut events = std::pin::pin!(watcher(cms.clone(), wc).default_backoff().applied_objects());
    // The initial list shows the object as applied.
    let _ = events.next().await;
    let mut seen = Vec::with_capacity(edits);
    let edit_params = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..Default::default()
    };
    for i in 0..edits {
        let t0 = Instant::now();
        cms.patch(
            "target",
            &edit_params,
            &Patch::Merge(&json!({"data": {"key": format!("edit-{i}")}})),
        )
        .await?;
        let deadline = t0 + Duration::from_secs(10);
        let edited = format!("edit-{i}");
        let mut saw_edit = false;
        loop {
            let next = tokio::time::timeout_at(deadline.into(), events.next()).await;
            let Ok(Some(Ok(cm))) = next else {
                anyhow::bail!("edit {i} not corrected within 10 s")
            };
            let value = cm
                .data
                .as_ref()
                .and_then(|d| d.get("key"))
                .cloned()
                .unwrap_or_default();
            if value == edited {
                saw_edit = true;
            } else if saw_edit && value == "git" {
                seen.push(t0.elapsed());
                break;
            }
        }
    }
    seen.sort();
    println!(
        "drift edit -> correction over {} edits: p50 {:?}, p99 {:?}, max {:?}",
        seen.len(),
        percentile(&seen, 0.5),
        percentile(&seen, 0.99),
        seen[seen.len() - 1]
    );

    chart_heal(&client, &n, &files, &run_id).await?;

    // No-op reconciles: interval 2 s, nothing changes; count the controller's requests.
    let spec = json!({"spec": {"interval": "2s"}});
    syncs
        .patch("bench", &PatchParams::default(), &Patch::Merge(&spec))
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (r0, rv0) = (
        reconciles(&metrics),
        syncs.get("bench").await?.metadata.resource_version,
    );
    counts.lock().unwrap().clear();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let r1 = reconciles(&metrics);
    let rv1 = syncs.get("bench").await?.metadata.resource_version;
    let c = counts.lock().unwrap().clone();
    let total: u64 = c
        .iter()
        .filter(|(k, _)| !k.contains("watch"))
        .map(|(_, v)| v)
        .sum();
    println!(
        "no-op reconciles of a Sync with {} objects: {} reconciles, {} API requests ({:.2} per reconcile) {:?}; Sync status rewritten: {}",
        extra + 1,
        r1 - r0,
        total,
        total as f64 / (r1 - r0).max(1) as f64,
        c,
        rv0 != rv1
    );
    println!(
        "(Flux: one GET + one dry-run apply per object per reconcile = {} requests)",
        2 * (extra + 1)
    );
    Ok(())
}

/// A small chart: the Deployment `kubectl scale` drifts, beside a Service and a ConfigMap.
const CHART: &[(&str, &str)] = &[
    ("Chart.yaml", "apiVersion: v2\nname: heal\nversion: 0.1.0\n"),
    (
        "values.yaml",
        "replicas: 2\nimage: registry.example.com/heal:1.0\n",
    ),
    (
        "templates/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n    spec:\n      containers:\n        - name: app\n          image: {{ .Values.image }}\n",
    ),
    (
        "templates/service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  selector: {app: {{ .Release.Name }}}\n  ports: [{port: 80}]\n",
    ),
    (
        "templates/configmap.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  release: {{ .Release.Name }}\n",
    ),
];

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Renders `CHART` as the render controller does (the pinned Helm), applies it through a Sync
/// and times `kubectl scale` of its Deployment to the drift watch's correction.
async fn chart_heal(
    client: &kube::Client,
    ns: &str,
    files: &plumb_e2e_support::FileServer,
    run_id: &str,
) -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let scales: usize = std::env::var("SCALES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let src = tempfile::tempdir()?;
    for (rel, text) in CHART {
        let path = src.path().join("chart").join(rel);
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::write(path, text)?;
    }
    let spec: plumb_api::SyncSpec = serde_json::from_value(json!({
        "sourceRef": {"kind": "GitRepository", "name": "repo"}, "path": "chart",
    }))?;
    let opts = plumb_render::RenderOptions {
        chart: plumb_render::ChartOptions {
            helm: Some(plumb_helm::Helm::new(plumb_e2e_support::helm_binary(), 0)),
            release_name: "heal".into(),
            namespace: ns.to_owned(),
            ..Default::default()
        },
        ..Default::default()
    };
    let objects = plumb_render::render_with(src.path(), &spec, &[], &opts)?;
    let mut yaml = String::new();
    for o in &objects {
        // JSON is YAML.
        yaml.push_str("---\n");
        yaml.push_str(&o.to_string());
        yaml.push('\n');
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(yaml.as_bytes())?;
    let bytes = enc.finish()?;
    let hex = hex::encode(sha2::Sha256::digest(&bytes));
    files.put("/chart.yaml.gz", bytes);
    let syncs: Api<plumb_api::Sync> = Api::namespaced(client.clone(), ns);
    let sync: plumb_api::Sync = serde_json::from_value(json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": {"name": "heal", "labels": {plumb_ops::SHARD_LABEL: run_id}},
        "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo"}, "path": "chart", "interval": "1h"},
    }))?;
    syncs.create(&PostParams::default(), &sync).await?;
    let render = json!({"apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": {"render": {"artifact": {
        "revision": format!("main@sha1:{}", &hex[..40]), "digest": format!("sha256:{hex}"),
        "url": files.url("/chart.yaml.gz"), "lastUpdateTime": "2026-01-01T00:00:00Z"}}}});
    syncs
        .patch_status(
            "heal",
            &PatchParams::apply("plumb-render").force(),
            &Patch::Apply(&render),
        )
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let wc = watcher::Config::default().fields("metadata.name=heal");
    let mut events = std::pin::pin!(
        watcher(deployments.clone(), wc)
            .default_backoff()
            .applied_objects()
    );
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let applied = Instant::now();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(60), events.next()).await;
        let Ok(Some(Ok(d))) = next else {
            anyhow::bail!("the chart's Deployment was not applied within 60 s")
        };
        if replicas(&d) == 2 {
            break;
        }
    }
    println!(
        "chart {} objects rendered by Helm and applied: {:?}",
        objects.len(),
        applied.elapsed()
    );
    let mut seen = Vec::with_capacity(scales);
    let scale_params = PatchParams {
        field_manager: Some("kubectl".into()),
        ..Default::default()
    };
    for i in 0..scales {
        let drifted = 3 + (i % 5) as i32;
        let t0 = Instant::now();
        deployments
            .patch_scale(
                "heal",
                &scale_params,
                &Patch::Merge(&json!({"spec": {"replicas": drifted}})),
            )
            .await?;
        let deadline = t0 + Duration::from_secs(10);
        let mut saw_scale = false;
        loop {
            let next = tokio::time::timeout_at(deadline.into(), events.next()).await;
            let Ok(Some(Ok(d))) = next else {
                anyhow::bail!("kubectl scale {i} not healed within 10 s")
            };
            match replicas(&d) {
                r if r == drifted => saw_scale = true,
                2 if saw_scale => {
                    seen.push(t0.elapsed());
                    break;
                }
                _ => {}
            }
        }
    }
    seen.sort();
    println!(
        "kubectl scale of a chart's Deployment -> healed over {} scales: p50 {:?}, p99 {:?}, max {:?} (load average {})",
        seen.len(),
        percentile(&seen, 0.5),
        percentile(&seen, 0.99),
        seen[seen.len() - 1],
        load_average()
    );
    Ok(())
}
