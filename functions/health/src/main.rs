//! The health function on Lambda: wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::serve_on_lambda(health::router).await
}
