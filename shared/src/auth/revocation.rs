//! Making access tokens unusable before they expire.
//!
//! - Logout puts the token's `jti` on a deny list: in Redis (`deny:{jti}`, until `exp`) for the
//!   fast path, and in Postgres so that logout still holds while Redis is unavailable.
//! - Logout-all and a password change bump the user's token generation in Postgres; tokens carry
//!   the generation they were issued under, so every older one stops working at once. Redis
//!   caches the generation for a minute (`gen:{user}`), and the write path refreshes that cache.

use anyhow::Context;
use redis::AsyncCommands;
use tokio_postgres::{GenericClient, types::Type};
use uuid::Uuid;

use super::tokens::Claims;
use crate::{AppState, http::ApiError};

const GENERATION_CACHE_SECS: u64 = 60;

fn deny_key(state: &AppState, jti: Uuid) -> String {
    state.cache.key(&format!("deny:{jti}"))
}

fn generation_key(state: &AppState, user_id: Uuid) -> String {
    state.cache.key(&format!("gen:{user_id}"))
}

/// Puts one access token on the deny list until it expires.
pub async fn deny(
    state: &AppState,
    db: &impl GenericClient,
    claims: &Claims,
) -> anyhow::Result<()> {
    let expires_at =
        chrono::DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(chrono::Utc::now);
    db.execute_typed(
        "INSERT INTO revoked_access_tokens (jti, user_id, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[(&claims.jti, Type::UUID), (&claims.sub, Type::UUID), (&expires_at, Type::TIMESTAMPTZ)],
    )
    .await
    .context("recording a revoked access token")?;
    let ttl = u64::try_from(claims.exp - chrono::Utc::now().timestamp()).unwrap_or(0)
        + super::tokens::LEEWAY_SECS;
    let mut conn = state.cache.conn();
    let denied = conn
        .set_ex::<_, _, ()>(deny_key(state, claims.jti), 1, ttl.max(1))
        .await;
    if let Err(err) = state.cache.check(denied) {
        tracing::warn!(error = %err, "redis unavailable: the revoked token is recorded in Postgres only");
    }
    Ok(())
}

/// Bumps the user's token generation: every access token issued before stops working.
pub async fn bump_generation(
    state: &AppState,
    db: &impl GenericClient,
    user_id: Uuid,
) -> anyhow::Result<i32> {
    let row = db
        .query_typed_one(
            "UPDATE users SET token_generation = token_generation + 1 WHERE id = $1 RETURNING token_generation",
            &[(&user_id, Type::UUID)],
        )
        .await
        .context("bumping the token generation")?;
    let generation: i32 = row.get(0);
    cache_generation(state, user_id, generation).await;
    Ok(generation)
}

async fn cache_generation(state: &AppState, user_id: Uuid, generation: i32) {
    let mut conn = state.cache.conn();
    // A cache fill: skipped while Redis is paused (see `Cache::run`).
    let cached = state
        .cache
        .run(conn.set_ex::<_, _, ()>(
            generation_key(state, user_id),
            generation,
            GENERATION_CACHE_SECS,
        ))
        .await;
    if let Err(err) = cached {
        tracing::warn!(error = %err, "redis unavailable: token generation not cached");
    }
}

/// Refuses a token that was logged out or issued before the user's current generation.
pub async fn ensure_not_revoked(state: &AppState, claims: &Claims) -> Result<(), ApiError> {
    let revoked = || ApiError::Unauthorized("The access token has been revoked".into());
    let mut conn = state.cache.conn();
    let cached: redis::RedisResult<(bool, Option<i32>)> = state
        .cache
        .run(
            redis::pipe()
                .exists(deny_key(state, claims.jti))
                .get(generation_key(state, claims.sub))
                .query_async(&mut conn),
        )
        .await;
    match cached {
        Ok((true, _)) => Err(revoked()),
        Ok((false, Some(generation))) if claims.generation < generation => Err(revoked()),
        Ok((false, Some(_))) => Ok(()),
        Ok((false, None)) => {
            // Postgres also knows logouts that Redis missed while it refused writes.
            let (generation, denied) = from_postgres(state, claims).await?;
            cache_generation(state, claims.sub, generation).await;
            if denied || claims.generation < generation {
                Err(revoked())
            } else {
                Ok(())
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "redis unavailable: checking token revocation in Postgres");
            let (generation, denied) = from_postgres(state, claims).await?;
            if denied || claims.generation < generation {
                Err(revoked())
            } else {
                Ok(())
            }
        }
    }
}

/// (token generation, whether this jti is denied); a deleted user's tokens are refused.
async fn from_postgres(state: &AppState, claims: &Claims) -> Result<(i32, bool), ApiError> {
    let conn = state.db.get().await?;
    let row = conn
        .query_typed_opt(
            "SELECT token_generation, EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $2)
             FROM users WHERE id = $1",
            &[(&claims.sub, Type::UUID), (&claims.jti, Type::UUID)],
        )
        .await?;
    let row =
        row.ok_or_else(|| ApiError::Unauthorized("The access token is invalid or expired".into()))?;
    Ok((row.get(0), row.get(1)))
}

/// After a user is deleted: drop the cached generation, so that the next check of any of their
/// tokens reaches Postgres and finds no one.
pub async fn forget_user(state: &AppState, user_id: Uuid) {
    if let Err(err) = state
        .cache
        .conn()
        .del::<_, ()>(generation_key(state, user_id))
        .await
    {
        tracing::warn!(error = %err, "redis unavailable: cached token generation not dropped");
    }
}
