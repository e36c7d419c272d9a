//! `plumb diff sync NAME --path DIR`: what applying a local checkout would change in the cluster,
//! as the pull-request preview. Renders DIR with the Sync's render settings, asks the API server
//! for a server-side dry-run apply of every object under plumb's field manager, and prints a
//! unified diff of each changed object, the objects that would be created, and the ones that
//! would be pruned. Exit code 1 when anything would change. A chart renders as the render
//! controller renders it (release, namespace, `valuesFrom`, the cluster's capabilities); its
//! hooks are not compared. `substituteFrom` is read from the cluster and substituted, as the
//! render controller does, for charts and kustomizations alike. Values never show: a Secret's
//! `data` and `stringData` are masked as `kubectl diff` masks them, and so is every field of any
//! other object that holds a value its substitution took from a `substituteFrom` Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use plumb_api::reference::DataKind;
use plumb_api::{ObjectId, Sync};
use plumb_substitute::deferred::{self, VariableSource};
use plumb_sync::view::SecretValues;
use serde_json::Value;
use similar::TextDiff;

use crate::kube_args::Target;

/// Flags of `plumb diff`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The kind of object to diff; only `sync` is supported.
    #[arg(value_parser = ["sync"])]
    pub kind: String,
    /// The Sync's name.
    pub name: String,
    /// The local directory to render in place of the Sync's `spec.path` (in a checkout of its
    /// repository).
    #[arg(long)]
    pub path: PathBuf,
    #[command(flatten)]
    pub target: Target,
}

/// What the diff found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Objects that would be created.
    pub created: usize,
    /// Objects that would change.
    pub changed: usize,
    /// Objects that would be pruned.
    pub pruned: usize,
}

impl Summary {
    fn any(&self) -> bool {
        self.created + self.changed + self.pruned > 0
    }
}

/// Runs the diff; `Ok(true)` when something would change.
pub async fn run(args: &Args) -> anyhow::Result<bool> {
    let (client, ns) = args.target.connect().await?;
    let sync = Api::<Sync>::namespaced(client.clone(), &ns)
        .get(&args.name)
        .await?;
    let chart = chart_options(&client, &sync, &args.path).await?;
    // `substituteFrom` is read from the Sync's namespace, as the render controller reads it.
    let sources =
        plumb_render::load_variable_sources(&client, &ns, &sync.spec.substitute_from).await?;
    let published = render_local(&args.path, &sync, chart, &sources)?;
    let mut used = secret_values_used(published.deferred, &sources);
    let mut summary = Summary::default();
    let mut hooks = 0;
    let mut rendered_ids = BTreeSet::new();
    let default_ns = sync
        .spec
        .target_namespace
        .clone()
        .unwrap_or_else(|| ns.clone());
    for (i, mut obj) in published.objects.into_iter().enumerate() {
        let secret_values = used.remove(&i).unwrap_or_default();
        // Hooks are not applied with the rest: they run, and go, when a revision is applied.
        if plumb_helm::hooks::is_hook(&obj) {
            hooks += 1;
            continue;
        }
        label(&mut obj, &args.name, &ns);
        let (resource, caps) = resolve(&client, &obj).await?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        // Where the sync controller applies it: its own namespace, else the Sync's
        // targetNamespace, else the Sync's namespace; cluster-scoped objects have none.
        let namespace = match caps.scope {
            Scope::Namespaced => Some(
                obj.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| default_ns.clone()),
            ),
            Scope::Cluster => None,
        };
        let api: Api<DynamicObject> = match &namespace {
            Some(n) => Api::namespaced_with(client.clone(), n, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let id = ObjectId::new(
            namespace.as_deref().unwrap_or_default(),
            &name,
            &resource.group,
            &resource.kind,
        );
        rendered_ids.insert(id.to_string());
        let title = format!(
            "{}/{} {}",
            resource.kind,
            name,
            namespace.as_deref().unwrap_or("")
        );
        let live = api.get_opt(&name).await?;
        let pp = PatchParams::apply(plumb_api::SYNC_FIELD_MANAGER)
            .force()
            .dry_run();
        let planned = api.patch(&name, &pp, &Patch::Apply(&obj)).await?;
        match live {
            None => {
                summary.created += 1;
                println!("+ {title} would be created");
            }
            Some(live) => {
                let mut before = comparable(&serde_json::to_value(&live)?);
                let mut after = comparable(&serde_json::to_value(&planned)?);
                if resource.group.is_empty() && resource.kind == "Secret" {
                    mask_secret(&mut before, &mut after);
                }
                mask_secret_values(&mut before, &mut after, &secret_values);
                if before != after {
                    summary.changed += 1;
                    print_diff(&title, &before, &after)?;
                }
            }
        }
    }
    if sync.spec.prune {
        let inventory = sync.status.and_then(|s| s.inventory).unwrap_or_default();
        for entry in inventory.iter().filter(|e| !rendered_ids.contains(&e.id)) {
            summary.pruned += 1;
            match entry.object_id() {
                Ok(id) => println!("- {}/{} {} would be pruned", id.kind, id.name, id.namespace),
                Err(_) => println!("- {} would be pruned", entry.id),
            }
        }
    }
    if hooks > 0 {
        println!("{hooks} Helm hook(s) not compared: they run when the revision is applied");
    }
    println!(
        "{} to create, {} to change, {} to prune",
        summary.created, summary.changed, summary.pruned
    );
    Ok(summary.any())
}

/// What rendering `dir` as `sync`'s chart reads from the cluster, as the render controller
/// reads it (the `valuesFrom` documents in the Sync's namespace, the cluster's capabilities);
/// the defaults when `dir` is not a chart.
async fn chart_options(
    client: &kube::Client,
    sync: &Sync,
    dir: &Path,
) -> anyhow::Result<plumb_render::ChartOptions> {
    if !plumb_helm::is_chart(dir) {
        return Ok(plumb_render::ChartOptions::default());
    }
    let ns = sync.metadata.namespace.clone().unwrap_or_default();
    let refs = sync
        .spec
        .helm
        .as_ref()
        .map(|h| h.values_from.as_slice())
        .unwrap_or_default();
    let values_from = plumb_render::read_values_from(client, &ns, refs).await?;
    let capabilities = plumb_render::discover_capabilities(client)
        .await
        .map_err(|e| {
            anyhow::anyhow!("discovering the cluster's API versions for the chart: {e}")
        })?;
    let inputs = plumb_render::ChartInputs {
        values_from,
        capabilities,
    };
    Ok(plumb_render::ChartOptions::for_sync(sync, inputs))
}

/// Renders `dir` with the Sync's render settings (path replaced), from a scratch copy of its
/// checkout so nothing is written to the user's tree; with, as the render controller has it,
/// which objects took values from `substituteFrom` Secrets.
fn render_local(
    dir: &Path,
    sync: &Sync,
    chart: plumb_render::ChartOptions,
    sources: &[VariableSource],
) -> anyhow::Result<plumb_render::Published> {
    let dir = dir
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("--path {}: {e}", dir.display()))?;
    let root = checkout_root(&dir);
    let rel = dir.strip_prefix(&root).unwrap_or(Path::new(""));
    let scratch = tempfile::tempdir()?;
    copy_tree(&root, scratch.path())?;
    let mut spec = sync.spec.clone();
    spec.path = format!("./{}", rel.display());
    let opts = plumb_render::RenderOptions {
        chart,
        ..plumb_render::RenderOptions::default()
    };
    plumb_render::render_published(scratch.path(), &spec, sources, &opts)
        .map_err(|e| anyhow::anyhow!("rendering {}: {e}", dir.display()))
}

/// The values each object's substitution took from `substituteFrom` Secrets, by the object's
/// position: read from the render's deferral records, which name each secret variable an object
/// uses and its Secret. An unreadable record (not one this render wrote) masks every value of
/// every Secret in that object.
fn secret_values_used(
    deferred: Vec<(usize, Value)>,
    sources: &[VariableSource],
) -> BTreeMap<usize, SecretValues> {
    let secrets: Vec<&VariableSource> = sources
        .iter()
        .filter(|s| s.kind == DataKind::Secret)
        .collect();
    let mut out = BTreeMap::new();
    for (i, mut object) in deferred {
        let values: &mut SecretValues = out.entry(i).or_default();
        match deferred::take(&mut object) {
            Some(Ok(record)) => {
                for (var, version) in &record.secrets {
                    let value = secrets
                        .iter()
                        .find(|s| s.name == version.name)
                        .and_then(|s| s.data.get(var));
                    if let Some(value) = value {
                        values.add(value);
                    }
                }
            }
            _ => {
                for value in secrets.iter().flat_map(|s| s.data.values()) {
                    values.add(value);
                }
            }
        }
    }
    out
}

/// The top of the git checkout holding `dir`, or `dir` itself outside one.
fn checkout_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_name() == ".git" {
            continue;
        }
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Adds the owner labels the sync controller puts on every object.
fn label(obj: &mut Value, name: &str, namespace: &str) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(plumb_api::SYNC_NAME_LABEL.into(), name.into());
            labels.insert(plumb_api::SYNC_NAMESPACE_LABEL.into(), namespace.into());
        }
    }
}

async fn resolve(
    client: &kube::Client,
    obj: &Value,
) -> anyhow::Result<(ApiResource, ApiCapabilities)> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| anyhow::anyhow!("{api_version} {kind}: not served by the cluster: {e}"))
}

/// The object without what changes on every write or is not the user's: status, server
/// bookkeeping in metadata.
fn comparable(obj: &Value) -> Value {
    let mut obj = obj.clone();
    if let Some(map) = obj.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for noise in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
        ] {
            meta.remove(noise);
        }
    }
    obj
}

/// What a Secret value shows as in a diff, as `kubectl diff` writes it.
const MASK: &str = "***";
/// A changed Secret value on the live side.
const MASK_BEFORE: &str = "*** (before)";
/// A changed Secret value on the planned side.
const MASK_AFTER: &str = "*** (after)";
/// The annotation `kubectl apply` keeps the whole object in, Secret values included.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Replaces the values of a Secret's `data` and `stringData` (and kubectl's last-applied copy
/// of the object) by placeholders, as `kubectl diff` does: a value the same on both sides shows
/// as `***` on both, a changed one as `*** (before)` and `*** (after)`, so the diff says which
/// keys change without showing any value.
fn mask_secret(before: &mut Value, after: &mut Value) {
    for field in ["data", "stringData"] {
        let b = before.get(field).and_then(Value::as_object).cloned();
        let a = after.get(field).and_then(Value::as_object).cloned();
        let none = serde_json::Map::new();
        if let Some(b_map) = &b {
            before[field] = masked(b_map, a.as_ref().unwrap_or(&none), MASK_BEFORE);
        }
        if let Some(a_map) = &a {
            after[field] = masked(a_map, b.as_ref().unwrap_or(&none), MASK_AFTER);
        }
    }
    let annotation = |obj: &Value| {
        obj.pointer("/metadata/annotations")
            .and_then(|a| a.get(LAST_APPLIED))
            .cloned()
    };
    let (b, a) = (annotation(before), annotation(after));
    let changed = b.is_some() && a.is_some() && b != a;
    for (obj, changed_mask) in [(before, MASK_BEFORE), (after, MASK_AFTER)] {
        if let Some(value) = obj
            .pointer_mut("/metadata/annotations")
            .and_then(|a| a.get_mut(LAST_APPLIED))
        {
            *value = Value::String(if changed { changed_mask } else { MASK }.to_owned());
        }
    }
}

/// Masks every field of a (non-Secret) object that holds a Secret value on either side, as
/// [`mask_secret`] masks a Secret's values: `***` on both sides when it is the same, `*** (before)`
/// and `*** (after)` when it changes. A field is masked on both sides when either holds a value,
/// so the live side of a changed value (the Secret's old value, no longer in the Secret) never
/// shows either.
fn mask_secret_values(before: &mut Value, after: &mut Value, secrets: &SecretValues) {
    if secrets.is_empty() {
        return;
    }
    let mut paths = BTreeSet::new();
    for side in [&*before, &*after] {
        leaves_holding(side, secrets, "", &mut paths);
    }
    for path in paths {
        let (b, a) = (
            before.pointer(&path).cloned(),
            after.pointer(&path).cloned(),
        );
        let changed = b.is_some() && a.is_some() && b != a;
        for (side, changed_mask) in [(&mut *before, MASK_BEFORE), (&mut *after, MASK_AFTER)] {
            if let Some(value) = side.pointer_mut(&path) {
                *value = Value::String(if changed { changed_mask } else { MASK }.to_owned());
            }
        }
    }
}

/// Adds to `out` the JSON pointer of every scalar under `value` (at `path`) whose text holds one
/// of `secrets`.
fn leaves_holding(value: &Value, secrets: &SecretValues, path: &str, out: &mut BTreeSet<String>) {
    let child = |key: &str| format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"));
    let text = match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves_holding(v, secrets, &child(k), out);
            }
            return;
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves_holding(v, secrets, &child(&i.to_string()), out);
            }
            return;
        }
        Value::Null => return,
        Value::String(s) => s.clone(),
        scalar => scalar.to_string(),
    };
    if secrets.scrub(&text) != text {
        out.insert(path.to_owned());
    }
}

/// `mine` with every value replaced: `changed` where `theirs` holds another value for the key,
/// `***` otherwise.
fn masked(
    mine: &serde_json::Map<String, Value>,
    theirs: &serde_json::Map<String, Value>,
    changed: &str,
) -> Value {
    mine.iter()
        .map(|(k, v)| {
            let shown = match theirs.get(k) {
                Some(other) if other != v => changed,
                _ => MASK,
            };
            (k.clone(), Value::String(shown.to_owned()))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn print_diff(title: &str, before: &Value, after: &Value) -> anyhow::Result<()> {
    let before = serde_yaml::to_string(before)?;
    let after = serde_yaml::to_string(after)?;
    let diff = TextDiff::from_lines(&before, &after);
    println!("~ {title} would change");
    print!(
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header("live", "planned")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparable_drops_status_and_server_bookkeeping() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "a", "resourceVersion": "7", "uid": "u", "managedFields": [], "labels": { "x": "y" } },
            "data": { "k": "v" }, "status": { "phase": "x" }
        });
        assert_eq!(
            comparable(&obj),
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "a", "labels": { "x": "y" } }, "data": { "k": "v" } })
        );
    }

    #[test]
    fn secret_values_are_masked_like_kubectl_diff() {
        let mut before = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {LAST_APPLIED: "{\"data\":{\"a\":\"czNjcmV0\"}}"}},
            "data": {"same": "c2FtZQ==", "changed": "b2xk", "gone": "Z29uZQ=="}});
        let mut after = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {LAST_APPLIED: "{\"data\":{\"a\":\"bmV3\"}}"}},
            "data": {"same": "c2FtZQ==", "changed": "bmV3", "new": "bmV3"},
            "stringData": {"plain": "hunter2"}});
        mask_secret(&mut before, &mut after);
        assert_eq!(
            before["data"],
            json!({"same": "***", "changed": "*** (before)", "gone": "***"})
        );
        assert_eq!(
            after["data"],
            json!({"same": "***", "changed": "*** (after)", "new": "***"})
        );
        assert_eq!(after["stringData"], json!({"plain": "***"}));
        assert!(before.get("stringData").is_none());
        assert_eq!(
            before["metadata"]["annotations"][LAST_APPLIED],
            "*** (before)"
        );
        assert_eq!(
            after["metadata"]["annotations"][LAST_APPLIED],
            "*** (after)"
        );
        let shown = format!("{before}{after}");
        for secret in [
            "c2FtZQ==", "b2xk", "bmV3", "Z29uZQ==", "hunter2", "czNjcmV0",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }

    #[test]
    fn fields_holding_a_secret_value_are_masked_on_both_sides() {
        let mut secrets = SecretValues::default();
        secrets.add("n3w-pa55");
        secrets.add("7");
        let mut before = json!({"kind": "ConfigMap", "metadata": {"name": "settings",
                "labels": {"pin": "7"}},
            "data": {"dsn": "postgres://app:0ld-pa55@db:5432/shop", "same": "user n3w-pa55",
                "plain": "one", "list": ["a", "x n3w-pa55"]}});
        let mut after = json!({"kind": "ConfigMap", "metadata": {"name": "settings",
                "labels": {"pin": "7"}, "annotations": {"count": 7}},
            "data": {"dsn": "postgres://app:n3w-pa55@db:5432/shop", "same": "user n3w-pa55",
                "plain": "two", "list": ["a", "x n3w-pa55"], "version": "1.7"}});
        mask_secret_values(&mut before, &mut after, &secrets);
        // The old value is no longer in the Secret: masked because the new one is there.
        assert_eq!(before["data"]["dsn"], MASK_BEFORE);
        assert_eq!(after["data"]["dsn"], MASK_AFTER);
        assert_eq!(before["data"]["same"], MASK);
        assert_eq!(after["data"]["same"], MASK);
        assert_eq!(after["data"]["list"], json!(["a", MASK]));
        assert_eq!(after["metadata"]["labels"]["pin"], MASK);
        assert_eq!(after["metadata"]["annotations"]["count"], MASK);
        // Fields without a value stay as they are, so the diff still shows what changes.
        assert_eq!(
            (&before["data"]["plain"], &after["data"]["plain"]),
            (&json!("one"), &json!("two"))
        );
        assert_eq!(after["data"]["version"], "1.7");
        let shown = format!("{before}{after}");
        assert!(!shown.contains("pa55"), "{shown}");

        let (mut b, mut a) = (before.clone(), after.clone());
        mask_secret_values(&mut b, &mut a, &SecretValues::default());
        assert_eq!((b, a), (before, after), "no Secret values, nothing masked");
    }

    #[test]
    fn secret_values_used_come_from_the_deferral_records() {
        let source = |kind, name: &str, data: &[(&str, &str)]| VariableSource {
            kind,
            name: name.into(),
            resource_version: "1".into(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let sources = [
            source(DataKind::ConfigMap, "vars", &[("cluster", "east")]),
            source(
                DataKind::Secret,
                "creds",
                &[("password", "hunter2"), ("unused", "zebra99")],
            ),
        ];
        let record = json!({"secrets": {"password": {"name": "creds", "resourceVersion": "1"}}});
        let deferred = vec![
            (
                1,
                json!({"kind": "ConfigMap", deferred::DEFERRED_KEY: record}),
            ),
            (
                3,
                json!({"kind": "ConfigMap", deferred::DEFERRED_KEY: "not a record"}),
            ),
        ];
        let used = secret_values_used(deferred, &sources);
        assert_eq!(used.keys().copied().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(used[&1].scrub("hunter2 zebra99 east"), "*** zebra99 east");
        assert_eq!(used[&3].scrub("hunter2 zebra99 east"), "*** *** east");
    }

    #[test]
    fn labels_name_the_sync() {
        let mut obj = json!({ "metadata": { "name": "a" } });
        label(&mut obj, "web", "team");
        assert_eq!(obj["metadata"]["labels"][plumb_api::SYNC_NAME_LABEL], "web");
        assert_eq!(
            obj["metadata"]["labels"][plumb_api::SYNC_NAMESPACE_LABEL],
            "team"
        );
    }
}
