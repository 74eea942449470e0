//! The migrate function: applies the migrations embedded at build time. The deploy pipeline
//! invokes it with `{"command":"up"}` (or `"status"`) after `sam deploy`, and fails the
//! deployment when the answer is an error.

pub mod app_role;

use migrator::{Migrator, State};
use platform::{
    config::Config,
    db::{self, PoolSettings},
};
use serde::{Deserialize, Serialize};

/// What the deploy pipeline asks for. There is no default: an invocation that does not say
/// what it wants must never change the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Up,
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub command: Command,
}

impl Request {
    pub const UP: Self = Self {
        command: Command::Up,
    };

    /// Parses an invocation payload: `{"command":"up"}` or `{"command":"status"}`, nothing else.
    /// Anything else (a typo, another command, a missing or extra field) is an error result, so
    /// a mistaken invoke fails loudly instead of running the migrations.
    pub fn parse(payload: serde_json::Value) -> anyhow::Result<Self> {
        serde_json::from_value(payload).map_err(|e| {
            anyhow::anyhow!(
                "invalid payload ({e}): expected {{\"command\":\"up\"}} or {{\"command\":\"status\"}}"
            )
        })
    }
}

/// The whole invocation as Lambda delivers it: parse the payload, then run the command.
pub async fn invoke(config: &Config, payload: serde_json::Value) -> anyhow::Result<Response> {
    handle(config, Request::parse(payload)?).await
}

#[derive(Debug, Serialize)]
pub struct Response {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
    pub version: Option<i64>,
}

pub async fn handle(config: &Config, request: Request) -> anyhow::Result<Response> {
    let migrator = migrations::migrator()?;
    let mut conn =
        db::connect_once(&config.database_url, &PoolSettings::from_config(config)).await?;
    let applied = match request.command {
        Command::Up => {
            let applied = migrator.up(&mut conn).await?;
            app_role::ensure_from_config(config, &mut conn).await?;
            applied
        }
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
