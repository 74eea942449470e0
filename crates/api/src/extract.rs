//! `AuthUser`: the verified caller of a protected route. Only the `Authorization: Bearer`
//! header counts; a token in the query string or anywhere else is ignored.

use axum::{extract::FromRequestParts, http::request::Parts};
use domain::{
    accounts,
    sessions::{Claims, TokenKeys, revocation, tokens},
};
use http_kit::{ApiError, PathId};
use platform::{
    Platform,
    cache::{Cache, ReadAhead},
};
use uuid::Uuid;

use crate::errors;

#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub claims: Claims,
    /// What the rate limiter read ahead for this request (the caller's profile among it),
    /// when Redis answered it.
    pub read_ahead: Option<ReadAhead>,
}

/// A route group's state that names its callers. The extractors below borrow the platform and
/// the token keys from it for the request instead of cloning them.
pub trait CallerState: Send + Sync {
    fn platform(&self) -> &Platform;
    fn tokens(&self) -> &TokenKeys;
}

/// Lets the rate limiter read, in its own round trip, what an authenticated request reads next:
/// the token's deny entry and generation, and the caller's cached profile. A cached
/// authenticated read then costs one Redis round trip in all. Called by every route group that
/// names its callers.
pub fn read_ahead(platform: &Platform) {
    platform.cache.install_read_ahead(read_ahead_keys);
}

fn read_ahead_keys(cache: &Cache, authorization: &str) -> Vec<String> {
    let Some((sub, jti, sid)) = bearer(authorization).and_then(tokens::peek_subject) else {
        return Vec::new();
    };
    let mut keys = revocation::read_ahead_keys(cache, sub, jti, sid);
    keys.push(accounts::profile_cache_key(cache, sub));
    keys
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: CallerState,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::Unauthorized("Authentication is required".into()))?;
        let claims = state.tokens().verify(token).map_err(|err| {
            tracing::info!(reason = %err, "access token refused");
            ApiError::Unauthorized("The access token is invalid or expired".into())
        })?;
        let read_ahead = parts.extensions.get::<ReadAhead>().cloned();
        revocation::ensure_not_revoked(state.platform(), &claims, read_ahead.as_ref())
            .await
            .map_err(errors::refusal)?;
        Ok(Self {
            id: claims.sub,
            claims,
            read_ahead,
        })
    }
}

/// A caller whose role is `admin`; anyone else gets 403.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub id: Uuid,
}

impl<S> FromRequestParts<S> for AdminUser
where
    S: CallerState,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        let profile =
            accounts::cached_profile(state.platform(), caller.id, caller.read_ahead.as_ref())
                .await?;
        match profile {
            Some(user) if user.is_admin() => Ok(Self { id: caller.id }),
            Some(_) => Err(ApiError::Forbidden),
            None => Err(ApiError::Unauthorized(
                "The access token is invalid or expired".into(),
            )),
        }
    }
}

/// Access to the user named by the `{id}` path segment: the user themself or an admin. Anyone
/// else gets a 403, as for the user list, whether or not the id exists: the target is never
/// looked up for them, so ids leak nothing.
#[derive(Debug, Clone)]
pub struct SelfOrAdmin {
    pub caller: Uuid,
    pub target: Uuid,
}

impl<S> FromRequestParts<S> for SelfOrAdmin
where
    S: CallerState,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        let PathId(target) = PathId::<Uuid>::from_request_parts(parts, state).await?;
        if target == caller.id {
            return Ok(Self {
                caller: caller.id,
                target,
            });
        }
        let profile =
            accounts::cached_profile(state.platform(), caller.id, caller.read_ahead.as_ref())
                .await?;
        match profile {
            Some(user) if user.is_admin() => Ok(Self {
                caller: caller.id,
                target,
            }),
            Some(_) => Err(ApiError::Forbidden),
            None => Err(ApiError::Unauthorized(
                "The access token is invalid or expired".into(),
            )),
        }
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    bearer(value)
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}
