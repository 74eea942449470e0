//! Backups against real Postgres and the moto S3 server: each test has its own bucket and its
//! own databases, migrated with the repository's migrations plus test-only tables (an identity
//! and a serial column, a generated column, the two sides of a transfer).

mod consistency;
mod drill;
mod failures;
mod fargate;
mod function;
mod live_schema;
mod round_trip;

use std::path::{Path, PathBuf};

use migrator::Migrator;
use pgbackup::{Destination, Manifest, Source};
use platform::{config::Config, db, storage::S3};
use secrecy::SecretString;

use crate::support::{
    TestDatabase,
    database::{migrations_dir, settings},
    moto,
};

/// Tables only these tests create. `test_b_pause` sorts between the two sides of the transfer,
/// so a lock on it holds a backup between them.
const TEST_MIGRATION: &str = "
CREATE TABLE test_accounts (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL,
    balance bigint NOT NULL,
    doubled bigint GENERATED ALWAYS AS (balance * 2) STORED,
    note    text,
    data    bytea,
    tags    text[],
    doc     jsonb,
    ratio   double precision,
    amount  numeric,
    span    interval,
    at      timestamptz
);
CREATE TABLE test_b_pause (id int PRIMARY KEY);
CREATE TABLE test_savings (
    id         serial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES test_accounts (id),
    balance    bigint NOT NULL
);
CREATE TABLE test_a_bulk (id int PRIMARY KEY, payload text NOT NULL);
";

/// Rows a migration inserts: a restore must hold the snapshot's rows, not these twice.
const TEST_SEED_MIGRATION: &str = "INSERT INTO test_b_pause (id) VALUES (1);";

pub struct Fixture {
    pub db: TestDatabase,
    pub migrator: Migrator,
    pub migrations: PathBuf,
    pub s3: S3,
    pub bucket: String,
    pub dir: PathBuf,
}

impl Fixture {
    /// A migrated database with the test tables, an empty bucket and a scratch folder.
    pub async fn new() -> Self {
        moto::ensure_multipart_running().await;
        let dir =
            std::env::temp_dir().join(format!("backup-test-{}", uuid::Uuid::new_v4().simple()));
        let migrations = dir.join("migrations");
        std::fs::create_dir_all(&migrations).expect("scratch folder");
        for entry in std::fs::read_dir(migrations_dir()).expect("migrations") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, migrations.join(path.file_name().expect("name"))).expect("copy");
        }
        std::fs::write(migrations.join("9001_test_tables.up.sql"), TEST_MIGRATION).expect("write");
        std::fs::write(
            migrations.join("9002_test_seed.up.sql"),
            TEST_SEED_MIGRATION,
        )
        .expect("write");
        let migrator = Migrator::from_dir(&migrations).expect("migrations load");

        let db = TestDatabase::empty().await;
        let mut conn = db.connect().await;
        migrator.up(&mut conn).await.expect("migrating");

        let config = config(&db, "unused");
        let s3 = platform::storage::s3_client(&config).await;
        let bucket = format!("backups-{}", uuid::Uuid::new_v4().simple());
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("bucket");
        Self {
            db,
            migrator,
            migrations,
            s3,
            bucket,
            dir,
        }
    }

    pub fn config(&self) -> Config {
        config(&self.db, &self.bucket)
    }

    pub async fn client(&self) -> db::Connection {
        self.db.connect().await
    }

    pub async fn fill(&self) {
        let client = self.client().await;
        fill(&client).await;
    }

    pub async fn all_rows(&self) -> Vec<(String, Vec<String>)> {
        let client = self.client().await;
        all_rows(&client).await
    }

    pub fn destination(&self, key: &str) -> Destination {
        Destination::S3 {
            s3: self.s3.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }

    pub fn source(&self, key: &str) -> Source {
        Source::S3 {
            s3: self.s3.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }

    /// Backs the database up to S3 under a fresh key.
    pub async fn backup(&self) -> (String, Manifest) {
        let key = pgbackup::dump_key(chrono::Utc::now());
        let mut conn = backup_connection(&self.db).await;
        let manifest = pgbackup::backup(&mut conn, &self.destination(&key))
            .await
            .expect("backup");
        (key, manifest)
    }

    /// Every key in the bucket.
    pub async fn keys(&self) -> Vec<String> {
        let page = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("listing");
        page.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    pub async fn download(&self, key: &str) -> Vec<u8> {
        let object = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get");
        object.body.collect().await.expect("body").to_vec()
    }

    pub async fn upload(&self, key: &str, bytes: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(bytes.into())
            .send()
            .await
            .expect("put");
    }

    /// The `db` command with this fixture's settings.
    pub fn db_command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(crate::support::workspace_bin("db"));
        cmd.env("DATABASE_URL", &self.db.url)
            .env("MIGRATIONS_DIR", &self.migrations)
            .env("AWS_ENDPOINT_URL", moto::MULTIPART_ENDPOINT)
            .env("BACKUP_BUCKET", &self.bucket)
            .env("APP_ENV", "test");
        cmd
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(db: &TestDatabase, bucket: &str) -> Config {
    let vars = std::collections::HashMap::from([
        ("APP_ENV", "test".to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("AWS_ENDPOINT_URL", moto::MULTIPART_ENDPOINT.to_owned()),
        ("BACKUP_BUCKET", bucket.to_owned()),
        (
            "UPLOADS_BUCKET",
            format!("uploads-{}", uuid::Uuid::new_v4().simple()),
        ),
    ]);
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config")
}

/// A session without the pool's statement timeout, as the backup function opens one.
pub async fn backup_connection(db: &TestDatabase) -> db::Connection {
    db::connect_once(
        &SecretString::from(db.url.clone()),
        &db::PoolSettings {
            statement_timeout: std::time::Duration::ZERO,
            ..settings()
        },
    )
    .await
    .expect("connecting")
}

/// Fills the test tables: awkward values in every column type, a sequence left ahead of the
/// rows (deleted rows), and users, tokens and uploads through plain SQL.
pub async fn fill(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            r#"
            INSERT INTO users (id, email, name, role, password_hash) VALUES
              ('00000000-0000-0000-0000-000000000001', 'ana@example.com', 'Ana	"Tab" \ Back', 'admin', 'h1'),
              ('00000000-0000-0000-0000-000000000002', 'ben@example.com', E'Ben\nNew line\r\n', 'user', 'h2'),
              ('00000000-0000-0000-0000-000000000003', 'chen@example.com', 'Chén 陈 🚀 \N', 'user', 'h3');
            INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, family_expires_at)
              VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', gen_random_uuid(),
                      '\x00ff5c0a09', now() + interval '1 day', now() + interval '7 days');
            INSERT INTO uploads (id, user_id, object_key, filename, content_type, size)
              VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000002', 'uploads/x/y',
                      'a\b.png', 'image/png', 12);
            INSERT INTO test_accounts (name, balance, note, data, tags, doc, ratio, amount, span, at)
              SELECT 'account ' || g, 1000, CASE WHEN g % 3 = 0 THEN NULL ELSE E'line\nnext\t\\' END,
                     decode(md5(g::text), 'hex'), ARRAY['a b', NULL, 'c"d'], jsonb_build_object('g', g, 's', E'x\ty'),
                     0.1 + g / 3.0::float8, 12345678901234567890.123456789 / g, make_interval(days => g, secs => 1.5),
                     '2024-02-29 23:59:59.999999+05:30'::timestamptz + g * interval '1 hour'
                FROM generate_series(1, 200) g;
            INSERT INTO test_savings (account_id, balance) SELECT id, 1000 FROM test_accounts;
            DELETE FROM test_savings WHERE id > 195;
            DELETE FROM test_accounts WHERE id > 195;
            "#,
        )
        .await
        .expect("filling the tables");
}

/// Every row of every table in `public`, as text, sorted: two databases hold the same data when
/// these are equal.
pub async fn all_rows(client: &tokio_postgres::Client) -> Vec<(String, Vec<String>)> {
    let tables = client
        .query_typed(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    let mut out = Vec::new();
    for t in tables {
        let name: String = t.get(0);
        let rows = client
            .query_typed(
                &format!(
                    "SELECT t::text FROM public.{} t ORDER BY 1",
                    db::quote_ident(&name)
                ),
                &[],
            )
            .await
            .expect("rows");
        out.push((name, rows.iter().map(|r| r.get(0)).collect()));
    }
    out
}

/// Runs `gunzip -c file | psql -v ON_ERROR_STOP=1 url`; returns whether it succeeded and psql's
/// error output.
pub fn psql_restore(file: &Path, url: &str) -> (bool, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("gunzip -c \"$1\" | psql -q -v ON_ERROR_STOP=1 \"$2\"")
        .arg("sh")
        .arg(file)
        .arg(url)
        .output()
        .expect("running psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
