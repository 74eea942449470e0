//! Sessions: access tokens (JWT), refresh-token families, and revocation (logout, logout-all,
//! a password change).

mod hs256;
pub mod refresh;
pub mod revocation;
pub mod tokens;

pub use hs256::install as install_jwt_crypto;
pub use tokens::{Claims, TokenKeys};
