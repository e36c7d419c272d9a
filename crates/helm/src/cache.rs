//! The chart render cache: `helm template` output by a key over the chart's content, the values
//! and every argument, so a commit that leaves a chart alone, or many Syncs of one chart with the
//! same values, run Helm once.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use indexmap::IndexMap;
use sha2::{Digest as _, Sha256};

use crate::engine::HelmError;

/// The most files and directories [`chart_digest`] reads under one chart, links followed.
pub const MAX_CHART_ENTRIES: usize = 100_000;

/// The digest of a chart directory: every file under it (hidden ones too: Helm reads
/// `.helmignore`), by relative path and content, in sorted order. Links are followed, as Helm's
/// loader does, but not back into a directory they are under (a loop), and at most
/// [`MAX_CHART_ENTRIES`] entries are read (links to links of a directory multiply them).
pub fn chart_digest(dir: &Path) -> Result<String, HelmError> {
    let mut h = Sha256::new();
    let mut walk = Walk {
        root: dir,
        under: Vec::new(),
        seen: 0,
    };
    walk.dir(Path::new(""), &mut h)?;
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A walk of a chart directory: the directories it is in (canonical), the entries read.
struct Walk<'a> {
    root: &'a Path,
    under: Vec<std::path::PathBuf>,
    seen: usize,
}

impl Walk<'_> {
    fn dir(&mut self, rel: &Path, h: &mut Sha256) -> Result<(), HelmError> {
        let here = self.root.join(rel);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HelmError::Io { path, source }
        };
        let real = here.canonicalize().map_err(io(&here))?;
        if self.under.contains(&real) {
            return Err(HelmError::Io {
                path: here,
                source: std::io::Error::other(
                    "a symlink loop: it leads back to a directory it is in",
                ),
            });
        }
        self.under.push(real);
        let mut entries: Vec<_> = fs::read_dir(&here)
            .map_err(io(&here))?
            .collect::<Result<_, _>>()
            .map_err(io(&here))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            self.seen += 1;
            if self.seen > MAX_CHART_ENTRIES {
                return Err(HelmError::Io {
                    path: self.root.to_path_buf(),
                    source: std::io::Error::other(format!(
                        "more than {MAX_CHART_ENTRIES} files and directories, links followed"
                    )),
                });
            }
            let child = rel.join(e.file_name());
            // Follow links as Helm's loader does; the source artifact holds none that leave it.
            let path = e.path();
            if path.is_dir() {
                h.update(b"d\0");
                h.update(child.as_os_str().as_encoded_bytes());
                h.update(b"\0");
                self.dir(&child, h)?;
            } else {
                let bytes = fs::read(&path).map_err(io(&path))?;
                h.update(b"f\0");
                h.update(child.as_os_str().as_encoded_bytes());
                h.update(b"\0");
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
        self.under.pop();
        Ok(())
    }
}

/// A bounded cache of rendered output, least recently used out first.
#[derive(Debug)]
pub struct ChartCache {
    max_bytes: usize,
    inner: Mutex<Entries>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    map: IndexMap<String, Arc<str>>,
    bytes: usize,
}

impl ChartCache {
    /// A cache holding at most `max_bytes` of output (0 disables it).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The output stored under `key`, marked as used.
    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let found = e.map.shift_remove(key);
        if let Some(v) = &found {
            e.map.insert(key.to_owned(), v.clone());
            self.hits.fetch_add(1, Ordering::Relaxed);
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Stores `value` under `key`, dropping the least recently used entries to make room.
    pub fn insert(&self, key: String, value: Arc<str>) {
        if value.len() > self.max_bytes {
            return;
        }
        let mut e = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = e.map.shift_remove(&key) {
            e.bytes -= old.len();
        }
        while e.bytes + value.len() > self.max_bytes {
            let Some((_, old)) = e.map.shift_remove_index(0) else {
                break;
            };
            e.bytes -= old.len();
        }
        e.bytes += value.len();
        e.map.insert(key, value);
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_content_and_names_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            fs::create_dir_all(d.join("templates")).unwrap();
            fs::write(d.join("Chart.yaml"), "name: c\n").unwrap();
            fs::write(d.join("templates/a.yaml"), "kind: A\n").unwrap();
        }
        assert_eq!(
            chart_digest(a.path()).unwrap(),
            chart_digest(b.path()).unwrap()
        );
        fs::write(b.path().join("templates/a.yaml"), "kind: B\n").unwrap();
        assert_ne!(
            chart_digest(a.path()).unwrap(),
            chart_digest(b.path()).unwrap()
        );
        fs::write(b.path().join("templates/a.yaml"), "kind: A\n").unwrap();
        fs::rename(
            b.path().join("templates/a.yaml"),
            b.path().join("templates/b.yaml"),
        )
        .unwrap();
        assert_ne!(
            chart_digest(a.path()).unwrap(),
            chart_digest(b.path()).unwrap()
        );
    }

    #[test]
    fn a_symlink_loop_in_a_chart_is_refused_not_walked() {
        let chart = tempfile::tempdir().unwrap();
        let d = chart.path();
        fs::create_dir_all(d.join("templates")).unwrap();
        fs::write(d.join("Chart.yaml"), "name: c\n").unwrap();
        // Two links back to the chart: walked, each level would double the paths.
        std::os::unix::fs::symlink("..", d.join("templates/a")).unwrap();
        std::os::unix::fs::symlink("..", d.join("templates/b")).unwrap();
        let err = chart_digest(d).unwrap_err().to_string();
        assert!(
            err.ends_with("templates/a: a symlink loop: it leads back to a directory it is in"),
            "{err}"
        );
        // A link to a directory beside the chart, not above it, is followed.
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("shared.yaml"), "kind: S\n").unwrap();
        fs::remove_file(d.join("templates/a")).unwrap();
        fs::remove_file(d.join("templates/b")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.join("templates/shared")).unwrap();
        let before = chart_digest(d).unwrap();
        fs::write(outside.path().join("shared.yaml"), "kind: T\n").unwrap();
        assert_ne!(chart_digest(d).unwrap(), before);
    }

    #[test]
    fn links_multiplying_a_chart_stop_at_the_limit() {
        // level<i> holds two links to level<i+1>: 2^17 paths without the limit.
        let chart = tempfile::tempdir().unwrap();
        let d = chart.path();
        for i in 0..17 {
            fs::create_dir_all(d.join(format!("level{i}"))).unwrap();
            for link in ["a", "b"] {
                std::os::unix::fs::symlink(
                    format!("../level{}", i + 1),
                    d.join(format!("level{i}/{link}")),
                )
                .unwrap();
            }
        }
        fs::create_dir_all(d.join("level17")).unwrap();
        fs::write(d.join("level17/x.yaml"), "x: 1\n").unwrap();
        let err = chart_digest(&d.join("level0")).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!(
                "more than {MAX_CHART_ENTRIES} files and directories, links followed"
            )),
            "{err}"
        );
    }

    #[test]
    fn the_least_recently_used_output_leaves_first() {
        let c = ChartCache::new(10);
        c.insert("a".into(), "aaaa".into());
        c.insert("b".into(), "bbbb".into());
        assert!(c.get("a").is_some());
        c.insert("c".into(), "cccc".into());
        assert!(c.get("b").is_none(), "b was used least recently");
        assert!(c.get("a").is_some() && c.get("c").is_some());
        c.insert("huge".into(), "x".repeat(11).into());
        assert!(c.get("huge").is_none(), "larger than the cache");
        assert_eq!(c.stats(), (3, 2));
    }
}
