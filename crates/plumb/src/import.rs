//! `plumb import`: Flux `GitRepository` and `Kustomization` objects (from files or the cluster)
//! written as the equivalent plumb `GitRepository` and `Sync` objects, with a warning for every
//! field plumb does not have; `--suspend-flux` suspends the Flux objects it replaced.
//!
//! The conversion is a pure function over the objects ([`convert`]); every spec field is either
//! carried over or named in a warning, so nothing is dropped silently.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Map, Value, json};

use crate::kube_args::Target;

/// Flags of `plumb import`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files or directories (read recursively) holding Flux objects; other objects are ignored.
    pub paths: Vec<PathBuf>,
    /// Read the Flux objects from the cluster instead (the namespace of `-n`, or all with `-A`).
    #[arg(long)]
    pub from_cluster: bool,
    /// With --from-cluster: every namespace.
    #[arg(long, short = 'A', requires = "from_cluster")]
    pub all_namespaces: bool,
    /// Suspend (`spec.suspend: true`, annotated `plumb.dev/suspended-by`) each Flux object that
    /// was imported (with --from-cluster); one suspended already is left as it is.
    #[arg(long, requires = "from_cluster")]
    pub suspend_flux: bool,
    /// Write the plumb objects here instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

const FLUX_SOURCE_GROUP: &str = "source.toolkit.fluxcd.io";
const FLUX_KUSTOMIZE_GROUP: &str = "kustomize.toolkit.fluxcd.io";

/// The prefix of the labels by which Flux's kustomize-controller marks the objects it applied
/// (`kustomize.toolkit.fluxcd.io/name`, `/namespace`); not carried over.
const FLUX_OWNER_LABEL_PREFIX: &str = "kustomize.toolkit.fluxcd.io/";

/// The annotation `--suspend-flux` sets on each Flux object it suspends. An object that carries
/// it is imported again without its `spec.suspend` (the suspension was the move's, not the
/// user's), so a second import after the move gives the same plumb objects as the first.
pub const SUSPENDED_BY_ANNOTATION: &str = "plumb.dev/suspended-by";

/// The value of [`SUSPENDED_BY_ANNOTATION`].
const SUSPENDED_BY: &str = "plumb import";

/// What an import produced: the plumb objects, the warnings, and the Flux objects replaced
/// (kind, namespace, name).
#[derive(Debug, Default)]
pub struct Imported {
    /// The plumb objects, in input order.
    pub objects: Vec<Value>,
    /// One line per field or object plumb cannot carry over.
    pub warnings: Vec<String>,
    /// The Flux objects that were converted.
    pub replaced: Vec<(String, String, String)>,
}

/// Converts every Flux GitRepository and Kustomization among `objects`; other objects are
/// skipped. `default_namespace` is the namespace of objects that name none.
pub fn convert(objects: &[Value], default_namespace: &str) -> Imported {
    let mut out = Imported::default();
    for obj in objects {
        let api_version = obj["apiVersion"].as_str().unwrap_or_default();
        let group = api_version.split('/').next().unwrap_or_default();
        let kind = obj["kind"].as_str().unwrap_or_default();
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or(default_namespace);
        let what = format!("{kind} {namespace}/{name}");
        let flux_kind = matches!(
            (group, kind),
            (FLUX_SOURCE_GROUP, "GitRepository") | (FLUX_KUSTOMIZE_GROUP, "Kustomization")
        );
        if !flux_kind {
            continue;
        }
        let obj = &without_import_suspension(obj);
        let converted = if kind == "GitRepository" {
            git_repository(obj, &what, &mut out.warnings)
        } else {
            kustomization(obj, namespace, &what, &mut out.warnings)
        };
        match converted {
            Ok(spec) => {
                let (api_version, plumb_kind) = if kind == "GitRepository" {
                    ("source.plumb.dev/v1", "GitRepository")
                } else {
                    ("sync.plumb.dev/v1", "Sync")
                };
                let mut metadata = json!({"name": name, "namespace": namespace});
                // The labels, but Flux's ownership labels (the Flux Kustomization that applied
                // this object, e.g. `flux-system`): they would claim the plumb object for it.
                let labels: Map<String, Value> = obj["metadata"]["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !k.starts_with(FLUX_OWNER_LABEL_PREFIX))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !labels.is_empty() {
                    metadata["labels"] = Value::Object(labels);
                }
                out.objects.push(json!({
                    "apiVersion": api_version, "kind": plumb_kind,
                    "metadata": metadata, "spec": spec,
                }));
                out.replaced
                    .push((kind.to_owned(), namespace.to_owned(), name.to_owned()));
            }
            Err(why) => out.warnings.push(format!("{what}: not imported: {why}")),
        }
    }
    out
}

/// `obj` without the `spec.suspend: true` that an earlier `--suspend-flux` set (it carries
/// [`SUSPENDED_BY_ANNOTATION`]): the plumb object takes over, it is not suspended.
fn without_import_suspension(obj: &Value) -> std::borrow::Cow<'_, Value> {
    let by_import = obj["metadata"]["annotations"][SUSPENDED_BY_ANNOTATION] == SUSPENDED_BY;
    if !by_import || obj["spec"].get("suspend").is_none() {
        return std::borrow::Cow::Borrowed(obj);
    }
    let mut obj = obj.clone();
    if let Some(spec) = obj["spec"].as_object_mut() {
        spec.remove("suspend");
    }
    std::borrow::Cow::Owned(obj)
}

/// Takes `key` out of `spec` into `to[as_key]` when present.
fn carry(spec: &mut Map<String, Value>, to: &mut Map<String, Value>, key: &str, as_key: &str) {
    if let Some(v) = spec.remove(key) {
        to.insert(as_key.to_owned(), v);
    }
}

/// A warning for every field left in `spec` (the ones not carried over).
fn warn_rest(spec: &Map<String, Value>, prefix: &str, what: &str, warnings: &mut Vec<String>) {
    for key in spec.keys() {
        warnings.push(format!(
            "{what}: {prefix}{key} has no plumb equivalent; left out"
        ));
    }
}

fn git_repository(obj: &Value, what: &str, warnings: &mut Vec<String>) -> Result<Value, String> {
    let mut spec = obj["spec"].as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    for key in ["url", "interval", "timeout", "ignore", "suspend"] {
        carry(&mut spec, &mut out, key, key);
    }
    if let Some(Value::Object(mut r)) = spec.remove("ref") {
        let mut plumb_ref = Map::new();
        for key in ["branch", "tag", "semver", "commit", "name"] {
            carry(&mut r, &mut plumb_ref, key, key);
        }
        warn_rest(&r, "spec.ref.", what, warnings);
        out.insert("ref".into(), Value::Object(plumb_ref));
    }
    if let Some(Value::Object(mut s)) = spec.remove("secretRef") {
        let mut plumb_ref = Map::new();
        carry(&mut s, &mut plumb_ref, "name", "name");
        out.insert("secretRef".into(), Value::Object(plumb_ref));
    }
    warn_rest(&spec, "spec.", what, warnings);
    let url = out.get("url").and_then(Value::as_str).unwrap_or_default();
    if url.is_empty() {
        return Err("spec.url is missing".into());
    }
    // Check the result against plumb's own type (durations, ref shape).
    let spec = Value::Object(out);
    serde_json::from_value::<plumb_api::GitRepositorySpec>(spec.clone())
        .map_err(|e| format!("not a valid plumb GitRepository spec: {e}"))?;
    Ok(spec)
}

fn kustomization(
    obj: &Value,
    namespace: &str,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    let mut spec = obj["spec"].as_object().cloned().unwrap_or_default();
    let mut out = Map::new();
    let Some(Value::Object(mut source)) = spec.remove("sourceRef") else {
        return Err("spec.sourceRef is missing".into());
    };
    let kind = source
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "GitRepository" {
        let article = if kind.starts_with(['A', 'E', 'I', 'O', 'U']) {
            "an"
        } else {
            "a"
        };
        return Err(format!(
            "its source is {article} {kind}; plumb syncs from GitRepositories only"
        ));
    }
    source.remove("apiVersion");
    if source.get("namespace").and_then(Value::as_str) == Some(namespace) {
        source.remove("namespace");
    }
    out.insert("sourceRef".into(), Value::Object(source));
    for key in [
        "path",
        "interval",
        "retryInterval",
        "timeout",
        "prune",
        "wait",
        "targetNamespace",
        "suspend",
        "serviceAccountName",
        "force",
        "images",
        "patches",
        "deletionPolicy",
        "namePrefix",
        "nameSuffix",
        "commonMetadata",
        "components",
        "ignoreMissingComponents",
        "healthChecks",
        "healthCheckExprs",
    ] {
        carry(&mut spec, &mut out, key, key);
    }
    // Flux requires `prune`; plumb defaults it to true, so a Kustomization without it is
    // written with Flux's meaning of absent (false).
    out.entry("prune").or_insert(json!(false));
    if let Some(Value::Array(deps)) = spec.remove("dependsOn") {
        let mut plumb_deps = Vec::new();
        for d in deps {
            let mut d = d.as_object().cloned().unwrap_or_default();
            let mut dep = Map::new();
            carry(&mut d, &mut dep, "name", "name");
            carry(&mut d, &mut dep, "namespace", "namespace");
            carry(&mut d, &mut dep, "readyExpr", "readyExpr");
            warn_rest(&d, "spec.dependsOn[].", what, warnings);
            plumb_deps.push(Value::Object(dep));
        }
        out.insert("dependsOn".into(), Value::Array(plumb_deps));
    }
    if let Some(Value::Object(mut post)) = spec.remove("postBuild") {
        carry(&mut post, &mut out, "substitute", "substitute");
        carry(&mut post, &mut out, "substituteFrom", "substituteFrom");
        carry(
            &mut post,
            &mut out,
            "substituteStrategy",
            "substituteStrategy",
        );
        warn_rest(&post, "spec.postBuild.", what, warnings);
    }
    if let Some(Value::Object(mut dec)) = spec.remove("decryption") {
        // SOPS decryption is carried over as is: `provider` and `secretRef`.
        let mut plumb_dec = Map::new();
        carry(&mut dec, &mut plumb_dec, "provider", "provider");
        carry(&mut dec, &mut plumb_dec, "secretRef", "secretRef");
        warn_rest(&dec, "spec.decryption.", what, warnings);
        out.insert("decryption".into(), Value::Object(plumb_dec));
    }
    warn_rest(&spec, "spec.", what, warnings);
    let spec = Value::Object(out);
    let parsed = serde_json::from_value::<plumb_api::SyncSpec>(spec.clone())
        .map_err(|e| format!("not a valid plumb Sync spec: {e}"))?;
    // A field plumb's Sync does not know (on this version) is named, not silently dropped.
    let known = serde_json::to_value(&parsed).unwrap_or_default();
    let mut spec = spec;
    if let (Some(given), Some(known)) = (spec.as_object_mut(), known.as_object()) {
        let unknown: Vec<String> = given
            .keys()
            .filter(|k| !known.contains_key(*k) && !is_default_value(&given[*k]))
            .cloned()
            .collect();
        for key in unknown {
            given.remove(&key);
            warnings.push(format!(
                "{what}: spec.{key} has no plumb equivalent; left out"
            ));
        }
    }
    Ok(spec)
}

/// Values that a plumb type leaves out when serialized because they are its default.
fn is_default_value(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// Every YAML document of the files under `paths` (directories are read recursively, in name
/// order, `.yaml`/`.yml` files only).
fn read_files(paths: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).with_context(|| f.display().to_string())?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc)
                .with_context(|| format!("{}: not valid YAML", f.display()))?;
            if value.is_object() {
                out.push(value);
            }
        }
    }
    Ok(out)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| path.display().to_string())?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            if e.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
            {
                continue;
            }
            collect(&e, out)?;
        }
    } else if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml")
    {
        out.push(path.to_path_buf());
    } else if !path.exists() {
        anyhow::bail!("{}: no such file or directory", path.display());
    }
    Ok(())
}

fn flux_resource(kind: &str) -> ApiResource {
    let (group, plural) = if kind == "GitRepository" {
        (FLUX_SOURCE_GROUP, "gitrepositories")
    } else {
        (FLUX_KUSTOMIZE_GROUP, "kustomizations")
    };
    ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk(group, "v1", kind), plural)
}

fn flux_api(client: &kube::Client, namespace: Option<&str>, kind: &str) -> Api<DynamicObject> {
    let ar = flux_resource(kind);
    match namespace {
        None => Api::all_with(client.clone(), &ar),
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
    }
}

/// Runs `plumb import`.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let client = if args.from_cluster {
        Some(args.target.connect().await?)
    } else {
        None
    };
    let (objects, default_ns) = match &client {
        Some((client, namespace)) => {
            let scope = (!args.all_namespaces).then_some(namespace.as_str());
            let mut objects = Vec::new();
            for kind in ["GitRepository", "Kustomization"] {
                let where_ = scope.map_or("in any namespace".to_owned(), |ns| {
                    format!("in namespace {ns}")
                });
                let list = match flux_api(client, scope, kind)
                    .list(&ListParams::default())
                    .await
                {
                    Ok(list) => list,
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        let ar = flux_resource(kind);
                        anyhow::bail!(
                            "the cluster does not serve Flux's {kind} kind ({}, resource {}): is Flux installed there?",
                            ar.api_version,
                            ar.plural
                        );
                    }
                    Err(e) => {
                        return Err(e).context(format!("listing Flux {kind} objects {where_}"));
                    }
                };
                for mut o in list.items {
                    let ar = flux_resource(kind);
                    o.types = Some(kube::api::TypeMeta {
                        api_version: ar.api_version,
                        kind: ar.kind,
                    });
                    o.metadata.managed_fields = None;
                    objects.push(serde_json::to_value(&o)?);
                }
            }
            (objects, namespace.clone())
        }
        None => {
            if args.paths.is_empty() {
                anyhow::bail!("name files or directories with Flux objects, or --from-cluster");
            }
            (read_files(&args.paths)?, "default".to_owned())
        }
    };
    let imported = convert(&objects, &default_ns);
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    let mut text = String::new();
    for o in &imported.objects {
        text.push_str("---\n");
        text.push_str(&serde_yaml::to_string(o)?);
    }
    match &args.output {
        Some(p) => std::fs::write(p, &text).with_context(|| p.display().to_string())?,
        None => std::io::stdout().lock().write_all(text.as_bytes())?,
    }
    eprintln!(
        "imported {} object(s), {} warning(s)",
        imported.objects.len(),
        imported.warnings.len()
    );
    if let (true, Some((client, _))) = (args.suspend_flux, &client) {
        for (kind, ns, name) in &imported.replaced {
            let flux = objects.iter().find(|o| {
                o["kind"] == kind.as_str()
                    && o["metadata"]["namespace"] == ns.as_str()
                    && o["metadata"]["name"] == name.as_str()
            });
            if flux.is_some_and(|o| o["spec"]["suspend"] == true) {
                eprintln!("Flux {kind} {ns}/{name} is suspended already; left as it is");
                continue;
            }
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &flux_resource(kind));
            let patch = json!({
                "metadata": {"annotations": {SUSPENDED_BY_ANNOTATION: SUSPENDED_BY}},
                "spec": {"suspend": true},
            });
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("suspending Flux {kind} {ns}/{name}"))?;
            eprintln!("suspended Flux {kind} {ns}/{name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flux(text: &str) -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    }

    #[test]
    fn git_repositories_carry_url_ref_secret_and_name_the_rest() {
        let out = convert(
            &flux(
                "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: fleet, namespace: flux-system}\nspec:\n  url: https://git.example.com/fleet.git\n  interval: 1m0s\n  ref: {branch: main}\n  secretRef: {name: creds}\n  recurseSubmodules: true\n  verify: {mode: HEAD, secretRef: {name: pgp}}\n",
            ),
            "default",
        );
        assert_eq!(out.objects.len(), 1);
        let repo = &out.objects[0];
        assert_eq!(repo["apiVersion"], "source.plumb.dev/v1");
        assert_eq!(repo["metadata"]["namespace"], "flux-system");
        assert_eq!(repo["spec"]["ref"], json!({"branch": "main"}));
        assert_eq!(repo["spec"]["secretRef"], json!({"name": "creds"}));
        assert_eq!(repo["spec"]["interval"], "1m0s");
        assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
        assert!(
            out.warnings
                .iter()
                .any(|w| w.contains("GitRepository flux-system/fleet")
                    && w.contains("spec.recurseSubmodules"))
        );
    }

    #[test]
    fn kustomizations_become_syncs_with_every_supported_field() {
        let out = convert(
            &flux(
                r#"apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
  labels: {team: web, kustomize.toolkit.fluxcd.io/name: flux-system, kustomize.toolkit.fluxcd.io/namespace: flux-system}
spec:
  interval: 10m
  sourceRef: {kind: GitRepository, name: fleet, namespace: flux-system}
  path: ./apps/prod
  prune: true
  wait: true
  dependsOn:
  - name: infra
  - name: backend
    readyExpr: "dep.metadata.labels['app/version'] == self.metadata.labels['app/version']"
  targetNamespace: apps
  namePrefix: prod-
  commonMetadata: {labels: {team: web}}
  components: [../components/tls]
  healthChecks:
  - {apiVersion: apps/v1, kind: Deployment, name: ingress-nginx-controller, namespace: ingress-nginx}
  healthCheckExprs:
  - apiVersion: cert-manager.io/v1
    kind: Certificate
    current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')"
    failed: "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')"
  postBuild:
    substitute: {cluster: prod}
    substituteFrom: [{kind: ConfigMap, name: cluster-vars}]
  kubeConfig: {secretRef: {name: remote}}
"#,
            ),
            "default",
        );
        let sync = &out.objects[0];
        assert_eq!(sync["kind"], "Sync");
        assert_eq!(
            sync["metadata"]["labels"],
            json!({"team": "web"}),
            "Flux's ownership labels are not carried over"
        );
        let spec: plumb_api::SyncSpec = serde_json::from_value(sync["spec"].clone()).unwrap();
        assert_eq!(spec.path, "./apps/prod");
        assert!(spec.prune && spec.wait);
        assert_eq!(spec.source_ref.name, "fleet");
        assert_eq!(spec.source_ref.namespace, None, "same namespace");
        assert_eq!(spec.depends_on[0].name, "infra");
        assert_eq!(spec.depends_on[0].ready_expr, None);
        assert_eq!(
            spec.depends_on[1].ready_expr.as_deref(),
            Some("dep.metadata.labels['app/version'] == self.metadata.labels['app/version']")
        );
        assert_eq!(spec.name_prefix.as_deref(), Some("prod-"));
        assert_eq!(spec.substitute["cluster"], "prod");
        assert_eq!(spec.substitute_from[0].name, "cluster-vars");
        assert_eq!(spec.components, ["../components/tls"]);
        assert_eq!(spec.health_checks[0].name, "ingress-nginx-controller");
        assert_eq!(
            spec.health_checks[0].namespace.as_deref(),
            Some("ingress-nginx")
        );
        assert_eq!(spec.health_check_exprs[0].kind, "Certificate");
        assert!(spec.health_check_exprs[0].failed.is_some());
        assert_eq!(spec.health_check_exprs[0].in_progress, None);
        assert_eq!(
            out.warnings,
            ["Kustomization flux-system/apps: spec.kubeConfig has no plumb equivalent; left out"]
        );
        assert_eq!(out.replaced.len(), 1);
    }

    #[test]
    fn other_sources_and_objects_are_not_imported() {
        let out = convert(
            &flux(
                "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: oci}\nspec: {sourceRef: {kind: OCIRepository, name: x}, prune: true, interval: 1m}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            ),
            "team",
        );
        assert!(out.objects.is_empty());
        assert_eq!(out.warnings.len(), 1);
        assert!(
            out.warnings[0].contains("Kustomization team/oci: not imported")
                && out.warnings[0].contains("OCIRepository"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn a_suspension_by_an_earlier_import_is_not_carried_over_and_the_users_own_is() {
        let text = |annotations: &str| {
            format!(
                "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {{name: a, namespace: n, annotations: {{{annotations}}}}}\nspec: {{sourceRef: {{kind: GitRepository, name: r}}, interval: 5m, prune: true, suspend: true}}\n---\napiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {{name: r, namespace: n, annotations: {{{annotations}}}}}\nspec: {{url: https://git.example.com/r.git, interval: 1m, suspend: true}}\n"
            )
        };
        let by_import = convert(&flux(&text("plumb.dev/suspended-by: plumb import")), "n");
        assert_eq!(by_import.objects.len(), 2);
        for o in &by_import.objects {
            assert_eq!(o["spec"].get("suspend"), None, "{o}");
        }
        let by_user = convert(&flux(&text("team: web")), "n");
        for o in &by_user.objects {
            assert_eq!(o["spec"]["suspend"], true, "{o}");
        }
        assert!(by_import.warnings.is_empty() && by_user.warnings.is_empty());
    }

    #[test]
    fn a_kustomization_without_prune_keeps_flux_meaning() {
        let out = convert(
            &flux(
                "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: a, namespace: n}\nspec: {sourceRef: {kind: GitRepository, name: r}, interval: 5m}\n",
            ),
            "default",
        );
        assert_eq!(out.objects[0]["spec"]["prune"], false);
    }
}
