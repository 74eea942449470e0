//! JSON logs, one object per line on stdout, with secrets redacted.
//!
//! Fields: `timestamp level message target request_id trace_id cold_start` and the event's own.
//! Any key named like `password`, `token`, `authorization`, `cookie` or `secret` (any case, at
//! any depth, including JSON held inside a string) is written as `"[REDACTED]"`, and so are
//! such values when they appear inside free text (`Bearer ...`, `password=...`), as happens when
//! a header ends up in an error message.
//!
//! tracing-subscriber formats the line; no library redacts its output, so the writer below
//! rewrites each line before it reaches stdout.

use std::io::{self, Write};

use serde_json::{Map, Value};
use tracing_subscriber::{filter::Targets, fmt::MakeWriter};

use crate::config::Config;

pub const REDACTED: &str = "[REDACTED]";
const SENSITIVE: [&str; 5] = ["password", "token", "authorization", "cookie", "secret"];

/// Installs the process-wide subscriber writing to stdout, logs only (the migrate and backup
/// functions). Call once, first thing in `main`.
pub fn init(log_level: &str) {
    install(log_layer(log_level, io::stdout));
}

/// Like [`init`], and traces too when `OTEL_EXPORTER_OTLP_ENDPOINT` is set: an OpenTelemetry
/// layer beside the log layer ([`crate::traces`]). The HTTP functions and the local server.
pub fn init_traced(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    let logs = tracing_subscriber::registry().with(log_layer(&config.log_level, io::stdout));
    // Without traces the stack is the logs' alone: an absent (`None`) layer in it would make
    // the call sites of the spans made for traces ask again at every call instead of never.
    let installed = match crate::traces::layer(config) {
        Some((traces, exporting)) => {
            let installed = tracing::subscriber::set_global_default(logs.with(traces));
            // A second call keeps the first subscriber, and its traces or none.
            if installed.is_ok() {
                exporting.start();
            }
            installed
        }
        None => tracing::subscriber::set_global_default(logs),
    };
    if installed.is_ok() {
        log_panics();
    }
}

fn install<L>(layer: L)
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    // A second call (tests, the local server after a CLI step) keeps the first subscriber.
    if tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer)).is_ok() {
        log_panics();
    }
}

/// A subscriber writing redacted JSON lines to `writer`; tests pass a buffer here.
pub fn subscriber<W>(log_level: &str, writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    tracing_subscriber::registry().with(log_layer(log_level, writer))
}

/// The JSON log layer, filtered by `LOG_LEVEL`: a level (`warn`), or levels per target
/// (`warn,auth=debug`). Its filter is the layer's own, so that the spans made for traces only
/// never show in a line, and traces do not depend on the log level. An unreadable value logs at
/// `info`.
///
/// `Targets`, not `EnvFilter`: `EnvFilter`'s span and field directives need a regex engine,
/// about 280 KiB of code in every function, for a filter no deployment sets.
fn log_layer<S, W>(log_level: &str, writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::{Layer, filter::FilterExt};
    let filter = log_level
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(Redacting(writer))
        .with_filter(filter.and(NotTraceOnly))
}

/// Leaves out the spans made for traces only, decided once per call site.
struct NotTraceOnly;

impl<S> tracing_subscriber::layer::Filter<S> for NotTraceOnly {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !crate::traces::is_trace_only(meta)
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if crate::traces::is_trace_only(meta) {
            tracing::subscriber::Interest::never()
        } else {
            tracing::subscriber::Interest::always()
        }
    }

    /// No limit of its own, so that `LOG_LEVEL`'s stays the logs' fast path.
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
}

/// A panic is logged as one JSON error line (redacted like any other) instead of raw stderr.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        tracing::error!(panic = %info, "panic");
    }));
}

struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

pub struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    /// tracing-subscriber hands over each formatted event in a single write.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        let mut out = reshape_line(line.trim_end());
        out.push('\n');
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Lifts the request span's fields to the top level and redacts the whole object.
fn reshape_line(line: &str) -> String {
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(line) else {
        return scrub_text(line);
    };
    if let Some(Value::Object(span)) = object.remove("span") {
        for (key, value) in span {
            // `otel.name` and `otel.kind` name the request's span in traces.
            if key != "name" && !key.starts_with("otel.") {
                object.entry(key).or_insert(value);
            }
        }
    }
    for field in ["request_id", "trace_id"] {
        object.entry(field).or_insert(Value::Null);
    }
    let mut value = Value::Object(object);
    redact(&mut value);
    value.to_string()
}

fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|word| key.contains(word))
}

/// Redacts sensitive keys at any depth, JSON documents held in strings, and secrets in text.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => redact_map(map),
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text) => {
            let trimmed = text.trim_start();
            if (trimmed.starts_with('{') || trimmed.starts_with('['))
                && let Ok(mut inner) = serde_json::from_str::<Value>(text)
            {
                redact(&mut inner);
                *text = inner.to_string();
                return;
            }
            *text = scrub_text(text);
        }
        _ => {}
    }
}

fn redact_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if is_sensitive_key(key) {
            *value = Value::String(REDACTED.into());
        } else {
            redact(value);
        }
    }
}

/// Free text: `Bearer <credential>` and `<sensitive word>[=:] <value>` lose their values.
pub fn scrub_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if let Some(end) = secret_value_end(&lower, i) {
            let (value_start, value_end) = end;
            out.push_str(&text[i..value_start]);
            out.push_str(REDACTED);
            i = value_end;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// If a secret-bearing phrase starts at `i`, returns where its value starts and ends.
fn secret_value_end(lower: &str, i: usize) -> Option<(usize, usize)> {
    let rest = &lower[i..];
    // A word boundary before the phrase, so "notbearer" is left alone.
    if i > 0 && lower.as_bytes()[i - 1].is_ascii_alphanumeric() {
        return None;
    }
    if rest.starts_with("bearer ") || rest.starts_with("basic ") {
        let start = i + rest.find(' ')? + 1;
        let end = value_end(lower, start, false);
        return (end > start).then_some((start, end));
    }
    let word = SENSITIVE.iter().find(|w| rest.starts_with(**w))?;
    // Allow a suffix such as `refresh_token` or `password_hash`, then quotes, spaces, `=` or `:`.
    let mut j = i + word.len();
    let b = lower.as_bytes();
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-') {
        j += 1;
    }
    while j < b.len() && matches!(b[j], b'"' | b'\'' | b' ') {
        j += 1;
    }
    if j >= b.len() || !matches!(b[j], b'=' | b':') {
        return None;
    }
    j += 1;
    while j < b.len() && matches!(b[j], b'"' | b'\'' | b' ') {
        j += 1;
    }
    // Header-like values (authorization, cookie) run to the end of the clause.
    let whole_clause = matches!(*word, "authorization" | "cookie");
    let end = value_end(lower, j, whole_clause);
    (end > j).then_some((j, end))
}

fn value_end(lower: &str, start: usize, whole_clause: bool) -> usize {
    let b = lower.as_bytes();
    let mut end = start;
    while end < b.len() {
        let c = b[end];
        let stop = if whole_clause {
            matches!(c, b'"' | b'\'' | b',' | b'\n' | b'}')
        } else {
            c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b',' | b';' | b'&' | b'}' | b')')
        };
        if stop {
            break;
        }
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_are_redacted_in_any_case() {
        let mut v = json!({"user": {"Password": "hunter2", "profile": {"api_TOKEN": "t0k"}}, "list": [{"cookie": "c"}]});
        redact(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("hunter2") && !s.contains("t0k") && !s.contains("\"c\""),
            "{s}"
        );
        assert_eq!(v["user"]["Password"], REDACTED);
    }

    #[test]
    fn json_inside_a_string_is_redacted() {
        let mut v = json!({"body": "{\"email\":\"a@b.c\",\"password\":\"hunter2\"}"});
        redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("a@b.c"), "{s}");
    }

    #[test]
    fn a_header_inside_an_error_message_is_redacted() {
        let text =
            "upstream said: invalid header authorization: Bearer eyJhbGciOi.abc.def, retrying";
        let s = scrub_text(text);
        assert!(!s.contains("eyJhbGciOi"), "{s}");
        assert!(s.contains("retrying"), "{s}");
        let s = scrub_text("connect failed: password=hunter2 host=db");
        assert!(!s.contains("hunter2") && s.contains("host=db"), "{s}");
        let s = scrub_text(r#"headers: {"cookie": "refresh_token=abc; other=1"}"#);
        assert!(!s.contains("abc"), "{s}");
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let text = "user ana@example.com logged in from 10.0.0.1; notbearer stays";
        assert_eq!(scrub_text(text), text);
    }

    /// The messages of three events, as a subscriber at `log_level` writes them.
    fn logged_at(log_level: &str) -> Vec<String> {
        use std::sync::{Arc, Mutex};

        #[derive(Clone)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().expect("lines").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        let lines = Lines(Arc::default());
        let sink = lines.clone();
        // A closure returning a writer is a MakeWriter, as in tests/it/logs.rs.
        tracing::subscriber::with_default(subscriber(log_level, move || sink.clone()), || {
            tracing::info!(target: "auth", "auth info");
            tracing::info!(target: "users", "users info");
            tracing::warn!(target: "users", "users warn");
        });
        let out = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        out.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("json");
                v["message"].as_str().expect("message").to_owned()
            })
            .collect()
    }

    #[test]
    fn log_level_sets_a_level_or_levels_per_target() {
        assert_eq!(logged_at("warn"), ["users warn"]);
        assert_eq!(logged_at("warn,auth=info"), ["auth info", "users warn"]);
        assert_eq!(logged_at("error"), Vec::<String>::new());
        assert_eq!(logged_at("info"), ["auth info", "users info", "users warn"]);
    }

    #[test]
    fn an_unreadable_log_level_logs_at_info() {
        assert_eq!(
            logged_at("warn,auth=loud"),
            ["auth info", "users info", "users warn"]
        );
    }

    #[test]
    fn span_fields_are_lifted() {
        let line = r#"{"timestamp":"t","level":"INFO","message":"m","target":"x","span":{"request_id":"r1","name":"request","cold_start":true}}"#;
        let v: Value = serde_json::from_str(&reshape_line(line)).expect("json");
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["cold_start"], true);
        assert!(v.get("span").is_none());
        assert!(v["trace_id"].is_null());
    }
}
