//! Test harness: the real API server (via plumb-e2e-support), the plumb CRDs, a sync controller
//! per test scoped to that test's Syncs, and an artifact server standing in for the render
//! controller.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Display;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use plumb_api::Sync as PlumbSync;
use plumb_e2e_support::{ControllerTask, wait_for_while};
use serde_json::{Value, json};
use sha2::Digest as _;

pub use plumb_e2e_support::TestNamespace;

/// How long a wait for the controller may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// How long a drift watch may take to heal an object: far below the 1h interval the harness gives
/// every Sync, so a heal within it was the watch's doing, not the periodic reconcile's; and far
/// above the second it takes, so a loaded machine does not fail the test.
pub const HEAL_WITHIN: Duration = Duration::from_secs(60);

/// Annotation the harness changes to make the controller reconcile a Sync (any change of a
/// watched Sync is an event; this one changes nothing the controller reads).
const POKE_ANNOTATION: &str = "test.plumb.dev/poke";

/// The label that scopes a test's Syncs to that test's controller (the shard label, so that other
/// controllers running on the same cluster, e.g. a demo, leave them alone).
pub const RUN_LABEL: &str = plumb_ops::SHARD_LABEL;

/// A running controller and artifact server for one test.
pub struct Harness {
    pub client: Client,
    pub config: kube::Config,
    pub run_id: String,
    pub metrics: plumb_ops::Metrics,
    files: plumb_e2e_support::FileServer,
    settings: plumb_sync::Config,
    stop: Option<plumb_ops::Runtime>,
    task: Option<ControllerTask>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.shutdown();
        }
    }
}

async fn kube_config() -> kube::Config {
    let path = plumb_e2e_support::kubeconfig_path();
    let kc = Kubeconfig::read_from(&path).expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kube config")
}

impl Harness {
    /// Starts a controller for the Syncs labelled with a fresh run id, and an artifact server.
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// Like [`Harness::start`], with controller settings changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut plumb_sync::Config)) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = plumb_e2e_support::client().await.expect("test cluster");
        plumb_e2e_support::install_crds(&client)
            .await
            .expect("install CRDs");
        let config = kube_config().await;
        let run_id = format!("{:x}", rand_u64());
        let mut settings = plumb_sync::Config {
            scope: plumb_ops::WatchScope::shard(&run_id),
            ..Default::default()
        };
        tweak(&mut settings);
        let metrics = plumb_ops::Metrics::new();
        let (stop, task) = spawn_controller(&config, settings.clone(), metrics.clone());
        let files = plumb_e2e_support::FileServer::start()
            .await
            .expect("artifact server");
        Harness {
            client,
            config,
            run_id,
            metrics,
            files,
            settings,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops this test's controller and waits until it has stopped.
    pub async fn stop_controller(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.shutdown();
        }
        if let Some(task) = self.task.take() {
            // Asked to stop through its runtime: it ends without an error, or the test fails.
            task.stop()
                .await
                .expect("the sync controller stops cleanly");
        }
    }

    /// Starts a new controller for this test's Syncs, with empty caches (a restart or a leader
    /// change after [`Harness::stop_controller`]).
    pub fn start_controller(&mut self) {
        let (stop, task) =
            spawn_controller(&self.config, self.settings.clone(), self.metrics.clone());
        self.stop = Some(stop);
        self.task = Some(task);
    }

    /// Waits until `condition` returns `Ok(Some(value))` (at most [`TIMEOUT`]) and returns the
    /// value; fails the test at once if the controller stopped, and with `what` on a time-out.
    pub async fn wait<T, E, F, Fut>(&self, what: &str, condition: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Display,
    {
        self.wait_within(what, TIMEOUT, condition).await
    }

    /// Like [`Harness::wait`] with a time limit of `timeout`.
    pub async fn wait_within<T, E, F, Fut>(&self, what: &str, timeout: Duration, condition: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Display,
    {
        let running: Vec<&ControllerTask> = self.task.iter().collect();
        wait_for_while(what, timeout, &running, condition)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until a reconcile of Sync `ns/name` that started after this call has returned,
    /// status write included: the point after which "nothing happened" can be asserted.
    ///
    /// The reconcile counter alone cannot say which reconcile it counted, since one may be under
    /// way already. So the Sync is changed three times, each after the counter moved: the
    /// controller never runs two reconciles of one Sync at once, so the second counted one
    /// started after this call, and the third after the second had returned. (Other Syncs of this
    /// harness must be idle meanwhile.)
    pub async fn settle(&self, ns: &str, name: &str) {
        let before = self.counter("plumb_reconcile_total");
        for round in 1..=3u64 {
            let poke = json!({"metadata": {"annotations": {POKE_ANNOTATION: format!("{:x}", rand_u64())}}});
            self.syncs(ns)
                .patch(name, &PatchParams::default(), &Patch::Merge(&poke))
                .await
                .expect("poke Sync");
            self.wait(
                &format!("reconcile {round} of Sync {ns}/{name} after the poke"),
                || {
                    let counted = self.counter("plumb_reconcile_total");
                    async move { Ok::<_, String>((counted >= before + round).then_some(())) }
                },
            )
            .await;
        }
    }

    /// The sum of a counter of this test's controller, e.g. `plumb_sync_applied_objects_total`.
    pub fn counter(&self, name: &str) -> u64 {
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Stores `yaml` as a rendered artifact and returns the `status.render.artifact` for it; its
    /// revision is made from the content, as if each render came from a commit of its own.
    pub fn publish(&self, name: &str, yaml: &str) -> Value {
        self.publish_at(name, yaml, None)
    }

    /// Like [`Harness::publish`], rendered from commit `commit` (40 hex digits) when given: the
    /// Syncs of a test render from one GitRepository, so Syncs rendered at one commit share
    /// their revision.
    pub fn publish_at(&self, name: &str, yaml: &str, commit: Option<&str>) -> Value {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(yaml.as_bytes()).unwrap();
        let bytes = enc.finish().unwrap();
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        let path = format!("/sync/{name}/{hex}.yaml.gz");
        self.files.put(&path, bytes.clone());
        json!({
            "revision": format!("main@sha1:{}", commit.unwrap_or(&hex[..40])),
            "digest": format!("sha256:{hex}"),
            "url": self.files.url(&path),
            "size": bytes.len(),
            "lastUpdateTime": "2026-01-01T00:00:00Z",
        })
    }

    /// Creates a Sync labelled for this test's controller.
    pub async fn create_sync(&self, ns: &str, name: &str, spec: Value) -> PlumbSync {
        let mut full =
            json!({"sourceRef": {"kind": "GitRepository", "name": "repo"}, "interval": "1h"});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        let sync: PlumbSync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": name, "namespace": ns, "labels": {RUN_LABEL: self.run_id}},
            "spec": full,
        }))
        .unwrap();
        self.syncs(ns)
            .create(&PostParams::default(), &sync)
            .await
            .expect("create Sync")
    }

    pub fn syncs(&self, ns: &str) -> Api<PlumbSync> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Writes `status.render` as the render controller does (its own field manager).
    pub async fn set_render(&self, ns: &str, name: &str, artifact: &Value) {
        self.set_rendered(
            ns,
            name,
            Some(artifact),
            true,
            "ReconciliationSucceeded",
            "rendered",
        )
        .await;
    }

    /// Writes the render controller's `Rendered` condition (and `status.render` with the
    /// artifact, when given) as it does, under its own field manager.
    pub async fn set_rendered(
        &self,
        ns: &str,
        name: &str,
        artifact: Option<&Value>,
        ok: bool,
        reason: &str,
        message: &str,
    ) {
        let render = artifact.map_or_else(
            || json!({}),
            |a| json!({"artifact": a, "sourceRevision": a["revision"]}),
        );
        let body = json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "status": {
                "render": render,
                "conditions": [{"type": "Rendered", "status": if ok { "True" } else { "False" },
                    "reason": reason, "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            }
        });
        self.syncs(ns)
            .patch_status(
                name,
                &PatchParams::apply("plumb-render").force(),
                &Patch::Apply(&body),
            )
            .await
            .expect("set render status");
    }

    /// Publishes `yaml` and points Sync `ns/name`'s render at it.
    pub async fn render(&self, ns: &str, name: &str, yaml: &str) -> Value {
        let artifact = self.publish(&format!("{ns}/{name}"), yaml);
        self.set_render(ns, name, &artifact).await;
        artifact
    }

    /// Like [`Harness::render`], rendered from commit `commit` ([`Harness::publish_at`]).
    pub async fn render_at(&self, ns: &str, name: &str, yaml: &str, commit: &str) -> Value {
        let artifact = self.publish_at(&format!("{ns}/{name}"), yaml, Some(commit));
        self.set_render(ns, name, &artifact).await;
        artifact
    }

    /// Creates Sync `ns/name` with `spec`, renders `yaml` for it and waits until it is applied;
    /// returns the artifact.
    pub async fn create_applied(&self, ns: &str, name: &str, spec: Value, yaml: &str) -> Value {
        self.create_sync(ns, name, spec).await;
        let artifact = self.render(ns, name, yaml).await;
        self.wait_applied(ns, name, &artifact).await;
        artifact
    }

    /// Asks for a reconcile of Sync `ns/name` now, as `plumb reconcile` does: sets
    /// `plumb.dev/requested-at` to `at` (see [`handled`]).
    pub async fn request(&self, ns: &str, name: &str, at: &str) {
        let patch = json!({"metadata": {"annotations": {plumb_api::REQUESTED_AT_ANNOTATION: at}}});
        self.syncs(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("request a reconcile");
    }

    /// [`Harness::request`]s a reconcile and waits until it was handled; returns the Sync.
    pub async fn request_reconcile(&self, ns: &str, name: &str, at: &str) -> PlumbSync {
        self.request(ns, name, at).await;
        self.wait_sync(
            ns,
            name,
            &format!("reconcile requested at {at} handled"),
            |s| handled(s, at),
        )
        .await
    }

    /// Waits until Sync `ns/name` satisfies `pred`, returning it; panics with the last status.
    pub async fn wait_sync(
        &self,
        ns: &str,
        name: &str,
        what: &str,
        pred: impl Fn(&PlumbSync) -> bool,
    ) -> PlumbSync {
        let api = self.syncs(ns);
        let last = Arc::new(Mutex::new(None));
        let found = wait_for_while(
            &format!("Sync {ns}/{name}: {what}"),
            TIMEOUT,
            &self.task.iter().collect::<Vec<_>>(),
            || {
                let api = api.clone();
                let last = last.clone();
                let pred = &pred;
                async move {
                    let s = api.get(name).await?;
                    let ok = pred(&s);
                    *last.lock().unwrap() = Some(s.clone());
                    Ok::<_, kube::Error>(ok.then_some(s))
                }
            },
        )
        .await;
        match found {
            Ok(s) => s,
            Err(e) => panic!(
                "{e}; last status: {}",
                serde_json::to_string_pretty(&last.lock().unwrap().as_ref().map(|s| &s.status))
                    .unwrap()
            ),
        }
    }

    /// Waits until Sync `ns/name`'s Ready condition has `reason`; returns that condition.
    pub async fn wait_ready_reason(&self, ns: &str, name: &str, reason: &str) -> Condition {
        let s = self
            .wait_sync(ns, name, &format!("Ready with reason {reason}"), |s| {
                condition(s, "Ready").is_some_and(|c| c.reason == reason)
            })
            .await;
        condition(&s, "Ready").unwrap()
    }

    /// Waits until Sync `ns/name` is Stalled; returns its Ready condition, which says why.
    pub async fn wait_stalled(&self, ns: &str, name: &str) -> Condition {
        let s = self
            .wait_sync(ns, name, "Stalled", |s| {
                condition(s, "Stalled").is_some_and(|c| c.status == "True")
            })
            .await;
        condition(&s, "Ready").unwrap()
    }

    /// Waits (at most `timeout`) until Sync `ns/name` is gone: its finalizer released it.
    pub async fn wait_sync_gone(&self, ns: &str, name: &str, what: &str, timeout: Duration) {
        let api = self.syncs(ns);
        self.wait_within(&format!("Sync {ns}/{name}: {what}"), timeout, || {
            let api = api.clone();
            async move { Ok::<_, kube::Error>(api.get_opt(name).await?.is_none().then_some(())) }
        })
        .await;
    }

    /// Waits until Sync `ns/name` is Ready at `artifact`'s revision.
    pub async fn wait_applied(&self, ns: &str, name: &str, artifact: &Value) -> PlumbSync {
        let rev = artifact["revision"].as_str().unwrap().to_owned();
        self.wait_sync(ns, name, &format!("Ready at {rev}"), |s| {
            is_ready(s)
                && s.status
                    .as_ref()
                    .and_then(|st| st.last_applied_revision.as_ref())
                    .map(ToString::to_string)
                    == Some(rev.clone())
        })
        .await
    }
}

fn spawn_controller(
    config: &kube::Config,
    settings: plumb_sync::Config,
    metrics: plumb_ops::Metrics,
) -> (plumb_ops::Runtime, ControllerTask) {
    let ctl_client = Client::try_from(config.clone()).expect("client");
    let runtime = plumb_ops::Runtime::with_client(ctl_client, config.clone(), Default::default())
        .expect("runtime")
        .with_metrics(metrics);
    let rt = runtime.clone();
    // Its error or panic fails the test's next wait at once instead of being lost.
    let task = ControllerTask::spawn_stoppable("sync controller", move |_| async move {
        plumb_sync::run(&rt, settings).await
    });
    (runtime, task)
}

/// Whether the reconcile requested at `at` ([`Harness::request`]) was handled.
pub fn handled(s: &PlumbSync, at: &str) -> bool {
    s.status
        .as_ref()
        .and_then(|st| st.last_handled_reconcile_at.as_deref())
        == Some(at)
}

/// Applies a Policy with a deny window open all the time for the Syncs of `ns` (labelled as the
/// test's, deleted with `ns`); returns its name.
pub async fn deny_window(ns: &TestNamespace) -> String {
    let always = json!({"action": "deny", "schedule": "* * * * *", "duration": "1h"});
    ns.apply_policy("freeze", json!({"windows": [always]}))
        .await
        .expect("apply the deny-window Policy")
        .name_any()
}

/// Whether the Sync's Ready condition is True for its generation.
pub fn is_ready(s: &PlumbSync) -> bool {
    condition(s, "Ready")
        .is_some_and(|c| c.status == "True" && c.observed_generation == s.metadata.generation)
}

/// A condition of a Sync.
pub fn condition(s: &PlumbSync, type_: &str) -> Option<Condition> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// The inventory ids of a Sync.
pub fn inventory(s: &PlumbSync) -> Vec<String> {
    s.status
        .as_ref()
        .and_then(|st| st.inventory.as_ref())
        .map(|inv| inv.iter().map(|e| e.id.clone()).collect())
        .unwrap_or_default()
}

/// A rendered ConfigMap `name` with `data.key: <data>`.
pub fn cm(name: &str, data: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{data}\"\n"
    )
}

/// A rendered ConfigMap `name` with `data.key: <data>` and one annotation.
pub fn cm_annotated(name: &str, data: &str, annotation: &str, value: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n    {annotation}: {value}\ndata:\n  key: \"{data}\"\n"
    )
}

/// A rendered Deployment `name` (label `app: <name>`) of `replicas` nginx Pods; `pod_extra` is
/// added to the Pod spec as YAML lines indented by six spaces (e.g. a `nodeSelector`).
pub fn deployment(name: &str, replicas: u32, pod_extra: &str) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n{pod_extra}      containers: [{{name: web, image: \"nginx:1\"}}]\n"
    )
}

/// Whether object `name` is gone from `api`, or being deleted (the API server accepted the
/// deletion; its garbage collector finishes it).
pub async fn deleted<K>(api: &Api<K>, name: &str) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .get_opt(name)
        .await?
        .is_none_or(|o| o.meta().deletion_timestamp.is_some()))
}

/// Whether ConfigMap `name` exists in `ns`.
pub async fn cm_exists(ns: &TestNamespace, name: &str) -> bool {
    ns.api::<ConfigMap>().get_opt(name).await.unwrap().is_some()
}

/// `data.key` of ConfigMap `name`, if it exists.
pub async fn cm_data(api: &Api<ConfigMap>, name: &str) -> Option<String> {
    api.get_opt(name).await.ok()??.data?.get("key").cloned()
}

/// Sets `data.key` of ConfigMap `name` as another tool would (a merge patch under the field
/// manager `kubectl-edit`).
pub async fn edit_cm(cms: &Api<ConfigMap>, name: &str, value: &str) {
    let patch = json!({"data": {"key": value}});
    cms.patch(
        name,
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}
