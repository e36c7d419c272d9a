//! `plumb ui` as a user runs it, in its own process, for tests that read its pages.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::{Error, Result};

/// A running `plumb ui` on a free loopback port; killed when dropped.
pub struct Ui {
    child: Child,
    url: String,
}

impl Ui {
    /// Runs `plumb ui --addr 127.0.0.1:0 -n NAMESPACE FLAGS...` from the binary `plumb` with the
    /// kubeconfig at `kubeconfig`, and returns once it has printed the URL it serves. Its log,
    /// which follows on stdout, goes to the file `log` (at debug level for plumb) or is dropped;
    /// either way the pipe never fills.
    pub fn start(
        plumb: &Path,
        namespace: &str,
        kubeconfig: &Path,
        flags: &[String],
        log: Option<&Path>,
    ) -> Result<Self> {
        let mut command = Command::new(plumb);
        command
            .args(["ui", "--addr", "127.0.0.1:0", "-n", namespace])
            .args(flags)
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if log.is_some() {
            command.env("RUST_LOG", "info,plumb=debug");
        }
        let child = command
            .spawn()
            .map_err(|e| Error::Io(format!("starting {} ui: {e}", plumb.display())))?;
        // Built before the first read, so that an error past this point kills the child.
        let mut ui = Self {
            url: String::new(),
            child,
        };
        let stdout = ui.child.stdout.take();
        let mut stdout =
            BufReader::new(stdout.ok_or_else(|| Error::Io("plumb ui: no stdout".into()))?);
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .map_err(|e| Error::Io(format!("reading what plumb ui printed: {e}")))?;
        ui.url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .ok_or_else(|| Error::Io(format!("plumb ui printed no URL: {line:?}")))?
            .trim_end_matches('/')
            .to_owned();
        match log {
            Some(path) => {
                let mut file = std::fs::File::create(path)
                    .map_err(|e| Error::Io(format!("creating {}: {e}", path.display())))?;
                std::thread::spawn(move || std::io::copy(&mut stdout, &mut file));
            }
            None => {
                std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            }
        }
        Ok(ui)
    }

    /// Where it serves, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
