//! The per-IP rate limit, shared by every Lambda instance through Redis.
//!
//! A fixed window counted by one Lua script (INCR, set the expiry on the first hit, read the
//! TTL): one round trip, atomic, so it is exact however many processes count at once. Headers
//! follow the IETF RateLimit fields draft. When Redis is unavailable the request goes through,
//! with a warning in the log and a `RateLimiterBypassed` metric: an outage of the limiter must
//! not become an outage of the API.

use std::{sync::LazyLock, time::Duration};

use axum::{
    extract::{Request, State},
    http::HeaderValue,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{ApiError, client_ip};
use platform::{Platform, cache::Cache};

/// Routes that are never counted: load balancers and monitors poll them.
pub const EXEMPT: [&str; 2] = ["/health", "/ready"];

static HIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local count = redis.call('INCR', KEYS[1])
        if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl < 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            ttl = tonumber(ARGV[1])
        end
        return {count, ttl}
        ",
    )
});

/// One counted hit: how many so far in this window, and when the window ends.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub count: u64,
    pub reset: Duration,
}

/// Counts one hit on `key` (already prefixed) in a window of `window`.
pub async fn hit(cache: &Cache, key: &str, window: Duration) -> redis::RedisResult<Hit> {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let (count, ttl_ms): (u64, i64) = cache
        .run(|mut conn| async move { HIT.key(key).arg(window_ms).invoke_async(&mut conn).await })
        .await?;
    Ok(Hit {
        count,
        reset: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
    })
}

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
    let hit = match hit(&state.cache, &key, config.rate_limit_window).await {
        Ok(hit) => hit,
        Err(err) => {
            tracing::warn!(error = %err, "rate limiter unavailable: request let through");
            platform::metrics::count("RateLimiterBypassed");
            return next.run(req).await;
        }
    };
    let max = u64::from(config.rate_limit_max);
    let remaining = max.saturating_sub(hit.count);
    let reset = reset_secs(hit.reset);
    let mut res = if hit.count > max {
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
