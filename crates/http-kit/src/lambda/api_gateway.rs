//! The router as a handler of API Gateway HTTP API (payload 2.0) events.
//!
//! `lambda_http::Adapter` does the same, and its event → `http::Request` half is used here as is.
//! Its answer half runs every text body through a charset decoder (encoding_rs: about 135 KB of
//! each function's zip, most of it CJK tables) to turn it into UTF-8, which every body we send
//! already is. That half alone is written here: a body that is valid UTF-8 goes as text, any
//! other as base64, and `Set-Cookie` headers go to the answer's `cookies` as API Gateway wants.

use std::{future::Future, pin::Pin};

use axum::{Router, body::Body};
use http::{
    HeaderMap, HeaderValue, Response,
    header::{CONTENT_ENCODING, HOST, SET_COOKIE},
};
use http_body_util::BodyExt;
use lambda_http::{
    LambdaEvent, RequestExt,
    aws_lambda_events::{apigw::ApiGatewayV2httpResponse, encodings},
    request::LambdaRequest,
};
use tower::Service;

/// Wraps the router for `lambda_runtime::Runtime`.
#[derive(Clone)]
pub struct ApiGateway(pub Router);

impl Service<LambdaEvent<LambdaRequest>> for ApiGateway {
    type Response = ApiGatewayV2httpResponse;
    type Error = lambda_http::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        Service::<lambda_http::Request>::poll_ready(&mut self.0, cx).map_err(Into::into)
    }

    fn call(&mut self, event: LambdaEvent<LambdaRequest>) -> Self::Future {
        let LambdaEvent {
            mut payload,
            context,
        } = event;
        if let LambdaRequest::ApiGatewayV2(event) = &mut payload {
            drop_unusable_url_parts(&mut event.headers);
        }
        let mut request: lambda_http::Request = payload.into();
        // What `lambda_http::Adapter` does too: the invocation's X-Ray trace header, which the
        // traces and the logs' `trace_id` read, also when API Gateway sent none.
        if let Some(value) = context
            .xray_trace_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            request.headers_mut().insert("x-amzn-trace-id", value);
        }
        let answer = self.0.call(request.with_lambda_context(context));
        Box::pin(async move {
            let response = answer.await?;
            to_api_gateway(response).await
        })
    }
}

/// lambda_http builds the request's URL from the `Host` and `X-Forwarded-Proto` headers and
/// panics on one that `url` cannot parse: a host with a space or another stray character, or
/// with non-ASCII letters (the workspace's Cargo.toml says why `url` takes no Unicode host
/// names), or a scheme that is not one. Without them, lambda_http takes the event's
/// `requestContext.domainName`, the domain API Gateway was called on, and `https`.
fn drop_unusable_url_parts(headers: &mut HeaderMap) {
    let usable_host = headers.get(HOST).is_none_or(|host| {
        host.as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(b))
    });
    if !usable_host {
        headers.remove(HOST);
    }
    let usable_scheme = headers
        .get(X_FORWARDED_PROTO)
        .is_none_or(|scheme| scheme == "https" || scheme == "http");
    if !usable_scheme {
        headers.remove(X_FORWARDED_PROTO);
    }
}

const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// The answer as API Gateway reads it.
async fn to_api_gateway(
    response: Response<Body>,
) -> Result<ApiGatewayV2httpResponse, lambda_http::Error> {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let mut headers = parts.headers;
    let cookies = take_cookies(&mut headers);
    // A compressed body is binary whatever its bytes happen to be.
    let encoded = headers.contains_key(CONTENT_ENCODING);
    let (body, is_base64_encoded) = if bytes.is_empty() {
        (None, false)
    } else {
        match String::from_utf8(bytes.into()) {
            Ok(text) if !encoded => (Some(encodings::Body::Text(text)), false),
            Ok(text) => (Some(encodings::Body::Binary(text.into_bytes())), true),
            Err(binary) => (Some(encodings::Body::Binary(binary.into_bytes())), true),
        }
    };
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.headers = headers;
    answer.body = body;
    answer.is_base64_encoded = is_base64_encoded;
    answer.cookies = cookies;
    Ok(answer)
}

/// API Gateway would join repeated `Set-Cookie` headers with commas, which browsers cannot split
/// again: each cookie goes in the answer's `cookies` instead.
fn take_cookies(headers: &mut HeaderMap) -> Vec<String> {
    let cookies = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok().map(str::to_owned))
        .collect();
    headers.remove(SET_COOKIE);
    cookies
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use base64::Engine;
    use serde_json::{Value, json};

    use super::*;

    /// The answer as the Runtime API receives it.
    async fn as_sent(response: Response<Body>) -> Value {
        let answer = to_api_gateway(response).await.expect("an answer");
        serde_json::to_value(answer).expect("serializable")
    }

    #[tokio::test]
    async fn a_json_answer_goes_as_text_with_its_status_and_headers() {
        let sent = as_sent(
            Response::builder()
                .status(422)
                .header("content-type", "application/problem+json")
                .header("x-request-id", "abc")
                .body(Body::from(r#"{"title":"Ünprocessable"}"#))
                .expect("response"),
        )
        .await;
        assert_eq!(sent["statusCode"], 422);
        assert_eq!(sent["isBase64Encoded"], false);
        assert_eq!(sent["body"], r#"{"title":"Ünprocessable"}"#);
        assert_eq!(sent["headers"]["content-type"], "application/problem+json");
        assert_eq!(sent["headers"]["x-request-id"], "abc");
        assert_eq!(sent["cookies"], json!([]));
    }

    #[tokio::test]
    async fn each_cookie_goes_to_the_cookies_field_and_none_stays_a_header() {
        let sent = as_sent(
            Response::builder()
                .header("set-cookie", "refresh_token=a; HttpOnly; Secure")
                .header("set-cookie", "other=b; Path=/")
                .body(Body::from("{}"))
                .expect("response"),
        )
        .await;
        assert_eq!(
            sent["cookies"],
            json!(["refresh_token=a; HttpOnly; Secure", "other=b; Path=/"])
        );
        assert!(sent["headers"].get("set-cookie").is_none(), "{sent}");
    }

    #[tokio::test]
    async fn a_body_that_is_not_utf8_goes_as_base64() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        let sent = as_sent(
            Response::builder()
                .header("content-type", "image/png")
                .body(Body::from(png.clone()))
                .expect("response"),
        )
        .await;
        assert_eq!(sent["isBase64Encoded"], true);
        let body = sent["body"].as_str().expect("a string");
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("base64"),
            png
        );
    }

    #[tokio::test]
    async fn a_compressed_body_goes_as_base64_even_when_its_bytes_read_as_text() {
        let sent = as_sent(
            Response::builder()
                .header("content-encoding", "br")
                .body(Body::from("plain bytes"))
                .expect("response"),
        )
        .await;
        assert_eq!(sent["isBase64Encoded"], true);
        assert_eq!(
            sent["body"],
            base64::engine::general_purpose::STANDARD.encode("plain bytes")
        );
    }

    #[tokio::test]
    async fn an_empty_answer_has_no_body() {
        let sent = as_sent(
            Response::builder()
                .status(204)
                .body(Body::empty())
                .expect("response"),
        )
        .await;
        assert_eq!(sent["statusCode"], 204);
        assert!(sent.get("body").is_none(), "{sent}");
        assert_eq!(sent["isBase64Encoded"], false);
    }

    fn health_event() -> LambdaRequest {
        serde_json::from_str(include_str!(
            "../../../../tests/fixtures/events/health.json"
        ))
        .expect("an API Gateway v2 event")
    }

    /// The URL the router sees for the stored `/health` event with `header` set to `value`.
    async fn url_seen_with(header: &'static str, value: &str) -> encodings::Body {
        let mut event = health_event();
        let LambdaRequest::ApiGatewayV2(inner) = &mut event else {
            panic!("an HTTP API event");
        };
        inner.headers.insert(
            header,
            HeaderValue::from_bytes(value.as_bytes()).expect("a value"),
        );
        let router = Router::new().route(
            "/health",
            get(|request: http::Request<Body>| async move { request.uri().to_string() }),
        );
        let sent = ApiGateway(router)
            .call(LambdaEvent::new(event, lambda_http::Context::default()))
            .await
            .expect("an answer");
        sent.body.expect("a body")
    }

    #[tokio::test]
    async fn a_host_header_that_is_no_url_host_gives_way_to_api_gateway_s_domain() {
        for host in ["bücher.example", "api.example.com evil", "a/b"] {
            assert_eq!(
                url_seen_with("host", host).await,
                encodings::Body::Text("https://api.example.com/health".into()),
                "{host}"
            );
        }
    }

    #[tokio::test]
    async fn a_forwarded_scheme_that_is_no_scheme_gives_way_to_https() {
        for (scheme, seen) in [
            ("not a scheme", "https"),
            ("1http", "https"),
            ("http", "http"),
        ] {
            assert_eq!(
                url_seen_with(X_FORWARDED_PROTO, scheme).await,
                encodings::Body::Text(format!("{seen}://api.example.com/health")),
                "{scheme}"
            );
        }
    }

    #[tokio::test]
    async fn an_event_reaches_the_router_with_its_context_and_the_trace_header() {
        let event = health_event();
        let mut context = lambda_http::Context::default();
        context.request_id = "invocation-1".into();
        context.xray_trace_id = Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into());
        let router = Router::new().route(
            "/health",
            get(|request: http::Request<Body>| async move {
                let trace = request.headers()["x-amzn-trace-id"]
                    .to_str()
                    .map(str::to_owned);
                format!(
                    "{} {}",
                    request.lambda_context().request_id,
                    trace.unwrap_or_default()
                )
            }),
        );
        let sent = ApiGateway(router)
            .call(LambdaEvent::new(event, context))
            .await
            .expect("an answer");
        assert_eq!(sent.status_code, 200);
        assert_eq!(
            sent.body,
            Some(encodings::Body::Text(
                "invocation-1 Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into()
            ))
        );
    }
}
