//! `make bench-helm`: chart renders per second. A generated chart of 40 templates is rendered
//! (1) by `helm template` run as a process, one after another, (2) by plumb's render path for
//! 100 Syncs with different values, on 4 threads (each a cache miss: Helm runs), and (3) by the
//! same 100 Syncs again (cache hits). Prints figures; asserts nothing about time.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is the report

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use plumb_helm::{Capabilities, Helm};
use plumb_render::{ChartOptions, RenderOptions, render_with};

const TEMPLATES: usize = 40;
const SYNCS: usize = 100;
const THREADS: usize = 4;

fn write_chart(dir: &Path) {
    fs::create_dir_all(dir.join("templates")).unwrap();
    fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: bench\nversion: 1.0.0\n",
    )
    .unwrap();
    fs::write(
        dir.join("values.yaml"),
        "replicas: 1\nimage: nginx:1.27\nteam: bench\n",
    )
    .unwrap();
    fs::write(
        dir.join("templates/_helpers.tpl"),
        "{{- define \"bench.labels\" -}}\napp: {{ .Release.Name }}\nteam: {{ .Values.team }}\n{{- end }}\n",
    )
    .unwrap();
    for i in 0..TEMPLATES {
        fs::write(
            dir.join(format!("templates/deploy-{i}.yaml")),
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ .Release.Name }}}}-{i}\n  labels:\n    {{{{- include \"bench.labels\" . | nindent 4 }}}}\nspec:\n  replicas: {{{{ .Values.replicas }}}}\n  selector:\n    matchLabels:\n      {{{{- include \"bench.labels\" . | nindent 6 }}}}\n  template:\n    metadata:\n      labels:\n        {{{{- include \"bench.labels\" . | nindent 8 }}}}\n    spec:\n      containers:\n        - name: app\n          image: {{{{ .Values.image | quote }}}}\n"
            ),
        )
        .unwrap();
    }
}

fn main() {
    let helm = plumb_e2e_support::helm_binary();
    let src = tempfile::tempdir().unwrap();
    write_chart(&src.path().join("chart"));
    let chart = src.path().join("chart");
    println!("chart: {TEMPLATES} templates; helm: {}", helm.display());

    let n = 20;
    let start = Instant::now();
    for i in 0..n {
        let home = tempfile::tempdir().unwrap();
        let out = Command::new(&helm)
            .env_clear()
            .env("HOME", home.path())
            .args(["template", &format!("r{i}")])
            .arg(&chart)
            .args(["--set", &format!("replicas={i}")])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let process_rate = n as f64 / start.elapsed().as_secs_f64();
    println!("helm template as a process, sequential: {process_rate:.1} renders/s ({n} renders)");

    let engine = Helm::new(helm.clone(), 64 << 20);
    let run = |label: &str| {
        let start = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                let (next, engine, root) = (next.clone(), engine.clone(), src.path());
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= SYNCS {
                            break;
                        }
                        let spec = serde_json::from_value(serde_json::json!({
                            "sourceRef": {"kind": "GitRepository", "name": "r"},
                            "path": "chart",
                            "helm": {"values": {"replicas": i}},
                        }))
                        .unwrap();
                        let opts = RenderOptions {
                            chart: ChartOptions {
                                helm: Some(engine.clone()),
                                release_name: format!("sync-{i}"),
                                namespace: "bench".into(),
                                capabilities: Capabilities {
                                    kube_version: Some("v1.35.8".into()),
                                    api_versions: vec!["apps/v1".into()],
                                },
                                ..ChartOptions::default()
                            },
                            ..RenderOptions::default()
                        };
                        let objects = render_with(root, &spec, &[], &opts).unwrap();
                        assert_eq!(objects.len(), TEMPLATES);
                    }
                });
            }
        });
        let rate = SYNCS as f64 / start.elapsed().as_secs_f64();
        println!(
            "plumb render, {SYNCS} Syncs with different values, {THREADS} threads, {label}: {rate:.1} renders/s"
        );
        rate
    };
    let cold = run("cache misses");
    let warm = run("cache hits");
    let (hits, misses) = engine.cache_stats();
    println!(
        "ratios: cold/process {:.2}, warm/process {:.1}; cache hits {hits}, misses {misses}",
        cold / process_rate,
        warm / process_rate
    );
}
