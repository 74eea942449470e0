//! Authentication: password policy and hashing, access tokens (JWT), refresh tokens, revocation,
//! and the `AuthUser` extractor that every protected route uses.

pub mod email;
pub mod extract;
pub mod password;
pub mod refresh;
pub mod revocation;
pub mod tokens;

pub use email::Email;
pub use extract::{AdminUser, AuthUser, SelfOrAdmin};
pub use password::Password;
pub use tokens::TokenKeys;
