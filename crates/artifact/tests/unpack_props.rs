//! Property tests of the tar.gz unpacker on hostile archives: whatever the bytes, it returns
//! (never panics), writes nothing outside its destination, leaves no link pointing out of it,
//! and writes no more than its limits allow.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use plumb_artifact::{UnpackLimits, unpack_tar_gz};
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
