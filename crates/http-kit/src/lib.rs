//! The HTTP kit every route group uses: the error type and its problem+json form, the request
//! extractors, the layers of "Behaviour on every response", client IP rules, the rate limiter
//! and cursor pagination. No domain type appears here.

pub mod client_ip;
pub mod declared;
pub mod error;
pub mod extract;
pub mod lambda;
pub mod layers;
pub mod openapi;
pub mod origin_verify;
pub mod pagination;
mod preflight;
pub mod rate_limit;

pub use error::{ApiError, FieldError, Problem};
pub use extract::{Created, Json, OptionalJson, PathId, Query};
pub use lambda::serve_on_lambda;
pub use layers::app;
pub use pagination::{Cursor, Page, Pagination};
