//! Post-build variable substitution, byte for byte as Flux's kustomize-controller does it.
//!
//! Each built object is written as YAML the way Flux writes it (its JSON through
//! sigs.k8s.io/yaml, i.e. go-yaml v2: sorted keys, strings quoted only when they would read back
//! as another type), the references in that text are replaced ([`envsubst`]: `${var}`,
//! `${var:=default}`, `${var:pos:len}`, `${var/a/b}`, ... and `$$` for a literal `$`), and the
//! text is read back as Flux reads it (go-yaml v2, YAML 1.1). So `replicas: ${n}` with `n=3`
//! becomes the number 3, and so does `"${n}"`: quotes in the source do not survive the build
//! (Flux documents wrapping a value in a `${quote}` variable whose value is `"` to keep it a
//! string). A variable without value or default is an error naming the object and the line (and
//! the variable, except in Secrets), as with Flux's strict substitution, the default since
//! Flux 2.7. Objects labelled or annotated `kustomize.toolkit.fluxcd.io/substitute: disabled` or
//! `plumb.dev/substitute: disabled` are left alone.

mod envsubst;
mod pattern;

use std::collections::BTreeMap;

use plumb_kustomize::yaml::{ScalarMode, YamlError, parse_documents, to_yaml_document};
use serde_json::Value;

use crate::objects::object_id;

/// Annotation (or label) that keeps an object out of substitution when set to `disabled`.
pub const SUBSTITUTE_ANNOTATION: &str = "plumb.dev/substitute";

/// Flux's spelling of [`SUBSTITUTE_ANNOTATION`], honoured the same way.
pub const FLUX_SUBSTITUTE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/substitute";

/// Why substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    /// A variable has no value and no default. In a Secret the variable is not named: the
    /// reference is part of a value that must not reach status, Events or logs.
    #[error("{object}: {} at line {line} of the object's YAML is not set and has no default", var.as_ref().map_or_else(|| "a variable".to_owned(), |v| format!("variable {v:?}")))]
    Missing {
        /// The object, as an inventory id.
        object: String,
        /// The variable name, unless the object is a Secret.
        var: Option<String>,
        /// The line of the object's YAML (as Flux writes it) where the reference starts.
        line: usize,
    },
    /// `${...}` holds something Flux's substitution does not parse. The text itself is never
    /// quoted: the object may be a Secret, and its values must not reach status, Events or logs.
    #[error("{object}: invalid variable reference at line {line} of the object's YAML: {why}")]
    Invalid {
        /// The object, as an inventory id.
        object: String,
        /// The line of the object's YAML (as Flux writes it) where the reference starts.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The object no longer reads as YAML after substitution (a value broke its syntax). Only
    /// the position is reported, never the text around it, which may hold substituted secrets.
    #[error(
        "{object}: not valid YAML after substitution ({position}); a substituted value \
         holding YAML syntax must be quoted"
    )]
    Yaml {
        /// The object, as an inventory id.
        object: String,
        /// Where the reader stopped, or what it could not hold.
        position: String,
    },
    /// A variable name (a `substitute` key, or a key of a `substituteFrom` ConfigMap or Secret)
    /// that Flux refuses: names must match `^[_a-zA-Z][_a-zA-Z0-9]*$`.
    #[error("variable name {0:?} is invalid, it must match ^[_a-zA-Z][_a-zA-Z0-9]*$")]
    InvalidName(String),
}

/// Whether `name` is a valid variable name: `^[_a-zA-Z][_a-zA-Z0-9]*$`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The variables of one render, as Flux assembles them: the data of each `substituteFrom`
/// source in order (a later source overrides an earlier one), then the inline `substitute` map
/// over them; newlines are removed from every value.
pub fn assemble_variables<'a>(
    sources: impl IntoIterator<Item = &'a BTreeMap<String, String>>,
    inline: &'a BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for source in sources.into_iter().chain(std::iter::once(inline)) {
        for (k, v) in source {
            vars.insert(k.clone(), v.replace('\n', ""));
        }
    }
    vars
}

/// Whether `obj` opts out of substitution (label or annotation, either spelling).
pub fn is_disabled(obj: &Value) -> bool {
    ["labels", "annotations"].iter().any(|field| {
        obj.pointer(&format!("/metadata/{field}")).is_some_and(|m| {
            [SUBSTITUTE_ANNOTATION, FLUX_SUBSTITUTE_ANNOTATION]
                .iter()
                .any(|k| m.get(k).and_then(Value::as_str) == Some("disabled"))
        })
    })
}

/// Substitutes `vars` into every object that does not opt out.
pub fn substitute_objects(
    objects: Vec<Value>,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<Value>, SubstituteError> {
    let mut names_checked = false;
    objects
        .into_iter()
        .map(|obj| {
            if is_disabled(&obj) {
                return Ok(obj);
            }
            if !names_checked {
                // As Flux: the names are checked when an object is substituted.
                if let Some(bad) = vars.keys().find(|k| !valid_name(k)) {
                    return Err(SubstituteError::InvalidName(bad.clone()));
                }
                names_checked = true;
            }
            substitute_enabled(obj, vars)
        })
        .collect()
}

fn substitute_enabled(
    obj: Value,
    vars: &BTreeMap<String, String>,
) -> Result<Value, SubstituteError> {
    let id = object_id(&obj).to_string();
    let secret = obj.get("kind").and_then(Value::as_str) == Some("Secret")
        && obj.get("apiVersion").and_then(Value::as_str) == Some("v1");
    let text = to_yaml_document(&obj);
    let out = substitute_text(&text, vars).map_err(|e| match e {
        TextError::Missing { line, var } => SubstituteError::Missing {
            object: id.clone(),
            var: (!secret).then_some(var),
            line,
        },
        TextError::Invalid { line, why } => SubstituteError::Invalid {
            object: id.clone(),
            line,
            why,
        },
    })?;
    let yaml_err = |position: String| SubstituteError::Yaml {
        object: id.clone(),
        position,
    };
    let out = String::from_utf8(out).map_err(|_| yaml_err("not UTF-8".to_owned()))?;
    let doc = parse_documents(&out, ScalarMode::Yaml11)
        .map_err(|e| yaml_err(describe(&e)))?
        .into_iter()
        .next()
        .unwrap_or(Value::Null);
    match doc {
        Value::Object(_) => Ok(doc),
        _ => Err(yaml_err("not an object".to_owned())),
    }
}

/// What went wrong reading YAML back, without the reader's words when they could quote it.
fn describe(e: &YamlError) -> String {
    match e {
        YamlError::Syntax(msg) => msg.rfind(" line ").map_or_else(
            || "a syntax error".to_owned(),
            |i| format!("at{}", &msg[i..]),
        ),
        YamlError::Structure(_) => {
            "a value JSON cannot hold: NaN, an infinity, or a key that is not a string, number \
             or boolean"
                .to_owned()
        }
        YamlError::Limit(l) => l.to_string(),
    }
}

/// A substitution error before it is tied to an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextError {
    /// A variable has no value and no default.
    Missing {
        /// The line of the text where the reference starts.
        line: usize,
        /// The variable name.
        var: String,
    },
    /// A malformed reference: the line it starts on (1-based) and what is wrong.
    Invalid {
        /// The line of the text where the reference starts.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Substitutes `vars` into `text` with Flux's envsubst rules (strict: an unset variable without
/// a default is an error). The result is bytes, as in Go: `${var:pos}` counts bytes.
pub fn substitute_text(text: &str, vars: &BTreeMap<String, String>) -> Result<Vec<u8>, TextError> {
    let convert = |e| match e {
        envsubst::EvalError::Syntax { line, why } => TextError::Invalid { line, why },
        envsubst::EvalError::Missing { line, var } => TextError::Missing { line, var },
    };
    let template = envsubst::parse(text).map_err(convert)?;
    template
        .execute(&|k: &str| vars.get(k).map(|v| v.as_bytes().to_vec()))
        .map_err(convert)
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

    fn substitute_object(
        obj: Value,
        vars: &BTreeMap<String, String>,
    ) -> Result<Value, SubstituteError> {
        substitute_objects(vec![obj], vars).map(|mut v| v.remove(0))
    }

    fn text(t: &str, v: &BTreeMap<String, String>) -> Result<String, TextError> {
        substitute_text(t, v).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn replaces_variables_and_defaults() {
        let v = vars(&[("A", "1"), ("EMPTY", "")]);
        assert_eq!(text("x ${A} y", &v).unwrap(), "x 1 y");
        assert_eq!(text("${B:=two}", &v).unwrap(), "two");
        assert_eq!(text("${B:-two}", &v).unwrap(), "two");
        assert_eq!(text("${A:=two}", &v).unwrap(), "1");
        assert_eq!(text("${EMPTY:=d}", &v).unwrap(), "d");
        assert_eq!(text("${EMPTY}", &v).unwrap(), "");
        assert_eq!(text("${B:=}", &v).unwrap(), "");
    }

    #[test]
    fn double_dollar_escapes_a_reference() {
        let v = vars(&[("A", "1")]);
        assert_eq!(text("$${A} ${A}", &v).unwrap(), "${A} 1");
        assert_eq!(text("$${MISSING}", &v).unwrap(), "${MISSING}");
    }

    #[test]
    fn lone_dollars_are_kept() {
        let v = vars(&[]);
        assert_eq!(
            text("cost: $5, $HOME, end$", &v).unwrap(),
            "cost: $5, $HOME, end$"
        );
    }

    #[test]
    fn missing_variable_without_default_is_an_error() {
        assert_eq!(
            text("${NOPE}", &vars(&[])),
            Err(TextError::Missing {
                line: 1,
                var: "NOPE".into()
            })
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        for bad in ["${A-B}", "${}", "${A", "${A//x}"] {
            assert!(
                matches!(text(bad, &vars(&[])), Err(TextError::Invalid { .. })),
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

        let err = substitute_object(obj, &vars(&[("OTHER", "x")])).unwrap_err();
        assert!(
            matches!(&err, SubstituteError::Missing { object, var: Some(v), .. }
                if object == "apps_web_apps_Deployment" && v == "REPLICAS"),
            "{err:?}"
        );
        assert!(err.to_string().contains("apps_web_apps_Deployment"));
        assert!(err.to_string().contains("REPLICAS"));
    }

    #[test]
    fn values_read_back_as_flux_reads_them() {
        // A quoted reference in the source is a plain string once built, so its value is
        // read back with YAML 1.1 rules, as Flux does: numbers, yes/on booleans, null.
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"n": "${N}", "b": "${B}", "z": "${Z}", "s": "v-${N}", "q": "${Q}${N}${Q}",
                     "f": "${F}", "big": "${BIG}", "octal": "${O}"}});
        let v = vars(&[
            ("N", "123"),
            ("B", "on"),
            ("Z", "~"),
            ("Q", "\""),
            ("F", "1e3"),
            ("BIG", "18446744073709551615"),
            ("O", "017"),
        ]);
        let out = substitute_object(obj, &v).unwrap();
        assert_eq!(
            out["data"],
            json!({"n": 123, "b": true, "z": null, "s": "v-123", "q": "123", "f": 1000,
                   "big": 18446744073709551615u64, "octal": 15})
        );
    }

    #[test]
    fn errors_never_quote_the_object_text() {
        // A Secret whose value holds an unclosed, malformed or unset reference: the error must
        // name the object and where, never the value (nor a variable name written in it).
        for value in [
            "hunter2-${ unclosed hunter2",
            "${hunter2 hunter2}",
            "${1hunter2}",
        ] {
            let obj = json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db", "namespace": "apps"},
                "stringData": {"password": value}});
            let err = substitute_object(obj, &vars(&[("A", "1")]))
                .unwrap_err()
                .to_string();
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
        for (field, key) in [
            ("annotations", SUBSTITUTE_ANNOTATION),
            ("labels", FLUX_SUBSTITUTE_ANNOTATION),
            ("annotations", FLUX_SUBSTITUTE_ANNOTATION),
        ] {
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "script", field: {key: "disabled"}},
                "data": {"run.sh": "echo ${HOME}"}});
            assert_eq!(
                substitute_object(obj.clone(), &vars(&[("A", "1")])).unwrap(),
                obj
            );
        }
    }

    #[test]
    fn invalid_variable_names_fail_only_when_something_is_substituted() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let v = vars(&[("app.domain", "x")]);
        let err = substitute_objects(vec![cm.clone()], &v).unwrap_err();
        assert_eq!(err, SubstituteError::InvalidName("app.domain".into()));
        let mut off = cm;
        off["metadata"]["annotations"] = json!({FLUX_SUBSTITUTE_ANNOTATION: "disabled"});
        assert!(substitute_objects(vec![off], &v).is_ok());
    }

    #[test]
    fn variables_are_assembled_in_flux_order_without_newlines() {
        let first = vars(&[("A", "from-first"), ("B", "b\nb")]);
        let second = vars(&[("A", "from-second"), ("C", "c")]);
        let inline = vars(&[("C", "inline")]);
        assert_eq!(
            assemble_variables([&first, &second], &inline),
            vars(&[("A", "from-second"), ("B", "bb"), ("C", "inline")])
        );
    }
}
