//! Custom health against a real API server: `healthCheckExprs` deciding a custom resource's
//! health, an expression that does not compile, and `healthChecks` waiting for an object the
//! Sync did not apply.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use common::{Harness, TestNamespace, cm, condition, deployment, is_ready};

/// Installs a `Database` CRD of group `<ns>.plumb.test` with a status subresource (deleted with
/// the namespace) and waits until it is Established; returns its group.
async fn database_crd(h: &Harness, ns: &TestNamespace) -> String {
    let group = format!("{}.plumb.test", ns.name());
    let name = format!("databases.{group}");
    ns.apply_cluster::<CustomResourceDefinition>(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "databases", "singular": "database", "kind": "Database"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
        }
    }))
    .await
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(h.client.clone());
    h.wait("the Database CRD to be Established", || {
        let crds = crds.clone();
        let name = name.clone();
        async move {
            let established = crds
                .get(&name)
                .await?
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            Ok::<_, kube::Error>(established.then_some(()))
        }
    })
    .await;
    group
}

/// Sets `status.phase` of Database `name`, as its operator would.
async fn set_phase(h: &Harness, ns: &str, group: &str, name: &str, phase: &str) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, "v1", "Database"),
        "databases",
    );
    Api::<DynamicObject>::namespaced_with(h.client.clone(), ns, &ar)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"phase": phase}})),
        )
        .await
        .unwrap();
}

fn ready_message(s: &plumb_api::Sync) -> String {
    condition(s, "Ready").map(|c| c.message).unwrap_or_default()
}

#[tokio::test]
async fn health_check_exprs_decide_a_custom_resource_health() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("health-exprs").await.unwrap();
    let n = ns.name();
    let group = database_crd(&h, &ns).await;
    let failed = "status.phase == 'Failed'";
    h.create_sync(
        n,
        "app",
        json!({"wait": true, "timeout": "10m", "healthCheckExprs": [{
            "apiVersion": format!("{group}/v1"), "kind": "Database",
            "inProgress": "status.phase == 'Provisioning'",
            "failed": failed,
            "current": "status.phase == 'Running'",
        }]}),
    )
    .await;
    let db = format!(
        "---\napiVersion: {group}/v1\nkind: Database\nmetadata:\n  name: db\nspec:\n  size: 1\n"
    );
    h.render(n, "app", &db).await;
    let id = format!("{n}_db_{group}_Database");

    // No status yet: the expressions cannot say, so the Sync waits, naming the object.
    h.wait_sync(n, "app", "waiting for the new Database", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "Progressing")
            && ready_message(s).contains(&id)
    })
    .await;

    set_phase(&h, n, &group, "db", "Provisioning").await;
    h.wait_sync(n, "app", "in progress by its inProgress expression", |s| {
        let m = ready_message(s);
        m.contains(&id) && m.contains("inProgress \"status.phase == 'Provisioning'\" is true")
    })
    .await;

    set_phase(&h, n, &group, "db", "Running").await;
    let s = h
        .wait_sync(n, "app", "Ready once current is true", is_ready)
        .await;
    assert_eq!(condition(&s, "Healthy").unwrap().status, "True");

    set_phase(&h, n, &group, "db", "Failed").await;
    let s = h
        .wait_sync(
            n,
            "app",
            "HealthCheckFailed by its failed expression",
            |s| {
                condition(s, "Ready")
                    .is_some_and(|c| c.status == "False" && c.reason == "HealthCheckFailed")
            },
        )
        .await;
    let m = ready_message(&s);
    assert!(m.contains(&id), "{m}");
    assert!(m.contains(&format!("failed {failed:?} is true")), "{m}");
    assert_eq!(condition(&s, "Healthy").unwrap().status, "False");
}

#[tokio::test]
async fn a_health_expression_that_does_not_compile_stalls_the_sync() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("health-invalid").await.unwrap();
    let n = ns.name();
    h.create_sync(
        n,
        "app",
        json!({"healthCheckExprs": [{
            "apiVersion": "example.com/v1", "kind": "Database", "current": "status.(",
        }]}),
    )
    .await;
    h.render(n, "app", &cm("config", "one")).await;
    let s = h
        .wait_sync(n, "app", "InvalidCELExpression", |s| {
            condition(s, "Ready").is_some_and(|c| c.reason == "InvalidCELExpression")
        })
        .await;
    let m = ready_message(&s);
    assert!(
        m.contains("example.com/v1 Database") && m.contains("status.("),
        "{m}"
    );
    assert_eq!(condition(&s, "Stalled").unwrap().status, "True");
    // Nothing was applied.
    assert!(
        ns.api::<k8s_openapi::api::core::v1::ConfigMap>()
            .get_opt("config")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn health_checks_wait_for_an_object_outside_the_sync() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("health-checks").await.unwrap();
    let n = ns.name();
    // Without `wait`, only the named object holds the Sync back.
    h.create_sync(
        n,
        "app",
        json!({"timeout": "10m", "healthChecks": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "backend"},
        ]}),
    )
    .await;
    h.render(n, "app", &cm("config", "one")).await;
    let id = format!("{n}_backend_apps_Deployment");
    h.wait_sync(n, "app", "waiting for the missing backend", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "Progressing")
            && ready_message(s).contains(&format!("{id} (not found)"))
    })
    .await;
    // Another tool creates it: its watch wakes the Sync, which is Ready once it is available.
    ns.apply_yaml(&deployment("backend", 1, ""), "another-tool")
        .await
        .unwrap();
    let s = h
        .wait_sync(n, "app", "Ready once the backend is available", is_ready)
        .await;
    let healthy = condition(&s, "Healthy").unwrap();
    assert_eq!(healthy.status, "True", "{healthy:?}");
    assert_eq!(healthy.message, "2 objects healthy");
}
