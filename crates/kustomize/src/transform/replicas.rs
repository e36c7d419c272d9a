//! kustomize's replica count transformer.

use super::restore;
use crate::build::Acc;
use crate::error::{FieldError, TransformError};
use crate::fieldspec::{self, Create};
use crate::kustomization::{FieldSpec, Replica};
use crate::resource::Gvk;
use serde_json::Value;

/// Set the replica count of the workload `rep` names, at the fields `specs` name; a name that
/// matches no workload is an error.
pub(crate) fn set(acc: &mut Acc, rep: &Replica, specs: &[FieldSpec]) -> Result<(), TransformError> {
    let mut found = false;
    for fs in specs {
        for r in acc.res.iter_mut() {
            let ids = std::iter::once(r.id()).chain(r.previous_ids());
            let hit = ids.into_iter().any(|id| {
                id.name == rep.name && id.gvk.is_selected_by(&fs.group, &fs.version, &fs.kind)
            });
            if !hit {
                continue;
            }
            found = true;
            let path = fieldspec::split_path(&fs.path);
            let mut doc = Value::Object(std::mem::take(&mut r.obj));
            let res = fieldspec::visit(&mut doc, &path, fs.create, Create::Scalar, &mut |v| {
                *v = Value::from(rep.count);
                Ok::<(), FieldError>(())
            });
            r.obj = restore(doc);
            res?;
        }
    }
    if !found {
        let gvks: Vec<String> = specs
            .iter()
            .map(|f| {
                Gvk {
                    group: f.group.clone(),
                    version: f.version.clone(),
                    kind: f.kind.clone(),
                }
                .to_string()
            })
            .collect();
        return Err(TransformError::NoReplicaTarget {
            name: rep.name.clone(),
            gvks: gvks.join(" "),
        });
    }
    Ok(())
}
