//! The whole API in one process: every route group merged, for the local server and the tests.
//! On Lambda each group runs alone; this crate only merges what they expose.

pub mod seed;

use axum::Router;
use platform::Platform;

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
