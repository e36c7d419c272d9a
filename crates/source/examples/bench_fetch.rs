//! `make bench` figure for the source controller: a repository with a few thousand files served
//! by `git daemon` on loopback; prints time and bytes for a first clone, a no-change poll and a
//! one-commit incremental fetch, each as the controller does it (list refs, fetch if needed,
//! archive). Run: `cargo run --release -p plumb-source --example bench_fetch [-- <files>]`.

// A benchmark tool: any setup failure aborts the run with its message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plumb_artifact::IgnoreRules;
use plumb_source::git::{self, Auth, Remote};
use plumb_source::refs;

fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Poll {
    elapsed: Duration,
    objects: usize,
    bytes: usize,
    fetched: bool,
    archive_bytes: usize,
}

fn poll(cache: &Path, url: &str, last: Option<&str>) -> (String, Poll) {
    let started = Instant::now();
    let remote = Remote {
        url: url.to_owned(),
        auth: Auth::default(),
        deadline: Instant::now() + Duration::from_secs(300),
        timeout: Duration::from_secs(300),
        limits: git::FetchLimits::default(),
    };
    let repo = git::open_cache(cache).expect("cache");
    let listed = git::list_refs(&repo, &remote).expect("list");
    let target = refs::resolve(None, &listed).expect("resolve");
    let commit = target.commit.clone().expect("commit");
    if last == Some(commit.as_str()) {
        let p = Poll {
            elapsed: started.elapsed(),
            objects: 0,
            bytes: 0,
            fetched: false,
            archive_bytes: 0,
        };
        return (commit, p);
    }
    let stats = git::fetch(&repo, &remote, &target.refspecs).expect("fetch");
    let tar = git::archive_commit(
        &repo,
        &commit,
        &IgnoreRules::none(),
        &git::ArchiveBounds::unbounded_in_time(),
        Vec::new(),
    )
    .expect("archive");
    let p = Poll {
        elapsed: started.elapsed(),
        objects: stats.objects,
        bytes: stats.bytes,
        fetched: true,
        archive_bytes: tar.len(),
    };
    (commit, p)
}

fn report(what: &str, p: &Poll) {
    println!(
        "{what:<28} {:>9.1} ms  {:>10} bytes received  {:>6} objects  fetched={}  artifact={} bytes",
        p.elapsed.as_secs_f64() * 1000.0,
        p.bytes,
        p.objects,
        p.fetched,
        p.archive_bytes
    );
}

fn main() {
    let files: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    run(&work, &["init", "-q", "-b", "main"]);
    for i in 0..files {
        let dir = work.join(format!("apps/team-{:02}", i % 50));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let body = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  labels: {{team: \"{}\"}}\ndata:\n  key: \"value-{i}\"\n  blob: \"{}\"\n",
            i % 50,
            "x".repeat(200 + i % 300)
        );
        std::fs::write(dir.join(format!("cm-{i}.yaml")), body).expect("write");
    }
    run(&work, &["add", "-A"]);
    run(&work, &["commit", "-q", "-m", "initial"]);
    let srv = tmp.path().join("srv");
    std::fs::create_dir_all(&srv).expect("mkdir");
    run(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap_or_default(),
            srv.join("repo.git").to_str().unwrap_or_default(),
        ],
    );
    run(
        &work,
        &[
            "remote",
            "add",
            "origin",
            srv.join("repo.git").to_str().unwrap_or_default(),
        ],
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut daemon = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", srv.display()),
        ])
        .arg(&srv)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let cache = tmp.path().join("cache");

    println!("repository: {files} files, served by git daemon on loopback");
    let (c1, first) = poll(&cache, &url, None);
    report("first clone + archive", &first);
    let (_, noop) = poll(&cache, &url, Some(&c1));
    report("no-change poll (ls-refs)", &noop);
    std::fs::write(
        work.join("apps/team-00/cm-0.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-0}\n",
    )
    .expect("write");
    run(&work, &["commit", "-q", "-am", "change one file"]);
    run(&work, &["push", "-q", "origin", "main"]);
    let (_, incr) = poll(&cache, &url, Some(&c1));
    report("one-commit incremental", &incr);

    let _ = daemon.kill();
    let _ = daemon.wait();
}
