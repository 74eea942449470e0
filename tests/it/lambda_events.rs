//! Stored API Gateway HTTP API (payload 2.0) events through `lambda_http` and the real routers:
//! what runs on Lambda is the same router that the other tests call.

use base64::Engine;
use tower::ServiceExt;

use crate::support::{
    TestApp, TestDatabase, TestResponse,
    runtime_api::{Outcome, RuntimeApi, health_event},
};

fn fixture(name: &str) -> String {
    let path = crate::support::repo_root()
        .join("tests/fixtures/events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs an event through a function's router wrapped as on Lambda.
pub async fn invoke(app: &TestApp, routes: axum::Router, event: &str) -> TestResponse {
    let req =
        lambda_http::request::from_str(&fixture(event)).expect("a valid API Gateway v2 event");
    let res = http_kit::app(routes, &app.state)
        .oneshot(req)
        .await
        .expect("infallible");
    TestResponse::read(res).await
}

#[tokio::test]
async fn the_health_event_runs_through_the_health_router() {
    let app = TestApp::spawn().await;
    let res = invoke(
        &app,
        health::routes(app.state.clone()).await.expect("routes"),
        "health.json",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["status"], "ok");
    assert!(res.header("x-request-id").is_some());
    assert_eq!(
        res.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
}

#[tokio::test]
async fn the_login_event_runs_through_the_auth_router() {
    let app = TestApp::spawn().await;
    let conn = app.db.connect().await;
    let hash = domain::accounts::password::hash(&app.state.hashing, "ana-dev-password-2024!")
        .await
        .expect("hash");
    conn.execute(
        "INSERT INTO users (id, email, name, password_hash) VALUES ($1, 'ana@example.com', 'Ana', $2)",
        &[&uuid::Uuid::now_v7(), &hash],
    )
    .await
    .expect("user");
    let res = invoke(
        &app,
        auth::routes(app.state.clone()).await.expect("routes"),
        "auth_login.json",
    )
    .await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["user"]["email"], "ana@example.com");
    // On Lambda the client IP is API Gateway's sourceIp: the limiter counted it.
    let mut redis = app.redis().await;
    let counted: Option<u64> = redis::cmd("GET")
        .arg(app.state.cache.key("rl:203.0.113.10"))
        .query_async(&mut redis)
        .await
        .expect("redis");
    assert_eq!(counted, Some(1));
}

#[tokio::test]
async fn the_users_me_event_runs_through_the_users_router() {
    let app = TestApp::spawn().await;
    let session = app.register("event@example.com").await;
    let event = fixture("users_me.json").replace("ACCESS_TOKEN", &session.access_token);
    let req = lambda_http::request::from_str(&event).expect("a valid API Gateway v2 event");
    let res = http_kit::app(
        users::routes(app.state.clone()).await.expect("routes"),
        &app.state,
    )
    .oneshot(req)
    .await
    .expect("infallible");
    let res = TestResponse::read(res).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["email"], "event@example.com");
}

/// Each function's router on Lambda comes from the same declarations as its part of the
/// document, without building the operations (`http_kit::declared`): every documented operation
/// reaches a handler with its method, and any other method on a documented path is a 405.
#[tokio::test]
async fn each_function_s_router_serves_exactly_the_methods_its_document_declares() {
    let app = TestApp::spawn().await;
    let state = || app.state.clone();
    let groups = [
        (
            "health",
            health::openapi_part(),
            health::routes(state()).await,
        ),
        ("auth", auth::openapi_part(), auth::routes(state()).await),
        ("users", users::openapi_part(), users::routes(state()).await),
        (
            "uploads",
            uploads::openapi_part(),
            uploads::routes(state()).await,
        ),
    ];
    let mut operations = 0;
    for (group, document, router) in groups {
        let router = router.expect("the group's routes");
        let declared = http_kit::openapi::routes(&document);
        for path in document.paths.paths.keys() {
            let concrete = path
                .replace("{file}", "swagger-ui.css")
                .replace("{id}", "0190b6a4-5a2c-7c3e-8f00-000000000001");
            for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
                let req = crate::support::request(
                    http::Method::from_bytes(method.as_bytes()).expect("a method"),
                    &concrete,
                )
                .body(axum::body::Body::empty())
                .expect("a request");
                let res = crate::support::send_to(&router, req).await;
                if declared.contains(&(method.to_owned(), path.clone())) {
                    operations += 1;
                    // The router's own 404 (no route) has no body; a handler's is problem+json.
                    let unrouted = res.status == 405 || (res.status == 404 && res.body.is_empty());
                    assert!(
                        !unrouted,
                        "{group}: {method} {path} is declared but answers {}",
                        res.status
                    );
                } else {
                    assert_eq!(
                        res.status, 405,
                        "{group}: {method} {path} is not declared but is routed"
                    );
                }
            }
        }
    }
    assert_eq!(operations, 21, "the four groups' operations");
}

/// The health binary as Lambda runs it, answers as the Runtime API receives them: JSON goes as
/// text, the reference's PNG icon as the base64 of its exact bytes.
#[tokio::test]
async fn the_health_binary_sends_json_as_text_and_an_icon_as_base64() {
    let db = TestDatabase::create().await;
    let api = RuntimeApi::start().await;
    let mut function = api
        .function("health", "health", &db)
        .env("LOG_LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting the health binary");
    let mut icon = health_event();
    icon["rawPath"] = "/api/docs/favicon-32x32.png".into();
    icon["requestContext"]["http"]["path"] = "/api/docs/favicon-32x32.png".into();
    let answers = [api.invoke(health_event()), api.invoke(icon)];
    let mut sent = Vec::new();
    for id in answers {
        let Outcome::Response(answer) = api.outcome(&id, std::time::Duration::from_secs(30)).await
        else {
            panic!("the invocation is answered");
        };
        sent.push(answer);
    }
    function.kill().await.expect("stopping the function");

    let health = &sent[0];
    assert_eq!(health["statusCode"], 200, "{health}");
    assert_eq!(health["isBase64Encoded"], false, "{health}");
    let body: serde_json::Value =
        serde_json::from_str(health["body"].as_str().expect("a text body")).expect("JSON");
    assert_eq!(body["status"], "ok");

    let icon = &sent[1];
    assert_eq!(icon["statusCode"], 200, "{icon}");
    assert_eq!(icon["headers"]["content-type"], "image/png");
    assert_eq!(icon["isBase64Encoded"], true);
    let png = base64::engine::general_purpose::STANDARD
        .decode(icon["body"].as_str().expect("a base64 body"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(png.len() > 100, "{} bytes", png.len());
}
