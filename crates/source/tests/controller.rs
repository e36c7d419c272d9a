//! The source controller's reconcile loop against the real test apiserver (plumb-e2e-support)
//! and a real `git http-backend` on loopback. Each test runs its own controller instance,
//! watching only its own namespace, so the tests run in parallel.

// Test helpers panic on setup failures by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use plumb_api::{Conditions, GitRepository, REQUESTED_AT_ANNOTATION};
use plumb_e2e_support::{ControllerTask, TestNamespace, wait_for_while};
use plumb_ops::{Metrics, Runtime, WatchScope};
use plumb_source::Config;
use support::Upstream;

const WAIT: Duration = Duration::from_secs(60);

/// Applies the plumb CRDs (idempotent server-side apply) and waits until they are served.
async fn ensure_crds(client: &kube::Client) {
    plumb_e2e_support::install_crds(client)
        .await
        .expect("install CRDs");
}

fn free_addr() -> SocketAddr {
    plumb_e2e_support::free_addr().expect("a free loopback port")
}

/// A controller running in this process for one namespace.
struct Running {
    base_url: String,
    webhook: SocketAddr,
    metrics: Metrics,
    storage: tempfile::TempDir,
    namespace: String,
    runtime: Runtime,
    task: Option<ControllerTask>,
}

impl Drop for Running {
    /// A test that failed half-way still tears down as a user would: its GitRepositories are
    /// deleted while the controller runs, so their finalizer does not keep the namespace.
    fn drop(&mut self) {
        if self.task.as_ref().is_some_and(|t| t.check().is_ok())
            && let Err(e) = plumb_e2e_support::delete_plumb_objects_blocking(
                &plumb_e2e_support::kubeconfig_path(),
                &self.namespace,
                WAIT,
            )
        {
            eprintln!("tearing down {}: {e}", self.namespace);
        }
    }
}

impl Running {
    async fn start(ns: &TestNamespace) -> Self {
        let config = plumb_e2e_support::kube_config().await.unwrap();
        Self::start_as(ns, ns.client().clone(), config).await
    }

    /// A controller for `ns` whose requests go out as `client` (made from `kube_config`).
    async fn start_as(ns: &TestNamespace, client: kube::Client, kube_config: kube::Config) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        ensure_crds(ns.client()).await;
        let storage = tempfile::tempdir().unwrap();
        let artifact = free_addr();
        let base_url = format!("http://{artifact}");
        let mut config = Config::for_storage(storage.path().to_path_buf(), base_url.clone());
        config.artifact_addr = artifact;
        config.webhook_addr = free_addr();
        // Other controllers may share the test cluster: a shard of our own keeps them away.
        config.scope = WatchScope {
            namespace: Some(ns.name().to_owned()),
            ..WatchScope::shard(ns.name())
        };
        let webhook = config.webhook_addr;
        let runtime = Runtime::with_client(client, kube_config, Default::default()).unwrap();
        let metrics = runtime.metrics().clone();
        let rt = runtime.clone();
        let handle = runtime
            .spawn(async move { plumb_source::run(&rt, config).await })
            .await
            .expect("source controller starts");
        // Its error or panic after the start fails the test's next wait at once.
        let task = ControllerTask::spawn("source controller", async move {
            match handle.await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(join) => Err(join.to_string()),
            }
        });
        Self {
            base_url,
            webhook,
            metrics,
            storage,
            namespace: ns.name().to_owned(),
            runtime,
            task: Some(task),
        }
    }

    /// Waits (at most [`WAIT`]) until `condition` returns `Ok(Some(value))`; fails at once if
    /// the controller stopped.
    async fn wait<T, E, F, Fut>(&self, what: &str, condition: F) -> plumb_e2e_support::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: std::fmt::Display,
    {
        let running: Vec<&ControllerTask> = self.task.iter().collect();
        wait_for_while(what, WAIT, &running, condition).await
    }

    /// Deletes the GitRepository `name` and waits until it is gone: the running controller's
    /// finalizer removes its artifacts first, as for a user.
    async fn delete(&self, api: &Api<GitRepository>, name: &str) {
        api.delete(name, &DeleteParams::default()).await.unwrap();
        self.wait(&format!("GitRepository {name} deleted"), || {
            let api = api.clone();
            async move { Ok::<_, kube::Error>(api.get_opt(name).await?.is_none().then_some(())) }
        })
        .await
        .unwrap();
    }

    async fn stop(mut self) {
        self.runtime.shutdown();
        if let Some(task) = self.task.take() {
            task.stop()
                .await
                .expect("the source controller stops cleanly");
        }
    }
}

/// What most tests start with: their namespace, a controller of their own, and `up` served over
/// smart HTTP with basic auth (`bot`/`s3cret`), its credentials in the Secret `git-auth`.
struct Served {
    ns: TestNamespace,
    ctrl: Running,
    up: Upstream,
    server: support::GitServer,
}

impl Served {
    async fn start(prefix: &str, up: Upstream) -> Self {
        let ns = TestNamespace::new(prefix).await.unwrap();
        let ctrl = Running::start(&ns).await;
        let server = support::serve_basic(up.bare.parent().unwrap(), "bot", "s3cret").await;
        basic_auth_secret(&ns, "git-auth", "bot", "s3cret").await;
        Self {
            ns,
            ctrl,
            up,
            server,
        }
    }
}

/// Applies the Secret `name` with `string_data`.
async fn apply_secret(ns: &TestNamespace, name: &str, string_data: serde_json::Value) {
    let secret: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": name}, "stringData": string_data}),
    )
    .unwrap();
    ns.api::<Secret>()
        .patch(
            name,
            &PatchParams::apply("plumb-test").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

async fn basic_auth_secret(ns: &TestNamespace, name: &str, user: &str, password: &str) {
    let data = serde_json::json!({"username": user, "password": password});
    apply_secret(ns, name, data).await;
}

/// Applies the webhook Secret `name` holding `token`.
async fn webhook_secret(ns: &TestNamespace, name: &str, token: &str) {
    apply_secret(ns, name, serde_json::json!({"token": token})).await;
}

async fn create_repo(
    ns: &TestNamespace,
    name: &str,
    spec: serde_json::Value,
) -> Api<GitRepository> {
    let api: Api<GitRepository> = ns.api();
    let obj: GitRepository = serde_json::from_value(serde_json::json!({
        "apiVersion": "source.plumb.dev/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "labels": {plumb_ops::SHARD_LABEL: ns.name()}},
        "spec": spec,
    }))
    .unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .expect("create GitRepository");
    api
}

/// Waits until the GitRepository's artifact has `revision` and Ready is True.
async fn wait_revision(
    ctrl: &Running,
    api: &Api<GitRepository>,
    name: &str,
    revision: &str,
) -> GitRepository {
    ctrl.wait(&format!("{name} at {revision}"), || {
        let api = api.clone();
        let (name, revision) = (name.to_owned(), revision.to_owned());
        async move {
            let obj = api.get(&name).await?;
            let status = obj.status.clone().unwrap_or_default();
            let at = status
                .artifact
                .as_ref()
                .is_some_and(|a| a.revision.to_string() == revision);
            Ok::<_, kube::Error>((at && status.conditions.is_true("Ready")).then_some(obj))
        }
    })
    .await
    .unwrap()
}

async fn set_requested_at(api: &Api<GitRepository>, name: &str, value: &str) {
    let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn download_and_unpack(obj: &GitRepository) -> tempfile::TempDir {
    let artifact = obj
        .status
        .as_ref()
        .and_then(|s| s.artifact.clone())
        .unwrap();
    let client = reqwest::Client::new();
    let bytes = plumb_artifact::fetch_verified(&client, &artifact.url, &artifact.digest, 64 << 20)
        .await
        .expect("download verifies");
    assert_eq!(artifact.size, Some(bytes.len() as i64));
    let dir = tempfile::tempdir().unwrap();
    plumb_artifact::unpack_tar_gz(bytes.as_slice(), dir.path(), Default::default()).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn new_commit_yields_new_revision_and_digest_and_deletion_removes_artifacts() {
    let up = Upstream::new(&[
        ("app/cm.yaml", "kind: ConfigMap\n"),
        ("README.md", "docs\n"),
    ]);
    let Served {
        ns,
        ctrl,
        up,
        server,
    } = Served::start("source-commit", up).await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let api = create_repo(&ns, "app", serde_json::json!({
        "url": server.url("repo.git"), "interval": "1s", "secretRef": {"name": "git-auth"}, "ignore": "*.md\n",
    }))
    .await;

    let first = wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c1}")).await;
    let a1 = first.status.clone().unwrap().artifact.unwrap();
    // When the commit was made, as Git records it (committer time).
    let committed = |commit: &str| -> i64 {
        let seconds = support::git(&up.work, &["log", "-1", "--format=%ct", commit]);
        seconds.trim().parse().unwrap()
    };
    let commit_time = |obj: &GitRepository| obj.status.as_ref()?.commit_time.map(|t| t.as_second());
    assert_eq!(commit_time(&first), Some(committed(&c1)));
    assert!(
        a1.url.starts_with(&ctrl.base_url)
            && a1
                .url
                .ends_with(&format!("/gitrepository/{}/app/{c1}.tar.gz", ns.name())),
        "{}",
        a1.url
    );
    assert!(
        first
            .finalizers()
            .iter()
            .any(|f| f == plumb_source::controller::FINALIZER)
    );
    let tree = download_and_unpack(&first).await;
    assert_eq!(
        std::fs::read_to_string(tree.path().join("app/cm.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );
    assert!(
        !tree.path().join("README.md").exists(),
        "spec.ignore applied"
    );

    // A wrong digest is refused by the consumer side.
    let wrong: plumb_api::Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
    let err = plumb_artifact::fetch_verified(&reqwest::Client::new(), &a1.url, &wrong, 1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(err, plumb_artifact::FetchError::DigestMismatch { .. }),
        "{err}"
    );

    let c2 = up.commit(&[("app/cm.yaml", "kind: ConfigMap\ndata: {}\n")], "second");
    let second = wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c2}")).await;
    let a2 = second.status.clone().unwrap().artifact.unwrap();
    assert_ne!(a1.digest, a2.digest);
    assert_eq!(commit_time(&second), Some(committed(&c2)));
    assert_eq!(
        second.status.as_ref().unwrap().observed_generation,
        second.metadata.generation
    );

    let dir = ctrl
        .storage
        .path()
        .join("gitrepository")
        .join(ns.name())
        .join("app");
    assert!(dir.join(format!("{c2}.tar.gz")).is_file());
    api.delete("app", &DeleteParams::default()).await.unwrap();
    ctrl.wait("GitRepository app deleted", || {
        let api = api.clone();
        async move { Ok::<_, kube::Error>(api.get_opt("app").await?.is_none().then_some(())) }
    })
    .await
    .unwrap();
    assert!(!dir.exists(), "finalizer removed the artifacts");
    assert!(
        !ctrl
            .storage
            .path()
            .join(".cache/gitrepository")
            .join(ns.name())
            .join("app")
            .exists(),
        "and the cache"
    );
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_is_authentication_failed_and_the_old_artifact_stays() {
    let Served {
        ns,
        ctrl,
        up,
        server,
    } = Served::start("source-auth", Upstream::new(&[("a.yaml", "a: 1\n")])).await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let api = create_repo(
        &ns,
        "app",
        serde_json::json!({
            "url": server.url("repo.git"), "interval": "1h", "secretRef": {"name": "git-auth"},
        }),
    )
    .await;
    let good = wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c1}")).await;
    let artifact = good.status.unwrap().artifact.unwrap();

    basic_auth_secret(&ns, "git-auth", "bot", "wrong").await;
    up.commit(&[("a.yaml", "a: 2\n")], "second");
    set_requested_at(&api, "app", "now-1").await;
    let failed = ctrl
        .wait("Ready=False AuthenticationFailed", || {
            let api = api.clone();
            async move {
                let obj = api.get("app").await?;
                let status = obj.status.clone().unwrap_or_default();
                let ready = status.conditions.get_condition("Ready").cloned();
                Ok::<_, kube::Error>(
                    ready
                        .filter(|c| c.status == "False" && c.reason == "AuthenticationFailed")
                        .map(|_| status),
                )
            }
        })
        .await
        .unwrap();
    assert_eq!(
        failed.artifact.as_ref(),
        Some(&artifact),
        "the old artifact stays published"
    );
    assert_eq!(failed.last_handled_reconcile_at.as_deref(), Some("now-1"));
    assert!(failed.conditions.is_true("Reconciling"), "retrying");
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    ctrl.wait("AuthenticationFailed event", || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await?;
            Ok::<_, kube::Error>(
                list.items
                    .iter()
                    .any(|e| e.reason.as_deref() == Some("AuthenticationFailed"))
                    .then_some(()),
            )
        }
    })
    .await
    .unwrap();
    // Torn down as a user would: deleted while its controller runs, which releases the finalizer.
    ctrl.delete(&api, "app").await;
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_and_semver_refs_select_through_the_controller() {
    let up = Upstream::new(&[("v", "1.0.0")]);
    let c100 = up.tag("v1.0.0");
    up.commit(&[("v", "1.4.0")], "1.4");
    let c140 = up.tag("v1.4.0");
    up.commit(&[("v", "2.0.0")], "2.0");
    up.tag("v2.0.0");
    let Served {
        ns,
        ctrl,
        up: _up,
        server,
    } = Served::start("source-semver", up).await;
    let url = server.url("repo.git");
    let tag = create_repo(&ns, "by-tag", serde_json::json!({"url": url, "ref": {"tag": "v1.0.0"}, "secretRef": {"name": "git-auth"}})).await;
    let semver = create_repo(&ns, "by-semver", serde_json::json!({"url": url, "ref": {"semver": ">=1.0.0, <2.0.0"}, "secretRef": {"name": "git-auth"}})).await;
    wait_revision(&ctrl, &tag, "by-tag", &format!("v1.0.0@sha1:{c100}")).await;
    let obj = wait_revision(&ctrl, &semver, "by-semver", &format!("v1.4.0@sha1:{c140}")).await;
    let tree = download_and_unpack(&obj).await;
    assert_eq!(
        std::fs::read_to_string(tree.path().join("v")).unwrap(),
        "1.4.0"
    );
    // A range no tag satisfies leaves the object not ready with RefNotFound.
    let none = create_repo(&ns, "none", serde_json::json!({"url": url, "ref": {"semver": ">=5"}, "secretRef": {"name": "git-auth"}})).await;
    ctrl.wait("RefNotFound", || {
        let api = none.clone();
        async move {
            let s = api.get("none").await?.status.unwrap_or_default();
            Ok::<_, kube::Error>(
                s.conditions
                    .get_condition("Ready")
                    .filter(|c| c.reason == "RefNotFound")
                    .map(|_| ()),
            )
        }
    })
    .await
    .unwrap();
    for (api, name) in [(&tag, "by-tag"), (&semver, "by-semver"), (&none, "none")] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }
    for (api, name) in [(&tag, "by-tag"), (&semver, "by-semver"), (&none, "none")] {
        ctrl.wait("deleted", || {
            let api = api.clone();
            async move { Ok::<_, kube::Error>(api.get_opt(name).await?.is_none().then_some(())) }
        })
        .await
        .unwrap();
    }
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_refuses_bad_signatures_and_valid_push_triggers_a_fetch() {
    use hmac::Mac;
    let Served {
        ns,
        ctrl,
        up,
        server,
    } = Served::start("source-hook", Upstream::new(&[("a.yaml", "a: 1\n")])).await;
    webhook_secret(&ns, "hook", "hook-token").await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let api = create_repo(&ns, "app", serde_json::json!({
        "url": server.url("repo.git"), "interval": "1h", "secretRef": {"name": "git-auth"}, "webhook": {"secretRef": {"name": "hook"}},
    }))
    .await;
    let obj = wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c1}")).await;
    let path = obj
        .status
        .unwrap()
        .webhook_path
        .expect("webhook path published");
    assert_eq!(
        path,
        plumb_source::webhook::hook_path(ns.name(), "app", "hook-token")
    );
    let c2 = up.commit(&[("a.yaml", "a: 2\n")], "second");

    let http = reqwest::Client::new();
    let url = format!("http://{}{path}", ctrl.webhook);
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let bad = http
        .post(&url)
        .header("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64)))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let gitlab_bad = http
        .post(&url)
        .header("X-Gitlab-Token", "nope")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(gitlab_bad.status(), 401);
    let after = api.get("app").await.unwrap();
    assert!(
        !after.annotations().contains_key(REQUESTED_AT_ANNOTATION),
        "a refused delivery changes nothing"
    );

    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-token").unwrap();
    mac.update(&body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let ok = http
        .post(&url)
        .header("X-Hub-Signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c2}")).await;
    api.delete("app", &DeleteParams::default()).await.unwrap();
    ctrl.wait("deleted", || {
        let api = api.clone();
        async move { Ok::<_, kube::Error>(api.get_opt("app").await?.is_none().then_some(())) }
    })
    .await
    .unwrap();
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn polls_without_a_new_commit_write_nothing() {
    let Served {
        ns,
        ctrl,
        up,
        server,
    } = Served::start("source-noop", Upstream::new(&[("a.yaml", "a: 1\n")])).await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let api = create_repo(&ns, "app", serde_json::json!({"url": server.url("repo.git"), "interval": "1s", "secretRef": {"name": "git-auth"}})).await;
    let obj = wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c1}")).await;
    let rv = obj.resource_version();
    let reconciles = |m: &Metrics| -> u64 {
        m.encode()
            .lines()
            .find(|l| l.starts_with("plumb_reconcile_total{") && l.contains("result=\"success\""))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before = reconciles(&ctrl.metrics);
    ctrl.wait("three more polls", || {
        let n = reconciles(&ctrl.metrics);
        async move { Ok::<_, std::convert::Infallible>((n >= before + 3).then_some(())) }
    })
    .await
    .unwrap();
    assert_eq!(
        api.get("app").await.unwrap().resource_version(),
        rv,
        "no-change polls wrote nothing"
    );
    api.delete("app", &DeleteParams::default()).await.unwrap();
    ctrl.wait("deleted", || {
        let api = api.clone();
        async move { Ok::<_, kube::Error>(api.get_opt("app").await?.is_none().then_some(())) }
    })
    .await
    .unwrap();
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_server_times_out_with_git_operation_failed() {
    let ns = TestNamespace::new("source-timeout").await.unwrap();
    let ctrl = Running::start(&ns).await;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let api = create_repo(
        &ns,
        "app",
        serde_json::json!({"url": format!("http://127.0.0.1:{port}/repo.git"), "timeout": "2s"}),
    )
    .await;
    let ready = ctrl
        .wait("Ready=False after the timeout", || {
            let api = api.clone();
            async move {
                let s = api.get("app").await?.status.unwrap_or_default();
                Ok::<_, kube::Error>(
                    s.conditions
                        .get_condition("Ready")
                        .filter(|c| c.status == "False")
                        .cloned(),
                )
            }
        })
        .await
        .unwrap();
    assert_eq!(ready.reason, "GitOperationFailed");
    assert!(ready.message.contains("timed out"), "{}", ready.message);
    ctrl.delete(&api, "app").await;
    ctrl.stop().await;
    hold.abort();
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_that_did_not_reconcile_still_accepts_the_webhook() {
    let Served {
        ns,
        ctrl,
        up,
        server,
    } = Served::start(
        "source-hook-replica",
        Upstream::new(&[("a.yaml", "a: 1\n")]),
    )
    .await;
    webhook_secret(&ns, "hook", "t0k").await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let api = create_repo(&ns, "app", serde_json::json!({
        "url": server.url("repo.git"), "interval": "1h", "secretRef": {"name": "git-auth"}, "webhook": {"secretRef": {"name": "hook"}},
    }))
    .await;
    let obj = wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c1}")).await;
    let path = obj.status.unwrap().webhook_path.unwrap();

    // A second webhook server, as on a non-leader replica: its index is empty.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = plumb_source::webhook::router(
        ns.client().clone(),
        Default::default(),
        Some(ns.name().to_owned()),
    );
    let replica = tokio::spawn(async move { axum::serve(listener, app).await });
    let c2 = up.commit(&[("a.yaml", "a: 2\n")], "second");
    let http = reqwest::Client::new();
    let url = format!("http://{addr}{path}");
    let wrong = http
        .post(&url)
        .header("X-Gitlab-Token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = http
        .post(format!("http://{addr}/hook/{}", "a".repeat(64)))
        .header("X-Gitlab-Token", "t0k")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let ok = http
        .post(&url)
        .header("X-Gitlab-Token", "t0k")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c2}")).await;
    replica.abort();
    api.delete("app", &DeleteParams::default()).await.unwrap();
    ctrl.wait("deleted", || {
        let api = api.clone();
        async move { Ok::<_, kube::Error>(api.get_opt("app").await?.is_none().then_some(())) }
    })
    .await
    .unwrap();
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_with_known_hosts_fetches_and_an_unknown_host_key_is_refused() {
    let ns = TestNamespace::new("source-ssh").await.unwrap();
    let ctrl = Running::start(&ns).await;
    let up = Upstream::new(&[("a.yaml", "a: 1\n")]);
    let sshd = support::SshServer::start();
    let put = |name: &'static str, known_hosts: String| {
        let data = serde_json::json!({"identity": sshd.identity, "known_hosts": known_hosts});
        apply_secret(&ns, name, data)
    };
    put("ssh-good", sshd.known_hosts.clone()).await;
    put("ssh-unknown", "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n".into()).await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let url = sshd.url(&up.bare);
    let good = create_repo(
        &ns,
        "good",
        serde_json::json!({"url": url, "secretRef": {"name": "ssh-good"}}),
    )
    .await;
    let bad = create_repo(
        &ns,
        "unknown-host",
        serde_json::json!({"url": url, "secretRef": {"name": "ssh-unknown"}}),
    )
    .await;
    wait_revision(&ctrl, &good, "good", &format!("main@sha1:{c1}")).await;
    let cond = ctrl
        .wait("unknown host refused", || {
            let api = bad.clone();
            async move {
                let s = api.get("unknown-host").await?.status.unwrap_or_default();
                Ok::<_, kube::Error>(
                    s.conditions
                        .get_condition("Ready")
                        .filter(|c| c.status == "False")
                        .cloned(),
                )
            }
        })
        .await
        .unwrap();
    assert_eq!(cond.reason, "AuthenticationFailed");
    assert!(cond.message.contains("unknown"), "{}", cond.message);
    for (api, name) in [(&good, "good"), (&bad, "unknown-host")] {
        api.delete(name, &DeleteParams::default()).await.unwrap();
        ctrl.wait("deleted", || {
            let api = api.clone();
            async move { Ok::<_, kube::Error>(api.get_opt(name).await?.is_none().then_some(())) }
        })
        .await
        .unwrap();
    }
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

/// Waits until the GitRepository's Ready condition is False for its generation; returns it.
async fn wait_not_ready(
    ctrl: &Running,
    api: &Api<GitRepository>,
    name: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    ctrl.wait(&format!("{name} Ready=False"), || {
        let api = api.clone();
        async move {
            let obj = api.get(name).await?;
            let status = obj.status.unwrap_or_default();
            Ok::<_, kube::Error>(
                status
                    .conditions
                    .get_condition("Ready")
                    .filter(|c| {
                        c.status == "False" && c.observed_generation == obj.metadata.generation
                    })
                    .cloned(),
            )
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_incomplete_credentials_secret_is_named_in_the_condition() {
    let ns = TestNamespace::new("source-secret").await.unwrap();
    let ctrl = Running::start(&ns).await;
    let up = Upstream::new(&[("a.yaml", "a: 1\n")]);
    let server = support::serve_basic(up.bare.parent().unwrap(), "bot", "s3cret").await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);

    // No such Secret.
    let api = create_repo(
        &ns,
        "app",
        serde_json::json!({"url": server.url("repo.git"), "interval": "1h", "secretRef": {"name": "git-auth"}}),
    )
    .await;
    let missing = wait_not_ready(&ctrl, &api, "app").await;
    assert_eq!(missing.reason, "AuthenticationFailed", "{missing:?}");
    assert!(
        missing.message.contains("git-auth") && missing.message.contains("not found"),
        "{}",
        missing.message
    );
    assert!(
        api.get("app")
            .await
            .unwrap()
            .status
            .and_then(|s| s.artifact)
            .is_none(),
        "nothing fetched without credentials"
    );

    // The Secret appears with a user name and no password: it names the missing key.
    apply_secret(&ns, "git-auth", serde_json::json!({"username": "bot"})).await;
    set_requested_at(&api, "app", "incomplete").await;
    let incomplete = ctrl
        .wait("the condition to name the missing password", || {
            let api = api.clone();
            async move {
                let s = api.get("app").await?.status.unwrap_or_default();
                let handled = s.last_handled_reconcile_at.as_deref() == Some("incomplete");
                Ok::<_, kube::Error>(
                    s.conditions
                        .get_condition("Ready")
                        .filter(|c| {
                            handled && c.status == "False" && !c.message.contains("not found")
                        })
                        .cloned(),
                )
            }
        })
        .await
        .unwrap();
    assert_eq!(incomplete.reason, "AuthenticationFailed", "{incomplete:?}");
    assert!(
        incomplete.message.contains("git-auth") && incomplete.message.contains("password"),
        "the condition must name the Secret and the missing key: {}",
        incomplete.message
    );

    // Complete: fetched.
    basic_auth_secret(&ns, "git-auth", "bot", "s3cret").await;
    set_requested_at(&api, "app", "complete").await;
    wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c1}")).await;
    ctrl.delete(&api, "app").await;
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_git_repository_fetches_nothing_until_resumed() {
    let Served {
        ns,
        ctrl,
        up,
        server,
    } = Served::start("source-suspend", Upstream::new(&[("a.yaml", "a: 1\n")])).await;
    let c1 = support::git(&up.work, &["rev-parse", "HEAD"]);
    let api = create_repo(
        &ns,
        "app",
        serde_json::json!({"url": server.url("repo.git"), "interval": "1h", "secretRef": {"name": "git-auth"}}),
    )
    .await;
    let before = wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c1}")).await;
    let artifact = before.status.unwrap().artifact;

    let suspend = |on: bool| serde_json::json!({"spec": {"suspend": on}});
    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(&suspend(true)),
    )
    .await
    .unwrap();
    let c2 = up.commit(&[("a.yaml", "a: 2\n")], "second");
    // A reconcile asked for after the suspension is handled, and fetches nothing.
    set_requested_at(&api, "app", "while-suspended").await;
    let handled = ctrl
        .wait("the request to be handled while suspended", || {
            let api = api.clone();
            async move {
                let obj = api.get("app").await?;
                let done = obj
                    .status
                    .as_ref()
                    .and_then(|s| s.last_handled_reconcile_at.as_deref())
                    == Some("while-suspended");
                Ok::<_, kube::Error>(done.then_some(obj))
            }
        })
        .await
        .unwrap();
    let now = handled.status.unwrap().artifact.unwrap();
    let artifact = artifact.unwrap();
    assert_eq!(
        (now.revision, now.digest),
        (artifact.revision, artifact.digest),
        "a suspended GitRepository fetched"
    );

    api.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(&suspend(false)),
    )
    .await
    .unwrap();
    wait_revision(&ctrl, &api, "app", &format!("main@sha1:{c2}")).await;
    ctrl.delete(&api, "app").await;
    ctrl.stop().await;
    ns.delete().await.unwrap();
}

/// Started where it cannot list GitRepositories (as before its CRD is installed: here, as a user
/// without permission to), the controller still stops when asked, instead of waiting for a first
/// list that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_that_never_listed_stops_when_asked() {
    let ns = TestNamespace::new("source-unlisted").await.unwrap();
    let mut kube_config = plumb_e2e_support::kube_config().await.unwrap();
    kube_config.auth_info.impersonate = Some(format!(
        "system:serviceaccount:{}:no-permissions",
        ns.name()
    ));
    let client = kube::Client::try_from(kube_config.clone()).unwrap();
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), ns.name());
    let denied = repos.list(&Default::default()).await.unwrap_err();
    assert!(
        matches!(&denied, kube::Error::Api(s) if s.code == 403),
        "the user may not list GitRepositories: {denied}"
    );
    let ctrl = Running::start_as(&ns, client, kube_config).await;
    // Before the fix this never returned: the bound only turns a hang into a failure.
    tokio::time::timeout(WAIT, ctrl.stop())
        .await
        .expect("the controller stops although it never listed");
    ns.delete().await.unwrap();
}
