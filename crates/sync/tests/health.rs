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
    status_crd(h, ns, &group, "databases", "Database").await;
    group
}

/// Installs a namespaced CRD of `group` and `kind` (plural `plural`) with a status subresource
/// and any fields (deleted with the namespace), and waits until it is Established.
async fn status_crd(h: &Harness, ns: &TestNamespace, group: &str, plural: &str, kind: &str) {
    let name = format!("{plural}.{group}");
    ns.apply_cluster::<CustomResourceDefinition>(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
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
    h.wait(&format!("the {kind} CRD to be Established"), || {
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

/// What a Sync of the built-in rules test must show next.
enum Expect {
    /// Waiting (`Progressing`), the message holding this.
    Waiting(&'static str),
    /// `Ready`.
    Ready,
    /// `HealthCheckFailed`, the message holding this.
    Failed(&'static str),
}

/// One step: a status written as the object's controller would (kind's group/version, plural,
/// object name, status), then what the Sync shows.
struct Step {
    status: Option<(&'static str, &'static str, &'static str, serde_json::Value)>,
    expect: Expect,
}

fn step(expect: Expect) -> Step {
    Step {
        status: None,
        expect,
    }
}

fn status_then(
    gv_plural_name: (&'static str, &'static str, &'static str),
    status: serde_json::Value,
    expect: Expect,
) -> Step {
    let (gv, plural, name) = gv_plural_name;
    Step {
        status: Some((gv, plural, name, status)),
        expect,
    }
}

async fn write_status(
    h: &Harness,
    ns: &str,
    (gv, plural, name, status): &(&str, &str, &str, serde_json::Value),
) {
    let (group, version) = gv.rsplit_once('/').unwrap_or(("", gv));
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, ""), plural);
    Api::<DynamicObject>::namespaced_with(h.client.clone(), ns, &ar)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": status})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn built_in_rules_judge_ingress_cronjob_hpa_pdb_and_cert_manager_by_their_status() {
    let h = Harness::start().await;
    let ns = TestNamespace::new("health-builtin").await.unwrap();
    let n = ns.name();
    // cert-manager's kinds are known by their group, so the CRD is cert-manager's own name.
    status_crd(&h, &ns, "cert-manager.io", "certificates", "Certificate").await;
    let ingress = "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n  - host: web.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}\n".to_owned();
    let cronjob = "---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: \"0 3 * * *\"\n  suspend: true\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: job, image: \"busybox:1\"}]\n".to_owned();
    let hpa = "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: ghost}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ghost}\n  minReplicas: 1\n  maxReplicas: 3\n  metrics:\n  - {type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}}\n".to_owned();
    let pdb = |name: &str, min: u32| {
        format!(
            "{}---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: {name}}}\nspec:\n  minAvailable: {min}\n  selector: {{matchLabels: {{app: {name}}}}}\n",
            deployment(name, 1, "")
        )
    };
    let certificate = "---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: tls}\nspec: {secretName: tls, dnsNames: [web.example.com]}\n".to_owned();
    let cert = ("cert-manager.io/v1", "certificates", "tls");
    let cases: Vec<(&str, String, Vec<Step>)> = vec![
        (
            "ingress",
            ingress,
            vec![
                step(Expect::Waiting("ingress has no address yet")),
                status_then(
                    ("networking.k8s.io/v1", "ingresses", "web"),
                    json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}),
                    Expect::Ready,
                ),
            ],
        ),
        (
            "cronjob",
            cronjob,
            vec![
                step(Expect::Ready),
                status_then(
                    ("batch/v1", "cronjobs", "nightly"),
                    json!({"lastScheduleTime": "2026-11-29T03:00:00Z"}),
                    Expect::Failed("the run scheduled at 2026-11-29T03:00:00Z did not succeed"),
                ),
                status_then(
                    ("batch/v1", "cronjobs", "nightly"),
                    json!({"lastSuccessfulTime": "2026-11-29T03:00:09Z"}),
                    Expect::Ready,
                ),
            ],
        ),
        (
            // The cluster's own HPA controller finds no Deployment to scale.
            "hpa",
            hpa,
            vec![step(Expect::Failed("cannot scale (FailedGetScale)"))],
        ),
        // The cluster's disruption controller counts the Deployment's pods.
        ("pdb-met", pdb("guarded", 1), vec![step(Expect::Ready)]),
        (
            "pdb-unmet",
            pdb("thin", 2),
            vec![step(Expect::Waiting("1 of 2 pods healthy"))],
        ),
        (
            "certificate",
            certificate,
            vec![
                step(Expect::Waiting("no Ready condition yet")),
                status_then(
                    cert,
                    json!({"conditions": [{"type": "Issuing", "status": "False",
                        "reason": "Failed", "message": "the ACME order was refused"}]}),
                    Expect::Failed("issuing failed: the ACME order was refused"),
                ),
                status_then(
                    cert,
                    json!({"conditions": [{"type": "Ready", "status": "True",
                        "reason": "Ready", "message": "up to date"}]}),
                    Expect::Ready,
                ),
            ],
        ),
    ];
    for (name, yaml, _) in &cases {
        h.create_sync(n, name, json!({"wait": true, "timeout": "10m"}))
            .await;
        h.render(n, name, yaml).await;
    }
    for (name, _, steps) in &cases {
        for (i, st) in steps.iter().enumerate() {
            if let Some(status) = &st.status {
                write_status(&h, n, status).await;
            }
            let what = format!("{name} step {i}");
            match st.expect {
                Expect::Ready => {
                    h.wait_sync(n, name, &what, is_ready).await;
                }
                Expect::Waiting(text) => {
                    h.wait_sync(n, name, &what, |s| {
                        condition(s, "Ready").is_some_and(|c| c.reason == "Progressing")
                            && ready_message(s).contains(text)
                    })
                    .await;
                }
                Expect::Failed(text) => {
                    h.wait_sync(n, name, &what, |s| {
                        condition(s, "Ready")
                            .is_some_and(|c| c.status == "False" && c.reason == "HealthCheckFailed")
                            && ready_message(s).contains(text)
                    })
                    .await;
                }
            }
        }
    }
}
