//! HTTP concerns shared by every function: the error type and its problem+json form, the
//! extractors, the layers of "Behaviour on every response", and the client IP rules.

pub mod client_ip;
pub mod error;
pub mod extract;
pub mod layers;
pub mod pagination;
pub mod rate_limit;

pub use error::{ApiError, FieldError, Problem};
pub use extract::{Created, Json, OptionalJson, PathId};
pub use layers::app;
pub use pagination::{Cursor, Page, Pagination};
