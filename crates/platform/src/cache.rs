//! Redis through one `ConnectionManager` per process: multiplexed, reconnecting by itself, with
//! connect and response timeouts so that a dead Redis costs a request milliseconds, not seconds.
//!
//! The manager is created lazily, so a cold start never waits for (or fails on) Redis: callers
//! decide what a Redis error means (the limiter lets requests through, the cache falls back to
//! Postgres). `rediss://` URLs use TLS (ElastiCache in-transit encryption). Every key goes
//! through [`Cache::key`], which prefixes it, so several apps or tests can share one Redis.
//! Each command runs in a span for traces named after the command ([`Conn`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument;

#[derive(Clone)]
pub struct Cache {
    conn: Arc<std::sync::RwLock<ConnectionManager>>,
    client: redis::Client,
    prefix: Arc<str>,
    /// Until when (ms since the epoch) calls skip Redis after one timed out or lost its
    /// connection: see [`Cache::run`].
    paused_until: Arc<AtomicU64>,
    /// Which keys a request's `Authorization` header lets the limiter read ahead.
    read_ahead: Arc<std::sync::OnceLock<Box<ReadAheadKeys>>>,
}

/// Given the cache (for its key prefix) and a request's `Authorization` header, the keys the
/// request is going to read: installed by the route groups that authenticate callers
/// ([`Cache::install_read_ahead`]).
pub type ReadAheadKeys = dyn Fn(&Cache, &str) -> Vec<String> + Send + Sync;

/// How long calls skip Redis after a call timed out or failed to connect.
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A fixed window counted by one Lua script (INCR, set the expiry on the first hit, read the
/// TTL): one round trip, atomic, so it is exact however many processes count at once. The same
/// script reads the keys `KEYS[2..]` ([`ReadAhead`]), so that a request's other reads share
/// the limiter's round trip.
static HIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        local count = redis.call('INCR', KEYS[1])
        if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl < 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[1])
            ttl = tonumber(ARGV[1])
        end
        local read = {}
        for i = 2, #KEYS do
            read[i - 1] = redis.call('GET', KEYS[i])
        end
        return {count, ttl, read}
        ",
    )
});

/// One counted hit: how many so far in this window, and when the window ends.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub count: u64,
    pub reset: Duration,
}

/// Values read in the rate limiter's round trip (see [`Cache::hit`]), for the request's later
/// steps: each key (prefixed) with its value as it was at the hit, `None` when missing.
#[derive(Debug, Clone, Default)]
pub struct ReadAhead {
    values: Vec<(String, Option<String>)>,
}

impl ReadAhead {
    /// `Some(value)` when `key` was read ahead (the value itself `None` if the key was
    /// missing); `None` when it was not, and the caller must ask Redis itself.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref())
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
            paused_until: Arc::new(AtomicU64::new(0)),
            read_ahead: Arc::default(),
        })
    }

    /// Sets which keys the rate limiter reads ahead for a request with an `Authorization`
    /// header (see [`ReadAhead`]). The first installation wins: every route group that installs
    /// one installs the same.
    pub fn install_read_ahead(
        &self,
        keys: impl Fn(&Cache, &str) -> Vec<String> + Send + Sync + 'static,
    ) {
        let _ = self.read_ahead.set(Box::new(keys));
    }

    /// The keys to read ahead for a request whose `Authorization` header is `authorization`.
    pub fn read_ahead_keys(&self, authorization: &str) -> Vec<String> {
        self.read_ahead
            .get()
            .map(|keys| keys(self, authorization))
            .unwrap_or_default()
    }

    /// The full key for `name`, with this app's prefix.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Counts one hit on `key` (already prefixed) in a window of `window` (see [`Hit`]), and
    /// reads `also_read` (prefixed keys) in the same script: one round trip for both.
    pub async fn hit(
        &self,
        key: &str,
        window: Duration,
        also_read: Vec<String>,
    ) -> redis::RedisResult<(Hit, ReadAhead)> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = HIT.key(key);
        invocation.arg(window_ms);
        for read in &also_read {
            invocation.key(read);
        }
        let (count, ttl_ms, read): (u64, i64, Vec<Option<String>>) = self
            .run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let hit = Hit {
            count,
            reset: Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)),
        };
        let values = also_read.into_iter().zip(read).collect();
        Ok((hit, ReadAhead { values }))
    }

    /// A handle to the shared multiplexed connection; cheap to clone. Private: every call goes
    /// through [`Cache::run`] or [`Cache::run_always`], so none can miss the failover handling.
    fn conn(&self) -> Conn {
        Conn(
            self.conn
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }

    /// Passes a result through, replacing the shared connection when it cannot be trusted any
    /// more: after a READONLY answer (a failover: the old primary refuses writes, and a new
    /// connection, with a fresh DNS lookup of the primary endpoint, reaches the new one) and
    /// after a timeout (a frozen node or a black-holed route: the manager reconnects by itself
    /// only when a connection is closed, and a silent one never is).
    fn check<T>(&self, result: redis::RedisResult<T>) -> redis::RedisResult<T> {
        if let Err(err) = &result {
            if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
                self.reconnect("redis answered READONLY: reconnecting");
            } else if err.is_timeout() {
                self.reconnect("redis call timed out: reconnecting");
            }
        }
        result
    }

    fn reconnect(&self, why: &str) {
        match ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config()) {
            Ok(fresh) => {
                tracing::warn!("{why}");
                *self
                    .conn
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            }
            Err(e) => tracing::error!(error = %e, "redis reconnect failed"),
        }
    }

    /// Runs one Redis call with the failover handling of [`Cache::check`], and a short circuit:
    /// after a call times out or cannot connect, calls skip Redis for [`PAUSE_AFTER_FAILURE`]
    /// and fail at once. A hung Redis (it accepts connections and never answers) then costs a
    /// request one timeout instead of one per call. Skipping is never more permissive than
    /// Redis being down: every caller already falls back to Postgres or lets the request
    /// through, as it does on any Redis error. (No well-kept crate wraps redis-rs calls in a
    /// breaker this small, hence the hand-written one.)
    pub async fn run<T, F, Fut>(&self, call: F) -> redis::RedisResult<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if now_millis() < self.paused_until.load(Ordering::Relaxed) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "redis skipped after a recent failure",
            )
            .into());
        }
        self.run_always(call).await
    }

    /// Like [`Cache::run`], but tried even during a pause: for writes that make a session
    /// unusable and deletions of cached state, which must not be skipped while Redis may be back.
    pub async fn run_always<T, F, Fut>(&self, call: F) -> redis::RedisResult<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = std::time::Instant::now();
        let result = self.check(call(self.conn()).await);
        crate::metrics::redis_call(started.elapsed());
        if let Err(err) = &result
            && (err.is_timeout() || err.is_connection_refusal() || err.is_connection_dropped())
        {
            let until = now_millis() + PAUSE_AFTER_FAILURE.as_millis() as u64;
            self.paused_until.store(until, Ordering::Relaxed);
        }
        result
    }

    /// For writes that revoke a session or invalidate cached state: tried even during a pause,
    /// and once more, on the new connection [`Cache::check`] opened, when the first attempt timed
    /// out or lost its connection. A connection that went silent on this instance alone (a
    /// stale route, a node replaced behind the same name) then costs the write one timeout
    /// instead of leaving other instances to trust a cache that missed it.
    pub async fn run_critical<T, F, Fut>(&self, call: F) -> redis::RedisResult<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match self.run_always(&call).await {
            Err(err) if err.is_timeout() || err.is_connection_dropped() => {
                self.run_always(&call).await
            }
            other => other,
        }
    }

    /// Always asks Redis (health checks must see its real state); an answer ends any pause.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let result = redis::cmd("PING").query_async::<()>(&mut self.conn()).await;
        if result.is_ok() {
            self.paused_until.store(0, Ordering::Relaxed);
        }
        result
    }
}

/// The shared connection as [`Cache::run`] hands it to a call: each command it sends runs in a
/// span named after the command (`GET`, `EVALSHA`, `PIPELINE`), never its keys or arguments.
/// With traces off the span is disabled where it is made, and the command goes out as is.
#[derive(Clone)]
pub struct Conn(ConnectionManager);

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        let span = command_span();
        if span.is_disabled() {
            return self.0.req_packed_command(cmd);
        }
        let name = match cmd.args_iter().next() {
            Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
            _ => String::new(),
        };
        span.record("db.operation.name", name.as_str());
        span.record("otel.name", name);
        Box::pin(self.0.req_packed_command(cmd).instrument(span))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        let span = command_span();
        if span.is_disabled() {
            return self.0.req_packed_commands(pipeline, offset, count);
        }
        span.record("otel.name", "PIPELINE");
        span.record("db.operation.name", "PIPELINE");
        Box::pin(
            self.0
                .req_packed_commands(pipeline, offset, count)
                .instrument(span),
        )
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

fn command_span() -> tracing::Span {
    tracing::info_span!(
        target: crate::traces::TARGET,
        "redis",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
        db.system = "redis",
        db.operation.name = tracing::field::Empty,
    )
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100))
}
