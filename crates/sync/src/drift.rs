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
    diff_at(intent, live, &mut String::new())
}

fn diff_at(intent: &Value, live: &Value, path: &mut String) -> Option<String> {
    match (intent, live) {
        (Value::Object(i), Value::Object(l)) => {
            for (k, iv) in i {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let found = match l.get(k) {
                    Some(lv) => diff_at(iv, lv, path),
                    None if iv.is_null() => None,
                    None => Some(path.clone()),
                };
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (Value::Array(i), Value::Array(l)) if i.iter().all(Value::is_object) && !i.is_empty() => {
            for (idx, ii) in i.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{idx}"));
                let found = match find_item(l, ii, idx) {
                    Some(li) => diff_at(ii, li, path),
                    None => Some(path.clone()),
                };
                path.truncate(len);
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        (i, l) if i == l => None,
        _ => Some(if path.is_empty() {
            "/".to_owned()
        } else {
            path.clone()
        }),
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
    fn ignored_paths_are_removed_from_what_is_applied() {
        let mut d = deployment();
        remove_paths(
            &mut d,
            &["/spec/replicas".to_owned(), "/spec/nothing/here".to_owned()],
        );
        assert!(d.pointer("/spec/replicas").is_none());
        assert!(d.pointer("/spec/template").is_some());
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
