//! The layers every response goes through, wherever the router runs (Lambda, local, tests).
//!
//! Outermost first: the request's metrics (one EMF line when its answer is ready), a sane request id (echoed or generated), the security headers, the access
//! log span, CORS, the request scope (request id for error bodies, plain errors turned into
//! problem+json), panics caught as 500, and the 1 MiB body limit.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, Method, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};

use crate::error::{ApiError, PROBLEM_JSON, REQUEST_ID, problem_for_status};
use platform::{Platform, config::Config};

pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// helmet 8's defaults but its Content-Security-Policy: every answer of the API carries them, and
/// the local server's web client too (`local::site`).
pub const HELMET_HEADERS: [(&str, &str); 11] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "SAMEORIGIN"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
];

/// The API's Content-Security-Policy, fit for JSON answers.
const API_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Wraps a route group (or several merged) into the servable app: the 404 fallback and every
/// layer of "Behaviour on every response". Route groups carry no fallback of their own, so
/// that they can be merged.
pub fn app(routes: Router, state: &Platform) -> Router {
    let config = &state.config;
    // Outermost first, applied as one layer: the router boxes a route's whole stack once and
    // clones it in one piece for each request. Applied one `Router::layer` at a time, each layer
    // would be a box of its own around the previous one, and every request would clone and free
    // two dozen of them (about a quarter of a cached read's instructions).
    let layers = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(config.emf_metrics, measure))
        .layer(middleware::map_request(drop_insane_request_id))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, RequestIds))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        // Every answer is per-user or live state: nothing may be cached on the way.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        // A page that must run its own scripts (the API reference) sets its own policy.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CONTENT_SECURITY_POLICY),
        ))
        .layer(middleware::map_response(security_headers))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with({
                    let config = state.config.clone();
                    move |req: &http::Request<Body>| request_span(req, &config)
                })
                .on_request(())
                .on_response(log_response)
                .on_failure(()),
        )
        .layer(crate::preflight::PreflightsOnlyLayer(cors(config)))
        .layer(middleware::from_fn(request_scope))
        .layer(middleware::from_fn_with_state(
            crate::origin_verify::OriginPolicy::from_config(config),
            crate::origin_verify::check,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::rate_limit::limit,
        ))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                ApiError::Unexpected(anyhow::anyhow!("the handler panicked")).into_response()
            },
        ))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT_BYTES));
    routes
        .fallback(|| async { ApiError::NotFound })
        .layer(layers)
}

/// helmet's headers, each replacing any the handler set.
async fn security_headers<B>(mut res: http::Response<B>) -> http::Response<B> {
    let headers = res.headers_mut();
    for (name, value) in HELMET_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    res
}

/// Where the request span leaves the request's trace id for its error report.
#[derive(Clone, Default)]
struct TraceIdSlot(std::sync::Arc<std::sync::OnceLock<String>>);

/// Whether a request was its process's first, for the access log's `cold_start`.
#[derive(Clone, Copy)]
struct ColdStart(bool);

/// Counts and times the request, and writes its one metric line when the answer is ready.
/// Outermost, so that its latency covers every other layer and it sees every status.
async fn measure(State(emit): State<bool>, mut req: Request, next: Next) -> Response {
    use axum::extract::MatchedPath;
    let started = std::time::Instant::now();
    let cold_start = platform::metrics::take_cold_start();
    req.extensions_mut().insert(ColdStart(cold_start));
    // The route's template: a raw path would make every user id a metric of its own.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched
        .as_ref()
        .map_or(platform::metrics::UNMATCHED_ROUTE, MatchedPath::as_str);
    let method = req.method().clone();
    let reporting = platform::error_tracking::enabled();
    // The request span learns the trace id; the report of a failure names it.
    let trace_id = reporting.then(TraceIdSlot::default);
    if let Some(slot) = &trace_id {
        req.extensions_mut().insert(slot.clone());
    }
    // The scope also carries the cause of a 5xx to the error report.
    let (res, used) = if emit || reporting {
        let (res, used) = platform::metrics::RequestMetrics::scope(next.run(req)).await;
        (res, Some(used))
    } else {
        (next.run(req).await, None)
    };
    let status = res.status().as_u16();
    if emit && let Some(used) = &used {
        used.finish(&platform::metrics::Outcome {
            route,
            method: method.as_str(),
            status,
            latency: started.elapsed(),
            cold_start,
        });
    }
    if reporting && res.status().is_server_error() {
        platform::error_tracking::report(platform::error_tracking::FailedRequest {
            request_id: res
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            route,
            method: method.as_str(),
            status,
            trace_id: trace_id
                .as_ref()
                .and_then(|slot| slot.0.get())
                .map(String::as_str),
            failure: used.as_ref().and_then(|used| used.failure()),
        })
        .await;
    }
    res
}

fn cors(config: &Config) -> CorsLayer {
    let origins: std::sync::Arc<[HeaderValue]> = config
        .allowed_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    // The same exact-match list as `AllowOrigin::list`, behind a shared reference: the router
    // clones each route's layers for every request, and a list would be copied each time.
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origins.contains(origin)
        }))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, X_REQUEST_ID])
        .expose_headers([
            X_REQUEST_ID,
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// A client-sent id is echoed only when it is sane; otherwise it is replaced.
fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

async fn drop_insane_request_id(mut req: Request) -> Request {
    if req
        .headers()
        .get(&X_REQUEST_ID)
        .is_some_and(|v| !is_sane_request_id(v))
    {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    req
}

/// On Lambda the request id is the invocation's own, so logs, X-Ray and the client agree;
/// elsewhere a random UUID.
#[derive(Clone, Copy)]
struct RequestIds;

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, req: &http::Request<B>) -> Option<RequestId> {
        use lambda_http::RequestExt;
        let id = req
            .lambda_context_ref()
            .map(|ctx| ctx.request_id.clone())
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Every log line of a request carries: the id it is answered with (`request_id`, the
/// client's own when sane), the platform's id for it (`platform_request_id`: API Gateway's on
/// Lambda, a fresh one elsewhere), which a client cannot choose, and the client's address.
fn request_span<B>(req: &http::Request<B>, config: &Config) -> tracing::Span {
    use lambda_http::RequestExt;
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let platform_request_id = match req.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let client_ip = crate::client_ip::client_ip(req, config)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id,
        platform_request_id,
        client_ip,
        trace_id = tracing::field::Empty,
        cold_start = req.extensions().get::<ColdStart>().is_some_and(|c| c.0),
        method = %req.method(),
        // The path only: a query string may carry something secret.
        path = req.uri().path(),
        // For traces only (`platform::traces`); the log lines leave them out.
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
    );
    // Lambda's trace header (the invocation's), else API Gateway's.
    let xray = req
        .lambda_context_ref()
        .and_then(|ctx| ctx.xray_trace_id.clone())
        .or_else(|| {
            req.headers()
                .get("x-amzn-trace-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(platform::metrics::UNMATCHED_ROUTE, |m| m.as_str());
    let trace_id =
        platform::traces::start_request(&span, xray.as_deref(), req.method().as_str(), route);
    if let Some(trace_id) = trace_id {
        span.record("trace_id", trace_id.as_str());
        if let Some(slot) = req.extensions().get::<TraceIdSlot>() {
            let _ = slot.0.set(trace_id);
        }
    }
    span
}

fn log_response<B>(res: &http::Response<B>, latency: std::time::Duration, span: &tracing::Span) {
    platform::traces::end_request(span, res.status().as_u16());
    tracing::info!(
        status = res.status().as_u16(),
        duration_ms = latency.as_secs_f64() * 1000.0,
        "request completed"
    );
}

/// Makes the request id available to error bodies, and turns any plain error response (axum's
/// 405, the body limit's 413, ...) into problem+json, keeping its headers (`Allow`).
async fn request_scope(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    REQUEST_ID
        .scope(id, async move {
            let res = next.run(req).await;
            // Our own errors and JSON answers (a degraded /health) are already shaped; only bodies
            // without a type or with plain text come from a library's default.
            let is_plain = res
                .headers()
                .get(header::CONTENT_TYPE)
                .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
            if res.status().as_u16() < 400 || !is_plain {
                return res;
            }
            let (mut parts, _) = res.into_parts();
            let problem = problem_for_status(parts.status);
            let (problem_parts, body) = problem.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
            drop(problem_parts);
            Response::from_parts(parts, body)
        })
        .await
}
