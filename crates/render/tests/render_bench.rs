//! How fast the render controller renders many Syncs at once: `cargo test --release -p
//! plumb-render --test render_bench -- --ignored --nocapture` prints the figures. A benchmark,
//! not an assertion on time.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use support::{World, deployment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn bench_render_many_syncs() {
    let syncs: usize = std::env::var("RENDER_SYNCS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let workers: u16 = std::env::var("RENDER_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(4);
    // The Syncs exist before the controller starts, so the figure is render throughput alone.
    let w = World::without_controller("render-bench").await;
    let base = "resources: [web.yaml, config.yaml]\n";
    let web = deployment("web", "nginx:1.27");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  cluster: ${CLUSTER:=dev}\n";
    w.publish_source(
        "app",
        'a',
        &[
            ("base/kustomization.yaml", base),
            ("base/web.yaml", &web),
            ("base/config.yaml", cm),
        ],
        None,
    )
    .await;
    let policy = support::unique("bench", w.name());
    w.apply_policy(&policy, json!([{"name": "pinned", "match": {"resources": [{"group": "apps", "kinds": ["Deployment"]}]},
                                "expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))"}]))
        .await;

    let created_at = Instant::now();
    for i in 0..syncs {
        w.apply_sync(&format!("app-{i}"), "app", json!({"path": "./base", "targetNamespace": format!("team-{i}"), "substitute": {"CLUSTER": format!("c{i}")}}))
            .await;
    }
    let created = created_at.elapsed();
    let start = Instant::now();
    w.start_controller(|c| plumb_render::Config {
        concurrent: workers,
        ..c
    })
    .await;
    let api: Api<plumb_api::Sync> = w.ns.api();
    plumb_e2e_support::wait_for("every Sync rendered", Duration::from_secs(600), || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await?;
            let done = list
                .items
                .iter()
                .filter(|s| support::rendered(s).is_some_and(|c| c.status == "True"))
                .count();
            Ok::<_, kube::Error>((done == syncs).then_some(()))
        }
    })
    .await
    .unwrap();
    let total = start.elapsed();
    println!(
        "render bench: {syncs} Syncs (kustomize base, targetNamespace, substitution, 1 Policy), {workers} workers: \
         created in {:.2}s; controller started, all rendered after {:.2}s = {:.1} Syncs/s",
        created.as_secs_f64(),
        total.as_secs_f64(),
        syncs as f64 / total.as_secs_f64()
    );
    w.delete_policy(&policy).await;
}
