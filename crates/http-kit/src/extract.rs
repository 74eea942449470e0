//! Extractors whose rejections are problem+json, never axum's plain-text defaults.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{ApiError, FieldError};

/// A JSON body. Wrong content type → 415, over the limit → 413, not JSON → 400, JSON of the
/// wrong shape → 422 naming the field (found with serde_path_to_error).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(&r))?;
        parse_json(&bytes).map(Json)
    }
}

/// An optional JSON body: an empty body (or a bare `null`) is `None`; anything else must be
/// valid JSON.
#[derive(Debug, Clone, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let has_json_type = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(&r))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !has_json_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        if bytes.trim_ascii() == b"null" {
            return Ok(Self(None));
        }
        parse_json(&bytes).map(|v| Self(Some(v)))
    }
}

fn body_error(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::bad_request("bad_request", "The request body could not be read")
    }
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// What the answer says of text holding U+0000, which Postgres cannot store and no field needs.
const NUL_MESSAGE: &str = "must not contain the character U+0000";

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // JSON can only carry U+0000 as the escape `\u0000`: the full walk runs only when it may.
    if bytes.windows(6).any(|w| w == br"\u0000")
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
        && let Some(field) = nul_path(&value, String::new())
    {
        return Err(ApiError::Validation(vec![FieldError::new(
            field,
            NUL_MESSAGE,
        )]));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() {
            let (field, message) = describe_data_error(&path, &inner.to_string());
            ApiError::Validation(vec![FieldError::new(field, message)])
        } else {
            ApiError::bad_request("malformed_json", "The request body is not valid JSON")
        }
    })?;
    de.end().map_err(|_| {
        ApiError::bad_request("malformed_json", "The request body is not valid JSON")
    })?;
    Ok(value)
}

/// The path (`a.b[2]`, as serde_path_to_error writes it) of the first key or string holding
/// U+0000, if any.
fn nul_path(value: &serde_json::Value, at: String) -> Option<String> {
    match value {
        serde_json::Value::String(text) if text.contains('\0') => {
            Some(if at.is_empty() { "body".into() } else { at })
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, format!("{at}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            if key.contains('\0') {
                Some(path.replace('\0', "\\u0000"))
            } else {
                nul_path(item, path)
            }
        }),
        _ => None,
    }
}

/// A query string read into `T`. Unparsable → 400; a parameter holding U+0000 → 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|_| ApiError::bad_request("bad_request", "The query string is malformed"))?;
        if let Some((name, _)) = pairs
            .iter()
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "The query parameter `{}` {NUL_MESSAGE}",
                    name.replace('\0', "\\u0000")
                ),
            ));
        }
        serde_urlencoded::from_str(raw)
            .map(Query)
            .map_err(|_| ApiError::bad_request("bad_request", "The query string is malformed"))
    }
}

/// serde reports a missing field at its parent's path with the name in the message.
fn describe_data_error(path: &str, message: &str) -> (String, String) {
    let message = message.split(" at line ").next().unwrap_or(message);
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        let field = if path == "." {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return (field, "is required".into());
    }
    let field = if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    (field, message.to_owned())
}

/// A JSON response with `201 Created`.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, axum::Json(self.0)).into_response()
    }
}

/// A path parameter parsed by `FromStr`; anything unparsable is a 404 (an id that cannot
/// exist), never a 500 or a leak of the parser's message.
#[derive(Debug, Clone, Copy)]
pub struct PathId<T>(pub T);

impl<T, S> FromRequestParts<S> for PathId<T>
where
    T: std::str::FromStr + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        raw.parse().map(PathId).map_err(|_| ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse_json::<Login>(br#"{"email":"a@b.c"}"#).expect_err("missing");
        let ApiError::Validation(errors) = err else {
            panic!("expected validation, got {err:?}")
        };
        assert_eq!(errors[0].field, "password");
    }

    #[test]
    fn a_wrong_type_is_named() {
        let err = parse_json::<Login>(br#"{"email":5,"password":"x"}"#).expect_err("wrong type");
        let ApiError::Validation(errors) = err else {
            panic!("expected validation, got {err:?}")
        };
        assert_eq!(errors[0].field, "email");
    }

    #[test]
    fn a_nul_anywhere_is_named() {
        for (body, field) in [
            (r#"{"email":"a\u0000b","password":"x"}"#, "email"),
            (
                r#"{"email":"a","password":"x","extra":{"k":["ok","\u0000"]}}"#,
                "extra.k[1]",
            ),
            (
                r#"{"email":"a","password":"x","bad\u0000key":1}"#,
                "bad\\u0000key",
            ),
        ] {
            let err = parse_json::<Login>(body.as_bytes()).expect_err(body);
            let ApiError::Validation(errors) = err else {
                panic!("expected validation for {body}, got {err:?}")
            };
            assert_eq!(errors[0].field, field, "{body}");
            assert_eq!(errors[0].message, NUL_MESSAGE);
        }
        // An escaped backslash before `u0000` is not a NUL.
        let ok = parse_json::<Login>(br#"{"email":"a\\u0000","password":"x"}"#).expect("no NUL");
        assert_eq!(ok.email, "a\\u0000");
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        let err = parse_json::<Login>(br#"{"email":"#).expect_err("broken");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err =
            parse_json::<Login>(br#"{"email":"a","password":"b"} trailing"#).expect_err("trailing");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
