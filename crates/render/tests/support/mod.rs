//! Harness for the render controller's cluster tests: CRDs, an in-process controller watching
//! only this test's Syncs, a loopback server for source artifacts, and status helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Display;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use plumb_api::{Digest, GitRepository, Policy, Sync};
use plumb_artifact::FileEntry;
use plumb_e2e_support::{ControllerTask, FileServer, TestNamespace, wait_for_while};
use serde_json::{Value, json};

/// Label every Sync of a test carries (the shard label, valued with the test's namespace): the
/// test's controller renders only those, and controllers running unsharded leave them alone.
pub const RUN_LABEL: &str = plumb_ops::SHARD_LABEL;

pub const TIMEOUT: Duration = Duration::from_secs(60);

/// One test's world: its namespace, a running render controller, and a source artifact server.
pub struct World {
    pub ns: TestNamespace,
    pub client: Client,
    /// Serves the source artifacts, as the source controller would.
    pub files: FileServer,
    controller: OnceLock<ControllerTask>,
    /// The running controller's metrics.
    metrics: OnceLock<plumb_ops::Metrics>,
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
        plumb_e2e_support::install_crds(&client).await.unwrap();
        let storage = tempfile::tempdir().unwrap();
        let files = FileServer::start().await.unwrap();
        World {
            ns,
            client,
            files,
            controller: OnceLock::new(),
            metrics: OnceLock::new(),
            _storage: storage,
        }
    }

    /// Starts this test's render controller, with `tweak` applied to the test configuration;
    /// returns once its caches are in (a controller that cannot start fails the test here), and
    /// a later failure fails the test's next wait at once.
    pub async fn start_controller(
        &self,
        tweak: impl FnOnce(plumb_render::Config) -> plumb_render::Config,
    ) {
        let config = tweak(plumb_render::Config {
            max_artifact_size: 16 << 20,
            fetch_timeout: Duration::from_secs(10),
            // No sync controller runs here to apply what a commit changed: the Syncs it left
            // unchanged are moved on at once unless a test plays the sync controller.
            apply_first_timeout: Duration::ZERO,
            scope: plumb_ops::WatchScope::shard(self.ns.name()),
            ..plumb_render::Config::local(self._storage.path().to_owned())
        });
        let runtime = plumb_ops::Runtime::with_client(
            self.client.clone(),
            plumb_e2e_support::kube_config().await.unwrap(),
            Default::default(),
        )
        .unwrap();
        let _ = self.metrics.set(runtime.metrics().clone());
        let rt = runtime.clone();
        let handle = runtime
            .spawn(async move { plumb_render::run(&rt, config).await })
            .await
            .expect("render controller starts");
        // Its error or panic after the start fails the test's next wait at once.
        let task = ControllerTask::spawn("render controller", async move {
            match handle.await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(join) => Err(join.to_string()),
            }
        });
        assert!(
            self.controller.set(task).is_ok(),
            "the render controller was started twice"
        );
    }

    /// Waits until `condition` returns `Ok(Some(value))` (at most `timeout`) and returns the
    /// value; fails the test at once if the controller stopped, and with `what` on a time-out.
    pub async fn wait<T, E, F, Fut>(&self, what: &str, timeout: Duration, condition: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: Display,
    {
        let running: Vec<&ControllerTask> = self.controller.get().into_iter().collect();
        wait_for_while(what, timeout, &running, condition)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The value of the controller's counter or gauge `name` (as exposed, `plumb_` prefix and
    /// `_total` suffix included); 0 before it counted anything.
    pub fn counter(&self, name: &str) -> f64 {
        let text = self.metrics.get().expect("controller started").encode();
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .next()
            .unwrap_or(0.0)
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
        let file = format!("/{}.tar.gz", actual.hex());
        self.files.put(&file, bytes.clone());

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
                "url": self.files.url(&file),
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
        let file = format!("/hang-{repo}.tar.gz");
        self.files.hang(&file);
        let status = json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository", "metadata": meta,
            "status": {"artifact": {
                "revision": format!("main@sha1:{}", "9".repeat(40)),
                "digest": format!("sha256:{}", "9".repeat(64)),
                "url": self.files.url(&file),
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

    /// Applies a cluster-scoped Policy that governs only this test's Syncs; it is deleted with
    /// the test's namespace.
    pub async fn apply_policy(&self, name: &str, rules: Value) {
        self.ns
            .apply_cluster::<Policy>(json!({
                "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
                "metadata": {"name": name},
                "spec": {
                    // The test's namespace: tenants cannot relabel their Syncs out of it.
                    "selector": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.name()}}},
                    "rules": rules,
                },
            }))
            .await
            .unwrap();
    }

    /// Waits until `check` accepts the Sync, returning it.
    pub async fn wait_sync(&self, name: &str, what: &str, check: impl Fn(&Sync) -> bool) -> Sync {
        let api: Api<Sync> = self.ns.api();
        self.wait(what, TIMEOUT, || {
            let api = api.clone();
            let check = &check;
            async move {
                let s = api.get(name).await?;
                Ok::<_, kube::Error>(check(&s).then_some(s))
            }
        })
        .await
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

/// A Deployment manifest with `image`.
pub fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n        - name: app\n          image: {image}\n"
    )
}

pub fn unique(prefix: &str, ns: &str) -> String {
    format!("{prefix}-{ns}")
}
