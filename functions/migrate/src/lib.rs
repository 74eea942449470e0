//! The migrate function: applies the migrations embedded at build time. The deploy pipeline
//! invokes it with `{"command":"up"}` (or `"status"`) after `sam deploy`, and fails the
//! deployment when the answer is an error.

use serde::{Deserialize, Serialize};
use shared::{
    config::Config,
    db::{self, PoolSettings},
    migrate::{Migrator, State},
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

/// The migrations compiled into this binary (by `build.rs`).
pub fn migrator() -> anyhow::Result<Migrator> {
    Migrator::from_embedded(embedded::FILES)
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
