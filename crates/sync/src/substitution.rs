//! Finishing the substitution of values from `substituteFrom` Secrets, just before apply (see
//! `docs/substitution.md`). The render controller publishes an object whose substitution used
//! a Secret's value unsubstituted, with the Secrets and `resourceVersion`s it read
//! ([`plumb_substitute::deferred`]); here those Secrets are read again and, only when each is
//! still the version the render used (the one the Policies judged), the substitution is done
//! as the render did it. Like decryption, this happens in memory only, for every object of the
//! render before the first is applied. No error carries a value.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use plumb_sops::SOURCE_KEY;
use plumb_substitute::deferred::{self, Deferred, SecretVersion};
use plumb_substitute::{SubstituteError, SubstituteLimits};
use serde_json::Value;

use crate::manifest::{Manifest, ManifestError};
use plumb_substitute::SecretValues;

/// Why the deferred substitution of a render could not be finished. Names Secrets, objects and
/// variables, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SubstitutionError {
    /// A Secret changed (or went) since the render read it: the render controller renders again
    /// on that change, and the new render is applied instead.
    #[error(
        "substituteFrom Secret {namespace}/{name} is not the version the render used \
         (resourceVersion {rendered}, now {now}); waiting for the render of the new version"
    )]
    Changed {
        /// The Secret's namespace (the Sync's).
        namespace: String,
        /// Its name.
        name: String,
        /// The `resourceVersion` the render read.
        rendered: String,
        /// What the API server holds now (`none` when the Secret is gone).
        now: String,
    },
    /// Reading a Secret failed.
    #[error("substituteFrom: reading Secret {namespace}/{name}: {source}")]
    Read {
        /// The Secret's namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The object's substitution record does not read (an artifact not written by plumb's
    /// render controller).
    #[error("{object}: unreadable {key}: {source}", key = deferred::DEFERRED_KEY)]
    Record {
        /// The object, `Kind/namespace/name`.
        object: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A variable the render took from a Secret is not in it (cannot happen with the same
    /// `resourceVersion`, unless the artifact is not the render's).
    #[error("{object}: Secret {name} holds no key {var:?}")]
    MissingKey {
        /// The object.
        object: String,
        /// The Secret's name.
        name: String,
        /// The variable.
        var: String,
    },
    /// The substitution itself failed.
    #[error(transparent)]
    Substitute(#[from] SubstituteError),
    /// The substituted object is not an object any more.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl SubstitutionError {
    /// Whether the failure passes without a change by a person (a newer render is coming, or
    /// the API failed).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SubstitutionError::Changed { .. } | SubstitutionError::Read { .. }
        )
    }
}

/// Whether any object of the render waits for its substitution.
pub fn any_deferred(manifests: &[Manifest]) -> bool {
    manifests.iter().any(|m| deferred::is_deferred(&m.object))
}

fn describe(m: &Manifest) -> String {
    match &m.namespace {
        Some(ns) => format!("{}/{ns}/{}", m.kind, m.name),
        None => format!("{}/{}", m.kind, m.name),
    }
}

/// The Secrets the render's deferred objects use, read from `namespace` once each and checked
/// against the `resourceVersion` the render read: their decoded data by name.
async fn read_secrets(
    client: &kube::Client,
    namespace: &str,
    records: &[(usize, Deferred)],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, SubstitutionError> {
    let wanted: std::collections::BTreeSet<&SecretVersion> = records
        .iter()
        .flat_map(|(_, d)| d.secret_versions())
        .collect();
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut out = BTreeMap::new();
    for version in wanted {
        let secret =
            api.get_opt(&version.name)
                .await
                .map_err(|source| SubstitutionError::Read {
                    namespace: namespace.to_owned(),
                    name: version.name.clone(),
                    source,
                })?;
        let now = secret
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone());
        let Some(secret) = secret.filter(|_| now.as_deref() == Some(&version.resource_version))
        else {
            return Err(SubstitutionError::Changed {
                namespace: namespace.to_owned(),
                name: version.name.clone(),
                rendered: version.resource_version.clone(),
                now: now.unwrap_or_else(|| "none".to_owned()),
            });
        };
        let data = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect();
        out.insert(version.name.clone(), data);
    }
    Ok(out)
}

/// Finishes the substitution of every deferred object of `manifests` with the Secrets of
/// `namespace` (the Sync's), all or none; other objects pass unchanged. Every Secret value
/// substituted goes into `secret_values`, so no message can show it.
pub async fn finish_all(
    client: &kube::Client,
    namespace: &str,
    mut manifests: Vec<Manifest>,
    secret_values: &mut SecretValues,
) -> Result<Vec<Manifest>, SubstitutionError> {
    let mut records = Vec::new();
    for (i, m) in manifests.iter_mut().enumerate() {
        if let Some(record) = deferred::take(&mut m.object) {
            let record = record.map_err(|source| SubstitutionError::Record {
                object: describe(m),
                source,
            })?;
            records.push((i, record));
        }
    }
    if records.is_empty() {
        return Ok(manifests);
    }
    let secrets = read_secrets(client, namespace, &records).await?;
    for (i, record) in records {
        let m = &mut manifests[i];
        let object = describe(m);
        let mut values = BTreeMap::new();
        for (var, version) in &record.secrets {
            let value = secrets
                .get(&version.name)
                .and_then(|data| data.get(var))
                .ok_or_else(|| SubstitutionError::MissingKey {
                    object: object.clone(),
                    name: version.name.clone(),
                    var: var.clone(),
                })?;
            secret_values.add(value);
            values.insert(var.clone(), value.clone());
        }
        m.object = finish_one(std::mem::take(&mut m.object), &record, &values)?;
        *m = Manifest::from_value(std::mem::take(&mut m.object), i + 1)?;
    }
    Ok(manifests)
}

/// Substitutes one object as the render did. The SOPS file the render controller attached
/// (the file as committed, verified by the decryption that follows) is set aside meanwhile:
/// the render substituted the object before attaching it.
fn finish_one(
    mut object: Value,
    record: &Deferred,
    values: &BTreeMap<String, String>,
) -> Result<Value, SubstituteError> {
    let source = object
        .get_mut("sops")
        .and_then(Value::as_object_mut)
        .and_then(|sops| sops.remove(SOURCE_KEY));
    // The render already held the whole render to its output limit with these same values.
    let mut done = deferred::finish(object, record, values, &SubstituteLimits::default())?;
    if let Some(source) = source
        && let Some(sops) = done.get_mut("sops").and_then(Value::as_object_mut)
    {
        sops.insert(SOURCE_KEY.to_owned(), source);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sops_source_is_set_aside_while_the_object_is_substituted() {
        let record = Deferred {
            values: BTreeMap::new(),
            secrets: BTreeMap::from([(
                "p".to_owned(),
                SecretVersion {
                    name: "s".into(),
                    resource_version: "1".into(),
                },
            )]),
            common_metadata: None,
            substituted_id: None,
        };
        let object = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "x", "labels": {"l": "${p}"}},
            "sops": {"mac": "ENC[m]", SOURCE_KEY: {"document": "name: ${p}"}}});
        let values = BTreeMap::from([("p".to_owned(), "v".to_owned())]);
        let done = finish_one(object, &record, &values).unwrap();
        assert_eq!(done["metadata"]["labels"]["l"], "v");
        assert_eq!(done["sops"][SOURCE_KEY]["document"], "name: ${p}");
        assert_eq!(done["sops"]["mac"], "ENC[m]");
    }
}
