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

/// A caller whose role is `admin`; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub id: Uuid,
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        match crate::users::cached_profile(state, caller.id).await? {
            Some(user) if user.is_admin() => Ok(Self { id: caller.id }),
            Some(_) => Err(ApiError::Forbidden),
            None => Err(ApiError::Unauthorized(
                "The access token is invalid or expired".into(),
            )),
        }
    }
}

/// Access to the user named by the `{id}` path segment: the user themself or an admin. Anyone
/// else gets the same 404 as for an id that does not exist, so ids leak nothing.
#[derive(Debug, Clone)]
pub struct SelfOrAdmin {
    pub caller: Uuid,
    pub target: Uuid,
}

impl FromRequestParts<AppState> for SelfOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        let crate::http::PathId(target) =
            crate::http::PathId::<Uuid>::from_request_parts(parts, state).await?;
        if target == caller.id {
            return Ok(Self {
                caller: caller.id,
                target,
            });
        }
        match crate::users::cached_profile(state, caller.id).await? {
            Some(user) if user.is_admin() => Ok(Self {
                caller: caller.id,
                target,
            }),
            _ => Err(ApiError::NotFound),
        }
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
