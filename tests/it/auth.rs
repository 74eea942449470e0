//! Register, login, refresh rotation, logout and logout-all, against real Postgres and Redis.

use axum::body::Body;
use http::{Method, header};
use serde_json::json;

use crate::support::{STRONG_PASSWORD, TestApp, request};

#[tokio::test]
async fn register_answers_the_token_response_and_sets_the_cookie() {
    let app = TestApp::spawn().await;
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "  Ana@Example.com ", "password": STRONG_PASSWORD, "name": " Ana "}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let body = res.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(
        body["refresh_expires_in"], 604_800,
        "exactly the configured lifetime"
    );
    assert!(
        res.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=604800;")),
        "{:?}",
        res.header("set-cookie")
    );
    assert!(
        body["access_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    let refresh = body["refresh_token"].as_str().expect("refresh token");
    assert_eq!(refresh.len(), 43, "256 bits, base64url");
    let user = &body["user"];
    assert_eq!(user["email"], "ana@example.com");
    assert_eq!(user["name"], "Ana");
    assert_eq!(user["role"], "user");
    for field in ["id", "created_at", "updated_at"] {
        assert!(user[field].is_string(), "{field}");
    }
    assert!(user.get("password_hash").is_none());
    let cookie = res.header("set-cookie").expect("cookie");
    assert!(
        cookie.starts_with(&format!("refresh_token={refresh};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/api/v1/auth"] {
        assert!(cookie.contains(attr), "{attr} missing from {cookie}");
    }
    assert_eq!(res.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn the_stored_password_is_an_argon2id_hash_and_the_refresh_token_only_a_hash() {
    let app = TestApp::spawn().await;
    let session = app.register("hash@example.com").await;
    let conn = app.db.connect().await;
    let row = conn
        .query_one(
            "SELECT password_hash FROM users WHERE email = 'hash@example.com'",
            &[],
        )
        .await
        .expect("user");
    let hash: String = row.get(0);
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let found: i64 = conn
        .query_one(
            "SELECT count(*) FROM refresh_tokens WHERE token_hash = sha256(convert_to($1, 'UTF8'))",
            &[&session.refresh_token],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(found, 1, "the token is stored as its SHA-256");
    let plain: i64 = conn
        .query_one(
            "SELECT count(*) FROM refresh_tokens WHERE encode(token_hash, 'escape') = $1",
            &[&session.refresh_token],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(plain, 0);
}

#[tokio::test]
async fn a_duplicate_email_in_any_case_is_a_409() {
    let app = TestApp::spawn().await;
    app.register("dup@example.com").await;
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "DUP@example.com", "password": STRONG_PASSWORD, "name": "Two"}),
        )
        .await;
    assert_eq!(res.status, 409);
    assert_eq!(res.problem().code, "email_taken");
}

#[tokio::test]
async fn invalid_registration_fields_are_all_reported_in_one_422() {
    let app = TestApp::spawn().await;
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "not-an-email", "password": "short", "name": ""}),
        )
        .await;
    assert_eq!(res.status, 422);
    let problem = res.problem();
    assert_eq!(problem.code, "validation_failed");
    let mut fields: Vec<String> = problem
        .errors
        .expect("errors")
        .into_iter()
        .map(|e| e.field)
        .collect();
    fields.sort();
    assert_eq!(fields, ["email", "name", "password"]);
}

#[tokio::test]
async fn weak_and_common_passwords_are_refused_with_a_field_message() {
    let app = TestApp::spawn().await;
    for weak in [
        "password1234",
        "qwertyuiop123",
        "aaaaaaaaaaaaaaaa",
        "maria.garcia1990",
    ] {
        let res = app
            .post_json(
                "/api/v1/auth/register",
                &json!({"email": "maria.garcia@example.com", "password": weak, "name": "Maria Garcia"}),
            )
            .await;
        assert_eq!(res.status, 422, "{weak} should be refused");
        let errors = res.problem().errors.expect("errors");
        assert_eq!(errors[0].field, "password");
        assert!(errors[0].message.contains("weak"), "{}", errors[0].message);
    }
    let long = "x".repeat(129);
    let res = app
        .post_json(
            "/api/v1/auth/register",
            &json!({"email": "m@example.com", "password": long, "name": "M"}),
        )
        .await;
    assert_eq!(res.status, 422);
}

#[tokio::test]
async fn login_answers_a_new_session() {
    let app = TestApp::spawn().await;
    let session = app.register("login@example.com").await;
    let res = app.login("LOGIN@example.com ", &session.password).await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["user"]["id"], session.id.as_str());
    assert_ne!(body["refresh_token"], session.refresh_token.as_str());
    assert!(
        res.header("set-cookie")
            .is_some_and(|c| c.starts_with("refresh_token="))
    );
}

/// Milliseconds one failed login took; it must be the 401 it stands for.
async fn timed_failed_login(app: &TestApp, email: &str) -> f64 {
    let started = std::time::Instant::now();
    let res = app.login(email, "nope-nope-nope-1").await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(res.status, 401, "{email}");
    took
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_look_the_same() {
    const ROUNDS: usize = 15;
    let app = TestApp::spawn().await;
    app.register("known@example.com").await;
    let wrong = app.login("known@example.com", "nope-nope-nope-1").await;
    let unknown = app.login("nobody@example.com", "nope-nope-nope-1").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    let (mut a, mut b) = (wrong.json(), unknown.json());
    assert_eq!(a["code"], "invalid_credentials");
    a["request_id"] = json!(null);
    b["request_id"] = json!(null);
    assert_eq!(a, b, "same body for both failures");
    assert_eq!(
        wrong.header("www-authenticate"),
        unknown.header("www-authenticate")
    );

    // And the same time, so that response times do not tell which emails have an account: 15 of
    // each, interleaved so that a load spike hits both kinds alike (the two logins above paid the
    // one-off costs, such as computing the dummy hash). A login that skipped the password hash for
    // an unknown email answers it about 10 times faster (1.3 ms against 13.6 ms, measured), so
    // half the other kind's median is a safe bound even on a busy machine. Three accounts, five
    // wrong passwords each: far from the per-account lockout (10); each unknown email is new.
    let known: Vec<String> = (0..3).map(|i| format!("timed{i}@example.com")).collect();
    for email in &known {
        app.register(email).await;
    }
    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    for i in 0..ROUNDS {
        let known_email = &known[i % known.len()];
        let unknown_email = format!("nobody{i}@example.com");
        if i % 2 == 0 {
            wrong_times.push(timed_failed_login(&app, known_email).await);
            unknown_times.push(timed_failed_login(&app, &unknown_email).await);
        } else {
            unknown_times.push(timed_failed_login(&app, &unknown_email).await);
            wrong_times.push(timed_failed_login(&app, known_email).await);
        }
    }
    let (wrong_ms, unknown_ms) = (median(wrong_times.clone()), median(unknown_times.clone()));
    assert!(
        unknown_ms >= wrong_ms / 2.0,
        "an unknown email answers much faster than a wrong password (median {unknown_ms:.1} ms \
         against {wrong_ms:.1} ms), so response times tell which emails have accounts; \
         unknown: {unknown_times:.1?}, wrong password: {wrong_times:.1?}"
    );
    assert!(
        wrong_ms >= unknown_ms / 2.0,
        "a wrong password answers much faster than an unknown email (median {wrong_ms:.1} ms \
         against {unknown_ms:.1} ms); unknown: {unknown_times:.1?}, wrong password: {wrong_times:.1?}"
    );
}

async fn refresh_with(app: &TestApp, token: &str) -> crate::support::TestResponse {
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": token}))
        .await
}

#[tokio::test]
async fn refresh_rotates_the_token() {
    let app = TestApp::spawn().await;
    let session = app.register("rotate@example.com").await;
    let res = refresh_with(&app, &session.refresh_token).await;
    assert_eq!(res.status, 200);
    let body = res.json();
    let next = body["refresh_token"].as_str().expect("next");
    assert_ne!(next, session.refresh_token);
    assert_eq!(body["user"]["email"], "rotate@example.com");
    assert_eq!(
        refresh_with(&app, next).await.status,
        200,
        "the rotated token works once"
    );
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let app = TestApp::spawn().await;
    let session = app.register("reuse@example.com").await;
    let elsewhere = app.login(&session.email, &session.password).await.json();
    let first = refresh_with(&app, &session.refresh_token).await.json();
    let newest = first["refresh_token"].as_str().expect("next");
    let newest_access = first["access_token"].as_str().expect("access");
    let me = |token: String| {
        let app = &app;
        async move { app.get_with_token("/api/v1/users/me", &token).await.status }
    };
    assert_eq!(me(newest_access.to_owned()).await, 200);

    let replay = refresh_with(&app, &session.refresh_token).await;
    assert_eq!(replay.status, 401);
    assert_eq!(replay.problem().code, "unauthorized");
    assert_eq!(
        refresh_with(&app, newest).await.status,
        401,
        "the newest token of the family is revoked too"
    );
    assert_eq!(
        me(newest_access.to_owned()).await,
        401,
        "so is the access token its last rotation handed out"
    );
    assert_eq!(me(session.access_token.clone()).await, 401);

    // Another login of the same user is left alone: its access and refresh tokens work.
    let other_access = elsewhere["access_token"].as_str().expect("access");
    assert_eq!(me(other_access.to_owned()).await, 200);
    let other_refresh = elsewhere["refresh_token"].as_str().expect("refresh");
    assert_eq!(refresh_with(&app, other_refresh).await.status, 200);
}

#[tokio::test]
async fn an_unknown_or_missing_refresh_token_is_a_401() {
    let app = TestApp::spawn().await;
    assert_eq!(refresh_with(&app, "made-up-token").await.status, 401);
    let res = app
        .send(
            request(Method::POST, "/api/v1/auth/refresh")
                .body(Body::empty())
                .expect("req"),
        )
        .await;
    assert_eq!(res.status, 401);
}

#[tokio::test]
async fn the_family_has_an_absolute_lifetime() {
    let app = TestApp::spawn().await;
    let session = app.register("family@example.com").await;
    let conn = app.db.connect().await;
    conn.execute("UPDATE refresh_tokens SET family_expires_at = now() - interval '1 second', expires_at = now() - interval '1 second'", &[])
        .await
        .expect("age the family");
    assert_eq!(refresh_with(&app, &session.refresh_token).await.status, 401);

    // A rotated token never outlives its family.
    let session = app.register("family2@example.com").await;
    conn.execute(
        "UPDATE refresh_tokens SET family_expires_at = now() + interval '1 hour'
         WHERE user_id = (SELECT id FROM users WHERE email = 'family2@example.com')",
        &[],
    )
    .await
    .expect("shorten the family");
    let res = refresh_with(&app, &session.refresh_token).await;
    assert_eq!(res.status, 200);
    assert!(
        res.json()["refresh_expires_in"]
            .as_i64()
            .is_some_and(|s| s <= 3600),
        "capped by the family"
    );
}

#[tokio::test]
async fn the_cookie_alone_refreshes_and_logout_clears_it() {
    let app = TestApp::spawn().await;
    let session = app.register("cookie@example.com").await;
    let req = request(Method::POST, "/api/v1/auth/refresh")
        .header(
            header::COOKIE,
            format!("theme=dark; refresh_token={}", session.refresh_token),
        )
        .body(Body::empty())
        .expect("req");
    let res = app.send(req).await;
    assert_eq!(res.status, 200);
    let body = res.json();
    let access = body["access_token"].as_str().expect("access").to_owned();
    let cookie_token = body["refresh_token"].as_str().expect("refresh").to_owned();

    let req = request(Method::POST, "/api/v1/auth/logout")
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::COOKIE, format!("refresh_token={cookie_token}"))
        .body(Body::empty())
        .expect("req");
    let res = app.send(req).await;
    assert_eq!(res.status, 204);
    res.assert_refresh_cookie_cleared();
    assert_eq!(
        refresh_with(&app, &cookie_token).await.status,
        401,
        "logout revoked the cookie's family"
    );
}

#[tokio::test]
async fn logout_makes_the_access_token_unusable_at_once() {
    let app = TestApp::spawn().await;
    let session = app.register("logout@example.com").await;
    let res = app
        .json(
            Method::POST,
            "/api/v1/auth/logout",
            &json!({"refresh_token": session.refresh_token}),
            Some(&session.access_token),
        )
        .await;
    assert_eq!(res.status, 204);
    let again = app.logout(&session.access_token).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.header("www-authenticate"), Some("Bearer"));
    assert_eq!(refresh_with(&app, &session.refresh_token).await.status, 401);
}

/// The access tokens a session's earlier rotations handed out end with it, not only the one the
/// logout was sent with; another session's keep working. Also while Redis holds nothing: the
/// check rebuilds the deny list from Postgres.
#[tokio::test]
async fn logout_ends_every_access_token_of_its_session() {
    let app = TestApp::spawn().await;
    let session = app.register("session-tokens@example.com").await;
    let other = app.login(&session.email, &session.password).await.json();
    let other_access = other["access_token"].as_str().expect("access").to_owned();
    let rotated = refresh_with(&app, &session.refresh_token).await.json();
    let latest = rotated["access_token"].as_str().expect("access").to_owned();
    let me = |token: String| {
        let app = &app;
        async move { app.get_with_token("/api/v1/users/me", &token).await.status }
    };
    assert_eq!(me(session.access_token.clone()).await, 200, "still valid");

    assert_eq!(app.logout(&latest).await.status, 204);
    assert_eq!(me(latest.clone()).await, 401);
    assert_eq!(
        me(session.access_token.clone()).await,
        401,
        "the session's first access token ends with it"
    );
    assert_eq!(me(other_access.clone()).await, 200, "another session");

    // Redis loses everything: Postgres still knows.
    let mut redis = app.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", app.state.cache.key("")))
        .query_async(&mut redis)
        .await
        .expect("keys");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut redis)
        .await
        .expect("del");
    assert_eq!(me(session.access_token.clone()).await, 401);
    assert_eq!(me(other_access).await, 200);
}

#[tokio::test]
async fn logout_needs_a_bearer_token() {
    let app = TestApp::spawn().await;
    let res = app.post_json("/api/v1/auth/logout", &json!({})).await;
    assert_eq!(res.status, 401);
    assert_eq!(res.problem().code, "unauthorized");
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_only() {
    let app = TestApp::spawn().await;
    let first = app.register("all@example.com").await;
    let second = app.login(&first.email, &first.password).await.json();
    let other = app.register("bystander@example.com").await;

    let res = app
        .json(
            Method::POST,
            "/api/v1/auth/logout-all",
            &json!({}),
            Some(&first.access_token),
        )
        .await;
    assert_eq!(res.status, 204);

    let second_access = second["access_token"].as_str().expect("access");
    let res = app.logout(second_access).await;
    assert_eq!(
        res.status, 401,
        "every access token of the user is unusable"
    );
    assert_eq!(refresh_with(&app, &first.refresh_token).await.status, 401);
    assert_eq!(
        refresh_with(&app, second["refresh_token"].as_str().expect("refresh"))
            .await
            .status,
        401
    );

    assert_eq!(
        refresh_with(&app, &other.refresh_token).await.status,
        200,
        "other users keep their sessions"
    );

    // Logging in again works, and its token is accepted.
    let again = app.login(&first.email, &first.password).await;
    assert_eq!(again.status, 200);
    let token = again.json()["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    assert_eq!(app.logout(&token).await.status, 204);
}

#[tokio::test]
async fn logout_holds_while_redis_is_unavailable() {
    let app = TestApp::spawn().await;
    let session = app.register("redisdown@example.com").await;
    let res = app.logout(&session.access_token).await;
    assert_eq!(res.status, 204);

    // The same database, with Redis unreachable: revocation is answered from Postgres.
    let down = TestApp::spawn_with(
        crate::support::Settings::default()
            .set("DATABASE_URL", &app.db.url)
            .set("REDIS_URL", "redis://127.0.0.1:1"),
    )
    .await;
    let res = down.logout(&session.access_token).await;
    assert_eq!(res.status, 401);
    let fresh = down.login(&session.email, &session.password).await;
    assert_eq!(fresh.status, 200, "login works without Redis");
    let token = fresh.json()["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    assert_eq!(down.logout(&token).await.status, 204);
}

#[tokio::test]
async fn ten_failed_logins_lock_the_account_whatever_the_ip() {
    let app = TestApp::spawn().await;
    let session = app.register("locked@example.com").await;
    for i in 0..10 {
        let req = request(Method::POST, "/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"email": session.email, "password": format!("wrong-password-{i}")})
                    .to_string(),
            ))
            .expect("req");
        let res = app.send_from(&format!("198.51.100.{i}"), req).await;
        assert_eq!(res.status, 401, "attempt {i}");
    }
    let req = request(Method::POST, "/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"email": session.email, "password": session.password}).to_string(),
        ))
        .expect("req");
    let res = app.send_from("203.0.113.99", req).await;
    assert_eq!(res.status, 429, "even the right password from a new IP");
    assert_eq!(res.problem().code, "rate_limited");
    assert!(
        res.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 0 && s <= 900)
    );

    let other = app.register("unlocked@example.com").await;
    let res = app.login(&other.email, &other.password).await;
    assert_eq!(res.status, 200, "other accounts are not affected");
}

#[tokio::test]
async fn an_optional_body_that_is_not_json_is_a_415() {
    let app = TestApp::spawn().await;
    let session = app.register("optional@example.com").await;
    let req = request(Method::POST, "/api/v1/auth/refresh")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(format!(
            "refresh_token={}",
            session.refresh_token
        )))
        .expect("req");
    let res = app.send(req).await;
    assert_eq!(res.status, 415);
    assert_eq!(res.problem().code, "unsupported_media_type");
    let req = request(Method::POST, "/api/v1/auth/refresh")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{not json"))
        .expect("req");
    assert_eq!(app.send(req).await.status, 400);
    assert_eq!(
        app.logout(&session.access_token).await.status,
        204,
        "an empty body is fine"
    );
}

/// A password of exactly `len` characters that is strong whatever its length (random hex with
/// a symbol), so that length is the only rule that can refuse it.
fn strong_password_of(len: usize) -> String {
    let mut raw = String::from("#");
    while raw.len() < len {
        raw.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    raw.truncate(len);
    raw
}

#[tokio::test]
async fn the_password_length_bounds_are_12_and_128_characters_exactly() {
    let app = TestApp::spawn().await;
    for (len, accepted) in [(11, false), (12, true), (128, true), (129, false)] {
        let password = strong_password_of(len);
        assert_eq!(password.chars().count(), len);
        let res = app
            .post_json(
                "/api/v1/auth/register",
                &json!({"email": format!("len{len}@example.com"), "password": password, "name": "Len"}),
            )
            .await;
        if accepted {
            assert_eq!(
                res.status,
                201,
                "{len} characters are allowed: {:?}",
                res.json()
            );
        } else {
            assert_eq!(res.status, 422, "{len} characters are refused");
            let problem = res.problem();
            let errors = problem.errors.expect("field errors");
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].field, "password");
            let expected = if len < 12 {
                "must be at least 12 characters"
            } else {
                "must be at most 128 characters"
            };
            assert_eq!(errors[0].message, expected, "{len} characters");
        }
    }
}

#[tokio::test]
async fn a_huge_login_email_is_refused_before_redis_and_failure_keys_hold_no_address() {
    let app = TestApp::spawn().await;
    let huge = format!("{}@example.com", "a".repeat(1_000_000));
    let res = app.login(&huge, "whatever-password").await;
    assert_eq!(res.status, 422);
    assert_eq!(res.problem().errors.expect("errors")[0].field, "email");

    let res = app
        .login("someone.particular@example.com", "wrong-password")
        .await;
    assert_eq!(res.status, 401);

    let prefix = app.state.cache.key("pw_fail:");
    let mut redis = app.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .expect("keys");
    assert_eq!(
        keys.len(),
        1,
        "only the real-sized address was counted: {keys:?}"
    );
    let id = &keys[0][prefix.len()..];
    assert_eq!(id.len(), 64, "a fixed-size digest: {id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert!(
        !keys[0].contains("someone"),
        "the address is not readable from Redis"
    );
}

#[tokio::test]
async fn logout_without_a_refresh_token_still_ends_its_own_session_only() {
    let app = TestApp::spawn().await;
    let session = app.register("sid-logout@example.com").await;
    let other = app.login(&session.email, &session.password).await.json();

    for body in [None, Some(json!({})), Some(json!(null))] {
        let session = app.login(&session.email, &session.password).await.json();
        let access = session["access_token"].as_str().expect("access");
        let refresh = session["refresh_token"].as_str().expect("refresh");
        let mut req = request(Method::POST, "/api/v1/auth/logout")
            .header(header::AUTHORIZATION, format!("Bearer {access}"));
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let res = app.send(req.body(body).expect("req")).await;
        assert_eq!(res.status, 204);
        assert_eq!(
            refresh_with(&app, refresh).await.status,
            401,
            "the session's refresh token died with its logout"
        );
    }
    let other_refresh = other["refresh_token"].as_str().expect("refresh");
    assert_eq!(
        refresh_with(&app, other_refresh).await.status,
        200,
        "another session of the same user is left alone"
    );
}

/// A refresh and a logout-all sent at once, many times: whatever the order Postgres runs them
/// in, nothing the refresh hands out outlives the logout-all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_refresh_racing_logout_all_hands_out_survives_it() {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(crate::support::Settings::default().set("RATE_LIMIT_MAX", "100000"))
            .await,
    );
    let user = app.register("race@example.com").await;
    let mut refreshed_first = 0;
    for round in 0..200 {
        let login = app.login(&user.email, &user.password).await.json();
        let access = login["access_token"].as_str().expect("access").to_owned();
        let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
        let (a, b) = (app.clone(), app.clone());
        let access_for_logout = access.clone();
        let refreshing = tokio::spawn(async move { refresh_with(&a, &refresh).await });
        let logging_out = tokio::spawn(async move {
            b.json(
                Method::POST,
                "/api/v1/auth/logout-all",
                &json!({}),
                Some(&access_for_logout),
            )
            .await
        });
        let (refreshed, logged_out) = (
            refreshing.await.expect("task"),
            logging_out.await.expect("task"),
        );
        assert!(
            logged_out.status == 204 || logged_out.status == 401,
            "round {round}: logout-all answered {}",
            logged_out.status
        );
        assert!(
            refreshed.status == 200 || refreshed.status == 401,
            "round {round}: refresh answered {}",
            refreshed.status
        );
        if refreshed.status == 200 {
            refreshed_first += 1;
            let body = refreshed.json();
            let next = body["refresh_token"].as_str().expect("next");
            let next_access = body["access_token"].as_str().expect("access");
            assert_eq!(
                refresh_with(&app, next).await.status,
                401,
                "round {round}: the refresh token handed out during logout-all still works"
            );
            assert_eq!(
                app.get_with_token("/api/v1/users/me", next_access)
                    .await
                    .status,
                401,
                "round {round}: the access token handed out during logout-all still works"
            );
        }
    }
    // Both orders happened, or the race was not run.
    assert!(
        refreshed_first > 0 && refreshed_first < 200,
        "the refresh won {refreshed_first} of 200 rounds"
    );
}

/// A logout made while Redis is down holds once Redis is back, for that token and for any other
/// token of the user logged out meanwhile, whichever is checked first.
#[tokio::test]
async fn a_logout_made_while_redis_is_down_holds_after_redis_returns() {
    let mut redis = crate::support::throwaway::ThrowawayRedis::start();
    let app =
        TestApp::spawn_with(crate::support::Settings::default().set("REDIS_URL", &redis.url()))
            .await;
    let user = app.register("outage@example.com").await;
    let second = app.login(&user.email, &user.password).await.json();
    let second = second["access_token"].as_str().expect("access").to_owned();
    // Both tokens are checked once, so their user's generation is cached in Redis.
    for token in [&user.access_token, &second] {
        assert_eq!(
            app.get_with_token("/api/v1/users/me", token).await.status,
            200
        );
    }

    redis.stop();
    assert_eq!(app.logout(&user.access_token).await.status, 204);
    assert_eq!(app.logout(&second).await.status, 204);
    redis.start_again();
    // Past the client's pause after failures, so that the checks read Redis again.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    let statuses: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..5 {
            for token in [&user.access_token, &second] {
                statuses.push(
                    app.get_with_token("/api/v1/users/me", token)
                        .await
                        .status
                        .as_u16(),
                );
            }
        }
        statuses
    };
    assert_eq!(
        statuses,
        vec![401; 10],
        "logged-out tokens after Redis returned"
    );
    let fresh = app.login(&user.email, &user.password).await.json();
    let fresh = fresh["access_token"].as_str().expect("access");
    assert_eq!(
        app.get_with_token("/api/v1/users/me", fresh).await.status,
        200,
        "a new session works"
    );
}

/// One instance's Redis connection goes silent (a stale route, a node replaced behind the same
/// name) while another instance still reads Redis, with the user's generation cached there. A
/// logout, and a logout-all, made through the silent instance still hold on the other one: the
/// revocation is written again on a new connection, not left to Postgres alone.
#[tokio::test]
async fn a_revocation_through_an_instance_whose_redis_connection_went_silent_holds_everywhere() {
    let redis: std::net::SocketAddr = crate::support::redis_url()
        .trim_start_matches("redis://")
        .parse()
        .expect("REDIS_URL is redis://ip:port");
    let proxy = crate::support::proxy::HoldingProxy::start_to(redis).await;
    let app = TestApp::spawn_with(
        crate::support::Settings::default().set("REDIS_URL", &format!("redis://{}", proxy.addr)),
    )
    .await;
    let other = app
        .another_instance(|config| config.redis_url = crate::support::redis_url().into())
        .await;
    let me_on_other = |token: String| {
        let other = other.clone();
        async move {
            let mut req = request(Method::GET, "/api/v1/users/me")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request");
            let peer: std::net::SocketAddr = "127.0.0.1:40001".parse().expect("addr");
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            crate::support::send_to(&other, req).await.status
        }
    };
    let user = app.register("silent-redis@example.com").await;
    let second = app.login(&user.email, &user.password).await.json();
    let second = second["access_token"].as_str().expect("access").to_owned();
    // The other instance caches the user's generation.
    assert_eq!(me_on_other(user.access_token.clone()).await, 200);
    assert_eq!(me_on_other(second.clone()).await, 200);

    proxy.freeze();
    assert_eq!(app.logout(&user.access_token).await.status, 204);
    assert_eq!(
        me_on_other(user.access_token.clone()).await,
        401,
        "the logged-out token on the other instance"
    );

    proxy.freeze();
    let all = app
        .json(
            Method::POST,
            "/api/v1/auth/logout-all",
            &json!({}),
            Some(&second),
        )
        .await;
    assert_eq!(all.status, 204);
    assert_eq!(
        me_on_other(second.clone()).await,
        401,
        "a token older than the logout-all on the other instance"
    );
}

#[tokio::test]
async fn each_rotation_gets_the_whole_idle_lifetime_until_the_absolute_one_caps_it() {
    let app = TestApp::spawn_with(
        crate::support::Settings::default()
            .set("REFRESH_TOKEN_EXPIRES_IN", "1h")
            .set("REFRESH_TOKEN_ABSOLUTE_LIFETIME", "90m"),
    )
    .await;
    let user = app.register("lifetimes@example.com").await;
    let login = app.login(&user.email, &user.password).await;
    assert_eq!(login.json()["refresh_expires_in"], 3600);

    // A rotation starts the idle lifetime again: the family still has 90 minutes.
    let token = login.json()["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let rotated = refresh_with(&app, &token).await;
    assert_eq!(rotated.status, 200);
    assert_eq!(rotated.json()["refresh_expires_in"], 3600);
    assert!(
        rotated
            .header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=3600;"))
    );

    // Near the absolute cap, what is left is what is reported, and what the token gets.
    let conn = app.db.connect().await;
    conn.execute(
        "UPDATE refresh_tokens SET family_expires_at = now() + interval '20 minutes'
         WHERE user_id = (SELECT id FROM users WHERE email = 'lifetimes@example.com')",
        &[],
    )
    .await
    .expect("age the session");
    let next = rotated.json()["refresh_token"]
        .as_str()
        .expect("next")
        .to_owned();
    let capped = refresh_with(&app, &next).await;
    assert_eq!(capped.status, 200);
    let left = capped.json()["refresh_expires_in"].as_i64().expect("secs");
    assert!((1190..=1200).contains(&left), "{left}");
    let expires: chrono::DateTime<chrono::Utc> = conn
        .query_one(
            "SELECT expires_at FROM refresh_tokens
             WHERE user_id = (SELECT id FROM users WHERE email = 'lifetimes@example.com')
             ORDER BY created_at DESC, id DESC LIMIT 1",
            &[],
        )
        .await
        .expect("expiry")
        .get(0);
    let until = (expires - chrono::Utc::now()).num_seconds();
    assert!(
        (1180..=1200).contains(&until),
        "the token itself ends with the family: {until}"
    );
}

fn login_from(email: &str, password: &str) -> http::Request<Body> {
    request(Method::POST, "/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"email": email, "password": password}).to_string(),
        ))
        .expect("req")
}

/// Thirty wrong passwords at once: the slot is taken before the check, so exactly ten reach
/// argon2 (401) and the rest are refused before it (429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_gets_no_more_checks_than_the_limit() {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(crate::support::Settings::default().set("RATE_LIMIT_MAX", "100000"))
            .await,
    );
    let user = app.register("burst@example.com").await;
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (app, email) = (app.clone(), user.email.clone());
            tokio::spawn(async move {
                app.send_from(
                    &format!("198.51.100.{i}"),
                    login_from(&email, "wrong-guess-x"),
                )
                .await
                .status
                .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (10, 20), "{statuses:?}");
}

#[tokio::test]
async fn a_successful_login_clears_the_count_and_the_owners_network_is_never_locked_out() {
    let app = TestApp::spawn().await;
    // Registered from the test client's own address (127.0.0.1): a known network.
    let user = app.register("owner@example.com").await;
    for i in 0..9 {
        let res = app
            .send(login_from(&user.email, &format!("wrong-{i}")))
            .await;
        assert_eq!(res.status, 401, "attempt {i}");
    }
    assert_eq!(app.login(&user.email, &user.password).await.status, 200);
    for i in 0..10 {
        let res = app
            .send(login_from(&user.email, &format!("again-{i}")))
            .await;
        assert_eq!(
            res.status, 401,
            "a success started the count again: attempt {i}"
        );
    }
    assert_eq!(app.login(&user.email, &user.password).await.status, 429);

    // An attacker elsewhere uses up the budget of every other network...
    let other = app.register("target@example.com").await;
    for i in 0..10 {
        let res = app
            .send_from(&format!("203.0.113.{i}"), login_from(&other.email, "guess"))
            .await;
        assert_eq!(res.status, 401, "attempt {i}");
    }
    let res = app
        .send_from("203.0.113.200", login_from(&other.email, &other.password))
        .await;
    assert_eq!(res.status, 429, "a new network is locked out");
    // ...but the owner, from the network they registered from, still signs in.
    assert_eq!(app.login(&other.email, &other.password).await.status, 200);
}

#[tokio::test]
async fn current_password_checks_share_the_accounts_guessing_limit() {
    let app = TestApp::spawn().await;
    let user = app.register("stolen-token@example.com").await;
    let wrong = || {
        request(Method::DELETE, "/api/v1/users/me")
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", user.access_token),
            )
            .body(Body::from(
                json!({"current_password": "a-guess-at-it"}).to_string(),
            ))
            .expect("req")
    };
    // Someone holding a stolen access token, from their own network.
    for i in 0..10 {
        let res = app.send_from("198.51.100.77", wrong()).await;
        assert_eq!(res.status, 422, "attempt {i}");
    }
    let res = app.send_from("198.51.100.77", wrong()).await;
    assert_eq!(res.status, 429);
    assert!(res.header("retry-after").is_some());
    let me = app
        .get_with_token("/api/v1/users/me", &user.access_token)
        .await;
    assert_eq!(me.status, 200, "the account is still there");
}
