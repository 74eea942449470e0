//! Cursor pagination, shared by every list route: `?limit=&cursor=` in, `{items, next_cursor}`
//! out. Cursors are opaque to clients and walk a `(created_at, id)` order, so rows inserted
//! between two pages never shift what the next page holds.

use axum::{extract::FromRequestParts, http::request::Parts};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ApiError, extract::Query};

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// A position in a `(created_at, id)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// Opaque to clients: base64url of `micros:uuid`.
    pub fn encode(&self) -> String {
        use base64::Engine;
        let raw = format!("{}:{}", self.created_at.timestamp_micros(), self.id);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once(':')?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: id.parse().ok()?,
        })
    }
}

/// `?limit=` (1 to 100, default 20) and `?cursor=`; a bad limit is a 422 on `limit`, a bad
/// cursor a 400 `invalid_cursor`.
#[derive(Debug, Clone, Copy)]
pub struct Pagination {
    pub limit: i64,
    pub cursor: Option<Cursor>,
}

/// The query parameters as the document declares them: `Pagination` reads the same names.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RawPagination {
    /// Page size.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page; omit it (or leave it empty) for the first page.
    cursor: Option<String>,
}

impl utoipa::IntoParams for Pagination {
    fn into_params(
        parameter_in_provider: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        RawPagination::into_params(parameter_in_provider)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Pagination {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(raw) = Query::<RawPagination>::from_request_parts(parts, state).await?;
        // An empty `limit=` is a wrong value, not an absent one (the document says integer).
        let limit = match raw.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::query_field("limit", "must be a whole number from 1 to 100")
                })?,
        };
        let cursor = match raw.cursor.as_deref() {
            None | Some("") => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "The cursor is not valid")
            })?),
        };
        Ok(Self { limit, cursor })
    }
}

/// One page of a list, ordered stably; pass `next_cursor` back as `cursor` for the next page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; null on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn new(items: Vec<T>, next: Option<Cursor>) -> Self {
        Self {
            items,
            next_cursor: next.map(|c| c.encode()),
        }
    }
}
