//! Log output: human-readable lines or one JSON object per line, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (`console`, Flux's name; `plain` is the old one).
    #[default]
    #[value(name = "console", alias = "plain")]
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global `tracing` subscriber; `RUST_LOG` filters (default `info`). Calling it
/// again (e.g. when several controllers share a process) is harmless.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_set = match format {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
