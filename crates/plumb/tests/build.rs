//! `plumb build` renders what a Sync would: a plain directory as Flux's plain-directory rule (the
//! same objects as `kubectl kustomize` of a kustomization listing its YAML files), and
//! `--sync FILE` with the Sync's transforms and substitution (`substituteFrom` given locally).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn objects(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn plumb(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn a_plain_directory_builds_as_a_sync_renders_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cm = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
    };
    write(root, "plain/b.yaml", &cm("b"));
    write(root, "plain/a.yml", &cm("a"));
    write(
        root,
        "plain/nested/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n",
    );
    write(root, "plain/README.md", "not yaml");
    let dir = root.join("plain");
    let (ok, out, err) = plumb(&["build", dir.to_str().unwrap()]);
    assert!(ok, "{err}");

    // The oracle: kubectl kustomize of the kustomization Flux would generate.
    write(
        root,
        "plain/kustomization.yaml",
        "resources: [a.yml, b.yaml, nested/deploy.yaml]\n",
    );
    let kubectl = Command::new("kubectl")
        .args(["kustomize", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(kubectl.status.success());
    assert_eq!(
        objects(&out),
        objects(&String::from_utf8(kubectl.stdout).unwrap())
    );
    assert_eq!(objects(&out).len(), 3);
}

#[test]
fn a_sync_file_renders_with_its_transforms_and_local_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(
        root,
        "apps/base/deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: ${replicas}\n  template:\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.0\n          env:\n            - {name: REGION, value: \"${region}\"}\n            - {name: TOKEN, value: \"${token:=none}\"}\n",
    );
    write(
        root,
        "apps/base/kustomization.yaml",
        "resources: [deploy.yaml]\nnamePrefix: base-\n",
    );
    write(
        root,
        "sync.yaml",
        "apiVersion: sync.plumb.dev/v1\nkind: Sync\nmetadata: {name: apps, namespace: team}\nspec:\n  sourceRef: {kind: GitRepository, name: fleet}\n  path: ./apps/base\n  namePrefix: prod-\n  images: [{name: nginx, newTag: \"1.27\"}]\n  patches:\n    - target: {kind: Deployment, name: web}\n      patch: |\n        - {op: add, path: /spec/template/spec/containers/0/args, value: [--port=8080]}\n  commonMetadata: {labels: {team: web}}\n  substitute: {replicas: \"3\"}\n  substituteFrom:\n    - {kind: ConfigMap, name: cluster-vars}\n    - {kind: Secret, name: cluster-secrets}\n    - {kind: ConfigMap, name: absent, optional: true}\n",
    );
    write(
        root,
        "vars.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cluster-vars}\ndata: {region: eu-1, replicas: \"9\"}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: cluster-secrets}\ndata: {token: czNjcjN0}\n",
    );
    let (ok, out, err) = plumb(&[
        "build",
        "--sync",
        root.join("sync.yaml").to_str().unwrap(),
        "--vars",
        root.join("vars.yaml").to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let objs = objects(&out);
    assert_eq!(objs.len(), 1);
    let d = &objs[0];
    assert_eq!(
        d["metadata"]["name"], "prod-web",
        "the Sync's prefix replaces the base's"
    );
    assert_eq!(d["metadata"]["labels"], json!({"team": "web"}));
    assert_eq!(
        d["spec"]["replicas"], 3,
        "inline substitute wins over substituteFrom"
    );
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["args"], json!(["--port=8080"]), "the Sync's patches");
    assert_eq!(
        c["env"],
        json!([{"name": "REGION", "value": "eu-1"}, {"name": "TOKEN", "value": "s3cr3t"}])
    );

    // A source the --vars files lack fails the build, naming it.
    let (ok, _, err) = plumb(&[
        "build",
        "--sync",
        root.join("sync.yaml").to_str().unwrap(),
        root.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("cluster-vars"), "{err}");
}
