//! The per-IP rate limit, shared by every Lambda instance through Redis.
//!
//! A fixed window counted by the cache's one-script counter (`Cache::hit`):
//! one round trip, atomic, so it is exact however many processes count at once. The same round
//! trip reads what the caller's bearer token will need (its revocation state and profile, see
//! `platform::cache::ReadAhead`), which it leaves in the request's extensions. Headers
//! follow the IETF RateLimit fields draft. When Redis is unavailable the request goes through,
//! with a warning in the log and the request's `RateLimiterBypassed` metric at 1: an outage of the limiter must
//! not become an outage of the API.

use std::time::Duration;

use axum::{
    extract::{Request, State},
    http::HeaderValue,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{ApiError, client_ip};
use platform::Platform;

/// Routes that are never counted: load balancers and monitors poll them.
pub const EXEMPT: [&str; 2] = ["/health", "/ready"];

/// Seconds until reset, rounded up so that a client waiting that long is always let in.
fn reset_secs(reset: Duration) -> u64 {
    reset.as_secs() + u64::from(reset.subsec_nanos() > 0)
}

pub async fn limit(State(state): State<Platform>, mut req: Request, next: Next) -> Response {
    let config = &state.config;
    let network = client_ip::rate_key(client_ip::client_ip(&req, config));
    req.extensions_mut()
        .insert(client_ip::ClientNetwork(network.clone()));
    if EXEMPT.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let key = state.cache.key(&format!("rl:{network}"));
    let also_read = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|authorization| state.cache.read_ahead_keys(authorization))
        .unwrap_or_default();
    // The cache's fixed-window counter (`Cache::hit`): one atomic round trip.
    let hit = match state
        .cache
        .hit(&key, config.rate_limit_window, also_read)
        .await
    {
        Ok((hit, read_ahead)) => {
            req.extensions_mut().insert(read_ahead);
            hit
        }
        Err(err) => {
            tracing::warn!(error = %err, "rate limiter unavailable: request let through");
            platform::metrics::limiter_bypassed();
            return next.run(req).await;
        }
    };
    let max = u64::from(config.rate_limit_max);
    let remaining = max.saturating_sub(hit.count);
    let reset = reset_secs(hit.reset);
    let mut res = if hit.count > max {
        platform::metrics::rate_limited();
        ApiError::TooManyRequests {
            retry_after_secs: reset,
            detail: "Too many requests, try again later".into(),
        }
        .into_response()
    } else {
        next.run(req).await
    };
    let policy = format!(
        "\"default\";q={max};w={}",
        config.rate_limit_window.as_secs()
    );
    let status = format!("\"default\";r={remaining};t={reset}");
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&policy) {
        headers.insert("ratelimit-policy", v);
    }
    if let Ok(v) = HeaderValue::from_str(&status) {
        headers.insert("ratelimit", v);
    }
    res
}
