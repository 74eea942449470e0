//! The restore drill restores the newest complete backup, checks it, and cleans up after itself
//! whether it passed or not.

use tokio_postgres::types::Type;

use super::Fixture;
use crate::support::database::admin_connection;

async fn database_exists(name: &str) -> bool {
    admin_connection()
        .await
        .query_typed_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[(&name, Type::TEXT)],
        )
        .await
        .expect("pg_database")
        .is_some()
}

async fn drill(fx: &Fixture, scratch: &str) -> anyhow::Result<(String, pgbackup::Restored)> {
    let config = fx.config();
    pgbackup::drill(
        &fx.s3,
        &fx.bucket,
        &config.database_url,
        &crate::support::database::settings(),
        scratch,
    )
    .await
}

#[tokio::test]
async fn the_drill_restores_the_newest_complete_backup_and_drops_its_scratch_database() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let (older, _) = fx.backup().await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    fx.client()
        .await
        .batch_execute("INSERT INTO test_b_pause (id) VALUES (2)")
        .await
        .expect("insert");
    let (newer, manifest) = fx.backup().await;
    assert!(newer > older);
    // A dump that never got its manifest (a backup that died) is newer still, and skipped.
    fx.upload(
        "backups/2999/01/01/backup_29990101_000000.sql.gz",
        b"partial".to_vec(),
    )
    .await;

    let scratch = pgbackup::scratch_name();
    let (key, restored) = drill(&fx, &scratch).await.expect("the drill passes");
    assert_eq!(key, newer);
    assert_eq!(restored.manifest, manifest);
    assert_eq!(restored.manifest.tables["test_b_pause"].rows, 2);
    assert!(
        !database_exists(&scratch).await,
        "the scratch database is dropped"
    );
}

#[tokio::test]
async fn the_drill_fails_loudly_when_the_backup_differs_from_its_manifest() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let (key, mut manifest) = fx.backup().await;
    manifest.tables.get_mut("users").expect("users").rows += 1;
    fx.upload(
        &pgbackup::manifest_key(&key),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .await;

    let scratch = pgbackup::scratch_name();
    let err = drill(&fx, &scratch).await.expect_err("the drill must fail");
    let message = format!("{err:#}");
    assert!(
        message.contains("table users has 3 rows, the backup has 4"),
        "{message}"
    );
    assert!(
        !database_exists(&scratch).await,
        "the scratch database is dropped on failure too"
    );
}

#[tokio::test]
async fn the_drill_fails_when_there_is_no_complete_backup() {
    let fx = Fixture::new().await;
    let err = drill(&fx, &pgbackup::scratch_name())
        .await
        .expect_err("nothing to drill");
    assert!(format!("{err:#}").contains("no complete backup"), "{err:#}");
}
