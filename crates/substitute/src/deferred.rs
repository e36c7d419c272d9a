//! Substitution of values that come from Secrets, finished by the sync controller just before
//! apply (see `docs/substitution.md`).
//!
//! The render controller substitutes every object in memory, so Policies judge what will be
//! applied. An object whose substitution used a variable whose value comes from a
//! `substituteFrom` Secret is then published **unsubstituted**, carrying a [`Deferred`] under
//! [`DEFERRED_KEY`]: the values it uses that are not secret, and for each secret one the Secret
//! and the `resourceVersion` the render read. The sync controller reads those Secrets, refuses
//! a `resourceVersion` other than the render's (the render controller renders again on any
//! change of them, so a new artifact is on its way), and finishes the substitution with
//! [`finish`]: the same text, the same values, so the same object the Policies judged. Secret
//! values never sit in a rendered artifact, on disk or on the wire.

use std::collections::{BTreeMap, BTreeSet};

use plumb_api::reference::DataKind;
use plumb_api::sync::CommonMetadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    SubstituteError, SubstituteLimits, apply_common_metadata, assemble_variables,
    substitute_objects,
};

/// The top-level key of a published object whose substitution the sync controller finishes;
/// it holds a [`Deferred`] and is removed before apply.
pub const DEFERRED_KEY: &str = "plumbSubstitution";

/// One `substituteFrom` source as read from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariableSource {
    /// ConfigMap or Secret.
    pub kind: DataKind,
    /// Its name, in the Sync's namespace.
    pub name: String,
    /// Its `metadata.resourceVersion` when read.
    pub resource_version: String,
    /// Its data (a Secret's decoded), keys as variable names.
    pub data: BTreeMap<String, String>,
}

/// A Secret as a render read it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    /// The Secret's name, in the Sync's namespace.
    pub name: String,
    /// Its `metadata.resourceVersion` when the render read it.
    pub resource_version: String,
}

/// What the sync controller needs to finish one object's substitution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deferred {
    /// The variables the object uses whose values are not secret (the Sync's `substitute`,
    /// ConfigMaps), with those values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, String>,
    /// The variables the object uses whose values come from a Secret: the Secret of each (the
    /// variable is the Secret's key of the same name).
    pub secrets: BTreeMap<String, SecretVersion>,
    /// The Sync's `commonMetadata`, set after substitution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
    /// The name and namespace the object is applied under, when substitution changes them
    /// (the published object holds `${...}` there): what tools that show the artifact's
    /// objects (`plumb ui`) know it by. Not secret: the Sync's inventory names it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substituted_id: Option<SubstitutedId>,
}

/// The `metadata.name` and `metadata.namespace` of an object once substituted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubstitutedId {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when the object has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Deferred {
    /// The Secrets this object needs, each once.
    pub fn secret_versions(&self) -> BTreeSet<&SecretVersion> {
        self.secrets.values().collect()
    }

    /// Notes the name and namespace of `substituted` (the object as substitution made it) when
    /// they are not those of `built` (the object as built, which is published).
    pub fn note_substituted_id(&mut self, built: &Value, substituted: &Value) {
        let id = |o: &Value, field: &str| o["metadata"][field].as_str().map(str::to_owned);
        let (name, namespace) = (id(substituted, "name"), id(substituted, "namespace"));
        if name == id(built, "name") && namespace == id(built, "namespace") {
            return;
        }
        self.substituted_id = name.map(|name| SubstitutedId { name, namespace });
    }
}

/// The variables of one render with the Secret each secret value comes from.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
    from_secret: BTreeMap<String, SecretVersion>,
}

impl Variables {
    /// Assembles the variables as Flux does ([`assemble_variables`]: each source in order, a
    /// later one overriding, then the inline `substitute` map), remembering which final values
    /// come from a Secret.
    pub fn assemble(sources: &[VariableSource], inline: &BTreeMap<String, String>) -> Self {
        let values = assemble_variables(sources.iter().map(|s| &s.data), inline);
        let mut from_secret = BTreeMap::new();
        for source in sources {
            for key in source.data.keys() {
                if source.kind == DataKind::Secret {
                    let version = SecretVersion {
                        name: source.name.clone(),
                        resource_version: source.resource_version.clone(),
                    };
                    from_secret.insert(key.clone(), version);
                } else {
                    from_secret.remove(key);
                }
            }
        }
        for key in inline.keys() {
            from_secret.remove(key);
        }
        Self {
            values,
            from_secret,
        }
    }

    /// Every variable with its value.
    pub fn values(&self) -> &BTreeMap<String, String> {
        &self.values
    }

    /// Whether any value comes from a Secret.
    pub fn any_secret(&self) -> bool {
        !self.from_secret.is_empty()
    }

    /// The deferral of an object whose substitution looked up `used`: `None` when none of
    /// them has a value from a Secret (the object is published substituted).
    pub fn deferral(
        &self,
        used: &BTreeSet<String>,
        common_metadata: Option<&CommonMetadata>,
    ) -> Option<Deferred> {
        let secrets: BTreeMap<String, SecretVersion> = used
            .iter()
            .filter_map(|v| Some((v.clone(), self.from_secret.get(v)?.clone())))
            .collect();
        if secrets.is_empty() {
            return None;
        }
        let values = used
            .iter()
            .filter(|v| !secrets.contains_key(*v))
            .filter_map(|v| Some((v.clone(), self.values.get(v)?.clone())))
            .collect();
        Some(Deferred {
            values,
            secrets,
            common_metadata: common_metadata.cloned(),
            substituted_id: None,
        })
    }
}

/// `object` (unsubstituted, without `commonMetadata`) as published: carrying `deferred`.
pub fn defer(mut object: Value, deferred: &Deferred) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.insert(
            DEFERRED_KEY.to_owned(),
            serde_json::to_value(deferred).unwrap_or_default(),
        );
    }
    object
}

/// Whether a published object's substitution is deferred.
pub fn is_deferred(object: &Value) -> bool {
    object.get(DEFERRED_KEY).is_some()
}

/// The name and namespace a published object is applied under when its substitution is
/// deferred and changes them (see [`Deferred::substituted_id`]); `None` otherwise, when the
/// published object's own are the ones applied.
pub fn substituted_id(object: &Value) -> Option<SubstitutedId> {
    let id = object.get(DEFERRED_KEY)?.get("substitutedId")?;
    serde_json::from_value(id.clone()).ok()
}

/// Takes the deferral off a published object: `None` when it carries none.
pub fn take(object: &mut Value) -> Option<Result<Deferred, serde_json::Error>> {
    let deferred = object.as_object_mut()?.remove(DEFERRED_KEY)?;
    Some(serde_json::from_value(deferred))
}

/// Finishes the substitution of `object` (taken off its [`Deferred`]) with `secret_values`,
/// the value of each of `deferred.secrets` as its Secret holds it, then sets the
/// `commonMetadata`: the object the render controller substituted and the Policies judged.
pub fn finish(
    object: Value,
    deferred: &Deferred,
    secret_values: &BTreeMap<String, String>,
    limits: &SubstituteLimits,
) -> Result<Value, SubstituteError> {
    let from_secrets = BTreeMap::from_iter(
        deferred
            .secrets
            .keys()
            .filter_map(|v| Some((v.clone(), secret_values.get(v)?.clone()))),
    );
    let vars = assemble_variables([&from_secrets], &deferred.values);
    let mut objects = substitute_objects(vec![object], &vars, limits)?;
    if let Some(common) = &deferred.common_metadata {
        apply_common_metadata(&mut objects, common);
    }
    Ok(objects.pop().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::substitute_objects_tracked;
    use serde_json::json;

    fn source(kind: DataKind, name: &str, pairs: &[(&str, &str)]) -> VariableSource {
        VariableSource {
            kind,
            name: name.into(),
            resource_version: format!("{name}-rv"),
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn render(
        objects: Vec<Value>,
        vars: &Variables,
        common: Option<&CommonMetadata>,
    ) -> (Vec<Value>, Vec<Value>) {
        let done = substitute_objects_tracked(objects.clone(), vars.values(), &Default::default())
            .unwrap();
        let mut checked: Vec<Value> = done.iter().map(|s| s.object.clone()).collect();
        if let Some(c) = common {
            apply_common_metadata(&mut checked, c);
        }
        let published = objects
            .into_iter()
            .zip(&done)
            .zip(&checked)
            .map(
                |((original, s), checked)| match vars.deferral(&s.used, common) {
                    Some(mut d) => {
                        d.note_substituted_id(&original, &s.object);
                        defer(original, &d)
                    }
                    None => checked.clone(),
                },
            )
            .collect();
        (checked, published)
    }

    #[test]
    fn the_last_source_decides_where_a_value_comes_from() {
        let sources = [
            source(
                DataKind::Secret,
                "s1",
                &[("A", "a1"), ("B", "b1"), ("C", "c1")],
            ),
            source(DataKind::ConfigMap, "cm", &[("A", "a2")]),
            source(DataKind::Secret, "s2", &[("B", "b\n2")]),
        ];
        let inline = BTreeMap::from([("C".to_owned(), "c3".to_owned())]);
        let vars = Variables::assemble(&sources, &inline);
        assert_eq!(
            vars.values(),
            &assemble_variables(sources.iter().map(|s| &s.data), &inline)
        );
        let used = BTreeSet::from(["A".into(), "B".into(), "C".into(), "UNSET".into()]);
        let d = vars.deferral(&used, None).unwrap();
        assert_eq!(
            d.secrets,
            BTreeMap::from([(
                "B".to_owned(),
                SecretVersion {
                    name: "s2".into(),
                    resource_version: "s2-rv".into()
                }
            )])
        );
        assert_eq!(
            d.values,
            BTreeMap::from([("A".into(), "a2".into()), ("C".into(), "c3".into())])
        );
        assert!(vars.deferral(&BTreeSet::from(["A".into()]), None).is_none());
    }

    #[test]
    fn a_published_object_holds_no_secret_value_and_finishes_as_the_render_checked_it() {
        let secret_value = "hunter2-s3cr3t";
        let sources = [
            source(
                DataKind::ConfigMap,
                "vars",
                &[("cluster", "staging"), ("n", "3")],
            ),
            source(DataKind::Secret, "creds", &[("password", secret_value)]),
        ];
        let vars = Variables::assemble(&sources, &BTreeMap::new());
        let common = CommonMetadata {
            labels: BTreeMap::from([("team".into(), "${cluster}".into())]),
            annotations: BTreeMap::new(),
        };
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-${cluster}"},
                   "stringData": {"url": "postgres://app:${password}@db/${cluster}",
                                  "len": "${#password}"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": "${n}", "note": "${password:0:3}"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"},
                   "data": {"c": "${cluster}", "d": "${missing:=x}"}}),
        ];
        let (checked, published) = render(objects, &vars, Some(&common));
        assert_eq!(
            checked[0]["stringData"]["url"],
            json!(format!("postgres://app:{secret_value}@db/staging"))
        );
        assert_eq!(checked[1]["spec"]["note"], "hun");
        // The ConfigMap used no secret: published substituted.
        assert_eq!(published[2], checked[2]);
        let text = serde_json::to_string(&published).unwrap();
        assert!(
            !text.contains("hunter2") && !text.contains("hun\""),
            "{text}"
        );
        // The sync controller's side: the Secret's value, and the same objects come out.
        let secret = BTreeMap::from([("password".to_owned(), secret_value.to_owned())]);
        for (i, published) in published.into_iter().enumerate().take(2) {
            let mut object = published;
            let deferred = take(&mut object).unwrap().unwrap();
            assert!(!is_deferred(&object));
            assert_eq!(
                deferred.secret_versions().into_iter().collect::<Vec<_>>(),
                [&SecretVersion {
                    name: "creds".into(),
                    resource_version: "creds-rv".into()
                }]
            );
            let done = finish(object, &deferred, &secret, &Default::default()).unwrap();
            assert_eq!(done, checked[i], "object {i}");
        }
    }

    #[test]
    fn a_deferred_object_whose_name_or_namespace_is_substituted_records_them() {
        let sources = [
            source(DataKind::ConfigMap, "vars", &[("cluster", "staging")]),
            source(
                DataKind::Secret,
                "creds",
                &[("password", "pw"), ("team", "shop")],
            ),
        ];
        let vars = Variables::assemble(&sources, &BTreeMap::new());
        let objects = vec![
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "db-${cluster}", "namespace": "${team}-apps"},
                   "stringData": {"password": "${password}"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"},
                   "data": {"p": "${password}"}}),
        ];
        let (checked, published) = render(objects, &vars, None);
        assert_eq!(
            substituted_id(&published[0]),
            Some(SubstitutedId {
                name: "db-staging".into(),
                namespace: Some("shop-apps".into())
            })
        );
        assert_eq!(checked[0]["metadata"]["name"], "db-staging");
        assert!(is_deferred(&published[1]));
        assert_eq!(substituted_id(&published[1]), None, "its name is as built");
        assert_eq!(substituted_id(&checked[1]), None, "not deferred");
        // The sync controller ignores the record: the object comes out as the render checked it.
        let secret = BTreeMap::from([
            ("password".to_owned(), "pw".to_owned()),
            ("team".to_owned(), "shop".to_owned()),
        ]);
        let mut object = published[0].clone();
        let deferred = take(&mut object).unwrap().unwrap();
        let done = finish(object, &deferred, &secret, &Default::default()).unwrap();
        assert_eq!(done, checked[0]);
    }

    #[test]
    fn objects_that_opt_out_or_use_no_secret_are_never_deferred() {
        let sources = [source(DataKind::Secret, "s", &[("p", "v")])];
        let vars = Variables::assemble(&sources, &BTreeMap::new());
        assert!(vars.any_secret());
        let objects = vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}},
            "data": {"k": "${p}"}})];
        let (checked, published) = render(objects.clone(), &vars, None);
        assert_eq!(published, objects);
        assert_eq!(checked, objects);
        assert!(!Variables::assemble(&[], &BTreeMap::new()).any_secret());
    }
}
