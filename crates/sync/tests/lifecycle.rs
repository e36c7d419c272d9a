//! The sync controller's lifecycle against a real API server: what `kubectl delete sync` does
//! (deletionPolicy, finalizer), Ready when a render fails, status history, healing while a
//! dependency is not ready, and a restart under a deny window.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use common::{
    HEAL_WITHIN, Harness, TestNamespace, cm, cm_annotated, cm_data, condition, deny_window, edit_cm,
};

/// How long a deleted Sync may take to be released by its finalizer.
const SYNC_GONE: Duration = Duration::from_secs(60);

async fn event_reasons(ns: &TestNamespace, sync: &str) -> Vec<String> {
    ns.api::<Event>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(sync))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn ready_names_the_rule_when_the_first_render_is_denied_and_any_later_render_fails() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-ready-deny").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    let denial = format!(
        "policy pinned: rule no-latest denies {n}_web_apps_Deployment: images must be pinned"
    );
    h.set_rendered(n, "app", None, false, "PolicyViolation", &denial)
        .await;
    let s = h
        .wait_sync(n, "app", "Ready=False PolicyViolation", |s| {
            condition(s, "Ready")
                .is_some_and(|c| c.status == "False" && c.reason == "PolicyViolation")
        })
        .await;
    let ready = condition(&s, "Ready").unwrap();
    assert!(
        ready.message.contains("no-latest")
            && ready.message.contains(&format!("{n}_web_apps_Deployment")),
        "{}",
        ready.message
    );

    // A good render is applied; a later build failure shows in Ready while the last good
    // revision stays applied.
    let good = h.render(n, "app", &cm("config", "1")).await;
    h.wait_applied(n, "app", &good).await;
    h.set_rendered(
        n,
        "app",
        Some(&good),
        false,
        "BuildFailed",
        "kustomization.yaml: resource web.yaml not found",
    )
    .await;
    let s = h
        .wait_sync(n, "app", "Ready=False BuildFailed", |s| {
            condition(s, "Ready").is_some_and(|c| c.status == "False" && c.reason == "BuildFailed")
        })
        .await;
    assert!(
        condition(&s, "Ready")
            .unwrap()
            .message
            .contains("web.yaml not found")
    );
    assert_eq!(
        s.status.unwrap().last_applied_revision.unwrap().to_string(),
        good["revision"]
    );
    assert_eq!(cm_data(&ns.api(), "config").await.as_deref(), Some("1"));
    // Fixed: Ready again.
    h.set_render(n, "app", &good).await;
    h.wait_applied(n, "app", &good).await;
}

#[tokio::test]
async fn deleting_a_sync_deletes_what_it_applied_from_its_last_inventory() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-delete").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    let keep = cm_annotated("keep", "0", "plumb.dev/prune", "disabled");
    let art = h
        .render(
            n,
            "app",
            &format!("{}{}{}", cm("a", "1"), cm("b", "2"), &keep),
        )
        .await;
    let s = h.wait_applied(n, "app", &art).await;
    assert!(
        s.finalizers()
            .iter()
            .any(|f| f == "sync.plumb.dev/finalizer"),
        "{:?}",
        s.finalizers()
    );
    let history = s.status.as_ref().unwrap().history.clone();
    assert_eq!(history[0].result, "ReconciliationSucceeded");
    assert_eq!(
        history[0].digest.as_ref().unwrap().to_string(),
        art["digest"]
    );
    assert_eq!(
        history[0].revision.as_ref().unwrap().to_string(),
        art["revision"]
    );
    let cms = ns.api::<ConfigMap>();
    // Another Sync takes `b` over; deletion leaves it to its new owner.
    cms.patch("b", &PatchParams::apply("other-sync").force(), &Patch::Apply(&json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "labels": {"sync.plumb.dev/name": "other"}}
    })))
    .await
    .unwrap();
    // The render goes away (its artifact cannot be fetched): deletion needs only the inventory.
    let mut gone = art.clone();
    gone["url"] = json!(format!(
        "{}/missing.tar.gz",
        art["url"].as_str().unwrap().rsplit_once('/').unwrap().0
    ));
    gone["digest"] = json!(format!("sha256:{}", "9".repeat(64)));
    h.set_render(n, "app", &gone).await;
    h.wait_sync(n, "app", "ArtifactFailed", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "ArtifactFailed")
    })
    .await;

    h.syncs(n)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_sync_gone(n, "app", "released by its finalizer", SYNC_GONE)
        .await;
    h.wait_within(
        "ConfigMap a deleted with its Sync",
        common::TIMEOUT,
        || async { Ok::<_, kube::Error>(common::deleted(&cms, "a").await?.then_some(())) },
    )
    .await;
    assert!(
        cms.get_opt("keep").await.unwrap().is_some(),
        "prune: disabled object was deleted"
    );
    assert!(
        cms.get_opt("b").await.unwrap().is_some(),
        "another Sync's object was deleted"
    );
    let reasons = event_reasons(&ns, "app").await;
    assert!(reasons.iter().any(|r| r == "Deleting"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "Deleted"), "{reasons:?}");
}

#[tokio::test]
async fn a_sync_deleted_while_its_first_report_is_held_back_deletes_what_it_applied() {
    // The report of objects just applied and not healthy yet is held back (here for an hour), so
    // the status names nothing when the Sync is deleted: the deletion must still find them.
    let h = Harness::start_with(|c| c.progress_report_delay = Duration::from_secs(3600)).await;
    let ns = TestNamespace::new("sync-delete-held").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({"wait": true, "timeout": "10m"}))
        .await;
    // No node carries this label: the Deployment never becomes available.
    let never = "      nodeSelector: {plumb.dev/test-no-such-node: \"true\"}\n";
    let yaml = format!("{}{}", cm("a", "1"), common::deployment("web", 1, never));
    h.render(n, "app", &yaml).await;
    let deployments = ns.api::<k8s_openapi::api::apps::v1::Deployment>();
    let cms = ns.api::<ConfigMap>();
    h.wait("both objects applied", || async {
        let applied =
            cms.get_opt("a").await?.is_some() && deployments.get_opt("web").await?.is_some();
        Ok::<_, kube::Error>(applied.then_some(()))
    })
    .await;
    let s = h.syncs(n).get("app").await.unwrap();
    assert!(
        common::inventory(&s).is_empty(),
        "the report was not held back, so this test proves nothing: {:?}",
        s.status
    );

    h.syncs(n)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_sync_gone(n, "app", "released by its finalizer", SYNC_GONE)
        .await;
    h.wait_within(
        "the objects applied and not reported deleted with their Sync",
        common::TIMEOUT,
        || async {
            let both =
                common::deleted(&cms, "a").await? && common::deleted(&deployments, "web").await?;
            Ok::<_, kube::Error>(both.then_some(()))
        },
    )
    .await;
    let reasons = event_reasons(&ns, "app").await;
    assert!(reasons.iter().any(|r| r == "Deleting"), "{reasons:?}");
}

#[tokio::test]
async fn orphan_leaves_objects_and_wait_for_termination_waits_until_they_are_gone() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-delpolicy").await.unwrap();
    let n = ns.name();
    let cms = ns.api::<ConfigMap>();
    h.create_applied(
        n,
        "orphan",
        json!({"deletionPolicy": "Orphan"}),
        &cm("orphaned", "1"),
    )
    .await;
    h.syncs(n)
        .delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_sync_gone(n, "orphan", "the Orphan Sync released", SYNC_GONE)
        .await;
    let left = cms.get("orphaned").await.unwrap();
    assert!(
        left.metadata.deletion_timestamp.is_none(),
        "Orphan deleted an object"
    );

    // An object held by a finalizer of its own: the Sync waits for it, then goes.
    h.create_sync(
        n,
        "waits",
        json!({"deletionPolicy": "WaitForTermination", "timeout": "2s"}),
    )
    .await;
    let art = h.render(n, "waits", &cm("held", "1")).await;
    h.wait_applied(n, "waits", &art).await;
    let hold = json!({"metadata": {"finalizers": ["example.com/hold"]}});
    cms.patch("held", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();
    h.syncs(n)
        .delete("waits", &DeleteParams::default())
        .await
        .unwrap();
    let msg = h
        .wait_ready_reason(n, "waits", "DeletionFailed")
        .await
        .message;
    assert!(
        msg.contains(&format!("{n}_held__ConfigMap")) && msg.contains("was not deleted"),
        "{msg}"
    );
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    h.wait_sync_gone(n, "waits", "gone once its objects were gone", SYNC_GONE)
        .await;
}

#[tokio::test]
async fn drift_is_healed_while_a_dependency_is_not_ready() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-heal-deps").await.unwrap();
    let n = ns.name();
    h.create_applied(n, "app", json!({}), &cm("config", "git"))
        .await;
    let patch = json!({"spec": {"dependsOn": [{"name": "db"}]}});
    h.syncs(n)
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    h.wait_sync(n, "app", "DependencyNotReady", |s| {
        condition(s, "Ready").is_some_and(|c| {
            c.reason == "DependencyNotReady" && c.observed_generation == s.metadata.generation
        })
    })
    .await;
    let cms = ns.api::<ConfigMap>();
    edit_cm(&cms, "config", "edited").await;
    h.wait_within(
        "drift healed without waiting for the dependency",
        HEAL_WITHIN,
        || async {
            Ok::<_, String>((cm_data(&cms, "config").await.as_deref() == Some("git")).then_some(()))
        },
    )
    .await;
    let s = h.syncs(n).get("app").await.unwrap();
    assert_eq!(condition(&s, "Ready").unwrap().reason, "DependencyNotReady");
}

#[tokio::test]
async fn a_restarted_controller_honours_a_deny_window_from_its_first_pass() {
    let mut h = Harness::start().await;
    let ns = TestNamespace::new("sync-restart-window").await.unwrap();
    let n = ns.name();
    let rev1 = h
        .create_applied(n, "app", json!({}), &cm("config", "1"))
        .await;
    let freeze = deny_window(&ns).await;
    let policies: Api<plumb_api::Policy> = Api::all(h.client.clone());
    // While the controller is down, a new revision is rendered.
    h.stop_controller().await;
    let rev2 = h
        .render(
            n,
            "app",
            &format!("{}{}", cm("config", "2"), cm("new", "2")),
        )
        .await;
    h.start_controller();
    let s = h
        .wait_sync(n, "app", "window closed", |s| {
            condition(s, "Reconciling").is_some_and(|c| c.reason == "SyncWindowClosed")
        })
        .await;
    let st = s.status.unwrap();
    assert_eq!(
        st.last_applied_revision.unwrap().to_string(),
        rev1["revision"]
    );
    assert_eq!(
        st.last_attempted_revision.unwrap().to_string(),
        rev2["revision"]
    );
    let cms = ns.api::<ConfigMap>();
    assert!(
        cms.get_opt("new").await.unwrap().is_none(),
        "applied in a closed window after a restart"
    );
    assert_eq!(cm_data(&cms, "config").await.as_deref(), Some("1"));
    // The Policy goes; which pass then applies rev2 is `a_closed_window_holds_a_new_revision_*`'s
    // business (tests/sync.rs).
    policies
        .delete(&freeze, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_deletion_refused_by_rbac_retries_but_never_holds_its_namespace() {
    use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-del-rbac").await.unwrap();
    let n = ns.name();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "deployer"}})).unwrap();
    ns.api::<ServiceAccount>()
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "deployer"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]
    }))
    .unwrap();
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "deployer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
        "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": n}]
    }))
    .unwrap();
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    h.create_applied(
        n,
        "app",
        json!({"serviceAccountName": "deployer"}),
        &cm("config", "1"),
    )
    .await;

    // The RBAC goes first: deletion is refused, retried, and the Sync says why.
    ns.api::<RoleBinding>()
        .delete("deployer", &DeleteParams::default())
        .await
        .unwrap();
    h.syncs(n)
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    let msg = h
        .wait_ready_reason(n, "app", "DeletionFailed")
        .await
        .message;
    assert!(msg.contains(&format!("{n}_config__ConfigMap")), "{msg}");
    assert!(
        ns.api::<ConfigMap>()
            .get("config")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // Its namespace is deleted: the controller gives up instead of holding it.
    Api::<Namespace>::all(h.client.clone())
        .delete(n, &DeleteParams::default())
        .await
        .unwrap();
    h.wait_sync_gone(
        n,
        "app",
        "released instead of holding its terminating namespace",
        SYNC_GONE,
    )
    .await;
}
