//! The restore drill: restores the newest complete backup into a scratch database, checks it
//! against its manifest, and drops the scratch database whatever happened. Proves every week that
//! the backups restore, and how long a restore takes.

use std::collections::BTreeSet;

use anyhow::Context;
use secrecy::SecretString;

use crate::{RestoreOptions, Restored, manifest_key, restore, source::Source};
use platform::{
    db::{self, PoolSettings, quote_ident},
    storage::S3,
};

pub const PREFIX: &str = "backups/";

/// The key of the newest dump under `backups/` that has a manifest (dumps without one are
/// incomplete). Keys carry their time, so the newest sorts last.
pub async fn newest(s3: &S3, bucket: &str) -> anyhow::Result<Option<String>> {
    let mut keys = BTreeSet::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(PREFIX)
            .set_continuation_token(token.take())
            .send()
            .await
            .with_context(|| format!("listing s3://{bucket}/{PREFIX}"))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key())
                .map(str::to_owned),
        );
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(keys
        .iter()
        .rev()
        .filter(|k| k.ends_with(".sql.gz"))
        .find(|k| keys.contains(&manifest_key(k)))
        .cloned())
}

/// A fresh name for a scratch database.
pub fn scratch_name() -> String {
    format!("restore_drill_{}", uuid::Uuid::new_v4().simple())
}

/// Restores the newest backup in `bucket` into a new database named `scratch` on the server of
/// `database_url`, verifies it, and drops it.
pub async fn drill(
    s3: &S3,
    bucket: &str,
    database_url: &SecretString,
    settings: &PoolSettings,
    scratch: &str,
) -> anyhow::Result<(String, Restored)> {
    let key = newest(s3, bucket)
        .await?
        .with_context(|| format!("no complete backup in s3://{bucket}/{PREFIX}"))?;
    let source = Source::S3 {
        s3: s3.clone(),
        bucket: bucket.to_owned(),
        key: key.clone(),
    };
    let settings = PoolSettings {
        max_size: 1,
        ..settings.clone()
    };
    let admin = db::connect_once(database_url, &settings).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(scratch)))
        .await
        .with_context(|| format!("creating the scratch database {scratch}"))?;
    let restored = async {
        let pool = db::pool_for(database_url, &settings, Some(scratch))?;
        let mut conn = pool
            .get()
            .await
            .with_context(|| format!("connecting to the scratch database {scratch}"))?;
        let options = RestoreOptions {
            read_back: true,
            ..RestoreOptions::default()
        };
        restore(&mut conn, &source, options).await
    }
    .await;
    let dropped = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(scratch)
        ))
        .await
        .with_context(|| format!("dropping the scratch database {scratch}"));
    let restored = restored.with_context(|| format!("restore drill of s3://{bucket}/{key}"))?;
    dropped?;
    Ok((key, restored))
}
