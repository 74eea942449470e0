//! The token response and the refresh cookie.

use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use domain::{
    accounts::{Credentials, User},
    sessions::refresh::RefreshToken,
};
use http_kit::ApiError;
use serde::Serialize;

use crate::AuthState;

use api::cookie::COOKIE_ATTRIBUTES;
pub use api::cookie::{REFRESH_COOKIE, clear_refresh as clear_cookie};

/// A fresh token pair and the user it belongs to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse<'a> {
    /// A JWT to send as `Authorization: Bearer <token>`.
    access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    token_type: &'static str,
    /// Access token lifetime in seconds (`JWT_EXPIRES_IN`, 15 minutes by default).
    #[schema(minimum = 1, example = 900)]
    expires_in: u64,
    /// Opaque; single use, rotated by `POST /api/v1/auth/refresh`.
    #[schema(value_type = String)]
    refresh_token: &'a str,
    /// Refresh token lifetime in seconds: `REFRESH_TOKEN_EXPIRES_IN` (7 days by default) from
    /// every rotation, or what is left of the session's `REFRESH_TOKEN_ABSOLUTE_LIFETIME` (30
    /// days from its login) when that is less.
    #[schema(minimum = 1, example = 604800)]
    refresh_expires_in: i64,
    #[schema(value_type = User)]
    user: &'a User,
}

/// A new access token for `user`, with `refresh`, as body and cookie.
pub fn respond(
    state: &AuthState,
    status: StatusCode,
    user: &Credentials,
    refresh: &RefreshToken,
) -> Result<Response, ApiError> {
    let access =
        state
            .tokens
            .issue(user.user.id, user.token_generation, Some(refresh.family_id))?;
    let body = TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: state.tokens.lifetime().as_secs(),
        refresh_token: &refresh.token,
        refresh_expires_in: refresh.expires_in(),
        user: &user.user,
    };
    let cookie = format!(
        "{REFRESH_COOKIE}={}; Max-Age={}; {COOKIE_ATTRIBUTES}",
        refresh.token,
        refresh.expires_in()
    );
    let cookie = HeaderValue::from_str(&cookie).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok((status, [(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// The refresh token from the body, or else from the cookie.
pub fn refresh_token_from(body: Option<String>, headers: &HeaderMap) -> Option<String> {
    body.filter(|t| !t.is_empty())
        .or_else(|| cookie(headers, REFRESH_COOKIE))
}

/// Reads one cookie. Hand-written: a name lookup in `a=1; b=2` needs no cookie library.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}
