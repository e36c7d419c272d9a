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

fn main() -> anyhow::Result<()> {
    // Before the runtime starts any thread.
    plumb_ops::allocator::tune_for_controller();
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let runtime = plumb_ops::Runtime::start(cli.runtime).await?;
            plumb_render::run(&runtime, cli.config).await?;
            Ok::<(), anyhow::Error>(())
        })
}
