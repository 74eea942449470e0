//! Log lines are JSON with the contract's fields, and secrets never reach them.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use axum::{Router, body::Body, routing::post};
use http::{HeaderMap, Method, header};
use http_kit::ApiError;
use serde_json::Value;

use crate::support::{TestApp, request, send_to};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn lines(&self) -> Vec<Value> {
        let text =
            String::from_utf8(self.0.lock().expect("capture lock").clone()).expect("utf-8 logs");
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("capture lock").clone()).expect("utf-8 logs")
    }
}

/// Logs what a careless handler would: a secret field, a JSON body, the request's headers, and
/// an error whose cause chain quotes a header.
async fn leaky_handler(headers: HeaderMap) -> ApiError {
    tracing::info!(
        password = "hunter2-pass-secret",
        body = r#"{"user":{"email":"ana@example.com","refresh_token":"tok-nested-secret"},"client_secret":{"value":"object-nested-secret"}}"#,
        "login attempt"
    );
    // The client's Authorization and Cookie headers, as `{"authorization": "Bearer ...", ...}`.
    tracing::info!(headers = ?headers, "request headers");
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // Logged as `{outer}: {root cause}`; a header's value in free text is redacted up to the end
    // of its clause (a comma here, the end of the line for the root cause).
    ApiError::Unexpected(
        anyhow::anyhow!(
            "upstream refused the call: header authorization: Bearer eyJhbGciOiJIUzI1NiJ9.header-secret.sig"
        )
        .context(format!(
            "looking up the session of cookie: {cookie}, from the store"
        )),
    )
}

#[tokio::test]
async fn secrets_are_redacted_in_fields_nested_json_and_error_messages() {
    let app = TestApp::spawn().await;
    let capture = Capture::default();
    let sink = capture.clone();
    let _guard =
        tracing::subscriber::set_default(platform::telemetry::subscriber("info", move || {
            sink.clone()
        }));

    let routes = Router::new().route("/probe/leak", post(leaky_handler));
    let router = http_kit::app(routes, &app.state);
    let req = request(Method::POST, "/probe/leak")
        .header(header::AUTHORIZATION, "Bearer header-token-secret")
        .header(header::COOKIE, "theme=dark; refresh_token=cookie-secret")
        .body(Body::empty())
        .expect("req");
    let res = send_to(&router, req).await;
    assert_eq!(res.status, 500);

    let text = capture.text();
    // Each secret is in a line that is written (checked below): the `password` field, the JSON
    // body (a sensitive key holding a string, and one holding an object), the headers field
    // (Authorization and Cookie) and the error's cause chain (a Bearer token, a cookie).
    let leaked: Vec<&str> = [
        "hunter2-pass-secret",
        "tok-nested-secret",
        "object-nested-secret",
        "header-secret",
        "header-token-secret",
        "cookie-secret",
    ]
    .into_iter()
    .filter(|secret| text.contains(secret))
    .collect();
    assert!(
        leaked.is_empty(),
        "{leaked:?} leaked into the logs:\n{text}"
    );
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(
        text.contains("ana@example.com"),
        "non-secret data stays readable:\n{text}"
    );

    let lines = capture.lines();
    let request_id = res.header("x-request-id").expect("request id");
    let attempt = lines
        .iter()
        .find(|l| l["message"] == "login attempt")
        .expect("the handler's line");
    for field in [
        "timestamp",
        "level",
        "message",
        "target",
        "request_id",
        "cold_start",
    ] {
        assert!(
            attempt.get(field).is_some(),
            "{field} missing from {attempt}"
        );
    }
    assert_eq!(attempt["request_id"], request_id);
    assert_eq!(attempt["password"], "[REDACTED]");
    let body = attempt["body"].as_str().expect("the body field");
    assert!(
        body.contains("refresh_token") && body.contains("ana@example.com"),
        "{attempt}"
    );
    let headers = lines
        .iter()
        .find(|l| l["message"] == "request headers")
        .expect("the headers line");
    let logged = headers["headers"].as_str().expect("the headers field");
    assert!(
        logged.contains("authorization") && logged.contains("cookie"),
        "both headers are in the line: {headers}"
    );
    let failure = lines
        .iter()
        .find(|l| l["message"] == "request failed")
        .expect("the error line");
    assert_eq!(failure["level"], "ERROR");
    let error = failure["error"].as_str().expect("the error field");
    assert!(
        error.contains("looking up the session") && error.contains("upstream refused the call"),
        "the whole cause chain is logged: {failure}"
    );
    assert_eq!(
        failure["request_id"], request_id,
        "the cause is logged under the body's request id"
    );
    let access = lines
        .iter()
        .find(|l| l["message"] == "request completed")
        .expect("the access log line");
    assert_eq!(access["status"], 500);
    assert_eq!(access["path"], "/probe/leak");
}

#[tokio::test]
async fn log_level_filters_lines() {
    let capture = Capture::default();
    let sink = capture.clone();
    let _guard =
        tracing::subscriber::set_default(platform::telemetry::subscriber("warn", move || {
            sink.clone()
        }));
    tracing::info!("quiet");
    tracing::warn!("loud");
    let messages: Vec<Value> = capture
        .lines()
        .into_iter()
        .map(|l| l["message"].clone())
        .collect();
    assert_eq!(messages, vec![Value::from("loud")]);
}

/// Every security-relevant event is one `info` line (a reuse, `warn`) naming the user, the
/// client's address and both request ids, and never a password or token.
#[tokio::test]
async fn each_security_event_is_one_audit_line_with_user_ip_and_both_request_ids() {
    use serde_json::json;
    let app = TestApp::spawn().await.with_bucket().await;
    let capture = Capture::default();
    let sink = capture.clone();
    let _guard =
        tracing::subscriber::set_default(platform::telemetry::subscriber("info", move || {
            sink.clone()
        }));

    let user = app.register("audited@example.com").await;
    assert_eq!(
        app.login(&user.email, "not-the-password-1").await.status,
        401
    );
    assert_eq!(
        app.login("nobody@example.com", "not-the-password-2")
            .await
            .status,
        401
    );
    let refresh = |token: String| {
        let app = &app;
        async move {
            app.post_json("/api/v1/auth/refresh", &json!({ "refresh_token": token }))
                .await
        }
    };
    let first = user.refresh_token.clone();
    assert_eq!(refresh(first.clone()).await.status, 200);
    assert_eq!(refresh(first).await.status, 401, "a reuse");
    let login = app.login(&user.email, &user.password).await.json();
    let req = request(Method::POST, "/api/v1/auth/logout")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", login["access_token"].as_str().expect("access")),
        )
        .header("x-request-id", "client-chosen-id")
        .body(Body::empty())
        .expect("req");
    assert_eq!(app.send(req).await.status, 204);
    let again = app.login(&user.email, &user.password).await.json();
    let access = again["access_token"].as_str().expect("access").to_owned();
    let changed = app
        .json(
            Method::PUT,
            "/api/v1/users/me/password",
            &json!({"current_password": user.password, "new_password": "a-different-long-phrase-93"}),
            Some(&access),
        )
        .await;
    assert_eq!(changed.status, 204);
    let conn = app.db.connect().await;
    conn.execute(
        "UPDATE users SET role = 'admin' WHERE email = $1",
        &[&user.email],
    )
    .await
    .expect("promote");
    domain::accounts::invalidate_profile(&app.state, user.id.parse().expect("uuid")).await;
    let admin = app
        .login(&user.email, "a-different-long-phrase-93")
        .await
        .json();
    let admin = admin["access_token"].as_str().expect("access").to_owned();
    assert_eq!(
        app.get_with_token("/api/v1/users?email=aud", &admin)
            .await
            .status,
        200
    );
    let all = app
        .json(
            Method::POST,
            "/api/v1/auth/logout-all",
            &json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(all.status, 204);
    let last = app
        .login(&user.email, "a-different-long-phrase-93")
        .await
        .json();
    let last = last["access_token"].as_str().expect("access").to_owned();
    let deleted = app
        .json(
            Method::DELETE,
            "/api/v1/users/me",
            &json!({"current_password": "a-different-long-phrase-93"}),
            Some(&last),
        )
        .await;
    assert_eq!(deleted.status, 204);

    let lines = capture.lines();
    let audit: Vec<&Value> = lines.iter().filter(|l| l.get("audit").is_some()).collect();
    let events: Vec<&str> = audit.iter().filter_map(|l| l["audit"].as_str()).collect();
    for expected in [
        "login_failed",
        "login_succeeded",
        "refresh_token_reused",
        "logout",
        "password_changed",
        "users_listed",
        "logout_all",
        "account_deleted",
    ] {
        assert!(events.contains(&expected), "no {expected} line: {events:?}");
    }
    assert_eq!(
        events.iter().filter(|e| **e == "login_failed").count(),
        2,
        "{events:?}"
    );
    for line in &audit {
        let event = line["audit"].as_str().unwrap_or_default();
        let level = if event == "refresh_token_reused" {
            "WARN"
        } else {
            "INFO"
        };
        assert_eq!(line["level"], level, "{line}");
        assert!(
            line["user_id"].as_str().is_some_and(|u| !u.is_empty()),
            "{line}"
        );
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
        assert!(
            line["platform_request_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "{line}"
        );
        assert!(
            line["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{line}"
        );
    }
    let logout = audit
        .iter()
        .find(|l| l["audit"] == "logout")
        .expect("logout");
    assert_eq!(logout["request_id"], "client-chosen-id");
    assert_ne!(
        logout["platform_request_id"], "client-chosen-id",
        "the client's id never replaces the platform's"
    );
    assert_eq!(
        audit
            .iter()
            .find(|l| l["audit"] == "login_succeeded")
            .expect("ok")["user_id"],
        user.id.as_str()
    );
    let text = capture.text();
    for secret in [
        user.password.as_str(),
        "a-different-long-phrase-93",
        "not-the-password-1",
        user.refresh_token.as_str(),
        access.as_str(),
        "nobody@example.com",
    ] {
        assert!(!text.contains(secret), "{secret} reached the logs");
    }
}
