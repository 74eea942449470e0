//! The backup function on Lambda: wiring only, run once per cold start.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::{config::Config, migrate::Migrator};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    shared::telemetry::init(&config.log_level);
    let migrator = Migrator::from_embedded(backup::MIGRATIONS)?;
    let tasks = backup::Tasks::new(config, migrator).await;
    let tasks = &tasks;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let task: backup::Task = serde_json::from_value(event.payload)?;
        tasks.run(task).await.map_err(|err| {
            tracing::error!(error = format!("{err:#}"), ?task, "task failed");
            Error::from(format!("{err:#}"))
        })
    }))
    .await
}
