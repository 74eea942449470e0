//! A local stand-in for the AWS Lambda Runtime API, for benchmarks of a function's release binary
//! (not a test: it prints one JSON line per run).
//!
//! It starts the binary with `AWS_LAMBDA_RUNTIME_API` pointing at itself, hands it API Gateway
//! events one at a time (as Lambda does: one instance, one request at a time), and reports what
//! a cold start and a warm invocation cost and how much memory the process held:
//!
//! - `exec_to_next_ms`: exec → the first `GET /invocation/next` (the runtime is ready);
//! - `first_response_ms`: exec → the first response posted;
//! - `first_invocation_ms`: the first event handed over → its response posted;
//! - `warm_median_ms`: the same, median over the later invocations;
//! - `peak_rss_mib`, `rss_mib`, `threads`: the process's `VmHWM`, `VmRSS` and thread count at
//!   the end.
//!
//! ```text
//! cargo bench --bench lambda_sim -p integration-tests -- \
//!     --event tests/fixtures/events/auth_login.json --count 200 -- target/release/auth
//! ```
//!
//! The Runtime API paths are the documented ones ("AWS Lambda runtime API", Lambda developer
//! guide), plus the Extensions API's `register` and `event/next` that the functions' shutdown
//! extension uses: once every event is answered, the process gets SIGTERM and the extension
//! `SHUTDOWN`, as Lambda ends an instance. Written in Rust
//! over a current-thread runtime so that its own answers cost tens of microseconds, not the
//! function's cold start.
//!
//! With `--http URL` it times a server instead: exec → the first 200 from `URL`, polled every
//! 0.2 ms (the Express peer's process start to its first answer).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

struct Args {
    events: Vec<Bytes>,
    count: usize,
    http: Option<String>,
    command: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut events = Vec::new();
    let mut count = 1;
    let mut http = None;
    let mut args = std::env::args().skip(1);
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--event" => {
                let path = args.next().ok_or_else(|| anyhow::anyhow!("--event FILE"))?;
                events.push(Bytes::from(std::fs::read(&path)?));
            }
            "--count" => {
                count = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--count N"))?
                    .parse()?;
            }
            "--http" => http = args.next(),
            "--" => {
                command = args.collect();
                break;
            }
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(!command.is_empty(), "the function's command goes after --");
    anyhow::ensure!(
        http.is_some() || !events.is_empty(),
        "--event FILE (or --http URL)"
    );
    Ok(Args {
        events,
        count,
        http,
        command,
    })
}

#[derive(Default)]
struct Timeline {
    pending: VecDeque<Bytes>,
    total: usize,
    first_next: Option<Instant>,
    first_response: Option<Instant>,
    handed: HashMap<String, Instant>,
    durations: Vec<Duration>,
    statuses: HashMap<String, usize>,
    next_id: u64,
}

#[derive(Clone)]
struct Sim {
    timeline: Arc<Mutex<Timeline>>,
    done: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
}

impl Sim {
    fn timeline(&self) -> std::sync::MutexGuard<'_, Timeline> {
        self.timeline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn next_invocation(State(sim): State<Sim>) -> impl IntoResponse {
    let now = Instant::now();
    sim.timeline().first_next.get_or_insert(now);
    // Every event is queued before the start; after the last one, Lambda holds `/next` open
    // until the end.
    let Some(event) = sim.timeline().pending.pop_front() else {
        return std::future::pending().await;
    };
    let mut timeline = sim.timeline();
    timeline.next_id += 1;
    let id = format!("sim-{}", timeline.next_id);
    timeline.handed.insert(id.clone(), Instant::now());
    drop(timeline);
    let deadline_ms = epoch_ms_in(Duration::from_secs(900));
    (
        [
            ("content-type", "application/json".to_string()),
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:sim".to_string(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-67890abc-1234567890abcdef01234567;Parent=1;Sampled=0".to_string(),
            ),
        ],
        event,
    )
}

async fn answered(
    State(sim): State<Sim>,
    Path((id, kind)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    let status = if kind == "response" {
        serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("statusCode").map(ToString::to_string))
            .unwrap_or_else(|| "unparsed".into())
    } else {
        "error".into()
    };
    let mut timeline = sim.timeline();
    timeline.first_response.get_or_insert(now);
    let handed = timeline.handed.remove(&id).unwrap_or(now);
    timeline.durations.push(now - handed);
    *timeline.statuses.entry(status).or_default() += 1;
    if timeline.durations.len() == timeline.total {
        sim.done.notify_one();
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(sim): State<Sim>, body: Bytes) -> StatusCode {
    eprintln!("init error: {}", String::from_utf8_lossy(&body));
    sim.done.notify_one();
    StatusCode::ACCEPTED
}

async fn register_extension() -> impl IntoResponse {
    (
        [
            ("lambda-extension-identifier", "sim-extension"),
            ("content-type", "application/json"),
        ],
        r#"{"functionName":"sim","functionVersion":"$LATEST","handler":"bootstrap"}"#,
    )
}

async fn extension_next(State(mut sim): State<Sim>, _headers: HeaderMap) -> impl IntoResponse {
    let _ = sim.shutdown.wait_for(|down| *down).await;
    let deadline_ms = epoch_ms_in(Duration::from_secs(2));
    (
        [("content-type", "application/json")],
        json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline_ms})
            .to_string(),
    )
}

/// Milliseconds since the epoch, `after` from now: the Runtime API's deadlines.
fn epoch_ms_in(after: Duration) -> u128 {
    (std::time::SystemTime::now() + after)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// `VmHWM`, `VmRSS` (MiB) and `Threads` of a running process.
fn proc_status(pid: u32) -> (f64, f64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    (mib(field("VmHWM")), mib(field("VmRSS")), field("Threads"))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

async fn run_function(args: &Args) -> anyhow::Result<bool> {
    let (stop, shutdown) = watch::channel(false);
    let total = args.count * args.events.len();
    let mut timeline = Timeline {
        total,
        ..Timeline::default()
    };
    for _ in 0..args.count {
        timeline.pending.extend(args.events.iter().cloned());
    }
    let sim = Sim {
        timeline: Arc::new(Mutex::new(timeline)),
        done: Arc::new(Notify::new()),
        shutdown,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(answered))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .route("/2020-01-01/extension/register", post(register_extension))
        .route("/2020-01-01/extension/event/next", get(extension_next))
        .with_state(sim.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut command = tokio::process::Command::new(&args.command[0]);
    command
        .args(&args.command[1..])
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .kill_on_drop(true);
    for (name, value) in [
        ("AWS_LAMBDA_FUNCTION_NAME", "sim"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
    if std::env::var_os("SIM_SHOW_OUTPUT").is_none() {
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    }
    let started = Instant::now();
    let mut child = command.spawn()?;
    let pid = child.id().unwrap_or_default();
    let limit = Duration::from_secs(60) * u32::try_from(total.max(1))?;
    let finished = tokio::select! {
        () = sim.done.notified() => true,
        _ = child.wait() => false,
        () = tokio::time::sleep(limit) => false,
    };
    let (peak, rss, threads) = proc_status(pid);
    // As Lambda ends an instance with an extension registered: SIGTERM, then SHUTDOWN to the
    // extension.
    let _ = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await;
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        child.kill().await?;
    }

    let timeline = sim.timeline();
    let since = |t: Option<Instant>| t.map(|t| ms(t - started));
    let mut warm: Vec<Duration> = timeline.durations.iter().skip(1).copied().collect();
    if warm.is_empty() {
        warm.clone_from(&timeline.durations);
    }
    warm.sort();
    let warm_median = warm.get(warm.len() / 2).map(|d| ms(*d));
    let report = json!({
        "invocations": timeline.durations.len(),
        "statuses": timeline.statuses,
        "exec_to_next_ms": since(timeline.first_next),
        "first_response_ms": since(timeline.first_response),
        "first_invocation_ms": timeline.durations.first().map(|d| ms(*d)),
        "warm_median_ms": warm_median,
        "peak_rss_mib": (peak * 10.0).round() / 10.0,
        "rss_mib": (rss * 10.0).round() / 10.0,
        "threads": threads,
    });
    println!("{report}");
    Ok(finished && timeline.durations.len() == total)
}

/// Exec → the first 200 from `url`, for a server that is not a Lambda function.
async fn run_server(url: &str, command: &[String]) -> anyhow::Result<bool> {
    let url: http::Uri = url.parse()?;
    let authority = url
        .authority()
        .ok_or_else(|| anyhow::anyhow!("--http needs host:port"))?
        .to_string();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n",
        url.path()
    );
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let answered = loop {
        if started.elapsed() > Duration::from_secs(30) {
            break None;
        }
        if let Ok(mut stream) = tokio::net::TcpStream::connect(&authority).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut head = [0u8; 12];
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_exact(&mut head).await.is_ok()
                && head.ends_with(b"200")
            {
                break Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let pid = child.id().unwrap_or_default();
    let (peak, rss, threads) = proc_status(pid);
    child.kill().await?;
    println!(
        "{}",
        json!({
            "first_response_ms": answered.map(ms),
            "peak_rss_mib": (peak * 10.0).round() / 10.0,
            "rss_mib": (rss * 10.0).round() / 10.0,
            "threads": threads,
        })
    );
    Ok(answered.is_some())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let ok = match args.http.clone() {
        Some(url) => run_server(&url, &args.command).await?,
        None => run_function(&args).await?,
    };
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
