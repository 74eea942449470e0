//! Request metrics: one CloudWatch EMF line per request, by function and route template, with
//! every figure checked against what the client saw.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::get};
use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use crate::support::{STRONG_PASSWORD, Settings, TestApp, TestDatabase, request, workspace_bin};

/// The EMF objects among a process's stdout lines (log lines have no `_aws`).
fn emf_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l.get("_aws").is_some())
        .collect()
}

/// Every metric a line declares has its value, and every line is in the backend's namespace,
/// dimensioned by function and route.
fn assert_well_formed(line: &Value) {
    let declared = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(declared["Namespace"], "Backend", "{line}");
    assert_eq!(
        declared["Dimensions"],
        json!([["Function", "Route"], ["Function"]]),
        "{line}"
    );
    assert!(line["_aws"]["Timestamp"].as_i64().is_some(), "{line}");
    for metric in declared["Metrics"].as_array().expect("declared metrics") {
        let name = metric["Name"].as_str().expect("a name");
        assert!(
            line[name].is_number(),
            "{name} declared without a value: {line}"
        );
    }
}

fn number(line: &Value, name: &str) -> f64 {
    line[name]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} missing from {line}"))
}

/// What the client saw of one request.
struct Sent {
    route: &'static str,
    status: u16,
    elapsed: Duration,
}

struct Client {
    http: reqwest::Client,
    base: String,
    sent: Vec<Sent>,
}

impl Client {
    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        route: &'static str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let started = Instant::now();
        let res = req.send().await.expect("the local server answers");
        let status = res.status().as_u16();
        let bytes = res.bytes().await.expect("the body");
        self.sent.push(Sent {
            route,
            status,
            elapsed: started.elapsed(),
        });
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn the_local_server_writes_one_metric_line_per_request_by_route_template() {
    let db = TestDatabase::create().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("addr").port()
    };
    let spawned = Instant::now();
    let mut server = tokio::process::Command::new(workspace_bin("local"))
        .env("APP_ENV", "test")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", crate::support::redis_url())
        .env(
            "REDIS_KEY_PREFIX",
            crate::support::fresh_key_prefix("metrics"),
        )
        .env("JWT_SECRET", "test-secret-that-is-long-enough-0123456789")
        .env("LOG_LEVEL", "debug")
        .env_remove("AWS_LAMBDA_FUNCTION_NAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the local server");
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
    let listened = spawned.elapsed();
    // However long the first request is in coming, the init ended when the server was ready.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{addr}"),
        sent: Vec::new(),
    };
    use reqwest::Method as M;
    let email = format!("metrics-{}@example.com", uuid::Uuid::new_v4().simple());
    let registered = client
        .send(
            M::POST,
            "/api/v1/auth/register",
            "/api/v1/auth/register",
            None,
            Some(json!({"email": email, "password": STRONG_PASSWORD, "name": "Metric Reader"})),
        )
        .await;
    let first_refresh = registered["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let user_id = registered["user"]["id"]
        .as_str()
        .expect("the user's id")
        .to_owned();
    let logged_in = client
        .send(
            M::POST,
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": STRONG_PASSWORD})),
        )
        .await;
    let login_access = logged_in["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned();
    let refreshed = client
        .send(
            M::POST,
            "/api/v1/auth/refresh",
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": first_refresh})),
        )
        .await;
    let access = refreshed["access_token"]
        .as_str()
        .expect("a refreshed access token")
        .to_owned();
    for _ in 0..2 {
        client
            .send(
                M::GET,
                "/api/v1/users/me",
                "/api/v1/users/me",
                Some(&access),
                None,
            )
            .await;
    }
    let stranger = uuid::Uuid::new_v4().to_string();
    client
        .send(
            M::GET,
            &format!("/api/v1/users/{stranger}"),
            "/api/v1/users/{id}",
            Some(&access),
            None,
        )
        .await;
    client
        .send(M::GET, "/api/v1/no/such/page/zqxv", "unmatched", None, None)
        .await;
    client
        .send(
            M::POST,
            "/api/v1/auth/login",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": "not-the-password-at-all"})),
        )
        .await;
    let statuses: Vec<u16> = client.sent.iter().map(|s| s.status).collect();
    assert_eq!(statuses[..5], [201, 200, 200, 200, 200], "{statuses:?}");
    assert!(
        (400..500).contains(&statuses[5]),
        "another user's profile is refused: {statuses:?}"
    );
    assert_eq!(statuses[6..], [404, 401], "{statuses:?}");

    // The lines reach stdout while the server runs (queued lines are written every
    // FLUSH_EVERY), not only when it stops.
    let mut out = tokio::io::BufReader::new(server.stdout.take().expect("stdout"));
    let mut stdout = String::new();
    let deadline = tokio::time::Instant::now() + platform::metrics::FLUSH_EVERY * 10;
    while emf_lines(&stdout).len() < client.sent.len() {
        let mut line = String::new();
        match tokio::time::timeout_at(deadline, out.read_line(&mut line)).await {
            Ok(Ok(read)) if read > 0 => stdout.push_str(&line),
            _ => panic!(
                "{} metric lines for {} requests while the server runs",
                emf_lines(&stdout).len(),
                client.sent.len()
            ),
        }
    }

    let pid = server.id().expect("the server is running");
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success(), "SIGTERM delivered");
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.expect("stdout");
    tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the server stops")
        .expect("exit status");
    stdout.push_str(&rest);

    let lines = emf_lines(&stdout);
    assert_eq!(
        lines.len(),
        client.sent.len(),
        "one metric line per request, none for anything else:\n{stdout}"
    );
    for (i, (line, sent)) in lines.iter().zip(&client.sent).enumerate() {
        assert_well_formed(line);
        assert_eq!(line["Function"], "local", "{line}");
        assert_eq!(line["Route"], sent.route, "{line}");
        assert_eq!(line["HttpStatus"], sent.status, "{line}");
        assert_eq!(number(line, "Requests"), 1.0, "{line}");
        let class = sent.status / 100;
        assert_eq!(number(line, "Status4xx"), f64::from(u8::from(class == 4)));
        assert_eq!(number(line, "Status5xx"), 0.0, "{line}");
        assert_eq!(number(line, "ColdStart"), f64::from(u8::from(i == 0)));
        assert_eq!(number(line, "RateLimited"), 0.0, "{line}");
        assert_eq!(number(line, "RateLimiterBypassed"), 0.0, "{line}");
        let latency = number(line, "Latency");
        let client_ms = sent.elapsed.as_secs_f64() * 1000.0;
        assert!(
            latency > 0.0 && latency <= client_ms,
            "the server's latency {latency} ms lies within the client's {client_ms} ms: {line}"
        );
        for part in ["DbQueryTime", "DbPoolWait", "RedisTime"] {
            if let Some(ms) = line[part].as_f64() {
                assert!(
                    (0.0..=latency).contains(&ms),
                    "{part} {ms} ms is part of the latency {latency} ms: {line}"
                );
            }
        }
        // Every route but the fallback counts against the rate limit in Redis.
        if sent.route != "unmatched" {
            assert!(number(line, "RedisCalls") >= 1.0, "{line}");
        }
    }
    let init = number(&lines[0], "InitDuration");
    assert!(
        init > 0.0 && init <= listened.as_secs_f64() * 1000.0,
        "the init ({init} ms) ended before the server was seen listening ({listened:?}): {}",
        lines[0]
    );
    assert!(
        lines[1..].iter().all(|l| l.get("InitDuration").is_none()),
        "only the first request reports the init"
    );
    // Register, login and refresh write to Postgres; each holds at least one connection.
    for line in &lines[..3] {
        assert!(number(line, "DbConnections") >= 1.0, "{line}");
        assert!(number(line, "DbQueryTime") > 0.0, "{line}");
    }
    // The two profile reads: the second is answered from the cache the first filled (or that
    // an earlier request filled).
    let (me1, me2) = (&lines[3], &lines[4]);
    assert_eq!(
        number(me1, "ProfileCacheHit") + number(me1, "ProfileCacheMiss"),
        1.0,
        "{me1}"
    );
    assert_eq!(number(me2, "ProfileCacheHit"), 1.0, "{me2}");
    assert_eq!(number(me2, "ProfileCacheMiss"), 0.0, "{me2}");
    assert!(
        me2.get("DbQueryTime").is_none(),
        "a cached profile needs no database: {me2}"
    );

    let text: String = lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for secret in [
        email.as_str(),
        STRONG_PASSWORD,
        "not-the-password-at-all",
        first_refresh.as_str(),
        login_access.as_str(),
        access.as_str(),
        user_id.as_str(),
        stranger.as_str(),
        "zqxv",
        "127.0.0.1",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} reached a metric line:\n{text}"
        );
    }
}

/// In-process: the router's metric lines on this thread.
async fn send_captured(router: &Router, app: &TestApp, req: http::Request<Body>) -> (u16, Value) {
    let capture = platform::metrics::Capture::start();
    let mut req = req;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(app.peer));
    let res = crate::support::send_to(router, req).await;
    let mut lines = capture.lines();
    assert_eq!(lines.len(), 1, "one line for the request: {lines:?}");
    let line: Value = serde_json::from_str(&lines.remove(0)).expect("EMF JSON");
    assert_well_formed(&line);
    (res.status.as_u16(), line)
}

#[tokio::test]
async fn a_panic_counts_as_a_5xx_and_a_refused_request_as_rate_limited() {
    let app = TestApp::spawn_with(Settings::default().set("RATE_LIMIT_MAX", "1")).await;
    let routes = Router::new().route(
        "/probe/{thing}/boom",
        get(|| async {
            if true {
                panic!("the handler broke");
            }
            ""
        }),
    );
    let router = http_kit::app(routes, &app.state);
    let (status, line) = send_captured(
        &router,
        &app,
        request(Method::GET, "/probe/secret-thing/boom")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, 500);
    assert_eq!(line["Route"], "/probe/{thing}/boom");
    assert_eq!(number(&line, "Status5xx"), 1.0);
    assert_eq!(number(&line, "Status4xx"), 0.0);
    assert_eq!(number(&line, "RateLimited"), 0.0);
    assert!(!line.to_string().contains("secret-thing"), "{line}");

    let (status, line) = send_captured(
        &router,
        &app,
        request(Method::GET, "/probe/x/boom")
            .body(Body::empty())
            .expect("req"),
    )
    .await;
    assert_eq!(status, 429, "the second request is over the limit of 1");
    assert_eq!(number(&line, "RateLimited"), 1.0);
    assert_eq!(number(&line, "Status4xx"), 1.0);
    assert_eq!(number(&line, "Status5xx"), 0.0);
    assert_eq!(number(&line, "RateLimiterBypassed"), 0.0);
}

#[tokio::test]
async fn a_request_let_through_without_redis_counts_as_a_limiter_bypass() {
    let app =
        TestApp::spawn_with(Settings::default().set("REDIS_URL", "redis://127.0.0.1:1")).await;
    let (status, line) = send_captured(
        &app.router,
        &app,
        request(
            Method::GET,
            &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
        )
        .body(Body::empty())
        .expect("req"),
    )
    .await;
    assert_eq!(status, 401, "let through to the route, which wants a token");
    assert_eq!(line["Route"], "/api/v1/users/{id}");
    assert_eq!(number(&line, "RateLimiterBypassed"), 1.0);
    assert_eq!(number(&line, "RateLimited"), 0.0);
    assert_eq!(number(&line, "Status4xx"), 1.0);
}

#[tokio::test]
async fn a_function_on_lambda_names_itself_in_its_metric_lines_and_reports_its_cold_start_once() {
    use crate::support::runtime_api::{Outcome, RuntimeApi, health_event};
    let db = TestDatabase::create().await;
    let api = RuntimeApi::start().await;
    let mut function = api
        .function("health", "backend-test-health", &db)
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the health binary");
    let event = health_event();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let id = api.invoke(event.clone());
        let Outcome::Response(answer) = api.outcome(&id, Duration::from_secs(30)).await else {
            panic!("the health invocation is answered");
        };
        statuses.push(answer["statusCode"].as_u64().expect("a status"));
    }
    let pid = function.id().expect("the function is running");
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    tokio::time::timeout(Duration::from_secs(10), function.wait())
        .await
        .expect("the function stops")
        .expect("exit status");
    let mut stdout = String::new();
    function
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .await
        .expect("stdout");

    let lines = emf_lines(&stdout);
    assert_eq!(lines.len(), 2, "one line per invocation:\n{stdout}");
    for (line, status) in lines.iter().zip(&statuses) {
        assert_well_formed(line);
        assert_eq!(line["Function"], "backend-test-health", "{line}");
        assert_eq!(line["Route"], "/health", "{line}");
        assert_eq!(line["HttpStatus"].as_u64(), Some(*status), "{line}");
    }
    assert_eq!(number(&lines[0], "ColdStart"), 1.0);
    assert!(number(&lines[0], "InitDuration") > 0.0, "{}", lines[0]);
    assert_eq!(number(&lines[1], "ColdStart"), 0.0);
    assert!(lines[1].get("InitDuration").is_none(), "{}", lines[1]);
}

#[tokio::test]
async fn with_emf_metrics_off_requests_are_served_and_write_no_metric_line() {
    let app = TestApp::spawn_with(Settings::default().set("EMF_METRICS", "false")).await;
    let routes = Router::new().route("/probe/{thing}", get(|| async { "ok" }));
    let router = http_kit::app(routes, &app.state);
    let capture = platform::metrics::Capture::start();
    let mut req = request(Method::GET, "/probe/x")
        .body(Body::empty())
        .expect("req");
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(app.peer));
    let res = crate::support::send_to(&router, req).await;
    assert_eq!(res.status, 200);
    assert!(
        res.headers.contains_key("x-request-id"),
        "the other layers still run"
    );
    assert_eq!(capture.lines(), Vec::<String>::new());
}
