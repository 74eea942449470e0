//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the local server and the Lambda functions
//! send their spans over OTLP (HTTP/protobuf) to a receiver this test runs: one span per request
//! named after its route template, a child span per Postgres statement and Redis command, one
//! trace id for the request, its log lines and its spans, and no secret in any of them. Unset,
//! nothing is sent.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::support::{
    STRONG_PASSWORD, TestDatabase,
    runtime_api::{Outcome, RuntimeApi, health_event},
    workspace_bin,
};

/// The X-Ray root the Runtime API stub and the requests below carry, as an OpenTelemetry id.
const XRAY_TRACE_ID: &str = "5759e988bd862e3fe1be46a994272793";

/// An OTLP/HTTP trace receiver, as a collector's: POST /v1/traces, protobuf in and out.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

impl Receiver {
    async fn start(&self) -> std::net::SocketAddr {
        let kept = self.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |headers: HeaderMap, body: Bytes| {
                let kept = kept.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").and_then(|v| v.to_str().ok()),
                        Some("application/x-protobuf"),
                        "OTLP over HTTP/protobuf"
                    );
                    let request =
                        ExportTraceServiceRequest::decode(body).expect("an OTLP trace request");
                    kept.0.lock().expect("lock").push(request);
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
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

    fn requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.0.lock().expect("lock").clone()
    }

    fn spans(&self) -> Vec<Span> {
        self.requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }

    /// Waits until `done` holds for the spans received, at most `within`.
    async fn wait_for(&self, within: Duration, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let started = std::time::Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) || started.elapsed() > within {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    match attribute(&span.attributes, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Every text a span carries: its name, its attributes' keys and values, its events.
fn texts_of(span: &Span) -> String {
    fn value(v: &Option<AnyValue>) -> String {
        format!("{:?}", v.as_ref().and_then(|v| v.value.as_ref()))
    }
    let mut out = span.name.clone();
    for kv in &span.attributes {
        out.push_str(&format!(" {}={}", kv.key, value(&kv.value)));
    }
    for event in &span.events {
        out.push_str(&format!(" event {}", event.name));
        for kv in &event.attributes {
            out.push_str(&format!(" {}={}", kv.key, value(&kv.value)));
        }
    }
    out
}

fn show(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} kind={} trace={} span={} parent={} [{}]",
                s.name,
                s.kind,
                hex::encode(&s.trace_id),
                hex::encode(&s.span_id),
                hex::encode(&s.parent_span_id),
                texts_of(s)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The spans made inside `parent`, directly.
fn children_of<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

struct Local {
    server: tokio::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Local {
    async fn start(db: &TestDatabase, extra: &[(&str, String)]) -> Self {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            probe.local_addr().expect("addr").port()
        };
        let mut command = tokio::process::Command::new(workspace_bin("local"));
        command
            .env("APP_ENV", "test")
            .env("PORT", port.to_string())
            .env("DATABASE_URL", &db.url)
            .env("REDIS_URL", crate::support::redis_url())
            .env(
                "REDIS_KEY_PREFIX",
                crate::support::fresh_key_prefix("traces"),
            )
            .env("JWT_SECRET", "test-secret-that-is-long-enough-0123456789")
            .env("LOG_LEVEL", "info")
            .env("AWS_ENDPOINT_URL", crate::support::moto::ENDPOINT)
            .env_remove("AWS_LAMBDA_FUNCTION_NAME")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("_X_AMZN_TRACE_ID")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for (name, value) in extra {
            command.env(name, value);
        }
        let server = command.spawn().expect("starting the local server");
        let addr = format!("127.0.0.1:{port}");
        let mut listening = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                listening = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(listening, "the local server listens");
        Self {
            server,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request; answers its status, its `X-Request-Id` and its JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let res = req.send().await.expect("the local server answers");
        let status = res.status().as_u16();
        let request_id = res
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = res.bytes().await.expect("the body");
        (
            status,
            request_id,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Register, log in, read the profile (that one with an X-Ray trace header, as API Gateway
    /// sends it). Answers the request ids, the secrets the client held, and the email.
    async fn register_login_me(&self) -> ([String; 3], Vec<String>) {
        let (ids, secrets, _) = self.register_login_me_with_token().await;
        (ids, secrets)
    }

    async fn register_login_me_with_token(&self) -> ([String; 3], Vec<String>, String) {
        use reqwest::Method as M;
        let email = format!("traced-{}@example.com", uuid::Uuid::new_v4().simple());
        let (status, registered, body) = self
            .send(
                M::POST,
                "/api/v1/auth/register",
                &[],
                Some(json!({"email": email, "password": STRONG_PASSWORD, "name": "Trace Reader"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let first_refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
        let (status, logged_in, body) = self
            .send(
                M::POST,
                "/api/v1/auth/login",
                &[],
                Some(json!({"email": email, "password": STRONG_PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let access = body["access_token"].as_str().expect("access").to_owned();
        let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
        let bearer = format!("Bearer {access}");
        let (status, me, body) = self
            .send(
                M::GET,
                "/api/v1/users/me",
                &[
                    ("authorization", &bearer),
                    (
                        "x-amzn-trace-id",
                        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
                    ),
                ],
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (
            [registered, logged_in, me],
            vec![
                STRONG_PASSWORD.to_owned(),
                access,
                refresh,
                first_refresh,
                email,
            ],
            bearer,
        )
    }

    /// Stops the server (SIGTERM) and answers its log lines.
    async fn stop(mut self) -> Vec<Value> {
        let pid = self.server.id().expect("the server is running");
        let stopped = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(stopped.success(), "SIGTERM delivered");
        tokio::time::timeout(Duration::from_secs(10), self.server.wait())
            .await
            .expect("the server stops")
            .expect("exit status");
        let mut stdout = String::new();
        self.server
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut stdout)
            .await
            .expect("stdout");
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l.get("_aws").is_none())
            .collect()
    }
}

/// The `request completed` log line of the request answered with `request_id`.
fn completed<'a>(logs: &'a [Value], request_id: &str) -> &'a Value {
    logs.iter()
        .find(|l| l["message"] == "request completed" && l["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no access log line for {request_id}"))
}

#[tokio::test]
async fn the_local_server_sends_a_span_per_request_with_its_postgres_and_redis_calls_as_children() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let db = TestDatabase::create().await;
    let local = Local::start(
        &db,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
            // Sent every 100 ms rather than every 5 s: the test need not wait.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    )
    .await;
    let (request_ids, secrets, bearer) = local.register_login_me_with_token().await;
    // An upload's presigned URL: an S3 operation of the SDK (signed, never sent).
    let (status, _, body) = local
        .send(
            reqwest::Method::POST,
            "/api/v1/uploads",
            &[("authorization", &bearer)],
            Some(json!({"filename": "notes.txt", "content_type": "text/plain", "size": 12})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let upload_url = body["upload_url"]
        .as_str()
        .expect("a presigned URL")
        .to_owned();
    let routes = [
        "POST /api/v1/auth/register",
        "POST /api/v1/auth/login",
        "GET /api/v1/users/me",
        "POST /api/v1/uploads",
    ];
    let spans = receiver
        .wait_for(Duration::from_secs(10), |spans| {
            routes.iter().all(|r| spans.iter().any(|s| s.name == *r))
        })
        .await;
    let logs = local.stop().await;
    let all = show(&spans);

    let resource = &receiver.requests()[0].resource_spans[0];
    let service = resource
        .resource
        .as_ref()
        .and_then(|r| attribute(&r.attributes, "service.name"));
    assert_eq!(
        service,
        Some(&any_value::Value::StringValue("local".into())),
        "the service is the function's name"
    );

    let s3 = spans
        .iter()
        .find(|s| s.name == "POST /api/v1/uploads")
        .map(|upload| children_of(&spans, upload))
        .unwrap_or_default();
    assert!(
        s3.iter().any(|s| s.name == "S3.PutObject"
            && text(s, "rpc.service") == Some("S3")
            && text(s, "rpc.method") == Some("PutObject")),
        "the SDK's operation span, inside its request:\n{all}"
    );
    // The signature of the URL the client got is nowhere in a span.
    let signature = upload_url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-Signature="))
        .expect("a signed URL");
    assert!(!all.contains(signature), "{all}");

    for ((route, request_id), template) in routes.iter().zip(&request_ids).zip([
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/users/me",
    ]) {
        let server: Vec<&Span> = spans.iter().filter(|s| s.name == *route).collect();
        assert_eq!(server.len(), 1, "one span for {route}:\n{all}");
        let server = server[0];
        assert_eq!(server.kind, SpanKind::Server as i32, "{all}");
        assert_eq!(text(server, "http.route"), Some(template));
        assert_eq!(text(server, "request_id"), Some(request_id.as_str()));
        assert!(
            matches!(
                attribute(&server.attributes, "http.response.status_code"),
                Some(any_value::Value::IntValue(200 | 201))
            ),
            "{all}"
        );

        let children = children_of(&spans, server);
        let postgres: Vec<&&Span> = children
            .iter()
            .filter(|s| text(s, "db.system") == Some("postgresql"))
            .collect();
        let redis: Vec<&&Span> = children
            .iter()
            .filter(|s| text(s, "db.system") == Some("redis"))
            .collect();
        // Every route but the fallback counts against the rate limit in Redis.
        assert!(!redis.is_empty(), "{route} has Redis spans:\n{all}");
        for child in postgres.iter().chain(&redis) {
            assert_eq!(child.kind, SpanKind::Client as i32, "{all}");
            assert_eq!(
                child.trace_id, server.trace_id,
                "one trace per request:\n{all}"
            );
            assert_eq!(
                Some(child.name.split(' ').next().unwrap_or_default()),
                text(child, "db.operation.name"),
                "{all}"
            );
            assert!(
                child.start_time_unix_nano >= server.start_time_unix_nano
                    && child.end_time_unix_nano <= server.end_time_unix_nano,
                "a call lies within its request:\n{all}"
            );
        }
        let names: Vec<&str> = postgres.iter().map(|s| s.name.as_str()).collect();
        match *route {
            "POST /api/v1/auth/register" => {
                for statement in ["BEGIN", "INSERT users", "INSERT refresh_tokens", "COMMIT"] {
                    assert!(
                        names.contains(&statement),
                        "{statement} in {names:?}:\n{all}"
                    );
                }
                let insert = postgres
                    .iter()
                    .find(|s| s.name == "INSERT users")
                    .expect("the insert");
                assert!(
                    text(insert, "db.query.text").is_some_and(|q| q.contains("$1")),
                    "the statement's text, parameters as $n:\n{all}"
                );
            }
            "POST /api/v1/auth/login" => {
                assert!(names.contains(&"SELECT users"), "{names:?}:\n{all}")
            }
            _ => {
                // The API Gateway trace header names the request's trace and its parent.
                assert_eq!(hex::encode(&server.trace_id), XRAY_TRACE_ID, "{all}");
                assert_eq!(hex::encode(&server.parent_span_id), "53995c3f42cd8ad8");
            }
        }

        // The request's log lines name the same trace.
        let line = completed(&logs, request_id);
        assert_eq!(
            line["trace_id"].as_str(),
            Some(hex::encode(&server.trace_id).as_str()),
            "{line}"
        );
        assert!(
            line.as_object()
                .is_some_and(|o| o.keys().all(|k| !k.starts_with("otel."))),
            "the log line keeps its fields: {line}"
        );
    }

    for secret in &secrets {
        assert!(
            !all.contains(secret.as_str()),
            "{secret} reached a span:\n{all}"
        );
    }
    assert!(
        spans.iter().all(|s| s.events.is_empty()),
        "log events never become span events:\n{all}"
    );
}

#[tokio::test]
async fn without_an_endpoint_the_local_server_sends_no_span() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let db = TestDatabase::create().await;
    // The signal's own variable names the receiver: an exporter built although
    // OTEL_EXPORTER_OTLP_ENDPOINT is unset would send there.
    let local = Local::start(
        &db,
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                format!("http://{addr}/v1/traces"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    )
    .await;
    let ([registered, _, me], _) = local.register_login_me().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let logs = local.stop().await;
    assert!(
        receiver.requests().is_empty(),
        "nothing is sent:\n{}",
        show(&receiver.spans())
    );
    // The log lines still name the X-Ray trace when there is one, and no trace otherwise.
    assert_eq!(completed(&logs, &me)["trace_id"], XRAY_TRACE_ID);
    assert!(completed(&logs, &registered)["trace_id"].is_null());
}

#[tokio::test]
async fn a_function_on_lambda_sends_its_spans_before_the_next_invocation_in_the_lambda_trace() {
    let receiver = Receiver::default();
    let addr = receiver.start().await;
    let db = TestDatabase::create().await;
    let api = RuntimeApi::start().await;
    let mut function = api
        .function("health", "health", &db)
        .env("LOG_LEVEL", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        // A batch sent only every 10 minutes: what arrives was flushed by the invocation.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the health binary");

    let event = health_event();
    let id = api.invoke(event);
    let Outcome::Response(answer) = api.outcome(&id, Duration::from_secs(30)).await else {
        panic!("the health invocation is answered");
    };
    assert_eq!(answer["statusCode"], json!(200), "{answer}");
    let spans = receiver
        .wait_for(Duration::from_secs(3), |spans| {
            spans.iter().any(|s| s.name == "GET /health")
        })
        .await;
    function.kill().await.expect("stopping the function");
    let all = show(&spans);

    let server = spans
        .iter()
        .find(|s| s.name == "GET /health")
        .unwrap_or_else(|| panic!("the request's span was flushed after its invocation:\n{all}"));
    // Lambda's trace header: the root is the trace, the parent segment the span's parent.
    assert_eq!(hex::encode(&server.trace_id), XRAY_TRACE_ID, "{all}");
    assert_eq!(
        hex::encode(&server.parent_span_id),
        "53995c3f42cd8ad8",
        "{all}"
    );
    let children = children_of(&spans, server);
    assert!(
        children
            .iter()
            .any(|s| s.name == "SELECT" && text(s, "db.system") == Some("postgresql")),
        "the database check:\n{all}"
    );
    assert!(
        children
            .iter()
            .any(|s| s.name == "PING" && text(s, "db.system") == Some("redis")),
        "the Redis check:\n{all}"
    );
    let resource = &receiver.requests()[0].resource_spans[0];
    assert_eq!(
        resource
            .resource
            .as_ref()
            .and_then(|r| attribute(&r.attributes, "service.name")),
        Some(&any_value::Value::StringValue("health".into())),
    );
}
