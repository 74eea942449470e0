//! Domain errors as problem+json: the one place where a typed domain error gets its status.
//! (Neither `domain` nor `http-kit` knows the other, so these are functions, not `From`s.)

use domain::{accounts::password::PasswordError, sessions::revocation::Refusal};
use http_kit::{ApiError, FieldError};

/// A refused password is a 422 on the body field that carried it.
pub fn password(field: &str, err: &PasswordError) -> ApiError {
    ApiError::Validation(vec![password_field(field, err)])
}

/// The same, as one of several field errors of a body.
pub fn password_field(field: &str, err: &PasswordError) -> FieldError {
    FieldError::new(field, err.to_string())
}

/// A verified token that is still refused is a 401; a store that cannot answer is a 503.
pub fn refusal(err: Refusal) -> ApiError {
    match err {
        Refusal::Revoked | Refusal::NoSuchUser => ApiError::Unauthorized(err.to_string()),
        Refusal::Unavailable(err) => err.into(),
    }
}

/// A password check refused before it ran: the account's guessing budget is used up.
pub fn locked(locked: &domain::accounts::guessing::Locked, detail: &str) -> ApiError {
    ApiError::TooManyRequests {
        retry_after_secs: u64::try_from(locked.retry_after.as_millis().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1),
        detail: detail.into(),
    }
}
