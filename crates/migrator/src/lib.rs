//! Plain-SQL migrations: `NNNN_name.up.sql` and `NNNN_name.down.sql`.
//!
//! Each migration runs in its own transaction, and the whole run holds a session advisory lock,
//! so two deploys (or two developers) racing each other apply every migration exactly once.
//! Applied migrations are recorded with a SHA-256 checksum of their up file in
//! `schema_migrations`; an applied migration whose file changed stops the run. Migrations must
//! not use statements that refuse a transaction (`CREATE INDEX CONCURRENTLY`).

use std::{fmt, fs, path::Path};

use anyhow::{Context, bail, ensure};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, types::Type};

/// An arbitrary constant naming this app's migration lock.
const LOCK_KEY: i64 = 0x006d_6967_7261_7465; // "migrate"

#[derive(Debug, Clone)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub up: String,
    pub down: Option<String>,
    pub checksum: String,
}

impl Migration {
    pub fn new(version: i64, name: &str, up: &str, down: Option<&str>) -> Self {
        Self {
            version,
            name: name.to_owned(),
            up: up.to_owned(),
            down: down.map(str::to_owned),
            checksum: hex::encode(Sha256::digest(up.as_bytes())),
        }
    }
}

impl fmt::Display for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}_{}", self.version, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Applied(DateTime<Utc>),
    Pending,
    /// Applied, but the file changed since.
    Changed,
    /// Recorded as applied, but its file is gone.
    Missing,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub version: i64,
    pub name: String,
    pub state: State,
}

#[derive(Debug, Clone)]
pub struct Migrator {
    migrations: Vec<Migration>,
}

struct Applied {
    version: i64,
    name: String,
    checksum: String,
    applied_at: DateTime<Utc>,
}

impl Migrator {
    pub fn new(mut migrations: Vec<Migration>) -> anyhow::Result<Self> {
        migrations.sort_by_key(|m| m.version);
        for pair in migrations.windows(2) {
            ensure!(
                pair[0].version != pair[1].version,
                "two migrations share version {:04}",
                pair[0].version
            );
        }
        Ok(Self { migrations })
    }

    /// Reads `NNNN_name.up.sql` (and the optional `.down.sql`) files from a folder.
    pub fn from_dir(dir: &Path) -> anyhow::Result<Self> {
        let mut migrations = Vec::new();
        let entries = fs::read_dir(dir)
            .with_context(|| format!("reading the migrations folder {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".up.sql") else {
                continue;
            };
            let (version, name) = parse_stem(stem)
                .with_context(|| format!("migration file {file} is not named NNNN_name.up.sql"))?;
            let up =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let down_path = dir.join(format!("{stem}.down.sql"));
            let down = down_path
                .exists()
                .then(|| fs::read_to_string(&down_path))
                .transpose()?;
            migrations.push(Migration::new(version, name, &up, down.as_deref()));
        }
        Self::new(migrations)
    }

    /// Builds from migration files compiled into a binary, as `(file name, contents)` pairs
    /// (`NNNN_name.up.sql` and `NNNN_name.down.sql`): for functions that carry their migrations
    /// instead of reading a folder.
    pub fn from_embedded(files: &[(&str, &str)]) -> anyhow::Result<Self> {
        let migrations = files
            .iter()
            .filter_map(|(file, up)| file.strip_suffix(".up.sql").map(|stem| (stem, up)))
            .map(|(stem, up)| {
                let (version, name) = parse_stem(stem)
                    .with_context(|| format!("migration {stem} is not named NNNN_name"))?;
                let down_file = format!("{stem}.down.sql");
                let down = files
                    .iter()
                    .find(|(f, _)| *f == down_file)
                    .map(|(_, sql)| *sql);
                Ok(Migration::new(version, name, up, down))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Self::new(migrations)
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// Applies every pending migration, in order. Returns what was applied.
    pub async fn up(&self, client: &mut Client) -> anyhow::Result<Vec<String>> {
        self.locked(client, |this, client| Box::pin(this.up_locked(client)))
            .await
    }

    /// Reverts the `n` most recently applied migrations.
    pub async fn down(&self, client: &mut Client, n: usize) -> anyhow::Result<Vec<String>> {
        self.locked(client, move |this, client| {
            Box::pin(this.down_locked(client, n))
        })
        .await
    }

    /// Reverts everything, then applies everything.
    pub async fn reset(&self, client: &mut Client) -> anyhow::Result<Vec<String>> {
        self.locked(client, |this, client| {
            Box::pin(async move {
                this.down_locked(client, usize::MAX).await?;
                this.up_locked(client).await
            })
        })
        .await
    }

    pub async fn status(&self, client: &mut Client) -> anyhow::Result<Vec<Status>> {
        ensure_table(client).await?;
        let applied = applied(client).await?;
        let mut out: Vec<Status> = self
            .migrations
            .iter()
            .map(|m| {
                let state = match applied.iter().find(|a| a.version == m.version) {
                    Some(a) if a.checksum != m.checksum => State::Changed,
                    Some(a) => State::Applied(a.applied_at),
                    None => State::Pending,
                };
                Status {
                    version: m.version,
                    name: m.name.clone(),
                    state,
                }
            })
            .collect();
        for a in applied
            .iter()
            .filter(|a| !self.migrations.iter().any(|m| m.version == a.version))
        {
            out.push(Status {
                version: a.version,
                name: a.name.clone(),
                state: State::Missing,
            });
        }
        out.sort_by_key(|s| s.version);
        Ok(out)
    }

    /// Runs `work` while holding the migration lock; the lock is released however it ends.
    async fn locked<F, T>(&self, client: &mut Client, work: F) -> anyhow::Result<T>
    where
        F: for<'a> FnOnce(
            &'a Self,
            &'a mut Client,
        )
            -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>,
    {
        client
            .query_typed("SELECT pg_advisory_lock($1)", &[(&LOCK_KEY, Type::INT8)])
            .await
            .context("taking the migration lock")?;
        let result = async {
            ensure_table(client).await?;
            work(self, client).await
        }
        .await;
        client
            .query_typed("SELECT pg_advisory_unlock($1)", &[(&LOCK_KEY, Type::INT8)])
            .await
            .context("releasing the migration lock")?;
        result
    }

    async fn up_locked(&self, client: &mut Client) -> anyhow::Result<Vec<String>> {
        let applied = applied(client).await?;
        self.check_checksums(&applied)?;
        let mut done = Vec::new();
        for m in self
            .migrations
            .iter()
            .filter(|m| !applied.iter().any(|a| a.version == m.version))
        {
            let tx = client.transaction().await?;
            tx.batch_execute(&m.up)
                .await
                .with_context(|| format!("applying migration {m}"))?;
            tx.execute_typed(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[
                    (&m.version, Type::INT8),
                    (&m.name, Type::TEXT),
                    (&m.checksum, Type::TEXT),
                ],
            )
            .await
            .with_context(|| format!("recording migration {m}"))?;
            tx.commit()
                .await
                .with_context(|| format!("committing migration {m}"))?;
            done.push(m.to_string());
        }
        Ok(done)
    }

    async fn down_locked(&self, client: &mut Client, n: usize) -> anyhow::Result<Vec<String>> {
        let applied = applied(client).await?;
        self.check_checksums(&applied)?;
        let mut done = Vec::new();
        for a in applied.iter().rev().take(n) {
            let Some(m) = self.migrations.iter().find(|m| m.version == a.version) else {
                bail!(
                    "migration {:04}_{} is applied but its file is missing",
                    a.version,
                    a.name
                );
            };
            let Some(down) = &m.down else {
                bail!("migration {m} has no down file")
            };
            let tx = client.transaction().await?;
            tx.batch_execute(down)
                .await
                .with_context(|| format!("reverting migration {m}"))?;
            tx.execute_typed(
                "DELETE FROM schema_migrations WHERE version = $1",
                &[(&m.version, Type::INT8)],
            )
            .await?;
            tx.commit()
                .await
                .with_context(|| format!("committing the revert of {m}"))?;
            done.push(m.to_string());
        }
        Ok(done)
    }

    fn check_checksums(&self, applied: &[Applied]) -> anyhow::Result<()> {
        for a in applied {
            if let Some(m) = self.migrations.iter().find(|m| m.version == a.version) {
                ensure!(
                    m.checksum == a.checksum,
                    "migration {m} was changed after it was applied; add a new migration instead"
                );
            }
        }
        Ok(())
    }

    /// The newest version recorded as applied, if any.
    pub async fn current_version(client: &Client) -> anyhow::Result<Option<i64>> {
        ensure_table(client).await?;
        let row = client
            .query_typed_one("SELECT max(version) FROM schema_migrations", &[])
            .await?;
        Ok(row.get(0))
    }
}

fn parse_stem(stem: &str) -> Option<(i64, &str)> {
    let (version, name) = stem.split_once('_')?;
    let valid_name =
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (valid_name && version.chars().all(|c| c.is_ascii_digit()))
        .then_some((version.parse().ok()?, name))
}

/// The table that records applied migrations. Backups recreate it with the same definition.
pub const SCHEMA_MIGRATIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    bigint PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

async fn ensure_table(client: &Client) -> anyhow::Result<()> {
    client
        .batch_execute(SCHEMA_MIGRATIONS_DDL)
        .await
        .context("creating schema_migrations")
}

async fn applied(client: &Client) -> anyhow::Result<Vec<Applied>> {
    let rows = client
        .query_typed(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .context("reading schema_migrations")?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            applied_at: r.get(3),
        })
        .collect())
}

/// Writes an empty up/down pair named after the next free version; returns the up file's path.
pub fn create(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ensure!(
        valid,
        "a migration name uses letters, digits and underscores only"
    );
    fs::create_dir_all(dir)?;
    let next = Migrator::from_dir(dir)?
        .migrations
        .last()
        .map_or(1, |m| m.version + 1);
    let up = dir.join(format!("{next:04}_{name}.up.sql"));
    let down = dir.join(format!("{next:04}_{name}.down.sql"));
    fs::write(&up, format!("-- {name}: applied by `db up`\n"))?;
    fs::write(
        &down,
        format!("-- {name}: reverts the up file, applied by `db down`\n"),
    )?;
    Ok(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_parsed() {
        assert_eq!(parse_stem("0001_users"), Some((1, "users")));
        assert_eq!(parse_stem("0012_add_index"), Some((12, "add_index")));
        assert_eq!(parse_stem("users"), None);
        assert_eq!(parse_stem("00a1_x"), None);
    }

    #[test]
    fn duplicate_versions_are_refused() {
        let a = Migration::new(1, "a", "select 1", None);
        let b = Migration::new(1, "b", "select 2", None);
        assert!(Migrator::new(vec![a, b]).is_err());
    }
}
