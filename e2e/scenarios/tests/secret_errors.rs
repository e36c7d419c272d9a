//! A secret value that makes the API server reject an object never reaches the Sync's status,
//! an Event or a controller's log, though the API server quotes it in its error: a label value
//! decrypted from a SOPS file, and one substituted from a `substituteFrom` Secret, each invalid
//! as a label (kube-apiserver answers `metadata.labels: Invalid value: "<the value>": a valid
//! label must ...`). The condition still names the object and the cause, with the value masked.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::ListParams;
use plumb_api::{Sync, condition_type, reason};
use plumb_e2e_scenarios::{Controller, Controllers, GitFixture, create_sync};
use plumb_e2e_support::{CLUSTER_SECRETS, PolicyRule, SopsTools, TestNamespace, wait_for};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// Hex no other text of the test holds.
fn unique() -> String {
    let mut bytes = [0u8; 10];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until Sync `name` is not Ready because an apply failed, and returns that condition.
async fn apply_failed(ns: &TestNamespace, controllers: &Controllers, name: &str) -> Condition {
    controllers
        .wait_failed(
            &ns.api(),
            name,
            condition_type::READY,
            reason::APPLY_FAILED,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the namespace holds at least `count` Events of `reason`, and returns all its
/// Events as JSON.
async fn events_of(ns: &TestNamespace, reason: &str, count: usize) -> String {
    let events: Api<Event> = ns.api();
    let listed = wait_for(&format!("{count} {reason} Events"), WAIT, || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await?;
            let found = list
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .count();
            Ok::<_, kube::Error>((found >= count).then_some(list))
        }
    })
    .await
    .unwrap();
    serde_json::to_string(&listed).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_the_api_server_rejects_are_masked_in_status_events_and_logs() {
    let ns = TestNamespace::new("e2e-secret-errors").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let tools = SopsTools::get().unwrap();
    let key = tools.age_keygen().unwrap();
    let id = unique();
    // Spaces and `!` make both invalid label values.
    let decrypted = format!("sops {id} value!");
    let substituted = format!("subst {id} value!");
    let password = format!("pw-{id}");

    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  labels:\n    tier: \"{decrypted}\"\n\
         stringData:\n  password: {password}\n"
    );
    let encrypted = tools
        .encrypt(
            secret.as_bytes(),
            "secret.yaml",
            &[&key.recipient],
            &["--encrypted-regex", "^(labels|data|stringData)$"],
        )
        .unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write("sops/secret.yaml", &String::from_utf8(encrypted).unwrap())
        .unwrap();
    git.write(
        "subst/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    \
         tier: \"${tier}\"\ndata:\n  mode: strict\n",
    )
    .unwrap();
    git.commit("a decrypted and a substituted label value, both invalid")
        .unwrap();
    ns.apply_secret("sops-keys", &[("identity.agekey", &key.identity)])
        .await
        .unwrap();
    ns.apply_secret(CLUSTER_SECRETS, &[("tier", &substituted)])
        .await
        .unwrap();

    let controllers = Controllers::start(ns.name()).unwrap();
    git.create_source(ns.client(), ns.name(), "app")
        .await
        .unwrap();
    for (name, extra) in [
        (
            "sops",
            json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}}}),
        ),
        (
            "subst",
            json!({"substituteFrom": [{"kind": "Secret", "name": CLUSTER_SECRETS}]}),
        ),
    ] {
        let mut spec = json!({
            "path": format!("./{name}"), "interval": "1h", "retryInterval": "1h",
        });
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        create_sync(&ns, name, spec).await.unwrap();
    }

    // Each condition names the object and what the API server refused, the value masked: the
    // server did quote it (`Invalid value: "..."`), and only the mask is left of it.
    let n = ns.name();
    for (sync, object) in [
        ("sops", format!("{n}_db__Secret")),
        ("subst", format!("{n}_settings__ConfigMap")),
    ] {
        let failed = apply_failed(&ns, &controllers, sync).await;
        let msg = &failed.message;
        assert!(msg.contains(&object), "{sync}: {msg}");
        assert!(
            msg.contains("metadata.labels: Invalid value: \"***\""),
            "{sync}: the API server's cause, its quote of the value masked: {msg}"
        );
    }
    assert!(
        ns.api::<Secret>().get_opt("db").await.unwrap().is_none(),
        "nothing of the refused object was applied"
    );

    // The Warning Events say the same, masked, before anything is looked for in them.
    let events_text = events_of(&ns, reason::APPLY_FAILED, 2).await;
    assert!(
        events_text.contains("Invalid value: \\\"***\\\""),
        "{events_text}"
    );

    let mut places = vec![("the Events".to_owned(), events_text)];
    for name in ["sops", "subst"] {
        let sync: Sync = ns.api().get(name).await.unwrap();
        places.push((
            format!("Sync {name}"),
            serde_json::to_string(&sync).unwrap(),
        ));
    }
    for c in Controller::ALL {
        places.push((format!("the {c:?} controller's log"), controllers.log(c)));
    }
    for value in [&decrypted, &substituted, &password] {
        for form in [value.to_string(), STANDARD.encode(value)] {
            for (place, text) in &places {
                assert!(
                    !text.contains(&form),
                    "{place} holds a secret value ({form})"
                );
            }
        }
    }
    // The id is in every value and in nothing else the test made.
    for (place, text) in &places {
        assert!(!text.contains(&id), "{place} holds part of a secret value");
    }
    drop(controllers);
}

/// A Policy rule whose CEL expression fails over a value substituted from a Secret: CEL's error
/// quotes the value (`No such key: <the value>`); the finding and the condition keep the rule,
/// the object and the cause, the value masked, and neither the Sync, the Events nor any
/// controller's log holds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_error_over_a_substituted_secret_value_is_masked() {
    let ns = TestNamespace::new("e2e-secret-policy").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let id = unique();
    let token = format!("token-{id}");
    let git = GitFixture::new().await.unwrap();
    git.write(
        "app/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  \
         token: \"${token}\"\n  known: fine\n",
    )
    .unwrap();
    git.commit("a ConfigMap with a substituted token").unwrap();
    ns.apply_secret(CLUSTER_SECRETS, &[("token", &token)])
        .await
        .unwrap();
    // Deleted with the namespace, whether the scenario passes or not.
    ns.apply_policy(
        "token",
        PolicyRule::deny(
            "token-names-a-key",
            "ConfigMap",
            "!has(object.data.token) || object.data[object.data.token] == 'fine'",
            "the token must name a key of the ConfigMap",
        )
        .spec(),
    )
    .await
    .unwrap();

    let controllers = Controllers::start(ns.name()).unwrap();
    git.create_source(ns.client(), ns.name(), "app")
        .await
        .unwrap();
    create_sync(
        &ns,
        "app",
        json!({
            "path": "./app", "interval": "1h", "retryInterval": "1h",
            "substituteFrom": [{"kind": "Secret", "name": CLUSTER_SECRETS}],
        }),
    )
    .await
    .unwrap();

    let syncs: Api<Sync> = ns.api();
    let denied = controllers
        .wait_failed(
            &syncs,
            "app",
            condition_type::RENDERED,
            reason::POLICY_VIOLATION,
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let msg = &denied.message;
    assert!(
        msg.contains(&format!("{}_settings__ConfigMap", ns.name()))
            && msg.contains("token-names-a-key")
            && msg.contains("the token must name a key of the ConfigMap"),
        "the object, the rule and its message: {msg}"
    );
    assert!(
        msg.contains("evaluation failed: No such key: ***"),
        "CEL's cause, its quote of the value masked: {msg}"
    );
    let synced = syncs.get("app").await.unwrap();
    let findings = synced
        .status
        .as_ref()
        .and_then(|s| s.render.as_ref())
        .and_then(|r| r.policy.as_ref())
        .map(|p| p.violations.clone())
        .unwrap_or_default();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0]
            .message
            .ends_with("(evaluation failed: No such key: ***)"),
        "{findings:?}"
    );

    let events_text = events_of(&ns, reason::POLICY_VIOLATION, 1).await;
    assert!(events_text.contains("No such key: ***"), "{events_text}");

    let mut places = vec![
        ("the Events".to_owned(), events_text),
        (
            "the Sync".to_owned(),
            serde_json::to_string(&synced).unwrap(),
        ),
    ];
    for c in Controller::ALL {
        places.push((format!("the {c:?} controller's log"), controllers.log(c)));
    }
    for (place, text) in &places {
        assert!(!text.contains(&id), "{place} holds the Secret's value");
    }
    drop(controllers);
}
