//! The reconcile of one Sync, as named steps over the pure core: the [gates](crate::gate), then
//! apply → prune → assess with the [`ResourceManager`], each step adding to one [`Outcome`];
//! [`status_for`] and [`events_for`] turn that into the status to write and the Events to send.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::{Api, Resource};
use serde_json::json;

use plumb_api::condition::status;
use plumb_api::policy::{DriftIgnore, DriftMode, SyncWindow};
use plumb_api::reference::Artifact;
use plumb_api::{
    Conditions, ObjectId, REQUESTED_AT_ANNOTATION, SYNC_FIELD_MANAGER, Sync, SyncSpec, SyncStatus,
    condition_type, reason,
};
use plumb_helm::hooks::HookPhase;
use plumb_ops::metrics::ReconcileResult;

use crate::apply::api_message;
use crate::checked::{Seen, Target};
use crate::context::{Context, key_of};
use crate::custom_health::{self, HealthExprs};
use crate::decrypt;
use crate::deps::Key;
use crate::error::Error;
use crate::finalize;
use crate::gate;
use crate::governance;
use crate::health::{self, Health};
use crate::hooks;
use crate::inventory;
use crate::manager::{ApplyOptions, ChangeSet, Mode, ResourceManager};
use crate::manifest::{self, Manifest};
use crate::memory::{Kept, SyncMemory};
use crate::signal::version_of;
use crate::status::{
    DriftSeen, HealthReport, Outcome, Verdict, events_for, report_hold, status_for,
};
use crate::substitution;
use crate::sync_view::SyncView;
use crate::wake::{self, Judged, Woken};
use plumb_substitute::SecretValues;

/// Reconciles one Sync: once the Policy and Namespace caches are complete (a pass before that
/// would ignore windows and drift settings), applies it, or deletes what it applied when it is
/// being deleted ([`finalize`]).
#[tracing::instrument(skip_all, fields(namespace = %view.key().0, name = %view.key().1))]
pub async fn reconcile(view: Arc<SyncView>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = view.key();
    let woken = ctx.wakes.take(&key);
    let being_deleted = view.meta().deletion_timestamp.is_some();
    if !being_deleted {
        let memory = ctx.memories.of(&key);
        let mut memory = memory.lock().await;
        let last = memory.take_judged();
        let version = version_of(view.meta().resource_version.as_deref());
        if let Some(next) = wake::redundant(woken, last.as_ref(), version, Instant::now()) {
            memory.set_judged(last);
            ctx.metrics.pass(woken, "skipped");
            tracing::debug!(woken_by = %woken.label(), "nothing new to look at");
            return Ok(ctx.next_pass(&key, next));
        }
    }
    if !ctx.caches_ready(CACHE_WAIT).await {
        tracing::info!("waiting for the Policy and Namespace caches");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let sync = Arc::new(view.sync()?);
    let result =
        finalize::with_finalizer(sync, ctx.clone(), |sync, ctx| apply(sync, ctx, woken)).await;
    if being_deleted {
        ctx.metrics.pass(woken, "deleted");
    }
    result
}

/// How long one reconcile waits for the Policy and Namespace caches before trying again.
const CACHE_WAIT: Duration = Duration::from_secs(10);

/// Reconciles a Sync that is not being deleted, in a pass woken by `woken`.
async fn apply(sync: Arc<Sync>, ctx: Arc<Context>, woken: Woken) -> Result<Action, Error> {
    let key = key_of(&sync);
    let started = Instant::now();
    let memory = ctx.memories.of(&key);
    let mut memory = memory.lock().await;
    // A Sync the cache gave this pass before the event of the last status write, which ended the
    // record of that write: the cache's copy now has the write, and is judged instead.
    let sync = match ctx.sync(&key) {
        Some(newer)
            if memory.overtaken(sync.metadata.resource_version.as_deref())
                && newer.meta().uid == sync.metadata.uid =>
        {
            tracing::debug!(
                "judging the cache's copy: the one given was older than the last write"
            );
            Arc::new(newer.sync()?)
        }
        _ => sync,
    };
    let read = sync.metadata.resource_version.as_deref();
    // The status as the API server has it: the cached Sync's, unless it is still the version the
    // last pass read before writing (a pass woken right after a write, by an object's event,
    // would otherwise judge by the status before it, and write the same outcome again).
    let current = memory
        .written_since(read)
        .unwrap_or_else(|| ours(sync.status.clone().unwrap_or_default()));
    let mut outcome = Pass {
        sync: &sync,
        ctx: &ctx,
        memory: &mut memory,
        key: key.clone(),
    }
    .run(&current)
    .await;
    outcome.requested_at = requested_at(&sync).map(str::to_owned);
    outcome.took = started.elapsed();
    let next = status_for(&current, &outcome, Timestamp::now());
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
    let report;
    if next == current {
        ctx.metrics.status_unchanged.inc();
        report = "";
    } else if let Some(left) = report_hold(&outcome, ctx.settings.progress_report_delay) {
        // A state on the way to Ready, not reported unless it lasts: look again when the
        // delay is over (the change that ends it, a render or an object's health, wakes the
        // Sync sooner).
        ctx.metrics.status_held.inc();
        outcome.requeue = Some(outcome.requeue.map_or(left, |r| r.min(left)));
        // What was applied and is not in the status yet: a deletion in the meantime deletes it.
        memory.set_unreported(
            (next.inventory != current.inventory)
                .then(|| next.inventory.clone().unwrap_or_default()),
        );
        report = "held";
    } else {
        let t = Instant::now();
        let wrote = write_status(&ctx, &key, &next).await?;
        ctx.metrics.status_writes.inc();
        ctx.metrics.phase("status", t);
        memory.set_unreported(None);
        memory.set_written(read, wrote.as_deref(), next.clone());
        report = "wrote";
    }
    // Sent without holding the worker (or this Sync's memory) for the Event's round trip.
    for note in events_for(&current, &next, &outcome) {
        ctx.announce(&sync, note);
    }
    let changed = !(outcome.applied.is_empty() && outcome.pruned.is_empty())
        || outcome
            .drift
            .as_ref()
            .is_some_and(|d| !d.corrected.is_empty());
    ctx.metrics.pass(woken, &did(changed, report));
    let requeue = look_again(&sync.spec, &outcome);
    memory.set_judged(Some(Judged {
        version: version_of(read),
        due: requeue.map(|d| Instant::now() + d),
    }));
    Ok(ctx.next_pass(&key, requeue))
}

/// The `did` label of a pass that changed objects or not and reported `report` (`wrote`,
/// `held`, or nothing).
fn did(changed: bool, report: &str) -> String {
    match (changed, report) {
        (false, "") => "nothing".to_owned(),
        (false, r) => r.to_owned(),
        (true, "") => "applied".to_owned(),
        (true, r) => format!("applied+{r}"),
    }
}

/// Backs off after an unexpected error.
pub fn error_policy(sync: Arc<SyncView>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "reconcile failed");
    ctx.next_pass(&sync.key(), Some(Duration::from_secs(5)))
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

/// Writes `status` as this controller's part of Sync `key`'s; the resourceVersion the write
/// gave the Sync.
async fn write_status(
    ctx: &Context,
    key: &Key,
    status: &SyncStatus,
) -> Result<Option<String>, Error> {
    let api: Api<Sync> = Api::namespaced(ctx.client.clone(), &key.0);
    let body = json!({"apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": status});
    let written = api
        .patch_status(
            &key.1,
            &PatchParams::apply(SYNC_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(Error::write(key))?;
    Ok(written.metadata.resource_version)
}

/// When to look at the Sync again after `outcome`, if not before a change.
fn look_again(spec: &SyncSpec, outcome: &Outcome) -> Option<Duration> {
    let interval = spec.interval.get();
    match &outcome.verdict {
        Verdict::Suspended => None,
        Verdict::Waiting { .. } => outcome.requeue,
        Verdict::Failed(e) if e.stalls() => None,
        Verdict::Failed(_) => Some(spec.retry_interval.as_ref().unwrap_or(&spec.interval).get()),
        Verdict::Progressing(_) | Verdict::Ready(_) => Some(outcome.requeue.unwrap_or(interval)),
    }
}

fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// How long to wait for a window to open: until it does, at most `interval`, at least a second.
fn until_open(until: Option<Timestamp>, interval: Duration) -> Duration {
    until
        .and_then(|t| t.duration_since(Timestamp::now()).try_into().ok())
        .unwrap_or(interval)
        .min(interval)
        .max(Duration::from_secs(1))
}

/// What the governing Policies and the Sync's history decide for this pass.
struct Inputs {
    artifact: Artifact,
    render_failure: Option<Error>,
    /// Dependencies not ready for what is pending ([`gate::dependency_hold`]): it waits, drift
    /// of the revision applied is still healed.
    dependencies: Option<Error>,
    drift: DriftMode,
    ignores: Vec<DriftIgnore>,
    windows: Vec<SyncWindow>,
    new_revision: bool,
    periodic: bool,
    timeout: Duration,
    /// `spec.healthCheckExprs`, compiled.
    health_exprs: HealthExprs,
}

/// Why a new revision waits, and when to look again.
struct Hold {
    verdict: Verdict,
    requeue: Option<Duration>,
}

/// One reconcile of one Sync, step by step.
struct Pass<'a> {
    sync: &'a Sync,
    ctx: &'a Context,
    memory: &'a mut SyncMemory,
    key: Key,
}

impl Pass<'_> {
    async fn run(mut self, current: &SyncStatus) -> Outcome {
        let generation = self.sync.metadata.generation;
        let mut outcome = Outcome::new(generation, Verdict::Suspended);
        if self.sync.spec.suspend {
            return outcome;
        }
        let inputs = match self.gather(current) {
            Ok(Ok(inputs)) => {
                self.memory.render_arrived();
                inputs
            }
            Ok(Err(waiting)) => {
                outcome.pending_for = Some(self.memory.render_waited());
                outcome.verdict = waiting;
                return outcome;
            }
            Err(e) => {
                outcome.verdict = Verdict::Failed(e);
                return outcome;
            }
        };
        if inputs.dependencies.is_none() {
            outcome.attempted = Some(inputs.artifact.clone());
        }
        if let Err(e) = self.steps(current, inputs, &mut outcome).await {
            outcome.verdict = Verdict::Failed(e);
        }
        outcome
    }

    /// Gates and inputs: `Err` for a failed gate, `Ok(Err(verdict))` when there is nothing to
    /// apply yet.
    fn gather(&self, current: &SyncStatus) -> Result<Result<Inputs, Verdict>, Error> {
        let sync = self.sync;
        let spec = &sync.spec;
        gate::cross_namespace(self.ctx.settings.no_cross_namespace_refs, sync)?;
        // Only a Sync with dependencies reads the others (a cycle through it needs an edge out of
        // it): a copy of the whole cache on every pass costs O(Syncs) each, O(Syncs²) a fleet.
        let others = if spec.depends_on.is_empty() {
            Vec::new()
        } else {
            self.ctx.syncs.state()
        };
        let dependencies = gate::dependency_hold(sync, current, &others)?;
        let render = gate::render(sync);
        let Some(artifact) = render.artifact else {
            return match render.failure {
                Some(e) => Err(e),
                None => Ok(Err(Verdict::Waiting {
                    reason: reason::RENDER_NOT_READY,
                    message: "waiting for the render controller to publish a rendered artifact"
                        .to_owned(),
                })),
            };
        };
        let health_exprs = custom_health::compile(&spec.health_check_exprs)?;
        let policies = self.ctx.governing(sync);
        let refs: Vec<_> = policies.iter().map(|p| p.as_ref()).collect();
        let gov = governance::combine(&refs);
        let new_revision = current.last_applied_digest.as_ref() != Some(&artifact.digest)
            || current.observed_generation != sync.metadata.generation
            || requested_at(sync)
                .is_some_and(|at| current.last_handled_reconcile_at.as_deref() != Some(at));
        Ok(Ok(Inputs {
            render_failure: render.failure,
            dependencies,
            drift: governance::drift_mode(gov.drift_mode, spec.self_heal),
            ignores: gov.ignores.into_iter().cloned().collect(),
            windows: gov.windows.into_iter().cloned().collect(),
            new_revision,
            periodic: self.memory.full_pass_due(spec.interval.get()),
            timeout: spec.timeout.as_ref().unwrap_or(&spec.interval).get(),
            artifact,
            health_exprs,
        }))
    }

    /// Hold (dependencies, windows) → fetch → apply → prune → assess.
    async fn steps(
        &mut self,
        current: &SyncStatus,
        mut inputs: Inputs,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        if let Some(hold) = self.hold(current, &mut inputs)? {
            outcome.requeue = hold.requeue;
            outcome.verdict = hold.verdict;
            // Keep correcting the revision already applied, if its objects are at hand.
            if let Some((manifests, secrets)) =
                self.applied_manifests(current, &inputs.artifact).await?
            {
                outcome.secrets = secrets;
                self.apply(&manifests, &inputs, outcome).await?;
            }
            return Ok(());
        }
        let t = Instant::now();
        let (manifests, fetched) = self.fetch(&inputs.artifact).await?;
        self.ctx.metrics.phase("fetch", t);
        if let Some(kept) = fetched {
            self.memory
                .keep_artifact(inputs.artifact.digest.clone(), kept);
        }
        outcome.secrets = self.memory.secret_values(&inputs.artifact.digest);
        let (_, hook_objects) = hooks::split(&manifests);
        let digest = &inputs.artifact.digest;
        if !hook_objects.is_empty() && self.hooks_due(current, &inputs) {
            self.run_hooks(&hook_objects, HookPhase::PreSync, &inputs)
                .await?;
            let at = requested_at(self.sync).map(str::to_owned);
            self.memory.set_pre_hooks_ran(digest.clone(), at);
            // Recorded in the status with the apply, so a restart between the apply and the
            // post-sync hooks still runs them.
            self.memory.set_post_hooks(digest.clone(), true);
            outcome.post_hooks = Some(Some(digest.clone()));
        } else if hook_objects.is_empty()
            && current
                .pending_post_hooks
                .as_ref()
                .is_some_and(|d| d != digest)
        {
            // A render without hooks replaced the one whose post hooks never ran.
            outcome.post_hooks = Some(None);
        }
        let t = Instant::now();
        let changes = self.apply(&manifests, &inputs, outcome).await?;
        self.ctx.metrics.phase("apply", t);
        let t = Instant::now();
        self.prune(current, &inputs, &changes, outcome).await?;
        self.ctx.metrics.phase("prune", t);
        let t = Instant::now();
        let checked = self.check_named(&inputs.health_exprs).await;
        self.assess(&inputs, &changes, checked, outcome);
        self.ctx.metrics.phase("health", t);
        let healthy = outcome.health.as_ref().is_some_and(|h| h.healthy);
        if healthy
            && self
                .memory
                .post_hooks_pending(digest, current.pending_post_hooks.as_ref())
        {
            self.run_hooks(&hook_objects, HookPhase::PostSync, &inputs)
                .await?;
            self.memory.set_post_hooks(digest.clone(), false);
            outcome.post_hooks = Some(None);
        }
        if !changes.conflicts.is_empty() {
            return Err(Error::OwnershipConflict(changes.conflicts));
        }
        if let Some(e) = inputs.render_failure {
            return Err(e);
        }
        Ok(())
    }

    /// Whether this pass runs the render's hooks: a render not applied yet, or a reconcile asked
    /// for (as a sync operation in Argo CD runs them), unless they already ran for it; never for
    /// drift correction or the periodic safety net.
    fn hooks_due(&self, current: &SyncStatus, inputs: &Inputs) -> bool {
        let digest = &inputs.artifact.digest;
        let at = requested_at(self.sync);
        let due = current.last_applied_digest.as_ref() != Some(digest)
            || at.is_some_and(|at| current.last_handled_reconcile_at.as_deref() != Some(at));
        due && !self.memory.pre_hooks_ran(digest, at)
    }

    /// Runs the hooks of `phase` with the Sync's client; each weight group may take `timeout`.
    async fn run_hooks(
        &self,
        hook_objects: &[Manifest],
        phase: HookPhase,
        inputs: &Inputs,
    ) -> Result<(), Error> {
        let (ns, spec) = (&self.key.0, &self.sync.spec);
        let client = self
            .ctx
            .client_for(ns, spec.service_account_name.as_deref())
            .map_err(Error::Impersonation)?;
        let default_namespace = spec.target_namespace.clone().unwrap_or_else(|| ns.clone());
        let runner = hooks::HookRunner {
            client: &client,
            resolver: &self.ctx.resolver,
            owner: &self.key,
            default_namespace: &default_namespace,
            timeout: inputs.timeout,
        };
        runner
            .run(hook_objects, phase)
            .await
            .map_err(|e| Error::Hook(Box::new(e)))?;
        Ok(())
    }

    /// The artifact's objects, from memory when it is the one remembered; else downloaded (and
    /// decrypted), with what memory should keep of them.
    async fn fetch(
        &self,
        artifact: &Artifact,
    ) -> Result<(Arc<Vec<Manifest>>, Option<Kept>), Error> {
        if let Some(m) = self.memory.manifests(&artifact.digest) {
            return Ok((m, None));
        }
        let bytes = plumb_artifact::fetch::fetch_verified(
            &self.ctx.http,
            &artifact.url,
            &artifact.digest,
            self.ctx.settings.max_artifact_size,
        )
        .await?;
        let manifests = manifest::parse_gzip(&bytes)?;
        let deferred = substitution::any_deferred(&manifests);
        if !deferred && decrypt::first_encrypted(&manifests).is_none() {
            return Ok((Arc::new(manifests), Some(Kept::Artifact(bytes.into()))));
        }
        // Values from substituteFrom Secrets, then SOPS: in memory only, kept as they are, with
        // the secret values they hold.
        let mut secrets = SecretValues::default();
        let manifests = if deferred {
            substitution::finish_all(&self.ctx.client, &self.key.0, manifests, &mut secrets).await?
        } else {
            manifests
        };
        let objects = Arc::new(self.decrypt(manifests, &mut secrets).await?);
        Ok((
            objects.clone(),
            Some(Kept::Objects(objects, Arc::new(secrets))),
        ))
    }

    /// Decrypts the render's SOPS-encrypted objects, all or none ([`decrypt`]).
    async fn decrypt(
        &self,
        manifests: Vec<Manifest>,
        secrets: &mut SecretValues,
    ) -> Result<Vec<Manifest>, Error> {
        let Some(object) = decrypt::first_encrypted(&manifests) else {
            return Ok(manifests);
        };
        if self.sync.spec.decryption.is_none() {
            return Err(decrypt::DecryptError::NotConfigured { object }.into());
        }
        let keys = decrypt::keyring(
            &self.ctx.client,
            self.sync,
            self.ctx.settings.sops_age_secret.as_ref(),
        )
        .await?;
        Ok(decrypt::decrypt_all(&manifests, &keys, secrets)?)
    }

    /// The objects of the revision last applied, with their secret values: remembered, or
    /// fetched when the render still points at it; `None` when neither (after a restart, while
    /// a newer render waits).
    async fn applied_manifests(
        &self,
        current: &SyncStatus,
        render: &Artifact,
    ) -> Result<Option<(Arc<Vec<Manifest>>, Arc<SecretValues>)>, Error> {
        let Some(applied) = current.last_applied_digest.as_ref() else {
            return Ok(None);
        };
        if *applied == render.digest {
            let (manifests, fetched) = self.fetch(render).await?;
            let secrets = match fetched {
                Some(Kept::Objects(_, secrets)) => secrets,
                _ => self.memory.secret_values(applied),
            };
            return Ok(Some((manifests, secrets)));
        }
        Ok(self
            .memory
            .manifests(applied)
            .map(|m| (m, self.memory.secret_values(applied))))
    }

    /// Whether a new revision must wait: for dependencies that are not ready, or for a sync
    /// window. Either way the pass then only corrects drift of the revision already applied.
    fn hold(&self, current: &SyncStatus, inputs: &mut Inputs) -> Result<Option<Hold>, Error> {
        if let Some(e) = inputs.dependencies.take() {
            inputs.new_revision = false;
            return Ok(Some(Hold {
                verdict: Verdict::Failed(e),
                requeue: None,
            }));
        }
        let applied = current.last_applied_digest.as_ref();
        if !inputs.new_revision || applied == Some(&inputs.artifact.digest) {
            return Ok(None);
        }
        let windows: Vec<&SyncWindow> = inputs.windows.iter().collect();
        let Some(until) = gate::window(&windows, Timestamp::now())? else {
            return Ok(None);
        };
        let when = until.map_or("a window opens".to_owned(), |t| t.to_string());
        inputs.new_revision = false;
        Ok(Some(Hold {
            verdict: Verdict::Waiting {
                reason: reason::WINDOW_CLOSED,
                message: format!(
                    "revision {} waits for a sync window until {when}",
                    inputs.artifact.revision
                ),
            },
            requeue: Some(until_open(until, self.sync.spec.interval.get())),
        }))
    }

    /// Applies the objects that need it, with the Sync's client.
    async fn apply(
        &mut self,
        manifests: &[Manifest],
        inputs: &Inputs,
        outcome: &mut Outcome,
    ) -> Result<ChangeSet, Error> {
        let (ns, spec) = (&self.key.0, &self.sync.spec);
        let sa = spec.service_account_name.as_deref().or(self
            .ctx
            .settings
            .default_service_account
            .as_deref());
        let opts = ApplyOptions {
            mode: Mode {
                new_revision: inputs.new_revision,
                periodic: inputs.periodic,
                drift: inputs.drift,
            },
            force: spec.force,
            timeout: inputs.timeout,
            default_namespace: spec.target_namespace.clone().unwrap_or_else(|| ns.clone()),
            ignores: inputs.ignores.clone(),
        };
        let ctx = self.ctx;
        // Hooks run in their own steps (`run_hooks`), never as part of the render's objects.
        let (manifests, _) = hooks::split(manifests);
        // Expressions may read any field: every change of an object wakes such a Sync.
        ctx.watches
            .set_custom_health(&self.key, !spec.health_check_exprs.is_empty());
        let mut manager = ResourceManager::for_sync(ctx, self.sync, self.memory)?;
        let changes = manager.apply_all(&manifests, &opts).await.map_err(|e| {
            Error::from_apply(e, || {
                sa.map_or("the controller".to_owned(), |sa| {
                    format!("service account {ns}/{sa}")
                })
            })
        })?;
        if inputs.periodic || inputs.new_revision {
            self.memory.full_pass_done();
        }
        let m = &ctx.metrics;
        m.drift_corrections.inc_by(changes.corrected.len() as u64);
        m.drift_reports.inc_by(changes.reported.len() as u64);
        m.applied_objects.inc_by(changes.applied.len() as u64);
        outcome.drift = Some(DriftSeen {
            corrected: changes.corrected.clone(),
            reported: changes.reported.clone(),
            mode: Some(inputs.drift),
        });
        outcome.applied = changes.applied.clone();
        Ok(changes)
    }

    /// Prunes what left the render (only for a new revision), and records the new inventory.
    async fn prune(
        &mut self,
        current: &SyncStatus,
        inputs: &Inputs,
        changes: &ChangeSet,
        outcome: &mut Outcome,
    ) -> Result<(), Error> {
        let spec = &self.sync.spec;
        let new_entries = changes.entries();
        let old_entries = current.inventory.clone().unwrap_or_default();
        let mut inventory = new_entries.clone();
        if spec.prune && inputs.new_revision {
            if let Some(why) = inventory::prune_blocked(
                new_entries.is_empty(),
                old_entries.is_empty(),
                spec.prune_empty,
            ) {
                return Err(Error::PruneBlocked(why));
            }
            let ctx = self.ctx;
            let mut manager = ResourceManager::for_sync(ctx, self.sync, self.memory)?;
            let p = manager.prune(&old_entries, &new_entries).await;
            ctx.metrics.pruned_objects.inc_by(p.deleted.len() as u64);
            outcome.pruned = p.deleted;
            if !p.failed.is_empty() {
                let leftovers = p.failed.iter().map(|(e, _)| e.clone()).collect();
                outcome.inventory = Some(inventory::with_leftovers(inventory, leftovers));
                let failures = p
                    .failed
                    .into_iter()
                    .filter_map(|(e, err)| Some((e.object_id().ok()?, err)))
                    .collect();
                return Err(Error::Prune(failures));
            }
        } else if !inputs.new_revision {
            inventory = old_entries;
        }
        self.ctx.watches.retain(&self.key, &changes.kinds());
        outcome.inventory = Some(inventory);
        outcome.landed = true;
        Ok(())
    }

    /// The health of the objects `spec.healthChecks` names, from their own watches (started with
    /// the Sync's client, so it waits only for what it may read), by `healthCheckExprs` or the
    /// built-in rules. Watches of objects it no longer names are released.
    async fn check_named(&self, exprs: &HealthExprs) -> Vec<(ObjectId, Health)> {
        let (ns, spec) = (&self.key.0, &self.sync.spec);
        let sa = spec.service_account_name.as_deref();
        let reader = self.ctx.identity_for(ns, sa).unwrap_or_default();
        let mut targets = HashSet::new();
        let mut out = Vec::with_capacity(spec.health_checks.len());
        for r in &spec.health_checks {
            let (group, version) = r
                .api_version
                .split_once('/')
                .unwrap_or(("", r.api_version.as_str()));
            let given_ns = r.namespace.as_deref().unwrap_or(ns);
            let res = match self.ctx.resolver.resolve(group, version, &r.kind).await {
                Ok(res) => res,
                Err(e) => {
                    let id = ObjectId::new(given_ns, &r.name, group, &r.kind);
                    let why = format!("no such kind in the cluster: {}", api_message(&e));
                    out.push((id, Health::InProgress(why)));
                    continue;
                }
            };
            let namespace = res.namespaced.then(|| given_ns.to_owned());
            let id = ObjectId::new(namespace.as_deref().unwrap_or(""), &r.name, group, &r.kind);
            let target = Target {
                gvk: GroupVersionKind::gvk(group, version, &r.kind),
                namespace,
                name: r.name.clone(),
                reader: reader.clone(),
            };
            targets.insert(target.clone());
            let seen = match self.ctx.client_for(ns, sa) {
                Ok(client) => {
                    let checks = &self.ctx.watches.checks;
                    checks.look(&client, &res, &target, &self.key).await
                }
                Err(e) => Seen::Unknown(Some(e.to_string())),
            };
            let h = match seen {
                Seen::Found(obj) => exprs
                    .assess(&r.api_version, &r.kind, &obj)
                    .unwrap_or_else(|| health::assess(group, &r.kind, &obj)),
                Seen::Missing => Health::InProgress("not found".into()),
                Seen::Unknown(None) => Health::InProgress("not yet observed".into()),
                Seen::Unknown(Some(e)) => Health::InProgress(format!("cannot be read: {e}")),
            };
            out.push((id, h));
        }
        self.ctx.watches.checks.retain(&self.key, &targets);
        out
    }

    /// Health from the watch caches (their changes trigger the next look): the `Healthy`
    /// condition over the applied objects and those `spec.healthChecks` names (`checked`), and
    /// the verdict — Ready, Progressing or HealthCheckFailed. The applied objects hold the
    /// verdict back only with `spec.wait`; the named ones always do.
    fn assess(
        &mut self,
        inputs: &Inputs,
        changes: &ChangeSet,
        checked: Vec<(ObjectId, Health)>,
        outcome: &mut Outcome,
    ) {
        let spec = &self.sync.spec;
        let ctx = self.ctx;
        let manager = ResourceManager::new(
            &ctx.resolver,
            &ctx.watches,
            ctx.client.clone(),
            self.key.clone(),
            self.memory,
        );
        let applied = manager.unhealthy(changes, &inputs.health_exprs);
        let n = changes.objects.len() - changes.unmanaged.len() + checked.len();
        let named: Vec<_> = checked
            .into_iter()
            .filter(|(_, h)| !h.is_current())
            .collect();
        let waited = self.memory.health_waited(&inputs.artifact.digest);
        let applied_msg = format!("Applied revision: {}", inputs.artifact.revision);
        let unhealthy: Vec<_> = applied.iter().chain(&named).collect();
        if unhealthy.is_empty() {
            outcome.health = Some(HealthReport {
                healthy: true,
                reason: reason::SUCCEEDED,
                message: format!("{n} object{} healthy", if n == 1 { "" } else { "s" }),
            });
            outcome.verdict = Verdict::Ready(applied_msg);
            return;
        }
        let describe = |objects: &[&(ObjectId, Health)]| {
            objects
                .iter()
                .map(|(id, h)| match h {
                    Health::InProgress(m) | Health::Failed(m) => format!("{id} ({m})"),
                    Health::Current => id.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let any_failed = |objects: &[&(ObjectId, Health)]| {
            objects.iter().any(|(_, h)| matches!(h, Health::Failed(_)))
        };
        let failed = any_failed(&unhealthy);
        let list = describe(&unhealthy);
        let timed_out = waited >= inputs.timeout;
        outcome.health = Some(if failed || timed_out {
            HealthReport {
                healthy: false,
                reason: reason::HEALTH_CHECK_FAILED,
                message: format!("unhealthy: {list}"),
            }
        } else {
            HealthReport {
                healthy: false,
                reason: reason::PROGRESSING,
                message: format!("waiting for: {list}"),
            }
        });
        // What holds the verdict back: everything with `wait`, else the named objects only.
        let gating: Vec<_> = if spec.wait {
            unhealthy
        } else {
            named.iter().collect()
        };
        let (failed, list) = (any_failed(&gating), describe(&gating));
        outcome.verdict = if gating.is_empty() {
            Verdict::Ready(applied_msg)
        } else if failed || timed_out {
            Verdict::Failed(Error::Unhealthy {
                timeout: humantime(inputs.timeout),
                unhealthy: list,
            })
        } else {
            outcome.requeue = Some(
                inputs
                    .timeout
                    .saturating_sub(waited)
                    .max(Duration::from_millis(500)),
            );
            outcome.pending_for = Some(waited);
            Verdict::Progressing(format!("waiting for: {list}"))
        };
    }
}

#[cfg(test)]
mod tests {
    use plumb_api::condition::new_condition;
    use plumb_api::sync::RenderStatus;
    use serde_json::json;

    use super::*;

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
    fn each_verdict_decides_when_to_look_again() {
        let spec: SyncSpec = serde_json::from_value(json!({
            "sourceRef": {"kind": "GitRepository", "name": "r"},
            "interval": "10m", "retryInterval": "1m",
        }))
        .unwrap();
        let with = |verdict, requeue| {
            let mut o = Outcome::new(None, verdict);
            o.requeue = requeue;
            o
        };
        let waiting = || Verdict::Waiting {
            reason: reason::RENDER_NOT_READY,
            message: String::new(),
        };
        let cases = [
            (with(Verdict::Suspended, None), Action::await_change()),
            (with(waiting(), None), Action::await_change()),
            (
                with(waiting(), Some(Duration::from_secs(30))),
                Action::requeue(Duration::from_secs(30)),
            ),
            (
                with(Verdict::Ready(String::new()), None),
                Action::requeue(Duration::from_secs(600)),
            ),
            (
                with(Verdict::Failed(Error::PruneBlocked("x")), None),
                Action::await_change(),
            ),
            (
                with(
                    Verdict::Failed(Error::DependenciesNotReady { waiting: vec![] }),
                    None,
                ),
                Action::requeue(Duration::from_secs(60)),
            ),
            (
                with(
                    Verdict::Progressing(String::new()),
                    Some(Duration::from_secs(5)),
                ),
                Action::requeue(Duration::from_secs(5)),
            ),
        ];
        for (outcome, want) in cases {
            let action =
                look_again(&spec, &outcome).map_or_else(Action::await_change, Action::requeue);
            assert_eq!(action, want, "{:?}", outcome.verdict);
        }
    }
}
