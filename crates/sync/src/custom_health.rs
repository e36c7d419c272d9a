//! `spec.healthCheckExprs`: CEL expressions that decide the health of the objects of one
//! apiVersion and kind, in place of the built-in rules (as Flux's custom health checks).
//!
//! Each expression sees the object's top-level fields (`metadata`, `spec`, `status`, ...) as
//! variables, as Flux's do. They are tried in the order `inProgress`, `failed`, `current`; the
//! first that is true decides, and none being true means the object is still in progress. An
//! expression that cannot be evaluated (a field the object does not have yet, without `has()`)
//! leaves the object in progress with the evaluation error, so a Sync waits for it until its
//! timeout, as Flux does. An expression that does not compile stops the Sync before anything is
//! applied.

use cel::{Context, Program, Value as CelValue};
use serde_json::Value;

use plumb_api::expression::cel_env as env;
use plumb_api::health::CustomHealthCheck;

use crate::health::{Health, observed_generation_lags};

/// An entry of `healthCheckExprs` whose expression does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("healthCheckExprs {api_version} {kind}: {field} expression {expression:?}: {message}")]
pub struct InvalidExpression {
    /// The entry's apiVersion.
    pub api_version: String,
    /// The entry's kind.
    pub kind: String,
    /// `current`, `inProgress` or `failed`.
    pub field: &'static str,
    /// The expression as written.
    pub expression: String,
    /// The compiler's message.
    pub message: String,
}

/// One compiled expression and its source.
struct Expression {
    field: &'static str,
    source: String,
    program: Program,
}

/// One compiled entry.
struct Check {
    api_version: String,
    kind: String,
    /// In the order they are tried, with the health each stands for when true.
    expressions: Vec<(Expression, Outcome)>,
}

#[derive(Clone, Copy)]
enum Outcome {
    InProgress,
    Failed,
    Current,
}

/// The compiled `healthCheckExprs` of one Sync.
#[derive(Default)]
pub struct HealthExprs {
    checks: Vec<Check>,
}

impl std::fmt::Debug for HealthExprs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.checks.iter().map(|c| (&c.api_version, &c.kind)))
            .finish()
    }
}

/// Compiles every entry; the first expression that does not compile is the error.
pub fn compile(entries: &[CustomHealthCheck]) -> Result<HealthExprs, InvalidExpression> {
    let env = env();
    let mut checks = Vec::with_capacity(entries.len());
    for e in entries {
        let mut expressions = Vec::new();
        for (field, source, outcome) in [
            ("inProgress", e.in_progress.as_deref(), Outcome::InProgress),
            ("failed", e.failed.as_deref(), Outcome::Failed),
            ("current", Some(e.current.as_str()), Outcome::Current),
        ] {
            let Some(source) = source else { continue };
            let program = env.compile(source).map_err(|err| InvalidExpression {
                api_version: e.api_version.clone(),
                kind: e.kind.clone(),
                field,
                expression: source.to_owned(),
                message: err.to_string().replace('\n', " "),
            })?;
            expressions.push((
                Expression {
                    field,
                    source: source.to_owned(),
                    program,
                },
                outcome,
            ));
        }
        checks.push(Check {
            api_version: e.api_version.clone(),
            kind: e.kind.clone(),
            expressions,
        });
    }
    Ok(HealthExprs { checks })
}

impl HealthExprs {
    /// The health of `obj` (of `api_version`/`kind`) by the first entry for its kind; `None`
    /// when no entry is for it (the built-in rules decide).
    pub fn assess(&self, api_version: &str, kind: &str, obj: &Value) -> Option<Health> {
        let check = self
            .checks
            .iter()
            .find(|c| c.api_version == api_version && c.kind == kind)?;
        if let Some(lag) = observed_generation_lags(obj) {
            return Some(lag);
        }
        let mut ctx = Context::with_env(env());
        if let Some(fields) = obj.as_object() {
            for (name, value) in fields {
                // JSON always converts to CEL; were it not to, the field reads as null.
                ctx.add_variable_from_value(
                    name.as_str(),
                    cel::to_value(value).unwrap_or(CelValue::Null),
                );
            }
        }
        for (expr, outcome) in &check.expressions {
            match expr.program.execute(&ctx) {
                Ok(CelValue::Bool(true)) => {
                    let what = format!("healthCheckExprs {} {:?} is true", expr.field, expr.source);
                    return Some(match outcome {
                        Outcome::Current => Health::Current,
                        Outcome::InProgress => Health::InProgress(what),
                        Outcome::Failed => Health::Failed(what),
                    });
                }
                Ok(CelValue::Bool(false)) => {}
                Ok(other) => {
                    return Some(Health::InProgress(format!(
                        "healthCheckExprs {} {:?} returned a {:?}, not a bool",
                        expr.field,
                        expr.source,
                        other.type_of()
                    )));
                }
                Err(e) => {
                    return Some(Health::InProgress(format!(
                        "healthCheckExprs {} {:?} could not be evaluated: {e}",
                        expr.field, expr.source
                    )));
                }
            }
        }
        let current = check
            .expressions
            .iter()
            .find(|(_, o)| matches!(o, Outcome::Current))
            .map(|(e, _)| e.source.as_str())
            .unwrap_or_default();
        Some(Health::InProgress(format!(
            "healthCheckExprs current {current:?} is not true yet"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(current: &str, in_progress: Option<&str>, failed: Option<&str>) -> CustomHealthCheck {
        CustomHealthCheck {
            api_version: "example.com/v1".into(),
            kind: "Database".into(),
            current: current.into(),
            in_progress: in_progress.map(Into::into),
            failed: failed.map(Into::into),
        }
    }

    fn db(phase: &str) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Database",
            "metadata": {"name": "db", "generation": 1},
            "status": {"phase": phase, "observedGeneration": 1}})
    }

    fn exprs() -> HealthExprs {
        compile(&[entry(
            "status.phase == 'Running'",
            Some("status.phase in ['Pending', 'Provisioning']"),
            Some("status.phase == 'Failed'"),
        )])
        .unwrap()
    }

    #[test]
    fn the_first_true_expression_decides() {
        let e = exprs();
        let at = |phase| e.assess("example.com/v1", "Database", &db(phase)).unwrap();
        assert_eq!(at("Running"), Health::Current);
        assert!(
            matches!(at("Failed"), Health::Failed(m) if m.contains("status.phase == 'Failed'"))
        );
        assert!(
            matches!(at("Provisioning"), Health::InProgress(m) if m.contains("inProgress") && m.contains("Provisioning"))
        );
        // No expression is true: still in progress, naming what it waits for.
        assert!(
            matches!(at("Unknown"), Health::InProgress(m) if m.contains("current \"status.phase == 'Running'\" is not true"))
        );
    }

    #[test]
    fn in_progress_wins_over_failed_and_current() {
        let e = compile(&[entry("true", Some("true"), Some("true"))]).unwrap();
        assert!(matches!(
            e.assess("example.com/v1", "Database", &db("x")),
            Some(Health::InProgress(_))
        ));
        let e = compile(&[entry("true", None, Some("true"))]).unwrap();
        assert!(matches!(
            e.assess("example.com/v1", "Database", &db("x")),
            Some(Health::Failed(_))
        ));
    }

    #[test]
    fn other_kinds_and_versions_are_left_to_the_built_in_rules() {
        let e = exprs();
        assert_eq!(e.assess("example.com/v2", "Database", &db("Running")), None);
        assert_eq!(e.assess("example.com/v1", "Cache", &db("Running")), None);
    }

    #[test]
    fn a_lagging_observed_generation_is_in_progress_whatever_the_expressions_say() {
        let mut obj = db("Running");
        obj["metadata"]["generation"] = json!(2);
        assert!(matches!(
            exprs().assess("example.com/v1", "Database", &obj),
            Some(Health::InProgress(m)) if m.contains("generation 2")
        ));
    }

    #[test]
    fn a_missing_field_or_a_non_bool_keeps_the_object_in_progress() {
        let e = compile(&[entry("status.ready == true", None, None)]).unwrap();
        let fresh = json!({"metadata": {"name": "db"}});
        assert!(matches!(
            e.assess("example.com/v1", "Database", &fresh),
            Some(Health::InProgress(m)) if m.contains("could not be evaluated")
        ));
        let e = compile(&[entry("status.phase", None, None)]).unwrap();
        assert!(matches!(
            e.assess("example.com/v1", "Database", &db("Running")),
            Some(Health::InProgress(m)) if m.contains("not a bool")
        ));
    }

    #[test]
    fn conditions_can_be_read_as_flux_users_write_them() {
        let e = compile(&[entry(
            "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
            None,
            Some("status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')"),
        )])
        .unwrap();
        let with = |s: &str| json!({"metadata": {"name": "c"}, "status": {"conditions": [{"type": "Ready", "status": s}]}});
        assert_eq!(
            e.assess("example.com/v1", "Database", &with("True")),
            Some(Health::Current)
        );
        assert!(matches!(
            e.assess("example.com/v1", "Database", &with("False")),
            Some(Health::Failed(_))
        ));
    }

    #[test]
    fn an_expression_that_does_not_compile_names_the_entry_and_field() {
        let err = compile(&[entry("true", None, Some("status.("))]).unwrap_err();
        assert_eq!(err.field, "failed");
        let msg = err.to_string();
        assert!(msg.contains("example.com/v1 Database"), "{msg}");
        assert!(msg.contains("status.("), "{msg}");
    }
}
