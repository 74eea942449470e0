//! Checks a restored database against the manifest of the backup it came from: migration
//! version, every table's row count and checksum, every sequence. Lists every difference.
//!
//! Two ways to get each table's rows: [`verify`] reads every table back (for a database restored
//! by `psql`, and for the restore drill, which proves the most); [`verify_loaded`] uses what the
//! restore saw on the way in, the checksum of the rows it sent and the count the server reports
//! having stored for each COPY, so a restore in a hurry does not read everything twice.

use std::collections::BTreeSet;

use anyhow::bail;
use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::Client;

use crate::{
    Manifest,
    catalog::{self, columns_sql},
    digest::RowDigest,
    load::Copied,
    session::SETTINGS,
};
use platform::db::quote_ident;

/// Checks the database `client` is connected to (inside the restore's transaction, or after a
/// restore by `psql`).
pub async fn verify(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    // The checksums are over the rows' text, which these settings fix.
    client.batch_execute(SETTINGS).await?;
    let mut problems = version_problems(client, manifest).await?;

    let present: BTreeSet<String> = catalog::tables(client)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    for (name, expected) in &manifest.tables {
        if !present.contains(name) {
            problems.push(format!("table {name} is missing"));
            continue;
        }
        let rows = client
            .copy_out(&format!(
                "COPY (SELECT {} FROM ONLY public.{}) TO STDOUT",
                columns_sql(&expected.columns),
                quote_ident(name)
            ))
            .await?;
        pin_mut!(rows);
        let mut digest = RowDigest::default();
        while let Some(chunk) = rows.try_next().await? {
            digest.update(&chunk);
        }
        let (count, checksum) = digest.finish();
        if count != expected.rows {
            problems.push(format!(
                "table {name} has {count} rows, the backup has {}",
                expected.rows
            ));
        } else if checksum != expected.checksum {
            problems.push(format!(
                "table {name}'s rows differ from the backup's (checksum {checksum}, expected {})",
                expected.checksum
            ));
        }
    }

    problems.extend(sequence_problems(client, manifest).await?);
    report(&problems)
}

/// Checks the restore's own record of what it loaded (see [`crate::load::Copied`]), then the
/// migration version and the sequences, read from the database.
pub(crate) async fn verify_loaded(
    client: &Client,
    manifest: &Manifest,
    copies: &[Copied],
) -> anyhow::Result<()> {
    let mut problems = version_problems(client, manifest).await?;
    for (name, expected) in &manifest.tables {
        let statement = catalog::Table {
            name: name.clone(),
            columns: expected.columns.clone(),
        }
        .copy_in_statement();
        let Some(copy) = copies.iter().find(|c| c.statement == statement) else {
            problems.push(format!("table {name} is not in the dump"));
            continue;
        };
        let (sent, checksum) = &copy.sent;
        if copy.stored != expected.rows || *sent != expected.rows {
            problems.push(format!(
                "table {name} has {} rows ({sent} sent), the backup has {}",
                copy.stored, expected.rows
            ));
        } else if *checksum != expected.checksum {
            problems.push(format!(
                "table {name}'s rows differ from the backup's (checksum {checksum}, expected {})",
                expected.checksum
            ));
        }
    }
    problems.extend(sequence_problems(client, manifest).await?);
    report(&problems)
}

fn report(problems: &[String]) -> anyhow::Result<()> {
    if !problems.is_empty() {
        bail!(
            "the restored database does not match the backup's manifest:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(())
}

async fn version_problems(client: &Client, manifest: &Manifest) -> anyhow::Result<Vec<String>> {
    let version = catalog::migration_version(client).await?;
    Ok(if version == manifest.migration_version {
        Vec::new()
    } else {
        vec![format!(
            "migration version is {version:?}, the backup has {:?}",
            manifest.migration_version
        )]
    })
}

async fn sequence_problems(client: &Client, manifest: &Manifest) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let sequences = catalog::sequences(client).await?;
    for (name, expected) in &manifest.sequences {
        match sequences.iter().find(|(n, _)| n == name) {
            Some((_, value)) if value == expected => {}
            Some((_, value)) => problems.push(format!(
                "sequence {name} is at {value}, the backup has {expected}"
            )),
            None => problems.push(format!("sequence {name} is missing or unused")),
        }
    }

    Ok(problems)
}
