//! `plumb`: renders a kustomization itself and hands every other command to `plumb-cli`.
//!
//! `plumb build DIR` of a kustomization is run once per render in CI scripts and editors, so its
//! cost is mostly process start-up. The whole command line (`plumb-cli`: controllers, the web
//! view, kube, TLS) costs milliseconds to load before `main`, most of it the dynamic loader
//! relocating the binary and OpenSSL. This binary links only the kustomize engine: it answers
//! `plumb build [DIR] [--reorder legacy|none] [--root DIR]` for a directory holding a
//! kustomization, printing what `plumb-cli build` prints, byte for byte, on stdout and stderr,
//! with the same exit code. Anything else (other commands, other options, `--help`, a Helm chart,
//! a kustomization with `helmCharts`, a plain directory, a path that does not resolve) is passed
//! unchanged to `plumb-cli`, found
//! next to this binary, which replaces this process (same pid, same arguments).

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use plumb_kustomize::{BuildOptions, Reorder};

/// The binary holding every command, installed next to this one.
const FULL: &str = "plumb-cli";

/// A `plumb build` this binary answers itself.
#[derive(Debug, PartialEq, Eq)]
struct Build {
    dir: Option<PathBuf>,
    reorder: Reorder,
    root: Option<PathBuf>,
}

/// Reads `build [DIR] [--reorder legacy|none] [--root DIR]`, each option at most once, the way
/// clap reads them for `plumb-cli build` (`--opt value` or `--opt=value`). `None` for anything
/// else, which `plumb-cli` then reads (and explains, when it is wrong).
fn fast_build(args: &[OsString]) -> Option<Build> {
    let (first, rest) = args.split_first()?;
    if first != "build" {
        return None;
    }
    let mut out = Build {
        dir: None,
        reorder: Reorder::Legacy,
        root: None,
    };
    let (mut reorder_seen, mut i) = (false, 0);
    while i < rest.len() {
        let arg = rest[i].to_str()?;
        i += 1;
        let Some(opt) = arg.strip_prefix("--") else {
            if arg.starts_with('-') || out.dir.is_some() {
                return None;
            }
            out.dir = Some(PathBuf::from(arg));
            continue;
        };
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, v),
            None => {
                let v = rest.get(i)?.to_str()?;
                i += 1;
                (opt, v)
            }
        };
        if value.is_empty() || value.starts_with('-') {
            return None;
        }
        match name {
            "reorder" if !reorder_seen => {
                reorder_seen = true;
                out.reorder = match value {
                    "legacy" => Reorder::Legacy,
                    "none" => Reorder::None,
                    _ => return None,
                };
            }
            "root" if out.root.is_none() => out.root = Some(PathBuf::from(value)),
            _ => return None,
        }
    }
    Some(out)
}

/// `Error: ` and the error with its causes, as `plumb-cli` prints them (anyhow's `{:#}`).
fn report(e: &dyn std::error::Error) -> String {
    let mut text = format!("Error: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Builds and prints when `b` names a kustomization; `None` when `plumb-cli` must answer.
fn run(b: &Build) -> Option<ExitCode> {
    let dir = b
        .dir
        .as_deref()
        .unwrap_or(Path::new("."))
        .canonicalize()
        .ok()?;
    if dir.join("Chart.yaml").is_file() || !plumb_kustomize::has_kustomization(&dir) {
        return None;
    }
    let root = match &b.root {
        Some(r) => r.canonicalize().ok()?,
        None => PathBuf::from("/"),
    };
    let opts = BuildOptions {
        reorder: b.reorder,
        ..BuildOptions::default()
    };
    let printed = match plumb_kustomize::build(&root, &dir, &opts) {
        Ok(objects) => std::io::stdout()
            .lock()
            .write_all(plumb_kustomize::to_yaml(&objects).as_bytes()),
        // Charts are rendered by Helm, which `plumb-cli` runs.
        Err(plumb_kustomize::Error::NoChartEngine { .. }) => return None,
        Err(e) => {
            eprintln!("{}", report(&e));
            return Some(ExitCode::FAILURE);
        }
    };
    Some(match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: writing output: {e}");
            ExitCode::FAILURE
        }
    })
}

fn main() -> ExitCode {
    let mut argv = std::env::args_os();
    let argv0 = argv.next().unwrap_or_else(|| OsString::from("plumb"));
    let args: Vec<OsString> = argv.collect();
    if let Some(code) = fast_build(&args).as_ref().and_then(run) {
        return code;
    }
    let full = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name(FULL),
        Err(e) => {
            eprintln!("Error: cannot find {FULL}: this executable's path: {e}");
            return ExitCode::FAILURE;
        }
    };
    let e = Command::new(&full).arg0(&argv0).args(&args).exec();
    eprintln!(
        "Error: {}: {e} (plumb runs every command but `plumb build` of a kustomization with {FULL}, installed next to it)",
        full.display()
    );
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn parse(args: &[&str]) -> Option<Build> {
        fast_build(
            &args
                .iter()
                .map(OsStr::new)
                .map(OsStr::to_owned)
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn kustomization_builds_are_read_here() {
        assert_eq!(
            parse(&["build", "dir", "--reorder", "none", "--root=/r"]),
            Some(Build {
                dir: Some(PathBuf::from("dir")),
                reorder: Reorder::None,
                root: Some(PathBuf::from("/r")),
            })
        );
        assert_eq!(
            parse(&["build", "--reorder=legacy"]),
            Some(Build {
                dir: None,
                reorder: Reorder::Legacy,
                root: None,
            })
        );
    }

    #[test]
    fn everything_else_goes_to_the_full_command_line() {
        for args in [
            &[][..],
            &["get"],
            &["build", "--help"],
            &["build", "-h"],
            &["build", "a", "b"],
            &["build", "--sync", "s.yaml"],
            &["build", "chart", "-f", "values.yaml"],
            &["build", "--reorder", "sideways"],
            &["build", "--reorder", "none", "--reorder", "none"],
            &["build", "--root"],
            &["build", "--root", "--reorder", "none"],
            &["build", "--", "dir"],
            &["--version"],
        ] {
            assert_eq!(parse(args), None, "{args:?}");
        }
    }

    #[test]
    fn errors_print_with_their_causes() {
        #[derive(Debug)]
        struct Outer(std::fmt::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("kustomization k")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        assert_eq!(
            report(&Outer(std::fmt::Error)),
            "Error: kustomization k: an error occurred when formatting an argument"
        );
    }
}
