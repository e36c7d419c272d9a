//! `GitRepository` (`source.plumb.dev/v1`): a Git repository the source controller fetches and
//! publishes as a digest-verified tarball artifact.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::reference::{Artifact, LocalObjectReference};

/// The URL schemes and forms a GitRepository may use (file:// is accepted by the schema but only
/// fetched when the controller is started with file sources allowed).
pub const URL_PATTERN: &str = r"^((https?|ssh|file)://.+|[A-Za-z0-9._-]+@[A-Za-z0-9._-]+:.+)$";

/// The desired state of a GitRepository: what to fetch, how often, with which credentials.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "source.plumb.dev",
    version = "v1",
    kind = "GitRepository",
    namespaced,
    status = "GitRepositoryStatus",
    shortname = "gitrepo",
    category = "plumb",
    doc = "A Git repository the source controller fetches and publishes as a digest-verified tarball artifact.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message"
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.artifact.revision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    /// The repository URL: `https://`, `http://`, `ssh://`, scp-like `git@host:path`, or `file://`
    /// (only when the source controller allows file sources).
    #[schemars(regex(pattern = URL_PATTERN))]
    pub url: String,

    /// Which commit to fetch; the remote HEAD when unset.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<GitRepositoryRef>,

    /// How often to check the remote for a new commit.
    #[serde(default = "default_interval")]
    pub interval: Duration,

    /// How long one fetch may take before it is abandoned.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,

    /// A Secret in the same namespace holding credentials: `username` and `password`, or
    /// `bearerToken`, for HTTP(S); `identity` (private key) and `known_hosts` for SSH; `ca.crt`
    /// to trust a private certificate authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,

    /// Paths to leave out of the artifact, in .gitignore syntax, one pattern per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,

    /// Stop fetching while true; the last artifact stays published.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Enables a push webhook that triggers an immediate fetch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Which commit of the repository to fetch. At most one of `branch`, `tag`, `semver` and `name`;
/// `commit` alone, or together with `branch` to fetch that commit from that branch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.branch), has(self.tag), has(self.semver), has(self.name)].filter(x, x).size() <= 1",
        "message": "at most one of branch, tag, semver and name may be set",
    },
    {
        "rule": "!has(self.commit) || !(has(self.tag) || has(self.semver) || has(self.name))",
        "message": "commit may only be combined with branch",
    },
]))]
pub struct GitRepositoryRef {
    /// A branch name, e.g. `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub branch: Option<String>,
    /// A tag name, e.g. `v1.2.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub tag: Option<String>,
    /// A semver range; the highest tag that satisfies it is fetched, e.g. `>=1.0.0, <2.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub semver: Option<String>,
    /// A full commit id (40 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-fA-F]{40}$"))]
    pub commit: Option<String>,
    /// A full reference name, e.g. `refs/heads/main` or `refs/pull/42/head`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^refs/.+$"))]
    pub name: Option<String>,
}

/// The push webhook of a GitRepository.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// A Secret in the same namespace whose `token` key verifies deliveries: the HMAC key of
    /// GitHub's `X-Hub-Signature-256`, or the value of GitLab's `X-Gitlab-Token`.
    pub secret_ref: LocalObjectReference,
}

/// The observed state of a GitRepository, written by the source controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryStatus {
    /// The generation of the spec the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, and Reconciling / Stalled while true.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The latest published tarball of the fetched tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,

    /// When the commit of `artifact.revision` was made (its committer's time, as Git records
    /// it), so a reader sees how old what runs is without a checkout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub commit_time: Option<Timestamp>,

    /// The `plumb.dev/requested-at` annotation value handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// The path, on the source controller's webhook server, that accepts push events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
}
