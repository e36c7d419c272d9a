//! The whole GitOps loop, end to end: a real git server, the three controllers as separate
//! processes, the real cluster. Each scenario has its own namespace and controller set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{Conditions, GitRepository, Sync, condition_type};
use plumb_e2e_scenarios::{ARTIFACT_TOKEN_SECRET, Controller, Controllers, GitFixture};
use plumb_e2e_support::{PolicyRule, TestNamespace, ready_at, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// How long a drift watch may take to heal an edit or a deletion. The Syncs' interval is 1h, so
/// a heal within this bound was a watch's doing, not the periodic reconcile's.
const HEAL_WITHIN: Duration = Duration::from_secs(60);

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{ app: {name} }}
  template:
    metadata:
      labels: {{ app: {name} }}
    spec:
      containers:
        - name: main
          image: {image}
"
    )
}

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// The scenario's objects: a GitRepository for the fixture and a Sync of `./app` into `ns`.
async fn create_source_and_sync(ns: &TestNamespace, git: &GitFixture) {
    create_source_and_sync_with(ns, git, json!({}), json!({})).await;
}

/// Like [`create_source_and_sync`], with `repo_spec` and `sync_spec` merged over the defaults
/// (a GitRepository polled every 3s; a Sync whose periodic reconcile, every hour, never happens
/// within a scenario, so whatever a scenario sees was caused by a watch or a new revision).
async fn create_source_and_sync_with(
    ns: &TestNamespace,
    git: &GitFixture,
    repo_spec: Value,
    sync_spec: Value,
) {
    let repos: Api<GitRepository> = ns.api();
    let mut spec = json!({ "url": git.url(), "ref": { "branch": "main" }, "interval": "3s", "timeout": "10s" });
    merge(&mut spec, repo_spec);
    let repo: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
        "metadata": { "name": "app" },
        "spec": spec
    }))
    .unwrap();
    // install_crds waited for Established, so the kinds are served.
    repos.create(&PostParams::default(), &repo).await.unwrap();
    let syncs: Api<Sync> = ns.api();
    let mut spec = json!({
        "sourceRef": { "kind": "GitRepository", "name": "app" },
        "path": "./app", "interval": "1h", "targetNamespace": ns.name(), "prune": true
    });
    merge(&mut spec, sync_spec);
    let sync: Sync = serde_json::from_value(json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": { "name": "app", "labels": { plumb_e2e_scenarios::SCOPE_LABEL: ns.name() } },
        "spec": spec
    }))
    .unwrap();
    syncs.create(&PostParams::default(), &sync).await.unwrap();
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

/// Waits until the Sync is Ready with `commit` applied.
async fn wait_applied(ns: &TestNamespace, controllers: &Controllers, commit: &str) -> Sync {
    let syncs: Api<Sync> = ns.api();
    let result = wait_for(&format!("Sync app Ready at {commit}"), WAIT, || {
        let syncs = syncs.clone();
        async move {
            let sync = syncs.get("app").await?;
            let status = sync.status.clone().unwrap_or_default();
            Ok::<_, kube::Error>(ready_at(&status, commit).then_some(sync))
        }
    })
    .await;
    match result {
        Ok(sync) => sync,
        Err(e) => {
            let sync = syncs.get("app").await.ok();
            panic!(
                "{e}\nSync status: {:#?}\n{}",
                sync.and_then(|s| s.status),
                controllers.logs_tail(40)
            )
        }
    }
}

async fn request_fetch(ns: &TestNamespace, value: &str) {
    let repos: Api<GitRepository> = ns.api();
    let patch =
        json!({ "metadata": { "annotations": { plumb_api::REQUESTED_AT_ANNOTATION: value } } });
    repos
        .patch("app", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_bump_edit_remove_and_revert_are_applied_healed_pruned_and_rolled_back() {
    let ns = TestNamespace::new("e2e-loop").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write(
        "app/kustomization.yaml",
        "resources:\n  - web.yaml\n  - settings.yaml\n",
    )
    .unwrap();
    git.write(
        "app/web.yaml",
        &deployment("web", "registry.example.com/web:1.0.0"),
    )
    .unwrap();
    git.write("app/settings.yaml", &config_map("settings", "one"))
        .unwrap();
    let first = git.commit("web and settings").unwrap();
    let controllers = Controllers::start(ns.name()).unwrap();
    create_source_and_sync(&ns, &git).await;

    // commit → applied
    let sync = wait_applied(&ns, &controllers, &first).await;
    let deployments: Api<Deployment> = ns.api();
    let config_maps: Api<ConfigMap> = ns.api();
    let web = deployments.get("web").await.unwrap();
    assert_eq!(image_of(&web), "registry.example.com/web:1.0.0");
    let labels = web.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(plumb_api::SYNC_NAME_LABEL).map(String::as_str),
        Some("app")
    );
    let inventory = sync.status.unwrap().inventory.unwrap_or_default();
    assert_eq!(inventory.len(), 2, "{inventory:?}");

    // image tag bump → rolled out
    git.write("app/kustomization.yaml", "resources:\n  - web.yaml\n  - settings.yaml\nimages:\n  - name: registry.example.com/web\n    newTag: 1.1.0\n").unwrap();
    let bump = git.commit("bump web to 1.1.0").unwrap();
    request_fetch(&ns, "bump").await;
    wait_applied(&ns, &controllers, &bump).await;
    assert_eq!(
        image_of(&deployments.get("web").await.unwrap()),
        "registry.example.com/web:1.1.0"
    );

    // manual edit → healed
    let edit = json!({ "data": { "value": "edited by hand" } });
    config_maps.patch("settings", &PatchParams::apply("kubectl-edit").force(), &Patch::Apply(&json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "settings" }, "data": edit["data"]
    }))).await.unwrap();
    wait_for("the hand edit to be reverted", HEAL_WITHIN, || {
        let config_maps = config_maps.clone();
        async move {
            let cm = config_maps.get("settings").await?;
            let value = cm.data.unwrap_or_default().get("value").cloned();
            Ok::<_, kube::Error>((value.as_deref() == Some("one")).then_some(()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(40)));

    // a deleted object → recreated
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the deleted Deployment to come back", HEAL_WITHIN, || {
        let deployments = deployments.clone();
        async move {
            let web = deployments.get_opt("web").await?;
            Ok::<_, kube::Error>(
                web.filter(|d| d.metadata.deletion_timestamp.is_none())
                    .map(|_| ()),
            )
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(40)));

    // file removed → pruned
    git.remove("app/settings.yaml").unwrap();
    git.write("app/kustomization.yaml", "resources:\n  - web.yaml\nimages:\n  - name: registry.example.com/web\n    newTag: 1.1.0\n").unwrap();
    let removed = git.commit("drop settings").unwrap();
    request_fetch(&ns, "remove").await;
    let sync = wait_applied(&ns, &controllers, &removed).await;
    assert!(
        config_maps.get_opt("settings").await.unwrap().is_none(),
        "settings was not pruned"
    );
    assert_eq!(sync.status.unwrap().inventory.unwrap_or_default().len(), 1);

    // git revert → previous state
    let reverted = git.revert_head().unwrap();
    request_fetch(&ns, "revert").await;
    wait_applied(&ns, &controllers, &reverted).await;
    let settings = config_maps.get("settings").await.unwrap();
    assert_eq!(settings.data.unwrap()["value"], "one");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_policy_blocks_the_new_revision_until_it_is_fixed() {
    let ns = TestNamespace::new("e2e-policy").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write("app/kustomization.yaml", "resources:\n  - web.yaml\n")
        .unwrap();
    git.write(
        "app/web.yaml",
        &deployment("web", "registry.example.com/web:1.0.0"),
    )
    .unwrap();
    let good = git.commit("pinned image").unwrap();

    // Deleted with the namespace, whether the scenario passes or not.
    ns.apply_policy(
        "pinned",
        PolicyRule::deny(
            "pinned-images",
            "apps/Deployment",
            "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))",
            "images must not use the latest tag",
        )
        .spec(),
    )
    .await
    .unwrap();
    let controllers = Controllers::start(ns.name()).unwrap();
    create_source_and_sync(&ns, &git).await;
    wait_applied(&ns, &controllers, &good).await;

    // A commit that breaks the rule: not applied, and the Sync says why.
    git.write(
        "app/web.yaml",
        &deployment("web", "registry.example.com/web:latest"),
    )
    .unwrap();
    git.commit("use latest").unwrap();
    request_fetch(&ns, "latest").await;
    let syncs: Api<Sync> = ns.api();
    let blocked =
        wait_for("the Sync to report the violation", WAIT, || {
            let syncs = syncs.clone();
            async move {
                let sync = syncs.get("app").await?;
                let conds = sync.status.clone().unwrap_or_default().conditions;
                let rendered = conds.get_condition(condition_type::RENDERED).cloned();
                Ok::<_, kube::Error>(rendered.filter(|c| {
                    c.status == "False" && c.reason == plumb_api::reason::POLICY_VIOLATION
                }))
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(40)));
    assert!(
        blocked.message.contains("pinned-images"),
        "{}",
        blocked.message
    );
    assert!(blocked.message.contains("web"), "{}", blocked.message);
    let deployments: Api<Deployment> = ns.api();
    assert_eq!(
        image_of(&deployments.get("web").await.unwrap()),
        "registry.example.com/web:1.0.0"
    );

    // Fixed in Git → applied again.
    git.write(
        "app/web.yaml",
        &deployment("web", "registry.example.com/web:1.2.0"),
    )
    .unwrap();
    let fixed = git.commit("pin 1.2.0").unwrap();
    request_fetch(&ns, "fixed").await;
    wait_applied(&ns, &controllers, &fixed).await;
    assert_eq!(
        image_of(&deployments.get("web").await.unwrap()),
        "registry.example.com/web:1.2.0"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn git_outages_and_controller_restarts_lose_nothing() {
    let ns = TestNamespace::new("e2e-resilience").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let mut git = GitFixture::new().await.unwrap();
    git.write("app/kustomization.yaml", "resources:\n  - settings.yaml\n")
        .unwrap();
    git.write("app/settings.yaml", &config_map("settings", "v1"))
        .unwrap();
    let first = git.commit("v1").unwrap();
    let mut controllers = Controllers::start(ns.name()).unwrap();
    create_source_and_sync(&ns, &git).await;
    wait_applied(&ns, &controllers, &first).await;

    // The git server goes down: the source says so, the applied state stays.
    git.stop_server();
    request_fetch(&ns, "outage").await;
    let repos: Api<GitRepository> = ns.api();
    wait_for("the GitRepository to report the outage", WAIT, || {
        let repos = repos.clone();
        async move {
            let repo = repos.get("app").await?;
            let conds = repo.status.unwrap_or_default().conditions;
            let ready = conds.get_condition(condition_type::READY).cloned();
            Ok::<_, kube::Error>(ready.filter(|c| c.status == "False").map(|c| c.reason))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(40)));
    let config_maps: Api<ConfigMap> = ns.api();
    assert_eq!(
        config_maps.get("settings").await.unwrap().data.unwrap()["value"],
        "v1"
    );

    // It comes back with a new commit: picked up without anyone's help.
    git.write("app/settings.yaml", &config_map("settings", "v2"))
        .unwrap();
    let second = git.commit("v2").unwrap();
    git.start_server().await.unwrap();
    wait_applied(&ns, &controllers, &second).await;

    // The sync controller dies while a new revision is on its way and comes back: it converges.
    git.write("app/other.yaml", &config_map("other", "x"))
        .unwrap();
    git.write(
        "app/kustomization.yaml",
        "resources:\n  - settings.yaml\n  - other.yaml\n",
    )
    .unwrap();
    let third = git.commit("v3").unwrap();
    request_fetch(&ns, "restart").await;
    controllers.kill(Controller::Sync);
    controllers.restart(Controller::Render).unwrap();
    controllers.restart(Controller::Sync).unwrap();
    let sync = wait_applied(&ns, &controllers, &third).await;
    assert_eq!(sync.status.unwrap().inventory.unwrap_or_default().len(), 2);
    assert_eq!(
        config_maps.get("other").await.unwrap().data.unwrap()["value"],
        "x"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_push_brings_a_substituted_commit_to_the_cluster() {
    let ns = TestNamespace::new("e2e-webhook").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write("app/kustomization.yaml", "resources:\n  - greeting.yaml\n")
        .unwrap();
    git.write(
        "app/greeting.yaml",
        &config_map("greeting", "${GREETING} from ${CLUSTER}"),
    )
    .unwrap();
    let first = git.commit("greeting").unwrap();
    let secrets: Api<Secret> = ns.api();
    let hook: Secret = serde_json::from_value(
        json!({ "metadata": { "name": "hook" }, "stringData": { "token": "e2e-hook-token" } }),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &hook).await.unwrap();
    let controllers = Controllers::start(ns.name()).unwrap();
    // Polled once an hour: within the scenario, only the webhook can bring a new commit.
    create_source_and_sync_with(
        &ns,
        &git,
        json!({ "interval": "1h", "webhook": { "secretRef": { "name": "hook" } } }),
        json!({ "substitute": { "GREETING": "hello", "CLUSTER": "e2e" } }),
    )
    .await;

    // The render substituted the variables, and the sync controller applied the result.
    wait_applied(&ns, &controllers, &first).await;
    let config_maps: Api<ConfigMap> = ns.api();
    let value = |cm: ConfigMap| cm.data.unwrap_or_default().remove("value");
    assert_eq!(
        value(config_maps.get("greeting").await.unwrap()).as_deref(),
        Some("hello from e2e")
    );

    let repos: Api<GitRepository> = ns.api();
    let path = repos
        .get("app")
        .await
        .unwrap()
        .status
        .and_then(|s| s.webhook_path)
        .expect("the GitRepository publishes its webhook path");
    git.write(
        "app/greeting.yaml",
        &config_map("greeting", "${GREETING} again from ${CLUSTER}"),
    )
    .unwrap();
    let second = git.commit("greeting again").unwrap();
    let url = format!("{}{path}", controllers.webhook_base_url());
    let response = reqwest::Client::new()
        .post(&url)
        .header("X-Gitlab-Token", "e2e-hook-token")
        .header("X-Gitlab-Event", "Push Hook")
        .body(r#"{"ref":"refs/heads/main"}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    wait_applied(&ns, &controllers, &second).await;
    assert_eq!(
        value(config_maps.get("greeting").await.unwrap()).as_deref(),
        Some("hello again from e2e")
    );
}

/// A rendered artifact may hold Secrets: the artifact servers answer only requests carrying the
/// token the controllers share (from a Secret the first of them created), and the loop, whose
/// controllers all run with it, applies as usual.
#[tokio::test(flavor = "multi_thread")]
async fn artifact_servers_answer_only_requests_carrying_the_controllers_token() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ns = TestNamespace::new("e2e-auth").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write("app/settings.yaml", &config_map("settings", "private"))
        .unwrap();
    let commit = git.commit("settings").unwrap();
    let controllers = Controllers::start(ns.name()).unwrap();
    create_source_and_sync(&ns, &git).await;
    let sync = wait_applied(&ns, &controllers, &commit).await;

    let secrets: Api<Secret> = ns.api();
    let secret = secrets.get(ARTIFACT_TOKEN_SECRET).await.unwrap();
    assert_eq!(secret.immutable, Some(true));
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    assert_eq!(token.len(), 64, "a generated token is 32 random bytes, hex");

    let repos: Api<GitRepository> = ns.api();
    let source = repos
        .get("app")
        .await
        .unwrap()
        .status
        .unwrap()
        .artifact
        .unwrap();
    let rendered = sync.status.unwrap().render.unwrap().artifact.unwrap();
    let http = reqwest::Client::new();
    for (what, url, digest) in [
        ("source", &source.url, &source.digest),
        ("rendered", &rendered.url, &rendered.digest),
    ] {
        let anonymous = http.get(url).send().await.unwrap();
        assert_eq!(
            anonymous.status(),
            reqwest::StatusCode::UNAUTHORIZED,
            "{what} {url}"
        );
        let body = anonymous.bytes().await.unwrap();
        assert!(
            !body.starts_with(&[0x1f, 0x8b])
                && plumb_artifact::verify_digest(&body, digest).is_err(),
            "{what}: the 401 carries no artifact"
        );
        let wrong = http
            .get(url)
            .bearer_auth("0".repeat(64))
            .send()
            .await
            .unwrap();
        assert_eq!(
            wrong.status(),
            reqwest::StatusCode::UNAUTHORIZED,
            "{what} {url}"
        );
        let authorized = http.get(url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(authorized.status(), reqwest::StatusCode::OK, "{what} {url}");
        let bytes = authorized.bytes().await.unwrap();
        plumb_artifact::verify_digest(&bytes, digest)
            .unwrap_or_else(|actual| panic!("{what}: got {actual}, want {digest}"));
    }
    let config_maps: Api<ConfigMap> = ns.api();
    let applied = config_maps.get("settings").await.unwrap();
    assert_eq!(applied.data.unwrap()["value"], "private");
}
