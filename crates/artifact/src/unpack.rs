//! Safe extraction of a tar.gz artifact, into an empty directory or over the tree of an earlier
//! artifact.
//!
//! The archive is untrusted input: entries with absolute paths or `..` are refused, symlinks
//! may only point inside the root, hard links and special files are refused, no entry may be
//! written through a symlinked directory, and the total unpacked size is bounded. All of that
//! is checked while the archive is read into a [`Listing`] of the tree (every file hashed on the
//! way), before anything is written; writing it ([`unpack_listed`]) then changes only what
//! differs from the tree already there.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

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
///
/// It "seeks" forward only, by reading (so skipped bytes count against the budget as read ones
/// do): the tar reader then skips an entry's padding through one reused buffer, instead of
/// zeroing a 32 KiB one for every entry.
struct Metered<R> {
    inner: R,
    left: std::rc::Rc<std::cell::Cell<u64>>,
    /// Bytes read so far (the position a seek answers).
    read: u64,
    skipped: Box<[u8]>,
}

impl<R: Read> io::Seek for Metered<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        let io::SeekFrom::Current(amount) = pos else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an archive stream only skips forward",
            ));
        };
        let mut left = u64::try_from(amount).map_err(|_| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "an archive stream only skips forward",
            )
        })?;
        let mut skipped = std::mem::take(&mut self.skipped);
        let mut skip = || {
            while left > 0 {
                let n = usize::try_from(left).map_or(skipped.len(), |l| l.min(skipped.len()));
                let n = self.read(&mut skipped[..n])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "unexpected end of the archive while skipping",
                    ));
                }
                left -= n as u64;
            }
            Ok(self.read)
        };
        let at = skip();
        self.skipped = skipped;
        at
    }
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
        self.read += n as u64;
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

/// One entry of an unpacked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory (held by the archive, or implied by the paths under it).
    Dir,
    /// A regular file: the SHA-256 of its content, and whether it is executable.
    File {
        /// The SHA-256 of the file's content, computed from the archive as it was read.
        sha256: [u8; 32],
        /// Mode 0555 when true, 0444 otherwise.
        executable: bool,
    },
    /// A symbolic link to a target inside the tree.
    Symlink(Box<Path>),
}

/// Everything an archive unpacks to, by normalized relative path, read from the archive alone:
/// the tree it describes is known (and the archive checked against every limit) before anything
/// is written, and nothing need be read back from the disk to know what the tree holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Ordered by the paths' bytes (cheaper to compare than by components): a directory comes
    /// before everything under it, and the entries of one directory come by name.
    nodes: BTreeMap<Box<OsStr>, Node>,
    files: u64,
    bytes: u64,
}

impl Listing {
    /// The entry at `path` (relative, normalized), if any.
    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.nodes.get(path.as_os_str())
    }

    /// Every entry, each directory before what is under it.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Path, &Node)> {
        self.nodes.iter().map(|(p, n)| (Path::new(p), n))
    }

    /// How many entries (files, directories, links; implied directories included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many regular files.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// The total size of the regular files, in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How many entries [`unpack_listed`] removes or writes to turn a tree of `self` into one
    /// of `new`.
    pub fn changes_to(&self, new: &Listing) -> usize {
        let gone = self.iter().filter(|(p, n)| new.get(p) != Some(n)).count();
        let made = new.iter().filter(|(p, n)| self.get(p) != Some(n)).count();
        gone + made
    }

    /// Adds the directories `rel`'s path implies, refusing to pass through a link or a file;
    /// each one added is counted in `used` as an implied entry.
    fn add_parents(&mut self, rel: &Path, used: &mut Used) -> Result<(), UnpackError> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut dir = PathBuf::new();
        for c in parent.components() {
            dir.push(c);
            match self.nodes.get(dir.as_os_str()) {
                Some(Node::Symlink(_)) => {
                    return Err(UnpackError::UnsafeLink(rel.display().to_string()));
                }
                Some(Node::Dir) => {}
                Some(Node::File { .. }) => {
                    return Err(UnpackError::UnsafePath(rel.display().to_string()));
                }
                None => {
                    used.entry(&dir)?;
                    self.nodes.insert(dir.as_os_str().into(), Node::Dir);
                }
            }
        }
        Ok(())
    }
}

/// How many bytes the inflater produces at a time while an archive is read.
const INFLATED_PIECE: usize = 64 << 10;

/// The entries of the tar.gz `archive`, each read into `each` (which may read its data),
/// metered: at most [`MAX_ENTRY_METADATA`] bytes of headers, names and skipped data between
/// two entries.
fn for_each_entry(
    archive: &[u8],
    mut each: impl FnMut(
        &mut tar::Entry<'_, Metered<io::BufReader<flate2::read::GzDecoder<&[u8]>>>>,
    ) -> Result<(), UnpackError>,
) -> Result<(), UnpackError> {
    let left = std::rc::Rc::new(std::cell::Cell::new(MAX_ENTRY_METADATA));
    let metered = Metered {
        // Inflated in large pieces (the tar reader asks for 512 bytes at a time): each call
        // into the inflater and the CRC has a cost of its own.
        inner: io::BufReader::with_capacity(INFLATED_PIECE, flate2::read::GzDecoder::new(archive)),
        left: left.clone(),
        read: 0,
        skipped: vec![0; 8 << 10].into_boxed_slice(),
    };
    let mut ar = tar::Archive::new(metered);
    for entry in ar.entries_with_seek()? {
        let mut entry = entry.map_err(|e| {
            let why = e.to_string();
            if why.contains("between two entries") {
                UnpackError::TooLarge(why)
            } else {
                UnpackError::Io(e)
            }
        })?;
        // The entry's own data is bounded by the size limit, not by the metadata budget.
        left.set(u64::MAX);
        each(&mut entry)?;
        left.set(MAX_ENTRY_METADATA);
    }
    Ok(())
}

/// A writer that hashes what goes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies exactly `size` bytes of `entry` into `out`, hashing them in pieces (a file may be as
/// large as the whole tree is allowed to be); their SHA-256.
fn copy_hashed(entry: &mut impl Read, size: u64, out: impl Write) -> io::Result<[u8; 32]> {
    let mut hashing = Hashing {
        inner: out,
        hash: Sha256::new(),
    };
    let copied = io::copy(&mut entry.take(size), &mut hashing)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("an entry holds {copied} of the {size} bytes its header says"),
        ));
    }
    Ok(hashing.hash.finalize().into())
}

/// Reads the tar.gz `archive` into the [`Listing`] of the tree it unpacks to, checking every
/// entry against `limits` and refusing absolute paths, `..`, links leaving the root, writes
/// through a link, hard links and special files. Writes nothing.
pub fn list_tar_gz(archive: &[u8], limits: UnpackLimits) -> Result<Listing, UnpackError> {
    list_tar_gz_keeping(archive, limits, |_, _| false, 0).map(|(listing, _)| listing)
}

/// The content of some files of an archive, kept while it was listed, so that unpacking it
/// need not read the archive again for them.
#[derive(Debug, Default)]
pub struct Kept {
    files: HashMap<Box<Path>, Vec<u8>>,
}

impl Kept {
    /// How many files are kept.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file is kept.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Like [`list_tar_gz`], also keeping the content of each file `wanted` (given its path and
/// node) while at most `budget` bytes are kept in all: the files an unpack over an earlier
/// tree will write, so that it need not inflate the archive a second time for them.
pub fn list_tar_gz_keeping(
    archive: &[u8],
    limits: UnpackLimits,
    wanted: impl Fn(&Path, &Node) -> bool,
    budget: u64,
) -> Result<(Listing, Kept), UnpackError> {
    let mut kept = Kept::default();
    let mut left = budget;
    let mut buffer = Vec::new();
    let mut listing = Listing::default();
    let mut used = Used {
        limits,
        entries: 0,
        path_bytes: 0,
    };
    for_each_entry(archive, |entry| {
        let raw = entry.path()?.into_owned();
        // Made only for an error: listing thousands of entries formats none of them.
        let shown = || raw.display().to_string();
        let Some(rel) = safe_relative(&raw) else {
            return Err(UnpackError::UnsafePath(shown()));
        };
        used.entry(&rel)?;
        if rel.components().count() > limits.max_depth {
            return Err(UnpackError::TooLarge(format!(
                "{} directory levels ({})",
                limits.max_depth,
                shortened(&shown())
            )));
        }
        let node = match entry.header().entry_type() {
            tar::EntryType::Directory => {
                // The entry's own directory is counted already: only its parents are implied.
                listing.add_parents(&rel, &mut used)?;
                match listing.nodes.get(rel.as_os_str()) {
                    Some(Node::Symlink(_)) => return Err(UnpackError::UnsafeLink(shown())),
                    Some(Node::Dir) => return Ok(()),
                    Some(Node::File { .. }) => return Err(UnpackError::UnsafePath(shown())),
                    None => Node::Dir,
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                listing.add_parents(&rel, &mut used)?;
                if listing.nodes.contains_key(rel.as_os_str()) {
                    return Err(UnpackError::UnsafePath(shown()));
                }
                let size = entry.header().size()?;
                listing.bytes = listing.bytes.saturating_add(size);
                if listing.bytes > limits.max_bytes {
                    return Err(UnpackError::TooLarge(format!("{} bytes", limits.max_bytes)));
                }
                let executable = entry.header().mode()? & 0o111 != 0;
                let node = if size <= left {
                    buffer.clear();
                    let sha256 = copy_hashed(entry, size, &mut buffer)?;
                    let node = Node::File { sha256, executable };
                    if wanted(&rel, &node) {
                        left -= size;
                        kept.files
                            .insert(rel.clone().into_boxed_path(), buffer.clone());
                    }
                    node
                } else {
                    let sha256 = copy_hashed(entry, size, io::sink())?;
                    Node::File { sha256, executable }
                };
                listing.files += 1;
                node
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| UnpackError::UnsafeLink(shown()))?;
                if !link_stays_inside(&rel, &target) {
                    return Err(UnpackError::UnsafeLink(shown()));
                }
                listing.add_parents(&rel, &mut used)?;
                if listing.nodes.contains_key(rel.as_os_str()) {
                    return Err(UnpackError::UnsafePath(shown()));
                }
                Node::Symlink(target.into_owned().into_boxed_path())
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName => return Ok(()),
            _ => return Err(UnpackError::UnsupportedEntry(shown())),
        };
        listing
            .nodes
            .insert(rel.into_os_string().into_boxed_os_str(), node);
        Ok(())
    })?;
    Ok((listing, kept))
}

/// Makes `dest`, which holds the tree of `base` (an empty listing: nothing, or a directory not
/// yet made), hold the tree of `listing`, read from the tar.gz `archive` ([`list_tar_gz`] of
/// the same bytes): what `base` holds and `listing` does not (or not alike) is removed,
/// deepest first; then what is new is made, directories first, files from the archive, links
/// last (so no write ever passes through a link). Entries alike in both are not touched: a
/// commit that changes one file of thousands writes one file.
///
/// Files are made read only (0444, or 0555 when executable) and never opened for writing
/// again: a file that changes is removed and made anew. Each file written is hashed again as
/// it is written and must match the listing. When this fails, `dest` holds neither tree.
pub fn unpack_listed(
    archive: &[u8],
    listing: &Listing,
    dest: &Path,
    base: &Listing,
) -> Result<(), UnpackError> {
    unpack_listed_kept(archive, listing, &Kept::default(), dest, base).map(|_| ())
}

/// What [`unpack_listed_kept`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Files written.
    pub files_written: u64,
    /// Of those, the ones whose content was kept while listing.
    pub from_kept: u64,
    /// Whether the archive was inflated again for the others.
    pub read_again: bool,
}

/// Like [`unpack_listed`], writing the files `kept` holds (from [`list_tar_gz_keeping`] of
/// the same bytes) from there, and reading the archive again only when another file is to be
/// written.
pub fn unpack_listed_kept(
    archive: &[u8],
    listing: &Listing,
    kept: &Kept,
    dest: &Path,
    base: &Listing,
) -> Result<Unpacked, UnpackError> {
    fs::create_dir_all(dest)?;
    let mut done = Unpacked::default();
    for (rel, old) in base.iter().rev() {
        if listing.get(rel) != Some(old) {
            match old {
                Node::Dir => fs::remove_dir(dest.join(rel))?,
                Node::File { .. } | Node::Symlink(_) => fs::remove_file(dest.join(rel))?,
            }
        }
    }
    let mut to_write = HashMap::new();
    let mut links = Vec::new();
    let mut failed = None;
    for (rel, node) in listing.iter() {
        if base.get(rel) == Some(node) {
            continue;
        }
        match node {
            Node::Dir => fs::create_dir(dest.join(rel))?,
            Node::File { sha256, executable } => {
                to_write.insert(rel, (*sha256, *executable));
            }
            Node::Symlink(target) => links.push((rel, target)),
        }
    }
    to_write.retain(|rel, (sha256, executable)| {
        let Some(data) = kept.files.get(*rel) else {
            return true;
        };
        // A file kept is written here (or fails below, the write's error kept for the answer).
        done.files_written += 1;
        done.from_kept += 1;
        let written = write_new(
            &dest.join(rel),
            *executable,
            &mut data.as_slice(),
            data.len() as u64,
        );
        match written {
            Ok(sha) if sha == *sha256 => false,
            Ok(_) => {
                failed.get_or_insert_with(|| {
                    UnpackError::Io(io::Error::other(format!(
                        "{}: the kept content does not match the listing",
                        rel.display()
                    )))
                });
                false
            }
            Err(e) => {
                failed.get_or_insert(UnpackError::Io(e));
                false
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if !to_write.is_empty() {
        done.read_again = true;
        // The archive passed `list_tar_gz` already: the same bytes read the same again.
        for_each_entry(archive, |entry| {
            if !matches!(
                entry.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                return Ok(());
            }
            let raw = entry.path()?.into_owned();
            let Some(rel) = safe_relative(&raw) else {
                return Ok(());
            };
            let Some((sha256, executable)) = to_write.remove(rel.as_path()) else {
                return Ok(());
            };
            let size = entry.header().size()?;
            done.files_written += 1;
            if write_new(&dest.join(&rel), executable, entry, size)? != sha256 {
                return Err(UnpackError::Io(io::Error::other(format!(
                    "{}: the archive read differently the second time",
                    raw.display()
                ))));
            }
            Ok(())
        })?;
    }
    if let Some(rel) = to_write.keys().next() {
        return Err(UnpackError::Io(io::Error::other(format!(
            "{}: not found in the archive the second time",
            rel.display()
        ))));
    }
    for (rel, target) in links {
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, dest.join(rel))?;
    }
    Ok(done)
}

/// Makes the file `path` (it must not exist), read only (0444, or 0555 when `executable`),
/// from the `size` bytes of `data`; their SHA-256.
fn write_new(
    path: &Path,
    executable: bool,
    data: &mut impl Read,
    size: u64,
) -> io::Result<[u8; 32]> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o555 } else { 0o444 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    let out = options.open(path)?;
    copy_hashed(data, size, out)
}

/// Unpacks the tar.gz `archive` into `dest` (created if missing, expected empty): lists it
/// ([`list_tar_gz`], which refuses it before anything is written) and writes it
/// ([`unpack_listed`]). Returns the number of files written.
pub fn unpack_tar_gz(
    archive: &[u8],
    dest: &Path,
    limits: UnpackLimits,
) -> Result<u64, UnpackError> {
    let listing = list_tar_gz(archive, limits)?;
    unpack_listed(archive, &listing, dest, &Listing::default())?;
    Ok(listing.files())
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
    fn a_listing_hashes_each_file_and_holds_the_directories_its_paths_imply() {
        use sha2::{Digest as _, Sha256};
        let bytes = archive(&[
            ("a/b/c.yaml", Regular, "", b"c: 1"),
            ("run.sh", Regular, "", b"#!"),
            ("l", Symlink, "a/b/c.yaml", b""),
        ]);
        let listing = list_tar_gz(&bytes, UnpackLimits::default()).unwrap();
        let sha = |b: &[u8]| -> [u8; 32] { Sha256::digest(b).into() };
        let got: Vec<(&Path, &Node)> = listing.iter().collect();
        let file = |b: &[u8]| Node::File {
            sha256: sha(b),
            executable: false,
        };
        assert_eq!(
            got,
            [
                (Path::new("a"), &Node::Dir),
                (Path::new("a/b"), &Node::Dir),
                (Path::new("a/b/c.yaml"), &file(b"c: 1")),
                (
                    Path::new("l"),
                    &Node::Symlink(Path::new("a/b/c.yaml").into())
                ),
                (Path::new("run.sh"), &file(b"#!")),
            ]
        );
        assert_eq!((listing.files(), listing.bytes()), (2, 6));
    }

    #[test]
    fn a_refused_archive_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let bytes = archive(&[
            ("a.yaml", Regular, "", b"a"),
            ("../evil", Regular, "", b"x"),
        ]);
        assert!(matches!(
            unpack_tar_gz(&bytes, &out, UnpackLimits::default()),
            Err(UnpackError::UnsafePath(_))
        ));
        assert!(!out.exists(), "not even the destination was made");
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
