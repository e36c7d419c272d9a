//! SOPS-encrypted objects leave the render still encrypted; each carries the file it came from,
//! as committed, so the sync controller can verify that file's MAC before it decrypts.
//!
//! kustomize changes what it builds (key order, `namespace`, labels, `namePrefix`) and SOPS's
//! MAC covers the whole file, so the MAC can only be checked on the file itself. The render
//! controller holds no keys; it only finds, by the encrypted MAC every SOPS file carries (its
//! nonce is random, so it names one file), the file an object's SOPS metadata came from:
//!
//! - a resource with a top-level `sops` mapping (a SOPS-encrypted manifest);
//! - a Secret a secretGenerator made from a SOPS-encrypted dotenv file (`envs:`), whose keys
//!   include `sops_mac`.
//!
//! The file goes into the object's `sops` mapping under [`SOURCE_KEY`] (`{path, format,
//! document}`); the sync controller
//! removes the whole `sops` mapping before it applies. Whole SOPS files a secretGenerator put
//! into a Secret (`files:`) are complete in the Secret already and need nothing here.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use plumb_sops::{ENC_PREFIX, Format, SOURCE_KEY};

/// Files larger than this are not looked into (as Flux's decryptor bounds its input).
const MAX_FILE: u64 = 5 << 20;

/// The encrypted MAC an object's SOPS metadata carries, if it has any.
fn wanted_mac(object: &Value) -> Option<String> {
    if let Some(mac) = object.pointer("/sops/mac").and_then(Value::as_str) {
        return Some(mac.to_owned());
    }
    if object.get("kind").and_then(Value::as_str) == Some("Secret") {
        let b64 = object.pointer("/data/sops_mac").and_then(Value::as_str)?;
        // kustomize wraps generated values in lines of 70 characters.
        let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let mac = STANDARD.decode(compact).ok()?;
        return String::from_utf8(mac).ok();
    }
    None
}

/// A SOPS file (or one document of a YAML file of separately encrypted documents).
struct Source {
    path: String,
    format: Format,
    document: String,
}

/// Every SOPS document under `root` whose MAC is in `wanted`, by MAC.
fn index(root: &Path, wanted: &HashSet<String>) -> HashMap<String, Source> {
    let mut found = HashMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if entry.file_name() != ".git" {
                    dirs.push(path);
                }
                continue;
            }
            if !kind.is_file() || entry.metadata().map_or(true, |m| m.len() > MAX_FILE) {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else {
                continue;
            };
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            if !text.contains(ENC_PREFIX) {
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let format = Format::for_path(&rel);
            for (mac, document) in documents(&text, format) {
                if wanted.contains(&mac) {
                    found.insert(
                        mac,
                        Source {
                            path: rel.clone(),
                            format,
                            document,
                        },
                    );
                }
            }
        }
    }
    found
}

/// The SOPS documents of one file with their MACs. A YAML file SOPS encrypted as a whole has
/// its metadata in the first document only; a file of documents encrypted one by one (and
/// concatenated) has one per document, and each is its own SOPS file.
fn documents(text: &str, format: Format) -> Vec<(String, String)> {
    if format != Format::Yaml {
        return plumb_sops::stored_mac(text.as_bytes(), format)
            .map(|mac| vec![(mac, text.to_owned())])
            .unwrap_or_default();
    }
    let Ok(docs) = serde_yaml::Deserializer::from_str(text)
        .map(serde_yaml::Value::deserialize)
        .collect::<Result<Vec<_>, _>>()
    else {
        return Vec::new();
    };
    let macs: Vec<Option<String>> = docs
        .iter()
        .map(|d| {
            d.get("sops")
                .and_then(|s| s.get("mac"))
                .and_then(serde_yaml::Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    if macs.iter().flatten().count() <= 1 {
        return macs
            .into_iter()
            .flatten()
            .map(|mac| (mac, text.to_owned()))
            .collect();
    }
    docs.iter()
        .zip(macs)
        .filter_map(|(doc, mac)| Some((mac?, serde_yaml::to_string(doc).ok()?)))
        .collect()
}

/// Attaches to every SOPS-encrypted object the file it came from (see the module docs). An
/// object whose file is not found is left as it is; the sync controller refuses to apply it.
/// Whether any object was SOPS-encrypted (the whole tree was then searched).
pub fn attach(root: &Path, objects: &mut [Value]) -> bool {
    let wanted: HashSet<String> = objects.iter().filter_map(wanted_mac).collect();
    if wanted.is_empty() {
        return false;
    }
    let sources = index(root, &wanted);
    for object in objects.iter_mut() {
        let Some(source) = wanted_mac(object).and_then(|m| sources.get(&m)) else {
            continue;
        };
        let Some(map) = object.as_object_mut() else {
            continue;
        };
        let sops = map
            .entry("sops")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(sops) = sops.as_object_mut() {
            sops.insert(
                SOURCE_KEY.to_owned(),
                json!({
                    "path": source.path,
                    "format": source.format.name(),
                    "document": source.document,
                }),
            );
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_get_the_file_their_mac_names_and_others_are_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let file = "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData:\n  k: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops:\n  mac: ENC[AES256_GCM,data:m1,iv:y,tag:z,type:str]\n  lastmodified: \"2026-11-29T09:40:00Z\"\n  age: [{recipient: age1x, enc: e}]\n";
        fs::create_dir_all(tmp.path().join("app")).unwrap();
        fs::write(tmp.path().join("app/secret.yaml"), file).unwrap();
        fs::write(
            tmp.path().join("app/db.env"),
            "password=ENC[AES256_GCM,data:p,iv:y,tag:z,type:str]\nsops_mac=ENC[AES256_GCM,data:m2,iv:y,tag:z,type:str]\nsops_lastmodified=2026-11-29T09:40:00Z\nsops_age__list_0__map_recipient=age1x\nsops_age__list_0__map_enc=e\n",
        )
        .unwrap();
        let mut objects = vec![
            serde_yaml::from_str::<Value>(file).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "gen-5f7"},
                   "data": {"sops_mac": STANDARD.encode("ENC[AES256_GCM,data:m2,iv:y,tag:z,type:str]")}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lost"},
                   "sops": {"mac": "ENC[AES256_GCM,data:gone,iv:y,tag:z,type:str]"}}),
        ];
        attach(tmp.path(), &mut objects);
        let source = &objects[0]["sops"][SOURCE_KEY];
        assert_eq!(source["path"], "app/secret.yaml");
        assert_eq!(source["format"], "yaml");
        assert_eq!(source["document"], file);
        assert_eq!(objects[1]["sops"][SOURCE_KEY]["path"], "app/db.env");
        assert_eq!(objects[1]["sops"][SOURCE_KEY]["format"], "dotenv");
        assert!(objects[2].get("sops").is_none());
        assert!(objects[3]["sops"].get(SOURCE_KEY).is_none());
    }
}
