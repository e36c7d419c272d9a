//! Property tests of the tar.gz unpacker on hostile archives: whatever the bytes, it returns
//! (never panics), writes nothing outside its destination, leaves no link pointing out of it,
//! and writes no more than its limits allow. And of unpacking over an earlier tree: it ends as
//! unpacking anew would, writing only what differs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use plumb_artifact::{
    Listing, Node, UnpackLimits, list_tar_gz, list_tar_gz_keeping, unpack_listed,
    unpack_listed_kept, unpack_tar_gz,
};
use proptest::prelude::*;

const LIMITS: UnpackLimits = UnpackLimits {
    max_bytes: 4096,
    max_entries: 16,
    max_depth: 8,
    max_path_bytes: 1024,
};

/// One tar entry as an attacker may write it: raw name bytes, any type, any link target.
#[derive(Debug, Clone)]
struct RawEntry {
    name: String,
    kind: u8,
    link: String,
    data: Vec<u8>,
    mode: u32,
}

fn path_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        "[a-z]{1,8}",
    ]
}

fn raw_path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(path_piece(), 1..5)).prop_map(|(abs, parts)| {
        let p = parts.join("/");
        if abs { format!("/{p}") } else { p }
    })
}

fn entry() -> impl Strategy<Value = RawEntry> {
    (
        raw_path(),
        // Regular, hard link, symlink, char, block, dir, fifo, contiguous, pax, GNU long name.
        prop::sample::select(vec![
            b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'x', b'L',
        ]),
        raw_path(),
        prop::collection::vec(any::<u8>(), 0..2048),
        prop::sample::select(vec![0o644u32, 0o755, 0o4777, 0]),
    )
        .prop_map(|(name, kind, link, data, mode)| RawEntry {
            name,
            kind,
            link,
            data,
            mode,
        })
}

/// A tar stream of `entries`, with raw names that bypass the tar crate's own checks.
fn tar_bytes(entries: &[RawEntry]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::new(e.kind));
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        let name = e.name.as_bytes();
        let n = name.len().min(99);
        h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
        let link = e.link.as_bytes();
        let n = link.len().min(99);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
        h.set_cksum();
        tar.append(&h, e.data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Whether `target`, read relative to the directory of `link` (both under `root`), stays in it.
fn stays_inside(root: &Path, link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = link
        .parent()
        .and_then(|p| p.strip_prefix(root).ok())
        .map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// Checks what an unpack left behind: only `out` in `parent`, links inside, sizes bounded.
fn check_tree(parent: &Path) {
    let names: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| n == "out"),
        "something was written beside the destination: {names:?}"
    );
    let root = parent.join("out");
    let (mut bytes, mut count, mut path_bytes, mut depth) = (0u64, 0u64, 0u64, 0usize);
    let mut stack: Vec<PathBuf> = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            count += 1;
            let rel = e.path().strip_prefix(&root).unwrap().to_owned();
            path_bytes += rel.as_os_str().len() as u64;
            depth = depth.max(rel.components().count());
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                assert!(
                    stays_inside(&root, &e.path(), &target),
                    "link {} -> {} leaves the root",
                    e.path().display(),
                    target.display()
                );
            } else if meta.is_dir() {
                stack.push(e.path());
            } else {
                assert!(meta.is_file(), "special file {}", e.path().display());
                bytes += meta.len();
            }
        }
    }
    assert!(bytes <= LIMITS.max_bytes, "{bytes} bytes written");
    // Directories made for a file's parents count as entries.
    assert!(count <= LIMITS.max_entries, "{count} paths written");
    assert!(
        path_bytes <= LIMITS.max_path_bytes,
        "{path_bytes} bytes of paths written"
    );
    assert!(depth <= LIMITS.max_depth, "{depth} levels deep");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_entries_never_escape_or_exceed_the_limits(entries in prop::collection::vec(entry(), 0..24)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = unpack_tar_gz(gzip(&tar_bytes(&entries)).as_slice(), &dir.path().join("out"), LIMITS);
        check_tree(dir.path());
    }

    #[test]
    fn corrupted_archives_are_refused_or_unpacked_safely(
        entries in prop::collection::vec(entry(), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
    ) {
        let mut tar = tar_bytes(&entries);
        for (at, byte) in flips {
            let i = at.index(tar.len());
            tar[i] = byte;
        }
        let dir = tempfile::tempdir().unwrap();
        let _ = unpack_tar_gz(gzip(&tar).as_slice(), &dir.path().join("out"), LIMITS);
        check_tree(dir.path());
    }

    #[test]
    fn arbitrary_bytes_are_refused_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..4096), gzipped in any::<bool>()) {
        let input = if gzipped { gzip(&bytes) } else { bytes };
        let dir = tempfile::tempdir().unwrap();
        let _ = unpack_tar_gz(input.as_slice(), &dir.path().join("out"), LIMITS);
        check_tree(dir.path());
    }
}

/// A field of /proc/self/status in KiB (Linux): `VmRSS` now, `VmHWM` the peak.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak resident set to the current one and returns it (Linux 4.0+).
fn reset_peak_kib() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    status_kib("VmRSS:")
}

/// A gzip stream of one `kind` entry whose data is `size` zero bytes, then a small file:
/// tiny compressed, huge unpacked.
fn bomb(kind: tar::EntryType, size: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_cksum();
    tar.append(&h, std::io::Read::take(std::io::repeat(0), size))
        .unwrap();
    let mut f = tar::Header::new_gnu();
    f.set_entry_type(tar::EntryType::Regular);
    f.set_size(1);
    f.set_mode(0o644);
    f.set_path("after").unwrap();
    f.set_cksum();
    tar.append(&f, &b"x"[..]).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

#[test]
fn compression_bombs_are_stopped_with_bounded_memory() {
    // The tar reader holds a GNU long name or a pax record in memory whole: 64 MiB of zeros
    // (64 KiB compressed) behind one of those headers must be refused early, not buffered.
    let limits = UnpackLimits {
        max_bytes: 1 << 20,
        max_entries: 10,
        ..UnpackLimits::default()
    };
    for (kind, name) in [
        (tar::EntryType::GNULongName, "GNU long name"),
        (tar::EntryType::XHeader, "pax extension"),
        (tar::EntryType::XGlobalHeader, "pax global header"),
        (tar::EntryType::Regular, "file"),
    ] {
        let gz = bomb(kind, 64 << 20);
        let before = reset_peak_kib();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_tar_gz(gz.as_slice(), &dir.path().join("out"), limits)
            .expect_err(name)
            .to_string();
        assert!(
            err.contains("limit") || err.contains("between two entries"),
            "{name}: {err}"
        );
        if let (Some(before), Some(peak)) = (before, status_kib("VmHWM:")) {
            let grew = peak.saturating_sub(before);
            println!("{name} bomb: peak resident set grew by {grew} KiB");
            assert!(
                grew < 16 << 10,
                "{name} bomb: peak resident set grew by {grew} KiB"
            );
        }
    }
}

/// A tar.gz of `(path, type, link target, data)` entries, files with mode `mode`.
fn archive_of(entries: &[(&str, tar::EntryType, &str, &[u8])], mode: u32) -> Vec<u8> {
    let raw: Vec<RawEntry> = entries
        .iter()
        .map(|(name, kind, link, data)| RawEntry {
            name: (*name).to_owned(),
            kind: kind.as_byte(),
            link: (*link).to_owned(),
            data: data.to_vec(),
            mode,
        })
        .collect();
    gzip(&tar_bytes(&raw))
}

/// What the tree under `root` holds: each path with its kind, content or target, and mode.
fn snapshot(root: &Path) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let path = rel.join(e.file_name());
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(e.path()).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                let mode = meta.permissions().mode() & 0o777;
                let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
                format!("file {mode:o} {text}")
            };
            out.push((path, what));
        }
    }
    out.sort();
    out
}

use tar::EntryType::{Regular, Symlink};

#[test]
fn files_are_made_read_only_and_executables_stay_executable() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, shown) in [(0o644, "444"), (0o755, "555")] {
        let out = dir.path().join(shown);
        let bytes = archive_of(&[("run.sh", Regular, "", b"#!")], mode);
        unpack_tar_gz(&bytes, &out, LIMITS).unwrap();
        assert_eq!(
            snapshot(&out),
            [(PathBuf::from("run.sh"), format!("file {shown} #!"))]
        );
    }
}

#[test]
fn unpacking_over_a_tree_writes_only_what_differs_and_ends_as_unpacking_anew() {
    let old = archive_of(
        &[
            ("keep/a.yaml", Regular, "", b"a"),
            ("keep/b.yaml", Regular, "", b"b"),
            ("change.yaml", Regular, "", b"old"),
            ("gone/deep/x.yaml", Regular, "", b"x"),
            ("becomes-dir", Regular, "", b"f"),
            ("becomes-file/y.yaml", Regular, "", b"y"),
            ("link", Symlink, "keep/a.yaml", b""),
            ("moved-link", Symlink, "keep/a.yaml", b""),
        ],
        0o644,
    );
    let new = archive_of(
        &[
            ("keep/a.yaml", Regular, "", b"a"),
            ("keep/b.yaml", Regular, "", b"b"),
            ("change.yaml", Regular, "", b"new"),
            ("becomes-dir/z.yaml", Regular, "", b"z"),
            ("becomes-file", Regular, "", b"now a file"),
            ("added/n.yaml", Regular, "", b"n"),
            ("link", Symlink, "keep/a.yaml", b""),
            ("moved-link", Symlink, "keep/b.yaml", b""),
        ],
        0o644,
    );
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let old_listing = list_tar_gz(&old, LIMITS).unwrap();
    unpack_listed(&old, &old_listing, &tree, &Listing::default()).unwrap();
    // An unchanged file keeps the time it was written at, a rewritten one does not.
    let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
    let written_at = |p: &str| {
        std::fs::symlink_metadata(tree.join(p))
            .unwrap()
            .modified()
            .unwrap()
    };
    for p in ["keep/a.yaml", "keep/b.yaml", "change.yaml"] {
        std::fs::File::open(tree.join(p))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    let new_listing = list_tar_gz(&new, LIMITS).unwrap();
    // Removed: 8 (change.yaml, gone and its 2, becomes-dir, becomes-file and its 1, moved-link);
    // made: 7 (change.yaml, becomes-dir and its 1, becomes-file, added and its 1, moved-link).
    assert_eq!(old_listing.changes_to(&new_listing), 15);
    unpack_listed(&new, &new_listing, &tree, &old_listing).unwrap();
    assert_eq!(written_at("keep/a.yaml"), long_ago, "not written again");
    assert_eq!(written_at("keep/b.yaml"), long_ago, "not written again");
    assert_ne!(written_at("change.yaml"), long_ago, "written anew");
    let fresh = dir.path().join("fresh");
    unpack_tar_gz(&new, &fresh, LIMITS).unwrap();
    assert_eq!(snapshot(&tree), snapshot(&fresh));
}

/// An entry of a tree a repository may well hold: short relative paths over a few names, so
/// two trees share some of them; files, directories, links inside.
fn tree_entry() -> impl Strategy<Value = RawEntry> {
    (
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4),
        prop::sample::select(vec![b'0', b'0', b'5', b'2']),
        prop::sample::select(vec!["a", "b", "a/b", "../c"]),
        prop::sample::select(vec![b"1".to_vec(), b"2".to_vec(), Vec::new()]),
        prop::sample::select(vec![0o644u32, 0o755]),
    )
        .prop_map(|(parts, kind, link, data, mode)| RawEntry {
            name: parts.join("/"),
            data: if kind == b'0' { data } else { Vec::new() },
            kind,
            link: link.to_owned(),
            mode,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn unpacking_over_any_tree_ends_as_unpacking_anew(
        old in prop::collection::vec(tree_entry(), 0..10),
        new in prop::collection::vec(tree_entry(), 0..10),
        budget in 0u64..64,
    ) {
        let (old, new) = (gzip(&tar_bytes(&old)), gzip(&tar_bytes(&new)));
        let (Ok(old_listing), Ok(new_listing)) = (list_tar_gz(&old, LIMITS), list_tar_gz(&new, LIMITS)) else {
            return Ok(());
        };
        // The files unlike the old tree's kept while listing, as many as `budget` bytes allow.
        let unlike = |path: &Path, node: &Node| old_listing.get(path) != Some(node);
        let (listing, kept) = list_tar_gz_keeping(&new, LIMITS, unlike, budget).unwrap();
        prop_assert_eq!(&listing, &new_listing);
        let dir = tempfile::tempdir().unwrap();
        let (over, fresh) = (dir.path().join("over"), dir.path().join("fresh"));
        unpack_listed(&old, &old_listing, &over, &Listing::default()).unwrap();
        let done = unpack_listed_kept(&new, &new_listing, &kept, &over, &old_listing).unwrap();
        prop_assert_eq!(done.from_kept, kept.len() as u64);
        prop_assert_eq!(done.read_again, done.files_written > done.from_kept);
        unpack_tar_gz(&new, &fresh, LIMITS).unwrap();
        prop_assert_eq!(snapshot(&over), snapshot(&fresh));
    }
}

#[test]
fn a_large_file_is_hashed_in_pieces() {
    use sha2::{Digest as _, Sha256};
    // 64 MiB of zeros, 64 KiB compressed: listing it must not hold it whole.
    let size = 64u64 << 20;
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(Regular);
    h.set_size(size);
    h.set_mode(0o644);
    tar.append_data(&mut h, "big", std::io::Read::take(std::io::repeat(0), size))
        .unwrap();
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let mut expected = Sha256::new();
    std::io::copy(
        &mut std::io::Read::take(std::io::repeat(0), size),
        &mut expected,
    )
    .unwrap();
    let expected: [u8; 32] = expected.finalize().into();
    let before = reset_peak_kib();
    let listing = list_tar_gz(&gz, UnpackLimits::default()).unwrap();
    assert_eq!(
        listing.get(Path::new("big")),
        Some(&Node::File {
            sha256: expected,
            executable: false
        })
    );
    if let (Some(before), Some(peak)) = (before, status_kib("VmHWM:")) {
        let grew = peak.saturating_sub(before);
        println!("listing a 64 MiB file: peak resident set grew by {grew} KiB");
        assert!(grew < 16 << 10, "peak resident set grew by {grew} KiB");
    }
}
