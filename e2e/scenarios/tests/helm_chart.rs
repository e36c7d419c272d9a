//! A Helm chart from Git, end to end: the real `helm template` in the render controller, the three
//! controllers as processes, the real cluster. The chart is `e2e/scenarios/charts/shop` (a
//! Deployment, a Service, a ConfigMap, Widget objects of a CRD under `crds/`, pre-install,
//! post-install and pre-upgrade hooks); each scenario adds the CRD with a group unique to its
//! namespace, since a CRD is cluster-scoped and Helm does not template `crds/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt as _};
use plumb_api::{GitRepository, Sync, condition_type};
use plumb_e2e_scenarios::{
    ARTIFACT_TOKEN_SECRET, Controller, Controllers, GitFixture, SCOPE_LABEL,
};
use plumb_e2e_support::{
    PolicyRule, TestNamespace, helm_binary, helm_template, pinned_kubernetes_version, ready_at,
    wait_for, yaml_documents_json,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(120);

/// How long a drift watch may take to heal `kubectl scale`. The Sync's interval is 1h, so a heal
/// within this bound was a watch's doing, not the periodic reconcile's.
const HEAL_WITHIN: Duration = Duration::from_secs(30);

/// A namespaced kind the scenarios read.
trait Namespaced:
    kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
{
}

impl<K> Namespaced for K where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
{
}

/// Where the chart sits in the scenario's repository, and the values file the Sync adds.
const CHART: &str = "charts/shop";
const VALUES_FILE: &str = "charts/shop/values-e2e.yaml";

/// One scenario: its namespace, repository, controllers and the CRD group of its Widgets.
///
/// Fields drop in order: the controllers first (they release the finalizers of the namespace's
/// plumb objects), the namespace last.
struct Scenario {
    controllers: Controllers,
    git: GitFixture,
    ns: TestNamespace,
    group: String,
}

impl Scenario {
    /// The chart and `values` (as `VALUES_FILE`) committed, the controllers running with the
    /// pinned Helm; returns the scenario and the first commit.
    async fn start(prefix: &str, values: &str) -> (Self, String) {
        let ns = TestNamespace::new(prefix).await.unwrap();
        plumb_e2e_support::install_crds(ns.client()).await.unwrap();
        let group = format!("{}.e2e.plumb.dev", ns.name());
        ns.delete_with_namespace::<CustomResourceDefinition>(&format!("widgets.{group}"));
        let git = GitFixture::new().await.unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/shop");
        git.copy_dir(&fixture, CHART).unwrap();
        git.write(
            &format!("{CHART}/crds/widgets.yaml"),
            &widget_crd(&group, &ns.test_labels()),
        )
        .unwrap();
        git.write(VALUES_FILE, values).unwrap();
        let first = git.commit("the shop chart").unwrap();
        let helm = format!("--helm-binary={}", helm_binary().display());
        let controllers = Controllers::start_with_flags(
            ns.name(),
            BTreeMap::from([(Controller::Render, vec![helm])]),
        )
        .unwrap();
        (
            Self {
                controllers,
                git,
                ns,
                group,
            },
            first,
        )
    }

    /// Creates the GitRepository and the Sync `shop` of the chart, with `helm` merged over the
    /// defaults (the Widgets' group, `VALUES_FILE`).
    async fn create_sync(&self, helm: Value) {
        let repos: Api<GitRepository> = self.ns.api();
        let repo: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": { "name": "shop" },
            "spec": { "url": self.git.url(), "ref": { "branch": "main" }, "interval": "1h", "timeout": "20s" }
        }))
        .unwrap();
        repos.create(&PostParams::default(), &repo).await.unwrap();
        let mut spec = json!({
            "valuesFiles": [VALUES_FILE],
            "values": { "widgets": { "group": self.group } }
        });
        if let (Value::Object(spec), Value::Object(extra)) = (&mut spec, helm) {
            spec.extend(extra);
        }
        let sync: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": "shop", "labels": { SCOPE_LABEL: self.ns.name() } },
            "spec": {
                "sourceRef": { "kind": "GitRepository", "name": "shop" },
                "path": CHART, "interval": "1h", "timeout": "2m", "helm": spec
            }
        }))
        .unwrap();
        self.ns
            .api::<Sync>()
            .create(&PostParams::default(), &sync)
            .await
            .unwrap();
    }

    /// Commits `values` as `VALUES_FILE` and asks the source for it at once.
    async fn commit_values(&self, values: &str, message: &str) -> String {
        self.git.write(VALUES_FILE, values).unwrap();
        let commit = self.git.commit(message).unwrap();
        let patch = json!({ "metadata": { "annotations": { plumb_api::REQUESTED_AT_ANNOTATION: message } } });
        self.ns
            .api::<GitRepository>()
            .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        commit
    }

    /// Waits until the Sync is Ready with `commit` applied.
    async fn wait_applied(&self, commit: &str) -> Sync {
        let syncs: Api<Sync> = self.ns.api();
        self.wait(&format!("Sync shop Ready at {commit}"), WAIT, || {
            let syncs = syncs.clone();
            async move {
                let sync = syncs.get("shop").await?;
                let status = sync.status.clone().unwrap_or_default();
                Ok::<_, kube::Error>(ready_at(&status, commit).then_some(sync))
            }
        })
        .await
    }

    /// Waits until the Sync's condition `type_` has `reason`; returns it.
    async fn wait_condition(&self, type_: &str, reason: &str) -> Condition {
        let syncs: Api<Sync> = self.ns.api();
        self.wait(
            &format!("Sync condition {type_} with reason {reason}"),
            WAIT,
            || {
                let syncs = syncs.clone();
                async move {
                    let sync = syncs.get("shop").await?;
                    let conditions = sync.status.unwrap_or_default().conditions;
                    Ok::<_, kube::Error>(
                        conditions
                            .into_iter()
                            .find(|c| c.type_ == type_ && c.reason == reason),
                    )
                }
            },
        )
        .await
    }

    /// [`wait_for`], failing with the Sync's status and the controllers' logs.
    async fn wait<T, F, Fut>(&self, what: &str, timeout: Duration, condition: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, kube::Error>>,
    {
        match wait_for(what, timeout, condition).await {
            Ok(v) => v,
            Err(e) => {
                let sync = self.ns.api::<Sync>().get("shop").await.ok();
                panic!(
                    "{e}\nSync status: {:#?}\n{}",
                    sync.and_then(|s| s.status),
                    self.controllers.logs_tail(40)
                )
            }
        }
    }

    /// Waits until the `K` named `name` exists (and is not being deleted); returns it.
    async fn wait_exists<K: Namespaced>(&self, name: &str) -> K {
        let api: Api<K> = self.ns.api();
        self.wait(&format!("{name} to exist"), WAIT, || {
            let api = api.clone();
            async move {
                let o = api.get_opt(name).await?;
                Ok(o.filter(|o| o.meta().deletion_timestamp.is_none()))
            }
        })
        .await
    }

    /// Waits until the `K` named `name` is gone.
    async fn wait_gone<K: Namespaced>(&self, name: &str) {
        let api: Api<K> = self.ns.api();
        self.wait(&format!("{name} to be gone"), WAIT, || {
            let api = api.clone();
            async move { Ok(api.get_opt(name).await?.is_none().then_some(())) }
        })
        .await;
    }

    async fn exists<K: Namespaced>(&self, name: &str) -> bool {
        self.ns.api::<K>().get_opt(name).await.unwrap().is_some()
    }

    /// Lets a suspended hook Job run (kwok completes its Pod).
    async fn release(&self, job: &str) {
        let patch = json!({ "spec": { "suspend": false } });
        self.ns
            .api::<Job>()
            .patch(job, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    fn widgets(&self) -> Api<DynamicObject> {
        let resource = ApiResource {
            group: self.group.clone(),
            version: "v1".into(),
            api_version: format!("{}/v1", self.group),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        Api::namespaced_with(self.ns.client().clone(), self.ns.name(), &resource)
    }
}

/// The Widget CRD of `group`, labelled as the test's.
fn widget_crd(group: &str, labels: &BTreeMap<String, String>) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
  labels:
{labels}spec:
  group: {group}
  scope: Namespaced
  names: {{ plural: widgets, singular: widget, kind: Widget }}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                title: {{ type: string }}
"
    )
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or_default()
}

fn uid<K: kube::Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap()
}

fn job_condition(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

fn inventory_ids(sync: &Sync) -> Vec<String> {
    sync.status
        .as_ref()
        .and_then(|s| s.inventory.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chart_with_a_crd_and_hooks_installs_in_hook_order_and_upgrades() {
    let (s, first) = Scenario::start("e2e-chart-hooks", "hooks:\n  suspend: true\n").await;
    s.create_sync(json!({})).await;

    // pre-install, weight -10: the schema ConfigMap; -5: the backup Job, which holds up the rest
    // until it has run.
    let backup: Job = s.wait_exists("shop-backup").await;
    assert_eq!(backup.spec.unwrap().suspend, Some(true));
    assert!(s.exists::<ConfigMap>("shop-schema").await);
    for (what, present) in [
        (
            "the migrate Job (weight 0)",
            s.exists::<Job>("shop-migrate").await,
        ),
        ("the Deployment", s.exists::<Deployment>("shop").await),
        ("the post-install Job", s.exists::<Job>("shop-smoke").await),
    ] {
        assert!(!present, "{what} exists before the backup hook ran");
    }

    // backup done → deleted (hook-succeeded) → weight 0: migrate, still before the rest.
    s.release("shop-backup").await;
    s.wait_exists::<Job>("shop-migrate").await;
    s.wait_gone::<Job>("shop-backup").await;
    assert!(!s.exists::<Deployment>("shop").await);
    assert!(!s.exists::<Job>("shop-smoke").await);

    // migrate done → the rest is applied; once it is healthy, the post-install hook.
    s.release("shop-migrate").await;
    s.wait_exists::<Deployment>("shop").await;
    let smoke: Job = s.wait_exists("shop-smoke").await;
    assert_eq!(smoke.spec.unwrap().suspend, Some(true));
    let web = s.ns.api::<Deployment>().get("shop").await.unwrap();
    let available = web
        .status
        .and_then(|st| st.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Available" && c.status == "True");
    assert!(
        available,
        "the post-install hook ran before the release was healthy"
    );
    s.release("shop-smoke").await;

    let sync = s.wait_applied(&first).await;
    s.wait_gone::<Job>("shop-smoke").await;
    let migrate: Job = s.ns.api().get("shop-migrate").await.unwrap();
    assert!(job_condition(&migrate, "Complete"), "{migrate:?}");
    let schema: ConfigMap = s.ns.api().get("shop-schema").await.unwrap();
    // Test hooks never run; hooks are not in the inventory, the CRD and its Widgets are.
    assert!(
        !s.exists::<k8s_openapi::api::core::v1::Pod>("shop-test")
            .await
    );
    let ids = inventory_ids(&sync);
    assert!(
        !ids.iter()
            .any(|id| id.ends_with("_Job") || id.contains("shop-schema")),
        "{ids:?}"
    );
    for id in [
        format!(
            "_widgets.{}_apiextensions.k8s.io_CustomResourceDefinition",
            s.group
        ),
        format!("{}_shop-catalog_{}_Widget", s.ns.name(), s.group),
        format!("{}_shop_apps_Deployment", s.ns.name()),
    ] {
        assert!(ids.contains(&id), "{id} not in {ids:?}");
    }
    let crds: Api<CustomResourceDefinition> = Api::all(s.ns.client().clone());
    crds.get(&format!("widgets.{}", s.group)).await.unwrap();
    let catalog = s.widgets().get("shop-catalog").await.unwrap();
    assert_eq!(catalog.data["spec"]["title"], "Catalog");
    s.ns.api::<Service>().get("shop").await.unwrap();

    // An upgrade (replicas from Git): the hooks run again; before-hook-creation (the default)
    // replaces the kept ones, hook-succeeded ones are gone again once done.
    let second = s
        .commit_values(
            "hooks:\n  suspend: false\nreplicaCount: 3\n",
            "three replicas",
        )
        .await;
    s.wait_applied(&second).await;
    assert_eq!(
        replicas(&s.ns.api::<Deployment>().get("shop").await.unwrap()),
        3
    );
    let migrate_again: Job = s.ns.api().get("shop-migrate").await.unwrap();
    assert_ne!(
        uid(&migrate_again),
        uid(&migrate),
        "migrate was not created anew"
    );
    assert!(job_condition(&migrate_again, "Complete"));
    let schema_again: ConfigMap = s.ns.api().get("shop-schema").await.unwrap();
    assert_ne!(
        uid(&schema_again),
        uid(&schema),
        "schema was not created anew"
    );
    s.wait_gone::<Job>("shop-backup").await;
    s.wait_gone::<Job>("shop-smoke").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_hook_fails_the_sync_naming_it_and_is_deleted_by_its_policy() {
    let (s, first) = Scenario::start("e2e-chart-hookfail", "replicaCount: 2\n").await;
    s.create_sync(json!({})).await;
    s.wait_applied(&first).await;

    // Every Job deleted from now on, as last seen.
    let deleted: Arc<Mutex<Vec<Job>>> = Arc::default();
    let seen = deleted.clone();
    let jobs = watcher(s.ns.api::<Job>(), watcher::Config::default());
    let watch = tokio::spawn(async move {
        futures::pin_mut!(jobs);
        while let Some(event) = jobs.next().await {
            if let Ok(watcher::Event::Delete(job)) = event {
                seen.lock().unwrap().push(job);
            }
        }
    });

    // A pre-upgrade hook whose Pod no Node takes: it fails at its deadline.
    s.commit_values(
        "replicaCount: 4\nhooks:\n  failingCheck: true\n",
        "a check that cannot pass",
    )
    .await;
    let failed = s
        .wait_condition(condition_type::READY, plumb_api::reason::HOOK_FAILED)
        .await;
    assert_eq!(failed.status, "False", "{failed:?}");
    assert!(failed.message.contains("shop-check"), "{}", failed.message);
    // hook-failed: deleted once it failed.
    s.wait("the failed check Job to be deleted", WAIT, || {
        let deleted = deleted.clone();
        async move {
            let deleted = deleted.lock().unwrap();
            Ok::<_, kube::Error>(
                deleted
                    .iter()
                    .any(|j| j.name_any() == "shop-check" && job_condition(j, "Failed"))
                    .then_some(()),
            )
        }
    })
    .await;
    watch.abort();
    // Nothing of the upgrade was applied.
    assert_eq!(
        replicas(&s.ns.api::<Deployment>().get("shop").await.unwrap()),
        2
    );

    let fixed = s.commit_values("replicaCount: 4\n", "drop the check").await;
    s.wait_applied(&fixed).await;
    assert_eq!(
        replicas(&s.ns.api::<Deployment>().get("shop").await.unwrap()),
        4
    );
}

/// The rendered artifact's objects, as JSON, in order.
async fn rendered_objects(s: &Scenario, sync: &Sync) -> Vec<String> {
    let secret: Secret = s.ns.api().get(ARTIFACT_TOKEN_SECRET).await.unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    let artifact = sync
        .status
        .clone()
        .unwrap()
        .render
        .unwrap()
        .artifact
        .unwrap();
    let response = reqwest::Client::new()
        .get(&artifact.url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::OK,
        "{}",
        artifact.url
    );
    let bytes = response.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
        .unwrap();
    yaml_documents_json(&text)
}

/// The node label (and taint) a scenario's web pods need; no node has it until the scenario
/// adds one of its own.
const POOL: &str = "e2e.plumb.dev/pool";

/// A kwok node only the scenario's pods may use (`POOL=<namespace>`, tainted so nothing else
/// lands on it), deleted with the namespace.
async fn add_pool_node(s: &Scenario) {
    use k8s_openapi::api::core::v1::Node;
    let name = format!("{}-pool", s.ns.name());
    s.ns.delete_with_namespace::<Node>(&name);
    let mut labels = s.ns.test_labels();
    labels.insert(POOL.to_owned(), s.ns.name().to_owned());
    labels.insert("kubernetes.io/hostname".to_owned(), name.clone());
    labels.insert("type".to_owned(), "kwok".to_owned());
    let node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": { "kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0" }
        },
        "spec": { "taints": [{ "key": POOL, "value": s.ns.name(), "effect": "NoSchedule" }] }
    }))
    .unwrap();
    let nodes: Api<Node> = Api::all(s.ns.client().clone());
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let capacity = json!({ "cpu": "16", "memory": "64Gi", "pods": "110" });
    let status = json!({ "status": { "allocatable": capacity, "capacity": capacity } });
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn post_install_hooks_still_run_after_the_sync_controller_is_killed_before_them() {
    let (mut s, first) = Scenario::start("e2e-chart-restart", "hooks:\n  suspend: true\n").await;
    // The web pods need a node that does not exist yet: the release stays unhealthy after the
    // main apply, so the post-install hook waits.
    s.create_sync(json!({ "values": {
        "widgets": { "group": s.group },
        "nodeSelector": { POOL: s.ns.name() },
        "tolerations": [{ "key": POOL, "operator": "Equal", "value": s.ns.name(), "effect": "NoSchedule" }]
    }}))
    .await;
    s.wait_exists::<Job>("shop-backup").await;
    s.release("shop-backup").await;
    let migrate: Job = s.wait_exists("shop-migrate").await;
    s.release("shop-migrate").await;

    // The main apply landed, with the post hooks recorded as due for its render.
    let syncs: Api<Sync> = s.ns.api();
    let pending = s
        .wait(
            "the apply recorded with its post hooks pending",
            WAIT,
            || {
                let syncs = syncs.clone();
                async move {
                    let status = syncs.get("shop").await?.status.unwrap_or_default();
                    Ok(status
                        .pending_post_hooks
                        .filter(|d| status.last_applied_digest.as_ref() == Some(d)))
                }
            },
        )
        .await;
    assert!(s.exists::<Deployment>("shop").await);
    assert!(
        !s.exists::<Job>("shop-smoke").await,
        "the post-install hook ran before the release was healthy"
    );

    // A crash, then a new sync controller; then the release becomes healthy.
    s.controllers.kill(Controller::Sync);
    s.controllers.restart(Controller::Sync).unwrap();
    add_pool_node(&s).await;
    let smoke: Job = s.wait_exists("shop-smoke").await;
    assert_eq!(smoke.spec.unwrap().suspend, Some(true));
    s.release("shop-smoke").await;
    let sync = s.wait_applied(&first).await;
    s.wait_gone::<Job>("shop-smoke").await;
    let status = sync.status.unwrap();
    assert_eq!(status.last_applied_digest.as_ref(), Some(&pending));
    // The pre-install hooks did not run again (migrate would have been created anew).
    let migrate_now: Job = s.ns.api().get("shop-migrate").await.unwrap();
    assert_eq!(
        uid(&migrate_now),
        uid(&migrate),
        "the pre-install hooks ran again"
    );
    s.wait("status.pendingPostHooks cleared", WAIT, || {
        let syncs = syncs.clone();
        async move {
            let status = syncs.get("shop").await?.status.unwrap_or_default();
            Ok(status.pending_post_hooks.is_none().then_some(()))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_values_from_git_and_a_config_map_render_again_drift_is_healed_and_deletion_prunes() {
    let values = "greeting: from git\nreplicaCount: 2\n";
    let (s, first) = Scenario::start("e2e-chart-values", values).await;
    let config_maps: Api<ConfigMap> = s.ns.api();
    let from_cm = "greeting: from a ConfigMap\n";
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "shop-values" }, "data": { "values.yaml": from_cm }
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    s.create_sync(json!({ "valuesFrom": [{ "kind": "ConfigMap", "name": "shop-values" }] }))
        .await;
    let sync = s.wait_applied(&first).await;
    let settings = |cm: ConfigMap| cm.data.unwrap_or_default();
    let data = settings(config_maps.get("shop-settings").await.unwrap());
    assert_eq!(data["greeting"], "from a ConfigMap");
    assert_eq!(data["release"], format!("{}/shop", s.ns.name()));
    // .Capabilities is the live cluster's, not Helm's built-in default.
    assert_eq!(data["kubeVersion"], pinned_kubernetes_version());

    // What was rendered is what `helm template` prints for the same release.
    let scratch = tempfile::tempdir().unwrap();
    let chart = s.git.work().join(CHART);
    let write = |name: &str, text: &str| {
        let p = scratch.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let args: Vec<String> = [
        "shop".to_owned(),
        chart.display().to_string(),
        "--namespace".into(),
        s.ns.name().to_owned(),
        "-f".into(),
        s.git.work().join(VALUES_FILE).display().to_string(),
        "-f".into(),
        write("from.yaml", from_cm),
        "-f".into(),
        write("inline.yaml", &format!("widgets:\n  group: {}\n", s.group)),
        "--kube-version".into(),
        pinned_kubernetes_version().to_owned(),
        "--include-crds".into(),
        "--skip-tests".into(),
    ]
    .into();
    let want = helm_template(&args);
    assert_eq!(rendered_objects(&s, &sync).await, want);
    assert!(
        want.iter()
            .any(|o| o.contains("\"kind\":\"CustomResourceDefinition\""))
    );
    assert!(
        want.iter()
            .any(|o| o.contains("\"helm.sh/hook\":\"post-install,post-upgrade\""))
    );

    // A values change in Git: rendered again and applied.
    let second = s
        .commit_values("greeting: from git\nreplicaCount: 3\n", "three replicas")
        .await;
    s.wait_applied(&second).await;
    let deployments: Api<Deployment> = s.ns.api();
    assert_eq!(replicas(&deployments.get("shop").await.unwrap()), 3);

    // A change of the valuesFrom ConfigMap, with no commit: rendered again and applied.
    let patch = json!({ "data": { "values.yaml": "greeting: changed in the ConfigMap\n" } });
    config_maps
        .patch(
            "shop-values",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    s.wait("the new greeting to be applied", WAIT, || {
        let config_maps = config_maps.clone();
        async move {
            let data = config_maps
                .get("shop-settings")
                .await?
                .data
                .unwrap_or_default();
            Ok::<_, kube::Error>((data["greeting"] == "changed in the ConfigMap").then_some(()))
        }
    })
    .await;

    // `kubectl scale` (a patch of the scale subresource): healed by the drift watch.
    let scale = json!({ "spec": { "replicas": 7 } });
    deployments
        .patch_scale("shop", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();
    s.wait("kubectl scale to be undone", HEAL_WITHIN, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get("shop").await?;
            Ok::<_, kube::Error>((replicas(&d) == 3).then_some(()))
        }
    })
    .await;

    // Deleting the Sync prunes what it applied: the CRD (and so its Widgets) included.
    s.ns.api::<Sync>()
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    s.wait("the Sync to be gone", WAIT, || {
        let syncs = s.ns.api::<Sync>();
        async move { Ok(syncs.get_opt("shop").await?.is_none().then_some(())) }
    })
    .await;
    s.wait_gone::<Deployment>("shop").await;
    s.wait_gone::<Service>("shop").await;
    s.wait_gone::<ConfigMap>("shop-settings").await;
    let crds: Api<CustomResourceDefinition> = Api::all(s.ns.client().clone());
    let crd = format!("widgets.{}", s.group);
    s.wait("the CRD to be pruned", WAIT, || {
        let crds = crds.clone();
        let crd = crd.clone();
        async move { Ok(crds.get_opt(&crd).await?.is_none().then_some(())) }
    })
    .await;
    // Hooks are not in the inventory: the kept ones stay, as with Argo CD.
    assert!(s.exists::<Job>("shop-migrate").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_policy_blocks_a_chart_object_naming_the_rule() {
    let (s, first) = Scenario::start("e2e-chart-policy", "replicaCount: 2\n").await;
    s.ns.apply_policy(
        "capped",
        PolicyRule::deny(
            "replicas-capped",
            "apps/Deployment",
            "object.spec.replicas <= 5",
            "at most five replicas",
        )
        .spec(),
    )
    .await
    .unwrap();
    s.create_sync(json!({})).await;
    s.wait_applied(&first).await;

    s.commit_values("replicaCount: 9\n", "nine replicas").await;
    let blocked = s
        .wait_condition(
            condition_type::RENDERED,
            plumb_api::reason::POLICY_VIOLATION,
        )
        .await;
    assert_eq!(blocked.status, "False");
    assert!(
        blocked.message.contains("replicas-capped"),
        "{}",
        blocked.message
    );
    assert!(blocked.message.contains("shop"), "{}", blocked.message);
    assert_eq!(
        replicas(&s.ns.api::<Deployment>().get("shop").await.unwrap()),
        2
    );

    let fixed = s.commit_values("replicaCount: 5\n", "five replicas").await;
    s.wait_applied(&fixed).await;
    assert_eq!(
        replicas(&s.ns.api::<Deployment>().get("shop").await.unwrap()),
        5
    );
}
