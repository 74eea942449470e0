//! The users function on Lambda: wiring only, run once per cold start.

use shared::AppState;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::state::install_crypto_provider();
    let (config, refresh) = shared::secrets::load_from_env().await?;
    shared::telemetry::init(&config.log_level);
    let state = AppState::with_refresh(config, refresh).await?;
    shared::run_on_lambda(users::router(state.clone()), &state).await
}
