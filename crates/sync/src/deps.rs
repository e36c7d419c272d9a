//! Dependencies between Syncs: is every `dependsOn` Ready at its latest revision (or true by its
//! `readyExpr`), and is there a cycle.

use std::collections::{BTreeMap, BTreeSet};

use cel::{Context, Program, Value as CelValue};

use plumb_api::expression::cel_env;
use plumb_api::sync::SourceKind;
use plumb_api::{Conditions, Revision, Sync, condition_type};

/// A Sync's identity: `(namespace, name)`.
pub type Key = (String, String);

/// A Sync's key.
pub fn key_of(sync: &Sync) -> Key {
    (
        sync.metadata.namespace.clone().unwrap_or_default(),
        sync.metadata.name.clone().unwrap_or_default(),
    )
}

/// The keys of the Syncs `sync` depends on (namespace defaults to the Sync's own).
pub fn dependencies(sync: &Sync) -> Vec<Key> {
    let own = sync.metadata.namespace.clone().unwrap_or_default();
    sync.spec
        .depends_on
        .iter()
        .map(|d| {
            (
                d.namespace.clone().unwrap_or_else(|| own.clone()),
                d.name.clone(),
            )
        })
        .collect()
}

/// The source a Sync renders from, as `(kind, namespace, name)`; the namespace defaults to the
/// Sync's own.
fn source_of(sync: &Sync) -> (SourceKind, String, String) {
    let source = &sync.spec.source_ref;
    let namespace = source
        .namespace
        .clone()
        .or_else(|| sync.metadata.namespace.clone())
        .unwrap_or_default();
    (source.kind, namespace, source.name.clone())
}

/// Why a dependency is not ready, or `None` when it is: it exists, its Ready condition is True
/// for its current generation, it applied the revision its render last produced, and, when
/// `revision` is given (the dependent renders from the same source and is about to apply that
/// revision of it), it applied that very revision. The last rule is Flux's: without it, a commit
/// that reaches the dependent's render before the dependency's would be applied to the dependent
/// first, while the dependency still looked Ready at its previous commit.
pub fn not_ready_reason(dep: Option<&Sync>, revision: Option<&Revision>) -> Option<String> {
    let Some(dep) = dep else {
        return Some("not found".to_owned());
    };
    let Some(status) = dep.status.as_ref() else {
        return Some("not ready".to_owned());
    };
    let generation = dep.metadata.generation;
    let ready = status.conditions.get_condition(condition_type::READY);
    match ready {
        Some(c)
            if c.status == "True"
                && (generation.is_none() || c.observed_generation == generation) => {}
        _ => return Some("not ready".to_owned()),
    }
    if status.observed_generation != generation {
        return Some("not ready".to_owned());
    }
    let latest = status
        .render
        .as_ref()
        .and_then(|r| r.artifact.as_ref())
        .map(|a| &a.revision);
    let applied = status.last_applied_revision.as_ref();
    if latest.is_some() && latest != applied {
        return Some("not at its latest revision".to_owned());
    }
    match revision {
        Some(wanted) if applied != Some(wanted) => Some(format!("not yet at revision {wanted}")),
        _ => None,
    }
}

/// A `dependsOn[].readyExpr` that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependsOn {dependency}: readyExpr {expression:?}: {message}")]
pub struct InvalidReadyExpr {
    /// The dependency, `namespace/name`.
    pub dependency: String,
    /// The expression as written.
    pub expression: String,
    /// The compiler's message.
    pub message: String,
}

/// A compiled `readyExpr` and its source.
pub struct ReadyExpr {
    source: String,
    program: Program,
}

impl ReadyExpr {
    /// Compiles `source`, the `readyExpr` of the dependency `dependency` (`namespace/name`).
    pub fn compile(dependency: &Key, source: &str) -> Result<Self, InvalidReadyExpr> {
        let program = cel_env().compile(source).map_err(|e| InvalidReadyExpr {
            dependency: format!("{}/{}", dependency.0, dependency.1),
            expression: source.to_owned(),
            message: e.to_string().replace('\n', " "),
        })?;
        Ok(Self {
            source: source.to_owned(),
            program,
        })
    }

    /// Why `dep` is not ready for `sync` by this expression (`dep` the dependency, `self` the
    /// Sync depending on it), or `None` when the expression is true.
    pub fn not_ready_reason(&self, sync: &Sync, dep: &Sync) -> Option<String> {
        let mut ctx = Context::with_env(cel_env());
        for (name, object) in [("dep", dep), ("self", sync)] {
            // A Sync always serializes and converts; were it not to, the variable reads as null.
            let value = serde_json::to_value(object)
                .ok()
                .and_then(|v| cel::to_value(&v).ok())
                .unwrap_or(CelValue::Null);
            ctx.add_variable_from_value(name, value);
        }
        match self.program.execute(&ctx) {
            Ok(CelValue::Bool(true)) => None,
            Ok(CelValue::Bool(false)) => Some(format!("readyExpr {:?} is false", self.source)),
            Ok(other) => Some(format!(
                "readyExpr {:?} returned a {:?}, not a bool",
                self.source,
                other.type_of()
            )),
            Err(e) => Some(format!(
                "readyExpr {:?} could not be evaluated: {e}",
                self.source
            )),
        }
    }
}

/// The dependencies of `sync` that are not ready for it to apply `revision` (the revision of
/// its render, if any), as `namespace/name (reason)`. A dependency with a `readyExpr` is ready
/// when it exists and the expression is true, in place of the built-in check (as in Flux); one
/// that does not compile is the error.
pub fn not_ready<'a>(
    sync: &Sync,
    revision: Option<&Revision>,
    lookup: impl Fn(&Key) -> Option<&'a Sync>,
) -> Result<Vec<String>, InvalidReadyExpr> {
    let source = source_of(sync);
    let mut waiting = Vec::new();
    for (k, reference) in dependencies(sync).into_iter().zip(&sync.spec.depends_on) {
        let dep = lookup(&k);
        let why = match (&reference.ready_expr, dep) {
            (Some(expr), Some(dep)) => ReadyExpr::compile(&k, expr)?.not_ready_reason(sync, dep),
            (Some(expr), None) => {
                ReadyExpr::compile(&k, expr)?;
                Some("not found".to_owned())
            }
            (None, _) => {
                let same_source = dep.is_some_and(|d| source_of(d) == source);
                not_ready_reason(dep, revision.filter(|_| same_source))
            }
        };
        if let Some(why) = why {
            waiting.push(format!("{}/{} ({why})", k.0, k.1));
        }
    }
    Ok(waiting)
}

/// A cycle through `start` in the dependency graph `edges`, as the list of Syncs on it starting
/// and ending with `start`, or `None`.
pub fn cycle_through(start: &Key, edges: &BTreeMap<Key, Vec<Key>>) -> Option<Vec<Key>> {
    fn walk(
        node: &Key,
        start: &Key,
        edges: &BTreeMap<Key, Vec<Key>>,
        seen: &mut BTreeSet<Key>,
        path: &mut Vec<Key>,
    ) -> bool {
        for next in edges.get(node).into_iter().flatten() {
            path.push(next.clone());
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) && walk(next, start, edges, seen, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start.clone()];
    walk(start, start, edges, &mut BTreeSet::new(), &mut path).then_some(path)
}

/// Writes a cycle as `a/x -> a/y -> a/x`.
pub fn show_cycle(cycle: &[Key]) -> String {
    cycle
        .iter()
        .map(|(ns, n)| format!("{ns}/{n}"))
        .collect::<Vec<_>>()
        .join(" -> ")
}

#[cfg(test)]
mod tests {
    use plumb_api::condition::new_condition;
    use plumb_api::dependency::DependencyReference;
    use plumb_api::sync::{SourceKind, SourceReference, SyncSpec};
    use plumb_api::{SyncStatus, reason};

    use super::*;

    fn sync(name: &str, deps: &[&str]) -> Sync {
        let spec: SyncSpec = serde_json::from_value(serde_json::json!({
            "sourceRef": {"kind": "GitRepository", "name": "repo"}
        }))
        .unwrap();
        let mut s = Sync::new(
            name,
            SyncSpec {
                depends_on: deps
                    .iter()
                    .map(|d| DependencyReference {
                        name: (*d).to_owned(),
                        namespace: None,
                        ready_expr: None,
                    })
                    .collect(),
                source_ref: SourceReference {
                    kind: SourceKind::GitRepository,
                    name: "repo".into(),
                    namespace: None,
                },
                ..spec
            },
        );
        s.metadata.namespace = Some("ns".into());
        s.metadata.generation = Some(1);
        s
    }

    fn ready(mut s: Sync) -> Sync {
        s.status = Some(SyncStatus {
            observed_generation: Some(1),
            conditions: vec![new_condition(
                "Ready",
                "True",
                reason::SUCCEEDED,
                "ok",
                Some(1),
            )],
            ..Default::default()
        });
        s
    }

    fn k(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    #[test]
    fn dependencies_must_exist_and_be_ready() {
        let app = sync("app", &["db", "net"]);
        let db = ready(sync("db", &[]));
        let net = sync("net", &[]);
        let all = [db, net];
        let found = not_ready(&app, None, |key| {
            all.iter()
                .find(|s| s.metadata.name.as_deref() == Some(&key.1))
        })
        .unwrap();
        assert_eq!(found, ["ns/net (not ready)"]);
        let found = not_ready(&app, None, |_| None).unwrap();
        assert_eq!(found, ["ns/db (not found)", "ns/net (not found)"]);
    }

    #[test]
    fn a_dependency_ready_for_an_old_generation_is_not_ready() {
        let mut db = ready(sync("db", &[]));
        db.metadata.generation = Some(2);
        assert_eq!(
            not_ready_reason(Some(&db), None).as_deref(),
            Some("not ready")
        );
    }

    fn revision(commit: char) -> Revision {
        format!("main@sha1:{}", commit.to_string().repeat(40))
            .parse()
            .unwrap()
    }

    /// `db` Ready with `applied` applied, and its render at `rendered`.
    fn ready_at(mut db: Sync, rendered: char, applied: char) -> Sync {
        db = ready(db);
        let status = db.status.as_mut().unwrap();
        status.last_applied_revision = Some(revision(applied));
        status.render = Some(plumb_api::sync::RenderStatus {
            artifact: Some(
                serde_json::from_value(serde_json::json!({
                    "revision": revision(rendered).to_string(),
                    "digest": format!("sha256:{}", "d".repeat(64)),
                    "url": "http://x/a.yaml.gz",
                    "lastUpdateTime": "2026-01-01T00:00:00Z",
                }))
                .unwrap(),
            ),
            ..Default::default()
        });
        db
    }

    #[test]
    fn a_dependency_on_the_same_source_must_have_applied_the_revision_about_to_be_applied() {
        let app = sync("app", &["db"]);
        let at_b = revision('b');
        // Ready at its latest render, but that is still commit a: b would reach app first.
        let db = ready_at(sync("db", &[]), 'a', 'a');
        assert_eq!(
            not_ready(&app, Some(&at_b), |_| Some(&db)).unwrap(),
            [format!("ns/db (not yet at revision {at_b})")]
        );
        // Rendered b, not yet applied: not at its latest revision.
        let db = ready_at(sync("db", &[]), 'b', 'a');
        assert_eq!(
            not_ready(&app, Some(&at_b), |_| Some(&db)).unwrap(),
            ["ns/db (not at its latest revision)"]
        );
        let db = ready_at(sync("db", &[]), 'b', 'b');
        assert!(
            not_ready(&app, Some(&at_b), |_| Some(&db))
                .unwrap()
                .is_empty()
        );
        // Another source: its revisions say nothing about app's; Ready at its latest is enough.
        let mut other = ready_at(sync("db", &[]), 'a', 'a');
        other.spec.source_ref.name = "other-repo".into();
        assert!(
            not_ready(&app, Some(&at_b), |_| Some(&other))
                .unwrap()
                .is_empty()
        );
        // The same GitRepository named with its namespace is the same source.
        let mut named = ready_at(sync("db", &[]), 'a', 'a');
        named.spec.source_ref.namespace = Some("ns".into());
        assert_eq!(
            not_ready(&app, Some(&at_b), |_| Some(&named))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn cycles_are_found_and_shown() {
        let mut edges = BTreeMap::new();
        edges.insert(k("a"), vec![k("b")]);
        edges.insert(k("b"), vec![k("c")]);
        edges.insert(k("c"), vec![k("a")]);
        edges.insert(k("d"), vec![k("a")]);
        let cycle = cycle_through(&k("a"), &edges).unwrap();
        assert_eq!(show_cycle(&cycle), "ns/a -> ns/b -> ns/c -> ns/a");
        assert_eq!(cycle_through(&k("d"), &edges), None);
        edges.insert(k("e"), vec![k("e")]);
        assert_eq!(
            show_cycle(&cycle_through(&k("e"), &edges).unwrap()),
            "ns/e -> ns/e"
        );
    }
}
