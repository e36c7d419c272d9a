//! The generated CRDs against a real kube-apiserver: they install, a valid object of each kind is
//! accepted with its defaults filled in by the API server (from the CRDs' own `default:` entries,
//! so objects go in as raw JSON without them), and invalid ones are refused with a message that
//! says why.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
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

/// Creates `obj` as raw JSON (no client-side defaults) and reads it back raw.
async fn create_raw(api: &Api<DynamicObject>, obj: serde_json::Value) -> serde_json::Value {
    let obj: DynamicObject = serde_json::from_value(obj).unwrap();
    let name = obj.metadata.name.clone().unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap();
    // A fresh read: what is stored, not what the create echoed.
    serde_json::to_value(api.get(&name).await.unwrap()).unwrap()
}

fn dynamic_api<K>(ns: &TestNamespace) -> Api<DynamicObject>
where
    K: kube::Resource<DynamicType = ()>,
{
    Api::namespaced_with(
        ns.client().clone(),
        ns.name(),
        &ApiResource::erase::<K>(&()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_install_and_the_api_server_fills_in_each_default() {
    let ns = TestNamespace::new("api-valid").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();

    // Raw objects without any defaulted field: the CRD's own `default:` entries must fill them.
    let repo = create_raw(
        &dynamic_api::<GitRepository>(&ns),
        json!({
            "apiVersion": "source.plumb.dev/v1", "kind": "GitRepository",
            "metadata": { "name": "apps" },
            "spec": { "url": "https://git.example.com/team/apps.git", "ref": { "branch": "main" } }
        }),
    )
    .await;
    assert_eq!(repo["spec"]["interval"], "60s", "{repo:#}");
    assert_eq!(repo["spec"]["timeout"], "60s", "{repo:#}");
    // And the typed view reads what the server stored.
    let typed: GitRepository = serde_json::from_value(repo).unwrap();
    assert_eq!(typed.spec.interval.get(), Duration::from_secs(60));
    assert_eq!(typed.spec.timeout.get(), Duration::from_secs(60));

    let sync = create_raw(
        &dynamic_api::<Sync>(&ns),
        json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": { "name": "apps-prod" },
            "spec": { "sourceRef": { "kind": "GitRepository", "name": "apps" } }
        }),
    )
    .await;
    let spec = &sync["spec"];
    assert_eq!(spec["interval"], "600s", "{sync:#}");
    assert_eq!(spec["path"], "./", "{sync:#}");
    assert_eq!(spec["prune"], true, "prune defaults to true: {sync:#}");
    assert_eq!(
        spec["selfHeal"], true,
        "selfHeal defaults to true: {sync:#}"
    );
    let typed: Sync = serde_json::from_value(sync).unwrap();
    assert!(!typed.spec.wait);

    let policies: Api<DynamicObject> =
        Api::all_with(ns.client().clone(), &ApiResource::erase::<Policy>(&()));
    let name = format!("{}-policy", ns.name());
    ns.delete_with_namespace::<Policy>(&name);
    let policy = create_raw(
        &policies,
        json!({
            "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
            "metadata": { "name": name, "labels": ns.test_labels() },
            "spec": {
                "selector": { "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns.name() } } },
                "rules": [{
                    "name": "no-latest",
                    "match": { "resources": [{ "kinds": ["Deployment"] }] },
                    "expression": "!object.metadata.name.endsWith('latest')"
                }],
                "drift": { "mode": "Report", "ignore": [{ "resources": [{ "kinds": ["Deployment"] }], "paths": ["/spec/replicas"] }] },
                "windows": [{ "action": "deny", "schedule": "0 18 * * 5", "duration": "62h" }]
            }
        }),
    )
    .await;
    let spec = &policy["spec"];
    assert_eq!(spec["rules"][0]["action"], "Deny", "{policy:#}");
    assert_eq!(
        spec["rules"][0]["match"]["resources"][0]["group"], "",
        "the core group by default: {policy:#}"
    );
    assert_eq!(
        spec["drift"]["ignore"][0]["resources"][0]["group"], "",
        "{policy:#}"
    );
    let typed: Policy = serde_json::from_value(policy).unwrap();
    assert_eq!(
        typed.spec.rules[0].action,
        plumb_api::policy::RuleAction::Deny
    );
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
    // Should it be accepted after all, it goes with the namespace.
    let bad_name = format!("{}-bad", ns.name());
    ns.delete_with_namespace::<Policy>(&bad_name);
    let bad_action = rejection(
        &policies,
        json!({
            "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
            "metadata": { "name": bad_name, "labels": ns.test_labels() },
            "spec": { "rules": [{ "name": "r", "expression": "true", "action": "Block" }] }
        }),
    )
    .await;
    assert!(bad_action.contains("spec.rules[0].action"), "{bad_action}");
}
