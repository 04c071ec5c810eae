//! Logging setup: `tracing` with a text or JSON format and `RUST_LOG` filters,
//! and, when an OTLP endpoint is configured, the same spans exported over
//! OpenTelemetry (off by default). The spans on the main paths — a SCIM
//! request, a SAML login, a reconcile, a call to an application — carry the
//! policy, object and request id, so the log lines inside them need not.

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
    /// Export spans over OTLP/HTTP to this collector base URL (e.g.
    /// `http://otel-collector:4318`; `/v1/traces` is appended). Unset: no
    /// export. The standard `OTEL_*` variables (protocol, headers, batch
    /// settings, `OTEL_SERVICE_NAME`) apply.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
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

/// Flushes and stops the span export when dropped (at the end of `main`).
pub struct Telemetry(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("flushing the OpenTelemetry spans: {error}");
            }
        }
    }
}

/// The span exporter for `endpoint`, a collector's base URL.
fn tracer_provider(endpoint: &str) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(traces)
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "roster".to_owned());
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// Installs the global subscriber. Call once, from `main`, and keep what it
/// returns until the end.
pub fn init(args: &LogArgs) -> Telemetry {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let provider = match args.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(endpoint) => match tracer_provider(endpoint) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("not exporting spans to {endpoint}: {error}");
                None
            }
        },
        None => None,
    };
    let export = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("roster")));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter(&args.log_level))
        .with(export);
    match args.log_format {
        LogFormat::Text => registry.with(logs).init(),
        LogFormat::Json => registry.with(logs.json().flatten_event(true)).init(),
    }
    Telemetry(provider)
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
