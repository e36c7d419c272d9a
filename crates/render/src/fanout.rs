//! Which Syncs a new source artifact wakes, and in which order.
//!
//! A commit to a repository many Syncs render from touches few of them. For each new artifact
//! of a GitRepository the tree is unpacked once ([`crate::trees`]) and each Sync's last render
//! is checked against it ([`Record::holds_in`](crate::cache::Record::holds_in)): the Syncs
//! whose inputs changed (or are unknown) are queued first; the others — whose reconcile only
//! carries the render to the new revision, a status write each — are queued once each of the
//! first has been reconciled, so a one-app commit is rendered and published before thousands of
//! status writes compete with it. The check here only orders; each reconcile decides again for
//! itself whether to render.
//!
//! The others then wait once more, until the sync controller has attempted to apply each of the
//! first whose render was published (its `status.lastAttemptedRevision` is the new revision), at
//! most [`Config::apply_first_timeout`](crate::Config::apply_first_timeout): their thousands of
//! status writes, and the sync controller's that follow each, would otherwise compete with
//! those applies on the API server.
//!
//! A newer artifact of the same repository supersedes a plan still waiting: it queues all of
//! the repository's Syncs again, in its own order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::ObjectRef;
use plumb_api::{Digest, GitRepository, Revision};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc::UnboundedSender;

use crate::cache::Record;
use crate::context::Context;
use crate::inputs::Index;
use crate::reconcile_sync::fetch_settings;
use crate::status::Outcome;
use crate::sync_view::SyncView;
use crate::watches;

/// The plan generation of each repository: a plan goes on only while it is the latest.
type Latest = Arc<Mutex<HashMap<ObjectRef<GitRepository>, u64>>>;

/// Whether `sync` is to be reconciled first (its render may change), not after (its last
/// render holds in the tree indexed as `index`, of artifact `digest`, or is of it already).
pub fn goes_first(
    rendered: &HashMap<Box<str>, Box<Record>>,
    sync: &ObjectRef<SyncView>,
    digest: &Digest,
    index: &Index,
) -> bool {
    !rendered
        .get(&plumb_ops::key_of(sync))
        .is_some_and(|r| r.key.source == *digest || r.holds_in(index))
}

/// Splits `syncs` into those to reconcile first and those after ([`goes_first`]).
#[cfg(test)]
fn order(
    rendered: &HashMap<Box<str>, Box<Record>>,
    syncs: Vec<ObjectRef<SyncView>>,
    digest: &Digest,
    index: &Index,
) -> (Vec<ObjectRef<SyncView>>, Vec<ObjectRef<SyncView>>) {
    syncs
        .into_iter()
        .partition(|s| goes_first(rendered, s, digest, index))
}

/// Plans every new artifact of `changes` (each repository's latest), queueing the Syncs into
/// `out`, until `changes` ends. `deletions` ticks when a Sync is deleted (a plan waiting for it
/// stops waiting).
pub async fn run(
    ctx: Arc<Context>,
    changes: impl Stream<Item = Arc<GitRepository>> + Send,
    deletions: impl Stream<Item = ()> + Send,
    out: UnboundedSender<ObjectRef<SyncView>>,
) {
    let latest = Latest::default();
    let mut plans = FuturesUnordered::new();
    let mut changes = std::pin::pin!(changes);
    let mut deletions = std::pin::pin!(deletions);
    let mut generation = 0u64;
    loop {
        tokio::select! {
            repo = changes.next() => {
                let Some(repo) = repo else { return };
                generation += 1;
                latest
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(ObjectRef::from_obj(repo.as_ref()), generation);
                plans.push(plan(ctx.clone(), repo, generation, latest.clone(), out.clone()));
            }
            Some(()) = deletions.next() => {
                ctx.finished.send_modify(|n| *n = n.wrapping_add(1));
            }
            Some(()) = plans.next(), if !plans.is_empty() => {}
        }
    }
}

/// Queues the Syncs of `repo`'s artifact: those it may change first, the others once each of
/// those has been reconciled, unless a newer plan for `repo` came meanwhile.
async fn plan(
    ctx: Arc<Context>,
    repo: Arc<GitRepository>,
    generation: u64,
    latest: Latest,
    out: UnboundedSender<ObjectRef<SyncView>>,
) {
    let syncs = watches::syncs_of_source(&ctx.syncs.state(), &repo);
    let artifact = repo.status.as_ref().and_then(|s| s.artifact.clone());
    let tree = match &artifact {
        Some(a) => match ctx.trees.get(&ctx.http, a, &fetch_settings(&ctx)).await {
            Ok(tree) => Some(tree),
            Err(e) => {
                // Said once per artifact here; each Sync's condition says it too.
                tracing::warn!(
                    source = %ObjectRef::from_obj(repo.as_ref()),
                    digest = %a.digest,
                    error = %e,
                    "the new source artifact cannot be used"
                );
                None
            }
        },
        None => None,
    };
    let Some((a, tree)) = artifact.as_ref().zip(tree) else {
        // No tree: every reconcile finds out for itself (and says why it cannot render).
        for s in syncs {
            let _ = out.send(s);
        }
        return;
    };
    let queued = Instant::now();
    let mut finished = ctx.finished.subscribe();
    // Each Sync the artifact may change is queued as soon as it is found, not after all of
    // thousands were checked (the lock is taken per Sync: a render may record itself between).
    let (mut first, mut later) = (Vec::new(), Vec::new());
    for s in syncs {
        let rendered = ctx.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if goes_first(&rendered, &s, &a.digest, &tree.index) {
            drop(rendered);
            ctx.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(s.clone(), queued);
            let _ = out.send(s.clone());
            first.push(s);
        } else {
            later.push(s);
        }
    }
    drop(tree);
    if later.is_empty() {
        return;
    }
    tracing::info!(
        source = %ObjectRef::from_obj(repo.as_ref()),
        touched = first.len(),
        unchanged = later.len(),
        checked_ms = queued.elapsed().as_millis(),
        "new source artifact: rendering the Syncs it touches first"
    );
    loop {
        let left = {
            let mut waiting = ctx.waiting.lock().unwrap_or_else(|e| e.into_inner());
            // A Sync deleted meanwhile is never reconciled: nothing to wait for.
            waiting.retain(|s, _| ctx.syncs.get(s).is_some());
            first
                .iter()
                .any(|s| waiting.get(s).is_some_and(|at| *at == queued))
        };
        if !left || finished.changed().await.is_err() {
            break;
        }
    }
    let current = || {
        latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&ObjectRef::from_obj(repo.as_ref()))
            == Some(&generation)
    };
    if let Some(a) = &artifact {
        let published = published_for(&ctx, &first, &a.digest);
        wait_for_applies(&ctx, &published, later.len(), &current, &mut finished).await;
    }
    if current() {
        for s in later {
            let _ = out.send(s);
        }
    }
}

/// The Syncs of `first` whose render was just published for source artifact `digest`, with the
/// source revision the sync controller will attempt.
fn published_for(
    ctx: &Context,
    first: &[ObjectRef<SyncView>],
    digest: &Digest,
) -> Vec<(ObjectRef<SyncView>, Revision)> {
    let rendered = ctx.rendered.lock().unwrap_or_else(|e| e.into_inner());
    first
        .iter()
        .filter_map(|s| {
            let record = rendered.get(&plumb_ops::key_of(s))?;
            if record.key.source != *digest {
                return None;
            }
            match record.outcome()? {
                Outcome::Published(r) => Some((s.clone(), r.source_revision?)),
                Outcome::Failed { .. } => None,
            }
        })
        .collect()
}

/// Whether the sync controller has yet to attempt `revision` of `sync` (a suspended Sync is
/// not applied at all, one deleted never will be).
fn awaits_apply(sync: Option<Arc<SyncView>>, revision: &Revision) -> bool {
    sync.is_some_and(|s| !s.suspended() && s.attempted() != Some(revision))
}

/// Holds `held` Syncs until the sync controller has attempted each of `published`, at most
/// [`Config::apply_first_timeout`](crate::Config::apply_first_timeout), and not once the plan is
/// no longer `current`.
async fn wait_for_applies(
    ctx: &Context,
    published: &[(ObjectRef<SyncView>, Revision)],
    held: usize,
    current: &impl Fn() -> bool,
    finished: &mut tokio::sync::watch::Receiver<u64>,
) {
    let timeout = ctx.config.apply_first_timeout;
    if timeout.is_zero() || published.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let _held = Held::new(&ctx.metrics.held, held);
    loop {
        let waiting = published
            .iter()
            .filter(|(s, revision)| awaits_apply(ctx.syncs.get(s), revision))
            .count();
        if waiting == 0 || !current() {
            break;
        }
        if !matches!(
            tokio::time::timeout_at(deadline, finished.changed()).await,
            Ok(Ok(()))
        ) {
            tracing::info!(
                waiting,
                ?timeout,
                "the Syncs a new source artifact changed were not all applied in time; moving the others to it"
            );
            break;
        }
    }
}

/// Counts Syncs as held in a gauge for as long as it lives (a plan dropped while waiting, as
/// when leadership ends, counts them no more).
struct Held<'a> {
    gauge: &'a Gauge,
    n: i64,
}

impl<'a> Held<'a> {
    fn new(gauge: &'a Gauge, n: usize) -> Self {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        gauge.inc_by(n);
        Self { gauge, n }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.gauge.dec_by(self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::RenderKey;
    use plumb_kustomize::Access;

    fn digest(c: char) -> Digest {
        Digest::from_sha256_hex(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn syncs_count_as_held_until_the_plan_holding_them_ends_or_is_dropped() {
        let gauge = Gauge::default();
        let plan = async {
            let _held = Held::new(&gauge, 3);
            std::future::pending::<()>().await;
        };
        let mut plan = Box::pin(plan);
        let waker = std::task::Waker::noop();
        let _ = plan
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        assert_eq!(gauge.get(), 3, "while the plan waits");
        drop(plan);
        assert_eq!(gauge.get(), 0, "a plan dropped while waiting");
    }

    #[test]
    fn syncs_whose_files_changed_or_never_rendered_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let write = |p: &str, t: &str| {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), t).unwrap();
        };
        write("apps/a/app.yaml", "a");
        write("apps/b/app.yaml", "b");
        let old = Index::of_tree(&root).unwrap();
        let record = |app: &str, outcome: Outcome| {
            let key = RenderKey {
                source: digest('1'),
                rest: [0; 32],
            };
            let inputs = crate::inputs::Inputs::observe(
                &root,
                &[(Access::Read, root.join(format!("apps/{app}/app.yaml")))],
                &old,
            );
            Record::new(key, outcome, inputs.map(Arc::new))
        };
        let published = || Outcome::Published(Default::default());
        let sync = |n: &str| ObjectRef::<SyncView>::new(n).within("team");
        let mut rendered = HashMap::new();
        rendered.insert(
            plumb_ops::key_of(&sync("a")),
            Box::new(record("a", published())),
        );
        rendered.insert(
            plumb_ops::key_of(&sync("b")),
            Box::new(record("b", published())),
        );
        rendered.insert(
            plumb_ops::key_of(&sync("failed-b")),
            Box::new(record("b", Outcome::failed("BuildFailed", "x"))),
        );
        let mut at_new = record("a", published());
        at_new.key.source = digest('2');
        rendered.insert(plumb_ops::key_of(&sync("already")), Box::new(at_new));
        write("apps/a/app.yaml", "a2");
        let new = Index::of_tree(&root).unwrap();
        let all = ["a", "b", "failed-b", "already", "new"].map(sync).to_vec();
        let (first, later) = order(&rendered, all, &digest('2'), &new);
        let names = |v: Vec<ObjectRef<SyncView>>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(first), ["a", "failed-b", "new"]);
        assert_eq!(names(later), ["b", "already"]);
    }
}
