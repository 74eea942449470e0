//! Failures survived: each test breaks a dependency of its own (a throwaway Postgres or Redis,
//! or the test's own connections) and checks what a client would see.

use std::time::{Duration, Instant};

use axum::{Router, body::Body, extract::State, routing::get};
use http::Method;
use http_kit::ApiError;
use platform::Platform as AppState;

use crate::support::{
    Settings, TestApp,
    proxy::HoldingProxy,
    request, send_to,
    throwaway::{PgOptions, TestCa, ThrowawayPostgres, ThrowawayRedis},
};

async fn health(app: &TestApp) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let res = app.get("/health").await;
    (res.status.as_u16(), res.json(), started.elapsed())
}

#[tokio::test]
async fn postgres_over_tls_is_verified_against_the_configured_ca() {
    let ca = TestCa::new();
    let cert = ca.server_cert("good", "127.0.0.1");
    let pg = ThrowawayPostgres::start(&PgOptions { tls: Some(cert) });
    let url = format!("{}?sslmode=verify-full", pg.superuser_url());
    let ca_path = ca.ca_pem().display().to_string();
    let app = TestApp::spawn_with(
        Settings::default()
            .set("DATABASE_URL", &url)
            .set("DATABASE_CA_CERT", &ca_path),
    )
    .await;
    let (status, body, _) = health(&app).await;
    assert_eq!(status, 200, "{body}");
    let conn = app.state.db.get().await.expect("connection");
    let ssl: bool = conn
        .query_typed_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(ssl, "the connection is encrypted");
}

#[tokio::test]
async fn a_server_whose_certificate_does_not_match_is_refused() {
    let ca = TestCa::new();
    let wrong_name = ca.server_cert("other", "db.example.com");
    let pg = ThrowawayPostgres::start(&PgOptions {
        tls: Some(wrong_name),
    });
    let url = format!("{}?sslmode=verify-full", pg.superuser_url());
    let ca_path = ca.ca_pem().display().to_string();
    let app = TestApp::spawn_with(
        Settings::default()
            .set("DATABASE_URL", &url)
            .set("DATABASE_CA_CERT", &ca_path),
    )
    .await;
    let (status, body, _) = health(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["database"], "error");

    // A certificate from a CA we were not told to trust is refused too.
    let unknown = TestCa::new();
    let pg2 = ThrowawayPostgres::start(&PgOptions {
        tls: Some(unknown.server_cert("good", "127.0.0.1")),
    });
    let url = format!("{}?sslmode=require", pg2.superuser_url());
    let app = TestApp::spawn_with(
        Settings::default()
            .set("DATABASE_URL", &url)
            .set("DATABASE_CA_CERT", &ca_path),
    )
    .await;
    assert_eq!(health(&app).await.0, 503);
}

#[tokio::test]
async fn a_postgres_restart_degrades_health_and_recovers_without_a_restart() {
    let pg = ThrowawayPostgres::start(&PgOptions::default());
    let app =
        TestApp::spawn_with(Settings::default().set("DATABASE_URL", &pg.superuser_url())).await;
    assert_eq!(health(&app).await.0, 200);

    pg.stop();
    // The healthy result answers for at most this long; the next check sees the outage.
    tokio::time::sleep(health::REUSE_FOR).await;
    let (status, body, took) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["database"], "error");
    assert!(took < Duration::from_secs(2), "no request hangs: {took:?}");
    // An API route that needs the database says so, within the pool's timeouts (this server
    // holds no schema: the route fails before its first query).
    let started = Instant::now();
    let res = app
        .login("restart@example.com", "violet-canyon-drifts-47")
        .await;
    let took = started.elapsed();
    assert_eq!(res.status, 503, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.problem().code, "service_unavailable");
    assert!(took < Duration::from_secs(4), "no request hangs: {took:?}");

    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, took) = health(&app).await;
        assert!(took < Duration::from_secs(2), "no request hangs: {took:?}");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "health did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many server processes serve connections to `dbname`, besides the admin's own.
async fn backends_of(admin: &tokio_postgres::Client, dbname: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&dbname],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

#[tokio::test]
async fn killed_connections_are_replaced_before_the_next_request() {
    const POOL: usize = 4;
    // The app reaches its database through a proxy that can hide a kill from it: the pool cannot
    // have noticed the kill by itself, only by checking a connection before handing it out.
    let db = crate::support::TestDatabase::create().await;
    let proxy = HoldingProxy::start(&db.url).await;
    let app = TestApp::spawn_with(
        Settings::default()
            .set("DATABASE_URL", &proxy.url_for(&db.url))
            .set("DB_POOL_MAX", &POOL.to_string()),
    )
    .await;
    let session = app.register("killed@example.com").await;
    // Fill the pool: all its connections open at once, then back in the pool, idle.
    let held = futures_util::future::join_all((0..POOL).map(|_| app.state.db.get())).await;
    drop(
        held.into_iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("connections"),
    );
    let admin = crate::support::database::admin_connection().await;
    assert_eq!(backends_of(&admin, &db.name).await, POOL as i64);

    // Kill every one of them behind the pool's back.
    proxy.hold_back_goodbyes();
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&db.name],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, POOL as i64, "every pooled connection was killed");
    assert_eq!(backends_of(&admin, &db.name).await, 0, "they are gone");

    // The very next request is served (no retry): the pool checked what it handed out.
    let res = app.login(&session.email, &session.password).await;
    assert_eq!(
        res.status,
        200,
        "the first request after the kill: {}",
        String::from_utf8_lossy(&res.body)
    );
    // And so are requests that need several connections at once.
    let logins = futures_util::future::join_all(
        (0..POOL).map(|_| app.login(&session.email, &session.password)),
    )
    .await;
    let statuses: Vec<u16> = logins.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses,
        vec![200; POOL],
        "concurrent requests after the kill"
    );
    assert_eq!(health(&app).await.0, 200);
}

#[tokio::test]
async fn frozen_connections_cost_one_recycle_timeout_each_and_are_replaced() {
    const POOL: usize = 2;
    const RECYCLE_TIMEOUT: Duration = Duration::from_secs(1);
    // A frozen server (or a black-holed route) never answers and never closes: only the pool's
    // check, bounded by its recycle timeout, tells such a connection from a live one.
    let db = crate::support::TestDatabase::create().await;
    let proxy = HoldingProxy::start(&db.url).await;
    let app = TestApp::spawn_with(
        Settings::default()
            .set("DATABASE_URL", &proxy.url_for(&db.url))
            .set("DB_POOL_MAX", &POOL.to_string()),
    )
    .await;
    let session = app.register("frozen@example.com").await;
    let held = futures_util::future::join_all((0..POOL).map(|_| app.state.db.get())).await;
    drop(
        held.into_iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("connections"),
    );
    proxy.freeze();

    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(15),
        app.login(&session.email, &session.password),
    )
    .await
    .expect("the first request after the freeze hung: a frozen connection was handed out, or checked without a time limit");
    let took = started.elapsed();
    assert_eq!(
        res.status,
        200,
        "the first request after the freeze: {}",
        String::from_utf8_lossy(&res.body)
    );
    // Each frozen connection costs one recycle timeout, then a new connection is opened.
    let bound = RECYCLE_TIMEOUT * u32::try_from(POOL).expect("small") + Duration::from_secs(3);
    assert!(took < bound, "{took:?} (bound {bound:?})");
    let logins = futures_util::future::join_all(
        (0..POOL).map(|_| app.login(&session.email, &session.password)),
    )
    .await;
    let statuses: Vec<u16> = logins.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses,
        vec![200; POOL],
        "concurrent requests after the freeze"
    );
}

#[tokio::test]
async fn redis_stopped_keeps_the_api_serving_and_recovers_by_itself() {
    let mut redis = ThrowawayRedis::start();
    let app = TestApp::spawn_with(
        Settings::default()
            .set("REDIS_URL", &redis.url())
            .set("RATE_LIMIT_MAX", "1000"),
    )
    .await;
    let session = app.register("redis@example.com").await;
    assert_eq!(health(&app).await.0, 200);

    redis.stop();
    tokio::time::sleep(health::REUSE_FOR).await;
    let (status, body, took) = health(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["redis"], "error");
    assert_eq!(body["checks"]["database"], "ok");
    assert!(took < Duration::from_secs(2));
    users_me_is_served_without_redis(&app, &session.access_token, Duration::from_secs(2)).await;
    let login = app.login(&session.email, &session.password).await;
    assert_eq!(login.status, 200);

    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if health(&app).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "redis did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let me = app
        .get_with_token("/api/v1/users/me", &session.access_token)
        .await;
    assert!(me.header("ratelimit").is_some(), "the limiter counts again");
}

/// A route that runs a query slower than the statement timeout.
async fn slow_query(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let conn = state.db.get().await?;
    conn.query_typed("SELECT pg_sleep(2)", &[]).await?;
    Ok("done")
}

/// A route that holds a connection for a while.
async fn hold_connection(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    let _conn = state.db.get().await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    Ok("held")
}

async fn probe(app: &TestApp, path: &str) -> (crate::support::TestResponse, Duration) {
    let routes = Router::new()
        .route("/probe/slow", get(slow_query))
        .route("/probe/hold", get(hold_connection))
        .with_state(app.state.clone());
    let router = http_kit::app(routes, &app.state);
    let started = Instant::now();
    let res = send_to(
        &router,
        request(Method::GET, path).body(Body::empty()).expect("req"),
    )
    .await;
    (res, started.elapsed())
}

#[tokio::test]
async fn a_statement_timeout_is_a_503_not_a_hang() {
    let app = TestApp::spawn_with(Settings::default().set("DB_STATEMENT_TIMEOUT", "200ms")).await;
    let (res, took) = probe(&app, "/probe/slow").await;
    assert_eq!(res.status, 503);
    assert_eq!(res.problem().code, "service_unavailable");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_within_the_wait_timeout() {
    let app = TestApp::spawn_with(Settings::default().set("DB_POOL_MAX", "1")).await;
    let holder = {
        let routes = Router::new()
            .route("/probe/hold", get(hold_connection))
            .with_state(app.state.clone());
        let router = http_kit::app(routes, &app.state);
        tokio::spawn(async move {
            send_to(
                &router,
                request(Method::GET, "/probe/hold")
                    .body(Body::empty())
                    .expect("req"),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (res, took) = probe(&app, "/probe/slow").await;
    assert_eq!(res.status, 503);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(holder.await.expect("holder").status, 200);
}

#[tokio::test]
async fn redis_answering_readonly_is_survived() {
    // A replica refuses writes with READONLY, as the old primary does after a failover.
    let primary = ThrowawayRedis::start();
    let replica =
        ThrowawayRedis::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let app = TestApp::spawn_with(Settings::default().set("REDIS_URL", &replica.url())).await;
    let session = app.register("readonly@example.com").await;
    let me = app
        .get_with_token("/api/v1/users/me", &session.access_token)
        .await;
    assert_eq!(
        me.status, 200,
        "writes refused by Redis never fail a request"
    );
    let res = app.logout(&session.access_token).await;
    assert_eq!(res.status, 204);
    assert_eq!(
        app.get_with_token("/api/v1/users/me", &session.access_token)
            .await
            .status,
        401,
        "logout still holds (Postgres)"
    );
}

#[tokio::test]
async fn a_readonly_answer_makes_the_client_reconnect() {
    let primary = ThrowawayRedis::start();
    let replica =
        ThrowawayRedis::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let app = TestApp::spawn_with(Settings::default().set("REDIS_URL", &replica.url())).await;
    let client_id = |app: &TestApp| {
        let cache = app.state.cache.clone();
        async move {
            cache
                .run_always(|mut conn| async move {
                    redis::cmd("CLIENT")
                        .arg("ID")
                        .query_async::<u64>(&mut conn)
                        .await
                })
                .await
                .expect("client id")
        }
    };
    let before = client_id(&app).await;
    // Every limited request writes to Redis: the replica refuses it.
    assert_eq!(app.get("/api/v1/openapi.json").await.status, 200);
    let after = client_id(&app).await;
    assert_ne!(
        before, after,
        "a new connection replaced the one that hit READONLY"
    );
}

#[tokio::test]
async fn a_redis_that_accepts_and_never_answers_costs_each_request_a_bounded_delay() {
    // Not a refused connection: a hung Redis (a frozen node, a black-holed security group)
    // accepts the connection and never answers a command.
    let addr = crate::support::hung_listener().await;
    let app = TestApp::spawn_with(
        Settings::default()
            .set("REDIS_URL", &format!("redis://{addr}"))
            .set("RATE_LIMIT_MAX", "1000"),
    )
    .await;

    let (status, body, took) = health(&app).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["redis"], "error");
    assert_eq!(body["checks"]["database"], "ok");
    assert!(took < Duration::from_secs(2), "/health took {took:?}");

    // Before the short circuit of `Cache::run`, each Redis call of a request waited out its own
    // timeout: 4.5 s for `/users/me`. Now a request pays for about one (500 ms and a retry).
    let started = Instant::now();
    let session = app.register("hung-redis@example.com").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "register took {:?}",
        started.elapsed()
    );
    users_me_is_served_without_redis(&app, &session.access_token, Duration::from_secs(2)).await;
}

/// `/users/me` answers 200 within `within` while Redis is unusable: the limiter let it through
/// (no `RateLimit` header) and the profile and revocation checks fell back to Postgres.
async fn users_me_is_served_without_redis(app: &TestApp, token: &str, within: Duration) {
    let started = Instant::now();
    let me = app.get_with_token("/api/v1/users/me", token).await;
    let took = started.elapsed();
    assert_eq!(me.status, 200, "the API keeps serving without Redis");
    assert!(
        me.header("ratelimit").is_none(),
        "the limiter let the request through"
    );
    assert!(took < within, "/users/me took {took:?}");
}

/// Password hashing runs at most the configured number at once, however many requests ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_password_hashes_run_at_once_than_the_limit() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let slots = platform::work::Slots::new(2, std::time::Duration::from_secs(120));
    let tasks: Vec<_> = (0..4 * cores.max(2))
        .map(|i| {
            let slots = slots.clone();
            tokio::spawn(async move {
                domain::accounts::password::hash(&slots, &format!("a-password-of-test-{i}")).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task").is_ok());
    }
    assert_eq!(slots.peak(), 2, "the limit was reached and never passed");
}

/// A request that cannot get a hashing slot within the wait is a 503 with `Retry-After`, never
/// an unbounded queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_too_long_for_a_hashing_slot_is_a_503_with_retry_after() {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(
            crate::support::Settings::default()
                .set("PASSWORD_HASH_CONCURRENCY", "1")
                .set("PASSWORD_HASH_WAIT", "1ms")
                .set("RATE_LIMIT_MAX", "100000"),
        )
        .await,
    );
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                app.post_json(
                    "/api/v1/auth/register",
                    &serde_json::json!({
                        "email": format!("busy{i}@example.com"),
                        "password": crate::support::STRONG_PASSWORD,
                        "name": "Busy",
                    }),
                )
                .await
            })
        })
        .collect();
    let mut busy = 0;
    for task in tasks {
        let res = task.await.expect("task");
        match res.status.as_u16() {
            201 => {}
            503 => {
                busy += 1;
                assert!(
                    res.header("retry-after")
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|s| s >= 1),
                    "{:?}",
                    res.headers
                );
                let problem = res.problem();
                assert_eq!(problem.code, "service_unavailable");
            }
            other => panic!("register answered {other}"),
        }
    }
    assert!(
        busy >= 1,
        "six hashes at once with one slot and no wait: some must be refused"
    );
}

/// The runtime every binary runs on bounds its blocking pool: a flood of blocking work (slow
/// DNS, a slow disk) waits in line instead of starting hundreds of threads.
#[test]
fn the_blocking_pool_runs_at_most_its_maximum_at_once() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let max = platform::work::MAX_BLOCKING_THREADS;
    let runtime = platform::work::runtime().expect("runtime");
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..2 * max)
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                tokio::task::spawn_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("blocking task");
        }
    });
    assert_eq!(
        peak.load(Ordering::SeqCst),
        max,
        "the pool filled up to its bound and never passed it"
    );
}
