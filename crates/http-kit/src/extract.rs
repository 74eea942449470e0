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
/// wrong shape → 422 naming every field it gets wrong (found with serde_path_to_error). No body
/// at all reads as `{}`, whatever the content type: a 422 naming the required fields, which
/// tells the client more than a 415 or a 400 about a body it never sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
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
            return parse_json(b"{}").map(Json);
        }
        if !has_json_type {
            return Err(ApiError::UnsupportedMediaType);
        }
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
    let malformed =
        || ApiError::bad_request("malformed_json", "The request body is not valid JSON");
    // Every request body is a JSON object. serde would also read a struct from an array of its
    // fields in order (and name the struct in its complaint), which no client means to send.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Ok(_) => Err(ApiError::field("body", "must be a JSON object")),
            Err(_) => Err(malformed()),
        };
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => {
            de.end().map_err(|_| malformed())?;
            Ok(value)
        }
        Err(err) if err.inner().is_data() => {
            // Valid JSON (checked by reading it whole) of the wrong shape: name every field.
            let body: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| malformed())?;
            if bytes.len() > ALL_FIELDS_UP_TO_BYTES {
                let (field, message) =
                    describe_data_error(&err.path().to_string(), &err.inner().to_string());
                return Err(ApiError::field(&field, &message));
            }
            Err(ApiError::Validation(field_errors::<T>(body, &err)))
        }
        Err(_) => Err(malformed()),
    }
}

/// How many fields one answer names at most; also bounds the work a hostile body can cause.
const MAX_FIELD_ERRORS: usize = 32;
/// Each field named reads the body again: past this size (far more than any form), only the
/// first is named, so that a large body cannot cost many readings of itself.
const ALL_FIELDS_UP_TO_BYTES: usize = 16 * 1024;

/// Every field of `body` that `T` cannot read, `first` being serde's first complaint.
///
/// serde stops at the first field it cannot read, and a client fixing a form wants them all at
/// once. No library reads a serde type and reports every field, so this does it by hand: each
/// reported field is given a stand-in of another JSON type, in turn, until serde gets past it
/// and complains about the next field (or is satisfied). The stand-ins never reach a handler:
/// the answer is a 422 either way. Only runs for a body already refused, and reads the body in
/// place, without copying it.
fn field_errors<T: DeserializeOwned>(
    mut body: serde_json::Value,
    first: &serde_path_to_error::Error<serde_json::Error>,
) -> Vec<FieldError> {
    use serde_json::{Map, Value};

    let describe = |err: &serde_path_to_error::Error<serde_json::Error>| {
        describe_data_error(&err.path().to_string(), &err.inner().to_string())
    };
    let (field, message) = describe(first);
    let mut errors = vec![FieldError::new(field.clone(), message)];
    let stand_ins = [
        Value::String(String::new()),
        Value::from(0),
        Value::Bool(false),
        Value::Array(Vec::new()),
        Value::Object(Map::new()),
    ];
    let mut current = field;
    'fields: while errors.len() < MAX_FIELD_ERRORS {
        for stand_in in &stand_ins {
            let Some(slot) = slot_at(&mut body, &current) else {
                break 'fields;
            };
            *slot = stand_in.clone();
            let (field, message) = match serde_path_to_error::deserialize::<_, T>(&body) {
                Ok(_) => break 'fields,
                Err(err) => describe(&err),
            };
            // Still this field, or a part of the stand-in: try another type.
            let inside = field.strip_prefix(current.as_str());
            if inside.is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '['])) {
                continue;
            }
            current.clone_from(&field);
            errors.push(FieldError::new(field, message));
            continue 'fields;
        }
        break;
    }
    errors
}

/// The place in `body` that a field's path names (`a.b[2]`, as serde_path_to_error writes it),
/// made if only its last key is missing (a missing field). None for the body itself (`body`) or
/// a path that leads nowhere.
fn slot_at<'v>(body: &'v mut serde_json::Value, path: &str) -> Option<&'v mut serde_json::Value> {
    if path == "body" {
        return None;
    }
    let mut at = body;
    for segment in path.split('.') {
        let (key, indexes) = segment.split_once('[').unwrap_or((segment, ""));
        at = at
            .as_object_mut()?
            .entry(key)
            .or_insert(serde_json::Value::Null);
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let index: usize = index.strip_suffix(']')?.parse().ok()?;
            at = at.get_mut(index)?;
        }
    }
    Some(at)
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

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Upload {
        filename: String,
        size: u64,
        public: bool,
        tags: Vec<String>,
        note: Option<String>,
        owner: Owner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Owner {
        id: String,
    }

    fn fields(body: &str) -> Vec<(String, String)> {
        let err = parse_json::<Upload>(body.as_bytes()).expect_err(body);
        let ApiError::Validation(errors) = err else {
            panic!("expected validation for {body}, got {err:?}")
        };
        errors.into_iter().map(|e| (e.field, e.message)).collect()
    }

    #[test]
    fn every_missing_field_is_named_at_once() {
        let required = ["filename", "size", "public", "tags", "owner"];
        let named = fields("{}");
        assert_eq!(
            named.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
            required,
            "{named:?}"
        );
        assert!(named.iter().all(|(_, m)| m == "is required"), "{named:?}");
        let ok = parse_json::<Login>(br#"{"email":"a","password":"b"}"#).expect("whole");
        assert_eq!(ok.password, "b");
    }

    #[test]
    fn every_wrong_field_is_named_with_its_own_reason() {
        let named = fields(
            r#"{"filename":7,"size":"big","public":true,"tags":["a",true],"note":null,"owner":{}}"#,
        );
        let reason = |field: &str| {
            named
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, m)| m.clone())
                .unwrap_or_else(|| panic!("{field} is not named: {named:?}"))
        };
        assert_eq!(named.len(), 4, "{named:?}");
        assert!(reason("filename").starts_with("invalid type: integer `7`"));
        assert!(reason("size").starts_with("invalid type: string \"big\""));
        assert!(reason("tags[1]").starts_with("invalid type: boolean `true`"));
        assert_eq!(reason("owner.id"), "is required");
    }

    #[test]
    fn a_large_body_names_its_first_wrong_field_only() {
        let padding = "x".repeat(ALL_FIELDS_UP_TO_BYTES);
        let small = r#"{"filename":7,"size":"big"}"#;
        assert!(fields(small).len() > 2, "{:?}", fields(small));
        let large = format!(r#"{{"filename":7,"size":"big","pad":"{padding}"}}"#);
        assert_eq!(fields(&large).len(), 1);
        assert_eq!(fields(&large)[0].0, "filename");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_one_error() {
        let positional = r#"["a.txt", 3, true, [], null, {"id": "x"}]"#;
        for body in ["[]", "3", "\"text\"", "null", positional] {
            assert_eq!(
                fields(body),
                [("body".to_owned(), "must be a JSON object".to_owned())],
                "{body}"
            );
        }
        let err = parse_json::<Login>(br#"["a@b.c", "pw"] trailing"#).expect_err("trailing");
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
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
