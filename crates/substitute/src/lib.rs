//! Post-build variable substitution, byte for byte as Flux's kustomize-controller does it, used
//! by the render controller (and `plumb build`/`plumb diff`) and by the sync controller, which
//! finishes the substitution of values that come from Secrets ([`deferred`]).
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

pub mod deferred;
mod envsubst;
mod pattern;
pub mod secret_values;

pub use secret_values::SecretValues;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use plumb_api::ObjectId;
use plumb_api::sync::CommonMetadata;
use plumb_kustomize::yaml::{ScalarMode, YamlError, parse_documents, to_yaml_document};
use serde_json::{Value, json};

/// The inventory id of an object: `<namespace>_<name>_<group>_<kind>`.
fn object_id(obj: &Value) -> ObjectId {
    let at = |pointer: &str| {
        obj.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let group = at("/apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
    ObjectId::new(
        at("/metadata/namespace"),
        at("/metadata/name"),
        group,
        at("/kind"),
    )
}

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
    /// The substituted objects would take more than the render's output limit (a long value
    /// referenced many times, or multiplied by `${var//a/b}`).
    #[error(
        "{object}: substituted text at line {line} of the object's YAML takes the rendered \
         output over {limit} bytes (limit max-rendered-size)"
    )]
    TooLarge {
        /// The object, as an inventory id.
        object: String,
        /// The line of the reference that crossed the limit.
        line: usize,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The render's deadline passed during substitution (a pattern over a huge value).
    #[error(
        "{object}: substitution at line {line} of the object's YAML ran past the render's \
         deadline (limit render-timeout)"
    )]
    Deadline {
        /// The object, as an inventory id.
        object: String,
        /// The line of the reference being substituted.
        line: usize,
    },
    /// A variable name (a `substitute` key, or a key of a `substituteFrom` ConfigMap or Secret)
    /// that Flux refuses: names must match `^[_a-zA-Z][_a-zA-Z0-9]*$`.
    #[error("variable name {0:?} is invalid, it must match ^[_a-zA-Z][_a-zA-Z0-9]*$")]
    InvalidName(String),
}

impl SubstituteError {
    /// Whether a limit was crossed (output size or the render's deadline).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            SubstituteError::TooLarge { .. } | SubstituteError::Deadline { .. }
        )
    }

    /// Whether the failure may pass by itself: a deadline on a busy machine.
    pub fn is_transient(&self) -> bool {
        matches!(self, SubstituteError::Deadline { .. })
    }
}

/// What substituting one render may spend.
#[derive(Debug, Clone, Copy)]
pub struct SubstituteLimits {
    /// Bytes the substituted objects may take, as their YAML text, all together.
    pub max_output_bytes: u64,
    /// When to give up, if ever.
    pub deadline: Option<std::time::Instant>,
}

impl Default for SubstituteLimits {
    fn default() -> Self {
        Self {
            max_output_bytes: 64 << 20,
            deadline: None,
        }
    }
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

/// Substitutes `vars` into every object that does not opt out, within `limits`.
pub fn substitute_objects(
    objects: Vec<Value>,
    vars: &BTreeMap<String, String>,
    limits: &SubstituteLimits,
) -> Result<Vec<Value>, SubstituteError> {
    Ok(substitute_objects_tracked(objects, vars, limits)?
        .into_iter()
        .map(|s| s.object)
        .collect())
}

/// An object after substitution, with the variables its substitution looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct Substituted {
    /// The object, substituted (or as it was, when it opts out).
    pub object: Value,
    /// Every variable name the substitution looked up (set or not, defaults and patterns
    /// included): the same text with the same values looks up the same names, so these are all
    /// the values the result depends on. Empty for an object that opts out.
    pub used: BTreeSet<String>,
}

/// [`substitute_objects`], telling for each object which variables it used.
pub fn substitute_objects_tracked(
    objects: Vec<Value>,
    vars: &BTreeMap<String, String>,
    limits: &SubstituteLimits,
) -> Result<Vec<Substituted>, SubstituteError> {
    let mut names_checked = false;
    let mut budget = envsubst::Budget {
        bytes: usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX),
        deadline: limits.deadline,
    };
    objects
        .into_iter()
        .map(|obj| {
            if is_disabled(&obj) {
                return Ok(Substituted {
                    object: obj,
                    used: BTreeSet::new(),
                });
            }
            if !names_checked {
                // As Flux: the names are checked when an object is substituted.
                if let Some(bad) = vars.keys().find(|k| !valid_name(k)) {
                    return Err(SubstituteError::InvalidName(bad.clone()));
                }
                names_checked = true;
            }
            substitute_enabled(obj, vars, &mut budget, limits.max_output_bytes)
        })
        .collect()
}

fn substitute_enabled(
    obj: Value,
    vars: &BTreeMap<String, String>,
    budget: &mut envsubst::Budget,
    limit: u64,
) -> Result<Substituted, SubstituteError> {
    let id = object_id(&obj).to_string();
    let secret = obj.get("kind").and_then(Value::as_str) == Some("Secret")
        && obj.get("apiVersion").and_then(Value::as_str) == Some("v1");
    let text = to_yaml_document(&obj);
    let used = RefCell::new(BTreeSet::new());
    let lookup = |k: &str| {
        used.borrow_mut().insert(k.to_owned());
        vars.get(k).map(|v| v.as_bytes().to_vec())
    };
    let out = substitute_text_within(&text, &lookup, *budget).map_err(|e| match e {
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
        TextError::TooLarge { line } => SubstituteError::TooLarge {
            object: id.clone(),
            line,
            limit,
        },
        TextError::Deadline { line } => SubstituteError::Deadline {
            object: id.clone(),
            line,
        },
    })?;
    budget.bytes = budget.bytes.saturating_sub(out.len());
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
        Value::Object(_) => Ok(Substituted {
            object: doc,
            used: used.into_inner(),
        }),
        _ => Err(yaml_err("not an object".to_owned())),
    }
}

/// Sets `common`'s labels and annotations on every object (over ones of the same key), as a
/// Sync's `commonMetadata` asks, after substitution (so they are never substituted).
pub fn apply_common_metadata(objects: &mut [Value], common: &CommonMetadata) {
    for obj in objects {
        for (field, values) in [
            ("labels", &common.labels),
            ("annotations", &common.annotations),
        ] {
            if values.is_empty() {
                continue;
            }
            let Some(meta) = obj
                .as_object_mut()
                .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let map = meta.entry(field).or_insert_with(|| json!({}));
            if !map.is_object() {
                *map = json!({});
            }
            if let Some(map) = map.as_object_mut() {
                for (k, v) in values {
                    map.insert(k.clone(), json!(v));
                }
            }
        }
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
    /// The text would take more bytes than allowed.
    TooLarge {
        /// The line of the reference that crossed the limit.
        line: usize,
    },
    /// The deadline passed.
    Deadline {
        /// The line of the reference being substituted.
        line: usize,
    },
}

/// Substitutes `vars` into `text` with Flux's envsubst rules (strict: an unset variable without
/// a default is an error). The result is bytes, as in Go: `${var:pos}` counts bytes.
#[cfg(test)]
pub fn substitute_text(text: &str, vars: &BTreeMap<String, String>) -> Result<Vec<u8>, TextError> {
    substitute_text_within(
        text,
        &|k: &str| vars.get(k).map(|v| v.as_bytes().to_vec()),
        envsubst::Budget {
            bytes: usize::MAX,
            deadline: None,
        },
    )
}

fn substitute_text_within(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<Vec<u8>>,
    budget: envsubst::Budget,
) -> Result<Vec<u8>, TextError> {
    let convert = |e| match e {
        envsubst::EvalError::Syntax { line, why } => TextError::Invalid { line, why },
        envsubst::EvalError::Missing { line, var } => TextError::Missing { line, var },
        envsubst::EvalError::TooLarge { line } => TextError::TooLarge { line },
        envsubst::EvalError::Deadline { line } => TextError::Deadline { line },
    };
    let template = envsubst::parse(text).map_err(convert)?;
    template.execute_within(lookup, budget).map_err(convert)
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
        substitute_objects(vec![obj], vars, &SubstituteLimits::default()).map(|mut v| v.remove(0))
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
        let err =
            substitute_objects(vec![cm.clone()], &v, &SubstituteLimits::default()).unwrap_err();
        assert_eq!(err, SubstituteError::InvalidName("app.domain".into()));
        let mut off = cm;
        off["metadata"]["annotations"] = json!({FLUX_SUBSTITUTE_ANNOTATION: "disabled"});
        assert!(substitute_objects(vec![off], &v, &SubstituteLimits::default()).is_ok());
    }

    fn limited(max_output_bytes: u64, deadline: Option<std::time::Instant>) -> SubstituteLimits {
        SubstituteLimits {
            max_output_bytes,
            deadline,
        }
    }

    fn config_map(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "apps"}, "data": data})
    }

    #[test]
    fn a_huge_value_referenced_many_times_crosses_the_output_limit() {
        // 1 MiB (the most a ConfigMap holds) referenced 10 000 times would be 10 GiB.
        let big = "x".repeat(1 << 20);
        let refs: Vec<String> = (0..10_000).map(|_| "${BIG}".to_owned()).collect();
        let obj = config_map(json!({"k": refs.join("")}));
        let err = substitute_objects(vec![obj], &vars(&[("BIG", &big)]), &limited(64 << 20, None))
            .unwrap_err();
        assert!(
            matches!(&err, SubstituteError::TooLarge { object, limit, .. }
                if object == "apps_c__ConfigMap" && *limit == 64 << 20),
            "{err:?}"
        );
        assert!(err.is_limit() && !err.is_transient());
        let shown = err.to_string();
        assert!(
            shown.contains("max-rendered-size") && !shown.contains("xxxx"),
            "{shown}"
        );
    }

    #[test]
    fn the_output_limit_counts_every_object_of_the_render() {
        let value = "v".repeat(600 << 10);
        let objects: Vec<Value> = (0..4)
            .map(|i| {
                let mut o = config_map(json!({"k": "${V}"}));
                o["metadata"]["name"] = json!(format!("c{i}"));
                o
            })
            .collect();
        let err = substitute_objects(
            objects.clone(),
            &vars(&[("V", &value)]),
            &limited(2 << 20, None),
        )
        .unwrap_err();
        assert!(
            matches!(&err, SubstituteError::TooLarge { object, .. } if object == "apps_c3__ConfigMap"),
            "{err:?}"
        );
        // Under the limit, the same render substitutes.
        let out =
            substitute_objects(objects, &vars(&[("V", &value)]), &limited(4 << 20, None)).unwrap();
        assert_eq!(out[3]["data"]["k"], json!(value));
    }

    #[test]
    fn a_replacement_that_multiplies_a_value_stops_at_the_limit() {
        // Every character of a 64 KiB value replaced by 64 KiB: 4 GiB unbounded.
        let (a, b) = ("a".repeat(64 << 10), "b".repeat(64 << 10));
        for reference in ["${A//a/${B}}", "${A//a/${A//a/${B}}}"] {
            let obj = config_map(json!({"k": reference}));
            let err = substitute_objects(
                vec![obj],
                &vars(&[("A", &a), ("B", &b)]),
                &limited(8 << 20, None),
            )
            .unwrap_err();
            assert!(
                matches!(err, SubstituteError::TooLarge { .. }),
                "{reference}: {err:?}"
            );
        }
    }

    #[test]
    fn deeply_nested_references_are_refused_not_recursed_into() {
        // A million nested defaults would overflow any stack if followed.
        let depth = 1_000_000;
        let text = format!("{}x{}", "${A:=".repeat(depth), "}".repeat(depth));
        let obj = config_map(json!({"k": text}));
        let err = substitute_objects(
            vec![obj],
            &vars(&[("B", "1")]),
            &SubstituteLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, SubstituteError::Invalid { why, .. } if why.contains("nested more than 64")),
            "{err:?}"
        );
        // Nesting up to the cap renders as Flux renders it.
        let text = format!("{}x{}", "${A:=".repeat(64), "}".repeat(64));
        let out = substitute_objects(
            vec![config_map(json!({"k": text}))],
            &vars(&[("B", "1")]),
            &SubstituteLimits::default(),
        )
        .unwrap();
        assert_eq!(out[0]["data"]["k"], json!("x"));
    }

    #[test]
    fn a_pattern_over_a_huge_value_ends_at_the_deadline() {
        // Each of a million prefixes matched in turn: hours without a deadline.
        let value = "a".repeat(1 << 20);
        let obj = config_map(json!({"k": "${V##*b*}${V%%*b*}"}));
        let started = std::time::Instant::now();
        let err = substitute_objects(
            vec![obj],
            &vars(&[("V", &value)]),
            &limited(
                64 << 20,
                Some(std::time::Instant::now() + std::time::Duration::from_millis(200)),
            ),
        )
        .unwrap_err();
        assert!(
            matches!(&err, SubstituteError::Deadline { object, .. } if object == "apps_c__ConfigMap"),
            "{err:?}"
        );
        assert!(err.is_limit() && err.is_transient());
        println!("pattern over 1 MiB stopped after {:?}", started.elapsed());
    }

    #[test]
    fn many_variables_and_yaml_breaking_values_fail_or_render_cleanly() {
        // Ten thousand variables, each used once.
        let many: BTreeMap<String, String> = (0..10_000)
            .map(|i| (format!("V{i}"), i.to_string()))
            .collect();
        let data: serde_json::Map<String, Value> = (0..10_000)
            .map(|i| (format!("k{i}"), json!(format!("${{V{i}}}"))))
            .collect();
        let out = substitute_objects(
            vec![config_map(Value::Object(data))],
            &many,
            &SubstituteLimits::default(),
        )
        .unwrap();
        assert_eq!(out[0]["data"]["k9999"], json!(9999));
        // Values that break the YAML they land in: a clear error naming the object, or a
        // string; never a panic.
        for value in [
            "a: b: c",
            "- x\n- y",
            "{",
            "[[[[[[[[",
            "&a [*a, *a]",
            "*undefined",
            "!!binary not-base64",
            "\t\u{0}",
            "'",
            "\"",
            "? complex",
            "%YAML 1.1",
            "--- \n...",
            "key: |\n  block",
        ] {
            let obj = config_map(json!({"k": "${V}", "after": "kept"}));
            match substitute_objects(
                vec![obj],
                &vars(&[("V", value)]),
                &SubstituteLimits::default(),
            ) {
                Ok(out) => assert!(out[0].is_object(), "{value:?}: {out:?}"),
                Err(e) => {
                    let shown = e.to_string();
                    assert!(shown.contains("apps_c__ConfigMap"), "{value:?}: {shown}");
                }
            }
        }
        // Deeply nested flow YAML from a value is held to the reader's depth limit.
        let deep = "[".repeat(100_000);
        let err = substitute_objects(
            vec![config_map(json!({"k": "${V}"}))],
            &vars(&[("V", &deep)]),
            &SubstituteLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, SubstituteError::Yaml { .. }), "{err:?}");
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
