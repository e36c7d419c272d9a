//! What every command that talks to a cluster shares: the kubeconfig context and the namespace.

use kube::{Client, Config};

/// Which cluster and namespace a command works on.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// The namespace; the kubeconfig context's namespace when unset.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig context to use; the current one when unset.
    #[arg(long, global = true)]
    pub context: Option<String>,
}

impl Target {
    /// A client for the chosen context, and the namespace to work in.
    pub async fn connect(&self) -> anyhow::Result<(Client, String)> {
        let (config, namespace) = self.config().await?;
        Ok((Client::try_from(config)?, namespace))
    }

    /// The client configuration [`Target::connect`] uses, and the namespace to work in.
    pub async fn config(&self) -> anyhow::Result<(Config, String)> {
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(kubeconfig_err) if self.context.is_none() => Config::incluster().map_err(|_| {
                anyhow::anyhow!(
                    "no cluster to talk to: reading the kubeconfig failed: {kubeconfig_err}"
                )
            })?,
            Err(e) => return Err(anyhow::anyhow!("reading the kubeconfig: {e}")),
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        Ok((config, namespace))
    }
}
