//! A no-op internal extension, for the SIGTERM Lambda sends only to a function that has one.
//!
//! Lambda's Extensions API: register (subscribed to no event) before the runtime's first
//! `/next`, then wait on the extension's own `event/next`, which with no subscription is never
//! answered; that poll is also how Lambda learns the extension finished its init.
//!
//! Written here over `lambda_runtime_api_client`, the Runtime API client `lambda_runtime`
//! already links, rather than with `lambda_runtime`'s `spawn_graceful_shutdown_handler`: that
//! helper's extension crate builds in the Logs and Telemetry API servers it never starts, about
//! 150 KiB of code in every function (docs/BENCHMARKS.md).

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use lambda_runtime_api_client::{PooledClient, body::Body, build_request};

/// Internal extensions' names are unique within a function; this is the only one.
pub const NAME: &str = "graceful-shutdown";

const NAME_HEADER: &str = "Lambda-Extension-Name";
const ID_HEADER: &str = "Lambda-Extension-Identifier";

/// Registers the extension, then keeps its poll open in a task of its own.
pub async fn register() -> Result<(), lambda_http::Error> {
    let endpoint = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .map_err(|_| "AWS_LAMBDA_RUNTIME_API is not set: this binary runs on Lambda")?;
    let client = PooledClient::builder()
        .with_endpoint(endpoint.try_into()?)
        .build();
    let registration = build_request()
        .method(Method::POST)
        .uri("/2020-01-01/extension/register")
        .header(NAME_HEADER, NAME)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"events":[]}"#))?;
    let answer = client.call(registration).await?;
    if !answer.status().is_success() {
        return Err(format!(
            "the shutdown extension's registration was refused: {}",
            answer.status()
        )
        .into());
    }
    let id = answer
        .headers()
        .get(ID_HEADER)
        .cloned()
        .ok_or("the shutdown extension's registration answered no identifier")?;
    tokio::spawn(async move {
        while let Ok(next) = build_request()
            .method(Method::GET)
            .uri("/2020-01-01/extension/event/next")
            .header(ID_HEADER, id.clone())
            .body(Body::empty())
        {
            // An answer to an extension with no subscription can only be the end (an error,
            // or a SHUTDOWN from a Runtime API that sends it to every extension): then the
            // poll stops, as it would when the process exits.
            let Ok(answer) = client.call(next).await else {
                return;
            };
            let status = answer.status();
            let Ok(body) = answer.into_body().collect().await else {
                return;
            };
            if status != StatusCode::OK || is_shutdown(&body.to_bytes()) {
                return;
            }
        }
    });
    Ok(())
}

fn is_shutdown(event: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Event {
        #[serde(rename = "eventType")]
        event_type: String,
    }
    serde_json::from_slice::<Event>(event).is_ok_and(|e| e.event_type == "SHUTDOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shutdown_event_is_told_from_any_other_answer() {
        assert!(is_shutdown(
            br#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1}"#
        ));
        assert!(!is_shutdown(br#"{"eventType":"INVOKE","requestId":"x"}"#));
        assert!(!is_shutdown(b"not json"));
    }
}
