//! Restores a dump into a database, in one transaction that commits only once the result
//! matches the manifest: a restore that fails, for whatever reason, leaves the target as it was.

use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio_postgres::Client;

use crate::{Manifest, catalog, load, manifest, session::SETTINGS, source::Source, verify};

#[derive(Default)]
pub struct RestoreOptions<'a> {
    /// Replace the target's `public` schema when it holds anything.
    pub force: bool,
    /// Told the compressed bytes read so far, and the total once known.
    pub progress: Option<&'a (dyn Fn(u64, Option<u64>) + Sync)>,
    /// Read every table back to check it, instead of checking the rows as they were loaded
    /// (see [`crate::verify`]): twice the reading, for the drill, which has the time.
    pub read_back: bool,
}

#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub duration: Duration,
}

impl Restored {
    pub fn rows(&self) -> u64 {
        self.manifest.tables.values().map(|t| t.rows).sum()
    }
}

pub async fn restore(
    client: &mut Client,
    source: &Source,
    options: RestoreOptions<'_>,
) -> anyhow::Result<Restored> {
    let clock = Instant::now();
    let manifest = source.manifest().await?;
    ensure!(
        manifest.format == manifest::FORMAT,
        "{} is in backup format {}; this build restores format {}",
        source.name(),
        manifest.format,
        manifest::FORMAT
    );
    client
        .batch_execute(SETTINGS)
        .await
        .context("preparing the restore session")?;
    let existing = catalog::relations(&*client).await?;
    if !existing.is_empty() && !options.force {
        bail!(
            "the target database is not empty (it has {}); restore into an empty database, or pass --force to replace its public schema",
            existing.join(", ")
        );
    }
    let (body, size) = source.open().await?;
    client.batch_execute("BEGIN").await?;
    let result = async {
        if !existing.is_empty() {
            client
                .batch_execute(
                    "DROP SCHEMA public CASCADE; CREATE SCHEMA public; GRANT USAGE ON SCHEMA public TO PUBLIC;",
                )
                .await
                .context("replacing the public schema")?;
        }
        let report = |bytes| {
            if let Some(progress) = options.progress {
                progress(bytes, size);
            }
        };
        let loaded = load::load(client, body, &report)
            .await
            .with_context(|| format!("restoring {}", source.name()))?;
        if loaded.sha256 != manifest.sha256 || loaded.bytes != manifest.bytes {
            bail!(
                "{} does not match its manifest ({} bytes, SHA-256 {}; expected {} bytes, {}): the file is corrupted or was replaced",
                source.name(),
                loaded.bytes,
                loaded.sha256,
                manifest.bytes,
                manifest.sha256
            );
        }
        if options.read_back {
            verify::verify(client, &manifest).await
        } else {
            verify::verify_loaded(client, &manifest, &loaded.copies).await
        }
    }
    .await;
    match result {
        Ok(()) => {
            client
                .batch_execute("COMMIT")
                .await
                .context("committing the restore")?;
            Ok(Restored {
                manifest,
                duration: clock.elapsed(),
            })
        }
        Err(err) => {
            // The connection may be gone; the error that matters is the one we have.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(err)
        }
    }
}
