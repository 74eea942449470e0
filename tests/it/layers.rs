//! "Behaviour on every response": headers, CORS, request ids, problem+json, limits, panics.

use axum::{Router, body::Body, routing::post};
use http::{Method, header};
use http_kit::{ApiError, Json};
use serde_json::{Value, json};

use crate::support::{TestApp, TestResponse, request, send_to};

const SECURITY_HEADERS: [(&str, &str); 13] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("cache-control", "no-store"),
];

fn assert_every_header(res: &TestResponse) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            res.header(name),
            Some(value),
            "{name} on a {} response",
            res.status
        );
    }
    assert!(
        res.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "x-request-id on {}",
        res.status
    );
    assert!(res.header("x-powered-by").is_none());
    assert!(res.header("server").is_none());
}

#[derive(serde::Deserialize)]
struct Echo {
    name: String,
}

/// A router with the routes these tests need, wrapped exactly like the product's.
async fn probe_app(app: &TestApp) -> Router {
    let routes = Router::new()
        .route(
            "/probe/echo",
            post(|Json(e): Json<Echo>| async move { axum::Json(json!({"name": e.name})) }),
        )
        .route(
            "/probe/panic",
            post(|| async {
                if std::hint::black_box(true) {
                    panic!("the handler broke");
                }
                ApiError::NotFound
            }),
        );
    http_kit::app(
        routes.merge(local::routes(&app.state).await.expect("routes")),
        &app.state,
    )
}

async fn post_raw(
    router: &Router,
    path: &str,
    content_type: &str,
    body: impl Into<Body>,
) -> TestResponse {
    let req = request(Method::POST, path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .expect("req");
    send_to(router, req).await
}

#[tokio::test]
async fn a_200_carries_every_header() {
    let app = TestApp::spawn().await;
    let res = app.get("/health").await;
    assert_eq!(res.status, 200);
    assert_every_header(&res);
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem_with_every_header() {
    let app = TestApp::spawn().await;
    let res = app.get("/no/such/route").await;
    assert_eq!(res.status, 404);
    assert_every_header(&res);
    let problem = res.problem();
    assert_eq!(problem.code, "not_found");
    assert_eq!(problem.request_id.as_deref(), res.header("x-request-id"));
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let app = TestApp::spawn().await;
    let res = app
        .send(
            request(Method::DELETE, "/health")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(res.status, 405);
    assert_every_header(&res);
    assert_eq!(res.problem().code, "method_not_allowed");
    assert!(res.header("allow").is_some_and(|a| a.contains("GET")));
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_a_413_problem_with_every_header() {
    let app = TestApp::spawn().await;
    let router = probe_app(&app).await;
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(1024 * 1024 + 1));
    let res = post_raw(&router, "/probe/echo", "application/json", big).await;
    assert_eq!(res.status, 413);
    assert_every_header(&res);
    assert_eq!(res.problem().code, "payload_too_large");
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_accepted() {
    let app = TestApp::spawn().await;
    let router = probe_app(&app).await;
    let name = "x".repeat(1024 * 1024 - 20);
    let res = post_raw(
        &router,
        "/probe/echo",
        "application/json",
        json!({"name": name}).to_string(),
    )
    .await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn a_cors_preflight_from_an_allowed_origin_is_answered_with_every_header() {
    let app = TestApp::spawn().await;
    let req = request(Method::OPTIONS, "/api/v1/auth/login")
        .header(header::ORIGIN, "http://localhost:5173")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "content-type,authorization",
        )
        .body(Body::empty())
        .expect("req");
    let res = app.send(req).await;
    assert!(res.status.is_success(), "{}", res.status);
    assert_every_header(&res);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    assert!(
        res.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    let allowed = res
        .header("access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
}

/// Only a preflight (it names `Access-Control-Request-Method`) gets the CORS answer; any other
/// OPTIONS is answered as any method a route does not serve.
#[tokio::test]
async fn an_options_request_that_is_no_preflight_is_a_404_or_405() {
    let app = TestApp::spawn().await;
    for origin in [None, Some("http://localhost:5173")] {
        let options = |path: &str| {
            let mut req = request(Method::OPTIONS, path);
            if let Some(origin) = origin {
                req = req.header(header::ORIGIN, origin);
            }
            req.body(Body::empty()).expect("req")
        };
        let res = app.send(options("/no-such-route")).await;
        assert_eq!(res.status, 404, "{origin:?}");
        assert_eq!(res.problem().code, "not_found");
        assert_every_header(&res);
        let res = app.send(options("/api/v1/users/me")).await;
        assert_eq!(res.status, 405, "{origin:?}");
        let allow = res.header("allow").unwrap_or_default().to_owned();
        assert!(allow.contains("GET") && allow.contains("PATCH"), "{allow}");
        assert_every_header(&res);
    }
    // A preflight to a path without a route is still a preflight: browsers send it first.
    let preflight = request(Method::OPTIONS, "/no-such-route")
        .header(header::ORIGIN, "http://localhost:5173")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())
        .expect("req");
    let res = app.send(preflight).await;
    assert!(res.status.is_success(), "{}", res.status);
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
}

#[tokio::test]
async fn an_allowed_origin_is_echoed_with_credentials_and_vary() {
    let app = TestApp::spawn().await;
    let req = request(Method::GET, "/health")
        .header(header::ORIGIN, "https://app.example.com")
        .body(Body::empty())
        .expect("req");
    let res = app.send(req).await;
    assert_eq!(
        res.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));
    let vary: Vec<String> = res
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_lowercase)
        .collect();
    assert!(vary.iter().any(|v| v.contains("origin")), "{vary:?}");
}

#[tokio::test]
async fn a_refused_origin_gets_no_allow_origin() {
    let app = TestApp::spawn().await;
    let req = request(Method::GET, "/health")
        .header(header::ORIGIN, "https://evil.example.net")
        .body(Body::empty())
        .expect("req");
    let res = app.send(req).await;
    assert_eq!(res.status, 200);
    assert!(res.header("access-control-allow-origin").is_none());
    let preflight = request(Method::OPTIONS, "/api/v1/auth/login")
        .header(header::ORIGIN, "https://evil.example.net")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .expect("req");
    let res = app.send(preflight).await;
    assert!(res.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced() {
    let app = TestApp::spawn().await;
    let req = request(Method::GET, "/health")
        .header("x-request-id", "client-abc.123:x_y")
        .body(Body::empty())
        .expect("req");
    assert_eq!(
        app.send(req).await.header("x-request-id"),
        Some("client-abc.123:x_y")
    );

    let req = request(Method::GET, "/nope")
        .header("x-request-id", "bad id with spaces")
        .body(Body::empty())
        .expect("req");
    let res = app.send(req).await;
    let id = res.header("x-request-id").expect("generated").to_owned();
    assert_ne!(id, "bad id with spaces");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(res.problem().request_id.as_deref(), Some(id.as_str()));

    let long = "a".repeat(200);
    let req = request(Method::GET, "/health")
        .header("x-request-id", long.as_str())
        .body(Body::empty())
        .expect("req");
    assert_ne!(
        app.send(req).await.header("x-request-id"),
        Some(long.as_str())
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = TestApp::spawn().await;
    let router = probe_app(&app).await;
    let res = post_raw(&router, "/probe/echo", "application/json", r#"{"name": "#).await;
    assert_eq!(res.status, 400);
    assert_every_header(&res);
    assert_eq!(res.problem().code, "malformed_json");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let router = probe_app(&app).await;
    let res = post_raw(
        &router,
        "/probe/echo",
        "application/json",
        r#"{"name": 42}"#,
    )
    .await;
    assert_eq!(res.status, 422);
    let problem = res.problem();
    assert_eq!(problem.code, "validation_failed");
    assert_eq!(problem.errors.expect("errors")[0].field, "name");

    let res = post_raw(&router, "/probe/echo", "application/json", "{}").await;
    assert_eq!(res.status, 422);
    assert_eq!(res.problem().errors.expect("errors")[0].field, "name");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = TestApp::spawn().await;
    let router = probe_app(&app).await;
    let res = post_raw(&router, "/probe/echo", "text/plain", "name=x").await;
    assert_eq!(res.status, 415);
    assert_eq!(res.problem().code, "unsupported_media_type");
}

#[tokio::test]
async fn a_panicking_route_answers_500_and_the_next_request_succeeds() {
    let app = TestApp::spawn().await;
    let router = probe_app(&app).await;
    let res = post_raw(&router, "/probe/panic", "application/json", "{}").await;
    assert_eq!(res.status, 500);
    assert_every_header(&res);
    let body: Value = res.json();
    assert_eq!(body["code"], "internal_error");
    assert!(
        !res.body.windows(10).any(|w| w == b"the handle"),
        "no panic detail in the body"
    );
    assert_eq!(body["request_id"].as_str(), res.header("x-request-id"));

    let next = post_raw(
        &router,
        "/probe/echo",
        "application/json",
        r#"{"name":"ok"}"#,
    )
    .await;
    assert_eq!(next.status, 200);
    assert_eq!(next.json()["name"], "ok");
}

/// The fields a 422 names, in the order given.
fn named_fields(res: &TestResponse) -> Vec<String> {
    let problem = res.problem();
    assert_eq!(problem.code, "validation_failed");
    problem
        .errors
        .expect("errors")
        .into_iter()
        .map(|e| e.field)
        .collect()
}

/// A request without a body, whatever its content type, reads as `{}`: a 422 naming every
/// required field, never a 415 or a 400 about a body the client never sent. A body of the wrong
/// shape names every field it gets wrong, not only the first.
#[tokio::test]
async fn a_missing_or_wrong_body_is_a_422_naming_every_field_at_once() {
    let app = TestApp::spawn().await;
    let ana = app.register("all-fields@example.com").await;
    for content_type in [None, Some("application/json"), Some("text/plain")] {
        let mut req = request(Method::POST, "/api/v1/auth/register");
        if let Some(content_type) = content_type {
            req = req.header(header::CONTENT_TYPE, content_type);
        }
        let res = app.send(req.body(Body::empty()).expect("request")).await;
        assert_eq!(res.status, 422, "{content_type:?}: {}", res.text());
        assert_eq!(
            named_fields(&res),
            ["email", "password", "name"],
            "{content_type:?}"
        );
    }
    let res = app
        .send(
            request(Method::DELETE, "/api/v1/users/me")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", ana.access_token),
                )
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text());
    assert_eq!(named_fields(&res), ["current_password"]);

    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": 5, "password": ["x"], "name": "Ana"}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text());
    let mut fields = named_fields(&res);
    fields.sort();
    assert_eq!(fields, ["email", "password"]);
    // A struct's fields in order, as an array, are no object: nothing is created from them.
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!(["positional@example.com", "violet-canyon-drifts-47", "Pos"]),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text());
    assert_eq!(named_fields(&res), ["body"]);
    assert_eq!(
        app.login("positional@example.com", "violet-canyon-drifts-47")
            .await
            .status,
        401
    );
    // Still the account it was: nothing was deleted or created.
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &ana.access_token)
            .await
            .status,
        200
    );
}
