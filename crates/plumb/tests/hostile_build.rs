//! `plumb build` on hostile trees (`plumb_kustomize::hostile`): each must exit 1 with an error
//! naming the limit it crossed, in bounded memory. Peak memory and time are measured by GNU
//! time (`/usr/bin/time -v`) around the real binary; the table is printed, and memory (not time)
//! is asserted.

use std::path::Path;
use std::process::Command;

/// The memory `plumb build` may use on any input (the figure the README promises).
const MAX_RSS_KIB: u64 = 512 * 1024;

struct Run {
    code: Option<i32>,
    stderr: String,
    rss_kib: u64,
    seconds: f64,
}

/// Runs `plumb build --root ROOT DIR` under GNU time.
fn plumb_build(root: &Path, dir: &Path) -> Run {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_plumb"))
        .arg("build")
        .arg("--root")
        .arg(root)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/time (GNU time is needed): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let field = |name: &str| {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("GNU time printed no {name:?}:\n{stderr}"))
            .to_string()
    };
    let rss_kib = field("Maximum resident set size (kbytes):")
        .parse()
        .unwrap_or_else(|e| panic!("peak RSS: {e}"));
    // "h:mm:ss" or "m:ss.cc"
    let seconds = field("Elapsed (wall clock) time (h:mm:ss or m:ss):")
        .split(':')
        .fold(0.0, |acc, part| {
            acc * 60.0 + part.parse::<f64>().unwrap_or(0.0)
        });
    let code = field("Exit status:").parse().ok();
    Run {
        code,
        stderr,
        rss_kib,
        seconds,
    }
}

#[test]
fn hostile_trees_fail_with_the_limit_named_in_bounded_memory() {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for tree in plumb_kustomize::hostile::trees() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = (tree.write)(tmp.path()).unwrap_or_else(|e| panic!("{}: {e}", tree.name));
        let run = plumb_build(tmp.path(), &dir);
        let error = run
            .stderr
            .lines()
            .find(|l| l.starts_with("Error:"))
            .unwrap_or("")
            .to_string();
        if run.code != Some(1) {
            failures.push(format!(
                "{}: exit status {:?}\n{}",
                tree.name, run.code, run.stderr
            ));
        } else if !error.contains(tree.expect) {
            failures.push(format!(
                "{}: error does not name {:?}: {error}",
                tree.name, tree.expect
            ));
        }
        if run.rss_kib > MAX_RSS_KIB {
            failures.push(format!(
                "{}: peak RSS {} MiB is over {} MiB",
                tree.name,
                run.rss_kib / 1024,
                MAX_RSS_KIB / 1024
            ));
        }
        rows.push((tree.name, error, run.seconds, run.rss_kib));
    }
    println!("| hostile input | error | time | peak RSS |");
    println!("| --- | --- | --- | --- |");
    for (name, error, seconds, rss) in &rows {
        let error: String = error.chars().take(160).collect();
        println!(
            "| {name} | {} | {seconds:.2} s | {:.1} MiB |",
            error.replace('|', "\\|"),
            *rss as f64 / 1024.0
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
