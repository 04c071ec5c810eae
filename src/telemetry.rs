//! Logging setup: `tracing` with a text or JSON format and `RUST_LOG` filters.

use clap::{Args, ValueEnum};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "ROSTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax, e.g. `info,roster=debug`.
    #[arg(long, env = "RUST_LOG", default_value = "info", global = true)]
    pub log_level: String,
}

/// kube's client logs every failed API request at ERROR, with no context
/// (a starting API server's 500s, each 504 of a slow one). Roster logs each
/// failure that matters where it happens, saying what it was doing, so these
/// are off unless the filter names kube_client itself.
const QUIET_KUBE_CLIENT: &str = "kube_client::client::builder=off";

/// The filter `RUST_LOG` asks for, with kube's per-request failure lines off
/// unless it names kube_client.
fn filter(log_level: &str) -> EnvFilter {
    let filter = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    if log_level.contains("kube_client") {
        filter
    } else {
        filter.add_directive(QUIET_KUBE_CLIENT.parse().expect("a valid directive"))
    }
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(args: &LogArgs) {
    let filter = filter(&args.log_level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_clients_request_failures_are_off_unless_asked_for() {
        assert!(filter("info").to_string().contains(QUIET_KUBE_CLIENT));
        assert!(
            !filter("info,kube_client=debug")
                .to_string()
                .contains("=off")
        );
    }
}
