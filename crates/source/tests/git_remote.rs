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

/// A TCP proxy on loopback to `upstream` that passes on everything the client sends and, of
/// what the server sends, at most `budget` bytes over all its connections (everything when
/// `None`). Past the budget it stops forwarding and holds both ends open, as a server that
/// stalls mid-transfer does.
struct StallingProxy {
    port: u16,
    /// Bytes of the server's passed on so far.
    forwarded: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Whether the server had more to send when the budget ran out.
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingProxy {
    fn start(upstream: u16, budget: Option<u64>) -> Self {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (f, s) = (forwarded.clone(), stalled.clone());
        std::thread::spawn(move || {
            // Connections of a stalled transfer, kept open for as long as the test runs.
            let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            for client in listener.incoming() {
                let Ok(mut client) = client else { break };
                let Ok(mut server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let (forwarded, stalled, held) = (f.clone(), s.clone(), held.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 << 10];
                    loop {
                        let n = match server.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let left =
                            budget.map_or(u64::MAX, |b| b.saturating_sub(forwarded.load(SeqCst)));
                        let pass = usize::try_from(left).unwrap_or(usize::MAX).min(n);
                        if client.write_all(&buf[..pass]).is_err() {
                            break;
                        }
                        forwarded.fetch_add(pass as u64, SeqCst);
                        if pass < n {
                            stalled.store(true, SeqCst);
                            held.lock().unwrap().push((client, server));
                            return;
                        }
                    }
                    let _ = client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self {
            port,
            forwarded,
            stalled,
        }
    }
}

#[test]
fn an_ssh_server_that_stalls_mid_pack_ends_the_fetch_at_the_repositorys_timeout() {
    use std::sync::atomic::Ordering::SeqCst;
    // About 2 MiB of pack: the transfer is mostly pack data.
    let noise = hex_noise(4 << 20);
    let up = Upstream::new(&[("noise.txt", noise.as_str())]);
    let sshd = SshServer::start();
    let through = |proxy: &StallingProxy, timeout: Duration| {
        let auth = Auth {
            ssh_key: Some((sshd.identity.clone(), None)),
            // The proxy's address is the one the client checks the host key for.
            known_hosts: Some(
                sshd.known_hosts
                    .replace(&format!("]:{} ", sshd.port), &format!("]:{} ", proxy.port)),
            ),
            ..Auth::default()
        };
        Remote {
            url: format!("ssh://root@127.0.0.1:{}{}", proxy.port, up.bare.display()),
            auth,
            deadline: Instant::now() + timeout,
            timeout,
            limits: git::FetchLimits::default(),
        }
    };

    // A whole fetch through a proxy that never stalls: how many bytes the server sends.
    let whole = StallingProxy::start(sshd.port, None);
    let r = through(&whole, Duration::from_secs(60));
    let cache = tempfile::tempdir().unwrap();
    let begun = Instant::now();
    poll(cache.path(), &r, None).unwrap();
    let whole_took = begun.elapsed();
    let total = whole.forwarded.load(SeqCst);
    assert!(total > 1 << 20, "the fetch moved only {total} bytes");

    // The same fetch into a fresh cache, the server stalling after half of that: well into
    // the pack, past the handshake, authentication and ref listing. The timeout leaves the
    // fetch ample time to get there on a loaded machine.
    let timeout = (whole_took * 3).max(Duration::from_secs(5));
    let stalling = StallingProxy::start(sshd.port, Some(total / 2));
    let r = through(&stalling, timeout);
    let cache = tempfile::tempdir().unwrap();
    let path = cache.path().to_path_buf();
    let begun = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(poll(&path, &r, None));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the fetch still waits on the stalled server");
    assert!(
        stalling.stalled.load(SeqCst),
        "the server was not stalled mid-transfer"
    );
    assert!(
        matches!(result, Err(GitError::Timeout(t)) if t == timeout),
        "{result:?}"
    );
    println!(
        "ssh fetch stalled after {} of {total} bytes returned after {:?} (timeout {timeout:?})",
        stalling.forwarded.load(SeqCst),
        begun.elapsed()
    );

    // The cache the stalled fetch used fetches whole afterwards.
    let r = through(&whole, Duration::from_secs(60));
    let (rev, _) = poll(cache.path(), &r, None).unwrap();
    let head = support::git(&up.work, &["rev-parse", "HEAD"]);
    assert_eq!(rev, format!("main@sha1:{head}"));
}
