//! The GitRepository reconciler: list refs, fetch only when the wanted commit changed, archive,
//! publish `status.artifact` by server-side apply, and say why in conditions and Events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use plumb_api::reference::Artifact;
use plumb_api::{
    ConditionExt, GitRepository, GitRepositoryStatus, REQUESTED_AT_ANNOTATION,
    SOURCE_FIELD_MANAGER, reason,
};
use plumb_artifact::{ArtifactKey, IgnoreRules, Runs, Storage, Written};
use plumb_ops::{EventRecorder, Failures, Metrics, ReconcileResult, Runtime};

use crate::config::Config;
use crate::error::Error;
use crate::git::{self, Auth, GitError, Remote};
use crate::refs::{self, RefError};
use crate::webhook::HookIndex;

/// The finalizer that removes an object's artifacts and cache on deletion.
pub const FINALIZER: &str = "source.plumb.dev/finalizer";

const KIND: &str = "GitRepository";

/// The shortest poll interval honoured: `interval: 0s` would otherwise poll the remote in a hot
/// loop, costing every tenant of the controller.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What every reconcile shares: the client, storage, metrics, events and settings.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The artifact store.
    pub storage: Storage,
    /// The controller settings.
    pub config: Config,
    /// Shared metrics.
    pub metrics: Metrics,
    /// Event recorder.
    pub recorder: EventRecorder,
    /// Registered webhooks.
    pub hooks: HookIndex,
    /// Consecutive failures per object, for exponential backoff.
    failures: Failures<ObjectRef<GitRepository>>,
    /// Caches with a fetch still running on a blocking thread (one that outlived its timeout
    /// keeps its cache busy until libgit2 returns).
    busy: Arc<Mutex<std::collections::HashSet<std::path::PathBuf>>>,
    /// The deflated runs of each repository's last artifact, by cache directory, so the next
    /// archive deflates only the runs a commit changed.
    runs: Mutex<std::collections::HashMap<std::path::PathBuf, Arc<Mutex<Runs>>>>,
}

impl Context {
    /// A context in `runtime` over the given parts.
    pub fn new(runtime: &Runtime, storage: Storage, config: Config, hooks: HookIndex) -> Self {
        Self {
            client: runtime.client().clone(),
            storage,
            config,
            metrics: runtime.metrics().clone(),
            recorder: runtime.recorder(SOURCE_FIELD_MANAGER),
            hooks,
            failures: Failures::default(),
            busy: Arc::default(),
            runs: Mutex::default(),
        }
    }

    /// The runs of the last artifact of the repository cached at `cache`.
    fn runs(&self, cache: &std::path::Path) -> Arc<Mutex<Runs>> {
        let mut all = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(cache.to_path_buf()).or_default().clone()
    }

    fn cache_dir(&self, namespace: &str, name: &str) -> std::path::PathBuf {
        self.storage
            .root()
            .join(".cache/gitrepository")
            .join(namespace)
            .join(name)
    }
}

/// What a fetch produced.
enum Fetched {
    /// The wanted revision is already published; when its commit was made.
    Unchanged(Option<jiff::Timestamp>),
    /// A new artifact was stored, and when its commit was made.
    New(Artifact, Option<jiff::Timestamp>),
}

/// The watch predicate of the controller: a hash of what a reconcile must follow (the spec's
/// generation, the reconcile-now annotation, the finalizers and deletion). Status writes leave
/// it unchanged, so they trigger nothing; periodic polls and back-off come from requeues.
pub fn wants_reconcile(obj: &GitRepository) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut h);
    obj.annotations().get(REQUESTED_AT_ANNOTATION).hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Reconciles one GitRepository (with its finalizer).
#[tracing::instrument(skip(obj, ctx), fields(namespace = obj.namespace().unwrap_or_default(), name = obj.name_any()))]
pub async fn reconcile(obj: Arc<GitRepository>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &ns);
    // The watch cache can lag our own status writes: a reconcile queued by the first of them may
    // see a status without the artifact just published, and would fetch, archive and write again.
    // One read of the object itself gives every decision below the status as it is now.
    let obj = match api.get_opt(&obj.name_any()).await {
        Ok(Some(fresh)) => Arc::new(fresh),
        Ok(None) => return Ok(Action::await_change()),
        Err(e) => {
            ctx.metrics
                .observe_reconcile(KIND, ReconcileResult::Error, started);
            return Err(Error::Kube(e));
        }
    };
    let result = finalizer::finalizer(&api, FINALIZER, obj, |event| async {
        match event {
            FinalizerEvent::Apply(o) => apply(o, ctx.clone()).await,
            FinalizerEvent::Cleanup(o) => cleanup(o, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    let outcome = if result.is_ok() {
        ReconcileResult::Success
    } else {
        ReconcileResult::Error
    };
    ctx.metrics.observe_reconcile(KIND, outcome, started);
    result
}

/// Backs off exponentially per object after consecutive failures (750ms doubling, up to 15m).
pub fn error_policy(obj: Arc<GitRepository>, err: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failures.record(ObjectRef::from_obj(obj.as_ref()));
    let delay = plumb_ops::backoff(ctx.config.retry_base(), n, MAX_RETRY_DELAY);
    tracing::warn!(name = obj.name_any(), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The longest wait before retrying a failed GitRepository.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(900);

async fn cleanup(obj: Arc<GitRepository>, ctx: Arc<Context>) -> Result<Action, Error> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let key = ArtifactKey::new(KIND, &ns, &name).map_err(Error::Storage)?;
    ctx.storage.remove_all(&key).map_err(Error::Storage)?;
    let cache = ctx.cache_dir(&ns, &name);
    ctx.runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&cache);
    if let Err(e) = std::fs::remove_dir_all(&cache)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(Error::Cache(format!("{}: {e}", cache.display())));
    }
    ctx.hooks.unregister(&ns, &name);
    tracing::info!("removed artifacts and cache of deleted GitRepository");
    Ok(Action::await_change())
}

/// The credentials of Secret `name`; a user name without a password (or a password with neither a
/// user name nor an SSH identity it could unlock) names the Secret and the missing key, instead of
/// surfacing later as a remote refusing a request without credentials.
fn credentials(
    name: &str,
    data: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Auth, Error> {
    let has = |key: &str| data.get(key).is_some_and(|v| !v.is_empty());
    if has("username") && !has("password") {
        return Err(Error::SecretKeyMissing(name.to_owned(), "password"));
    }
    if has("password") && !has("username") && !has("identity") {
        return Err(Error::SecretKeyMissing(name.to_owned(), "username"));
    }
    Ok(Auth::from_secret_data(data))
}

async fn secret_data(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(Error::Kube)?
        .ok_or_else(|| Error::SecretNotFound(name.to_owned()))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

async fn apply(obj: Arc<GitRepository>, ctx: Arc<Context>) -> Result<Action, Error> {
    let generation = obj.meta().generation;
    let mut old = obj.status.clone().unwrap_or_default();
    let mut status = old.clone();
    if let Some(requested) = obj.annotations().get(REQUESTED_AT_ANNOTATION) {
        status.last_handled_reconcile_at = Some(requested.clone());
    }
    if obj.spec.suspend {
        write_status(&ctx, &obj, &old, &status).await?;
        return Ok(Action::await_change());
    }
    if status.observed_generation != generation {
        // A new spec: say so before the (possibly slow) fetch, as kstatus expects.
        status.conditions.mark_reconciling(
            reason::PROGRESSING,
            "fetching the repository for the new spec",
            generation,
        );
        write_status(&ctx, &obj, &old, &status).await?;
        old = status.clone();
    }
    let result = fetch_and_store(&obj, &ctx, &mut status).await;
    // The Event goes out after the status write, and without holding the worker: the render
    // controller waits for the status, nobody waits for the Event.
    let mut event: Option<(EventType, &'static str, String)> = None;
    let action = match result {
        Ok(fetched) => {
            if let Fetched::Unchanged(Some(time)) = fetched {
                // An artifact published before this field existed gets it at the next poll.
                status.commit_time = Some(time);
            }
            if let Fetched::New(artifact, commit_time) = fetched {
                if let Some(size) = artifact.size {
                    ctx.metrics.observe_artifact_size(
                        KIND,
                        &obj.namespace().unwrap_or_default(),
                        &obj.name_any(),
                        size,
                    );
                }
                let msg = format!("stored artifact for revision {}", artifact.revision);
                event = Some((EventType::Normal, "NewArtifact", msg));
                status.artifact = Some(artifact);
                status.commit_time = commit_time;
            }
            let revision = status
                .artifact
                .as_ref()
                .map(|a| a.revision.to_string())
                .unwrap_or_default();
            status.conditions.mark_ready(
                reason::SUCCEEDED,
                &format!("stored artifact for revision {revision}"),
                generation,
            );
            status.observed_generation = generation;
            ctx.failures.clear(&ObjectRef::from_obj(obj.as_ref()));
            Ok(Action::requeue(obj.spec.interval.get().max(MIN_INTERVAL)))
        }
        Err(e) => {
            let (why, stalled) = e.reason();
            // On failure the old artifact stays published: status.artifact is left untouched.
            if stalled {
                status
                    .conditions
                    .mark_stalled(why, &e.to_string(), generation);
                status.observed_generation = generation;
            } else {
                status
                    .conditions
                    .mark_failed(why, &e.to_string(), generation);
            }
            event = Some((EventType::Warning, why, e.to_string()));
            if stalled {
                Ok(Action::await_change())
            } else {
                Err(e)
            }
        }
    };
    write_status(&ctx, &obj, &old, &status).await?;
    if let Some((type_, reason, note)) = event {
        let (recorder, reference) = (ctx.recorder.clone(), obj.object_ref(&()));
        tokio::spawn(async move {
            recorder
                .publish_ref(&reference, type_, reason, "Fetch", &note)
                .await;
        });
    }
    action
}

async fn fetch_and_store(
    obj: &GitRepository,
    ctx: &Arc<Context>,
    status: &mut GitRepositoryStatus,
) -> Result<Fetched, Error> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let spec = &obj.spec;
    git::check_url(&spec.url, ctx.config.allow_file_sources).map_err(Error::Git)?;
    let ignore = IgnoreRules::parse(spec.ignore.as_deref().unwrap_or(""))
        .map_err(|e| Error::InvalidSpec(e.to_string()))?;
    let current = status
        .artifact
        .clone()
        .filter(|_| status.observed_generation == obj.meta().generation);
    // The fetch does not need the webhook's token: it is read while the fetch runs (a webhook
    // delivery waits for neither one after the other), and its error still comes first.
    let (token, fetched) = tokio::join!(
        webhook_token(ctx, &ns, spec),
        fetch(obj, ctx, ignore, current)
    );
    match token? {
        Some(token) => status.webhook_path = Some(ctx.hooks.register(&ns, &name, &token)),
        None => {
            ctx.hooks.unregister(&ns, &name);
            status.webhook_path = None;
        }
    }
    fetched
}

/// The token of the GitRepository's webhook Secret, if it has a webhook.
async fn webhook_token(
    ctx: &Context,
    ns: &str,
    spec: &plumb_api::source::GitRepositorySpec,
) -> Result<Option<String>, Error> {
    let Some(hook) = &spec.webhook else {
        return Ok(None);
    };
    let data = secret_data(ctx, ns, &hook.secret_ref.name).await?;
    let token = data
        .get("token")
        .map(|t| String::from_utf8_lossy(t).trim().to_owned())
        .filter(|t| !t.is_empty());
    token
        .ok_or_else(|| Error::SecretKeyMissing(hook.secret_ref.name.clone(), "token"))
        .map(Some)
}

/// Lists the remote's refs and, when the wanted commit is not the `current` artifact's,
/// fetches and archives it.
async fn fetch(
    obj: &GitRepository,
    ctx: &Arc<Context>,
    ignore: IgnoreRules,
    current: Option<Artifact>,
) -> Result<Fetched, Error> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let spec = &obj.spec;
    let auth = match &spec.secret_ref {
        Some(r) => credentials(&r.name, &secret_data(ctx, &ns, &r.name).await?)?,
        None => Auth::default(),
    };
    // The API type clamps durations, so these additions cannot overflow; checked anyway, as a
    // tenant writes the value.
    let timeout = spec.timeout.get();
    let now = Instant::now();
    let remote = Remote {
        url: spec.url.clone(),
        auth,
        deadline: now.checked_add(timeout).unwrap_or(now),
        timeout,
        limits: ctx.config.fetch_limits(),
    };
    let key = ArtifactKey::new(KIND, &ns, &name).map_err(Error::Storage)?;
    let job = FetchJob {
        remote,
        reference: spec.reference.clone(),
        current,
        cache: ctx.cache_dir(&ns, &name),
        runs: ctx.runs(&ctx.cache_dir(&ns, &name)),
        storage: ctx.storage.clone(),
        key,
        ignore,
        base_url: ctx.config.artifact_base_url.clone(),
        keep: ctx.config.artifacts_to_keep,
    };
    let cache = job.cache.clone();
    let lock = |b: &Mutex<std::collections::HashSet<std::path::PathBuf>>| {
        let mut set = b.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(cache.clone())
    };
    if !lock(&ctx.busy) {
        return Err(Error::Git(GitError::Other(format!(
            "the previous fetch timed out after {timeout:?} and is still running"
        ))));
    }
    let busy = ctx.busy.clone();
    let task = tokio::task::spawn_blocking(move || {
        let cache = job.cache.clone();
        let result = job.run();
        busy.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&cache);
        result
    });
    match tokio::time::timeout(timeout.saturating_add(Duration::from_secs(1)), task).await {
        Err(_) => Err(Error::Git(GitError::Timeout(timeout))),
        Ok(Err(join)) => Err(Error::Cache(format!("fetch task failed: {join}"))),
        Ok(Ok(r)) => r,
    }
}

/// The blocking part of a reconcile: git and disk.
struct FetchJob {
    remote: Remote,
    reference: Option<plumb_api::source::GitRepositoryRef>,
    current: Option<Artifact>,
    cache: std::path::PathBuf,
    runs: Arc<Mutex<Runs>>,
    storage: Storage,
    key: ArtifactKey,
    ignore: IgnoreRules,
    base_url: String,
    keep: usize,
}

impl FetchJob {
    fn run(self) -> Result<Fetched, Error> {
        std::fs::create_dir_all(&self.cache).map_err(|source| {
            Error::Storage(plumb_artifact::StorageError::Io {
                path: self.cache.clone(),
                source,
            })
        })?;
        let repo = git::open_cache(&self.cache).map_err(Error::Git)?;
        let listed = git::list_refs(&repo, &self.remote).map_err(Error::Git)?;
        let target = refs::resolve(self.reference.as_ref(), &listed).map_err(Error::Ref)?;
        let file_of = |commit: &str| format!("{commit}.tar.gz");
        if let (Some(commit), Some(current)) = (&target.commit, &self.current) {
            let wanted = target
                .revision(commit)
                .map_err(|e| Error::Ref(RefError::NotFound(e.to_string())))?;
            if current.revision == wanted && self.storage.exists(&self.key, &file_of(commit)) {
                tracing::debug!(revision = %wanted, "no new commit; nothing fetched");
                return Ok(Fetched::Unchanged(git::commit_time(&repo, commit)));
            }
        }
        let known = target
            .commit
            .as_deref()
            .is_some_and(|c| git::has_commit(&repo, c));
        let within_known = target
            .within_branch_tip
            .as_deref()
            .is_none_or(|t| git::has_commit(&repo, t));
        if !(known && within_known) {
            let stats = git::fetch(&repo, &self.remote, &target.refspecs).map_err(Error::Git)?;
            tracing::info!(objects = stats.objects, bytes = stats.bytes, "fetched");
        }
        let commit = target
            .commit
            .clone()
            .ok_or_else(|| Error::Ref(RefError::NotFound("commit".into())))?;
        if !git::has_commit(&repo, &commit) {
            return Err(Error::Ref(RefError::NotFound(format!("commit {commit}"))));
        }
        if let Some(tip) = &target.within_branch_tip
            && !git::reachable_from(&repo, &commit, tip).map_err(Error::Git)?
        {
            let branch = target.revision_ref.clone().unwrap_or_default();
            return Err(Error::Ref(RefError::NotFound(format!(
                "commit {commit} in branch {branch:?}"
            ))));
        }
        let revision = target
            .revision(&commit)
            .map_err(|e| Error::Ref(RefError::NotFound(e.to_string())))?;
        let file = file_of(&commit);
        let bounds = git::ArchiveBounds {
            limits: self.remote.limits,
            deadline: Some((self.remote.deadline, self.remote.timeout)),
        };
        let started = Instant::now();
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let mut written = Written::default();
        let stored = self
            .storage
            .write_atomic(&self.key, &file, |w| {
                git::archive_commit_reusing(&repo, &commit, &self.ignore, &bounds, &mut runs, w)
                    .map(|(_, w)| written = w)
            })
            .map_err(Error::Storage)?
            .map_err(Error::Git)?;
        drop(runs);
        tracing::info!(
            size = stored.size,
            runs_deflated = written.runs_deflated,
            runs_reused = written.runs_reused,
            files_read = written.files_read,
            bytes_deflated = written.bytes_deflated,
            elapsed_ms = started.elapsed().as_millis(),
            "archived"
        );
        if let Err(e) = self.storage.gc(&self.key, self.keep, &file) {
            tracing::warn!(error = %e, "garbage-collecting old artifacts failed");
        }
        let artifact = Artifact {
            revision,
            digest: stored.digest,
            url: Storage::url(&self.base_url, &self.key, &file),
            size: i64::try_from(stored.size).ok(),
            last_update_time: jiff::Timestamp::now(),
        };
        Ok(Fetched::New(artifact, git::commit_time(&repo, &commit)))
    }
}

/// Applies `status` to the status subresource when it differs from `old` (so a poll that
/// changes nothing writes nothing).
async fn write_status(
    ctx: &Context,
    obj: &GitRepository,
    old: &GitRepositoryStatus,
    status: &GitRepositoryStatus,
) -> Result<(), Error> {
    if old == status {
        return Ok(());
    }
    let api: Api<GitRepository> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "source.plumb.dev/v1",
        "kind": KIND,
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(SOURCE_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Kube)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(generation: i64) -> GitRepository {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": {"name": "app", "generation": generation},
            "spec": {"url": "https://example.com/r.git"}
        }))
        .unwrap()
    }

    #[test]
    fn only_spec_requests_finalizers_and_deletion_trigger_a_reconcile() {
        let base = repo(1);
        let mut status_only = base.clone();
        status_only.status = Some(Default::default());
        status_only.metadata.resource_version = Some("2".into());
        assert_eq!(wants_reconcile(&base), wants_reconcile(&status_only));
        assert_ne!(wants_reconcile(&base), wants_reconcile(&repo(2)));
        let mut requested = base.clone();
        requested
            .annotations_mut()
            .insert(REQUESTED_AT_ANNOTATION.into(), "now".into());
        assert_ne!(wants_reconcile(&base), wants_reconcile(&requested));
        let mut finalized = base.clone();
        finalized.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert_ne!(wants_reconcile(&base), wants_reconcile(&finalized));
    }
}
