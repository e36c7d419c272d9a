//! `plumb ui` when the URL the render controller advertises for a Sync's rendered objects is an
//! in-cluster Service name that does not resolve where `plumb ui` runs, and the API server's
//! proxy of that Service cannot reach an artifact server either: the page says what it tried
//! (the URL, the Service, the proxy path), why each failed, and what would help, at once (the
//! proxy's "no endpoints" answer is not retried for minutes).
//!
//! The way that works (download through the proxy) needs an endpoint backed by a Pod whose IP
//! the API server can reach; the local cluster's nodes are simulated (kwok), so its Pods have
//! no network. `ui::intent`'s unit test checks the proxy path, the artifact server's test the
//! token header the proxy passes on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams, PostParams};
use plumb_api::{SYNC_FIELD_MANAGER, SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL, Sync};
use plumb_artifact::ArtifactToken;
use plumb_artifact::fetch::digest_of;
use plumb_e2e_support::{TestNamespace, Ui, kubeconfig_path, wait_for};
use serde_json::json;

/// Bound on the page showing what it will show (a failure bound, not a timing assertion).
const PAGE: Duration = Duration::from_secs(90);

/// Waits until the Sync page `name` satisfies `ok`; returns it.
async fn page_shows(ui: &Ui, name: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let http = reqwest::Client::new();
    let url = format!("{}/sync/{}", ui.url(), name);
    let get = || async { http.get(&url).send().await?.text().await };
    let found = wait_for(what, PAGE, || async {
        let page = get().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(ok(&page).then_some(page))
    })
    .await;
    match found {
        Ok(page) => page,
        Err(e) => panic!("{e}\npage now:\n{}", get().await.unwrap_or_default()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ui_says_what_it_tried_when_neither_the_url_nor_the_service_proxy_works() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ns = TestNamespace::new("ui-proxy").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let name = ns.name().to_owned();
    let token = ArtifactToken::generate().unwrap();

    // The controllers' token Secret, the ConfigMap as the sync controller applied it, and a
    // Service without endpoints (as when the render controller is not running).
    let labels = json!({ SYNC_NAME_LABEL: "app", SYNC_NAMESPACE_LABEL: name });
    ns.apply_yaml(
        &format!(
            "apiVersion: v1
kind: Service
metadata:
  name: render-controller
  namespace: {name}
spec:
  selector: {{ app: no-such-pod }}
  ports:
    - {{ name: http, port: 80, targetPort: 9090 }}
---
apiVersion: v1
kind: Secret
metadata:
  name: artifact-token
  namespace: {name}
stringData:
  token: {token_value}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: {name}
  labels: {labels}
data:
  value: one
",
            token_value = token_text(&token),
        ),
        SYNC_FIELD_MANAGER,
    )
    .await
    .unwrap();

    // Two Syncs that applied it, their artifacts advertised at the Service's cluster DNS name
    // (one with the cluster domain, as a flag may give it) and at a Service that does not exist.
    let syncs: Api<Sync> = ns.api();
    let digest = digest_of(b"rendered");
    let file = format!("{}.yaml.gz", digest.hex());
    let cases = [
        ("app", format!("render-controller.{name}.svc")),
        ("lost", format!("nothing.{name}.svc.cluster.local")),
    ];
    for (sync, host) in &cases {
        let object: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "metadata": { "name": sync },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "app" }, "path": "./app" }
        }))
        .unwrap();
        syncs.create(&PostParams::default(), &object).await.unwrap();
        let status = json!({ "apiVersion": "sync.plumb.dev/v1", "kind": "Sync", "status": {
            "inventory": [{ "id": format!("{name}_settings__ConfigMap"), "v": "v1" }],
            "render": { "artifact": {
                "revision": "main@sha1:0123456789abcdef0123456789abcdef01234567",
                "digest": digest.as_str(), "url": format!("http://{host}/sync/{name}/{sync}/{file}"),
                "lastUpdateTime": "2026-11-29T12:00:00Z"
            } }
        } });
        syncs
            .patch_status(
                sync,
                &PatchParams::apply(SYNC_FIELD_MANAGER).force(),
                &Patch::Apply(&status),
            )
            .await
            .unwrap();
    }

    let ui = Ui::start(
        Path::new(env!("CARGO_BIN_EXE_plumb")),
        &name,
        &kubeconfig_path(),
        &[format!("--artifact-token-secret={name}/artifact-token")],
        None,
    )
    .unwrap();
    let expectations = [
        ("render-controller", "no endpoints available for service"),
        ("nothing", "not found"),
    ];
    for ((sync, host), (service, proxy_answer)) in cases.iter().zip(expectations) {
        // The Service's Endpoints appear a moment after it: until then the proxy answers
        // "not found", and the page says so until its next attempt.
        let page = page_shows(
            &ui,
            &format!("{name}/{sync}"),
            &format!("the problem of Sync {sync}"),
            |page| {
                page.contains(&format!("proxy of Service {name}/{service}"))
                    && page.contains(proxy_answer)
            },
        )
        .await;
        let problem = page
            .split("<strong>rendered objects</strong>")
            .nth(1)
            .and_then(|rest| rest.split("</li>").next())
            .unwrap_or_else(|| panic!("no problem about the rendered objects:\n{page}"))
            .to_owned();
        for expected in [
            format!("http://{host}/sync/{name}/{sync}/{file}"),
            format!(
                "/api/v1/namespaces/{name}/services/{service}:80/proxy/sync/{name}/{sync}/{file}"
            ),
            proxy_answer.to_owned(),
            format!("run it where {host} resolves"),
            format!("get services/proxy in namespace {name}"),
        ] {
            assert!(problem.contains(&expected), "{expected:?} in {problem}");
        }
    }
    // The objects are still listed, with their health, just not compared.
    let page = page_shows(
        &ui,
        &format!("{name}/app"),
        "the objects of Sync app",
        |page| {
            page.split(&format!("data-object=\"{name}_settings__ConfigMap\""))
                .nth(1)
                .is_some_and(|cells| cells.contains("Not compared"))
        },
    )
    .await;
    assert!(page.contains("Current"), "{page}");
}

/// The token's text, for the Secret (the token hides it from `Debug`; its header shows it).
fn token_text(token: &ArtifactToken) -> String {
    token.plain_header().to_str().unwrap().to_owned()
}
