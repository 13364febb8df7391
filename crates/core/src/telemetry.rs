//! Logging setup shared by every binary (the CLI, the in-sandbox agent, the egress proxy):
//! always to stderr (stdout belongs to protocols), human or JSON, with secrets redacted.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    let writer = RedactingStderr(std::sync::Arc::new(
        crate::redact::Redactor::from_secret_looking_env(),
    ));
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
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

/// Stderr with secrets removed: the values of this process's secret-looking environment
/// variables (API keys, tokens) and common key shapes never reach a log line, whatever a
/// dependency logs at debug level (bollard logs whole container specs, env included). The fmt
/// layer writes each event with one `write_all`, so every event is redacted whole.
#[derive(Clone)]
struct RedactingStderr(std::sync::Arc<crate::redact::Redactor>);

struct RedactingWriter(std::sync::Arc<crate::redact::Redactor>);

impl std::io::Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = self.0.redact_bytes(buf);
        std::io::stderr().write_all(&out)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.clone())
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "human" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format `{other}`: expected human or json"
            )),
        }
    }
}
