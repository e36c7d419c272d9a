//! Real git servers on loopback for the source controller's tests: a working repository driven
//! with the `git` CLI, the project's smart-HTTP git server (`plumb-git-server`) with basic or
//! bearer auth, and an OpenSSH server with generated host and client keys.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

pub use plumb_git_server::{Auth, GitServer};

/// Runs `git` in `dir` and returns trimmed stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A bare repository served to the controller, and a working clone that pushes to it.
pub struct Upstream {
    pub dir: tempfile::TempDir,
    /// `<dir>/srv/repo.git`
    pub bare: PathBuf,
    /// `<dir>/work`
    pub work: PathBuf,
}

impl Upstream {
    /// A repository with one commit on `main` holding `files`.
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let srv = dir.path().join("srv");
        std::fs::create_dir_all(&srv).unwrap();
        let bare = srv.join("repo.git");
        let work = dir.path().join("work");
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        git(
            dir.path(),
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        let up = Self { dir, bare, work };
        up.commit(files, "initial");
        up
    }

    /// Writes `files` (a content of "" deletes), commits, pushes `main`; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        self.commit_on("main", files, message)
    }

    /// Like [`commit`](Self::commit) on `branch` (created from the current HEAD when new).
    pub fn commit_on(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let _ = Command::new("git")
            .args(["checkout", "-q", "-B", branch])
            .current_dir(&self.work)
            .status();
        for (path, content) in files {
            let p = self.work.join(path);
            if content.is_empty() {
                let _ = std::fs::remove_file(&p);
            } else {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, content).unwrap();
            }
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["push", "-q", "-f", "origin", branch]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Creates an annotated tag at HEAD and pushes it; returns the commit id it points to.
    pub fn tag(&self, name: &str) -> String {
        git(&self.work, &["tag", "-a", "-m", name, name]);
        git(&self.work, &["push", "-q", "origin", name]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// The test git server (`e2e/git-server`: `git http-backend` behind HTTP on 127.0.0.1) serving
/// the bare repositories under `root`, requiring basic auth `user`/`password`.
pub async fn serve_basic(root: &Path, user: &str, password: &str) -> GitServer {
    serve(
        root,
        Auth::Basic {
            username: user.to_owned(),
            password: password.to_owned(),
        },
    )
    .await
}

/// The test git server serving the bare repositories under `root`, requiring `auth`.
pub async fn serve(root: &Path, auth: Auth) -> GitServer {
    GitServer::start(root, auth)
        .await
        .expect("start the git server")
}

/// An OpenSSH server on 127.0.0.1 accepting one generated client key for root.
pub struct SshServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The client's private key (PEM), for the Secret's `identity`.
    pub identity: String,
    /// A known_hosts line for this server.
    pub known_hosts: String,
    child: std::process::Child,
}

fn keygen(args: &[&str]) {
    let st = Command::new("ssh-keygen")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen");
    assert!(st.success(), "ssh-keygen {args:?}");
}

fn free_port() -> u16 {
    plumb_e2e_support::free_port().expect("a free loopback port")
}

impl SshServer {
    /// Starts sshd and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", &p("host_ed25519")]);
        keygen(&[
            "-q",
            "-t",
            "rsa",
            "-b",
            "2048",
            "-m",
            "PEM",
            "-N",
            "",
            "-f",
            &p("client"),
        ]);
        std::fs::copy(d.join("client.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        // Another process may take the port between free_port and sshd's bind: sshd then exits,
        // and a new port is tried.
        let (port, child) = (1..=3)
            .find_map(|attempt| Self::spawn(d, attempt))
            .expect("sshd did not start on any of three ports");
        let host_pub = std::fs::read_to_string(d.join("host_ed25519.pub")).unwrap();
        let mut fields = host_pub.split_whitespace();
        let (ty, key) = (fields.next().unwrap(), fields.next().unwrap());
        let known_hosts = format!("[127.0.0.1]:{port} {ty} {key}\n");
        let identity = std::fs::read_to_string(d.join("client")).unwrap();
        Self {
            port,
            dir,
            identity,
            known_hosts,
            child,
        }
    }

    /// Starts sshd with host key and authorized keys from `d` on a free port and waits until it
    /// accepts connections; `None` when it exited first (its log says why).
    fn spawn(d: &Path, attempt: u32) -> Option<(u16, std::process::Child)> {
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nLogLevel ERROR\n",
            p("host_ed25519"),
            p("authorized_keys"),
            p("sshd.pid"),
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let log = d.join(format!("sshd-{attempt}.log"));
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", &p("sshd_config")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start sshd (apt-get install openssh-server)");
        // Far above the moment sshd takes, so a loaded machine does not fail the test.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!(
                    "sshd on port {port} exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                return None;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sshd did not listen on port {port} within 60s: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some((port, child))
    }

    pub fn url(&self, path: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, path.display())
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate authority and a server certificate for 127.0.0.1 it signed (PEM).
pub struct TestPki {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl TestPki {
    pub fn new() -> Self {
        use openssl::asn1::Asn1Time;
        use openssl::bn::BigNum;
        use openssl::hash::MessageDigest;
        use openssl::pkey::PKey;
        use openssl::rsa::Rsa;
        use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
        use openssl::x509::{X509Builder, X509NameBuilder};
        let name = |cn: &str| {
            let mut n = X509NameBuilder::new().unwrap();
            n.append_entry_by_text("CN", cn).unwrap();
            n.build()
        };
        let ca_key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut ca = X509Builder::new().unwrap();
        ca.set_version(2).unwrap();
        ca.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        ca.set_subject_name(&name("plumb test CA")).unwrap();
        ca.set_issuer_name(&name("plumb test CA")).unwrap();
        ca.set_pubkey(&ca_key).unwrap();
        ca.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        ca.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let ca = ca.build();
        let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let mut leaf = X509Builder::new().unwrap();
        leaf.set_version(2).unwrap();
        leaf.set_serial_number(&BigNum::from_u32(2).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        leaf.set_subject_name(&name("127.0.0.1")).unwrap();
        leaf.set_issuer_name(ca.subject_name()).unwrap();
        leaf.set_pubkey(&key).unwrap();
        leaf.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        leaf.set_not_after(&Asn1Time::days_from_now(2).unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .build(&leaf.x509v3_context(Some(&ca), None))
            .unwrap();
        leaf.append_extension(san).unwrap();
        leaf.sign(&ca_key, MessageDigest::sha256()).unwrap();
        Self {
            ca_pem: ca.to_pem().unwrap(),
            cert_pem: leaf.build().to_pem().unwrap(),
            key_pem: key.private_key_to_pem_pkcs8().unwrap(),
        }
    }
}

/// A TLS terminator on 127.0.0.1 in front of a plain HTTP server on `backend_port`.
pub struct TlsProxy {
    pub port: u16,
}

impl TlsProxy {
    pub fn start(pki: &TestPki, backend_port: u16) -> Self {
        use openssl::ssl::{SslAcceptor, SslMethod};
        let mut acc = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acc.set_certificate(&openssl::x509::X509::from_pem(&pki.cert_pem).unwrap())
            .unwrap();
        acc.set_private_key(&openssl::pkey::PKey::private_key_from_pem(&pki.key_pem).unwrap())
            .unwrap();
        let acc = Arc::new(acc.build());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let acc = acc.clone();
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                    let Ok(mut tls) = acc.accept(conn) else {
                        return;
                    };
                    let Ok(mut backend) = std::net::TcpStream::connect(("127.0.0.1", backend_port))
                    else {
                        return;
                    };
                    proxy(&mut tls, &mut backend);
                });
            }
        });
        Self { port }
    }
}

/// Copies both ways between a TLS stream and a TCP stream with short read timeouts, one
/// thread: HTTP/1.1 is request/response, so turn-taking is enough for tests.
fn proxy(
    tls: &mut openssl::ssl::SslStream<std::net::TcpStream>,
    backend: &mut std::net::TcpStream,
) {
    use std::io::{ErrorKind, Read, Write};
    let short = Some(std::time::Duration::from_millis(5));
    let _ = tls.get_ref().set_read_timeout(short);
    let _ = backend.set_read_timeout(short);
    let mut buf = vec![0u8; 64 << 10];
    let idle_limit = std::time::Duration::from_secs(20);
    let mut last = std::time::Instant::now();
    loop {
        let mut moved = false;
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if backend.write_all(&buf[..n]).is_err() {
                    return;
                }
                moved = true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        match backend.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).is_err() {
                    return;
                }
                moved = true;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        if moved {
            last = std::time::Instant::now();
        } else if last.elapsed() > idle_limit {
            return;
        }
    }
}
