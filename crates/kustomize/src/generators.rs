//! configMapGenerator and secretGenerator, and kustomize's content-hash name suffix.

use crate::build::{Acc, Builder, Target};
use crate::error::Error;
use crate::kustomization::{GeneratorArgs, GeneratorOptions};
use crate::limits::Limit;
use crate::resource::{Behavior, Resource};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Run the kustomization's generators and add their output to `acc`.
pub(crate) fn run(b: &mut Builder<'_>, t: &Target, acc: &mut Acc) -> Result<(), Error> {
    for g in &t.k.config_map_generator {
        let r = generate(b, t, g, false)?;
        acc.absorb(r)
            .map_err(t.conflict_err(format!("configMapGenerator {}", g.name)))?;
    }
    for g in &t.k.secret_generator {
        let r = generate(b, t, g, true)?;
        acc.absorb(r)
            .map_err(t.conflict_err(format!("secretGenerator {}", g.name)))?;
    }
    crate::helm::run(b, t, acc)?;
    crate::transform::run_generator_plugins(b, t, acc)
}

/// Merge kustomization-wide options under per-generator ones.
fn merged_options(
    local: Option<&GeneratorOptions>,
    global: Option<&GeneratorOptions>,
) -> GeneratorOptions {
    let mut out = local.cloned().unwrap_or_default();
    if let Some(g) = global {
        for (k, v) in &g.labels {
            out.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &g.annotations {
            out.annotations
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        out.disable_name_suffix_hash |= g.disable_name_suffix_hash;
        out.immutable |= g.immutable;
    }
    out
}

/// Key/value pairs from env files, literals and files, in kustomize's order, holding no more
/// than the API server stores in one object.
fn pairs(
    b: &Builder<'_>,
    t: &Target,
    g: &GeneratorArgs,
    kind: &'static str,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let max = b.limits().max_generated_bytes;
    let too_large = |size: u64| {
        t.limit_err(
            format!("{} {}", kind_field(kind), g.name),
            Limit::GeneratedBytes {
                kind,
                name: g.name.clone(),
                size,
                max,
            },
        )
    };
    // A source larger than the object may hold is refused before it is read.
    let read_capped = |path: &std::path::Path| {
        b.read_bytes(t, path, Some(max)).map_err(|e| match e {
            Error::Limit {
                limit: Limit::FileBytes { size, .. },
                ..
            } => too_large(size),
            other => other,
        })
    };
    let mut out = Vec::new();
    for env in &g.envs {
        let path = b.resolve_local_file(t, env)?;
        let bytes = read_capped(&path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| t.err(format!("{} is not UTF-8", b.fs.show(&path))))?;
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            if !valid_env_name(k) {
                return Err(t.err(format!(
                    "env file {env}: invalid key {k:?}: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit"
                )));
            }
            out.push((k.to_string(), v.as_bytes().to_vec()));
        }
    }
    for lit in &g.literals {
        let Some((k, v)) = lit.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(t.err(format!("invalid literal source {lit}, expected key=value")));
        };
        out.push((k.to_string(), remove_quotes(v).as_bytes().to_vec()));
    }
    for f in &g.files {
        let (key, file) = match f.matches('=').count() {
            0 => (f.rsplit('/').next().unwrap_or(f).to_string(), f.as_str()),
            1 => {
                let (k, p) = f.split_once('=').unwrap_or(("", ""));
                if k.is_empty() {
                    return Err(t.err(format!(
                        "missing key name for file path {p:?} in source {f:?}"
                    )));
                }
                if p.is_empty() {
                    return Err(t.err(format!(
                        "missing file path for key name {k:?} in source {f:?}"
                    )));
                }
                (k.to_string(), p)
            }
            _ => return Err(t.err(format!("source {f:?} key name or file path contains '='"))),
        };
        let path = b.resolve_local_file(t, file)?;
        if b.fs.is_dir(&path) {
            return Err(t.err(format!("file source {file} is a directory")));
        }
        let bytes = read_capped(&path)?;
        out.push((key, bytes));
    }
    let size: u64 = out.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    if size > max {
        return Err(too_large(size));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, _) in &out {
        if !valid_config_key(k) {
            return Err(t.err(format!(
                "generator {}: invalid key {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                g.name
            )));
        }
        if !seen.insert(k.clone()) {
            return Err(t.err(format!(
                "configmap {} illegally repeats the key `{k}`",
                g.name
            )));
        }
    }
    Ok(out)
}

/// The kustomization field of a generator kind, for messages.
fn kind_field(kind: &str) -> &'static str {
    if kind == "Secret" {
        "secretGenerator"
    } else {
        "configMapGenerator"
    }
}

fn remove_quotes(s: &str) -> &str {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b[b.len() - 1] && (b[0] == b'"' || b[0] == b'\'') {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn generate(
    b: &Builder<'_>,
    t: &Target,
    g: &GeneratorArgs,
    secret: bool,
) -> Result<Resource, Error> {
    if g.name.is_empty() {
        return Err(t.err(format!(
            "a {} must have a name",
            if secret { "secret" } else { "configmap" }
        )));
    }
    let behavior = match g.behavior.as_str() {
        "merge" => Behavior::Merge,
        "replace" => Behavior::Replace,
        // kustomize reads any other value as unspecified, which creates.
        _ => Behavior::Create,
    };
    let opts = merged_options(g.options.as_ref(), t.k.generator_options.as_ref());
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert(
        "kind".into(),
        json!(if secret { "Secret" } else { "ConfigMap" }),
    );
    let mut md = Map::new();
    md.insert("name".into(), json!(g.name));
    if !g.namespace.is_empty() {
        md.insert("namespace".into(), json!(g.namespace));
    }
    let mut data = Map::new();
    let mut binary = Map::new();
    let kind = if secret { "Secret" } else { "ConfigMap" };
    for (k, v) in pairs(b, t, g, kind)? {
        if secret {
            data.insert(k, Value::String(wrapped_base64(&v)));
        } else {
            match String::from_utf8(v) {
                Ok(s) => {
                    data.insert(k, Value::String(s));
                }
                Err(e) => {
                    binary.insert(k, Value::String(wrapped_base64(e.as_bytes())));
                }
            }
        }
    }
    if secret {
        obj.insert(
            "type".into(),
            json!(if g.kind.is_empty() { "Opaque" } else { &g.kind }),
        );
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    if !binary.is_empty() {
        obj.insert("binaryData".into(), Value::Object(binary));
    }
    let mut labels: Vec<(&String, &String)> = opts.labels.iter().collect();
    labels.sort();
    if !labels.is_empty() {
        md.insert(
            "labels".into(),
            Value::Object(
                labels
                    .into_iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        );
    }
    let mut annotations: Vec<(&String, &String)> = opts.annotations.iter().collect();
    annotations.sort();
    if !annotations.is_empty() {
        md.insert(
            "annotations".into(),
            Value::Object(
                annotations
                    .into_iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        );
    }
    obj.insert("metadata".into(), Value::Object(md));
    if opts.immutable {
        obj.insert("immutable".into(), Value::Bool(true));
    }
    let mut r = Resource::new(obj);
    r.needs_hash = !opts.disable_name_suffix_hash;
    r.behavior = behavior;
    if let Some(o) = &t.origin {
        let kind = if secret {
            "SecretGenerator"
        } else {
            "ConfigMapGenerator"
        };
        r.origin = Some(match &t.plugin {
            Some((configured_in, name)) => {
                crate::transform::configured_by(configured_in, kind, Some(name))
            }
            None => crate::transform::configured_by(
                &crate::build::join_origin(o, &t.file_name),
                kind,
                None,
            ),
        });
    }
    Ok(r)
}

/// Base64 as kustomize stores generated data: lines of 70 characters, each ending in a newline,
/// once the encoding reaches 70 characters.
fn wrapped_base64(data: &[u8]) -> String {
    let enc = B64.encode(data);
    if enc.len() < 70 {
        return enc;
    }
    let mut out = String::with_capacity(enc.len() + enc.len() / 70 + 1);
    for chunk in enc.as_bytes().chunks(70) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Labels, annotations, name and namespace of `old` under those of the new generated object.
pub(crate) fn copy_merge_metadata(r: &mut Resource, old: &Resource) {
    for field in ["labels", "annotations"] {
        let mut merged = match old.as_value().get("metadata").and_then(|m| m.get(field)) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if let Some(Value::Object(mine)) = r.as_value().get("metadata").and_then(|m| m.get(field)) {
            for (k, v) in mine {
                merged.insert(k.clone(), v.clone());
            }
        }
        let md = r.metadata_mut();
        if merged.is_empty() {
            md.remove(field);
        } else {
            md.insert(field.into(), Value::Object(merged));
        }
    }
    let name = old.name().to_string();
    let ns = old.namespace().to_string();
    r.set_name(&name);
    if ns.is_empty() {
        r.metadata_mut().remove("namespace");
    } else {
        r.set_namespace(&ns);
    }
    r.prev_ids = old.prev_ids.clone();
    r.prefixes = old.prefixes.clone();
    r.suffixes = old.suffixes.clone();
    r.behavior = old.behavior;
    r.needs_hash = r.needs_hash && old.needs_hash;
}

/// Keys of `old`'s map `field` under the new object's.
pub(crate) fn merge_data(r: &mut Resource, old: &Resource, field: &str) {
    let mut merged = match old.as_value().get(field) {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(Value::Object(mine)) = r.as_value().get(field) {
        for (k, v) in mine {
            merged.insert(k.clone(), v.clone());
        }
    }
    if merged.is_empty() {
        r.as_value_mut().remove(field);
    } else {
        r.as_value_mut().insert(field.into(), Value::Object(merged));
    }
}

/// kustomize's name suffix: sha256 over a Go-JSON encoding of the content, first 10 hex digits
/// with some letters swapped so the result never looks like a word or a number.
/// Append the content hash to the name of every generated object that wants one (kustomize's
/// hash transformer). Like kustomize, it does not mark them done: a `HashTransformer` in
/// `transformers:` and the build's own final pass each append one.
pub(crate) fn apply_hashes(res: &mut [Resource]) {
    for r in res.iter_mut().filter(|r| r.needs_hash) {
        let h = content_hash(r);
        r.store_previous_id();
        let name = format!("{}-{h}", r.name());
        r.set_name(&name);
    }
}

pub(crate) fn content_hash(r: &Resource) -> String {
    let obj = r.as_value();
    let field = |name: &str| match obj.get(name) {
        Some(v @ Value::Object(_)) => v.clone(),
        Some(Value::Null) | None => Value::String(String::new()),
        Some(other) => Value::String(crate::resource::scalar_string(other)),
    };
    let mut m = Map::new();
    match r.kind() {
        "ConfigMap" => {
            m.insert("kind".into(), json!("ConfigMap"));
            m.insert("name".into(), json!(""));
            m.insert("data".into(), field("data"));
            if let Some(v @ Value::Object(_)) = obj.get("binaryData") {
                m.insert("binaryData".into(), v.clone());
            }
        }
        "Secret" => {
            m.insert("kind".into(), json!("Secret"));
            m.insert("name".into(), json!(""));
            m.insert("type".into(), field("type"));
            m.insert("data".into(), field("data"));
            if let Some(v @ Value::Object(_)) = obj.get("stringData") {
                m.insert("stringData".into(), v.clone());
            }
        }
        _ => return encode_hash(&go_json(&Value::Object(obj.clone()))),
    }
    encode_hash(&go_json(&Value::Object(m)))
}

fn encode_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(digest)
        .chars()
        .take(10)
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            other => other,
        })
        .collect()
}

/// JSON as Go's `encoding/json` writes it: sorted keys, HTML-safe escapes.
pub(crate) fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(k, out);
                out.push(':');
                write_go_json(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_go_string(s, out),
        other => out.push_str(&other.to_string()),
    }
}

fn write_go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_map_hash_matches_kustomize() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"},
            "data": {"a": "b", "c": "hello world"}});
        let r = Resource::new(obj.as_object().cloned().unwrap_or_default());
        assert_eq!(content_hash(&r), "hdtgtcfhb5");
    }

    #[test]
    fn go_json_escapes_html() {
        assert_eq!(
            go_json(&json!({"b": "<&>", "a": 1})),
            r#"{"a":1,"b":"\u003c\u0026\u003e"}"#
        );
    }
}
