//! Graceful shutdown, from outside: real binaries, real signals.
//!
//! - On Lambda, a function gets SIGTERM before its instance is stopped; it closes its pools
//!   (Postgres frees the backends at once) and flushes its logs.
//! - The local server finishes a request already in flight when SIGTERM arrives, then exits 0.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    TestDatabase,
    database::admin_connection,
    runtime_api::{Outcome, RuntimeApi, health_event},
    workspace_bin,
};

async fn backends_of(db: &TestDatabase) -> i64 {
    let admin = admin_connection().await;
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&db.name],
        )
        .await
        .expect("pg_stat_activity");
    row.get(0)
}

/// The health binary under `api`, its output discarded.
fn quiet_health(api: &RuntimeApi, db: &TestDatabase) -> tokio::process::Child {
    api.function("health", "health", db)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the health binary")
}

/// Starts the health binary under `api` and waits for it to end its init with an error, as
/// Lambda expects of a failed init, without asking for an event.
async fn init_fails_before_its_first_event(api: &RuntimeApi, db: &TestDatabase) {
    let mut function = quiet_health(api, db);
    let status = tokio::time::timeout(Duration::from_secs(10), function.wait())
        .await
        .expect("the function ends on its own")
        .expect("exit status");
    assert!(
        !status.success(),
        "a failed init exits with an error: {status}"
    );
    assert_eq!(api.polls(), 0, "no event was asked for");
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "SIGTERM delivered");
}

/// The extension is registered on another worker while the routes are built. If Lambda refuses
/// it, the function must not go on without the SIGTERM it would never get: it ends before it
/// asks for its first event, with an error, as Lambda expects of a failed init.
#[tokio::test]
async fn a_function_whose_extension_is_refused_exits_before_its_first_event() {
    let db = TestDatabase::create().await;
    let api = RuntimeApi::start().await;
    api.refuse_extensions();
    init_fails_before_its_first_event(&api, &db).await;
}

/// A registration that answers no identifier leaves the extension unable to poll: the function
/// ends its init with an error, as when the registration is refused.
#[tokio::test]
async fn a_function_whose_extension_gets_no_identifier_exits_before_its_first_event() {
    let db = TestDatabase::create().await;
    let api = RuntimeApi::start().await;
    api.withhold_extension_ids();
    init_fails_before_its_first_event(&api, &db).await;
}

/// An answer to the extension's poll ends its polling: a Runtime API that answers SHUTDOWN at
/// once gets one poll, not a loop, and the function goes on serving.
#[tokio::test]
async fn the_extension_stops_polling_after_a_shutdown_event() {
    let db = TestDatabase::create().await;
    let api = RuntimeApi::start().await;
    api.shut_extensions_down();
    let mut function = quiet_health(&api, &db);
    let id = api.invoke(health_event());
    let Outcome::Response(answer) = api.outcome(&id, Duration::from_secs(30)).await else {
        panic!("the health invocation is answered");
    };
    assert_eq!(answer["statusCode"], json!(200), "{answer}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.extension_polls(), 1, "one poll, then none");
    function.kill().await.expect("stopping the function");
}

#[tokio::test]
async fn a_function_closes_its_database_connections_and_flushes_its_logs_on_sigterm() {
    let db = TestDatabase::create().await;
    let api = RuntimeApi::start().await;
    let mut function = api
        .function("health", "health", &db)
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the health binary");

    let event = health_event();
    let id = api.invoke(event);
    let Outcome::Response(answer) = api.outcome(&id, Duration::from_secs(30)).await else {
        panic!("the health invocation is answered");
    };
    assert_eq!(answer["statusCode"], json!(200), "{answer}");
    assert!(
        backends_of(&db).await >= 1,
        "the /health check left a pooled connection open"
    );
    assert_eq!(
        api.extensions_registered(),
        1,
        "the function registered the extension that makes Lambda send SIGTERM"
    );
    // Lambda counts an extension's init done when it asks for its next event.
    let polled = async {
        while api.extension_polls() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), polled)
        .await
        .expect("the extension waits on its event/next with its identifier");

    sigterm(&function);
    let status = tokio::time::timeout(Duration::from_secs(10), function.wait())
        .await
        .expect("the function exits within 10 s of SIGTERM")
        .expect("exit status");
    assert!(status.success(), "a graceful stop exits 0, got {status}");

    let mut stdout = String::new();
    let mut out = function.stdout.take().expect("stdout");
    out.read_to_string(&mut stdout).await.expect("stdout");
    let closed = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "shutdown: database pools closed")
        .unwrap_or_else(|| panic!("no shutdown line in the logs:\n{stdout}"));
    assert!(
        closed["connections"].as_u64() >= Some(1),
        "the hook closed the pooled connection: {closed}"
    );

    let mut gone = false;
    for _ in 0..40 {
        if backends_of(&db).await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "Postgres still holds the function's connections");
}

#[tokio::test]
async fn the_local_server_answers_a_request_in_flight_at_sigterm_and_exits_0() {
    let db = TestDatabase::create().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("addr").port()
    };
    let mut server = tokio::process::Command::new(workspace_bin("local"))
        .env("APP_ENV", "test")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", crate::support::redis_url())
        .env(
            "REDIS_KEY_PREFIX",
            crate::support::fresh_key_prefix("shutdown"),
        )
        .env("JWT_SECRET", "test-secret-that-is-long-enough-0123456789")
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the local server");

    let addr = format!("127.0.0.1:{port}");
    let mut connected = None;
    for _ in 0..200 {
        if let Ok(conn) = tokio::net::TcpStream::connect(&addr).await {
            connected = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn = connected.expect("the local server listens");

    // A request whose body is still arriving when SIGTERM comes: the server has accepted it and
    // must finish it. The body is a login that fails (unknown account), answered 401.
    let body = br#"{"email":"nobody@example.com","password":"not-the-password-123!"}"#;
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    conn.write_all(&body[..10]).await.expect("first bytes");
    tokio::time::sleep(Duration::from_millis(200)).await;

    sigterm(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write_all(&body[10..])
        .await
        .expect("the rest of the body");

    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut answer))
        .await
        .expect("the in-flight request is answered")
        .expect("reading the answer");
    assert!(
        answer.starts_with("HTTP/1.1 401"),
        "the in-flight login got its real answer, got: {answer}"
    );

    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the server exits after its last request")
        .expect("exit status");
    assert!(status.success(), "a graceful stop exits 0, got {status}");
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "nothing listens after the stop"
    );
}
