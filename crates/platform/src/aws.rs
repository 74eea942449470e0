//! The one AWS SDK configuration every client is built from: region, credentials, fail-fast
//! timeouts and retries, the HTTPS client, and in development and tests the emulator (moto)
//! named by `AWS_ENDPOINT_URL`, with dummy credentials when the environment has none.
//!
//! The configuration is assembled here rather than by `aws_config::defaults(..).load()`: the
//! loader links every source it might consult (profile files, SSO, web identity through STS, the
//! ECS and EC2 metadata services), about half a megabyte of code, and on Lambda the first source
//! always answers. So a function reads its execution role's credentials from the environment,
//! where Lambda puts them, and only a build with the `credential-chain` feature (the local server
//! and the `db` tool, which also run in a container and on Fargate) links the SDK's whole
//! default chain.

use std::{sync::LazyLock, time::Duration};

use aws_config::{
    BehaviorVersion, Region, SdkConfig, identity::IdentityCache, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

pub(crate) mod http_client;

/// The SDK's HTTPS client ([`http_client::Http1Client`]): HTTP/1.1 over rustls with ring, the
/// crypto provider the database and Redis connections use, so that no function links a second
/// TLS library (the SDK's default client brings AWS-LC) or a second HTTP version. One per
/// process: each connection pool it keeps is shared by every client built from it.
pub fn http_client() -> SharedHttpClient {
    static CLIENT: LazyLock<SharedHttpClient> =
        LazyLock::new(|| SharedHttpClient::new(http_client::Http1Client::default()));
    CLIENT.clone()
}

/// `operation_timeout` bounds a whole call, retries included: a request must answer 503 in
/// seconds when the service is unreachable.
pub async fn sdk_config(
    endpoint: Option<&str>,
    region: Option<String>,
    operation_timeout: Duration,
) -> SdkConfig {
    let region = Region::new(
        region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into()),
    );
    let endpoint = endpoint.filter(|e| !e.is_empty());
    let credentials = if endpoint.is_some() && std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "emulator"))
    } else {
        credentials(&region).await
    };
    assemble(endpoint, region, credentials, operation_timeout)
}

/// What `aws_config`'s loader would set, less the sources a function never reads. Each client
/// fills in the rest with the SDK's defaults for [`BehaviorVersion::latest`].
fn assemble(
    endpoint: Option<&str>,
    region: Region,
    credentials: SharedCredentialsProvider,
    operation_timeout: Duration,
) -> SdkConfig {
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .region(region)
        .credentials_provider(credentials)
        // Credentials are read once and reused until they expire, as the loader's default.
        .identity_cache(IdentityCache::lazy().build())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(operation_timeout / 2)
                .operation_timeout(operation_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2));
    config.set_sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep());
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    config.build()
}

/// The execution role's credentials, from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
/// `AWS_SESSION_TOKEN`.
#[cfg(not(feature = "credential-chain"))]
async fn credentials(_: &Region) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(
        aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
    )
}

/// The SDK's default chain: the environment, profile files, web identity, then the ECS task role
/// (Fargate) or the EC2 instance's, its own requests going through [`http_client`].
#[cfg(feature = "credential-chain")]
async fn credentials(region: &Region) -> SharedCredentialsProvider {
    use aws_config::{
        default_provider::credentials::DefaultCredentialsChain, provider_config::ProviderConfig,
    };
    let providers = ProviderConfig::without_region()
        .with_region(Some(region.clone()))
        .with_http_client(http_client());
    SharedCredentialsProvider::new(
        DefaultCredentialsChain::builder()
            .configure(providers)
            .build()
            .await,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use tokio::io::AsyncReadExt;

    use super::*;

    fn moto() -> String {
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".into())
    }

    fn client(endpoint: &str, timeout: Duration) -> aws_sdk_secretsmanager::Client {
        let config = assemble(
            Some(endpoint),
            Region::new("us-east-1"),
            SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "test")),
            timeout,
        );
        aws_sdk_secretsmanager::Client::new(&config)
    }

    /// The assembled configuration signs and sends a real call, and reads its answer.
    #[tokio::test]
    async fn the_assembled_configuration_reaches_the_service() {
        let client = client(&moto(), Duration::from_secs(10));
        let name = format!("platform-aws-{}", uuid::Uuid::new_v4());
        client
            .create_secret()
            .name(&name)
            .secret_string("{\"k\":\"v\"}")
            .send()
            .await
            .expect("create (is moto running? scripts/services.sh)");
        let read = client
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .expect("read");
        assert_eq!(read.secret_string(), Some("{\"k\":\"v\"}"));
    }

    /// A proxy to moto that counts the connections it accepts; with `drop_first`, it reads the
    /// first connection's request and closes it unanswered, as a connection reset would.
    async fn counting_proxy(drop_first: bool) -> (String, Arc<AtomicUsize>) {
        let upstream = moto().trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if drop_first && n == 0 {
                        let mut request = [0u8; 1024];
                        let _ = client.read(&mut request).await;
                        return;
                    }
                    let mut server = tokio::net::TcpStream::connect(upstream)
                        .await
                        .expect("moto");
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        (addr, accepted)
    }

    async fn a_secret(client: &aws_sdk_secretsmanager::Client) -> String {
        let name = format!("platform-aws-{}", uuid::Uuid::new_v4());
        client
            .create_secret()
            .name(&name)
            .secret_string("s3cr3t")
            .send()
            .await
            .expect("create (is moto running? scripts/services.sh)");
        name
    }

    /// A connection closed before the answer is an I/O failure the SDK retries on a new
    /// connection, so the caller gets its answer.
    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_retried() {
        let name = a_secret(&client(&moto(), Duration::from_secs(10))).await;
        let (proxy, accepted) = counting_proxy(true).await;
        let read = client(&proxy, Duration::from_secs(10))
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await;
        assert_eq!(
            read.expect("answered on the retry").secret_string(),
            Some("s3cr3t")
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "the dropped one and the retry"
        );
    }

    /// With nothing listening, the call fails within its operation timeout, retried once, and
    /// does not hang: the sleep and timeout the loader would set are in place.
    #[tokio::test]
    async fn an_unreachable_service_fails_within_the_operation_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent = format!("http://{}", listener.local_addr().expect("addr"));
        // Accepted by the kernel's backlog but never answered: only a timeout ends the call.
        let started = std::time::Instant::now();
        let result = client(&silent, Duration::from_millis(600))
            .get_secret_value()
            .secret_id("anything")
            .send()
            .await;
        let took = started.elapsed();
        assert!(result.is_err(), "a silent service cannot answer");
        assert!(
            took < Duration::from_secs(3),
            "the operation timeout bounds the call: took {took:?}"
        );
        drop(listener);
    }
}
