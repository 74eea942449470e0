//! Authentication: password policy and hashing, access tokens (JWT), refresh tokens, and the
//! extractors that every protected route uses.

pub mod password;
