//! The domain and its data access: accounts, sessions and files. Typed errors, no HTTP status:
//! the `api` crate turns these into problem+json in one place.

#[cfg(feature = "accounts")]
pub mod accounts;
#[cfg(feature = "files")]
pub mod files;
#[cfg(feature = "sessions")]
pub mod sessions;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A position in a `(created_at, id)` order: where one page of a list ends and the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}
