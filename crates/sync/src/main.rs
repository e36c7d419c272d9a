//! `plumb-sync-controller`: the sync controller as its own process.

use clap::Parser;

/// Applies what the render controller rendered, prunes, checks health and corrects drift.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    settings: plumb_sync::Settings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    plumb_sync::run(args.settings).await?;
    Ok(())
}
