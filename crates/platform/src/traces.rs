//! Traces: OpenTelemetry spans sent over OTLP (HTTP/protobuf) to the collector named by
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, beside the JSON logs of [`crate::telemetry`].
//!
//! What becomes a span: each request (the HTTP layer's `request` span, named `GET
//! /api/v1/users/{id}` after its route template), each Postgres statement ([`crate::db::Sql`]),
//! each Redis command ([`crate::cache::Conn`]) and each AWS SDK operation (the SDK's own
//! `S3.PutObject` spans). A span names what was done, never with what: no SQL parameter, no Redis
//! key or argument, no header, no body. Log events never become span events, because a log line
//! is redacted on its way to stdout and a span event would not be.
//!
//! With the variable unset nothing is built: no exporter, no processor, no layer, and the spans
//! above are disabled where they are created (a check tracing caches per call site).
//!
//! Trace ids: when the request comes with an X-Ray trace header (Lambda's, or API Gateway's
//! `X-Amzn-Trace-Id`), the trace id is its root (`Root=1-5759e988-bd862e3fe1be46a994272793` is
//! `5759e988bd862e3fe1be46a994272793`), so the log lines' `trace_id`, the spans and the error
//! reports name the same trace as X-Ray. Without one, a fresh id in X-Ray's format (its first 8
//! hex digits are the time), so that a collector can hand the trace to X-Ray as well.
//!
//! On Lambda an instance is frozen as soon as it has answered, and a span still in the batch
//! would wait there until the next invocation, or be lost: [`flush`] runs after each invocation.

use std::{sync::OnceLock, time::Duration};

use opentelemetry::{
    KeyValue,
    trace::{SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::{Metadata, Span, subscriber::Interest};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::{Context, Filter};

use crate::config::Config;

/// The target of the Postgres and Redis spans: they go to traces only, never to the log lines.
pub const TARGET: &str = "platform::traces";

/// The exporting provider, once [`layer`] has built it.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The longest an export may take; `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds) overrides it. A collector that does not answer
/// costs an invocation this much after its answer left, never more.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// The export timeout the environment sets, as every OpenTelemetry SDK reads it.
fn export_timeout(lookup: impl Fn(&str) -> Option<String>) -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|name| lookup(name)?.trim().parse::<u64>().ok())
    .map_or(EXPORT_TIMEOUT, Duration::from_millis)
}

/// The OTLP exporter's HTTP client: each export sent from the telemetry thread
/// ([`crate::outbound`]), within the export timeout.
#[derive(Debug)]
struct Exporter {
    timeout: Duration,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Exporter {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        crate::outbound::send(request, self.timeout).await
    }
}

/// Whether spans are being exported.
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// A provider whose layer is not installed yet: [`Exporting::start`] once it is.
pub(crate) struct Exporting(SdkTracerProvider);

impl Exporting {
    /// The layer is the process's: requests may now join their traces.
    pub(crate) fn start(self) {
        let _ = PROVIDER.set(self.0);
    }
}

/// The OpenTelemetry layer for the process's subscriber, when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set; `None` (and nothing built) otherwise. Call once, from [`crate::telemetry::init_traced`].
pub(crate) fn layer<S>(config: &Config) -> Option<(impl tracing_subscriber::Layer<S>, Exporting)>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    config.otel_exporter_otlp_endpoint.as_ref()?;
    if PROVIDER.get().is_some() {
        return None;
    }
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(Exporter {
            timeout: export_timeout(|name| std::env::var(name).ok()),
        });
    // The endpoint itself (and any `OTEL_EXPORTER_OTLP_HEADERS`) the exporter reads from the
    // environment, as every OpenTelemetry SDK does: `<endpoint>/v1/traces`.
    let exporter = match exporter.build() {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("traces are off: the OTLP exporter could not be built: {err}");
            return None;
        }
    };
    let resource = Resource::builder()
        .with_service_name(config.otel_service_name.clone())
        .with_attribute(KeyValue::new(
            "deployment.environment.name",
            config.app_env.to_string(),
        ))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(opentelemetry_aws::trace::XrayIdGenerator::default())
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("backend");
    let layer = tracing_opentelemetry::OpenTelemetryLayer::new(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false);
    Some((
        tracing_subscriber::Layer::with_filter(layer, Traced),
        Exporting(provider),
    ))
}

/// Sends every finished span now and waits until they are out (at most the export timeout).
/// On Lambda, after each invocation; a no-op when traces are off.
pub async fn flush() {
    if let Some(provider) = PROVIDER.get() {
        let provider = provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }
}

/// Flushes and stops the exporter at shutdown.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        let _ = provider.shutdown();
    }
}

/// Which call sites the OpenTelemetry layer sees: the request span, the Postgres and Redis
/// spans, and the AWS SDK's operation spans. Never an event. Decided once per call site.
struct Traced;

impl Traced {
    fn wanted(meta: &Metadata<'_>) -> bool {
        meta.is_span()
            && (meta.target() == TARGET
                || (meta.target() == "http_kit::layers" && meta.name() == "request")
                || (meta.target().starts_with("aws_sdk_")
                    && meta.fields().field("rpc.method").is_some()))
    }
}

impl<S> Filter<S> for Traced {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Self::wanted(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::wanted(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    /// The AWS SDK's operation spans are `debug`; the others `info`.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::DEBUG)
    }
}

/// Whether a call site is one the log lines must not see: the spans made for traces only.
pub(crate) fn is_trace_only(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == TARGET
}

/// The trace header a request belongs to, parsed: its root as the trace id and its parent
/// segment as the remote parent span.
fn xray_parent(header: &str) -> Option<SpanContext> {
    let parsed = opentelemetry_aws::trace::xray_propagator::span_context_from_str(header)?;
    // API Gateway's header names only the root. The request span still belongs to that trace,
    // under a parent the collector will not have seen (as with any remote parent).
    let parent = if parsed.span_id() == SpanId::INVALID {
        SpanId::from_bytes(rand::random::<[u8; 8]>())
    } else {
        parsed.span_id()
    };
    // Sampled whatever X-Ray decided: setting the endpoint asks for traces, and
    // `OTEL_TRACES_SAMPLER` still samples (`traceidratio`).
    Some(SpanContext::new(
        parsed.trace_id(),
        parent,
        TraceFlags::SAMPLED,
        true,
        parsed.trace_state().clone(),
    ))
}

/// The trace id (32 hex digits) of an X-Ray trace header, the same with traces on or off.
pub fn trace_id_of(xray_header: &str) -> Option<String> {
    xray_parent(xray_header).map(|parent| parent.trace_id().to_string())
}

/// Joins a request's span to its trace and names it after its route: `GET /api/v1/users/{id}`.
/// Answers the trace id for the log lines and the error report: the X-Ray root when there is a
/// header, the new trace's id when traces are on, `None` otherwise.
pub fn start_request(
    span: &Span,
    xray_header: Option<&str>,
    method: &str,
    route: &str,
) -> Option<String> {
    let parent = xray_header.and_then(xray_parent);
    if !enabled() || span.is_disabled() {
        return parent.map(|p| p.trace_id().to_string());
    }
    if let Some(parent) = &parent {
        let _ =
            span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent.clone()));
    }
    span.record("otel.name", format!("{method} {route}"));
    span.record("otel.kind", "server");
    span.set_attribute("http.request.method", method.to_owned());
    span.set_attribute("http.route", route.to_owned());
    Some(match parent {
        Some(parent) => parent.trace_id().to_string(),
        None => span.context().span().span_context().trace_id().to_string(),
    })
}

/// Records a request's status on its span; a 5xx marks it failed.
pub fn end_request(span: &Span, status: u16) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.set_status(Status::error(""));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_timeout_is_the_environment_s_in_milliseconds_traces_first() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(export_timeout(env(&[])), EXPORT_TIMEOUT);
        assert_eq!(
            export_timeout(env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "500")])),
            Duration::from_millis(500)
        );
        assert_eq!(
            export_timeout(env(&[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "500"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250"),
            ])),
            Duration::from_millis(250)
        );
        assert_eq!(
            export_timeout(env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")])),
            EXPORT_TIMEOUT
        );
    }

    #[test]
    fn an_xray_root_becomes_the_trace_id() {
        let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0";
        assert_eq!(
            trace_id_of(header).as_deref(),
            Some("5759e988bd862e3fe1be46a994272793")
        );
        let parent = xray_parent(header).expect("a parent");
        assert_eq!(parent.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(parent.is_sampled() && parent.is_remote());
        // API Gateway's header has no parent segment.
        let root_only = xray_parent("Root=1-5759e988-bd862e3fe1be46a994272793").expect("parent");
        assert!(root_only.is_valid());
        assert!(trace_id_of("Root=garbage").is_none());
    }
}
