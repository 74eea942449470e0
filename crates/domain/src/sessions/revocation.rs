//! Making access tokens unusable before they expire.
//!
//! - Logout puts the token's `jti` on a deny list, and its session's `sid` too, so that the
//!   access tokens the session's earlier rotations handed out die with it: in Redis
//!   (`deny:{id}`, until the last of those tokens expires) for the fast path, and in Postgres so
//!   that logout still holds while Redis is unavailable. A token is refused when its `jti` or
//!   its `sid` is denied. A replayed refresh token denies its session's `sid` the same way.
//! - Logout-all and a password change bump the user's token generation in Postgres; tokens carry
//!   the generation they were issued under, so every older one stops working at once. Redis
//!   caches the generation for a minute (`gen:{user}`), and the write path refreshes that cache.
//!
//! Redis is never more permissive than Postgres: a cached generation means every unexpired deny
//! entry of that user is in Redis too. When the cache is rebuilt from Postgres (after an outage,
//! a restart or an eviction), the deny entries go back first, in the same script; a cached
//! generation never goes down; and a deleted user's generation is a tombstone that refuses all
//! their tokens until they would have expired anyway.

use std::sync::LazyLock;

use anyhow::Context;
use platform::db::Sql;
use tokio_postgres::types::Type;
use uuid::Uuid;

use super::tokens::Claims;
use platform::{
    Platform as AppState,
    cache::{Cache, ReadAhead},
};

const GENERATION_CACHE_SECS: u64 = 60;
/// The cached generation of a deleted user: higher than any token's.
const DELETED: i32 = i32::MAX;

/// Puts back deny entries (`KEYS[2..]`, each until `ARGV[2 + i]` seconds from now), then sets
/// the generation (`KEYS[1]` to `ARGV[1]` for `ARGV[2]` seconds) unless Redis already holds a
/// higher one: a check that read Postgres before a bump or a deletion cannot cache the older
/// state after it. One script, so no reader sees the generation without the deny entries (the
/// cache is a single node or a primary with replicas, never a sharded cluster).
static CACHE_GENERATION: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        for i = 2, #KEYS do
            redis.call('SET', KEYS[i], 1, 'EX', ARGV[i + 1])
        end
        local current = redis.call('GET', KEYS[1])
        if (not current) or tonumber(current) < tonumber(ARGV[1]) then
            redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
        end
        return 1
        ",
    )
});

fn deny_key(state: &AppState, jti: Uuid) -> String {
    deny_cache_key(&state.cache, jti)
}

fn generation_key(state: &AppState, user_id: Uuid) -> String {
    generation_cache_key(&state.cache, user_id)
}

fn deny_cache_key(cache: &Cache, jti: Uuid) -> String {
    cache.key(&format!("deny:{jti}"))
}

fn generation_cache_key(cache: &Cache, user_id: Uuid) -> String {
    cache.key(&format!("gen:{user_id}"))
}

/// What [`ensure_not_revoked`] reads for a token of `user_id` with `jti` (and `sid`), for the
/// limiter to read ahead (`platform::cache::ReadAhead`).
pub fn read_ahead_keys(cache: &Cache, user_id: Uuid, jti: Uuid, sid: Option<Uuid>) -> Vec<String> {
    let mut keys = vec![
        deny_cache_key(cache, jti),
        generation_cache_key(cache, user_id),
    ];
    keys.extend(sid.map(|sid| deny_cache_key(cache, sid)));
    keys
}

/// The ids whose deny entry refuses a token: its own, and its session's.
fn deny_ids(claims: &Claims) -> Vec<Uuid> {
    std::iter::once(claims.jti).chain(claims.sid).collect()
}

/// Seconds a deny entry must live for a token that expires at `exp` (Unix time).
fn deny_ttl(exp: i64) -> u64 {
    (u64::try_from(exp - chrono::Utc::now().timestamp()).unwrap_or(0)
        + super::tokens::DENY_MARGIN_SECS)
        .max(1)
}

/// Puts one access token on the deny list until it expires, and its session until the last
/// token the session can have been handed expires (one lifetime from now): Postgres first (the
/// durable record; if it fails the caller answers 503, not 204), then Redis.
pub async fn deny(state: &AppState, db: &impl Sql, claims: &Claims) -> anyhow::Result<()> {
    let mut entries = vec![(claims.jti, claims.exp)];
    entries.extend(
        claims
            .sid
            .map(|sid| (sid, session_deny_exp(state).max(claims.exp))),
    );
    record_denied(state, db, claims.sub, &entries).await
}

/// Puts every access token of the session `sid` (a refresh family) on the deny list, for as
/// long as any can be valid: a session whose refresh token was replayed.
pub async fn deny_session(
    state: &AppState,
    db: &impl Sql,
    user_id: Uuid,
    sid: Uuid,
) -> anyhow::Result<()> {
    record_denied(state, db, user_id, &[(sid, session_deny_exp(state))]).await
}

/// When the last access token a session can hold now expires: one lifetime from now.
fn session_deny_exp(state: &AppState) -> i64 {
    let lifetime = i64::try_from(state.config.jwt_expires_in.as_secs()).unwrap_or(i64::MAX / 2);
    chrono::Utc::now().timestamp().saturating_add(lifetime)
}

/// Deny entries `(id, exp)` of `user_id`: Postgres first (the durable record; if it fails the
/// caller answers 503), then Redis.
async fn record_denied(
    state: &AppState,
    db: &impl Sql,
    user_id: Uuid,
    entries: &[(Uuid, i64)],
) -> anyhow::Result<()> {
    // One statement for every entry: one round trip, and no logout recorded by halves.
    let ids: Vec<Uuid> = entries.iter().map(|(id, _)| *id).collect();
    let expiries: Vec<chrono::DateTime<chrono::Utc>> = entries
        .iter()
        .map(|(_, exp)| chrono::DateTime::from_timestamp(*exp, 0).unwrap_or_else(chrono::Utc::now))
        .collect();
    db.execute_typed(
        "INSERT INTO revoked_access_tokens (jti, user_id, expires_at)
         SELECT id, $2, expires_at FROM unnest($1::uuid[], $3::timestamptz[]) AS e(id, expires_at)
         ON CONFLICT (jti) DO UPDATE SET expires_at = GREATEST(revoked_access_tokens.expires_at, EXCLUDED.expires_at)",
        &[(&ids, Type::UUID_ARRAY), (&user_id, Type::UUID), (&expiries, Type::TIMESTAMPTZ_ARRAY)],
    )
    .await
    .context("recording a revoked access token")?;
    let mut pipe = redis::pipe();
    for (id, exp) in entries {
        pipe.set_ex(deny_key(state, *id), 1, deny_ttl(*exp))
            .ignore();
    }
    let denied = state
        .cache
        .run_critical(|mut conn| {
            let pipe = &pipe;
            async move { pipe.query_async::<()>(&mut conn).await }
        })
        .await;
    if let Err(err) = denied {
        tracing::warn!(error = %err, "redis unavailable: the revoked token is recorded in Postgres only");
    }
    Ok(())
}

/// Bumps the user's token generation: every access token issued before stops working.
pub async fn bump_generation(
    state: &AppState,
    db: &impl Sql,
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
    // No deny entry matters at the new generation: every token that could carry one is older.
    let mut invocation = CACHE_GENERATION.key(generation_key(state, user_id));
    invocation.arg(generation).arg(GENERATION_CACHE_SECS);
    // A revocation, not a cache fill: tried even while Redis is paused, and retried once.
    let cached = state
        .cache
        .run_critical(|mut conn| {
            let invocation = &invocation;
            async move { invocation.invoke_async::<()>(&mut conn).await }
        })
        .await;
    if let Err(err) = cached {
        tracing::warn!(error = %err, "redis unavailable: the new token generation is in Postgres only");
    }
    Ok(generation)
}

/// Caches `generation` (and first the deny entries, `(jti, exp)`) unless a higher generation
/// is cached already.
async fn cache_generation(
    state: &AppState,
    user_id: Uuid,
    generation: i32,
    denied: &[(Uuid, i64)],
    ttl_secs: u64,
) {
    let mut invocation = CACHE_GENERATION.key(generation_key(state, user_id));
    invocation.arg(generation).arg(ttl_secs);
    for (jti, exp) in denied {
        invocation.key(deny_key(state, *jti)).arg(deny_ttl(*exp));
    }
    // A cache fill: skipped while Redis is paused (see `Cache::run`).
    let cached = state
        .cache
        .run(|mut conn| async move { invocation.invoke_async::<()>(&mut conn).await })
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

/// Refuses a token that was logged out or issued before the user's current generation. With
/// `read_ahead` (what the rate limiter read in its round trip) holding both keys, Redis is not
/// asked again.
pub async fn ensure_not_revoked(
    state: &AppState,
    claims: &Claims,
    read_ahead: Option<&ReadAhead>,
) -> Result<(), Refusal> {
    let revoked = || Refusal::Revoked;
    let deny: Vec<String> = deny_ids(claims)
        .into_iter()
        .map(|id| deny_key(state, id))
        .collect();
    let generation = generation_key(state, claims.sub);
    let ahead = read_ahead.and_then(|read| {
        let mut denied = false;
        for key in &deny {
            denied |= read.get(key)?.is_some();
        }
        match read.get(&generation)? {
            None => Some((denied, None)),
            // An unreadable value is asked again, as the pipeline below would fail on it.
            Some(value) => value.parse::<i32>().ok().map(|g| (denied, Some(g))),
        }
    });
    let cached: redis::RedisResult<(bool, Option<i32>)> = match ahead {
        Some(ahead) => Ok(ahead),
        None => {
            state
                .cache
                .run(|mut conn| async move {
                    redis::pipe()
                        .exists(deny)
                        .get(generation)
                        .query_async::<(u32, Option<i32>)>(&mut conn)
                        .await
                        .map(|(denied, generation)| (denied > 0, generation))
                })
                .await
        }
    };
    match cached {
        Ok((true, _)) => Err(revoked()),
        Ok((false, Some(DELETED))) => Err(Refusal::NoSuchUser),
        Ok((false, Some(generation))) if claims.generation < generation => Err(revoked()),
        Ok((false, Some(_))) => Ok(()),
        Ok((false, None)) => {
            // Postgres also knows logouts that Redis missed while it refused writes.
            let (generation, denied, deny_list) = from_postgres(state, claims, true).await?;
            cache_generation(
                state,
                claims.sub,
                generation,
                &deny_list,
                GENERATION_CACHE_SECS,
            )
            .await;
            if denied || claims.generation < generation {
                Err(revoked())
            } else {
                Ok(())
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "redis unavailable: checking token revocation in Postgres");
            let (generation, denied, _) = from_postgres(state, claims, false).await?;
            if denied || claims.generation < generation {
                Err(revoked())
            } else {
                Ok(())
            }
        }
    }
}

/// (token generation, whether this jti is denied, and, for a cache rebuild, every unexpired deny
/// entry of the user as `(jti, exp)`), on one connection; a deleted user's tokens are refused.
async fn from_postgres(
    state: &AppState,
    claims: &Claims,
    with_deny_list: bool,
) -> Result<(i32, bool, Vec<(Uuid, i64)>), Refusal> {
    let conn = state.db.get().await.map_err(anyhow::Error::new)?;
    let row = conn
        .query_typed_opt(
            "SELECT token_generation, EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = ANY($2))
             FROM users WHERE id = $1",
            &[(&claims.sub, Type::UUID), (&deny_ids(claims), Type::UUID_ARRAY)],
        )
        .await
        .map_err(anyhow::Error::new)?;
    let row = row.ok_or(Refusal::NoSuchUser)?;
    let deny_list = if with_deny_list {
        conn.query_typed(
            "SELECT jti, extract(epoch FROM expires_at)::bigint FROM revoked_access_tokens
             WHERE user_id = $1 AND expires_at > now() - make_interval(secs => $2)",
            &[
                (&claims.sub, Type::UUID),
                (&(super::tokens::DENY_MARGIN_SECS as f64), Type::FLOAT8),
            ],
        )
        .await
        .map_err(anyhow::Error::new)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    } else {
        Vec::new()
    };
    Ok((row.get(0), row.get(1), deny_list))
}

/// After a user is deleted: cache a tombstone generation that refuses every one of their
/// tokens for as long as any could still be valid, and that no rebuild can lower.
pub async fn forget_user(state: &AppState, user_id: Uuid) {
    let lifetime = state.config.jwt_expires_in.as_secs() + super::tokens::DENY_MARGIN_SECS;
    let mut invocation = CACHE_GENERATION.key(generation_key(state, user_id));
    invocation
        .arg(DELETED)
        .arg(lifetime.max(GENERATION_CACHE_SECS));
    if let Err(err) = state
        .cache
        .run_critical(|mut conn| {
            let invocation = &invocation;
            async move { invocation.invoke_async::<()>(&mut conn).await }
        })
        .await
    {
        tracing::warn!(error = %err, "redis unavailable: deleted user's tombstone not cached");
    }
}
