//! The S3 client, built once per process. In development and tests `AWS_ENDPOINT_URL` points
//! it at an emulator (moto), with path-style addressing and, when the environment has no AWS
//! credentials, dummy ones.

use std::time::Duration;

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig};

use crate::config::Config;

pub use aws_sdk_s3::Client as S3;

/// The S3 client, built by the first request that needs it: loading the SDK configuration is
/// work a cold start would otherwise pay before its first answer, for routes (`/ready`, a
/// profile read) that never touch S3.
#[derive(Clone, Debug)]
pub struct LazyS3 {
    config: std::sync::Arc<Config>,
    client: std::sync::Arc<tokio::sync::OnceCell<S3>>,
}

impl LazyS3 {
    pub fn new(config: std::sync::Arc<Config>) -> Self {
        Self {
            config,
            client: std::sync::Arc::default(),
        }
    }

    /// The client, built on first use.
    pub async fn client(&self) -> &S3 {
        self.client.get_or_init(|| s3_client(&self.config)).await
    }
}

pub async fn s3_client(config: &Config) -> S3 {
    let endpoint = config.aws_endpoint_url.as_deref();
    let shared = crate::aws::sdk_config(endpoint, None, Duration::from_secs(20)).await;
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(endpoint.is_some())
        .build();
    S3::from_conf(s3_config)
}

/// The same client with timeouts fit for whole-database transfers (multipart parts, and reading
/// a dump of many gigabytes), which the request-path timeouts above would cut short.
pub fn for_transfers(s3: &S3) -> S3 {
    let config = s3
        .config()
        .to_builder()
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(300))
                .operation_timeout(Duration::from_secs(900))
                .build(),
        )
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .build();
    S3::from_conf(config)
}
