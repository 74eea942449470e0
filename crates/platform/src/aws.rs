//! The one AWS SDK configuration every client is built from: region, fail-fast timeouts and
//! retries, the HTTPS client, and in development and tests the emulator (moto) named by
//! `AWS_ENDPOINT_URL`, with dummy credentials when the environment has none.

use std::{sync::LazyLock, time::Duration};

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::config::SharedHttpClient;
use aws_smithy_http_client::{
    Builder,
    tls::{Provider, rustls_provider::CryptoMode},
};

/// The SDK's HTTPS client: hyper over rustls with ring, the crypto provider the database and
/// Redis connections use, so that no function links a second TLS library (the SDK's default
/// client brings AWS-LC). It trusts the system's roots, as the default client does. One per
/// process: each connection pool it keeps is shared by every client built from it.
pub fn http_client() -> SharedHttpClient {
    static CLIENT: LazyLock<SharedHttpClient> = LazyLock::new(|| {
        Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https()
    });
    CLIENT.clone()
}

/// `operation_timeout` bounds a whole call, retries included: a request must answer 503 in
/// seconds when the service is unreachable.
pub async fn sdk_config(
    endpoint: Option<&str>,
    region: Option<String>,
    operation_timeout: Duration,
) -> SdkConfig {
    let region = region
        .or_else(|| std::env::var("AWS_REGION").ok())
        .unwrap_or_else(|| "us-east-1".into());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .region(Region::new(region))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(operation_timeout / 2)
                .operation_timeout(operation_timeout)
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(2));
    if let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) {
        loader = loader.endpoint_url(endpoint);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader
                .credentials_provider(Credentials::new("test", "test", None, None, "emulator"));
        }
    }
    loader.load().await
}
