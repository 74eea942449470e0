//! What goes wrong is noticed: a backup that fails midway leaves nothing that looks complete,
//! and a restore that does not match its manifest leaves the target as it was.

use std::{io::Write, time::Duration};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use pgbackup::{Manifest, RestoreOptions};
use sha2::{Digest, Sha256};

use super::{Fixture, all_rows, consistency::paused_backup};
use crate::support::TestDatabase;

/// About 50 MB of hard-to-compress text in `test_a_bulk`, dumped before the pause: more than
/// three parts. With one part queued and one uploading at most, the first parts are in S3 by
/// the time the backup reaches `test_b_pause`.
async fn fill_bulk(fx: &Fixture) {
    fx.client()
        .await
        .batch_execute(
            "INSERT INTO test_a_bulk (id, payload)
             SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 800000) g",
        )
        .await
        .expect("bulk rows");
}

/// The multipart uploads in progress in the fixture's bucket: `(key, upload id)`.
async fn uploads_in_progress(fx: &Fixture) -> Vec<(String, String)> {
    let listed = fx
        .s3
        .list_multipart_uploads()
        .bucket(&fx.bucket)
        .send()
        .await
        .expect("listing uploads");
    listed
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_owned(),
                u.upload_id().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The backup's multipart upload, once it is under way.
async fn upload_under_way(fx: &Fixture) -> (String, String) {
    for _ in 0..500 {
        if let Some(upload) = uploads_in_progress(fx).await.into_iter().next() {
            return upload;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no multipart upload started");
}

#[tokio::test]
async fn an_s3_failure_midway_fails_the_backup_and_leaves_no_manifest() {
    let fx = Fixture::new().await;
    fill_bulk(&fx).await;
    let lock = fx.client().await;
    let (_, running) = paused_backup(&fx, &lock).await;
    let (key, id) = upload_under_way(&fx).await;
    // S3 forgets the upload (as an expiry rule would): every later request about it fails.
    fx.s3
        .abort_multipart_upload()
        .bucket(&fx.bucket)
        .key(&key)
        .upload_id(&id)
        .send()
        .await
        .expect("aborting from outside");
    lock.batch_execute("COMMIT").await.expect("unlocking");

    let err = running
        .await
        .expect("task")
        .expect_err("the backup must fail");
    let message = format!("{err:#}");
    assert!(
        message.contains("uploading part") || message.contains("completing the upload"),
        "{message}"
    );
    assert_eq!(
        fx.keys().await,
        Vec::<String>::new(),
        "no dump and no manifest"
    );
    assert!(uploads_in_progress(&fx).await.is_empty());
    assert_eq!(
        pgbackup::newest(&fx.s3, &fx.bucket).await.expect("listing"),
        None
    );
}

#[tokio::test]
async fn a_backup_that_fails_after_uploading_parts_aborts_its_multipart_upload() {
    let fx = Fixture::new().await;
    fill_bulk(&fx).await;
    let lock = fx.client().await;
    let (_, running) = paused_backup(&fx, &lock).await;
    upload_under_way(&fx).await;
    // The database goes away under the backup.
    let admin = fx.client().await;
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = '{}' AND query LIKE 'COPY%test_b_pause%'",
            fx.db.name
        ))
        .await
        .expect("terminating the backup's session");
    lock.batch_execute("COMMIT").await.expect("unlocking");

    running
        .await
        .expect("task")
        .expect_err("the backup must fail");
    assert!(
        uploads_in_progress(&fx).await.is_empty(),
        "the multipart upload was aborted"
    );
    assert_eq!(
        fx.keys().await,
        Vec::<String>::new(),
        "no dump and no manifest"
    );
}

#[tokio::test]
async fn a_restore_into_a_non_empty_database_is_refused_unless_forced() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let (key, _) = fx.backup().await;
    let target = TestDatabase::create().await;
    let conn = target.connect().await;
    conn.batch_execute(
        "INSERT INTO users (id, email, name, password_hash)
         VALUES ('00000000-0000-0000-0000-0000000000aa', 'kept@example.com', 'Kept', 'h')",
    )
    .await
    .expect("a row in the target");

    let out = fx
        .db_command()
        .args(["restore", "--key", &key, "--target-url", &target.url])
        .output()
        .expect("db restore");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not empty") && stderr.contains("--force"),
        "{stderr}"
    );
    let kept: i64 = conn
        .query_typed_one(
            "SELECT count(*) FROM users WHERE email = 'kept@example.com'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(kept, 1, "the refused restore left the target alone");

    let out = fx
        .db_command()
        .args([
            "restore",
            "--key",
            &key,
            "--target-url",
            &target.url,
            "--force",
        ])
        .output()
        .expect("db restore --force");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(all_rows(&conn).await, fx.all_rows().await);
}

/// Rewrites the dump in S3 with `edit` applied to its SQL, and its manifest's file hash and
/// size to match, so that only the table checksums can tell.
async fn rewrite_dump(fx: &Fixture, key: &str, edit: impl Fn(String) -> String) {
    let mut sql = String::new();
    std::io::Read::read_to_string(&mut GzDecoder::new(&fx.download(key).await[..]), &mut sql)
        .expect("gunzip");
    let edited = edit(sql.clone());
    assert_ne!(edited, sql, "the edit changed the dump");
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(edited.as_bytes()).expect("gzip");
    let bytes = gz.finish().expect("gzip");
    let manifest_key = pgbackup::manifest_key(key);
    let mut manifest: Manifest =
        serde_json::from_slice(&fx.download(&manifest_key).await).expect("manifest");
    manifest.sha256 = hex::encode(Sha256::digest(&bytes));
    manifest.bytes = bytes.len() as u64;
    fx.upload(key, bytes).await;
    fx.upload(&manifest_key, serde_json::to_vec(&manifest).expect("json"))
        .await;
}

async fn restore_into_empty(fx: &Fixture, key: &str) -> (anyhow::Result<()>, TestDatabase) {
    let target = TestDatabase::empty().await;
    let mut conn = target.connect().await;
    let result = pgbackup::restore(&mut conn, &fx.source(key), RestoreOptions::default())
        .await
        .map(|_| ());
    (result, target)
}

async fn relations(target: &TestDatabase) -> i64 {
    target
        .connect()
        .await
        .query_typed_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'public'",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn a_changed_row_is_caught_by_the_checksums_and_nothing_is_restored() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let (key, _) = fx.backup().await;
    rewrite_dump(&fx, &key, |sql| {
        sql.replacen("account 7\t1000", "account 7\t1001", 1)
    })
    .await;

    let (result, target) = restore_into_empty(&fx, &key).await;
    let message = format!("{:#}", result.expect_err("the restore must fail"));
    assert!(
        message.contains("does not match the backup's manifest")
            && message.contains("test_accounts"),
        "{message}"
    );
    assert_eq!(
        relations(&target).await,
        0,
        "the failed restore was rolled back"
    );
}

#[tokio::test]
async fn a_truncated_dump_is_refused() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let (key, _) = fx.backup().await;
    rewrite_dump(&fx, &key, |sql| {
        let cut = sql
            .find("COPY public.\"test_savings\"")
            .expect("a COPY block");
        sql[..cut].to_owned()
    })
    .await;

    let (result, target) = restore_into_empty(&fx, &key).await;
    let message = format!("{:#}", result.expect_err("the restore must fail"));
    assert!(message.contains("truncated"), "{message}");
    assert_eq!(relations(&target).await, 0);
}

#[tokio::test]
async fn a_corrupted_file_is_refused_and_nothing_is_restored() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let (key, _) = fx.backup().await;
    let mut bytes = fx.download(&key).await;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fx.upload(&key, bytes).await;

    let (result, target) = restore_into_empty(&fx, &key).await;
    result.expect_err("a corrupted file must not restore");
    assert_eq!(relations(&target).await, 0);
}

#[tokio::test]
async fn a_dump_without_its_manifest_is_not_restored() {
    let fx = Fixture::new().await;
    let (key, _) = fx.backup().await;
    fx.s3
        .delete_object()
        .bucket(&fx.bucket)
        .key(pgbackup::manifest_key(&key))
        .send()
        .await
        .expect("deleting the manifest");
    let (result, target) = restore_into_empty(&fx, &key).await;
    let message = format!("{:#}", result.expect_err("the restore must fail"));
    assert!(message.contains("incomplete"), "{message}");
    assert_eq!(relations(&target).await, 0);
}
