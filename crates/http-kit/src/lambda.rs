//! A route group's `main` on Lambda. It needs nothing of the domain, so that a function without
//! callers to authenticate (health) links no password hashing and no token code.

use std::future::Future;

use axum::Router;
use platform::Platform;
use tokio::signal::unix::{SignalKind, signal};

mod api_gateway;
mod shutdown_extension;

use api_gateway::ApiGateway;

/// A route group's whole `main` on Lambda, run once per cold start: settings (and secrets),
/// logs, pools, the group's own state and routes, then invocations until shutdown.
pub async fn serve_on_lambda<F, Fut>(routes: F) -> Result<(), lambda_http::Error>
where
    F: FnOnce(Platform) -> Fut,
    Fut: Future<Output = anyhow::Result<Router>>,
{
    platform::install_crypto_provider();
    let (config, refresh) = platform::secrets::load_from_env().await?;
    platform::telemetry::init_traced(&config);
    platform::error_tracking::init(&config);
    let platform = Platform::with_refresh(config, refresh).await?;
    // The extension's registration is a connection and a round trip to the Runtime API. The
    // yield lets it start first (on a one-thread runtime too): its connection opens while the
    // routes are built. Both finish before the first `/next`, as Lambda requires.
    let registering = tokio::spawn(close_on_shutdown(platform.clone()));
    tokio::task::yield_now().await;
    let routes = routes(platform.clone()).await?;
    registering.await??;
    run_on_lambda(routes, &platform).await
}

/// Lambda sends SIGTERM before it freezes an instance for good, but only to a function that has
/// an extension registered: this registers a no-op one ([`shutdown_extension`]) and runs this
/// hook on the signal. The pools close, the shutdown line says how many connections they held,
/// and the last log lines are flushed before the process exits.
async fn close_on_shutdown(platform: Platform) -> Result<(), lambda_http::Error> {
    shutdown_extension::register().await?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
        let closed = platform.close();
        tracing::info!(connections = closed, "shutdown: database pools closed");
        platform::traces::shutdown();
        platform::metrics::flush();
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(0);
    });
    Ok(())
}

/// Runs a route group on Lambda: wraps it in the common layers and serves invocations.
pub async fn run_on_lambda(routes: Router, platform: &Platform) -> Result<(), lambda_http::Error> {
    let app = crate::app(routes, platform);
    platform::metrics::mark_ready();
    // As `lambda_http::run`, with our own answer conversion (api_gateway), plus the traces'
    // flush after each invocation.
    lambda_runtime::Runtime::new(ApiGateway(app))
        .layer(lambda_runtime::layers::TracingLayer::new())
        .layer(FlushTraces)
        .run()
        .await
}

/// Writes an invocation's metric line and sends its spans once its answer has been handed to
/// Lambda, before the runtime asks for the next one (and Lambda may freeze the instance): the
/// client never waits for either. Sending spans is a no-op when traces are off
/// ([`platform::traces::flush`]).
#[derive(Clone, Copy)]
struct FlushTraces;

impl<S> tower::Layer<S> for FlushTraces {
    type Service = Flushing<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Flushing(inner)
    }
}

struct Flushing<S>(S);

impl<S> tower::Service<lambda_runtime::LambdaInvocation> for Flushing<S>
where
    S: tower::Service<lambda_runtime::LambdaInvocation, Response = (), Error = lambda_http::Error>,
    S::Future: 'static,
{
    type Response = ();
    type Error = lambda_http::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<(), Self::Error>>>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, invocation: lambda_runtime::LambdaInvocation) -> Self::Future {
        let answered = self.0.call(invocation);
        Box::pin(async move {
            let result = answered.await;
            platform::metrics::flush();
            platform::traces::flush().await;
            result
        })
    }
}
