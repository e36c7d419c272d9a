//! A new source artifact re-renders only the Syncs whose files it changed; the others carry
//! their rendered artifact to the new revision without rendering, once the changed ones were
//! applied.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use plumb_api::reference::Artifact;
use plumb_api::{SYNC_FIELD_MANAGER, Sync};
use serde_json::json;
use support::{TIMEOUT, World};

const APPS: [&str; 3] = ["one", "two", "three"];
const RENDERS: &str = "plumb_render_renders_total";
const CARRIED: &str = "plumb_render_carried_forward_total";
const HELD: &str = "plumb_render_fanout_held_syncs";

fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value}\n")
}

/// The tree: a shared base, and one overlay per app using it with a file of its own.
fn tree(base: &str, own_of_one: &str) -> Vec<(String, String)> {
    let mut files = vec![
        (
            "base/kustomization.yaml".to_owned(),
            "resources: [settings.yaml]\n".to_owned(),
        ),
        (
            "base/settings.yaml".to_owned(),
            config_map("settings", base),
        ),
    ];
    for app in APPS {
        files.push((
            format!("apps/{app}/kustomization.yaml"),
            format!("resources: [../../base, own.yaml]\nnamePrefix: {app}-\n"),
        ));
        let own = if app == "one" { own_of_one } else { "v1" };
        files.push((format!("apps/{app}/own.yaml"), config_map("own", own)));
    }
    files
}

async fn publish(w: &World, commit: char, files: &[(String, String)]) {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    w.publish_source("app", commit, &files, None).await;
}

fn revision(commit: char) -> String {
    format!("main@sha1:{}", commit.to_string().repeat(40))
}

fn artifact(s: &Sync) -> Artifact {
    s.status
        .as_ref()
        .and_then(|s| s.render.as_ref())
        .and_then(|r| r.artifact.clone())
        .unwrap()
}

/// Waits until every app's render reports source revision `commit`; their artifacts by app.
async fn all_at(w: &World, commit: char) -> Vec<Artifact> {
    let mut out = Vec::new();
    for app in APPS {
        let want = revision(commit);
        let s = w
            .wait_sync(app, &format!("Sync {app} rendered from {want}"), |s| {
                s.status
                    .as_ref()
                    .and_then(|s| s.render.as_ref())
                    .and_then(|r| r.source_revision.as_ref())
                    .is_some_and(|r| r.to_string() == want)
            })
            .await;
        let a = artifact(&s);
        assert_eq!(
            a.revision.to_string(),
            want,
            "{app}: the artifact's revision"
        );
        out.push(a);
    }
    out
}

/// Publishes commit `a` and a Sync per app; their artifacts once all rendered it.
async fn start_at_a(w: &World) -> Vec<Artifact> {
    publish(w, 'a', &tree("v1", "v1")).await;
    for app in APPS {
        w.apply_sync(
            app,
            "app",
            json!({"path": format!("./apps/{app}"), "targetNamespace": w.name()}),
        )
        .await;
    }
    all_at(w, 'a').await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_re_renders_only_the_syncs_whose_files_it_changed() {
    let w = World::new("render-fanout").await;
    let first = start_at_a(&w).await;
    let (renders, carried) = (w.counter(RENDERS), w.counter(CARRIED));
    assert!(renders >= 3.0, "{renders} renders of three Syncs");

    // One app's own file changed: only that Sync renders.
    publish(&w, 'b', &tree("v1", "v2")).await;
    let second = all_at(&w, 'b').await;
    assert_eq!(
        w.counter(RENDERS) - renders,
        1.0,
        "renders for a one-app commit"
    );
    assert_eq!(w.counter(CARRIED) - carried, 2.0, "renders carried forward");
    assert_ne!(second[0].digest, first[0].digest, "one: rendered anew");
    for i in [1, 2] {
        assert_eq!(
            (&second[i].digest, &second[i].url),
            (&first[i].digest, &first[i].url),
            "{}: the same rendered artifact, now for revision b",
            APPS[i]
        );
    }
    let two = w.wait_sync("two", "Sync two", |_| true).await;
    let own = w
        .rendered_objects(&two)
        .await
        .into_iter()
        .find(|o| o["metadata"]["name"] == "two-own")
        .unwrap();
    assert_eq!(own["data"]["value"], "v1", "two's own file as it was");

    // The shared base changed: every Sync using it renders.
    let (renders, carried) = (w.counter(RENDERS), w.counter(CARRIED));
    publish(&w, 'c', &tree("v2", "v2")).await;
    let third = all_at(&w, 'c').await;
    assert_eq!(
        w.counter(RENDERS) - renders,
        3.0,
        "renders for a base change"
    );
    assert_eq!(w.counter(CARRIED) - carried, 0.0);
    for (i, app) in APPS.iter().enumerate() {
        assert_ne!(third[i].digest, second[i].digest, "{app}: rendered anew");
        let s = w.wait_sync(app, app, |_| true).await;
        let settings = w
            .rendered_objects(&s)
            .await
            .into_iter()
            .find(|o| o["metadata"]["name"] == format!("{app}-settings"))
            .unwrap();
        assert_eq!(settings["data"]["value"], "v2", "{app}: the new base");
    }
}

fn source_revision(s: &Sync) -> Option<String> {
    let render = s.status.as_ref()?.render.as_ref()?;
    render.source_revision.as_ref().map(ToString::to_string)
}

/// Waits until the controller holds `n` Syncs back for applies.
async fn held(w: &World, n: f64) {
    w.wait(&format!("{n} Syncs held for applies"), TIMEOUT, || async {
        Ok::<_, String>((w.counter(HELD) == n).then_some(()))
    })
    .await;
}

/// Writes what the sync controller writes when it has attempted `commit` of Sync `name`: its
/// `lastAttemptedRevision`, under its own field manager.
async fn attempted(w: &World, name: &str, commit: char) {
    let api: Api<Sync> = w.ns.api();
    api.patch_status(
        name,
        &PatchParams::apply(SYNC_FIELD_MANAGER).force(),
        &Patch::Apply(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "status": {"lastAttemptedRevision": revision(commit)},
        })),
    )
    .await
    .unwrap();
}

/// Starts the three apps at commit `a`, then publishes commit `b`, which changes app one's own
/// file only.
async fn one_app_commit(w: &World) {
    start_at_a(w).await;
    publish(w, 'b', &tree("v1", "v2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syncs_a_commit_left_unchanged_move_to_it_once_the_changed_one_is_applied() {
    let w = World::with_config("render-apply-first", |c| plumb_render::Config {
        // Longer than the test: only the attempt lets the others move on.
        apply_first_timeout: Duration::from_secs(3600),
        ..c
    })
    .await;
    one_app_commit(&w).await;
    w.wait_sync("one", "Sync one rendered from b", |s| {
        source_revision(s) == Some(revision('b'))
    })
    .await;
    // The plan holds the two others back. (Another trigger, e.g. any Policy changed in the
    // cluster, still reconciles them: each reconcile decides for itself.)
    held(&w, 2.0).await;
    attempted(&w, "one", 'b').await;
    all_at(&w, 'b').await;
    held(&w, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_syncs_a_commit_left_unchanged_move_to_it_when_the_changed_one_is_not_applied_in_time()
{
    let w = World::with_config("render-apply-first-timeout", |c| plumb_render::Config {
        apply_first_timeout: Duration::from_secs(1),
        ..c
    })
    .await;
    one_app_commit(&w).await;
    // Nothing applies one (no sync controller runs): the others still move on.
    all_at(&w, 'b').await;
    held(&w, 0.0).await;
}

/// A source tree deeper than the unpacker allows (a tree that deep would overflow the stack of
/// whatever walks it, the controller with it) is refused: each Sync of that repository says so,
/// naming the GitRepository and the limit, while a Sync of another repository renders.
#[tokio::test(flavor = "multi_thread")]
async fn a_too_deep_source_tree_fails_its_syncs_by_name_and_others_render() {
    let w = World::new("render-deep-tree").await;
    let deep = format!("apps/deep/{}/settings.yaml", ["d"; 130].join("/"));
    let settings = config_map("settings", "v1");
    w.publish_source(
        "hostile",
        '1',
        &[("apps/ok/settings.yaml", &settings), (&deep, &settings)],
        None,
    )
    .await;
    w.publish_source("good", '1', &[("apps/ok/settings.yaml", &settings)], None)
        .await;
    for (sync, repo) in [
        ("victim-a", "hostile"),
        ("victim-b", "hostile"),
        ("bystander", "good"),
    ] {
        w.apply_sync(sync, repo, json!({"path": "./apps/ok"})).await;
    }
    let want = format!(
        "GitRepository {}/hostile: unpacking artifact: exceeds the limit of 128 directory levels \
         ({}...)",
        w.name(),
        &deep[..80]
    );
    for name in ["victim-a", "victim-b"] {
        let sync = w.wait_rendered(name, "False", "ArtifactFailed").await;
        assert_eq!(support::rendered(&sync).unwrap().message, want, "{name}");
    }
    w.wait_rendered("bystander", "True", "ReconciliationSucceeded")
        .await;
}
