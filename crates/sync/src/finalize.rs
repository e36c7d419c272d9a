//! Deleting a Sync: its finalizer, and what `spec.deletionPolicy` does to the objects it applied.
//!
//! The objects are those of the last applied inventory in the Sync's status (and of an apply whose
//! report `--progress-report-delay` still holds back, see `memory`), so deletion works
//! when the source or the render is gone. They are deleted as prune deletes them: in reverse apply
//! order, only while their owner labels still name the Sync, never when annotated
//! `plumb.dev/prune: disabled` or `plumb.dev/reconcile: disabled`. A suspended Sync deletes
//! nothing. While the controller is not running the finalizer simply holds the Sync until it is.
//!
//! A failed deletion keeps the finalizer, writes `Ready=False` with reason `DeletionFailed`, keeps
//! what is left in the inventory and retries, except while the Sync's own namespace is being
//! deleted: its ServiceAccount or RBAC may be gone already, and holding the Sync would hold the
//! namespace forever, so the controller gives up with a `DeletionAbandoned` Event naming what was
//! left. If a person removes the finalizer by hand, the
//! Sync goes at once and what was not deleted stays in the cluster; that is never silent: the
//! `Deleting` Event names every object of the inventory before anything is deleted, each object
//! left keeps its owner labels (`sync.plumb.dev/name`, `sync.plumb.dev/namespace`), and a
//! controller that sees the Sync vanish during a deletion logs and records a `DeletionAbandoned`
//! Event naming what was left.

use std::sync::Arc;

use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalize, finalizer};
use plumb_ops::EventType;
use serde_json::json;

use plumb_api::inventory::InventoryEntry;
use plumb_api::sync::DeletionPolicy;
use plumb_api::{ConditionExt, SYNC_FIELD_MANAGER, Sync, reason};

use crate::context::{Context, key_of};
use crate::error::Error;
use crate::manager::ResourceManager;

/// The finalizer the sync controller puts on every Sync it reconciles.
pub const FINALIZER: &str = "sync.plumb.dev/finalizer";

/// Runs `apply` for a live Sync, or the deletion of a Sync being deleted, with the finalizer
/// added before the first apply and removed once the deletion is done. A live Sync without the
/// finalizer gets it and is applied in the same pass (not in the pass its watch event would
/// wake), so a new Sync costs no extra trip through the queue.
pub async fn with_finalizer<F, Fut>(
    sync: Arc<Sync>,
    ctx: Arc<Context>,
    apply: F,
) -> Result<Action, Error>
where
    F: FnOnce(Arc<Sync>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>>,
{
    let key = key_of(&sync);
    let being_deleted = sync.metadata.deletion_timestamp.is_some();
    let api: Api<Sync> = Api::namespaced(ctx.client.clone(), &key.0);
    if !being_deleted && !has_finalizer(&sync) {
        let sync = add_finalizer(&api, &sync)
            .await
            .map_err(Error::write(&key))?;
        return apply(Arc::new(sync), ctx).await;
    }
    let result = finalizer(&api, FINALIZER, sync, |event| async {
        match event {
            Finalize::Apply(sync) => apply(sync, ctx.clone()).await,
            Finalize::Cleanup(sync) => cleanup(&sync, &ctx).await,
        }
    })
    .await;
    if result.is_ok() && being_deleted {
        ctx.forget(&key);
    }
    result.map_err(|e| Error::Finalizer(Box::new(e)))
}

fn has_finalizer(sync: &Sync) -> bool {
    sync.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// Adds the finalizer as kube's finalizer helper does, by a JSON patch that first tests the
/// list it extends (the API server does not deduplicate finalizers, so a list changed meanwhile
/// fails the patch, and the pass is retried); returns the Sync as stored.
async fn add_finalizer(api: &Api<Sync>, sync: &Sync) -> Result<Sync, kube::Error> {
    let patch = match sync.metadata.finalizers.as_deref() {
        None | Some([]) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]},
        ]),
        Some(present) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": present},
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
        ]),
    };
    let patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    let name = sync.metadata.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
}

/// What deletion does with the objects, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Leave them in the cluster.
    Orphan(&'static str),
    /// Delete them; with `wait`, until they are gone.
    Delete {
        /// Wait until every deleted object is gone.
        wait: bool,
    },
}

/// The deletion plan of a Sync with `policy`, `prune` and `suspend`.
pub fn plan(policy: DeletionPolicy, prune: bool, suspend: bool) -> Plan {
    if suspend {
        return Plan::Orphan("the Sync is suspended");
    }
    match policy {
        DeletionPolicy::Orphan => Plan::Orphan("deletionPolicy is Orphan"),
        DeletionPolicy::MirrorPrune if !prune => {
            Plan::Orphan("deletionPolicy is MirrorPrune and prune is off")
        }
        DeletionPolicy::WaitForTermination => Plan::Delete { wait: true },
        DeletionPolicy::MirrorPrune | DeletionPolicy::Delete => Plan::Delete { wait: false },
    }
}

async fn cleanup(sync: &Sync, ctx: &Context) -> Result<Action, Error> {
    let key = key_of(sync);
    let spec = &sync.spec;
    let status = sync.status.clone().unwrap_or_default();
    let memory = ctx.memories.of(&key);
    let mut memory = memory.lock().await;
    // With the objects of an apply whose status report was held back (`--progress-report-delay`).
    let inventory = memory.to_delete(status.inventory.clone().unwrap_or_default());
    let names = || {
        inventory
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wait = match plan(spec.deletion_policy, spec.prune, spec.suspend) {
        Plan::Orphan(why) => {
            if !inventory.is_empty() {
                let note = format!(
                    "{why}: {} objects left in the cluster: {}",
                    inventory.len(),
                    names()
                );
                ctx.event(sync, EventType::Normal, "Orphaned", note).await;
            }
            return Ok(Action::await_change());
        }
        Plan::Delete { wait } => wait,
    };
    if inventory.is_empty() {
        return Ok(Action::await_change());
    }
    if !memory.deleting() {
        let note = format!(
            "deleting {} objects ({:?}): {}",
            inventory.len(),
            spec.deletion_policy,
            names()
        );
        ctx.event(sync, EventType::Normal, "Deleting", note).await;
    }
    memory.set_deleting(Some(inventory.clone()));
    let timeout = spec.timeout.as_ref().unwrap_or(&spec.interval).get();
    let mut manager = ResourceManager::for_sync(ctx, sync, &mut memory)?;
    let done = manager
        .delete_all(&inventory, wait.then_some(timeout))
        .await;
    if done.failed.is_empty() {
        memory.set_deleting(None);
        let note = format!(
            "deleted {} objects, left {} (another owner, opted out or already gone)",
            done.deleted.len(),
            done.skipped.len()
        );
        ctx.event(sync, EventType::Normal, "Deleted", note).await;
        return Ok(Action::await_change());
    }
    let left: Vec<InventoryEntry> = done.failed.iter().map(|(e, _)| e.clone()).collect();
    memory.set_deleting(Some(left.clone()));
    let failures = done
        .failed
        .into_iter()
        .filter_map(|(e, err)| Some((e.object_id().ok()?, err)))
        .collect();
    let error = Error::Deletion(failures);
    if ctx.namespace_terminating(&key.0) {
        // Its ServiceAccount or RBAC may be gone already: holding the Sync would hold the
        // namespace forever. Give up, and say so.
        memory.set_deleting(None);
        let ids: Vec<&str> = left.iter().map(|e| e.id.as_str()).collect();
        let note = format!(
            "namespace {} is being deleted; gave up deleting the Sync's objects ({error}); left in \
             the cluster with their owner labels: {}",
            key.0,
            ids.join(", ")
        );
        ctx.event(sync, EventType::Warning, "DeletionAbandoned", note)
            .await;
        return Ok(Action::await_change());
    }
    let mut next = status.clone();
    next.render = None;
    next.conditions
        .retain(|c| c.type_ != plumb_api::condition_type::RENDERED);
    next.inventory = Some(left);
    next.conditions.mark_failed(
        reason::DELETION_FAILED,
        &error.to_string(),
        sync.metadata.generation,
    );
    let api: Api<Sync> = Api::namespaced(ctx.client.clone(), &key.0);
    let body = json!({"apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": next});
    if let Err(e) = api
        .patch_status(
            &key.1,
            &PatchParams::apply(SYNC_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        tracing::warn!(error = %e, "writing the deletion failure failed");
    }
    ctx.event(sync, EventType::Warning, error.reason(), error.to_string())
        .await;
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_plans() {
        use DeletionPolicy::*;
        let cases = [
            (MirrorPrune, true, false, Plan::Delete { wait: false }),
            (
                MirrorPrune,
                false,
                false,
                Plan::Orphan("deletionPolicy is MirrorPrune and prune is off"),
            ),
            (Delete, false, false, Plan::Delete { wait: false }),
            (
                WaitForTermination,
                false,
                false,
                Plan::Delete { wait: true },
            ),
            (
                Orphan,
                true,
                false,
                Plan::Orphan("deletionPolicy is Orphan"),
            ),
            (Delete, true, true, Plan::Orphan("the Sync is suspended")),
        ];
        for (policy, prune, suspend, want) in cases {
            assert_eq!(
                plan(policy, prune, suspend),
                want,
                "{policy:?} prune={prune} suspend={suspend}"
            );
        }
    }
}
