//! A backup restores to exactly the database it was taken from, by `db restore` and by `psql`.

use pgbackup::RestoreOptions;

use super::{Fixture, all_rows, fill, psql_restore};
use crate::support::TestDatabase;

#[tokio::test]
async fn a_backup_restores_every_row_and_the_sequences_continue() {
    let fx = Fixture::new().await;
    let source = fx.client().await;
    fill(&source).await;

    let (key, manifest) = fx.backup().await;
    assert!(
        key.starts_with("backups/") && key.ends_with(".sql.gz"),
        "{key}"
    );
    assert!(
        fx.keys().await.contains(&pgbackup::manifest_key(&key)),
        "the manifest sits next to the dump"
    );
    assert_eq!(manifest.migration_version, Some(9002));
    assert_eq!(manifest.tables["test_accounts"].rows, 195);
    assert_eq!(manifest.tables["test_b_pause"].rows, 1);

    let target = TestDatabase::empty().await;
    let mut conn = target.connect().await;
    let restored = pgbackup::restore(&mut conn, &fx.source(&key), RestoreOptions::default())
        .await
        .expect("restore");
    assert_eq!(
        restored.rows(),
        manifest.tables.values().map(|t| t.rows).sum::<u64>()
    );
    assert_eq!(all_rows(&conn).await, all_rows(&source).await);

    // Identity and serial columns carry on where the source left off, past the deleted rows.
    for db in [&source, &conn] {
        let next: i64 = db
            .query_typed_one(
                "INSERT INTO test_accounts (name, balance) VALUES ('next', 0) RETURNING id",
                &[],
            )
            .await
            .expect("insert")
            .get(0);
        assert_eq!(next, 201);
        let next: i32 = db
            .query_typed_one(
                "INSERT INTO test_savings (account_id, balance) VALUES (1, 0) RETURNING id",
                &[],
            )
            .await
            .expect("insert")
            .get(0);
        assert_eq!(next, 201);
    }
}

#[tokio::test]
async fn stock_psql_restores_the_same_file() {
    let fx = Fixture::new().await;
    let source = fx.client().await;
    fill(&source).await;
    let (key, manifest) = fx.backup().await;
    let file = fx.dir.join("backup.sql.gz");
    std::fs::write(&file, fx.download(&key).await).expect("writing the dump");

    let target = TestDatabase::empty().await;
    let (ok, stderr) = psql_restore(&file, &target.url);
    assert!(ok, "psql failed: {stderr}");
    let conn = target.connect().await;
    assert_eq!(all_rows(&conn).await, all_rows(&source).await);
    pgbackup::verify(&conn, &manifest)
        .await
        .expect("the psql restore matches the manifest");
    let version: i64 = conn
        .query_typed_one("SELECT max(version) FROM schema_migrations", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(
        version, 9002,
        "the restored database is at the source's version"
    );
}

#[tokio::test]
async fn a_local_backup_from_the_command_line_restores_from_the_command_line() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let file = fx.dir.join("local.sql.gz");
    let out = fx
        .db_command()
        .args(["backup", "--to"])
        .arg(&file)
        .output()
        .expect("db backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(file.exists());
    assert!(fx.dir.join("local.sql.gz.manifest.json").exists());

    let target = TestDatabase::empty().await;
    let out = fx
        .db_command()
        .args(["restore", "--from"])
        .arg(&file)
        .args(["--target-url", &target.url])
        .output()
        .expect("db restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("verified against the manifest"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}'),
        "no progress bar when stdout is not a terminal"
    );
    assert_eq!(
        all_rows(&*target.connect().await).await,
        fx.all_rows().await
    );
}
