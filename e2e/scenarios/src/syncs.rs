//! The Syncs a scenario creates: scoped to its own controllers, rendering its Git fixture into
//! its namespace.

use kube::api::PostParams;
use plumb_api::Sync;
use plumb_e2e_support::TestNamespace;
use serde_json::{Value, json};

use crate::{Error, Result, SCOPE_LABEL};

/// Creates the Sync `name` in `ns`, carrying the scenario's [`SCOPE_LABEL`], rendering the
/// GitRepository `app` (as [`crate::GitFixture::create_source`] names it) into `ns`, with the
/// fields of `spec` (`path`, `interval`, `substituteFrom`, ...) set over those.
pub async fn create_sync(ns: &TestNamespace, name: &str, spec: Value) -> Result<Sync> {
    let mut body = json!({
        "apiVersion": "sync.plumb.dev/v1", "kind": "Sync",
        "metadata": {"name": name, "labels": {SCOPE_LABEL: ns.name()}},
        "spec": {
            "sourceRef": {"kind": "GitRepository", "name": "app"},
            "targetNamespace": ns.name(),
        },
    });
    let Some(fields) = spec.as_object() else {
        return Err(Error::Config(format!(
            "Sync {name}: spec {spec} is not an object"
        )));
    };
    for (key, value) in fields {
        body["spec"][key] = value.clone();
    }
    let sync: Sync =
        serde_json::from_value(body).map_err(|e| Error::Config(format!("Sync {name}: {e}")))?;
    ns.api::<Sync>()
        .create(&PostParams::default(), &sync)
        .await
        .map_err(|source| Error::Kube {
            what: format!("creating Sync {}/{name}", ns.name()),
            source,
        })
}
