//! HTTP concerns shared by every function: the error type and its problem+json form, the
//! extractors, the layers of "Behaviour on every response", and the client IP rules.

pub mod error;
pub mod extract;
pub mod layers;

pub use error::{ApiError, FieldError, Problem};
pub use extract::{Created, Json, OptionalJson, PathId};
pub use layers::app;
