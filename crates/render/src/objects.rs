//! Small facts about rendered objects held as JSON: identity, group, and the YAML stream form.

use plumb_api::ObjectId;
use serde_json::Value;

/// The API group of `apiVersion` (`apps/v1` → `apps`, `v1` → core, empty).
pub fn group_of(api_version: &str) -> &str {
    api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default()
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The inventory id of a rendered object.
pub fn object_id(obj: &Value) -> ObjectId {
    ObjectId::new(
        str_at(obj, "/metadata/namespace"),
        str_at(obj, "/metadata/name"),
        group_of(str_at(obj, "/apiVersion")),
        str_at(obj, "/kind"),
    )
}

/// The kind of a rendered object.
pub fn kind_of(obj: &Value) -> &str {
    str_at(obj, "/kind")
}

/// The namespace of a rendered object; empty when unset (cluster-scoped or defaulted).
pub fn namespace_of(obj: &Value) -> &str {
    str_at(obj, "/metadata/namespace")
}

/// The API group of a rendered object.
pub fn group_of_object(obj: &Value) -> &str {
    group_of(str_at(obj, "/apiVersion"))
}

/// Objects as multi-document YAML, one object per document, in the given order.
pub fn to_yaml_stream(objects: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for obj in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(obj)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_follow_the_inventory_format() {
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "a"}});
        assert_eq!(object_id(&dep).to_string(), "a_web_apps_Deployment");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}});
        assert_eq!(object_id(&ns).to_string(), "_a__Namespace");
    }

    #[test]
    fn yaml_stream_has_one_document_per_object() {
        let objs = vec![json!({"a": 1}), json!({"b": 2})];
        let text = to_yaml_stream(&objs).unwrap();
        assert_eq!(text, "---\na: 1\n---\nb: 2\n");
    }
}
