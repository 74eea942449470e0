use std::time::{Duration, Instant};

use crate::support::{Settings, TestApp};

#[tokio::test]
async fn health_is_ok_when_postgres_and_redis_answer() {
    let app = TestApp::spawn().await;
    let res = app.get("/health").await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
    assert!(body["uptime"].as_f64().is_some_and(|u| u >= 0.0), "{body}");
    let ts = body["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(ts).expect("timestamp is RFC 3339");
    assert!(ts.ends_with('Z'), "timestamp is UTC: {ts}");
}

#[tokio::test]
async fn health_answers_503_quickly_when_postgres_is_unreachable() {
    let app = TestApp::spawn_with(
        Settings::default().set("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
    )
    .await;
    let started = Instant::now();
    let res = app.get("/health").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(res.status, 503);
    let body = res.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"], "error");
    assert_eq!(body["checks"]["redis"], "ok");
}

#[tokio::test]
async fn health_answers_503_quickly_when_redis_is_unreachable() {
    let app =
        TestApp::spawn_with(Settings::default().set("REDIS_URL", "redis://127.0.0.1:1")).await;
    let started = Instant::now();
    let res = app.get("/health").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(res.status, 503);
    let body = res.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["redis"], "error");
}

#[tokio::test]
async fn health_answers_503_within_its_timeout_when_postgres_hangs() {
    // A listener that accepts connections and never speaks: a hung database.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/none");
    let app = TestApp::spawn_with(Settings::default().set("DATABASE_URL", &url)).await;
    let started = Instant::now();
    let res = app.get("/health").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(res.status, 503);
    assert_eq!(res.json()["checks"]["database"], "error");
}

#[tokio::test]
async fn ready_answers_ready() {
    let app = TestApp::spawn().await;
    let res = app.get("/ready").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), serde_json::json!({"status": "ready"}));
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status, 200);
    let doc = res.json();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for path in [
        "/health",
        "/ready",
        "/api/v1/auth/login",
        "/api/v1/users/me",
        "/api/v1/uploads/{id}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "openapi.json lacks {path}"
        );
    }
}
