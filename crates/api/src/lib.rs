//! What joins the domain to HTTP: the caller extractors, the one place where domain errors
//! become problem+json, and list positions as cursors.

pub mod errors;
pub mod extract;
pub mod pages;

pub use extract::{AdminUser, AuthUser, SelfOrAdmin};
