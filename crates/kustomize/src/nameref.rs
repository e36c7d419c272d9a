//! Name references: after prefixes, suffixes, namespaces and hashes changed names, point every
//! reference (volumes, envFrom, RBAC roleRef and subjects, ...) at the new names.

use crate::config::NameBackRef;
use crate::error::{NameRefError, TransformError};
use crate::fieldspec;
use crate::kustomization::FieldSpec;
use crate::resource::{Gvk, ResId, Resource, scalar_string};
use serde_json::{Map, Value};

/// Fix every back reference the configuration names.
pub(crate) fn fix(res: &mut [Resource], backrefs: &[NameBackRef]) -> Result<(), TransformError> {
    // Names, namespaces and kinds do not change while references are fixed: snapshot them once.
    let all: Vec<Cand> = res
        .iter()
        .enumerate()
        .map(|(idx, r)| {
            let id = r.id();
            Cand {
                idx,
                cluster: id.gvk.is_cluster_scoped(),
                ns: id.effective_namespace().to_string(),
                id,
                prev: r.previous_ids(),
                prefixes: r.prefixes.clone(),
                suffixes: r.suffixes.clone(),
            }
        })
        .collect();
    let orgs: Vec<ResId> = res.iter().map(Resource::org_id).collect();
    for br in backrefs {
        let target = Gvk {
            group: br.group.clone(),
            version: br.version.clone(),
            kind: br.kind.clone(),
        };
        for spec in &br.field_specs {
            for (i, org) in orgs.iter().enumerate() {
                if spec.applies_to(&org.gvk) {
                    fix_one(res, i, spec, &target, &all)?;
                }
            }
        }
    }
    Ok(())
}

struct Cand {
    idx: usize,
    id: ResId,
    cluster: bool,
    ns: String,
    prev: Vec<ResId>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

fn fix_one(
    res: &mut [Resource],
    i: usize,
    spec: &FieldSpec,
    target: &Gvk,
    all: &[Cand],
) -> Result<(), TransformError> {
    let first = fieldspec::split_path(&spec.path);
    if first
        .first()
        .is_some_and(|f| !res[i].as_value().contains_key(f.trim_end_matches("[]")))
    {
        return Ok(());
    }
    let referrer_id = all[i].id.clone();
    let rb_namespaces: Vec<String> = if res[i].kind() == "RoleBinding" {
        res[i]
            .as_value()
            .get("subjects")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter(|x| x.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
                    .filter_map(|x| x.get("namespace").map(scalar_string))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let (ref_cluster, ref_ns) = (all[i].cluster, all[i].ns.as_str());
    let candidates: Vec<&Cand> = all
        .iter()
        .filter(|c| {
            ref_cluster || c.cluster || c.ns == ref_ns || rb_namespaces.contains(&c.id.namespace)
        })
        .collect();
    let role_ref = if spec.path.ends_with("roleRef/name") {
        res[i].as_value().get("roleRef").and_then(|rr| {
            let g = rr.get("apiGroup")?;
            let k = rr.get("kind")?;
            Some(Gvk {
                group: scalar_string(g),
                version: String::new(),
                kind: scalar_string(k),
            })
        })
    } else {
        None
    };
    let ctx = Ctx {
        referrer_cluster: ref_cluster,
        referrer_ns: ref_ns,
        target,
        role_ref: role_ref.as_ref(),
        prefixes: res[i].prefixes.clone(),
        suffixes: res[i].suffixes.clone(),
    };
    let path = fieldspec::split_path(&spec.path);
    let mut doc = Value::Object(std::mem::take(&mut res[i].obj));
    let mut referred: Vec<usize> = Vec::new();
    let result = fieldspec::visit(
        &mut doc,
        &path,
        false,
        fieldspec::Create::Nothing,
        &mut |node| match node {
            Value::Null => Ok(()),
            Value::String(_) => set_scalar(node, &candidates, &ctx, &mut referred),
            Value::Object(m) => set_map(m, &candidates, &ctx, &mut referred),
            Value::Array(items) => {
                for item in items.iter_mut() {
                    match item {
                        Value::Object(m) => set_map(m, &candidates, &ctx, &mut referred)?,
                        Value::String(_) => set_scalar(item, &candidates, &ctx, &mut referred)?,
                        _ => {}
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        },
    );
    res[i].obj = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    result.map_err(|source| TransformError::NameRef {
        path: spec.path.clone(),
        referrer: referrer_id.to_string(),
        source: Box::new(source),
    })
}

struct Ctx<'a> {
    referrer_cluster: bool,
    referrer_ns: &'a str,
    target: &'a Gvk,
    role_ref: Option<&'a Gvk>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let diff = long.len() - short.len();
    if short.is_empty() {
        return diff == 0;
    }
    (0..short.len()).all(|i| long[i + diff] == short[i])
}

fn ps_equal(c: &Cand, ctx: &Ctx<'_>, allow_empty: bool) -> bool {
    if allow_empty {
        let pe = c.prefixes.is_empty() || ctx.prefixes.is_empty();
        let se = c.suffixes.is_empty() || ctx.suffixes.is_empty();
        (pe || same_ending(&c.prefixes, &ctx.prefixes))
            && (se || same_ending(&c.suffixes, &ctx.suffixes))
    } else {
        same_ending(&c.prefixes, &ctx.prefixes) && same_ending(&c.suffixes, &ctx.suffixes)
    }
}

fn select<'a>(
    old: &str,
    cands: Vec<&'a Cand>,
    ctx: &Ctx<'_>,
    identical: impl Fn(&[&'a Cand]) -> bool,
) -> Result<Option<&'a Cand>, NameRefError> {
    let sel = |g: &Gvk, id: &ResId| id.gvk.is_selected_by(&g.group, &g.version, &g.kind);
    let mut c: Vec<&Cand> = cands
        .into_iter()
        .filter(|c| c.prev.iter().any(|p| p.name == old))
        .filter(|c| c.prev.iter().any(|p| sel(ctx.target, p)))
        .filter(|c| {
            ctx.role_ref
                .is_none_or(|rr| c.prev.iter().any(|p| sel(rr, p)))
        })
        .filter(|c| {
            ctx.referrer_cluster
                || c.cluster
                || c.id.gvk.kind == "ServiceAccount"
                || c.ns == ctx.referrer_ns
        })
        .collect();
    if c.len() == 1 {
        return Ok(c.pop());
    }
    c.retain(|x| ps_equal(x, ctx, true));
    if c.len() > 1 {
        c.retain(|x| ps_equal(x, ctx, false));
    }
    match c.len() {
        0 => Ok(None),
        1 => Ok(c.pop()),
        _ if identical(&c) => Ok(Some(c[0])),
        _ => {
            let ids: Vec<String> = c.iter().map(|x| x.id.to_string()).collect();
            Err(NameRefError::Ambiguous(ids.join(", ")))
        }
    }
}

fn set_scalar(
    node: &mut Value,
    cands: &[&Cand],
    ctx: &Ctx<'_>,
    referred: &mut Vec<usize>,
) -> Result<(), NameRefError> {
    let old = scalar_string(node);
    let found = select(&old, cands.to_vec(), ctx, |c| {
        c.iter().all(|x| x.id.name == c[0].id.name)
    })?;
    if let Some(r) = found {
        referred.push(r.idx);
        if r.id.name != old {
            *node = Value::String(r.id.name.clone());
        }
    }
    Ok(())
}

fn set_map(
    m: &mut Map<String, Value>,
    cands: &[&Cand],
    ctx: &Ctx<'_>,
    referred: &mut Vec<usize>,
) -> Result<(), NameRefError> {
    let Some(name) = m.get("name") else {
        return Err(NameRefError::NoName);
    };
    let old = scalar_string(name);
    let pool: Vec<&Cand> = match m.get("namespace").map(scalar_string) {
        None => cands.to_vec(),
        Some(ns) => {
            let by_org: Vec<&Cand> = cands
                .iter()
                .copied()
                .filter(|c| {
                    c.prev
                        .first()
                        .map(|p| p.namespace.as_str())
                        .unwrap_or(c.ns.as_str())
                        == ns
                })
                .collect();
            if by_org.is_empty() {
                cands.iter().copied().filter(|c| c.ns == ns).collect()
            } else {
                by_org
            }
        }
    };
    let found = select(&old, pool, ctx, |c| {
        c.iter()
            .all(|x| x.id.name == c[0].id.name && x.id.namespace == c[0].id.namespace)
    })?;
    if let Some(r) = found {
        referred.push(r.idx);
        if r.id.name == old && r.id.namespace.is_empty() {
            return Ok(());
        }
        m.insert("name".into(), Value::String(r.id.name.clone()));
        if !r.id.namespace.is_empty() {
            m.insert("namespace".into(), Value::String(r.id.namespace.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TransformerConfig;
    use serde_json::json;

    fn res(v: Value) -> Resource {
        Resource::new(v.as_object().cloned().unwrap_or_default())
    }

    fn rename(r: &mut Resource, name: &str) {
        r.store_previous_id();
        r.set_name(name);
    }

    #[test]
    fn renamed_config_map_is_followed_by_its_references() {
        let mut cm =
            res(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}));
        rename(&mut cm, "cfg-abc");
        let dep = res(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {
                "volumes": [{"name": "v", "configMap": {"name": "cfg"}}, {"name": "w", "configMap": {"name": "other"}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}}}),
        );
        let mut all = vec![cm, dep];
        fix(&mut all, &TransformerConfig::builtin().name_reference).unwrap();
        let spec = &all[1].as_value()["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][0]["configMap"]["name"], json!("cfg-abc"));
        assert_eq!(spec["volumes"][1]["configMap"]["name"], json!("other"));
        assert_eq!(
            spec["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            json!("cfg-abc")
        );
    }

    #[test]
    fn role_binding_follows_role_and_service_account_namespace() {
        let mut role = res(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r", "namespace": "apps"}}),
        );
        rename(&mut role, "x-r");
        let mut sa =
            res(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}));
        sa.store_previous_id();
        sa.set_name("x-sa");
        sa.set_namespace("apps");
        let rb = res(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "rb", "namespace": "apps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
        );
        let mut all = vec![role, sa, rb];
        fix(&mut all, &TransformerConfig::builtin().name_reference).unwrap();
        let rb = all[2].as_value();
        assert_eq!(rb["roleRef"]["name"], json!("x-r"));
        assert_eq!(
            rb["subjects"][0],
            json!({"kind": "ServiceAccount", "name": "x-sa", "namespace": "apps"})
        );
    }
}
