//! `Sync` (`sync.plumb.dev/v1`): render a path of a source and keep the cluster true to it.
//!
//! Two controllers write its status, each under its own field manager: the render controller owns
//! `status.render` and the `Rendered` condition (`plumb-render`), the sync controller owns the rest
//! (`plumb-sync`).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::helm::HelmSpec;
use crate::inventory::InventoryEntry;
use crate::reference::{Artifact, DataKind};
use crate::revision::{Digest, Revision};

/// The desired state of a Sync: which source path to render, how, and how to apply it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "sync.plumb.dev",
    version = "v1",
    kind = "Sync",
    namespaced,
    status = "SyncStatus",
    shortname = "sy",
    category = "plumb",
    doc = "Renders a path of a source and keeps the cluster true to it: apply, prune, health, drift correction.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceRef.name"),
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
        json_path = ".status.render.sourceRevision"
    ),
    printcolumn(
        name = "Applied",
        type_ = "string",
        json_path = ".status.lastAppliedRevision"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// The source whose artifact is rendered.
    pub source_ref: SourceReference,

    /// The directory inside the source to render; a kustomization there is built, otherwise every
    /// YAML file under it is applied.
    #[serde(default = "default_path")]
    pub path: String,

    /// How often to re-apply in full as a safety net; drift is detected sooner, by watches.
    #[serde(default = "default_interval")]
    pub interval: Duration,

    /// How soon to retry after a failure; defaults to `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<Duration>,

    /// How long apply, health checks and prune may take; defaults to `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,

    /// Delete objects that were applied before but are no longer rendered.
    #[serde(default = "default_true")]
    pub prune: bool,

    /// Also prune everything when a render comes out empty; off, an empty render prunes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune_empty: bool,

    /// Be Ready only once every applied object is healthy, waiting at most `timeout`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,

    /// Put every namespaced object into this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub target_namespace: Option<String>,

    /// Syncs that must be Ready at their latest revision (or pass their `readyExpr`) before
    /// this one applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<crate::dependency::DependencyReference>,

    /// Stop applying and correcting drift while true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,

    /// Apply as this ServiceAccount of the Sync's namespace (by impersonation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Delete and recreate objects whose immutable fields changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,

    /// Image name and tag overrides, as in kustomize's `images`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,

    /// Patches applied to the rendered objects, as in kustomize's `patches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,

    /// Values for `${VAR}` and `${VAR:=default}` in the rendered output; `$${VAR}` is left as
    /// `${VAR}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub substitute: BTreeMap<String, String>,

    /// Correct drift of applied objects as soon as it is seen. A governing Policy's `drift.mode`
    /// overrides it.
    #[serde(default = "default_true")]
    pub self_heal: bool,

    /// What happens to the applied objects when the Sync is deleted.
    #[serde(default, skip_serializing_if = "DeletionPolicy::is_default")]
    pub deletion_policy: DeletionPolicy,

    // --- SOPS decryption (issue 16) ---
    /// Decrypt SOPS-encrypted objects just before apply, with age keys from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<crate::decryption::Decryption>,

    // --- Helm charts (issue 15) ---
    /// How the Helm chart at `path` is rendered (release name, values); a `path` holding a
    /// `Chart.yaml` is rendered by Helm with these defaults when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSpec>,

    // Fields of Flux's Kustomization, with Flux's meaning (see `plumb import`).
    /// ConfigMaps and Secrets of the Sync's namespace whose data keys are variables for
    /// substitution, in order (a later one overrides an earlier one; `substitute` overrides
    /// them all). A change to one re-renders the Sync.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub substitute_from: Vec<SubstituteReference>,

    /// When substitution runs: `WithVariables` (the default, as Flux) only when at least one
    /// variable is defined, `Always` also without (so `${var:=default}` still resolves).
    #[serde(default, skip_serializing_if = "SubstituteStrategy::is_default")]
    pub substitute_strategy: SubstituteStrategy,

    /// A prefix added to the name of every object, as kustomize's `namePrefix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,

    /// A suffix added to the name of every object, as kustomize's `nameSuffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,

    /// Labels and annotations set on every object (overriding ones of the same key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,

    /// Kustomize components, paths relative to `path`, added to the build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,

    /// Leave out components whose path is missing from the source instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_missing_components: bool,

    // --- Custom health (issue 16) ---
    /// Objects outside this Sync that must be healthy too before it is Ready (with or without
    /// `wait`), as Flux's `healthChecks`; a change of one is seen at once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<crate::health::HealthCheckReference>,

    /// CEL expressions deciding the health of objects of an apiVersion and kind, in place of the
    /// built-in rules, as Flux's `healthCheckExprs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check_exprs: Vec<crate::health::CustomHealthCheck>,
}

/// A ConfigMap or Secret whose data keys are substitution variables.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SubstituteReference {
    /// `ConfigMap` or `Secret`.
    pub kind: DataKind,
    /// Its name, in the Sync's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Treat a missing object as one without data instead of failing the render.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// When substitution runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SubstituteStrategy {
    /// Only when at least one variable is defined (Flux's default).
    #[default]
    WithVariables,
    /// Always, even without variables.
    Always,
}

impl SubstituteStrategy {
    /// Whether this is the default, [`SubstituteStrategy::WithVariables`].
    pub fn is_default(&self) -> bool {
        *self == SubstituteStrategy::WithVariables
    }
}

/// Metadata set on every rendered object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct CommonMetadata {
    /// Labels set on every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations set on every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What happens to a Sync's objects when the Sync is deleted. Deletion treats objects as prune
/// does: only those in the inventory whose owner labels still name the Sync, never those
/// annotated `plumb.dev/prune: disabled` or `plumb.dev/reconcile: disabled`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the objects when `spec.prune` is true, else leave them (as Flux does).
    #[default]
    MirrorPrune,
    /// Delete the objects.
    Delete,
    /// Delete the objects and wait until they are gone, at most the Sync's `timeout`.
    WaitForTermination,
    /// Leave the objects in the cluster.
    Orphan,
}

impl DeletionPolicy {
    /// Whether this is the default, [`DeletionPolicy::MirrorPrune`].
    pub fn is_default(&self) -> bool {
        *self == DeletionPolicy::MirrorPrune
    }

    /// Whether deleting a Sync with `prune` set as given deletes its objects.
    pub fn deletes(&self, prune: bool) -> bool {
        match self {
            DeletionPolicy::MirrorPrune => prune,
            DeletionPolicy::Delete | DeletionPolicy::WaitForTermination => true,
            DeletionPolicy::Orphan => false,
        }
    }
}

impl Sync {
    /// Where the sync controller puts the Sync's objects that name no namespace: the
    /// `targetNamespace`, else the Sync's own namespace. Policy rules judge such objects (and
    /// cluster-scoped ones) as applied there.
    pub fn placement_namespace(&self) -> String {
        self.spec
            .target_namespace
            .clone()
            .or_else(|| self.metadata.namespace.clone())
            .unwrap_or_default()
    }
}

fn default_path() -> String {
    "./".to_owned()
}

fn default_interval() -> Duration {
    Duration::from_secs(600)
}

fn default_true() -> bool {
    true
}

/// A reference to the source a Sync renders.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SourceReference {
    /// The kind of the source.
    pub kind: SourceKind,
    /// The name of the source.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The namespace of the source; the Sync's own when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// The kinds a Sync can take its source from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SourceKind {
    /// A `source.plumb.dev/v1` GitRepository.
    GitRepository,
}

/// An image override, as in kustomize's `images`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The image name to match, as written in the manifests (without tag or digest).
    #[schemars(length(min = 1))]
    pub name: String,
    /// Replace the name with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// Replace the tag with this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
    /// Replace the tag with this digest (`sha256:...`); wins over `newTag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// A strategic-merge or JSON 6902 patch, applied to the objects its target selects.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Patch {
    /// The patch, as YAML or JSON: a strategic merge patch, or a JSON 6902 list of operations.
    #[schemars(length(min = 1))]
    pub patch: String,
    /// Which objects to patch; for a strategic merge patch without target, the object it names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PatchTarget>,
}

/// Selects objects by group, version, kind, name, namespace (regular expressions) and selectors.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchTarget {
    /// API group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name, a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace, a regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A label selector, e.g. `app=web,tier!=db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// An annotation selector, in label selector syntax.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_selector: Option<String>,
}

/// The observed state of a Sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// The generation of the spec the sync controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready, Healthy and Reconciling/Stalled (sync controller); Rendered (render controller).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// What the render controller last produced; written only by the render controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render: Option<RenderStatus>,

    /// Every object the last successful apply left in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<Vec<InventoryEntry>>,

    /// The source revision last applied in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<Revision>,

    /// The source revision last tried, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<Revision>,

    /// The digest of the rendered artifact last applied in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_digest: Option<Digest>,

    /// What the drift detector saw and did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftStatus>,

    /// The `plumb.dev/requested-at` annotation value handled last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// The last few reconciliations that ended (newest first): one entry each time the result
    /// or the artifact changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ReconcileRecord>,

    /// The digest of the rendered artifact whose Helm `post-install`/`post-upgrade` hooks are
    /// still to run (once its objects are healthy): set with the apply after its pre-sync hooks
    /// ran, cleared when the post hooks ran, so a restarted sync controller still runs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_post_hooks: Option<Digest>,
}

/// One reconciliation in `status.history`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRecord {
    /// The source revision reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<Revision>,
    /// The digest of the rendered artifact reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The result: the Ready condition's reason (`ReconciliationSucceeded`, `ApplyFailed`, ...).
    pub result: String,
    /// How long the reconciliation took.
    pub duration: Duration,
    /// When it ended.
    #[schemars(with = "String")]
    pub time: Timestamp,
}

/// The render controller's part of a Sync's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderStatus {
    /// The generation of the Sync spec this render is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The source revision that was rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<Revision>,
    /// The digest of the source artifact that was rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_digest: Option<Digest>,
    /// The rendered artifact: gzip of multi-document YAML in apply order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// How many objects the rendered artifact holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<i64>,
    /// What the governing policies found in the last render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyReport>,
}

/// Policy findings of one render.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct PolicyReport {
    /// Findings of Warn rules: recorded, and the render is published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PolicyFinding>,
    /// Findings of Deny rules: the render is not published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<PolicyFinding>,
}

/// One object that broke one rule of one Policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct PolicyFinding {
    /// The Policy's name.
    pub policy: String,
    /// The rule's name.
    pub rule: String,
    /// The object, as an inventory id `<namespace>_<name>_<group>_<kind>`.
    pub object: String,
    /// The rule's message, or the evaluation error.
    pub message: String,
}

/// What the drift detector saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftStatus {
    /// When drift was last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_detected_at: Option<Timestamp>,
    /// When drift was last corrected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_corrected_at: Option<Timestamp>,
    /// How many corrections have been made in all.
    #[serde(default)]
    pub corrections: i64,
    /// Objects that differ from what was applied now (mode Report) as inventory ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
}

/// Makes `$view`, a controller's compact cached form of a [`Sync`], watchable as a Sync: kube's
/// `Resource` answers as `Sync` does (kind, group, version, plural; the view's own `metadata`
/// field), and serde reads a Sync and converts it with `$view::of(Sync) -> $view`. The render and
/// sync controllers each cache only what they read of a Sync (`sync_view.rs` in each crate).
#[macro_export]
macro_rules! watch_sync_as {
    ($view:ty) => {
        impl<'de> ::serde::Deserialize<'de> for $view {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$crate::Sync as ::serde::Deserialize>::deserialize(d).map(<$view>::of)
            }
        }

        impl ::kube::Resource for $view {
            type DynamicType = ();
            type Scope = ::kube::core::NamespaceResourceScope;

            fn kind(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::Sync as ::kube::Resource>::kind(dt)
            }

            fn group(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::Sync as ::kube::Resource>::group(dt)
            }

            fn version(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::Sync as ::kube::Resource>::version(dt)
            }

            fn plural(dt: &()) -> ::std::borrow::Cow<'_, str> {
                <$crate::Sync as ::kube::Resource>::plural(dt)
            }

            fn meta(&self) -> &::kube::api::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ::kube::api::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

/// Gives a Sync read back from a controller's compact cached form the identity the form keeps
/// outside its packed text: name, namespace, uid and resourceVersion from `meta`.
pub fn restore_identity(
    sync: &mut Sync,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    sync.metadata.name.clone_from(&meta.name);
    sync.metadata.namespace.clone_from(&meta.namespace);
    sync.metadata.uid.clone_from(&meta.uid);
    sync.metadata
        .resource_version
        .clone_from(&meta.resource_version);
}
