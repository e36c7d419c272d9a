//! `plumb-source-controller`: the source controller as its own process.

use clap::Parser;

/// Fetches GitRepositories and serves their artifacts.
#[derive(Parser)]
#[command(name = "plumb-source-controller", version)]
struct Cli {
    #[command(flatten)]
    config: plumb_source::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    plumb_source::run(cli.config).await?;
    Ok(())
}
