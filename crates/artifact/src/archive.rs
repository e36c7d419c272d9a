//! Deterministic tar.gz archives and gitignore-style exclusion rules.
//!
//! Determinism is what makes a digest mean "this tree": entries are sorted by path bytes, every
//! header has mtime 0, uid/gid 0, no user or group names, and mode 0644 or 0755. Only regular
//! files are archived (directories are implied by paths; symlinks are dropped, as Flux does), and
//! the gzip header carries no name or time.
//!
//! The gzip stream is one member whose deflate data is made of *runs*: the entries are cut into
//! runs at paths chosen by a hash of the path alone (about one in [`RUN_CUT`]), and each run is
//! deflated on its own, ending on a byte boundary (a sync flush), as `pigz` makes its blocks.
//! Any gzip reader reads it as one stream. What the archive of a tree is does not depend on how
//! it was made, so a writer that remembers the runs of the last archive ([`Runs`]) copies the
//! deflated bytes of every run whose entries are the same (same paths, modes and content ids)
//! instead of reading and compressing them again: a commit that changes one file of thousands
//! deflates one run.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha2::{Digest as _, Sha256};

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

/// A path ends a run when the hash of its bytes is a multiple of this: runs of this many
/// entries on average, cut at the same paths whatever else the tree holds, so a change to one
/// file (or a file added or removed) changes one run.
pub const RUN_CUT: u64 = 64;

/// The most entries one run holds (a long stretch of paths none of which ends a run is cut
/// here).
const RUN_MAX_ENTRIES: usize = 256;

/// The deflated bytes of the runs of one archive kept for the next at most: a repository whose
/// artifact is larger keeps only its first runs this large (memory, not correctness).
pub const RUNS_KEPT_BYTES: usize = 16 << 20;

/// The gzip header: deflate, no flags, mtime 0, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The compression level of every run.
fn level() -> Compression {
    Compression::default()
}

/// One run, deflated: its bytes (ending on a byte boundary, not the last block of the stream)
/// and the CRC-32 and length of the tar bytes they inflate to.
#[derive(Debug)]
struct Run {
    deflated: Vec<u8>,
    crc: Crc,
}

/// The deflated runs of the last archive written with [`write_tar_gz_reusing`], by the digest
/// of their entries (paths, modes and content ids).
#[derive(Debug, Default)]
pub struct Runs {
    kept: HashMap<[u8; 32], Arc<Run>>,
}

impl Runs {
    /// How many runs are kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether no run is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

/// What writing one archive cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Runs deflated.
    pub runs_deflated: u64,
    /// Runs whose deflated bytes were copied from the archive before.
    pub runs_reused: u64,
    /// Files read (through the caller's reader).
    pub files_read: u64,
    /// Tar bytes deflated.
    pub bytes_deflated: u64,
}

/// FNV-1a of `bytes`: fixed forever, as it decides where runs end and so what the archive of a
/// tree is.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where the runs of `entries` (sorted) end: the index one past each run's last entry.
fn run_ends<H>(entries: &[FileEntry<H>]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, entry) in entries.iter().enumerate() {
        if fnv1a(entry.path.as_bytes()).is_multiple_of(RUN_CUT) || i + 1 - start == RUN_MAX_ENTRIES
        {
            ends.push(i + 1);
            start = i + 1;
        }
    }
    if start < entries.len() {
        ends.push(entries.len());
    }
    ends
}

/// The digest a run is kept by, or `None` when an entry has no content id.
fn run_key<H>(run: &[FileEntry<H>], id: &impl Fn(&H) -> Option<Vec<u8>>) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    for entry in run {
        let id = id(&entry.handle)?;
        h.update((entry.path.len() as u64).to_le_bytes());
        h.update(entry.path.as_bytes());
        h.update([u8::from(entry.executable)]);
        h.update((id.len() as u64).to_le_bytes());
        h.update(&id);
    }
    Some(h.finalize().into())
}

/// Deflates `input` into `out` with `flush`, growing `out` as needed.
fn deflate(
    c: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.len().max(4096));
        }
        let before = c.total_in();
        let status = c
            .compress_vec(input, out, flush)
            .map_err(io::Error::other)?;
        let used = usize::try_from(c.total_in() - before).unwrap_or(input.len());
        input = &input[used.min(input.len())..];
        // Output room left over means deflate had nothing more to give for this flush.
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => input.is_empty() && out.len() < out.capacity(),
        };
        if done {
            return Ok(());
        }
    }
}

/// The tar header of `entry` with `size` bytes of content.
fn header<H>(entry: &FileEntry<H>, size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size as u64);
    header.set_mode(if entry.executable { 0o755 } else { 0o644 });
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Reads and deflates the entries of one run (not the last block of the stream).
fn deflate_run<H>(
    run: &[FileEntry<H>],
    tar: &mut tar::Builder<Vec<u8>>,
    read: &mut impl FnMut(&H) -> io::Result<Vec<u8>>,
) -> io::Result<Run> {
    let mut c = Compress::new(level(), false);
    let mut crc = Crc::new();
    let mut deflated = Vec::new();
    for entry in run {
        let data = read(&entry.handle)?;
        tar.append_data(&mut header(entry, data.len()), &entry.path, data.as_slice())?;
        let raw = std::mem::take(tar.get_mut());
        crc.update(&raw);
        deflate(&mut c, &raw, FlushCompress::None, &mut deflated)?;
    }
    deflate(&mut c, &[], FlushCompress::Sync, &mut deflated)?;
    Ok(Run { deflated, crc })
}

/// Writes `entries` as a deterministic tar.gz to `out`, reading each file's bytes with `read`.
///
/// Entries are sorted by path first, so callers may pass them in any order; duplicate paths are
/// an error. Returns `out` after the gzip stream is finished (not flushed to disk).
pub fn write_tar_gz<W: Write, H>(
    out: W,
    entries: Vec<FileEntry<H>>,
    read: impl FnMut(&H) -> io::Result<Vec<u8>>,
) -> io::Result<W> {
    let (out, _) = write_tar_gz_reusing(out, entries, |_| None, read, &mut Runs::default())?;
    Ok(out)
}

/// Like [`write_tar_gz`] (the same bytes for the same tree), copying each run whose entries
/// `runs` holds from the archive before instead of reading and deflating it again. `id` names a
/// handle's content (a blob id: the same id, the same bytes); a run with an entry it names no
/// content of is always read. On success `runs` holds this archive's runs (up to
/// [`RUNS_KEPT_BYTES`]); on failure it is left as it was.
pub fn write_tar_gz_reusing<W: Write, H>(
    mut out: W,
    mut entries: Vec<FileEntry<H>>,
    id: impl Fn(&H) -> Option<Vec<u8>>,
    mut read: impl FnMut(&H) -> io::Result<Vec<u8>>,
    runs: &mut Runs,
) -> io::Result<(W, Written)> {
    entries.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("duplicate archive path {}", w[0].path),
        ));
    }
    out.write_all(&GZIP_HEADER)?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    let mut crc = Crc::new();
    let mut kept = HashMap::new();
    let mut kept_bytes = 0usize;
    let mut written = Written::default();
    let mut start = 0;
    for end in run_ends(&entries) {
        let entries = &entries[start..end];
        start = end;
        let key = run_key(entries, &id);
        let run = match key.and_then(|k| runs.kept.get(&k)) {
            Some(run) => {
                written.runs_reused += 1;
                run.clone()
            }
            None => {
                let run = deflate_run(entries, &mut tar, &mut read)?;
                written.runs_deflated += 1;
                written.files_read += entries.len() as u64;
                written.bytes_deflated += u64::from(run.crc.amount());
                Arc::new(run)
            }
        };
        out.write_all(&run.deflated)?;
        crc.combine(&run.crc);
        if let Some(key) = key
            && kept_bytes + run.deflated.len() <= RUNS_KEPT_BYTES
        {
            kept_bytes += run.deflated.len();
            kept.insert(key, run);
        }
    }
    // The end of the tar archive (two zero blocks), in the last block of the deflate stream.
    let end = tar.into_inner()?;
    crc.update(&end);
    let mut last = Vec::new();
    deflate(
        &mut Compress::new(level(), false),
        &end,
        FlushCompress::Finish,
        &mut last,
    )?;
    out.write_all(&last)?;
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&crc.amount().to_le_bytes())?;
    runs.kept = kept;
    Ok((out, written))
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

    /// A tree of `n` files `apps/<i>/app.yaml`, file `changed` (if any) with other content;
    /// each handle is (content id, content).
    fn apps(n: usize, changed: Option<usize>) -> Vec<FileEntry<(u64, String)>> {
        (0..n)
            .map(|i| {
                let version = u64::from(Some(i) == changed);
                FileEntry {
                    path: format!("apps/{i}/app.yaml"),
                    executable: false,
                    handle: (version, format!("app: {i}\nversion: {version}\n")),
                }
            })
            .collect()
    }

    fn write_reusing(
        entries: Vec<FileEntry<(u64, String)>>,
        runs: &mut Runs,
    ) -> (Vec<u8>, Written) {
        write_tar_gz_reusing(
            Vec::new(),
            entries,
            |(id, _)| Some(id.to_le_bytes().to_vec()),
            |(_, c)| Ok(c.clone().into_bytes()),
            runs,
        )
        .unwrap()
    }

    fn fresh(entries: Vec<FileEntry<(u64, String)>>) -> Vec<u8> {
        write_tar_gz(Vec::new(), entries, |(_, c)| Ok(c.clone().into_bytes())).unwrap()
    }

    /// Every (path, content) of a tar.gz, read as one gzip stream (its CRC and length checked).
    fn contents(bytes: &[u8]) -> Vec<(String, String)> {
        use std::io::Read;
        let mut gz = flate2::read::GzDecoder::new(bytes);
        let mut tar_bytes = Vec::new();
        gz.read_to_end(&mut tar_bytes).unwrap();
        assert!(
            gz.into_inner().is_empty(),
            "one gzip member, nothing after it"
        );
        let mut ar = tar::Archive::new(tar_bytes.as_slice());
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut text = String::new();
                e.read_to_string(&mut text).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), text)
            })
            .collect()
    }

    #[test]
    fn an_archive_of_many_runs_reads_as_one_gzip_stream() {
        let entries = apps(1000, None);
        let expected: Vec<(String, String)> = {
            let mut e: Vec<_> = entries
                .iter()
                .map(|e| (e.path.clone(), e.handle.1.clone()))
                .collect();
            e.sort();
            e
        };
        let bytes = fresh(entries);
        assert!(run_ends(&apps(1000, None)).len() > 5, "several runs");
        assert_eq!(contents(&bytes), expected);
        // The tar stream ends as tar ends it.
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
        assert_eq!(ar.entries().unwrap().count(), 1000);
    }

    #[test]
    fn a_one_file_change_deflates_one_run_and_copies_the_others_into_the_same_bytes() {
        let mut runs = Runs::default();
        let (first, cost) = write_reusing(apps(5000, None), &mut runs);
        assert_eq!(first, fresh(apps(5000, None)));
        assert_eq!((cost.runs_reused, cost.files_read), (0, 5000));
        assert!(!runs.is_empty());
        let (second, cost) = write_reusing(apps(5000, Some(2500)), &mut runs);
        assert_eq!(
            second,
            fresh(apps(5000, Some(2500))),
            "the same bytes as an archive written anew"
        );
        assert_eq!(cost.runs_deflated, 1);
        assert!(cost.runs_reused > 20, "{cost:?}");
        assert!(cost.files_read <= RUN_MAX_ENTRIES as u64, "{cost:?}");
        // A file added and one removed: at most the runs around them.
        let mut entries = apps(5000, Some(2500));
        entries.remove(10);
        entries.push(FileEntry {
            path: "apps/new/app.yaml".into(),
            executable: false,
            handle: (7, "new".into()),
        });
        let expected = fresh(entries.clone());
        let (third, cost) = write_reusing(entries, &mut runs);
        assert_eq!(third, expected);
        assert!(cost.runs_deflated <= 4, "{cost:?}");
    }

    #[test]
    fn a_changed_content_id_or_mode_is_read_again_and_a_run_without_ids_is_never_kept() {
        let mut runs = Runs::default();
        write_reusing(apps(10, None), &mut runs);
        let mut entries = apps(10, None);
        entries[3].executable = true;
        let expected = fresh(entries.clone());
        let (bytes, cost) = write_reusing(entries, &mut runs);
        assert_eq!(bytes, expected);
        assert!(cost.files_read > 0, "{cost:?}");
        let mut none = Runs::default();
        let (_, _) = write_tar_gz_reusing(
            Vec::new(),
            apps(10, None),
            |_| None,
            |(_, c)| Ok(c.clone().into_bytes()),
            &mut none,
        )
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_runs_of_the_archive_before() {
        let mut runs = Runs::default();
        write_reusing(apps(300, None), &mut runs);
        let before = runs.len();
        let err = write_tar_gz_reusing(
            Vec::new(),
            apps(300, Some(1)),
            |(id, _)| Some(id.to_le_bytes().to_vec()),
            |_| Err(io::Error::other("unreadable")),
            &mut runs,
        );
        assert!(err.is_err());
        assert_eq!(runs.len(), before);
        let (_, cost) = write_reusing(apps(300, None), &mut runs);
        assert_eq!(cost.files_read, 0, "{cost:?}");
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
