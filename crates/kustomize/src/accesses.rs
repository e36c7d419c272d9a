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
/// build's root. Cheap to clone into each build's options through an `Arc`. It keeps at most a
/// limit of distinct paths ([`Accesses::with_limit`]): a build of a hostile tree may look at
/// every path of it, and a caller that would not keep such a list anyway need not hold it.
#[derive(Debug)]
pub struct Accesses {
    seen: Mutex<Seen>,
}

#[derive(Debug)]
struct Seen {
    paths: BTreeSet<(Access, PathBuf)>,
    limit: usize,
    /// More than `limit` were recorded: `paths` was dropped.
    over: bool,
}

impl Default for Accesses {
    fn default() -> Self {
        Self::with_limit(usize::MAX)
    }
}

impl Accesses {
    /// Records at most `limit` distinct paths; past that it drops them all and says so.
    pub fn with_limit(limit: usize) -> Self {
        Accesses {
            seen: Mutex::new(Seen {
                paths: BTreeSet::new(),
                limit,
                over: false,
            }),
        }
    }

    /// Records that `path` was looked at as `access`.
    pub fn record(&self, access: Access, path: &Path) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.over {
            return;
        }
        seen.paths.insert((access, path.to_path_buf()));
        if seen.paths.len() > seen.limit {
            seen.paths = BTreeSet::new();
            seen.over = true;
        }
    }

    /// Everything recorded so far, sorted; `None` once more than the limit was.
    pub fn snapshot(&self) -> Option<Vec<(Access, PathBuf)>> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        (!seen.over).then(|| seen.paths.iter().cloned().collect())
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
            a.snapshot().unwrap(),
            [
                (Access::Read, PathBuf::from("/r/a")),
                (Access::Read, PathBuf::from("/r/b")),
                (Access::Probe, PathBuf::from("/r/a")),
            ]
        );
    }

    #[test]
    fn past_the_limit_nothing_is_kept() {
        let a = Accesses::with_limit(2);
        a.record(Access::Read, Path::new("/r/a"));
        a.record(Access::Read, Path::new("/r/a"));
        a.record(Access::List, Path::new("/r"));
        assert_eq!(a.snapshot().map(|s| s.len()), Some(2), "two distinct");
        a.record(Access::Read, Path::new("/r/b"));
        assert_eq!(a.snapshot(), None);
        assert!(a.seen.lock().unwrap().paths.is_empty(), "dropped");
        a.record(Access::Read, Path::new("/r/c"));
        assert_eq!(a.snapshot(), None, "and not begun again");
    }
}
