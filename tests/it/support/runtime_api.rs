//! A local stand-in for the Lambda Runtime API, so that a function's real binary can be run as
//! Lambda runs it: the binary polls `GET /2018-06-01/runtime/invocation/next`, gets the queued
//! events one by one, and posts each result to `.../{id}/response` or `.../{id}/error`.
//!
//! Only the calls the Rust runtime makes are served. Events are answered in order; a poll with
//! nothing queued waits, as the real API does between invocations.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;
use tokio::sync::Notify;

use super::{TestDatabase, workspace_bin};

/// What the binary answered for one invocation.
#[derive(Debug, Clone)]
pub enum Outcome {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct Inner {
    queued: Mutex<VecDeque<(String, Value)>>,
    outcomes: Mutex<Vec<(String, Outcome)>>,
    queued_signal: Notify,
    outcome_signal: Notify,
    extensions_registered: std::sync::atomic::AtomicUsize,
    /// Extension polls (`event/next`) carrying the identifier the registration gave.
    extension_polls: std::sync::atomic::AtomicUsize,
    /// Answer every extension registration with a 500.
    refuse_extensions: std::sync::atomic::AtomicBool,
    /// Register extensions without giving them an identifier.
    withhold_extension_ids: std::sync::atomic::AtomicBool,
    /// Answer every extension poll at once with a SHUTDOWN event.
    shut_extensions_down: std::sync::atomic::AtomicBool,
    polls: std::sync::atomic::AtomicUsize,
}

#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
}

impl RuntimeApi {
    /// How many extensions registered with the Extensions API so far.
    pub fn extensions_registered(&self) -> usize {
        self.inner
            .extensions_registered
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many extension polls (`GET .../extension/event/next`) with the registration's
    /// identifier arrived so far.
    pub fn extension_polls(&self) -> usize {
        self.inner
            .extension_polls
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many `GET .../invocation/next` polls arrived so far.
    pub fn polls(&self) -> usize {
        self.inner.polls.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on, every extension registration is refused with a 500.
    pub fn refuse_extensions(&self) {
        self.inner
            .refuse_extensions
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on, a registration succeeds without the extension's identifier.
    pub fn withhold_extension_ids(&self) {
        self.inner
            .withhold_extension_ids
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on, every extension poll is answered at once with a SHUTDOWN event (as some
    /// Runtime API stand-ins do; Lambda sends none to an internal extension).
    pub fn shut_extensions_down(&self) {
        self.inner
            .shut_extensions_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .route("/2020-01-01/extension/register", post(register_extension))
            .route("/2020-01-01/extension/event/next", get(no_extension_events))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the Runtime API stub");
        let addr = listener.local_addr().expect("stub address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { inner, addr }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Queues one invocation and returns its request id.
    pub fn invoke(&self, payload: Value) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.inner
            .queued
            .lock()
            .expect("queue")
            .push_back((id.clone(), payload));
        self.inner.queued_signal.notify_one();
        id
    }

    /// Waits for the outcome of invocation `id`.
    pub async fn outcome(&self, id: &str, within: Duration) -> Outcome {
        let wait = async {
            loop {
                let signal = self.inner.outcome_signal.notified();
                if let Some((_, outcome)) = self
                    .inner
                    .outcomes
                    .lock()
                    .expect("outcomes")
                    .iter()
                    .find(|(done, _)| done == id)
                {
                    return outcome.clone();
                }
                signal.await;
            }
        };
        tokio::time::timeout(within, wait)
            .await
            .unwrap_or_else(|_| panic!("invocation {id} got no answer within {within:?}"))
    }
}

impl RuntimeApi {
    /// The command that runs the function binary `bin` as the Lambda function `name` against
    /// this stand-in: the Lambda environment, `APP_ENV=test`, the database `db` and the test
    /// Redis, killed when dropped. The caller adds its own variables and output, then spawns it.
    pub fn function(&self, bin: &str, name: &str, db: &TestDatabase) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(workspace_bin(bin));
        command
            .envs(lambda_env(self, name))
            .env("APP_ENV", "test")
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", super::redis_url())
            // Keys of its own, as every test app has: a rate-limit count that another process
            // on the shared Redis left for the stored event's client IP would answer 429.
            .env("REDIS_KEY_PREFIX", super::fresh_key_prefix("test"))
            .kill_on_drop(true);
        command
    }
}

/// The stored API Gateway event of a `GET /health`.
pub fn health_event() -> Value {
    let path = super::repo_root().join("tests/fixtures/events/health.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the health event"))
        .expect("event JSON")
}

/// The environment a function binary needs to run against this stub.
pub fn lambda_env(api: &RuntimeApi, function: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.endpoint()),
        ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "test-stream".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

async fn next(State(inner): State<Arc<Inner>>) -> Response {
    inner
        .polls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    loop {
        let signal = inner.queued_signal.notified();
        let event = inner.queued.lock().expect("queue").pop_front();
        if let Some((id, payload)) = event {
            let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
            let mut headers = HeaderMap::new();
            let value = |s: &str| HeaderValue::from_str(s).expect("header value");
            headers.insert("lambda-runtime-aws-request-id", value(&id));
            headers.insert("lambda-runtime-deadline-ms", value(&deadline.to_string()));
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                value("arn:aws:lambda:us-east-1:123456789012:function:test"),
            );
            headers.insert(
                "lambda-runtime-trace-id",
                value("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"),
            );
            headers.insert("content-type", value("application/json"));
            return (StatusCode::OK, headers, payload.to_string()).into_response();
        }
        signal.await;
    }
}

fn record(inner: &Inner, id: String, outcome: Outcome) -> StatusCode {
    inner.outcomes.lock().expect("outcomes").push((id, outcome));
    inner.outcome_signal.notify_waiters();
    StatusCode::ACCEPTED
}

fn json_of(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(inner): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> StatusCode {
    record(&inner, id, Outcome::Response(json_of(&body)))
}

async fn error(State(inner): State<Arc<Inner>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    record(&inner, id, Outcome::Error(json_of(&body)))
}

async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    record(&inner, "init".into(), Outcome::Error(json_of(&body)))
}

/// The Extensions API's registration: on Lambda, only a function with a registered extension
/// gets SIGTERM before it is stopped. As Lambda does, a registration without a name or with a
/// body other than a list of events is refused with a 400.
async fn register_extension(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if inner
        .refuse_extensions
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let named = headers
        .get("lambda-extension-name")
        .is_some_and(|name| !name.is_empty());
    let events = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body.get("events").cloned());
    if !named || !events.as_ref().is_some_and(Value::is_array) {
        return StatusCode::BAD_REQUEST.into_response();
    }
    inner
        .extensions_registered
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let body = serde_json::json!({
        "functionName": "test",
        "functionVersion": "$LATEST",
        "handler": "bootstrap",
    });
    if inner
        .withhold_extension_ids
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return (StatusCode::OK, body.to_string()).into_response();
    }
    (
        StatusCode::OK,
        [("lambda-extension-identifier", EXTENSION_ID)],
        body.to_string(),
    )
        .into_response()
}

const EXTENSION_ID: &str = "test-extension-id";

/// A no-op extension subscribes to no event: its poll waits for ever, as on Lambda. A poll
/// without the registration's identifier is refused with a 403, as Lambda does.
async fn no_extension_events(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if headers
        .get("lambda-extension-identifier")
        .is_none_or(|id| id != EXTENSION_ID)
    {
        return StatusCode::FORBIDDEN.into_response();
    }
    inner
        .extension_polls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if inner
        .shut_extensions_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        let event = serde_json::json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0});
        return (StatusCode::OK, event.to_string()).into_response();
    }
    std::future::pending::<()>().await;
    StatusCode::OK.into_response()
}
