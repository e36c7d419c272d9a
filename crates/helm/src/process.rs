//! Running the Helm binary as a confined child process: a cleared environment with empty Helm
//! directories, a memory limit, a wall-clock deadline after which it is killed, and bounded
//! output.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

/// What the child may spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Killed after this long (limit `render-timeout`).
    pub timeout: Duration,
    /// The most memory it may write to, in bytes (limit `chart-max-memory`), enforced as
    /// `RLIMIT_DATA`: private writable mappings, so the Go runtime's large address-space
    /// reservations do not count, the heap it uses does.
    pub max_memory: u64,
    /// The most bytes read from its standard output (limit `max-rendered-size`).
    pub max_output: u64,
}

/// Why the child did not produce output.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The binary could not be started.
    #[error("starting {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: String,
        /// The cause.
        source: std::io::Error,
    },
    /// It ran past its deadline and was killed.
    #[error("did not finish within {0:?} (limit render-timeout); killed")]
    Timeout(Duration),
    /// It wrote more than allowed and was killed.
    #[error("wrote more than {0} bytes (limit max-rendered-size); killed")]
    OutputTooLarge(u64),
    /// It ran out of memory under its limit.
    #[error("ran out of memory under its limit of {0} bytes (limit chart-max-memory)")]
    OutOfMemory(u64),
    /// It failed; the message is what it wrote to standard error.
    #[error("{0}")]
    Failed(String),
    /// Talking to it failed.
    #[error("reading its output: {0}")]
    Io(std::io::Error),
}

/// The most of standard error kept for a message.
const MAX_STDERR: u64 = 64 << 10;

/// Runs `binary args...` in `work` (an empty directory the caller owns) with nothing of this
/// process's environment: `HOME` and every Helm directory point into `work`, so no repository
/// list, registry login, plugin or kubeconfig of the host is seen. Returns standard output.
pub fn run(
    binary: &Path,
    args: &[std::ffi::OsString],
    work: &Path,
    limits: &ProcessLimits,
) -> Result<Vec<u8>, ProcessError> {
    let mut cmd = Command::new(binary);
    cmd.args(args)
        .current_dir(work)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (var, dir) in [
        ("HOME", "home"),
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
        ("HELM_PLUGINS", "plugins"),
    ] {
        cmd.env(var, work.join(dir));
    }
    cmd.env("HELM_REGISTRY_CONFIG", work.join("config/registry.json"))
        .env(
            "HELM_REPOSITORY_CONFIG",
            work.join("config/repositories.yaml"),
        )
        .env("HELM_REPOSITORY_CACHE", work.join("cache/repository"))
        // No cluster: a kubeconfig that does not exist (`lookup` finds nothing, as in `helm
        // template`), and no proxy settings reach the child.
        .env("KUBECONFIG", work.join("no-kubeconfig"))
        // The Go runtime collects harder as it nears the limit, instead of failing at it.
        .env("GOMEMLIMIT", (limits.max_memory / 4 * 3).to_string());
    limit_memory(&mut cmd, limits.max_memory);

    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        binary: binary.display().to_string(),
        source,
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let max_output = limits.max_output;
    let out_reader = std::thread::spawn(move || read_bounded(stdout, max_output));
    let err_reader = std::thread::spawn(move || read_bounded(stderr, MAX_STDERR));

    let status = match child
        .wait_timeout(limits.timeout)
        .map_err(ProcessError::Io)?
    {
        Some(status) => status,
        None => {
            // Killing an unreaped child cannot hit another process.
            let _ = child.kill();
            let _ = child.wait();
            let _ = out_reader.join();
            let _ = err_reader.join();
            return Err(ProcessError::Timeout(limits.timeout));
        }
    };
    let (stdout, overflow) = out_reader
        .join()
        .map_err(|_| ProcessError::Failed("output reader panicked".into()))?
        .map_err(ProcessError::Io)?;
    let (stderr, _) = err_reader
        .join()
        .map_err(|_| ProcessError::Failed("error reader panicked".into()))?
        .map_err(ProcessError::Io)?;
    tracing::debug!(elapsed = ?started.elapsed(), "helm finished");
    if overflow {
        return Err(ProcessError::OutputTooLarge(limits.max_output));
    }
    let stderr = String::from_utf8_lossy(&stderr);
    if status.success() {
        return Ok(stdout);
    }
    if stderr.contains("out of memory") || stderr.contains("cannot allocate memory") {
        return Err(ProcessError::OutOfMemory(limits.max_memory));
    }
    Err(ProcessError::Failed(failure_message(&stderr, status)))
}

/// Reads at most `max` bytes; past that, stops reading (the writer then fails on a closed pipe)
/// and says so.
fn read_bounded<R: Read>(pipe: Option<R>, max: u64) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(pipe) = pipe else {
        return Ok((Vec::new(), false));
    };
    let mut buf = Vec::new();
    pipe.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    let over = buf.len() as u64 > max;
    buf.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    Ok((buf, over))
}

/// Helm's own words: its `Error: ...` line(s), without the prefix, or how it ended.
fn failure_message(stderr: &str, status: std::process::ExitStatus) -> String {
    let error: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("Error: "))
        .collect();
    let text = if error.is_empty() {
        stderr.trim().to_owned()
    } else {
        error
            .join("\n")
            .trim_start_matches("Error: ")
            .trim()
            .to_owned()
    };
    if text.is_empty() {
        format!("exited with {status}")
    } else {
        text
    }
}

/// Caps the child's data memory (`RLIMIT_DATA`) before it runs, so a chart cannot take the
/// controller's memory.
#[allow(unsafe_code)]
fn limit_memory(cmd: &mut Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit(2),
    // which is async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ProcessLimits {
        ProcessLimits {
            timeout: Duration::from_secs(20),
            max_memory: 1 << 30,
            max_output: 1 << 20,
        }
    }

    fn sh(script: &str, limits: &ProcessLimits) -> Result<Vec<u8>, ProcessError> {
        let work = tempfile::tempdir().unwrap();
        run(
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            work.path(),
            limits,
        )
    }

    #[test]
    fn the_child_sees_no_environment_of_ours() {
        let out = sh("export -p", &limits()).unwrap();
        let env = String::from_utf8(out).unwrap();
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .map(|l| l.split('=').next().unwrap_or_default())
            .collect();
        for name in &names {
            assert!(
                name.starts_with("HELM_")
                    || ["HOME", "KUBECONFIG", "GOMEMLIMIT", "PWD"].contains(name),
                "{name} leaked into the child: {env}"
            );
        }
        assert!(names.contains(&"HELM_CACHE_HOME"), "{env}");
        let ours = std::env::var("HOME").unwrap_or_default();
        assert!(!env.contains(&format!("HOME='{ours}'")), "{env}");
    }

    #[test]
    fn a_child_past_its_deadline_is_killed() {
        let mut l = limits();
        l.timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = sh("exec /bin/sleep 30", &l).unwrap_err();
        assert!(matches!(err, ProcessError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(err.to_string().contains("render-timeout"), "{err}");
    }

    #[test]
    fn output_past_the_limit_is_refused() {
        let mut l = limits();
        l.max_output = 1000;
        let err = sh("exec /usr/bin/yes", &l).unwrap_err();
        assert!(matches!(err, ProcessError::OutputTooLarge(1000)), "{err}");
    }

    #[test]
    fn the_data_memory_is_capped() {
        let mut l = limits();
        l.max_memory = 64 << 20;
        let out = sh("ulimit -d", &l).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().trim(), "65536");
    }

    #[test]
    fn failures_carry_helms_error_line() {
        let err = sh(
            "echo 'walk.go:75: warning' >&2; echo 'Error: template: c/templates/a.yaml:1:3: boom' >&2; exit 1",
            &limits(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "template: c/templates/a.yaml:1:3: boom");
    }
}
