//! The render controller against a real API server, with real artifacts over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use kube::Api;
use plumb_api::Policy;
use plumb_api::condition_type;
use serde_json::json;
use support::{World, deployment, names, unique};

const BASE_KUSTOMIZATION: &str = "resources: [deployment.yaml, config.yaml]\n";
const CONFIG: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: base\n";
const OVERLAY: &str = "resources: [../../base]\nnamePrefix: prod-\ncommonLabels: {env: prod}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_an_overlay_with_the_sync_transforms_and_serves_it_by_digest() {
    let w = World::new("render-overlay").await;
    let web = deployment("web", "nginx:1.0");
    let source = w
        .publish_source(
            "app",
            'a',
            &[
                ("base/kustomization.yaml", BASE_KUSTOMIZATION),
                ("base/deployment.yaml", &web),
                ("base/config.yaml", CONFIG),
                ("overlays/prod/kustomization.yaml", OVERLAY),
            ],
            None,
        )
        .await;
    w.apply_sync(
        "app",
        "app",
        json!({"path": "./overlays/prod", "targetNamespace": w.name(),
               "images": [{"name": "nginx", "newTag": "1.27"}]}),
    )
    .await;

    let sync = w
        .wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
    let render = sync.status.as_ref().unwrap().render.clone().unwrap();
    assert_eq!(render.source_digest.as_ref(), Some(&source));
    assert_eq!(
        render.source_revision.as_ref().unwrap().to_string(),
        format!("main@sha1:{}", "a".repeat(40))
    );
    assert_eq!(render.objects, Some(2));
    assert_eq!(render.observed_generation, sync.metadata.generation);
    let artifact = render.artifact.clone().unwrap();
    assert!(
        artifact.url.ends_with(&format!(
            "/sync/{}/app/{}.yaml.gz",
            w.name(),
            artifact.digest.hex()
        )),
        "{}",
        artifact.url
    );

    let objs = w.rendered_objects(&sync).await;
    assert_eq!(
        names(&objs),
        ["ConfigMap/prod-settings", "Deployment/prod-web"]
    );
    assert!(objs.iter().all(|o| o["metadata"]["namespace"] == w.name()));
    assert_eq!(
        objs[1]["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(objs[1]["metadata"]["labels"]["env"], "prod");

    // Only the render controller's fields: nothing of the sync controller's part is written.
    let mine = sync
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() == Some(plumb_api::RENDER_FIELD_MANAGER))
        .map(|m| serde_json::to_value(&m.fields_v1).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let fields = &mine[0]["f:status"];
    let owned: Vec<&String> = fields.as_object().unwrap().keys().collect();
    assert_eq!(
        owned,
        ["f:conditions", "f:render"],
        "plumb-render owns only render and its condition"
    );
    let conditions: Vec<&String> = fields["f:conditions"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("k:"))
        .collect();
    assert_eq!(
        conditions,
        [&format!("k:{{\"type\":\"{}\"}}", condition_type::RENDERED)]
    );

    // A spec change that does not shape the render is not rendered again: same artifact record.
    w.apply_sync(
        "app",
        "app",
        json!({"path": "./overlays/prod", "targetNamespace": w.name(), "interval": "5m",
               "images": [{"name": "nginx", "newTag": "1.27"}]}),
    )
    .await;
    let generation = sync.metadata.generation.unwrap() + 1;
    let same = w
        .wait_sync("app", "render reported for the new generation", |s| {
            s.status
                .as_ref()
                .and_then(|st| st.render.as_ref())
                .and_then(|r| r.observed_generation)
                == Some(generation)
        })
        .await;
    assert_eq!(
        same.status.unwrap().render.unwrap().artifact,
        Some(artifact.clone()),
        "skipped, not re-rendered"
    );

    // `plumb.dev/requested-at` forces a fresh render: same digest, new record.
    let syncs: Api<plumb_api::Sync> = w.ns.api();
    syncs
        .patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"plumb.dev/requested-at": "now"}}}),
            ),
        )
        .await
        .unwrap();
    let again = w
        .wait_sync("app", "a fresh render after requested-at", |s| {
            s.status
                .as_ref()
                .and_then(|st| st.render.as_ref())
                .and_then(|r| r.artifact.as_ref())
                .is_some_and(|a| a.last_update_time != artifact.last_update_time)
        })
        .await;
    assert_eq!(
        again
            .status
            .unwrap()
            .render
            .unwrap()
            .artifact
            .unwrap()
            .digest,
        artifact.digest,
        "deterministic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_a_plain_directory_with_substitution_and_reports_missing_variables() {
    let w = World::new("render-plain").await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: env\ndata:\n  cluster: ${CLUSTER}\n  region: ${REGION:=eu-1}\n  literal: $${CLUSTER}\n";
    let replicas = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: ${REPLICAS}\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata: {labels: {app: api}}\n    spec: {containers: [{name: api, image: api:1}]}\n";
    let script = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\n  annotations: {plumb.dev/substitute: disabled}\ndata:\n  run.sh: echo ${HOME}\n";
    w.publish_source(
        "plain",
        'b',
        &[
            ("deploy/env.yaml", cm),
            ("deploy/apps/api.yaml", replicas),
            ("deploy/apps/script.yml", script),
            ("deploy/README.md", "# not yaml"),
        ],
        None,
    )
    .await;
    w.apply_sync(
        "plain",
        "plain",
        json!({"path": "deploy", "substitute": {"CLUSTER": "blue"}}),
    )
    .await;

    // REPLICAS has no value and no default: the error names the object and the variable.
    let sync = w.wait_rendered("plain", "False", "BuildFailed").await;
    let msg = &support::rendered(&sync).unwrap().message;
    assert!(
        msg.contains("_api_apps_Deployment") && msg.contains("REPLICAS"),
        "{msg}"
    );
    assert!(
        sync.status
            .as_ref()
            .unwrap()
            .render
            .as_ref()
            .and_then(|r| r.artifact.as_ref())
            .is_none(),
        "nothing published"
    );

    w.apply_sync(
        "plain",
        "plain",
        json!({"path": "deploy", "substitute": {"CLUSTER": "blue", "REPLICAS": "3"}}),
    )
    .await;
    let sync = w
        .wait_rendered("plain", "True", "ReconciliationSucceeded")
        .await;
    let objs = w.rendered_objects(&sync).await;
    assert_eq!(
        names(&objs),
        ["ConfigMap/env", "ConfigMap/script", "Deployment/api"]
    );
    assert_eq!(
        objs[0]["data"],
        json!({"cluster": "blue", "region": "eu-1", "literal": "${CLUSTER}"})
    );
    assert_eq!(objs[1]["data"]["run.sh"], "echo ${HOME}");
    assert_eq!(objs[2]["spec"]["replicas"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_suffix_missing_components_and_substitute_strategy_always() {
    let w = World::new("render-fields").await;
    let env = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: env\ndata:\n  home: ${HOME_DIR:=/home}\n  literal: $${X}\n";
    let component =
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources: [extra.yaml]\n";
    let extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n";
    w.publish_source(
        "fields",
        'c',
        &[
            ("app/kustomization.yaml", "resources: [env.yaml]\n"),
            ("app/env.yaml", env),
            ("components/extra/kustomization.yaml", component),
            ("components/extra/extra.yaml", extra),
        ],
        None,
    )
    .await;
    let components = json!(["../components/extra", "../components/missing"]);
    w.apply_sync(
        "fields",
        "fields",
        json!({"path": "app", "nameSuffix": "-v2", "components": components}),
    )
    .await;
    // A missing component fails the render, naming it.
    let sync = w.wait_rendered("fields", "False", "BuildFailed").await;
    let msg = &support::rendered(&sync).unwrap().message;
    assert!(msg.contains("../components/missing"), "{msg}");

    // Tolerated with ignoreMissingComponents; substituteStrategy Always substitutes with no
    // variable at all (defaults and escapes), which the default strategy would skip.
    w.apply_sync(
        "fields",
        "fields",
        json!({"path": "app", "nameSuffix": "-v2", "components": components,
               "ignoreMissingComponents": true, "substituteStrategy": "Always"}),
    )
    .await;
    let sync = w
        .wait_rendered("fields", "True", "ReconciliationSucceeded")
        .await;
    let objs = w.rendered_objects(&sync).await;
    assert_eq!(names(&objs), ["ConfigMap/env-v2", "ConfigMap/extra-v2"]);
    assert_eq!(objs[0]["data"], json!({"home": "/home", "literal": "${X}"}));
}

/// Waits until Sync `name` is rendered with `data` as its first object's data; returns it.
async fn wait_rendered_data(w: &World, name: &str, data: serde_json::Value) -> plumb_api::Sync {
    let api: Api<plumb_api::Sync> = w.ns.api();
    w.wait(
        &format!("Sync {name} rendered with data {data}"),
        support::TIMEOUT,
        || {
            let (api, data) = (api.clone(), data.clone());
            async move {
                let s = api.get(name).await?;
                let current = support::rendered(&s).is_some_and(|c| {
                    c.status == "True" && c.observed_generation == s.metadata.generation
                });
                if !current {
                    return Ok::<_, kube::Error>(None);
                }
                let objs = w.rendered_objects(&s).await;
                Ok((objs[0]["data"] == data).then_some(s))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substitute_from_needs_its_sources_tolerates_optional_ones_and_renders_again_on_change() {
    let w = World::new("render-subst-from").await;
    let env = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: env\ndata:\n  cluster: ${cluster}\n  tier: ${tier:=standard}\n";
    w.publish_source("vars", 'e', &[("app/env.yaml", env)], None)
        .await;
    w.apply_sync(
        "vars",
        "vars",
        // An hour between reconciles: whatever renders again within the test was a watch.
        json!({"path": "app", "interval": "1h", "substituteFrom": [
            {"kind": "ConfigMap", "name": "cluster-vars"},
            {"kind": "ConfigMap", "name": "tier-override", "optional": true},
        ]}),
    )
    .await;
    // The required ConfigMap does not exist: the render fails naming it, nothing is published.
    let sync = w.wait_rendered("vars", "False", "BuildFailed").await;
    let msg = &support::rendered(&sync).unwrap().message;
    let missing = format!("ConfigMap {}/cluster-vars not found", w.name());
    assert!(msg.contains(&missing), "{msg}");
    assert!(
        sync.status
            .as_ref()
            .and_then(|s| s.render.as_ref())
            .and_then(|r| r.artifact.as_ref())
            .is_none(),
        "nothing published"
    );

    // Created: its watch renders the Sync again (a missing source is not retried, it settles the
    // Sync until a change); the optional source is absent, so the default applies.
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = w.ns.api();
    let vars = |name: &str, key: &str, value: &str| {
        serde_json::from_value(json!({"metadata": {"name": name}, "data": {key: value}})).unwrap()
    };
    config_maps
        .create(
            &Default::default(),
            &vars("cluster-vars", "cluster", "blue"),
        )
        .await
        .unwrap();
    wait_rendered_data(&w, "vars", json!({"cluster": "blue", "tier": "standard"})).await;

    // The optional source appears, then the required one changes: each renders again.
    config_maps
        .create(&Default::default(), &vars("tier-override", "tier", "gold"))
        .await
        .unwrap();
    wait_rendered_data(&w, "vars", json!({"cluster": "blue", "tier": "gold"})).await;
    config_maps
        .replace("cluster-vars", &Default::default(), &{
            let mut cm = config_maps.get("cluster-vars").await.unwrap();
            cm.data = Some([("cluster".to_owned(), "green".to_owned())].into());
            cm
        })
        .await
        .unwrap();
    wait_rendered_data(&w, "vars", json!({"cluster": "green", "tier": "gold"})).await;
    // The optional source goes again: the default is back.
    config_maps
        .delete("tier-override", &Default::default())
        .await
        .unwrap();
    wait_rendered_data(&w, "vars", json!({"cluster": "green", "tier": "standard"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_blocks_warn_passes_and_a_fixed_policy_renders_again() {
    let w = World::new("render-policy").await;
    let policy = unique("pinned-images", w.name());
    w.apply_policy(
        &policy,
        json!([
            {"name": "no-latest", "action": "Deny", "message": "images must be pinned",
             "match": {"resources": [{"group": "apps", "kinds": ["Deployment"]}]},
             "expression": "object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))"},
            {"name": "owner", "action": "Warn", "message": "every object needs an owner label",
             "expression": "has(object.metadata.labels) && 'owner' in object.metadata.labels"},
        ]),
    )
    .await;

    // A pinned image passes the Deny rule; the Warn rule records a finding and lets it through.
    w.publish_source(
        "app",
        'c',
        &[("web.yaml", &deployment("web", "nginx:1.27"))],
        None,
    )
    .await;
    w.apply_sync("app", "app", json!({})).await;
    let good = w
        .wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
    let good_render = good.status.as_ref().unwrap().render.clone().unwrap();
    let warnings = good_render.policy.clone().unwrap().warnings;
    assert_eq!(warnings.len(), 1);
    assert_eq!(
        (warnings[0].policy.as_str(), warnings[0].rule.as_str()),
        (policy.as_str(), "owner")
    );
    assert_eq!(warnings[0].object, "_web_apps_Deployment");
    let events: Api<k8s_openapi::api::events::v1::Event> = w.ns.api();
    w.wait("a PolicyWarning event", support::TIMEOUT, || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await?;
            Ok::<_, kube::Error>(
                list.items
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some("PolicyWarning")),
            )
        }
    })
    .await;

    // A new commit with :latest is blocked: nothing published, the last good artifact stays.
    w.publish_source(
        "app",
        'd',
        &[("web.yaml", &deployment("web", "nginx:latest"))],
        None,
    )
    .await;
    let blocked = w.wait_rendered("app", "False", "PolicyViolation").await;
    let msg = &support::rendered(&blocked).unwrap().message;
    for part in [
        "_web_apps_Deployment",
        &policy,
        "no-latest",
        "images must be pinned",
    ] {
        assert!(msg.contains(part), "{part} not in {msg}");
    }
    let render = blocked.status.as_ref().unwrap().render.clone().unwrap();
    assert_eq!(
        render.artifact, good_render.artifact,
        "the last good artifact stays"
    );
    assert_eq!(render.source_revision, good_render.source_revision);
    assert_eq!(render.policy.unwrap().violations[0].rule, "no-latest");

    let policies: Api<Policy> = Api::all(w.client.clone());
    let p = support_wait_policy(&w, &policy, |p| {
        p.status.as_ref().and_then(|s| s.governed_syncs) == Some(1)
    })
    .await;
    assert!(
        p.status
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    // Fixing the policy (the rule now allows the mirror's latest tag only as a warning) renders again.
    w.apply_policy(
        &policy,
        json!([
            {"name": "no-latest", "action": "Warn", "message": "images should be pinned",
             "expression": "!has(object.spec) || object.spec.template.spec.containers.all(c, !c.image.endsWith(':latest'))"},
        ]),
    )
    .await;
    let fixed = w
        .wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
    let render = fixed.status.as_ref().unwrap().render.clone().unwrap();
    assert_eq!(render.source_revision.unwrap().commit(), "d".repeat(40));
    assert_ne!(render.artifact, good_render.artifact);
    assert_eq!(
        render.policy.unwrap().warnings[0].message,
        "images should be pinned"
    );
    let objs = w.rendered_objects(&fixed).await;
    assert_eq!(
        objs[0]["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:latest"
    );
    policies.delete(&policy, &Default::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cel_makes_the_policy_not_ready_and_its_syncs_unrendered() {
    let w = World::new("render-badcel").await;
    let policy = unique("broken", w.name());
    w.apply_policy(
        &policy,
        json!([{"name": "typo", "expression": "object.metadata.(name"}]),
    )
    .await;
    let p = support_wait_policy(&w, &policy, |p| {
        p.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
        })
    })
    .await;
    let status = p.status.unwrap();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "InvalidCELExpression");
    assert!(ready.message.contains("rule typo"), "{}", ready.message);
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    );

    w.publish_source("app", 'e', &[("cm.yaml", CONFIG)], None)
        .await;
    w.apply_sync("app", "app", json!({})).await;
    let sync = w.wait_rendered("app", "False", "PolicyInvalid").await;
    assert!(support::rendered(&sync).unwrap().message.contains(&policy));
    assert!(
        sync.status
            .unwrap()
            .render
            .and_then(|r| r.artifact)
            .is_none(),
        "never rendered unchecked"
    );

    // Fixing the expression lets the Sync render.
    w.apply_policy(
        &policy,
        json!([{"name": "typo", "expression": "has(object.metadata.name)"}]),
    )
    .await;
    w.wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
    w.delete_policy(&policy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_artifact_with_the_wrong_digest_is_refused_and_nothing_is_published() {
    let w = World::new("render-digest").await;
    let wrong = plumb_api::Digest::from_sha256_hex(&"0".repeat(64)).unwrap();
    w.publish_source("app", 'f', &[("cm.yaml", CONFIG)], Some(wrong))
        .await;
    w.apply_sync("app", "app", json!({})).await;
    let sync = w.wait_rendered("app", "False", "ArtifactFailed").await;
    let msg = &support::rendered(&sync).unwrap().message;
    assert!(msg.contains("digest mismatch"), "{msg}");
    assert!(
        sync.status
            .unwrap()
            .render
            .and_then(|r| r.artifact)
            .is_none()
    );

    // The source controller publishes the right digest: the render goes through.
    w.publish_source("app", 'f', &[("cm.yaml", CONFIG)], None)
        .await;
    w.wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
}

/// A "billion laughs" document (10^9 nodes if its aliases were expanded).
fn alias_bomb(indent: &str) -> String {
    let mut out = format!("{indent}l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        out.push_str(&format!("{indent}l{i}: &l{i} [{refs}]\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_fails_only_its_own_sync_with_the_limit_named() {
    let w = World::new("render-hostile").await;
    let bomb = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n{}",
        alias_bomb("  ")
    );
    w.publish_source(
        "bombed",
        'a',
        &[
            ("app/kustomization.yaml", "resources: [bomb.yaml]\n"),
            ("app/bomb.yaml", &bomb),
        ],
        None,
    )
    .await;
    w.publish_source("good", 'b', &[("app/cm.yaml", CONFIG)], None)
        .await;
    w.apply_sync("bombed", "bombed", json!({"path": "app"}))
        .await;
    // The Sync's own patches are YAML a tenant writes: held to the same limits.
    let patch = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n{}",
        alias_bomb("  ")
    );
    w.apply_sync(
        "patched",
        "good",
        json!({"path": "app", "patches": [{"patch": patch}]}),
    )
    .await;
    w.apply_sync("good", "good", json!({"path": "app"})).await;

    let sync = w.wait_rendered("bombed", "False", "LimitExceeded").await;
    let msg = &support::rendered(&sync).unwrap().message;
    assert!(
        msg.contains("bomb.yaml") && msg.contains("yaml-max-alias-nodes"),
        "{msg}"
    );
    let sync = w.wait_rendered("patched", "False", "LimitExceeded").await;
    let msg = &support::rendered(&sync).unwrap().message;
    assert!(msg.contains("yaml-max-alias-nodes"), "{msg}");
    w.wait_rendered("good", "True", "ReconciliationSucceeded")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_without_source_artifact_reports_source_not_ready() {
    let w = World::new("render-nosource").await;
    w.apply_sync("app", "missing", json!({})).await;
    let sync = w.wait_rendered("app", "False", "SourceNotReady").await;
    assert!(
        support::rendered(&sync)
            .unwrap()
            .message
            .contains("missing")
    );
    // The source appears: the GitRepository watch wakes the Sync.
    w.publish_source("missing", '1', &[("cm.yaml", CONFIG)], None)
        .await;
    w.wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_sources_are_refused_when_forbidden_and_suspended_syncs_are_left_alone() {
    let w = World::with_config("render-xns", |c| plumb_render::Config {
        no_cross_namespace_refs: true,
        ..c
    })
    .await;
    w.apply_sync(
        "app",
        "app",
        json!({"sourceRef": {"kind": "GitRepository", "name": "app", "namespace": "elsewhere"}}),
    )
    .await;
    let sync = w.wait_rendered("app", "False", "AccessDenied").await;
    assert!(
        support::rendered(&sync)
            .unwrap()
            .message
            .contains("elsewhere/app")
    );

    // Suspended: nothing is rendered, whatever the source does.
    w.publish_source("app", '2', &[("cm.yaml", CONFIG)], None)
        .await;
    w.apply_sync("app", "app", json!({"sourceRef": {"kind": "GitRepository", "name": "app", "namespace": null}, "suspend": true}))
        .await;
    let generation = w
        .wait_sync("app", "spec applied", |s| s.spec.suspend)
        .await
        .metadata
        .generation;
    w.apply_sync("idle-probe", "app", json!({})).await;
    w.wait_rendered("idle-probe", "True", "ReconciliationSucceeded")
        .await;
    let sync = w
        .wait_sync("app", "still suspended", |s| {
            s.metadata.generation == generation
        })
        .await;
    assert_eq!(
        support::rendered(&sync).unwrap().reason,
        "AccessDenied",
        "a suspended Sync is not rendered"
    );

    w.apply_sync("app", "app", json!({"sourceRef": {"kind": "GitRepository", "name": "app", "namespace": null}, "suspend": false}))
        .await;
    w.wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_sources_neither_block_other_syncs_nor_hang_forever() {
    let w = World::with_config("render-slow", |c| plumb_render::Config {
        concurrent: 3,
        // The good Sync must render before the hanging downloads time out: 20 s is far above the
        // moment its render takes, even on a loaded machine, and the stuck ones still fail well
        // within the wait.
        fetch_timeout: std::time::Duration::from_secs(20),
        ..c
    })
    .await;
    w.publish_hanging_source("stuck-1").await;
    w.publish_hanging_source("stuck-2").await;
    w.apply_sync("stuck-1", "stuck-1", json!({})).await;
    w.apply_sync("stuck-2", "stuck-2", json!({})).await;
    w.publish_source("app", '3', &[("cm.yaml", CONFIG)], None)
        .await;
    w.apply_sync("app", "app", json!({})).await;

    w.wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;
    // The hanging downloads are still under way: the good Sync did not wait for them.
    let syncs: Api<plumb_api::Sync> = w.ns.api();
    for name in ["stuck-1", "stuck-2"] {
        let stuck = syncs.get(name).await.unwrap();
        assert!(
            support::rendered(&stuck).is_none(),
            "{name} already finished: {:?}",
            support::rendered(&stuck)
        );
    }
    for name in ["stuck-1", "stuck-2"] {
        let sync = w.wait_rendered(name, "False", "ArtifactFailed").await;
        assert!(
            sync.status
                .unwrap()
                .render
                .and_then(|r| r.artifact)
                .is_none()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabelling_a_namespace_brings_its_syncs_under_a_namespace_selected_policy() {
    let w = World::new("render-nssel").await;
    let policy = unique("frozen", w.name());
    w.ns.apply_cluster::<Policy>(json!({
        "apiVersion": "policy.plumb.dev/v1", "kind": "Policy",
        "metadata": {"name": policy},
        "spec": {
            "selector": {"namespaceSelector": {"matchLabels": {"render-test/frozen": w.name()}}},
            "rules": [{"name": "no-configmaps", "message": "this namespace is frozen",
                       "match": {"resources": [{"group": "", "kinds": ["ConfigMap"]}]},
                       "expression": "false"}],
        },
    }))
    .await
    .unwrap();
    w.publish_source("app", '4', &[("cm.yaml", CONFIG)], None)
        .await;
    w.apply_sync("app", "app", json!({})).await;
    w.wait_rendered("app", "True", "ReconciliationSucceeded")
        .await;

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(w.client.clone());
    namespaces
        .patch(
            w.name(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"labels": {"render-test/frozen": w.name()}}}),
            ),
        )
        .await
        .unwrap();
    let sync = w.wait_rendered("app", "False", "PolicyViolation").await;
    assert!(
        support::rendered(&sync)
            .unwrap()
            .message
            .contains("this namespace is frozen")
    );
}

async fn support_wait_policy(w: &World, name: &str, check: impl Fn(&Policy) -> bool) -> Policy {
    let api: Api<Policy> = Api::all(w.client.clone());
    w.wait(&format!("Policy {name}"), support::TIMEOUT, || {
        let api = api.clone();
        let check = &check;
        async move {
            let p = api.get(name).await?;
            Ok::<_, kube::Error>(check(&p).then_some(p))
        }
    })
    .await
}
