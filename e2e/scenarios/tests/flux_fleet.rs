//! Moving a Flux fleet repository to plumb, end to end: `examples/flux-fleet` (two cluster
//! directories, staging and production, each with Flux's bootstrap objects and Kustomizations
//! and its own cluster-vars ConfigMap used by `postBuild.substituteFrom` (production also a
//! SOPS-encrypted cluster-secrets Secret); infrastructure/ and apps/ with a base and an overlay
//! per cluster, a component, SOPS-encrypted Secrets) is served from a git server, `plumb import`
//! of one cluster directory turns its Flux objects into plumb ones, which replace them in the
//! repository as a user moving would commit them, and the three controllers apply it. Each
//! cluster is its own test, with its own namespaces and controllers. Every object in the cluster, decrypted Secret values included,
//! is then checked against what Flux makes of the same manifests: `kubectl kustomize` over the
//! tree as Flux's generator lays it out (the Kustomization's `targetNamespace`, `namePrefix`,
//! `components`; a generated kustomization for a plain directory), `commonMetadata` set after
//! the build, the files decrypted by the real `sops`, and Flux's own substitution
//! (`e2e/flux-oracle`). Each Sync's inventory must hold exactly those objects.
//!
//! The shared test cluster needs unique names for cluster-scoped objects, so the fleet's
//! namespaces (`flux-system` and the Namespaces it declares) are test namespaces here: the copy
//! committed to the git server names them in place of the fleet's names (the `namespace:` and
//! `targetNamespace:` values and the Namespace objects' names), and the GitRepository points at
//! the test's git server. The oracle builds the same copy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::{Scope, pinned_kind};
use plumb_api::Sync;
use plumb_e2e_scenarios::{
    Controller, Controllers, GitFixture, SCOPE_LABEL, copy_tree, files_under, plumb_binary,
};
use plumb_e2e_support::{SopsTools, TestNamespace, flux_substitute, ready_at, wait_for};
use serde_json::{Map, Value, json};

/// The fleet's GitRepository URL, replaced by the test's git server.
const FLEET_URL: &str = "https://git.example.com/fleet.git";
/// How long the three Syncs may take to be Ready (the infrastructure waits for a Deployment).
const READY_WITHIN: Duration = Duration::from_secs(240);
/// The annotation (or label) by which an object opts out of Flux's substitution.
const SUBSTITUTE_DISABLED: &str = "kustomize.toolkit.fluxcd.io/substitute";

fn yaml_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| v.is_object())
        .collect()
}

fn is_yaml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "yaml" || e == "yml")
}

/// A SOPS-encrypted manifest of the fleet: YAML or JSON (sops picks the format by the extension).
fn is_sops(path: &Path) -> bool {
    let path = path.to_string_lossy();
    path.ends_with(".sops.yaml") || path.ends_with(".sops.json")
}

/// The names of the Namespace objects the fleet declares.
fn declared_namespaces(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in files_under(root)
        .unwrap()
        .into_iter()
        .filter(|f| is_yaml(f))
    {
        for doc in yaml_documents(&std::fs::read_to_string(&file).unwrap()) {
            if doc["kind"] == "Namespace"
                && let Some(name) = doc["metadata"]["name"].as_str()
            {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// `text` with each namespace of `names` renamed where YAML names it as a namespace: the values
/// of `namespace:` and `targetNamespace:`, and the name of a Namespace object.
fn rename_namespaces(text: &str, names: &BTreeMap<String, String>) -> String {
    let mut out = Vec::new();
    for doc in text.split_inclusive("\n---\n") {
        let is_namespace = doc.lines().any(|l| l.trim_end() == "kind: Namespace");
        let mut lines = Vec::new();
        for line in doc.split_inclusive('\n') {
            let body = line.trim_start().trim_start_matches("- ");
            let renamed = body.split_once(':').and_then(|(key, value)| {
                let value = value.trim();
                let is_ns_key = key == "namespace"
                    || key == "targetNamespace"
                    || (key == "name" && is_namespace);
                let new = names.get(value).filter(|_| is_ns_key)?;
                let at = line.rfind(value)?;
                Some(format!("{}{new}{}", &line[..at], &line[at + value.len()..]))
            });
            lines.push(renamed.unwrap_or_else(|| line.to_owned()));
        }
        out.push(lines.concat());
    }
    out.concat()
}

/// Runs `plumb import DIR` in `work` as a user would; its objects and its warnings.
fn plumb_import(work: &Path, dir: &str) -> (Vec<Value>, Vec<String>) {
    let out = Command::new(plumb_binary().unwrap())
        .args(["import", dir])
        .current_dir(work)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "plumb import {dir} failed:\n{stderr}");
    let warnings = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .map(str::to_owned)
        .collect();
    (
        yaml_documents(&String::from_utf8(out.stdout).unwrap()),
        warnings,
    )
}

/// The Flux Kustomizations under `dir`.
fn flux_kustomizations(dir: &Path) -> Vec<Value> {
    files_under(dir)
        .unwrap()
        .into_iter()
        .filter(|f| is_yaml(f))
        .flat_map(|f| yaml_documents(&std::fs::read_to_string(f).unwrap()))
        .filter(|d| {
            d["kind"] == "Kustomization"
                && d["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("kustomize.toolkit.fluxcd.io/"))
        })
        .collect()
}

const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

fn has_kustomization(dir: &Path) -> bool {
    KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file())
}

/// The resources of the kustomization Flux generates for a plain directory: every YAML file,
/// and each subdirectory holding a kustomization as a whole (not descended into).
fn plain_directory_resources(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            if has_kustomization(&path) {
                out.push(rel);
            } else {
                plain_directory_resources(root, &path, out);
            }
        } else if is_yaml(&path) {
            out.push(rel);
        }
    }
}

/// What Flux's kustomize-controller applies for `kustomization` from the (decrypted) `tree`:
/// its generator's kustomization, `kubectl kustomize`, `commonMetadata`, then substitution of
/// `vars` by Flux's own code. Fails on a field this emulation does not cover, so the check can
/// never pass by leaving one out.
fn flux_build(tree: &Path, kustomization: &Value, vars: &BTreeMap<String, String>) -> Vec<Value> {
    let spec = kustomization["spec"].as_object().unwrap();
    let emulated = [
        "interval",
        "retryInterval",
        "timeout",
        "path",
        "prune",
        "wait",
        "sourceRef",
        "dependsOn",
        "decryption",
        "targetNamespace",
        "namePrefix",
        "nameSuffix",
        "components",
        "commonMetadata",
        "postBuild",
    ];
    for key in spec.keys() {
        assert!(
            emulated.contains(&key.as_str()),
            "the Flux build emulation does not cover spec.{key}"
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    copy_tree(tree, scratch.path()).unwrap();
    let dir = scratch.path().join(spec["path"].as_str().unwrap());
    let file = dir.join("kustomization.yaml");
    let mut kus: Map<String, Value> = if has_kustomization(&dir) {
        let name = KUSTOMIZATION_FILES
            .iter()
            .find(|f| dir.join(f).is_file())
            .unwrap();
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        std::fs::remove_file(dir.join(name)).unwrap();
        serde_yaml::from_str(&text).unwrap()
    } else {
        let mut resources = Vec::new();
        plain_directory_resources(&dir, &dir, &mut resources);
        let mut kus = Map::new();
        kus.insert(
            "apiVersion".into(),
            json!("kustomize.config.k8s.io/v1beta1"),
        );
        kus.insert("kind".into(), json!("Kustomization"));
        kus.insert("resources".into(), json!(resources));
        kus
    };
    for (flux, kustomize) in [
        ("targetNamespace", "namespace"),
        ("namePrefix", "namePrefix"),
        ("nameSuffix", "nameSuffix"),
    ] {
        if let Some(v) = spec.get(flux) {
            kus.insert(kustomize.into(), v.clone());
        }
    }
    if let Some(Value::Array(components)) = spec.get("components") {
        let list = kus.entry("components").or_insert_with(|| json!([]));
        list.as_array_mut()
            .unwrap()
            .extend(components.iter().cloned());
    }
    std::fs::write(&file, serde_yaml::to_string(&kus).unwrap()).unwrap();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        spec["path"],
        String::from_utf8_lossy(&out.stderr)
    );
    let mut objects = yaml_documents(&String::from_utf8(out.stdout).unwrap());
    if let Some(common) = spec.get("commonMetadata") {
        for object in &mut objects {
            for field in ["labels", "annotations"] {
                for (k, v) in common[field].as_object().into_iter().flatten() {
                    object["metadata"][field][k] = v.clone();
                }
            }
        }
    }
    if spec.contains_key("postBuild") {
        let disabled = |o: &Value| {
            ["labels", "annotations"]
                .iter()
                .any(|f| o["metadata"][f][SUBSTITUTE_DISABLED] == "disabled")
        };
        let substituted: Vec<Value> = objects.iter().filter(|o| !disabled(o)).cloned().collect();
        let mut results = flux_substitute(&substituted, vars).into_iter();
        for object in objects.iter_mut().filter(|o| !disabled(o)) {
            *object = results
                .next()
                .unwrap()
                .unwrap_or_else(|e| panic!("Flux fails to substitute {object}: {e}"));
        }
    }
    objects
}

/// Flux's variables for `kustomization`: its `substituteFrom` ConfigMaps and Secrets, as the
/// cluster holds them, in order, then its inline `substitute` over them.
async fn flux_vars(ns: &TestNamespace, kustomization: &Value) -> BTreeMap<String, String> {
    let post = &kustomization["spec"]["postBuild"];
    let mut vars = BTreeMap::new();
    for source in post["substituteFrom"].as_array().into_iter().flatten() {
        assert!(
            source.get("optional").is_none(),
            "emulated: required sources only"
        );
        let name = source["name"].as_str().unwrap();
        match source["kind"].as_str() {
            Some("ConfigMap") => {
                let cm: ConfigMap = ns.api().get(name).await.unwrap();
                vars.extend(cm.data.unwrap_or_default());
            }
            Some("Secret") => {
                let secret: Secret = ns.api().get(name).await.unwrap();
                vars.extend(
                    secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8(v.0).unwrap())),
                );
            }
            other => panic!("substituteFrom kind {other:?}"),
        }
    }
    for (k, v) in post["substitute"].as_object().into_iter().flatten() {
        vars.insert(k.clone(), v.as_str().unwrap().to_owned());
    }
    vars
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The inventory id plumb gives `object`, `<namespace>_<name>_<group>_<kind>`.
fn object_id(object: &Value) -> String {
    format!(
        "{}_{}_{}_{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap(),
        group_of(object["apiVersion"].as_str().unwrap()),
        object["kind"].as_str().unwrap()
    )
}

/// A Secret's values as bytes, from `data` (base64) and `stringData` alike.
fn secret_values(object: &Value) -> BTreeMap<String, Vec<u8>> {
    let secret: Secret = serde_json::from_value(object.clone()).unwrap();
    let mut values: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        values.insert(k, v.into_bytes());
    }
    values
}

/// Every way `expected` is not part of `live`: a field missing or different (numbers and
/// strings are different), a list of another length.
fn differences(expected: &Value, live: &Value, at: &str, out: &mut Vec<String>) {
    match (expected, live) {
        (Value::Object(e), Value::Object(l)) => {
            for (k, v) in e {
                match l.get(k) {
                    Some(lv) => differences(v, lv, &format!("{at}.{k}"), out),
                    None => out.push(format!("{at}.{k}: missing, expected {v}")),
                }
            }
        }
        (Value::Array(e), Value::Array(l)) if e.len() == l.len() => {
            for (i, (ev, lv)) in e.iter().zip(l).enumerate() {
                differences(ev, lv, &format!("{at}[{i}]"), out);
            }
        }
        _ if expected == live => {}
        _ => out.push(format!("{at}: expected {expected}, found {live}")),
    }
}

/// The object the cluster holds for `expected`.
async fn live_object(client: &kube::Client, expected: &Value) -> Option<Value> {
    let api_version = expected["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, expected["kind"].as_str().unwrap());
    let (resource, caps) = pinned_kind(client, &gvk).await.unwrap();
    let api: Api<DynamicObject> = match (caps.scope, expected["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
        (Scope::Namespaced, None) => panic!("{} has no namespace", object_id(expected)),
        (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
    };
    let name = expected["metadata"]["name"].as_str().unwrap();
    let live = api.get_opt(name).await.unwrap()?;
    Some(serde_json::to_value(live).unwrap())
}

/// Waits until every Sync of `names` is Ready with `commit` applied.
async fn wait_ready(ns: &TestNamespace, controllers: &Controllers, names: &[String], commit: &str) {
    let syncs: Api<Sync> = ns.api();
    let result = wait_for(
        &format!("Syncs {names:?} Ready at {commit}"),
        READY_WITHIN,
        || {
            let syncs = syncs.clone();
            async move {
                for name in names {
                    let status = syncs.get(name).await?.status.unwrap_or_default();
                    if !ready_at(&status, commit) {
                        return Ok::<_, kube::Error>(None);
                    }
                }
                Ok(Some(()))
            }
        },
    )
    .await;
    if let Err(e) = result {
        let mut statuses = String::new();
        for name in names {
            let status = syncs.get(name).await.ok().and_then(|s| s.status);
            statuses.push_str(&format!("--- Sync {name}: {status:#?}\n"));
        }
        panic!("{e}\n{statuses}{}", controllers.logs_tail(60));
    }
}

/// What one cluster of the fleet must show, besides matching Flux's build.
struct Cluster {
    /// Its directory under `clusters/`.
    name: &'static str,
    /// The apps Kustomization's `namePrefix`.
    prefix: &'static str,
    /// The shop's replicas, from its cluster-vars.
    replicas: i64,
    /// The database password its SOPS Secret holds.
    db_password: &'static str,
    /// `${log_level:=info}`: its cluster-vars value or the default.
    log_level: &'static str,
    /// `${analytics_token:=disabled}`: from its cluster-secrets Secret, or the default.
    analytics_token: &'static str,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_staging_cluster_imported_with_plumb_import_applies_what_flux_would() {
    move_cluster(Cluster {
        name: "staging",
        prefix: "staging-",
        replicas: 2,
        db_password: "correct-horse-battery-staple",
        log_level: "debug",
        analytics_token: "disabled",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_production_cluster_imported_with_plumb_import_applies_what_flux_would() {
    move_cluster(Cluster {
        name: "production",
        prefix: "",
        replicas: 3,
        db_password: "tr0ub4dor-and-3-more",
        log_level: "info",
        analytics_token: "prod-analytics-7f3e9a41",
    })
    .await;
}

/// Whether the fleet file at `rel` belongs to `cluster` (its `clusters/`, `infrastructure/` or
/// `apps/` directory of that name).
fn of_cluster(rel: &Path, cluster: &str) -> bool {
    rel.components()
        .nth(1)
        .is_some_and(|c| c.as_os_str() == cluster)
}

/// Moves the fleet's cluster `c` to plumb and checks it against Flux's build.
async fn move_cluster(c: Cluster) {
    let cluster_dir = format!("clusters/{}", c.name);
    let cluster_dir = cluster_dir.as_str();
    let fleet = plumb_e2e_support::repo_root().join("examples/flux-fleet");
    let ns = TestNamespace::new(&format!("e2e-fleet-{}", &c.name[..4]))
        .await
        .unwrap();
    plumb_e2e_support::install_crds(ns.client()).await.unwrap();

    // The fleet's namespaces become test namespaces (unique, swept when a test process dies).
    let mut fleet_namespaces = Vec::new();
    let mut names = BTreeMap::from([("flux-system".to_owned(), ns.name().to_owned())]);
    for declared in declared_namespaces(&fleet) {
        let test_ns = TestNamespace::new(&format!("fleet-{}-{declared}", &c.name[..4]))
            .await
            .unwrap();
        names.insert(declared, test_ns.name().to_owned());
        fleet_namespaces.push(test_ns);
    }

    // The fleet as its repository holds it: Secrets encrypted with sops for a new age key.
    let tools = SopsTools::get().unwrap();
    let key = tools.age_keygen().unwrap();
    let git = GitFixture::new().await.unwrap();
    git.copy_dir(&fleet, ".").unwrap();
    let mut encrypted_files = Vec::new();
    for file in files_under(&git.work()).unwrap() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let text = rename_namespaces(&text, &names).replace(FLEET_URL, &git.url());
        let bytes = if is_sops(&file) {
            let name = file.file_name().unwrap().to_string_lossy();
            if of_cluster(file.strip_prefix(git.work()).unwrap(), c.name) {
                encrypted_files.push(file.clone());
            }
            tools
                .encrypt(
                    text.as_bytes(),
                    &name,
                    &[&key.recipient],
                    &["--encrypted-regex", "^(data|stringData)$"],
                )
                .unwrap()
        } else {
            text.into_bytes()
        };
        std::fs::write(&file, bytes).unwrap();
    }
    assert!(
        !encrypted_files.is_empty(),
        "the cluster has no *.sops.yaml or *.sops.json"
    );
    git.commit("the Flux fleet").unwrap();

    // plumb import, then the move as a user commits it: the plumb objects replace Flux's.
    let kustomizations = flux_kustomizations(&git.work().join(cluster_dir));
    let (mut imported, warnings) = plumb_import(&git.work(), cluster_dir);
    assert_eq!(
        warnings,
        Vec::<String>::new(),
        "every field is carried over"
    );
    assert_eq!(
        imported.len(),
        kustomizations.len() + 1,
        "a GitRepository and a Sync per Kustomization: {imported:#?}"
    );
    for object in &mut imported {
        if object["kind"] == "Sync" {
            // The test's render controller renders only the Syncs of its scope.
            object["metadata"]["labels"][SCOPE_LABEL] = json!(ns.name());
        }
    }
    let plumb_yaml: String = imported
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap()))
        .collect();
    std::fs::remove_dir_all(git.work().join(cluster_dir).join("flux-system")).unwrap();
    for k in &kustomizations {
        let file = git
            .work()
            .join(cluster_dir)
            .join(format!("{}.yaml", k["metadata"]["name"].as_str().unwrap()));
        if file.exists() {
            std::fs::remove_file(file).unwrap();
        }
    }
    git.write(&format!("{cluster_dir}/plumb.yaml"), &plumb_yaml)
        .unwrap();
    let moved = git.commit("move from Flux to plumb").unwrap();
    let leftover = flux_kustomizations(&git.work().join(cluster_dir));
    assert!(leftover.is_empty(), "Flux objects left: {leftover:#?}");

    // The age key, then the imported objects, applied as the README says.
    let secrets: Api<Secret> = ns.api();
    let keys: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sops-age"},
        "stringData": {"age.agekey": key.identity},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &keys).await.unwrap();
    let controllers = Controllers::start(ns.name()).unwrap();
    ns.apply_yaml(&plumb_yaml, "plumb-e2e").await.unwrap();
    let sync_names: Vec<String> = kustomizations
        .iter()
        .map(|k| k["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    wait_ready(&ns, &controllers, &sync_names, &moved).await;

    // What Flux makes of the same tree: files decrypted by sops itself.
    let tree = tempfile::tempdir().unwrap();
    copy_tree(&git.work(), tree.path()).unwrap();
    for file in &encrypted_files {
        let rel = file.strip_prefix(git.work()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        let encrypted = std::fs::read(file).unwrap();
        let plain = tools.decrypt(&encrypted, &name, &key.identity).unwrap();
        std::fs::write(tree.path().join(rel), plain).unwrap();
    }
    let syncs: Api<Sync> = ns.api();
    let mut problems = Vec::new();
    let mut checked_secrets = 0;
    for k in &kustomizations {
        let name = k["metadata"]["name"].as_str().unwrap();
        let vars = flux_vars(&ns, k).await;
        let expected = flux_build(tree.path(), k, &vars);
        let inventory: BTreeSet<String> = syncs
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
            .inventory
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.id)
            .collect();
        let expected_ids: BTreeSet<String> = expected.iter().map(object_id).collect();
        if inventory != expected_ids {
            problems.push(format!(
                "Sync {name}: inventory {inventory:?}, Flux applies {expected_ids:?}"
            ));
        }
        for object in &expected {
            let id = object_id(object);
            let Some(live) = live_object(ns.client(), object).await else {
                problems.push(format!("{id}: not in the cluster"));
                continue;
            };
            let mut object = object.clone();
            let mut live = live;
            if object["kind"] == "Secret" {
                let (want, got) = (secret_values(&object), secret_values(&live));
                if want != got {
                    problems.push(format!("{id}: its values differ from Flux's"));
                }
                checked_secrets += 1;
                for o in [&mut object, &mut live] {
                    let map = o.as_object_mut().unwrap();
                    map.remove("data");
                    map.remove("stringData");
                }
            }
            let mut diffs = Vec::new();
            differences(&object, &live, "", &mut diffs);
            problems.extend(diffs.into_iter().map(|d| format!("{id}: {d}")));
        }
    }
    assert!(
        problems.is_empty(),
        "the cluster differs from Flux's build:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        checked_secrets,
        encrypted_files.len(),
        "every encrypted Secret"
    );

    // Spot checks that tie the comparison to the cluster's files.
    let shop_ns = &names["storefront"];
    let db: Secret = Api::namespaced(ns.client().clone(), shop_ns)
        .get(&format!("{}db-credentials", c.prefix))
        .await
        .unwrap();
    assert_eq!(db.data.unwrap()["password"].0, c.db_password.as_bytes());
    // The SOPS-encrypted JSON manifest, decrypted the same way.
    let payment: Secret = Api::namespaced(ns.client().clone(), shop_ns)
        .get(&format!("{}payment-api", c.prefix))
        .await
        .unwrap();
    assert_eq!(
        payment.data.unwrap()["webhook-secret"].0,
        format!("whsec-{}-only", c.name).as_bytes()
    );
    let shop = live_object(
        ns.client(),
        &json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("{}shop", c.prefix), "namespace": shop_ns}}),
    )
    .await
    .unwrap();
    assert_eq!(
        shop["spec"]["replicas"],
        json!(c.replicas),
        "a number, as in Flux"
    );
    assert_eq!(
        shop["metadata"]["labels"]["example.com/cluster"], c.name,
        "commonMetadata"
    );
    let env: BTreeMap<&str, &str> = shop["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(env["LOG_LEVEL"], c.log_level);
    assert_eq!(env["ANALYTICS_TOKEN"], c.analytics_token);
    // A value from a substituteFrom Secret is applied, never stored in a rendered artifact.
    if c.analytics_token != "disabled" {
        let storage = controllers.storage_dir(Controller::Render);
        for file in files_under(&storage).unwrap() {
            let bytes = std::fs::read(&file).unwrap();
            let mut text = Vec::new();
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_end(&mut text)
                .unwrap_or_else(|_| {
                    text = bytes.clone();
                    0
                });
            assert!(
                !String::from_utf8_lossy(&text).contains(c.analytics_token),
                "{} holds the Secret's value",
                file.display()
            );
        }
    }
    drop(controllers);
    drop(fleet_namespaces);
}
