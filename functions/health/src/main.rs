//! The health function on Lambda: wiring only, run once per cold start.

use shared::{AppState, config::Config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = Config::from_env()?;
    shared::telemetry::init(&config.log_level);
    let state = AppState::new(config).await?;
    shared::run_on_lambda(health::router(state.clone()), &state).await
}
