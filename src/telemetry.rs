//! The tracing subscriber: human-readable or JSON lines on stderr, filtered by `RUST_LOG`, and,
//! when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the same spans exported over OTLP/HTTP.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, Settings};

/// Keeps the span exporter alive; dropping it sends the spans still queued.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("could not flush the last spans: {error}");
        }
    }
}

/// Installs the global subscriber; logs go to stderr so stdout stays clean for command output
/// (`analytics keys create` prints the token alone on stdout). Without
/// `OTEL_EXPORTER_OTLP_ENDPOINT` no exporter exists at all: spans cost what they cost before.
pub fn init(settings: &Settings) -> Telemetry {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let endpoint = settings.otlp_endpoint.as_deref();
    let provider = endpoint.and_then(|endpoint| {
        match tracer_provider(endpoint, &settings.otel_service_name) {
            Ok(provider) => Some(provider),
            Err(error) => {
                eprintln!("OTLP export is off: {error}");
                None
            }
        }
    });
    let spans = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(env!("CARGO_PKG_NAME"))));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(spans)
        .try_init();
    Telemetry { provider }
}

/// OTLP over HTTP with protobuf bodies, batched off the request path; the other standard
/// `OTEL_*` variables (headers, timeouts, batch sizes) are read by the exporter itself.
fn tracer_provider(endpoint: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build())
}
