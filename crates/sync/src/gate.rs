//! The gates a Sync passes before anything is applied, as plain functions over plain data:
//! cross-namespace references, dependencies, the render controller's verdict, and sync windows.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use plumb_api::condition::status;
use plumb_api::policy::SyncWindow;
use plumb_api::reference::Artifact;
use plumb_api::{Conditions, Revision, Sync, SyncStatus, condition_type};

use crate::deps::{self, Key};
use crate::error::Error;
use crate::sync_view::SyncView;
use crate::window::{self, Verdict};

/// Refuses a `sourceRef` into another namespace when the controller is told to.
pub fn cross_namespace(refuse: bool, sync: &Sync) -> Result<(), Error> {
    let own = sync.metadata.namespace.as_deref().unwrap_or_default();
    match sync.spec.source_ref.namespace.as_deref() {
        Some(ns) if refuse && ns != own => Err(Error::CrossNamespaceRef {
            namespace: ns.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Whether every Sync of `sync`'s `dependsOn` is Ready at its latest revision (and, when it
/// renders from the same source, at `revision`, the one `sync` is about to apply), or true by
/// its `readyExpr`, among `all` (the Syncs this controller knows); a cycle through `sync` and a
/// `readyExpr` that does not compile are errors of their own.
pub fn dependencies(
    sync: &Sync,
    all: &[Arc<SyncView>],
    revision: Option<&Revision>,
) -> Result<(), Error> {
    cycle(sync, all)?;
    // Of the cached Syncs, only its dependencies are read back.
    let mut found = Vec::new();
    for key in deps::dependencies(sync) {
        if let Some(view) = all.iter().find(|v| v.is(&key)) {
            found.push((key, view.sync()?));
        }
    }
    let waiting = deps::not_ready(sync, revision, |k| {
        found.iter().find(|(key, _)| key == k).map(|(_, s)| s)
    })?;
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(Error::DependenciesNotReady { waiting })
    }
}

/// A cycle through `sync` in the `dependsOn` graph of `all`.
fn cycle(sync: &Sync, all: &[Arc<SyncView>]) -> Result<(), Error> {
    // A Sync without dependencies has no edge to follow.
    let edges: BTreeMap<Key, Vec<Key>> = all
        .iter()
        .filter(|v| !v.dependencies().is_empty())
        .map(|v| (v.key(), v.dependencies().to_vec()))
        .collect();
    match deps::cycle_through(&deps::key_of(sync), &edges) {
        Some(cycle) => Err(Error::DependencyCycle {
            cycle: deps::show_cycle(&cycle),
        }),
        None => Ok(()),
    }
}

/// Whether `sync` holds something not applied yet: a render other than the one last applied, or
/// a spec generation not applied yet. `current` is the sync controller's part of its status. The
/// generation last applied is the `Healthy` condition's: only a pass that applied everything
/// assesses health (a pass held back, or failed, leaves that condition as it was).
pub fn pending(sync: &Sync, current: &SyncStatus) -> bool {
    let render = render(sync).artifact.map(|a| a.digest);
    let applied_generation = current
        .conditions
        .get_condition(condition_type::HEALTHY)
        .and_then(|c| c.observed_generation);
    current.last_applied_digest.is_none()
        || current.last_applied_digest != render
        || applied_generation != sync.metadata.generation
}

/// The dependency gate of one pass over `sync` (`current` being the sync controller's part of
/// its status), among `all`:
/// - `Err`: the pass ends with it: a cycle (the Sync stalls), or dependencies not ready while
///   nothing was ever applied (nothing to heal either);
/// - `Ok(Some(e))`: what is [`pending`] waits for the dependencies (`e` says which); the
///   revision already applied is still healed;
/// - `Ok(None)`: go on.
///
/// Dependencies hold back only what is pending. A Sync whose render and spec are applied
/// already has nothing to wait for: it stays Ready at the revision it applied, instead of
/// showing `DependencyNotReady` while its status names that revision as applied.
pub fn dependency_hold(
    sync: &Sync,
    current: &SyncStatus,
    all: &[Arc<SyncView>],
) -> Result<Option<Error>, Error> {
    if !pending(sync, current) {
        cycle(sync, all)?;
        return Ok(None);
    }
    let revision = render(sync).artifact.map(|a| a.revision);
    match dependencies(sync, all, revision.as_ref()) {
        Ok(()) => Ok(None),
        Err(e @ (Error::DependencyCycle { .. } | Error::InvalidReadyExpr(_))) => Err(e),
        Err(e) if current.last_applied_digest.is_none() => Err(e),
        Err(e) => Ok(Some(e)),
    }
}

/// What the render controller has to offer: the artifact it last published, and why its last
/// render failed, if it did (the artifact is then the last good one, if any).
#[derive(Debug)]
pub struct Render {
    /// The rendered artifact to apply.
    pub artifact: Option<Artifact>,
    /// The last render's failure (`Rendered=False`), carried into `Ready`.
    pub failure: Option<Error>,
}

/// The render controller's verdict on `sync`, from its part of the status.
pub fn render(sync: &Sync) -> Render {
    let status = sync.status.as_ref();
    let failure = status
        .and_then(|s| s.conditions.get_condition(condition_type::RENDERED))
        .filter(|c| c.status == status::FALSE)
        .map(|c| Error::RenderFailed {
            reason: c.reason.clone(),
            message: c.message.clone(),
        });
    Render {
        artifact: status
            .and_then(|s| s.render.as_ref())
            .and_then(|r| r.artifact.clone()),
        failure,
    }
}

/// Whether a new revision may be applied now under `windows`: `Ok(None)` when it may, else
/// `Ok(Some(until))` with when the hold ends, if known.
pub fn window(windows: &[&SyncWindow], now: Timestamp) -> Result<Option<Option<Timestamp>>, Error> {
    match window::verdict(windows, now)? {
        Verdict::Open => Ok(None),
        Verdict::Closed { until } => Ok(Some(until)),
    }
}

#[cfg(test)]
mod tests {
    use plumb_api::condition::new_condition;
    use plumb_api::sync::RenderStatus;
    use serde_json::json;

    use super::*;

    fn sync(spec: serde_json::Value) -> Sync {
        let mut full = json!({"sourceRef": {"kind": "GitRepository", "name": "repo"}});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        let mut s: Sync = serde_json::from_value(json!({
            "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
            "metadata": {"name": "app", "namespace": "team", "generation": 1},
            "spec": full,
        }))
        .unwrap();
        s.status = Some(SyncStatus::default());
        s
    }

    fn ready(mut s: Sync) -> Sync {
        let status = s.status.get_or_insert_with(Default::default);
        status.observed_generation = Some(1);
        status.conditions.push(new_condition(
            condition_type::READY,
            status::TRUE,
            "ReconciliationSucceeded",
            "",
            Some(1),
        ));
        s
    }

    fn named(name: &str, spec: serde_json::Value) -> Sync {
        let mut s = sync(spec);
        s.metadata.name = Some(name.into());
        s
    }

    #[test]
    fn cross_namespace_gate() {
        let cases = [
            (json!({}), true, None),
            (
                json!({"sourceRef": {"kind": "GitRepository", "name": "r", "namespace": "team"}}),
                true,
                None,
            ),
            (
                json!({"sourceRef": {"kind": "GitRepository", "name": "r", "namespace": "other"}}),
                false,
                None,
            ),
            (
                json!({"sourceRef": {"kind": "GitRepository", "name": "r", "namespace": "other"}}),
                true,
                Some("AccessDenied"),
            ),
        ];
        for (spec, refuse, want) in cases {
            let got = cross_namespace(refuse, &sync(spec.clone())).err();
            assert_eq!(
                got.as_ref().map(Error::reason),
                want,
                "{spec} refuse={refuse}"
            );
        }
    }

    #[test]
    fn dependency_gate() {
        let app = named("app", json!({"dependsOn": [{"name": "db"}]}));
        let db_ready = ready(named("db", json!({})));
        let db_not_ready = named("db", json!({}));
        let db_cyclic = ready(named("db", json!({"dependsOn": [{"name": "app"}]})));
        type Case<'a> = (&'a str, Vec<Sync>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("ready", vec![db_ready], None),
            (
                "not ready",
                vec![db_not_ready],
                Some("dependencies not ready: team/db (not ready)"),
            ),
            (
                "missing",
                vec![],
                Some("dependencies not ready: team/db (not found)"),
            ),
            (
                "cycle",
                vec![db_cyclic],
                Some("dependency cycle: team/app -> team/db -> team/app"),
            ),
        ];
        for (what, others, want) in cases {
            let mut all = others;
            all.push(app.clone());
            let got = dependencies(&app, &views(all), None)
                .err()
                .map(|e| e.to_string());
            assert_eq!(got.as_deref(), want, "{what}");
        }
    }

    /// The Syncs as the cache holds them.
    fn views(all: Vec<Sync>) -> Vec<Arc<SyncView>> {
        all.into_iter().map(|s| Arc::new(SyncView::of(s))).collect()
    }

    fn labelled(mut s: Sync, version: &str) -> Sync {
        s.metadata.labels = Some([("app/version".to_owned(), version.to_owned())].into());
        s
    }

    #[test]
    fn ready_expr_gate() {
        let lockstep = "dep.metadata.labels['app/version'] == self.metadata.labels['app/version']";
        let with_expr = |expr: &str| {
            labelled(
                named(
                    "app",
                    json!({"dependsOn": [{"name": "db", "readyExpr": expr}]}),
                ),
                "v2",
            )
        };
        type Case<'a> = (&'a str, &'a str, Option<Sync>, Result<(), &'a str>);
        let cases: Vec<Case> = vec![
            (
                "true: ready although its Ready condition is not (the built-in check is replaced)",
                lockstep,
                Some(labelled(named("db", json!({})), "v2")),
                Ok(()),
            ),
            (
                "false: not ready although Ready",
                lockstep,
                Some(labelled(ready(named("db", json!({}))), "v1")),
                Err(
                    "dependencies not ready: team/db (readyExpr \"dep.metadata.labels['app/version'] == self.metadata.labels['app/version']\" is false)",
                ),
            ),
            (
                "a missing dependency is not found, whatever the expression",
                "true",
                None,
                Err("dependencies not ready: team/db (not found)"),
            ),
            (
                "reads the dependency's status",
                "dep.status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')",
                Some(ready(named("db", json!({})))),
                Ok(()),
            ),
            (
                "a field the dependency lacks: not ready, with the evaluation error",
                "dep.status.phase == 'Done'",
                Some(ready(named("db", json!({})))),
                Err("could not be evaluated"),
            ),
            (
                "not a bool: not ready",
                "dep.metadata.name",
                Some(ready(named("db", json!({})))),
                Err("returned a String, not a bool"),
            ),
            (
                "does not compile: its own error, naming the dependency and the expression",
                "dep.metadata.(",
                Some(ready(named("db", json!({})))),
                Err("dependsOn team/db: readyExpr \"dep.metadata.(\""),
            ),
        ];
        for (what, expr, db, want) in cases {
            let app = with_expr(expr);
            let mut all: Vec<Sync> = db.into_iter().collect();
            all.push(app.clone());
            match (dependencies(&app, &views(all), None), want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(msg)) => {
                    let text = e.to_string();
                    assert!(text.contains(msg), "{what}: {text}");
                    let reason = if msg.starts_with("dependsOn") {
                        "InvalidCELExpression"
                    } else {
                        "DependencyNotReady"
                    };
                    assert_eq!(e.reason(), reason, "{what}");
                    assert_eq!(e.stalls(), reason == "InvalidCELExpression", "{what}");
                }
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn artifact(commit: char, digest: char) -> Artifact {
        serde_json::from_value(json!({
            "revision": format!("main@sha1:{}", commit.to_string().repeat(40)),
            "digest": format!("sha256:{}", digest.to_string().repeat(64)),
            "url": "http://x/a.yaml.gz", "size": 1, "lastUpdateTime": "2026-01-01T00:00:00Z",
        }))
        .unwrap()
    }

    /// A Sync of generation `generation` whose render is `rendered`, with `applied` applied
    /// by a pass at generation `applied_generation` (its `Healthy` condition), and Ready.
    fn at(
        name: &str,
        spec: serde_json::Value,
        generation: i64,
        rendered: Option<Artifact>,
        applied: Option<(&Artifact, i64)>,
    ) -> Sync {
        let mut s = named(name, spec);
        s.metadata.generation = Some(generation);
        let status = s.status.get_or_insert_with(Default::default);
        status.render = rendered.map(|a| RenderStatus {
            artifact: Some(a),
            ..Default::default()
        });
        if let Some((a, g)) = applied {
            status.last_applied_revision = Some(a.revision.clone());
            status.last_applied_digest = Some(a.digest.clone());
            status.observed_generation = Some(generation);
            for type_ in [condition_type::READY, condition_type::HEALTHY] {
                status.conditions.push(new_condition(
                    type_,
                    status::TRUE,
                    "ReconciliationSucceeded",
                    "",
                    Some(g),
                ));
            }
        }
        s
    }

    /// The sync controller's part of `s`'s status, as the reconcile reads it.
    fn ours(s: &Sync) -> SyncStatus {
        let mut status = s.status.clone().unwrap_or_default();
        status.render = None;
        status
    }

    #[test]
    fn dependencies_hold_back_only_what_is_not_applied_yet() {
        let (a1, b2, b1) = (artifact('a', '1'), artifact('b', '2'), artifact('b', '1'));
        let deps = json!({"dependsOn": [{"name": "db"}]});
        let db_ready_a = at("db", json!({}), 1, Some(a1.clone()), Some((&a1, 1)));
        let db_ready_b = at("db", json!({}), 1, Some(b2.clone()), Some((&b2, 1)));
        let db_rendered_b = at("db", json!({}), 1, Some(b2.clone()), Some((&a1, 1)));
        let db_unready = named("db", json!({}));
        type Case<'a> = (&'a str, Sync, Sync, Result<Option<&'a str>, &'a str>);
        let cases: Vec<Case> = vec![
            (
                "applied at a, nothing new: the dependency's new render does not matter",
                at("app", deps.clone(), 1, Some(a1.clone()), Some((&a1, 1))),
                db_rendered_b.clone(),
                Ok(None),
            ),
            (
                "applied at a, nothing new, the dependency not ready: stays as it is",
                at("app", deps.clone(), 1, Some(a1.clone()), Some((&a1, 1))),
                db_unready.clone(),
                Ok(None),
            ),
            (
                "a new render at b, the dependency still at a (Ready at its latest): waits",
                at("app", deps.clone(), 1, Some(b2.clone()), Some((&a1, 1))),
                db_ready_a.clone(),
                Ok(Some("team/db (not yet at revision main@sha1:bbbb")),
            ),
            (
                "a new render at b, the dependency rendered b but did not apply it: waits",
                at("app", deps.clone(), 1, Some(b2.clone()), Some((&a1, 1))),
                db_rendered_b.clone(),
                Ok(Some("team/db (not at its latest revision)")),
            ),
            (
                "a new render at b, the dependency applied b: goes on",
                at("app", deps.clone(), 1, Some(b2.clone()), Some((&a1, 1))),
                db_ready_b.clone(),
                Ok(None),
            ),
            (
                "commit b left app's objects as they were (same digest): nothing waits",
                at("app", deps.clone(), 1, Some(b1.clone()), Some((&a1, 1))),
                db_ready_a.clone(),
                Ok(None),
            ),
            (
                "a spec change not applied yet, the dependency not ready: waits",
                at("app", deps.clone(), 2, Some(a1.clone()), Some((&a1, 1))),
                db_unready.clone(),
                Ok(Some("team/db (not ready)")),
            ),
            (
                "nothing applied yet, the dependency not ready: nothing to heal, fails",
                at("app", deps.clone(), 1, Some(a1.clone()), None),
                db_unready.clone(),
                Err("dependencies not ready: team/db (not ready)"),
            ),
            (
                "a readyExpr that does not compile stalls what is pending, applied before or not",
                at(
                    "app",
                    json!({"dependsOn": [{"name": "db", "readyExpr": "dep.("}]}),
                    2,
                    Some(a1.clone()),
                    Some((&a1, 1)),
                ),
                db_ready_a.clone(),
                Err(
                    "dependsOn team/db: readyExpr \"dep.(\": ERROR: <input>:1:5: Syntax error: no viable alternative at input '.(' | dep.( | ....^",
                ),
            ),
            (
                "a readyExpr true for a dependency at an older commit: goes on (Flux's rule)",
                at(
                    "app",
                    json!({"dependsOn": [{"name": "db", "readyExpr": "true"}]}),
                    1,
                    Some(b2.clone()),
                    Some((&a1, 1)),
                ),
                db_ready_a.clone(),
                Ok(None),
            ),
            (
                "a cycle stalls even with nothing new",
                at("app", deps.clone(), 1, Some(a1.clone()), Some((&a1, 1))),
                at("db", json!({"dependsOn": [{"name": "app"}]}), 1, None, None),
                Err("dependency cycle: team/app -> team/db -> team/app"),
            ),
        ];
        for (what, app, db, want) in cases {
            let all = views(vec![app.clone(), db]);
            let got = dependency_hold(&app, &ours(&app), &all);
            match (got, want) {
                (Ok(None), Ok(None)) => {}
                (Ok(Some(e)), Ok(Some(msg))) => {
                    assert_eq!(e.reason(), "DependencyNotReady", "{what}");
                    assert!(e.to_string().contains(msg), "{what}: {e}");
                }
                (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg, "{what}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn render_gate_carries_a_failed_render_with_or_without_an_artifact() {
        let artifact: Artifact = serde_json::from_value(json!({
            "revision": format!("main@sha1:{}", "a".repeat(40)),
            "digest": format!("sha256:{}", "b".repeat(64)),
            "url": "http://x/a.tar.gz", "size": 1, "lastUpdateTime": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        let rendered = |status_: &str, reason: &str| {
            new_condition(
                condition_type::RENDERED,
                status_,
                reason,
                "rule no-latest denies team_web_apps_Deployment",
                Some(1),
            )
        };
        let with = |artifact: Option<Artifact>, conds: Vec<_>| {
            let mut s = sync(json!({}));
            s.status = Some(SyncStatus {
                render: artifact.map(|a| RenderStatus {
                    artifact: Some(a),
                    ..Default::default()
                }),
                conditions: conds,
                ..Default::default()
            });
            s
        };
        let cases = [
            ("nothing yet", with(None, vec![]), false, None),
            (
                "published",
                with(
                    Some(artifact.clone()),
                    vec![rendered("True", "ReconciliationSucceeded")],
                ),
                true,
                None,
            ),
            (
                "first render denied",
                with(None, vec![rendered("False", "PolicyViolation")]),
                false,
                Some("PolicyViolation"),
            ),
            (
                "later render denied",
                with(
                    Some(artifact.clone()),
                    vec![rendered("False", "PolicyViolation")],
                ),
                true,
                Some("PolicyViolation"),
            ),
            (
                "build failed",
                with(None, vec![rendered("False", "BuildFailed")]),
                false,
                Some("BuildFailed"),
            ),
            (
                "in progress",
                with(None, vec![rendered("Unknown", "Progressing")]),
                false,
                None,
            ),
        ];
        for (what, s, has_artifact, failure) in cases {
            let r = render(&s);
            assert_eq!(r.artifact.is_some(), has_artifact, "{what}");
            assert_eq!(r.failure.as_ref().map(Error::reason), failure, "{what}");
            if let Some(f) = r.failure {
                assert!(f.to_string().contains("no-latest"), "{what}: {f}");
            }
        }
    }

    #[test]
    fn window_gate() {
        let deny: SyncWindow = serde_json::from_value(
            json!({"action": "deny", "schedule": "* * * * *", "duration": "1h"}),
        )
        .unwrap();
        let bad: SyncWindow = serde_json::from_value(
            json!({"action": "deny", "schedule": "not a schedule", "duration": "1h"}),
        )
        .unwrap();
        let now: Timestamp = "2026-01-01T00:00:30Z".parse().unwrap();
        assert_eq!(window(&[], now).unwrap(), None);
        assert!(window(&[&deny], now).unwrap().is_some());
        assert_eq!(window(&[&bad], now).unwrap_err().reason(), "InvalidSpec");
    }
}
