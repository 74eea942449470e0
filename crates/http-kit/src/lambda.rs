//! A route group's `main` on Lambda. It needs nothing of the domain, so that a function without
//! callers to authenticate (health) links no password hashing and no token code.

use std::future::Future;

use axum::Router;
use platform::Platform;

/// A route group's whole `main` on Lambda, run once per cold start: settings (and secrets),
/// logs, pools, the group's own state and routes, then invocations until shutdown.
pub async fn serve_on_lambda<F, Fut>(routes: F) -> Result<(), lambda_http::Error>
where
    F: FnOnce(Platform) -> Fut,
    Fut: Future<Output = anyhow::Result<Router>>,
{
    platform::install_crypto_provider();
    let (config, refresh) = platform::secrets::load_from_env().await?;
    platform::telemetry::init(&config.log_level);
    platform::error_tracking::init(&config);
    let platform = Platform::with_refresh(config, refresh).await?;
    close_on_shutdown(platform.clone()).await;
    let routes = routes(platform.clone()).await?;
    run_on_lambda(routes, &platform).await
}

/// Lambda sends SIGTERM before it freezes an instance for good, but only to a function that has
/// an extension registered: `lambda_runtime` registers a no-op one and runs this hook on the
/// signal. The pools close, the shutdown line says how many connections they held, and the last
/// log lines are flushed before the runtime exits the process.
pub async fn close_on_shutdown(platform: Platform) {
    lambda_runtime::spawn_graceful_shutdown_handler(move || async move {
        let closed = platform.close();
        tracing::info!(connections = closed, "shutdown: database pools closed");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })
    .await;
}

/// Runs a route group on Lambda: wraps it in the common layers and serves invocations.
pub async fn run_on_lambda(routes: Router, platform: &Platform) -> Result<(), lambda_http::Error> {
    let app = crate::app(routes, platform);
    platform::metrics::mark_ready();
    lambda_http::run(app).await
}
