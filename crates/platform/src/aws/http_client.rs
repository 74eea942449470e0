//! The AWS SDK's HTTPS client: HTTP/1.1 over hyper and rustls with ring.
//!
//! Hand-written because the SDK's own hyper client (aws-smithy-http-client) always compiles in
//! HTTP/2 (the h2 crate and hyper's HTTP/2 half, about half a megabyte of code) and proxy
//! support, and loads the system's certificate store. Every AWS API a function calls (Secrets
//! Manager, S3) speaks HTTP/1.1; connections are pooled either way. So a function keeps one
//! HTTP stack, the HTTP/1.1 hyper that the Lambda runtime already links, and trusts the same
//! built-in web roots as the Redis client.

use std::{
    sync::{LazyLock, Mutex},
    time::Duration,
};

use aws_smithy_runtime_api::client::{
    http::{
        HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
    },
    orchestrator::{HttpRequest, HttpResponse},
    result::ConnectorError,
    runtime_components::RuntimeComponents,
};
use aws_smithy_types::{body::SdkBody, retry::ErrorKind};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector as TcpConnector},
    rt::{TokioExecutor, TokioTimer},
};

pub(crate) type Https = hyper_rustls::HttpsConnector<TcpConnector>;
type Pool = Client<Https, SdkBody>;

/// How long an idle connection stays in the pool: a warm Lambda instance reuses its connection to
/// Secrets Manager or S3 across invocations, and the services close theirs after about a minute.
const POOL_IDLE: Duration = Duration::from_secs(50);

/// One pool per connect timeout the SDK asks for: `http_connector` is called for every request,
/// and each answer must share the pool of the ones before it.
#[derive(Debug, Default)]
pub struct Http1Client {
    pools: Mutex<Vec<(Option<Duration>, Pool)>>,
}

impl Http1Client {
    fn pool(&self, connect_timeout: Option<Duration>) -> Pool {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, client)) = pools.iter().find(|(t, _)| *t == connect_timeout) {
            return client.clone();
        }
        let client = new_pool(connect_timeout);
        pools.push((connect_timeout, client.clone()));
        client
    }
}

/// A pooled HTTP/1.1 client over [`https_connector`]: the SDK's (one per connect timeout) and
/// the telemetry exporters' ([`crate::outbound`]).
pub(crate) fn new_pool<B>(connect_timeout: Option<Duration>) -> Client<Https, B>
where
    B: hyper::body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new())
        // Without a timer the pool never expires idle connections.
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(https_connector(connect_timeout))
}

/// HTTP/1.1 over rustls with ring and the built-in roots.
fn https_connector(connect_timeout: Option<Duration>) -> Https {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*TLS).clone())
        // `http://` too: the emulator (moto) in development and tests, a collector beside the
        // process.
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp)
}

/// Mozilla's roots (webpki-roots), as for Redis: AWS's endpoints chain to Amazon's roots, which
/// it holds, and nothing is read from the file system at a cold start.
static TLS: LazyLock<rustls::ClientConfig> = LazyLock::new(|| {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    crate::state::tls_client_config(roots).expect("ring supports the default TLS versions")
});

impl HttpClient for Http1Client {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Connector {
            client: self.pool(settings.connect_timeout()),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct Connector {
    client: Pool,
    /// The wait for the response's head, once the request is sent.
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(err) => return HttpConnectorFuture::ready(Err(ConnectorError::user(err.into()))),
        };
        let sent = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answered = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, sent).await {
                    Ok(answered) => answered,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => sent.await,
            };
            match answered {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|err| ConnectorError::other(err.into(), None)),
                Err(err) => Err(classify(err)),
            }
        })
    }
}

/// What the SDK's retry policy needs to know: a failure to connect, a connection that broke or
/// closed, and a response cut short are worth a retry; a request hyper refused to send is not.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let hyper = find::<hyper::Error>(&err);
    if hyper.is_some_and(hyper::Error::is_user) {
        return ConnectorError::user(err.into());
    }
    if hyper.is_some_and(hyper::Error::is_incomplete_message) {
        return ConnectorError::other(err.into(), Some(ErrorKind::TransientError));
    }
    if err.is_connect()
        || hyper.is_some_and(|e| e.is_closed() || e.is_canceled())
        || find::<std::io::Error>(&err).is_some()
    {
        return ConnectorError::io(err.into());
    }
    ConnectorError::other(err.into(), None)
}

fn find<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    std::iter::successors(Some(err), |e| e.source()).find_map(|e| e.downcast_ref::<E>())
}
