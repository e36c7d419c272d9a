//! What the controllers write on the way of one new Sync to Ready, counted: at scale the API
//! server is the shared bottleneck, and every write a Sync does not need delays the others. The
//! app is the one `make bench-vs-flux` runs a thousand of (a ServiceAccount, ConfigMap, Service
//! and Deployment, `wait` on). Its way to Ready is: the render controller's status (the rendered
//! artifact), the sync controller's finalizer, the four applies, and the sync controller's status
//! once, with the outcome; one Event, the sync controller's, for the revision applied. The states
//! in between (waiting for the render, waiting for the Deployment's controller to report on it)
//! last less than `--progress-report-delay` here (five minutes, so a loaded machine does not make
//! them last longer), so they are never written.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use plumb_api::{Conditions, GitRepository, Sync, condition_type};
use plumb_e2e_scenarios::bench::{FLEET_APP, http_get};
use plumb_e2e_scenarios::{Controller, Controllers, GitFixture, create_sync};
use plumb_e2e_support::{TestNamespace, wait_for};
use serde_json::json;

/// Bound on each wait (a failure bound, not a timing).
const WAIT: Duration = Duration::from_secs(120);

/// The sum of the samples of counter `name` in the `/metrics` of `c`.
async fn counter(controllers: &Controllers, c: Controller, name: &str) -> u64 {
    let text = http_get(&controllers.metrics_url(c))
        .await
        .unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until a reconcile of the Sync `name` by the sync controller that started after this
/// call has returned: the Sync is changed three times (an annotation no controller reads), each
/// after the reconcile counter moved; one Sync is never reconciled twice at once, so the third
/// counted reconcile started after the second had returned, and the second after this call.
async fn settle(controllers: &Controllers, syncs: &Api<Sync>, name: &str) {
    let reconciles = "plumb_reconcile_total{kind=\"Sync\"";
    let before = counter(controllers, Controller::Sync, reconciles).await;
    for round in 1..=3u64 {
        let poke = json!({"metadata": {"annotations": {"test.plumb.dev/poke": round.to_string()}}});
        syncs
            .patch(name, &PatchParams::default(), &Patch::Merge(&poke))
            .await
            .unwrap();
        wait_for(
            &format!("reconcile {round} after the poke"),
            WAIT,
            || async {
                let n = counter(controllers, Controller::Sync, reconciles).await;
                Ok::<_, String>((n >= before + round).then_some(()))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The Events about Sync `name` in `ns`.
async fn sync_events(ns: &TestNamespace, name: &str) -> Vec<Event> {
    let events: Api<Event> = ns.api();
    events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Sync") && r.name.as_deref() == Some(name)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_sync_reaches_ready_with_one_status_write_per_controller_and_one_event() {
    let ns = TestNamespace::new("e2e-status-writes").await.unwrap();
    let name = ns.name().to_owned();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();
    let git = GitFixture::new().await.unwrap();
    git.write("fleet/app.yaml", FLEET_APP).unwrap();
    let commit = git.commit("one app").unwrap();

    let flags = BTreeMap::from([(
        Controller::Sync,
        vec!["--progress-report-delay=5m".to_owned()],
    )]);
    let controllers = Controllers::start_with_flags(&name, flags).unwrap();
    git.create_source(ns.client(), &name, "app").await.unwrap();
    // As in the bench, the source is ready before the Sync comes: a Sync created first is
    // reported waiting for it (`SourceNotReady`), a state of the source, not of the Sync's way.
    let repos: Api<GitRepository> = ns.api();
    wait_for("the GitRepository's artifact", WAIT, || async {
        let repo = repos.get("app").await?;
        let artifact = repo.status.and_then(|s| s.artifact);
        Ok::<_, kube::Error>(artifact.map(|_| ()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    create_sync(
        &ns,
        "app",
        json!({"path": "./fleet", "interval": "1h", "wait": true, "timeout": "5m",
               "substitute": {"id": "0"}}),
    )
    .await
    .unwrap();
    let syncs: Api<Sync> = ns.api();
    controllers
        .wait_ready_at(&syncs, "app", &commit, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // Let the Deployment's controller finish its reports (each wakes the Sync), then let the
    // sync controller finish every pass they caused.
    let deployments: Api<Deployment> = ns.api();
    wait_for("the Deployment's last report", WAIT, || async {
        let d = deployments.get("app-0").await?;
        let done = d.status.and_then(|s| s.conditions).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            })
        });
        Ok::<_, kube::Error>(done.then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    settle(&controllers, &syncs, "app").await;
    // The Event is sent after the status write, without the reconcile waiting for it.
    wait_for("the Event of the applied revision", WAIT, || async {
        Ok::<_, String>((!sync_events(&ns, "app").await.is_empty()).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let sync = syncs.get("app").await.unwrap();
    let status = sync.status.clone().unwrap();
    let ready = status
        .conditions
        .get_condition(condition_type::READY)
        .unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    let healthy = status
        .conditions
        .get_condition(condition_type::HEALTHY)
        .unwrap();
    assert_eq!(healthy.message, "4 objects healthy", "{healthy:?}");
    assert_eq!(status.inventory.as_ref().map(Vec::len), Some(4));
    assert_eq!(status.history.len(), 1, "{:?}", status.history);
    assert!(
        sync.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "sync.plumb.dev/finalizer")
    );

    let writes = [
        (
            Controller::Render,
            "plumb_render_status_writes_total",
            1,
            "the render controller's status writes (the rendered artifact)",
        ),
        (
            Controller::Sync,
            "plumb_sync_status_writes_total",
            1,
            "the sync controller's status writes (the outcome only)",
        ),
        (
            Controller::Sync,
            "plumb_sync_applied_objects_total",
            4,
            "objects applied",
        ),
    ];
    for (c, metric, want, what) in writes {
        let got = counter(&controllers, c, metric).await;
        assert_eq!(got, want, "{what}: {metric}\n{status:#?}");
    }
    let events = sync_events(&ns, "app").await;
    let described: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.note.as_deref().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        events.len(),
        1,
        "one Event for the new Sync: {described:#?}"
    );
    let event = &events[0];
    assert_eq!(
        (event.type_.as_deref(), event.reason.as_deref()),
        (Some("Normal"), Some("ReconciliationSucceeded")),
        "{described:?}"
    );
    let note = event.note.as_deref().unwrap_or_default();
    assert!(
        note.contains(&commit) && note.contains("4 applied"),
        "{note}"
    );
}
