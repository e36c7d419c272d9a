//! The API server's floor for plumb's workload: exactly the writes plumb makes per app, made from
//! one client with the controllers' concurrency and no controller logic at all, on the same
//! cluster with kube-controller-manager reacting, timed until every Sync is Ready.
//!
//! Per app, as plumb writes them (`e2e/scenarios/tests/status_writes.rs` counts plumb's): the
//! render controller's status (server-side apply of `status.render` and `Rendered` under
//! `plumb-render`, 4 in flight as its 4 workers), then, through 4 "workers" as the sync
//! controller's: the finalizer (a JSON patch), the ServiceAccount, ConfigMap and Service applied at
//! once, then the Deployment (the two stages of `crates/sync/src/stage.rs`, with plumb's owner
//! labels); and once the Deployment controller reports the Deployment available (seen on a watch,
//! judged as plumb judges a Deployment), the sync status with `Ready` (server-side apply under
//! `plumb-sync`, through the same 4 workers) and one Event, sent without holding a worker. It
//! holds the watches plumb's controllers hold on the same objects (Syncs; the four kinds, label
//! selected), so the API server sends the same watch events.
//!
//! Two ways: the Syncs created first and the writes timed alone (the API server's own time for
//! plumb's writes), and the Syncs created one by one as the plumb run creates them with the
//! writes following each create at once (the floor for plumb's figure, first create to Ready).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Service, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use plumb_api::{
    RENDER_FIELD_MANAGER, SYNC_FIELD_MANAGER, SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL, reason,
};
use plumb_e2e_scenarios::bench::load_average;
use plumb_e2e_support::TestNamespace;

use super::timeline::{Timeline, available};
use super::{
    APP_LABEL, APPLY_WORKERS, System, apiserver_cpu, apiserver_writes, create_namespaces,
    delete_run, rendered_app, resource, wait_ready,
};

/// What one floor run measured.
pub struct Floor {
    /// Created one by one beside the writes (`true`), or all before them.
    pub paced: bool,
    pub apps: usize,
    /// From the first create to the last (zero when created before the writes).
    pub created: Duration,
    /// Until every Deployment was reported available.
    pub available: Duration,
    /// Until every Sync was Ready.
    pub ready: Duration,
    pub apiserver_cpu: Option<f64>,
    /// The API server's write requests over the run, every client's: verb, resource, count.
    pub writes: Vec<(String, String, f64)>,
    pub load: String,
    /// Requests in flight per stage ("workers"): the controllers' count unless
    /// `BENCH_FLOOR_WORKERS` says otherwise.
    pub workers: usize,
}

/// The floor's workers per stage: `BENCH_FLOOR_WORKERS`, else the controllers' own count. More
/// than the controllers run shows whether the API server (not the workers) sets the floor.
pub fn floor_workers() -> usize {
    match std::env::var("BENCH_FLOOR_WORKERS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("BENCH_FLOOR_WORKERS={v:?}: want a count above zero")),
        Err(_) => APPLY_WORKERS,
    }
}

impl Floor {
    /// From the last create to all Ready.
    pub fn after_last_create(&self) -> Duration {
        self.ready.saturating_sub(self.created)
    }

    pub fn label(&self) -> &'static str {
        if self.paced {
            "API server floor, plumb's writes as the Syncs are created"
        } else {
            "API server floor, plumb's writes after the creates"
        }
    }

    pub fn print(&self) {
        let n = self.apps.max(1) as f64;
        let created = if self.paced {
            format!("created in {:.1} s, ", self.created.as_secs_f64())
        } else {
            "created before, timed from the first write; ".to_owned()
        };
        println!(
            "{} N={} ({} workers a stage): {created}every Deployment available after {:.1} s, all Ready after {:.1} s ({:.1} s after the last create); API server {}; load {}",
            self.label(),
            self.apps,
            self.workers,
            self.available.as_secs_f64(),
            self.ready.as_secs_f64(),
            self.after_last_create().as_secs_f64(),
            self.apiserver_cpu
                .map_or("unknown".into(), |c| format!("{c:.1} CPU s")),
            self.load,
        );
        let total: f64 = self.writes.iter().map(|w| w.2).sum();
        println!(
            "    API writes over the run, every client's: {total:.0}, {:.1} per app",
            total / n
        );
        for (verb, resource, count) in &self.writes {
            println!(
                "      {verb} {resource}: {count:.0} ({:.2} per app)",
                count / n
            );
        }
    }
}

/// One app of the floor, once its Sync exists.
#[derive(Clone)]
struct App {
    id: usize,
    /// The Sync's name and the reference its Event names.
    name: String,
    regarding: ObjectReference,
}

/// Where an app is between its first pass and its report.
enum Stage {
    /// The first pass is done; its Deployment is not reported available yet.
    Applied(App),
    /// Its Deployment was reported available before its first pass ended.
    Available,
    /// Its report is under way.
    Reported,
}

/// A revision and digests of the shape plumb writes (the floor renders nothing).
const REVISION: &str = "main@sha1:0123456789abcdef0123456789abcdef01234567";
const SOURCE_DIGEST: &str =
    "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const DIGEST: &str = "sha256:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn condition(type_: &str, reason: &str, message: &str) -> Value {
    json!({ "type": type_, "status": "True", "reason": reason, "message": message,
            "observedGeneration": 1, "lastTransitionTime": now() })
}

/// The render controller's status write for `app`, as `crates/render/src/status.rs` makes it.
fn render_status(ctl: &str, app: &App) -> Value {
    json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": { "name": app.name, "namespace": ctl },
        "status": {
            "render": {
                "observedGeneration": 1, "sourceRevision": REVISION, "sourceDigest": SOURCE_DIGEST,
                "artifact": { "revision": REVISION, "digest": DIGEST, "size": 420,
                              "url": format!("http://127.0.0.1:9/sync/{ctl}/{}/{DIGEST}.yaml.gz", app.name),
                              "lastUpdateTime": now() },
                "objects": 4,
            },
            "conditions": [condition("Rendered", reason::SUCCEEDED, "")],
        }
    })
}

/// The sync controller's status write once `app` is Ready, with the fields
/// `crates/sync/src/status.rs` sets for a first apply.
fn sync_status(ctl: &str, app: &App, objects: &[Value]) -> Value {
    let inventory: Vec<Value> = objects
        .iter()
        .map(|o| {
            let api_version = o["apiVersion"].as_str().unwrap_or_default();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let id = format!(
                "{}_{}_{group}_{}",
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default(),
                o["kind"].as_str().unwrap_or_default()
            );
            json!({ "id": id, "v": version })
        })
        .collect();
    json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": { "name": app.name, "namespace": ctl },
        "status": {
            "observedGeneration": 1,
            "inventory": inventory,
            "lastAttemptedRevision": REVISION,
            "lastAppliedRevision": REVISION,
            "lastAppliedDigest": DIGEST,
            "conditions": [
                condition("Healthy", reason::SUCCEEDED, "4 objects healthy"),
                condition("Ready", reason::SUCCEEDED, &format!("Applied revision: {REVISION}")),
            ],
            "history": [{ "revision": REVISION, "digest": DIGEST, "result": reason::SUCCEEDED,
                          "duration": "40ms", "time": now() }],
        }
    })
}

/// The objects of `app` as plumb applies them: the rendered app in its namespace, with plumb's
/// owner labels.
fn objects_of(ctl: &str, app: &App) -> Vec<Value> {
    rendered_app(app.id, &format!("{ctl}-{}", app.id))
        .into_iter()
        .map(|mut o| {
            let labels = &mut o["metadata"]["labels"];
            if !labels.is_object() {
                *labels = json!({});
            }
            labels[SYNC_NAME_LABEL] = json!(app.name);
            labels[SYNC_NAMESPACE_LABEL] = json!(ctl);
            o
        })
        .collect()
}

async fn apply(client: &Client, o: &Value) {
    let api_version = o["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar = resource(group, version, o["kind"].as_str().unwrap());
    let ns = o["metadata"]["namespace"].as_str().unwrap();
    let name = o["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let params = PatchParams::apply(SYNC_FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(o)).await.unwrap();
}

/// The sync controller's first pass of `app`: the finalizer, then the objects in two stages.
async fn first_pass(client: &Client, syncs: &Api<DynamicObject>, ctl: &str, app: &App) {
    let finalizer = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["sync.plumb.dev/finalizer"]},
    ]);
    let patch = serde_json::from_value(finalizer).unwrap();
    syncs
        .patch(
            &app.name,
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
        .unwrap();
    let objects = objects_of(ctl, app);
    let (deployments, first): (Vec<&Value>, Vec<&Value>) =
        objects.iter().partition(|o| o["kind"] == "Deployment");
    futures::future::join_all(first.into_iter().map(|o| apply(client, o))).await;
    futures::future::join_all(deployments.into_iter().map(|o| apply(client, o))).await;
}

/// Drains a label-selected watch of `K` in every namespace until the run ends: a watch the
/// controllers hold, whose events the API server sends.
fn hold_watch<K>(client: &Client, selector: &str) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let stream = watcher(api, watcher::Config::default().labels(selector)).default_backoff();
    tokio::spawn(stream.for_each(|_| async {}))
}

/// One floor run of `count` apps; `paced`: the Syncs created one by one beside the writes.
pub async fn floor(client: &Client, count: usize, paced: bool) -> Floor {
    let control = TestNamespace::new("bvf-floor").await.unwrap();
    let ctl = control.name().to_owned();
    eprintln!(
        "API server floor N={count} ({}): namespaces {ctl}-*",
        if paced { "paced" } else { "after the creates" }
    );
    create_namespaces(client, &ctl, count, &control.test_labels()).await;
    let syncs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ctl, &System::Plumb.app_kind());
    let owned = format!("{SYNC_NAMESPACE_LABEL}={ctl}");
    let mut held = vec![
        hold_watch::<ServiceAccount>(client, &owned),
        hold_watch::<ConfigMap>(client, &owned),
        hold_watch::<Service>(client, &owned),
    ];
    // The render and sync controllers' watches of Syncs (the bench's own is `wait_ready`'s).
    for _ in 0..2 {
        let sync_watch = watcher(syncs.clone(), watcher::Config::default()).default_backoff();
        held.push(tokio::spawn(sync_watch.for_each(|_| async {})));
    }

    let (created_tx, mut created_rx) = mpsc::unbounded_channel::<App>();
    let (rendered_tx, mut rendered_rx) = mpsc::unbounded_channel::<App>();
    let (healthy_tx, mut healthy_rx) = mpsc::unbounded_channel::<App>();
    let stages: Arc<Mutex<HashMap<String, Stage>>> = Arc::default();
    let workers = floor_workers();
    let render_workers = Arc::new(Semaphore::new(workers));
    let sync_workers = Arc::new(Semaphore::new(workers));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "plumb-sync".into(),
            instance: None,
        },
    );

    let render = {
        let (client, ctl) = (client.clone(), ctl.clone());
        tokio::spawn(async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client, &ctl, &System::Plumb.app_kind());
            let mut tasks = Vec::new();
            while let Some(app) = created_rx.recv().await {
                let permit = render_workers.clone().acquire_owned().await.unwrap();
                let (api, ctl, tx) = (api.clone(), ctl.clone(), rendered_tx.clone());
                tasks.push(tokio::spawn(async move {
                    let params = PatchParams::apply(RENDER_FIELD_MANAGER).force();
                    let body = render_status(&ctl, &app);
                    api.patch_status(&app.name, &params, &Patch::Apply(&body))
                        .await
                        .unwrap();
                    drop(permit);
                    let _ = tx.send(app);
                }));
            }
            futures::future::join_all(tasks).await;
        })
    };
    let first_passes = {
        let (client, ctl, syncs) = (client.clone(), ctl.clone(), syncs.clone());
        let (workers, stages, healthy_tx) =
            (sync_workers.clone(), stages.clone(), healthy_tx.clone());
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            while let Some(app) = rendered_rx.recv().await {
                let permit = workers.clone().acquire_owned().await.unwrap();
                let (client, ctl, syncs) = (client.clone(), ctl.clone(), syncs.clone());
                let (stages, healthy_tx) = (stages.clone(), healthy_tx.clone());
                tasks.push(tokio::spawn(async move {
                    first_pass(&client, &syncs, &ctl, &app).await;
                    drop(permit);
                    let mut stages = stages.lock().unwrap();
                    // Its Deployment may have been reported available before the pass ended.
                    match stages.get(&app.name) {
                        Some(Stage::Available) => {
                            stages.insert(app.name.clone(), Stage::Reported);
                            let _ = healthy_tx.send(app);
                        }
                        _ => {
                            stages.insert(app.name.clone(), Stage::Applied(app));
                        }
                    }
                }));
            }
            futures::future::join_all(tasks).await;
        })
    };
    let start_cell: Arc<Mutex<Option<Instant>>> = Arc::default();
    let available_at: Arc<Mutex<Option<Duration>>> = Arc::default();
    let health = {
        let (client, stages, start_cell, available_at) = (
            client.clone(),
            stages.clone(),
            start_cell.clone(),
            available_at.clone(),
        );
        let selector = owned.clone();
        tokio::spawn(async move {
            let api: Api<Deployment> = Api::all(client);
            let stream = watcher(api, watcher::Config::default().labels(&selector))
                .default_backoff()
                .applied_objects();
            let mut stream = std::pin::pin!(stream);
            let mut seen = 0;
            while let Some(Ok(d)) = stream.next().await {
                if !available(&d) {
                    continue;
                }
                let Some(name) = d.labels().get(SYNC_NAME_LABEL).cloned() else {
                    continue;
                };
                let mut stages = stages.lock().unwrap();
                match stages.remove(&name) {
                    Some(Stage::Applied(app)) => {
                        stages.insert(name, Stage::Reported);
                        let _ = healthy_tx.send(app);
                    }
                    None => {
                        stages.insert(name, Stage::Available);
                    }
                    Some(done) => {
                        stages.insert(name, done);
                        continue;
                    }
                }
                seen += 1;
                if seen == count {
                    let start = start_cell.lock().unwrap().unwrap_or_else(Instant::now);
                    *available_at.lock().unwrap() = Some(start.elapsed());
                }
            }
        })
    };
    let reports = {
        let (client, ctl) = (client.clone(), ctl.clone());
        tokio::spawn(async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client, &ctl, &System::Plumb.app_kind());
            let mut tasks = Vec::new();
            while let Some(app) = healthy_rx.recv().await {
                let permit = sync_workers.clone().acquire_owned().await.unwrap();
                let (api, ctl, recorder) = (api.clone(), ctl.clone(), recorder.clone());
                tasks.push(tokio::spawn(async move {
                    let objects = objects_of(&ctl, &app);
                    let params = PatchParams::apply(SYNC_FIELD_MANAGER).force();
                    let body = sync_status(&ctl, &app, &objects);
                    api.patch_status(&app.name, &params, &Patch::Apply(&body))
                        .await
                        .unwrap();
                    drop(permit);
                    // Sent without holding a worker, as the sync controller sends its Events.
                    let event = Event {
                        type_: EventType::Normal,
                        reason: reason::SUCCEEDED.into(),
                        note: Some(format!("revision {REVISION}: 4 applied")),
                        action: "Reconcile".into(),
                        secondary: None,
                    };
                    tokio::spawn(async move {
                        let _ = recorder.publish(&event, &app.regarding).await;
                    });
                }));
                if tasks.len() == count {
                    break;
                }
            }
            futures::future::join_all(tasks).await;
        })
    };

    let apiserver_before = apiserver_cpu();
    let writes_before = apiserver_writes(client).await;
    let fleet: Vec<(usize, Value)> = (0..count)
        .map(|i| {
            let app = System::Plumb.app(&ctl, &i.to_string(), &format!("{ctl}-{i}"), "10m");
            (i, app)
        })
        .collect();
    let timeline =
        |start| Timeline::watch(client, &syncs, APP_LABEL, &owned, SYNC_NAME_LABEL, start);
    let mut start = Instant::now();
    let mut created = Duration::ZERO;
    let mut made = Vec::with_capacity(count);
    let mut paced_timeline = paced.then(|| timeline(start));
    for (id, o) in fleet {
        let obj: DynamicObject = serde_json::from_value(o).unwrap();
        let stored = syncs.create(&PostParams::default(), &obj).await.unwrap();
        let app = App {
            id,
            name: stored.name_any(),
            regarding: ObjectReference {
                api_version: Some("sync.plumb.dev/v1".into()),
                kind: Some("Sync".into()),
                name: stored.metadata.name.clone(),
                namespace: stored.metadata.namespace.clone(),
                uid: stored.metadata.uid.clone(),
                resource_version: stored.metadata.resource_version.clone(),
                ..Default::default()
            },
        };
        match &paced_timeline {
            Some(t) => {
                t.created(&app.name);
                *start_cell.lock().unwrap() = Some(start);
                created_tx.send(app).unwrap();
            }
            None => made.push(app),
        }
    }
    let timeline = match paced_timeline.take() {
        Some(t) => {
            created = start.elapsed();
            t
        }
        None => {
            start = Instant::now();
            *start_cell.lock().unwrap() = Some(start);
            let t = timeline(start);
            for app in made {
                t.created(&app.name);
                created_tx.send(app).unwrap();
            }
            t
        }
    };
    drop(created_tx);
    let ready = wait_ready(&syncs, APP_LABEL, count, start, &|| String::new()).await;
    let apiserver_cpu = apiserver_before.zip(apiserver_cpu()).map(|(a, b)| b - a);
    let writes = super::writes_between(&writes_before, &apiserver_writes(client).await);
    let load = load_average();
    timeline.finish();
    render.await.unwrap();
    first_passes.await.unwrap();
    reports.await.unwrap();
    health.abort();
    for h in held {
        h.abort();
    }
    let available = available_at.lock().unwrap().unwrap_or(ready);
    let figures = Floor {
        paced,
        apps: count,
        created,
        available,
        ready,
        apiserver_cpu,
        writes,
        load,
        workers,
    };
    figures.print();
    delete_run(client, control, System::Plumb, &ctl).await;
    figures
}

/// The floor's rows of the closing table.
pub fn table_rows(n: usize, floors: &[Floor]) -> Vec<String> {
    floors
        .iter()
        .map(|f| {
            let created = if f.paced {
                format!("; created in {:.1} s", f.created.as_secs_f64())
            } else {
                String::new()
            };
            format!(
                "| {n} | {} | {:.1} s ({:.1} s{created}) | | (API server {}) | | |",
                f.label(),
                f.ready.as_secs_f64(),
                f.after_last_create().as_secs_f64(),
                f.apiserver_cpu
                    .map_or("unknown".into(), |c| format!("{c:.1}")),
            )
        })
        .collect()
}
