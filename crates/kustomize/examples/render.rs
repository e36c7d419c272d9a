//! Render a kustomization in process, for profiling: `cargo run --release --example render DIR [RUNS]`.

use plumb_kustomize::{BuildOptions, build, to_yaml};
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let runs: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let dir = dir.canonicalize().unwrap_or(dir);
    let mut bytes = 0;
    for _ in 0..runs {
        match build(std::path::Path::new("/"), &dir, &BuildOptions::default()) {
            Ok(objs) => bytes = to_yaml(&objs).len(),
            Err(e) => {
                eprintln!("Error: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("{bytes} bytes");
}
