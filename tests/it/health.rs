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
    let addr = crate::support::hung_listener().await;
    let url = format!("postgres://postgres@{addr}/none");
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
async fn the_served_openapi_document_is_the_generated_one() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/v1/openapi.json").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let doc = res.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let generated = serde_json::to_value(local::openapi()).expect("JSON");
    assert_eq!(
        doc, generated,
        "the served document is not the generated one"
    );
    for path in [
        "/health",
        "/api/docs",
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

#[tokio::test]
async fn the_api_reference_is_served_with_its_own_files_and_policy() {
    let app = TestApp::spawn().await;
    let page = app.get("/api/docs").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        page.header("content-type")
    );
    let html = page.text();
    // The page is functions/health/swagger-ui/index.html, built in by utoipa-swagger-ui's build
    // script, which does not see a change to that folder by itself: a target folder built
    // before it needs `cargo clean -p utoipa-swagger-ui`.
    assert!(
        html.contains(r#"<base href="/api/docs/">"#),
        "not our page (a stale build of utoipa-swagger-ui?): {html}"
    );
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    let policy = page.header("content-security-policy").expect("a policy");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");

    // Every file the page links to is served from here, and the page reads our document.
    for file in [
        "swagger-ui.css",
        "index.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(file), "the page does not link {file}");
        let res = app.get(&format!("/api/docs/{file}")).await;
        assert_eq!(res.status, 200, "{file}");
        assert!(!res.body.is_empty(), "{file}");
    }
    let init = app.get("/api/docs/swagger-initializer.js").await.text();
    assert!(init.contains("/api/v1/openapi.json"), "{init}");
    // The base layout, without the standalone preset, whose bundle is not built in.
    assert!(init.contains(r#""layout": "BaseLayout""#), "{init}");
    assert!(!init.contains("SwaggerUIStandalonePreset"), "{init}");

    // The bundles the page never loads are not built in (.cargo/config.toml).
    for file in [
        "swagger-ui.js",
        "swagger-ui-es-bundle.js",
        "swagger-ui-es-bundle-core.js",
        "swagger-ui-standalone-preset.js",
    ] {
        assert!(!html.contains(file), "the page links {file}");
        let res = app.get(&format!("/api/docs/{file}")).await;
        assert_eq!(res.status, 404, "{file}");
    }

    let missing = app.get("/api/docs/no-such-file.js").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("application/problem+json")
    );

    // The API itself keeps the policy that lets nothing load.
    let api = app.get("/ready").await;
    assert_eq!(
        api.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'")
    );
}

/// `INFO commandstats`' count of `PING`s this Redis has answered.
async fn pings(redis: &crate::support::throwaway::ThrowawayRedis) -> u64 {
    let client = redis::Client::open(redis.url()).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a count"))
}

/// A flood of `/health` costs one check per second, not one per request.
#[tokio::test]
async fn concurrent_health_probes_share_one_check_and_reuse_it_for_at_most_a_second() {
    let redis = crate::support::throwaway::ThrowawayRedis::start();
    let app = TestApp::spawn_with(Settings::default().set("REDIS_URL", &redis.url())).await;
    let before = pings(&redis).await;
    let answers = futures_util::future::join_all((0..50).map(|_| app.get("/health"))).await;
    assert!(answers.iter().all(|r| r.status == 200));
    assert_eq!(pings(&redis).await - before, 1, "50 probes, one check");

    tokio::time::sleep(health::REUSE_FOR).await;
    assert_eq!(app.get("/health").await.status, 200);
    assert_eq!(
        pings(&redis).await - before,
        2,
        "a result older than a second is checked again"
    );
}

/// Probes that queue behind a slow check (a hung database: the check waits out its whole
/// timeout, as long as a result may be reused) take its result instead of each running one of
/// their own in turn.
#[tokio::test]
async fn probes_queued_behind_a_slow_check_share_its_result() {
    let addr = crate::support::hung_listener().await;
    let app = TestApp::spawn_with(
        Settings::default().set("DATABASE_URL", &format!("postgres://postgres@{addr}/none")),
    )
    .await;
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..10).map(|_| app.get("/health"))).await;
    let took = started.elapsed();
    assert!(answers.iter().all(|r| r.status == 503));
    assert!(
        took < health::CHECK_TIMEOUT * 2,
        "10 probes of a hung database took {took:?}: one check, not ten in a row"
    );
}
