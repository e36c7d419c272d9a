//! Variable substitution in rendered objects, with Flux's postBuild semantics.
//!
//! `${VAR}` is replaced by the value of `VAR`; `${VAR:=default}` (or `${VAR:-default}`) by the
//! default when `VAR` is unset or empty; `$${VAR}` is written out as `${VAR}`. Names match
//! `^[_a-zA-Z][_a-zA-Z0-9]*$`. A variable without value or default is an error naming the object
//! and the variable, so a typo never reaches the cluster as an empty string. Objects annotated
//! `plumb.dev/substitute: disabled` are left alone.
//!
//! Substitution works on each object's YAML text, as Flux does, so `replicas: ${N}` becomes a
//! number when `N` is `3`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::objects::object_id;

/// Annotation that keeps an object out of substitution when set to `disabled`.
pub const SUBSTITUTE_ANNOTATION: &str = "plumb.dev/substitute";

/// Why substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    /// A variable has no value and no default.
    #[error("{object}: variable {var:?} is not set and has no default")]
    Missing {
        /// The object, as an inventory id.
        object: String,
        /// The variable name.
        var: String,
    },
    /// `${...}` holds something that is not a variable reference plumb understands. The text
    /// itself is never quoted: the object may be a Secret, and its values must not reach
    /// status, Events or logs.
    #[error("{object}: invalid variable reference at line {line} of the object's YAML: {why}")]
    Invalid {
        /// The object, as an inventory id.
        object: String,
        /// The line of the object's YAML (as plumb writes it) where the reference starts.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The object no longer parses after substitution (a value broke its YAML). Only the
    /// position is reported, never the text around it, which may hold substituted secrets.
    #[error(
        "{object}: not valid YAML after substitution (at {position}); a substituted value \
         holding YAML syntax must be quoted"
    )]
    Yaml {
        /// The object, as an inventory id.
        object: String,
        /// Where the parser stopped, `line L column C`, or `unknown position`.
        position: String,
    },
}

/// Whether `name` is a valid variable name: `^[_a-zA-Z][_a-zA-Z0-9]*$`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Substitutes `vars` into every object that does not opt out.
pub fn substitute_objects(
    objects: Vec<Value>,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<Value>, SubstituteError> {
    objects
        .into_iter()
        .map(|obj| substitute_object(obj, vars))
        .collect()
}

/// Substitutes `vars` into one object, unless it is annotated `plumb.dev/substitute: disabled`.
pub fn substitute_object(
    obj: Value,
    vars: &BTreeMap<String, String>,
) -> Result<Value, SubstituteError> {
    let disabled = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(SUBSTITUTE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("disabled");
    if disabled {
        return Ok(obj);
    }
    let id = object_id(&obj).to_string();
    let text = serde_yaml::to_string(&obj).map_err(|e| SubstituteError::Yaml {
        object: id.clone(),
        position: position(&e),
    })?;
    if !text.contains("${") {
        return Ok(obj);
    }
    let out = substitute_text(&text, vars).map_err(|e| e.for_object(&id))?;
    serde_yaml::from_str(&out).map_err(|e| SubstituteError::Yaml {
        object: id,
        position: position(&e),
    })
}

/// Where a YAML error happened, without the parser's words (which can quote the input).
fn position(e: &serde_yaml::Error) -> String {
    e.location().map_or_else(
        || "unknown position".to_owned(),
        |l| format!("line {} column {}", l.line(), l.column()),
    )
}

/// A substitution error before it is tied to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// A variable has no value and no default.
    Missing(String),
    /// A malformed reference: the line it starts on (1-based) and what is wrong.
    Invalid {
        /// The line of the text where the reference starts.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
}

impl TextError {
    fn for_object(self, object: &str) -> SubstituteError {
        let object = object.to_owned();
        match self {
            TextError::Missing(var) => SubstituteError::Missing { object, var },
            TextError::Invalid { line, why } => SubstituteError::Invalid { object, line, why },
        }
    }
}

/// Substitutes `vars` into `text`.
pub fn substitute_text(text: &str, vars: &BTreeMap<String, String>) -> Result<String, TextError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            // `$${VAR}` is the escape for a literal `${VAR}`.
            out.push_str("${");
            rest = escaped;
        } else if let Some(inner) = after.strip_prefix('{') {
            let line = || text[..text.len() - rest.len() + pos].matches('\n').count() + 1;
            let end = inner.find('}').ok_or_else(|| TextError::Invalid {
                line: line(),
                why: "no closing brace",
            })?;
            out.push_str(&expand(&inner[..end], vars).map_err(|e| match e {
                TextError::Invalid { why, .. } => TextError::Invalid { line: line(), why },
                missing => missing,
            })?);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one reference: `NAME`, `NAME:=default` or `NAME:-default`.
fn expand(reference: &str, vars: &BTreeMap<String, String>) -> Result<String, TextError> {
    let (name, default) = match reference.find(":=").or_else(|| reference.find(":-")) {
        Some(i) => (&reference[..i], Some(&reference[i + 2..])),
        None => (reference, None),
    };
    if !valid_name(name) {
        return Err(TextError::Invalid {
            line: 0,
            why: "a variable name must match ^[_a-zA-Z][_a-zA-Z0-9]*$",
        });
    }
    match (vars.get(name), default) {
        (Some(v), _) if !v.is_empty() || default.is_none() => Ok(v.clone()),
        (_, Some(d)) => Ok(d.to_owned()),
        (None, None) => Err(TextError::Missing(name.to_owned())),
        (Some(v), None) => Ok(v.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn replaces_variables_and_defaults() {
        let v = vars(&[("A", "1"), ("EMPTY", "")]);
        assert_eq!(substitute_text("x ${A} y", &v).unwrap(), "x 1 y");
        assert_eq!(substitute_text("${B:=two}", &v).unwrap(), "two");
        assert_eq!(substitute_text("${B:-two}", &v).unwrap(), "two");
        assert_eq!(substitute_text("${A:=two}", &v).unwrap(), "1");
        assert_eq!(substitute_text("${EMPTY:=d}", &v).unwrap(), "d");
        assert_eq!(substitute_text("${EMPTY}", &v).unwrap(), "");
        assert_eq!(substitute_text("${B:=}", &v).unwrap(), "");
    }

    #[test]
    fn double_dollar_escapes_a_reference() {
        let v = vars(&[("A", "1")]);
        assert_eq!(substitute_text("$${A} ${A}", &v).unwrap(), "${A} 1");
        assert_eq!(substitute_text("$${MISSING}", &v).unwrap(), "${MISSING}");
    }

    #[test]
    fn lone_dollars_are_kept() {
        let v = vars(&[]);
        assert_eq!(
            substitute_text("cost: $5, $HOME, end$", &v).unwrap(),
            "cost: $5, $HOME, end$"
        );
    }

    #[test]
    fn missing_variable_without_default_is_an_error() {
        assert_eq!(
            substitute_text("${NOPE}", &vars(&[])),
            Err(TextError::Missing("NOPE".into()))
        );
    }

    #[test]
    fn invalid_names_and_unclosed_references_are_errors() {
        for bad in ["${1A}", "${A-B}", "${}", "${A", "${A/x/y}"] {
            assert!(
                matches!(
                    substitute_text(bad, &vars(&[])),
                    Err(TextError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn numbers_become_numbers_and_errors_name_the_object() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "apps"},
            "spec": {"replicas": "${REPLICAS}", "template": {"metadata": {"labels": {"env": "${ENV:=dev}"}}}}});
        let out = substitute_object(obj.clone(), &vars(&[("REPLICAS", "3")])).unwrap();
        assert_eq!(out["spec"]["replicas"], json!(3));
        assert_eq!(
            out["spec"]["template"]["metadata"]["labels"]["env"],
            json!("dev")
        );

        let err = substitute_object(obj, &vars(&[])).unwrap_err();
        assert_eq!(
            err,
            SubstituteError::Missing {
                object: "apps_web_apps_Deployment".into(),
                var: "REPLICAS".into()
            }
        );
        assert!(err.to_string().contains("apps_web_apps_Deployment"));
        assert!(err.to_string().contains("REPLICAS"));
    }

    #[test]
    fn errors_never_quote_the_object_text() {
        // A Secret whose value holds an unclosed or malformed reference: the error must name
        // the object and where, never the value.
        for value in [
            "hunter2-${ unclosed hunter2",
            "${hunter2 hunter2}",
            "${1hunter2}",
        ] {
            let obj = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db", "namespace": "apps"},
                "stringData": {"password": value}});
            let err = substitute_object(obj, &vars(&[])).unwrap_err().to_string();
            assert!(err.contains("apps_db__Secret"), "{err}");
            assert!(err.contains("line 7"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        // A substituted value that breaks the YAML: its text is not echoed either.
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"k": "${V}"}});
        let err = substitute_object(obj, &vars(&[("V", "[hunter2")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("_c__ConfigMap") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn disabled_objects_are_skipped() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "script", "annotations": {"plumb.dev/substitute": "disabled"}},
            "data": {"run.sh": "echo ${HOME}"}});
        assert_eq!(substitute_object(obj.clone(), &vars(&[])).unwrap(), obj);
    }
}
