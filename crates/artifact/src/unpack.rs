//! Safe extraction of a tar.gz artifact into an empty directory.
//!
//! The archive is untrusted input: entries with absolute paths or `..` are refused, symlinks
//! may only point inside the root, hard links and special files are refused, no entry may be
//! written through a symlinked directory, and the total unpacked size is bounded.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Bounds on what an archive may unpack to, and so on what reading the tree back costs (an
/// index of it holds every path in memory; a walk of it recurses once per directory level).
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Maximum total size of all file contents, in bytes.
    pub max_bytes: u64,
    /// Maximum number of entries, counting the directories that entries' paths imply but the
    /// archive does not hold as entries of their own.
    pub max_entries: u64,
    /// Maximum number of components in one path.
    pub max_depth: usize,
    /// Maximum total length of the paths of all entries and implied directories, in bytes.
    pub max_path_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 512 << 20,
            max_entries: 100_000,
            max_depth: 128,
            max_path_bytes: 32 << 20,
        }
    }
}

/// What an archive has used of its [`UnpackLimits`] so far.
struct Used {
    limits: UnpackLimits,
    entries: u64,
    path_bytes: u64,
}

impl Used {
    /// Counts one more entry (or implied directory) at `rel`.
    fn entry(&mut self, rel: &Path) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(UnpackError::TooLarge(format!(
                "{} entries (directories implied by paths included)",
                self.limits.max_entries
            )));
        }
        self.path_bytes = self.path_bytes.saturating_add(rel.as_os_str().len() as u64);
        if self.path_bytes > self.limits.max_path_bytes {
            return Err(UnpackError::TooLarge(format!(
                "{} bytes of paths",
                self.limits.max_path_bytes
            )));
        }
        Ok(())
    }
}

/// At most the first 80 characters of `path`, for a message about a path that may be huge.
fn shortened(path: &str) -> String {
    match path.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &path[..at]),
        None => path.to_owned(),
    }
}

/// Why an archive was refused or could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Reading the archive or writing a file failed.
    #[error("unpacking artifact: {0}")]
    Io(#[from] io::Error),
    /// An entry path is absolute or contains `..`.
    #[error("unpacking artifact: entry {0:?} escapes the root")]
    UnsafePath(String),
    /// A symlink points outside the root, or an entry would be written through a symlink.
    #[error("unpacking artifact: link {0:?} leaves the root")]
    UnsafeLink(String),
    /// A hard link, device, fifo or other entry type that artifacts never contain.
    #[error("unpacking artifact: entry {0:?} has an unsupported type")]
    UnsupportedEntry(String),
    /// The archive unpacks to more than the limit.
    #[error("unpacking artifact: exceeds the limit of {0}")]
    TooLarge(String),
}

/// The most archive bytes read between two entries: headers, GNU long names, pax extensions
/// and the data of skipped entries. The tar reader holds a long name or pax record in memory
/// whole, so without this a small gzip of a huge "long name" would exhaust memory.
pub const MAX_ENTRY_METADATA: u64 = 1 << 20;

/// A reader that fails once more than its budget has been read since the budget was last reset.
struct Metered<R> {
    inner: R,
    left: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(io::Error::other(format!(
                "more than {MAX_ENTRY_METADATA} bytes of headers, names or skipped data between \
                 two entries"
            )));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left.set(left - n as u64);
        Ok(n)
    }
}

/// Lexically normalizes a relative entry path, refusing absolute paths and `..`.
fn safe_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Whether a symlink at `link` (relative to the root) with `target` stays inside the root.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = 0;
    let parent_parts = link.parent().map(|p| p.components().count()).unwrap_or(0);
    depth += parent_parts as i64;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Creates the parent directories of `rel` under `root`, refusing to pass through a symlink;
/// each directory created is counted in `used` as an implied entry.
fn create_parents(root: &Path, rel: &Path, used: &mut Used) -> Result<(), UnpackError> {
    let mut dir = root.to_path_buf();
    let mut dir_rel = PathBuf::new();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            dir_rel.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::UnsafeLink(rel.display().to_string()));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(UnpackError::UnsafePath(rel.display().to_string())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    used.entry(&dir_rel)?;
                    fs::create_dir(&dir)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Unpacks the tar.gz `archive` into `dest` (created if missing, expected empty).
/// Returns the number of files written.
pub fn unpack_tar_gz(
    archive: impl Read,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<u64, UnpackError> {
    fs::create_dir_all(dest)?;
    let left = std::rc::Rc::new(std::cell::Cell::new(MAX_ENTRY_METADATA));
    let metered = Metered {
        inner: flate2::read::GzDecoder::new(archive),
        left: left.clone(),
    };
    let mut ar = tar::Archive::new(metered);
    let (mut total, mut files) = (0u64, 0u64);
    let mut used = Used {
        limits,
        entries: 0,
        path_bytes: 0,
    };
    for entry in ar.entries()? {
        let mut entry = entry.map_err(|e| {
            let why = e.to_string();
            if why.contains("between two entries") {
                UnpackError::TooLarge(why)
            } else {
                UnpackError::Io(e)
            }
        })?;
        // The entry's own data is bounded by the size limit below, not by the metadata budget.
        left.set(u64::MAX);
        let raw = entry.path()?.into_owned();
        let shown = raw.display().to_string();
        let Some(rel) = safe_relative(&raw) else {
            return Err(UnpackError::UnsafePath(shown));
        };
        used.entry(&rel)?;
        if rel.components().count() > limits.max_depth {
            return Err(UnpackError::TooLarge(format!(
                "{} directory levels ({})",
                limits.max_depth,
                shortened(&shown)
            )));
        }
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                // The entry's own directory is counted already: only its parents are implied.
                create_parents(dest, &rel, &mut used)?;
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(UnpackError::UnsafeLink(shown));
                    }
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(UnpackError::UnsafePath(shown)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&target)?,
                    Err(e) => return Err(e.into()),
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                create_parents(dest, &rel, &mut used)?;
                if fs::symlink_metadata(&target).is_ok() {
                    return Err(UnpackError::UnsafePath(shown));
                }
                let size = entry.header().size()?;
                total = total.saturating_add(size);
                if total > limits.max_bytes {
                    return Err(UnpackError::TooLarge(format!("{} bytes", limits.max_bytes)));
                }
                let mut out = fs::File::create(&target)?;
                // Bound the copy by the header size so a lying header cannot write more.
                io::copy(&mut (&mut entry).take(size), &mut out)?;
                #[cfg(unix)]
                if entry.header().mode()? & 0o111 != 0 {
                    use std::os::unix::fs::PermissionsExt;
                    out.set_permissions(fs::Permissions::from_mode(0o755))?;
                }
                files += 1;
            }
            tar::EntryType::Symlink => {
                let link_target = entry
                    .link_name()?
                    .ok_or_else(|| UnpackError::UnsafeLink(shown.clone()))?;
                if !link_stays_inside(&rel, &link_target) {
                    return Err(UnpackError::UnsafeLink(shown));
                }
                create_parents(dest, &rel, &mut used)?;
                #[cfg(unix)]
                std::os::unix::fs::symlink(&link_target, &target)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName => {}
            _ => return Err(UnpackError::UnsupportedEntry(shown)),
        }
        left.set(MAX_ENTRY_METADATA);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Builds a tar.gz with raw header paths, bypassing the tar crate's own path checks.
    fn archive(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            {
                let name = &mut h.as_old_mut().name;
                name[..path.len()].copy_from_slice(path.as_bytes());
            }
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            tar.append(&h, *data).unwrap();
        }
        let bytes = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        gz.finish().unwrap()
    }

    fn unpack(
        entries: &[(&str, tar::EntryType, &str, &[u8])],
    ) -> (tempfile::TempDir, Result<u64, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_tar_gz(
            archive(entries).as_slice(),
            &dir.path().join("out"),
            UnpackLimits::default(),
        );
        (dir, r)
    }

    use tar::EntryType::{Directory, Link, Regular, Symlink};

    #[test]
    fn unpacks_files_dirs_and_inside_links() {
        let (dir, r) = unpack(&[
            ("app/", Directory, "", b""),
            ("app/a.yaml", Regular, "", b"a: 1"),
            ("app/link.yaml", Symlink, "a.yaml", b""),
            ("top.yaml", Symlink, "app/../app/a.yaml", b""),
        ]);
        assert_eq!(r.unwrap(), 1);
        assert_eq!(
            fs::read_to_string(dir.path().join("out/app/link.yaml")).unwrap(),
            "a: 1"
        );
    }

    #[test]
    fn refuses_parent_and_absolute_paths() {
        assert!(matches!(
            unpack(&[("../evil", Regular, "", b"x")]).1,
            Err(UnpackError::UnsafePath(_))
        ));
        assert!(matches!(
            unpack(&[("a/../../evil", Regular, "", b"x")]).1,
            Err(UnpackError::UnsafePath(_))
        ));
        assert!(matches!(
            unpack(&[("/etc/evil", Regular, "", b"x")]).1,
            Err(UnpackError::UnsafePath(_))
        ));
    }

    #[test]
    fn refuses_links_leaving_the_root() {
        assert!(matches!(
            unpack(&[("l", Symlink, "/etc/passwd", b"")]).1,
            Err(UnpackError::UnsafeLink(_))
        ));
        assert!(matches!(
            unpack(&[("a/l", Symlink, "../../x", b"")]).1,
            Err(UnpackError::UnsafeLink(_))
        ));
        assert!(matches!(
            unpack(&[("h", Link, "/etc/passwd", b"")]).1,
            Err(UnpackError::UnsupportedEntry(_))
        ));
    }

    #[test]
    fn refuses_writing_through_a_symlinked_directory() {
        // `d -> .` stays inside, but `d/../x` style tricks must not be possible through it.
        let (_dir, r) = unpack(&[("d", Symlink, ".", b""), ("d/f", Regular, "", b"x")]);
        assert!(matches!(r, Err(UnpackError::UnsafeLink(_))));
    }

    #[test]
    fn refuses_archives_over_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = archive(&[
            ("a", Regular, "", &[0u8; 100]),
            ("b", Regular, "", &[0u8; 100]),
        ]);
        let limits = UnpackLimits {
            max_bytes: 150,
            max_entries: 10,
            ..UnpackLimits::default()
        };
        assert!(matches!(
            unpack_tar_gz(bytes.as_slice(), dir.path(), limits),
            Err(UnpackError::TooLarge(_))
        ));
        let limits = UnpackLimits {
            max_bytes: 1000,
            max_entries: 1,
            ..UnpackLimits::default()
        };
        let other = dir.path().join("other");
        assert!(matches!(
            unpack_tar_gz(bytes.as_slice(), &other, limits),
            Err(UnpackError::TooLarge(_))
        ));
    }

    /// A tar.gz of regular files at `paths` (any length: GNU long names), each holding `x`.
    fn files_at(paths: &[String]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for path in paths {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(Regular);
            h.set_size(1);
            h.set_mode(0o644);
            tar.append_data(&mut h, path, &b"x"[..]).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    fn unpack_with(bytes: &[u8], limits: UnpackLimits) -> Result<u64, UnpackError> {
        let dir = tempfile::tempdir().unwrap();
        unpack_tar_gz(bytes, &dir.path().join("out"), limits)
    }

    #[test]
    fn directories_implied_by_paths_count_as_entries() {
        let limits = UnpackLimits {
            max_entries: 20,
            ..UnpackLimits::default()
        };
        let deep = |top: &str| format!("{top}/{}/f.yaml", ["d"; 9].join("/"));
        // One file under ten directories: 11 entries.
        assert_eq!(unpack_with(&files_at(&[deep("a")]), limits).unwrap(), 1);
        // Three such files: 3 entries in the archive, 33 in the tree.
        let err = unpack_with(&files_at(&[deep("a"), deep("b"), deep("c")]), limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unpacking artifact: exceeds the limit of 20 entries (directories implied by paths \
             included)"
        );
    }

    #[test]
    fn paths_deeper_than_the_limit_are_refused() {
        let levels = |n: usize| format!("{}/f.yaml", ["d"; 200][..n].join("/"));
        let limits = UnpackLimits::default();
        assert_eq!(
            unpack_with(&files_at(&[levels(limits.max_depth - 1)]), limits).unwrap(),
            1
        );
        let err = unpack_with(&files_at(&[levels(limits.max_depth)]), limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "unpacking artifact: exceeds the limit of 128 directory levels (d/d/d/"
            ) && err.ends_with("...)"),
            "{err}"
        );
    }

    #[test]
    fn paths_longer_in_total_than_the_limit_are_refused() {
        let limits = UnpackLimits {
            max_path_bytes: 100,
            ..UnpackLimits::default()
        };
        let named = |c: &str| format!("{}.yaml", c.repeat(35));
        assert_eq!(
            unpack_with(&files_at(&[named("a"), named("b")]), limits).unwrap(),
            2
        );
        assert!(matches!(
            unpack_with(&files_at(&[named("a"), named("b"), named("c")]), limits),
            Err(UnpackError::TooLarge(m)) if m == "100 bytes of paths"
        ));
    }

    #[test]
    fn round_trips_a_deterministic_archive() {
        let entries = vec![crate::FileEntry {
            path: "x/run.sh".into(),
            executable: true,
            handle: b"#!".to_vec(),
        }];
        let bytes = crate::write_tar_gz(Vec::new(), entries, |d| Ok(d.clone())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            unpack_tar_gz(bytes.as_slice(), dir.path(), UnpackLimits::default()).unwrap(),
            1
        );
        assert_eq!(fs::read(dir.path().join("x/run.sh")).unwrap(), b"#!");
    }
}
