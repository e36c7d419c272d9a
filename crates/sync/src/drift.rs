//! Drift: whether a live object still holds what plumb applied.
//!
//! plumb compares only the fields it applies (its intent), so status, metadata the server keeps,
//! and fields other managers own never count as drift. The intent is normalized by the API
//! server's own answer to the apply ([`project`]), so defaults and canonical forms (`1000m` → `1`)
//! do not look like drift either.

use serde_json::{Map, Value};

use plumb_api::policy::{DriftIgnore, ResourceMatch};

/// Metadata fields plumb applies; the rest of `metadata` is the server's.
const APPLIED_METADATA: &[&str] = &["name", "namespace", "labels", "annotations"];

/// The part of an object to apply: no `status`, and only name, namespace, labels and
/// annotations of `metadata` (rendered output may carry `creationTimestamp: null` and such).
pub fn applied_part(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.retain(|k, v| APPLIED_METADATA.contains(&k.as_str()) && !v.is_null());
        }
    }
    out
}

/// Removes the fields at `pointers` (JSON pointers such as `/spec/replicas`) from `obj`;
/// a pointer that names nothing is ignored.
pub fn remove_paths(obj: &mut Value, pointers: &[String]) {
    for ptr in pointers {
        let Some((parent, last)) = ptr.rsplit_once('/') else {
            continue;
        };
        let last = last.replace("~1", "/").replace("~0", "~");
        match obj.pointer_mut(parent) {
            Some(Value::Object(map)) => {
                map.remove(&last);
            }
            Some(Value::Array(items)) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < items.len()
                {
                    items.remove(i);
                }
            }
            _ => {}
        }
    }
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Sets the field at `pointer` in `obj` to `value`, creating the maps on the way; a pointer
/// through a list or a scalar is left alone.
pub fn set_path(obj: &mut Value, pointer: &str, value: Value) {
    let mut segments: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    let Some(last) = segments.pop() else { return };
    let mut at = obj;
    for seg in segments {
        let Some(map) = at.as_object_mut() else {
            return;
        };
        at = map.entry(seg).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Some(map) = at.as_object_mut() {
        map.insert(last, value);
    }
}

/// The `fieldsV1` of the `Apply` entry of `manager` in `live`'s managed fields.
pub(crate) fn applied_fields<'a>(live: &'a Value, manager: &str) -> Option<&'a Value> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("manager").and_then(Value::as_str) == Some(manager)
                && m.get("operation").and_then(Value::as_str) == Some("Apply")
                && m.get("subresource").is_none_or(|s| s.as_str() == Some(""))
        })?
        .get("fieldsV1")
}

/// Whether `manager` owns the field at `pointer` of `live` (a path through a list counts as
/// owned when the field has a value: what cannot be told apart is kept).
pub fn owns_field(live: &Value, manager: &str, pointer: &str) -> bool {
    let Some(mut at) = applied_fields(live, manager) else {
        return false;
    };
    for seg in pointer.split('/').skip(1) {
        if seg.parse::<usize>().is_ok() {
            return live.pointer(pointer).is_some();
        }
        match at.get(format!("f:{}", unescape(seg))) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

/// Puts the live value of every ignored path that `manager` owns into `body`: leaving such a
/// field out of an apply would make the API server delete it, and ignored paths keep their live
/// value. Paths `manager` does not own stay out, so their other owner keeps them alone.
pub fn keep_owned_ignored(body: &mut Value, ignored: &[String], live: &Value, manager: &str) {
    for path in ignored {
        if let Some(value) = live.pointer(path)
            && owns_field(live, manager, path)
        {
            set_path(body, path, value.clone());
        }
    }
}

/// The JSON pointers of the fields of `live` that managers other than `manager` own (their map
/// fields; list items are told apart by keys and are left to server-side apply), for
/// `plumb.dev/ssa: Merge`.
pub fn fields_owned_by_others(live: &Value, manager: &str) -> Vec<String> {
    fn walk(fields: &Value, path: &mut String, out: &mut Vec<String>) {
        let Some(map) = fields.as_object() else {
            return;
        };
        let children: Vec<_> = map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.push(path.clone());
            }
            return;
        }
        for (k, v) in children {
            let len = path.len();
            path.push('/');
            path.push_str(&k[2..].replace('~', "~0").replace('/', "~1"));
            walk(v, path, out);
            path.truncate(len);
        }
    }
    let mut out = Vec::new();
    let entries = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for m in entries {
        let own = m.get("manager").and_then(Value::as_str) == Some(manager);
        let status = m
            .get("subresource")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if own || status {
            continue;
        }
        if let Some(fields) = m.get("fieldsV1") {
            walk(fields, &mut String::new(), &mut out);
        }
    }
    out.retain(|p| {
        !p.starts_with("/metadata/")
            || p.starts_with("/metadata/labels/")
            || p.starts_with("/metadata/annotations/")
    });
    out.retain(|p| !p.starts_with("/metadata/labels/sync.plumb.dev~1"));
    out.sort();
    out.dedup();
    out
}

/// Whether `m` selects objects of `group`/`kind` (`*` any group, no kinds any kind).
pub fn resource_matches(m: &ResourceMatch, group: &str, kind: &str) -> bool {
    (m.group == "*" || m.group == group)
        && (m.kinds.is_empty() || m.kinds.iter().any(|k| k == kind))
}

/// The JSON pointers of `ignores` that apply to objects of `group`/`kind`.
pub fn ignored_paths(ignores: &[&DriftIgnore], group: &str, kind: &str) -> Vec<String> {
    ignores
        .iter()
        .filter(|i| {
            i.resources.is_empty() || i.resources.iter().any(|m| resource_matches(m, group, kind))
        })
        .flat_map(|i| i.paths.iter().cloned())
        .collect()
}

/// The key that identifies an item of a list of objects, when the list is keyed by one.
fn item_key(item: &Value) -> Option<(&'static str, &Value)> {
    [
        "name",
        "containerPort",
        "port",
        "mountPath",
        "devicePath",
        "ip",
        "type",
        "topologyKey",
    ]
    .into_iter()
    .find_map(|k| item.get(k).map(|v| (k, v)))
}

fn find_item<'a>(items: &'a [Value], shape_item: &Value, index: usize) -> Option<&'a Value> {
    match item_key(shape_item) {
        Some((k, v)) if shape_item.is_object() => items.iter().find(|i| i.get(k) == Some(v)),
        _ => items.get(index),
    }
}

/// The intent normalized by the server: the fields of `shape` (what plumb applied), with values
/// taken from `answer` (the server's reply to that apply, or a live object). Fields the server
/// dropped are dropped.
pub fn project(shape: &Value, answer: &Value) -> Value {
    match (shape, answer) {
        (Value::Object(s), Value::Object(a)) => {
            let mut out = Map::new();
            for (k, sv) in s {
                if let Some(av) = a.get(k) {
                    out.insert(k.clone(), project(sv, av));
                }
            }
            Value::Object(out)
        }
        (Value::Array(s), Value::Array(a)) if s.iter().all(Value::is_object) && !s.is_empty() => {
            let items: Vec<Value> = s
                .iter()
                .enumerate()
                .filter_map(|(i, si)| find_item(a, si, i).map(|ai| project(si, ai)))
                .collect();
            Value::Array(items)
        }
        (_, a) => a.clone(),
    }
}

/// The first path where `live` does not hold `intent`, or `None` when it does. Maps compare by
/// the keys of `intent` (extra live keys belong to the server or other managers); lists of
/// objects by their key field (`name`, `port`, ...) else by position; scalars and other lists by
/// value.
pub fn diff(intent: &Value, live: &Value) -> Option<String> {
    let mut found = Vec::new();
    diff_at(intent, live, &mut String::new(), &mut found, true);
    found.pop()
}

/// Every path where `live` does not hold `intent`, compared as [`diff`] does, in the order of
/// `intent`'s fields.
pub fn differences(intent: &Value, live: &Value) -> Vec<String> {
    let mut found = Vec::new();
    diff_at(intent, live, &mut String::new(), &mut found, false);
    found
}

/// Pushes the paths under `path` where `live` differs from `intent` onto `found`; with
/// `first_only`, stops at the first. Returns whether it stopped.
fn diff_at(
    intent: &Value,
    live: &Value,
    path: &mut String,
    found: &mut Vec<String>,
    first_only: bool,
) -> bool {
    match (intent, live) {
        (Value::Object(i), Value::Object(l)) => {
            for (k, iv) in i {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let stop = match l.get(k) {
                    Some(lv) => diff_at(iv, lv, path, found, first_only),
                    None if iv.is_null() => false,
                    None => {
                        found.push(path.clone());
                        first_only
                    }
                };
                path.truncate(len);
                if stop {
                    return true;
                }
            }
            false
        }
        (Value::Array(i), Value::Array(l)) if i.iter().all(Value::is_object) && !i.is_empty() => {
            for (idx, ii) in i.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{idx}"));
                let stop = match find_item(l, ii, idx) {
                    Some(li) => diff_at(ii, li, path, found, first_only),
                    None => {
                        found.push(path.clone());
                        first_only
                    }
                };
                path.truncate(len);
                if stop {
                    return true;
                }
            }
            false
        }
        (i, l) if i == l => false,
        _ => {
            found.push(if path.is_empty() {
                "/".to_owned()
            } else {
                path.clone()
            });
            first_only
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "a", "labels": {"app": "web"}, "creationTimestamp": null},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "app", "image": "nginx:1", "resources": {"limits": {"cpu": "1000m"}}}
            ]}}},
            "status": {}
        })
    }

    fn live_of(applied: &Value) -> Value {
        let mut live = applied.clone();
        live["metadata"]["resourceVersion"] = json!("42");
        live["metadata"]["managedFields"] = json!([]);
        live["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
            json!("1");
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] =
            json!("IfNotPresent");
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .insert(0, json!({"name": "sidecar", "image": "envoy"}));
        live["spec"]["strategy"] = json!({"type": "RollingUpdate"});
        live["status"] = json!({"replicas": 2});
        live
    }

    #[test]
    fn applied_part_drops_status_and_server_metadata() {
        let a = applied_part(&deployment());
        assert!(a.get("status").is_none());
        assert!(a.pointer("/metadata/creationTimestamp").is_none());
        assert_eq!(a.pointer("/metadata/labels/app"), Some(&json!("web")));
    }

    #[test]
    fn normalized_intent_sees_no_drift_in_defaults_canonical_forms_or_other_managers_items() {
        let applied = applied_part(&deployment());
        let live = live_of(&applied);
        // Before normalization the canonical cpu form differs.
        assert_eq!(
            diff(&applied, &live).as_deref(),
            Some("/spec/template/spec/containers/0/resources/limits/cpu")
        );
        let intent = project(&applied, &live);
        assert_eq!(diff(&intent, &live), None);
    }

    #[test]
    fn status_only_churn_is_not_drift() {
        let applied = applied_part(&deployment());
        let mut live = live_of(&applied);
        let intent = project(&applied, &live);
        live["status"] = json!({"replicas": 5, "conditions": [{"type": "Available"}]});
        live["metadata"]["resourceVersion"] = json!("43");
        assert_eq!(diff(&intent, &live), None);
    }

    #[test]
    fn an_edit_of_an_applied_field_is_drift() {
        let applied = applied_part(&deployment());
        let mut live = live_of(&applied);
        let intent = project(&applied, &live);
        live["spec"]["template"]["spec"]["containers"][1]["image"] = json!("nginx:2");
        assert_eq!(
            diff(&intent, &live).as_deref(),
            Some("/spec/template/spec/containers/0/image")
        );
        let mut live = live_of(&applied);
        live["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("app");
        assert_eq!(
            diff(&intent, &live).as_deref(),
            Some("/metadata/labels/app")
        );
    }

    #[test]
    fn differences_lists_every_drifted_field() {
        let applied = applied_part(&deployment());
        let mut live = live_of(&applied);
        let intent = project(&applied, &live);
        assert!(differences(&intent, &live).is_empty());
        live["spec"]["replicas"] = json!(5);
        live["spec"]["template"]["spec"]["containers"][1]["image"] = json!("nginx:2");
        assert_eq!(
            differences(&intent, &live),
            ["/spec/replicas", "/spec/template/spec/containers/0/image"]
        );
        assert_eq!(diff(&intent, &live).as_deref(), Some("/spec/replicas"));
    }

    #[test]
    fn ignored_paths_are_removed_from_what_is_applied() {
        let mut d = deployment();
        remove_paths(
            &mut d,
            &["/spec/replicas".to_owned(), "/spec/nothing/here".to_owned()],
        );
        assert!(d.pointer("/spec/replicas").is_none());
        assert!(d.pointer("/spec/template").is_some());
    }

    fn managed(manager: &str, operation: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": operation, "fieldsV1": fields})
    }

    #[test]
    fn an_ignored_path_plumb_owns_keeps_its_live_value() {
        let live = json!({
            "metadata": {"managedFields": [
                managed("plumb-sync", "Apply", json!({"f:spec": {"f:replicas": {}, "f:paused": {}}})),
                managed("hpa", "Update", json!({"f:spec": {"f:minReadySeconds": {}}})),
            ]},
            "spec": {"replicas": 7, "paused": false, "minReadySeconds": 3}
        });
        let cases = [
            // owned by plumb: the live value goes into the apply, so it is not deleted
            ("/spec/replicas", Some(json!(7))),
            // owned by another manager only: left out, its owner keeps it
            ("/spec/minReadySeconds", None),
            // not live at all: nothing to keep
            ("/spec/strategy", None),
        ];
        for (path, want) in cases {
            let mut body = json!({"spec": {}});
            keep_owned_ignored(&mut body, &[path.to_owned()], &live, "plumb-sync");
            assert_eq!(body.pointer(path).cloned(), want, "{path}");
        }
    }

    #[test]
    fn set_path_creates_maps_on_the_way() {
        let mut v = json!({});
        set_path(&mut v, "/spec/template/x~1y", json!(1));
        assert_eq!(v, json!({"spec": {"template": {"x/y": 1}}}));
        let mut list = json!({"a": [1]});
        set_path(&mut list, "/a/0/b", json!(2));
        assert_eq!(list, json!({"a": [1]}));
    }

    #[test]
    fn fields_of_other_managers_are_listed_for_merge() {
        let live = json!({"metadata": {"managedFields": [
            managed("plumb-sync", "Apply", json!({"f:data": {"f:a": {}}})),
            managed("cert-manager", "Update", json!({"f:data": {"f:tls.crt": {}}, "f:metadata": {"f:annotations": {"f:issuer": {}}}})),
            managed("kube-controller-manager", "Update", json!({"f:status": {"f:x": {}}})).as_object().cloned().map(|mut m| { m.insert("subresource".into(), json!("status")); Value::Object(m) }).unwrap(),
        ]}});
        assert_eq!(
            fields_owned_by_others(&live, "plumb-sync"),
            ["/data/tls.crt", "/metadata/annotations/issuer"]
        );
    }

    #[test]
    fn ignore_rules_select_by_group_and_kind() {
        let rule = DriftIgnore {
            resources: vec![ResourceMatch {
                group: "apps".into(),
                kinds: vec!["Deployment".into()],
            }],
            paths: vec!["/spec/replicas".into()],
        };
        let any = DriftIgnore {
            resources: vec![],
            paths: vec!["/metadata/annotations/x".into()],
        };
        let rules = [&rule, &any];
        assert_eq!(ignored_paths(&rules, "apps", "Deployment").len(), 2);
        assert_eq!(
            ignored_paths(&rules, "apps", "StatefulSet"),
            ["/metadata/annotations/x"]
        );
    }
}
