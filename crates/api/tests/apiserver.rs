//! The generated CRDs against a real kube-apiserver: they install, a valid object of each kind is
//! accepted with its defaults filled in, and invalid ones are refused with a message that says why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use kube::api::{Api, DeleteParams, PostParams};
use plumb_api::{GitRepository, Policy, Sync};
use plumb_e2e_support::TestNamespace;
use serde_json::json;

/// Creates `obj` and returns the API server's error message, failing if it was accepted.
async fn rejection<K>(api: &Api<K>, obj: serde_json::Value) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(obj).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(created) => panic!("the API server accepted an invalid object: {created:?}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_install_and_accept_a_valid_object_of_each_kind_with_defaults() {
    let ns = TestNamespace::new("api-valid").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();

    let repos: Api<GitRepository> = ns.api();
    let repo: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
        "metadata": { "name": "apps" },
        "spec": { "url": "https://git.example.com/team/apps.git", "ref": { "branch": "main" } }
    }))
    .unwrap();
    let created = repos.create(&PostParams::default(), &repo).await.unwrap();
    assert_eq!(created.spec.interval.get(), Duration::from_secs(60));
    assert_eq!(created.spec.timeout.get(), Duration::from_secs(60));

    let syncs: Api<Sync> = ns.api();
    let sync: Sync = serde_json::from_value(json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": { "name": "apps-prod" },
        "spec": { "sourceRef": { "kind": "GitRepository", "name": "apps" }, "path": "./overlays/prod" }
    }))
    .unwrap();
    let created = syncs.create(&PostParams::default(), &sync).await.unwrap();
    assert_eq!(created.spec.interval.get(), Duration::from_secs(600));
    assert!(created.spec.prune, "prune defaults to true");
    assert!(created.spec.self_heal, "selfHeal defaults to true");
    assert!(!created.spec.wait);

    let policies: Api<Policy> = Api::all(ns.client().clone());
    let name = format!("{}-policy", ns.name());
    let policy: Policy = serde_json::from_value(json!({
        "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
        "metadata": { "name": name },
        "spec": {
            "selector": { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns.name() } } },
            "rules": [{ "name": "no-latest", "expression": "!object.metadata.name.endsWith('latest')" }],
            "drift": { "mode": "Report", "ignore": [{ "paths": ["/spec/replicas"] }] },
            "windows": [{ "action": "deny", "schedule": "0 18 * * 5", "duration": "62h" }]
        }
    }))
    .unwrap();
    let created = policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    assert_eq!(
        created.spec.rules[0].action,
        plumb_api::policy::RuleAction::Deny
    );
    policies
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_objects_are_rejected_with_a_message_naming_the_cause() {
    let ns = TestNamespace::new("api-invalid").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let repos: Api<GitRepository> = ns.api();

    let two_refs = rejection(&repos, json!({
        "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
        "metadata": { "name": "two-refs" },
        "spec": { "url": "https://git.example.com/a.git", "ref": { "branch": "main", "tag": "v1" } }
    }))
    .await;
    assert!(
        two_refs.contains("at most one of branch, tag, semver and name"),
        "{two_refs}"
    );

    let commit_with_tag = rejection(
        &repos,
        json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": { "name": "commit-tag" },
            "spec": { "url": "https://git.example.com/a.git",
                      "ref": { "tag": "v1", "commit": "0123456789abcdef0123456789abcdef01234567" } }
        }),
    )
    .await;
    assert!(
        commit_with_tag.contains("commit may only be combined with branch"),
        "{commit_with_tag}"
    );

    // The schema pattern and the Rust parser agree, so the client refuses it before sending;
    // send raw JSON to see what the API server says.
    let dynamic = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        ns.client().clone(),
        ns.name(),
        &kube::api::ApiResource::erase::<GitRepository>(&()),
    );
    let bad_interval = rejection(
        &dynamic,
        json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": { "name": "bad-interval" },
            "spec": { "url": "https://git.example.com/a.git", "interval": "10 minutes" }
        }),
    )
    .await;
    assert!(bad_interval.contains("spec.interval"), "{bad_interval}");

    let bad_url = rejection(
        &dynamic,
        json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": { "name": "bad-url" },
            "spec": { "url": "ftp://example.com/a.git" }
        }),
    )
    .await;
    assert!(bad_url.contains("spec.url"), "{bad_url}");

    let syncs = kube::api::Api::<kube::api::DynamicObject>::namespaced_with(
        ns.client().clone(),
        ns.name(),
        &kube::api::ApiResource::erase::<Sync>(&()),
    );
    let bad_kind = rejection(
        &syncs,
        json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": "bad-kind" },
            "spec": { "sourceRef": { "kind": "Bucket", "name": "x" } }
        }),
    )
    .await;
    assert!(
        bad_kind.contains("spec.sourceRef.kind") && bad_kind.contains("GitRepository"),
        "{bad_kind}"
    );

    let policies = kube::api::Api::<kube::api::DynamicObject>::all_with(
        ns.client().clone(),
        &kube::api::ApiResource::erase::<Policy>(&()),
    );
    let bad_action = rejection(
        &policies,
        json!({
            "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
            "metadata": { "name": format!("{}-bad", ns.name()) },
            "spec": { "rules": [{ "name": "r", "expression": "true", "action": "Block" }] }
        }),
    )
    .await;
    assert!(bad_action.contains("spec.rules[0].action"), "{bad_action}");
}
