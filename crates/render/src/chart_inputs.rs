//! What a chart render reads from the cluster before it runs: the values `spec.helm.valuesFrom`
//! names (ConfigMap and Secret keys in the Sync's namespace) and the cluster's capabilities
//! (`.Capabilities.KubeVersion` and `.APIVersions`, from discovery, cached).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::discovery::Discovery;
use kube::{Api, Client};
use plumb_api::helm::ValuesReference;
use plumb_api::reference::DataKind;
use plumb_helm::Capabilities;
use sha2::{Digest as _, Sha256};

/// How long discovered capabilities are used before discovery runs again. A CRD installed in
/// the meantime shows in `.Capabilities.APIVersions` at the next render after that.
pub const CAPABILITIES_TTL: Duration = Duration::from_secs(120);

/// The values and capabilities of one chart render, read from the cluster.
#[derive(Debug, Clone, Default)]
pub struct ChartInputs {
    /// The `valuesFrom` documents, in order (optional ones that are missing left out).
    pub values_from: Vec<String>,
    /// The cluster's capabilities.
    pub capabilities: Capabilities,
}

impl ChartInputs {
    /// A digest of everything here, for the render cache key (values are never stored).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for doc in &self.values_from {
            h.update(Sha256::digest(doc.as_bytes()));
        }
        h.update(
            self.capabilities
                .kube_version
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
        for v in &self.capabilities.api_versions {
            h.update(b"\0");
            h.update(v.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Why the values of `valuesFrom` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ValuesFromError {
    /// The object or key does not exist (and the reference is not optional).
    #[error("helm valuesFrom: {kind:?} {namespace}/{name}: {what}")]
    Missing {
        /// ConfigMap or Secret.
        kind: DataKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// What is missing.
        what: String,
    },
    /// Reading it failed.
    #[error("helm valuesFrom: reading {kind:?} {namespace}/{name}: {source}")]
    Api {
        /// ConfigMap or Secret.
        kind: DataKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
}

impl ValuesFromError {
    /// Whether trying again may succeed without a change (an API error); a missing object is
    /// waited for by the watch on ConfigMaps and Secrets instead.
    pub fn is_transient(&self) -> bool {
        matches!(self, ValuesFromError::Api { .. })
    }
}

/// Reads the values documents `refs` name in `namespace`, in order.
pub async fn values_from(
    client: &Client,
    namespace: &str,
    refs: &[ValuesReference],
) -> Result<Vec<String>, ValuesFromError> {
    let mut out = Vec::new();
    for r in refs {
        let missing = |what: String| ValuesFromError::Missing {
            kind: r.kind,
            namespace: namespace.to_owned(),
            name: r.name.clone(),
            what,
        };
        let api_err = |source| ValuesFromError::Api {
            kind: r.kind,
            namespace: namespace.to_owned(),
            name: r.name.clone(),
            source,
        };
        let value: Option<Result<String, ValuesFromError>> =
            match r.kind {
                DataKind::ConfigMap => {
                    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                    match api.get_opt(&r.name).await.map_err(api_err)? {
                        None => None,
                        Some(cm) => cm
                            .data
                            .and_then(|mut d| d.remove(r.key()))
                            .map(Ok)
                            .or_else(|| Some(Err(missing(format!("has no key {:?}", r.key()))))),
                    }
                }
                DataKind::Secret => {
                    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
                    match api.get_opt(&r.name).await.map_err(api_err)? {
                        None => None,
                        Some(s) => match s.data.and_then(|mut d| d.remove(r.key())) {
                            None => Some(Err(missing(format!("has no key {:?}", r.key())))),
                            Some(bytes) => Some(String::from_utf8(bytes.0).map_err(|_| {
                                missing(format!("key {:?} is not UTF-8 text", r.key()))
                            })),
                        },
                    }
                }
            };
        match value {
            Some(Ok(doc)) => out.push(doc),
            Some(Err(_)) | None if r.optional => {}
            Some(Err(e)) => return Err(e),
            None => return Err(missing("not found".to_owned())),
        }
    }
    Ok(out)
}

/// What the cluster serves, as Helm's `--api-versions` spells it: every `group/version` (`v1`
/// for the core group) and every `group/version/Kind`, sorted.
pub fn version_set<'a>(
    served: impl IntoIterator<Item = (&'a str, &'a str, Vec<String>)>,
) -> Vec<String> {
    let mut set = BTreeSet::new();
    for (group, version, kinds) in served {
        let gv = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        for kind in kinds {
            set.insert(format!("{gv}/{kind}"));
        }
        set.insert(gv);
    }
    set.into_iter().collect()
}

/// The cluster's version and served API versions, by discovery (aggregated when the server
/// offers it).
pub async fn discover(client: &Client) -> Result<Capabilities, kube::Error> {
    let version = client.apiserver_version().await?;
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone()).run().await?,
    };
    let mut served = Vec::new();
    for g in discovery.groups() {
        for v in g.versions() {
            let kinds = g
                .versioned_resources(v)
                .into_iter()
                .map(|(ar, _)| ar.kind)
                .collect();
            served.push((g.name(), v, kinds));
        }
    }
    Ok(Capabilities {
        kube_version: Some(version.git_version),
        api_versions: version_set(served),
    })
}

/// Capabilities discovered at most [`CAPABILITIES_TTL`] ago, shared by every render.
#[derive(Default)]
pub struct CapabilitiesCache {
    last: tokio::sync::Mutex<Option<(Instant, Capabilities)>>,
}

impl CapabilitiesCache {
    /// The cached capabilities, discovered again when older than the TTL. When discovery
    /// fails, the last ones found are used; with none, the error is returned.
    pub async fn get(&self, client: &Client) -> Result<Capabilities, kube::Error> {
        let mut last = self.last.lock().await;
        if let Some((at, caps)) = last.as_ref()
            && at.elapsed() < CAPABILITIES_TTL
        {
            return Ok(caps.clone());
        }
        match discover(client).await {
            Ok(caps) => {
                *last = Some((Instant::now(), caps.clone()));
                Ok(caps)
            }
            Err(e) => match last.as_ref() {
                Some((_, caps)) => {
                    tracing::warn!(error = %e, "discovery failed; using the capabilities found before");
                    Ok(caps.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_set_spells_versions_as_helm_does() {
        let set = version_set([
            ("", "v1", vec!["Pod".to_owned(), "ConfigMap".to_owned()]),
            ("apps", "v1", vec!["Deployment".to_owned()]),
            ("apps", "v1", vec!["Deployment".to_owned()]),
        ]);
        assert_eq!(
            set,
            [
                "apps/v1",
                "apps/v1/Deployment",
                "v1",
                "v1/ConfigMap",
                "v1/Pod"
            ]
        );
    }

    #[test]
    fn the_digest_changes_with_values_and_capabilities() {
        let a = ChartInputs::default();
        let mut b = a.clone();
        b.values_from.push("x: 1".into());
        assert_ne!(a.digest(), b.digest());
        let mut c = a.clone();
        c.capabilities.api_versions.push("example.com/v1".into());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.digest(), ChartInputs::default().digest());
    }
}
