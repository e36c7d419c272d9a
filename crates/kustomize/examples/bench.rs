//! Benchmark: `kubectl kustomize` against this engine, in process and as `plumb build`.
//!
//! Builds (a) a generated overlay of about 1000 objects with generators and patches, and (b) every
//! fixture of the differential test, several times each, and prints the time ratios.
//!
//! Run: `cargo build --release -p plumb && cargo run --release -p plumb-kustomize --example bench`
//! (`PLUMB_BIN` overrides where the `plumb` binary is looked for; `BENCH_RUNS` sets the runs;
//! `BENCH_DIR` keeps the generated overlay in that directory).

use plumb_kustomize::{BuildOptions, build, to_yaml};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// A base of 200 apps (Deployment, Service, ConfigMap, ServiceAccount) plus 200 generated
/// ConfigMaps and Secrets, and an overlay with prefix, namespace, labels, images, replicas and
/// strategic-merge and JSON patches: about 1000 objects in all.
fn generate(root: &Path) {
    let mut base = String::from("resources:\n");
    let mut gens = String::from("configMapGenerator:\n");
    let mut secrets = String::from("secretGenerator:\n");
    for i in 0..200 {
        let mut doc = String::new();
        let _ = write!(
            doc,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app{i}\n  labels:\n    app: app{i}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: app{i}\n  template:\n    metadata:\n      labels:\n        app: app{i}\n    spec:\n      serviceAccountName: sa{i}\n      containers:\n      - name: main\n        image: registry.example.com/app:1.0\n        ports:\n        - containerPort: 8080\n        envFrom:\n        - configMapRef:\n            name: env{i}\n        - secretRef:\n            name: secret{i}\n        volumeMounts:\n        - name: cfg\n          mountPath: /etc/app\n      volumes:\n      - name: cfg\n        configMap:\n          name: static{i}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app{i}\nspec:\n  selector:\n    app: app{i}\n  ports:\n  - port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: static{i}\ndata:\n  index: \"{i}\"\n  config.yaml: |\n    server:\n      port: 8080\n      name: app{i}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa{i}\n"
        );
        write(&root.join(format!("base/app{i}.yaml")), &doc);
        let _ = writeln!(base, "- app{i}.yaml");
        let _ = write!(
            gens,
            "- name: env{i}\n  literals:\n  - APP=app{i}\n  - LEVEL=info\n"
        );
        let _ = write!(
            secrets,
            "- name: secret{i}\n  literals:\n  - TOKEN=token-{i}\n"
        );
    }
    write(
        &root.join("base/kustomization.yaml"),
        &format!("{base}{gens}{secrets}"),
    );
    write(
        &root.join("overlay/kustomization.yaml"),
        "resources:\n- ../base\nnamePrefix: prod-\nnamespace: production\ncommonLabels:\n  env: prod\ncommonAnnotations:\n  owner: platform\nimages:\n- name: registry.example.com/app\n  newTag: \"2.0\"\nreplicas:\n- name: app0\n  count: 3\nconfigMapGenerator:\n- name: env0\n  behavior: merge\n  literals:\n  - LEVEL=debug\npatches:\n- target:\n    kind: Deployment\n  patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: any\n    spec:\n      template:\n        spec:\n          containers:\n          - name: main\n            resources:\n              limits:\n                memory: 256Mi\n- target:\n    kind: Service\n  patch: |-\n    - op: add\n      path: /spec/type\n      value: ClusterIP\n",
    );
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        f();
    }
    start.elapsed() / runs as u32
}

fn kubectl(dir: &Path) -> bool {
    Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn plumb_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PLUMB_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("plumb");
    candidate.exists().then_some(candidate)
}

fn plumb_process(bin: &Path, dir: &Path) -> bool {
    Command::new(bin)
        .arg("build")
        .arg(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn in_process(root: &Path, dir: &Path) -> bool {
    build(root, dir, &BuildOptions::default())
        .map(|r| to_yaml(&r))
        .is_ok()
}

fn report(label: &str, kubectl: Duration, ours: Duration, process: Option<Duration>) {
    let ratio = |d: Duration| kubectl.as_secs_f64() / d.as_secs_f64().max(1e-9);
    print!(
        "{label}: kubectl kustomize {:.1} ms, plumb-kustomize in-process {:.2} ms ({:.1}x)",
        kubectl.as_secs_f64() * 1e3,
        ours.as_secs_f64() * 1e3,
        ratio(ours)
    );
    if let Some(p) = process {
        print!(
            ", plumb build process {:.1} ms ({:.1}x)",
            p.as_secs_f64() * 1e3,
            ratio(p)
        );
    }
    println!();
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let bin = plumb_bin();
    if bin.is_none() {
        println!(
            "(plumb binary not found: build it with `cargo build --release -p plumb` or set PLUMB_BIN)"
        );
    }
    let keep = std::env::var("BENCH_DIR").ok().map(PathBuf::from);
    let tmp = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("plumb-kustomize-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    generate(&tmp);
    let overlay = tmp.join("overlay");
    let objects = build(&tmp, &overlay, &BuildOptions::default())
        .map(|r| r.len())
        .unwrap_or(0);
    assert!(
        kubectl(&overlay),
        "kubectl kustomize failed on the generated overlay"
    );
    let k = time(runs, || {
        kubectl(&overlay);
    });
    let ours = time(runs * 4, || {
        in_process(&tmp, &overlay);
    });
    let process = bin.as_ref().map(|b| {
        time(runs, || {
            plumb_process(b, &overlay);
        })
    });
    report(
        &format!("generated overlay ({objects} objects, {runs} runs)"),
        k,
        ours,
        process,
    );

    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(&fixtures)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|d| !d.join("expect-error").exists())
        .map(|d| {
            let build_dir = std::fs::read_to_string(d.join("build-path"))
                .map(|p| d.join(p.trim()))
                .unwrap_or(d.clone());
            (d, build_dir)
        })
        .collect();
    dirs.sort();
    let k = time(runs.min(3), || {
        for (_, b) in &dirs {
            kubectl(b);
        }
    });
    let ours = time(runs, || {
        for (root, b) in &dirs {
            in_process(root, b);
        }
    });
    let process = bin.as_ref().map(|bin| {
        time(runs.min(3), || {
            for (_, b) in &dirs {
                plumb_process(bin, b);
            }
        })
    });
    report(
        &format!("fixture set ({} fixtures, sequential)", dirs.len()),
        k,
        ours,
        process,
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
