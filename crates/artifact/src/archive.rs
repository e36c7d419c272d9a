//! Deterministic tar.gz archives and gitignore-style exclusion rules.
//!
//! Determinism is what makes a digest mean "this tree": entries are sorted by path bytes, every
//! header has mtime 0, uid/gid 0, no user or group names, and mode 0644 or 0755. Only regular
//! files are archived (directories are implied by paths; symlinks are dropped, as Flux does), and
//! the gzip header carries no name or time.

use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// One regular file to archive: its slash-separated path relative to the archive root, whether it
/// is executable, and a handle the caller's reader turns into its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry<H> {
    /// Path inside the archive, relative, `/`-separated, without `.` or `..` components.
    pub path: String,
    /// Archived with mode 0755 when true, 0644 otherwise.
    pub executable: bool,
    /// What the reader needs to produce the contents (a blob id, a filesystem path, ...).
    pub handle: H,
}

/// Writes `entries` as a deterministic tar.gz to `out`, reading each file's bytes with `read`.
///
/// Entries are sorted by path first, so callers may pass them in any order; duplicate paths are
/// an error. Returns `out` after the gzip stream is finished (not flushed to disk).
pub fn write_tar_gz<W: Write, H>(
    out: W,
    mut entries: Vec<FileEntry<H>>,
    mut read: impl FnMut(&H) -> io::Result<Vec<u8>>,
) -> io::Result<W> {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("duplicate archive path {}", w[0].path),
        ));
    }
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for entry in &entries {
        let data = read(&entry.handle)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(if entry.executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        tar.append_data(&mut header, &entry.path, data.as_slice())?;
    }
    let gz: GzEncoder<W> = tar.into_inner()?;
    gz.finish()
}

/// Lists the regular files under `root` as archive entries, skipping `.git` directories,
/// symlinks and whatever `ignore` excludes. Use with [`write_tar_gz`] and `std::fs::read`.
pub fn dir_entries(
    root: &Path,
    ignore: &IgnoreRules,
) -> io::Result<Vec<FileEntry<std::path::PathBuf>>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        for dirent in std::fs::read_dir(&dir)? {
            let dirent = dirent?;
            let name = dirent.file_name();
            let Some(name) = name.to_str() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("non UTF-8 file name under {}", dir.display()),
                ));
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let ft = dirent.file_type()?;
            if ft.is_dir() {
                if name != ".git" && !ignore.is_ignored(&rel, true) {
                    stack.push((dirent.path(), rel));
                }
            } else if ft.is_file() && !ignore.is_ignored(&rel, false) {
                out.push(FileEntry {
                    executable: is_executable(&dirent.metadata()?),
                    path: rel,
                    handle: dirent.path(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// Exclusion rules in .gitignore syntax, matched against slash-separated relative paths.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    matcher: Option<Gitignore>,
}

/// A pattern that is not valid .gitignore syntax.
#[derive(Debug, thiserror::Error)]
#[error("ignore pattern {line:?}: {source}")]
pub struct IgnorePatternError {
    line: String,
    source: ignore::Error,
}

impl IgnoreRules {
    /// Rules that exclude nothing.
    pub fn none() -> Self {
        Self { matcher: None }
    }

    /// Parses `patterns`, one .gitignore pattern per line (blank lines and `#` comments allowed).
    pub fn parse(patterns: &str) -> Result<Self, IgnorePatternError> {
        let mut builder = GitignoreBuilder::new("");
        for line in patterns.lines() {
            builder
                .add_line(None, line)
                .map_err(|source| IgnorePatternError {
                    line: line.to_owned(),
                    source,
                })?;
        }
        let matcher = builder.build().map_err(|source| IgnorePatternError {
            line: patterns.to_owned(),
            source,
        })?;
        Ok(Self {
            matcher: Some(matcher),
        })
    }

    /// Whether `path` (relative, `/`-separated) or one of its parent directories is excluded.
    pub fn is_ignored(&self, path: &str, is_dir: bool) -> bool {
        self.matcher.as_ref().is_some_and(|m| {
            m.matched_path_or_any_parents(Path::new(path), is_dir)
                .is_ignore()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    fn entries(files: &[(&str, &str)]) -> Vec<FileEntry<String>> {
        files
            .iter()
            .map(|(p, c)| FileEntry {
                path: (*p).to_owned(),
                executable: p.ends_with(".sh"),
                handle: (*c).to_owned(),
            })
            .collect()
    }

    fn digest(files: &[(&str, &str)]) -> String {
        let bytes =
            write_tar_gz(Vec::new(), entries(files), |c| Ok(c.clone().into_bytes())).unwrap();
        hex::encode(Sha256::digest(&bytes))
    }

    #[test]
    fn same_tree_in_any_order_has_the_same_digest() {
        let a = digest(&[("b/x.yaml", "x"), ("a.yaml", "a"), ("run.sh", "#!")]);
        let b = digest(&[("run.sh", "#!"), ("a.yaml", "a"), ("b/x.yaml", "x")]);
        assert_eq!(a, b);
        assert_ne!(
            a,
            digest(&[("a.yaml", "a"), ("b/x.yaml", "y"), ("run.sh", "#!")])
        );
    }

    #[test]
    fn headers_are_zeroed_and_modes_fixed() {
        let bytes = write_tar_gz(Vec::new(), entries(&[("run.sh", "#!"), ("a", "a")]), |c| {
            Ok(c.clone().into_bytes())
        })
        .unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        let got: Vec<(String, u32, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap() + h.gid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [("a".into(), 0o644, 0, 0), ("run.sh".into(), 0o755, 0, 0)]
        );
    }

    #[test]
    fn duplicate_paths_are_refused() {
        let r = write_tar_gz(Vec::new(), entries(&[("a", "1"), ("a", "2")]), |c| {
            Ok(c.clone().into_bytes())
        });
        assert!(r.is_err());
    }

    #[test]
    fn ignore_rules_follow_gitignore_syntax() {
        let rules = IgnoreRules::parse("# comment\n*.md\n/docs/\n!keep.md\nsecret/**\n").unwrap();
        assert!(rules.is_ignored("README.md", false));
        assert!(rules.is_ignored("deep/dir/notes.md", false));
        assert!(!rules.is_ignored("keep.md", false));
        assert!(rules.is_ignored("docs/a.yaml", false));
        assert!(!rules.is_ignored("apps/docs.yaml", false));
        assert!(rules.is_ignored("secret/x/y", false));
        assert!(!rules.is_ignored("app.yaml", false));
        assert!(!IgnoreRules::none().is_ignored("README.md", false));
    }

    #[test]
    fn dir_entries_skip_git_symlinks_and_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/HEAD"), "x").unwrap();
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(root.join("app/a.yaml"), "a").unwrap();
        std::fs::write(root.join("notes.md"), "n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let rules = IgnoreRules::parse("*.md").unwrap();
        let mut paths: Vec<String> = dir_entries(root, &rules)
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        paths.sort();
        assert_eq!(paths, ["app/a.yaml"]);
    }
}
