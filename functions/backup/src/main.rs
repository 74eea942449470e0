//! The backup function on Lambda: wiring only, run once per cold start.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

fn main() -> Result<(), Error> {
    platform::work::runtime()?.block_on(async {
        platform::install_crypto_provider();
        let (config, _) = platform::secrets::load_from_env().await?;
        platform::telemetry::init(&config.log_level);
        let tasks = backup::Tasks::new(config).await;
        let tasks = &tasks;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
            let task: backup::Task = serde_json::from_value(event.payload)?;
            tasks.run(task).await.map_err(|err| {
                tracing::error!(error = format!("{err:#}"), ?task, "task failed");
                Error::from(format!("{err:#}"))
            })
        }))
        .await
    })
}
