//! Differential test of post-build substitution against Flux itself: every case is a manifest
//! and a set of variables; plumb renders it (a plain directory with `substitute`), and
//! `flux-oracle` (Flux's envsubst and sigs.k8s.io/yaml, built from their Go modules by
//! `e2e/flux-oracle/build.sh`, cached under `~/.cache/plumb`) substitutes the same built object
//! as kustomize-controller does. Both must give the same object, or both must fail.
//!
//! The cases cover every form Flux's envsubst accepts, the malformed ones it refuses, escapes,
//! and the typing of substituted values (numbers, YAML 1.1 booleans, quoted references, values
//! that need quoting).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use plumb_api::SyncSpec;
use serde_json::{Value, json};

/// The variables every case may use.
fn variables() -> BTreeMap<String, String> {
    [
        ("name", "web"),
        ("id", "123"),
        ("zero_id", "0123"),
        ("hex", "0x1F"),
        ("float", "1.50"),
        ("exp", "1e3"),
        ("yes", "yes"),
        ("on", "on"),
        ("tilde", "~"),
        ("empty", ""),
        ("quote", "\""),
        ("path", "a/b/c.tar.gz"),
        ("greeting", "Hello World"),
        ("mixed", "ÉlAn"),
        ("colon", "a: b"),
        ("hash", "x #y"),
        ("flow", "[1, 2]"),
        ("brace", "{a: 1}"),
        ("dash", "- item"),
        ("spaces", "  padded  "),
        ("multi", "line1\nline2"),
        ("dollar", "$HOME"),
        ("ref", "${name}"),
        ("n", "2"),
        ("neg", "-3"),
        ("date", "2024-01-02"),
        ("big", "18446744073709551615"),
        ("under", "1_000"),
        ("tag", "!!str 5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Values put into a ConfigMap's `data` (one key per case), each a reference form.
const VALUES: &[&str] = &[
    "${name}",
    "${id}",
    "prefix-${id}",
    "${zero_id}",
    "${hex}",
    "${float}",
    "${exp}",
    "${yes}",
    "${on}",
    "${tilde}",
    "${empty}",
    "${quote}${id}${quote}",
    "${missing:=fallback}",
    "${missing:-fallback}",
    "${missing=fallback}",
    "${empty:=fallback}",
    "${empty:-fallback}",
    "${missing:=}",
    "${missing:=${name}-${id}}",
    "${missing:+plus}",
    "${missing:?q}",
    "${greeting:6}",
    "${greeting:0:5}",
    "${greeting:1:-1}",
    "${greeting:-5}",
    "${greeting:${n}:3}",
    "${greeting:${neg}}",
    "${greeting:40}",
    "${greeting:x}",
    "${greeting/o/0}",
    "${greeting//o/0}",
    "${greeting//o/}",
    "${greeting/#Hello/Bye}",
    "${greeting/%World/All}",
    "${greeting/#World/All}",
    "${path//\\//-}",
    "${path#*/}",
    "${path##*/}",
    "${path%.*}",
    "${path%%.*}",
    "${path#[a-c]}",
    "${path%[!z]}",
    "${mixed^}",
    "${mixed^^}",
    "${mixed,}",
    "${mixed,,}",
    "${mixed,^}",
    "${#mixed}",
    "${#greeting}",
    "${colon}",
    "${hash}",
    "${flow}",
    "${brace}",
    "${dash}",
    "${spaces}",
    "${multi}",
    "${dollar}",
    "${ref}",
    "${date}",
    "${big}",
    "${under}",
    "${tag}",
    "$${name} and $$ and $name and $5",
    "$$${name}",
    "cost: ${id} #note",
    "${name}:${id}",
    "'${id}'",
    "\"${id}\"",
    "yes",
    "${1name}",
    "${name-default}",
    "${name//x}",
    "${name:}",
    "${name#}",
    "${name^^^}",
    "${}",
    "${ name}",
    "${name",
    "${missing}",
    "${#missing}",
];

/// Flux's result for each object: the object, or the error text.
fn flux(objects: &[Value], vars: &BTreeMap<String, String>) -> Vec<Result<Value, String>> {
    plumb_e2e_support::flux_substitute(objects, vars)
}

fn spec(vars: &BTreeMap<String, String>) -> SyncSpec {
    serde_json::from_value(json!({
        "sourceRef": {"kind": "GitRepository", "name": "r"},
        "path": "./deploy",
        "substitute": vars,
    }))
    .unwrap()
}

/// One ConfigMap per value (substituted alone, so one failing form does not hide another).
fn manifest(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: case\n  labels:\n    plain: \"x\"\ndata:\n  value: {quoted}\n"
    )
}

#[test]
fn substitution_matches_flux_for_every_form() {
    let vars = variables();
    let mut agreed = 0;
    let mut both_failed = 0;
    let mut mismatches = Vec::new();
    for value in VALUES {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("deploy");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cm.yaml"), manifest(value)).unwrap();
        // The built object before substitution, as Flux would hand it to substitution.
        let mut unsubstituted = spec(&BTreeMap::new());
        unsubstituted.substitute.clear();
        let built = plumb_render::render(tmp.path(), &unsubstituted, &[]).unwrap();
        let theirs = flux(&built, &vars).remove(0);
        let ours = plumb_render::render(tmp.path(), &spec(&vars), &[]).map(|mut o| o.remove(0));
        match (ours, theirs) {
            (Ok(a), Ok(b)) if a == b => agreed += 1,
            (Err(_), Err(_)) => both_failed += 1,
            (ours, theirs) => mismatches.push(format!(
                "{value:?}: plumb {:?}, flux {:?}",
                ours.map(|o| o["data"].clone()).map_err(|e| e.to_string()),
                theirs.map(|o| o["data"].clone())
            )),
        }
    }
    println!(
        "substitution vs Flux: {} cases, {agreed} same object, {both_failed} both refused",
        VALUES.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} cases differ from Flux:\n{}",
        mismatches.len(),
        VALUES.len(),
        mismatches.join("\n")
    );
    assert!(agreed >= 60 && both_failed >= 10, "the cases lost coverage");
}

#[test]
fn whole_objects_match_flux_including_keys_and_nested_values() {
    let vars = variables();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: ${name}-${id}\n  annotations:\n    id: \"${id}\"\n    keep: \"${quote}${id}${quote}\"\nspec:\n  replicas: ${n}\n  template:\n    spec:\n      containers:\n        - name: ${name}\n          image: \"nginx:${float}\"\n          args: [\"--id=${id}\", \"${yes}\", \"${exp}\"]\n          env:\n            - {name: A, value: \"${id}\"}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("svc.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc\nspec:\n  ports:\n    - port: ${id}\n      targetPort: \"${name}\"\n",
    )
    .unwrap();
    let mut unsubstituted = spec(&BTreeMap::new());
    unsubstituted.substitute.clear();
    let built = plumb_render::render(tmp.path(), &unsubstituted, &[]).unwrap();
    let theirs: Vec<Value> = flux(&built, &vars)
        .into_iter()
        .map(|r| r.expect("flux substitutes these objects"))
        .collect();
    let ours = plumb_render::render(tmp.path(), &spec(&vars), &[]).unwrap();
    assert_eq!(ours, theirs);
    // What this pins: a quoted reference is a number after substitution, as in Flux.
    let deploy = ours.iter().find(|o| o["kind"] == "Deployment").unwrap();
    assert_eq!(deploy["metadata"]["annotations"]["id"], json!(123));
    assert_eq!(deploy["metadata"]["annotations"]["keep"], json!("123"));
    assert_eq!(deploy["spec"]["replicas"], json!(2));
}
