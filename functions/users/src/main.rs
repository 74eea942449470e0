//! The users function on Lambda: wiring only.

fn main() -> Result<(), lambda_http::Error> {
    platform::work::lambda_runtime()?
        .block_on(async { http_kit::serve_on_lambda(users::routes).await })
}
