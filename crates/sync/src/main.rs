//! `plumb-sync-controller`: the sync controller as its own process.

use clap::Parser;

/// Applies what the render controller rendered, prunes, checks health and corrects drift.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    settings: plumb_sync::Settings,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = plumb_ops::telemetry::LogFormat::Plain, env = "PLUMB_LOG_FORMAT")]
    log_format: plumb_ops::telemetry::LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    plumb_ops::telemetry::init_tracing(args.log_format);
    plumb_sync::run(args.settings).await?;
    Ok(())
}
