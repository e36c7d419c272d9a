//! Benchmark: `kubectl kustomize` against this engine, in process and as `plumb build` processes.
//!
//! Builds (a) a generated overlay of about 1000 objects with generators and patches, and (b) every
//! fixture of the differential test that builds (without a `format-exception`), and prints the
//! time ratios. Before timing, each input is built once by both tools and their outputs must be
//! the same bytes. Then, round after round, each input is built by `kubectl kustomize` and right
//! after by `plumb build`, so both run the same number of times under the same machine load; the
//! ratio is kubectl's total time over plumb's. The time to start and wait for `/bin/true` the
//! same number of times is printed too: the floor neither process can go under.
//!
//! Run: `make bench-kustomize`, or `cargo build --release -p plumb && cargo run --release -p
//! plumb-kustomize --example bench` (`PLUMB_BIN` overrides where the `plumb` binary is looked
//! for; `BENCH_RUNS` sets the rounds; `BENCH_DIR` keeps the generated overlay there).

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

/// One process run: its stdout, or why it failed.
fn run(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn kubectl(dir: &Path) -> Command {
    let mut c = Command::new("kubectl");
    c.arg("kustomize").arg(dir);
    c
}

fn plumb(bin: &Path, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("build").arg(dir);
    c
}

fn plumb_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PLUMB_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("plumb");
    candidate.exists().then_some(candidate)
}

fn in_process(root: &Path, dir: &Path) -> usize {
    build(root, dir, &BuildOptions::default())
        .map(|r| to_yaml(&r).len())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Process times of the two tools over the same inputs, the same number of times each.
#[derive(Default)]
struct Processes {
    kubectl: Duration,
    plumb: Duration,
    floor: Duration,
    runs: u32,
}

/// Checks that both tools print the same bytes for every input, then times `rounds` rounds of
/// kubectl, plumb and `/bin/true` on each input in turn.
fn processes(bin: &Path, dirs: &[PathBuf], rounds: usize) -> Processes {
    for d in dirs {
        let k = run(&mut kubectl(d)).unwrap_or_else(|e| panic!("{e}"));
        let p = run(&mut plumb(bin, d)).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            k == p,
            "{}: plumb build prints other bytes than kubectl kustomize",
            d.display()
        );
    }
    let mut t = Processes::default();
    let timed = |cmd: &mut Command| {
        let start = Instant::now();
        run(cmd).unwrap_or_else(|e| panic!("{e}"));
        start.elapsed()
    };
    for _ in 0..rounds {
        for d in dirs {
            t.kubectl += timed(&mut kubectl(d));
            t.plumb += timed(&mut plumb(bin, d));
            t.floor += timed(&mut Command::new("/bin/true"));
            t.runs += 1;
        }
    }
    t
}

/// The machine's load averages (1, 5, 15 minutes), printed beside the figures: on a shared
/// machine a ratio is only comparable with one taken under a similar load.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn report(label: &str, kubectl_each: Duration, in_process: Duration, p: Option<&Processes>) {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!("{label} (load average {})", load_average());
    println!(
        "  in process: plumb-kustomize {:.3} ms per build ({:.1}x faster than a kubectl kustomize process)",
        ms(in_process),
        ratio(kubectl_each, in_process)
    );
    if let Some(p) = p {
        let n = p.runs.max(1);
        println!(
            "  as processes, {} runs each, same output bytes: kubectl kustomize {:.2} ms, plumb build {:.2} ms per render: plumb {:.1}x faster (process start floor, /bin/true: {:.2} ms)",
            p.runs,
            ms(p.kubectl / n),
            ms(p.plumb / n),
            ratio(p.kubectl, p.plumb),
            ms(p.floor / n)
        );
    }
}

fn main() {
    let rounds: usize = std::env::var("BENCH_RUNS")
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
        .unwrap_or_else(|e| panic!("generated overlay: {e}"));
    let time = |runs: usize, f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..runs {
            f();
        }
        start.elapsed() / runs as u32
    };
    let p = bin
        .as_ref()
        .map(|b| processes(b, std::slice::from_ref(&overlay), rounds));
    let k_each = match &p {
        Some(p) => p.kubectl / p.runs.max(1),
        None => time(rounds, &mut || {
            run(&mut kubectl(&overlay)).unwrap_or_else(|e| panic!("{e}"));
        }),
    };
    let ours = time(rounds * 4, &mut || {
        in_process(&tmp, &overlay);
    });
    report(
        &format!("generated overlay ({objects} objects, {rounds} rounds)"),
        k_each,
        ours,
        p.as_ref(),
    );

    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut cases: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(&fixtures)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter(|d| !d.join("expect-error").exists() && !d.join("format-exception").exists())
        .map(|d| {
            let build_dir = std::fs::read_to_string(d.join("build-path"))
                .map(|p| d.join(p.trim()))
                .unwrap_or(d.clone());
            (d, build_dir)
        })
        .collect();
    cases.sort();
    let dirs: Vec<PathBuf> = cases.iter().map(|(_, b)| b.clone()).collect();
    let rounds = rounds.min(3);
    let p = bin.as_ref().map(|b| processes(b, &dirs, rounds));
    let k_each = match &p {
        Some(p) => p.kubectl / p.runs.max(1),
        None => {
            time(1, &mut || {
                for d in &dirs {
                    run(&mut kubectl(d)).unwrap_or_else(|e| panic!("{e}"));
                }
            }) / dirs.len().max(1) as u32
        }
    };
    let ours = time(rounds, &mut || {
        for (root, b) in &cases {
            in_process(root, b);
        }
    }) / cases.len().max(1) as u32;
    report(
        &format!(
            "fixture set ({} fixtures, {rounds} rounds, one after the other)",
            cases.len()
        ),
        k_each,
        ours,
        p.as_ref(),
    );
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
