//! The whole API in one process: every route group merged, for the local server and the tests.
//! On Lambda each group runs alone; this crate only merges what they expose.

pub mod seed;

use axum::Router;
use shared::AppState;

/// Every route group's routes, without the common layers.
pub fn routes(state: &AppState) -> Router {
    Router::new()
        .merge(health::router(state.clone()))
        .merge(auth::router(state.clone()))
        .merge(users::router(state.clone()))
        .merge(uploads::router(state.clone()))
}

/// The servable app: all routes plus the common layers, exactly as each function serves its own.
pub fn app(state: &AppState) -> Router {
    shared::http::app(routes(state), state)
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
