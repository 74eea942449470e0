//! `local`: every route group in one process on 127.0.0.1:$PORT, for development.
//!
//! In development and test it first creates the database if needed and applies pending
//! migrations. It stops gracefully on Ctrl-C and SIGTERM: in-flight requests finish first.

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

    let app = local::app(&state)
        .await?
        .into_make_service_with_connect_info::<SocketAddr>();
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
