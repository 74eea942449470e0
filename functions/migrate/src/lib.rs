//! The migrate function: applies the migrations embedded at build time. The deploy pipeline
//! invokes it with `{"command":"up"}` (or `"status"`) after `sam deploy`, and fails the
//! deployment when the answer is an error.

use serde::{Deserialize, Serialize};
use shared::{
    config::Config,
    db::{self, PoolSettings},
    migrate::{Migration, Migrator, State},
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    #[default]
    Up,
    Status,
}

#[derive(Debug, Default, Deserialize)]
pub struct Request {
    #[serde(default)]
    pub command: Command,
}

#[derive(Debug, Serialize)]
pub struct Response {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
    pub version: Option<i64>,
}

/// The migrations compiled into this binary.
pub fn migrator() -> anyhow::Result<Migrator> {
    let mut migrations = Vec::new();
    for (name, up) in embedded::FILES
        .iter()
        .filter(|(n, _)| n.ends_with(".up.sql"))
    {
        let stem = name.trim_end_matches(".up.sql");
        let (version, label) = stem
            .split_once('_')
            .ok_or_else(|| anyhow::anyhow!("bad migration name {name}"))?;
        let down_name = format!("{stem}.down.sql");
        let down = embedded::FILES
            .iter()
            .find(|(n, _)| *n == down_name)
            .map(|(_, sql)| *sql);
        migrations.push(Migration::new(version.parse()?, label, up, down));
    }
    Migrator::new(migrations)
}

pub async fn handle(config: &Config, request: Request) -> anyhow::Result<Response> {
    let migrator = migrator()?;
    let mut conn =
        db::connect_once(&config.database_url, &PoolSettings::from_config(config)).await?;
    let applied = match request.command {
        Command::Up => migrator.up(&mut conn).await?,
        Command::Status => Vec::new(),
    };
    for name in &applied {
        tracing::info!(migration = name, "applied migration");
    }
    let status = migrator.status(&mut conn).await?;
    let pending = status
        .iter()
        .filter(|s| s.state == State::Pending)
        .map(|s| format!("{:04}_{}", s.version, s.name))
        .collect();
    if let Some(changed) = status
        .iter()
        .find(|s| matches!(s.state, State::Changed | State::Missing))
    {
        anyhow::bail!(
            "migration {:04}_{} no longer matches what was applied",
            changed.version,
            changed.name
        );
    }
    Ok(Response {
        applied,
        pending,
        version: Migrator::current_version(&conn).await?,
    })
}
