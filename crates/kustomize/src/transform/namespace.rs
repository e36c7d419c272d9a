//! kustomize's namespace transformer.

use super::restore;
use crate::build::Acc;
use crate::error::{FieldError, TransformError};
use crate::fieldspec::{self, Create};
use crate::kustomization::FieldSpec;
use crate::resource::scalar_string;
use serde_json::Value;

/// Set namespace `ns` on every namespaced resource and at the fields `specs` name; with
/// `unset_only`, only where none is set. `role_binding_mode` (`none`, `allServiceAccounts`, or
/// empty for the `default` service account) picks the RoleBinding subjects that follow.
pub(crate) fn set(
    acc: &mut Acc,
    ns: &str,
    specs: &[FieldSpec],
    unset_only: bool,
    role_binding_mode: &str,
) -> Result<(), TransformError> {
    let set = |v: &mut Value| -> Result<(), FieldError> {
        if unset_only && !scalar_string(v).is_empty() {
            return Ok(());
        }
        *v = Value::String(ns.to_string());
        Ok(())
    };
    for i in 0..acc.res.len() {
        let r = &mut acc.res[i];
        if r.obj.is_empty() {
            continue;
        }
        r.store_previous_id();
        let gvk = r.gvk();
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        if !gvk.is_cluster_scoped() {
            let path = fieldspec::split_path("metadata/namespace");
            fieldspec::visit(&mut doc, &path, true, Create::Scalar, &mut { set })?;
        }
        let binding = gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding";
        if binding
            && role_binding_mode != "none"
            && let Some(Value::Array(subjects)) = doc.get_mut("subjects")
        {
            for s in subjects.iter_mut() {
                let hit = if role_binding_mode == "allServiceAccounts" {
                    s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                } else {
                    s.get("name").and_then(Value::as_str) == Some("default")
                };
                if hit && let Value::Object(m) = s {
                    let cur = m.entry("namespace").or_insert(Value::String(String::new()));
                    set(cur)?;
                }
            }
        }
        let api_version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        for fs in specs {
            if fs.path == "metadata/namespace"
                || (fs.path == "metadata/name" && api_version != "v1")
            {
                continue;
            }
            if binding && fs.path == "subjects/namespace" {
                continue;
            }
            if !fs.applies_to(&gvk) {
                continue;
            }
            let path = fieldspec::split_path(&fs.path);
            fieldspec::visit(&mut doc, &path, fs.create, Create::Scalar, &mut { set })
                .map_err(TransformError::NamespaceField)?;
        }
        r.obj = restore(doc);
    }
    let mut seen = std::collections::HashSet::new();
    for r in &acc.res {
        let id = r.id();
        let key = format!("{}|{}|{}", id.gvk, id.effective_namespace(), id.name);
        if !seen.insert(key) {
            return Err(TransformError::IdConflict(id.to_string()));
        }
    }
    Ok(())
}
