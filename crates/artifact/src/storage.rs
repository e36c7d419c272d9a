//! The artifact store on disk: `<root>/<kind>/<namespace>/<name>/<file>`.
//!
//! Files are written to a temporary file in the target directory while their sha256 and size
//! are computed, fsynced, then renamed into place, so a reader (or the file server) never sees a
//! half-written artifact. Paths starting with `.` are never served, which is where controllers
//! keep private state (such as the source controller's git cache) under the same root.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use plumb_api::Digest;
use sha2::{Digest as _, Sha256};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A filesystem operation failed.
    #[error("artifact storage {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A kind, namespace, name or file name that cannot be used as a path segment.
    #[error("artifact storage: invalid path segment {0:?}")]
    InvalidSegment(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `s` can be one path segment of an artifact location: non-empty, no separators, not
/// starting with a dot (so neither `..` nor hidden state is reachable).
pub fn valid_segment(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\', '\0'])
}

/// Reads a `--storage-adv-addr` value (the advertised address of an artifact server) as the
/// base of its download URLs. `host[:port]`, as Flux spells it, means `http://host[:port]`; a
/// value with a scheme (`http://` or `https://`, e.g. behind a TLS proxy) is taken as it is; an
/// empty value stays empty (the controller then advertises the address it bound).
pub fn advertised_base_url(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(String::new());
    }
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("http".to_owned(), value),
    };
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    if !matches!(scheme.as_str(), "http" | "https") {
        return Err(format!(
            "{value:?}: expected HOST[:PORT] or an http:// or https:// URL, not a {scheme}:// URL"
        ));
    }
    if host.is_empty() || host.ends_with(':') || rest.contains(char::is_whitespace) {
        return Err(format!(
            "{value:?}: expected HOST[:PORT] or an http:// or https:// URL"
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Which object an artifact belongs to: the lowercase kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    kind: String,
    namespace: String,
    name: String,
}

impl ArtifactKey {
    /// The key of an object; `kind` is lowercased (`GitRepository` → `gitrepository`).
    pub fn new(kind: &str, namespace: &str, name: &str) -> Result<Self, StorageError> {
        let kind = kind.to_ascii_lowercase();
        for s in [kind.as_str(), namespace, name] {
            if !valid_segment(s) {
                return Err(StorageError::InvalidSegment(s.to_owned()));
            }
        }
        Ok(Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `<kind>/<namespace>/<name>`, the directory of the object's artifacts relative to the root.
    pub fn rel_dir(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// A file written into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Where it is on disk.
    pub path: PathBuf,
    /// The sha256 of its content.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// The artifact store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// A store at `root`, creating the directory when missing.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        Ok(Self { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding `key`'s artifacts.
    pub fn dir(&self, key: &ArtifactKey) -> PathBuf {
        self.root
            .join(&key.kind)
            .join(&key.namespace)
            .join(&key.name)
    }

    /// The path of `file` among `key`'s artifacts.
    pub fn path(&self, key: &ArtifactKey, file: &str) -> PathBuf {
        self.dir(key).join(file)
    }

    /// The download URL of `file`: `<base>/<kind>/<namespace>/<name>/<file>`.
    pub fn url(base: &str, key: &ArtifactKey, file: &str) -> String {
        format!("{}/{}/{file}", base.trim_end_matches('/'), key.rel_dir())
    }

    /// Whether `file` exists among `key`'s artifacts.
    pub fn exists(&self, key: &ArtifactKey, file: &str) -> bool {
        self.path(key, file).is_file()
    }

    /// The digest and size of an existing file, computed by reading it.
    pub fn stat(&self, key: &ArtifactKey, file: &str) -> Result<Stored, StorageError> {
        let path = self.path(key, file);
        let mut f = fs::File::open(&path).map_err(io_err(&path))?;
        let mut hw = HashingWriter::new(io::sink());
        io::copy(&mut f, &mut hw).map_err(io_err(&path))?;
        let (digest, size, _) = hw.finish();
        Ok(Stored { path, digest, size })
    }

    /// Writes `file` atomically: `write` fills a temp file in the same directory, which is then
    /// fsynced and renamed over `file`, and the directory is fsynced. Returns digest and size.
    pub fn write_atomic<E>(
        &self,
        key: &ArtifactKey,
        file: &str,
        write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
    ) -> Result<Result<Stored, E>, StorageError> {
        if !valid_segment(file) {
            return Err(StorageError::InvalidSegment(file.to_owned()));
        }
        let dir = self.dir(key);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        let mut hw = HashingWriter::new(io::BufWriter::new(FirstError::new(tmp)));
        if let Err(e) = write(&mut hw) {
            // A failure of the file itself (a full disk, say) is the storage's, whatever error
            // type `write` turned it into; anything else is `write`'s own.
            let (_, _, buf) = hw.finish();
            let tmp = buf.into_parts().0;
            return match tmp.error {
                Some(source) => Err(StorageError::Io {
                    path: tmp.inner.path().to_path_buf(),
                    source,
                }),
                None => Ok(Err(e)),
            };
        }
        let (digest, size, buf) = hw.finish();
        let tmp = buf
            .into_inner()
            .map_err(|e| StorageError::Io {
                path: dir.clone(),
                source: e.into_error(),
            })?
            .inner;
        tmp.as_file().sync_all().map_err(io_err(tmp.path()))?;
        let path = dir.join(file);
        tmp.persist(&path).map_err(|e| StorageError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&dir))?;
        Ok(Ok(Stored { path, digest, size }))
    }

    /// Deletes all but the newest `keep` files of `key` (by modification time), never deleting
    /// `current`. Returns the deleted paths.
    pub fn gc(
        &self,
        key: &ArtifactKey,
        keep: usize,
        current: &str,
    ) -> Result<Vec<PathBuf>, StorageError> {
        let dir = self.dir(key);
        let mut files = Vec::new();
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for dirent in read {
            let dirent = dirent.map_err(io_err(&dir))?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            let meta = dirent.metadata().map_err(io_err(&dir))?;
            if !meta.is_file() || name == current {
                continue;
            }
            let mtime = meta.modified().map_err(io_err(&dir))?;
            files.push((mtime, dirent.path()));
        }
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut deleted = Vec::new();
        for (_, path) in files.into_iter().skip(keep.saturating_sub(1)) {
            fs::remove_file(&path).map_err(io_err(&path))?;
            deleted.push(path);
        }
        Ok(deleted)
    }

    /// Deletes every artifact of `key`.
    pub fn remove_all(&self, key: &ArtifactKey) -> Result<(), StorageError> {
        let dir = self.dir(key);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        }
    }
}

/// A writer that keeps (a copy of) the first error its inner writer returned.
struct FirstError<W> {
    inner: W,
    error: Option<io::Error>,
}

impl<W> FirstError<W> {
    fn new(inner: W) -> Self {
        Self { inner, error: None }
    }

    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && self.error.is_none()
        {
            self.error = Some(io::Error::new(e.kind(), e.to_string()));
        }
        result
    }
}

impl<W: Write> Write for FirstError<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

/// A writer that computes the sha256 and length of what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The digest and size of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        let hex = hex::encode(self.hasher.finalize());
        // A sha256 rendered as lowercase hex always parses as a Digest.
        let digest = Digest::from_sha256_hex(&hex).unwrap_or_else(|_| unreachable!());
        (digest, self.size, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_addresses_become_base_urls() {
        for (value, base) in [
            (
                "source-controller.plumb-system.svc.cluster.local.",
                "http://source-controller.plumb-system.svc.cluster.local.",
            ),
            ("127.0.0.1:9090", "http://127.0.0.1:9090"),
            (
                "http://render.plumb-system.svc/",
                "http://render.plumb-system.svc",
            ),
            (
                "HTTPS://artifacts.example.com/plumb",
                "https://artifacts.example.com/plumb",
            ),
            ("", ""),
        ] {
            assert_eq!(advertised_base_url(value).as_deref(), Ok(base), "{value}");
        }
        for bad in ["ftp://host", "http://", "http:", "host name:80", "://x"] {
            let err = advertised_base_url(bad).unwrap_err();
            assert!(err.contains("HOST[:PORT]"), "{bad}: {err}");
        }
    }

    fn key() -> ArtifactKey {
        ArtifactKey::new("GitRepository", "default", "app").unwrap()
    }

    fn write(s: &Storage, file: &str, data: &[u8]) -> Stored {
        s.write_atomic::<io::Error>(&key(), file, |w| w.write_all(data))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn write_atomic_places_file_and_reports_digest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path()).unwrap();
        let stored = write(&s, "a.tar.gz", b"hello");
        assert_eq!(
            stored.path,
            dir.path().join("gitrepository/default/app/a.tar.gz")
        );
        assert_eq!(stored.size, 5);
        assert_eq!(
            stored.digest.hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(s.stat(&key(), "a.tar.gz").unwrap(), stored);
        let leftovers: Vec<_> = fs::read_dir(s.dir(&key())).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path()).unwrap();
        let r = s.write_atomic(&key(), "a.tar.gz", |w| {
            w.write_all(b"partial").map_err(|_| "io")?;
            Err("boom")
        });
        assert_eq!(r.unwrap().unwrap_err(), "boom");
        assert!(!s.exists(&key(), "a.tar.gz"));
        assert_eq!(fs::read_dir(s.dir(&key())).unwrap().count(), 0);
    }

    #[test]
    fn a_failing_file_is_a_storage_error_whatever_the_writer_made_of_it() {
        let mut w = FirstError::new(FailingFile);
        let written = w.write_all(b"data").map_err(|_| "the archive's own error");
        assert!(written.is_err());
        let kept = w.error.expect("the file's error is kept");
        assert_eq!(kept.kind(), io::ErrorKind::StorageFull);
    }

    /// A file on a full disk.
    struct FailingFile;

    impl Write for FailingFile {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::StorageFull))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn gc_keeps_newest_and_current() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path()).unwrap();
        for (i, f) in ["1", "2", "3", "4"].iter().enumerate() {
            let p = write(&s, f, b"x").path;
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        // "1" is current even though it is the oldest.
        let deleted = s.gc(&key(), 2, "1").unwrap();
        assert_eq!(deleted.len(), 2);
        assert!(s.exists(&key(), "1") && s.exists(&key(), "4"));
        assert!(!s.exists(&key(), "2") && !s.exists(&key(), "3"));
        s.remove_all(&key()).unwrap();
        assert!(!s.dir(&key()).exists());
        s.remove_all(&key()).unwrap();
    }

    #[test]
    fn keys_and_files_cannot_escape_the_root() {
        assert!(ArtifactKey::new("GitRepository", "..", "x").is_err());
        assert!(ArtifactKey::new("GitRepository", "ns", "a/b").is_err());
        assert!(ArtifactKey::new("GitRepository", "ns", ".cache").is_err());
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::new(dir.path()).unwrap();
        assert!(
            s.write_atomic::<io::Error>(&key(), "../x", |_| Ok(()))
                .is_err()
        );
        assert_eq!(
            Storage::url("http://h:9090/", &key(), "f.tar.gz"),
            "http://h:9090/gitrepository/default/app/f.tar.gz"
        );
    }
}
