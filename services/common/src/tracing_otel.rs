//! OpenTelemetry traces over OTLP/gRPC, off unless `--otlp-endpoint` is given.
//!
//! When on, `logging::init` adds a `tracing-opentelemetry` layer to the process's subscriber:
//! mailroot's own spans (INFO and above, from its own crates) become OpenTelemetry spans,
//! batched and exported with `opentelemetry-otlp` over tonic to the collector. The layer has
//! its own filter ([`OwnSpans`]), so the live log level (`config set log-level`, a filter on
//! the log output only) never silences traces, and traces never make the log louder.
//!
//! The trace context crosses the front-end → store gRPC calls as a W3C `traceparent` header:
//! the front-end's client interceptor calls [`inject`], the store's handlers [`extract`] it
//! and make their span a child of the remote one, so one SMTP delivery is one trace across
//! both nodes. Off, [`inject`] and [`extract`] do nothing and there is no exporter at all.
//!
//! The batch processor exports every `OTEL_BSP_SCHEDULE_DELAY` (5 s by default); [`shutdown`]
//! flushes what is left, so that the spans of the last deliveries are not lost when a node is
//! stopped (both binaries call it after their graceful stop).

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Metadata;
use tracing::subscriber::Interest;
use tracing_subscriber::layer::{Context as LayerContext, Filter};

/// The process's tracer provider, when `--otlp-endpoint` is given.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether traces are exported (`--otlp-endpoint` given and the exporter built).
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// The longest a stopping node waits for its last spans to be exported (a collector that is
/// down must not hold up the stop: with the front-end's drain it stays below Docker's 10 s).
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// mailroot's own crates, the tracing targets whose spans are exported.
const OWN_CRATES: [&str; 3] = ["mailroot_store", "mailroot_frontend", "mailroot_common"];

/// The OpenTelemetry layer's own filter: spans of mailroot's own crates at INFO and above,
/// and their WARN/ERROR events (as span events). Decided per call site, once: no cost per
/// span beyond the layer itself, and independent of the live log level.
pub struct OwnSpans;

impl OwnSpans {
    fn wants(meta: &Metadata<'_>) -> bool {
        let target = meta.target();
        let own = OWN_CRATES.iter().any(|c| {
            target
                .strip_prefix(c)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        });
        let level = *meta.level();
        own && if meta.is_span() {
            level <= tracing::Level::INFO
        } else {
            level <= tracing::Level::WARN
        }
    }
}

impl<S> Filter<S> for OwnSpans {
    fn enabled(&self, meta: &Metadata<'_>, _: &LayerContext<'_, S>) -> bool {
        Self::wants(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wants(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::INFO)
    }
}

/// The host's name (`host.name`), when the system gives one.
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .ok()
        .filter(|h| !h.is_empty())
}

/// Builds the exporter and the tracer provider for `service` (`mailroot-store`,
/// `mailroot-frontend`) and installs the W3C trace-context propagator. Must run inside the
/// tokio runtime (tonic's channel is made here). Returns the tracer for the layer.
pub(crate) fn start(
    endpoint: &str,
    service: &'static str,
) -> Result<opentelemetry_sdk::trace::SdkTracer, String> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("--otlp-endpoint {endpoint}: {e}"))?;
    let mut resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(host) = host_name() {
        resource = resource.with_attribute(KeyValue::new("host.name", host));
    }
    // Batches, on the SDK's own thread; OTEL_BSP_* tune the batches and their delay.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("mailroot");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let _ = PROVIDER.set(provider);
    Ok(tracer)
}

/// Flushes the spans not yet exported and stops the exporter; a no-op when off. Call once,
/// at the end of the graceful stop, inside the runtime (the export needs it; the wait runs on
/// a blocking thread).
pub async fn shutdown() {
    let Some(provider) = PROVIDER.get().cloned() else {
        return;
    };
    let result =
        tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
        Err(e) => tracing::warn!(error = %e, "trace exporter shutdown failed"),
    }
}

/// gRPC metadata as a carrier of the W3C `traceparent` / `tracestate` headers.
struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes the current span's trace context into an outgoing call's metadata (`traceparent`);
/// nothing when traces are off or there is no current span.
pub fn inject(metadata: &mut tonic::metadata::MetadataMap) {
    if !enabled() {
        return;
    }
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut MetadataInjector(metadata));
}

/// Makes `span` a child of the trace context a call arrived with (the caller's span), and
/// returns it; unchanged when traces are off or the call carries none.
pub fn child_of_caller(
    metadata: &tonic::metadata::MetadataMap,
    span: tracing::Span,
) -> tracing::Span {
    if !enabled() {
        return span;
    }
    let cx = extract(metadata);
    if opentelemetry::trace::TraceContextExt::has_active_span(&cx) {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(cx);
    }
    span
}

/// The trace context an incoming call carries (empty without one).
pub fn extract(metadata: &tonic::metadata::MetadataMap) -> Context {
    TraceContextPropagator::new().extract(&MetadataExtractor(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;
    use tracing::callsite::{Callsite, Identifier};
    use tracing::field::FieldSet;
    use tracing::metadata::Kind;

    struct NoCallsite;

    impl Callsite for NoCallsite {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("only the identifier is used")
        }
    }

    static CALLSITE: NoCallsite = NoCallsite;

    fn wants(target: &'static str, level: Level, kind: Kind) -> bool {
        let fields = FieldSet::new(&[], Identifier(&CALLSITE));
        OwnSpans::wants(&Metadata::new(
            "m", target, level, None, None, None, fields, kind,
        ))
    }

    #[test]
    fn own_spans_and_warnings_are_exported_nothing_else() {
        assert!(wants(
            "mailroot_frontend::smtp_conn",
            Level::INFO,
            Kind::SPAN
        ));
        assert!(wants("mailroot_store", Level::INFO, Kind::SPAN));
        assert!(!wants("mailroot_store::grpc", Level::DEBUG, Kind::SPAN));
        assert!(!wants("h2::proto", Level::INFO, Kind::SPAN));
        assert!(!wants("mailroot_storex", Level::INFO, Kind::SPAN));
        assert!(wants("mailroot_store::grpc", Level::WARN, Kind::EVENT));
        assert!(!wants("mailroot_store::grpc", Level::INFO, Kind::EVENT));
    }
}
