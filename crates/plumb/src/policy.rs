//! `plumb policy check --policy FILE... DIR`: render a directory locally and evaluate Policies
//! over it, so CI can gate a pull request before anything reaches a cluster.

use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `plumb policy`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// The `plumb policy` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PolicyCommand {
    /// Render DIR and evaluate every Policy in the given files; exit code 1 on a Deny violation.
    Check {
        /// A file of Policy documents (repeatable).
        #[arg(long = "policy", required = true)]
        policies: Vec<PathBuf>,
        /// The namespace the objects would be applied into (the Sync's `targetNamespace`, else
        /// its namespace): rules' `match.namespaces` judge objects without a namespace, and
        /// cluster-scoped ones, as applied there; a chart's `.Release.Namespace`.
        #[arg(long, short = 'n', default_value = "default")]
        namespace: String,
        /// The directory to render (a kustomization, a plain directory of YAML, or a Helm chart
        /// rendered as `helm template` renders it).
        dir: PathBuf,
    },
}

/// Runs the check and prints every finding; exit code 1 when a Deny rule was broken.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let PolicyCommand::Check {
        policies,
        namespace,
        dir,
    } = &args.command;
    let report = plumb_render::check_policies(policies, dir, namespace)?;
    println!("{report}");
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
