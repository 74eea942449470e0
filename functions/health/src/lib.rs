//! `GET /health`, `GET /ready` and `GET /api/v1/openapi.json`.
//!
//! `/health` checks Postgres and Redis in parallel, each under its own short timeout, so a hung
//! dependency turns the answer into a fast 503, never a slow one.

use std::time::Duration;

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::{SecondsFormat, Utc};
use platform::Platform;
use serde::Serialize;

/// Each dependency check gives up after this long.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

const OPENAPI: &str = include_str!("../openapi.json");

/// Every (method, path) this function serves: the template's HTTP API, the cargo-lambda watch
/// router and the OpenAPI document are checked against this list by the test suite.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/api/v1/openapi.json"),
];

/// The health routes need nothing beyond the platform: no token keys, no S3.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    Ok(router(platform))
}

pub fn router(state: Platform) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    timestamp: String,
    uptime: f64,
    checks: Checks,
}

#[derive(Debug, Serialize)]
struct Checks {
    database: &'static str,
    redis: &'static str,
}

async fn health(State(state): State<Platform>) -> Response {
    let (database, redis) = tokio::join!(check_database(&state), check_redis(&state));
    let healthy = database && redis;
    let body = Health {
        status: if healthy { "ok" } else { "degraded" },
        timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        uptime: (state.started_at.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        checks: Checks {
            database: verdict(database),
            redis: verdict(redis),
        },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

async fn check_database(state: &Platform) -> bool {
    let check = async {
        let conn = state.db.get().await?;
        conn.query_typed("SELECT 1", &[]).await?;
        anyhow::Ok(())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = format!("{err:#}"), "health: database check failed");
            false
        }
        Err(_) => {
            tracing::warn!("health: database check timed out");
            false
        }
    }
}

async fn check_redis(state: &Platform) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, state.cache.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "health: redis check failed");
            false
        }
        Err(_) => {
            tracing::warn!("health: redis check timed out");
            false
        }
    }
}

async fn ready() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ready" }))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
