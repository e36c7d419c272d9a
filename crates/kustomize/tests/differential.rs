//! Differential test: every fixture under `tests/fixtures/` is built by this engine and by
//! `kubectl kustomize` (the oracle); both must produce the same objects in the same order, and
//! the same bytes unless the fixture lists a known formatting exception.
//!
//! Fixture layout: the fixture directory is the build root. The kustomization built is the
//! fixture directory itself, or the relative path in a `build-path` file. A fixture expected to
//! fail has an `expect-error` file holding a substring of this engine's message; kubectl must
//! fail too. A `format-exception` file (with the reason) tolerates byte differences.

use plumb_kustomize::{BuildOptions, build, to_yaml};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Outcome {
    name: String,
    failure: Option<String>,
    byte_identical: bool,
}

fn read_opt(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

fn parse(text: &str) -> Result<Vec<Value>, String> {
    plumb_kustomize::yaml::parse_documents(text, plumb_kustomize::yaml::ScalarMode::Typed)
        .map(|docs| docs.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| e.to_string())
}

fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}: kubectl {x:?} / plumb {y:?}", i + 1);
        }
    }
    format!(
        "lengths differ: kubectl {} lines / plumb {} lines",
        a.lines().count(),
        b.lines().count()
    )
}

fn run_fixture(dir: &Path) -> Outcome {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let build_dir = match read_opt(dir, "build-path") {
        Some(p) => dir.join(p),
        None => dir.to_path_buf(),
    };
    let kubectl = Command::new("kubectl")
        .arg("kustomize")
        .arg(&build_dir)
        .output();
    let kubectl = match kubectl {
        Ok(o) => o,
        Err(e) => {
            return Outcome {
                name,
                failure: Some(format!("cannot run kubectl: {e}")),
                byte_identical: false,
            };
        }
    };
    let ours = build(dir, &build_dir, &BuildOptions::default());
    let fail = |name: String, msg: String| Outcome {
        name,
        failure: Some(msg),
        byte_identical: false,
    };
    if let Some(expected) = read_opt(dir, "expect-error") {
        if kubectl.status.success() {
            return fail(
                name,
                "kubectl succeeded but the fixture expects an error".into(),
            );
        }
        return match ours {
            Ok(_) => fail(
                name,
                format!(
                    "plumb succeeded but kubectl failed: {}",
                    String::from_utf8_lossy(&kubectl.stderr)
                ),
            ),
            Err(e) if e.to_string().contains(&expected) => Outcome {
                name,
                failure: None,
                byte_identical: true,
            },
            Err(e) => fail(
                name,
                format!("error {:?} does not contain {expected:?}", e.to_string()),
            ),
        };
    }
    if !kubectl.status.success() {
        return fail(
            name,
            format!(
                "kubectl failed: {}",
                String::from_utf8_lossy(&kubectl.stderr)
            ),
        );
    }
    let ours = match ours {
        Ok(objs) => to_yaml(&objs),
        Err(e) => return fail(name, format!("plumb failed: {e}")),
    };
    let theirs = String::from_utf8_lossy(&kubectl.stdout).into_owned();
    let (a, b) = match (parse(&theirs), parse(&ours)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) => return fail(name, format!("cannot parse kubectl output: {e}")),
        (_, Err(e)) => return fail(name, format!("cannot parse plumb output: {e}\n{ours}")),
    };
    if a != b {
        return fail(
            name,
            format!("different objects: {}", first_difference(&theirs, &ours)),
        );
    }
    if theirs == ours {
        return Outcome {
            name,
            failure: None,
            byte_identical: true,
        };
    }
    if read_opt(dir, "format-exception").is_some() {
        return Outcome {
            name,
            failure: None,
            byte_identical: false,
        };
    }
    fail(
        name,
        format!(
            "same objects, different bytes: {}",
            first_difference(&theirs, &ours)
        ),
    )
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let ft = entry.file_type()?;
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// `--reorder none` check: the fixture's top kustomization with `sortOptions: {order: fifo}`
/// added, built by kubectl, must equal this engine's unsorted build of the original.
fn fifo_check(dir: &Path, scratch: &Path, checked: &AtomicUsize) -> Option<String> {
    let rel = read_opt(dir, "build-path").unwrap_or_default();
    let kfile = dir.join(&rel).join("kustomization.yaml");
    let text = std::fs::read_to_string(&kfile).ok()?;
    if read_opt(dir, "expect-error").is_some() || text.contains("sortOptions") {
        return None;
    }
    let copy = scratch.join(dir.file_name()?);
    let _ = std::fs::remove_dir_all(&copy);
    if let Err(e) = copy_tree(dir, &copy) {
        return Some(format!("copying fixture: {e}"));
    }
    let ktext = format!("{}\nsortOptions:\n  order: fifo\n", text.trim_end());
    if let Err(e) = std::fs::write(copy.join(&rel).join("kustomization.yaml"), ktext) {
        return Some(format!("writing fixture copy: {e}"));
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(copy.join(&rel))
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&copy);
    if !out.status.success() {
        return None;
    }
    let opts = BuildOptions {
        reorder: plumb_kustomize::Reorder::None,
        ..BuildOptions::default()
    };
    let ours = match build(dir, &dir.join(&rel), &opts) {
        Ok(objs) => to_yaml(&objs),
        Err(e) => return Some(format!("plumb --reorder none failed: {e}")),
    };
    let theirs = String::from_utf8_lossy(&out.stdout).into_owned();
    checked.fetch_add(1, Ordering::Relaxed);
    match (parse(&theirs), parse(&ours)) {
        (Ok(a), Ok(b)) if a == b => None,
        _ => Some(format!(
            "--reorder none differs from fifo: {}",
            first_difference(&theirs, &ours)
        )),
    }
}

#[test]
fn fixtures_match_kubectl_kustomize() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    if let Ok(only) = std::env::var("FIXTURE") {
        dirs.retain(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(&only))
        });
    }
    let scratch_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let scratch = scratch_dir.path().to_path_buf();
    let fifo_checked = AtomicUsize::new(0);
    let queue = Mutex::new(dirs.clone());
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get() * 2)
        .unwrap_or(4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                    let Some(dir) = next else { break };
                    let mut outcome = run_fixture(&dir);
                    if outcome.failure.is_none()
                        && let Some(f) = fifo_check(&dir, &scratch, &fifo_checked)
                    {
                        outcome.failure = Some(f);
                    }
                    if let Ok(mut r) = results.lock() {
                        r.push(outcome);
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by(|a, b| a.name.cmp(&b.name));
    let identical = results
        .iter()
        .filter(|r| r.failure.is_none() && r.byte_identical)
        .count();
    let failures: Vec<&Outcome> = results.iter().filter(|r| r.failure.is_some()).collect();
    for f in &failures {
        println!("FAIL {}: {}", f.name, f.failure.as_deref().unwrap_or(""));
    }
    println!("{identical}/{} fixtures byte-identical", results.len());
    println!(
        "{} fixtures also match with --reorder none (kubectl with sortOptions fifo)",
        fifo_checked.load(Ordering::Relaxed)
    );
    println!(
        "{}/{} fixtures match kubectl kustomize",
        results.len() - failures.len(),
        results.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ from kubectl kustomize",
        failures.len(),
        results.len()
    );
}
