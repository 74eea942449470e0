//! `local`: every route group in one process on 127.0.0.1:$PORT, for development.
//!
//! In development and test it first creates the database if needed and applies pending
//! migrations. When the web client is built (`web/dist`, or `WEB_DIST`), it serves it at `/`
//! beside the API (`local::site`). It stops gracefully on Ctrl-C and SIGTERM: in-flight requests finish first.

use std::net::SocketAddr;

use anyhow::Context;
use migrator::Migrator;
use platform::{
    Platform,
    config::{AppEnv, Config},
    db::{self, PoolSettings},
};

fn main() {
    let result = platform::work::runtime()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(run()));
    if let Err(err) = result {
        eprintln!("local: {err:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    platform::telemetry::init(&config.log_level);
    platform::error_tracking::init(&config);
    let state = Platform::new(config).await?;
    let config = state.config.clone();

    if matches!(config.app_env, AppEnv::Development | AppEnv::Test) {
        let settings = PoolSettings::from_config(&config);
        db::ensure_database(&config.database_url, &settings).await?;
        let mut conn = db::connect_once(&config.database_url, &settings).await?;
        let applied = Migrator::from_dir(&local::migrations_dir())?
            .up(&mut conn)
            .await?;
        for name in applied {
            tracing::info!(migration = name, "applied migration");
        }
    }

    let mut app = local::app(&state).await?;
    match local::site::dist_dir() {
        Some(dir) => {
            tracing::info!(dir = %dir.display(), "serving the web client at /");
            let storage = config.aws_endpoint_url.as_deref().map(origin_of);
            let csp = local::site::content_security_policy(storage.as_deref());
            app = local::site::with_client(app, dir, &csp)?;
        }
        None => tracing::info!("no web client built (web/dist): serving the API only"),
    }
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    // Ready before listening: a client that can connect is served at once.
    platform::metrics::mark_ready();
    let addr = SocketAddr::from(([127, 0, 0, 1], config.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, env = %config.app_env, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// `scheme://host[:port]` of a URL: presigned URLs point there, so the client may connect to it.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
