//! What every route group can reach: settings, the Postgres pools and Redis. Built once per
//! process. A route group that needs more (token keys, S3) builds its own state around it.

use std::{sync::Arc, time::Instant};

use anyhow::Context;

use crate::{
    cache::Cache,
    config::Config,
    db::{Db, PoolSettings},
    work::Slots,
};

/// A handle on the process's [`Shared`] state: cloning it costs one reference count, which
/// matters because axum clones a route's state (and each middleware's) for every request.
/// Fields read through it as through the state itself (`platform.db`).
#[derive(Clone)]
pub struct Platform(Arc<Shared>);

impl std::ops::Deref for Platform {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    /// The primary: every write, and every read that must see the caller's own writes.
    pub db: Db,
    /// The read replica (the primary when `DATABASE_READ_URL` is unset): reads that tolerate lag.
    pub db_read: Db,
    pub cache: Cache,
    /// The bound on password hashing (`PASSWORD_HASH_CONCURRENCY` at once, waiting at most
    /// `PASSWORD_HASH_WAIT` for a slot).
    pub hashing: Slots,
    pub started_at: Instant,
}

impl Platform {
    /// Builds the pools and the Redis client; opens no connection yet.
    pub async fn new(config: Config) -> anyhow::Result<Self> {
        Self::with_refresh(config, Refresh::default()).await
    }

    /// Like [`Platform::new`], with a way to re-read database credentials after a rotation.
    pub async fn with_refresh(config: Config, refresh: Refresh) -> anyhow::Result<Self> {
        install_crypto_provider();
        let settings = PoolSettings::from_config(&config);
        let db =
            Db::new(&config.database_url, &settings, refresh.primary).context("DATABASE_URL")?;
        let db_read = match &config.database_read_url {
            Some(url) => Db::new(url, &settings, refresh.replica).context("DATABASE_READ_URL")?,
            None => db.clone(),
        };
        let cache = Cache::new(&config.redis_url, &config.redis_key_prefix)?;
        let hashing = Slots::new(config.password_hash_concurrency, config.password_hash_wait);
        Ok(Self(Arc::new(Shared {
            hashing,
            config: Arc::new(config),
            db,
            db_read,
            cache,
            started_at: Instant::now(),
        })))
    }

    /// Closes both pools at shutdown; returns how many connections they held.
    pub fn close(&self) -> usize {
        let primary = self.db.close();
        let replica = if self.config.database_read_url.is_some() {
            self.db_read.close()
        } else {
            0
        };
        primary + replica
    }

    /// Reads the environment and builds the state: what every `main` calls once per cold start.
    pub async fn from_env() -> anyhow::Result<Self> {
        Self::new(Config::from_env()?).await
    }
}

/// How each pool gets new credentials when Postgres rejects the cached ones.
#[derive(Default, Clone)]
pub struct Refresh {
    pub primary: Option<crate::db::CredentialRefresh>,
    pub replica: Option<crate::db::CredentialRefresh>,
}

/// A TLS client configuration over ring, the provider the whole process uses, trusting `roots`:
/// the database's and the AWS SDK's connections both start here.
pub(crate) fn tls_client_config(
    roots: rustls::RootCertStore,
) -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// rustls needs one process-wide crypto provider when more than one is linked.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
