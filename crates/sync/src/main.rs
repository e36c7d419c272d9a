//! `plumb-sync-controller`: the sync controller as its own process.

use clap::Parser;

/// Applies what the render controller rendered, prunes, checks health and corrects drift.
#[derive(Parser)]
#[command(name = "plumb-sync-controller", version)]
struct Cli {
    #[command(flatten)]
    runtime: plumb_ops::RuntimeFlags,
    #[command(flatten)]
    config: plumb_sync::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = plumb_ops::Runtime::start(cli.runtime).await?;
    plumb_sync::run(&runtime, cli.config).await?;
    Ok(())
}
