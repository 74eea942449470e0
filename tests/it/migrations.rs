//! The migration engine against a real, empty database.

use std::path::Path;

use migrator::{Migrator, State};
use serde_json::json;
use tokio_postgres::types::Type;

use crate::support::{TestDatabase, database::migrations_dir};

async fn table_exists(db: &TestDatabase, table: &str) -> bool {
    let conn = db.connect().await;
    conn.query_typed_one(
        "SELECT to_regclass($1) IS NOT NULL",
        &[(&table, Type::TEXT)],
    )
    .await
    .expect("query")
    .get(0)
}

fn copy_migrations(to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(migrations_dir()).expect("read migrations") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, to.join(path.file_name().expect("name"))).expect("copy");
    }
}

#[tokio::test]
async fn up_down_reset_and_status_round_trip() {
    let db = TestDatabase::empty().await;
    let migrator = Migrator::from_dir(&migrations_dir()).expect("load");
    let total = migrator.migrations().len();
    let mut conn = db.connect().await;

    let status = migrator.status(&mut conn).await.expect("status");
    assert!(status.iter().all(|s| s.state == State::Pending));

    let applied = migrator.up(&mut conn).await.expect("up");
    assert_eq!(applied.len(), total);
    assert!(applied[0].starts_with("0001_"));
    assert!(table_exists(&db, "users").await);
    assert!(
        migrator.up(&mut conn).await.expect("second up").is_empty(),
        "up is idempotent"
    );
    let status = migrator.status(&mut conn).await.expect("status");
    assert!(
        status.iter().all(|s| matches!(s.state, State::Applied(_))),
        "{status:?}"
    );

    let reverted = migrator.down(&mut conn, total).await.expect("down");
    assert_eq!(reverted.len(), total);
    assert_eq!(
        reverted.last().map(String::as_str),
        applied.first().map(String::as_str),
        "reverted newest first"
    );
    assert!(!table_exists(&db, "users").await);

    migrator.up(&mut conn).await.expect("up again");
    let reset = migrator.reset(&mut conn).await.expect("reset");
    assert_eq!(reset.len(), total);
    assert!(table_exists(&db, "users").await);
    let count: i64 = conn
        .query_typed_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, i64::try_from(total).expect("fits"));
}

#[tokio::test]
async fn down_one_reverts_only_the_newest() {
    let db = TestDatabase::empty().await;
    let migrator = Migrator::from_dir(&migrations_dir()).expect("load");
    let mut conn = db.connect().await;
    migrator.up(&mut conn).await.expect("up");
    let reverted = migrator.down(&mut conn, 1).await.expect("down 1");
    assert_eq!(reverted.len(), 1);
    let newest = migrator.migrations().last().expect("some").to_string();
    assert_eq!(reverted[0], newest);
    let status = migrator.status(&mut conn).await.expect("status");
    assert_eq!(
        status.iter().filter(|s| s.state == State::Pending).count(),
        1
    );
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let db = TestDatabase::empty().await;
    let dir = std::env::temp_dir().join(format!("migrations-{}", uuid::Uuid::new_v4().simple()));
    copy_migrations(&dir);
    let mut conn = db.connect().await;
    Migrator::from_dir(&dir)
        .expect("load")
        .up(&mut conn)
        .await
        .expect("up");

    let first = std::fs::read_dir(&dir)
        .expect("read")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("0001_create_users.up.sql"))
        .expect("first migration");
    let mut sql = std::fs::read_to_string(&first).expect("read");
    sql.push_str("\n-- an innocent-looking edit\n");
    std::fs::write(&first, sql).expect("write");

    let edited = Migrator::from_dir(&dir).expect("load");
    let err = edited
        .up(&mut conn)
        .await
        .expect_err("an edited migration must be refused");
    assert!(err.to_string().contains("changed"), "{err:#}");
    let status = edited.status(&mut conn).await.expect("status");
    assert_eq!(status[0].state, State::Changed);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn two_concurrent_up_runs_apply_each_migration_once() {
    let db = TestDatabase::empty().await;
    let migrator = Migrator::from_dir(&migrations_dir()).expect("load");
    let mut a = db.connect().await;
    let mut b = db.connect().await;
    let (ra, rb) = tokio::join!(migrator.up(&mut a), migrator.up(&mut b));
    let (ra, rb) = (ra.expect("first run"), rb.expect("second run"));
    let mut all: Vec<String> = ra.into_iter().chain(rb).collect();
    all.sort();
    let expected: Vec<String> = migrator
        .migrations()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(all, expected, "each migration applied by exactly one run");
    let count: i64 = a
        .query_typed_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, i64::try_from(expected.len()).expect("fits"));
}

#[test]
fn create_writes_the_next_numbered_pair() {
    let dir = std::env::temp_dir().join(format!("migrations-{}", uuid::Uuid::new_v4().simple()));
    copy_migrations(&dir);
    let before = Migrator::from_dir(&dir).expect("load").migrations().len();
    let up = migrator::create(&dir, "add_things").expect("create");
    let name = up
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert_eq!(name, format!("{:04}_add_things.up.sql", before + 1));
    assert!(dir.join(name.replace(".up.", ".down.")).exists());
    assert!(migrator::create(&dir, "bad name!").is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_migrate_function_applies_the_embedded_migrations() {
    let embedded = migrations::migrator().expect("embedded migrations");
    let on_disk = Migrator::from_dir(&migrations_dir()).expect("load");
    let checksums = |m: &Migrator| {
        m.migrations()
            .iter()
            .map(|m| (m.version, m.checksum.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        checksums(&embedded),
        checksums(&on_disk),
        "the function carries exactly the repository's migrations"
    );

    let db = TestDatabase::empty().await;
    let config = platform::config::Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(db.url.clone()),
        "APP_ENV" => Some("production".into()),
        _ => None,
    })
    .expect("production config without JWT_SECRET is enough to migrate");
    let first = migrate::handle(&config, migrate::Request::UP)
        .await
        .expect("up");
    assert_eq!(first.applied.len(), on_disk.migrations().len());
    assert!(first.pending.is_empty());
    assert_eq!(
        first.version,
        on_disk.migrations().last().map(|m| m.version)
    );
    let second = migrate::handle(&config, migrate::Request::UP)
        .await
        .expect("up again");
    assert!(second.applied.is_empty(), "nothing left to apply");
}

/// Runs the real migrate binary under the Runtime API stub, as Lambda would.
fn spawn_migrate_function(
    api: &crate::support::runtime_api::RuntimeApi,
    db: &TestDatabase,
) -> tokio::process::Child {
    tokio::process::Command::new(crate::support::workspace_bin("migrate"))
        .envs(crate::support::runtime_api::lambda_env(api, "migrate"))
        .env("DATABASE_URL", &db.url)
        .env("APP_ENV", "production")
        .env("LOG_LEVEL", "warn")
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting the migrate binary")
}

#[tokio::test]
async fn the_migrate_function_refuses_payloads_it_does_not_understand_and_changes_nothing() {
    use crate::support::runtime_api::{Outcome, RuntimeApi};
    let within = std::time::Duration::from_secs(30);
    let db = TestDatabase::empty().await;
    let api = RuntimeApi::start().await;
    let _function = spawn_migrate_function(&api, &db);

    let status = api.invoke(json!({"command": "status"}));
    let Outcome::Response(status) = api.outcome(&status, within).await else {
        panic!("status is answered");
    };
    let all = migrations_dir_migrator().migrations().len();
    assert_eq!(status["applied"], json!([]));
    assert_eq!(status["pending"].as_array().map(Vec::len), Some(all));

    for payload in [
        json!({"command": "down"}),
        json!({"command": "Up"}),
        json!({"command": "upp"}),
        json!("Status"),
        json!({}),
        json!(null),
        json!({"command": "up", "steps": 2}),
    ] {
        let id = api.invoke(payload.clone());
        match api.outcome(&id, within).await {
            Outcome::Error(err) => assert!(
                err.to_string().contains("invalid payload"),
                "{payload} is refused with a reason, got {err}"
            ),
            Outcome::Response(r) => panic!("{payload} must be refused, got {r}"),
        }
    }
    let status = api.invoke(json!({"command": "status"}));
    let Outcome::Response(status) = api.outcome(&status, within).await else {
        panic!("status is answered");
    };
    assert_eq!(
        status["pending"].as_array().map(Vec::len),
        Some(all),
        "no refused payload applied anything"
    );

    let up = api.invoke(json!({"command": "up"}));
    let Outcome::Response(up) = api.outcome(&up, within).await else {
        panic!("up is answered");
    };
    assert_eq!(up["applied"].as_array().map(Vec::len), Some(all));
    assert_eq!(up["pending"], json!([]));
}

fn migrations_dir_migrator() -> Migrator {
    Migrator::from_dir(&migrations_dir()).expect("migrations")
}
