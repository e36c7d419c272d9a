//! Talking to git remotes with libgit2: credentials, TLS and SSH host verification, listing
//! refs, fetching into a bare cache, and archiving a commit's tree straight from the object
//! database. Everything here is blocking; callers run it on a blocking thread.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use git2::{
    CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions, RemoteCallbacks,
    Repository,
};
use plumb_artifact::{FileEntry, IgnoreRules, Runs, Written, write_tar_gz_reusing};

use crate::deadline::DeadlineWatch;
use crate::known_hosts::{self, HostKeyVerdict};
use crate::refs::RemoteRef;

/// Credentials and trust material from a GitRepository's `secretRef`.
#[derive(Clone, Default)]
pub struct Auth {
    /// `username` and `password` for HTTP basic auth.
    pub basic: Option<(String, String)>,
    /// `bearerToken`, sent as `Authorization: Bearer`.
    pub bearer: Option<String>,
    /// `identity`: a PEM/OpenSSH private key, with its optional `password` passphrase.
    pub ssh_key: Option<(String, Option<String>)>,
    /// `known_hosts`: the SSH host keys to trust.
    pub known_hosts: Option<String>,
    /// `ca.crt`: PEM certificates of private certificate authorities for HTTPS.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Auth {
    // Secrets never reach logs: show which kinds of credentials are present, not their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("basic", &self.basic.is_some())
            .field("bearer", &self.bearer.is_some())
            .field("ssh_key", &self.ssh_key.is_some())
            .field("known_hosts", &self.known_hosts.is_some())
            .field("ca", &self.ca_pem.is_some())
            .finish()
    }
}

impl Auth {
    /// Reads the keys plumb understands from a Secret's data.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Self {
        let text = |k: &str| {
            data.get(k).map(|v| {
                String::from_utf8_lossy(v)
                    .trim_end_matches(['\n', '\r'])
                    .to_owned()
            })
        };
        let password = text("password");
        let identity = data
            .get("identity")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        Self {
            basic: text("username").zip(password.clone()),
            bearer: text("bearerToken"),
            ssh_key: identity.map(|k| (k, password)),
            known_hosts: text("known_hosts"),
            ca_pem: data.get("ca.crt").cloned(),
        }
    }
}

/// A git failure, classified the way conditions report it.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// Credentials were refused or missing, or the server's identity could not be verified.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The operation exceeded `spec.timeout`.
    #[error("git operation timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The repository crossed one of the controller's [`FetchLimits`]; the operation stopped
    /// there.
    #[error("{0}")]
    Limit(LimitExceeded),
    /// The URL is not allowed (e.g. file:// without the controller flag).
    #[error("{0}")]
    Url(String),
    /// The git cache in the controller's storage could not be written: the disk is full,
    /// over a quota or read-only. Nothing is wrong with the repository.
    #[error("artifact storage: git cache {path}: {message}")]
    Storage {
        /// The cache directory.
        path: String,
        /// What the disk said.
        message: String,
    },
    /// Any other git or transport failure.
    #[error("git: {0}")]
    Other(String),
}

/// Bounds on what one GitRepository may make the controller download, hold and store. Each is
/// checked while the work happens, so crossing one stops the fetch or archive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Bytes of pack data one fetch may receive (`--max-fetch-size`).
    pub max_fetch_bytes: u64,
    /// Size of any single file in the archived tree (`--max-blob-size`).
    pub max_blob_bytes: u64,
    /// Entries (files and directories) in the archived tree (`--max-tree-entries`).
    pub max_tree_entries: u64,
    /// Bytes of the compressed artifact (`--max-artifact-size`).
    pub max_artifact_bytes: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_fetch_bytes: 512 << 20,
            max_blob_bytes: 64 << 20,
            max_tree_entries: 100_000,
            max_artifact_bytes: 256 << 20,
        }
    }
}

/// Which limit was crossed, with what was seen; the message names the flag that raises it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The fetch received more pack data than `--max-fetch-size`.
    #[error("fetch stopped: the remote sent more than {limit} bytes (limit --max-fetch-size)")]
    FetchSize {
        /// The limit in bytes.
        limit: u64,
    },
    /// A file in the tree is larger than `--max-blob-size`.
    #[error("file {path:?} is {size} bytes, over the limit of {limit} (--max-blob-size)")]
    BlobSize {
        /// The file's path in the tree.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The tree has more entries than `--max-tree-entries`.
    #[error("the tree has more than {limit} entries (limit --max-tree-entries)")]
    TreeEntries {
        /// The limit.
        limit: u64,
    },
    /// The compressed artifact grew past `--max-artifact-size`.
    #[error("the artifact grew past {limit} bytes (limit --max-artifact-size)")]
    ArtifactSize {
        /// The limit in bytes.
        limit: u64,
    },
}

/// Where to fetch from and with what.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The repository URL as written in the spec.
    pub url: String,
    /// Credentials and trust material.
    pub auth: Auth,
    /// Abandon the operation after this instant.
    pub deadline: Instant,
    /// The timeout, for the error message.
    pub timeout: std::time::Duration,
    /// Size bounds enforced while fetching.
    pub limits: FetchLimits,
}

/// What a fetch transferred.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Objects received from the remote.
    pub objects: usize,
    /// Bytes of pack data received.
    pub bytes: usize,
}

/// Host and port of an ssh URL (`ssh://[user@]host[:port]/path` or `user@host:path`).
pub fn ssh_host_port(url: &str) -> Option<(String, u16)> {
    if let Some(rest) = url.strip_prefix("ssh://") {
        let authority = rest.split('/').next()?;
        let hostport = authority.rsplit('@').next()?;
        if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = after
                .strip_prefix(':')
                .map(str::parse)
                .transpose()
                .ok()?
                .unwrap_or(22);
            return Some((host.to_owned(), port));
        }
        return Some(match hostport.split_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()?),
            None => (hostport.to_owned(), 22),
        });
    }
    if url.contains("://") {
        return None;
    }
    let (userhost, _) = url.split_once(':')?;
    Some((userhost.rsplit('@').next()?.to_owned(), 22))
}

/// Checks the URL scheme against what the controller allows.
pub fn check_url(url: &str, allow_file: bool) -> Result<(), GitError> {
    let ok = url.starts_with("https://")
        || url.starts_with("http://")
        || url.starts_with("ssh://")
        || (allow_file && url.starts_with("file://"))
        || (!url.contains("://") && ssh_host_port(url).is_some());
    if ok {
        Ok(())
    } else if url.starts_with("file://") {
        Err(GitError::Url(
            "file:// URLs are not allowed by this controller (--allow-file-sources)".into(),
        ))
    } else {
        Err(GitError::Url(format!(
            "unsupported URL scheme in {:?}",
            redact_userinfo(url)
        )))
    }
}

/// `url` with any `user:password@` replaced by `***@`, for messages: credentials written into
/// a URL must not reach status, Events or logs.
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => return url.to_owned(),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// What callbacks observed, to classify a libgit2 error afterwards.
#[derive(Default)]
struct Observed {
    auth_failure: Option<String>,
    cred_attempts: u32,
    timed_out: bool,
    exceeded: Option<LimitExceeded>,
}

fn verify_with_ca(ca_pem: &[u8], leaf_der: &[u8], host: &str) -> Result<(), String> {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::verify::X509VerifyParam;
    use openssl::x509::{X509, X509StoreContext};
    let cas = X509::stack_from_pem(ca_pem).map_err(|e| format!("ca.crt: {e}"))?;
    let leaf = X509::from_der(leaf_der).map_err(|e| format!("server certificate: {e}"))?;
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    for ca in cas {
        store.add_cert(ca).map_err(|e| e.to_string())?;
    }
    let mut param = X509VerifyParam::new().map_err(|e| e.to_string())?;
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => param.set_ip(ip).map_err(|e| e.to_string())?,
        Err(_) => param.set_host(host).map_err(|e| e.to_string())?,
    }
    store.set_param(&param).map_err(|e| e.to_string())?;
    let store = store.build();
    let chain = Stack::new().map_err(|e| e.to_string())?;
    let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
    ctx.init(&store, &leaf, &chain, |c| {
        let ok = c.verify_cert()?;
        Ok(if ok {
            Ok(())
        } else {
            Err(c.error().to_string())
        })
    })
    .map_err(|e| e.to_string())?
}

fn callbacks<'a>(remote: &'a Remote, observed: Rc<RefCell<Observed>>) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let auth = &remote.auth;
    let obs = observed.clone();
    cb.credentials(move |_url, username, allowed| {
        let mut o = obs.borrow_mut();
        o.cred_attempts += 1;
        // libgit2 asks again after a refusal; the second ask means the credentials were wrong.
        let refuse = |o: &mut Observed, msg: &str| {
            o.auth_failure = Some(msg.to_owned());
            Err(git2::Error::from_str(msg))
        };
        if o.cred_attempts > 1 {
            return refuse(&mut o, "the remote refused the credentials");
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if let Some((key, pass)) = &auth.ssh_key {
                return Cred::ssh_key_from_memory(username.unwrap_or("git"), None, key, pass.as_deref());
            }
            return refuse(&mut o, "the remote requires an SSH key (secret key `identity`)");
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some((user, pass)) = &auth.basic {
                return Cred::userpass_plaintext(user, pass);
            }
            return refuse(&mut o, "the remote requires credentials (secret keys `username` and `password`, or `bearerToken`)");
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username.unwrap_or("git"));
        }
        refuse(&mut o, "no usable credentials for the remote")
    });
    let obs = observed.clone();
    let url = remote.url.clone();
    cb.certificate_check(move |cert, hostname| {
        let mut o = obs.borrow_mut();
        if let Some(hostkey) = cert.as_hostkey() {
            let Some(known) = &auth.known_hosts else {
                o.auth_failure = Some(
                    "ssh requires `known_hosts` in the secret; host keys are never trusted blindly"
                        .into(),
                );
                return Err(git2::Error::from_str("no known_hosts"));
            };
            let port = ssh_host_port(&url).map(|(_, p)| p).unwrap_or(22);
            let (Some(key), Some(ty)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
                o.auth_failure = Some("the ssh server sent no usable host key".into());
                return Err(git2::Error::from_str("no host key"));
            };
            return match known_hosts::verify(known, hostname, port, ty.name(), key) {
                HostKeyVerdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
                verdict => {
                    let label = known_hosts::host_label(hostname, port);
                    let why = match verdict {
                        HostKeyVerdict::Mismatch => "does not match known_hosts",
                        HostKeyVerdict::Revoked => "is revoked in known_hosts",
                        _ => "is unknown (host not in known_hosts)",
                    };
                    o.auth_failure = Some(format!("host key of {label} ({}) {why}", ty.name()));
                    Err(git2::Error::from_str("host key verification failed"))
                }
            };
        }
        if let (Some(x509), Some(ca)) = (cert.as_x509(), &auth.ca_pem) {
            // Trusted when it chains to the secret's CA; otherwise libgit2's system-trust verdict
            // stands (passthrough), so ca.crt adds to the system roots rather than replacing them.
            if verify_with_ca(ca, x509.data(), hostname).is_ok() {
                return Ok(CertificateCheckStatus::CertificateOk);
            }
        }
        Ok(CertificateCheckStatus::CertificatePassthrough)
    });
    // Returning false from a progress callback makes libgit2 stop the transfer at once, so a
    // limit or the deadline ends the fetch where it is, not when the socket next times out.
    let deadline = remote.deadline;
    let max_fetch = remote.limits.max_fetch_bytes;
    let obs = observed.clone();
    cb.transfer_progress(move |progress| {
        let mut o = obs.borrow_mut();
        if progress.received_bytes() as u64 > max_fetch {
            o.exceeded = Some(LimitExceeded::FetchSize { limit: max_fetch });
            return false;
        }
        let late = Instant::now() > deadline;
        o.timed_out |= late;
        !late
    });
    let obs = observed;
    cb.sideband_progress(move |_| {
        let late = Instant::now() > deadline;
        obs.borrow_mut().timed_out |= late;
        !late
    });
    cb
}

fn classify(e: git2::Error, observed: &Observed, remote: &Remote, cache: &Path) -> GitError {
    if let Some(limit) = &observed.exceeded {
        return GitError::Limit(limit.clone());
    }
    if disk_refused(&e) {
        return GitError::Storage {
            path: cache.display().to_string(),
            message: e.message().to_owned(),
        };
    }
    if observed.timed_out || Instant::now() > remote.deadline {
        return GitError::Timeout(remote.timeout);
    }
    if let Some(why) = &observed.auth_failure {
        return GitError::Auth(why.clone());
    }
    let mut msg = e.message().to_owned();
    if let Some(userinfo) = remote
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once('@'))
        .map(|(userinfo, _)| userinfo)
        .filter(|u| !u.is_empty())
    {
        msg = msg.replace(userinfo, "***");
    }
    let status_401 = msg.contains("401")
        || msg.contains("403")
        || msg.to_ascii_lowercase().contains("authentication");
    if e.code() == git2::ErrorCode::Auth || e.code() == git2::ErrorCode::Certificate || status_401 {
        return GitError::Auth(msg);
    }
    if e.class() == git2::ErrorClass::Ssl {
        return GitError::Auth(format!(
            "TLS: {msg} (set `ca.crt` in the secret for a private CA)"
        ));
    }
    GitError::Other(msg)
}

/// Whether a libgit2 failure is the local disk refusing a write: full, over a quota, or
/// read-only. libgit2 reports these with the C library's text for the error number.
fn disk_refused(e: &git2::Error) -> bool {
    [libc::ENOSPC, libc::EDQUOT, libc::EROFS]
        .into_iter()
        .any(|code| {
            let text = std::io::Error::from_raw_os_error(code).to_string();
            let text = text.split(" (os error").next().unwrap_or(&text);
            e.message().contains(text)
        })
}

fn fetch_options<'a>(
    remote: &'a Remote,
    observed: Rc<RefCell<Observed>>,
) -> (FetchOptions<'a>, Vec<String>) {
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(callbacks(remote, observed));
    fo.download_tags(git2::AutotagOption::None);
    let headers: Vec<String> = remote
        .auth
        .bearer
        .iter()
        .map(|t| format!("Authorization: Bearer {t}"))
        .collect();
    (fo, headers)
}

/// Opens the bare cache repository at `path`, creating it when missing.
pub fn open_cache(path: &Path) -> Result<Repository, GitError> {
    let open = if path.join("HEAD").exists() {
        Repository::open_bare(path)
    } else {
        Repository::init_bare(path)
    };
    open.map_err(|e| {
        if disk_refused(&e) {
            GitError::Storage {
                path: path.display().to_string(),
                message: e.message().to_owned(),
            }
        } else {
            GitError::Other(format!("cache {}: {}", path.display(), e.message()))
        }
    })
}

/// A refspec no server advertises: a download with it connects and lists, and wants nothing.
const LIST_ONLY_REFSPEC: &str = "refs/plumb/list-only/nothing:refs/plumb/list-only/nothing";

/// Lists the remote's refs: one connection, no objects transferred.
pub fn list_refs(repo: &Repository, remote: &Remote) -> Result<Vec<RemoteRef>, GitError> {
    let observed = Rc::new(RefCell::new(Observed::default()));
    let mut r = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| GitError::Other(e.message().to_owned()))?;
    let to_refs = |heads: &[git2::RemoteHead<'_>]| {
        heads
            .iter()
            .map(|h| RemoteRef {
                name: h.name().to_owned(),
                oid: h.oid().to_string(),
                symref_target: h.symref_target().map(str::to_owned),
            })
            .collect::<Vec<_>>()
    };
    if remote.auth.bearer.is_some() {
        // connect() cannot send custom headers; a download of a refspec that matches nothing
        // connects with them, lists the refs and wants nothing, so no objects are transferred.
        let (mut fo, headers) = fetch_options(remote, observed.clone());
        let hs: Vec<&str> = headers.iter().map(String::as_str).collect();
        fo.custom_headers(&hs);
        let watch = deadline_watch(remote);
        let res = r
            .download(&[LIST_ONLY_REFSPEC], Some(&mut fo))
            .and_then(|()| r.list().map(to_refs));
        let _ = r.disconnect();
        drop(watch);
        return res.map_err(|e| classify(e, &observed.borrow(), remote, repo.path()));
    }
    let cb = callbacks(remote, observed.clone());
    let watch = deadline_watch(remote);
    let res = r
        .connect_auth(Direction::Fetch, Some(cb), None)
        .and_then(|conn| conn.list().map(to_refs));
    drop(watch);
    res.map_err(|e| classify(e, &observed.borrow(), remote, repo.path()))
}

/// Watches `remote`'s deadline for the current thread; over ssh, whose library retries
/// interrupted waits, the connection to the server is also shut down at the deadline.
fn deadline_watch(remote: &Remote) -> DeadlineWatch {
    match ssh_host_port(&remote.url) {
        Some((_, port)) => DeadlineWatch::start_closing(remote.deadline, port),
        None => DeadlineWatch::start(remote.deadline),
    }
}

/// Fetches `refspecs` into the cache, transferring only objects it does not have yet.
pub fn fetch(
    repo: &Repository,
    remote: &Remote,
    refspecs: &[String],
) -> Result<FetchStats, GitError> {
    let observed = Rc::new(RefCell::new(Observed::default()));
    let mut r = repo
        .remote_anonymous(&remote.url)
        .map_err(|e| GitError::Other(e.message().to_owned()))?;
    let (mut fo, headers) = fetch_options(remote, observed.clone());
    let hs: Vec<&str> = headers.iter().map(String::as_str).collect();
    fo.custom_headers(&hs);
    let watch = deadline_watch(remote);
    let fetched = r.fetch(refspecs, Some(&mut fo), None);
    drop(watch);
    fetched.map_err(|e| classify(e, &observed.borrow(), remote, repo.path()))?;
    let stats = r.stats();
    Ok(FetchStats {
        objects: stats.received_objects(),
        bytes: stats.received_bytes(),
    })
}

/// Whether the cache has `commit`.
pub fn has_commit(repo: &Repository, commit: &str) -> bool {
    git2::Oid::from_str(commit).is_ok_and(|oid| repo.find_commit(oid).is_ok())
}

/// When `commit` was made: its committer's time (the time `git log` shows with `%cI`), or
/// `None` when the cache lacks the commit.
pub fn commit_time(repo: &Repository, commit: &str) -> Option<jiff::Timestamp> {
    let oid = git2::Oid::from_str(commit).ok()?;
    let time = repo.find_commit(oid).ok()?.committer().when();
    jiff::Timestamp::from_second(time.seconds()).ok()
}

/// Whether `commit` is `tip` or one of its ancestors.
pub fn reachable_from(repo: &Repository, commit: &str, tip: &str) -> Result<bool, GitError> {
    let parse =
        |s: &str| git2::Oid::from_str(s).map_err(|e| GitError::Other(e.message().to_owned()));
    let (c, t) = (parse(commit)?, parse(tip)?);
    Ok(c == t
        || repo
            .graph_descendant_of(t, c)
            .map_err(|e| GitError::Other(e.message().to_owned()))?)
}

/// What bounds an archive: the size limits and, when set, the instant to give up at.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveBounds {
    /// Blob, entry and artifact size limits.
    pub limits: FetchLimits,
    /// Stop with [`GitError::Timeout`] after this instant (and the timeout it stands for).
    pub deadline: Option<(Instant, std::time::Duration)>,
}

impl ArchiveBounds {
    /// The default limits and no deadline (tests, benchmarks).
    pub fn unbounded_in_time() -> Self {
        Self {
            limits: FetchLimits::default(),
            deadline: None,
        }
    }
}

/// A writer that refuses to grow past `limit` bytes, noting that it did.
struct Capped<W> {
    inner: W,
    written: u64,
    limit: u64,
    exceeded: Rc<RefCell<bool>>,
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > self.limit {
            *self.exceeded.borrow_mut() = true;
            return Err(std::io::Error::other("artifact size limit"));
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the deterministic tar.gz of `commit`'s tree to `out`, leaving out what `ignore`
/// excludes, symlinks and submodules. Reads blobs straight from the object database; stops as
/// soon as the tree, a file or the artifact crosses a limit in `bounds`, or its deadline passes.
pub fn archive_commit<W: Write>(
    repo: &Repository,
    commit: &str,
    ignore: &IgnoreRules,
    bounds: &ArchiveBounds,
    out: W,
) -> Result<W, GitError> {
    archive_commit_reusing(repo, commit, ignore, bounds, &mut Runs::default(), out).map(|(w, _)| w)
}

/// Like [`archive_commit`] (the same bytes), copying the deflated runs of the archive before
/// that `runs` holds where their files' blobs are the same, so only the runs with a changed
/// file are read and compressed; `runs` then holds this archive's.
pub fn archive_commit_reusing<W: Write>(
    repo: &Repository,
    commit: &str,
    ignore: &IgnoreRules,
    bounds: &ArchiveBounds,
    runs: &mut Runs,
    out: W,
) -> Result<(W, Written), GitError> {
    let other = |e: git2::Error| GitError::Other(e.message().to_owned());
    let limits = bounds.limits;
    let late = || bounds.deadline.filter(|(at, _)| Instant::now() > *at);
    let oid = git2::Oid::from_str(commit).map_err(other)?;
    let tree = repo
        .find_commit(oid)
        .map_err(other)?
        .tree()
        .map_err(other)?;
    let mut entries = Vec::new();
    let mut bad_name = None;
    let mut seen = 0u64;
    let mut stop: Option<GitError> = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        seen += 1;
        if seen > limits.max_tree_entries {
            stop = Some(GitError::Limit(LimitExceeded::TreeEntries {
                limit: limits.max_tree_entries,
            }));
            return git2::TreeWalkResult::Abort;
        }
        let Some(name) = entry.name() else {
            bad_name = Some(format!("{dir}<non UTF-8 name>"));
            return git2::TreeWalkResult::Abort;
        };
        let path = format!("{dir}{name}");
        match entry.kind() {
            Some(git2::ObjectType::Tree) if ignore.is_ignored(&path, true) => {
                git2::TreeWalkResult::Skip
            }
            Some(git2::ObjectType::Blob) => {
                let mode = entry.filemode();
                // 0o120000 is a symlink: dropped, as in Flux, so artifacts hold regular files only.
                if (mode == 0o100644 || mode == 0o100755) && !ignore.is_ignored(&path, false) {
                    entries.push(FileEntry {
                        path,
                        executable: mode == 0o100755,
                        handle: entry.id(),
                    });
                }
                git2::TreeWalkResult::Ok
            }
            _ => git2::TreeWalkResult::Ok,
        }
    })
    // An aborted walk is an error from libgit2; what aborted it is reported below instead.
    .or_else(|e| {
        if stop.is_some() || bad_name.is_some() {
            Ok(())
        } else {
            Err(e)
        }
    })
    .map_err(other)?;
    if let Some(e) = stop {
        return Err(e);
    }
    if let Some(name) = bad_name {
        return Err(GitError::Other(format!("file name is not UTF-8: {name}")));
    }
    let odb = repo.odb().map_err(other)?;
    // The path of each blob, to name a file that crosses the blob limit.
    let paths: std::collections::HashMap<git2::Oid, String> =
        entries.iter().map(|e| (e.handle, e.path.clone())).collect();
    let stop = RefCell::new(None);
    let exceeded = Rc::new(RefCell::new(false));
    let capped = Capped {
        inner: out,
        written: 0,
        limit: limits.max_artifact_bytes,
        exceeded: exceeded.clone(),
    };
    let blob_id = |oid: &git2::Oid| Some(oid.as_bytes().to_vec());
    let result = write_tar_gz_reusing(
        capped,
        entries,
        blob_id,
        |oid| {
            let fail = |e: GitError| {
                let msg = e.to_string();
                *stop.borrow_mut() = Some(e);
                std::io::Error::other(msg)
            };
            if let Some((_, timeout)) = late() {
                return Err(fail(GitError::Timeout(timeout)));
            }
            // The header gives the size without inflating the object.
            let (size, _) = odb
                .read_header(*oid)
                .map_err(|e| std::io::Error::other(e.message().to_owned()))?;
            if size as u64 > limits.max_blob_bytes {
                return Err(fail(GitError::Limit(LimitExceeded::BlobSize {
                    path: paths.get(oid).cloned().unwrap_or_default(),
                    size: size as u64,
                    limit: limits.max_blob_bytes,
                })));
            }
            repo.find_blob(*oid)
                .map(|b| b.content().to_vec())
                .map_err(|e| std::io::Error::other(e.message().to_owned()))
        },
        runs,
    );
    match result {
        Ok((capped, written)) => Ok((capped.inner, written)),
        Err(_) if *exceeded.borrow() => Err(GitError::Limit(LimitExceeded::ArtifactSize {
            limit: limits.max_artifact_bytes,
        })),
        Err(e) => Err(stop
            .into_inner()
            .unwrap_or_else(|| GitError::Other(format!("archiving {commit}: {e}")))),
    }
}

/// How long libgit2 waits for a git server to accept a connection.
const CONNECT_TIMEOUT_MS: i32 = 30_000;
/// How long libgit2 waits for a git server to send or accept data on an open connection.
const IO_TIMEOUT_MS: i32 = 60_000;

/// Bounds libgit2's socket waits process-wide, so a server that accepts a connection and then
/// says nothing cannot hold a fetch thread forever. Over http(s) and git:// a stalled wait ends
/// at the GitRepository's own `spec.timeout` already ([`crate::deadline`]), over ssh too on
/// Linux; these settings are the bound elsewhere. Call it once at start-up, before
/// any thread exists.
pub fn bound_network_waits() {
    // SAFETY: libgit2 keeps these options in unsynchronised C globals; callers run this before
    // spawning any thread (see the controller's `main`), so nothing reads them concurrently.
    #[allow(unsafe_code)]
    let result = unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS)
            .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(IO_TIMEOUT_MS))
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not bound git network waits");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_yield_host_and_port() {
        assert_eq!(
            ssh_host_port("ssh://git@127.0.0.1:2222/repo.git"),
            Some(("127.0.0.1".into(), 2222))
        );
        assert_eq!(
            ssh_host_port("ssh://github.com/org/repo"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(
            ssh_host_port("git@github.com:org/repo.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(
            ssh_host_port("ssh://git@[::1]:2200/r"),
            Some(("::1".into(), 2200))
        );
        assert_eq!(ssh_host_port("https://github.com/org/repo"), None);
    }

    #[test]
    fn credentials_in_urls_are_redacted_from_messages() {
        assert_eq!(
            redact_userinfo("https://bot:hunter2@git.example.com/r.git"),
            "https://***@git.example.com/r.git"
        );
        assert_eq!(
            redact_userinfo("https://git.example.com/a@b"),
            "https://git.example.com/a@b"
        );
        let err = check_url("ftp://bot:hunter2@x/y", false)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn file_urls_need_the_flag() {
        assert!(check_url("file:///tmp/repo", false).is_err());
        assert!(check_url("file:///tmp/repo", true).is_ok());
        assert!(check_url("https://x/y", false).is_ok());
        assert!(check_url("git@github.com:o/r.git", false).is_ok());
        assert!(check_url("ftp://x/y", true).is_err());
    }

    #[test]
    fn secret_data_maps_to_auth_without_leaking_in_debug() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("username".to_owned(), b"bot".to_vec()),
            ("password".to_owned(), b"hunter2\n".to_vec()),
        ]
        .into();
        let auth = Auth::from_secret_data(&data);
        assert_eq!(auth.basic, Some(("bot".into(), "hunter2".into())));
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    fn commit_tree(repo: &Repository, files: &[(&str, &[u8], i32)]) -> String {
        let mut index = git2::Index::new().unwrap();
        for (path, data, mode) in files {
            let oid = repo.blob(data).unwrap();
            let entry = git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: *mode as u32,
                uid: 0,
                gid: 0,
                file_size: data.len() as u32,
                id: oid,
                flags: path.len() as u16,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).unwrap();
        }
        let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        repo.commit(None, &sig, &sig, "c", &tree, &[])
            .unwrap()
            .to_string()
    }

    fn archive_paths(bytes: &[u8]) -> Vec<(String, u32)> {
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        ar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                )
            })
            .collect()
    }

    fn bounds(limits: FetchLimits) -> ArchiveBounds {
        ArchiveBounds {
            limits,
            deadline: None,
        }
    }

    #[test]
    fn archiving_stops_at_each_limit_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let big = vec![7u8; 4096];
        let files: Vec<(String, &[u8], i32)> = (0..10)
            .map(|i| (format!("d/f{i}.yaml"), b"a: 1\n".as_slice(), 0o100644))
            .chain([("big.bin".to_owned(), big.as_slice(), 0o100644)])
            .collect();
        let refs: Vec<(&str, &[u8], i32)> =
            files.iter().map(|(p, d, m)| (p.as_str(), *d, *m)).collect();
        let c = commit_tree(&repo, &refs);
        let none = IgnoreRules::none();
        // The default limits with one of them lowered by `lower`.
        let limited = |lower: fn(&mut FetchLimits)| {
            let mut limits = FetchLimits::default();
            lower(&mut limits);
            archive_commit(&repo, &c, &none, &bounds(limits), Vec::new())
        };

        let err = limited(|l| l.max_blob_bytes = 4095).unwrap_err();
        assert!(
            matches!(&err, GitError::Limit(LimitExceeded::BlobSize { path, size: 4096, .. }) if path == "big.bin"),
            "{err:?}"
        );
        assert!(err.to_string().contains("--max-blob-size"));

        // 12 entries: the directory `d`, its 10 files and big.bin.
        let err = limited(|l| l.max_tree_entries = 11).unwrap_err();
        assert!(
            matches!(
                err,
                GitError::Limit(LimitExceeded::TreeEntries { limit: 11 })
            ),
            "{err:?}"
        );
        assert!(limited(|l| l.max_tree_entries = 12).is_ok());

        let err = limited(|l| l.max_artifact_bytes = 64).unwrap_err();
        assert!(
            matches!(
                err,
                GitError::Limit(LimitExceeded::ArtifactSize { limit: 64 })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_file_name_that_is_not_utf8_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut index = git2::Index::new().unwrap();
        let oid = repo.blob(b"a: 1").unwrap();
        let path = b"bad-\xff.yaml".to_vec();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: 0o100644,
                uid: 0,
                gid: 0,
                file_size: 4,
                id: oid,
                flags: path.len() as u16,
                flags_extended: 0,
                path,
            })
            .unwrap();
        let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
        let sig = git2::Signature::new("t", "t@example.com", &git2::Time::new(0, 0)).unwrap();
        let c = repo
            .commit(None, &sig, &sig, "c", &tree, &[])
            .unwrap()
            .to_string();
        let err = archive_commit(
            &repo,
            &c,
            &IgnoreRules::none(),
            &ArchiveBounds::unbounded_in_time(),
            Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn archiving_past_the_deadline_is_a_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let c = commit_tree(&repo, &[("a.yaml", b"a: 1", 0o100644)]);
        let past = ArchiveBounds {
            limits: FetchLimits::default(),
            deadline: Some((Instant::now(), std::time::Duration::from_secs(5))),
        };
        std::thread::sleep(std::time::Duration::from_millis(5));
        let err = archive_commit(&repo, &c, &IgnoreRules::none(), &past, Vec::new()).unwrap_err();
        assert!(matches!(err, GitError::Timeout(_)), "{err:?}");
    }

    #[test]
    fn archive_of_a_commit_is_deterministic_and_applies_ignore() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let files: &[(&str, &[u8], i32)] = &[
            ("z.yaml", b"z", 0o100644),
            ("apps/a.yaml", b"a", 0o100644),
            ("apps/run.sh", b"#!/bin/sh", 0o100755),
            ("docs/readme.md", b"r", 0o100644),
            ("link", b"apps/a.yaml", 0o120000),
        ];
        let c1 = commit_tree(&repo, files);
        let none = IgnoreRules::none();
        let a = archive_commit(
            &repo,
            &c1,
            &none,
            &ArchiveBounds::unbounded_in_time(),
            Vec::new(),
        )
        .unwrap();
        let b = archive_commit(
            &repo,
            &c1,
            &none,
            &ArchiveBounds::unbounded_in_time(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(a, b, "same commit, same bytes");
        assert_eq!(
            archive_paths(&a),
            [
                ("apps/a.yaml".into(), 0o644),
                ("apps/run.sh".into(), 0o755),
                ("docs/readme.md".into(), 0o644),
                ("z.yaml".into(), 0o644)
            ]
        );
        let ignore = IgnoreRules::parse("docs/\n*.sh").unwrap();
        let c = archive_commit(
            &repo,
            &c1,
            &ignore,
            &ArchiveBounds::unbounded_in_time(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            archive_paths(&c),
            [("apps/a.yaml".into(), 0o644), ("z.yaml".into(), 0o644)]
        );
    }

    #[test]
    fn the_next_commit_reads_only_the_runs_with_a_changed_blob_into_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let tree = |changed: usize| -> Vec<(String, Vec<u8>)> {
            (0..2000)
                .map(|i| {
                    let body = format!("app: {i}\nv: {}\n", u8::from(i == changed));
                    (format!("apps/{i}/app.yaml"), body.into_bytes())
                })
                .collect()
        };
        let commit = |files: &[(String, Vec<u8>)]| {
            let files: Vec<(&str, &[u8], i32)> = files
                .iter()
                .map(|(p, d)| (p.as_str(), d.as_slice(), 0o100644))
                .collect();
            commit_tree(&repo, &files)
        };
        let (c1, c2) = (commit(&tree(usize::MAX)), commit(&tree(1234)));
        let unbounded = ArchiveBounds::unbounded_in_time();
        let none = IgnoreRules::none();
        let mut runs = Runs::default();
        let (first, cost) =
            archive_commit_reusing(&repo, &c1, &none, &unbounded, &mut runs, Vec::new()).unwrap();
        assert_eq!(cost.files_read, 2000);
        let (second, cost) =
            archive_commit_reusing(&repo, &c2, &none, &unbounded, &mut runs, Vec::new()).unwrap();
        assert_eq!(
            (cost.runs_deflated, cost.files_read < 300),
            (1, true),
            "{cost:?}"
        );
        assert_eq!(
            first,
            archive_commit(&repo, &c1, &none, &unbounded, Vec::new()).unwrap()
        );
        assert_eq!(
            second,
            archive_commit(&repo, &c2, &none, &unbounded, Vec::new()).unwrap()
        );
        assert_ne!(first, second);
    }
}
