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
use platform::Platform as AppState;

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
    let key = deny_key(state, claims.jti);
    let denied = state
        .cache
        .run_always(|mut conn| async move { conn.set_ex::<_, _, ()>(key, 1, ttl.max(1)).await })
        .await;
    if let Err(err) = denied {
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
    let key = generation_key(state, user_id);
    // A cache fill: skipped while Redis is paused (see `Cache::run`).
    let cached = state
        .cache
        .run(|mut conn| async move {
            conn.set_ex::<_, _, ()>(key, generation, GENERATION_CACHE_SECS)
                .await
        })
        .await;
    if let Err(err) = cached {
        tracing::warn!(error = %err, "redis unavailable: token generation not cached");
    }
}

/// Why a token that verified is still refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("The access token has been revoked")]
    Revoked,
    /// Its user no longer exists.
    #[error("The access token is invalid or expired")]
    NoSuchUser,
    /// Neither Redis nor Postgres could answer.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

/// Refuses a token that was logged out or issued before the user's current generation.
pub async fn ensure_not_revoked(state: &AppState, claims: &Claims) -> Result<(), Refusal> {
    let revoked = || Refusal::Revoked;
    let (deny, generation) = (
        deny_key(state, claims.jti),
        generation_key(state, claims.sub),
    );
    let cached: redis::RedisResult<(bool, Option<i32>)> = state
        .cache
        .run(|mut conn| async move {
            redis::pipe()
                .exists(deny)
                .get(generation)
                .query_async(&mut conn)
                .await
        })
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
async fn from_postgres(state: &AppState, claims: &Claims) -> Result<(i32, bool), Refusal> {
    let conn = state.db.get().await.map_err(anyhow::Error::new)?;
    let row = conn
        .query_typed_opt(
            "SELECT token_generation, EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $2)
             FROM users WHERE id = $1",
            &[(&claims.sub, Type::UUID), (&claims.jti, Type::UUID)],
        )
        .await
        .map_err(anyhow::Error::new)?;
    let row = row.ok_or(Refusal::NoSuchUser)?;
    Ok((row.get(0), row.get(1)))
}

/// After a user is deleted: drop the cached generation, so that the next check of any of their
/// tokens reaches Postgres and finds no one.
pub async fn forget_user(state: &AppState, user_id: Uuid) {
    let key = generation_key(state, user_id);
    if let Err(err) = state
        .cache
        .run_always(|mut conn| async move { conn.del::<_, ()>(key).await })
        .await
    {
        tracing::warn!(error = %err, "redis unavailable: cached token generation not dropped");
    }
}
