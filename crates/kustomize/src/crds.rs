//! `crds:` files: OpenAPI definitions whose `x-kubernetes-object-ref-*` extensions declare name
//! references from custom resources to other objects.

use crate::config::{NameBackRef, TransformerConfig};
use crate::kustomization::FieldSpec;
use serde_json::Value;

/// Read the name references declared in a `crds:` file.
pub(crate) fn config_from_crds(text: &str) -> Result<TransformerConfig, String> {
    let docs = crate::yaml::parse_documents(text, crate::yaml::ScalarMode::Typed)
        .map_err(|e| e.to_string())?;
    let mut cfg = TransformerConfig::default();
    for doc in docs {
        let Value::Object(defs) = doc else { continue };
        for (name, def) in &defs {
            let kind = name.rsplit('.').next().unwrap_or(name).to_string();
            let mut path = Vec::new();
            collect(def, &defs, &kind, &mut path, &mut cfg, 0);
        }
    }
    Ok(cfg)
}

fn collect(
    schema: &Value,
    defs: &serde_json::Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
    cfg: &mut TransformerConfig,
    depth: usize,
) {
    if depth > 20 {
        return;
    }
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (field, p) in props {
        path.push(field.clone());
        let target_kind = p
            .get("x-kubernetes-object-ref-kind")
            .and_then(Value::as_str);
        if let Some(tk) = target_kind {
            let name_key = p
                .get("x-kubernetes-object-ref-name-key")
                .and_then(Value::as_str)
                .unwrap_or("name");
            let spec = FieldSpec {
                kind: kind.to_string(),
                path: format!("{}/{name_key}", path.join("/")),
                ..Default::default()
            };
            match cfg.name_reference.iter_mut().find(|b| b.kind == tk) {
                Some(b) => b.field_specs.push(spec),
                None => cfg.name_reference.push(NameBackRef {
                    kind: tk.to_string(),
                    field_specs: vec![spec],
                    ..Default::default()
                }),
            }
        }
        if let Some(r) = p.get("$ref").and_then(Value::as_str) {
            let target = r.trim_start_matches("#/definitions/");
            if let Some(d) = defs.get(target) {
                collect(d, defs, kind, path, cfg, depth + 1);
            }
        } else {
            collect(p, defs, kind, path, cfg, depth + 1);
        }
        path.pop();
    }
}
