//! What a build looked at in its tree: every file it read, every path whose existence or kind it
//! asked about, and every directory it listed. A caller that keeps the list can tell, for a new
//! version of the tree, whether the build could come out differently: only if one of these
//! changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How a path was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// The file's content was read.
    Read,
    /// Whether the path exists, and as what (file, directory), was asked.
    Probe,
    /// The directory's entries were listed.
    List,
}

/// The paths a build (or several, sharing it) looked at, as given: absolute paths under the
/// build's root. Cheap to clone into each build's options through an `Arc`.
#[derive(Debug, Default)]
pub struct Accesses {
    seen: Mutex<BTreeSet<(Access, PathBuf)>>,
}

impl Accesses {
    /// Records that `path` was looked at as `access`.
    pub fn record(&self, access: Access, path: &Path) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert((access, path.to_path_buf()));
    }

    /// Everything recorded so far, sorted.
    pub fn snapshot(&self) -> Vec<(Access, PathBuf)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_access_is_kept_once_in_order() {
        let a = Accesses::default();
        a.record(Access::Read, Path::new("/r/b"));
        a.record(Access::Probe, Path::new("/r/a"));
        a.record(Access::Read, Path::new("/r/b"));
        a.record(Access::Read, Path::new("/r/a"));
        assert_eq!(
            a.snapshot(),
            [
                (Access::Read, PathBuf::from("/r/a")),
                (Access::Read, PathBuf::from("/r/b")),
                (Access::Probe, PathBuf::from("/r/a")),
            ]
        );
    }
}
