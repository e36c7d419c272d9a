//! Per-object controls against a real API server: ownership conflicts between Syncs and the
//! takeover annotation, `plumb.dev/reconcile`, `plumb.dev/ssa`, `plumb.dev/force`, and
//! `drift.ignore` paths keeping their live value.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use common::{
    HEAL_WITHIN, Harness, TestNamespace, cm, cm_annotated, cm_data, condition, deployment, edit_cm,
};

async fn owner(api: &Api<ConfigMap>, name: &str) -> Option<String> {
    api.get(name)
        .await
        .ok()?
        .metadata
        .labels?
        .get("sync.plumb.dev/name")
        .cloned()
}

/// Waits until ConfigMap `name` holds `value` (drift corrected), or fails the test.
async fn wait_data(h: &Harness, cms: &Api<ConfigMap>, name: &str, value: &str) {
    h.wait_within(
        &format!("ConfigMap {name} to hold {value:?}"),
        HEAL_WITHIN,
        || async {
            Ok::<_, String>((cm_data(cms, name).await.as_deref() == Some(value)).then_some(()))
        },
    )
    .await;
}

#[tokio::test]
async fn an_object_another_sync_applied_is_taken_over_only_when_annotated() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-owners").await.unwrap();
    let n = ns.name();
    let cms = ns.api::<ConfigMap>();
    h.create_applied(n, "first", json!({}), &cm("shared", "first"))
        .await;

    h.create_sync(n, "second", json!({})).await;
    h.render(
        n,
        "second",
        &format!("{}{}", cm("shared", "second"), cm("own", "1")),
    )
    .await;
    let s = h
        .wait_sync(n, "second", "OwnershipConflict", |s| {
            condition(s, "Ready").is_some_and(|c| c.reason == "OwnershipConflict")
        })
        .await;
    let msg = condition(&s, "Ready").unwrap().message;
    assert!(
        msg.contains(&format!("{n}_shared__ConfigMap")) && msg.contains(&format!("{n}/first")),
        "{msg}"
    );
    assert_eq!(owner(&cms, "shared").await.as_deref(), Some("first"));
    assert_eq!(cm_data(&cms, "shared").await.as_deref(), Some("first"));
    assert_eq!(
        cm_data(&cms, "own").await.as_deref(),
        Some("1"),
        "the rest was not applied"
    );
    assert!(
        !common::inventory(&s).contains(&format!("{n}_shared__ConfigMap")),
        "another Sync's object in the inventory"
    );

    let art = h
        .render(
            n,
            "second",
            &format!(
                "{}{}",
                cm_annotated("shared", "second", "plumb.dev/takeover", "enabled"),
                cm("own", "1")
            ),
        )
        .await;
    h.wait_applied(n, "second", &art).await;
    assert_eq!(owner(&cms, "shared").await.as_deref(), Some("second"));
    assert_eq!(cm_data(&cms, "shared").await.as_deref(), Some("second"));
}

#[tokio::test]
async fn per_object_annotations_disable_create_once_ignore_merge_and_force() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-annotations").await.unwrap();
    let n = ns.name();
    let cms = ns.api::<ConfigMap>();
    let frozen = |v: &str| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: frozen\n  annotations:\n    plumb.dev/force: enabled\nimmutable: true\ndata:\n  key: \"{v}\"\n"
        )
    };
    let render = |v: &str| {
        [
            cm("plain", v),
            cm("manual", v),
            cm_annotated("once", v, "plumb.dev/ssa", "IfNotPresent"),
            cm_annotated("ignored", v, "plumb.dev/ssa", "Ignore"),
            cm_annotated("merged", v, "plumb.dev/ssa", "Merge"),
            frozen(v),
        ]
        .concat()
    };
    h.create_applied(n, "app", json!({}), &render("1")).await;
    assert!(
        cms.get_opt("ignored").await.unwrap().is_none(),
        "ssa: Ignore was applied"
    );
    assert_eq!(cm_data(&cms, "once").await.as_deref(), Some("1"));
    let frozen_uid = cms.get("frozen").await.unwrap().metadata.uid;

    // reconcile: disabled on the live object: its drift is left alone, while drift of the
    // other objects is corrected.
    let disable = json!({"metadata": {"annotations": {"plumb.dev/reconcile": "disabled"}}});
    cms.patch("manual", &PatchParams::default(), &Patch::Merge(&disable))
        .await
        .unwrap();
    edit_cm(&cms, "manual", "by hand").await;
    // Merge: a field another tool took over stays theirs.
    let theirs = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "merged"}, "data": {"key": "theirs"}});
    cms.patch(
        "merged",
        &PatchParams::apply("cert-manager").force(),
        &Patch::Apply(&theirs),
    )
    .await
    .unwrap();
    edit_cm(&cms, "plain", "drifted").await;
    wait_data(&h, &cms, "plain", "1").await;

    // A new revision: IfNotPresent objects stay as created, the disabled one as edited, the
    // merged field with its other owner; the immutable one is recreated.
    let art = h.render(n, "app", &render("2")).await;
    h.wait_applied(n, "app", &art).await;
    assert_eq!(cm_data(&cms, "plain").await.as_deref(), Some("2"));
    assert_eq!(cm_data(&cms, "once").await.as_deref(), Some("1"));
    assert_eq!(cm_data(&cms, "manual").await.as_deref(), Some("by hand"));
    assert_eq!(cm_data(&cms, "merged").await.as_deref(), Some("theirs"));
    assert!(cms.get_opt("ignored").await.unwrap().is_none());
    let frozen_now = cms.get("frozen").await.unwrap();
    assert_ne!(
        frozen_now.metadata.uid, frozen_uid,
        "plumb.dev/force: enabled did not recreate"
    );
    assert_eq!(frozen_now.data.unwrap()["key"], "2");

    // Pruning leaves the disabled object in the cluster.
    let art = h.render(n, "app", &cm("plain", "3")).await;
    h.wait_applied(n, "app", &art).await;
    assert!(
        cms.get_opt("manual").await.unwrap().is_some(),
        "reconcile: disabled object was pruned"
    );
}

#[tokio::test]
async fn an_ignored_path_plumb_owned_keeps_its_live_value() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("sync-ignore-owned").await.unwrap();
    let n = ns.name();
    h.create_sync(n, "app", json!({})).await;
    let yaml = format!("{}{}", cm("probe", "git"), deployment("web", 3, ""));
    let art = h.render(n, "app", &yaml).await;
    h.wait_applied(n, "app", &art).await;
    let deps = ns.api::<Deployment>();
    assert_eq!(
        deps.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3)
    );

    // An autoscaler arrives: a Policy ignores replicas from now on (and reports drift, which
    // shows when the controller has seen it).
    // Labelled as this test's and deleted with its namespace, whether the test passes or not.
    let replicas = json!({"resources": [{"group": "apps", "kinds": ["Deployment"]}], "paths": ["/spec/replicas"]});
    let policy = ns
        .apply_policy(
            "hpa",
            json!({"drift": {"mode": "Report", "ignore": [replicas]}}),
        )
        .await
        .unwrap()
        .name_any();
    let policies: Api<plumb_api::Policy> = Api::all(h.client.clone());
    let cms = ns.api::<ConfigMap>();
    edit_cm(&cms, "probe", "edited").await;
    h.wait_sync(n, "app", "the Policy's Report mode", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.drift.as_ref())
            .is_some_and(|d| d.objects.contains(&format!("{n}_probe__ConfigMap")))
    })
    .await;
    h.request_reconcile(n, "app", "one").await;
    assert_eq!(
        deps.get("web").await.unwrap().spec.unwrap().replicas,
        Some(3),
        "an ignored field plumb owned was deleted by the apply"
    );
    // The autoscaler scales; full reconciles keep its value.
    let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    deps.patch(
        "web",
        &PatchParams::apply("hpa").force(),
        &Patch::Apply(&scale),
    )
    .await
    .unwrap();
    h.request_reconcile(n, "app", "two").await;
    assert_eq!(
        deps.get("web").await.unwrap().spec.unwrap().replicas,
        Some(5)
    );
    policies
        .delete(&policy, &DeleteParams::default())
        .await
        .unwrap();
}
