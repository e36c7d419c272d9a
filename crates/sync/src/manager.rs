//! The apply engine, in the vocabulary of Flux's `ssa.ResourceManager`: [`ResourceManager::diff`]
//! an object against what is live, [`ResourceManager::apply_all`] a render stage by stage,
//! [`ResourceManager::prune`] what left it (or [`ResourceManager::delete_all`] of a Sync being
//! deleted), and [`ResourceManager::unhealthy`] to wait on. Live objects are read from the drift
//! watches' caches, so an unchanged object costs no request; which object to apply, skip or
//! report is the pure [`decide`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;

use kube::Client;
use kube::core::GroupVersionKind;
use serde_json::Value;

use plumb_api::inventory::InventoryEntry;
use plumb_api::policy::{DriftIgnore, DriftMode};
use plumb_api::{ObjectId, SYNC_FIELD_MANAGER, Sync};

use crate::apply::{self, ApplyError, Desired, Resolver};
use crate::context::Context;
use crate::controls::{self, Controls, Ssa};
use crate::custom_health::HealthExprs;
use crate::deps::Key;
use crate::drift;
use crate::health::{self, Health};
use crate::inventory;
use crate::manifest::Manifest;
use crate::memory::{Intent, SyncMemory};
use crate::stage::{self, Stage};
use crate::watches::Watches;

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
    /// Its owner labels name another Sync (`namespace/name`).
    OwnedByOther(String),
}

/// Why the object is looked at in this pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Apply everything that differs (a new revision, spec or a requested reconcile).
    pub new_revision: bool,
    /// The safety-net reconcile: correct drift even in mode Ignore.
    pub periodic: bool,
    /// The drift mode in force.
    pub drift: DriftMode,
}

/// What to do with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Server-side apply it.
    Apply,
    /// Leave it: in sync, or its controls say so.
    Skip,
    /// Leave it, and report it as drifted.
    Report,
    /// Leave it: another Sync (`namespace/name`) applied it and no takeover is allowed.
    Refuse(String),
}

/// The apply/skip/report decision for one object.
pub fn decide(found: &Check, mode: Mode, controls: Controls) -> Decision {
    if controls.reconcile_disabled || controls.ssa == Ssa::Ignore {
        return Decision::Skip;
    }
    match found {
        Check::InSync => Decision::Skip,
        Check::OwnedByOther(owner) if !controls.takeover => Decision::Refuse(owner.clone()),
        Check::Missing if controls.ssa == Ssa::IfNotPresent => Decision::Apply,
        _ if controls.ssa == Ssa::IfNotPresent => Decision::Skip,
        _ if mode.new_revision => Decision::Apply,
        // Taking an object over is for a new revision to do.
        Check::OwnedByOther(_) => Decision::Skip,
        Check::Changed => Decision::Apply,
        Check::Missing | Check::Drifted(_) => match mode.drift {
            DriftMode::Correct => Decision::Apply,
            DriftMode::Ignore if mode.periodic => Decision::Apply,
            DriftMode::Ignore | DriftMode::Report => Decision::Report,
        },
    }
}

/// How to apply a render.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Why the objects are looked at.
    pub mode: Mode,
    /// Recreate objects whose immutable fields changed (`spec.force`).
    pub force: bool,
    /// Bound on waits (CRDs Established, deletes).
    pub timeout: Duration,
    /// The namespace of namespaced objects that name none.
    pub default_namespace: String,
    /// The governing Policies' `drift.ignore` rules.
    pub ignores: Vec<DriftIgnore>,
}

/// What an apply did.
#[derive(Debug, Default)]
pub struct ChangeSet {
    /// The objects of the render that are the Sync's, in apply order (its next inventory).
    pub objects: Vec<Desired>,
    /// Objects created or changed for the revision.
    pub applied: Vec<ObjectId>,
    /// Drifted objects re-applied.
    pub corrected: Vec<ObjectId>,
    /// Drifted objects left as they are.
    pub reported: Vec<ObjectId>,
    /// Objects another Sync applied, with that Sync; not applied, not in the inventory.
    pub conflicts: Vec<(ObjectId, String)>,
    /// Objects in the inventory plumb does not manage now (`reconcile: disabled`, `ssa: Ignore`);
    /// their health is not awaited.
    pub unmanaged: HashSet<ObjectId>,
    /// The API server's answers to this pass's applies, and the objects this pass read and found
    /// in sync (without field ownership): what the
    /// objects were when applied, for health until their watches have seen them.
    pub answers: HashMap<ObjectId, Value>,
}

impl ChangeSet {
    /// The inventory entries of the objects, in apply order.
    pub fn entries(&self) -> Vec<InventoryEntry> {
        self.objects
            .iter()
            .map(|d| InventoryEntry::new(&d.id, &d.version))
            .collect()
    }

    /// The kinds of the objects.
    pub fn kinds(&self) -> HashSet<GroupVersionKind> {
        self.objects
            .iter()
            .map(|d| GroupVersionKind::gvk(&d.res.ar.group, &d.res.ar.version, &d.res.ar.kind))
            .collect()
    }
}

/// What a prune or a deletion did.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Deleted objects.
    pub deleted: Vec<ObjectId>,
    /// Objects left alone: owned by another Sync, `plumb.dev/prune: disabled` or
    /// `plumb.dev/reconcile: disabled`, or already gone.
    pub skipped: Vec<ObjectId>,
    /// Entries whose delete failed; they stay in the inventory.
    pub failed: Vec<(InventoryEntry, ApplyError)>,
}

/// The apply engine for one Sync: its client (impersonating when asked), its memory, and the
/// shared discovery and watch caches.
pub struct ResourceManager<'a> {
    resolver: &'a Resolver,
    watches: &'a Watches,
    client: Client,
    owner: Key,
    memory: &'a mut SyncMemory,
}

impl<'a> ResourceManager<'a> {
    /// The engine of Sync `owner`, applying with `client`.
    pub fn new(
        resolver: &'a Resolver,
        watches: &'a Watches,
        client: Client,
        owner: Key,
        memory: &'a mut SyncMemory,
    ) -> Self {
        Self {
            resolver,
            watches,
            client,
            owner,
            memory,
        }
    }

    /// The engine of `sync`, applying with its client (impersonating its service account, or
    /// the default one, when set).
    pub fn for_sync(
        ctx: &'a Context,
        sync: &Sync,
        memory: &'a mut SyncMemory,
    ) -> Result<Self, crate::error::Error> {
        let key = crate::deps::key_of(sync);
        let client = ctx
            .client_for(&key.0, sync.spec.service_account_name.as_deref())
            .map_err(crate::error::Error::Impersonation)?;
        Ok(Self::new(&ctx.resolver, &ctx.watches, client, key, memory))
    }

    /// The live object of `d` from its watch's cache (without field-ownership records): `None`
    /// when the cache cannot tell (its watch has not listed), `Some(None)` when it is not there.
    fn cached(&self, d: &Desired) -> Option<Option<Value>> {
        self.watches.cached(&d.res, d.namespace(), &d.id.name)
    }

    fn remember(&mut self, d: &Desired, shape: &Value, answer: &Value) {
        let intent = Intent::new(
            &d.body,
            drift::project(shape, answer),
            generation_of(answer),
        );
        self.memory.record_intent(&d.id, intent);
    }

    /// Compares `d` with the live object: from the watch cache first, confirmed by a read before
    /// anything is reported different (the cache may lag), normalized by a dry run when plumb has
    /// no record of applying it (after a restart). Returns the live object when it was seen.
    pub async fn diff(&mut self, d: &Desired) -> Result<(Check, Option<Value>), ApplyError> {
        let intent = self.memory.intent(&d.id).cloned();
        if intent.as_ref().is_some_and(|i| !i.is_for(&d.body)) {
            let live = self.cached(d).flatten();
            return Ok((Check::Changed, live));
        }
        let want = intent.as_ref().map_or(&d.body, |i| i.normalized(&d.body));
        match self.cached(d) {
            Some(Some(live)) if drift::diff(want, &live).is_none() => {
                return Ok((Check::InSync, Some(live)));
            }
            // Never applied by us and not among the labelled objects: create (or adopt) it
            // without asking first.
            Some(None) if intent.is_none() => return Ok((Check::Missing, None)),
            _ => {}
        }
        let Some(live) = apply::get(&self.client, &d.res, &d.id).await? else {
            return Ok((Check::Missing, None));
        };
        if let Some(other) = other_owner(&live, &self.owner) {
            return Ok((Check::OwnedByOther(other), Some(live)));
        }
        let Some(path) = drift::diff(want, &live) else {
            if intent.is_none() {
                self.remember(d, &d.body, &live);
            }
            return Ok((Check::InSync, Some(live)));
        };
        if intent.is_some() {
            return Ok((Check::Drifted(path), Some(live)));
        }
        // No record of applying it: the difference may be only the server's normal form.
        let dry = apply::apply(&self.client, d, true).await?;
        let normalized = drift::project(&d.body, &dry);
        match drift::diff(&normalized, &live) {
            None => {
                let intent = Intent::new(&d.body, normalized, generation_of(&live));
                self.memory.record_intent(&d.id, intent);
                Ok((Check::InSync, Some(live)))
            }
            Some(path) => Ok((Check::Drifted(path), Some(live))),
        }
    }

    /// Resolves, prepares, compares and applies `manifests` in stages (cluster-wide objects,
    /// then classes, then the rest), waiting for CRDs to be Established between stages; within
    /// a stage, what needs nothing of each other is applied at once ([`stage::wave`]).
    pub async fn apply_all(
        &mut self,
        manifests: &[Manifest],
        opts: &ApplyOptions,
    ) -> Result<ChangeSet, ApplyError> {
        let mut sorted: Vec<&Manifest> = manifests.iter().collect();
        stage::sort_for_apply(&mut sorted, |m| (m.group(), m.kind.as_str()));
        let ignores: Vec<&DriftIgnore> = opts.ignores.iter().collect();
        let mut out = ChangeSet::default();
        for current in [Stage::Cluster, Stage::Classes, Stage::Rest] {
            let mut crds = Vec::new();
            let mut to_apply = Vec::new();
            for m in sorted
                .iter()
                .filter(|m| stage::stage_of(m.group(), &m.kind) == current)
            {
                let res = self.resolver.resolve_manifest(m).await?;
                let d = apply::prepare(
                    m,
                    res,
                    &self.owner.0,
                    &self.owner.1,
                    &opts.default_namespace,
                    &ignores,
                );
                // Start (or join) the watch of this kind, so its cache serves the comparison.
                self.watches.watch(&d.res, &self.owner, FIRST_LIST).await;
                let (found, live) = self.diff(&d).await?;
                let controls = controls::controls(&d.body, live.as_ref());
                match decide(&found, opts.mode, controls) {
                    Decision::Apply => to_apply.push(ToApply {
                        d: d.clone(),
                        found,
                        live,
                        controls,
                    }),
                    Decision::Report => {
                        tracing::info!(object = %d.id, ?found, "drift reported");
                        out.reported.push(d.id.clone());
                    }
                    Decision::Refuse(owner) => {
                        tracing::info!(object = %d.id, %owner, "applied by another Sync; not taken over");
                        out.conflicts.push((d.id.clone(), owner));
                        continue;
                    }
                    Decision::Skip => {
                        if controls.reconcile_disabled || controls.ssa == Ssa::Ignore {
                            out.unmanaged.insert(d.id.clone());
                        } else if let Some(mut live) = live {
                            // Read in this pass (from the API server when its watch has not
                            // seen it yet): health is judged from it, as from an apply's
                            // answer, not reported "not yet observed" until the watch catches up
                            // (which cost a second status write).
                            if let Some(meta) =
                                live.get_mut("metadata").and_then(Value::as_object_mut)
                            {
                                meta.remove("managedFields");
                            }
                            out.answers.insert(d.id.clone(), live);
                        }
                    }
                }
                if d.id.kind == "CustomResourceDefinition" {
                    crds.push(d.clone());
                }
                out.objects.push(d);
            }
            self.apply_waves(to_apply, opts, &mut out).await?;
            for crd in &crds {
                self.wait_established(crd, opts.timeout).await?;
            }
        }
        if opts.mode.new_revision {
            self.memory
                .retain_intents(out.objects.iter().map(|d| &d.id));
        }
        Ok(out)
    }

    /// Applies the objects of one stage wave by wave ([`stage::wave`]): the objects of a wave at
    /// once (at most [`APPLY_CONCURRENCY`] in flight), each wave after the one before has
    /// answered. The first failure, in apply order, stops the waves after it; what its own wave
    /// applied is remembered all the same.
    async fn apply_waves(
        &mut self,
        to_apply: Vec<ToApply>,
        opts: &ApplyOptions,
        out: &mut ChangeSet,
    ) -> Result<(), ApplyError> {
        let mut waves: BTreeMap<usize, Vec<ToApply>> = BTreeMap::new();
        for t in to_apply {
            let wave = stage::wave(&t.d.id.group, &t.d.id.kind);
            waves.entry(wave).or_default().push(t);
        }
        for wave in waves.into_values() {
            let (client, watches) = (&self.client, self.watches);
            let answers: Vec<_> = futures::stream::iter(wave)
                .map(|t| async move {
                    // Its watch holds back the events of this write: the answer is judged here.
                    watches.applying(&t.d.res, t.d.namespace(), &t.d.id.name);
                    let answer = apply_one(client, &t, opts).await;
                    (t, answer)
                })
                .buffered(APPLY_CONCURRENCY)
                .collect()
                .await;
            let mut failure = None;
            for (t, answer) in answers {
                let stored = answer.as_ref().ok().map(|(_, a)| a);
                self.watches
                    .applied(&t.d.res, t.d.namespace(), &t.d.id.name, stored, &self.owner);
                let (shape, answer) = match answer {
                    Ok(a) => a,
                    Err(e) => {
                        failure.get_or_insert(e);
                        continue;
                    }
                };
                self.remember(&t.d, &shape, &answer);
                let mut answer = answer;
                if let Some(meta) = answer.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("managedFields");
                }
                out.answers.insert(t.d.id.clone(), answer);
                if !opts.mode.new_revision && matches!(t.found, Check::Missing | Check::Drifted(_))
                {
                    tracing::info!(object = %t.d.id, found = ?t.found, "drift corrected");
                    out.corrected.push(t.d.id);
                } else {
                    out.applied.push(t.d.id);
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(())
    }

    async fn wait_established(&self, crd: &Desired, timeout: Duration) -> Result<(), ApplyError> {
        let established = |o: Option<&Value>| {
            o.is_some_and(|o| health::assess(&crd.id.group, &crd.id.kind, o).is_current())
        };
        if self
            .cached(crd)
            .flatten()
            .is_some_and(|o| established(Some(&o)))
        {
            return Ok(());
        }
        apply::wait_for(
            &self.client,
            &crd.res,
            &crd.id,
            timeout,
            "was not Established",
            established,
        )
        .await
    }

    /// Deletes the objects of `old` that are not in `new`, in reverse apply order, when their
    /// owner labels still name this Sync and they do not opt out.
    pub async fn prune(&mut self, old: &[InventoryEntry], new: &[InventoryEntry]) -> Pruned {
        let mut out = Pruned::default();
        for entry in inventory::prune_set(old, new) {
            let Ok(id) = entry.object_id() else { continue };
            self.memory.forget_intent(&id);
            match self.delete_one(&entry, &id).await {
                Ok(true) => out.deleted.push(id),
                Ok(false) => out.skipped.push(id),
                Err(e) => out.failed.push((entry, e)),
            }
        }
        out
    }

    /// Deletes every object of `inventory` as prune does (reverse apply order, owner labels,
    /// opt-outs); with `wait`, then waits until each deleted object is gone, at most `timeout`.
    pub async fn delete_all(
        &mut self,
        inventory: &[InventoryEntry],
        wait: Option<Duration>,
    ) -> Pruned {
        let mut out = self.prune(inventory, &[]).await;
        let Some(timeout) = wait else { return out };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut gone = Vec::new();
        for id in std::mem::take(&mut out.deleted) {
            let entry = inventory.iter().find(|e| e.id == id.to_string()).cloned();
            let Some(entry) = entry else { continue };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let waited = match self.resolve(&entry, &id).await {
                Ok(res) => {
                    apply::wait_for(&self.client, &res, &id, left, "was not deleted", |o| {
                        o.is_none()
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            match waited {
                Ok(()) => gone.push(id),
                Err(e) => out.failed.push((entry, e)),
            }
        }
        out.deleted = gone;
        out
    }

    async fn resolve(
        &self,
        entry: &InventoryEntry,
        id: &ObjectId,
    ) -> Result<apply::Resolved, ApplyError> {
        self.resolver
            .resolve(&id.group, &entry.v, &id.kind)
            .await
            .map_err(|source| ApplyError::UnknownKind {
                api_version: if id.group.is_empty() {
                    entry.v.clone()
                } else {
                    format!("{}/{}", id.group, entry.v)
                },
                kind: id.kind.clone(),
                name: id.name.clone(),
                source,
            })
    }

    /// Deletes one object if it is still this Sync's and does not opt out; `false` when left.
    async fn delete_one(&self, entry: &InventoryEntry, id: &ObjectId) -> Result<bool, ApplyError> {
        let res = self.resolve(entry, id).await?;
        let Some(live) = apply::get(&self.client, &res, id).await? else {
            return Ok(false);
        };
        let labels = apply::labels_of(&live);
        if !inventory::owned_by(labels.as_ref(), &self.owner.0, &self.owner.1)
            || controls::keep_on_delete(&live)
        {
            return Ok(false);
        }
        apply::delete(&self.client, &res, id).await?;
        Ok(true)
    }

    /// The managed objects of `changes` that are not healthy, judged from the watch caches, or,
    /// for an object applied in this pass that its watch has not seen yet (or only at an older
    /// generation), from the API server's answer to the apply (an object seen in neither is in
    /// progress; its arrival triggers another reconcile). `exprs` (`spec.healthCheckExprs`)
    /// decide the kinds they name, the built-in rules the rest.
    pub fn unhealthy(&self, changes: &ChangeSet, exprs: &HealthExprs) -> Vec<(ObjectId, Health)> {
        changes
            .objects
            .iter()
            .filter(|d| !changes.unmanaged.contains(&d.id))
            .filter_map(|d| {
                let applied = self.memory.intent(&d.id).and_then(|i| i.generation);
                let cached = self.cached(d).flatten();
                let live = match cached {
                    Some(live) if generation_of(&live) >= applied => Some(live),
                    _ => changes.answers.get(&d.id).cloned(),
                };
                let h = match live {
                    Some(live) => exprs
                        .assess(&d.res.ar.api_version, &d.id.kind, &live)
                        .unwrap_or_else(|| health::assess(&d.id.group, &d.id.kind, &live)),
                    None => Health::InProgress("not yet observed".into()),
                };
                (!h.is_current()).then(|| (d.id.clone(), h))
            })
            .collect()
    }
}

/// How long a reconcile that starts the watch of a kind waits for its first list; the others
/// read from the API server until it is in.
const FIRST_LIST: Duration = Duration::from_secs(10);

/// The most applies one Sync has in flight at once (within one [wave](stage::wave)).
pub const APPLY_CONCURRENCY: usize = 8;

/// An object decided to be applied, with what the comparison found.
struct ToApply {
    d: Desired,
    found: Check,
    live: Option<Value>,
    controls: Controls,
}

/// Server-side applies `t` (recreating it on an immutable-field refusal when forced); returns
/// the shape to compare the live object with from now on, and the API server's answer.
async fn apply_one(
    client: &Client,
    t: &ToApply,
    opts: &ApplyOptions,
) -> Result<(Value, Value), ApplyError> {
    let live = with_field_owners(client, &t.d, t.live.clone(), t.controls).await?;
    let (send, shape) = body_to_send(&t.d, live.as_ref(), t.controls);
    let force = opts.force || t.controls.force;
    let answer = apply::apply_or_recreate(client, &send, force, opts.timeout).await?;
    Ok((shape, answer))
}

/// `live` with its field-ownership records when the apply needs them (`ssa: Merge`, or paths a
/// Policy ignores): the watch caches leave them out, so such an object is read from the API
/// server.
async fn with_field_owners(
    client: &Client,
    d: &Desired,
    live: Option<Value>,
    controls: Controls,
) -> Result<Option<Value>, ApplyError> {
    let needed = controls.ssa == Ssa::Merge || !d.ignored.is_empty();
    match live {
        Some(l) if needed && l.pointer("/metadata/managedFields").is_none() => {
            apply::get(client, &d.res, &d.id).await
        }
        other => Ok(other),
    }
}

/// The body to send for `d`, and the shape to compare the live object with from now on: ignored
/// paths plumb owns keep their live value (sent, never compared), and with `ssa: Merge` the
/// fields other managers own are left to them (neither sent nor compared).
fn body_to_send(d: &Desired, live: Option<&Value>, controls: Controls) -> (Desired, Value) {
    let mut send = d.clone();
    let mut shape = d.body.clone();
    if let Some(live) = live {
        if controls.ssa == Ssa::Merge {
            let theirs = drift::fields_owned_by_others(live, SYNC_FIELD_MANAGER);
            drift::remove_paths(&mut send.body, &theirs);
            drift::remove_paths(&mut shape, &theirs);
        }
        drift::keep_owned_ignored(&mut send.body, &d.ignored, live, SYNC_FIELD_MANAGER);
    }
    (send, shape)
}

/// The Sync named by `live`'s owner labels when that is not `key`.
fn other_owner(live: &Value, key: &Key) -> Option<String> {
    let labels = apply::labels_of(live)?;
    let name = labels.get(plumb_api::SYNC_NAME_LABEL)?;
    let ns = labels.get(plumb_api::SYNC_NAMESPACE_LABEL)?;
    (*ns != key.0 || *name != key.1).then(|| format!("{ns}/{name}"))
}

fn generation_of(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/generation").and_then(Value::as_i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_labelled_for_another_sync_is_owned_by_it() {
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

    #[test]
    fn apply_skip_report_and_refuse_decisions() {
        use Decision::*;
        let drifted = Check::Drifted("/data/k".into());
        let other = Check::OwnedByOther("ns/other".into());
        let mode = |new_revision, periodic, drift| Mode {
            new_revision,
            periodic,
            drift,
        };
        let new = mode(true, false, DriftMode::Correct);
        let watch = |drift| mode(false, false, drift);
        let none = Controls::default();
        let with = |f: fn(&mut Controls)| {
            let mut c = Controls::default();
            f(&mut c);
            c
        };
        let disabled = with(|c| c.reconcile_disabled = true);
        let ignore = with(|c| c.ssa = Ssa::Ignore);
        let if_not_present = with(|c| c.ssa = Ssa::IfNotPresent);
        let takeover = with(|c| c.takeover = true);
        let cases: Vec<(&str, Check, Mode, Controls, Decision)> = vec![
            ("in sync", Check::InSync, new, none, Skip),
            ("new revision", Check::Changed, new, none, Apply),
            ("missing, new revision", Check::Missing, new, none, Apply),
            (
                "intent changed without new revision",
                Check::Changed,
                watch(DriftMode::Report),
                none,
                Apply,
            ),
            (
                "drift, Correct",
                drifted.clone(),
                watch(DriftMode::Correct),
                none,
                Apply,
            ),
            (
                "deleted, Correct",
                Check::Missing,
                watch(DriftMode::Correct),
                none,
                Apply,
            ),
            (
                "drift, Report",
                drifted.clone(),
                watch(DriftMode::Report),
                none,
                Report,
            ),
            (
                "drift, Ignore",
                drifted.clone(),
                watch(DriftMode::Ignore),
                none,
                Report,
            ),
            (
                "drift, Ignore, periodic",
                drifted.clone(),
                mode(false, true, DriftMode::Ignore),
                none,
                Apply,
            ),
            ("reconcile disabled", drifted.clone(), new, disabled, Skip),
            (
                "reconcile disabled, missing",
                Check::Missing,
                new,
                disabled,
                Skip,
            ),
            ("ssa Ignore", Check::Missing, new, ignore, Skip),
            (
                "IfNotPresent, missing",
                Check::Missing,
                watch(DriftMode::Report),
                if_not_present,
                Apply,
            ),
            (
                "IfNotPresent, changed",
                Check::Changed,
                new,
                if_not_present,
                Skip,
            ),
            (
                "IfNotPresent, drifted",
                drifted.clone(),
                watch(DriftMode::Correct),
                if_not_present,
                Skip,
            ),
            (
                "another Sync's, new revision",
                other.clone(),
                new,
                none,
                Refuse("ns/other".into()),
            ),
            (
                "another Sync's, drift pass",
                other.clone(),
                watch(DriftMode::Correct),
                none,
                Refuse("ns/other".into()),
            ),
            (
                "takeover, new revision",
                other.clone(),
                new,
                takeover,
                Apply,
            ),
            (
                "takeover, drift pass",
                other.clone(),
                watch(DriftMode::Correct),
                takeover,
                Skip,
            ),
        ];
        for (what, found, mode, controls, want) in cases {
            assert_eq!(decide(&found, mode, controls), want, "{what}");
        }
    }
}
