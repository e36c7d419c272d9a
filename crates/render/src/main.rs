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
    let args = Args::parse();
    plumb_ops::init_tracing(args.config.log_format);
    plumb_render::run(args.config).await?;
    Ok(())
}
