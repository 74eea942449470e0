//! The uploads table and the objects behind it. Object keys are `uploads/{user_id}/{upload_id}`:
//! never anything the user chose.

use anyhow::Context;
use chrono::{DateTime, Utc};
use platform::db::Sql;
use serde::Serialize;
use tokio_postgres::{Row, types::Type};
use uuid::Uuid;

use platform::storage::S3;

/// Uploads still pending after this long were abandoned: the daily maintenance task removes them.
pub const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Upload {
    pub id: Uuid,
    pub filename: String,
    /// The MIME type the file was declared with (and must be PUT with).
    pub content_type: String,
    /// Size in bytes.
    #[schema(minimum = 1)]
    pub size: i64,
    #[schema(value_type = UploadStatus)]
    pub status: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub object_key: String,
}

/// `pending` until `complete` has found the object in S3, then `ready`.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum UploadStatus {
    Pending,
    Ready,
}

const COLUMNS: &str = "id, filename, content_type, size, status, created_at, object_key";

fn upload(row: &Row) -> Upload {
    Upload {
        id: row.get(0),
        filename: row.get(1),
        content_type: row.get(2),
        size: row.get(3),
        status: row.get(4),
        created_at: row.get(5),
        object_key: row.get(6),
    }
}

pub fn object_key(user_id: Uuid, upload_id: Uuid) -> String {
    format!("uploads/{user_id}/{upload_id}")
}

pub async fn insert(
    db: &impl Sql,
    id: Uuid,
    user_id: Uuid,
    filename: &str,
    content_type: &str,
    size: i64,
) -> anyhow::Result<Upload> {
    let row = db
        .query_typed_one(
            &format!(
                "INSERT INTO uploads (id, user_id, object_key, filename, content_type, size)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
            ),
            &[
                (&id, Type::UUID),
                (&user_id, Type::UUID),
                (&object_key(user_id, id), Type::TEXT),
                (&filename, Type::TEXT),
                (&content_type, Type::TEXT),
                (&size, Type::INT8),
            ],
        )
        .await
        .context("inserting an upload")?;
    Ok(upload(&row))
}

/// The upload `id` if it belongs to `user_id`.
pub async fn find_owned(db: &impl Sql, id: Uuid, user_id: Uuid) -> anyhow::Result<Option<Upload>> {
    let row = db
        .query_typed_opt(
            &format!("SELECT {COLUMNS} FROM uploads WHERE id = $1 AND user_id = $2"),
            &[(&id, Type::UUID), (&user_id, Type::UUID)],
        )
        .await
        .context("reading an upload")?;
    Ok(row.as_ref().map(upload))
}

pub async fn mark_ready(db: &impl Sql, id: Uuid) -> anyhow::Result<Option<Upload>> {
    let row = db
        .query_typed_opt(
            &format!("UPDATE uploads SET status = 'ready', completed_at = now() WHERE id = $1 RETURNING {COLUMNS}"),
            &[(&id, Type::UUID)],
        )
        .await
        .context("marking an upload ready")?;
    Ok(row.as_ref().map(upload))
}

/// Whether the row was there to delete: of two deletions at once, only one finds it.
pub async fn delete(db: &impl Sql, id: Uuid) -> anyhow::Result<bool> {
    let deleted = db
        .execute_typed("DELETE FROM uploads WHERE id = $1", &[(&id, Type::UUID)])
        .await
        .context("deleting an upload")?;
    Ok(deleted > 0)
}

/// One page of the user's uploads, newest first.
pub async fn list(
    db: &impl Sql,
    user_id: Uuid,
    before: Option<crate::Position>,
    limit: i64,
) -> anyhow::Result<(Vec<Upload>, Option<crate::Position>)> {
    let rows = db
        .query_typed(
            &format!(
                "SELECT {COLUMNS} FROM uploads
                 WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[
                (&user_id, Type::UUID),
                (&before.map(|c| c.created_at), Type::TIMESTAMPTZ),
                (&before.map(|c| c.id), Type::UUID),
                (&(limit + 1), Type::INT8),
            ],
        )
        .await
        .context("listing uploads")?;
    let mut items: Vec<Upload> = rows.iter().map(upload).collect();
    let next = if items.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        items.pop();
        items.last().map(|u| crate::Position {
            created_at: u.created_at,
            id: u.id,
        })
    } else {
        None
    };
    Ok((items, next))
}

/// Deletes `keys` (one listing page, at most 1,000: one DeleteObjects call); returns how many.
async fn delete_keys(s3: &S3, bucket: &str, keys: &[&str]) -> anyhow::Result<usize> {
    use aws_sdk_s3::types::{Delete, ObjectIdentifier};
    let ids: Vec<ObjectIdentifier> = keys
        .iter()
        .filter_map(|k| ObjectIdentifier::builder().key(*k).build().ok())
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let count = ids.len();
    let batch = Delete::builder()
        .set_objects(Some(ids))
        .quiet(true)
        .build()
        .context("building a delete")?;
    s3.delete_objects()
        .bucket(bucket)
        .delete(batch)
        .send()
        .await?;
    Ok(count)
}

/// Deletes every object under the user's prefix (account deletion). Errors propagate, so the
/// caller can keep the account when its files could not be removed.
pub async fn delete_user_objects(s3: &S3, bucket: &str, user_id: Uuid) -> anyhow::Result<usize> {
    let prefix = format!("uploads/{user_id}/");
    let mut deleted = 0;
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .context("listing the user's objects")?;
        let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
        deleted += delete_keys(s3, bucket, &keys)
            .await
            .context("deleting the user's objects")?;
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(deleted)
}

/// Removes uploads that were never completed within `older_than`: their objects, then their
/// rows. Run daily by the scheduled maintenance task.
pub async fn clean_up_abandoned(
    db: &impl Sql,
    s3: &S3,
    bucket: &str,
    older_than: std::time::Duration,
) -> anyhow::Result<usize> {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::days(1));
    let rows = db
        .query_typed(
            "SELECT id, object_key FROM uploads WHERE status = 'pending' AND created_at < $1",
            &[(&cutoff, Type::TIMESTAMPTZ)],
        )
        .await
        .context("finding abandoned uploads")?;
    for row in &rows {
        let key: String = row.get(1);
        s3.delete_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .context("deleting an abandoned object")?;
        db.execute_typed(
            "DELETE FROM uploads WHERE id = $1 AND status = 'pending'",
            &[(&row.get::<_, Uuid>(0), Type::UUID)],
        )
        .await
        .context("deleting an abandoned upload")?;
    }
    Ok(rows.len())
}

/// Removes objects under `uploads/` that no upload row names any more: a file PUT through a
/// presigned URL after its upload or its account was deleted (the URL stays valid for its 15
/// minutes). Run daily by the scheduled maintenance task; keys it cannot read are left alone.
pub async fn clean_up_orphans(db: &impl Sql, s3: &S3, bucket: &str) -> anyhow::Result<usize> {
    let mut removed = 0;
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix("uploads/")
            .set_continuation_token(token.take())
            .send()
            .await
            .context("listing uploaded objects")?;
        // `uploads/{user_id}/{upload_id}`: the upload id names the row.
        let named: Vec<(String, Uuid)> = page
            .contents()
            .iter()
            .filter_map(|o| o.key())
            .filter_map(|key| {
                let id = key.rsplit('/').next()?.parse().ok()?;
                Some((key.to_owned(), id))
            })
            .collect();
        let ids: Vec<Uuid> = named.iter().map(|(_, id)| *id).collect();
        let live: std::collections::HashSet<Uuid> = db
            .query_typed(
                "SELECT id FROM uploads WHERE id = ANY($1)",
                &[(&ids, Type::UUID_ARRAY)],
            )
            .await
            .context("matching objects to uploads")?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let orphans: Vec<&str> = named
            .iter()
            .filter(|(_, id)| !live.contains(id))
            .map(|(key, _)| key.as_str())
            .collect();
        removed += delete_keys(s3, bucket, &orphans)
            .await
            .context("deleting orphaned objects")?;
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(removed)
}
