//! What joins the domain to HTTP: the caller extractors, the one place where domain errors
//! become problem+json, list positions as cursors, and the state a route group's handlers reach.

pub mod cookie;
pub mod errors;
pub mod extract;
pub mod pages;
pub mod state;

pub use extract::{AdminUser, AuthUser, SelfOrAdmin};
pub use state::RouteState;
