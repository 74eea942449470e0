//! Error reports: with `SENTRY_DSN` set, a 5xx or a panic sends one event, to an envelope
//! receiver this test runs, naming the request and never its secrets; a 4xx sends nothing.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::Path,
    response::IntoResponse,
    routing::{get, post},
};
use http::{HeaderMap, Method, header};
use http_kit::ApiError;
use serde_json::Value;

use crate::support::{Settings, TestApp, request};

/// Keeps every envelope POSTed to it, as Sentry's ingestion endpoint would receive them.
#[derive(Clone, Default)]
struct Receiver {
    kept: Arc<Mutex<Vec<String>>>,
    /// Answer each envelope with a 429 and this `Retry-After` (a project over its quota).
    retry_after: Option<&'static str>,
}

impl Receiver {
    fn over_quota(retry_after: &'static str) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::default()
        }
    }

    async fn start(&self) -> std::net::SocketAddr {
        let receiver = self.clone();
        let app = Router::new().route(
            "/api/{project}/envelope/",
            post(move |headers: HeaderMap, body: Bytes| {
                let receiver = receiver.clone();
                async move {
                    let text = if headers
                        .get(header::CONTENT_ENCODING)
                        .is_some_and(|v| v == "gzip")
                    {
                        use std::io::Read;
                        let mut out = String::new();
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_string(&mut out)
                            .expect("a gzip envelope");
                        out
                    } else {
                        String::from_utf8(body.to_vec()).expect("a UTF-8 envelope")
                    };
                    receiver.kept.lock().expect("lock").push(text);
                    match receiver.retry_after {
                        Some(after) => (
                            http::StatusCode::TOO_MANY_REQUESTS,
                            [(header::RETRY_AFTER, after)],
                        )
                            .into_response(),
                        None => "{}".into_response(),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn envelopes(&self) -> Vec<String> {
        self.kept.lock().expect("lock").clone()
    }

    /// The events in the envelopes received so far: the payload line after each event header.
    fn events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        for envelope in self.envelopes() {
            let lines: Vec<&str> = envelope.lines().collect();
            for pair in lines.windows(2) {
                let Ok(head) = serde_json::from_str::<Value>(pair[0]) else {
                    continue;
                };
                if head["type"] == "event" {
                    events.push(serde_json::from_str(pair[1]).expect("an event payload"));
                }
            }
        }
        events
    }
}

/// Error tracking of this process pointed at a receiver on `addr`.
fn report_to(addr: std::net::SocketAddr) {
    let dsn = format!("http://publickey123@{addr}/42");
    let config = platform::config::Config::from_lookup(|name| match name {
        "SENTRY_DSN" => Some(dsn.clone()),
        "APP_ENV" => Some("development".into()),
        _ => None,
    })
    .expect("settings");
    platform::error_tracking::init(&config);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_and_a_panic_are_reported_with_their_request_and_without_secrets_and_a_4xx_is_not() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let app = TestApp::spawn_with(
        Settings::default()
            .set("SENTRY_DSN", &format!("http://publickey123@{addr}/42"))
            .set("RELEASE", "0123abcd"),
    )
    .await;
    platform::error_tracking::init(&app.state.config);
    assert!(platform::error_tracking::enabled());

    let routes = Router::new()
        .route(
            "/probe/{id}/crash",
            get(|Path(_id): Path<String>| async {
                ApiError::Unexpected(anyhow::anyhow!(
                    "upstream refused: authorization: Bearer eyJhbGci.error-token-secret.sig, password=hunter2-secret"
                ))
            }),
        )
        .route(
            "/probe/{id}/panic",
            post(|Path(_id): Path<String>, _body: String| async {
                if true {
                    panic!("the cache went away: token=panic-token-secret");
                }
                ""
            }),
        )
        .route("/probe/{id}/missing", get(|| async { ApiError::NotFound }));
    let router = http_kit::app(routes, &app.state);
    let send = |method: Method, path: &str| {
        request(method, path)
            .header(header::AUTHORIZATION, "Bearer client-token-secret")
            .header(header::COOKIE, "refresh_token=cookie-token-secret")
            // API Gateway's trace header: the report names the trace the request's logs name.
            .header(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            )
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"email":"reported@example.com","password":"body-password-secret"}"#,
            ))
            .expect("req")
    };

    let crashed =
        crate::support::send_to(&router, send(Method::GET, "/probe/raw-id-4242/crash")).await;
    assert_eq!(crashed.status, 500);
    let panicked =
        crate::support::send_to(&router, send(Method::POST, "/probe/raw-id-4343/panic")).await;
    assert_eq!(panicked.status, 500);
    let missing =
        crate::support::send_to(&router, send(Method::GET, "/probe/raw-id-4444/missing")).await;
    assert_eq!(missing.status, 404);
    let unauthorized = app
        .send(
            request(Method::GET, "/api/v1/users/me")
                .header(header::AUTHORIZATION, "Bearer not-a-real-token")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(unauthorized.status, 401);

    // Each report is flushed before its answer leaves: they are all in by now. A moment more
    // would show a report sent late, for the 4xx.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = receiver.events();
    assert_eq!(
        events.len(),
        2,
        "one report per 5xx, none for a 4xx: {:#?}",
        receiver.envelopes()
    );

    let crash = events
        .iter()
        .find(|e| e["tags"]["route"] == "/probe/{id}/crash")
        .expect("the 500's report");
    assert_eq!(
        crash["tags"]["request_id"].as_str(),
        crashed.header("x-request-id")
    );
    assert_eq!(crash["tags"]["method"], "GET");
    assert_eq!(crash["tags"]["status"], "500");
    assert_eq!(crash["tags"]["function"], "local");
    assert_eq!(crash["release"], "0123abcd");
    assert_eq!(crash["environment"], "test");
    let trace_id = "5759e988bd862e3fe1be46a994272793";
    assert_eq!(crash["tags"]["trace_id"], trace_id);
    assert_eq!(crash["contexts"]["trace"]["trace_id"], trace_id);
    let cause = crash["exception"]["values"][0]["value"]
        .as_str()
        .expect("the cause");
    assert!(cause.contains("upstream refused"), "{cause}");

    let panic = events
        .iter()
        .find(|e| e["tags"]["route"] == "/probe/{id}/panic")
        .expect("the panic's report");
    assert_eq!(
        panic["tags"]["request_id"].as_str(),
        panicked.header("x-request-id")
    );
    assert_eq!(panic["exception"]["values"][0]["type"], "panic");
    let message = panic["exception"]["values"][0]["value"]
        .as_str()
        .expect("the panic's message");
    assert!(message.contains("the cache went away"), "{message}");
    assert_eq!(panic["release"], "0123abcd");

    let text = receiver.envelopes().join("\n");
    for secret in [
        "client-token-secret",
        "cookie-token-secret",
        "body-password-secret",
        "reported@example.com",
        "error-token-secret",
        "hunter2-secret",
        "panic-token-secret",
        "raw-id-4242",
        "raw-id-4343",
    ] {
        assert!(!text.contains(secret), "{secret} reached a report:\n{text}");
    }
}

/// A panic outside any request, on the runtime's only thread (as on Lambda): the panic hook
/// waits for its report, which the telemetry thread sends while this thread is held.
#[tokio::test(flavor = "current_thread")]
async fn a_panic_outside_a_request_on_a_one_thread_runtime_is_reported_before_it_unwinds() {
    // The receiver runs on a thread of its own: this runtime's only thread is the one the hook
    // holds.
    let receiver = Receiver::default();
    let (started, addr) = std::sync::mpsc::channel();
    let serving = receiver.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("the receiver's runtime");
        runtime.block_on(async move {
            started.send(serving.start().await).expect("the test waits");
            std::future::pending::<()>().await;
        });
    });
    report_to(addr.recv().expect("the receiver's address"));
    assert!(platform::error_tracking::enabled());

    let crashed = tokio::spawn(async {
        if true {
            panic!("the scheduler lost its lease: token=outside-token-secret");
        }
    })
    .await;
    assert!(crashed.is_err_and(|e| e.is_panic()));

    // No wait here: the hook returned only once the report was answered.
    let events = receiver.events();
    let report = events
        .iter()
        .find(|e| e["message"] == "panic outside a request")
        .unwrap_or_else(|| panic!("the report, before the panic unwound: {events:?}"));
    assert_eq!(report["level"], "fatal");
    let message = report["exception"]["values"][0]["value"]
        .as_str()
        .expect("the panic's message");
    assert!(
        message.contains("the scheduler lost its lease"),
        "{message}"
    );
    assert!(
        !receiver
            .envelopes()
            .join("\n")
            .contains("outside-token-secret")
    );
}

/// Sentry answers a 429 with `Retry-After` when a project is over its quota: the reports after it
/// are held back for that long instead of being sent into the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_429_with_retry_after_no_report_is_sent_until_it_passes() {
    let receiver = Receiver::over_quota("60");
    report_to(receiver.start().await);

    for request_id in ["first", "second", "third"] {
        platform::error_tracking::report(platform::error_tracking::FailedRequest {
            request_id,
            route: "/probe",
            method: "GET",
            status: 500,
            trace_id: None,
            failure: None,
        })
        .await;
    }
    assert_eq!(
        receiver.envelopes().len(),
        1,
        "only the report before the 429 was sent"
    );
}
