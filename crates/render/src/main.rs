//! `plumb-render-controller`: the render controller as its own process.

use clap::Parser;

/// Renders Syncs and evaluates Policies.
#[derive(Parser)]
#[command(name = "plumb-render-controller", version)]
struct Cli {
    #[command(flatten)]
    runtime: plumb_ops::RuntimeFlags,
    #[command(flatten)]
    config: plumb_render::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = plumb_ops::Runtime::start(cli.runtime).await?;
    plumb_render::run(&runtime, cli.config).await?;
    Ok(())
}
