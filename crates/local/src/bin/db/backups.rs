//! `db backup`, `db restore` and `db drill`: the backup engine (`pgbackup`) from a shell.

use std::{io::IsTerminal, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use pgbackup::{Destination, RestoreOptions, Source};
use platform::{
    config::Config,
    db::{self, PoolSettings},
    metrics,
    storage::{self, S3},
};
use secrecy::SecretString;

#[derive(Args)]
pub struct BackupArgs {
    /// Write the dump to this local file (and its manifest next to it) instead of S3.
    #[arg(long, value_name = "PATH")]
    to: Option<PathBuf>,
    /// Also print the dump's size and the time taken as one CloudWatch EMF line (BackupBytes,
    /// BackupDuration): the Fargate task's entrypoint asks for it.
    #[arg(long)]
    metrics: bool,
}

#[derive(Args)]
pub struct DrillArgs {
    /// Also print the size restored and the time taken as one CloudWatch EMF line (DrillBytes,
    /// DrillDuration): the Fargate task's entrypoint asks for it.
    #[arg(long)]
    metrics: bool,
}

/// One EMF line in the backup namespace: `<prefix>Bytes` and `<prefix>Duration`.
fn report(config: &Config, prefix: &str, bytes: u64, took: Duration) {
    let environment = config.app_env.to_string();
    let bytes_name = format!("{prefix}Bytes");
    let duration_name = format!("{prefix}Duration");
    metrics::emit_all(
        metrics::BACKUP_NAMESPACE,
        &[
            (
                &bytes_name,
                i64::try_from(bytes).unwrap_or(i64::MAX),
                "Bytes",
            ),
            (
                &duration_name,
                i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
                "Milliseconds",
            ),
        ],
        &[("Environment", &environment)],
    );
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The dump: s3://bucket/key, or a local path.
    #[arg(long, value_name = "S3_URL_OR_PATH", required_unless_present_any = ["key", "latest"])]
    from: Option<String>,
    /// The dump's key in BACKUP_BUCKET (backups/YYYY/MM/DD/backup_....sql.gz).
    #[arg(long, conflicts_with = "from")]
    key: Option<String>,
    /// The newest complete backup in BACKUP_BUCKET.
    #[arg(long, conflicts_with_all = ["from", "key"])]
    latest: bool,
    /// The database to restore into (default: DATABASE_URL).
    #[arg(long, value_name = "URL")]
    target_url: Option<String>,
    /// Replace the target's public schema even when it holds tables.
    #[arg(long)]
    force: bool,
}

/// A dump and a restore run single statements for minutes: no statement timeout.
fn settings(config: &Config) -> PoolSettings {
    PoolSettings {
        statement_timeout: Duration::ZERO,
        ..PoolSettings::from_config(config)
    }
}

async fn s3(config: &Config) -> S3 {
    storage::for_transfers(&storage::s3_client(config).await)
}

pub async fn backup(config: &Config, args: BackupArgs) -> anyhow::Result<()> {
    let destination = match args.to {
        Some(path) => Destination::File(path),
        None => Destination::S3 {
            s3: s3(config).await,
            bucket: config.backup_bucket.clone(),
            key: pgbackup::dump_key(chrono::Utc::now()),
        },
    };
    let started = std::time::Instant::now();
    let mut conn = db::connect_once(&config.database_url, &settings(config)).await?;
    let manifest = pgbackup::backup(&mut conn, &destination).await?;
    let rows: u64 = manifest.tables.values().map(|t| t.rows).sum();
    println!(
        "backed up {} tables, {rows} rows, to {} ({} bytes, {:.1} s)",
        manifest.tables.len(),
        manifest.dump,
        manifest.bytes,
        Duration::from_millis(manifest.duration_ms).as_secs_f64()
    );
    if args.metrics {
        report(config, "Backup", manifest.bytes, started.elapsed());
    }
    Ok(())
}

pub async fn restore(config: &Config, args: RestoreArgs) -> anyhow::Result<()> {
    let source = match (args.from, args.key, args.latest) {
        (Some(from), _, _) => match from.strip_prefix("s3://") {
            Some(rest) => {
                let Some((bucket, key)) = rest.split_once('/') else {
                    bail!("--from s3://bucket/key needs a key");
                };
                Source::S3 {
                    s3: s3(config).await,
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }
            }
            None => Source::File(PathBuf::from(from)),
        },
        (None, Some(key), _) => Source::S3 {
            s3: s3(config).await,
            bucket: config.backup_bucket.clone(),
            key,
        },
        (None, None, _) => {
            let s3 = s3(config).await;
            let key = pgbackup::newest(&s3, &config.backup_bucket)
                .await?
                .with_context(|| {
                    format!(
                        "no complete backup in s3://{}/backups/",
                        config.backup_bucket
                    )
                })?;
            Source::S3 {
                s3,
                bucket: config.backup_bucket.clone(),
                key,
            }
        }
    };
    let target = args
        .target_url
        .map_or_else(|| config.database_url.clone(), SecretString::from);
    let mut conn = db::connect_once(&target, &settings(config)).await?;
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} restoring [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let progress = |read: u64, total: Option<u64>| {
        if let Some(bar) = &bar {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(read);
        }
    };
    let restored = pgbackup::restore(
        &mut conn,
        &source,
        RestoreOptions {
            force: args.force,
            progress: Some(&progress),
            read_back: false,
        },
    )
    .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let restored = restored?;
    println!(
        "restored {} tables, {} rows, from {} in {:.1} s; verified against the manifest",
        restored.manifest.tables.len(),
        restored.rows(),
        source.name(),
        restored.duration.as_secs_f64()
    );
    Ok(())
}

pub async fn drill(config: &Config, args: DrillArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let s3 = s3(config).await;
    let (key, restored) = pgbackup::drill(
        &s3,
        &config.backup_bucket,
        &config.database_url,
        &settings(config),
        &pgbackup::scratch_name(),
    )
    .await?;
    println!(
        "drill passed: s3://{}/{key} restored and verified ({} tables, {} rows) in {:.1} s",
        config.backup_bucket,
        restored.manifest.tables.len(),
        restored.rows(),
        restored.duration.as_secs_f64()
    );
    if args.metrics {
        report(config, "Drill", restored.manifest.bytes, started.elapsed());
    }
    Ok(())
}
