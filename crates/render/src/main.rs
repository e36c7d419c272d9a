//! `plumb-render-controller`: renders Syncs and evaluates Policies.

use clap::Parser;

/// The plumb render controller.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    config: plumb_render::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    plumb_render::run(Args::parse().config).await?;
    Ok(())
}
