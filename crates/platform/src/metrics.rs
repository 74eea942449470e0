//! Operational metrics as CloudWatch Embedded Metric Format lines on stdout: on Lambda,
//! CloudWatch turns them into metrics with no agent and no API call on the request path.
//!
//! Each request writes at most one line, when its response is ready: the HTTP layer opens a
//! [`RequestMetrics`] scope around the request, the database pool, the Redis client, the rate
//! limiter and the profile cache add to it as they are used, and [`RequestMetrics::finish`]
//! writes the whole request as one line. Its dimensions are the function's name and the matched
//! route template (`/api/v1/users/{id}`), never the raw path, so a user id cannot become a
//! metric. A line never carries a header, a body, a token or an address.
//!
//! The local server writes the same lines to its stdout, between its log lines.
//!
//! Per request this costs one small allocation, a handful of relaxed atomic additions, two clock
//! reads per database connection and per Redis call, and one line formatted with integers only.
//! Request lines are queued and written many at a time ([`flush`]): a `write` of its own for
//! each line cost about as much as formatting it (`scripts/bench-metrics.sh`).

use std::{
    cell::RefCell,
    fmt::Write as _,
    io::Write as _,
    sync::{
        Arc, LazyLock, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "Backend";
/// Backups and restore drills, by `Environment`: `BackupSucceeded` and `DrillSucceeded` (1 or 0),
/// and for a run that finished `BackupBytes`/`DrillBytes` (the compressed dump written or
/// restored) and `BackupDuration`/`DrillDuration` (milliseconds).
pub const BACKUP_NAMESPACE: &str = "Backend/Backup";
/// The route of a request that matched no route (the 404 fallback): never the raw path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The function's name on Lambda (`AWS_LAMBDA_FUNCTION_NAME`), `local` elsewhere.
pub fn function_name() -> &'static str {
    static NAME: LazyLock<String> = LazyLock::new(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into())
    });
    &NAME
}

/// Emits one value of `name` in `namespace`, with the given dimensions.
pub fn emit(namespace: &str, name: &str, value: i64, unit: &str, dimensions: &[(&str, &str)]) {
    emit_all(namespace, &[(name, value, unit)], dimensions);
}

/// Emits the values of one event (`(name, value, unit)`) as one EMF line.
pub fn emit_all(namespace: &str, values: &[(&str, i64, &str)], dimensions: &[(&str, &str)]) {
    write_line(&lines(namespace, values, dimensions).to_string());
}

/// The EMF object for the values of one event.
pub fn lines(namespace: &str, values: &[(&str, i64, &str)], dimensions: &[(&str, &str)]) -> Value {
    let names: Vec<&str> = dimensions.iter().map(|(n, _)| *n).collect();
    let metrics: Vec<Value> = values
        .iter()
        .map(|(name, _, unit)| json!({ "Name": name, "Unit": unit }))
        .collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [names],
                "Metrics": metrics,
            }],
        }),
    );
    for (dimension, value) in dimensions {
        line.insert((*dimension).into(), json!(value));
    }
    for (name, value, _) in values {
        line.insert((*name).into(), json!(value));
    }
    Value::Object(line)
}

thread_local! {
    /// Where this thread's metric lines go instead of stdout, while a [`Capture`] lives.
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// The metric lines written on one thread, kept instead of printed: for tests that drive a
/// router on a current-thread runtime. Lines go back to stdout when it is dropped.
#[derive(Clone, Default)]
pub struct Capture(Arc<std::sync::Mutex<Vec<String>>>);

impl Capture {
    /// Starts keeping this thread's metric lines.
    pub fn start() -> CaptureGuard {
        let capture = Capture::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(capture.clone()));
        CaptureGuard(capture)
    }
}

/// Keeps a thread's metric lines until dropped; see [`Capture`].
pub struct CaptureGuard(Capture);

impl CaptureGuard {
    /// Every line kept so far, in order.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Keeps the line in this thread's [`Capture`] when one is running; answers whether it did.
fn captured(line: &str) -> bool {
    CAPTURE.with(|c| {
        c.borrow().as_ref().is_some_and(|capture| {
            capture
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line.to_owned());
            true
        })
    })
}

/// Writes a line now: backups, drills and other one-off events.
fn write_line(line: &str) {
    if !captured(line) {
        println!("{line}");
    }
}

/// Request lines not yet written, newline-terminated.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// Queued lines are written once they hold this much (about twenty requests)...
const FLUSH_AT: usize = 16 * 1024;
/// ...or by the local server's flusher at this interval; on Lambda after each invocation.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Queues a request's line; written with the lines around it in one `write`.
fn queue_line(line: &str) {
    if captured(line) {
        return;
    }
    let mut pending = PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    pending.extend_from_slice(line.as_bytes());
    pending.push(b'\n');
    if pending.len() >= FLUSH_AT {
        let full = std::mem::take(&mut *pending);
        drop(pending);
        write_out(&full);
    }
}

/// Writes every queued request line: after each Lambda invocation, periodically in the local
/// server ([`spawn_flusher`]) and at shutdown.
pub fn flush() {
    let queued = std::mem::take(
        &mut *PENDING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if !queued.is_empty() {
        write_out(&queued);
    }
}

fn write_out(lines: &[u8]) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(lines);
    let _ = stdout.flush();
}

/// Flushes the queued request lines every [`FLUSH_EVERY`], for a server that answers many
/// requests between two flushes (the local server and its container).
pub fn spawn_flusher() {
    tokio::spawn(async {
        let mut every = tokio::time::interval(FLUSH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            flush();
        }
    });
}

/// When the process started, as near as it can tell: set by the runtime builder every binary
/// starts with, before any configuration is read.
static PROCESS_START: OnceLock<Instant> = OnceLock::new();
/// When the process was ready to serve its first request.
static READY: OnceLock<Instant> = OnceLock::new();
/// Whether the next request is this process's first.
static COLD: AtomicBool = AtomicBool::new(true);

/// Notes the process's start, first thing in `main`.
pub fn mark_process_start() {
    let _ = PROCESS_START.set(Instant::now());
}

/// Notes that the process is ready to serve: settings, secrets, pools and routes are built. The
/// first request reports the time from the start to here as `InitDuration`, however long it
/// then waited for that request (the local server; Lambda's provisioned instances).
pub fn mark_ready() {
    let _ = READY.set(Instant::now());
}

/// From the process's start to its readiness (or to now, when it never said).
fn init_duration() -> Option<Duration> {
    let start = PROCESS_START.get()?;
    Some(
        READY
            .get()
            .map_or_else(|| start.elapsed(), |ready| *ready - *start),
    )
}

/// Whether this call is the process's first (its cold start); every later call answers false.
pub fn take_cold_start() -> bool {
    COLD.swap(false, Ordering::Relaxed)
}

tokio::task_local! {
    static CURRENT: Arc<RequestMetrics>;
}

/// What one request used, added to by whatever it calls while it runs inside
/// [`RequestMetrics::scope`]. Work spawned onto other tasks is not counted.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    db_wait_us: AtomicU64,
    db_us: AtomicU64,
    db_connections: AtomicU64,
    redis_us: AtomicU64,
    redis_calls: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    rate_limited: AtomicBool,
    limiter_bypassed: AtomicBool,
    /// What made the request fail, for its error report: the first noted.
    failure: std::sync::Mutex<Option<Failure>>,
}

/// Why a request failed, already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A handler panicked with this message.
    Panic(String),
    /// An unexpected error with this cause chain.
    Error(String),
}

fn note(failure: Failure) -> bool {
    CURRENT
        .try_with(|m| {
            let mut noted = m
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            noted.get_or_insert(failure);
        })
        .is_ok()
}

/// Notes an unexpected error's cause chain for the request's error report; it is redacted here.
pub fn note_error(cause: &str) {
    note(Failure::Error(crate::telemetry::scrub_text(cause)));
}

/// Notes a panic's (redacted) message for the request's error report; false outside a request.
pub fn note_panic(message: String) -> bool {
    note(Failure::Panic(message))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn with_current(f: impl FnOnce(&RequestMetrics)) {
    let _ = CURRENT.try_with(|m| f(m));
}

/// Time spent waiting for a pooled Postgres connection.
pub fn db_pool_wait(waited: Duration) {
    with_current(|m| {
        m.db_wait_us.fetch_add(micros(waited), Ordering::Relaxed);
    });
}

/// Time one pooled Postgres connection was held: its queries and their round trips.
pub fn db_time(held: Duration) {
    with_current(|m| {
        m.db_us.fetch_add(micros(held), Ordering::Relaxed);
        m.db_connections.fetch_add(1, Ordering::Relaxed);
    });
}

/// One Redis call and how long it took.
pub fn redis_call(took: Duration) {
    with_current(|m| {
        m.redis_us.fetch_add(micros(took), Ordering::Relaxed);
        m.redis_calls.fetch_add(1, Ordering::Relaxed);
    });
}

/// One read of the profile cache: found there (`true`) or read from Postgres.
pub fn profile_cache(hit: bool) {
    with_current(|m| {
        let counter = if hit { &m.cache_hits } else { &m.cache_misses };
        counter.fetch_add(1, Ordering::Relaxed);
    });
}

/// The request was refused by the rate limit.
pub fn rate_limited() {
    with_current(|m| m.rate_limited.store(true, Ordering::Relaxed));
}

/// The rate limiter could not reach Redis and let the request through.
pub fn limiter_bypassed() {
    with_current(|m| m.limiter_bypassed.store(true, Ordering::Relaxed));
}

/// How a request ended, as [`RequestMetrics::finish`] reports it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// The matched route template, or [`UNMATCHED_ROUTE`].
    pub route: &'a str,
    pub method: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub cold_start: bool,
}

impl RequestMetrics {
    /// Runs `request` with a fresh accumulator that the calls it makes add to; answers what it
    /// answered and what it used.
    pub async fn scope<F: Future>(request: F) -> (F::Output, Arc<RequestMetrics>) {
        let metrics = Arc::new(RequestMetrics::default());
        let output = CURRENT.scope(metrics.clone(), request).await;
        (output, metrics)
    }

    /// What made the request fail, when something was noted.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Queues the request's one EMF line ([`flush`] writes it).
    pub fn finish(&self, outcome: &Outcome<'_>) {
        queue_line(&self.line(outcome, chrono::Utc::now().timestamp_millis()));
    }

    /// The request's EMF line: one object, every metric of the request, dimensioned by
    /// `[Function, Route]` and by `[Function]` alone.
    pub fn line(&self, outcome: &Outcome<'_>, timestamp_ms: i64) -> String {
        use Amount::{Count, Micros};
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let flag = |b: &AtomicBool| u64::from(b.load(Ordering::Relaxed));
        let class = outcome.status / 100;
        let mut metrics: Vec<(&str, &str, Amount)> = Vec::with_capacity(16);
        metrics.extend([
            ("Requests", "Count", Count(1)),
            ("Latency", "Milliseconds", Micros(micros(outcome.latency))),
            ("Status4xx", "Count", Count(u64::from(class == 4))),
            ("Status5xx", "Count", Count(u64::from(class == 5))),
            ("ColdStart", "Count", Count(u64::from(outcome.cold_start))),
            ("RateLimited", "Count", Count(flag(&self.rate_limited))),
            (
                "RateLimiterBypassed",
                "Count",
                Count(flag(&self.limiter_bypassed)),
            ),
        ]);
        if outcome.cold_start
            && let Some(init) = init_duration()
        {
            metrics.push(("InitDuration", "Milliseconds", Micros(micros(init))));
        }
        // Time metrics only for requests that used the resource, so that their percentiles
        // describe the calls, not the share of requests that made none.
        let connections = load(&self.db_connections);
        if connections > 0 {
            metrics.push(("DbPoolWait", "Milliseconds", Micros(load(&self.db_wait_us))));
            metrics.push(("DbQueryTime", "Milliseconds", Micros(load(&self.db_us))));
            metrics.push(("DbConnections", "Count", Count(connections)));
        }
        let calls = load(&self.redis_calls);
        if calls > 0 {
            metrics.push(("RedisTime", "Milliseconds", Micros(load(&self.redis_us))));
            metrics.push(("RedisCalls", "Count", Count(calls)));
        }
        let (hits, misses) = (load(&self.cache_hits), load(&self.cache_misses));
        if hits + misses > 0 {
            metrics.push(("ProfileCacheHit", "Count", Count(hits)));
            metrics.push(("ProfileCacheMiss", "Count", Count(misses)));
        }

        let mut out = String::with_capacity(1024);
        let _ = write!(
            out,
            r#"{{"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":"{NAMESPACE}","Dimensions":[["Function","Route"],["Function"]],"Metrics":["#
        );
        for (i, (name, unit, _)) in metrics.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(out, r#"{comma}{{"Name":"{name}","Unit":"{unit}"}}"#);
        }
        // `HttpStatus`, not `status`: the log groups' 5xx metric filters match the access log's
        // `status` field, and must not count this line a second time.
        let _ = write!(
            out,
            r#"]}}]}},"Function":{},"Route":{},"Method":{},"HttpStatus":{}"#,
            FUNCTION_JSON.as_str(),
            json_string(outcome.route),
            json_string(outcome.method),
            outcome.status,
        );
        for (name, _, value) in &metrics {
            let _ = match value {
                Count(n) => write!(out, r#","{name}":{n}"#),
                // Milliseconds with three decimals, from integer microseconds: formatting a
                // float costs several times more.
                Micros(us) => write!(out, r#","{name}":{}.{:03}"#, us / 1000, us % 1000),
            };
        }
        out.push('}');
        out
    }
}

/// A value of a request line.
#[derive(Clone, Copy)]
enum Amount {
    Count(u64),
    Micros(u64),
}

/// The function's name as a JSON string, quoted once per process.
static FUNCTION_JSON: LazyLock<String> = LazyLock::new(|| json_string(function_name()));

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_its_namespace_dimensions_and_value() {
        let l = lines(
            BACKUP_NAMESPACE,
            &[("DrillSucceeded", 0, "Count")],
            &[("Environment", "production")],
        );
        let metric = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(metric["Namespace"], "Backend/Backup");
        assert_eq!(metric["Dimensions"], json!([["Environment"]]));
        assert_eq!(metric["Metrics"][0]["Name"], "DrillSucceeded");
        assert_eq!(l["Environment"], "production");
        assert_eq!(l["DrillSucceeded"], 0);
    }

    #[test]
    fn one_line_carries_every_value_of_an_event_with_its_unit() {
        let l = lines(
            BACKUP_NAMESPACE,
            &[
                ("BackupSucceeded", 1, "Count"),
                ("BackupBytes", 52_341, "Bytes"),
                ("BackupDuration", 1_250, "Milliseconds"),
            ],
            &[("Environment", "staging")],
        );
        let metric = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            metric["Metrics"],
            json!([
                { "Name": "BackupSucceeded", "Unit": "Count" },
                { "Name": "BackupBytes", "Unit": "Bytes" },
                { "Name": "BackupDuration", "Unit": "Milliseconds" },
            ])
        );
        assert_eq!(l["BackupSucceeded"], 1);
        assert_eq!(l["BackupBytes"], 52_341);
        assert_eq!(l["BackupDuration"], 1_250);
        assert_eq!(l["Environment"], "staging");
    }

    #[tokio::test]
    async fn a_request_line_declares_every_value_it_carries() {
        let ((), used) = RequestMetrics::scope(async {
            db_pool_wait(Duration::from_micros(1500));
            db_time(Duration::from_millis(4));
            redis_call(Duration::from_micros(250));
            redis_call(Duration::from_micros(250));
            profile_cache(false);
        })
        .await;
        let text = used.line(
            &Outcome {
                route: "/api/v1/users/{id}",
                method: "GET",
                status: 404,
                latency: Duration::from_millis(12),
                cold_start: false,
            },
            1,
        );
        let l: Value = serde_json::from_str(&text).expect("JSON");
        let declared = &l["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(
            declared["Dimensions"],
            json!([["Function", "Route"], ["Function"]])
        );
        for metric in declared["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("name");
            assert!(l[name].is_number(), "{name} has no value in {l}");
        }
        assert_eq!(l["Route"], "/api/v1/users/{id}");
        assert_eq!(l["Status4xx"], 1.0);
        assert_eq!(l["Status5xx"], 0.0);
        assert_eq!(l["DbPoolWait"], 1.5);
        assert_eq!(l["DbQueryTime"], 4.0);
        assert_eq!(l["RedisTime"], 0.5);
        assert_eq!(l["RedisCalls"], 2.0);
        assert_eq!(l["ProfileCacheMiss"], 1.0);
        assert_eq!(l["ProfileCacheHit"], 0.0);
        assert!(l.get("InitDuration").is_none());
    }

    #[test]
    fn times_are_milliseconds_to_the_microsecond_and_counts_are_integers() {
        let ((), used) = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(RequestMetrics::scope(async {
                db_pool_wait(Duration::from_micros(7));
                db_time(Duration::from_micros(4_020_001));
            }));
        let text = used.line(
            &Outcome {
                route: "/x",
                method: "GET",
                status: 503,
                latency: Duration::from_micros(12_345),
                cold_start: false,
            },
            0,
        );
        for expected in [
            r#""Latency":12.345"#,
            r#""DbPoolWait":0.007"#,
            r#""DbQueryTime":4020.001"#,
            r#""Status5xx":1,"#,
            r#""Requests":1,"#,
            r#""DbConnections":1"#,
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
        let l: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(l["Latency"].as_f64(), Some(12.345));
    }
}
