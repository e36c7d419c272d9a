//! `crds:` files: OpenAPI definitions (type name -> `{Schema, Dependencies}`) whose extensions
//! declare how transformers treat custom resources: `x-kubernetes-object-ref-*` (name
//! references), `x-kubernetes-annotation`, `x-kubernetes-label-selector`, `x-kubernetes-identity`.

use crate::config::{NameBackRef, TransformerConfig};
use crate::kustomization::FieldSpec;
use serde_json::{Map, Value};

/// Read the transformer configuration a `crds:` file declares.
pub(crate) fn config_from_crds(text: &str) -> Result<TransformerConfig, crate::yaml::YamlError> {
    let docs = crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Typed)?;
    let mut cfg = TransformerConfig::default();
    for doc in docs {
        let Value::Object(defs) = doc else { continue };
        for (name, def) in &defs {
            let props = def
                .get("Schema")
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object);
            let looks_k8s = props.is_some_and(|p| {
                ["kind", "apiVersion", "metadata"]
                    .iter()
                    .all(|k| p.contains_key(*k))
            });
            if !looks_k8s {
                continue;
            }
            let kind = name.rsplit('.').next().unwrap_or(name).to_string();
            collect(&defs, name, &kind, &mut Vec::new(), &mut cfg, 0);
        }
    }
    Ok(cfg)
}

fn spec(kind: &str, path: &[String]) -> FieldSpec {
    FieldSpec {
        kind: kind.to_string(),
        path: path.join("/"),
        ..Default::default()
    }
}

fn collect(
    defs: &Map<String, Value>,
    ty: &str,
    kind: &str,
    path: &mut Vec<String>,
    cfg: &mut TransformerConfig,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    let Some(props) = defs
        .get(ty)
        .and_then(|d| d.get("Schema"))
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    else {
        return;
    };
    for (field, p) in props {
        path.push(field.clone());
        let ext = |k: &str| p.get(k).and_then(Value::as_str);
        if ext("x-kubernetes-annotation").is_some() {
            cfg.common_annotations.push(spec(kind, path));
        }
        if ext("x-kubernetes-label-selector").is_some() {
            cfg.common_labels.push(spec(kind, path));
        }
        if ext("x-kubernetes-identity").is_some() {
            cfg.name_prefix.push(spec(kind, path));
        }
        if let (Some(version), Some(target)) = (
            ext("x-kubernetes-object-ref-api-version"),
            ext("x-kubernetes-object-ref-kind"),
        ) {
            let name_key = ext("x-kubernetes-object-ref-name-key").unwrap_or("name");
            let mut p2 = path.clone();
            p2.push(name_key.to_string());
            let fs = spec(kind, &p2);
            match cfg
                .name_reference
                .iter_mut()
                .find(|b| b.kind == target && b.version == version)
            {
                Some(b) => b.field_specs.push(fs),
                None => cfg.name_reference.push(NameBackRef {
                    kind: target.to_string(),
                    version: version.to_string(),
                    field_specs: vec![fs],
                    ..Default::default()
                }),
            }
        }
        if let Some(r) = p.get("$ref").and_then(Value::as_str) {
            collect(defs, r, kind, path, cfg, depth + 1);
        }
        path.pop();
    }
}
