//! kustomize's image transformer: new names, tags and digests for container images.

use super::restore;
use crate::build::Acc;
use crate::error::{FieldError, SelectorError, TransformError};
use crate::fieldspec::{self, Create};
use crate::kustomization::{FieldSpec, Image};
use serde_json::Value;

/// Split an image reference into name, tag and digest the way kustomize does.
fn split_image(s: &str) -> (String, String, String) {
    let slash = s.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &s[slash..];
    let at = search.find('@');
    let colon = search.find(':');
    match (colon, at) {
        (None, None) => (s.to_string(), String::new(), String::new()),
        (c, Some(a)) if c.is_none_or(|c| a < c) => {
            let a = a + slash;
            (s[..a].to_string(), String::new(), s[a + 1..].to_string())
        }
        (Some(c), Some(a)) => {
            let (c, a) = (c + slash, a + slash);
            (
                s[..c].to_string(),
                s[c + 1..a].to_string(),
                s[a + 1..].to_string(),
            )
        }
        (Some(c), None) => {
            let c = c + slash;
            (s[..c].to_string(), s[c + 1..].to_string(), String::new())
        }
        (None, Some(_)) => (s.to_string(), String::new(), String::new()),
    }
}

fn update_image(value: &mut Value, img: &Image, matcher: &regex::Regex) -> Result<(), FieldError> {
    let Value::String(s) = value else {
        return Err(FieldError::ImageNotString);
    };
    if !matcher.is_match(s) {
        return Ok(());
    }
    let (mut name, mut tag, mut digest) = split_image(s);
    if !img.new_name.is_empty() {
        name = img.new_name.clone();
    }
    if !img.new_tag.is_empty() && !img.digest.is_empty() {
        tag = img.new_tag.clone();
        digest = img.digest.clone();
    } else if !img.new_tag.is_empty() {
        tag = img.new_tag.clone();
        digest.clear();
    } else if !img.digest.is_empty() {
        tag.clear();
        digest = img.digest.clone();
    } else if !img.tag_suffix.is_empty() {
        tag.push_str(&img.tag_suffix);
        digest.clear();
    }
    if !tag.is_empty() {
        name = format!("{name}:{tag}");
    }
    if !digest.is_empty() {
        name = format!("{name}@{digest}");
    }
    *s = name;
    Ok(())
}

fn walk_containers(v: &mut Value, img: &Image, re: &regex::Regex) -> Result<(), FieldError> {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                walk_containers(child, img, re)?;
                if (k == "containers" || k == "initContainers")
                    && let Value::Array(items) = child
                {
                    for item in items {
                        if let Some(image) = item.get_mut("image") {
                            update_image(image, img, re)?;
                        }
                    }
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|i| walk_containers(i, img, re)),
        _ => Ok(()),
    }
}

/// kustomize's image transformer: every `containers`/`initContainers` list, then the specs.
pub(crate) fn set(acc: &mut Acc, img: &Image, specs: &[FieldSpec]) -> Result<(), TransformError> {
    let re = regex::Regex::new(&format!(
        "^{}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$",
        img.name
    ))
    .map_err(SelectorError::from)?;
    for r in acc.res.iter_mut() {
        if r.kind() == "CustomResourceDefinition" {
            continue;
        }
        let gvk = r.gvk();
        let mut doc = Value::Object(std::mem::take(&mut r.obj));
        let mut res = walk_containers(&mut doc, img, &re);
        for fs in specs {
            if res.is_err() || !fs.applies_to(&gvk) {
                continue;
            }
            let path = fieldspec::split_path(&fs.path);
            res = fieldspec::visit(&mut doc, &path, false, Create::Nothing, &mut |v| {
                update_image(v, img, &re)
            });
        }
        r.obj = restore(doc);
        res?;
    }
    Ok(())
}
