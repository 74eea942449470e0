//! The auth function on Lambda: wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::serve_on_lambda(auth::router).await
}
