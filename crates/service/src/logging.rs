//! Log set-up shared by every binary: text (colour only on a terminal,
//! control characters escaped) or JSON lines, to stderr.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The logging flags of every binary (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// `text` or `json` (JSON lines for log shippers).
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Same as `--log-format json`; kept for existing deployments.
    #[arg(long, env = "SWITCHYARD_LOG_JSON", hide = true, global = true)]
    pub log_json: bool,
    /// Exports trace spans over OTLP/HTTP to this collector (its base URL,
    /// e.g. `http://jaeger:4318`; `/v1/traces` is appended). Off when unset.
    #[arg(long, env = "SWITCHYARD_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
}

impl LogArgs {
    pub fn format(&self) -> LogFormat {
        if self.log_json {
            LogFormat::Json
        } else {
            self.log_format
        }
    }

    /// Logs as [`init_logging`] does, and exports traces when
    /// `otlp_endpoint` is set; keep the guard until `main` returns.
    pub fn init(&self) -> Result<crate::Telemetry, crate::TelemetryError> {
        init_logging_with(self.format(), "info", self.otlp_endpoint.as_deref())
    }
}

/// [`LogArgs::init`] for a service's `main`: a bad `otlp_endpoint` is a
/// start-up failure (exit 2), like any invalid configuration. Hold the
/// guard until `main` returns, so the last spans are flushed.
pub fn init_telemetry(args: &LogArgs) -> crate::Telemetry {
    match args.init() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            std::process::exit(2)
        }
    }
}

/// Logs to stderr at `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    init_logging_at(format, "info");
}

/// Logs to stderr at `RUST_LOG`, else `default_level` (the ops CLI keeps
/// its output quiet with `warn`).
pub fn init_logging_at(format: LogFormat, default_level: &str) {
    // Without an endpoint nothing can fail.
    let _ = init_logging_with(format, default_level, None);
}

/// Logs to stderr at `RUST_LOG`, else `default_level`; with an OTLP
/// endpoint, also exports spans (see [`crate::telemetry`]). The level
/// filter applies to the log lines only: `RUST_LOG=warn` keeps the spans.
pub fn init_logging_with(format: LogFormat, default_level: &str, otlp_endpoint: Option<&str>) -> Result<crate::Telemetry, crate::TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Escape codes in a file or a log shipper's input are noise.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (guard, traces) = crate::telemetry::layer(otlp_endpoint)?;
    let _ = tracing_subscriber::registry().with(layer(format, ansi, std::io::stderr).with_filter(filter)).with(traces).try_init();
    Ok(guard)
}

/// The formatting layer, separate from [`init_logging`] so tests can
/// capture what it writes.
pub fn layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        // serde_json escapes control characters in every string it writes.
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_ansi(false).with_writer(writer).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(escaped_field).delimited(" "))
            .boxed(),
    }
}

/// `name=value`, or the bare message, with control characters escaped.
/// Values recorded with `%` (payout ids, keys, vendor error text) are
/// written through `Display` and would otherwise reach the log raw: a
/// newline forges a log line, an ESC sequence rewrites a terminal.
fn escaped_field(writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    if field.name() != "message" {
        write!(writer, "{}=", field.name())?;
    }
    write!(Escaping(writer), "{value:?}")
}

/// Passes text through, escaping control characters and the bidirectional
/// overrides that reorder what a terminal shows.
pub struct Escaping<W>(pub W);

impl<W: fmt::Write> fmt::Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut clean = 0;
        for (i, c) in s.char_indices() {
            if !needs_escape(c) {
                continue;
            }
            self.0.write_str(&s[clean..i])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            clean = i + c.len_utf8();
        }
        self.0.write_str(&s[clean..])
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: LogFormat) -> String {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::registry().with(layer(format, false, move || sink.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let hostile = "po-1\nINFO forged line\r\u{1b}[2J\u{202e}";
            tracing::info!(payout_id = %hostile, key = hostile, "handled {}", hostile);
        });
        let bytes = captured.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn text_logs_escape_control_characters_in_every_field() {
        let out = logged(LogFormat::Text);
        assert_eq!(out.matches('\n').count(), 1, "one event, one line: {out:?}");
        assert!(!out.contains('\u{1b}') && !out.contains('\r') && !out.contains('\u{202e}'), "{out:?}");
        assert!(out.contains("payout_id=po-1\\nINFO forged line\\r\\u{1b}[2J\\u{202e}"), "{out:?}");
        assert!(out.contains("handled po-1\\nINFO"), "the message is escaped too: {out:?}");
    }

    #[test]
    fn json_logs_are_one_object_per_line() {
        let out = logged(LogFormat::Json);
        assert_eq!(out.matches('\n').count(), 1, "{out:?}");
        let line: serde_json::Value = serde_json::from_str(out.trim_end()).expect("json");
        assert_eq!(line["fields"]["payout_id"], "po-1\nINFO forged line\r\u{1b}[2J\u{202e}");
    }

    #[test]
    fn escaping_leaves_ordinary_text_alone() {
        let mut out = String::new();
        let tab = "tab\there";
        let _ = write!(Escaping(&mut out), "café ü {tab}");
        assert_eq!(out, "café ü tab\\there");
    }
}
