//! File access confined to a root directory: nothing outside it is read, whether reached by
//! `..` or by a symlink.

use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::accesses::{Access, Accesses};

/// What went wrong reaching a file.
#[derive(Debug)]
pub(crate) enum FsError {
    /// The path leaves the root (lexically or through a symlink).
    Outside(String),
    /// Nothing there.
    NotFound(String),
    /// Any other I/O failure.
    Io(String, io::Error),
    /// The file is larger than the caller allows.
    TooLarge {
        /// The file, relative to the root.
        path: String,
        /// Its size (at least; a growing file may be larger).
        size: u64,
        /// What the caller allowed.
        max: u64,
    },
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::Outside(p) => write!(f, "{p} is outside the build root"),
            FsError::NotFound(p) => write!(f, "{p} does not exist"),
            FsError::Io(p, e) => write!(f, "{p}: {e}"),
            FsError::TooLarge { path, size, max } => {
                write!(f, "{path}: {size} bytes, more than {max}")
            }
        }
    }
}

/// A directory tree that builds may read and must not leave.
#[derive(Debug, Clone)]
pub(crate) struct RootFs {
    root: PathBuf,
    /// Where what the build looks at is recorded, when the caller asked.
    log: Option<Arc<Accesses>>,
}

impl RootFs {
    /// Confine reads to `root` (resolved through symlinks once, here).
    pub(crate) fn new(root: &Path) -> Result<Self, FsError> {
        let root = root
            .canonicalize()
            .map_err(|e| FsError::Io(root.display().to_string(), e))?;
        Ok(RootFs { root, log: None })
    }

    /// The same root, recording every path looked at in `log`.
    pub(crate) fn recording(mut self, log: Option<Arc<Accesses>>) -> Self {
        self.log = log;
        self
    }

    fn note(&self, access: Access, path: &Path) {
        if let Some(log) = &self.log {
            log.record(access, path);
        }
    }

    /// Whether `path` (inside the root) is a file; recorded as a probe.
    pub(crate) fn is_file(&self, path: &Path) -> bool {
        self.note(Access::Probe, path);
        path.is_file()
    }

    /// Whether `path` (inside the root) is a directory; recorded as a probe.
    pub(crate) fn is_dir(&self, path: &Path) -> bool {
        self.note(Access::Probe, path);
        path.is_dir()
    }

    /// The canonical root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// A path for messages: relative to the root.
    pub(crate) fn show(&self, p: &Path) -> String {
        if self.root.parent().is_none() {
            return p.display().to_string();
        }
        match p.strip_prefix(&self.root) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => p.display().to_string(),
        }
    }

    /// Resolve `rel` against the directory `dir` (inside the root) to a canonical path inside the
    /// root. Missing targets are reported as `NotFound`, escapes as `Outside`.
    pub(crate) fn resolve(&self, dir: &Path, rel: &str) -> Result<PathBuf, FsError> {
        let joined = if Path::new(rel).is_absolute() {
            PathBuf::from(rel)
        } else {
            dir.join(rel)
        };
        let lexical = normalize(&joined);
        if !lexical.starts_with(&self.root) {
            return Err(FsError::Outside(rel.to_string()));
        }
        self.note(Access::Probe, &lexical);
        match lexical.canonicalize() {
            Ok(real) if real.starts_with(&self.root) => Ok(real),
            Ok(_) => Err(FsError::Outside(rel.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // A dangling or escaping symlink also lands here; tell them apart.
                if let Ok(target) = std::fs::read_link(&lexical) {
                    let t = lexical.parent().map(|p| p.join(&target)).unwrap_or(target);
                    if !normalize(&t).starts_with(&self.root) {
                        return Err(FsError::Outside(rel.to_string()));
                    }
                }
                Err(FsError::NotFound(self.show(&lexical)))
            }
            Err(e) => Err(FsError::Io(self.show(&lexical), e)),
        }
    }

    /// Read a file already resolved by [`RootFs::resolve`], refusing one of more than `max`
    /// bytes before reading it (and while reading, should it grow).
    pub(crate) fn read(&self, path: &Path, max: u64) -> Result<Vec<u8>, FsError> {
        self.note(Access::Read, path);
        let io_err = |e: io::Error| {
            if e.kind() == io::ErrorKind::NotFound {
                FsError::NotFound(self.show(path))
            } else {
                FsError::Io(self.show(path), e)
            }
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        let too_large = |size| FsError::TooLarge {
            path: self.show(path),
            size,
            max,
        };
        if size > max {
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > max {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }
}

/// Remove `.` and resolve `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escaping_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f.yaml"), "x: 1").unwrap();
        let fs = RootFs::new(&dir.path().join("a")).unwrap();
        let root = fs.root().to_path_buf();
        assert!(fs.resolve(&root, "f.yaml").is_ok());
        assert!(fs.resolve(&root, "../a/f.yaml").is_ok());
        assert!(matches!(
            fs.resolve(&root, "../../etc/passwd"),
            Err(FsError::Outside(_))
        ));
        assert!(matches!(
            fs.resolve(&root, "/etc/passwd"),
            Err(FsError::Outside(_))
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
            assert!(matches!(
                fs.resolve(&root, "link/passwd"),
                Err(FsError::Outside(_))
            ));
        }
    }

    #[test]
    fn files_over_the_allowed_size_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "0123456789").unwrap();
        let fs = RootFs::new(dir.path()).unwrap();
        let f = fs.root().join("f");
        assert_eq!(fs.read(&f, 10).unwrap().len(), 10);
        assert!(matches!(
            fs.read(&f, 9),
            Err(FsError::TooLarge {
                size: 10,
                max: 9,
                ..
            })
        ));
        assert!(matches!(
            fs.read(&fs.root().join("missing"), 9),
            Err(FsError::NotFound(_))
        ));
    }
}
