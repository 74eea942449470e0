//! The scheduled tasks, each an EventBridge input to the backup function:
//!
//! - `{"task":"backup"}` (daily): a logical backup of the primary to the backups bucket, then
//!   one EMF line with `BackupSucceeded` (1 or 0), `BackupDuration` (milliseconds) and, when it
//!   was written, `BackupBytes` (the compressed dump);
//! - `{"task":"maintenance"}` (daily): objects no upload row names (a file PUT through its URL
//!   after its account was deleted) are removed, and uploads never completed within 24 hours
//!   are removed, their objects and their rows.
//!
//! A task that fails returns its error, so the invocation fails and the alarms see it. The
//! weekly restore drill is not a task here: it runs as `db drill` in an ECS task with a Postgres
//! of its own, so that it never restores into the production database (see template.yaml).

use std::time::{Duration, Instant};

use anyhow::Context;
pub use domain::files::ABANDONED_AFTER;
use pgbackup::Destination;
use platform::{
    config::Config,
    db::{self, PoolSettings},
    metrics,
    storage::{self, S3},
};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "task", rename_all = "lowercase")]
pub enum Task {
    Backup,
    Maintenance,
}

/// What the tasks need, built once per cold start.
pub struct Tasks {
    config: Config,
    s3: S3,
}

impl Tasks {
    pub async fn new(config: Config) -> Self {
        platform::install_crypto_provider();
        let s3 = storage::for_transfers(&storage::s3_client(&config).await);
        Self { config, s3 }
    }

    /// Runs one task and reports what it did.
    pub async fn run(&self, task: Task) -> anyhow::Result<Value> {
        match task {
            Task::Backup => {
                let started = Instant::now();
                let result = self.backup().await;
                let bytes = result.as_ref().ok().and_then(|r| r["bytes"].as_i64());
                self.report_backup(bytes, started.elapsed());
                result
            }
            Task::Maintenance => self.maintenance().await,
        }
    }

    /// `bytes` is the dump's size when the backup was written, `None` when it failed.
    fn report_backup(&self, bytes: Option<i64>, took: Duration) {
        let environment = self.config.app_env.to_string();
        let took = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        let mut values = vec![
            ("BackupSucceeded", i64::from(bytes.is_some()), "Count"),
            ("BackupDuration", took, "Milliseconds"),
        ];
        if let Some(bytes) = bytes {
            values.push(("BackupBytes", bytes, "Bytes"));
        }
        metrics::emit_all(
            metrics::BACKUP_NAMESPACE,
            &values,
            &[("Environment", &environment)],
        );
    }

    /// Long statements are expected: one COPY per table.
    fn settings(&self) -> PoolSettings {
        PoolSettings {
            statement_timeout: Duration::ZERO,
            ..PoolSettings::from_config(&self.config)
        }
    }

    async fn backup(&self) -> anyhow::Result<Value> {
        let bucket = &self.config.backup_bucket;
        let key = pgbackup::dump_key(chrono::Utc::now());
        let mut conn = db::connect_once(&self.config.database_url, &self.settings()).await?;
        let destination = Destination::S3 {
            s3: self.s3.clone(),
            bucket: bucket.clone(),
            key: key.clone(),
        };
        let manifest = pgbackup::backup(&mut conn, &destination)
            .await
            .with_context(|| format!("backing up to s3://{bucket}/{key}"))?;
        let rows: u64 = manifest.tables.values().map(|t| t.rows).sum();
        tracing::info!(
            key,
            bytes = manifest.bytes,
            rows,
            duration_ms = manifest.duration_ms,
            "backup written"
        );
        Ok(json!({
            "key": key,
            "bytes": manifest.bytes,
            "tables": manifest.tables.len(),
            "rows": rows,
            "duration_ms": manifest.duration_ms,
        }))
    }

    async fn maintenance(&self) -> anyhow::Result<Value> {
        let conn = db::connect_once(
            &self.config.database_url,
            &PoolSettings::from_config(&self.config),
        )
        .await?;
        let removed = domain::files::clean_up_abandoned(
            &**conn,
            &self.s3,
            &self.config.uploads_bucket,
            ABANDONED_AFTER,
        )
        .await?;
        let orphans =
            domain::files::clean_up_orphans(&**conn, &self.s3, &self.config.uploads_bucket).await?;
        tracing::info!(
            removed,
            orphans,
            "abandoned uploads and orphaned objects removed"
        );
        Ok(json!({
            "abandoned_uploads_removed": removed,
            "orphaned_objects_removed": orphans,
        }))
    }
}
