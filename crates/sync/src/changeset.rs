//! One pass over a Sync's objects: which need applying (new content, missing, drifted), applying
//! them stage by stage, pruning what left, and reading their health — reading live objects from
//! the drift watches' caches so an unchanged object costs no request.

use std::collections::HashSet;
use std::time::Duration;

use kube::Client;
use kube::core::GroupVersionKind;
use kube::runtime::reflector::ObjectRef;
use serde_json::Value;

use plumb_api::ObjectId;
use plumb_api::inventory::InventoryEntry;
use plumb_api::policy::{DriftIgnore, DriftMode};

use crate::apply::{self, ApplyError, Desired};
use crate::context::{Context, Intent, SyncState};
use crate::deps::Key;
use crate::drift;
use crate::health::{self, Health};
use crate::inventory;
use crate::manifest::Manifest;
use crate::stage::{self, Stage};

/// How an object compares with what plumb wants of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// It holds the intent.
    InSync,
    /// It does not exist.
    Missing,
    /// The intent changed (new revision or policy).
    Changed,
    /// It was changed by someone else at this path.
    Drifted(String),
    /// Its owner labels now name another Sync: it was handed over, not drifted.
    Reowned(String),
}

/// What to do with objects that drifted.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Apply everything that differs (a new revision, spec or a requested reconcile).
    pub new_revision: bool,
    /// The safety-net reconcile: correct drift even in mode Ignore.
    pub periodic: bool,
    /// The drift mode in force.
    pub drift: DriftMode,
    /// Recreate on immutable-field errors.
    pub force: bool,
    /// Bound on waits (CRDs Established, deletes).
    pub timeout: Duration,
}

/// The result of a pass.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Objects applied in apply order, with their inventory entry.
    pub objects: Vec<Desired>,
    /// How many objects were applied (created or changed).
    pub applied: Vec<ObjectId>,
    /// Drifted objects re-applied.
    pub corrected: Vec<ObjectId>,
    /// Drifted objects left as they are (mode Report).
    pub reported: Vec<ObjectId>,
}

fn live_in_cache(ctx: &Context, d: &Desired) -> Option<Value> {
    let store = ctx.watches.ready_store(&d.res)?;
    let mut r = ObjectRef::new_with(&d.id.name, d.res.ar.clone());
    if let Some(ns) = d.namespace() {
        r = r.within(ns);
    }
    store
        .get(&r)
        .and_then(|o| serde_json::to_value(o.as_ref()).ok())
}

/// Compares `d` with the live object: from the watch cache first, confirmed by a read before
/// anything is reported different (the cache may lag), normalized by a dry run when plumb has no
/// record of applying it (after a restart).
pub async fn check(
    ctx: &Context,
    client: &Client,
    state: &mut SyncState,
    key: &Key,
    d: &Desired,
) -> Result<Check, ApplyError> {
    let intent = state.intents.get(&d.id).cloned();
    if intent.as_ref().is_some_and(|i| i.body != d.body) {
        return Ok(Check::Changed);
    }
    let want = intent.as_ref().map_or(&d.body, |i| &i.normalized);
    let cached = ctx.watches.ready_store(&d.res).is_some();
    match live_in_cache(ctx, d) {
        Some(live) if drift::diff(want, &live).is_none() => return Ok(Check::InSync),
        // Never applied by us and not among the labelled objects: create (or adopt) it without
        // asking first.
        None if cached && intent.is_none() => return Ok(Check::Missing),
        _ => {}
    }
    let Some(live) = apply::get(client, &d.res, &d.id).await? else {
        return Ok(Check::Missing);
    };
    if let Some(other) = other_owner(&live, key) {
        return Ok(Check::Reowned(other));
    }
    let Some(path) = drift::diff(want, &live) else {
        if intent.is_none() {
            remember(state, d, &live);
        }
        return Ok(Check::InSync);
    };
    if intent.is_some() {
        return Ok(Check::Drifted(path));
    }
    // No record of applying it: the difference may be only the server's normal form.
    let dry = apply::apply(client, d, true).await?;
    let normalized = drift::project(&d.body, &dry);
    match drift::diff(&normalized, &live) {
        None => {
            state.intents.insert(
                d.id.clone(),
                Intent {
                    body: d.body.clone(),
                    normalized,
                    generation: generation_of(&live),
                },
            );
            Ok(Check::InSync)
        }
        Some(path) => Ok(Check::Drifted(path)),
    }
}

/// The Sync named by `live`'s owner labels when that is not `key`.
fn other_owner(live: &Value, key: &Key) -> Option<String> {
    let labels = apply::labels_of(live)?;
    let name = labels.get(plumb_api::SYNC_NAME_LABEL)?;
    let ns = labels.get(plumb_api::SYNC_NAMESPACE_LABEL)?;
    (*ns != key.0 || *name != key.1).then(|| format!("{ns}/{name}"))
}

fn remember(state: &mut SyncState, d: &Desired, answer: &Value) {
    state.intents.insert(
        d.id.clone(),
        Intent {
            body: d.body.clone(),
            normalized: drift::project(&d.body, answer),
            generation: generation_of(answer),
        },
    );
}

fn generation_of(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/generation").and_then(Value::as_i64)
}

/// Resolves, prepares, compares and applies `manifests` in stages.
#[allow(clippy::too_many_arguments)]
pub async fn apply_all(
    ctx: &Context,
    client: &Client,
    state: &mut SyncState,
    key: &Key,
    default_ns: &str,
    ignores: &[&DriftIgnore],
    manifests: &[Manifest],
    mode: Mode,
) -> Result<Outcome, ApplyError> {
    let mut sorted: Vec<&Manifest> = manifests.iter().collect();
    stage::sort_for_apply(&mut sorted, |m| (m.group(), m.kind.as_str()));
    let mut out = Outcome::default();
    for current in [Stage::Cluster, Stage::Classes, Stage::Rest] {
        let mut crds = Vec::new();
        for m in sorted
            .iter()
            .filter(|m| stage::stage_of(m.group(), &m.kind) == current)
        {
            let res = ctx.resolver.resolve_manifest(m).await?;
            let d = apply::prepare(m, res, &key.0, &key.1, default_ns, ignores);
            // Start (or join) the watch of this kind, so its cache serves the comparison.
            let _ = ctx
                .watches
                .store(&d.res, key, Duration::from_secs(10))
                .await;
            let found = check(ctx, client, state, key, &d).await?;
            let apply_now = match &found {
                Check::InSync => false,
                _ if mode.new_revision => true,
                // Handed to another Sync: taking it back is for a new revision to decide.
                Check::Reowned(_) => false,
                Check::Changed => true,
                Check::Missing | Check::Drifted(_) => match mode.drift {
                    DriftMode::Correct => true,
                    DriftMode::Ignore => mode.periodic,
                    DriftMode::Report => false,
                },
            };
            if apply_now {
                let answer = apply::apply_or_recreate(client, &d, mode.force, mode.timeout).await?;
                remember(state, &d, &answer);
                if !mode.new_revision && matches!(found, Check::Missing | Check::Drifted(_)) {
                    tracing::info!(object = %d.id, ?found, "drift corrected");
                    out.corrected.push(d.id.clone());
                } else {
                    out.applied.push(d.id.clone());
                }
            } else if let Check::Reowned(other) = &found {
                tracing::debug!(object = %d.id, owner = %other, "owned by another Sync; not corrected");
            } else if !matches!(found, Check::InSync) {
                tracing::info!(object = %d.id, ?found, "drift reported");
                out.reported.push(d.id.clone());
            }
            if d.id.kind == "CustomResourceDefinition" {
                crds.push(d.clone());
            }
            out.objects.push(d);
        }
        for crd in &crds {
            let established = |o: Option<&Value>| {
                o.is_some_and(|o| health::assess(&crd.id.group, &crd.id.kind, o).is_current())
            };
            if live_in_cache(ctx, crd).is_some_and(|o| established(Some(&o))) {
                continue;
            }
            apply::wait_for(
                client,
                &crd.res,
                &crd.id,
                mode.timeout,
                "was not Established",
                established,
            )
            .await?;
        }
    }
    Ok(out)
}

/// The inventory entries of applied objects, in apply order.
pub fn entries(objects: &[Desired]) -> Vec<InventoryEntry> {
    objects
        .iter()
        .map(|d| InventoryEntry::new(&d.id, &d.version))
        .collect()
}

/// The kinds of applied objects.
pub fn kinds(objects: &[Desired]) -> HashSet<GroupVersionKind> {
    objects
        .iter()
        .map(|d| GroupVersionKind::gvk(&d.res.ar.group, &d.res.ar.version, &d.res.ar.kind))
        .collect()
}

/// What a prune did.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Deleted objects.
    pub deleted: Vec<ObjectId>,
    /// Objects left alone: owned by another Sync or `plumb.dev/prune: disabled`.
    pub skipped: Vec<ObjectId>,
    /// Entries whose delete failed; they stay in the inventory.
    pub failed: Vec<(InventoryEntry, String)>,
}

/// Deletes the objects of `old` that are not in `new`, in reverse apply order, when their owner
/// labels still name Sync `key` and they do not opt out.
pub async fn prune(
    ctx: &Context,
    client: &Client,
    state: &mut SyncState,
    key: &Key,
    old: &[InventoryEntry],
    new: &[InventoryEntry],
) -> Pruned {
    let mut out = Pruned::default();
    for entry in inventory::prune_set(old, new) {
        let Ok(id) = entry.object_id() else { continue };
        state.intents.remove(&id);
        let result = async {
            let res = ctx
                .resolver
                .resolve(&id.group, &entry.v, &id.kind)
                .await
                .map_err(|e| e.to_string())?;
            let Some(live) = apply::get(client, &res, &id)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(false);
            };
            let labels = apply::labels_of(&live);
            if !inventory::owned_by(labels.as_ref(), &key.0, &key.1)
                || inventory::prune_disabled(apply::annotations_of(&live).as_ref())
            {
                return Ok(false);
            }
            apply::delete(client, &res, &id)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(true)
        }
        .await;
        match result {
            Ok(true) => out.deleted.push(id),
            Ok(false) => out.skipped.push(id),
            Err(e) => out.failed.push((entry, e)),
        }
    }
    out
}

/// The objects that are not healthy, judged from the watch caches (an object not seen there
/// yet, or only at a generation older than the one applied, is in progress; its arrival
/// triggers another reconcile).
pub fn unhealthy(ctx: &Context, state: &SyncState, objects: &[Desired]) -> Vec<(ObjectId, Health)> {
    objects
        .iter()
        .filter_map(|d| {
            let applied = state.intents.get(&d.id).and_then(|i| i.generation);
            let h = match live_in_cache(ctx, d) {
                Some(live) if generation_of(&live) < applied => {
                    Health::InProgress("not yet observed".into())
                }
                Some(live) => health::assess(&d.id.group, &d.id.kind, &live),
                None => Health::InProgress("not yet observed".into()),
            };
            (!h.is_current()).then(|| (d.id.clone(), h))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_labelled_for_another_sync_is_reowned() {
        let key = ("ns".to_owned(), "app".to_owned());
        let live = |name: &str, ns: &str| json!({"metadata": {"labels": {"sync.plumb.dev/name": name, "sync.plumb.dev/namespace": ns}}});
        assert_eq!(other_owner(&live("app", "ns"), &key), None);
        assert_eq!(
            other_owner(&live("other", "ns"), &key).as_deref(),
            Some("ns/other")
        );
        assert_eq!(
            other_owner(&live("app", "elsewhere"), &key).as_deref(),
            Some("elsewhere/app")
        );
        // Labels removed by hand are drift, not a hand-over.
        assert_eq!(other_owner(&json!({"metadata": {}}), &key), None);
    }
}
