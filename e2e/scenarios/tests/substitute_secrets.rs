//! Values from a `substituteFrom` Secret, end to end: they reach the objects applied, and they
//! are nowhere else — not in the rendered artifact (as the render controller stores it on disk
//! and serves it), not in the Sync's status, not in an Event, not in any controller's log.
//! A change of the Secret alone re-renders and re-applies, and a Deny Policy judges the value
//! the Secret gives (it blocks a value it forbids while the last good value stays applied).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::Api;
use kube::api::ListParams;
use plumb_api::{Conditions, Sync, condition_type, reason};
use plumb_e2e_scenarios::{
    ARTIFACT_TOKEN_SECRET, Controller, Controllers, GitFixture, create_sync, files_under,
};
use plumb_e2e_support::{CLUSTER_SECRETS, PolicyRule, TestNamespace, wait_for};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

/// The rule a value from the Secret breaks when it starts with this.
const BLOCKED_PREFIX: &str = "blocked-";

/// A value no other text of the test holds.
fn unique_value(what: &str) -> String {
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{what}{hex}")
}

/// The app: a ConfigMap and a Secret that use the Secret's `db_password`, a ConfigMap that uses
/// only the ConfigMap's `cluster`, and one that opts out of substitution.
const APP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  cluster: ${cluster}
  dsn: postgres://app:${db_password}@db.${cluster}:5432/shop
  shown: ${db_password:0:3}...
---
apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: ${db_password}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
data:
  cluster: ${cluster}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: script
  annotations:
    kustomize.toolkit.fluxcd.io/substitute: disabled
data:
  run.sh: echo ${db_password}
"#;

/// Every place a value could leak to, as text: each file of the render controller's storage
/// (gzip read), the rendered artifact as served, the Sync, the namespace's Events and the three
/// controllers' logs. Fails naming the place that holds one of `values` (as it is, or base64).
async fn assert_nowhere_but_applied(
    ns: &TestNamespace,
    controllers: &Controllers,
    values: &[&str],
) {
    let mut places: Vec<(String, String)> = Vec::new();
    for file in files_under(&controllers.storage_dir(Controller::Render)).unwrap() {
        places.push((
            file.display().to_string(),
            read_maybe_gzip(&std::fs::read(&file).unwrap()),
        ));
    }
    let sync: Sync = ns.api().get("app").await.unwrap();
    places.push(("the Sync".into(), serde_json::to_string(&sync).unwrap()));
    let artifact = sync.status.unwrap().render.unwrap().artifact.unwrap();
    let token = ns
        .api::<Secret>()
        .get(ARTIFACT_TOKEN_SECRET)
        .await
        .unwrap()
        .data
        .unwrap()["token"]
        .0
        .clone();
    let served = reqwest::Client::new()
        .get(&artifact.url)
        .bearer_auth(String::from_utf8(token).unwrap())
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let served = read_maybe_gzip(&served);
    assert!(
        served.contains("name: settings") && served.contains(plumb_substitute_key()),
        "the artifact holds the deferred ConfigMap:\n{served}"
    );
    places.push(("the served artifact".into(), served));
    let events = ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .unwrap();
    places.push(("the Events".into(), serde_json::to_string(&events).unwrap()));
    for c in Controller::ALL {
        places.push((format!("the {c:?} controller's log"), controllers.log(c)));
    }
    for value in values {
        for form in [value.to_string(), STANDARD.encode(value)] {
            for (place, text) in &places {
                assert!(
                    !text.contains(&form),
                    "{place} holds a Secret value ({form})"
                );
            }
        }
    }
}

/// The top-level key the render controller puts on a deferred object.
fn plumb_substitute_key() -> &'static str {
    "plumbSubstitution:"
}

fn read_maybe_gzip(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut text)
            .unwrap();
        String::from_utf8_lossy(&text).into_owned()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

async fn set_password(ns: &TestNamespace, value: &str) {
    ns.apply_secret(CLUSTER_SECRETS, &[("db_password", value)])
        .await
        .unwrap();
}

/// Waits until the applied `settings` ConfigMap holds `password` in its DSN and the Sync is
/// Ready with the whole of the current render applied.
async fn wait_dsn(ns: &TestNamespace, controllers: &Controllers, password: &str) {
    let want = format!("postgres://app:{password}@db.staging-east:5432/shop");
    let config_maps: Api<ConfigMap> = ns.api();
    let syncs: Api<Sync> = ns.api();
    let result = wait_for("the render with the Secret's value applied", WAIT, || {
        let (config_maps, syncs, want) = (config_maps.clone(), syncs.clone(), want.clone());
        async move {
            let cm = config_maps.get_opt("settings").await?;
            let dsn = cm.and_then(|c| c.data).and_then(|d| d.get("dsn").cloned());
            let status = syncs.get("app").await?.status.unwrap_or_default();
            let rendered = status
                .render
                .as_ref()
                .and_then(|r| r.artifact.as_ref())
                .map(|a| &a.digest);
            let whole = rendered.is_some() && status.last_applied_digest.as_ref() == rendered;
            let ready = status.conditions.is_true(condition_type::READY);
            Ok::<_, kube::Error>(
                (dsn.as_deref() == Some(want.as_str()) && whole && ready).then_some(()),
            )
        }
    })
    .await;
    if let Err(e) = result {
        let sync = ns
            .api::<Sync>()
            .get("app")
            .await
            .ok()
            .and_then(|s| s.status);
        panic!("{e}\nSync status: {sync:#?}\n{}", controllers.logs_tail(40));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_are_applied_and_never_stored_shown_or_logged() {
    let ns = TestNamespace::new("e2e-subst-secret").await.unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write("app/objects.yaml", APP).unwrap();
    let commit = git.commit("an app using cluster variables").unwrap();

    let first = unique_value("pw-");
    let substitute_from = ns
        .apply_cluster_variables(&[("cluster", "staging-east")], &[("db_password", &first)])
        .await
        .unwrap();
    // Deleted with the namespace, whether the scenario passes or not.
    let no_blocked =
        format!("!has(object.data.dsn) || !object.data.dsn.contains(':{BLOCKED_PREFIX}')");
    ns.apply_policy(
        "dsn",
        PolicyRule::deny(
            "no-blocked-password",
            "ConfigMap",
            &no_blocked,
            "the DSN uses a blocked password",
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
            "path": "./app", "interval": "1h", "substituteFrom": substitute_from,
            "commonMetadata": {"labels": {"example.com/team": "shop"}}
        }),
    )
    .await
    .unwrap();

    // Applied with the Secret's value, substituted as the render controller substitutes.
    wait_dsn(&ns, &controllers, &first).await;
    let settings = ns.api::<ConfigMap>().get("settings").await.unwrap();
    let data = settings.data.clone().unwrap();
    assert_eq!(data["cluster"], "staging-east");
    assert_eq!(data["shown"], format!("{}...", &first[..3]));
    assert_eq!(
        settings.metadata.labels.unwrap()["example.com/team"],
        "shop",
        "commonMetadata on an object substituted by the sync controller"
    );
    let db = ns.api::<Secret>().get("db").await.unwrap();
    assert_eq!(db.data.unwrap()["password"].0, first.as_bytes());
    let script = ns.api::<ConfigMap>().get("script").await.unwrap();
    assert_eq!(script.data.unwrap()["run.sh"], "echo ${db_password}");
    let synced = ns.api::<Sync>().get("app").await.unwrap();
    let status = synced.status.unwrap();
    assert!(
        status.conditions.is_true(condition_type::READY),
        "{status:#?}"
    );
    assert_eq!(
        status.last_applied_revision.as_ref().map(|r| r.commit()),
        Some(commit.as_str())
    );
    // Values that come from no Secret are published substituted, as before.
    assert_nowhere_but_applied(&ns, &controllers, &[&first]).await;
    let plain = ns.api::<ConfigMap>().get("plain").await.unwrap();
    assert_eq!(plain.data.unwrap()["cluster"], "staging-east");

    // A change of the Secret alone: rendered again and applied.
    let second = unique_value("pw-");
    set_password(&ns, &second).await;
    wait_dsn(&ns, &controllers, &second).await;
    let db = ns.api::<Secret>().get("db").await.unwrap();
    assert_eq!(db.data.unwrap()["password"].0, second.as_bytes());

    // A value the Policy forbids: the render is denied and the last good value stays applied.
    let blocked = unique_value(BLOCKED_PREFIX);
    set_password(&ns, &blocked).await;
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
    assert!(
        denied.message.contains("no-blocked-password") && denied.message.contains("settings"),
        "{}",
        denied.message
    );
    let settings = ns.api::<ConfigMap>().get("settings").await.unwrap();
    assert!(
        settings.data.unwrap()["dsn"].contains(&second),
        "the last good value stays applied"
    );

    // Still nowhere but in the applied objects, all three values.
    let applied: BTreeMap<String, String> = ns
        .api::<ConfigMap>()
        .get("settings")
        .await
        .unwrap()
        .data
        .unwrap();
    assert!(applied["dsn"].contains(&second));
    assert_nowhere_but_applied(&ns, &controllers, &[&first, &second, &blocked]).await;
    drop(controllers);
}
