//! The health function on Lambda: wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    http_kit::serve_on_lambda(health::routes).await
}
