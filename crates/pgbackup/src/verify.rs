//! Checks a restored database against the manifest of the backup it came from: migration
//! version, every table's row count and checksum, every sequence. Lists every difference.

use std::collections::BTreeSet;

use anyhow::bail;
use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::Client;

use crate::{
    Manifest,
    catalog::{self, columns_sql},
    digest::RowDigest,
    session::SETTINGS,
};
use platform::db::quote_ident;

/// Checks the database `client` is connected to (inside the restore's transaction, or after a
/// restore by `psql`).
pub async fn verify(client: &Client, manifest: &Manifest) -> anyhow::Result<()> {
    // The checksums are over the rows' text, which these settings fix.
    client.batch_execute(SETTINGS).await?;
    let mut problems = Vec::new();

    let version = catalog::migration_version(client).await?;
    if version != manifest.migration_version {
        problems.push(format!(
            "migration version is {version:?}, the backup has {:?}",
            manifest.migration_version
        ));
    }

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

    if !problems.is_empty() {
        bail!(
            "the restored database does not match the backup's manifest:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(())
}
