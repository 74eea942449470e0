//! What every operation of the OpenAPI document shares, added in one place.
//!
//! Each route group declares its own operations next to their handlers (`#[utoipa::path]`) with
//! only what is particular to them: the success answer and the errors the handler itself
//! decides (a 409, a 403). The statuses that the layers and extractors answer on every route are
//! added here, from the shape of each operation, so that no handler can forget one:
//!
//! | when the operation | it also answers |
//! |---|---|
//! | has a JSON body (`Json`, `OptionalJson`) | 400 malformed, 413 too large, 415 not JSON, 422 invalid field |
//! | has query parameters (`Pagination`, `Query`) | 400 malformed, 422 invalid value |
//! | has a path parameter (`PathId`) | 404 (an id that cannot exist) |
//! | needs a bearer token (`AuthUser`) | 401 |
//! | is rate limited (every path but [`crate::rate_limit::EXEMPT`]) | 429, 500, 503 |
//!
//! Any declared 4xx or 5xx without a body gets the problem+json body, and every answer the
//! `X-Request-Id` header (and the RateLimit headers where the limiter counts).

use serde_json::json;
use utoipa::openapi::{
    Components, OpenApi, RefOr, Response,
    path::{Operation, ParameterIn, PathItem},
    security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{
    error::{FieldError, PROBLEM_JSON, Problem},
    rate_limit,
};

/// The name of the bearer security scheme that operations requiring an access token name.
pub const BEARER: &str = "bearerAuth";
/// The name of the refresh-cookie security scheme.
pub const REFRESH_COOKIE: &str = "refreshCookie";

/// The statuses the shared layers and extractors answer, with the component that describes each.
const SHARED: [(&str, &str, &str); 11] = [
    (
        "400",
        "BadRequest",
        "Malformed request: the body is not valid JSON, or a path or query parameter cannot be parsed.",
    ),
    (
        "401",
        "Unauthorized",
        "Missing, invalid, expired or revoked credentials (access token, refresh token, or password).",
    ),
    (
        "403",
        "Forbidden",
        "Authenticated, but not allowed to do this (for example, not an `admin`).",
    ),
    (
        "404",
        "NotFound",
        "The resource does not exist, is not visible to the caller, or its id cannot exist.",
    ),
    (
        "409",
        "Conflict",
        "The request conflicts with the current state.",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The request body is larger than 1 MiB.",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not `application/json`.",
    ),
    (
        "422",
        "ValidationFailed",
        "The request is well-formed but a field is invalid; `errors` names each field.",
    ),
    (
        "429",
        "TooManyRequests",
        "Rate limited, per client IP (and per account for failed logins). `Retry-After` says when to try again.",
    ),
    (
        "500",
        "InternalError",
        "An unexpected error. The body never carries internal detail; the log has it under the same `request_id`.",
    ),
    (
        "503",
        "ServiceUnavailable",
        "A dependency (Postgres, Redis, S3) is unavailable or too slow; try again later.",
    ),
];

/// Completes a document merged from the route groups: the shared components, the statuses of
/// the layers and extractors, the problem+json bodies and the headers every answer carries.
pub fn complete(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Components::new);
    add_shared_components(components);
    for (path, item) in doc.paths.paths.iter_mut() {
        let limited = !rate_limit::EXEMPT.contains(&path.as_str());
        for op in operations_mut(item) {
            add_shared_statuses(op, limited);
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    add_headers(response, limited);
                }
            }
        }
    }
    for (status, response) in doc
        .paths
        .paths
        .values_mut()
        .flat_map(operations_mut)
        .flat_map(|op| op.responses.responses.iter_mut())
    {
        if let RefOr::T(response) = response {
            let is_error = status.starts_with('4') || status.starts_with('5');
            if is_error && response.content.is_empty() {
                response.content.insert(
                    PROBLEM_JSON.to_owned(),
                    RefOr::T(utoipa::openapi::Content::new(Some(problem_ref()))),
                );
            }
        }
    }
}

/// Every operation of a path item, in the order the document lists them.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// `(METHOD, path)` of every operation of `doc`: the routes it declares.
pub fn routes(doc: &OpenApi) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PATCH", &item.patch),
        ];
        for (method, op) in methods {
            if op.is_some() {
                routes.push((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

fn problem_ref() -> RefOr<utoipa::openapi::schema::Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Problem"))
}

fn response_ref(name: &str) -> RefOr<Response> {
    RefOr::Ref(utoipa::openapi::Ref::from_response_name(name))
}

fn header_ref(name: &str) -> RefOr<utoipa::openapi::header::Header> {
    RefOr::Ref(utoipa::openapi::Ref::new(format!(
        "#/components/headers/{name}"
    )))
}

fn add_shared_statuses(op: &mut Operation, limited: bool) {
    let mut statuses: Vec<&str> = Vec::new();
    if op.request_body.is_some() {
        statuses.extend(["400", "413", "415", "422"]);
    }
    let params = op.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| {
        params
            .iter()
            .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place))
    };
    if has(ParameterIn::Query) {
        statuses.extend(["400", "422"]);
    }
    if has(ParameterIn::Path) {
        statuses.push("404");
    }
    let needs_bearer = op
        .security
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|req| {
            serde_json::to_value(req)
                .ok()
                .is_some_and(|v| v.get(BEARER).is_some())
        });
    if needs_bearer {
        statuses.push("401");
    }
    if limited {
        statuses.extend(["429", "500", "503"]);
    }
    for status in statuses {
        if op.responses.responses.contains_key(status) {
            continue;
        }
        let name = SHARED
            .iter()
            .find(|(s, _, _)| *s == status)
            .map(|(_, name, _)| *name)
            .unwrap_or("InternalError");
        op.responses
            .responses
            .insert(status.to_owned(), response_ref(name));
    }
}

fn add_headers(response: &mut Response, limited: bool) {
    response
        .headers
        .entry("X-Request-Id".to_owned())
        .or_insert_with(|| header_ref("X-Request-Id"));
    if limited {
        for name in ["RateLimit", "RateLimit-Policy"] {
            response
                .headers
                .entry(name.to_owned())
                .or_insert_with(|| header_ref(name));
        }
    }
}

fn add_shared_components(components: &mut Components) {
    for (name, schema) in [
        ("Problem", <Problem as utoipa::PartialSchema>::schema()),
        (
            "FieldError",
            <FieldError as utoipa::PartialSchema>::schema(),
        ),
    ] {
        components.schemas.insert(name.to_owned(), schema);
    }
    components.security_schemes.insert(
        BEARER.to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "Access token from register, login or refresh; valid for 15 minutes by default.",
                ))
                .build(),
        )),
    );
    components.security_schemes.insert(
        REFRESH_COOKIE.to_owned(),
        RefOr::T(SecurityScheme::ApiKey(ApiKey::Cookie(
            ApiKeyValue::with_description(
                "refresh_token",
                "The refresh token cookie set by register, login and refresh (HttpOnly, Secure, \
                 SameSite=Strict, Path=/api/v1/auth).",
            ),
        ))),
    );
    let headers = json!({
        "X-Request-Id": {
            "description": "The request's id: the client's own `X-Request-Id` echoed when it is \
                sane, generated otherwise. Problem bodies repeat it as `request_id`, and the logs \
                carry it.",
            "required": true,
            "schema": { "type": "string", "minLength": 1, "maxLength": 128 }
        },
        "RateLimit": {
            "description": "IETF RateLimit header fields draft: remaining requests `r` and seconds \
                until the window resets `t`. Absent when the limiter cannot reach Redis (requests \
                are then let through).",
            "schema": { "type": "string" },
            "example": "\"default\";r=99;t=900"
        },
        "RateLimit-Policy": {
            "description": "IETF RateLimit header fields draft: quota `q` per window of `w` seconds.",
            "schema": { "type": "string" },
            "example": "\"default\";q=100;w=900"
        },
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": true,
            "schema": { "type": "integer", "minimum": 0 },
            "example": 120
        }
    });
    let headers: std::collections::BTreeMap<String, RefOr<utoipa::openapi::header::Header>> =
        serde_json::from_value(headers).expect("the shared headers are valid OpenAPI");
    components.headers.extend(headers);

    for (status, name, description) in SHARED {
        let mut headers = json!({
            "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" },
            "RateLimit": { "$ref": "#/components/headers/RateLimit" },
            "RateLimit-Policy": { "$ref": "#/components/headers/RateLimit-Policy" },
        });
        if status == "429" {
            headers["Retry-After"] = json!({ "$ref": "#/components/headers/Retry-After" });
        }
        if status == "503" {
            headers["Retry-After"] = json!({
                "description": "Seconds to wait, when the server was too busy to take the work \
                    (password hashing).",
                "schema": { "type": "integer", "minimum": 1 }
            });
        }
        if status == "401" {
            headers["WWW-Authenticate"] = json!({
                "description": "`Bearer`.",
                "schema": { "type": "string" }
            });
        }
        let response = json!({
            "description": description,
            "headers": headers,
            "content": { PROBLEM_JSON: { "schema": { "$ref": "#/components/schemas/Problem" } } }
        });
        let response: Response =
            serde_json::from_value(response).expect("the shared responses are valid OpenAPI");
        components
            .responses
            .insert(name.to_owned(), RefOr::T(response));
    }
}
