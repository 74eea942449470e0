//! The Fargate tasks' entrypoint (`infra/backup/entrypoint.sh`) around the real `db` binary, as
//! the container runs it: the backup and the drill report their metric as one EMF line, a
//! password injected by ECS reaches `db`, and a drill pointed anywhere but the task's own
//! Postgres is refused before `db` runs.

use serde_json::Value;

use super::Fixture;
use crate::support::{moto, repo_root, workspace_bin};

struct Run {
    status: i32,
    stderr: String,
    /// The EMF line, the last line of stdout.
    metric: Value,
    /// The other EMF lines (`db --metrics`: size and duration), in order.
    others: Vec<Value>,
}

fn entrypoint(fx: &Fixture, task: &str, vars: &[(&str, &str)]) -> Run {
    // `db` on the PATH, as in the image.
    let bin = fx.dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin folder");
    let db = bin.join("db");
    if !db.exists() {
        std::os::unix::fs::symlink(workspace_bin("db"), &db).expect("linking db");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("infra/backup/entrypoint.sh"))
        .arg(task)
        .env("PATH", path)
        .env("APP_ENV", "test")
        .env("DATABASE_URL", &fx.db.url)
        .env("AWS_ENDPOINT_URL", moto::MULTIPART_ENDPOINT)
        .env("BACKUP_BUCKET", &fx.bucket)
        .envs(vars.iter().copied())
        .output()
        .expect("running the entrypoint");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let others = stdout
        .lines()
        .rev()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Run {
        status: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        metric: serde_json::from_str(last).unwrap_or(Value::Null),
        others,
    }
}

/// The one size-and-duration line `db` wrote before the outcome, checked against the dump in S3.
async fn size_and_duration(fx: &Fixture, run: &Run, prefix: &str) -> Value {
    assert_eq!(run.others.len(), 1, "one line from db: {:?}", run.others);
    let line = run.others[0].clone();
    let declared = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(declared["Namespace"], "Backend/Backup");
    assert_eq!(
        declared["Metrics"],
        serde_json::json!([
            { "Name": format!("{prefix}Bytes"), "Unit": "Bytes" },
            { "Name": format!("{prefix}Duration"), "Unit": "Milliseconds" },
        ])
    );
    assert_eq!(line["Environment"], "test");
    assert!(
        line[format!("{prefix}Duration")]
            .as_u64()
            .is_some_and(|ms| ms > 0),
        "{line}"
    );
    let dumps: Vec<String> = fx
        .keys()
        .await
        .into_iter()
        .filter(|k| k.ends_with(".sql.gz"))
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let size = fx
        .s3
        .head_object()
        .bucket(&fx.bucket)
        .key(&dumps[0])
        .send()
        .await
        .expect("the dump")
        .content_length();
    assert_eq!(line[format!("{prefix}Bytes")].as_i64(), size, "{line}");
    line
}

#[tokio::test]
async fn the_backup_and_the_drill_tasks_report_their_metric_and_the_drill_stays_local() {
    let fx = Fixture::new().await;
    fx.fill().await;
    assert!(
        fx.db.url.contains("@127.0.0.1:") || fx.db.url.contains("@localhost:"),
        "these tests need Postgres on the loopback: {}",
        fx.db.url
    );

    // ECS injects the password apart from the URL; Postgres here trusts local connections, so
    // the run shows that the URL with the encoded password still parses and connects.
    let backup = entrypoint(&fx, "backup", &[("DATABASE_PASSWORD", "p@ss:w/rd %?#")]);
    assert_eq!(backup.status, 0, "{}", backup.stderr);
    assert_eq!(backup.metric["BackupSucceeded"], 1, "{}", backup.metric);
    assert_eq!(backup.metric["Environment"], "test");
    assert_eq!(
        backup.metric["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "Backend/Backup"
    );
    assert!(
        fx.keys()
            .await
            .iter()
            .any(|k| k.ends_with(".manifest.json")),
        "a complete backup is in the bucket"
    );
    size_and_duration(&fx, &backup, "Backup").await;

    let drill = entrypoint(&fx, "drill", &[]);
    assert_eq!(drill.status, 0, "{}", drill.stderr);
    assert_eq!(drill.metric["DrillSucceeded"], 1, "{}", drill.metric);
    // The drill restored the same dump: the same size.
    size_and_duration(&fx, &drill, "Drill").await;

    let elsewhere = fx
        .db
        .url
        .replacen("@127.0.0.1:", "@db.example.internal:", 1)
        .replacen("@localhost:", "@db.example.internal:", 1);
    let refused = entrypoint(&fx, "drill", &[("DATABASE_URL", &elsewhere)]);
    assert_eq!(refused.status, 2);
    assert_eq!(refused.metric["DrillSucceeded"], 0, "{}", refused.metric);
    assert!(refused.others.is_empty(), "no size for a refused drill");
    assert!(
        refused.stderr.contains("not into db.example.internal"),
        "{}",
        refused.stderr
    );

    // A failed backup (no such bucket) is a 0, not a missing line.
    let failed = entrypoint(&fx, "backup", &[("BACKUP_BUCKET", "no-such-bucket-here")]);
    assert_ne!(failed.status, 0);
    assert_eq!(failed.metric["BackupSucceeded"], 0, "{}", failed.metric);
    assert!(failed.others.is_empty(), "no size for a failed backup");
}
