//! Source trees, downloaded and unpacked once per artifact digest and shared by every render
//! of that digest: a commit to a repository of 5000 apps unpacks its artifact once, not 5000
//! times. Each tree comes with its [`Index`], which tells a render's recorded inputs whether
//! they still hold.
//!
//! The last [`TREES_KEPT`] trees used stay; an older one is dropped from the cache, and its
//! directory removed once the last render using it ends. A failed download or unpack is the
//! answer of every render that waited for it, and is then forgotten: a later render of that
//! digest tries again.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use plumb_api::Digest;
use plumb_api::reference::Artifact;
use plumb_artifact::UnpackLimits;
use tokio::sync::OnceCell;

use crate::inputs::Index;

/// How many unpacked source trees are kept for later renders. Renders of one commit share one
/// tree; a few more serve Syncs of other repositories, or of an older commit, in between.
pub const TREES_KEPT: usize = 4;

/// One unpacked source artifact, read only.
#[derive(Debug)]
pub struct Tree {
    /// Removed when the last holder of the tree drops it.
    _dir: tempfile::TempDir,
    /// The canonical path of the tree's root.
    pub root: PathBuf,
    /// Every file and directory of the tree.
    pub index: Index,
    /// The bytes the tree unpacked to (a render's time allowance grows with it).
    pub unpacked: u64,
}

type Cell = Arc<OnceCell<Result<Arc<Tree>, String>>>;

/// The shared trees, by artifact digest, least recently used first.
#[derive(Debug, Default)]
pub struct Trees {
    cells: Mutex<VecDeque<(Digest, Cell)>>,
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
        let cell = self.cell(&artifact.digest);
        let tree = cell
            .get_or_init(|| async {
                let bytes = plumb_artifact::fetch_verified(
                    http,
                    &artifact.url,
                    &artifact.digest,
                    settings.max_artifact_size,
                )
                .await
                .map_err(|e| e.to_string())?;
                let limits = settings.limits;
                tokio::task::spawn_blocking(move || unpack(&bytes, limits))
                    .await
                    .map_err(|e| format!("unpacking: {e}"))?
                    .map(Arc::new)
            })
            .await
            .clone();
        if tree.is_err() {
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells.retain(|(_, c)| !Arc::ptr_eq(c, &cell));
        }
        tree
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
}

/// Unpacks `bytes` into a new temporary directory and indexes it.
fn unpack(bytes: &[u8], limits: UnpackLimits) -> Result<Tree, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let unpacked =
        plumb_artifact::unpack_tar_gz(bytes, dir.path(), limits).map_err(|e| e.to_string())?;
    let root = dir
        .path()
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.path().display()))?;
    let index = Index::of_tree(&root).map_err(|e| format!("indexing the source: {e}"))?;
    Ok(Tree {
        _dir: dir,
        root,
        index,
        unpacked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::from_sha256_hex(&c.to_string().repeat(64)).unwrap()
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
