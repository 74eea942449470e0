//! Sessions: access tokens (JWT), refresh-token families, and revocation (logout, logout-all,
//! a password change).

pub mod refresh;
pub mod revocation;
pub mod tokens;

pub use tokens::{Claims, TokenKeys};
