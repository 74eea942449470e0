//! A fresh Postgres database per test, cloned from a template that holds every migration.
//!
//! The template is named after a hash of the migration files, so a changed migration gets a new
//! template. Test processes (nextest runs one per test) build it at most once, under an advisory
//! lock. Each test database is dropped when its `TestDatabase` is dropped.

use migrator::Migrator;
use platform::db::{self, PoolSettings, quote_ident};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;

const TEMPLATE_LOCK: i64 = 0x7465_6d70_6c61_7465;

pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `server_url` with another database name.
pub fn url_for(dbname: &str) -> String {
    let base = server_url();
    let (without_query, query) = base
        .split_once('?')
        .map_or((base.as_str(), None), |(b, q)| (b, Some(q)));
    let root = without_query
        .rsplit_once('/')
        .map_or(without_query, |(root, _)| root);
    // `postgres://host` has no path: keep the authority.
    let root = if root.ends_with(':') || root.ends_with('/') {
        without_query
    } else {
        root
    };
    match query {
        Some(q) => format!("{root}/{dbname}?{q}"),
        None => format!("{root}/{dbname}"),
    }
}

pub fn settings() -> PoolSettings {
    PoolSettings {
        max_size: 1,
        statement_timeout: std::time::Duration::from_secs(30),
        connect_timeout: std::time::Duration::from_secs(5),
        wait_timeout: std::time::Duration::from_secs(10),
        ca_cert: None,
    }
}

pub async fn admin_connection() -> platform::db::Connection {
    platform::install_crypto_provider();
    db::connect_once(&SecretString::from(url_for("postgres")), &settings())
        .await
        .expect("Postgres is running on 127.0.0.1:5432 (start it as .ci/run does)")
}

pub fn migrations_dir() -> std::path::PathBuf {
    crate::support::repo_root().join("migrations")
}

pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// A fresh database holding every migration (and no rows).
    pub async fn create() -> Self {
        let template = ensure_template().await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_connection().await;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                quote_ident(&name),
                quote_ident(&template)
            ))
            .await
            .expect("cloning the template database");
        Self {
            url: url_for(&name),
            name,
        }
    }

    /// A fresh database with nothing in it, not even the migrations.
    pub async fn empty() -> Self {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_connection().await;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .expect("creating a database");
        Self {
            url: url_for(&name),
            name,
        }
    }

    pub async fn connect(&self) -> platform::db::Connection {
        db::connect_once(&SecretString::from(self.url.clone()), &settings())
            .await
            .expect("connecting")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any async context we could block on: use a small runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let admin = admin_connection().await;
                let _ = admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_ident(&name)
                    ))
                    .await;
            });
        })
        .join();
    }
}

async fn ensure_template() -> String {
    let migrator = Migrator::from_dir(&migrations_dir()).expect("migrations load");
    let mut hasher = Sha256::new();
    for m in migrator.migrations() {
        hasher.update(m.version.to_le_bytes());
        hasher.update(m.checksum.as_bytes());
    }
    let template = format!("template_{}", &hex::encode(hasher.finalize())[..16]);

    let admin = admin_connection().await;
    admin
        .query_typed(
            "SELECT pg_advisory_lock($1)",
            &[(&TEMPLATE_LOCK, Type::INT8)],
        )
        .await
        .expect("template lock");
    let exists = admin
        .query_typed_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&template, Type::TEXT)],
        )
        .await
        .expect("looking up the template")
        .is_some();
    if !exists {
        let building = format!("{template}_building");
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&building)
            ))
            .await
            .expect("dropping a half-built template");
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&building)))
            .await
            .expect("creating the template");
        {
            let mut conn = db::connect_once(&SecretString::from(url_for(&building)), &settings())
                .await
                .expect("connecting to the template");
            migrator
                .up(&mut conn)
                .await
                .expect("migrating the template");
        }
        // Publish the template only once it is complete. The rename fails while the migration
        // connection is still closing, so retry briefly.
        let rename = format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(&template)
        );
        let mut attempts = 0;
        while let Err(err) = admin.batch_execute(&rename).await {
            attempts += 1;
            assert!(attempts < 100, "publishing the template: {err}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    admin
        .query_typed(
            "SELECT pg_advisory_unlock($1)",
            &[(&TEMPLATE_LOCK, Type::INT8)],
        )
        .await
        .expect("template unlock");
    template
}
