//! The backup is one snapshot: what commits after it started is never in it, and a transaction
//! is either wholly in it or not at all, however long the dump takes.

use std::time::Duration;

use pgbackup::{Manifest, RestoreOptions};
use tokio_postgres::types::Type;

use super::{Fixture, backup_connection};
use crate::support::TestDatabase;

/// Starts a backup while `test_b_pause` is locked, and returns once the backup waits on that
/// lock: it has taken its snapshot and dumped the tables that sort before `test_b_pause`.
pub async fn paused_backup(
    fx: &Fixture,
    lock: &tokio_postgres::Client,
) -> (String, tokio::task::JoinHandle<anyhow::Result<Manifest>>) {
    lock.batch_execute("BEGIN; LOCK TABLE test_b_pause IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("locking");
    let key = pgbackup::dump_key(chrono::Utc::now());
    let mut conn = backup_connection(&fx.db).await;
    let destination = fx.destination(&key);
    let running = tokio::spawn(async move { pgbackup::backup(&mut conn, &destination).await });
    // Another session: one inside a transaction keeps seeing the activity of its first look.
    let watcher = fx.client().await;
    if !wait_until_blocked(&watcher, &fx.db.name).await {
        let outcome = running.await.expect("task");
        panic!("the backup never reached test_b_pause: {outcome:?}");
    }
    (key, running)
}

/// Whether the backup came to wait on the lock within 10 seconds.
async fn wait_until_blocked(client: &tokio_postgres::Client, database: &str) -> bool {
    for _ in 0..500 {
        let waiting: i64 = client
            .query_typed_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = $1 AND wait_event_type = 'Lock' AND query LIKE 'COPY%test_b_pause%'",
                &[(&database, Type::TEXT)],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn restore(fx: &Fixture, key: &str) -> TestDatabase {
    let target = TestDatabase::empty().await;
    let mut conn = target.connect().await;
    pgbackup::restore(&mut conn, &fx.source(key), RestoreOptions::default())
        .await
        .expect("restore");
    target
}

#[tokio::test]
async fn a_row_committed_after_the_backup_started_is_not_in_it() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let lock = fx.client().await;
    let (key, running) = paused_backup(&fx, &lock).await;

    // Committed while the backup runs, into tables it has not dumped yet and one it has.
    let writer = fx.client().await;
    writer
        .batch_execute(
            "INSERT INTO test_savings (account_id, balance) VALUES (1, 1);
             INSERT INTO users (id, email, name, password_hash)
               VALUES ('00000000-0000-0000-0000-0000000000ff', 'late@example.com', 'Late', 'h');
             INSERT INTO test_accounts (name, balance) VALUES ('late', 1);",
        )
        .await
        .expect("late writes");
    lock.batch_execute("COMMIT").await.expect("unlocking");
    let manifest = running.await.expect("task").expect("backup");
    assert_eq!(manifest.tables["test_savings"].rows, 195);
    assert_eq!(manifest.tables["users"].rows, 3);

    let target = restore(&fx, &key).await;
    let restored = target.connect().await;
    let late: i64 = restored
        .query_typed_one(
            "SELECT (SELECT count(*) FROM users WHERE email = 'late@example.com')
                  + (SELECT count(*) FROM test_accounts WHERE name = 'late')
                  + (SELECT count(*) FROM test_savings WHERE id > 200)",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(late, 0, "rows committed after the snapshot were restored");
}

async fn total(client: &tokio_postgres::Client) -> i64 {
    client
        .query_typed_one(
            "SELECT ((SELECT sum(balance) FROM test_accounts)
                   + (SELECT sum(balance) FROM test_savings))::bigint",
            &[],
        )
        .await
        .expect("sum")
        .get(0)
}

#[tokio::test]
async fn a_transfer_between_two_tables_is_never_half_in_the_backup() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let before = total(&*fx.client().await).await;
    let lock = fx.client().await;
    // The backup has dumped test_accounts and waits before test_savings.
    let (key, running) = paused_backup(&fx, &lock).await;
    let mut mover = fx.client().await;
    for n in 0..50i64 {
        let tx = mover.transaction().await.expect("begin");
        tx.execute_typed(
            "UPDATE test_accounts SET balance = balance - $1 WHERE id = 1 + $1 % 10",
            &[(&n, Type::INT8)],
        )
        .await
        .expect("debit");
        tx.execute_typed(
            "UPDATE test_savings SET balance = balance + $1 WHERE account_id = 1 + $1 % 10",
            &[(&n, Type::INT8)],
        )
        .await
        .expect("credit");
        tx.commit().await.expect("commit");
    }
    lock.batch_execute("COMMIT").await.expect("unlocking");
    running.await.expect("task").expect("backup");
    assert_eq!(
        total(&*fx.client().await).await,
        before,
        "the transfers keep the sum"
    );

    let restored = restore(&fx, &key).await;
    let conn = restored.connect().await;
    assert_eq!(
        total(&conn).await,
        before,
        "the backup holds each transfer wholly or not at all"
    );
}
