//! Logging setup: always to stderr (stdout belongs to protocols), human or JSON.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Compact human-readable lines.
    #[default]
    Human,
    /// One JSON object per line, with the current span's fields (e.g. `run_id`).
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_level`.
/// Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{default_level},bollard=warn,hyper=warn,rmcp=warn"))
    });
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_span_events(FmtSpan::NONE)
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}
