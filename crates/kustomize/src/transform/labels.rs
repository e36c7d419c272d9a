//! kustomize's label and annotation transformers: map entries set at the fields specs name.

use super::restore;
use crate::build::Acc;
use crate::error::{FieldError, TransformError};
use crate::fieldspec::{self, Create};
use crate::kustomization::FieldSpec;
use indexmap::IndexMap;
use serde_json::{Map, Value};

/// Set map entries (labels or annotations) at the fields the specs name.
pub(crate) fn set_entries(
    acc: &mut Acc,
    entries: &IndexMap<String, String>,
    specs: &[FieldSpec],
) -> Result<(), TransformError> {
    if entries.is_empty() {
        return Ok(());
    }
    for r in acc.res.iter_mut() {
        let gvk = r.gvk();
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        let mut result: Result<(), FieldError> = Ok(());
        for fs in specs {
            if !fs.applies_to(&gvk) {
                continue;
            }
            let path = fieldspec::split_path(&fs.path);
            result = fieldspec::visit(&mut doc, &path, fs.create, Create::Map, &mut |v| {
                if v.is_null() {
                    *v = Value::Object(Map::new());
                }
                let Value::Object(m) = v else {
                    return Err(FieldError::NotAMap(fs.path.clone()));
                };
                for (k, val) in entries {
                    if k.is_empty() {
                        return Err(FieldError::EmptyKey(fs.path.clone()));
                    }
                    m.insert(k.clone(), Value::String(val.clone()));
                }
                Ok(())
            });
            if result.is_err() {
                break;
            }
        }
        r.obj = restore(doc);
        result?;
    }
    Ok(())
}
