//! The reconcile of one Sync: gather inputs (render status, artifact, dependencies, policies),
//! run one pass of [`changeset`](crate::changeset), and write status only when it changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use plumb_api::condition::{new_condition, status};
use plumb_api::policy::DriftMode;
use plumb_api::reference::Artifact;
use plumb_api::sync::DriftStatus;
use plumb_api::{
    ConditionExt, Conditions, REQUESTED_AT_ANNOTATION, SYNC_FIELD_MANAGER, Sync, SyncStatus,
    condition_type, reason,
};

use plumb_ops::metrics::ReconcileResult;

use crate::changeset::{self, Mode};
use crate::context::{Context, SyncState, key_of};
use crate::deps::{self, Key};
use crate::governance;
use crate::inventory;
use crate::manifest;
use crate::window::{self, Verdict};

/// Why a reconcile could not finish; status write failures only — everything else becomes a
/// condition.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the Sync's status failed.
    #[error("writing status of Sync {namespace}/{name}: {source}")]
    Status {
        /// The Sync's namespace.
        namespace: String,
        /// The Sync's name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

/// An event to publish after the status is written.
struct Note(EventType, &'static str, String);

/// Reconciles one Sync.
#[tracing::instrument(skip_all, fields(namespace = %key_of(&sync).0, name = %key_of(&sync).1))]
pub async fn reconcile(sync: Arc<Sync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key_of(&sync);
    if sync.metadata.deletion_timestamp.is_some() {
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let state = ctx.state(&key);
    let mut state = state.lock().await;
    let current = ours(sync.status.clone().unwrap_or_default());
    let mut next = current.clone();
    let mut notes = Vec::new();
    let action = pass(&sync, &ctx, &mut state, &key, &mut next, &mut notes).await;
    next.observed_generation = sync.metadata.generation;
    if let Some(at) = requested_at(&sync) {
        next.last_handled_reconcile_at = Some(at.to_owned());
    }
    let failed = next
        .conditions
        .get_condition(condition_type::READY)
        .is_some_and(|c| c.status == status::FALSE);
    let result = if failed {
        ReconcileResult::Error
    } else {
        ReconcileResult::Success
    };
    ctx.metrics.ops.observe_reconcile("Sync", result, started);
    if next != current {
        write_status(&ctx, &key, &next).await?;
    }
    for Note(type_, reason, note) in notes {
        ctx.event(&sync, type_, reason, note).await;
    }
    Ok(action)
}

/// Backs off after an unexpected error.
pub fn error_policy(_sync: Arc<Sync>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// The sync controller's part of a status: without `render` and the `Rendered` condition.
fn ours(mut status: SyncStatus) -> SyncStatus {
    status.render = None;
    status
        .conditions
        .retain(|c| c.type_ != condition_type::RENDERED);
    status
}

fn requested_at(sync: &Sync) -> Option<&str> {
    sync.metadata
        .annotations
        .as_ref()?
        .get(REQUESTED_AT_ANNOTATION)
        .map(String::as_str)
}

async fn write_status(ctx: &Context, key: &Key, status: &SyncStatus) -> Result<(), Error> {
    let api: Api<Sync> = Api::namespaced(ctx.client.clone(), &key.0);
    let body = json!({"apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": status});
    api.patch_status(
        &key.1,
        &PatchParams::apply(SYNC_FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(|source| Error::Status {
        namespace: key.0.clone(),
        name: key.1.clone(),
        source,
    })?;
    Ok(())
}

fn retry(sync: &Sync) -> Action {
    Action::requeue(
        sync.spec
            .retry_interval
            .as_ref()
            .unwrap_or(&sync.spec.interval)
            .get(),
    )
}

fn fail(
    next: &mut SyncStatus,
    notes: &mut Vec<Note>,
    sync: &Sync,
    reason: &'static str,
    msg: String,
) -> Action {
    let generation = sync.metadata.generation;
    let changed = next
        .conditions
        .get_condition(condition_type::READY)
        .is_none_or(|c| c.message != msg);
    next.conditions.mark_failed(reason, &msg, generation);
    if changed {
        notes.push(Note(EventType::Warning, reason, msg));
    }
    retry(sync)
}

fn stall(
    next: &mut SyncStatus,
    notes: &mut Vec<Note>,
    sync: &Sync,
    reason: &'static str,
    msg: String,
) -> Action {
    let changed = next
        .conditions
        .get_condition(condition_type::READY)
        .is_none_or(|c| c.message != msg);
    next.conditions
        .mark_stalled(reason, &msg, sync.metadata.generation);
    if changed {
        notes.push(Note(EventType::Warning, reason, msg));
    }
    Action::await_change()
}

async fn pass(
    sync: &Sync,
    ctx: &Context,
    state: &mut SyncState,
    key: &Key,
    next: &mut SyncStatus,
    notes: &mut Vec<Note>,
) -> Action {
    let spec = &sync.spec;
    let generation = sync.metadata.generation;
    if spec.suspend {
        return Action::await_change();
    }
    if ctx.settings.no_cross_namespace_refs
        && spec
            .source_ref
            .namespace
            .as_ref()
            .is_some_and(|ns| *ns != key.0)
    {
        let msg = format!(
            "sourceRef points into namespace {:?}; cross-namespace references are disabled",
            spec.source_ref.namespace.as_deref().unwrap_or_default()
        );
        return stall(next, notes, sync, reason::ACCESS_DENIED, msg);
    }

    // Dependencies: a cycle needs a person; a dependency not ready wakes us when its status changes.
    let edges: BTreeMap<Key, Vec<Key>> = ctx
        .syncs
        .state()
        .iter()
        .map(|s| (key_of(s), deps::dependencies(s)))
        .collect();
    if let Some(cycle) = deps::cycle_through(key, &edges) {
        let msg = format!("dependency cycle: {}", deps::show_cycle(&cycle));
        return stall(next, notes, sync, reason::DEPENDENCY_NOT_READY, msg);
    }
    let waiting = {
        let all = ctx.syncs.state();
        deps::not_ready(sync, |k| {
            all.iter().find(|s| key_of(s) == *k).map(|s| s.as_ref())
        })
    };
    if !waiting.is_empty() {
        let msg = format!("dependencies not ready: {}", waiting.join(", "));
        return fail(next, notes, sync, reason::DEPENDENCY_NOT_READY, msg);
    }

    // The render controller's artifact.
    let Some(artifact) = sync
        .status
        .as_ref()
        .and_then(|s| s.render.as_ref())
        .and_then(|r| r.artifact.clone())
    else {
        let msg = "waiting for the render controller to publish a rendered artifact".to_owned();
        next.conditions
            .mark_reconciling(reason::RENDER_NOT_READY, &msg, generation);
        return Action::await_change();
    };
    next.last_attempted_revision = Some(artifact.revision.clone());
    let manifests = match fetch(ctx, state, &artifact).await {
        Ok(m) => m,
        Err(msg) => return fail(next, notes, sync, reason::ARTIFACT_FAILED, msg),
    };

    // What the governing Policies decide.
    let policies = ctx.governing(sync);
    let policy_refs: Vec<_> = policies.iter().map(|p| p.as_ref()).collect();
    let gov = governance::combine(&policy_refs);
    let drift_mode = governance::drift_mode(gov.drift_mode, spec.self_heal);

    let new_revision = next.last_applied_digest.as_ref() != Some(&artifact.digest)
        || sync.status.as_ref().and_then(|s| s.observed_generation) != generation
        || requested_at(sync)
            .is_some_and(|at| next.last_handled_reconcile_at.as_deref() != Some(at));
    let interval = spec.interval.get();
    let periodic = state.last_full.is_none_or(|t| t.elapsed() >= interval);
    let timeout = spec.timeout.as_ref().unwrap_or(&spec.interval).get();

    let mut wait_until = None;
    let mut manifests = manifests;
    let mut new_revision = new_revision;
    if new_revision && next.last_applied_digest.as_ref() != Some(&artifact.digest) {
        match window::verdict(&gov.windows, Timestamp::now()) {
            Err(e) => {
                return stall(
                    next,
                    notes,
                    sync,
                    reason::INVALID_SPEC,
                    format!("governing policy: {e}"),
                );
            }
            Ok(Verdict::Closed { until }) => {
                let when = until.map_or("a window opens".to_owned(), |t| t.to_string());
                let msg = format!(
                    "revision {} waits for a sync window until {when}",
                    artifact.revision
                );
                next.conditions
                    .mark_reconciling(reason::WINDOW_CLOSED, &msg, generation);
                wait_until = Some(until);
                // Keep correcting the revision already applied, if we still have it.
                match &state.artifact {
                    Some((d, m)) if Some(d) == next.last_applied_digest.as_ref() => {
                        manifests = m.clone();
                        new_revision = false;
                    }
                    _ => return requeue_until(until, interval),
                }
            }
            Ok(Verdict::Open) => {}
        }
    }
    if wait_until.is_none() {
        state.artifact = Some((artifact.digest.clone(), manifests.clone()));
    }

    let ns = &key.0;
    let client = match ctx.client_for(ns, spec.service_account_name.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                next,
                notes,
                sync,
                reason::ACCESS_DENIED,
                format!("impersonation client: {e}"),
            );
        }
    };
    let default_ns = spec.target_namespace.clone().unwrap_or_else(|| ns.clone());
    let mode = Mode {
        new_revision,
        periodic,
        drift: drift_mode,
        force: spec.force,
        timeout,
    };
    let outcome = match changeset::apply_all(
        ctx,
        &client,
        state,
        key,
        &default_ns,
        &gov.ignores,
        &manifests,
        mode,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => {
            let sa = spec
                .service_account_name
                .as_deref()
                .or(ctx.settings.default_service_account.as_deref());
            return if e.is_forbidden() {
                let who = sa.map_or("the controller".to_owned(), |sa| {
                    format!("service account {ns}/{sa}")
                });
                fail(
                    next,
                    notes,
                    sync,
                    reason::ACCESS_DENIED,
                    format!("{who} may not apply: {e}"),
                )
            } else {
                fail(next, notes, sync, reason::APPLY_FAILED, e.to_string())
            };
        }
    };
    if periodic || new_revision {
        state.last_full = Some(Instant::now());
    }
    record_drift(next, notes, &outcome, drift_mode);
    ctx.metrics
        .drift_corrections
        .inc_by(outcome.corrected.len() as u64);
    ctx.metrics
        .drift_reports
        .inc_by(outcome.reported.len() as u64);
    ctx.metrics
        .applied_objects
        .inc_by(outcome.applied.len() as u64);
    if let Some(until) = wait_until {
        return requeue_until(until, interval);
    }

    // Prune, never when the render came out empty unless asked.
    let new_entries = changeset::entries(&outcome.objects);
    let old_entries = next.inventory.clone().unwrap_or_default();
    let mut inventory = new_entries.clone();
    let mut pruned = Vec::new();
    if spec.prune && new_revision {
        if let Some(why) = inventory::prune_blocked(
            new_entries.is_empty(),
            old_entries.is_empty(),
            spec.prune_empty,
        ) {
            return stall(
                next,
                notes,
                sync,
                reason::PRUNE_FAILED,
                format!("nothing pruned: {why}"),
            );
        }
        let p = changeset::prune(ctx, &client, state, key, &old_entries, &new_entries).await;
        pruned = p.deleted;
        ctx.metrics.pruned_objects.inc_by(pruned.len() as u64);
        if !p.failed.is_empty() {
            let msg = p
                .failed
                .iter()
                .map(|(e, err)| format!("{}: {err}", e.id))
                .collect::<Vec<_>>()
                .join("; ");
            inventory = inventory::with_leftovers(
                inventory,
                p.failed.into_iter().map(|(e, _)| e).collect(),
            );
            next.inventory = Some(inventory);
            return fail(
                next,
                notes,
                sync,
                reason::PRUNE_FAILED,
                format!("prune failed: {msg}"),
            );
        }
    } else if !new_revision {
        inventory = old_entries.clone();
    }
    let kinds = changeset::kinds(&outcome.objects);
    ctx.watches.retain(key, &kinds);
    state.kinds = kinds;
    next.inventory = Some(inventory);
    next.last_applied_revision = Some(artifact.revision.clone());
    next.last_applied_digest = Some(artifact.digest.clone());
    if !outcome.applied.is_empty() || !pruned.is_empty() {
        let mut note = format!(
            "revision {}: {} applied",
            artifact.revision,
            outcome.applied.len()
        );
        if !pruned.is_empty() {
            let names: Vec<_> = pruned.iter().map(ToString::to_string).collect();
            note.push_str(&format!(", pruned {}", names.join(", ")));
        }
        notes.push(Note(EventType::Normal, reason::SUCCEEDED, note));
    }

    // Health: from the watch caches; their changes trigger the next look.
    let unhealthy = changeset::unhealthy(ctx, state, &outcome.objects);
    if state
        .health_since
        .as_ref()
        .is_none_or(|(d, _)| *d != artifact.digest)
    {
        state.health_since = Some((artifact.digest.clone(), Instant::now()));
    }
    let waited = state
        .health_since
        .as_ref()
        .map_or(Duration::ZERO, |(_, t)| t.elapsed());
    let failed = unhealthy
        .iter()
        .any(|(_, h)| matches!(h, crate::health::Health::Failed(_)));
    let applied_msg = format!("Applied revision: {}", artifact.revision);
    if unhealthy.is_empty() {
        let n = outcome.objects.len();
        next.conditions.set_condition(new_condition(
            condition_type::HEALTHY,
            status::TRUE,
            reason::SUCCEEDED,
            format!("{n} object{} healthy", if n == 1 { "" } else { "s" }),
            generation,
        ));
        next.conditions
            .mark_ready(reason::SUCCEEDED, &applied_msg, generation);
        return Action::requeue(interval);
    }
    let list = unhealthy
        .iter()
        .map(|(id, h)| match h {
            crate::health::Health::InProgress(m) | crate::health::Health::Failed(m) => {
                format!("{id} ({m})")
            }
            crate::health::Health::Current => id.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let timed_out = waited >= timeout;
    let (health_reason, health_msg) = if failed || timed_out {
        (reason::HEALTH_CHECK_FAILED, format!("unhealthy: {list}"))
    } else {
        (reason::PROGRESSING, format!("waiting for: {list}"))
    };
    next.conditions.set_condition(new_condition(
        condition_type::HEALTHY,
        status::FALSE,
        health_reason,
        health_msg.clone(),
        generation,
    ));
    if !spec.wait {
        next.conditions
            .mark_ready(reason::SUCCEEDED, &applied_msg, generation);
        return Action::requeue(interval);
    }
    if failed || timed_out {
        return fail(
            next,
            notes,
            sync,
            reason::HEALTH_CHECK_FAILED,
            format!("not healthy within {}: {list}", humantime(timeout)),
        );
    }
    next.conditions
        .mark_reconciling(reason::PROGRESSING, &health_msg, generation);
    Action::requeue(
        timeout
            .saturating_sub(waited)
            .max(Duration::from_millis(500)),
    )
}

fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

fn requeue_until(until: Option<Timestamp>, interval: Duration) -> Action {
    let wait = until
        .and_then(|t| t.duration_since(Timestamp::now()).try_into().ok())
        .unwrap_or(interval)
        .min(interval)
        .max(Duration::from_secs(1));
    Action::requeue(wait)
}

/// Records drift seen in this pass in `status.drift`, with an Event when something new was seen.
fn record_drift(
    next: &mut SyncStatus,
    notes: &mut Vec<Note>,
    outcome: &changeset::Outcome,
    mode: DriftMode,
) {
    let now = Timestamp::now();
    let old = next.drift.clone();
    let mut d = old.clone().unwrap_or_default();
    if !outcome.corrected.is_empty() {
        d.corrections += outcome.corrected.len() as i64;
        d.last_corrected_at = Some(now);
        d.last_detected_at = Some(now);
        let names: Vec<_> = outcome.corrected.iter().map(ToString::to_string).collect();
        notes.push(Note(
            EventType::Normal,
            "DriftCorrected",
            format!("drift corrected: {}", names.join(", ")),
        ));
    }
    let reported: Vec<String> = outcome.reported.iter().map(ToString::to_string).collect();
    if mode == DriftMode::Report || !reported.is_empty() || !d.objects.is_empty() {
        let mut sorted = reported.clone();
        sorted.sort();
        if sorted != d.objects {
            if !sorted.is_empty() {
                d.last_detected_at = Some(now);
                notes.push(Note(
                    EventType::Warning,
                    "DriftDetected",
                    format!(
                        "drift detected (mode {mode:?}, not corrected): {}",
                        sorted.join(", ")
                    ),
                ));
            }
            d.objects = sorted;
        }
    }
    if old.is_some() || d != DriftStatus::default() {
        next.drift = Some(d);
    }
}

async fn fetch(
    ctx: &Context,
    state: &SyncState,
    artifact: &Artifact,
) -> Result<Arc<Vec<manifest::Manifest>>, String> {
    if let Some((digest, m)) = &state.artifact
        && *digest == artifact.digest
    {
        return Ok(m.clone());
    }
    let bytes = plumb_artifact::fetch::fetch_verified(
        &ctx.http,
        &artifact.url,
        &artifact.digest,
        ctx.settings.max_artifact_size,
    )
    .await
    .map_err(|e| e.to_string())?;
    manifest::parse_gzip(&bytes)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use plumb_api::ObjectId;
    use plumb_api::sync::RenderStatus;

    use super::*;

    fn id(n: &str) -> ObjectId {
        ObjectId::new("ns", n, "", "ConfigMap")
    }

    #[test]
    fn our_part_of_status_leaves_out_render_and_rendered() {
        let status = SyncStatus {
            render: Some(RenderStatus::default()),
            conditions: vec![
                new_condition(
                    condition_type::RENDERED,
                    status::TRUE,
                    reason::SUCCEEDED,
                    "",
                    None,
                ),
                new_condition(
                    condition_type::READY,
                    status::TRUE,
                    reason::SUCCEEDED,
                    "",
                    None,
                ),
            ],
            ..Default::default()
        };
        let ours = ours(status);
        assert!(ours.render.is_none());
        assert_eq!(ours.conditions.len(), 1);
        assert_eq!(ours.conditions[0].type_, condition_type::READY);
    }

    #[test]
    fn corrections_are_counted_and_announced() {
        let mut next = SyncStatus::default();
        let mut notes = Vec::new();
        let outcome = changeset::Outcome {
            corrected: vec![id("a"), id("b")],
            ..Default::default()
        };
        record_drift(&mut next, &mut notes, &outcome, DriftMode::Correct);
        let d = next.drift.unwrap();
        assert_eq!(d.corrections, 2);
        assert!(d.last_corrected_at.is_some());
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].1, "DriftCorrected");
    }

    #[test]
    fn no_drift_writes_no_drift_status() {
        let mut next = SyncStatus::default();
        let mut notes = Vec::new();
        record_drift(
            &mut next,
            &mut notes,
            &changeset::Outcome::default(),
            DriftMode::Report,
        );
        assert!(next.drift.is_none());
        assert!(notes.is_empty());
    }

    #[test]
    fn reported_drift_is_announced_once_and_cleared_when_gone() {
        let mut next = SyncStatus::default();
        let mut notes = Vec::new();
        let outcome = changeset::Outcome {
            reported: vec![id("a")],
            ..Default::default()
        };
        record_drift(&mut next, &mut notes, &outcome, DriftMode::Report);
        assert_eq!(next.drift.as_ref().unwrap().objects, ["ns_a__ConfigMap"]);
        record_drift(&mut next, &mut notes, &outcome, DriftMode::Report);
        assert_eq!(notes.len(), 1, "the same drift was announced twice");
        record_drift(
            &mut next,
            &mut notes,
            &changeset::Outcome::default(),
            DriftMode::Report,
        );
        assert!(next.drift.unwrap().objects.is_empty());
    }
}
