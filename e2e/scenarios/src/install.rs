//! plumb as `config/` installs it: the kustomization rendered with plumb's own kustomize engine,
//! its CRDs, namespace, ServiceAccounts and RBAC applied to the test cluster (not its Deployments
//! and Services: kwok runs no containers), the arguments of its Deployments, and for each
//! controller a kubeconfig holding a token of its ServiceAccount, so a controller run locally has
//! exactly the permissions `config/` grants it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::config::Kubeconfig;
use serde::Deserialize;
use serde_json::Value;

use crate::{Controller, Error, Result, io};

/// The namespace `config/` installs the controllers into.
pub const NAMESPACE: &str = "plumb-system";

/// The field manager the install is applied with.
const FIELD_MANAGER: &str = "plumb-e2e-config";

/// How long the controllers' ServiceAccount tokens live; longer than any scenario.
const TOKEN_SECONDS: i64 = 3600;

/// The objects `kubectl apply -k config/` would create.
pub struct Install {
    objects: Vec<Value>,
}

impl Install {
    /// Renders `config/` of this repository.
    pub fn render() -> Result<Self> {
        let root = plumb_e2e_support::repo_root();
        let built = plumb_kustomize::build(
            &root,
            &root.join("config"),
            &plumb_kustomize::BuildOptions::default(),
        )
        .map_err(|e| Error::Config(format!("rendering config/: {e}")))?;
        let yaml = plumb_kustomize::to_yaml(&built);
        let mut objects = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&yaml) {
            let value = Value::deserialize(document)
                .map_err(|e| Error::Config(format!("reading the render of config/: {e}")))?;
            if !value.is_null() {
                objects.push(value);
            }
        }
        Ok(Self { objects })
    }

    /// Every rendered object.
    pub fn objects(&self) -> &[Value] {
        &self.objects
    }

    /// The rendered objects of `kind`.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    /// Every container image of every Deployment, as `(deployment, image)`.
    pub fn images(&self) -> Vec<(String, String)> {
        let mut images = Vec::new();
        for deployment in self.of_kind("Deployment") {
            let name = deployment["metadata"]["name"].as_str().unwrap_or_default();
            let containers = deployment["spec"]["template"]["spec"]["containers"].as_array();
            for container in containers.into_iter().flatten() {
                let image = container["image"].as_str().unwrap_or_default();
                images.push((name.to_owned(), image.to_owned()));
            }
        }
        images
    }

    /// The arguments `config/` starts controller `c` with (its Deployment's container args).
    pub fn args(&self, c: Controller) -> Result<Vec<String>> {
        let name = c.deployment();
        let deployment = self
            .of_kind("Deployment")
            .find(|d| d["metadata"]["name"] == name)
            .ok_or_else(|| Error::Config(format!("config/ has no Deployment {name}")))?;
        let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .ok_or_else(|| Error::Config(format!("config/: Deployment {name} has no args")))?;
        args.iter()
            .map(|a| {
                a.as_str().map(str::to_owned).ok_or_else(|| {
                    Error::Config(format!(
                        "config/: Deployment {name}: argument {a} is not a string"
                    ))
                })
            })
            .collect()
    }

    /// Server-side applies everything but the workloads (Deployments, Services) and waits until
    /// the CRDs are Established. Idempotent: the cluster ends as `config/` says, so a rule
    /// removed from `config/` is removed from the cluster too.
    pub async fn apply(&self, client: &kube::Client) -> Result<()> {
        let mut yaml = String::new();
        for object in self
            .objects
            .iter()
            .filter(|o| o["kind"] != "Deployment" && o["kind"] != "Service")
        {
            let document = serde_yaml::to_string(object)
                .map_err(|e| Error::Config(format!("writing an object of config/: {e}")))?;
            yaml.push_str("---\n");
            yaml.push_str(&document);
        }
        plumb_e2e_support::apply_yaml(client, &yaml, FIELD_MANAGER).await?;
        // Waits for the CRDs (the same files config/ takes from crds/) to be Established.
        plumb_e2e_support::install_crds(client).await?;
        Ok(())
    }

    /// Writes, for each controller, a kubeconfig for the test cluster that authenticates with a
    /// token of the controller's ServiceAccount in [`NAMESPACE`] (a TokenRequest, as the kubelet
    /// mounts one into the Pod). Tokens, not impersonation: the sync controller impersonates
    /// tenants' ServiceAccounts itself, which a kubeconfig that already impersonates could not
    /// (impersonation does not nest), so that permission would go untested.
    pub async fn kubeconfigs(
        &self,
        client: &kube::Client,
        dir: &Path,
    ) -> Result<BTreeMap<Controller, PathBuf>> {
        let admin_path = plumb_e2e_support::kubeconfig_path();
        let admin = Kubeconfig::read_from(&admin_path)
            .map_err(|e| Error::Config(format!("reading {}: {e}", admin_path.display())))?;
        let cluster = admin
            .clusters
            .first()
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| Error::Config(format!("{} has no cluster", admin_path.display())))?;
        let server = cluster.server.unwrap_or_default();
        let ca = cluster.certificate_authority_data.ok_or_else(|| {
            Error::Config(format!(
                "{} has no certificate-authority-data",
                admin_path.display()
            ))
        })?;
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
        let mut paths = BTreeMap::new();
        for c in Controller::ALL {
            let account = c.deployment();
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(TOKEN_SECONDS),
                    ..TokenRequestSpec::default()
                },
                ..TokenRequest::default()
            };
            let issued = accounts
                .create_token_request(account, &PostParams::default(), &request)
                .await
                .map_err(|source| Error::Kube {
                    what: format!("requesting a token of ServiceAccount {NAMESPACE}/{account}"),
                    source,
                })?;
            let token = issued.status.map(|s| s.token).unwrap_or_default();
            let path = dir.join(format!("{account}.kubeconfig"));
            let kubeconfig = format!(
                "apiVersion: v1
kind: Config
clusters:
  - name: plumb-test
    cluster: {{ server: {server:?}, certificate-authority-data: {ca:?} }}
users:
  - name: {account}
    user: {{ token: {token:?} }}
contexts:
  - name: {account}
    context: {{ cluster: plumb-test, user: {account} }}
current-context: {account}
"
            );
            std::fs::write(&path, kubeconfig).map_err(io(format!("writing {}", path.display())))?;
            paths.insert(c, path);
        }
        Ok(paths)
    }
}
