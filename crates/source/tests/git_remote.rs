//! The git layer against real servers on loopback: `git http-backend` with basic auth and an
//! OpenSSH server with known_hosts checking. No cluster needed.

// Test helpers panic on setup failures by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use plumb_api::source::GitRepositoryRef;
use plumb_artifact::IgnoreRules;
use plumb_source::git::{self, Auth, GitError, Remote};
use plumb_source::refs;
use support::{SshServer, Upstream};

fn remote(url: String, auth: Auth) -> Remote {
    let timeout = Duration::from_secs(30);
    Remote {
        url,
        auth,
        deadline: Instant::now() + timeout,
        timeout,
        limits: git::FetchLimits::default(),
    }
}

fn basic(user: &str, pass: &str) -> Auth {
    Auth {
        basic: Some((user.into(), pass.into())),
        ..Auth::default()
    }
}

/// Lists, resolves and fetches like a reconcile does; returns (revision, objects fetched).
fn poll(
    cache: &std::path::Path,
    r: &Remote,
    reference: Option<&GitRepositoryRef>,
) -> Result<(String, usize), GitError> {
    let repo = git::open_cache(cache)?;
    let listed = git::list_refs(&repo, r)?;
    let target = refs::resolve(reference, &listed).map_err(|e| GitError::Other(e.to_string()))?;
    let commit = target.commit.clone().unwrap();
    let mut objects = 0;
    if !git::has_commit(&repo, &commit) {
        objects = git::fetch(&repo, r, &target.refspecs)?.objects;
    }
    Ok((target.revision(&commit).unwrap().to_string(), objects))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn http_basic_auth_fetches_incrementally_and_lists_only_when_unchanged() {
    let up = Upstream::new(&[("app/deploy.yaml", "kind: Deployment\n")]);
    let server = support::serve_basic(up.bare.parent().unwrap(), "bot", "s3cret").await;
    let r = remote(server.url("repo.git"), basic("bot", "s3cret"));
    let cache = tempfile::tempdir().unwrap();
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let (cache_path, r2) = (cache.path().to_path_buf(), r.clone());
    let (rev, objects) = blocking(move || poll(&cache_path, &r2, None))
        .await
        .unwrap();
    assert_eq!(rev, format!("main@sha1:{c1}"));
    assert!(objects > 0, "first poll fetches");

    let (cache_path, r2) = (cache.path().to_path_buf(), r.clone());
    let (rev, objects) = blocking(move || poll(&cache_path, &r2, None))
        .await
        .unwrap();
    assert_eq!(
        (rev, objects),
        (format!("main@sha1:{c1}"), 0),
        "no new commit, nothing transferred"
    );

    let c2 = up.commit(
        &[("app/deploy.yaml", "kind: Deployment\nspec: {}\n")],
        "second",
    );
    let (cache_path, r2) = (cache.path().to_path_buf(), r.clone());
    let (rev, objects) = blocking(move || poll(&cache_path, &r2, None))
        .await
        .unwrap();
    assert_eq!(rev, format!("main@sha1:{c2}"));
    assert!(
        (1..=4).contains(&objects),
        "only the new commit's objects travel, got {objects}"
    );
}

/// `len` hex digits that do not repeat, so their pack is about half their length.
fn hex_noise(len: usize) -> String {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from_digit((x & 0xf) as u32, 16).unwrap()
        })
        .collect()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fetch_over_the_size_limit_stops_mid_transfer_and_names_the_limit() {
    // About 2 MiB of pack; the limit is 256 KiB.
    let noise = hex_noise(4 << 20);
    let up = Upstream::new(&[("noise.txt", noise.as_str())]);
    let server = support::serve_basic(up.bare.parent().unwrap(), "u", "p").await;
    let mut r = remote(server.url("repo.git"), basic("u", "p"));
    r.limits.max_fetch_bytes = 256 << 10;
    let cache = tempfile::tempdir().unwrap();
    let path = cache.path().to_path_buf();
    let err = blocking(move || poll(&path, &r, None)).await.unwrap_err();
    assert!(
        matches!(err, GitError::Limit(git::LimitExceeded::FetchSize { limit }) if limit == 256 << 10),
        "{err:?}"
    );
    assert!(err.to_string().contains("--max-fetch-size"), "{err}");
    let kept = dir_bytes(&cache.path().join("objects/pack"));
    assert!(
        kept < 1 << 20,
        "the stopped fetch left {kept} bytes of pack"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http_wrong_or_missing_password_is_an_authentication_failure() {
    let up = Upstream::new(&[("a.yaml", "a: 1\n")]);
    let server = support::serve_basic(up.bare.parent().unwrap(), "bot", "s3cret").await;
    for auth in [basic("bot", "wrong"), Auth::default()] {
        let r = remote(server.url("repo.git"), auth);
        let cache = tempfile::tempdir().unwrap();
        let err = blocking(move || poll(cache.path(), &r, None))
            .await
            .unwrap_err();
        assert!(matches!(err, GitError::Auth(_)), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_and_semver_ranges_select_the_right_commit() {
    let up = Upstream::new(&[("v", "1.0.0")]);
    let c100 = up.tag("v1.0.0");
    up.commit(&[("v", "1.1.0")], "1.1");
    let c110 = up.tag("v1.1.0");
    up.commit(&[("v", "2.0.0")], "2.0");
    let c200 = up.tag("v2.0.0");
    let server = support::serve_basic(up.bare.parent().unwrap(), "u", "p").await;
    let r = remote(server.url("repo.git"), basic("u", "p"));
    let cases = [
        (
            GitRepositoryRef {
                tag: Some("v1.0.0".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{c100}"),
        ),
        (
            GitRepositoryRef {
                semver: Some("^1".into()),
                ..Default::default()
            },
            format!("v1.1.0@sha1:{c110}"),
        ),
        (
            GitRepositoryRef {
                semver: Some(">=1.0.0".into()),
                ..Default::default()
            },
            format!("v2.0.0@sha1:{c200}"),
        ),
        (
            GitRepositoryRef {
                commit: Some(c110.clone()),
                ..Default::default()
            },
            format!("sha1:{c110}"),
        ),
        (
            GitRepositoryRef {
                name: Some("refs/heads/main".into()),
                ..Default::default()
            },
            format!("refs/heads/main@sha1:{c200}"),
        ),
    ];
    for (reference, want) in cases {
        let (r2, cache) = (r.clone(), tempfile::tempdir().unwrap());
        let got = blocking(move || {
            let (rev, _) = poll(cache.path(), &r2, Some(&reference)).unwrap();
            let repo = git::open_cache(cache.path()).unwrap();
            let commit = rev.rsplit(':').next().unwrap().to_owned();
            let tar = git::archive_commit(
                &repo,
                &commit,
                &IgnoreRules::none(),
                &git::ArchiveBounds::unbounded_in_time(),
                Vec::new(),
            )
            .unwrap();
            (rev, tar)
        })
        .await;
        assert_eq!(got.0, want);
        assert!(!got.1.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_with_known_host_fetches_and_unknown_or_wrong_host_key_is_refused() {
    let up = Upstream::new(&[("a.yaml", "a: 1\n")]);
    let sshd = SshServer::start();
    let url = sshd.url(&up.bare);
    let good = Auth {
        ssh_key: Some((sshd.identity.clone(), None)),
        known_hosts: Some(sshd.known_hosts.clone()),
        ..Auth::default()
    };
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let (r, cache) = (
        remote(url.clone(), good.clone()),
        tempfile::tempdir().unwrap(),
    );
    let (rev, _) = blocking(move || poll(cache.path(), &r, None))
        .await
        .unwrap();
    assert_eq!(rev, format!("main@sha1:{c1}"));

    let other_host = "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n";
    let wrong_key = sshd.known_hosts.replace(
        sshd.known_hosts.split_whitespace().nth(2).unwrap(),
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    );
    for (known_hosts, expect) in [
        (Some(other_host.to_owned()), "unknown"),
        (Some(wrong_key), "does not match"),
        (None, "known_hosts"),
    ] {
        let auth = Auth {
            known_hosts,
            ..good.clone()
        };
        let (r, cache) = (remote(url.clone(), auth), tempfile::tempdir().unwrap());
        let err = blocking(move || poll(cache.path(), &r, None))
            .await
            .unwrap_err();
        match err {
            GitError::Auth(msg) => assert!(msg.contains(expect), "{msg}"),
            other => panic!("expected an authentication failure, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_is_trusted_through_the_secret_ca_and_refused_without_it() {
    let up = Upstream::new(&[("a.yaml", "a: 1\n")]);
    let server = support::serve_basic(up.bare.parent().unwrap(), "bot", "s3cret").await;
    let pki = support::TestPki::new();
    let tls = support::TlsProxy::start(&pki, server.addr().port());
    let url = format!("https://127.0.0.1:{}/repo.git", tls.port);
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);

    let trusted = Auth {
        ca_pem: Some(pki.ca_pem.clone()),
        ..basic("bot", "s3cret")
    };
    let (r, cache) = (remote(url.clone(), trusted), tempfile::tempdir().unwrap());
    let (rev, objects) = blocking(move || poll(cache.path(), &r, None))
        .await
        .unwrap();
    assert_eq!(rev, format!("main@sha1:{c1}"));
    assert!(objects > 0);

    let other_ca = support::TestPki::new().ca_pem;
    for ca in [None, Some(other_ca)] {
        let auth = Auth {
            ca_pem: ca,
            ..basic("bot", "s3cret")
        };
        let (r, cache) = (remote(url.clone(), auth), tempfile::tempdir().unwrap());
        let err = blocking(move || poll(cache.path(), &r, None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, GitError::Auth(_)),
            "untrusted certificate must fail: {err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_is_sent_for_listing_and_fetching() {
    let up = Upstream::new(&[("a.yaml", "a: 1\n")]);
    let server = support::serve(
        up.bare.parent().unwrap(),
        support::Auth::Bearer("tok-123".into()),
    )
    .await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let auth = Auth {
        bearer: Some("tok-123".into()),
        ..Auth::default()
    };
    let (r, cache) = (
        remote(server.url("repo.git"), auth),
        tempfile::tempdir().unwrap(),
    );
    let (rev, objects) = blocking(move || poll(cache.path(), &r, None))
        .await
        .unwrap();
    assert_eq!(rev, format!("main@sha1:{c1}"));
    assert!(objects > 0);
    let auth = Auth {
        bearer: Some("wrong".into()),
        ..Auth::default()
    };
    let (r, cache) = (
        remote(server.url("repo.git"), auth),
        tempfile::tempdir().unwrap(),
    );
    let err = blocking(move || poll(cache.path(), &r, None))
        .await
        .unwrap_err();
    assert!(matches!(err, GitError::Auth(_)), "{err:?}");
}

/// A server that accepts connections and never answers, for as long as the test runs.
fn silent_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept() {
            held.push(conn);
        }
    });
    addr
}

/// Lists and fetches `url` (a server that never answers) with a 500 ms timeout; both must
/// end with that timeout. No process-wide socket timeout is set in these tests, so without the
/// per-operation deadline they would wait as long as the server stays silent.
fn silent_remote_times_out(url: &str) {
    for op in ["list", "fetch"] {
        let timeout = Duration::from_millis(500);
        let begun = Instant::now();
        let r = Remote {
            url: url.to_owned(),
            // Never asked for: the server does not get as far as asking.
            auth: Auth::default(),
            deadline: Instant::now() + timeout,
            timeout,
            limits: git::FetchLimits::default(),
        };
        let cache = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = cache.path().to_path_buf();
        std::thread::spawn(move || {
            let repo = git::open_cache(&path).unwrap();
            let result = match op {
                "list" => git::list_refs(&repo, &r).map(|_| ()),
                _ => git::fetch(&repo, &r, &["refs/heads/main:refs/heads/main".into()]).map(|_| ()),
            };
            let _ = tx.send(result);
        });
        let result = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{url} {op}: still waiting on the silent server"));
        assert!(
            matches!(result, Err(GitError::Timeout(t)) if t == timeout),
            "{url} {op}: {result:?}"
        );
        println!(
            "{url} {op} against a silent server returned after {:?} (timeout {timeout:?})",
            begun.elapsed()
        );
    }
}

#[test]
fn a_silent_server_ends_listing_and_fetching_at_the_repositorys_timeout() {
    silent_remote_times_out(&format!("http://{}/repo.git", silent_server()));
}

#[test]
fn a_silent_ssh_server_ends_listing_and_fetching_at_the_repositorys_timeout() {
    // libssh2 retries the waits a signal interrupts; the deadline shuts the connection down.
    silent_remote_times_out(&format!("ssh://git@{}/repo.git", silent_server()));
}
