//! `plumb-source-controller`: the source controller as its own process.

use clap::Parser;

/// Fetches GitRepositories and serves their artifacts.
#[derive(Parser)]
#[command(name = "plumb-source-controller", version)]
struct Cli {
    #[command(flatten)]
    runtime: plumb_ops::RuntimeFlags,
    #[command(flatten)]
    config: plumb_source::Config,
}

fn main() -> anyhow::Result<()> {
    // Before the runtime starts any thread.
    plumb_ops::allocator::tune_for_controller();
    let cli = Cli::parse();
    // Process-wide libgit2 settings, before the runtime starts any thread.
    plumb_source::git::bound_network_waits();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let runtime = plumb_ops::Runtime::start(cli.runtime).await?;
            plumb_source::run(&runtime, cli.config).await
        })?;
    Ok(())
}
