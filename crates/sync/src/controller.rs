//! Wiring: the Sync controller over one shared watch of Syncs (the reconciled objects and the
//! dependencies) and of Policies (drift mode, ignored paths, windows), the Namespaces' metadata
//! (Policy namespace selectors), and the watches of applied objects (drift).

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Api, Resource};

use plumb_api::Policy;
use plumb_ops::{ReadyGate, Runtime, RuntimeError, SharedWatch};

use crate::config::Config;
use crate::context::{Context, SyncMetrics};
use crate::decrypt;
use crate::reconcile::{error_policy, reconcile};
use crate::sync_view::SyncView;
use crate::wake::Woken;
use crate::watches::Watches;

/// The name of the sync controller's leader Lease (with the watch scope appended when
/// sharded).
pub const LEASE_NAME: &str = "plumb-sync-controller";

/// The name the controller reports Events under.
pub const CONTROLLER_NAME: &str = "plumb-sync";

/// Why the controller could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime could not run the controller.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The artifact token could not be had.
    #[error(transparent)]
    Token(#[from] plumb_artifact::auth::AuthError),
    /// The HTTP client for artifacts could not be built.
    #[error("artifact HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Runs the sync controller in `runtime` until it shuts down, under the leader Lease when
/// leader election is on. It reconciles only once its caches of Syncs, Policies and
/// Namespaces are complete, so no first pass ignores a deny window or drift setting.
pub async fn run(runtime: &Runtime, config: Config) -> Result<(), Error> {
    let token =
        plumb_artifact::auth::load(runtime.client(), config.artifact_token_secret.as_ref()).await?;
    let http = plumb_artifact::auth::client_builder(token.as_ref())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()?;
    let scope = config.scope.clone();
    runtime
        .lead(LEASE_NAME, &scope, |ready| {
            controller(runtime, config.clone(), http.clone(), ready)
        })
        .await?;
    Ok(())
}

/// A Sync whose status changes wakes the Syncs that depend on it.
pub fn dependents(syncs: &[Arc<SyncView>], changed: &SyncView) -> Vec<ObjectRef<SyncView>> {
    let key = changed.key();
    syncs
        .iter()
        .filter(|s| s.dependencies().contains(&key))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The Sync events that may change what a pass does: not the writes of this controller's own
/// status (two or three per apply), which would each wake a pass that finds nothing to do.
/// Another Sync's status change still reaches its dependents ([`dependents`]).
pub fn input_changes(
    syncs: impl futures::Stream<Item = Arc<SyncView>> + Send + 'static,
) -> impl futures::Stream<Item = Arc<SyncView>> + Send + 'static {
    plumb_ops::changed(syncs, SyncView::inputs)
}

/// Every Sync: a Policy change may change drift mode, ignored paths or windows of any Sync.
pub fn every_sync(syncs: &[Arc<SyncView>]) -> Vec<ObjectRef<SyncView>> {
    syncs
        .iter()
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Changes of Secrets that may hold decryption keys (their metadata only: keys are read when
/// used): those in the watched namespaces, and the default key Secret when it lies outside them.
fn key_secret_changes(
    scope: &plumb_ops::WatchScope,
    client: &kube::Client,
    default: Option<&plumb_artifact::TokenSecret>,
    controller_namespace: &str,
) -> BoxStream<'static, Result<PartialObjectMeta<Secret>, watcher::Error>> {
    let metadata = |api: Api<PartialObjectMeta<Secret>>, config| {
        watcher(api, config)
            .default_backoff()
            .touched_objects()
            .boxed()
    };
    let in_scope = metadata(scope.api(client.clone()), watcher::Config::default());
    let default_ns = default.map(|d| d.namespace.as_deref().unwrap_or(controller_namespace));
    match (default, default_ns, &scope.namespace) {
        (Some(d), Some(ns), Some(watched)) if ns != watched => {
            let api = Api::namespaced(client.clone(), ns);
            let config = watcher::Config::default().fields(&format!("metadata.name={}", d.name));
            futures::stream::select(in_scope, metadata(api, config)).boxed()
        }
        _ => in_scope,
    }
}

/// The Namespaces whose metadata a pass reads: those Syncs in scope live in (for Policy namespace
/// selectors and the terminating check, both about the Sync's own namespace). A controller
/// watching one namespace watches that Namespace alone, not every Namespace of the cluster
/// (a thousand apps each in its own namespace made a thousand cached Namespaces that no
/// decision of it read).
fn namespace_watch(scope: &plumb_ops::WatchScope) -> watcher::Config {
    match &scope.namespace {
        Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
        None => watcher::Config::default(),
    }
}

async fn controller(
    runtime: &Runtime,
    config: Config,
    http: reqwest::Client,
    ready: ReadyGate,
) -> Result<(), RuntimeError> {
    let client = runtime.client().clone();
    let scope = config.scope.clone();
    // Each Sync as a compact view, read back whole by the pass that needs it.
    let syncs = SharedWatch::<SyncView>::new();
    let mut policies = SharedWatch::<Policy>::new();
    // Of Namespaces only what Policy namespace selectors and the terminating check read.
    let namespaces = SharedWatch::<PartialObjectMeta<Namespace>>::new()
        .keeping_only(plumb_ops::keep_selector_metadata);

    let (trigger_tx, trigger_rx) = tokio::sync::mpsc::unbounded_channel();
    let drift_triggers = futures::stream::unfold(trigger_rx, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let store = syncs.store();
    let ctx = Arc::new(Context::new(
        client.clone(),
        runtime.kube_config().clone(),
        http,
        runtime.recorder(CONTROLLER_NAME),
        config.clone(),
        SyncMetrics::new(runtime.metrics().clone()),
        Watches::new(client.clone(), trigger_tx),
        store.clone(),
        policies.store(),
        namespaces.store(),
    ));

    let (for_deps, for_policies, for_keys) = (store.clone(), store.clone(), store.clone());
    let for_deletions = store.clone();
    let default_keys = config.sops_age_secret.clone();
    let keys_namespace = decrypt::controller_namespace(&client);
    let key_changes = key_secret_changes(&scope, &client, default_keys.as_ref(), &keys_namespace);
    // Every source of requests marks what it woke (`wake`): the pass learns whether anything
    // can be new to it.
    let marked = |why: Woken| {
        let ctx = ctx.clone();
        move |refs: Vec<ObjectRef<SyncView>>| {
            for r in &refs {
                ctx.wakes.mark(r, why);
            }
            refs
        }
    };
    let (on_deps, on_policy, on_key) = (
        marked(Woken::DEPENDENCY),
        marked(Woken::POLICY),
        marked(Woken::SECRET),
    );
    let on_deletion = marked(Woken::POLICY);
    let (on_sync, on_object, on_any) = (ctx.clone(), ctx.clone(), ctx.clone());
    let inputs = input_changes(syncs.subscribe()).inspect(move |s| {
        on_sync
            .wakes
            .mark(&ObjectRef::from_obj(s.as_ref()), Woken::SYNC);
    });
    let drift_triggers = drift_triggers.inspect(move |r| on_object.wakes.mark(r, Woken::OBJECT));
    let policy_deletions = policies.deletions().inspect(move |()| {
        on_deletion(every_sync(&for_deletions.state()));
    });
    let sync_loop = Controller::for_shared_stream(inputs, store)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .watches_shared_stream(syncs.subscribe(), move |changed| {
            // Every version the cache takes, its own status writes' included.
            on_any
                .memories
                .cache_caught_up(&changed.key(), changed.meta().resource_version.clone());
            // Only Syncs with dependencies can be dependents: the cache is not copied whole on
            // every event (O(Syncs) each, O(Syncs²) a fleet), when few or none have any.
            let with_dependencies = for_deps.state_filter(|s| !s.dependencies().is_empty());
            on_deps(dependents(&with_dependencies, &changed))
        })
        .watches_shared_stream(
            plumb_ops::changed(policies.subscribe(), predicates::generation),
            move |_| on_policy(every_sync(&for_policies.state())),
        )
        .reconcile_all_on(policy_deletions)
        .reconcile_on(drift_triggers)
        // Periodic passes, kept out of kube-runtime's scheduler (plumb_ops::periodic).
        .reconcile_on(ctx.periodic.clone().triggers())
        // A decryption key Secret created or fixed wakes the Syncs waiting for it.
        .watches_stream(key_changes, move |secret| {
            let ns = secret.metadata.namespace.as_deref().unwrap_or_default();
            let name = secret.metadata.name.as_deref().unwrap_or_default();
            let syncs = for_keys.state();
            on_key(decrypt::key_readers(
                &syncs,
                default_keys.as_ref(),
                &keys_namespace,
                ns,
                name,
            ))
        })
        .graceful_shutdown_on(runtime.stopped())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile error");
            }
        });

    let feeds = async {
        tokio::join!(
            syncs.run(scope.api(client.clone()), scope.watcher_config()),
            policies.run(Api::all(client.clone()), watcher::Config::default()),
            namespaces.run(Api::all(client.clone()), namespace_watch(&scope)),
        );
    };
    let work = async {
        // Reconcile only with complete caches: a first pass against a partial Policy list
        // would ignore deny windows and drift settings.
        let caches = futures::future::try_join3(
            ctx.syncs.wait_until_ready(),
            ctx.policies.wait_until_ready(),
            ctx.namespaces.wait_until_ready(),
        );
        let complete = tokio::select! {
            r = caches => r.is_ok(),
            () = runtime.stopped() => false,
        };
        if !complete {
            return;
        }
        ready.set(true);
        // Syncs deleted (or leaving the shard) release their drift watches.
        let forget_gone = async {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tick.tick().await;
                ctx.forget_gone();
            }
        };
        tokio::select! {
            () = sync_loop => {}
            _ = forget_gone => {}
        }
    };
    tokio::select! {
        () = work => {}
        () = feeds => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use plumb_api::condition::{new_condition, status};
    use plumb_api::sync::RenderStatus;
    use plumb_api::{Sync, SyncStatus, condition_type, reason};
    use serde_json::json;

    use super::*;

    fn artifact(c: char) -> plumb_api::reference::Artifact {
        serde_json::from_value(json!({
            "revision": format!("main@sha1:{}", c.to_string().repeat(40)),
            "digest": format!("sha256:{}", c.to_string().repeat(64)),
            "url": "http://x/a.tar.gz", "lastUpdateTime": "2026-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn a_controller_of_one_namespace_watches_that_namespace_alone() {
        let mut scope = plumb_ops::WatchScope {
            namespace: Some("team-a".into()),
            label_selector: String::new(),
            shard: None,
        };
        assert_eq!(
            namespace_watch(&scope).field_selector.as_deref(),
            Some("metadata.name=team-a")
        );
        scope.namespace = None;
        assert_eq!(namespace_watch(&scope).field_selector, None);
    }

    #[tokio::test]
    async fn its_own_status_writes_do_not_wake_a_sync() {
        let mut s: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "app", "namespace": "team", "uid": "u", "generation": 1},
            "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo"}},
        }))
        .unwrap();
        let mut events = Vec::new();
        // Each event is told apart by its resourceVersion, which no predicate reads.
        let mut push = |what: &str, s: &Sync| {
            let mut s = s.clone();
            s.metadata.resource_version = Some(what.to_owned());
            events.push(Arc::new(SyncView::of(s)));
        };
        push("new", &s);
        s.metadata.finalizers = Some(vec![crate::finalize::FINALIZER.to_owned()]);
        push("finalizer", &s);
        let mut st = SyncStatus::default();
        st.conditions.push(new_condition(
            condition_type::READY,
            status::UNKNOWN,
            reason::RENDER_NOT_READY,
            "waiting",
            Some(1),
        ));
        s.status = Some(st.clone());
        push("its own waiting status", &s);
        st.render = Some(RenderStatus {
            artifact: Some(artifact('a')),
            ..Default::default()
        });
        st.conditions.push(new_condition(
            condition_type::RENDERED,
            status::TRUE,
            reason::SUCCEEDED,
            "",
            Some(1),
        ));
        s.status = Some(st.clone());
        push("render", &s);
        st.inventory = Some(Vec::new());
        st.observed_generation = Some(1);
        s.status = Some(st.clone());
        push("its own progressing status", &s);
        st.render.as_mut().unwrap().artifact = Some(artifact('b'));
        s.status = Some(st.clone());
        push("new render", &s);
        let failed = new_condition(
            condition_type::RENDERED,
            status::FALSE,
            "BuildFailed",
            "bad",
            Some(1),
        );
        st.conditions
            .retain(|c| c.type_ != condition_type::RENDERED);
        st.conditions.push(failed);
        s.status = Some(st);
        push("render failed", &s);
        s.metadata.generation = Some(2);
        push("spec", &s);
        s.metadata.annotations = Some(
            [(
                plumb_api::REQUESTED_AT_ANNOTATION.to_owned(),
                "1".to_owned(),
            )]
            .into(),
        );
        push("reconcile request", &s);
        s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        push("deletion", &s);
        let passed: Vec<String> = input_changes(futures::stream::iter(events))
            .map(|s| s.meta().resource_version.clone().unwrap_or_default())
            .collect()
            .await;
        assert_eq!(
            passed,
            [
                "new",
                "finalizer",
                "render",
                "new render",
                "render failed",
                "spec",
                "reconcile request",
                "deletion"
            ]
        );
    }
}
