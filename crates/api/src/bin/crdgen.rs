//! Prints the CustomResourceDefinitions of the three plumb kinds, or writes one file per kind.
//!
//! `crdgen` prints all three as one YAML stream; `crdgen --out-dir crds` writes
//! `crds/<plural>.<group>.yaml`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out_dir = match args.as_slice() {
        [] => None,
        [flag, dir] if flag == "--out-dir" => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("usage: crdgen [--out-dir DIR]");
            return ExitCode::from(2);
        }
    };
    let crds = match plumb_api::crd::all_yaml() {
        Ok(crds) => crds,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out_dir {
        None => {
            for (_, yaml) in &crds {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            for (file, yaml) in &crds {
                let path = dir.join(file);
                if let Err(e) = std::fs::write(&path, yaml) {
                    eprintln!("crdgen: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", path.display());
            }
        }
    }
    ExitCode::SUCCESS
}
