//! The server speaks real Git: the git CLI clones through it, and wrong credentials are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::Command;

use plumb_git_server::{Auth, GitServer};

fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs")
}

fn make_repo(root: &Path) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    assert!(git(&work, &["init", "-q", "-b", "main"]).status.success());
    std::fs::write(work.join("hello.txt"), "hello\n").unwrap();
    assert!(git(&work, &["add", "."]).status.success());
    let commit = git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "first",
        ],
    );
    assert!(commit.status.success());
    let bare = root.join("repo.git");
    assert!(
        git(
            root,
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                bare.to_str().unwrap()
            ]
        )
        .status
        .success()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn git_clones_through_the_server_and_wrong_passwords_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    make_repo(&served);
    let auth = Auth::Basic {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let server = GitServer::start(&served, auth).await.unwrap();
    let base = server.url("repo.git");
    let good = base.replace("http://", "http://alice:s3cret@");
    let bad = base.replace("http://", "http://alice:wrong@");

    let dir = tmp.path().to_owned();
    let (ok, refused) = tokio::task::spawn_blocking(move || {
        let ok = git(&dir, &["clone", "-q", &good, "clone-ok"]);
        let refused = git(&dir, &["clone", "-q", &bad, "clone-bad"]);
        (ok, refused)
    })
    .await
    .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("clone-ok/hello.txt")).unwrap(),
        "hello\n"
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Authentication failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
