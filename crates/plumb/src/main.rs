//! The `plumb` command line.

mod build;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// plumb: a pull-based GitOps operator for Kubernetes.
#[derive(Parser)]
#[command(name = "plumb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a kustomization directory as multi-document YAML, like `kubectl kustomize`.
    Build(build::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
