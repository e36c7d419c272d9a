//! The CustomResourceDefinitions of the plumb kinds, as the API server receives them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{GitRepository, Policy, Sync};

/// The CRDs of GitRepository, Sync and Policy, in that order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![GitRepository::crd(), Sync::crd(), Policy::crd()]
}

/// Each CRD as `(file name, YAML)`; the file name is `<plural>.<group>.yaml`, as in `crds/`.
pub fn all_yaml() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    all()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default());
            serde_yaml::to_string(&crd).map(|yaml| (file, yaml))
        })
        .collect()
}
