//! Error reports to Sentry, when `SENTRY_DSN` is set: one event per 5xx answer and per panic,
//! with the request id, the route template, the method and status, the function, the release
//! (`RELEASE`, the git commit) and the environment (`APP_ENV`).
//!
//! A report never carries a request body, a header, a cookie or a query string: its only texts are
//! the route template and the error's cause chain, which passes through the log redaction
//! ([`crate::telemetry::scrub_text`]) first. A 4xx is the client's mistake and is never reported.
//!
//! On Lambda an instance is frozen as soon as it has answered, so a report is flushed (at most
//! [`FLUSH_WITHIN`]) before the failed request's answer leaves; an answer that succeeded never
//! waits. Deployed, the functions reach the error tracker through the NAT gateway
//! (`EnableNatGateway` in template.yaml).

use std::{
    borrow::Cow,
    sync::{Arc, OnceLock},
    time::Duration,
};

use secrecy::ExposeSecret;
use sentry::protocol::{Event, Exception, Level};

use crate::{config::Config, telemetry::scrub_text};

mod transport;

/// The longest a failed request's answer waits for its report to be sent.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(2);

static CLIENT: OnceLock<sentry::ClientInitGuard> = OnceLock::new();

/// Starts reporting when `SENTRY_DSN` is set; does nothing otherwise, or when already started.
/// Call once in `main`, after [`crate::telemetry::init`] (whose panic hook this one calls on).
pub fn init(config: &Config) {
    let Some(dsn) = &config.sentry_dsn else {
        return;
    };
    let Ok(dsn) = dsn.expose_secret().parse::<sentry::types::Dsn>() else {
        // The DSN holds a key: name the variable, never the value.
        tracing::error!("SENTRY_DSN is not a valid DSN: error reports are off");
        return;
    };
    if CLIENT.get().is_some() {
        return;
    }
    // Non-exhaustive: set field by field.
    let mut options = sentry::ClientOptions::default();
    options.dsn = Some(dsn.clone());
    options.release = config.release.clone().map(Cow::Owned);
    options.environment = Some(Cow::Owned(config.app_env.to_string()));
    options.send_default_pii = false;
    options.default_integrations = false;
    options.attach_stacktrace = false;
    options.before_send = Some(Arc::new(|event| Some(scrubbed(event))));
    let transport = Arc::new(transport::Transport::new(&dsn, &options.user_agent));
    options.transport = Some(Arc::new(move |_: &sentry::ClientOptions| {
        transport.clone() as Arc<dyn sentry::Transport>
    }));
    let guard = sentry::init(options);
    if CLIENT.set(guard).is_ok() {
        report_panics();
    }
}

/// Whether reports are being sent.
pub fn enabled() -> bool {
    CLIENT.get().is_some_and(|c| c.is_enabled())
}

/// A request that answered 5xx, as the HTTP layer reports it.
#[derive(Debug)]
pub struct FailedRequest<'a> {
    pub request_id: &'a str,
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    /// The request's trace (32 hex digits, [`crate::traces`]), as its log lines name it.
    pub trace_id: Option<&'a str>,
    /// What went wrong: the cause chain of the error, or the panic's message.
    pub failure: Option<crate::metrics::Failure>,
}

/// Sends one report of a failed request and waits (at most [`FLUSH_WITHIN`]) until it is out.
pub async fn report(failed: FailedRequest<'_>) {
    if !enabled() {
        return;
    }
    let (kind, detail) = match &failed.failure {
        Some(crate::metrics::Failure::Panic(message)) => ("panic", message.clone()),
        Some(crate::metrics::Failure::Error(cause)) => ("error", cause.clone()),
        None => ("status", format!("answered {}", failed.status)),
    };
    let mut event = Event {
        level: Level::Error,
        message: Some(format!(
            "{} {} answered {}",
            failed.method, failed.route, failed.status
        )),
        transaction: Some(format!("{} {}", failed.method, failed.route)),
        exception: vec![Exception {
            ty: kind.into(),
            value: Some(detail),
            ..Default::default()
        }]
        .into(),
        ..Default::default()
    };
    for (tag, value) in [
        ("request_id", failed.request_id),
        ("route", failed.route),
        ("method", failed.method),
        ("function", crate::metrics::function_name()),
    ] {
        event.tags.insert(tag.into(), value.into());
    }
    event
        .tags
        .insert("status".into(), failed.status.to_string());
    if let Some(trace_id) = failed.trace_id {
        event.tags.insert("trace_id".into(), trace_id.into());
        // The same trace as the log lines and the spans: Sentry links the event to it.
        if let Ok(trace_id) = trace_id.parse() {
            event.contexts.insert(
                "trace".into(),
                sentry::protocol::TraceContext {
                    trace_id,
                    ..Default::default()
                }
                .into(),
            );
        }
    }
    sentry::capture_event(event);
    flush().await;
}

async fn flush() {
    if let Some(client) = sentry::Hub::current().client() {
        let _ = tokio::task::spawn_blocking(move || client.flush(Some(FLUSH_WITHIN))).await;
    }
}

/// A panic inside a request is noted for that request's report (the HTTP layer sends it, with
/// the request's id and route); any other panic is reported at once.
fn report_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = scrub_text(&panic_message(info));
        if !crate::metrics::note_panic(message.clone()) {
            let event = Event {
                level: Level::Fatal,
                message: Some("panic outside a request".into()),
                exception: vec![Exception {
                    ty: "panic".into(),
                    value: Some(message),
                    ..Default::default()
                }]
                .into(),
                ..Default::default()
            };
            sentry::capture_event(event);
            if let Some(client) = sentry::Hub::current().client() {
                client.flush(Some(FLUSH_WITHIN));
            }
        }
        previous(info);
    }));
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    match info.location() {
        Some(at) => format!("{text} at {}:{}", at.file(), at.line()),
        None => text,
    }
}

/// The last guard before an event leaves: no request or user data, and every text redacted as
/// the logs are.
fn scrubbed(mut event: Event<'static>) -> Event<'static> {
    event.request = None;
    event.user = None;
    event.extra.clear();
    event.breadcrumbs = Default::default();
    event.message = event.message.map(|m| scrub_text(&m));
    for exception in event.exception.values.iter_mut() {
        exception.value = exception.value.as_deref().map(scrub_text);
    }
    event
}
