//! The node's log output: plain text for a person, or one JSON object per line for a log
//! collector (`--log-format json`, `[logging] format = "json"`).
//!
//! Requests carry what they concern as `tracing` span fields, not as text in each message:
//! the QUIC and Kafka listeners open a `request` span naming the principal and API, and the
//! produce and fetch paths a `partition` span per partition naming the topic and partition.
//! Every log line emitted inside them carries those fields (the text format prints them
//! before the message, the JSON format lists them under `spans`). The spans are at INFO:
//! with the level filtered out (`RUST_LOG=warn`) `tracing` checks one atomic per span and
//! builds nothing, so a request allocates nothing for them.

use std::io::IsTerminal;
use std::path::Path;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colour only at a terminal with `NO_COLOR` unset).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `target`,
    /// and `spans` (the request's principal, api, topic and partition).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected text or json"
            )),
        }
    }
}

impl LogFormat {
    /// Its name in flags and the config file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// The format a config file asks for (`[logging] format`), or `None` when the file does not
/// set it or cannot be read (the node reports a bad config file itself, once logging is up).
pub fn format_in_config_file(path: &Path) -> Option<LogFormat> {
    crate::config::NodeConfig::from_file(path)
        .ok()
        .and_then(|config| config.log_format)
}

/// Installs the process's log subscriber on stderr: `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            // Colour only for a person at a terminal: escape codes in a log file or the
            // journal are noise (issue 11, bug 6). NO_COLOR (https://no-color.org) turns it
            // off there too.
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}

/// The `request` span one client request is answered in: who sent it and which API. The
/// principal is formatted only when the span is enabled.
pub fn request_span(
    principal: &crate::security::principal::KafkaPrincipal,
    api: &dyn std::fmt::Debug,
) -> tracing::Span {
    tracing::info_span!("request", principal = %principal, api = ?api)
}

/// The `partition` span the produce and fetch paths work on one partition in.
pub fn partition_span(topic: &str, partition: u32) -> tracing::Span {
    tracing::info_span!("partition", topic, partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_and_others_are_refused() {
        assert_eq!("text".parse::<LogFormat>(), Ok(LogFormat::Text));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(format.name().parse::<LogFormat>(), Ok(format));
        }
        let refused = "JSON".parse::<LogFormat>().unwrap_err();
        assert!(refused.contains("expected text or json"), "{refused}");
    }
}
