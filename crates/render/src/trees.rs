//! Source trees, downloaded and unpacked once per artifact digest and shared by every render
//! of that digest: a commit to a repository of 5000 apps unpacks its artifact once, not 5000
//! times. Each tree comes with its [`Index`], which tells a render's recorded inputs whether
//! they still hold; it is made from what the unpacker listed (and hashed) reading the archive,
//! before writing anything, so nothing is read back.
//!
//! A new artifact is unpacked over the directory of a cached tree it mostly matches (the
//! previous commit of its repository) when no render holds that tree: only the files that
//! differ are written, and the old tree leaves the cache. A one-app commit to a repository of
//! thousands of files writes a few files, instead of all of them, and removes no old tree.
//! Trees are read only: their files are made read only, no render writes them, and the
//! unpacker writes over a tree only once it is out of the cache with no other holder.
//!
//! The last [`TREES_KEPT`] trees used stay; an older one is dropped from the cache, and its
//! directory removed once the last render using it ends. At most [`PREPARED_AT_ONCE`] trees are
//! downloaded and unpacked at a time, so a burst of new artifacts (commits to many repositories
//! at once) never holds more than that many artifacts in memory and half-unpacked trees on disk.
//! A failed download or unpack is the answer of every render that waited for it; an artifact
//! the unpacker refused (over a limit, an unsafe path or link) stays refused while its digest is
//! in the cache, as the same bytes are refused again, so the Syncs of a hostile repository do
//! not each unpack it anew. Any other failure (the network, the disk) is forgotten: a later
//! render of that digest tries again.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use plumb_api::Digest;
use plumb_api::reference::Artifact;
use plumb_artifact::{Kept, Listing, Node, UnpackError, UnpackLimits, Unpacked};
use tokio::sync::{OnceCell, Semaphore};

use crate::build::WRAPPER_DIR;
use crate::inputs::Index;

/// How many unpacked source trees are kept for later renders. Renders of one commit share one
/// tree; a few more serve Syncs of other repositories, or of an older commit, in between.
pub const TREES_KEPT: usize = 4;

/// How many source trees are downloaded, unpacked and indexed at once.
pub const PREPARED_AT_ONCE: usize = 2;

/// The directory of a [`Tree`]. Removing thousands of files takes a while (seconds on a busy
/// machine): when dropped inside the runtime it is removed on a blocking thread, so that neither
/// the task dropping it (the one preparing the next tree, when the cache lets the oldest go)
/// nor the others of the runtime's thread wait for it.
#[derive(Debug)]
struct TreeDir(Option<tempfile::TempDir>);

impl Drop for TreeDir {
    fn drop(&mut self) {
        let Some(dir) = self.0.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(dir))),
            Err(_) => drop(dir),
        }
    }
}

/// One unpacked source artifact, read only.
#[derive(Debug)]
pub struct Tree {
    /// Removed when the last holder of the tree drops it.
    _dir: TreeDir,
    /// The canonical path of the tree's root.
    pub root: PathBuf,
    /// Every file and directory of the tree.
    pub index: Index,
    /// The bytes the tree unpacked to (a render's time allowance grows with it).
    pub unpacked: u64,
}

/// Why a tree could not be had.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    /// The artifact's bytes themselves were refused: they always will be.
    lasting: bool,
}

impl Failure {
    fn passing(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            lasting: false,
        }
    }
}

type Cell = Arc<OnceCell<Result<Arc<Tree>, Failure>>>;

/// The shared trees, by artifact digest, least recently used first.
#[derive(Debug)]
pub struct Trees {
    cells: Mutex<VecDeque<(Digest, Cell)>>,
    preparing: Semaphore,
}

impl Default for Trees {
    fn default() -> Self {
        Trees {
            cells: Mutex::default(),
            preparing: Semaphore::new(PREPARED_AT_ONCE),
        }
    }
}

/// How a source artifact is fetched and unpacked.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// The largest download.
    pub max_artifact_size: u64,
    /// What unpacking may produce.
    pub limits: UnpackLimits,
}

impl Trees {
    /// The tree of `artifact`: shared when it is unpacked already (or being unpacked), else
    /// downloaded (its digest verified), unpacked and indexed. The error says why it could not
    /// be had.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        artifact: &Artifact,
        settings: &FetchSettings,
    ) -> Result<Arc<Tree>, String> {
        self.get_or_prepare(&artifact.digest, || prepare(self, http, artifact, settings))
            .await
    }

    /// The tree of `digest`, made by `prepare` (when a turn to prepare one is free) unless it
    /// is cached or being made.
    async fn get_or_prepare<F, Fut>(&self, digest: &Digest, prepare: F) -> Result<Arc<Tree>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Tree, Failure>>,
    {
        let cell = self.cell(digest);
        let tree = cell
            .get_or_init(|| async {
                let _turn = self
                    .preparing
                    .acquire()
                    .await
                    .map_err(|e| Failure::passing(format!("waiting to unpack: {e}")))?;
                prepare().await.map(Arc::new)
            })
            .await;
        match tree {
            Ok(tree) => Ok(tree.clone()),
            Err(failure) => {
                if !failure.lasting {
                    let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
                    cells.retain(|(_, c)| !Arc::ptr_eq(c, &cell));
                }
                Err(failure.message.clone())
            }
        }
    }

    /// The cell of `digest`, made (and the oldest beyond [`TREES_KEPT`] dropped) if needed; it
    /// becomes the most recently used.
    fn cell(&self, digest: &Digest) -> Cell {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let cell = match cells.iter().position(|(d, _)| d == digest) {
            Some(i) => cells.remove(i).map(|(_, c)| c).unwrap_or_default(),
            None => Cell::default(),
        };
        cells.push_back((digest.clone(), cell.clone()));
        while cells.len() > TREES_KEPT {
            cells.pop_front();
        }
        cell
    }

    /// The trees made already, but `digest`'s.
    fn ready(&self, digest: &Digest) -> Vec<(Digest, Arc<Tree>)> {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        cells
            .iter()
            .filter(|(d, _)| d != digest)
            .filter_map(|(d, cell)| match cell.get() {
                Some(Ok(tree)) => Some((d.clone(), tree.clone())),
                _ => None,
            })
            .collect()
    }

    /// The tree of `digest`, out of the cache, when no render holds it: to be unpacked over.
    ///
    /// Only the cache holds a tree's cell, and only the cell the tree, when no render uses it;
    /// a render can get it only through the cache, whose lock is held here. So a tree taken is
    /// used by nobody else, and nobody gets it after: the unpacker is the only writer of a tree,
    /// and writes it only while nothing reads it.
    fn take_idle(&self, digest: &Digest) -> Option<Tree> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let at = cells.iter().position(|(d, _)| d == digest)?;
        let cell = &cells[at].1;
        let idle = Arc::strong_count(cell) == 1
            && matches!(cell.get(), Some(Ok(tree)) if Arc::strong_count(tree) == 1);
        if !idle {
            return None;
        }
        let (_, cell) = cells.remove(at)?;
        let tree = Arc::try_unwrap(cell).ok()?.into_inner()?.ok()?;
        Arc::try_unwrap(tree).ok()
    }
}

/// Downloads `artifact` (its digest verified) and unpacks it ([`unpack_artifact`]).
async fn prepare(
    trees: &Trees,
    http: &reqwest::Client,
    artifact: &Artifact,
    settings: &FetchSettings,
) -> Result<Tree, Failure> {
    let bytes = plumb_artifact::fetch_verified(
        http,
        &artifact.url,
        &artifact.digest,
        settings.max_artifact_size,
    )
    .await
    .map_err(|e| Failure::passing(e.to_string()))?;
    let (tree, _) = unpack_artifact(trees, &artifact.digest, bytes, settings.limits).await?;
    Ok(tree)
}

/// Lists the verified artifact `bytes` (of `digest`), checking them against `limits` before
/// anything is written, and unpacks them: over the directory of a cached tree that no render
/// holds and that most of it matches, else into a new one.
async fn unpack_artifact(
    trees: &Trees,
    digest: &Digest,
    bytes: Vec<u8>,
    limits: UnpackLimits,
) -> Result<(Tree, Unpacked), Failure> {
    let started = std::time::Instant::now();
    let candidates = trees.ready(digest);
    let (bytes, listing, kept, base) = blocking(move || {
        // The files no cached tree holds alike are the ones an unpack over one will write:
        // kept while listing, they need no second pass over the archive.
        let olds: Vec<&Listing> = candidates.iter().map(|(_, t)| t.index.listing()).collect();
        let wanted = |path: &Path, node: &Node| {
            !olds.is_empty() && olds.iter().all(|l| l.get(path) != Some(node))
        };
        let (listing, kept) =
            plumb_artifact::list_tar_gz_keeping(&bytes, limits, wanted, KEPT_BYTES)
                .map_err(refused)?;
        let base = closest(candidates, &listing);
        Ok((bytes, listing, kept, base))
    })
    .await?;
    let listed_ms = started.elapsed().as_millis();
    let base = base.and_then(|digest| trees.take_idle(&digest));
    let over = base.is_some();
    let (tree, unpacked) = blocking(move || unpack(&bytes, listing, &kept, base)).await?;
    tracing::info!(
        %digest,
        entries = tree.index.listing().len(),
        over_the_previous_tree = over,
        files_written = unpacked.files_written,
        from_kept = unpacked.from_kept,
        read_again = unpacked.read_again,
        listed_ms,
        elapsed_ms = started.elapsed().as_millis(),
        "source artifact listed and unpacked"
    );
    Ok((tree, unpacked))
}

/// The most file content kept while listing a new artifact, for the unpack that follows.
const KEPT_BYTES: u64 = 8 << 20;

/// Of `candidates`, the digest of the tree `listing` differs least from, when that is less than
/// half of it: the previous commit of the same repository, not another repository's tree.
fn closest(candidates: Vec<(Digest, Arc<Tree>)>, listing: &Listing) -> Option<Digest> {
    let (digest, changes) = candidates
        .iter()
        .map(|(d, t)| (d, t.index.listing().changes_to(listing)))
        .min_by_key(|(_, changes)| *changes)?;
    (changes.saturating_mul(2) < listing.len()).then(|| digest.clone())
}

/// Runs `f` on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure::passing(format!("unpacking: {e}")))?
}

/// The failure of an unpack: lasting when the archive itself was refused (over a limit, an
/// unsafe path or link); reading or writing may fail for a while (a full disk).
fn refused(e: UnpackError) -> Failure {
    Failure {
        lasting: !matches!(e, UnpackError::Io(_)),
        message: e.to_string(),
    }
}

/// Unpacks `bytes` (listed as `listing`, with the files `kept`) over `base`'s directory, or
/// (without a base, or when that fails) into a new temporary directory; indexes it from the
/// listing.
fn unpack(
    bytes: &[u8],
    listing: Listing,
    kept: &Kept,
    base: Option<Tree>,
) -> Result<(Tree, Unpacked), Failure> {
    if let Some(base) = base {
        let root = base.root.clone();
        match unpack_over(bytes, &listing, kept, base) {
            Ok((dir, unpacked)) => {
                let tree = Tree {
                    _dir: dir,
                    root,
                    unpacked: listing.bytes(),
                    index: Index::of_listing(listing),
                };
                return Ok((tree, unpacked));
            }
            // The base is gone with the error (its directory dropped): unpack anew.
            Err(e) => tracing::warn!(
                tree = %root.display(),
                error = %e,
                "unpacking a new source artifact over the previous tree failed; unpacking it anew"
            ),
        }
    }
    let dir = tempfile::tempdir().map_err(|e| Failure::passing(format!("temp dir: {e}")))?;
    let root = dir
        .path()
        .canonicalize()
        .map_err(|e| Failure::passing(format!("{}: {e}", dir.path().display())))?;
    let dir = TreeDir(Some(dir));
    let unpacked =
        plumb_artifact::unpack_listed_kept(bytes, &listing, kept, &root, &Listing::default())
            .map_err(refused)?;
    let tree = Tree {
        _dir: dir,
        root,
        unpacked: listing.bytes(),
        index: Index::of_listing(listing),
    };
    Ok((tree, unpacked))
}

/// Turns the directory of `base` into the tree of `listing` (read from `bytes`), writing only
/// what differs; the directory, which on failure is dropped (removed) with what it holds.
fn unpack_over(
    bytes: &[u8],
    listing: &Listing,
    kept: &Kept,
    base: Tree,
) -> Result<(TreeDir, Unpacked), String> {
    let Tree {
        _dir: dir,
        root,
        index,
        ..
    } = base;
    // A render over the base may have made its (empty) wrapper directory beside the tree,
    // unless the archive holds one of its own.
    if index.listing().get(Path::new(WRAPPER_DIR)).is_none() {
        match std::fs::remove_dir(root.join(WRAPPER_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.to_string()),
            _ => {}
        }
    }
    let unpacked = plumb_artifact::unpack_listed_kept(bytes, listing, kept, &root, index.listing())
        .map_err(|e| e.to_string())?;
    Ok((dir, unpacked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::from_sha256_hex(&c.to_string().repeat(64)).unwrap()
    }

    /// An empty tree.
    fn tree() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        Tree {
            index: Index::of_tree(&root).unwrap(),
            _dir: TreeDir(Some(dir)),
            root,
            unpacked: 0,
        }
    }

    #[test]
    fn a_dropped_tree_is_removed_on_a_blocking_thread_not_by_the_task_dropping_it() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            // The only blocking thread is busy until told otherwise.
            let (release, busy) = std::sync::mpsc::channel::<()>();
            let occupied = tokio::task::spawn_blocking(move || busy.recv());
            let t = tree();
            std::fs::write(t.root.join("file"), "x").unwrap();
            let root = t.root.clone();
            drop(t);
            assert!(root.exists(), "not removed by the task that dropped it");
            release.send(()).unwrap();
            occupied.await.unwrap().unwrap();
            while root.exists() {
                tokio::task::yield_now().await;
            }
        });
        let t = tree();
        let root = t.root.clone();
        drop(t);
        assert!(!root.exists(), "outside a runtime: removed at once");
    }

    #[tokio::test]
    async fn only_a_few_trees_are_prepared_at_once() {
        use futures::StreamExt;
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let trees = Trees::default();
        let started = AtomicUsize::new(0);
        let gate = Semaphore::new(0);
        let mut gets: futures::stream::FuturesUnordered<_> = ['a', 'b', 'c', 'd', 'e']
            .into_iter()
            .map(|c| {
                let (trees, started, gate) = (&trees, &started, &gate);
                let digest = digest(c);
                async move {
                    trees
                        .get_or_prepare(&digest, || async move {
                            started.fetch_add(1, SeqCst);
                            let _open = gate.acquire().await;
                            Ok(tree())
                        })
                        .await
                }
            })
            .collect();
        // Every get runs until it waits: for its turn, or (with one) for the gate.
        assert!(futures::poll!(gets.next()).is_pending());
        assert_eq!(started.load(SeqCst), PREPARED_AT_ONCE);
        gate.add_permits(5);
        let mut made = 0;
        while let Some(tree) = gets.next().await {
            tree.unwrap();
            made += 1;
        }
        assert_eq!((made, started.load(SeqCst)), (5, 5));
    }

    #[tokio::test]
    async fn a_refused_artifact_stays_refused_and_other_failures_are_tried_again() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let trees = Trees::default();
        let tries = AtomicUsize::new(0);
        let fail = |lasting: bool| {
            let tries = &tries;
            move || async move {
                tries.fetch_add(1, SeqCst);
                Err(Failure {
                    message: "no".to_owned(),
                    lasting,
                })
            }
        };
        for _ in 0..3 {
            let err = trees.get_or_prepare(&digest('a'), fail(true)).await;
            assert_eq!(err.unwrap_err(), "no");
        }
        assert_eq!(tries.load(SeqCst), 1, "refused once, remembered");
        for _ in 0..2 {
            let err = trees.get_or_prepare(&digest('b'), fail(false)).await;
            assert_eq!(err.unwrap_err(), "no");
        }
        assert_eq!(tries.load(SeqCst), 3, "a passing failure is tried again");
    }

    #[test]
    fn an_artifact_over_a_limit_is_refused_for_good_and_broken_bytes_are_not() {
        let unpack =
            |bytes: &[u8], limits| plumb_artifact::list_tar_gz(bytes, limits).map_err(refused);
        let deep = format!("{}/app.yaml", ["d"; 200].join("/"));
        let entries = vec![plumb_artifact::FileEntry {
            path: deep,
            executable: false,
            handle: b"x".to_vec(),
        }];
        let bytes = plumb_artifact::write_tar_gz(Vec::new(), entries, |h| Ok(h.clone())).unwrap();
        let refused = unpack(&bytes, UnpackLimits::default()).unwrap_err();
        assert!(refused.lasting, "{refused:?}");
        assert!(
            refused
                .message
                .starts_with("unpacking artifact: exceeds the limit of 128 directory levels"),
            "{refused:?}"
        );
        let broken = unpack(b"not a gzip", UnpackLimits::default()).unwrap_err();
        assert!(!broken.lasting, "{broken:?}");
    }

    /// The artifact of a repository of `apps` apps, each `apps/<i>/app.yaml`, app `changed`
    /// (if any) holding other content.
    fn repository(apps: usize, changed: Option<usize>) -> Vec<u8> {
        let entries = (0..apps)
            .map(|i| plumb_artifact::FileEntry {
                path: format!("apps/{i}/app.yaml"),
                executable: false,
                handle: if Some(i) == changed {
                    format!("app: {i}\nchanged: true\n")
                } else {
                    format!("app: {i}\n")
                },
            })
            .collect();
        plumb_artifact::write_tar_gz(Vec::new(), entries, |h| Ok(h.clone().into_bytes())).unwrap()
    }

    async fn unpacked(trees: &Trees, c: char, bytes: Vec<u8>) -> Arc<Tree> {
        unpacked_how(trees, c, bytes).await.0
    }

    /// The tree of `bytes` (as digest `c`) from `trees`, and how it was unpacked.
    async fn unpacked_how(trees: &Trees, c: char, bytes: Vec<u8>) -> (Arc<Tree>, Unpacked) {
        let d = digest(c);
        let how = std::sync::Mutex::new(Unpacked::default());
        let tree = trees
            .get_or_prepare(&d, || async {
                let (tree, unpacked) =
                    unpack_artifact(trees, &d, bytes, UnpackLimits::default()).await?;
                *how.lock().unwrap() = unpacked;
                Ok(tree)
            })
            .await
            .unwrap();
        let how = *how.lock().unwrap();
        (tree, how)
    }

    fn written_at(path: &Path) -> std::time::SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    fn digests(trees: &Trees) -> Vec<Digest> {
        let cells = trees.cells.lock().unwrap();
        cells.iter().map(|(d, _)| d.clone()).collect()
    }

    #[tokio::test]
    async fn a_new_commit_is_unpacked_over_the_idle_tree_of_the_last_writing_only_what_changed() {
        let trees = Trees::default();
        let old = unpacked(&trees, 'a', repository(50, None)).await;
        let (root, kept) = (old.root.clone(), old.root.join("apps/7/app.yaml"));
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        std::fs::File::open(&kept)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        // A render made its wrapper directory beside the tree.
        std::fs::create_dir(root.join(WRAPPER_DIR)).unwrap();
        drop(old);
        let (new, how) = unpacked_how(&trees, 'b', repository(50, Some(3))).await;
        assert_eq!(new.root, root, "unpacked over the old tree");
        assert_eq!(
            how,
            Unpacked {
                files_written: 1,
                from_kept: 1,
                read_again: false
            },
            "the changed file was kept while listing: the archive was read once"
        );
        assert_eq!(
            written_at(&kept),
            long_ago,
            "an unchanged file is not written again"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("apps/3/app.yaml")).unwrap(),
            "app: 3\nchanged: true\n"
        );
        assert!(!root.join(WRAPPER_DIR).exists());
        assert_eq!(
            digests(&trees),
            [digest('b')],
            "the old tree left the cache"
        );
        let fresh = tree_of(&repository(50, Some(3)));
        assert_eq!(
            new.index.listing(),
            fresh.index.listing(),
            "the same tree as unpacked anew"
        );
    }

    /// The tree of `bytes`, unpacked anew.
    fn tree_of(bytes: &[u8]) -> Tree {
        let listing = plumb_artifact::list_tar_gz(bytes, UnpackLimits::default()).unwrap();
        unpack(bytes, listing, &Kept::default(), None).unwrap().0
    }

    #[tokio::test]
    async fn a_tree_a_render_holds_or_of_another_repository_is_not_unpacked_over() {
        let trees = Trees::default();
        let held = unpacked(&trees, 'a', repository(50, None)).await;
        let new = unpacked(&trees, 'b', repository(50, Some(3))).await;
        assert_ne!(new.root, held.root, "a render holds the old tree");
        assert_eq!(
            std::fs::read_to_string(held.root.join("apps/3/app.yaml")).unwrap(),
            "app: 3\n",
            "which stays as it was"
        );
        drop((held, new));
        // Mostly other files: another repository's tree is left for its renders.
        let other = plumb_artifact::write_tar_gz(
            Vec::new(),
            vec![plumb_artifact::FileEntry {
                path: "apps/3/app.yaml".to_owned(),
                executable: false,
                handle: b"app: 3\n".to_vec(),
            }],
            |h| Ok(h.clone()),
        )
        .unwrap();
        let _other = unpacked(&trees, 'c', other).await;
        assert_eq!(digests(&trees), [digest('a'), digest('b'), digest('c')]);
    }

    #[test]
    fn the_least_recently_used_tree_is_dropped_first() {
        let trees = Trees::default();
        let first = trees.cell(&digest('a'));
        for c in ['b', 'c', 'd'] {
            trees.cell(&digest(c));
        }
        assert!(
            Arc::ptr_eq(&first, &trees.cell(&digest('a'))),
            "kept, and used again"
        );
        trees.cell(&digest('e'));
        let held: Vec<Digest> = trees
            .cells
            .lock()
            .unwrap()
            .iter()
            .map(|(d, _)| d.clone())
            .collect();
        assert_eq!(
            held,
            [digest('c'), digest('d'), digest('a'), digest('e')],
            "b was the least recently used"
        );
    }
}
