//! The migrate function on Lambda: wiring only.

use lambda_runtime::{LambdaEvent, service_fn};

fn main() -> Result<(), lambda_runtime::Error> {
    platform::work::runtime()?.block_on(async {
        platform::install_crypto_provider();
        let (config, _) = platform::secrets::load_from_env().await?;
        platform::telemetry::init(&config.log_level);
        let config = &config;
        lambda_runtime::run(service_fn(
            move |event: LambdaEvent<serde_json::Value>| async move {
                migrate::invoke(config, event.payload)
                    .await
                    .map_err(|e| lambda_runtime::Error::from(format!("{e:#}")))
            },
        ))
        .await
    })
}
