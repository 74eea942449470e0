//! How reports reach Sentry: each envelope POSTed to the DSN's envelope endpoint from the
//! telemetry thread ([`crate::outbound`]), Sentry's rate limits obeyed (sentry's own
//! `RateLimiter`), and a flush that waits until every envelope handed over has its answer.
//!
//! Written here because sentry's ready-made HTTP transports each bring an HTTP client of their
//! own (reqwest, curl or ureq), and this one uses the process's.

use std::{
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::Duration,
};

use bytes::Bytes;
use sentry::{
    Envelope,
    transports::{RateLimiter, RateLimitingCategory},
};

/// How long one envelope's request may take; a flush waits less ([`super::FLUSH_WITHIN`]) and
/// leaves a slower request running.
const SEND_WITHIN: Duration = Duration::from_secs(10);

pub(super) struct Transport {
    url: String,
    auth: String,
    limits: Arc<Mutex<RateLimiter>>,
    in_flight: Arc<InFlight>,
}

impl Transport {
    pub(super) fn new(dsn: &sentry::types::Dsn, user_agent: &str) -> Self {
        Self {
            url: dsn.envelope_api_url().to_string(),
            auth: dsn.to_auth(Some(user_agent)).to_string(),
            limits: Arc::default(),
            in_flight: Arc::default(),
        }
    }
}

impl sentry::Transport for Transport {
    fn send_envelope(&self, envelope: Envelope) {
        // Reports are error events alone (no sessions, transactions or attachments): an
        // envelope waits for nothing else than the error category's limit, or a global one.
        if !lock(&self.limits).is_enabled(RateLimitingCategory::Error) {
            return;
        }
        let mut body = Vec::new();
        if envelope.to_writer(&mut body).is_err() {
            return;
        }
        let Ok(request) = http::Request::post(&self.url)
            .header("x-sentry-auth", &self.auth)
            .header(http::header::CONTENT_TYPE, "application/x-sentry-envelope")
            .body(Bytes::from(body))
        else {
            return;
        };
        let sending = Sending::start(self.in_flight.clone());
        let limits = self.limits.clone();
        // Not sent (no telemetry thread): `then` is dropped, and `sending` with it.
        crate::outbound::send_then(request, SEND_WITHIN, move |answered| {
            if let Ok(answer) = answered {
                obey(&mut lock(&limits), &answer);
            }
            drop(sending);
        });
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.in_flight.wait_until_idle(timeout)
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        self.flush(timeout)
    }
}

/// Sentry's answer says when to send again: its own header, a `Retry-After`, or a bare 429.
fn obey(limits: &mut RateLimiter, answer: &http::Response<Bytes>) {
    let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(sentry_limits) = header("x-sentry-rate-limits") {
        limits.update_from_sentry_header(sentry_limits);
    } else if let Some(retry_after) = header("retry-after") {
        limits.update_from_retry_after(retry_after);
    } else if answer.status() == http::StatusCode::TOO_MANY_REQUESTS {
        limits.update_from_429();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many envelopes are between hand-over and answer.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    /// Whether every envelope was answered within `timeout`.
    fn wait_until_idle(&self, timeout: Duration) -> bool {
        let count = lock(&self.count);
        let (count, waited) = self
            .idle
            .wait_timeout_while(count, timeout, |count| *count > 0)
            .unwrap_or_else(|e| e.into_inner());
        drop(count);
        !waited.timed_out()
    }
}

/// One envelope in flight, until dropped: answered, failed, or its task gone.
struct Sending(Arc<InFlight>);

impl Sending {
    fn start(in_flight: Arc<InFlight>) -> Self {
        *lock(&in_flight.count) += 1;
        Self(in_flight)
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let mut count = lock(&self.0.count);
        *count -= 1;
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_waits_for_the_envelopes_in_flight_and_no_longer_than_asked() {
        let in_flight = Arc::new(InFlight::default());
        assert!(
            in_flight.wait_until_idle(Duration::ZERO),
            "nothing in flight"
        );

        let sending = Sending::start(in_flight.clone());
        let started = std::time::Instant::now();
        assert!(!in_flight.wait_until_idle(Duration::from_millis(50)));
        assert!(started.elapsed() >= Duration::from_millis(50));

        let answered = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(sending);
        });
        assert!(in_flight.wait_until_idle(Duration::from_secs(5)));
        answered.join().expect("the sender thread");
    }

    #[test]
    fn a_429_stops_error_reports_until_its_retry_after() {
        let mut limits = RateLimiter::new();
        let answer = http::Response::builder()
            .status(429)
            .header("retry-after", "60")
            .body(Bytes::new())
            .expect("an answer");
        obey(&mut limits, &answer);
        assert!(!limits.is_enabled(RateLimitingCategory::Error));

        let mut limits = RateLimiter::new();
        let ok = http::Response::new(Bytes::new());
        obey(&mut limits, &ok);
        assert!(limits.is_enabled(RateLimitingCategory::Error));
    }
}
