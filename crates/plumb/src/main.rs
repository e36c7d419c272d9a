//! The `plumb` command line.

mod build;
mod controllers;
mod diff;
mod get;
mod import;
mod kube_args;
mod policy;
mod reconcile;
mod ui;

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
    /// Render a directory as multi-document YAML: a kustomization like `kubectl kustomize`, a
    /// Helm chart like `helm template`, a plain directory as a Sync renders it, or what a Sync
    /// (`--sync FILE`) would apply.
    Build(build::Args),
    /// Write Flux GitRepository and Kustomization objects (files or cluster) as plumb objects.
    Import(import::Args),
    /// Show GitRepositories, their Syncs and the Policies as a tree with revisions and readiness.
    Get(get::Args),
    /// Ask a controller to reconcile a GitRepository or Sync now (`--wait` follows it).
    Reconcile(reconcile::ReconcileArgs),
    /// Stop reconciling a GitRepository or Sync; what was applied stays.
    Suspend(reconcile::SuspendArgs),
    /// Reconcile a suspended GitRepository or Sync again.
    Resume(reconcile::SuspendArgs),
    /// Show what applying a local checkout would change in the cluster (exit code 1 if anything).
    Diff(diff::Args),
    /// Check rendered objects against Policies locally (`plumb policy check`).
    Policy(policy::Args),
    /// Serve a live web view of sources, Syncs, their objects, health and drift on loopback.
    Ui(ui::Args),
    /// Run the source, render and sync controllers (or `--only` some) in this process.
    Controllers(controllers::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(args) => build::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Policy(args) => policy::run(&args),
        command => run_async(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the commands that talk to a cluster.
fn run_async(command: Command) -> anyhow::Result<ExitCode> {
    if matches!(command, Command::Controllers(_)) {
        // Process-wide allocator and libgit2 settings, before the runtime starts any thread.
        plumb_ops::allocator::tune_for_controller();
        plumb_source::git::bound_network_waits();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let done = match command {
            Command::Build(args) => build::run(&args),
            Command::Policy(args) => return policy::run(&args),
            Command::Get(args) => get::run(&args).await,
            Command::Import(args) => import::run(&args).await,
            Command::Controllers(args) => controllers::run(&args).await,
            Command::Ui(args) => ui::run(&args).await,
            Command::Reconcile(args) => reconcile::reconcile(&args).await,
            Command::Suspend(args) => reconcile::set_suspend(&args, true).await,
            Command::Resume(args) => reconcile::set_suspend(&args, false).await,
            Command::Diff(args) => {
                let changes = diff::run(&args).await?;
                return Ok(if changes {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
        };
        done.map(|()| ExitCode::SUCCESS)
    })
}
