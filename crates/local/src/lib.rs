//! The whole API in one process: every route group merged, for the local server and the tests.
//! On Lambda each group runs alone; this crate only merges what they expose.

pub mod seed;
pub mod site;

use axum::Router;
use platform::Platform;
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, Server};

/// Every route group's routes, each with its own state, without the common layers.
pub async fn routes(platform: &Platform) -> anyhow::Result<Router> {
    Ok(Router::new()
        .merge(health::routes(platform.clone()).await?)
        .merge(auth::routes(platform.clone()).await?)
        .merge(users::routes(platform.clone()).await?)
        .merge(uploads::routes(platform.clone()).await?))
}

/// The servable app: all routes plus the common layers, exactly as each function serves its own.
pub async fn app(platform: &Platform) -> anyhow::Result<Router> {
    Ok(http_kit::app(routes(platform).await?, platform))
}

/// The whole API's OpenAPI 3.1 document: every route group's declarations, completed with what
/// the shared layers and extractors answer. `cargo run -p local --bin openapi` writes it to
/// `docs/openapi.json`, which the health function serves and a test keeps equal to this.
pub fn openapi() -> OpenApi {
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Backend API")
                .version("1.0.0")
                .description(Some(
                    "A production backend for a web application, built as Rust functions on AWS \
                     Lambda behind API Gateway (HTTP API) and CloudFront, with RDS Postgres, \
                     ElastiCache Redis and S3. Errors are RFC 9457 `application/problem+json`; \
                     every response carries `X-Request-Id` and security headers; every route but \
                     `/health` and `/ready` is rate limited per client IP.",
                ))
                .license(Some(
                    LicenseBuilder::new()
                        .name("MIT")
                        .identifier(Some("MIT"))
                        .build(),
                ))
                .build(),
        )
        .servers(Some([Server::new("/")]))
        .build();
    for part in [
        health::openapi_part(),
        auth::openapi_part(),
        users::openapi_part(),
        uploads::openapi_part(),
    ] {
        doc.merge(part);
    }
    http_kit::openapi::complete(&mut doc);
    doc
}

/// The document as committed: pretty JSON with a final newline.
pub fn openapi_json() -> String {
    let mut text = serde_json::to_string_pretty(&openapi()).expect("the document serializes");
    text.push('\n');
    text
}

/// Where the committed document lives.
pub fn openapi_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
}

/// Where migration files live: `MIGRATIONS_DIR`, else `./migrations`, else the repository's.
pub fn migrations_dir() -> std::path::PathBuf {
    if let Ok(dir) = std::env::var("MIGRATIONS_DIR") {
        return dir.into();
    }
    let local = std::path::PathBuf::from("migrations");
    if local.is_dir() {
        local
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
    }
}
