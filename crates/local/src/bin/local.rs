//! `local`: every route group in one process on $BIND_ADDRESS:$PORT (127.0.0.1:3000 unless set),
//! for development and for the container image that runs the same routers off Lambda.
//!
//! In development and test it first creates the database if needed and applies pending
//! migrations; deployed, migrations are `db up`'s job. When the web client is built (`web/dist`,
//! or `WEB_DIST`), it serves it at `/` beside the API (`local::site`). It stops gracefully on
//! Ctrl-C and SIGTERM: in-flight requests finish first.
//!
//! `local healthcheck` asks the server on this host for `GET /ready` and exits 0 on a 200, 1
//! otherwise: the container's HEALTHCHECK, in an image that has no curl.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use migrator::Migrator;
use platform::{
    Platform,
    config::{AppEnv, Config},
    db::{self, PoolSettings},
};

// The server runs many requests at once on every core, and each allocates and frees dozens of
// small buffers: with glibc's malloc, a third of the CPU time of a cached `GET /users/me` under
// load went to malloc and free (docs/BENCHMARKS.md, 2026-12-07). The Lambda functions, one request
// at a time each, keep glibc's and the smaller binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "local", about = "Every route group in one server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 when the server on this host answers GET /ready with 200 within 3 s, 1 otherwise.
    Healthcheck,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = platform::work::runtime()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| match cli.command {
            None => runtime.block_on(run()),
            Some(Command::Healthcheck) => runtime.block_on(healthcheck()),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("local: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `BIND_ADDRESS`: the address the server listens on. 127.0.0.1 by default, so that a developer's
/// server is not reachable from the network; a container sets 0.0.0.0.
fn bind_address() -> anyhow::Result<IpAddr> {
    match std::env::var("BIND_ADDRESS") {
        Err(_) => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        Ok(raw) => raw.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "configuration error: BIND_ADDRESS must be an IP address such as 127.0.0.1 or \
                 0.0.0.0 (got {raw:?})"
            )
        }),
    }
}

/// The port alone, read as `Config` reads it, so that the probe needs no other setting.
fn port() -> anyhow::Result<u16> {
    match std::env::var("PORT") {
        Err(_) => Ok(3000),
        Ok(raw) => raw.trim().parse().ok().filter(|p| *p != 0).ok_or_else(|| {
            anyhow::anyhow!(
                "configuration error: PORT must be a port number from 1 to 65535 (got {raw:?})"
            )
        }),
    }
}

async fn healthcheck() -> anyhow::Result<()> {
    // A server listening on every address answers on loopback; one bound to a single address
    // answers only there.
    let ip = match bind_address()? {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let addr = SocketAddr::new(ip, port()?);
    let status = tokio::time::timeout(Duration::from_secs(3), ready_status(addr))
        .await
        .map_err(|_| anyhow::anyhow!("GET http://{addr}/ready: no answer within 3 s"))??;
    anyhow::ensure!(
        status == http::StatusCode::OK,
        "GET http://{addr}/ready answered {status}"
    );
    Ok(())
}

async fn ready_status(addr: SocketAddr) -> anyhow::Result<http::StatusCode> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
    tokio::spawn(connection);
    let request = http::Request::get("/ready")
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET http://{addr}/ready"))?;
    Ok(response.status())
}

async fn run() -> anyhow::Result<()> {
    let ip = bind_address()?;
    let config = Config::from_env()?;
    platform::telemetry::init_traced(&config);
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
    platform::metrics::spawn_flusher();
    let addr = SocketAddr::new(ip, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, env = %config.app_env, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    platform::traces::shutdown();
    platform::metrics::flush();
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
