//! Stored API Gateway HTTP API (payload 2.0) events through `lambda_http` and the real routers:
//! what runs on Lambda is the same router that the other tests call.

use tower::ServiceExt;

use crate::support::{TestApp, TestResponse};

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs an event through a function's router wrapped as on Lambda.
pub async fn invoke(app: &TestApp, routes: axum::Router, event: &str) -> TestResponse {
    let req =
        lambda_http::request::from_str(&fixture(event)).expect("a valid API Gateway v2 event");
    let res = shared::http::app(routes, &app.state)
        .oneshot(req)
        .await
        .expect("infallible");
    TestResponse::read(res).await
}

#[tokio::test]
async fn the_health_event_runs_through_the_health_router() {
    let app = TestApp::spawn().await;
    let res = invoke(&app, health::router(app.state.clone()), "health.json").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["status"], "ok");
    assert!(res.header("x-request-id").is_some());
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}
