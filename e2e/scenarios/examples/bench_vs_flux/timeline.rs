//! When each app of a run reached each stage on its way to Ready, seen on watches of the apps
//! (Syncs or Kustomizations) and of their Deployments: created (by the bench), rendered (plumb's
//! `status.render.artifact`), finalizer added (the sync controller's first pass began its work),
//! Deployment applied (first seen), Deployment available (judged as plumb judges one), Ready. It
//! prints, per stage, when the last app reached it and how long apps took to reach it from their
//! create, and how many apps had reached each stage when the last one was created: where the time
//! after the last create goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use super::is_ready;

/// The stages, in order.
const STAGES: [&str; 6] = [
    "created",
    "rendered",
    "finalizer",
    "Deployment applied",
    "Deployment available",
    "Ready",
];

/// When one app reached each stage of [`STAGES`], since the run's start.
type Marks = [Option<Duration>; 6];

/// The marks of a run's apps, by app name, filled by watches.
pub struct Timeline {
    start: Instant,
    marks: Arc<Mutex<HashMap<String, Marks>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Whether a Deployment is available as plumb judges one (`crates/sync/src/health.rs`): observed
/// at its generation, every replica updated, available and ready.
pub fn available(d: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= want
        && status.replicas.unwrap_or(0) <= status.updated_replicas.unwrap_or(0)
        && status.available_replicas.unwrap_or(0) >= want
        && status.ready_replicas.unwrap_or(0) >= want
}

fn mark(marks: &Mutex<HashMap<String, Marks>>, name: &str, stage: usize, at: Duration) {
    let mut marks = marks.lock().unwrap();
    let m = marks.entry(name.to_owned()).or_default();
    if m[stage].is_none() {
        m[stage] = Some(at);
    }
}

impl Timeline {
    /// Starts watching `apps` (selected by `selector`) and the Deployments selected by
    /// `deployments`, whose label `owner_label` names their app; times count from `start`.
    pub fn watch(
        client: &Client,
        apps: &Api<DynamicObject>,
        selector: &str,
        deployments: &str,
        owner_label: &'static str,
        start: Instant,
    ) -> Self {
        let marks: Arc<Mutex<HashMap<String, Marks>>> = Arc::default();
        let on_app = marks.clone();
        let app_events = watcher(apps.clone(), watcher::Config::default().labels(selector))
            .default_backoff()
            .applied_objects()
            .for_each(move |o| {
                if let Ok(o) = o {
                    let at = start.elapsed();
                    let name = o.name_any();
                    if o.data.pointer("/status/render/artifact").is_some() {
                        mark(&on_app, &name, 1, at);
                    }
                    if o.finalizers().iter().any(|f| !f.is_empty()) {
                        mark(&on_app, &name, 2, at);
                    }
                    if is_ready(&o) {
                        mark(&on_app, &name, 5, at);
                    }
                }
                futures::future::ready(())
            });
        let on_deployment = marks.clone();
        let api: Api<Deployment> = Api::all(client.clone());
        let deployment_events = watcher(api, watcher::Config::default().labels(deployments))
            .default_backoff()
            .applied_objects()
            .for_each(move |d| {
                if let Ok(d) = d
                    && let Some(name) = d.labels().get(owner_label)
                {
                    let at = start.elapsed();
                    mark(&on_deployment, name, 3, at);
                    if available(&d) {
                        mark(&on_deployment, name, 4, at);
                    }
                }
                futures::future::ready(())
            });
        Self {
            start,
            marks,
            tasks: vec![tokio::spawn(app_events), tokio::spawn(deployment_events)],
        }
    }

    /// Records that the bench created app `name` now.
    pub fn created(&self, name: &str) {
        mark(&self.marks, name, 0, self.start.elapsed());
    }

    /// Prints the timeline of the apps whose create was recorded, and stops the watches.
    pub fn finish(self) {
        for t in &self.tasks {
            t.abort();
        }
        let marks = self.marks.lock().unwrap();
        let apps: Vec<&Marks> = marks.values().filter(|m| m[0].is_some()).collect();
        let Some(last_create) = apps.iter().filter_map(|m| m[0]).max() else {
            return;
        };
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "  timeline of the {} apps (s since the first create; from each app's create: p50 / p90 / max); at the last create ({:.1} s) how many had reached the stage:",
            apps.len(),
            secs(last_create)
        );
        for (i, stage) in STAGES.iter().enumerate() {
            let reached: Vec<Duration> = apps.iter().filter_map(|m| m[i]).collect();
            if reached.is_empty() {
                println!("    {stage}: not seen");
                continue;
            }
            let last = reached.iter().max().copied().unwrap_or_default();
            let mut from_create: Vec<Duration> = apps
                .iter()
                .filter_map(|m| Some(m[i]?.saturating_sub(m[0]?)))
                .collect();
            from_create.sort();
            let pick = |q: f64| {
                let k = ((from_create.len() as f64 - 1.0) * q).round() as usize;
                from_create.get(k).copied().unwrap_or_default()
            };
            let by_last_create = reached.iter().filter(|d| **d <= last_create).count();
            println!(
                "    {stage}: {} apps, the last at {:.1} s; {:.2} / {:.2} / {:.2} s after their create; {by_last_create} by the last create",
                reached.len(),
                secs(last),
                secs(pick(0.5)),
                secs(pick(0.9)),
                secs(pick(1.0)),
            );
        }
    }
}
