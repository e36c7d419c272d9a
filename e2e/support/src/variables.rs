//! The ConfigMap and Secret a test's Syncs take substitution variables from (`substituteFrom`),
//! applied in the test's namespace.

use serde_json::{Value, json};

use crate::{Result, TestNamespace};

/// The ConfigMap of plain variables the scenarios' Syncs name in `substituteFrom`.
pub const CLUSTER_VARS: &str = "cluster-vars";

/// The Secret of secret variables the scenarios' Syncs name in `substituteFrom`.
pub const CLUSTER_SECRETS: &str = "cluster-secrets";

impl TestNamespace {
    /// Server-side applies the ConfigMap `name` with `data`: created, or its data set to these
    /// pairs.
    pub async fn apply_config_map(&self, name: &str, data: &[(&str, &str)]) -> Result<()> {
        self.apply_pairs("ConfigMap", "data", name, data).await
    }

    /// Server-side applies the Secret `name` with `data` (plain text, written as `stringData`):
    /// created, or those values set.
    pub async fn apply_secret(&self, name: &str, data: &[(&str, &str)]) -> Result<()> {
        self.apply_pairs("Secret", "stringData", name, data).await
    }

    /// Applies the core `kind` `name` with `pairs` as its `field`.
    async fn apply_pairs(
        &self,
        kind: &str,
        field: &str,
        name: &str,
        pairs: &[(&str, &str)],
    ) -> Result<()> {
        let values: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        let body = json!({
            "apiVersion": "v1", "kind": kind, "metadata": { "name": name }, field: values,
        });
        self.apply_yaml(&body.to_string(), crate::namespace::FIELD_MANAGER)
            .await
            .map(drop)
    }

    /// Applies the ConfigMap [`CLUSTER_VARS`] with `vars` and the Secret [`CLUSTER_SECRETS`]
    /// with `secrets`, and returns the `substituteFrom` of a Sync that takes its variables from
    /// both (the ConfigMap first, so a Secret's value wins).
    pub async fn apply_cluster_variables(
        &self,
        vars: &[(&str, &str)],
        secrets: &[(&str, &str)],
    ) -> Result<Value> {
        self.apply_config_map(CLUSTER_VARS, vars).await?;
        self.apply_secret(CLUSTER_SECRETS, secrets).await?;
        Ok(json!([
            { "kind": "ConfigMap", "name": CLUSTER_VARS },
            { "kind": "Secret", "name": CLUSTER_SECRETS },
        ]))
    }
}
