//! Reads kustomize's built-in transformer configuration (`src/default_config.yaml`) at build time
//! and writes it out as Rust tables (`$OUT_DIR/default_config.rs`). Parsing the YAML at run time
//! was most of the work of a small `plumb build`; the unit test `builtin_table_matches_yaml`
//! checks the tables against the engine's own reading of the same file.

use std::fmt::Write as _;
use yaml_rust2::{Yaml, YamlLoader};

const SOURCE: &str = "src/default_config.yaml";

/// The transformer sections holding plain field-spec lists, by their YAML key.
const LISTS: &[&str] = &[
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "labels",
    "templateLabels",
    "commonAnnotations",
    "namespace",
    "varReference",
    "images",
    "replicas",
];

fn text<'a>(map: &'a Yaml, key: &str, at: &str) -> &'a str {
    match &map[key] {
        Yaml::BadValue => "",
        Yaml::String(s) => s,
        other => panic!("{SOURCE}: {at}: {key} is not a string: {other:?}"),
    }
}

fn keys_known(map: &Yaml, known: &[&str], at: &str) {
    let Some(h) = map.as_hash() else {
        panic!("{SOURCE}: {at}: not a mapping: {map:?}");
    };
    for k in h.keys() {
        let k = k.as_str().unwrap_or_default();
        assert!(known.contains(&k), "{SOURCE}: {at}: unknown key {k:?}");
    }
}

/// One field spec as a `(group, version, kind, path, create)` tuple expression.
fn spec(y: &Yaml, at: &str) -> String {
    keys_known(y, &["group", "version", "kind", "path", "create"], at);
    let create = match &y["create"] {
        Yaml::BadValue => false,
        Yaml::Boolean(b) => *b,
        other => panic!("{SOURCE}: {at}: create is not a boolean: {other:?}"),
    };
    format!(
        "({:?}, {:?}, {:?}, {:?}, {create})",
        text(y, "group", at),
        text(y, "version", at),
        text(y, "kind", at),
        text(y, "path", at),
    )
}

fn specs(list: &Yaml, at: &str) -> String {
    let items = match list {
        Yaml::BadValue => &Vec::new(),
        Yaml::Array(a) => a,
        other => panic!("{SOURCE}: {at}: not a list: {other:?}"),
    };
    let mut out = String::from("&[");
    for (i, y) in items.iter().enumerate() {
        out.push_str(&spec(y, &format!("{at}[{i}]")));
        out.push_str(", ");
    }
    out.push(']');
    out
}

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    let yaml = std::fs::read_to_string(SOURCE).unwrap_or_else(|e| panic!("{SOURCE}: {e}"));
    let docs = YamlLoader::load_from_str(&yaml).unwrap_or_else(|e| panic!("{SOURCE}: {e}"));
    let [doc] = docs.as_slice() else {
        panic!("{SOURCE}: expected one document");
    };
    let mut known = LISTS.to_vec();
    known.push("nameReference");
    keys_known(doc, &known, "top level");

    let mut out = String::from(
        "/// kustomize's built-in configuration, read from `default_config.yaml` by `build.rs`.\n",
    );
    for key in LISTS {
        let _ = writeln!(
            out,
            "const {}: &[SpecRow] = {};",
            const_name(key),
            specs(&doc[*key], key)
        );
    }
    out.push_str("const NAME_REFERENCE: &[BackRefRow] = &[\n");
    let refs = match &doc["nameReference"] {
        Yaml::Array(a) => a.as_slice(),
        Yaml::BadValue => &[],
        other => panic!("{SOURCE}: nameReference is not a list: {other:?}"),
    };
    for (i, r) in refs.iter().enumerate() {
        let at = format!("nameReference[{i}]");
        keys_known(r, &["group", "version", "kind", "fieldSpecs"], &at);
        let _ = writeln!(
            out,
            "    ({:?}, {:?}, {:?}, {}),",
            text(r, "group", &at),
            text(r, "version", &at),
            text(r, "kind", &at),
            specs(&r["fieldSpecs"], &format!("{at}.fieldSpecs"))
        );
    }
    out.push_str("];\n");
    let out_dir = std::env::var("OUT_DIR").unwrap_or_else(|e| panic!("OUT_DIR: {e}"));
    let dest = std::path::Path::new(&out_dir).join("default_config.rs");
    std::fs::write(&dest, out).unwrap_or_else(|e| panic!("{}: {e}", dest.display()));
}

/// `namePrefix` → `NAME_PREFIX`.
fn const_name(key: &str) -> String {
    let mut s = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            s.push('_');
        }
        s.push(c.to_ascii_uppercase());
    }
    s
}
