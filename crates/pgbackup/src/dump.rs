//! Takes a backup: one consistent snapshot of every table, written as one plain SQL file that
//! stock `psql` restores into an empty database.
//!
//! The file replays the migrations that the database has applied (so the restored schema is the
//! one the code expects, at the same version), replaces whatever rows the migrations inserted
//! with the snapshot's, loads each table with `COPY ... FROM stdin`, sets the sequences, then
//! checks the foreign keys once, after the data is in. All of it runs in one transaction: a
//! restore that fails leaves the target as it was.

use std::{collections::BTreeMap, time::Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::{
    Manifest, TableSummary,
    catalog::{self, ForeignKey, Table, literal},
    digest::{self, RowDigest},
    manifest,
    session::SETTINGS,
    sink::Destination,
    writer::Writer,
};
use migrator::{Migration, Migrator, SCHEMA_MIGRATIONS_DDL};
use platform::db::quote_ident;

/// Backs up the database `client` is connected to into `destination`, then writes the
/// manifest next to it. The manifest is written last: a dump without one is incomplete.
pub async fn backup(
    client: &mut Client,
    migrator: &Migrator,
    destination: &Destination,
) -> anyhow::Result<Manifest> {
    let started_at = Utc::now();
    let clock = Instant::now();
    client
        .batch_execute(SETTINGS)
        .await
        .context("preparing the backup session")?;
    // A repeatable-read snapshot sees every table as of one instant; read-only because a backup
    // never writes. DEFERRABLE only matters at SERIALIZABLE, which could wait for a safe
    // snapshot indefinitely under load; here it costs nothing.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .deferrable(true)
        .start()
        .await
        .context("starting the snapshot")?;

    let applied = catalog::applied_migrations(&tx).await?;
    let migrations = replayable(migrator, &applied)?;
    let plan = Plan {
        tables: catalog::tables(&tx).await?,
        foreign_keys: catalog::foreign_keys(&tx).await?,
        sequences: catalog::sequences(&tx).await?,
        migrations,
    };

    let mut writer = Writer::open(destination).await?;
    let tables = match write_dump(&tx, &mut writer, &plan).await {
        Ok(tables) => tables,
        Err(err) => {
            writer.abort().await;
            return Err(err);
        }
    };
    let written = writer.finish().await?;
    tx.commit().await.context("ending the snapshot")?;

    let finished_at = Utc::now();
    let manifest = Manifest {
        format: manifest::FORMAT,
        dump: destination.name(),
        started_at,
        finished_at,
        duration_ms: u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX),
        migration_version: applied.last().map(|(version, _, _)| *version),
        bytes: written.bytes,
        sql_bytes: written.sql_bytes,
        sha256: written.sha256,
        checksum_algorithm: digest::ALGORITHM.to_owned(),
        tables,
        sequences: plan.sequences.into_iter().collect(),
    };
    let json = serde_json::to_vec_pretty(&manifest).context("encoding the manifest")?;
    destination.put_manifest(json).await?;
    Ok(manifest)
}

struct Plan<'a> {
    migrations: Vec<&'a Migration>,
    tables: Vec<Table>,
    foreign_keys: Vec<ForeignKey>,
    sequences: Vec<(String, i64)>,
}

/// The migration files for what the database has applied, which must be exactly the files
/// this build carries: a backup that replays a different schema would not restore.
fn replayable<'a>(
    migrator: &'a Migrator,
    applied: &[(i64, String, String)],
) -> anyhow::Result<Vec<&'a Migration>> {
    applied
        .iter()
        .map(|(version, name, checksum)| {
            let Some(m) = migrator.migrations().iter().find(|m| m.version == *version) else {
                bail!("migration {version:04}_{name} is applied to the database, but its file is missing here");
            };
            if m.checksum != *checksum {
                bail!("migration {m} changed after it was applied to the database");
            }
            Ok(m)
        })
        .collect()
}

async fn write_dump(
    tx: &Transaction<'_>,
    out: &mut Writer,
    plan: &Plan<'_>,
) -> anyhow::Result<BTreeMap<String, TableSummary>> {
    out.write(header().as_bytes()).await?;

    let mut schema = format!(
        "-- Schema: schema_migrations, then each migration in order.\n{SCHEMA_MIGRATIONS_DDL};\n\n"
    );
    for m in &plan.migrations {
        // The extra `;` ends a last statement written without one; an empty statement is harmless.
        schema.push_str(&format!("-- Migration {m}\n{}\n;\n\n", m.up.trim_end()));
    }
    out.write(schema.as_bytes()).await?;

    let tables: Vec<&Table> = plan
        .tables
        .iter()
        .filter(|t| !t.columns.is_empty())
        .collect();
    let mut before_data = String::new();
    if !tables.is_empty() {
        let names: Vec<String> = tables.iter().map(|t| t.qualified()).collect();
        before_data.push_str(&format!(
            "-- Rows the migrations inserted make way for the snapshot's.\nTRUNCATE {};\n\n",
            names.join(", ")
        ));
    }
    if !plan.foreign_keys.is_empty() {
        before_data.push_str("-- Foreign keys are checked once, after the data is in.\n");
    }
    for fk in &plan.foreign_keys {
        before_data.push_str(&format!(
            "ALTER TABLE public.{} DROP CONSTRAINT {};\n",
            quote_ident(&fk.table),
            quote_ident(&fk.name)
        ));
    }
    out.write(before_data.as_bytes()).await?;

    let mut summaries = BTreeMap::new();
    for table in tables {
        let summary = copy_table(tx, out, table)
            .await
            .with_context(|| format!("dumping table {}", table.name))?;
        summaries.insert(table.name.clone(), summary);
    }

    let mut after_data = String::from("\n");
    for (name, value) in &plan.sequences {
        after_data.push_str(&format!(
            "SELECT pg_catalog.setval({}, {value}, true);\n",
            literal(&format!("public.{}", quote_ident(name)))
        ));
    }
    for fk in &plan.foreign_keys {
        after_data.push_str(&format!(
            "ALTER TABLE public.{} ADD CONSTRAINT {} {};\n",
            quote_ident(&fk.table),
            quote_ident(&fk.name),
            fk.definition
        ));
    }
    after_data.push_str("\nCOMMIT;\n");
    out.write(after_data.as_bytes()).await?;
    Ok(summaries)
}

fn header() -> String {
    format!(
        "-- Logical backup. Restore into an empty database with\n\
         --   gunzip -c backup.sql.gz | psql -v ON_ERROR_STOP=1 \"$DATABASE_URL\"\n\
         -- or `db restore`, which also checks the result against the manifest.\n\n\
         {SETTINGS}\nBEGIN;\n\n"
    )
}

/// Streams one table's rows into the dump, as a COPY block, and digests them on the way.
async fn copy_table(
    tx: &Transaction<'_>,
    out: &mut Writer,
    table: &Table,
) -> anyhow::Result<TableSummary> {
    let columns = table.column_list();
    out.write(format!("COPY {} ({columns}) FROM stdin;\n", table.qualified()).as_bytes())
        .await?;
    let rows = tx
        .copy_out(&format!(
            "COPY (SELECT {columns} FROM ONLY {}) TO STDOUT",
            table.qualified()
        ))
        .await?;
    pin_mut!(rows);
    let mut digest = RowDigest::default();
    while let Some(chunk) = rows.try_next().await? {
        digest.update(&chunk);
        out.write(&chunk).await?;
    }
    out.write(b"\\.\n\n").await?;
    let (rows, checksum) = digest.finish();
    Ok(TableSummary {
        columns: table.columns.clone(),
        rows,
        checksum,
    })
}
