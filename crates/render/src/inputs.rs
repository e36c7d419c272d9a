//! What a render read of its source tree, and whether a new version of the tree changed any of
//! it: the test that lets a new source artifact re-render only the Syncs it touches.
//!
//! A source tree is indexed once per artifact ([`Index`]), from what the unpacker listed as it
//! read the archive: every file by a digest of its content, every directory by a digest of its
//! listing. A render records the paths it looked at
//! ([`plumb_kustomize::Accesses`]: files read, paths probed, directories listed); with the index
//! of its tree they become its [`Inputs`]: those paths and one digest of what they were. For a
//! later tree, the render would come out the same if the digest over the same paths is the same.
//! A probe sees only whether a path exists and as what, so adding a file beside an app's
//! directory does not touch the app; a read sees the content; a listing sees the names.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
#[cfg(test)]
use std::{fs, io};

use plumb_artifact::{Listing, Node};
use plumb_kustomize::Access;
use sha2::{Digest as _, Sha256};

/// The digest of a directory's entries, or of what a render's inputs held (a truncated SHA-256).
type Hash = [u8; 16];

/// The most paths one render's inputs may name; a render that looked at more is always
/// rendered again (the list would cost more to keep and compare than the render saves).
pub const MAX_INPUT_PATHS: usize = 4096;

fn digest(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Every file and directory of an unpacked source tree, by path relative to its root (`""` is
/// the root, separators are `/`): files by the SHA-256 the unpacker computed from the archive
/// as it read it (nothing is read back from the disk), directories by a digest of their
/// entries' names and kinds.
#[derive(Debug, Default)]
pub struct Index {
    /// What the tree's archive unpacked to.
    listing: Listing,
    /// Each directory's digest of its entries' names and kinds.
    dirs: HashMap<Box<str>, Hash>,
    /// The tree holds a symlink (or a name that is not UTF-8, which no kustomization can name):
    /// a path may then be reached by several names, so no render's inputs are kept (each is
    /// rendered again).
    links: bool,
}

impl Index {
    /// The index of the tree `listing` describes.
    pub fn of_listing(listing: Listing) -> Index {
        let mut links = false;
        // Each directory's entries, in the listing's order: by name, as bytes.
        let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
        children.insert("", Vec::new());
        for (path, node) in listing.iter() {
            let (Some(path), Some(name)) = (path.to_str(), path.file_name()) else {
                links = true;
                continue;
            };
            let Some(name) = name.to_str() else {
                links = true;
                continue;
            };
            let parent = path.rsplit_once('/').map_or("", |(parent, _)| parent);
            let tag = match node {
                Node::Dir => {
                    children.entry(path).or_default();
                    "d"
                }
                Node::File { .. } => "f",
                Node::Symlink(_) => {
                    links = true;
                    "l"
                }
            };
            children.entry(parent).or_default().extend([name, tag]);
        }
        let dirs = children
            .into_iter()
            .map(|(dir, parts)| {
                let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
                (Box::from(dir), digest(&parts))
            })
            .collect();
        Index {
            listing,
            dirs,
            links,
        }
    }

    /// What the tree's archive unpacked to.
    pub fn listing(&self) -> &Listing {
        &self.listing
    }

    /// The index of the tree under `root` as the unpacker would list it (a test's tree, made by
    /// writing files).
    #[cfg(test)]
    pub fn of_tree(root: &Path) -> io::Result<Index> {
        fn add(tar: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) -> io::Result<()> {
            let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let path = rel.join(e.file_name());
                let kind = e.file_type()?;
                let mut h = tar::Header::new_gnu();
                h.set_mode(0o644);
                if kind.is_symlink() {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, &path, fs::read_link(e.path())?)?;
                } else if kind.is_dir() {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tar.append_data(&mut h, &path, io::empty())?;
                    add(tar, root, &path)?;
                } else {
                    let data = fs::read(e.path())?;
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    tar.append_data(&mut h, &path, data.as_slice())?;
                }
            }
            Ok(())
        }
        let mut tar = tar::Builder::new(Vec::new());
        add(&mut tar, root, Path::new(""))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar.into_inner()?)?;
        let listing =
            plumb_artifact::list_tar_gz(&gz.finish()?, plumb_artifact::UnpackLimits::default())
                .map_err(io::Error::other)?;
        Ok(Index::of_listing(listing))
    }

    /// What `access` of `path` sees in this tree, written into `out`: for a probe, whether the
    /// path is a file, a directory or missing; for a read or a listing, also its content or
    /// entries. A missing path adds what its parent is, up to the first that exists (a file
    /// turned into a directory changes what a probe below it finds).
    fn observe(&self, access: Access, path: &str, out: &mut Vec<u8>) {
        let mut path = path;
        loop {
            let seen = match self.dirs.get(path) {
                Some(h) => Some((b'd', &h[..])),
                None => match self.listing.get(Path::new(path)) {
                    Some(Node::File { sha256, .. }) => Some((b'f', &sha256[..])),
                    // A link: the tree trusts no inputs anyway.
                    Some(Node::Dir | Node::Symlink(_)) | None => None,
                },
            };
            match (seen, access) {
                (Some((kind, _)), Access::Probe) => out.push(kind),
                (Some((kind, digest)), _) => {
                    out.push(kind);
                    out.extend_from_slice(digest);
                }
                (None, _) => {
                    out.push(b'-');
                    if !path.is_empty() {
                        path = path.rsplit_once('/').map_or("", |(parent, _)| parent);
                        continue;
                    }
                }
            }
            return;
        }
    }
}

/// What one render read of its tree: the paths (relative to the root) and how, with one digest
/// of what they held.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Inputs {
    paths: Box<[(Access, Box<str>)]>,
    digest: Hash,
}

impl Inputs {
    /// The inputs of a render over the tree at `root` (canonical) indexed as `index`, from the
    /// paths it looked at; `None` when they cannot be trusted to tell (a path outside the root,
    /// a tree with symlinks, more than [`MAX_INPUT_PATHS`] paths).
    pub fn observe(root: &Path, looked_at: &[(Access, PathBuf)], index: &Index) -> Option<Inputs> {
        if index.links || looked_at.len() > MAX_INPUT_PATHS {
            return None;
        }
        let mut paths = Vec::with_capacity(looked_at.len());
        for (access, path) in looked_at {
            paths.push((*access, relative(root, path)?.into_boxed_str()));
        }
        paths.sort();
        paths.dedup();
        let paths = paths.into_boxed_slice();
        let digest = Self::digest_in(&paths, index);
        Some(Inputs { paths, digest })
    }

    fn digest_in(paths: &[(Access, Box<str>)], index: &Index) -> Hash {
        let mut seen = Vec::with_capacity(paths.len() * 20);
        for (access, path) in paths {
            seen.push(*access as u8);
            seen.extend_from_slice(path.as_bytes());
            seen.push(0);
            index.observe(*access, path, &mut seen);
        }
        digest(&[&seen])
    }

    /// Whether the tree indexed as `index` holds, at every input path, what the render saw.
    pub fn hold_in(&self, index: &Index) -> bool {
        !index.links && Self::digest_in(&self.paths, index) == self.digest
    }
}

/// The fewest [`Inputs`] a [`SharedInputs`] holds before it looks for copies no render record
/// holds any more.
const SHARED_SWEEP_MIN: usize = 64;

/// One copy of each distinct [`Inputs`], shared by the records of every render that read the
/// same paths and found the same there: the Syncs of a fleet that render one path of one tree,
/// each with its own substitution, all read the same files (a thousand Syncs kept a thousand
/// copies of one list of paths). Copies no record holds are dropped when the set has doubled
/// since the last look, so it holds at most twice the distinct inputs the records hold (or
/// [`SHARED_SWEEP_MIN`]).
#[derive(Debug, Default)]
pub struct SharedInputs {
    kept: HashSet<Arc<Inputs>>,
    /// How many were kept after the last look for copies no record holds.
    swept: usize,
}

impl SharedInputs {
    /// The shared copy of `inputs`.
    pub fn share(&mut self, inputs: Inputs) -> Arc<Inputs> {
        if let Some(kept) = self.kept.get(&inputs) {
            return kept.clone();
        }
        if self.kept.len() >= (2 * self.swept).max(SHARED_SWEEP_MIN) {
            self.kept.retain(|i| Arc::strong_count(i) > 1);
            self.swept = self.kept.len();
        }
        let inputs = Arc::new(inputs);
        self.kept.insert(inputs.clone());
        inputs
    }
}

/// `path` relative to `root` with `/` separators, `.` and `..` resolved lexically; `None` when
/// it leaves the root or is not UTF-8.
fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let mut parts: Vec<&str> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let path = dir.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn inputs(dir: &tempfile::TempDir, looked: &[(Access, &str)]) -> Inputs {
        let root = dir.path().canonicalize().unwrap();
        let looked: Vec<_> = looked.iter().map(|(a, p)| (*a, root.join(p))).collect();
        Inputs::observe(&root, &looked, &Index::of_tree(&root).unwrap()).unwrap()
    }

    fn index(files: &[(&str, &str)]) -> Index {
        Index::of_tree(tree(files).path()).unwrap()
    }

    const BASE: &[(&str, &str)] = &[
        ("apps/a/app.yaml", "a"),
        ("apps/b/app.yaml", "b"),
        ("base/kustomization.yaml", "k"),
    ];

    /// The index of [`BASE`] with `changes` (path, content) written over it.
    fn with(changes: &[(&str, &str)]) -> Index {
        let mut files: Vec<(&str, &str)> = BASE.to_vec();
        for (p, t) in changes {
            files.retain(|(q, _)| q != p);
            files.push((p, t));
        }
        index(&files)
    }

    #[test]
    fn renders_that_read_the_same_share_one_copy_and_unheld_copies_go() {
        let dir = tree(BASE);
        let read = |p: &str| inputs(&dir, &[(Access::Read, p)]);
        let mut shared = SharedInputs::default();
        let a = shared.share(read("apps/a/app.yaml"));
        let again = shared.share(read("apps/a/app.yaml"));
        assert!(Arc::ptr_eq(&a, &again), "the same inputs, one copy");
        let b = shared.share(read("apps/b/app.yaml"));
        assert!(!Arc::ptr_eq(&a, &b));
        drop((again, b));
        // Past the sweep threshold, only the copies a record still holds stay.
        let held: Vec<_> = (0..SHARED_SWEEP_MIN)
            .map(|i| {
                shared.share(Inputs {
                    paths: Box::new([(Access::Read, format!("f{i}").into_boxed_str())]),
                    digest: [0; 16],
                })
            })
            .collect();
        assert!(shared.kept.len() <= SHARED_SWEEP_MIN + 1);
        assert!(shared.kept.contains(&*a), "still held by a record");
        assert!(
            !shared
                .kept
                .iter()
                .any(|i| i.paths[0].1.as_ref() == "apps/b/app.yaml"),
            "held by nothing, dropped"
        );
        drop(held);
    }

    #[test]
    fn a_read_file_changed_is_seen_and_another_apps_file_is_not() {
        let app_a = inputs(
            &tree(BASE),
            &[
                (Access::Probe, "apps/a"),
                (Access::List, "apps/a"),
                (Access::Read, "apps/a/app.yaml"),
            ],
        );
        assert!(app_a.hold_in(&index(BASE)));
        assert!(
            app_a.hold_in(&with(&[("apps/b/app.yaml", "b2")])),
            "another app's file"
        );
        assert!(
            app_a.hold_in(&with(&[("apps/c/app.yaml", "c")])),
            "an app added beside it"
        );
        assert!(!app_a.hold_in(&with(&[("apps/a/app.yaml", "a2")])));
        assert!(
            !app_a.hold_in(&with(&[("apps/a/more.yaml", "x")])),
            "a file added to a listed directory"
        );
    }

    #[test]
    fn a_probe_sees_existence_and_kind_not_content() {
        let probed = inputs(
            &tree(BASE),
            &[
                (Access::Probe, "base/kustomization.yaml"),
                (Access::Probe, "base/kustomization.yml"),
            ],
        );
        assert!(probed.hold_in(&with(&[("base/kustomization.yaml", "k2")])));
        assert!(
            !probed.hold_in(&with(&[("base/kustomization.yml", "k")])),
            "a second kustomization file appeared"
        );
        let mut gone = BASE.to_vec();
        gone.retain(|(p, _)| !p.starts_with("base/"));
        gone.push(("base", "now a file"));
        assert!(
            !probed.hold_in(&index(&gone)),
            "the directory became a file"
        );
    }

    #[test]
    fn paths_are_taken_relative_and_normalized_and_never_outside() {
        let dir = tree(BASE);
        let root = dir.path().canonicalize().unwrap();
        let idx = Index::of_tree(&root).unwrap();
        let via_dots = Inputs::observe(
            &root,
            &[(Access::Read, root.join("apps/b/../a/app.yaml"))],
            &idx,
        )
        .unwrap();
        let direct = inputs(&dir, &[(Access::Read, "apps/a/app.yaml")]);
        assert_eq!(via_dots, direct);
        assert!(Inputs::observe(&root, &[(Access::Read, "/etc/passwd".into())], &idx).is_none());
        assert!(Inputs::observe(&root, &[(Access::Read, root.join("../x"))], &idx).is_none());
    }

    #[test]
    fn a_tree_with_a_symlink_trusts_no_inputs() {
        let dir = tree(BASE);
        std::os::unix::fs::symlink("a", dir.path().join("apps/link")).unwrap();
        let root = dir.path().canonicalize().unwrap();
        let idx = Index::of_tree(&root).unwrap();
        assert!(
            Inputs::observe(&root, &[(Access::Read, root.join("apps/a/app.yaml"))], &idx).is_none()
        );
        let clean = inputs(&tree(BASE), &[(Access::Read, "apps/a/app.yaml")]);
        assert!(!clean.hold_in(&idx));
    }
}
