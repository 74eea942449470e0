//! Refuses requests that did not come through CloudFront.
//!
//! CloudFront adds `X-Origin-Verify: <ORIGIN_VERIFY_SECRET>` to every request it sends to the API
//! (the template's origin custom header, read from the app secret). The API's execute-api URL is
//! public, so without this check anyone could call the functions around CloudFront, its TLS
//! policy, its WAF and its client-IP header.
//!
//! - `ORIGIN_VERIFY_SECRET` set: a request without the header, or with another value, is a 403
//!   problem+json (`forbidden`) before the rate limiter or any handler runs. The value
//!   is compared in constant time. During a rotation both values are accepted:
//!   `ORIGIN_VERIFY_PREVIOUS_SECRET` holds the old one until CloudFront sends the new one.
//! - unset in `development` or `test`: every request is allowed (the local server and `cargo
//!   lambda watch` have no CloudFront in front).
//! - unset in `staging` or `production`: every request is refused, and an error is logged once
//!   at start-up naming the variable. A deployed function must never fall open.
//!
//! It never logs the presented value.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use platform::config::{Config, SecretString, expose};

use crate::{ApiError, client_ip::ORIGIN_VERIFY_HEADER};

/// What the check does, decided once from the configuration.
#[derive(Clone)]
pub enum OriginPolicy {
    /// Only requests carrying one of these values pass.
    Require(Vec<SecretString>),
    /// No secret in development or test: everything passes.
    AllowAll,
    /// No secret while deployed: nothing passes.
    RefuseAll,
}

impl OriginPolicy {
    pub fn from_config(config: &Config) -> Self {
        match &config.origin_verify_secret {
            Some(current) => {
                let mut accepted = vec![current.clone()];
                accepted.extend(config.origin_verify_previous_secret.clone());
                Self::Require(accepted)
            }
            None if config.app_env.is_deployed() => {
                tracing::error!(
                    app_env = %config.app_env,
                    "ORIGIN_VERIFY_SECRET is not set: every request is refused"
                );
                Self::RefuseAll
            }
            None => Self::AllowAll,
        }
    }

    pub fn allows(&self, presented: Option<&[u8]>) -> bool {
        match self {
            Self::AllowAll => true,
            Self::RefuseAll => false,
            Self::Require(accepted) => presented.is_some_and(|p| {
                // Every value is compared, so the time taken does not say which one matched.
                accepted.iter().fold(false, |ok, s| {
                    constant_time_eq(p, expose(s).as_bytes()) | ok
                })
            }),
        }
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(OriginPolicy::from_config(..), check)`.
pub async fn check(State(policy): State<OriginPolicy>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(ORIGIN_VERIFY_HEADER)
        .map(http::HeaderValue::as_bytes);
    if policy.allows(presented) {
        return next.run(req).await;
    }
    tracing::warn!(
        header_present = presented.is_some(),
        "request refused: not from CloudFront"
    );
    ApiError::Forbidden.into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
