//! The one HTTP-shaped error of the product and its RFC 9457 problem+json form.
//!
//! A 5xx body never carries internal detail: the cause chain goes to the log, under the same
//! `request_id` that the body shows.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

pub const PROBLEM_JSON: &str = "application/problem+json";

tokio::task_local! {
    /// The current request's id, set by the request-scope layer so that any error built while
    /// handling the request (even a panic) can name it.
    pub static REQUEST_ID: String;
}

/// One invalid field of a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem detail. A 5xx body never carries internal detail; the log has the cause
/// under the same `request_id`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: String,
    #[schema(example = "Unprocessable Entity")]
    pub title: String,
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    /// A stable, machine-readable error code.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// The same value as the `X-Request-Id` response header.
    #[schema(required = true)]
    pub request_id: Option<String>,
    /// Present on validation failures (422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("forbidden")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The same for the query string's parameters, so that the answer does not blame a body.
    #[error("invalid query parameter")]
    InvalidQuery(Vec<FieldError>),
    #[error("too many requests")]
    TooManyRequests {
        retry_after_secs: u64,
        detail: String,
    },
    #[error("dependency unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Every slot for expensive work (password hashing) stayed taken for the whole wait.
    #[error("busy")]
    Busy { retry_after_secs: u64 },
    #[error(transparent)]
    Unexpected(anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn field(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// A 422 about one query parameter.
    pub fn query_field(parameter: &str, message: &str) -> Self {
        Self::InvalidQuery(vec![FieldError::new(parameter, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) | Self::InvalidQuery(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code_and_detail(&self) -> (&str, String) {
        match self {
            Self::BadRequest { code, detail } | Self::Conflict { code, detail } => {
                (code, detail.clone())
            }
            Self::Unauthorized(detail) => ("unauthorized", detail.clone()),
            Self::InvalidCredentials => (
                "invalid_credentials",
                "The email or password is incorrect".into(),
            ),
            Self::Forbidden => ("forbidden", "You are not allowed to do this".into()),
            Self::NotFound => ("not_found", "The resource does not exist".into()),
            Self::PayloadTooLarge => (
                "payload_too_large",
                "The request body is larger than 1 MiB".into(),
            ),
            Self::UnsupportedMediaType => (
                "unsupported_media_type",
                "Content-Type must be application/json".into(),
            ),
            Self::Validation(_) => ("validation_failed", "The request body is invalid".into()),
            Self::InvalidQuery(_) => ("validation_failed", "A query parameter is invalid".into()),
            Self::TooManyRequests { detail, .. } => ("rate_limited", detail.clone()),
            Self::Unavailable(_) => (
                "service_unavailable",
                "A dependency is unavailable, try again later".into(),
            ),
            Self::Busy { .. } => (
                "service_unavailable",
                "The server is busy, try again shortly".into(),
            ),
            Self::Unexpected(_) => ("internal_error", "An unexpected error occurred".into()),
        }
    }
}

/// The problem response for a status that has no richer error, such as axum's own 405 or the
/// body limit's 413.
pub fn problem_for_status(status: StatusCode) -> Response {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("not_found", "The resource does not exist"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "This method is not allowed here"),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "The request body is larger than 1 MiB")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "Content-Type must be application/json",
        ),
        StatusCode::BAD_REQUEST => ("bad_request", "The request is malformed"),
        s if s.is_server_error() => ("internal_error", "An unexpected error occurred"),
        _ => ("error", "The request failed"),
    };
    problem_response(status, code, detail.to_owned(), None)
}

fn problem_response(
    status: StatusCode,
    code: &str,
    detail: String,
    errors: Option<Vec<FieldError>>,
) -> Response {
    let problem = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail,
        code: code.into(),
        request_id: REQUEST_ID.try_with(Clone::clone).ok(),
        errors,
    };
    let mut res = (status, Json(problem)).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Unexpected(cause) => {
                let cause = format!("{cause:#}");
                platform::metrics::note_error(&cause);
                tracing::error!(error = cause, "request failed")
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "dependency unavailable")
            }
            _ => {}
        }
        let (code, detail) = self.code_and_detail();
        let errors = match &self {
            Self::Validation(errors) | Self::InvalidQuery(errors) => Some(errors.clone()),
            _ => None,
        };
        let mut res = problem_response(status, code, detail, errors);
        let headers = res.headers_mut();
        match self {
            Self::Unauthorized(_) | Self::InvalidCredentials => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::TooManyRequests {
                retry_after_secs, ..
            }
            | Self::Busy { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        res
    }
}

/// Anything unexpected becomes a 500, unless somewhere in its cause chain a dependency was
/// unavailable (a pool timeout, a dropped connection, a statement timeout): that is a 503.
impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        if let Some(busy) = err
            .chain()
            .find_map(|c| c.downcast_ref::<platform::work::Busy>())
        {
            tracing::warn!(
                error = format!("{err:#}"),
                "no slot for the work: answered 503"
            );
            return Self::Busy {
                retry_after_secs: busy.retry_after.as_secs().max(1),
            };
        }
        let unavailable = err.chain().any(|cause| {
            if let Some(pg) = cause.downcast_ref::<tokio_postgres::Error>() {
                return platform::db::is_unavailable(pg);
            }
            cause
                .downcast_ref::<deadpool_postgres::PoolError>()
                .is_some()
                || cause.downcast_ref::<redis::RedisError>().is_some()
        });
        if unavailable {
            Self::Unavailable(err)
        } else {
            Self::Unexpected(err)
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        anyhow::Error::new(err).into()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Unavailable(anyhow::Error::new(err).context("taking a database connection"))
    }
}
