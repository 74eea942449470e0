//! The per-IP rate limit: exact under concurrency, per client, and out of the way when Redis is
//! down.

use axum::body::Body;
use futures_util::future::join_all;
use http::Method;

use crate::support::{Settings, TestApp, TestResponse, request, send_to};

fn get(path: &str) -> http::Request<Body> {
    request(Method::GET, path).body(Body::empty()).expect("req")
}

#[tokio::test]
async fn of_150_concurrent_requests_from_one_ip_exactly_100_pass() {
    let app = TestApp::spawn().await;
    // A second "process" sharing the same Redis prefix: the count is shared across instances.
    let other_router = app.another_instance(|_| {}).await;

    let requests =
        (0..150).map(|i| {
            let router = if i % 2 == 0 {
                app.router.clone()
            } else {
                other_router.clone()
            };
            async move {
                let mut req = get("/api/v1/openapi.json");
                req.extensions_mut().insert(axum::extract::ConnectInfo(
                    std::net::SocketAddr::from(([192, 0, 2, 1], 5000)),
                ));
                send_to(&router, req).await
            }
        });
    let responses: Vec<TestResponse> = join_all(requests).await;
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&TestResponse> = responses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(ok, 100);
    assert_eq!(limited.len(), 50);
    for res in &limited {
        assert!(
            res.header("retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|s| (1..=900).contains(&s))
        );
        assert_eq!(
            res.header("ratelimit-policy"),
            Some("\"default\";q=100;w=900")
        );
        assert!(
            res.header("ratelimit")
                .is_some_and(|v| v.starts_with("\"default\";r=0;t=")),
            "{:?}",
            res.header("ratelimit")
        );
        assert_eq!(res.problem().code, "rate_limited");
    }
    let remaining: Vec<u64> = responses
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.header("ratelimit"))
        .filter_map(|v| v.split(";r=").nth(1)?.split(';').next()?.parse().ok())
        .collect();
    assert_eq!(
        remaining.len(),
        100,
        "every passed response carries RateLimit"
    );
    let mut sorted = remaining.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..100).collect::<Vec<u64>>(),
        "each request saw its own count"
    );
}

#[tokio::test]
async fn two_ips_are_counted_apart() {
    let app = TestApp::spawn_with(Settings::default().set("RATE_LIMIT_MAX", "2")).await;
    for _ in 0..2 {
        assert_eq!(
            app.send_from("192.0.2.10", get("/api/v1/openapi.json"))
                .await
                .status,
            200
        );
    }
    assert_eq!(
        app.send_from("192.0.2.10", get("/api/v1/openapi.json"))
            .await
            .status,
        429
    );
    let res = app
        .send_from("192.0.2.11", get("/api/v1/openapi.json"))
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        res.header("ratelimit-policy"),
        Some("\"default\";q=2;w=900")
    );
    assert!(
        res.header("ratelimit")
            .is_some_and(|v| v.starts_with("\"default\";r=1;t="))
    );
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_64() {
    let app = TestApp::spawn_with(Settings::default().set("RATE_LIMIT_MAX", "1")).await;
    assert_eq!(
        app.send_from("2001:db8:1:2::1", get("/api/v1/openapi.json"))
            .await
            .status,
        200
    );
    assert_eq!(
        app.send_from("2001:db8:1:2::ffff", get("/api/v1/openapi.json"))
            .await
            .status,
        429
    );
    assert_eq!(
        app.send_from("2001:db8:1:3::1", get("/api/v1/openapi.json"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn forwarded_for_counts_only_when_trusted() {
    let untrusting = TestApp::spawn_with(Settings::default().set("RATE_LIMIT_MAX", "1")).await;
    let spoofed = |ip: &str| {
        request(Method::GET, "/api/v1/openapi.json")
            .header("x-forwarded-for", ip)
            .body(Body::empty())
            .expect("req")
    };
    assert_eq!(untrusting.send(spoofed("198.51.100.1")).await.status, 200);
    assert_eq!(
        untrusting.send(spoofed("198.51.100.2")).await.status,
        429,
        "a spoofed header does not buy a new budget"
    );

    let trusting = TestApp::spawn_with(
        Settings::default()
            .set("RATE_LIMIT_MAX", "1")
            .set("TRUST_FORWARDED_FOR", "true"),
    )
    .await;
    assert_eq!(trusting.send(spoofed("198.51.100.1")).await.status, 200);
    assert_eq!(trusting.send(spoofed("198.51.100.2")).await.status, 200);
    assert_eq!(trusting.send(spoofed("198.51.100.1")).await.status, 429);
}

#[tokio::test]
async fn health_and_ready_are_never_limited() {
    let app = TestApp::spawn_with(Settings::default().set("RATE_LIMIT_MAX", "1")).await;
    for _ in 0..5 {
        let res = app.get("/health").await;
        assert_eq!(res.status, 200);
        assert!(res.header("ratelimit").is_none());
        assert_eq!(app.get("/ready").await.status, 200);
    }
}

#[tokio::test]
async fn requests_pass_when_redis_is_down() {
    let app = TestApp::spawn_with(
        Settings::default()
            .set("RATE_LIMIT_MAX", "1")
            .set("REDIS_URL", "redis://127.0.0.1:1"),
    )
    .await;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let res = app.get("/api/v1/openapi.json").await;
        assert_eq!(res.status, 200);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
