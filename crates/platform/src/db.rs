//! Pooled Postgres: one deadpool pool per process, built in `main` and never per request.
//!
//! - Sized by `DB_POOL_MAX` (2 on Lambda, where an instance serves one request at a time).
//! - Wait, create and recycle timeouts, so no request hangs on a dead database.
//! - Verified recycling: a connection can die while the Lambda instance is frozen, so each one is
//!   checked with a round trip before it is handed out again.
//! - A server-side statement timeout, set as a startup option.
//! - TLS through rustls with certificate and host name verification when the URL asks for
//!   `sslmode=require`, `verify-ca` or `verify-full` (RDS): the public web roots, the RDS CA bundle
//!   compiled into the binary, and any PEM bundle in `DATABASE_CA_CERT` or the URL's `sslrootcert`.
//! - Queries go through `query_typed`/`execute_typed`, which use unnamed statements, so that RDS
//!   Proxy can multiplex connections without pinning them.
//! - Each statement runs in a span named after it (`SELECT users`), for traces ([`Sql`]); its
//!   parameters are never recorded.

use std::{fs::File, io::BufReader, str::FromStr, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{
    GenericClient, NoTls, Row, Socket,
    config::SslMode,
    tls::MakeTlsConnect,
    types::{ToSql, Type},
};
use tracing::Instrument;

pub use deadpool_postgres::{Object as Connection, PoolError};

/// What the pool needs besides the URL.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
    pub wait_timeout: Duration,
    pub ca_cert: Option<String>,
}

impl PoolSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            max_size: config.db_pool_max,
            statement_timeout: config.db_statement_timeout,
            connect_timeout: Duration::from_secs(3),
            wait_timeout: Duration::from_secs(2),
            ca_cert: config.database_ca_cert.clone(),
        }
    }
}

/// Builds a pool. No connection is opened here: the first query opens one, so a cold start
/// never blocks on the database and `/health` can report it as down.
pub fn pool(url: &SecretString, settings: &PoolSettings) -> anyhow::Result<Pool> {
    pool_for(url, settings, None)
}

/// Like [`pool`], but connecting to `dbname` instead of the URL's database.
pub fn pool_for(
    url: &SecretString,
    settings: &PoolSettings,
    dbname: Option<&str>,
) -> anyhow::Result<Pool> {
    let target = ConnectTarget::parse(url.expose_secret())?;
    let mut pg = target.config;
    if let Some(dbname) = dbname {
        pg.dbname(dbname);
    }
    pg.connect_timeout(settings.connect_timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .options(format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis()
        ));
    if pg.get_application_name().is_none() {
        pg.application_name("backend");
    }
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Verified,
    };
    let manager = if target.tls {
        pg.ssl_mode(SslMode::Require);
        let ca = settings.ca_cert.as_deref().or(target.root_cert.as_deref());
        Manager::from_config(pg, LazyTls::new(ca)?, manager_config)
    } else {
        pg.ssl_mode(SslMode::Disable);
        Manager::from_config(pg, NoTls, manager_config)
    };
    Pool::builder(manager)
        .max_size(settings.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.wait_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(Duration::from_secs(1)))
        .build()
        .context("building the Postgres pool")
}

/// A connection URL split into what tokio-postgres understands and the libpq TLS options it
/// does not (`verify-full`, `sslrootcert`). Hand-written because tokio-postgres rejects those.
struct ConnectTarget {
    config: tokio_postgres::Config,
    tls: bool,
    root_cert: Option<String>,
}

impl ConnectTarget {
    fn parse(url: &str) -> anyhow::Result<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        let mut tls = false;
        let mut root_cert = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", mode)) => {
                    tls = match mode {
                        "require" | "verify-ca" | "verify-full" => true,
                        "disable" | "allow" | "prefer" => false,
                        // The URL may hold a password: never echo it. The caller names the
                        // variable (DATABASE_URL, DATABASE_READ_URL).
                        _ => bail!(
                            "unknown sslmode (disable, allow, prefer, require, verify-ca or \
                             verify-full)"
                        ),
                    }
                }
                Some(("sslrootcert", path)) => root_cert = Some(path.to_owned()),
                _ => kept.push(pair),
            }
        }
        let cleaned = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        // tokio-postgres's parse errors do not repeat the URL, so the password stays out of logs.
        let config = tokio_postgres::Config::from_str(&cleaned).context("it cannot be parsed")?;
        Ok(Self {
            config,
            tls,
            root_cert,
        })
    }
}

/// Whether `url` is one the pools can connect with (the configuration checks it at start).
pub(crate) fn check_url(url: &str) -> anyhow::Result<()> {
    ConnectTarget::parse(url).map(drop)
}

/// The RDS certificate authorities of every region (AWS's global bundle, "Using SSL/TLS to
/// encrypt a connection to a DB instance", RDS user guide), compiled in so that a function's zip
/// holds nothing but its `bootstrap` and no deploy step copies a file beside it.
const RDS_CA_BUNDLE: &[u8] = include_bytes!("../../../infra/rds-ca.pem");

/// The TLS connector, built on the pool's first connection. Parsing the public roots and the RDS
/// bundle (92 certificates) added most of a millisecond to every cold start, which `/ready` and
/// the requests that need no database do not need (docs/BENCHMARKS.md, 2026-12-07). A CA file
/// named by `DATABASE_CA_CERT` or `sslrootcert` must still open at start, so that a wrong path
/// stops the start instead of every later connection.
#[derive(Clone)]
struct LazyTls {
    ca_path: Option<String>,
    built: Arc<std::sync::OnceLock<tokio_postgres_rustls::MakeRustlsConnect>>,
}

impl LazyTls {
    fn new(ca_path: Option<&str>) -> anyhow::Result<Self> {
        if let Some(path) = ca_path {
            File::open(path).with_context(|| format!("opening the database CA bundle {path}"))?;
        }
        Ok(Self {
            ca_path: ca_path.map(str::to_owned),
            built: Arc::default(),
        })
    }
}

type RustlsMake = tokio_postgres_rustls::MakeRustlsConnect;

impl MakeTlsConnect<Socket> for LazyTls {
    type Stream = <RustlsMake as MakeTlsConnect<Socket>>::Stream;
    type TlsConnect = <RustlsMake as MakeTlsConnect<Socket>>::TlsConnect;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        let connector = match self.built.get() {
            Some(connector) => connector,
            None => {
                let connector = tls_connector(self.ca_path.as_deref())?;
                self.built.get_or_init(|| connector)
            }
        };
        MakeTlsConnect::<Socket>::make_tls_connect(&mut connector.clone(), domain)
            .map_err(Into::into)
    }
}

fn tls_connector(
    ca_path: Option<&str>,
) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let config =
        crate::state::tls_client_config(root_store(ca_path)?).context("choosing TLS versions")?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The public web roots and the RDS bundle, parsed once per process: the primary's and the
/// replica's pools both start from them. (The bundle's every certificate parses: a test says so.)
static BUILT_IN_ROOTS: std::sync::LazyLock<rustls::RootCertStore> =
    std::sync::LazyLock::new(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots.add_parsable_certificates(rustls_pemfile::certs(&mut &RDS_CA_BUNDLE[..]).flatten());
        roots
    });

/// What a database certificate may chain to.
fn root_store(ca_path: Option<&str>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = BUILT_IN_ROOTS.clone();
    if let Some(path) = ca_path {
        let file =
            File::open(path).with_context(|| format!("opening the database CA bundle {path}"))?;
        for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
            roots
                .add(cert.with_context(|| format!("reading the database CA bundle {path}"))?)
                .context("adding a database CA certificate")?;
        }
    }
    Ok(roots)
}

/// Whether a Postgres error means the database is unavailable (503) rather than a bug (500).
pub fn is_unavailable(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if err.is_closed() {
        return true;
    }
    match err.code() {
        Some(code) => {
            [
                SqlState::QUERY_CANCELED,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::INVALID_PASSWORD,
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(code)
                || code.code().starts_with("08")
        }
        // No SQLSTATE: an I/O error or a timeout talking to the server.
        None => true,
    }
}

/// The database name in a connection URL.
pub fn database_name(url: &SecretString) -> anyhow::Result<String> {
    let target = ConnectTarget::parse(url.expose_secret())?;
    Ok(target.config.get_dbname().unwrap_or("postgres").to_owned())
}

/// Creates the URL's database when it does not exist (development and tests). Returns whether
/// it was created.
pub async fn ensure_database(url: &SecretString, settings: &PoolSettings) -> anyhow::Result<bool> {
    let name = database_name(url)?;
    let admin = pool_for(
        url,
        &PoolSettings {
            max_size: 1,
            ..settings.clone()
        },
        Some("postgres"),
    )?;
    let conn = admin
        .get()
        .await
        .context("connecting to the postgres maintenance database")?;
    let exists = conn
        .query_typed_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&name, tokio_postgres::types::Type::TEXT)],
        )
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    match conn
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await
    {
        Ok(()) => Ok(true),
        // Someone else created it in the meantime.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
            Ok(false)
        }
        Err(e) => Err(e).context("creating the database"),
    }
}

/// Quotes an SQL identifier (a database name cannot be a bind parameter).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Opens one connection outside any pool, for tools (migrations, tests) that need a session of
/// their own. The connection task runs in the background until the client is dropped.
pub async fn connect_once(
    url: &SecretString,
    settings: &PoolSettings,
) -> anyhow::Result<Connection> {
    let pool = pool(
        url,
        &PoolSettings {
            max_size: 1,
            ..settings.clone()
        },
    )?;
    pool.get().await.context("connecting to Postgres")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_modes_are_understood() {
        let t = ConnectTarget::parse(
            "postgres://u:p@db.example.com:5432/app?sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .expect("valid");
        assert!(t.tls);
        assert_eq!(t.root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(t.config.get_dbname(), Some("app"));
        assert!(
            !ConnectTarget::parse("postgres://u@h/app")
                .expect("valid")
                .tls
        );
        assert!(
            ConnectTarget::parse("postgres://u@h/app?sslmode=require")
                .expect("valid")
                .tls
        );
    }

    #[test]
    fn a_bad_url_error_does_not_leak_the_password() {
        let err = ConnectTarget::parse("postgres://u:hunter2@h/app?sslmode=bogus")
            .err()
            .expect("invalid");
        let shown = format!("{err:#}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("unknown sslmode"), "{shown}");
    }
}

/// Where fresh credentials come from when Postgres rejects the cached password: re-reads the
/// secret and answers the new connection URL.
pub type CredentialRefresh = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<SecretString>> + Send>>
        + Send
        + Sync,
>;

/// The pool behind a handle that can rebuild it with new credentials. A password rotation
/// (SQLSTATE 28P01 on connect) re-reads the secret and swaps the pool once, without a restart.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DbInner>,
}

struct DbInner {
    pool: std::sync::RwLock<Pool>,
    settings: PoolSettings,
    refresh: Option<CredentialRefresh>,
    refreshing: tokio::sync::Mutex<()>,
}

impl Db {
    pub fn new(
        url: &SecretString,
        settings: &PoolSettings,
        refresh: Option<CredentialRefresh>,
    ) -> anyhow::Result<Self> {
        let pool = pool(url, settings)?;
        Ok(Self {
            inner: Arc::new(DbInner {
                pool: std::sync::RwLock::new(pool),
                settings: settings.clone(),
                refresh,
                refreshing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The current pool (cheap: a pool is a reference-counted handle).
    pub fn pool(&self) -> Pool {
        self.inner
            .pool
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A connection from the pool, waiting at most the pool's wait timeout. The wait and the
    /// time the connection is held count towards the request's metrics.
    pub async fn get(&self) -> Result<Pooled, PoolError> {
        let asked = std::time::Instant::now();
        let conn = self.get_untimed().await;
        let handed = std::time::Instant::now();
        crate::metrics::db_pool_wait(handed - asked);
        conn.map(|conn| Pooled { conn, handed })
    }

    async fn get_untimed(&self) -> Result<Connection, PoolError> {
        let before = self.pool();
        match before.get().await {
            Err(PoolError::Backend(err))
                if is_password_rejected(&err) && self.inner.refresh.is_some() =>
            {
                self.rebuild_after(&before).await;
                self.pool().get().await
            }
            other => other,
        }
    }

    /// Re-reads the credentials once for everyone who saw `stale` fail; later callers find the
    /// pool already swapped and simply retry.
    async fn rebuild_after(&self, stale: &Pool) {
        let _guard = self.inner.refreshing.lock().await;
        let current = self.pool();
        if !std::ptr::eq(current.manager(), stale.manager()) {
            return;
        }
        let Some(refresh) = &self.inner.refresh else {
            return;
        };
        match refresh()
            .await
            .and_then(|url| pool(&url, &self.inner.settings))
        {
            Ok(fresh) => {
                tracing::warn!(
                    "Postgres rejected the password: credentials re-read and the pool rebuilt"
                );
                *self
                    .inner
                    .pool
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                current.close();
            }
            Err(err) => tracing::error!(
                error = format!("{err:#}"),
                "re-reading the database credentials failed"
            ),
        }
    }

    /// Closes the pool at shutdown and returns how many connections it held. Idle ones are
    /// dropped at once; one still in use closes when it is handed back.
    pub fn close(&self) -> usize {
        let pool = self.pool();
        let held = pool.status().size;
        pool.close();
        held
    }
}

/// A pooled connection that reports how long it was held when it goes back to the pool. It
/// reads as the client itself (`&**conn` is a `tokio_postgres::Client`).
pub struct Pooled {
    conn: Connection,
    handed: std::time::Instant,
}

impl std::ops::Deref for Pooled {
    type Target = deadpool_postgres::ClientWrapper;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

/// The statements of a pooled connection, each in its span ([`Sql`]). They shadow the client's
/// own methods of the same names, so a handler's `conn.query_typed(..)` is traced too.
impl Pooled {
    fn client(&self) -> &tokio_postgres::Client {
        &self.conn
    }

    pub async fn query_typed(
        &self,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        Sql::query_typed(self.client(), statement, params).await
    }

    pub async fn query_typed_opt(
        &self,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        Sql::query_typed_opt(self.client(), statement, params).await
    }

    pub async fn query_typed_one(
        &self,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Row, tokio_postgres::Error> {
        Sql::query_typed_one(self.client(), statement, params).await
    }

    pub async fn execute_typed(
        &self,
        statement: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<u64, tokio_postgres::Error> {
        Sql::execute_typed(self.client(), statement, params).await
    }

    /// Starts a transaction (`BEGIN`, in its span); repository functions take `&*tx`.
    pub async fn transaction(&mut self) -> Result<Tx<'_>, tokio_postgres::Error> {
        let begun = self
            .conn
            .transaction()
            .instrument(statement_span("BEGIN"))
            .await?;
        Ok(Tx(begun))
    }
}

/// A transaction whose `COMMIT` and `ROLLBACK` are traced like its statements. Dropped without
/// either, it rolls back.
pub struct Tx<'a>(deadpool_postgres::Transaction<'a>);

impl<'a> std::ops::Deref for Tx<'a> {
    type Target = tokio_postgres::Transaction<'a>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Tx<'_> {
    pub async fn commit(self) -> Result<(), tokio_postgres::Error> {
        self.0.commit().instrument(statement_span("COMMIT")).await
    }

    pub async fn rollback(self) -> Result<(), tokio_postgres::Error> {
        self.0
            .rollback()
            .instrument(statement_span("ROLLBACK"))
            .await
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        crate::metrics::db_time(self.handed.elapsed());
    }
}

fn is_password_rejected(err: &tokio_postgres::Error) -> bool {
    err.code() == Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD)
}

#[cfg(test)]
mod statement_name_tests {
    use super::statement_name;

    #[test]
    fn a_statement_is_named_by_its_operation_and_its_own_table() {
        for (sql, name) in [
            (
                "SELECT token_generation, EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $2)\n FROM users WHERE id = $1",
                ("SELECT", Some("users")),
            ),
            (
                "SELECT jti, extract(epoch FROM expires_at)::bigint FROM revoked_access_tokens",
                ("SELECT", Some("revoked_access_tokens")),
            ),
            (
                "  INSERT INTO refresh_tokens (id, user_id) VALUES ($1, $2)",
                ("INSERT", Some("refresh_tokens")),
            ),
            (
                "UPDATE uploads SET status = 'ready from x' WHERE id = $1",
                ("UPDATE", Some("uploads")),
            ),
            ("DELETE FROM users WHERE id = $1", ("DELETE", Some("users"))),
            ("SELECT 1", ("SELECT", None)),
            ("BEGIN", ("BEGIN", None)),
            ("", ("", None)),
        ] {
            assert_eq!(statement_name(sql), name, "{sql}");
        }
    }
}

#[cfg(test)]
mod ca_bundle_tests {
    #[test]
    fn the_rds_ca_bundle_in_the_repository_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/rds-ca.pem");
        super::tls_connector(Some(path)).expect("the RDS CA bundle parses");
    }

    /// The roots are parsed on the first connection, not when the pool is built; a CA file that
    /// does not open still stops the start.
    #[test]
    fn the_tls_connector_is_built_on_the_first_connection() {
        use tokio_postgres::tls::MakeTlsConnect;
        let mut tls = super::LazyTls::new(None).expect("no file to open");
        assert!(tls.built.get().is_none(), "nothing parsed at start");
        MakeTlsConnect::<tokio_postgres::Socket>::make_tls_connect(&mut tls, "db.example.com")
            .expect("a connector for a valid host name");
        assert!(tls.built.get().is_some());

        let missing = super::LazyTls::new(Some("/nonexistent/rds-ca.pem"))
            .err()
            .expect("a CA file that does not open stops the start");
        assert!(format!("{missing:#}").contains("/nonexistent/rds-ca.pem"));
    }

    /// Without DATABASE_CA_CERT (a function's zip holds only its bootstrap), a certificate from
    /// RDS in any region still chains to a trusted root.
    #[test]
    fn the_rds_roots_are_trusted_without_a_bundle_file() {
        let rds: Vec<_> = rustls_pemfile::certs(&mut &super::RDS_CA_BUNDLE[..])
            .collect::<Result<_, _>>()
            .expect("the built-in RDS CA bundle parses");
        for region in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
            assert!(
                rds.iter()
                    .any(|c| c.windows(region.len()).any(|w| w == region.as_bytes())),
                "no RDS CA for {region}"
            );
        }
        let roots = super::root_store(None).expect("the built-in roots");
        assert_eq!(
            roots.len(),
            webpki_roots::TLS_SERVER_ROOTS.len() + rds.len()
        );
    }
}

/// What repository functions take: a pooled connection (`&**conn`) or a transaction (`&*tx`).
/// The typed queries of [`tokio_postgres::GenericClient`], each in a span for traces named after
/// its statement ([`statement_name`]: `SELECT users`), with the statement's text (whose values
/// are all `$n` parameters) and never a parameter. With traces off the span is disabled where it
/// is made and the statement is not even read.
pub trait Sql: Sync {
    fn query_typed<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a;

    fn query_typed_opt<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send + 'a;

    fn query_typed_one<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Row, tokio_postgres::Error>> + Send + 'a;

    fn execute_typed<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a;
}

impl<C: GenericClient + Sync> Sql for C {
    fn query_typed<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a {
        GenericClient::query_typed(self, statement, params).instrument(statement_span(statement))
    }

    fn query_typed_opt<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send + 'a {
        GenericClient::query_typed_opt(self, statement, params)
            .instrument(statement_span(statement))
    }

    fn query_typed_one<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Row, tokio_postgres::Error>> + Send + 'a {
        GenericClient::query_typed_one(self, statement, params)
            .instrument(statement_span(statement))
    }

    fn execute_typed<'a>(
        &'a self,
        statement: &'a str,
        params: &'a [(&'a (dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a {
        GenericClient::execute_typed(self, statement, params).instrument(statement_span(statement))
    }
}

/// The span of one statement: disabled (and free) unless traces are on.
fn statement_span(statement: &str) -> tracing::Span {
    let span = tracing::info_span!(
        target: crate::traces::TARGET,
        "postgres",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
        db.system = "postgresql",
        db.operation.name = tracing::field::Empty,
        db.collection.name = tracing::field::Empty,
        db.query.text = tracing::field::Empty,
    );
    if !span.is_disabled() {
        let (operation, table) = statement_name(statement);
        match table {
            Some(table) => {
                span.record("otel.name", format!("{operation} {table}"));
                span.record("db.collection.name", table);
            }
            None => {
                span.record("otel.name", operation);
            }
        }
        span.record("db.operation.name", operation);
        span.record("db.query.text", statement.trim());
    }
    span
}

/// A statement's operation and main table, as OpenTelemetry names a database span
/// (`SELECT users`, `INSERT refresh_tokens`, `UPDATE uploads`): the first keyword, and the
/// table after the statement's own `FROM`, `INTO` or `UPDATE` (not a subquery's, nor
/// `extract(epoch FROM ...)`'s). Hand-written: an SQL parser would cost more than the
/// statement's round trip, and this reads only up to the table's name.
pub fn statement_name(statement: &str) -> (&str, Option<&str>) {
    let mut words = Words::new(statement);
    let Some(operation) = words.next() else {
        return ("", None);
    };
    let table_after: &[&str] = if operation.eq_ignore_ascii_case("INSERT") {
        &["INTO"]
    } else if operation.eq_ignore_ascii_case("UPDATE") {
        return (operation, words.next());
    } else if operation.eq_ignore_ascii_case("SELECT") || operation.eq_ignore_ascii_case("DELETE") {
        &["FROM"]
    } else {
        return (operation, None);
    };
    while let Some(word) = words.next() {
        if table_after.iter().any(|k| word.eq_ignore_ascii_case(k)) {
            return (operation, words.next());
        }
    }
    (operation, None)
}

/// The words of a statement outside parentheses and string literals.
struct Words<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Words<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        let mut depth = 0usize;
        while self.at < bytes.len() {
            let c = bytes[self.at];
            match c {
                b'(' => depth += 1,
                b')' => depth = depth.saturating_sub(1),
                b'\'' => {
                    self.at += 1;
                    while self.at < bytes.len() && bytes[self.at] != b'\'' {
                        self.at += 1;
                    }
                }
                c if depth == 0 && (c.is_ascii_alphanumeric() || c == b'_' || c == b'"') => {
                    let start = self.at;
                    while self.at < bytes.len()
                        && (bytes[self.at].is_ascii_alphanumeric()
                            || matches!(bytes[self.at], b'_' | b'"' | b'.'))
                    {
                        self.at += 1;
                    }
                    return Some(&self.text[start..self.at]);
                }
                _ => {}
            }
            self.at += 1;
        }
        None
    }
}
