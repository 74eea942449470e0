//! The backup function's scheduled tasks, run as EventBridge invokes them.

use backup::{Task, Tasks};
use serde_json::{Value, json};
use tokio_postgres::types::Type;

use super::Fixture;

#[test]
fn the_scheduled_inputs_name_their_tasks() {
    let task = |v| serde_json::from_value::<Task>(v);
    assert_eq!(
        task(json!({"task": "backup"})).expect("backup"),
        Task::Backup
    );
    assert_eq!(
        task(json!({"task": "maintenance"})).expect("maintenance"),
        Task::Maintenance
    );
    assert!(task(json!({"task": "vacuum"})).is_err());
    // The drill runs in its own ECS task, never in this function next to the primary.
    assert!(task(json!({"task": "drill"})).is_err());
    assert!(task(json!({})).is_err());
}

#[tokio::test]
async fn the_backup_task_writes_a_backup_that_the_drill_restores() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let tasks = Tasks::new(fx.config()).await;

    let capture = platform::metrics::Capture::start();
    let started = std::time::Instant::now();
    let done = tasks.run(Task::Backup).await.expect("backup task");
    let took = started.elapsed();
    let key = done["key"].as_str().expect("key").to_owned();
    // One EMF line: the result, the dump's size as written to S3, and the time it took.
    let metric = only_metric_line(&capture);
    assert_eq!(metric["BackupSucceeded"], 1, "{metric}");
    assert_eq!(metric["BackupBytes"], done["bytes"], "{metric}");
    let object = fx
        .s3
        .head_object()
        .bucket(&fx.bucket)
        .key(&key)
        .send()
        .await
        .expect("the dump in S3");
    assert_eq!(
        metric["BackupBytes"].as_i64(),
        object.content_length(),
        "{metric}"
    );
    let reported = metric["BackupDuration"].as_u64().expect("BackupDuration");
    assert!(
        reported > 0 && u128::from(reported) <= took.as_millis(),
        "BackupDuration {reported} ms, measured {took:?}"
    );
    assert_eq!(metric["Environment"], "test");
    assert!(fx.keys().await.contains(&pgbackup::manifest_key(&key)));
    // users, refresh_tokens, uploads, test_accounts, test_b_pause, test_savings, and one
    // schema_migrations row per migration (the repository's and the fixture's own)
    let migrations = std::fs::read_dir(&fx.migrations)
        .expect("migrations")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".up.sql"))
        })
        .count();
    assert_eq!(done["rows"], json!(3 + 1 + 1 + 195 + 1 + 195 + migrations));

    let config = fx.config();
    let (drilled, restored) = pgbackup::drill(
        &fx.s3,
        &fx.bucket,
        &config.database_url,
        &crate::support::database::settings(),
        &pgbackup::scratch_name(),
    )
    .await
    .expect("the drill");
    assert_eq!(drilled, key);
    assert_eq!(json!(restored.rows()), done["rows"]);
}

#[tokio::test]
async fn the_backup_task_fails_when_its_bucket_is_missing() {
    let fx = Fixture::new().await;
    let mut config = fx.config();
    config.backup_bucket = format!("missing-{}", uuid::Uuid::new_v4().simple());
    let tasks = Tasks::new(config).await;
    let capture = platform::metrics::Capture::start();
    tasks
        .run(Task::Backup)
        .await
        .expect_err("no bucket, no backup");
    // Reported as a failure, with no size: nothing was written.
    let metric = only_metric_line(&capture);
    assert_eq!(metric["BackupSucceeded"], 0, "{metric}");
    assert!(metric.get("BackupBytes").is_none(), "{metric}");
    assert!(metric["BackupDuration"].is_u64(), "{metric}");
}

/// The one EMF line the task wrote, checked to declare each value it carries.
fn only_metric_line(capture: &platform::metrics::CaptureGuard) -> Value {
    let lines = capture.lines();
    assert_eq!(lines.len(), 1, "one metric line: {lines:?}");
    let line: Value = serde_json::from_str(&lines[0]).expect("EMF JSON");
    let declared = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(declared["Namespace"], "Backend/Backup");
    for metric in declared["Metrics"].as_array().expect("Metrics") {
        let name = metric["Name"].as_str().expect("Name");
        assert!(
            line[name].is_number(),
            "{name} declared without a value: {line}"
        );
    }
    line
}

#[tokio::test]
async fn the_maintenance_task_removes_uploads_never_completed_within_a_day() {
    let fx = Fixture::new().await;
    fx.fill().await;
    let config = fx.config();
    let uploads = config.uploads_bucket.clone();
    fx.s3
        .create_bucket()
        .bucket(&uploads)
        .send()
        .await
        .expect("bucket");
    let db = fx.client().await;
    let user = uuid::Uuid::from_u128(1);
    let mut keys = Vec::new();
    for (status, age) in [
        ("pending", "2 days"),
        ("pending", "1 hour"),
        ("ready", "2 days"),
    ] {
        let id = uuid::Uuid::new_v4();
        let key = format!("uploads/{user}/{id}");
        db.execute_typed(
            "INSERT INTO uploads (id, user_id, object_key, filename, content_type, size, status, created_at)
             VALUES ($1, $2, $3, 'f.png', 'image/png', 4, $4, now() - $5::text::interval)",
            &[
                (&id, Type::UUID),
                (&user, Type::UUID),
                (&key, Type::TEXT),
                (&status, Type::TEXT),
                (&age, Type::TEXT),
            ],
        )
        .await
        .expect("upload row");
        fx.s3
            .put_object()
            .bucket(&uploads)
            .key(&key)
            .body(b"data".to_vec().into())
            .send()
            .await
            .expect("object");
        keys.push(key);
    }

    let tasks = Tasks::new(config).await;
    let done = tasks.run(Task::Maintenance).await.expect("maintenance");
    assert_eq!(done["abandoned_uploads_removed"], 1);

    let left: Vec<String> = db
        .query_typed("SELECT object_key FROM uploads WHERE object_key LIKE 'uploads/%/%-%' ORDER BY created_at", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !left.contains(&keys[0]),
        "the abandoned upload's row is gone"
    );
    assert!(left.contains(&keys[1]) && left.contains(&keys[2]));
    let objects = fx
        .s3
        .list_objects_v2()
        .bucket(&uploads)
        .send()
        .await
        .expect("listing");
    let objects: Vec<&str> = objects.contents().iter().filter_map(|o| o.key()).collect();
    assert!(!objects.contains(&keys[0].as_str()), "its object is gone");
    assert!(objects.contains(&keys[1].as_str()) && objects.contains(&keys[2].as_str()));
}
