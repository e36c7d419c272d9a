//! Safe extraction of a tar.gz artifact into an empty directory.
//!
//! The archive is untrusted input: entries with absolute paths or `..` are refused, symlinks
//! may only point inside the root, hard links and special files are refused, no entry may be
//! written through a symlinked directory, and the total unpacked size is bounded.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Bounds on what an archive may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Maximum total size of all file contents, in bytes.
    pub max_bytes: u64,
    /// Maximum number of entries.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: 512 << 20,
            max_entries: 100_000,
        }
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

/// Creates the parent directories of `rel` under `root`, refusing to pass through a symlink.
fn create_parents(root: &Path, rel: &Path) -> Result<(), UnpackError> {
    let mut dir = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            dir.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::UnsafeLink(rel.display().to_string()));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(UnpackError::UnsafePath(rel.display().to_string())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&dir)?,
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
    let (mut total, mut count, mut files) = (0u64, 0u64, 0u64);
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
        count += 1;
        if count > limits.max_entries {
            return Err(UnpackError::TooLarge(format!(
                "{} entries",
                limits.max_entries
            )));
        }
        let raw = entry.path()?.into_owned();
        let shown = raw.display().to_string();
        let Some(rel) = safe_relative(&raw) else {
            return Err(UnpackError::UnsafePath(shown));
        };
        let target = dest.join(&rel);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                create_parents(dest, &rel.join("x"))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                create_parents(dest, &rel)?;
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
                create_parents(dest, &rel)?;
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
        };
        assert!(matches!(
            unpack_tar_gz(bytes.as_slice(), dir.path(), limits),
            Err(UnpackError::TooLarge(_))
        ));
        let limits = UnpackLimits {
            max_bytes: 1000,
            max_entries: 1,
        };
        let other = dir.path().join("other");
        assert!(matches!(
            unpack_tar_gz(bytes.as_slice(), &other, limits),
            Err(UnpackError::TooLarge(_))
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
