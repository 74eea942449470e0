//! `GET /health`, `GET /ready`, the OpenAPI document at `GET /api/v1/openapi.json` and its
//! interactive reference at `GET /api/docs`.
//!
//! `/health` checks Postgres and Redis in parallel, each under its own short timeout, so a hung
//! dependency turns the answer into a fast 503, never a slow one. Concurrent probes share one
//! check in flight, and a result is reused for at most [`REUSE_FOR`]: a flood of `/health`
//! (unauthenticated, never rate limited) costs at most one `SELECT 1` and one `PING` a second.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{SecondsFormat, Utc};
use platform::Platform;
use serde::Serialize;
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Each dependency check gives up after this long.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one check's result answers later probes, counted from when the check started: no
/// answer reports the dependencies as they were more than this long ago.
pub const REUSE_FOR: Duration = Duration::from_secs(1);

/// The newest check of this process, shared by concurrent probes. The lock is held while a check
/// runs, so probes that arrive meanwhile wait for it instead of starting their own. (A few lines
/// over tokio's mutex: no well-kept crate does single flight with a freshness bound this small.)
#[derive(Default)]
struct Probe {
    last: tokio::sync::Mutex<Option<Checked>>,
}

#[derive(Clone, Copy)]
struct Checked {
    started: Instant,
    finished: Instant,
    database: bool,
    redis: bool,
}

impl Probe {
    async fn check(&self, state: &Platform) -> Checked {
        let arrived = Instant::now();
        let mut last = self.last.lock().await;
        // Fresh enough, or finished while this probe waited for it (then it is at most one
        // check's timeout old, and running another would queue every waiting probe behind it).
        if let Some(checked) = *last
            && (checked.started.elapsed() < REUSE_FOR || checked.finished >= arrived)
        {
            return checked;
        }
        let started = Instant::now();
        let (database, redis) = tokio::join!(check_database(state), check_redis(state));
        let checked = Checked {
            started,
            finished: Instant::now(),
            database,
            redis,
        };
        *last = Some(checked);
        checked
    }
}

/// The whole API's document, generated from every route group's declarations by
/// `cargo run -p local --bin openapi` (this function cannot import the other groups).
const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// The health group's routes, each declared once with its handler: the router and the OpenAPI
/// operations both come from here.
pub fn api() -> OpenApiRouter<Platform> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(openapi))
        .routes(routes!(docs))
        .routes(routes!(docs_file))
}

/// This group's part of the OpenAPI document.
pub fn openapi_part() -> OpenApi {
    let mut doc = api().into_openapi();
    doc.tags = Some(vec![
        utoipa::openapi::tag::TagBuilder::new()
            .name("health")
            .description(Some(
                "Liveness, readiness, this document and its interactive reference.",
            ))
            .build(),
    ]);
    doc
}

/// The health routes need nothing beyond the platform: no token keys, no S3.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    Ok(router(platform))
}

/// The routes of [`api`], without building their OpenAPI operations
/// ([`http_kit::declared`]): this group serves the committed document ([`OPENAPI`]).
pub fn router(state: Platform) -> Router {
    http_kit::declared_routes!(health, ready, openapi, docs, docs_file)
        .layer(Extension(Arc::new(Probe::default())))
        .with_state(state)
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "timestamp": "2024-01-01T00:00:00.000Z", "uptime": 12.345, "checks": {"database": "ok", "redis": "ok"}}))]
struct Health {
    #[schema(value_type = HealthStatus)]
    status: &'static str,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    timestamp: String,
    /// Seconds since the process started.
    #[schema(minimum = 0)]
    uptime: f64,
    checks: Checks,
}

/// `ok` when both checks pass, `degraded` otherwise.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum HealthStatus {
    Ok,
    Degraded,
}

#[derive(Debug, Serialize, ToSchema)]
struct Checks {
    #[schema(value_type = CheckResult)]
    database: &'static str,
    #[schema(value_type = CheckResult)]
    redis: &'static str,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum CheckResult {
    Ok,
    Error,
}

/// Liveness and dependency health
///
/// Checks Postgres and Redis in parallel, each under its own short timeout, so a hung
/// dependency makes the answer a fast 503, never a slow one. Concurrent requests share one
/// check, and a check's result answers for at most 1 s after it started. Not rate limited.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    operation_id = "getHealth",
    responses(
        (status = 200, description = "Postgres and Redis both answered within their timeouts.", body = Health),
        (status = 503, description = "At least one dependency failed or did not answer within its own short timeout (about 1 s). The body has the same shape, with `status` `degraded`.", body = Health),
    )
)]
async fn health(
    State(state): State<Platform>,
    Extension(probe): Extension<Arc<Probe>>,
) -> Response {
    let Checked {
        database, redis, ..
    } = probe.check(&state).await;
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

#[derive(Serialize, ToSchema)]
struct Ready {
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
}

/// Readiness
///
/// Answers without touching any dependency. Not rate limited.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    operation_id = "getReady",
    responses((status = 200, description = "The process is up and serving requests.", body = Ready))
)]
async fn ready() -> Json<Ready> {
    Json(Ready { status: "ready" })
}

/// This OpenAPI document
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    operation_id = "getOpenApi",
    responses((status = 200, description = "The OpenAPI 3.1 document describing this API.", content_type = "application/json", body = Object))
)]
async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The interactive API reference
///
/// Swagger UI over this document, with its files built into the function: nothing is loaded
/// from another site.
#[utoipa::path(
    get,
    path = "/api/docs",
    tag = "health",
    operation_id = "getDocs",
    responses((status = 200, description = "The reference's page.", content_type = "text/html", body = String))
)]
async fn docs() -> Response {
    docs_response("index.html")
}

/// A file of the interactive API reference (scripts, styles, icons)
#[utoipa::path(
    get,
    path = "/api/docs/{file}",
    tag = "health",
    operation_id = "getDocsFile",
    params(("file" = String, Path, description = "A file name, such as `swagger-ui.css`.")),
    responses((
        status = 200,
        description = "The file.",
        content(
            (String = "text/css"),
            (String = "text/javascript"),
            (String = "text/html"),
            (String = "image/png"),
        )
    ))
)]
async fn docs_file(Path(file): Path<String>) -> Response {
    docs_response(&file)
}

/// The page's own files, with a policy that lets them run (the API's default policy lets no
/// script or style load at all).
const DOCS_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'";

fn docs_response(file: &str) -> Response {
    static CONFIG: std::sync::LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> =
        std::sync::LazyLock::new(|| {
            // The base layout: the standalone one's top bar picks another document, and
            // there is only this one (functions/health/swagger-ui/swagger-initializer.js).
            Arc::new(utoipa_swagger_ui::Config::from("/api/v1/openapi.json").use_base_layout())
        });
    // The bundles the page never loads are built in empty (.cargo/config.toml): not found.
    let Ok(Some(found)) = utoipa_swagger_ui::serve(file, CONFIG.clone()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if found.bytes.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The page (functions/health/swagger-ui/index.html) carries its own `<base>`: served at
    // `/api/docs`, without a trailing slash, its relative links need one.
    let bytes = match found.bytes {
        std::borrow::Cow::Borrowed(built_in) => axum::body::Bytes::from_static(built_in),
        std::borrow::Cow::Owned(formatted) => formatted.into(),
    };
    let content_type = HeaderValue::from_str(&found.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (
        [
            (header::CONTENT_TYPE, content_type),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_POLICY),
            ),
        ],
        bytes,
    )
        .into_response()
}
