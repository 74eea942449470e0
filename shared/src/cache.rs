//! Redis through one `ConnectionManager` per process: multiplexed, reconnecting by itself, with
//! connect and response timeouts so that a dead Redis costs a request milliseconds, not seconds.
//!
//! The manager is created lazily, so a cold start never waits for (or fails on) Redis: callers
//! decide what a Redis error means (the limiter lets requests through, the cache falls back to
//! Postgres). `rediss://` URLs use TLS (ElastiCache in-transit encryption). Every key goes
//! through [`Cache::key`], which prefixes it, so several apps or tests can share one Redis.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

#[derive(Clone)]
pub struct Cache {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub fn new(url: &SecretString, prefix: &str) -> anyhow::Result<Self> {
        // The URL may carry a password: the error says which variable, never the value.
        let client = redis::Client::open(url.expose_secret())
            .context("REDIS_URL is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .context("creating the Redis client")?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
        })
    }

    /// The full key for `name`, with this app's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A handle to the shared multiplexed connection; cheap to clone.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING").query_async::<()>(&mut self.conn()).await
    }
}
