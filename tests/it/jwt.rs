//! Every classic JWT attack is a 401.

use axum::body::Body;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use domain::sessions::tokens::key_id;
use http::{Method, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{Settings, TestApp, request};

const SECRET: &str = "test-secret-that-is-long-enough-0123456789";
const OLD_SECRET: &str = "an-older-secret-still-valid-for-rotation-42";

async fn status_with(app: &TestApp, token: &str) -> u16 {
    let res = app.logout(token).await;
    if res.status == 401 {
        assert_eq!(res.problem().code, "unauthorized");
    }
    res.status.as_u16()
}

fn claims(app: &TestApp, user_id: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": app.state.config.jwt_issuer,
        "aud": app.state.config.jwt_audience,
        "sub": user_id,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": uuid::Uuid::now_v7(),
        "gen": 0,
        "token_use": "access",
    })
}

fn sign(claims: &Value, secret: &str, kid: Option<String>) -> String {
    domain::sessions::install_jwt_crypto();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid;
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn kid(secret: &str) -> Option<String> {
    Some(key_id(&SecretString::from(secret.to_owned())))
}

/// A token with an arbitrary header and no valid signature.
fn forged(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[tokio::test]
async fn a_well_formed_token_is_accepted() {
    let app = TestApp::spawn().await;
    let session = app.register("valid@example.com").await;
    let token = sign(&claims(&app, &session.id), SECRET, kid(SECRET));
    assert_eq!(status_with(&app, &token).await, 204);
}

/// Issued on an instance whose clock is a moment ahead: still good here.
#[tokio::test]
async fn a_token_from_a_clock_a_moment_ahead_is_accepted() {
    let app = TestApp::spawn().await;
    let session = app.register("ahead@example.com").await;
    let mut claims = claims(&app, &session.id);
    let now = chrono::Utc::now().timestamp();
    claims["nbf"] = json!(now + 2);
    claims["iat"] = json!(now + 2);
    let token = sign(&claims, SECRET, kid(SECRET));
    assert_eq!(status_with(&app, &token).await, 204);
}

/// `JWT_EXPIRES_IN` is the whole lifetime: no grace period keeps a token alive after it.
#[tokio::test]
async fn an_access_token_stops_working_when_its_lifetime_is_over() {
    let app = TestApp::spawn_with(Settings::default().set("JWT_EXPIRES_IN", "1s")).await;
    let session = app.register("short-lived@example.com").await;
    let me = app
        .get_with_token("/api/v1/users/me", &session.access_token)
        .await;
    assert_eq!(me.status, 200, "fresh: {}", me.text());
    // Issued within the last second, it expires on the next whole second at the latest.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let me = app
        .get_with_token("/api/v1/users/me", &session.access_token)
        .await;
    assert_eq!(me.status, 401, "{}", me.text());
    assert_eq!(me.problem().code, "unauthorized");
}

#[tokio::test]
async fn every_forged_or_invalid_token_is_a_401() {
    let app = TestApp::spawn().await;
    let session = app.register("target@example.com").await;
    let base = claims(&app, &session.id);
    let now = chrono::Utc::now().timestamp();
    let with = |field: &str, value: Value| {
        let mut c = base.clone();
        c[field] = value;
        c
    };
    let without = |field: &str| {
        let mut c = base.clone();
        c.as_object_mut().expect("object").remove(field);
        c
    };

    let mut cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            forged(
                &json!({"alg": "none", "typ": "JWT", "kid": kid(SECRET)}),
                &base,
                "",
            ),
        ),
        (
            "alg none without kid",
            forged(&json!({"alg": "none"}), &base, ""),
        ),
        (
            "HS256 signed with another key",
            sign(
                &base,
                "some-other-secret-of-at-least-32-bytes!!",
                kid(SECRET),
            ),
        ),
        (
            "RS256 header on an HS key",
            forged(
                &json!({"alg": "RS256", "kid": kid(SECRET)}),
                &base,
                "c2lnbmF0dXJl",
            ),
        ),
        (
            "ES256 header on an HS key",
            forged(
                &json!({"alg": "ES256", "kid": kid(SECRET)}),
                &base,
                "c2lnbmF0dXJl",
            ),
        ),
        (
            "expired",
            sign(&with("exp", json!(now - 120)), SECRET, kid(SECRET)),
        ),
        // No grace period after `exp`: a token is dead on its `exp` second ("on or after").
        (
            "expired a second ago",
            sign(&with("exp", json!(now - 1)), SECRET, kid(SECRET)),
        ),
        (
            "expiring this second",
            sign(&with("exp", json!(now)), SECRET, kid(SECRET)),
        ),
        (
            "nbf in the future",
            sign(&with("nbf", json!(now + 600)), SECRET, kid(SECRET)),
        ),
        (
            "nbf past the tolerance for clocks",
            sign(&with("nbf", json!(now + 10)), SECRET, kid(SECRET)),
        ),
        (
            "wrong issuer",
            sign(&with("iss", json!("someone-else")), SECRET, kid(SECRET)),
        ),
        (
            "wrong audience",
            sign(&with("aud", json!("another-api")), SECRET, kid(SECRET)),
        ),
        ("no exp", sign(&without("exp"), SECRET, kid(SECRET))),
        ("no sub", sign(&without("sub"), SECRET, kid(SECRET))),
        (
            "not an access token",
            sign(&with("token_use", json!("refresh")), SECRET, kid(SECRET)),
        ),
        (
            "unknown kid",
            sign(&base, SECRET, Some("no-such-kid".into())),
        ),
        ("no kid", sign(&base, SECRET, None)),
        ("garbage", "not.a.jwt".into()),
    ];
    // A tampered payload: a valid token whose claims were edited (here: another subject).
    let valid = sign(&base, SECRET, kid(SECRET));
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = URL_SAFE_NO_PAD.encode(with("sub", json!(uuid::Uuid::new_v4())).to_string());
    cases.push((
        "tampered payload",
        format!("{}.{tampered}.{}", parts[0], parts[2]),
    ));

    for (name, token) in &cases {
        assert_eq!(
            status_with(&app, token).await,
            401,
            "{name} must be refused"
        );
    }
    assert_eq!(
        status_with(&app, &valid).await,
        204,
        "the untampered token still works"
    );
}

#[tokio::test]
async fn a_token_in_the_query_string_is_ignored() {
    let app = TestApp::spawn().await;
    let session = app.register("query@example.com").await;
    let req = request(
        Method::POST,
        &format!("/api/v1/auth/logout?access_token={}", session.access_token),
    )
    .header(header::CONTENT_TYPE, "application/json")
    .body(Body::from("{}"))
    .expect("req");
    assert_eq!(app.send(req).await.status, 401);
}

#[tokio::test]
async fn a_previous_secret_still_verifies_during_a_rotation() {
    let app = TestApp::spawn_with(
        Settings::default()
            .set("JWT_PREVIOUS_SECRETS", OLD_SECRET)
            .set("JWT_SECRET", SECRET),
    )
    .await;
    let session = app.register("rotation@example.com").await;
    let old = sign(&claims(&app, &session.id), OLD_SECRET, kid(OLD_SECRET));
    assert_eq!(
        status_with(&app, &old).await,
        204,
        "signed with the previous secret"
    );
    // But the old key cannot sign under the new key's id.
    let mislabelled = sign(&claims(&app, &session.id), OLD_SECRET, kid(SECRET));
    assert_eq!(status_with(&app, &mislabelled).await, 401);
}

#[tokio::test]
async fn a_deleted_users_token_is_refused() {
    let app = TestApp::spawn().await.with_bucket().await;
    let session = app.register("gone@example.com").await;
    let second = app.login(&session.email, &session.password).await.json()["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    // Both tokens are checked once, so that what the revocation check caches is warm.
    for token in [&session.access_token, &second] {
        assert_eq!(
            app.get_with_token("/api/v1/users/me", token).await.status,
            200
        );
    }
    let res = app
        .json(
            Method::DELETE,
            "/api/v1/users/me",
            &json!({"current_password": session.password}),
            Some(&session.access_token),
        )
        .await;
    assert_eq!(res.status, 204, "{}", String::from_utf8_lossy(&res.body));
    for token in [&session.access_token, &second] {
        let res = app.get_with_token("/api/v1/users/me", token).await;
        assert_eq!(res.status, 401, "{}", String::from_utf8_lossy(&res.body));
        assert_eq!(res.problem().code, "unauthorized");
        assert_eq!(status_with(&app, token).await, 401);
    }
}
