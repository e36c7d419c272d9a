//! `config/` installed into the test cluster and run as installed: its CRDs, namespace,
//! ServiceAccounts and RBAC applied (not its Deployments: kwok runs no containers), and the three
//! controllers as processes with config/'s own arguments, each authenticated as its own
//! ServiceAccount. A permission config/ forgets fails this test, and so does a lockdown default
//! that does not hold: a tenant's Sync applies as the `default` ServiceAccount of its namespace,
//! only there, and may not use another namespace's GitRepository.
//!
//! The install (the `plumb-system` namespace, ClusterRoles and bindings) stays in the cluster
//! afterwards, as `kubectl apply -k config/` leaves it; applying it again is idempotent and makes
//! the cluster match config/ again. It is deliberately not labelled as a test object: it holds the
//! CRDs every test uses and is shared by every test process on the cluster, so the sweep of a
//! finished process's cluster-scoped objects must never delete it. What this test creates for
//! itself lives in its two test namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use plumb_api::{Conditions, GitRepository, Sync, condition_type, reason};
use plumb_e2e_scenarios::{Controllers, GitFixture, Install};
use plumb_e2e_support::{TestNamespace, wait_for};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);
const SHARD_LABEL: &str = "plumb.dev/shard";

fn config_map(name: &str, namespace: Option<&str>) -> String {
    let namespace = namespace
        .map(|ns| format!("  namespace: {ns}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{namespace}data:\n  owner: tenant\n"
    )
}

/// A GitRepository `app` for `git` and a Sync `name` of `./app` in `ns`, using the GitRepository
/// of `source_ns`, both in `shard`. The Sync names no ServiceAccount.
async fn create_sync(ns: &TestNamespace, name: &str, source_ns: &str, shard: &str) {
    let sync: Sync = serde_json::from_value(json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": { "name": name, "labels": { SHARD_LABEL: shard } },
        "spec": {
            "sourceRef": { "kind": "GitRepository", "name": "app", "namespace": source_ns },
            "path": "./app", "interval": "1h", "prune": true
        }
    }))
    .unwrap();
    ns.api::<Sync>()
        .create(&PostParams::default(), &sync)
        .await
        .unwrap();
}

async fn create_source(ns: &TestNamespace, git: &GitFixture, shard: &str) {
    let repo: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
        "metadata": { "name": "app", "labels": { SHARD_LABEL: shard } },
        "spec": { "url": git.url(), "ref": { "branch": "main" }, "interval": "1h", "timeout": "10s" }
    }))
    .unwrap();
    ns.api::<GitRepository>()
        .create(&PostParams::default(), &repo)
        .await
        .unwrap();
}

/// Sets `plumb.dev/requested-at` on an object: reconcile now, not at the next interval.
async fn request<K>(api: &Api<K>, name: &str, value: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch =
        json!({ "metadata": { "annotations": { plumb_api::REQUESTED_AT_ANNOTATION: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Waits until the Sync's Ready condition has `status` and `reason`; returns its message.
async fn wait_ready(
    syncs: &Api<Sync>,
    name: &str,
    status: &str,
    reason: &str,
    controllers: &Controllers,
) -> String {
    let what = format!("Sync {name} Ready={status} ({reason})");
    let found = wait_for(&what, WAIT, || {
        let syncs = syncs.clone();
        async move {
            let sync = syncs.get(name).await?;
            let conditions = sync.status.unwrap_or_default().conditions;
            let ready = conditions.get_condition(condition_type::READY).cloned();
            Ok::<_, kube::Error>(
                ready
                    .filter(|c| c.status == status && c.reason == reason)
                    .map(|c| c.message),
            )
        }
    })
    .await;
    match found {
        Ok(message) => message,
        Err(e) => {
            let sync = syncs.get(name).await.ok();
            panic!(
                "{e}\nSync status: {:#?}\n{}",
                sync.and_then(|s| s.status),
                controllers.logs_tail(40)
            )
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn config_install_applies_a_tenant_sync_as_its_default_service_account_only_in_its_namespace()
{
    let tenant = TestNamespace::new("cfg-tenant").await.unwrap();
    let other = TestNamespace::new("cfg-other").await.unwrap();
    let install = Install::render().unwrap();
    install.apply(tenant.client()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfigs = install
        .kubeconfigs(tenant.client(), dir.path())
        .await
        .unwrap();
    // The tenant namespace's name is unique: the controllers take only this test's objects.
    let shard = tenant.name().to_owned();

    let git = GitFixture::new().await.unwrap();
    git.write("app/kustomization.yaml", "resources:\n  - settings.yaml\n")
        .unwrap();
    git.write("app/settings.yaml", &config_map("settings", None))
        .unwrap();
    let first = git.commit("tenant settings").unwrap();
    let controllers = Controllers::start_installed(&install, kubeconfigs, &shard).unwrap();
    create_source(&tenant, &git, &shard).await;
    create_sync(&tenant, "app", tenant.name(), &shard).await;
    let syncs: Api<Sync> = tenant.api();
    let config_maps: Api<ConfigMap> = tenant.api();

    // The Sync names no ServiceAccount: it applies as <tenant>/default, which may do nothing yet.
    let denied = wait_ready(&syncs, "app", "False", reason::ACCESS_DENIED, &controllers).await;
    let account = format!("{}/default", tenant.name());
    assert!(
        denied.contains(&account),
        "the message names {account}: {denied}"
    );
    assert!(config_maps.get_opt("settings").await.unwrap().is_none());

    // Granted `edit` in its own namespace, the same account applies.
    let binding: RoleBinding = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "plumb-tenant" },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit" },
        "subjects": [{ "kind": "ServiceAccount", "name": "default", "namespace": tenant.name() }]
    }))
    .unwrap();
    tenant
        .api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    request(&syncs, "app", "granted").await;
    wait_ready(&syncs, "app", "True", reason::SUCCEEDED, &controllers).await;
    let sync = syncs.get("app").await.unwrap();
    let applied = sync.status.unwrap().last_applied_revision.unwrap();
    assert_eq!(applied.commit(), first);
    assert_eq!(
        config_maps.get("settings").await.unwrap().data.unwrap()["owner"],
        "tenant"
    );

    // An object for another namespace in the tenant's repository: that account may not write
    // there, so nothing of the revision lands in the other namespace.
    git.write(
        "app/kustomization.yaml",
        "resources:\n  - settings.yaml\n  - escape.yaml\n",
    )
    .unwrap();
    git.write("app/escape.yaml", &config_map("escape", Some(other.name())))
        .unwrap();
    git.commit("reach into another namespace").unwrap();
    request(&tenant.api::<GitRepository>(), "app", "escape").await;
    let escaped = wait_ready(&syncs, "app", "False", reason::ACCESS_DENIED, &controllers).await;
    assert!(
        escaped.contains(&account),
        "the message names {account}: {escaped}"
    );
    let others: Api<ConfigMap> = other.api();
    assert!(others.get_opt("escape").await.unwrap().is_none());

    // A Sync in another namespace using the tenant's GitRepository: refused (lockdown).
    create_sync(&other, "borrow", tenant.name(), &shard).await;
    let refused = wait_ready(
        &other.api::<Sync>(),
        "borrow",
        "False",
        reason::ACCESS_DENIED,
        &controllers,
    )
    .await;
    assert!(
        refused.contains("cross-namespace"),
        "the message says why: {refused}"
    );

    // Tear down as a user would: delete the plumb objects while the controllers run.
    other
        .api::<Sync>()
        .delete("borrow", &DeleteParams::default())
        .await
        .unwrap();
    syncs.delete("app", &DeleteParams::default()).await.unwrap();
    let repos: Api<GitRepository> = tenant.api();
    repos.delete("app", &DeleteParams::default()).await.unwrap();
    wait_for("the Syncs and the GitRepository to be gone", WAIT, || {
        let (syncs, others, repos) = (syncs.clone(), other.api::<Sync>(), repos.clone());
        async move {
            let gone = syncs.get_opt("app").await?.is_none()
                && others.get_opt("borrow").await?.is_none()
                && repos.get_opt("app").await?.is_none();
            Ok::<_, kube::Error>(gone.then_some(()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", controllers.logs_tail(40)));
}
