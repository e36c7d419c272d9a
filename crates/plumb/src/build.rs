//! `plumb build DIR`: render a kustomization with the native engine.

use anyhow::Context;
use clap::ValueEnum;
use plumb_kustomize::{BuildOptions, Reorder};
use std::io::Write;
use std::path::PathBuf;

/// Output order of `plumb build`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Order {
    /// kustomize's legacy order by kind (the default of `kubectl kustomize`).
    Legacy,
    /// The order resources are declared in.
    None,
}

/// Arguments of `plumb build`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory holding the kustomization.
    dir: PathBuf,
    /// Output order.
    #[arg(long, value_enum, default_value = "legacy")]
    reorder: Order,
    /// Directory nothing may be read outside of (default: the whole filesystem, as kubectl).
    #[arg(long)]
    root: Option<PathBuf>,
}

/// Build and print.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("{}", args.dir.display()))?;
    let root = match &args.root {
        Some(r) => r
            .canonicalize()
            .with_context(|| format!("{}", r.display()))?,
        None => PathBuf::from("/"),
    };
    let opts = BuildOptions {
        reorder: match args.reorder {
            Order::Legacy => Reorder::Legacy,
            Order::None => Reorder::None,
        },
        ..BuildOptions::default()
    };
    let objects = plumb_kustomize::build(&root, &dir, &opts)?;
    let out = plumb_kustomize::to_yaml(&objects);
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .context("writing output")?;
    Ok(())
}
