//! Types shared by several kinds: object references and the artifact record.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::revision::{Digest, Revision};

/// A reference to an object in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to an object by name, in the referrer's namespace unless `namespace` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the referent; defaults to the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// The kinds a Sync reads data keys of, in its own namespace: chart values (`helm.valuesFrom`)
/// and substitution variables (`substituteFrom`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DataKind {
    /// A core/v1 ConfigMap (its `data`).
    ConfigMap,
    /// A core/v1 Secret (its `data`, base64-decoded).
    Secret,
}

/// A digest-verified file a controller produced and serves over HTTP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// The source revision the artifact was made from, e.g. `main@sha1:<commit>`.
    pub revision: Revision,
    /// The sha256 digest of the file; consumers verify it before use.
    pub digest: Digest,
    /// Where the file can be downloaded with HTTP GET.
    pub url: String,
    /// Size of the file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// When the artifact was last written.
    #[schemars(with = "String")]
    pub last_update_time: Timestamp,
}
