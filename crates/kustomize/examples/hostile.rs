//! Prints how the engine fares on each hostile tree (`plumb_kustomize::hostile`): the error,
//! the wall-clock time and the peak memory of a build in its own process, measured by GNU time.
//!
//! `cargo run --release -p plumb-kustomize --features hostile-trees --example hostile`

use plumb_kustomize::{BuildOptions, build};
use std::path::Path;
use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [cmd, root, dir] = args.as_slice()
        && cmd == "build"
    {
        // The measured child: one build, its error on stderr, exit 1 on failure.
        match build(Path::new(root), Path::new(dir), &BuildOptions::default()) {
            Ok(objects) => println!("{} objects", objects.len()),
            Err(e) => {
                eprintln!("Error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let Ok(me) = std::env::current_exe() else {
        eprintln!("cannot find this program's path");
        std::process::exit(2);
    };
    println!("| hostile input | error | time | peak RSS |");
    println!("| --- | --- | --- | --- |");
    for tree in plumb_kustomize::hostile::trees() {
        let Ok(tmp) = tempfile::tempdir() else {
            eprintln!("cannot make a temp dir");
            std::process::exit(2);
        };
        let dir = match (tree.write)(tmp.path()) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", tree.name);
                continue;
            }
        };
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%e %M"])
            .arg(&me)
            .arg("build")
            .arg(tmp.path())
            .arg(&dir)
            .output();
        let Ok(out) = out else {
            eprintln!("cannot run /usr/bin/time (GNU time)");
            std::process::exit(2);
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        let error = stderr
            .lines()
            .find(|l| l.starts_with("Error:"))
            .unwrap_or("(no error)");
        let figures = stderr.lines().last().unwrap_or("");
        let mut f = figures.split_whitespace();
        let (secs, kib) = (f.next().unwrap_or("?"), f.next().unwrap_or("0"));
        let mib = kib.parse::<f64>().unwrap_or(0.0) / 1024.0;
        let ok = if error.contains(tree.expect) {
            ""
        } else {
            " (UNEXPECTED)"
        };
        println!(
            "| {} | {}{ok} | {secs} s | {mib:.1} MiB |",
            tree.name,
            error.replace('|', "\\|")
        );
    }
}
