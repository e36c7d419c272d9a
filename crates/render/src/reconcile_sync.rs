//! Reconciling a Sync's render: source artifact → render → Policy gate → rendered artifact.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use plumb_api::reference::Artifact;
use plumb_api::sync::{PolicyReport, RenderStatus};
use plumb_api::{
    Conditions, GitRepository, RENDER_FIELD_MANAGER, REQUESTED_AT_ANNOTATION, Sync, condition_type,
    reason,
};
use plumb_artifact::{ArtifactKey, Storage};
use plumb_ops::backoff;
use tracing::instrument;

use crate::build::RenderOptions;
use crate::cache::{Record, RenderKey, cache_key};
use crate::chart::ChartOptions;
use crate::chart_inputs::ChartInputs;
use crate::context::Context;
use crate::error::build_reason;
use crate::inputs::Inputs;
use crate::policy::{CompiledPolicy, describe, evaluate};
use crate::publish::{Rendered, pack};
use crate::status::{Outcome, render_status, rendered_condition, status_patch};
use crate::sync_view::SyncView;
use crate::trees::{FetchSettings, Tree};
use crate::{Error, build, variables};
use plumb_substitute::deferred::VariableSource;

/// The artifact kind segment of rendered artifacts: `<base>/sync/<namespace>/<name>/<file>`.
pub const ARTIFACT_KIND: &str = "sync";

/// The first retry delay after a transient failure; doubled per failure in a row.
const RETRY_BASE: Duration = Duration::from_secs(2);

/// The longest retry delay when the Sync sets no `retryInterval`.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// How a finished reconcile wants to be called again.
enum Next {
    /// Done; look again at the safety-net interval.
    Settled,
    /// A transient failure; back off.
    Retry,
}

/// Reconciles the render of one Sync.
#[instrument(skip(view, ctx), fields(namespace = view.namespace().unwrap_or_default(), name = view.name_any()))]
pub async fn reconcile(view: Arc<SyncView>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let key = ObjectRef::from_obj(view.as_ref());
    // However it ends, a Sync queued ahead of others is then done.
    let _done = Reconciled {
        ctx: ctx.clone(),
        sync: key.clone(),
        began: started,
    };
    if view.suspended() {
        return Ok(ctx.periodic.action(&key, None));
    }
    let sync = view.sync().map_err(|source| Error::CachedSync {
        sync: format!(
            "{}/{}",
            key.namespace.as_deref().unwrap_or_default(),
            key.name
        ),
        source,
    })?;
    let (outcome, next) = render_sync(&sync, &ctx).await;
    if let Some(outcome) = &outcome
        && !status_is_current(&sync, outcome)
    {
        // The status first: the sync controller waits for it. Events and logs follow changes
        // of the verdict, not every look at an unchanged one.
        write_status(&sync, &ctx, outcome).await?;
        announce(&sync, &ctx, outcome).await;
    }
    let ok = !matches!(outcome, Some(Outcome::Failed { .. }));
    let result = if ok {
        plumb_ops::ReconcileResult::Success
    } else {
        plumb_ops::ReconcileResult::Error
    };
    ctx.metrics.ops.observe_reconcile("Sync", result, started);
    let interval = Duration::from(sync.spec.interval.clone());
    let after = match next {
        Next::Settled => {
            ctx.failures.clear(&key);
            interval
        }
        Next::Retry => {
            let max = sync
                .spec
                .retry_interval
                .clone()
                .map(Duration::from)
                .unwrap_or(MAX_RETRY_DELAY);
            backoff(RETRY_BASE, ctx.failures.record(key.clone()), max)
        }
    };
    Ok(ctx.periodic.action(&key, Some(after)))
}

/// Tells the context, when dropped, that a reconcile of `sync` begun at `began` ended.
struct Reconciled {
    ctx: Arc<Context>,
    sync: ObjectRef<SyncView>,
    began: std::time::Instant,
}

impl Drop for Reconciled {
    fn drop(&mut self) {
        self.ctx.reconciled(&self.sync, self.began);
    }
}

/// Backs off after an API error (status write, store).
pub fn error_policy(sync: Arc<SyncView>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, namespace = sync.namespace(), name = sync.name_any(), "render reconcile failed");
    let key = ObjectRef::from_obj(sync.as_ref());
    let n = ctx.failures.record(key.clone());
    ctx.periodic
        .action(&key, Some(backoff(RETRY_BASE, n, MAX_RETRY_DELAY)))
}

/// Decides what to write: `None` when the last render is still current.
async fn render_sync(sync: &Sync, ctx: &Context) -> (Option<Outcome>, Next) {
    let namespace = sync.namespace().unwrap_or_default();
    let src = &sync.spec.source_ref;
    let src_ns = src.namespace.clone().unwrap_or_else(|| namespace.clone());
    if ctx.config.no_cross_namespace_refs && src_ns != namespace {
        let msg = format!(
            "cross-namespace source references are not allowed: {}/{}",
            src_ns, src.name
        );
        return (
            Some(Outcome::failed(reason::ACCESS_DENIED, msg)),
            Next::Settled,
        );
    }

    let repo = match source_of(ctx, &src_ns, &src.name).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            let msg = format!("GitRepository {src_ns}/{} not found", src.name);
            return (
                Some(Outcome::failed(reason::SOURCE_NOT_READY, msg)),
                Next::Settled,
            );
        }
        Err(e) => {
            let msg = format!("reading GitRepository {src_ns}/{}: {e}", src.name);
            return (
                Some(Outcome::failed(reason::SOURCE_NOT_READY, msg)),
                Next::Retry,
            );
        }
    };
    let Some(artifact) = repo.status.as_ref().and_then(|s| s.artifact.clone()) else {
        let msg = format!("GitRepository {src_ns}/{} has no artifact yet", src.name);
        return (
            Some(Outcome::failed(reason::SOURCE_NOT_READY, msg)),
            Next::Settled,
        );
    };

    // Every governing Policy must compile: a Sync is never rendered unchecked.
    let governing = ctx.governing(&namespace, sync.labels()).await;
    let mut compiled: Vec<Arc<CompiledPolicy>> = Vec::new();
    for p in &governing {
        match ctx.compiled(p).as_ref() {
            Ok(c) => compiled.push(c.clone()),
            Err(e) => {
                let msg = format!("governing policy is invalid, not rendering: {e}");
                return (
                    Some(Outcome::failed(reason::POLICY_INVALID, msg)),
                    Next::Settled,
                );
            }
        }
    }
    let generations: Vec<(String, Option<i64>)> = governing
        .iter()
        .map(|p| (p.name_any(), p.metadata.generation))
        .collect();
    let requested = sync
        .annotations()
        .get(REQUESTED_AT_ANNOTATION)
        .map(String::as_str);
    let variables =
        match variables::load_sources(&ctx.client, &namespace, &sync.spec.substitute_from).await {
            Ok(v) => v,
            Err(e) => {
                let next = if e.is_transient() {
                    Next::Retry
                } else {
                    Next::Settled
                };
                return (
                    Some(Outcome::failed(reason::BUILD_FAILED, e.to_string())),
                    next,
                );
            }
        };
    let key = cache_key(
        &artifact.digest,
        &sync.spec,
        &variables,
        &generations,
        requested,
    );
    // Keyed by namespace and name alone (the cached Sync's resourceVersion and uid would be
    // copied into every key for nothing: keys compare by namespace and name).
    let objref = ObjectRef::new(&sync.name_any()).within(&sync.namespace().unwrap_or_default());
    // A chart's render also depends on the valuesFrom values and the cluster's capabilities.
    let inputs = match chart_inputs(sync, ctx).await {
        Ok(inputs) => inputs,
        Err(failed) => return failed,
    };
    let chart_key = key.with(&inputs.digest());
    let was_chart = sync.spec.helm.is_some()
        || ctx
            .charts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&objref);
    let key = if was_chart { chart_key.clone() } else { key };
    let record_key = plumb_ops::key_of(&objref);
    let last = ctx
        .rendered
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&record_key)
        .cloned();
    // A record that cannot be read back counts as none: the Sync is rendered again.
    let last = last.and_then(|record| Some((record.outcome()?, record)));
    if let Some((outcome, record)) = &last
        && record.key == key
    {
        // Same inputs, same verdict: nothing is downloaded or rendered. Only the generation the
        // verdict is reported for may move on (a change of, say, `interval`).
        return (
            Some(outcome.clone().for_generation(sync.metadata.generation)),
            Next::Settled,
        );
    }
    if let Some((outcome, record)) = last
        && let Some(outcome) = carry(ctx, outcome, &record, &key, &artifact).await
    {
        ctx.metrics.carried.inc();
        let outcome = outcome.for_generation(sync.metadata.generation);
        let mut rendered = ctx.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(record) = rendered.get_mut(&record_key) {
            record.update(key, outcome.clone());
        }
        return (Some(outcome), Next::Settled);
    }

    ctx.metrics.renders.inc();
    let secrets = variables::secret_values(&variables);
    let (outcome, next, is_chart, read) = render_artifact(
        sync,
        ctx,
        (&format!("{src_ns}/{}", src.name), &artifact),
        &compiled,
        inputs,
        variables,
    )
    .await;
    let outcome = outcome.scrubbed(&secrets);
    if matches!(next, Next::Settled) {
        let mut charts = ctx.charts.lock().unwrap_or_else(|e| e.into_inner());
        let key = match is_chart {
            Some(true) => {
                charts.insert(objref.clone());
                chart_key
            }
            Some(false) => {
                charts.remove(&objref);
                key
            }
            None => key,
        };
        drop(charts);
        let inputs = read.map(|read| {
            ctx.inputs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .share(read)
        });
        let record = Record::new(key, outcome.clone(), inputs);
        ctx.rendered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record_key, Box::new(record));
    }
    (Some(outcome), next)
}

/// The last render (its record `last`, which concluded `outcome`), carried to the source
/// artifact `source` (whose render key is `key`) without rendering: when only the source digest
/// changed and no path the render read differs in the new tree. `None`: render.
async fn carry(
    ctx: &Context,
    outcome: Outcome,
    last: &Record,
    key: &RenderKey,
    source: &Artifact,
) -> Option<Outcome> {
    if last.key.rest != key.rest || last.key.source == key.source || last.inputs.is_none() {
        return None;
    }
    let tree = ctx
        .trees
        .get(&ctx.http, source, &fetch_settings(ctx))
        .await
        .ok()?;
    if !last.holds_in(&tree.index) {
        return None;
    }
    let Outcome::Published(mut render) = outcome else {
        return None;
    };
    // The same rendered artifact, now standing for the new revision: the sync controller sees
    // the digest it applied already, and applies nothing.
    render.source_revision = Some(source.revision.clone());
    render.source_digest = Some(source.digest.clone());
    if let Some(a) = render.artifact.as_mut() {
        a.revision = source.revision.clone();
    }
    Some(Outcome::Published(render))
}

/// How source artifacts are downloaded and unpacked, from the controller's settings.
pub fn fetch_settings(ctx: &Context) -> FetchSettings {
    FetchSettings {
        max_artifact_size: ctx.config.max_artifact_size,
        limits: ctx.config.unpack_limits(),
    }
}

/// The GitRepository `namespace/name`: from the cache (which its watch wakes this Sync by),
/// read from the API server only when the cache does not hold it (a source outside the
/// controller's namespace, or none).
async fn source_of(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Option<Arc<GitRepository>>, kube::Error> {
    if let Some(repo) = ctx.repos.get(&ObjectRef::new(name).within(namespace)) {
        return Ok(Some(repo));
    }
    let repos: Api<GitRepository> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(repos.get_opt(name).await?.map(Arc::new))
}

/// What a chart render reads from the cluster: the `valuesFrom` documents (a Sync without
/// `spec.helm` has none) and the capabilities. When discovery fails, the render goes on
/// without them: only a chart needs them, and it fails saying so.
async fn chart_inputs(sync: &Sync, ctx: &Context) -> Result<ChartInputs, (Option<Outcome>, Next)> {
    let namespace = sync.namespace().unwrap_or_default();
    let refs = sync
        .spec
        .helm
        .as_ref()
        .map(|h| h.values_from.as_slice())
        .unwrap_or_default();
    let values_from = crate::chart_inputs::values_from(&ctx.client, &namespace, refs)
        .await
        .map_err(|e| {
            let next = if e.is_transient() {
                Next::Retry
            } else {
                Next::Settled
            };
            (
                Some(Outcome::failed(reason::BUILD_FAILED, e.to_string())),
                next,
            )
        })?;
    let capabilities = match ctx.capabilities.get(&ctx.client).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cluster discovery for chart capabilities failed");
            plumb_helm::Capabilities::default()
        }
    };
    Ok(ChartInputs {
        values_from,
        capabilities,
    })
}

/// Renders over the shared source tree (of `source`, the artifact of GitRepository `repo`),
/// gates and publishes; says whether the path was a chart,
/// when it got that far, and what the render read of the tree (when that can tell whether a
/// later tree would render the same).
async fn render_artifact(
    sync: &Sync,
    ctx: &Context,
    (repo, source): (&str, &Artifact),
    policies: &[Arc<CompiledPolicy>],
    inputs: ChartInputs,
    variables: Vec<VariableSource>,
) -> (Outcome, Next, Option<bool>, Option<Inputs>) {
    let tree = match ctx.trees.get(&ctx.http, source, &fetch_settings(ctx)).await {
        Ok(tree) => tree,
        Err(e) => {
            return (
                Outcome::failed(
                    reason::ARTIFACT_FAILED,
                    format!("GitRepository {repo}: {e}"),
                ),
                Next::Retry,
                None,
                None,
            );
        }
    };

    let spec = sync.spec.clone();
    let chart = ChartOptions {
        helm: ctx.helm.clone(),
        max_memory: ctx.config.chart_max_memory,
        ..ChartOptions::for_sync(sync, inputs)
    };
    let placement = sync.placement_namespace();
    let policies = policies.to_vec();
    let config = ctx.config.clone();
    let saw_chart = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let chart_seen = saw_chart.clone();
    // An error comes with whether to retry it (a transient failure is never cached).
    let rendered = tokio::task::spawn_blocking(move || -> Result<_, Box<(Outcome, Next)>> {
        let tree: &Tree = &tree;
        let root = tree.root.as_path();
        // A render that looked at more paths than its inputs may name is rendered again anyway.
        let accesses = Arc::new(plumb_kustomize::Accesses::with_limit(
            crate::inputs::MAX_INPUT_PATHS,
        ));
        let opts = RenderOptions {
            chart,
            accesses: Some(accesses.clone()),
            ..config.render_options(tree.unpacked)
        };
        let is_chart = build::resolve_path(root, &spec.path)
            .map(|dir| plumb_helm::is_chart(&dir))
            .unwrap_or(false);
        chart_seen.store(is_chart, std::sync::atomic::Ordering::Relaxed);
        if is_chart && opts.chart.capabilities.kube_version.is_none() {
            return Err(Box::new((
                Outcome::failed(
                    reason::BUILD_FAILED,
                    "chart: the cluster's version and API versions are unknown (discovery failed); retrying".to_owned(),
                ),
                Next::Retry,
            )));
        }
        let rendered = build::render_published(root, &spec, &variables, &opts);
        // A kustomization's helmCharts depend on the capabilities as a chart does.
        if opts.chart.inflated.load(std::sync::atomic::Ordering::Relaxed) {
            chart_seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let rendered = rendered.map_err(|e| {
            let next = if e.is_transient() {
                Next::Retry
            } else {
                Next::Settled
            };
            Box::new((Outcome::failed(build_reason(&e), e.to_string()), next))
        })?;
        let mut objects = rendered.objects;
        // SOPS-encrypted objects stay encrypted; each carries its file for the sync controller.
        let searched = crate::sops_sources::attach(root, &mut objects);
        // What the render read tells whether a later tree renders the same, unless Helm read a
        // chart or the whole tree was searched for SOPS files.
        let read = if searched || chart_seen.load(std::sync::atomic::Ordering::Relaxed) {
            None
        } else {
            accesses
                .snapshot()
                .and_then(|looked_at| Inputs::observe(root, &looked_at, &tree.index))
        };
        // Policies judge the objects as they will be applied, Secret values substituted ...
        let report = evaluate(&policies, &objects, &placement);
        // ... and the artifact holds those objects unsubstituted, for the sync controller to
        // finish (plumb_substitute::deferred): no Secret value is stored or served.
        let objects = if rendered.deferred.is_empty() {
            objects
        } else {
            let mut objects = build::Published {
                objects,
                deferred: rendered.deferred,
            }
            .into_artifact();
            crate::sops_sources::attach(root, &mut objects);
            objects
        };
        let packed = pack(&objects).map_err(|e| {
            Box::new((
                Outcome::failed(reason::BUILD_FAILED, format!("packing: {e}")),
                Next::Settled,
            ))
        })?;
        Ok((packed, report, read))
    })
    .await;
    let is_chart = saw_chart.load(std::sync::atomic::Ordering::Relaxed);
    let (packed, report, read) = match rendered {
        Ok(Ok(r)) => r,
        Ok(Err(failed)) => {
            let (outcome, next) = *failed;
            return (outcome, next, Some(is_chart), None);
        }
        Err(e) => {
            return (
                Outcome::failed(reason::BUILD_FAILED, format!("render task: {e}")),
                Next::Retry,
                None,
                None,
            );
        }
    };

    for (action, n) in [
        ("deny", report.violations.len()),
        ("warn", report.warnings.len()),
    ] {
        ctx.metrics
            .findings
            .get_or_create(&crate::context::FindingLabels {
                action: action.to_owned(),
            })
            .inc_by(n as u64);
    }
    if !report.violations.is_empty() {
        let message = format!(
            "{} policy violations, nothing published: {}",
            report.violations.len(),
            describe(&report.violations)
        );
        let outcome = Outcome::Failed {
            reason: reason::POLICY_VIOLATION,
            message,
            policy: Some(report),
        };
        return (outcome, Next::Settled, Some(is_chart), None);
    }

    match store(sync, ctx, &packed) {
        Ok(url) => {
            ctx.metrics.artifact_size.observe(packed.bytes.len() as f64);
            let render = RenderStatus {
                observed_generation: sync.metadata.generation,
                source_revision: Some(source.revision.clone()),
                source_digest: Some(source.digest.clone()),
                artifact: Some(Artifact {
                    revision: source.revision.clone(),
                    digest: packed.digest.clone(),
                    url,
                    size: Some(packed.bytes.len() as i64),
                    last_update_time: jiff::Timestamp::now(),
                }),
                objects: Some(packed.objects as i64),
                policy: (!report.warnings.is_empty()).then_some(report),
            };
            (
                Outcome::Published(render),
                Next::Settled,
                Some(is_chart),
                read,
            )
        }
        Err(e) => (
            Outcome::failed(reason::ARTIFACT_STORAGE_FAILED, e.to_string()),
            Next::Retry,
            Some(is_chart),
            None,
        ),
    }
}

/// Writes the rendered artifact (unless the same digest is already stored) and collects old ones.
fn store(sync: &Sync, ctx: &Context, packed: &Rendered) -> Result<String, Error> {
    let key = ArtifactKey::new(
        ARTIFACT_KIND,
        &sync.namespace().unwrap_or_default(),
        &sync.name_any(),
    )
    .map_err(Error::Storage)?;
    let file = packed.file_name();
    if !ctx.storage.exists(&key, &file) {
        ctx.storage
            .write_atomic(&key, &file, |w| w.write_all(&packed.bytes))
            .map_err(Error::Storage)?
            .map_err(|e| {
                Error::Storage(plumb_artifact::StorageError::Io {
                    path: ctx.storage.path(&key, &file),
                    source: e,
                })
            })?;
    }
    if let Err(e) = ctx.storage.gc(&key, ctx.config.artifacts_to_keep, &file) {
        tracing::warn!(error = %e, "collecting old rendered artifacts");
    }
    Ok(Storage::url(&ctx.config.artifact_base_url, &key, &file))
}

/// Events and logs for an outcome. A render published is logged and reported by the `Rendered`
/// condition, with no Event of its own: the sync controller records one Event when it applies
/// the render (as Flux's kustomize-controller records one per applied revision), and a second
/// one per render cost every new revision of every Sync another API write. Failures and policy
/// warnings are Events.
async fn announce(sync: &Sync, ctx: &Context, outcome: &Outcome) {
    match outcome {
        Outcome::Published(render) => {
            let previous = sync
                .status
                .as_ref()
                .and_then(|s| s.render.as_ref())
                .and_then(|r| r.artifact.as_ref())
                .map(|a| a.digest.clone());
            let digest = render.artifact.as_ref().map(|a| a.digest.clone());
            if previous != digest {
                tracing::info!(
                    objects = render.objects.unwrap_or_default(),
                    revision = %render
                        .source_revision
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    "rendered"
                );
            }
            if let Some(PolicyReport { warnings, .. }) = &render.policy
                && !warnings.is_empty()
            {
                ctx.event(
                    sync,
                    EventType::Warning,
                    "PolicyWarning",
                    describe(warnings),
                )
                .await;
            }
        }
        Outcome::Failed {
            reason, message, ..
        } => {
            tracing::warn!(%reason, %message, "render failed");
            ctx.event(sync, EventType::Warning, reason, message.clone())
                .await;
        }
    }
}

/// Whether the Sync already says what `outcome` would write (transition times aside), so a
/// repeated verdict costs no API write.
fn status_is_current(sync: &Sync, outcome: &Outcome) -> bool {
    let Some(status) = &sync.status else {
        return false;
    };
    let want = rendered_condition(sync, outcome);
    let same_condition = status
        .conditions
        .get_condition(condition_type::RENDERED)
        .is_some_and(|c| {
            (&c.status, &c.reason, &c.message, c.observed_generation)
                == (
                    &want.status,
                    &want.reason,
                    &want.message,
                    want.observed_generation,
                )
        });
    same_condition && status.render.as_ref() == Some(&render_status(sync, outcome))
}

/// Applies the render status under the `plumb-render` field manager.
async fn write_status(sync: &Sync, ctx: &Context, outcome: &Outcome) -> Result<(), Error> {
    let api: Api<Sync> = Api::namespaced(ctx.client.clone(), &sync.namespace().unwrap_or_default());
    let params = PatchParams::apply(RENDER_FIELD_MANAGER).force();
    api.patch_status(
        &sync.name_any(),
        &params,
        &Patch::Apply(status_patch(sync, outcome)),
    )
    .await
    .map_err(Error::Kube)?;
    ctx.metrics.status_writes.inc();
    Ok(())
}
