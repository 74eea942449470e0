//! The uploads function on Lambda: wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::serve_on_lambda(uploads::router).await
}
