//! `plumb import --from-cluster` against the real API server with Flux's own CRDs (as released
//! in the source-controller and kustomize-controller modules `e2e/flux/` pins): Flux
//! GitRepository and Kustomization objects in a test namespace, stored (and defaulted) by the
//! API server as a Flux installation holds them, become the plumb objects that do the same,
//! with one warning per field plumb does not have; `--suspend-flux` suspends exactly the Flux
//! objects that were replaced, and only when asked; a second import after the move gives the
//! same plumb objects. The objects written are then applied and reconcile to Ready against the
//! test's git server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use plumb_api::Sync;
use plumb_e2e_scenarios::{Controllers, GitFixture, SCOPE_LABEL, plumb_binary};
use plumb_e2e_support::{TestNamespace, install_crds, install_flux_crds, kubeconfig_path};
use serde_json::{Value, json};

/// How long the imported Sync may take to be Ready (a failure bound, not a timing assertion).
const READY_WITHIN: Duration = Duration::from_secs(120);

/// The annotation `--suspend-flux` puts on each Flux object it suspends.
const SUSPENDED_BY: &str = "plumb.dev/suspended-by";

/// What one run of `plumb import` printed.
struct Run {
    /// Standard output: the plumb objects.
    stdout: String,
    /// The `warning:` lines, without the prefix.
    warnings: BTreeSet<String>,
    /// Standard error, whole.
    stderr: String,
}

impl Run {
    fn objects(&self) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(&self.stdout)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| v.is_object())
            .collect()
    }
}

/// Runs `plumb import ARGS` as a user would, with the test cluster's kubeconfig.
fn plumb_import(args: &[&str]) -> Run {
    let out = Command::new(plumb_binary().unwrap())
        .arg("import")
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "plumb import {args:?} failed:\n{stderr}"
    );
    Run {
        stdout: String::from_utf8(out.stdout).unwrap(),
        warnings: stderr
            .lines()
            .filter_map(|l| l.strip_prefix("warning: "))
            .map(str::to_owned)
            .collect(),
        stderr,
    }
}

fn flux_api(
    client: &kube::Client,
    ns: &str,
    group: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// `spec.suspend` and the `--suspend-flux` annotation of a Flux object.
async fn suspension(api: &Api<DynamicObject>, name: &str) -> (bool, Option<String>) {
    let o = api.get(name).await.unwrap();
    let suspended = o.data["spec"]["suspend"].as_bool().unwrap_or(false);
    let by = o
        .metadata
        .annotations
        .unwrap_or_default()
        .get(SUSPENDED_BY)
        .cloned();
    (suspended, by)
}

#[tokio::test(flavor = "multi_thread")]
async fn import_from_the_cluster_converts_flux_objects_and_suspends_them_only_when_asked() {
    let ns = TestNamespace::new("e2e-flux-import").await.unwrap();
    let other = TestNamespace::new("e2e-flux-import-other").await.unwrap();
    let name = ns.name().to_owned();
    install_crds(ns.client()).await.unwrap();
    install_flux_crds(ns.client()).await.unwrap();

    // The repository Flux reconciled: a plain directory with substitution.
    let git = GitFixture::new().await.unwrap();
    git.write(
        "apps/web/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  cluster: ${cluster}\n  region: ${region}\n  tier: ${tier:=frontend}\n",
    )
    .unwrap();
    let commit = git.commit("the app").unwrap();

    // Flux's objects, as a user's cluster holds them (the API server applies Flux's schema and
    // its defaults: `timeout: 60s`, `force: false`, `optional: false`).
    let url = git.url();
    ns.apply_yaml(
        &format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: cluster-vars}}
data: {{region: eu-west-1}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {{name: fleet}}
spec:
  url: {url}
  interval: 1m0s
  ref: {{branch: main}}
  recurseSubmodules: true
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: web
  labels: {{{SCOPE_LABEL}: {name}, kustomize.toolkit.fluxcd.io/name: flux-system, kustomize.toolkit.fluxcd.io/namespace: flux-system}}
spec:
  interval: 10m
  sourceRef: {{kind: GitRepository, name: fleet}}
  path: ./apps/web
  prune: true
  wait: true
  targetNamespace: {name}
  namePrefix: prod-
  commonMetadata: {{labels: {{team: web}}}}
  postBuild:
    substitute: {{cluster: prod}}
    substituteFrom: [{{kind: ConfigMap, name: cluster-vars}}]
  kubeConfig: {{secretRef: {{name: remote-cluster}}}}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: paused}}
spec:
  interval: 10m
  suspend: true
  sourceRef: {{kind: GitRepository, name: fleet}}
  path: ./apps/web
  prune: false
  namePrefix: paused-
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: charts}}
spec:
  interval: 10m
  sourceRef: {{kind: OCIRepository, name: charts}}
  prune: true
"#
        ),
        "flux-user",
    )
    .await
    .unwrap();
    other
        .apply_yaml(
            &format!(
                "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: elsewhere}}\nspec: {{url: {url}, interval: 5m}}\n"
            ),
            "flux-user",
        )
        .await
        .unwrap();

    let (source, kustomize) = ("source.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io");
    let client = ns.client();
    let repos = flux_api(client, &name, source, "GitRepository", "gitrepositories");
    let kustomizations = flux_api(client, &name, kustomize, "Kustomization", "kustomizations");
    let elsewhere = flux_api(
        client,
        other.name(),
        source,
        "GitRepository",
        "gitrepositories",
    );

    // The plumb objects: every field carried over with Flux's meaning (the server's defaults
    // included), the labels kept, the rest named in a warning.
    let expected = [
        json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": {"name": "fleet", "namespace": name},
            "spec": {"url": url, "interval": "1m0s", "timeout": "60s", "ref": {"branch": "main"}},
        }),
        json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "paused", "namespace": name},
            "spec": {
                "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                "path": "./apps/web", "interval": "10m", "prune": false, "suspend": true,
                "force": false, "namePrefix": "paused-",
            },
        }),
        json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "web", "namespace": name, "labels": {SCOPE_LABEL: name}},
            "spec": {
                "sourceRef": {"kind": "GitRepository", "name": "fleet"},
                "path": "./apps/web", "interval": "10m", "prune": true, "wait": true,
                "force": false, "targetNamespace": name, "namePrefix": "prod-",
                "commonMetadata": {"labels": {"team": "web"}},
                "substitute": {"cluster": "prod"},
                "substituteFrom": [{"kind": "ConfigMap", "name": "cluster-vars", "optional": false}],
            },
        }),
    ];
    let expected_warnings = BTreeSet::from([
        format!(
            "GitRepository {name}/fleet: spec.recurseSubmodules has no plumb equivalent; left out"
        ),
        format!("Kustomization {name}/web: spec.kubeConfig has no plumb equivalent; left out"),
        format!(
            "Kustomization {name}/charts: not imported: its source is an OCIRepository; plumb syncs from GitRepositories only"
        ),
    ]);

    // Without --suspend-flux: the objects and warnings, and Flux's objects left alone.
    let first = plumb_import(&["--from-cluster", "-n", &name]);
    assert_eq!(first.objects(), expected, "{}", first.stdout);
    assert_eq!(first.warnings, expected_warnings, "{}", first.stderr);
    for k in ["web", "paused", "charts"] {
        let want = (k == "paused", None);
        assert_eq!(
            suspension(&kustomizations, k).await,
            want,
            "Kustomization {k}"
        );
    }
    assert_eq!(suspension(&repos, "fleet").await, (false, None));

    // -n reads one namespace; -A every one (other tests' Flux objects may be there too).
    let everywhere = plumb_import(&["--from-cluster", "-A"]);
    let found: BTreeSet<(String, String)> = everywhere
        .objects()
        .iter()
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap().to_owned(),
                o["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (n, o) in [
        (name.as_str(), "fleet"),
        (name.as_str(), "web"),
        (other.name(), "elsewhere"),
    ] {
        assert!(
            found.contains(&(n.to_owned(), o.to_owned())),
            "-A imports {n}/{o}: {found:?}"
        );
    }
    assert!(
        !first.stdout.contains("elsewhere"),
        "-n {name} imported another namespace's object"
    );

    // With --suspend-flux: the same output, and exactly the replaced objects suspended (the
    // one the user had suspended is left as it was, the one not imported is not touched).
    let second = plumb_import(&["--from-cluster", "-n", &name, "--suspend-flux"]);
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(second.warnings, expected_warnings, "{}", second.stderr);
    let by = Some("plumb import".to_owned());
    assert_eq!(suspension(&repos, "fleet").await, (true, by.clone()));
    assert_eq!(suspension(&kustomizations, "web").await, (true, by.clone()));
    assert_eq!(suspension(&kustomizations, "paused").await, (true, None));
    assert_eq!(suspension(&kustomizations, "charts").await, (false, None));
    assert_eq!(suspension(&elsewhere, "elsewhere").await, (false, None));
    for line in [
        format!("suspended Flux GitRepository {name}/fleet"),
        format!("suspended Flux Kustomization {name}/web"),
    ] {
        assert!(second.stderr.contains(&line), "{}", second.stderr);
    }

    // Imported again after the move: what `--suspend-flux` suspended is not carried over as
    // suspended (the plumb objects would never reconcile), what the user suspended still is.
    let third = plumb_import(&["--from-cluster", "-n", &name, "--suspend-flux"]);
    assert_eq!(third.stdout, first.stdout);
    assert_eq!(suspension(&kustomizations, "web").await, (true, by));

    // The plumb objects reconcile: the Sync is Ready at the commit, its object as Flux builds it.
    let controllers = Controllers::start(&name).unwrap();
    ns.apply_yaml(&first.stdout, "plumb-e2e").await.unwrap();
    let syncs: Api<Sync> = ns.api();
    controllers
        .wait_ready_at(&syncs, "web", &commit, READY_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let settings: ConfigMap = ns.api().get("prod-settings").await.unwrap();
    assert_eq!(
        json!(settings.data.unwrap()),
        json!({"cluster": "prod", "region": "eu-west-1", "tier": "frontend"})
    );
    assert_eq!(settings.metadata.labels.unwrap()["team"], "web");
    drop(controllers);
}
