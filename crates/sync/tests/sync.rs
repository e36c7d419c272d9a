//! The sync controller against a real API server: apply, prune, CRDs, drift, policies,
//! dependencies, impersonation and health.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use common::{
    HEAL_WITHIN, Harness, TestNamespace, cm, cm_annotated, cm_data, cm_exists, condition,
    deny_window, deployment, edit_cm, handled, inventory, is_ready,
};

/// Waits at most [`HEAL_WITHIN`] for `condition`; fails at once if the controller stopped.
async fn heal_wait<T, F, Fut>(h: &Harness, what: &str, condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, kube::Error>>,
{
    h.wait_within(what, HEAL_WITHIN, condition).await
}

#[tokio::test]
async fn apply_records_inventory_and_labels_every_object() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-apply").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    let yaml = format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
        cm("config", "one")
    );
    let art = h.render(n, "app", &yaml).await;
    let s = h.wait_applied(n, "app", &art).await;
    assert_eq!(
        inventory(&s),
        [
            format!("{n}_config__ConfigMap"),
            format!("{n}_web__Service")
        ]
    );
    let st = s.status.unwrap();
    assert_eq!(st.last_applied_digest.unwrap().to_string(), art["digest"]);
    assert_eq!(st.observed_generation, s.metadata.generation);
    let live = ns.api::<ConfigMap>().get("config").await.unwrap();
    let labels = live.metadata.labels.unwrap();
    assert_eq!(labels["sync.plumb.dev/name"], "app");
    assert_eq!(labels["sync.plumb.dev/namespace"], n);
    assert!(
        live.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("plumb-sync"))
    );
    // The render controller's part of the status is untouched.
    let s = h.syncs(n).get("app").await.unwrap();
    assert!(condition(&s, "Rendered").is_some());
    assert!(s.status.unwrap().render.unwrap().artifact.is_some());
}

#[tokio::test]
async fn a_noop_reconcile_writes_nothing() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-noop").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    let art = h.render(n, "app", &cm("config", "one")).await;
    let s = h.wait_applied(n, "app", &art).await;
    let rv = s.metadata.resource_version.clone();
    let cm_rv = ns
        .api::<ConfigMap>()
        .get("config")
        .await
        .unwrap()
        .metadata
        .resource_version;
    // Ask for a full reconcile and wait until it was handled, then nothing else may change.
    let s = h.request_reconcile(n, "app", "now-1").await;
    assert_ne!(s.metadata.resource_version, rv);
    // Every later reconcile finds nothing to do, and so must write nothing.
    let (status, written) = (s.status.clone(), status_written_at(&s));
    h.settle(n, "app").await;
    let now = h.syncs(n).get("app").await.unwrap();
    assert_eq!(now.status, status, "Sync status rewritten");
    assert_eq!(status_written_at(&now), written, "Sync status rewritten");
    assert_eq!(
        ns.api::<ConfigMap>()
            .get("config")
            .await
            .unwrap()
            .metadata
            .resource_version,
        cm_rv
    );
}

/// When the sync controller last changed the Sync's status (its managed-fields entry).
fn status_written_at(
    s: &plumb_api::Sync,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    s.metadata
        .managed_fields
        .iter()
        .flatten()
        .find(|m| {
            m.manager.as_deref() == Some("plumb-sync") && m.subresource.as_deref() == Some("status")
        })
        .and_then(|m| m.time.clone())
}

#[tokio::test]
async fn prune_removes_objects_that_left_the_render() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-prune").await.unwrap();
    let n = ns.name();
    h.create_applied(
        n,
        "app",
        json!({}),
        &format!("{}{}", cm("a", "1"), cm("b", "2")),
    )
    .await;
    let cms = ns.api::<ConfigMap>();
    assert!(cms.get_opt("b").await.unwrap().is_some());
    let art = h.render(n, "app", &cm("a", "1")).await;
    let s = h.wait_applied(n, "app", &art).await;
    assert_eq!(inventory(&s), [format!("{n}_a__ConfigMap")]);
    h.wait("b to be pruned", || async {
        Ok::<_, kube::Error>(common::deleted(&cms, "b").await?.then_some(()))
    })
    .await;
    assert!(cms.get_opt("a").await.unwrap().is_some());
}

#[tokio::test]
async fn prune_skips_objects_reowned_by_another_sync_or_opted_out() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-reowned").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    let keep = cm_annotated("keep", "0", "plumb.dev/prune", "disabled");
    let art = h
        .render(
            n,
            "app",
            &format!("{}{}{}", cm("a", "1"), cm("moved", "2"), &keep),
        )
        .await;
    h.wait_applied(n, "app", &art).await;
    let cms = ns.api::<ConfigMap>();
    // Another Sync takes `moved` over.
    let relabel = json!({"metadata": {"labels": {"sync.plumb.dev/name": "other"}}});
    cms.patch("moved", &PatchParams::apply("other-sync").force(), &Patch::Apply(&json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "moved", "labels": relabel["metadata"]["labels"]}
    })))
    .await
    .unwrap();
    let art = h.render(n, "app", &cm("a", "1")).await;
    let s = h.wait_applied(n, "app", &art).await;
    assert_eq!(inventory(&s), [format!("{n}_a__ConfigMap")]);
    assert!(
        cms.get_opt("moved").await.unwrap().is_some(),
        "re-owned object was pruned"
    );
    assert!(
        cms.get_opt("keep").await.unwrap().is_some(),
        "prune: disabled object was pruned"
    );
}

#[tokio::test]
async fn a_failed_fetch_applies_and_prunes_nothing() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-badfetch").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    let good = h
        .render(n, "app", &format!("{}{}", cm("a", "1"), cm("b", "2")))
        .await;
    h.wait_applied(n, "app", &good).await;
    // A render whose digest does not match the file: nothing of it may be applied.
    let mut bad = h.publish(&format!("{n}/app"), &cm("c", "3"));
    bad["digest"] = json!(format!("sha256:{}", "0".repeat(64)));
    bad["revision"] = json!(format!("main@sha1:{}", "1".repeat(40)));
    h.set_render(n, "app", &bad).await;
    let s = h
        .wait_sync(n, "app", "ArtifactFailed", |s| {
            condition(s, "Ready")
                .is_some_and(|c| c.status == "False" && c.reason == "ArtifactFailed")
        })
        .await;
    let msg = condition(&s, "Ready").unwrap().message;
    assert!(msg.contains("digest mismatch"), "{msg}");
    let st = s.status.unwrap();
    assert_eq!(
        st.last_applied_revision.unwrap().to_string(),
        good["revision"]
    );
    assert_eq!(
        st.last_attempted_revision.unwrap().to_string(),
        bad["revision"]
    );
    let cms = ns.api::<ConfigMap>();
    assert!(cms.get_opt("c").await.unwrap().is_none());
    assert!(cms.get_opt("a").await.unwrap().is_some());
    assert!(cms.get_opt("b").await.unwrap().is_some());
}

#[tokio::test]
async fn an_empty_render_prunes_nothing_unless_asked() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-empty").await.unwrap();
    let n = ns.name();
    h.create_applied(n, "app", json!({}), &cm("a", "1")).await;
    h.render(n, "app", "").await;
    let ready = h.wait_stalled(n, "app").await;
    assert!(ready.message.contains("pruneEmpty"));
    assert!(cm_exists(&ns, "a").await);
}

#[tokio::test]
async fn crd_and_its_instances_in_one_render() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-crd").await.unwrap();
    let n = ns.name();
    let group = format!("{n}.plumb.test");
    // Labelled as a test object and deleted with the namespace, whatever the outcome.
    ns.delete_with_namespace::<CustomResourceDefinition>(&format!("widgets.{group}"));
    let labels = serde_json::to_string(&ns.test_labels()).unwrap();
    let yaml = format!(
        r#"---
apiVersion: {group}/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
  labels: {labels}
spec:
  group: {group}
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"#
    );
    h.create_sync(n, "app", json!({})).await;
    let art = h.render(n, "app", &yaml).await;
    let s = h.wait_applied(n, "app", &art).await;
    assert_eq!(
        inventory(&s),
        [
            format!("_widgets.{group}_apiextensions.k8s.io_CustomResourceDefinition"),
            format!("{n}_w1_{group}_Widget")
        ]
    );
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let w = Api::<DynamicObject>::namespaced_with(h.client.clone(), n, &ar)
        .get("w1")
        .await
        .unwrap();
    assert_eq!(w.data["spec"]["size"], 3);
}

#[tokio::test]
async fn drift_edit_and_delete_are_corrected() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-heal").await.unwrap();
    let n = ns.name();
    h.create_applied(n, "app", json!({}), &cm("config", "git"))
        .await;
    let cms = ns.api::<ConfigMap>();
    // A kubectl-edit style update of a field plumb applied.
    edit_cm(&cms, "config", "edited").await;
    // The Sync's interval is 1h: only a watch can heal within the bound.
    heal_wait(&h, "the edit to be reverted", || async {
        Ok::<_, kube::Error>(
            (cm_data(&cms, "config").await.as_deref() == Some("git")).then_some(()),
        )
    })
    .await;
    cms.delete("config", &DeleteParams::default())
        .await
        .unwrap();
    let back = heal_wait(&h, "the deleted object to be recreated", || async {
        Ok::<_, kube::Error>(cm_data(&cms, "config").await)
    })
    .await;
    assert_eq!(back, "git", "deleted object was not recreated as in Git");
    let s = h
        .wait_sync(n, "app", "two corrections", |s| {
            s.status
                .as_ref()
                .and_then(|st| st.drift.as_ref())
                .is_some_and(|d| d.corrections >= 2)
        })
        .await;
    assert!(s.status.unwrap().drift.unwrap().last_corrected_at.is_some());
}

#[tokio::test]
async fn drift_is_reported_not_corrected_without_self_heal() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-report").await.unwrap();
    let n = ns.name();
    h.create_applied(n, "app", json!({"selfHeal": false}), &cm("config", "git"))
        .await;
    let cms = ns.api::<ConfigMap>();
    edit_cm(&cms, "config", "edited").await;
    let id = format!("{n}_config__ConfigMap");
    let s = h
        .wait_sync(n, "app", "drift reported", |s| {
            s.status
                .as_ref()
                .and_then(|st| st.drift.as_ref())
                .is_some_and(|d| d.objects.contains(&id))
        })
        .await;
    let d = s.status.unwrap().drift.unwrap();
    assert_eq!(d.corrections, 0);
    assert!(d.last_detected_at.is_some());
    assert_eq!(cm_data(&cms, "config").await.as_deref(), Some("edited"));
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(h.client.clone(), n);
    h.wait("a DriftDetected event", || async {
        let list = events.list(&Default::default()).await?;
        Ok::<_, kube::Error>(
            list.items
                .iter()
                .any(|e| e.reason.as_deref() == Some("DriftDetected"))
                .then_some(()),
        )
    })
    .await;
}

#[tokio::test]
async fn a_policy_ignored_path_is_left_to_its_other_owner() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-hpa").await.unwrap();
    let n = ns.name();
    let replicas = json!({"resources": [{"group": "apps", "kinds": ["Deployment"]}], "paths": ["/spec/replicas"]});
    ns.apply_policy("hpa", json!({"drift": {"ignore": [replicas]}}))
        .await
        .unwrap();
    h.create_applied(n, "app", json!({}), &deployment("web", 1, ""))
        .await;
    let deps = ns.api::<Deployment>();
    let d = deps.get("web").await.unwrap();
    let plumb_owns_replicas = d.metadata.managed_fields.unwrap().iter().any(|m| {
        m.manager.as_deref() == Some("plumb-sync")
            && m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.pointer("/f:spec/f:replicas").is_some())
    });
    assert!(!plumb_owns_replicas, "plumb applied an ignored path");
    // An autoscaler sets replicas; plumb must leave it, through drift checks and full reconciles.
    let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 3}});
    deps.patch(
        "web",
        &PatchParams::apply("hpa").force(),
        &Patch::Apply(&scale),
    )
    .await
    .unwrap();
    h.request(n, "app", "hpa-1").await;
    h.wait_sync(n, "app", "full reconcile", |s| {
        handled(s, "hpa-1") && is_ready(s)
    })
    .await;
    assert_eq!(
        deps.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
}

/// Two commits of the one GitRepository the Syncs of a test render from.
const COMMIT_1: &str = "1111111111111111111111111111111111111111";
const COMMIT_2: &str = "2222222222222222222222222222222222222222";

/// Sync `name`'s `lastAppliedRevision`, as text.
fn applied_revision(s: &plumb_api::Sync) -> Option<String> {
    s.status
        .as_ref()?
        .last_applied_revision
        .as_ref()
        .map(ToString::to_string)
}

#[tokio::test]
async fn depends_on_waits_and_is_woken_by_the_dependency() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-deps").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "db", json!({})).await;
    h.create_sync(n, "app", json!({"dependsOn": [{"name": "db"}]}))
        .await;
    let app_art = h.render_at(n, "app", &cm("app", "1"), COMMIT_1).await;
    let ready = h.wait_ready_reason(n, "app", "DependencyNotReady").await;
    assert!(ready.message.contains(&format!("{n}/db")));
    assert!(!cm_exists(&ns, "app").await);
    // The dependency becomes ready; the app follows without waiting for its 1h interval (or a
    // retry: a Sync held by a dependency retries at its interval too), so within the wait's
    // bound only the dependency's status change can have woken it.
    let db_art = h.render_at(n, "db", &cm("db", "1"), COMMIT_1).await;
    h.wait_applied(n, "db", &db_art).await;
    h.wait_applied(n, "app", &app_art).await;
}

#[tokio::test]
async fn a_commit_reaches_the_dependency_first_and_an_applied_sync_never_waits() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-dep-order").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "db", json!({})).await;
    h.create_sync(n, "app", json!({"dependsOn": [{"name": "db"}]}))
        .await;
    let db_1 = h.render_at(n, "db", &cm("db", "1"), COMMIT_1).await;
    h.wait_applied(n, "db", &db_1).await;
    let app_1 = h.render_at(n, "app", &cm("app", "1"), COMMIT_1).await;
    h.wait_applied(n, "app", &app_1).await;

    // Commit 2 reaches app's render first. db is Ready at its latest render, commit 1, but app
    // must not get commit 2 before db has it.
    let app_2 = h.render_at(n, "app", &cm("app", "2"), COMMIT_2).await;
    let held = h
        .wait_sync(n, "app", "DependencyNotReady for commit 2", |s| {
            condition(s, "Ready")
                .is_some_and(|c| c.reason == "DependencyNotReady" && c.message.contains(COMMIT_2))
        })
        .await;
    assert_eq!(
        applied_revision(&held).as_deref(),
        Some(format!("main@sha1:{COMMIT_1}").as_str()),
        "a held Sync names only what it applied"
    );
    assert_eq!(
        cm_data(&ns.api::<ConfigMap>(), "app").await.as_deref(),
        Some("1")
    );
    let db_2 = h.render_at(n, "db", &cm("db", "2"), COMMIT_2).await;
    h.wait_applied(n, "db", &db_2).await;
    h.wait_applied(n, "app", &app_2).await;

    // db stops being Ready (its next render fails). app has nothing pending: it stays Ready at
    // commit 2, instead of DependencyNotReady while naming commit 2 as applied.
    h.set_rendered(
        n,
        "db",
        None,
        false,
        "BuildFailed",
        "kustomization.yaml: broken",
    )
    .await;
    h.wait_sync(n, "db", "not Ready after its failed render", |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "False")
    })
    .await;
    // A reconcile of app that started after db's failure was seen: the one asked for now
    // (handled in the same status write that sets Ready).
    let s = h.request_reconcile(n, "app", "after-db-failed").await;
    let ready = condition(&s, "Ready").unwrap();
    assert!(is_ready(&s), "app: {} {}", ready.reason, ready.message);
    assert_eq!(
        applied_revision(&s).as_deref(),
        Some(format!("main@sha1:{COMMIT_2}").as_str())
    );
}

/// Sets the label `app/version` of Sync `name`.
async fn set_version(h: &Harness, ns: &str, name: &str, version: &str) {
    let patch = json!({"metadata": {"labels": {"app/version": version}}});
    h.syncs(ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn ready_expr_decides_when_a_dependency_is_ready_and_a_bad_one_stalls() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-ready-expr").await.unwrap();
    let n = ns.name();
    // Lockstep, as Flux documents it: app waits for db to carry its version and be Ready.
    let lockstep = "dep.metadata.labels['app/version'] == self.metadata.labels['app/version'] \
        && dep.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')";
    h.create_sync(n, "db", json!({})).await;
    set_version(&h, n, "db", "v1").await;
    let app = h
        .create_sync(
            n,
            "app",
            json!({"dependsOn": [{"name": "db", "readyExpr": lockstep}]}),
        )
        .await;
    assert_eq!(
        app.spec.depends_on[0].ready_expr.as_deref(),
        Some(lockstep),
        "the cluster's Sync CRD keeps readyExpr (an older CRD would prune it)"
    );
    set_version(&h, n, "app", "v2").await;
    let db_art = h.render_at(n, "db", &cm("db", "1"), COMMIT_1).await;
    h.wait_applied(n, "db", &db_art).await;
    let app_art = h.render_at(n, "app", &cm("app", "1"), COMMIT_1).await;
    // db is Ready at the same commit, which the built-in check would accept; the expression
    // holds app back.
    let message = h
        .wait_ready_reason(n, "app", "DependencyNotReady")
        .await
        .message;
    assert!(
        message.contains(&format!("{n}/db (readyExpr")) && message.contains("is false"),
        "{message}"
    );
    assert!(!cm_exists(&ns, "app").await);
    // db's label changes (no new generation, no new status): that change alone wakes app.
    set_version(&h, n, "db", "v2").await;
    h.wait_applied(n, "app", &app_art).await;

    // An expression that does not compile stalls the Sync, naming the dependency and the
    // expression; nothing is applied.
    h.create_sync(
        n,
        "bad",
        json!({"dependsOn": [{"name": "db", "readyExpr": "dep.metadata.("}]}),
    )
    .await;
    h.render_at(n, "bad", &cm("bad", "1"), COMMIT_1).await;
    let ready = h.wait_stalled(n, "bad").await;
    assert_eq!(ready.reason, "InvalidCELExpression");
    assert!(
        ready
            .message
            .contains(&format!("dependsOn {n}/db: readyExpr \"dep.metadata.(\"")),
        "{}",
        ready.message
    );
    assert!(!cm_exists(&ns, "bad").await);
}

#[tokio::test]
async fn a_dependency_cycle_stalls() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-cycle").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "a", json!({"dependsOn": [{"name": "b"}]}))
        .await;
    h.create_sync(n, "b", json!({"dependsOn": [{"name": "a"}]}))
        .await;
    let ready = h.wait_stalled(n, "a").await;
    assert!(ready.message.contains("cycle"));
}

#[tokio::test]
async fn impersonation_denied_by_rbac_is_a_clear_error() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-rbac").await.unwrap();
    let n = ns.name();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "deployer"}})).unwrap();
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    h.create_sync(n, "app", json!({"serviceAccountName": "deployer"}))
        .await;
    h.render(n, "app", &cm("config", "1")).await;
    let msg = h.wait_ready_reason(n, "app", "AccessDenied").await.message;
    assert!(
        msg.contains(&format!("service account {n}/deployer may not apply")),
        "{msg}"
    );
    assert!(msg.contains("forbidden"), "{msg}");
    assert!(!cm_exists(&ns, "config").await);
}

#[tokio::test]
async fn a_deployment_becomes_healthy_on_the_fake_nodes() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-health").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({"wait": true, "timeout": "2m"}))
        .await;
    let art = h.render(n, "app", &deployment("web", 2, "")).await;
    let s = h.wait_applied(n, "app", &art).await;
    let healthy = condition(&s, "Healthy").unwrap();
    assert_eq!(healthy.status, "True", "{healthy:?}");
    let d = ns.api::<Deployment>().get("web").await.unwrap();
    assert_eq!(d.status.unwrap().available_replicas, Some(2));
}

/// At a thousand Syncs the controller's workers are the queue, and a pass that finds nothing to
/// do delays every other Sync. A new Sync of the bench's kind of app (a ServiceAccount,
/// ConfigMap, Service and a Deployment, here of three replicas, `wait` on) takes three passes:
/// one while it waits for its render (which adds the finalizer), one that applies, and one that
/// writes Ready once the Deployment is available. Its own finalizer patch, the events of its own
/// applies and the Deployment controller's reports on the way (each pod that becomes available)
/// wake none. (The held reports' look again is five minutes away here, so it never comes.)
#[tokio::test]
async fn a_new_sync_takes_one_pass_to_apply_and_one_to_report_ready() {
    let h = Harness::start_with(|c| c.progress_report_delay = Duration::from_secs(300)).await;
    let ns = TestNamespace::new("sync-passes").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({"wait": true, "timeout": "5m"}))
        .await;
    // The first pass adds the finalizer, and holds back its report (no render yet).
    h.wait("the finalizer", || async {
        let s = h.syncs(n).get("app").await?;
        let added = s
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "sync.plumb.dev/finalizer");
        Ok::<_, kube::Error>(added.then_some(()))
    })
    .await;
    let yaml = format!(
        "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: web\n{}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{app: web}}\n  ports:\n  - port: 80\n{}",
        cm("config", "one"),
        deployment("web", 3, "")
    );
    let art = h.render(n, "app", &yaml).await;
    h.wait_applied(n, "app", &art).await;
    // The Deployment controller's last report; then whatever it woke has run once a reconcile
    // that started after it has returned.
    h.wait("the Deployment's last report", || async {
        let d = ns.api::<Deployment>().get("web").await?;
        let done = d.status.and_then(|s| s.conditions).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            })
        });
        Ok::<_, kube::Error>(done.then_some(()))
    })
    .await;
    h.settle(n, "app").await;
    // Tests running beside this one create Policies, which are cluster-wide: any Policy change
    // wakes every Sync (its drift mode or windows may change), so passes woken by nothing but a
    // Policy are theirs, not this Sync's.
    let by_policies: u64 = h
        .metrics
        .encode()
        .lines()
        .filter(|l| {
            l.starts_with("plumb_sync_passes_total{")
                && l.contains("woken_by=\"policy\"")
                && !l.contains("did=\"skipped\"")
                && !l.contains("did=\"deleted\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    let passes = h
        .counter("plumb_reconcile_total")
        .saturating_sub(by_policies);
    assert!(
        passes <= 3 + 3,
        "{passes} passes besides {by_policies} woken by Policies only: three for the Sync, three for the settling; by what woke them:\n{}",
        h.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with("plumb_sync_passes_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn an_unhealthy_object_fails_the_health_check_naming_it() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-unhealthy").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({"wait": true, "timeout": "3s"}))
        .await;
    // No node matches, so the pod never runs.
    let stuck = deployment("stuck", 1, "      nodeSelector: {no-such-node: \"true\"}\n");
    h.render(n, "app", &stuck).await;
    let ready = h.wait_ready_reason(n, "app", "HealthCheckFailed").await;
    assert!(
        ready
            .message
            .contains(&format!("{n}_stuck_apps_Deployment"))
    );
}

#[tokio::test]
async fn a_closed_window_holds_a_new_revision_but_drift_is_still_corrected() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-window").await.unwrap();
    let n = ns.name();
    let rev1 = h
        .create_applied(n, "app", json!({}), &cm("config", "git"))
        .await;
    // A deny window, open all the time, for this test's Syncs.
    let freeze = deny_window(&ns).await;
    let policies: Api<plumb_api::Policy> = Api::all(h.client.clone());
    let closed = |s: &plumb_api::Sync| {
        condition(s, "Reconciling").is_some_and(|c| c.reason == "SyncWindowClosed")
    };
    // A probe Sync shows the controller has seen the Policy.
    h.create_sync(n, "probe", json!({})).await;
    h.render(n, "probe", &cm("probe", "1")).await;
    h.wait_sync(n, "probe", "window closed", closed).await;

    let rev2 = h
        .render(
            n,
            "app",
            &format!("{}{}", cm("config", "git"), cm("new", "2")),
        )
        .await;
    let s = h.wait_sync(n, "app", "window closed", closed).await;
    let msg = condition(&s, "Reconciling").unwrap().message;
    assert!(
        msg.contains(rev2["revision"].as_str().unwrap()) && msg.contains("until"),
        "{msg}"
    );
    assert_eq!(
        s.status.unwrap().last_applied_revision.unwrap().to_string(),
        rev1["revision"]
    );
    let cms = ns.api::<ConfigMap>();
    assert!(
        cms.get_opt("new").await.unwrap().is_none(),
        "new revision applied in a closed window"
    );
    // Drift of the applied revision is still corrected.
    edit_cm(&cms, "config", "edited").await;
    heal_wait(&h, "drift corrected while the window is closed", || async {
        Ok::<_, kube::Error>(
            (cm_data(&cms, "config").await.as_deref() == Some("git")).then_some(()),
        )
    })
    .await;
    // The window goes away: the new revision is applied.
    policies
        .delete(&freeze, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_applied(n, "app", &rev2).await;
    assert!(cms.get_opt("new").await.unwrap().is_some());
}

#[tokio::test]
async fn a_controller_of_one_namespace_judges_its_syncs_by_that_namespaces_labels() {
    // The Policy exists before the controller starts, so its first pass already knows it.
    let ns = TestNamespace::new("sync-ns-scope").await.unwrap();
    let n = ns.name().to_owned();
    let freeze = deny_window(&ns).await;
    let watched = n.clone();
    let h = Harness::start_with(|c| c.scope.namespace = Some(watched)).await;
    h.create_sync(&n, "app", json!({})).await;
    let rev = h.render(&n, "app", &cm("config", "1")).await;
    // The window selects the namespace by its labels, which only the Namespace cache knows.
    h.wait_sync(&n, "app", "window closed", |s| {
        condition(s, "Reconciling").is_some_and(|c| c.reason == "SyncWindowClosed")
    })
    .await;
    assert!(
        !cm_exists(&ns, "config").await,
        "applied in a closed window"
    );
    let policies: Api<plumb_api::Policy> = Api::all(h.client.clone());
    policies
        .delete(&freeze, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_applied(&n, "app", &rev).await;
    assert!(cm_exists(&ns, "config").await);
}

#[tokio::test]
async fn force_recreates_an_object_whose_immutable_field_changed() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-force").await.unwrap();
    let n = ns.name();
    let frozen = |v: &str| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\nimmutable: true\ndata:\n  key: \"{v}\"\n"
        )
    };
    h.create_applied(n, "app", json!({}), &frozen("1")).await;
    let cms = ns.api::<ConfigMap>();
    let uid = cms.get("frozen").await.unwrap().metadata.uid;
    h.render(n, "app", &frozen("2")).await;
    let ready = h.wait_ready_reason(n, "app", "ApplyFailed").await;
    assert!(ready.message.contains("immutable"));
    let force = json!({"spec": {"force": true}});
    h.syncs(n)
        .patch("app", &PatchParams::default(), &Patch::Merge(&force))
        .await
        .unwrap();
    let art = h.render(n, "app", &frozen("2")).await;
    h.wait_applied(n, "app", &art).await;
    let live = cms.get("frozen").await.unwrap();
    assert_ne!(live.metadata.uid, uid, "not recreated");
    assert_eq!(live.data.unwrap()["key"], "2");
}

#[tokio::test]
async fn cross_namespace_sources_can_be_forbidden() {
    let h = Harness::start_with(|s| s.no_cross_namespace_refs = true).await;
    let ns = TestNamespace::new("sync-xns").await.unwrap();
    let n = ns.name();
    h.create_sync(
        n,
        "app",
        json!({"sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": "elsewhere"}}),
    )
    .await;
    h.render(n, "app", &cm("config", "1")).await;
    let s = h
        .wait_sync(n, "app", "Stalled AccessDenied", |s| {
            condition(s, "Stalled").is_some_and(|c| c.reason == "AccessDenied")
        })
        .await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .message
            .contains("cross-namespace")
    );
    assert!(!cm_exists(&ns, "config").await);
}

#[tokio::test]
async fn a_default_service_account_is_impersonated_when_none_is_named() {
    let h = Harness::start_with(|s| s.default_service_account = Some("restricted".into())).await;
    let ns = TestNamespace::new("sync-defsa").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    h.render(n, "app", &cm("config", "1")).await;
    let msg = h.wait_ready_reason(n, "app", "AccessDenied").await.message;
    assert!(
        msg.contains(&format!("service account {n}/restricted may not apply")),
        "{msg}"
    );
}

#[tokio::test]
async fn status_churn_and_other_managers_fields_cause_no_writes() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-churn").await.unwrap();
    let n = ns.name();
    h.create_applied(n, "app", json!({}), &cm("config", "git"))
        .await;
    let cms = ns.api::<ConfigMap>();
    let plumb_time = |c: &ConfigMap| {
        c.metadata
            .managed_fields
            .iter()
            .flatten()
            .find(|m| m.manager.as_deref() == Some("plumb-sync"))
            .and_then(|m| m.time.clone())
    };
    let before = plumb_time(&cms.get("config").await.unwrap());
    let applied = h.counter("plumb_sync_applied_objects_total");
    let corrected = h.counter("plumb_sync_drift_corrections_total");
    let sync_before = h.syncs(n).get("app").await.unwrap();
    // Another manager adds a label and a data key plumb does not apply.
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "config", "labels": {"team": "x"}}, "data": {"extra": "theirs"}});
    cms.patch(
        "config",
        &PatchParams::apply("someone-else"),
        &Patch::Apply(&other),
    )
    .await
    .unwrap();
    // A change of fields plumb does not own wakes no reconcile (see `signal`); whatever looks at
    // the Sync after it may not write: wait until a reconcile that started after the change has
    // returned.
    h.settle(n, "app").await;
    let live = cms.get("config").await.unwrap();
    assert_eq!(plumb_time(&live), before, "plumb re-applied");
    assert_eq!(
        h.counter("plumb_sync_applied_objects_total"),
        applied,
        "plumb re-applied"
    );
    assert_eq!(
        h.counter("plumb_sync_drift_corrections_total"),
        corrected,
        "plumb corrected"
    );
    assert_eq!(live.data.unwrap()["extra"], "theirs");
    let now = h.syncs(n).get("app").await.unwrap();
    assert_eq!(now.status, sync_before.status, "Sync status rewritten");
    assert_eq!(
        status_written_at(&now),
        status_written_at(&sync_before),
        "Sync status rewritten"
    );
}

#[tokio::test]
async fn a_namespace_and_the_objects_in_it_are_applied_from_one_render() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-newns").await.unwrap();
    let n = ns.name();
    // The most common layout: the render brings its own namespace. Nobody creates it first.
    let app_ns = format!("{n}-app");
    ns.delete_with_namespace::<Namespace>(&app_ns);
    let labels = serde_json::to_string(&ns.test_labels()).unwrap();
    let yaml = format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {app_ns}\ndata:\n  key: \"in-new-ns\"\n\
         ---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {app_ns}\n  labels: {labels}\n"
    );
    h.create_sync(n, "app", json!({})).await;
    let art = h.render(n, "app", &yaml).await;
    let s = h.wait_applied(n, "app", &art).await;
    assert_eq!(
        inventory(&s),
        [
            format!("_{app_ns}__Namespace"),
            format!("{app_ns}_settings__ConfigMap")
        ]
    );
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), &app_ns);
    assert_eq!(
        cm_data(&cms, "settings").await.as_deref(),
        Some("in-new-ns")
    );
    let created = Api::<Namespace>::all(h.client.clone())
        .get(&app_ns)
        .await
        .unwrap();
    assert_eq!(
        created.metadata.labels.unwrap()["sync.plumb.dev/name"],
        "app",
        "the namespace is the Sync's own"
    );
}

#[tokio::test]
async fn prune_false_keeps_objects_that_left_the_render() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-noprune").await.unwrap();
    let n = ns.name();
    h.create_applied(
        n,
        "app",
        json!({"prune": false}),
        &format!("{}{}", cm("a", "1"), cm("b", "2")),
    )
    .await;
    let art = h.render(n, "app", &cm("a", "1")).await;
    // Pruning would happen before the new revision is recorded as applied.
    let s = h.wait_applied(n, "app", &art).await;
    assert_eq!(inventory(&s), [format!("{n}_a__ConfigMap")]);
    let b = ns.api::<ConfigMap>().get("b").await.unwrap();
    assert!(b.metadata.deletion_timestamp.is_none(), "b was pruned");
    assert_eq!(h.counter("plumb_sync_pruned_objects_total"), 0);
}

#[tokio::test]
async fn a_failed_prune_keeps_the_object_in_the_inventory_until_it_succeeds() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-prunefail").await.unwrap();
    let n = ns.name();
    // The Sync applies as a ServiceAccount that may do everything to ConfigMaps but delete them.
    let verbs = |delete: bool| {
        let mut v = vec!["get", "list", "watch", "create", "update", "patch"];
        if delete {
            v.push("delete");
        }
        v
    };
    let rbac = |delete: bool| {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: deployer}}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: deployer}}\n\
             rules: [{{apiGroups: [\"\"], resources: [configmaps], verbs: {}}}]\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: deployer}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}}\n\
             subjects: [{{kind: ServiceAccount, name: deployer, namespace: {n}}}]\n",
            serde_json::to_string(&verbs(delete)).unwrap()
        )
    };
    ns.apply_yaml(&rbac(false), "plumb-test").await.unwrap();
    h.create_sync(
        n,
        "app",
        json!({"serviceAccountName": "deployer", "retryInterval": "2s"}),
    )
    .await;
    let art = h
        .render(n, "app", &format!("{}{}", cm("a", "1"), cm("b", "2")))
        .await;
    h.wait_applied(n, "app", &art).await;

    let art = h.render(n, "app", &cm("a", "1")).await;
    let s = h
        .wait_sync(n, "app", "PruneFailed", |s| {
            condition(s, "Ready").is_some_and(|c| c.status == "False" && c.reason == "PruneFailed")
        })
        .await;
    let msg = condition(&s, "Ready").unwrap().message;
    assert!(msg.contains(&format!("{n}_b__ConfigMap")), "{msg}");
    assert!(msg.contains("forbidden"), "{msg}");
    assert_eq!(
        inventory(&s),
        [format!("{n}_a__ConfigMap"), format!("{n}_b__ConfigMap")],
        "the object that could not be pruned stays in the inventory"
    );
    let cms = ns.api::<ConfigMap>();
    assert!(cms.get_opt("b").await.unwrap().is_some());

    // Allowed to delete, the retry prunes it and the inventory lets it go.
    ns.apply_yaml(&rbac(true), "plumb-test").await.unwrap();
    let s = h.wait_applied(n, "app", &art).await;
    assert_eq!(inventory(&s), [format!("{n}_a__ConfigMap")]);
    h.wait("b to be pruned", || async {
        Ok::<_, kube::Error>(common::deleted(&cms, "b").await?.then_some(()))
    })
    .await;
}

#[tokio::test]
async fn drift_mode_ignore_leaves_an_edit_until_the_next_full_reconcile() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-ignore").await.unwrap();
    let n = ns.name();
    ns.apply_policy("ignore", json!({"drift": {"mode": "Ignore"}}))
        .await
        .unwrap();
    // selfHeal is on: only the Policy's mode keeps the edit.
    h.create_applied(n, "app", json!({"selfHeal": true}), &cm("config", "git"))
        .await;
    let cms = ns.api::<ConfigMap>();
    let corrected = h.counter("plumb_sync_drift_corrections_total");
    edit_cm(&cms, "config", "edited").await;
    // A reconcile that started after the edit has returned: the edit is still there.
    h.settle(n, "app").await;
    assert_eq!(cm_data(&cms, "config").await.as_deref(), Some("edited"));
    assert_eq!(
        h.counter("plumb_sync_drift_corrections_total"),
        corrected,
        "drift corrected in mode Ignore"
    );
    let s = h.syncs(n).get("app").await.unwrap();
    assert_eq!(
        s.status.unwrap().drift.map_or(0, |d| d.corrections),
        0,
        "a correction recorded in mode Ignore"
    );

    // A full reconcile applies Git's state again.
    h.request(n, "app", "full-1").await;
    h.wait("the full reconcile to restore Git's value", || async {
        Ok::<_, kube::Error>(
            (cm_data(&cms, "config").await.as_deref() == Some("git")).then_some(()),
        )
    })
    .await;
}

#[tokio::test]
async fn a_suspended_sync_applies_and_heals_nothing_until_resumed() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-suspend").await.unwrap();
    let n = ns.name();
    let rev1 = h
        .create_applied(n, "app", json!({}), &cm("config", "git"))
        .await;

    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    h.syncs(n)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(&suspend(true)),
        )
        .await
        .unwrap();
    let rev2 = h
        .render(
            n,
            "app",
            &format!("{}{}", cm("config", "git"), cm("new", "2")),
        )
        .await;
    let cms = ns.api::<ConfigMap>();
    edit_cm(&cms, "config", "edited").await;
    // Reconciles after the suspension changed nothing: no new revision, no healing.
    h.settle(n, "app").await;
    let s = h.syncs(n).get("app").await.unwrap();
    assert_eq!(
        s.status.unwrap().last_applied_revision.unwrap().to_string(),
        rev1["revision"]
    );
    assert!(
        cms.get_opt("new").await.unwrap().is_none(),
        "a suspended Sync applied a new revision"
    );
    assert_eq!(
        cm_data(&cms, "config").await.as_deref(),
        Some("edited"),
        "a suspended Sync corrected drift"
    );

    h.syncs(n)
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(&suspend(false)),
        )
        .await
        .unwrap();
    h.wait_applied(n, "app", &rev2).await;
    assert!(cms.get_opt("new").await.unwrap().is_some());
    assert_eq!(cm_data(&cms, "config").await.as_deref(), Some("git"));
}
