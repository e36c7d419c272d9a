//! `plumb ui`: a live web view of GitRepositories, Syncs, Policies, the objects a Sync applied,
//! their health and their drift, served on loopback with the user's own kubeconfig.
//!
//! Every read is a watch of the user's client ([`store`]), so their RBAC decides what the page
//! shows; the actions (reconcile now, suspend, resume) are the CLI's own patches, sent with the
//! same client. Pages are rendered on the server ([`pages`]) from plain view models ([`model`]);
//! a server-sent event tells an open page that the cluster changed, and its script fetches the
//! page again and swaps the content in, so it stays live without a reload.

mod drift;
mod guard;
mod intent;
mod model;
mod pages;
mod server;
mod store;
mod tracker;

use std::net::SocketAddr;
use std::sync::Arc;

use plumb_artifact::TokenSecret;

use crate::kube_args::Target;

/// Flags of `plumb ui`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Where to serve the page (loopback only, unless --allow-non-loopback).
    #[arg(long, default_value = "127.0.0.1:7777")]
    pub addr: SocketAddr,
    /// Show every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Serve on an address other machines can reach. The page has no login of its own: anyone
    /// who reaches it sees what your kubeconfig may read and can reconcile, suspend and resume.
    #[arg(long)]
    pub allow_non_loopback: bool,
    /// The Secret (`[NAMESPACE/]NAME`) holding the token the render controller's artifact server
    /// asks for, read with your kubeconfig, to show drift as a diff against the rendered objects
    /// (the controllers' `--artifact-token-secret`).
    #[arg(long)]
    pub artifact_token_secret: Option<TokenSecret>,
    #[command(flatten)]
    pub target: Target,
}

/// Serves the page until Ctrl-C.
pub async fn run(args: &Args) -> anyhow::Result<()> {
    if !args.addr.ip().is_loopback() && !args.allow_non_loopback {
        anyhow::bail!(
            "--addr {}: not a loopback address; the page shows what your kubeconfig may read to whoever reaches it, so it serves on loopback only (pass --allow-non-loopback to serve there anyway)",
            args.addr
        );
    }
    // reqwest (artifact downloads) uses rustls without a process-wide provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (config, namespace) = args.target.config().await?;
    let client = kube::Client::try_from(config.clone())?;
    // Artifacts through the API server's service proxy: its 503 (no endpoints) is an answer,
    // not a reason to retry for minutes, as the client's default policy would.
    let mut no_retry = config;
    no_retry.default_retry = false;
    let proxy_client = kube::Client::try_from(no_retry)?;
    let scope = (!args.all_namespaces).then_some(namespace);
    let token = match &args.artifact_token_secret {
        Some(secret) => Some(intent::read_token(&client, secret, scope.as_deref()).await?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.addr))?;
    let bound = listener.local_addr()?;
    let store = store::Store::start(client.clone(), scope.clone());
    store.wait_listed().await;
    let artifacts = intent::Artifacts::new(proxy_client, token)?;
    let trackers =
        tracker::Trackers::new(client.clone(), store.clone(), artifacts, scope.is_some());
    let guard = guard::Guard::new(bound, args.allow_non_loopback)?;
    let app = server::App {
        client,
        store,
        trackers,
        guard: Arc::new(guard),
        scope,
    };
    println!("plumb ui: serving http://{bound}/ (Ctrl-C stops)");
    plumb_ops::init_tracing(plumb_ops::LogFormat::Plain);
    server::serve(listener, app).await
}
