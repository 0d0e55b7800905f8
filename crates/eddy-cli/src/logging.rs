//! Logs and traces. Logs go to stderr as text or JSON lines (`--log-format`),
//! filtered by `RUST_LOG` (default `warn`), coloured only on a terminal and
//! without `NO_COLOR`. With the `otel` feature, spans also go to an
//! OpenTelemetry collector over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set.

#[cfg(feature = "otel")]
use std::io::Write;
use std::io::{self, IsTerminal};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event, for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What must outlive the program's work: the span exporter, flushed by
/// [`Logging::shutdown`].
#[derive(Debug)]
pub struct Logging {
    #[cfg(feature = "otel")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Logging {
    /// Send the spans not sent yet.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.traces {
            if let Err(e) = provider.shutdown() {
                let _ = writeln!(io::stderr(), "warning: sending the last traces failed: {e}");
            }
        }
    }
}

/// Install the subscriber: logs on stderr, and spans to OTLP when asked.
pub fn init(format: LogFormat) -> Logging {
    // The redis crate's cluster client warns of every connection it loses
    // and repairs by itself (each command's exit closes its connections,
    // too); what matters reaches eddy as an error, which eddy reports. So
    // its warnings are off unless asked for (`RUST_LOG=warn,redis=warn`).
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,redis=error"));
    let logs = tracing_subscriber::fmt::layer().with_writer(io::stderr);
    let logs = match format {
        LogFormat::Text => logs.with_ansi(colours()).boxed(),
        LogFormat::Json => logs.json().with_ansi(false).boxed(),
    };
    let registry = tracing_subscriber::registry().with(logs.with_filter(filter));
    #[cfg(feature = "otel")]
    {
        let (layer, traces) = match otlp::layer() {
            Ok(Some((layer, provider))) => (Some(layer), Some(provider)),
            Ok(None) => (None, None),
            Err(e) => {
                let _ = writeln!(
                    io::stderr(),
                    "warning: OTEL_EXPORTER_OTLP_ENDPOINT is set, but no OTLP exporter could be made ({e}); no traces are sent"
                );
                (None, None)
            }
        };
        // Fails only if a subscriber is already set, which main never does.
        let _ = registry.with(layer).try_init();
        Logging { traces }
    }
    #[cfg(not(feature = "otel"))]
    {
        // Fails only if a subscriber is already set, which main never does.
        let _ = registry.try_init();
        Logging {}
    }
}

/// ANSI colours: only for a person at a terminal who did not set
/// `NO_COLOR` (<https://no-color.org>: any value but an empty one).
fn colours() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && io::stderr().is_terminal()
}

#[cfg(feature = "otel")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    /// The OTLP layer and its provider, if `OTEL_EXPORTER_OTLP_ENDPOINT` is
    /// set. The exporter reads the rest of the standard variables itself
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._HEADERS`, `..._TIMEOUT`),
    /// and the resource `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
    /// (the service name is `eddy` without them).
    pub(super) fn layer<S>() -> Result<Option<(impl Layer<S>, SdkTracerProvider)>, String>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        if !set("OTEL_EXPORTER_OTLP_ENDPOINT") {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| e.to_string())?;
        let mut resource = Resource::builder();
        if !set("OTEL_SERVICE_NAME") {
            resource = resource.with_service_name("eddy");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        // Spans at info and above (a delivery's is info), whatever RUST_LOG
        // says of logs; none from the exporter's own HTTP client, whose
        // spans would be exported in turn.
        let spans = Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("reqwest", LevelFilter::OFF)
            .with_target("hyper", LevelFilter::OFF)
            .with_target("hyper_util", LevelFilter::OFF)
            .with_target("opentelemetry", LevelFilter::OFF)
            .with_target("opentelemetry_sdk", LevelFilter::OFF)
            .with_target("opentelemetry_otlp", LevelFilter::OFF);
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("eddy"))
            .with_filter(spans);
        Ok(Some((layer, provider)))
    }
}
