//! Benchmark of login and of token verification (not a test: it prints figures).
//!
//! `cargo bench --bench auth` against the local Postgres and Redis. It measures, in-process and
//! in the release profile:
//! - access token signing and verification (HS256), alone;
//! - argon2id hashing and verification (what a login costs in CPU);
//! - `POST /api/v1/auth/login` and `GET /api/v1/users/me` through the real router, with the real
//!   database and Redis (rate limiter, revocation check, profile cache).

use std::time::{Duration, Instant};

use axum::body::Body;
use domain::sessions::TokenKeys;
use http::{Method, Request, header};
use migrator::Migrator;
use platform::{
    Platform,
    config::Config,
    db::{self, PoolSettings},
};
use secrecy::SecretString;
use tower::ServiceExt;

const PASSWORD: &str = "violet-canyon-drifts-47";

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    let pct = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "{name:<44} n={n:<6} mean={:>10.3?} p50={:>10.3?} p95={:>10.3?} p99={:>10.3?}",
        total / u32::try_from(n).unwrap_or(1),
        pct(0.50),
        pct(0.95),
        pct(0.99)
    );
}

fn time<F: FnMut()>(n: usize, mut f: F) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::install_crypto_provider();
    let url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/backend_bench".into());
    let secret_url = SecretString::from(url.clone());
    let settings = PoolSettings {
        max_size: 1,
        ..PoolSettings::from_config(&Config::from_lookup(|_| None)?)
    };
    db::ensure_database(&secret_url, &settings).await?;
    {
        let mut conn = db::connect_once(&secret_url, &settings).await?;
        let migrator = Migrator::from_dir(&local::migrations_dir())?;
        migrator.reset(&mut conn).await?;
    }
    let prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(url.clone()),
        "REDIS_KEY_PREFIX" => Some(prefix.clone()),
        "RATE_LIMIT_MAX" => Some("100000000".into()),
        "LOG_LEVEL" => Some("warn".into()),
        "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".into()),
        _ => None,
    })?;
    let state = Platform::new(config).await?;
    let tokens = TokenKeys::from_config(state.config.clone())?;
    let app = local::app(&state).await?;

    // Tokens alone.
    let user = uuid::Uuid::now_v7();
    let token = tokens.issue(user, 0, None)?.token;
    report(
        "HS256 access token: sign",
        time(20_000, || {
            std::hint::black_box(tokens.issue(user, 0, None).ok());
        }),
    );
    report(
        "HS256 access token: verify",
        time(20_000, || {
            std::hint::black_box(tokens.verify(&token).ok());
        }),
    );

    // Password hashing, as register and login pay it.
    let slots = platform::work::Slots::per_core(std::time::Duration::from_secs(60));
    let hash = domain::accounts::password::hash(&slots, PASSWORD).await?;
    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        domain::accounts::password::hash(&slots, PASSWORD).await?;
        samples.push(started.elapsed());
    }
    report("argon2id hash (m=19456, t=2, p=1)", samples);
    let mut samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        domain::accounts::password::verify(&slots, PASSWORD, &hash).await?;
        samples.push(started.elapsed());
    }
    report("argon2id verify", samples);

    // Through the router, with Postgres and Redis.
    let register = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/register")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::json!({"email": "bench@example.com", "password": PASSWORD, "name": "Bench"}).to_string()))?;
    let res = app.clone().oneshot(register).await?;
    anyhow::ensure!(res.status() == 201, "register failed: {}", res.status());
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await?;
    let access: serde_json::Value = serde_json::from_slice(&body)?;
    let access = access["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let login_body =
        serde_json::json!({"email": "bench@example.com", "password": PASSWORD}).to_string();
    let mut samples = Vec::new();
    for _ in 0..50 {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(login_body.clone()))?;
        let started = Instant::now();
        let res = app.clone().oneshot(req).await?;
        let _ = axum::body::to_bytes(res.into_body(), 1 << 20).await?;
        samples.push(started.elapsed());
    }
    report("POST /api/v1/auth/login (router, PG, Redis)", samples);

    let mut samples = Vec::new();
    for _ in 0..2_000 {
        let req = Request::builder()
            .uri("/api/v1/users/me")
            .header(header::AUTHORIZATION, format!("Bearer {access}"))
            .body(Body::empty())?;
        let started = Instant::now();
        let res = app.clone().oneshot(req).await?;
        anyhow::ensure!(res.status() == 200, "users/me failed: {}", res.status());
        let _ = axum::body::to_bytes(res.into_body(), 1 << 20).await?;
        samples.push(started.elapsed());
    }
    report("GET /api/v1/users/me (router, PG, Redis)", samples);
    Ok(())
}
