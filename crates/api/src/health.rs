//! `Sync.spec.healthChecks` and `Sync.spec.healthCheckExprs`: what a Sync waits for besides its
//! own objects, and how the health of kinds the built-in rules do not know is decided.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An object outside the Sync that must be healthy for the Sync to be Ready (Flux's
/// `healthChecks` entry).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckReference {
    /// The object's apiVersion, e.g. `apps/v1`.
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// The object's kind.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The object's namespace; the Sync's own when unset (ignored for cluster-scoped kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// CEL expressions that decide the health of every object of one apiVersion and kind the Sync
/// waits for (Flux's `healthCheckExprs` entry). Each sees the object's top-level fields
/// (`metadata`, `spec`, `status`, ...) as variables and must return a bool; they are tried in
/// the order `inProgress`, `failed`, `current`, and the first that is true decides. While the
/// object's `status.observedGeneration` lags its generation it is in progress whatever they say.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomHealthCheck {
    /// The apiVersion of the objects, e.g. `cert-manager.io/v1`.
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// The kind of the objects.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// True when the object is healthy.
    #[schemars(length(min = 1))]
    pub current: String,
    /// True when the object is still on its way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// True when the object failed and will not become healthy without a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}
