//! SOPS decryption, just before apply. Rendered artifacts keep SOPS-encrypted objects encrypted;
//! this is the only place plaintext exists, in memory, on its way into the Secrets applied.
//!
//! Three shapes are decrypted (see `docs/sops.md`):
//! - an object with a top-level `sops` mapping (a SOPS-encrypted manifest, or a Secret a
//!   secretGenerator made from a SOPS dotenv file): the render controller attached the file it
//!   came from ([`SOURCE_KEY`]); that file is decrypted and its MAC verified, then every
//!   `ENC[...]` value of the object (base64-wrapped in a Secret's `data`) is replaced by the
//!   plaintext the verified file gives for that exact ciphertext;
//! - a Secret `data`/`stringData` value that is a whole SOPS file (secretGenerator `files:`):
//!   decrypted, verified and written out in its format, as `sops --decrypt` writes it;
//! - anything else still holding an `ENC[...]` value is refused.
//!
//! Every object is decrypted before the first is applied: a wrong key, a changed file or a
//! missing key applies nothing of the render. No error carries a value.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Map, Value};

use plumb_api::Sync;
use plumb_api::decryption::{AGE_KEY_SUFFIX, PGP_KEY_SUFFIX};
use plumb_artifact::TokenSecret;
use plumb_sops::{ENC_PREFIX, Format, Keyring, SOURCE_KEY, Scalar};

use crate::manifest::Manifest;
use crate::sync_view::SyncView;
use plumb_substitute::SecretValues;

/// Why a render could not be decrypted. Names objects, files, keys and Secrets, never values.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// An object is SOPS-encrypted but the Sync does not ask for decryption.
    #[error("{object} is SOPS-encrypted, but the Sync sets no spec.decryption")]
    NotConfigured {
        /// The object, `Kind/namespace/name`.
        object: String,
    },
    /// An object carries SOPS metadata whose file the render did not find in the source.
    #[error(
        "{object} carries SOPS metadata, but no file of the source has its MAC (was its sops block copied or patched?)"
    )]
    NoSource {
        /// The object.
        object: String,
    },
    /// The file an object came from (or a whole SOPS file in a Secret) did not decrypt.
    #[error("{object}: {file}: {source}")]
    File {
        /// The object.
        object: String,
        /// The file: its path in the source, or the Secret key holding it.
        file: String,
        /// Why.
        source: plumb_sops::Error,
    },
    /// An encrypted value of an object is not one the verified file holds.
    #[error("{object}: the encrypted value at {at} is not one of {file}, whose MAC was verified")]
    Unvouched {
        /// The object.
        object: String,
        /// Where in the object, e.g. `data.password`.
        at: String,
        /// The file.
        file: String,
    },
    /// An encrypted value without any SOPS metadata to verify it by.
    #[error(
        "{object}: the value at {at} is SOPS-encrypted but the object carries no SOPS metadata"
    )]
    Stray {
        /// The object.
        object: String,
        /// Where in the object.
        at: String,
    },
    /// The decryption keys could not be read.
    #[error("decryption Secret {secret}: {why}")]
    Keys {
        /// `namespace/name`.
        secret: String,
        /// What is wrong.
        why: String,
    },
    /// No key Secret is named at all.
    #[error("spec.decryption names no secretRef and the sync controller has no --sops-age-secret")]
    NoKeySecret,
}

/// Decodes a Secret `data` value; kustomize wraps generated values in lines of 70 characters.
fn b64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).ok()
}

fn describe(m: &Manifest) -> String {
    match &m.namespace {
        Some(ns) => format!("{}/{ns}/{}", m.kind, m.name),
        None => format!("{}/{}", m.kind, m.name),
    }
}

fn is_secret(m: &Manifest) -> bool {
    m.kind == "Secret" && m.api_version == "v1"
}

/// A whole SOPS file held in a Secret value, and the format to read it in: the key's extension
/// as `sops` would pick it, the binary format's JSON envelope for any other name.
fn whole_file(key: &str, bytes: &[u8]) -> Option<Format> {
    let sniffed = plumb_sops::sniff(bytes)?;
    Some(match Format::for_path(key) {
        Format::Binary if sniffed == Format::Json => Format::Binary,
        Format::Binary => sniffed,
        named => named,
    })
}

fn contains_encrypted(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with(ENC_PREFIX),
        Value::Array(a) => a.iter().any(contains_encrypted),
        Value::Object(o) => o.values().any(contains_encrypted),
        _ => false,
    }
}

/// The first object that needs decrypting, if any.
pub fn first_encrypted(manifests: &[Manifest]) -> Option<String> {
    manifests
        .iter()
        .find(|m| {
            m.object.get("sops").is_some()
                || contains_encrypted(&m.object)
                || (is_secret(m)
                    && m.object
                        .get("data")
                        .and_then(Value::as_object)
                        .is_some_and(|data| {
                            data.iter().any(|(k, v)| {
                                v.as_str().and_then(b64).is_some_and(|b| {
                                    whole_file(k, &b).is_some()
                                        || b.starts_with(ENC_PREFIX.as_bytes())
                                })
                            })
                        }))
        })
        .map(describe)
}

/// Plaintext of a verified value, as JSON (for manifests) or as bytes (for Secret `data`).
fn json_of(s: &Scalar) -> Value {
    match s {
        Scalar::Str(s) | Scalar::Time(s) => Value::String(s.clone()),
        Scalar::Int(i) => Value::from(*i),
        Scalar::Float(f) => serde_json::Number::from_f64(*f)
            .map_or_else(|| Value::String(s.to_text()), Value::Number),
        Scalar::Bool(b) => Value::Bool(*b),
        Scalar::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
    }
}

fn bytes_of(s: &Scalar) -> Vec<u8> {
    match s {
        Scalar::Str(s) | Scalar::Time(s) => s.clone().into_bytes(),
        Scalar::Bytes(b) => b.clone(),
        other => other.to_text().into_bytes(),
    }
}

/// Replaces every `ENC[...]` value under `v` by the plaintext `values` holds for it.
struct Replace<'a> {
    object: &'a str,
    file: &'a str,
    values: &'a HashMap<String, Scalar>,
}

impl Replace<'_> {
    fn unvouched(&self, at: &str) -> DecryptError {
        DecryptError::Unvouched {
            object: self.object.to_owned(),
            at: at.to_owned(),
            file: self.file.to_owned(),
        }
    }

    fn value(&self, v: &mut Value, at: &str) -> Result<(), DecryptError> {
        match v {
            Value::String(s) if s.starts_with(ENC_PREFIX) => {
                let plain = self
                    .values
                    .get(s.as_str())
                    .ok_or_else(|| self.unvouched(at))?;
                *v = json_of(plain);
            }
            Value::Array(a) => {
                for (i, item) in a.iter_mut().enumerate() {
                    self.value(item, &format!("{at}[{i}]"))?;
                }
            }
            Value::Object(o) => {
                for (k, item) in o.iter_mut() {
                    self.value(item, &join(at, k))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A Secret's `data`: `ENC[...]` values of an encrypted manifest (whose plaintext is the
    /// base64 text the file held), or base64 of `ENC[...]` values (a secretGenerator's `envs:`).
    fn data(&self, data: &mut Map<String, Value>) -> Result<(), DecryptError> {
        for (k, v) in data.iter_mut() {
            if let Some(s) = v.as_str().filter(|s| s.starts_with(ENC_PREFIX)) {
                let plain = self
                    .values
                    .get(s)
                    .ok_or_else(|| self.unvouched(&join("data", k)))?;
                *v = Value::String(String::from_utf8_lossy(&bytes_of(plain)).into_owned());
                continue;
            }
            let Some(decoded) = v.as_str().and_then(b64) else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&decoded) else {
                continue;
            };
            if text.starts_with(ENC_PREFIX) {
                let plain = self
                    .values
                    .get(text)
                    .ok_or_else(|| self.unvouched(&join("data", k)))?;
                *v = Value::String(STANDARD.encode(bytes_of(plain)));
            }
        }
        Ok(())
    }
}

fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// Adds every plaintext value of a decrypted file to `secrets`.
fn note_values(plain: &plumb_sops::Decrypted, secrets: &mut SecretValues) {
    for v in plain.values.values() {
        secrets.add(&String::from_utf8_lossy(&bytes_of(v)));
    }
}

/// Adds the values of a decrypted Secret to `secrets`: `stringData` as it is, `data` decoded
/// (its base64 form is one of the forms every value is masked in).
fn note_secret_data(object: &Map<String, Value>, secrets: &mut SecretValues) {
    for (field, encoded) in [("data", true), ("stringData", false)] {
        let Some(entries) = object.get(field).and_then(Value::as_object) else {
            continue;
        };
        for v in entries.values().filter_map(Value::as_str) {
            match encoded.then(|| b64(v)).flatten() {
                Some(bytes) => secrets.add(&String::from_utf8_lossy(&bytes)),
                None => secrets.add(v),
            }
        }
    }
}

/// Decrypts an object with a top-level `sops` mapping, by the file the render attached.
fn decrypt_by_source(
    m: &Manifest,
    object: &mut Map<String, Value>,
    sops: &Value,
    keys: &Keyring,
    secrets: &mut SecretValues,
) -> Result<(), DecryptError> {
    let name = describe(m);
    let source = sops.get(SOURCE_KEY).ok_or_else(|| DecryptError::NoSource {
        object: name.clone(),
    })?;
    let text = |k: &str| source.get(k).and_then(Value::as_str).unwrap_or_default();
    let file = text("path").to_owned();
    let format = match text("format") {
        "yaml" => Format::Yaml,
        "json" => Format::Json,
        "dotenv" => Format::Dotenv,
        "ini" => Format::Ini,
        _ => Format::Binary,
    };
    let plain =
        plumb_sops::decrypt(text("document").as_bytes(), format, keys).map_err(|source| {
            DecryptError::File {
                object: name.clone(),
                file: file.clone(),
                source,
            }
        })?;
    note_values(&plain, secrets);
    let replace = Replace {
        object: &name,
        file: &file,
        values: &plain.values,
    };
    let secret = is_secret(m);
    if secret && matches!(format, Format::Dotenv | Format::Ini) {
        // The file's flattened metadata became keys of the generated Secret.
        if let Some(data) = object.get_mut("data").and_then(Value::as_object_mut) {
            data.retain(|k, _| !k.starts_with("sops_"));
        }
    }
    for (k, v) in object.iter_mut() {
        if secret && k == "data" {
            if let Some(data) = v.as_object_mut() {
                replace.data(data)?;
            }
        } else {
            replace.value(v, k)?;
        }
    }
    Ok(())
}

/// Decrypts the whole SOPS files a Secret holds as values (secretGenerator `files:`).
fn decrypt_whole_files(
    m: &Manifest,
    object: &mut Map<String, Value>,
    keys: &Keyring,
    secrets: &mut SecretValues,
) -> Result<(), DecryptError> {
    for (field, encoded) in [("data", true), ("stringData", false)] {
        let Some(entries) = object.get_mut(field).and_then(Value::as_object_mut) else {
            continue;
        };
        for (k, v) in entries.iter_mut() {
            let Some(s) = v.as_str() else { continue };
            let bytes = if encoded {
                match b64(s) {
                    Some(b) => b,
                    None => continue,
                }
            } else {
                s.as_bytes().to_vec()
            };
            let Some(format) = whole_file(k, &bytes) else {
                continue;
            };
            let file = format!("{field}.{k}");
            let plain = plumb_sops::decrypt(&bytes, format, keys)
                .and_then(|d| {
                    note_values(&d, secrets);
                    d.emit(format)
                })
                .map_err(|source| DecryptError::File {
                    object: describe(m),
                    file: file.clone(),
                    source,
                })?;
            secrets.add(&String::from_utf8_lossy(&plain));
            *v = Value::String(if encoded {
                STANDARD.encode(plain)
            } else {
                String::from_utf8_lossy(&plain).into_owned()
            });
        }
    }
    Ok(())
}

/// Where an `ENC[...]` value is left in `v`, if anywhere.
fn leftover(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with(ENC_PREFIX) => Some(at.to_owned()),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| leftover(x, &format!("{at}[{i}]"))),
        Value::Object(o) => o.iter().find_map(|(k, x)| leftover(x, &join(at, k))),
        _ => None,
    }
}

/// Decrypts every SOPS-encrypted object of a render; on any failure, nothing is returned. Every
/// plaintext value goes into `secrets`, so no message can show it.
pub fn decrypt_all(
    manifests: &[Manifest],
    keys: &Keyring,
    secrets: &mut SecretValues,
) -> Result<Vec<Manifest>, DecryptError> {
    let mut out = Vec::with_capacity(manifests.len());
    for m in manifests {
        let mut m = m.clone();
        let Some(object) = m.object.as_object_mut() else {
            out.push(m);
            continue;
        };
        let mut object = std::mem::take(object);
        let encrypted = object.remove("sops");
        if let Some(sops) = &encrypted {
            decrypt_by_source(&m, &mut object, sops, keys, secrets)?;
        }
        if is_secret(&m) {
            decrypt_whole_files(&m, &mut object, keys, secrets)?;
            if encrypted.is_some() {
                note_secret_data(&object, secrets);
            }
        }
        let mut check = object.clone();
        if let Some(data) = check.get_mut("data").and_then(Value::as_object_mut) {
            for v in data.values_mut() {
                if let Some(text) = v
                    .as_str()
                    .and_then(b64)
                    .and_then(|b| String::from_utf8(b).ok())
                {
                    *v = Value::String(text);
                }
            }
        }
        if let Some(at) = leftover(&Value::Object(check), "") {
            return Err(DecryptError::Stray {
                object: describe(&m),
                at,
            });
        }
        m.object = Value::Object(object);
        out.push(m);
    }
    Ok(out)
}

/// The namespace of a default key Secret that names none: `$POD_NAMESPACE`, else the client's.
pub fn controller_namespace(client: &kube::Client) -> String {
    std::env::var("POD_NAMESPACE").unwrap_or_else(|_| client.default_namespace().to_owned())
}

/// The Syncs whose keys Secret `namespace/name` holds (by `spec.decryption.secretRef`, or the
/// default key Secret for those that name none): a change of it wakes them, so a Sync waiting for
/// a missing or wrong key recovers as soon as the Secret is created or fixed.
pub fn key_readers(
    syncs: &[Arc<SyncView>],
    default: Option<&TokenSecret>,
    controller_namespace: &str,
    namespace: &str,
    name: &str,
) -> Vec<ObjectRef<SyncView>> {
    syncs
        .iter()
        .filter(|view| view.decrypts())
        .filter(|view| {
            // Only the Syncs that decrypt are read back; one that cannot be is woken (its
            // pass then says why).
            view.sync().map_or(true, |s| {
                key_secret(&s, default, controller_namespace)
                    .is_ok_and(|(ns, n)| ns == namespace && n == name)
            })
        })
        .map(|view| ObjectRef::from_obj(view.as_ref()))
        .collect()
}

/// The Secret holding a Sync's keys: its `secretRef`, in the Sync's own namespace (a Sync can
/// name no other), else the controller's default.
fn key_secret(
    sync: &Sync,
    default: Option<&TokenSecret>,
    controller_namespace: &str,
) -> Result<(String, String), DecryptError> {
    let namespace = sync.metadata.namespace.clone().unwrap_or_default();
    let decryption = sync.spec.decryption.as_ref();
    match decryption.and_then(|d| d.secret_ref.as_ref()) {
        Some(r) => Ok((namespace, r.name.clone())),
        None => default
            .map(|s| {
                (
                    s.namespace
                        .clone()
                        .unwrap_or_else(|| controller_namespace.to_owned()),
                    s.name.clone(),
                )
            })
            .ok_or(DecryptError::NoKeySecret),
    }
}

/// Reads the keys of a key Secret: age identities from its `*.agekey` entries, PGP private keys
/// from its `*.asc` entries (Flux's convention). An entry that holds no usable key is an error
/// naming it.
pub fn keyring_from(
    secret: &str,
    data: &HashMap<String, Vec<u8>>,
) -> Result<Keyring, DecryptError> {
    let bad = |why: String| DecryptError::Keys {
        secret: secret.to_owned(),
        why,
    };
    let mut keys = Keyring::new();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let add = if name.ends_with(AGE_KEY_SUFFIX) {
            Keyring::add_age_identities
        } else if name.ends_with(PGP_KEY_SUFFIX) {
            Keyring::add_pgp_keys
        } else {
            continue;
        };
        let text = std::str::from_utf8(&data[name])
            .map_err(|_| bad(format!("entry {name} is not text")))?;
        add(&mut keys, text).map_err(|why| bad(format!("entry {name}: {why}")))?;
    }
    if keys.is_empty() {
        return Err(bad("holds no *.agekey or *.asc entry".into()));
    }
    Ok(keys)
}

/// Loads the keys a Sync decrypts with (see [`key_secret`]).
pub async fn keyring(
    client: &kube::Client,
    sync: &Sync,
    default: Option<&TokenSecret>,
) -> Result<Keyring, DecryptError> {
    let (namespace, name) = key_secret(sync, default, &controller_namespace(client))?;
    let full = format!("{namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = api.get_opt(&name).await.map_err(|e| DecryptError::Keys {
        secret: full.clone(),
        why: format!("cannot be read: {e}"),
    })?;
    let secret = secret.ok_or_else(|| DecryptError::Keys {
        secret: full.clone(),
        why: "not found".into(),
    })?;
    let data: HashMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    keyring_from(&full, &data)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sync(ns: &str, name: &str, decryption: Value) -> Arc<SyncView> {
        let mut spec = json!({"sourceRef": {"kind": "GitRepository", "name": "repo"}});
        if !decryption.is_null() {
            spec["decryption"] = decryption;
        }
        let mut s = Sync::new(name, serde_json::from_value(spec).unwrap());
        s.metadata.namespace = Some(ns.into());
        Arc::new(SyncView::of(s))
    }

    #[test]
    fn a_key_secret_wakes_the_syncs_that_decrypt_with_it() {
        let own = json!({"provider": "sops", "secretRef": {"name": "keys"}});
        let by_default = json!({"provider": "sops"});
        let syncs = [
            sync("team-a", "own", own.clone()),
            sync("team-b", "same-name-elsewhere", own),
            sync("team-a", "by-default", by_default),
            sync("team-a", "plain", Value::Null),
        ];
        let names = |refs: Vec<ObjectRef<SyncView>>| -> Vec<String> {
            refs.into_iter().map(|r| r.name).collect()
        };
        let default: TokenSecret = "plumb-system/sops-age".parse().unwrap();
        assert_eq!(
            names(key_readers(
                &syncs,
                Some(&default),
                "plumb-system",
                "team-a",
                "keys"
            )),
            ["own"]
        );
        assert_eq!(
            names(key_readers(
                &syncs,
                Some(&default),
                "plumb-system",
                "plumb-system",
                "sops-age"
            )),
            ["by-default"]
        );
        // Without a default, a Sync that names no Secret waits for none.
        assert!(key_readers(&syncs, None, "plumb-system", "plumb-system", "sops-age").is_empty());
        assert!(key_readers(&syncs, Some(&default), "plumb-system", "team-a", "other").is_empty());
    }
}
