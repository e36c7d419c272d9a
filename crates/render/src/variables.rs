//! `substituteFrom`: the data of the ConfigMaps and Secrets a Sync takes substitution variables
//! from, read in the Sync's namespace straight from the API (as Flux does, so a render never
//! uses a stale value), and which Syncs a change of one of them wakes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use plumb_api::reference::DataKind;
use plumb_api::sync::SubstituteReference;
use plumb_substitute::SecretValues;
use plumb_substitute::deferred::VariableSource;

/// Why the variables of a Sync could not be read. Never carries a value.
#[derive(Debug, thiserror::Error)]
pub enum VariablesError {
    /// A source that is not `optional` does not exist.
    #[error("substituteFrom: {kind:?} {namespace}/{name} not found")]
    NotFound {
        /// ConfigMap or Secret.
        kind: DataKind,
        /// Its namespace (the Sync's).
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The API refused or failed the read.
    #[error("substituteFrom: reading {kind:?} {namespace}/{name}: {source}")]
    Api {
        /// ConfigMap or Secret.
        kind: DataKind,
        /// Its namespace (the Sync's).
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

impl VariablesError {
    /// Whether a retry may succeed without a change to any object (an API failure); a missing
    /// source is waited for by the watch instead.
    pub fn is_transient(&self) -> bool {
        matches!(self, VariablesError::Api { .. })
    }
}

/// The data of each of `refs`, in order, read from `namespace`; a missing `optional` source is
/// left out. Secret values are decoded (and never logged).
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    refs: &[SubstituteReference],
) -> Result<Vec<BTreeMap<String, String>>, VariablesError> {
    Ok(load_sources(client, namespace, refs)
        .await?
        .into_iter()
        .map(|s| s.data)
        .collect())
}

/// The values of the Secrets among `sources`: a render substitutes them (Policies judge the
/// objects as they will be applied), so a render or Policy error may quote them, and each is
/// masked in the outcome ([`crate::status::Outcome::scrubbed`]).
pub fn secret_values(sources: &[VariableSource]) -> SecretValues {
    let mut secrets = SecretValues::default();
    for source in sources.iter().filter(|s| s.kind == DataKind::Secret) {
        for value in source.data.values() {
            secrets.add(value);
        }
    }
    secrets
}

/// Each of `refs` as read from `namespace`, in order, with its `resourceVersion` (so the sync
/// controller can tell the Secret it reads is the one the render used); a missing `optional`
/// source is left out.
pub async fn load_sources(
    client: &kube::Client,
    namespace: &str,
    refs: &[SubstituteReference],
) -> Result<Vec<VariableSource>, VariablesError> {
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let err = |source| VariablesError::Api {
            kind: r.kind,
            namespace: namespace.to_owned(),
            name: r.name.clone(),
            source,
        };
        let read = match r.kind {
            DataKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await
                .map_err(err)?
                .map(|cm| (cm.metadata.resource_version, cm.data.unwrap_or_default())),
            DataKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
                .get_opt(&r.name)
                .await
                .map_err(err)?
                .map(|s| {
                    let data = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                        .collect();
                    (s.metadata.resource_version, data)
                }),
        };
        match read {
            Some((resource_version, data)) => out.push(VariableSource {
                kind: r.kind,
                name: r.name.clone(),
                resource_version: resource_version.unwrap_or_default(),
                data,
            }),
            None if r.optional => {}
            None => {
                return Err(VariablesError::NotFound {
                    kind: r.kind,
                    namespace: namespace.to_owned(),
                    name: r.name.clone(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync_view::SyncView;
    use crate::watches::readers_of;
    use kube::runtime::reflector::ObjectRef;
    use serde_json::json;
    use std::sync::Arc;

    fn sync(ns: &str, name: &str, from: serde_json::Value) -> Arc<SyncView> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"sourceRef": {"kind": "GitRepository", "name": "r"}, "substituteFrom": from},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_config_map_or_secret_wakes_the_syncs_of_its_namespace_that_name_it() {
        let syncs = [
            sync(
                "a",
                "uses-cm",
                json!([{"kind": "ConfigMap", "name": "vars"}]),
            ),
            sync(
                "a",
                "uses-secret",
                json!([{"kind": "Secret", "name": "vars", "optional": true}]),
            ),
            sync(
                "b",
                "other-ns",
                json!([{"kind": "ConfigMap", "name": "vars"}]),
            ),
            sync("a", "none", json!([])),
        ];
        let (cm, secret) = (DataKind::ConfigMap, DataKind::Secret);
        let names = |v: Vec<ObjectRef<SyncView>>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(readers_of(&syncs, cm, "a", "vars")), ["uses-cm"]);
        assert_eq!(
            names(readers_of(&syncs, secret, "a", "vars")),
            ["uses-secret"]
        );
        assert!(readers_of(&syncs, cm, "a", "other").is_empty());
    }

    #[test]
    fn a_policy_error_over_a_secret_value_is_masked_and_a_config_map_value_is_not() {
        use crate::policy::{compile_rule, describe, evaluate};
        use crate::status::Outcome;
        use plumb_api::policy::Rule;

        let source = |kind, name: &str, key: &str, value: &str| VariableSource {
            kind,
            name: name.to_owned(),
            resource_version: "1".to_owned(),
            data: [(key.to_owned(), value.to_owned())].into(),
        };
        let secrets = secret_values(&[
            source(DataKind::Secret, "cluster-secrets", "token", "s3cret-token"),
            source(DataKind::ConfigMap, "cluster-vars", "region", "eu-west-9"),
        ]);
        let rule: Rule = serde_json::from_value(json!({
            "name": "small-token",
            "expression": "object.data[object.data.token] == 'on'",
            "message": "token too large",
        }))
        .unwrap();
        let policy = crate::policy::CompiledPolicy {
            name: "limits".to_owned(),
            rules: vec![compile_rule("limits", &rule).unwrap()],
        };
        let object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app", "namespace": "team"},
            "data": {"token": "s3cret-token", "region": "eu-west-9"},
        });
        let report = evaluate(&[Arc::new(policy)], &[object], "team");
        let raw = describe(&report.violations);
        assert!(
            raw.contains("s3cret-token"),
            "CEL's error quotes the value: {raw}"
        );
        let outcome = Outcome::Failed {
            reason: plumb_api::reason::POLICY_VIOLATION,
            message: format!("1 policy violations, nothing published: {raw}"),
            policy: Some(report),
        }
        .scrubbed(&secrets);
        let Outcome::Failed {
            message, policy, ..
        } = outcome
        else {
            unreachable!()
        };
        let finding = &policy.unwrap().violations[0].message;
        assert_eq!(
            secrets.scrub("eu-west-9"),
            "eu-west-9",
            "not a Secret's value"
        );
        for text in [&message, finding] {
            assert!(!text.contains("s3cret-token"), "{text}");
            assert!(
                text.contains("token too large (evaluation failed: No such key: ***)"),
                "{text}"
            );
        }
    }
}
