//! Harness for the render controller's cluster tests: CRDs, an in-process controller watching
//! only this test's Syncs, a loopback server for source artifacts, and status helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use plumb_api::{Digest, GitRepository, Policy, Sync};
use plumb_artifact::FileEntry;
use plumb_e2e_support::{TestNamespace, wait_for};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Label every Sync of a test carries (the shard label, valued with the test's namespace): the
/// test's controller renders only those, and controllers running unsharded leave them alone.
pub const RUN_LABEL: &str = plumb_ops::SHARD_LABEL;

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Applies the plumb CRDs once per process and waits until they are Established.
pub async fn crds(client: &Client) {
    static DONE: OnceCell<()> = OnceCell::const_new();
    // Each test has its own runtime and client; the CRDs only need applying once.
    let client = client.clone();
    DONE.get_or_init(|| async move {
        let api: Api<CustomResourceDefinition> = Api::all(client);
        for crd in plumb_api::crd::all() {
            let name = crd.name_any();
            api.patch(
                &name,
                &PatchParams::apply("plumb-render-test").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap();
            wait_for(&format!("CRD {name} Established"), TIMEOUT, || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await?;
                    let ok = crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    Ok::<_, kube::Error>(ok.then_some(()))
                }
            })
            .await
            .unwrap();
        }
    })
    .await;
}

/// One test's world: its namespace, a running render controller, and a source artifact server.
pub struct World {
    pub ns: TestNamespace,
    pub client: Client,
    pub files: Files,
    pub source_base: String,
    _storage: tempfile::TempDir,
}

impl World {
    pub async fn new(prefix: &str) -> World {
        Self::with_config(prefix, |c| c).await
    }

    /// A world whose controller runs with `tweak` applied to the test configuration.
    pub async fn with_config(
        prefix: &str,
        tweak: impl FnOnce(plumb_render::Config) -> plumb_render::Config,
    ) -> World {
        let w = Self::without_controller(prefix).await;
        w.start_controller(tweak).await;
        w
    }

    /// The namespace and the source server, with no render controller running yet.
    pub async fn without_controller(prefix: &str) -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .try_init();
        let ns = TestNamespace::new(prefix).await.unwrap();
        let client = ns.client().clone();
        crds(&client).await;
        let storage = tempfile::tempdir().unwrap();

        let files: Files = Arc::default();
        let app = axum::Router::new()
            .route("/{file}", get(serve))
            .with_state(files.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let source_base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        World {
            ns,
            client,
            files,
            source_base,
            _storage: storage,
        }
    }

    /// Starts this test's render controller, with `tweak` applied to the test configuration;
    /// returns once its caches are in (a controller that cannot start fails the test here).
    pub async fn start_controller(
        &self,
        tweak: impl FnOnce(plumb_render::Config) -> plumb_render::Config,
    ) {
        let config = tweak(plumb_render::Config {
            max_artifact_size: 16 << 20,
            fetch_timeout: Duration::from_secs(10),
            scope: plumb_ops::WatchScope::shard(self.ns.name()),
            ..plumb_render::Config::local(self._storage.path().to_owned())
        });
        let runtime = plumb_ops::Runtime::with_client(
            self.client.clone(),
            plumb_e2e_support::kube_config().await.unwrap(),
            Default::default(),
        )
        .unwrap();
        let rt = runtime.clone();
        runtime
            .spawn(async move { plumb_render::run(&rt, config).await })
            .await
            .expect("render controller starts");
    }

    pub fn name(&self) -> &str {
        self.ns.name()
    }

    /// Publishes `tree` (path → content) as a source artifact of GitRepository `repo`, exactly as
    /// the source controller does: a deterministic tar.gz served over HTTP and `status.artifact`.
    /// `digest` overrides the published digest (to test verification).
    pub async fn publish_source(
        &self,
        repo: &str,
        commit: char,
        tree: &[(&str, &str)],
        digest: Option<Digest>,
    ) -> Digest {
        let entries = tree
            .iter()
            .map(|(p, c)| FileEntry {
                path: (*p).to_owned(),
                executable: false,
                handle: c.as_bytes().to_vec(),
            })
            .collect();
        let bytes =
            plumb_artifact::write_tar_gz(Vec::new(), entries, |h: &Vec<u8>| Ok(h.clone())).unwrap();
        let actual = plumb_artifact::fetch::digest_of(&bytes);
        let file = format!("{}.tar.gz", actual.hex());
        self.files
            .lock()
            .unwrap()
            .insert(file.clone(), bytes.clone());

        let repos: Api<GitRepository> = self.ns.api();
        repos
            .patch(
                repo,
                &PatchParams::apply("plumb-render-test").force(),
                &Patch::Apply(json!({
                    "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
                    "metadata": {"name": repo},
                    "spec": {"url": "https://git.example.invalid/app.git", "interval": "1m"},
                })),
            )
            .await
            .unwrap();
        let published = digest.unwrap_or(actual.clone());
        let status = json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": {"name": repo},
            "status": {"artifact": {
                "revision": format!("main@sha1:{}", commit.to_string().repeat(40)),
                "digest": published,
                "url": format!("{}/{file}", self.source_base),
                "size": bytes.len(),
                "lastUpdateTime": jiff::Timestamp::now().to_string(),
            }},
        });
        repos
            .patch_status(
                repo,
                &PatchParams::apply(plumb_api::SOURCE_FIELD_MANAGER).force(),
                &Patch::Apply(status),
            )
            .await
            .unwrap();
        actual
    }

    /// Points GitRepository `repo` at an artifact whose server never answers.
    pub async fn publish_hanging_source(&self, repo: &str) {
        let repos: Api<GitRepository> = self.ns.api();
        let params = PatchParams::apply("plumb-render-test").force();
        let meta = json!({"name": repo});
        repos
            .patch(
                repo,
                &params,
                &Patch::Apply(json!({
                    "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository", "metadata": meta,
                    "spec": {"url": "https://git.example.invalid/app.git"},
                })),
            )
            .await
            .unwrap();
        let status = json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository", "metadata": meta,
            "status": {"artifact": {
                "revision": format!("main@sha1:{}", "9".repeat(40)),
                "digest": format!("sha256:{}", "9".repeat(64)),
                "url": format!("{}/hang-{repo}.tar.gz", self.source_base),
                "lastUpdateTime": jiff::Timestamp::now().to_string(),
            }},
        });
        repos
            .patch_status(
                repo,
                &PatchParams::apply(plumb_api::SOURCE_FIELD_MANAGER).force(),
                &Patch::Apply(status),
            )
            .await
            .unwrap();
    }

    /// Applies a Sync of `repo` labelled for this test's controller; `spec` is merged over
    /// `{sourceRef, path}`.
    pub async fn apply_sync(&self, name: &str, repo: &str, spec: Value) {
        let mut full = json!({"sourceRef": {"kind": "GitRepository", "name": repo}, "path": "./"});
        merge(&mut full, spec);
        let api: Api<Sync> = self.ns.api();
        api.patch(
            name,
            &PatchParams::apply("plumb-render-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
                "metadata": {"name": name, "labels": {RUN_LABEL: self.name()}},
                "spec": full,
            })),
        )
        .await
        .unwrap();
    }

    /// Applies a cluster-scoped Policy that governs only this test's Syncs.
    pub async fn apply_policy(&self, name: &str, rules: Value) {
        let api: Api<Policy> = Api::all(self.client.clone());
        api.patch(
            name,
            &PatchParams::apply("plumb-render-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
                "metadata": {"name": name},
                "spec": {
                    // The test's namespace: tenants cannot relabel their Syncs out of it.
                    "selector": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.name()}}},
                    "rules": rules,
                },
            })),
        )
        .await
        .unwrap();
    }

    /// Waits until `check` accepts the Sync, returning it.
    pub async fn wait_sync(&self, name: &str, what: &str, check: impl Fn(&Sync) -> bool) -> Sync {
        let api: Api<Sync> = self.ns.api();
        wait_for(what, TIMEOUT, || {
            let api = api.clone();
            let check = &check;
            async move {
                let s = api.get(name).await?;
                Ok::<_, kube::Error>(check(&s).then_some(s))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until the Sync's Rendered condition has `status` and `reason` for its generation.
    pub async fn wait_rendered(&self, name: &str, status: &str, reason: &str) -> Sync {
        self.wait_sync(
            name,
            &format!("Sync {name} Rendered={status} ({reason})"),
            |s| {
                rendered(s).is_some_and(|c| {
                    c.status == status
                        && c.reason == reason
                        && c.observed_generation == s.metadata.generation
                })
            },
        )
        .await
    }

    /// Downloads the Sync's rendered artifact, verifies its digest, and returns its objects.
    pub async fn rendered_objects(&self, sync: &Sync) -> Vec<Value> {
        let artifact = sync
            .status
            .as_ref()
            .unwrap()
            .render
            .as_ref()
            .unwrap()
            .artifact
            .clone()
            .unwrap();
        let bytes = reqwest::get(&artifact.url)
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        plumb_artifact::verify_digest(&bytes, &artifact.digest).unwrap();
        plumb_render::unpack(&bytes).unwrap()
    }

    pub async fn delete_policy(&self, name: &str) {
        let api: Api<Policy> = Api::all(self.client.clone());
        let _ = api.delete(name, &Default::default()).await;
    }
}

pub fn rendered(s: &Sync) -> Option<&Condition> {
    s.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Rendered")
}

pub fn names(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

async fn serve(
    State(files): State<Files>,
    Path(file): Path<String>,
) -> Result<Vec<u8>, StatusCode> {
    if file.starts_with("hang-") {
        // A source server that accepts the request and never answers.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    files
        .lock()
        .unwrap()
        .get(&file)
        .cloned()
        .ok_or(StatusCode::NOT_FOUND)
}

/// A Deployment manifest with `image`.
pub fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: app\n          image: {image}\n"
    )
}

pub fn unique(prefix: &str, ns: &str) -> String {
    format!("{prefix}-{ns}")
}

/// Source artifacts served by the test, by file name.
pub type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;
