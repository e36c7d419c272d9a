//! Rendered objects and their identities.

use serde_json::{Map, Value};
use std::fmt;

/// Group, version and kind of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Gvk {
    /// API group (empty for the core group).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl Gvk {
    /// Split an `apiVersion` and pair it with a kind.
    pub fn from_api_version(api_version: &str, kind: &str) -> Self {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Gvk {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// `true` when `self` matches a selector whose empty fields are wildcards.
    pub fn is_selected_by(&self, group: &str, version: &str, kind: &str) -> bool {
        (group.is_empty() || group == self.group)
            && (version.is_empty() || version == self.version)
            && (kind.is_empty() || kind == self.kind)
    }

    /// Kinds Kubernetes keeps outside namespaces.
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped_kind(&self.group, &self.kind)
    }
}

impl fmt::Display for Gvk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or = |s: &str, d: &'static str| {
            if s.is_empty() {
                d.to_string()
            } else {
                s.to_string()
            }
        };
        write!(
            f,
            "{}.{}.{}",
            or(&self.kind, "[noKind]"),
            or(&self.version, "[noVer]"),
            or(&self.group, "[noGrp]")
        )
    }
}

/// Cluster-scoped kinds of the built-in Kubernetes API (kustomize reads this from its schema).
pub(crate) fn is_cluster_scoped_kind(group: &str, kind: &str) -> bool {
    let want = match kind {
        "Namespace" | "Node" | "PersistentVolume" | "ComponentStatus" => "",
        "MutatingWebhookConfiguration"
        | "ValidatingWebhookConfiguration"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding" => "admissionregistration.k8s.io",
        "CustomResourceDefinition" => "apiextensions.k8s.io",
        "APIService" => "apiregistration.k8s.io",
        "TokenReview" => "authentication.k8s.io",
        "SelfSubjectAccessReview" | "SelfSubjectRulesReview" | "SubjectAccessReview" => {
            "authorization.k8s.io"
        }
        "CertificateSigningRequest" => "certificates.k8s.io",
        "FlowSchema" | "PriorityLevelConfiguration" => "flowcontrol.apiserver.k8s.io",
        "IngressClass" => "networking.k8s.io",
        "RuntimeClass" => "node.k8s.io",
        "PodSecurityPolicy" => return group == "policy" || group == "extensions",
        "ClusterRole" | "ClusterRoleBinding" => "rbac.authorization.k8s.io",
        "PriorityClass" => "scheduling.k8s.io",
        "CSIDriver" | "CSINode" | "StorageClass" | "VolumeAttachment" => "storage.k8s.io",
        _ => return false,
    };
    group == want
}

/// The identity of an object: GVK, name and namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResId {
    /// Group, version, kind.
    pub gvk: Gvk,
    /// metadata.name.
    pub name: String,
    /// metadata.namespace (empty when unset).
    pub namespace: String,
}

impl ResId {
    /// The namespace the object lands in: `default` when unset, a marker for cluster-scoped kinds.
    pub fn effective_namespace(&self) -> &str {
        if self.gvk.is_cluster_scoped() {
            "_non_namespaceable_"
        } else if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    /// Same GVK, name and effective namespace.
    pub fn same_as(&self, other: &ResId) -> bool {
        self.gvk == other.gvk
            && self.name == other.name
            && self.effective_namespace() == other.effective_namespace()
    }
}

impl fmt::Display for ResId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = if self.namespace.is_empty() {
            "[noNs]"
        } else {
            &self.namespace
        };
        let name = if self.name.is_empty() {
            "[noName]"
        } else {
            &self.name
        };
        write!(f, "{}|{}|{}", self.gvk, ns, name)
    }
}

/// How a generated object combines with an existing one of the same id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Behavior {
    #[default]
    Create,
    Merge,
    Replace,
}

/// One rendered Kubernetes object plus the bookkeeping the build needs (previous names for name
/// references, prefixes/suffixes applied, whether a content hash is still due).
#[derive(Clone, Debug)]
pub struct Resource {
    pub(crate) obj: Map<String, Value>,
    pub(crate) prev_ids: Vec<(String, String, String)>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) suffixes: Vec<String>,
    pub(crate) needs_hash: bool,
    pub(crate) behavior: Behavior,
    pub(crate) origin: Option<String>,
    pub(crate) transformations: Vec<String>,
    /// Legacy vars bound to this object where they were declared.
    pub(crate) ref_vars: Vec<String>,
}

impl Resource {
    /// Wrap an object (which must be a JSON object).
    pub fn new(obj: Map<String, Value>) -> Self {
        Resource {
            obj,
            prev_ids: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            needs_hash: false,
            behavior: Behavior::Create,
            origin: None,
            transformations: Vec::new(),
            ref_vars: Vec::new(),
        }
    }

    /// The object as JSON.
    pub fn as_value(&self) -> &Map<String, Value> {
        &self.obj
    }

    /// The object as JSON, mutable.
    pub fn as_value_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.obj
    }

    /// The object as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.obj)
    }

    fn str_at(&self, path: &[&str]) -> &str {
        let mut cur = match self.obj.get(path[0]) {
            Some(v) => v,
            None => return "",
        };
        for p in &path[1..] {
            cur = match cur.get(p) {
                Some(v) => v,
                None => return "",
            };
        }
        cur.as_str().unwrap_or("")
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"])
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.str_at(&["kind"])
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"])
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"])
    }

    /// Group, version, kind.
    pub fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.api_version(), self.kind())
    }

    /// The current identity.
    pub fn id(&self) -> ResId {
        ResId {
            gvk: self.gvk(),
            name: self.name().to_string(),
            namespace: self.namespace().to_string(),
        }
    }

    /// `true` when the current identity equals `id` (same GVK, name and effective namespace),
    /// without building a new id.
    pub(crate) fn has_id(&self, id: &ResId) -> bool {
        if self.name() != id.name || self.kind() != id.gvk.kind {
            return false;
        }
        let gvk = self.gvk();
        if gvk != id.gvk {
            return false;
        }
        let ns = self.namespace();
        if gvk.is_cluster_scoped() {
            return true;
        }
        let a = if ns.is_empty() { "default" } else { ns };
        let b = if id.namespace.is_empty() {
            "default"
        } else {
            id.namespace.as_str()
        };
        a == b
    }

    /// The identity the object had when it entered the build.
    pub(crate) fn org_id(&self) -> ResId {
        match self.prev_ids.first() {
            Some((kind, name, ns)) => {
                let mut gvk = self.gvk();
                gvk.kind = kind.clone();
                ResId {
                    gvk,
                    name: name.clone(),
                    namespace: ns.clone(),
                }
            }
            None => self.id(),
        }
    }

    /// All identities the object had before its current one, oldest first.
    pub(crate) fn previous_ids(&self) -> Vec<ResId> {
        let gvk = self.gvk();
        self.prev_ids
            .iter()
            .map(|(kind, name, ns)| ResId {
                gvk: Gvk {
                    kind: kind.clone(),
                    ..gvk.clone()
                },
                name: name.clone(),
                namespace: ns.clone(),
            })
            .collect()
    }

    /// Remember the current identity before renaming.
    pub(crate) fn store_previous_id(&mut self) {
        let id = self.id();
        let ns = id.effective_namespace().to_string();
        self.prev_ids.push((id.gvk.kind, id.name, ns));
    }

    pub(crate) fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        if !matches!(self.obj.get("metadata"), Some(Value::Object(_))) {
            self.obj
                .insert("metadata".into(), Value::Object(Map::new()));
        }
        match self.obj.get_mut("metadata") {
            Some(Value::Object(m)) => m,
            _ => unreachable!("metadata was just made an object"),
        }
    }

    /// Set `metadata.name`.
    pub(crate) fn set_name(&mut self, name: &str) {
        self.metadata_mut()
            .insert("name".into(), Value::String(name.to_string()));
    }

    /// Set `metadata.namespace`.
    pub(crate) fn set_namespace(&mut self, ns: &str) {
        self.metadata_mut()
            .insert("namespace".into(), Value::String(ns.to_string()));
    }

    /// Labels as strings.
    pub(crate) fn labels(&self) -> Map<String, Value> {
        self.obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// Annotations.
    /// Whether kustomize leaves this object out of its output: it is annotated
    /// `config.kubernetes.io/local-config` with any value but `false`.
    pub(crate) fn is_local_config(&self) -> bool {
        self.obj
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("config.kubernetes.io/local-config"))
            .is_some_and(|v| scalar_string(v) != "false")
    }

    pub(crate) fn annotations(&self) -> Map<String, Value> {
        self.obj
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

/// Text of a scalar value as kustomize's string accessors see it.
pub(crate) fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}
