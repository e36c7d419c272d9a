//! Server-side apply of YAML, for any kind the API server knows (CRDs included).

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use crate::{Error, Result};

/// Server-side applies every object of a (multi-document) YAML stream, in
/// order, as `field_manager`, forcing conflicts; returns the objects as the API
/// server stored them.
///
/// Each kind is resolved by discovery at apply time, so a CRD applied earlier
/// in the same test is found. Namespaced objects without a namespace go to
/// `default`; use [`crate::TestNamespace::apply_yaml`] to default to a test
/// namespace instead.
pub async fn apply_yaml(
    client: &Client,
    yaml: &str,
    field_manager: &str,
) -> Result<Vec<DynamicObject>> {
    apply_documents(client, yaml, field_manager, "default").await
}

pub(crate) async fn apply_documents(
    client: &Client,
    yaml: &str,
    field_manager: &str,
    default_namespace: &str,
) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for (index, object) in parse_documents(yaml)? {
        applied.push(apply_object(client, index, object, field_manager, default_namespace).await?);
    }
    Ok(applied)
}

/// The non-empty documents of a YAML stream, each with its index in the stream.
fn parse_documents(yaml: &str) -> Result<Vec<(usize, DynamicObject)>> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let yaml_error = |e: serde_yaml::Error| Error::Yaml {
            index,
            message: e.to_string(),
        };
        let value = serde_yaml::Value::deserialize(document).map_err(yaml_error)?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_yaml::from_value(value).map_err(yaml_error)?;
        objects.push((index, object));
    }
    Ok(objects)
}

async fn apply_object(
    client: &Client,
    index: usize,
    object: DynamicObject,
    field_manager: &str,
    default_namespace: &str,
) -> Result<DynamicObject> {
    let types = object.types.as_ref().ok_or_else(|| Error::Yaml {
        index,
        message: "no apiVersion and kind".into(),
    })?;
    let gvk = GroupVersionKind::try_from(types).map_err(|e| Error::Yaml {
        index,
        message: e.to_string(),
    })?;
    let name = object.metadata.name.clone().ok_or_else(|| Error::Yaml {
        index,
        message: format!("{} without metadata.name", gvk.kind),
    })?;
    let (resource, capabilities) = discovery::pinned_kind(client, &gvk).await.map_err(|e| {
        Error::kube(
            format!("discover {}/{} {}", gvk.group, gvk.version, gvk.kind),
            e,
        )
    })?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => {
            let namespace = object
                .namespace()
                .unwrap_or_else(|| default_namespace.to_owned());
            Api::namespaced_with(client.clone(), &namespace, &resource)
        }
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let params = PatchParams::apply(field_manager).force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(|e| Error::kube(format!("apply {} {name}", gvk.kind), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_documents_skips_empty_documents_and_keeps_indexes() {
        let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n";
        let parsed = parse_documents(yaml).unwrap();
        let names: Vec<_> = parsed.iter().map(|(i, o)| (*i, o.name_any())).collect();
        assert_eq!(names, vec![(0, "a".to_owned()), (2, "b".to_owned())]);
    }

    #[test]
    fn parse_documents_names_the_bad_document() {
        let err = parse_documents(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n[not, an, object]\n",
        )
        .unwrap_err();
        assert!(matches!(err, Error::Yaml { index: 1, .. }), "{err}");
    }
}
