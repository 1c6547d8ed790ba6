//! Logging setup: RUST_LOG filter, pretty or JSON lines on stderr (JSON
//! lines carry the RPC span: method, request id, caller), and with the
//! `otel` feature, span export to an OTLP collector.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Installs the global subscriber (once; later calls are ignored so tests
/// can start several servers). Keep the returned guard alive for the life
/// of the process: dropping it flushes exported spans.
pub fn init(format: LogFormat) -> Guard {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        let (layer, guard) = otel::layer();
        let _ = registry.with(layer).try_init();
        guard
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = registry.try_init();
        Guard
    }
}

/// Flushes exported spans on drop (a no-op without the `otel` feature).
#[cfg(not(feature = "otel"))]
pub struct Guard;

#[cfg(feature = "otel")]
pub use otel::Guard;

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer;

    /// Shuts the tracer provider down (flushing spans) on drop.
    pub struct Guard(Option<SdkTracerProvider>);

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(p) = self.0.take() {
                let _ = p.shutdown();
            }
        }
    }

    /// The OpenTelemetry layer, when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    pub fn layer<S>() -> (Option<Box<dyn Layer<S> + Send + Sync>>, Guard)
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
            return (None, Guard(None));
        }
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("berth: OpenTelemetry export disabled: {e}");
                return (None, Guard(None));
            }
        };
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("berth")
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("berth");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer).boxed();
        (Some(layer), Guard(Some(provider)))
    }
}
