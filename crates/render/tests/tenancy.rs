//! Policies cannot be escaped, against the real API server with an in-process render
//! controller: a tenant's labels on its own Sync neither take it out of a Deny rule nor out of
//! a Policy's count, objects rendered without a namespace (cluster-scoped ones included) are
//! judged in the namespace they are applied into, a `syncSelector` without consent is refused
//! at admission, and with consent (`allowTenantOptOut`) the opt-out is honoured.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

mod support;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use plumb_api::{Policy, Sync};
use serde_json::json;
use support::{World, unique};

/// A ConfigMap without a namespace and a ClusterRole: neither names the tenant's namespace.
const TREE: &[(&str, &str)] = &[
    (
        "settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: forbidden\n",
    ),
    (
        "role.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: escape\nrules: []\n",
    ),
];

/// The labels a tenant would try: an "exempt" marker, a tier a Policy might exclude.
fn tenant_labels(w: &World) -> serde_json::Value {
    json!({support::RUN_LABEL: w.name(), "policy.plumb.dev/exempt": "true", "tier": "dev"})
}

/// Applies Sync `name` of GitRepository `app` carrying `labels` from its first version on, so
/// every render of it sees them.
async fn apply_labelled_sync(w: &World, name: &str, labels: serde_json::Value) {
    let syncs: Api<Sync> = w.ns.api();
    syncs
        .patch(
            name,
            &PatchParams::apply("plumb-render-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
                "metadata": {"name": name, "labels": labels},
                "spec": {"sourceRef": {"kind": "GitRepository", "name": "app"}, "path": "./"},
            })),
        )
        .await
        .unwrap();
}

/// Creates Policy `name`, labelled as this test's and deleted with its namespace (created, not
/// applied, so a refusal comes back as the API server's own status).
async fn policy_with(
    w: &World,
    name: &str,
    spec: serde_json::Value,
) -> Result<Policy, kube::Error> {
    let api: Api<Policy> = Api::all(w.client.clone());
    let policy: Policy = serde_json::from_value(json!({
        "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
        "metadata": {"name": name, "labels": w.ns.test_labels()},
        "spec": spec,
    }))
    .unwrap();
    w.ns.delete_with_namespace::<Policy>(name);
    api.create(&PostParams::default(), &policy).await
}

async fn governed_syncs(w: &World, name: &str, want: i64) {
    let api: Api<Policy> = Api::all(w.client.clone());
    plumb_e2e_support::wait_for(
        &format!("Policy {name} governing {want} Syncs"),
        support::TIMEOUT,
        || {
            let api = api.clone();
            async move {
                let p = api.get(name).await?;
                let n = p.status.and_then(|s| s.governed_syncs);
                Ok::<_, kube::Error>((n == Some(want)).then_some(()))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_labels_and_namespace_less_objects_do_not_escape_a_deny_rule() {
    let w = World::new("render-escape").await;
    let guard = unique("tenant-guard", w.name());
    // Governs the tenant's namespace; its rules are written for that namespace only.
    policy_with(
        &w,
        &guard,
        json!({
            "selector": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": w.name()}}},
            "rules": [
                {"name": "no-forbidden-mode", "message": "mode forbidden is not allowed here",
                 "match": {"resources": [{"group": "", "kinds": ["ConfigMap"]}], "namespaces": [w.name()]},
                 "expression": "!has(object.data.mode) || object.data.mode != 'forbidden'"},
                {"name": "no-cluster-roles", "message": "tenants may not ship ClusterRoles",
                 "match": {"resources": [{"group": "rbac.authorization.k8s.io", "kinds": ["ClusterRole"]}], "namespaces": [w.name()]},
                 "expression": "false"},
            ],
        }),
    )
    .await
    .unwrap();

    w.publish_source("app", 'e', TREE, None).await;
    apply_labelled_sync(&w, "app", tenant_labels(&w)).await;
    let blocked = w.wait_rendered("app", "False", "PolicyViolation").await;
    let msg = &support::rendered(&blocked).unwrap().message;
    for part in [
        "_settings__ConfigMap",
        "no-forbidden-mode",
        "_escape_rbac.authorization.k8s.io_ClusterRole",
        "no-cluster-roles",
        guard.as_str(),
    ] {
        assert!(msg.contains(part), "{part} not in {msg}");
    }
    assert!(
        blocked
            .status
            .as_ref()
            .and_then(|s| s.render.as_ref())
            .and_then(|r| r.artifact.as_ref())
            .is_none(),
        "nothing may be published for a blocked render"
    );
    governed_syncs(&w, &guard, 1).await;

    // A Sync with a targetNamespace is judged there: the same tree, placed into another
    // namespace, is not this Policy's business.
    w.apply_sync(
        "elsewhere",
        "app",
        json!({"targetNamespace": unique("other", w.name())}),
    )
    .await;
    let placed = w
        .wait_rendered("elsewhere", "True", "ReconciliationSucceeded")
        .await;
    let objects = w.rendered_objects(&placed).await;
    assert_eq!(support::names(&objects).len(), 2, "{objects:?}");

    let api: Api<Policy> = Api::all(w.client.clone());
    api.delete(&guard, &Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_selector_needs_consent_and_then_lets_tenants_opt_out() {
    let w = World::new("render-optout").await;
    let ns_selector = json!({"matchLabels": {"kubernetes.io/metadata.name": w.name()}});
    let exempt = json!({"matchExpressions": [{"key": "policy.plumb.dev/exempt", "operator": "DoesNotExist"}]});

    // Without consent, the API server refuses a selector a tenant could label its way out of.
    let refused = policy_with(
        &w,
        &unique("no-consent", w.name()),
        json!({"selector": {"namespaceSelector": ns_selector, "syncSelector": exempt}}),
    )
    .await
    .unwrap_err();
    match refused {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(
                status.message.contains("allowTenantOptOut"),
                "{}",
                status.message
            );
        }
        other => panic!("expected a validation error, got {other}"),
    }

    // With consent, the Sync labelled exempt is left out and the other one is governed.
    let opt_in = unique("opt-out-allowed", w.name());
    policy_with(
        &w,
        &opt_in,
        json!({
            "selector": {"namespaceSelector": ns_selector, "syncSelector": exempt, "allowTenantOptOut": true},
            "rules": [{"name": "no-configmaps", "message": "no ConfigMaps", "match": {"resources": [{"group": "", "kinds": ["ConfigMap"]}]}, "expression": "false"}],
        }),
    )
    .await
    .unwrap();
    w.publish_source("app", 'f', &TREE[..1], None).await;
    apply_labelled_sync(&w, "exempt", tenant_labels(&w)).await;
    w.apply_sync("plain", "app", json!({})).await;
    w.wait_rendered("exempt", "True", "ReconciliationSucceeded")
        .await;
    let blocked = w.wait_rendered("plain", "False", "PolicyViolation").await;
    assert!(
        support::rendered(&blocked)
            .unwrap()
            .message
            .contains("no-configmaps")
    );
    governed_syncs(&w, &opt_in, 1).await;

    let api: Api<Policy> = Api::all(w.client.clone());
    api.delete(&opt_in, &Default::default()).await.unwrap();
}
