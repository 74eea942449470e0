//! The library every function links: configuration, telemetry, Postgres, Redis, HTTP layers and
//! errors, and (behind features) the migration engine, S3 and backups.

#[cfg(feature = "auth")]
pub mod auth;
#[cfg(any(feature = "s3", feature = "secrets"))]
pub mod aws;
#[cfg(feature = "backup")]
pub mod backup;
pub mod cache;
pub mod config;
pub mod db;
pub mod http;
pub mod metrics;
#[cfg(feature = "migrate")]
pub mod migrate;
#[cfg(feature = "secrets")]
pub mod secrets;
pub mod state;
#[cfg(feature = "s3")]
pub mod storage;
pub mod telemetry;
#[cfg(feature = "s3")]
pub mod uploads;
pub mod users;

pub use state::AppState;

/// A route group's whole `main` on Lambda, run once per cold start: settings (and secrets),
/// logs, pools, then invocations until shutdown.
#[cfg(feature = "secrets")]
pub async fn serve_on_lambda(
    router: fn(AppState) -> axum::Router,
) -> Result<(), lambda_http::Error> {
    state::install_crypto_provider();
    let (config, refresh) = secrets::load_from_env().await?;
    telemetry::init(&config.log_level);
    let state = AppState::with_refresh(config, refresh).await?;
    close_on_shutdown(state.clone()).await;
    run_on_lambda(router(state.clone()), &state).await
}

/// Lambda sends SIGTERM before it freezes an instance for good, but only to a function that has
/// an extension registered: `lambda_runtime` registers a no-op one and runs this hook on the
/// signal. The pools close, the shutdown line says how many connections they held, and the last
/// log lines are flushed before the runtime exits the process.
#[cfg(feature = "secrets")]
pub async fn close_on_shutdown(state: AppState) {
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        let closed = state.close();
        tracing::info!(connections = closed, "shutdown: database pools closed");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })
    .await;
}

/// Runs a route group on Lambda: wraps it in the common layers and serves invocations.
pub async fn run_on_lambda(
    routes: axum::Router,
    state: &AppState,
) -> Result<(), lambda_http::Error> {
    lambda_http::run(http::app(routes, state)).await
}
