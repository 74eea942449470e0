//! Takes a backup: one consistent snapshot of the database, written as one plain SQL file that
//! stock `psql` restores into an empty database.
//!
//! The file creates the schema as the live catalog describes it ([`crate::schema`]), loads
//! each table with `COPY ... FROM stdin`, sets the sequences, then builds the keys, indexes,
//! foreign keys and triggers once, over the loaded rows, as `pg_restore` does. All of it runs in
//! one transaction: a restore that fails leaves the target as it was.

use std::{collections::BTreeMap, time::Instant};

use anyhow::Context;
use chrono::Utc;
use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::{Client, IsolationLevel, Transaction};

use crate::{
    Manifest, TableSummary,
    catalog::{self, Table, literal},
    digest::{self, RowDigest},
    manifest,
    schema::{self, Schema},
    session::SETTINGS,
    sink::Destination,
    writer::Writer,
};
use platform::db::quote_ident;

/// Backs up the database `client` is connected to into `destination`, then writes the
/// manifest next to it. The manifest is written last: a dump without one is incomplete. A
/// database holding an object the backup cannot reproduce fails before anything is written.
pub async fn backup(client: &mut Client, destination: &Destination) -> anyhow::Result<Manifest> {
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

    let plan = Plan {
        schema: schema::describe(&tx).await?,
        tables: catalog::tables(&tx).await?,
        sequences: catalog::sequences(&tx).await?,
    };
    let migration_version = catalog::migration_version(&tx).await?;
    if !plan.schema.uncovered_schemas.is_empty() {
        tracing::warn!(
            schemas = ?plan.schema.uncovered_schemas,
            "the backup covers the public schema only: these schemas are not in it"
        );
    }

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
        migration_version,
        bytes: written.bytes,
        sql_bytes: written.sql_bytes,
        sha256: written.sha256,
        checksum_algorithm: digest::ALGORITHM.to_owned(),
        tables,
        sequences: plan.sequences.into_iter().collect(),
        uncovered_schemas: plan.schema.uncovered_schemas,
    };
    let json = serde_json::to_vec_pretty(&manifest).context("encoding the manifest")?;
    destination.put_manifest(json).await?;
    Ok(manifest)
}

struct Plan {
    schema: Schema,
    tables: Vec<Table>,
    sequences: Vec<(String, i64)>,
}

async fn write_dump(
    tx: &Transaction<'_>,
    out: &mut Writer,
    plan: &Plan,
) -> anyhow::Result<BTreeMap<String, TableSummary>> {
    out.write(header().as_bytes()).await?;
    out.write(plan.schema.before_data.as_bytes()).await?;

    let mut summaries = BTreeMap::new();
    for table in plan.tables.iter().filter(|t| !t.columns.is_empty()) {
        let summary = copy_table(tx, out, table)
            .await
            .with_context(|| format!("dumping table {}", table.name))?;
        summaries.insert(table.name.clone(), summary);
    }

    let mut after_data = String::from("\n");
    if !plan.sequences.is_empty() {
        after_data.push_str("-- Sequences' values\n");
    }
    for (name, value) in &plan.sequences {
        after_data.push_str(&format!(
            "SELECT pg_catalog.setval({}, {value}, true);\n",
            literal(&format!("public.{}", quote_ident(name)))
        ));
    }
    after_data.push('\n');
    after_data.push_str(&plan.schema.after_data);
    after_data.push_str("COMMIT;\n");
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
    out.write(format!("{}\n", table.copy_in_statement()).as_bytes())
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
