//! `AuthUser`: the verified caller of a protected route. Only the `Authorization: Bearer`
//! header counts; a token in the query string or anywhere else is ignored.

use axum::{extract::FromRequestParts, http::request::Parts};
use uuid::Uuid;

use super::{revocation, tokens::Claims};
use crate::{AppState, http::ApiError};

#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub claims: Claims,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::Unauthorized("Authentication is required".into()))?;
        let claims = state.tokens.verify(token).map_err(|err| {
            tracing::info!(reason = %err, "access token refused");
            ApiError::Unauthorized("The access token is invalid or expired".into())
        })?;
        revocation::ensure_not_revoked(state, &claims).await?;
        Ok(Self {
            id: claims.sub,
            claims,
        })
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}
