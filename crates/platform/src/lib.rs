//! The runtime platform every function stands on: settings (from the environment and Secrets
//! Manager), JSON logs, traces and metrics, the Postgres pools, Redis, and the AWS SDK
//! configuration. It knows nothing of HTTP or of the domain.

pub mod aws;
pub mod cache;
pub mod config;
pub mod db;
pub mod error_tracking;
pub mod metrics;
mod outbound;
pub mod secrets;
pub mod state;
#[cfg(feature = "s3")]
pub mod storage;
pub mod telemetry;
pub mod traces;
pub mod work;

pub use state::{Platform, Refresh, install_crypto_provider};
