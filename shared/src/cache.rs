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
    conn: Arc<std::sync::RwLock<ConnectionManager>>,
    client: redis::Client,
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
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
            .context("creating the Redis client")?;
        Ok(Self {
            conn: Arc::new(std::sync::RwLock::new(conn)),
            client,
            prefix: prefix.into(),
        })
    }

    /// The full key for `name`, with this app's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A handle to the shared multiplexed connection; cheap to clone.
    pub fn conn(&self) -> ConnectionManager {
        self.conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Passes a result through, reconnecting when Redis answered READONLY: after a failover the
    /// old primary refuses writes, and a new connection (a fresh DNS lookup of the primary
    /// endpoint) reaches the new one. I/O errors need nothing: the manager reconnects by itself.
    pub fn check<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(err) = &result
            && err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        {
            match ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config()) {
                Ok(fresh) => {
                    tracing::warn!("redis answered READONLY: reconnecting");
                    *self
                        .conn
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                }
                Err(e) => tracing::error!(error = %e, "redis reconnect failed"),
            }
        }
        result
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING").query_async::<()>(&mut self.conn()).await
    }
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100))
}
