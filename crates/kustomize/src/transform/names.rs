//! kustomize's prefix and suffix transformers.

use super::restore;
use crate::build::Acc;
use crate::fieldspec::{self, Create};
use crate::kustomization::FieldSpec;
use serde_json::Value;

/// Add `prefix` and `suffix` to the names at the fields `specs` name, remembering them on each
/// resource so name references follow.
pub(crate) fn prefix_suffix(acc: &mut Acc, prefix: &str, suffix: &str, specs: &[FieldSpec]) {
    for r in acc.res.iter_mut() {
        let org = r.org_id().gvk;
        let skip = org.kind == "CustomResourceDefinition"
            || org.kind == "Namespace"
            || (org.group == "apiregistration.k8s.io" && org.kind == "APIService");
        if skip {
            continue;
        }
        for fs in specs {
            if !fs.applies_to(&org) {
                continue;
            }
            if fs.path == "metadata/name" {
                if !prefix.is_empty() {
                    r.prefixes.push(prefix.to_string());
                }
                if !suffix.is_empty() {
                    r.suffixes.push(suffix.to_string());
                }
                if !prefix.is_empty() || !suffix.is_empty() {
                    r.store_previous_id();
                }
            }
            let path = fieldspec::split_path(&fs.path);
            let mut doc = Value::Object(std::mem::take(&mut r.obj));
            // A field of another shape is left alone, as kustomize does.
            let _ = fieldspec::visit(&mut doc, &path, false, Create::Nothing, &mut |v| {
                if let Value::String(s) = v {
                    *s = format!("{prefix}{s}{suffix}");
                }
                Ok::<(), crate::error::FieldError>(())
            });
            r.obj = restore(doc);
        }
    }
}
