//! The test cluster is a real Kubernetes control plane: the pinned release
//! answers, controllers and the scheduler act, kwok runs Pods, server-side apply
//! records field managers, and namespaces are finalized.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use plumb_e2e_support::{TestNamespace, client, pinned_kubernetes_version, wait_for};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example/web:1.0
        resources:
          requests: {cpu: 100m, memory: 64Mi}
"#;

#[tokio::test]
async fn server_version_is_the_pinned_release() {
    let client = client().await.unwrap();
    let info = client.apiserver_version().await.unwrap();
    assert!(
        pinned_kubernetes_version().starts_with("v1."),
        "pinned: {:?}",
        pinned_kubernetes_version()
    );
    assert_eq!(info.git_version, pinned_kubernetes_version());
}

#[tokio::test]
async fn deployment_with_two_replicas_becomes_available_on_kwok_nodes() {
    let ns = TestNamespace::new("deployment").await.unwrap();
    ns.apply_yaml(DEPLOYMENT, "plumb-test").await.unwrap();

    let deployments: Api<Deployment> = ns.api();
    let ready = wait_for(
        "deployment web to be Available with 2 ready replicas",
        Duration::from_secs(120),
        || {
            let deployments = deployments.clone();
            async move {
                let deployment = deployments.get("web").await?;
                let status = deployment.status.unwrap_or_default();
                let available = status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Available" && c.status == "True");
                let ready = status.ready_replicas.unwrap_or(0);
                Ok::<_, kube::Error>((available && ready == 2).then_some(ready))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(ready, 2);

    // The scheduler bound the Pods to fake nodes and kwok reports them Running.
    let pods: Api<Pod> = ns.api();
    let pods = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2);
    for pod in pods {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(
            node.starts_with("plumb-node-"),
            "pod {} on node {node:?}",
            pod.name_any()
        );
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        assert_eq!(phase.as_deref(), Some("Running"), "pod {}", pod.name_any());
    }
}

#[tokio::test]
async fn server_side_apply_records_the_field_manager() {
    let ns = TestNamespace::new("ssa").await.unwrap();
    let yaml =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n";
    let applied = ns.apply_yaml(yaml, "plumb-test").await.unwrap();
    assert_eq!(applied.len(), 1);

    let config_maps: Api<ConfigMap> = ns.api();
    let stored = config_maps.get("settings").await.unwrap();
    assert_eq!(
        stored
            .data
            .unwrap_or_default()
            .get("color")
            .map(String::as_str),
        Some("blue")
    );
    let managers: Vec<_> = stored
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            (
                m.manager.unwrap_or_default(),
                m.operation.unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("plumb-test".to_owned(), "Apply".to_owned())),
        "managedFields: {managers:?}"
    );
}

#[tokio::test]
async fn deleted_namespace_is_finalized_with_its_content() {
    let ns = TestNamespace::new("delete").await.unwrap();
    let name = ns.name().to_owned();
    let client = ns.client().clone();
    ns.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: content}\n",
        "plumb-test",
    )
    .await
    .unwrap();
    // The ServiceAccount controller fills every namespace; wait for it so the
    // namespace controller has more than one kind to remove.
    let service_accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), &name);
    wait_for(
        "ServiceAccount default in the test namespace",
        Duration::from_secs(60),
        || {
            let service_accounts = service_accounts.clone();
            async move { service_accounts.get_opt("default").await }
        },
    )
    .await
    .unwrap();

    ns.delete().await.unwrap();

    let namespaces: Api<Namespace> = Api::all(client);
    wait_for(&format!("namespace {name} to be gone"), Duration::from_secs(60), || {
        let namespaces = namespaces.clone();
        let name = name.clone();
        async move { Ok::<_, kube::Error>(namespaces.get_opt(&name).await?.is_none().then_some(())) }
    })
    .await
    .unwrap();
}
