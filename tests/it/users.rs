//! The users routes: profile, password change, deletion, roles, pagination, cache and replica.

use std::collections::HashSet;

use http::Method;
use serde_json::{Value, json};

use crate::support::{STRONG_PASSWORD, Session, Settings, TestApp, TestDatabase};

async fn promote(app: &TestApp, session: &Session) {
    app.promote(session).await;
}

async fn refresh_status(app: &TestApp, token: &str) -> u16 {
    app.post_json("/api/v1/auth/refresh", &json!({"refresh_token": token}))
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn me_returns_the_callers_profile() {
    let app = TestApp::spawn().await;
    let ana = app.register("ana@example.com").await;
    let res = app
        .get_with_token("/api/v1/users/me", &ana.access_token)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let body = res.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["created_at", "email", "id", "name", "role", "updated_at"]
    );
    assert_eq!(body["id"], ana.id.as_str());
    assert_eq!(app.get("/api/v1/users/me").await.status, 401);
}

#[tokio::test]
async fn a_user_never_sees_another_user() {
    let app = TestApp::spawn().await;
    let a = app.register("a@example.com").await;
    let b = app.register("b@example.com").await;
    let res = app
        .get_with_token(&format!("/api/v1/users/{}", b.id), &a.access_token)
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.problem().code, "forbidden");
    let missing = app
        .get_with_token(
            &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
            &a.access_token,
        )
        .await;
    let (mut x, mut y) = (res.json(), missing.json());
    x["request_id"] = Value::Null;
    y["request_id"] = Value::Null;
    assert_eq!(
        x, y,
        "another user's id looks exactly like one that does not exist"
    );
    let own = app
        .get_with_token(&format!("/api/v1/users/{}", a.id), &a.access_token)
        .await;
    assert_eq!(own.status, 200);
    assert_eq!(own.json()["email"], "a@example.com");
}

#[tokio::test]
async fn a_malformed_id_is_a_404_never_a_500() {
    let app = TestApp::spawn().await;
    let a = app.register("malformed@example.com").await;
    for id in [
        "not-a-uuid",
        "1",
        "%27%20OR%201=1",
        "00000000-0000-0000-0000-00000000000g",
    ] {
        let res = app
            .get_with_token(&format!("/api/v1/users/{id}"), &a.access_token)
            .await;
        assert_eq!(res.status, 404, "{id}");
        assert_eq!(res.problem().code, "not_found");
    }
}

#[tokio::test]
async fn only_admins_list_users_and_see_anyone() {
    let app = TestApp::spawn().await;
    let user = app.register("plain@example.com").await;
    let admin = app.register("boss@example.com").await;
    let res = app
        .get_with_token("/api/v1/users", &user.access_token)
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.problem().code, "forbidden");
    assert_eq!(app.get("/api/v1/users").await.status, 401);

    promote(&app, &admin).await;
    let res = app
        .get_with_token("/api/v1/users", &admin.access_token)
        .await;
    assert_eq!(res.status, 200);
    let body = res.json();
    assert_eq!(body["items"].as_array().expect("items").len(), 2);
    assert!(body["next_cursor"].is_null());
    let res = app
        .get_with_token(&format!("/api/v1/users/{}", user.id), &admin.access_token)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["email"], "plain@example.com");
    let res = app
        .get_with_token(
            &format!("/api/v1/users/{}", uuid::Uuid::new_v4()),
            &admin.access_token,
        )
        .await;
    assert_eq!(res.status, 404, "an admin learns that no such user exists");
    assert_eq!(res.problem().code, "not_found");
}

async fn insert_user(app: &TestApp, email: &str) {
    let conn = app.db.connect().await;
    conn.execute(
        "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, 'Row', 'x')",
        &[&uuid::Uuid::now_v7(), &email],
    )
    .await
    .expect("insert");
}

#[tokio::test]
async fn pagination_visits_every_row_once_while_rows_are_inserted() {
    let app = TestApp::spawn().await;
    let admin = app.register("admin@example.com").await;
    promote(&app, &admin).await;
    for i in 0..24 {
        insert_user(&app, &format!("user{i:02}@example.com")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserted = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit=7&cursor={c}"),
            None => "/api/v1/users?limit=7".to_owned(),
        };
        let res = app.get_with_token(&path, &admin.access_token).await;
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
        let body = res.json();
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= 7);
        seen.extend(
            items
                .iter()
                .map(|u| u["email"].as_str().expect("email").to_owned()),
        );
        // Someone signs up between two pages.
        if inserted < 3 {
            insert_user(&app, &format!("late{inserted}@example.com")).await;
            inserted += 1;
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice");
    assert_eq!(
        seen.len(),
        1 + 24 + 3,
        "every row, including those inserted meanwhile"
    );
}

#[tokio::test]
async fn the_email_prefix_filter_matches_literally() {
    let app = TestApp::spawn().await;
    let admin = app.register("admin@example.com").await;
    promote(&app, &admin).await;
    for email in ["ann_x@example.com", "annex@example.com", "bob@example.com"] {
        insert_user(&app, email).await;
    }
    let res = app
        .get_with_token("/api/v1/users?email=ANN", &admin.access_token)
        .await;
    let emails: Vec<String> = res.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["email"].as_str().expect("e").to_owned())
        .collect();
    assert_eq!(emails, ["ann_x@example.com", "annex@example.com"]);
    let res = app
        .get_with_token("/api/v1/users?email=ann_", &admin.access_token)
        .await;
    assert_eq!(
        res.json()["items"].as_array().expect("items").len(),
        1,
        "_ is not a wildcard"
    );
}

#[tokio::test]
async fn bad_list_parameters_are_client_errors() {
    let app = TestApp::spawn().await;
    let admin = app.register("admin@example.com").await;
    promote(&app, &admin).await;
    for limit in ["0", "101", "ten", "-1"] {
        let res = app
            .get_with_token(&format!("/api/v1/users?limit={limit}"), &admin.access_token)
            .await;
        assert_eq!(res.status, 422, "limit={limit}");
        let problem = res.problem();
        assert_eq!(problem.code, "validation_failed");
        assert_eq!(
            problem.detail, "A query parameter is invalid",
            "no body to blame"
        );
        assert_eq!(problem.errors.expect("errors")[0].field, "limit");
    }
    let res = app
        .get_with_token("/api/v1/users?cursor=garbage!", &admin.access_token)
        .await;
    assert_eq!(res.status, 400);
    assert_eq!(res.problem().code, "invalid_cursor");
}

#[tokio::test]
async fn the_replica_pool_serves_the_listing() {
    let replica = TestDatabase::create().await;
    {
        let conn = replica.connect().await;
        conn.execute(
            "INSERT INTO users (id, email, name, password_hash) VALUES ($1, 'replica-only@example.com', 'R', 'x')",
            &[&uuid::Uuid::now_v7()],
        )
        .await
        .expect("insert into the replica");
    }
    let app = TestApp::spawn_with(Settings::default().set("DATABASE_READ_URL", &replica.url)).await;
    let admin = app.register("admin@example.com").await;
    promote(&app, &admin).await;
    let res = app
        .get_with_token("/api/v1/users", &admin.access_token)
        .await;
    assert_eq!(res.status, 200);
    let emails: Vec<String> = res.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["email"].as_str().expect("e").to_owned())
        .collect();
    assert_eq!(
        emails,
        ["replica-only@example.com"],
        "the listing reads the replica"
    );
    // The caller's own profile comes from the primary.
    let me = app
        .get_with_token("/api/v1/users/me", &admin.access_token)
        .await;
    assert_eq!(me.json()["email"], "admin@example.com");
}

#[tokio::test]
async fn a_patch_is_visible_at_once_through_the_cache() {
    let app = TestApp::spawn().await;
    let ana = app.register("cache@example.com").await;
    let before = app
        .get_with_token("/api/v1/users/me", &ana.access_token)
        .await
        .json();
    assert_eq!(before["name"], "Test User");
    let res = app
        .json(
            Method::PATCH,
            "/api/v1/users/me",
            &json!({"name": "Ana Renamed"}),
            Some(&ana.access_token),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["name"], "Ana Renamed");
    let after = app
        .get_with_token("/api/v1/users/me", &ana.access_token)
        .await
        .json();
    assert_eq!(after["name"], "Ana Renamed", "no stale read after a PATCH");
    assert_ne!(after["updated_at"], before["updated_at"]);
}

#[tokio::test]
async fn profiles_are_correct_when_redis_is_down() {
    let app = TestApp::spawn().await;
    let ana = app.register("noredis@example.com").await;
    let down = TestApp::spawn_with(
        Settings::default()
            .set("DATABASE_URL", &app.db.url)
            .set("REDIS_URL", "redis://127.0.0.1:1"),
    )
    .await;
    let res = down
        .get_with_token("/api/v1/users/me", &ana.access_token)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["email"], "noredis@example.com");
    let res = down
        .json(
            Method::PATCH,
            "/api/v1/users/me",
            &json!({"name": "Still Works"}),
            Some(&ana.access_token),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(
        down.get_with_token("/api/v1/users/me", &ana.access_token)
            .await
            .json()["name"],
        "Still Works"
    );
}

#[tokio::test]
async fn changing_the_email_needs_the_password_and_a_free_address() {
    let app = TestApp::spawn().await;
    let ana = app.register("old@example.com").await;
    app.register("taken@example.com").await;
    let token = ana.access_token.clone();
    let patch = |body: Value| {
        let token = token.clone();
        let app = &app;
        async move {
            app.json(Method::PATCH, "/api/v1/users/me", &body, Some(&token))
                .await
        }
    };

    let res = patch(json!({"email": "new@example.com"})).await;
    assert_eq!(res.status, 422);
    assert_eq!(
        res.problem().errors.expect("errors")[0].field,
        "current_password"
    );
    let res =
        patch(json!({"email": "new@example.com", "current_password": "wrong-password-123"})).await;
    assert_eq!(res.status, 422);
    let res =
        patch(json!({"email": "TAKEN@example.com", "current_password": STRONG_PASSWORD})).await;
    assert_eq!(res.status, 409);
    assert_eq!(res.problem().code, "email_taken");
    let res = patch(json!({"email": "not an email", "current_password": STRONG_PASSWORD})).await;
    assert_eq!(res.status, 422);
    let res = patch(json!({"name": ""})).await;
    assert_eq!(res.status, 422);
    let res = patch(json!({})).await;
    assert_eq!(res.status, 422);

    let res =
        patch(json!({"email": " New@Example.com", "current_password": STRONG_PASSWORD})).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["email"], "new@example.com");
    let login = app.login("new@example.com", STRONG_PASSWORD).await;
    assert_eq!(login.status, 200);
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_the_user() {
    let app = TestApp::spawn().await;
    let first = app.register("pw@example.com").await;
    let second = app.login(&first.email, &first.password).await.json();
    let second_refresh = second["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let new_password = "granite-lantern-orbit-93";

    let res = app
        .json(
            Method::PUT,
            "/api/v1/users/me/password",
            &json!({"current_password": "wrong-password-123", "new_password": new_password}),
            Some(&first.access_token),
        )
        .await;
    assert_eq!(res.status, 422);
    let res = app
        .json(
            Method::PUT,
            "/api/v1/users/me/password",
            &json!({"current_password": STRONG_PASSWORD, "new_password": "password1234"}),
            Some(&first.access_token),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(
        res.problem().errors.expect("errors")[0].field,
        "new_password"
    );

    let res = app
        .json(
            Method::PUT,
            "/api/v1/users/me/password",
            &json!({"current_password": STRONG_PASSWORD, "new_password": new_password}),
            Some(&first.access_token),
        )
        .await;
    assert_eq!(res.status, 204);
    res.assert_refresh_cookie_cleared();

    assert_eq!(
        refresh_status(&app, &second_refresh).await,
        401,
        "the other session is gone"
    );
    let second_access = second["access_token"].as_str().expect("access");
    assert_eq!(
        app.get_with_token("/api/v1/users/me", second_access)
            .await
            .status,
        401
    );
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &first.access_token)
            .await
            .status,
        401,
        "the caller's access token too"
    );
    assert_eq!(
        refresh_status(&app, &first.refresh_token).await,
        401,
        "and the caller's session: it signs in again with the new password"
    );

    let old = app.login(&first.email, STRONG_PASSWORD).await;
    assert_eq!(old.status, 401);
    let new = app.login(&first.email, new_password).await;
    assert_eq!(new.status, 200);
}

#[tokio::test]
async fn deleting_the_account_removes_everything_and_login_then_fails() {
    let app = TestApp::spawn().await.with_bucket().await;
    let gone = app.register("delete@example.com").await;
    let stays = app.register("stays@example.com").await;
    let res = app
        .json(
            Method::DELETE,
            "/api/v1/users/me",
            &json!({"current_password": "wrong-password-123"}),
            Some(&gone.access_token),
        )
        .await;
    assert_eq!(res.status, 422);
    let res = app
        .json(
            Method::DELETE,
            "/api/v1/users/me",
            &json!({"current_password": STRONG_PASSWORD}),
            Some(&gone.access_token),
        )
        .await;
    assert_eq!(res.status, 204);
    res.assert_refresh_cookie_cleared();

    let conn = app.db.connect().await;
    let id: uuid::Uuid = gone.id.parse().expect("uuid");
    for table in [
        "users WHERE id = $1",
        "refresh_tokens WHERE user_id = $1",
        "revoked_access_tokens WHERE user_id = $1",
    ] {
        let n: i64 = conn
            .query_one(&format!("SELECT count(*) FROM {table}"), &[&id])
            .await
            .expect("count")
            .get(0);
        assert_eq!(n, 0, "{table}");
    }
    let login = app.login(&gone.email, STRONG_PASSWORD).await;
    assert_eq!(login.status, 401);
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &gone.access_token)
            .await
            .status,
        401
    );
    assert_eq!(refresh_status(&app, &gone.refresh_token).await, 401);
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &stays.access_token)
            .await
            .status,
        200
    );
}

/// Every command Redis receives while it runs, as `MONITOR` prints it: a command a client sent
/// reads `[0 127.0.0.1:port] "CMD" ...`, one a script ran reads `[0 lua] "CMD" ...`.
struct RedisMonitor {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RedisMonitor {
    async fn start() -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let addr = crate::support::redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let mut socket = tokio::net::TcpStream::connect(addr).await.expect("redis");
        socket.write_all(b"MONITOR\r\n").await.expect("MONITOR");
        let mut reader = tokio::io::BufReader::new(socket);
        let mut ok = String::new();
        reader.read_line(&mut ok).await.expect("MONITOR answers");
        assert_eq!(ok.trim(), "+OK");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let lines = lines.clone();
            async move {
                let mut line = String::new();
                while reader.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                    lines.lock().expect("lines").push(std::mem::take(&mut line));
                }
            }
        });
        Self { lines, task }
    }

    /// The lines so far that name a key with `prefix`.
    async fn lines_naming(&self, prefix: &str) -> Vec<String> {
        // MONITOR is asynchronous: give the last commands time to arrive.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.task.abort();
        let lines = self.lines.lock().expect("lines");
        lines
            .iter()
            .filter(|l| l.contains(prefix))
            .cloned()
            .collect()
    }
}

/// When the app's connections to its database last changed state: it moves whenever the app
/// runs a statement there.
async fn last_statement_at(app: &TestApp) -> Option<chrono::DateTime<chrono::Utc>> {
    let admin = crate::support::database::admin_connection().await;
    admin
        .query_one(
            "SELECT max(state_change) FROM pg_stat_activity WHERE datname = $1",
            &[&app.db.name],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[tokio::test]
async fn a_cached_profile_read_costs_one_redis_round_trip_and_no_postgres_statement() {
    let app = TestApp::spawn().await;
    let ana = app.register("ana@example.com").await;
    // The first reads cache the token generation and the profile.
    for _ in 0..2 {
        let res = app
            .get_with_token("/api/v1/users/me", &ana.access_token)
            .await;
        assert_eq!(res.status, 200);
    }
    let prefix = app.state.config.redis_key_prefix.clone();
    let monitor = RedisMonitor::start().await;
    let before = last_statement_at(&app).await;

    let res = app
        .get_with_token("/api/v1/users/me", &ana.access_token)
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json()["email"], "ana@example.com");
    assert!(res.header("ratelimit").is_some(), "the limiter counted it");

    let lines = monitor.lines_naming(&prefix).await;
    let sent: Vec<&String> = lines.iter().filter(|l| !l.contains(" lua]")).collect();
    assert_eq!(sent.len(), 1, "one command sent to Redis: {lines:#?}");
    assert!(sent[0].contains("\"EVALSHA\""), "{lines:#?}");
    let id = &ana.id;
    for read in [
        "\"GET\"",
        &format!("gen:{id}"),
        &format!("user:{id}"),
        "deny:",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(" lua]") && l.contains(read)),
            "the script read {read}: {lines:#?}"
        );
    }
    assert_eq!(
        last_statement_at(&app).await,
        before,
        "no statement reached Postgres"
    );
}

#[tokio::test]
async fn a_token_naming_someone_else_reads_nothing_of_theirs() {
    // The limiter reads ahead for the subject a token claims before the token is verified; a
    // forged token naming another user must still get nothing but 401.
    let app = TestApp::spawn().await;
    let ana = app.register("ana@example.com").await;
    let bob = app.register("bob@example.com").await;
    let res = app
        .get_with_token("/api/v1/users/me", &bob.access_token)
        .await;
    assert_eq!(res.status, 200, "bob's profile is cached");
    let [header, _, signature] = ana
        .access_token
        .splitn(3, '.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("a JWT");
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(
        &engine
            .decode(ana.access_token.split('.').nth(1).expect("payload"))
            .expect("base64"),
    )
    .expect("claims");
    claims["sub"] = Value::String(bob.id.clone());
    let forged = format!("{header}.{}.{signature}", engine.encode(claims.to_string()));
    let res = app.get_with_token("/api/v1/users/me", &forged).await;
    assert_eq!(res.status, 401);
    assert!(!res.text().contains("bob@example.com"), "{}", res.text());
}
