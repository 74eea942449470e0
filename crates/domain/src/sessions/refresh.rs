//! Refresh tokens: 256 random bits, handed out once, stored only as their SHA-256 hash.
//!
//! Tokens belong to a family (a session) started at login or registration. Every refresh
//! consumes its token and issues the next one in the family, valid for the idle lifetime
//! (`REFRESH_TOKEN_EXPIRES_IN`, 7 days) from then; the family itself ends at its absolute
//! lifetime (`REFRESH_TOKEN_ABSOLUTE_LIFETIME`, 30 days after the login), however often it is
//! refreshed. Presenting a token that was already used means it was stolen or replayed: the
//! whole family is revoked.

use std::time::Duration;

use anyhow::Context;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use platform::db::Sql;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub token: String,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
    /// Its lifetime in whole seconds as issued: the idle lifetime exactly, or what is left of
    /// the family's absolute lifetime when that is less.
    lifetime_secs: i64,
}

impl RefreshToken {
    /// Seconds this token lives, for `refresh_expires_in` and the cookie's Max-Age.
    pub fn expires_in(&self) -> i64 {
        self.lifetime_secs
    }
}

/// How long refresh tokens and their families live.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Each token, from its issue (`REFRESH_TOKEN_EXPIRES_IN`).
    pub idle: Duration,
    /// Each family, from its login (`REFRESH_TOKEN_ABSOLUTE_LIFETIME`).
    pub absolute: Duration,
}

impl Lifetimes {
    pub fn from_config(config: &platform::config::Config) -> Self {
        Self {
            idle: config.refresh_token_expires_in,
            absolute: config.refresh_token_absolute_lifetime,
        }
    }
}

#[derive(Debug)]
pub enum Rotation {
    Rotated {
        user_id: Uuid,
        next: RefreshToken,
    },
    /// An already-used token: its family (`family_id`, a session of `user_id`) is now revoked.
    Reused {
        user_id: Uuid,
        family_id: Uuid,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(7))
}

async fn insert(
    db: &impl Sql,
    user_id: Uuid,
    family_id: Uuid,
    family_expires_at: DateTime<Utc>,
    idle: Duration,
) -> anyhow::Result<RefreshToken> {
    let token = random_token();
    let now = Utc::now();
    let idle = to_chrono(idle);
    let (expires_at, lifetime_secs) = if now + idle <= family_expires_at {
        (now + idle, idle.num_seconds())
    } else {
        (
            family_expires_at,
            (family_expires_at - now).num_seconds().max(0),
        )
    };
    db.execute_typed(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, family_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            (&Uuid::now_v7(), Type::UUID),
            (&user_id, Type::UUID),
            (&family_id, Type::UUID),
            (&hash(&token), Type::BYTEA),
            (&expires_at, Type::TIMESTAMPTZ),
            (&family_expires_at, Type::TIMESTAMPTZ),
        ],
    )
    .await
    .context("storing a refresh token")?;
    Ok(RefreshToken {
        token,
        family_id,
        expires_at,
        lifetime_secs,
    })
}

/// Starts a new family (login, registration).
pub async fn start_family(
    db: &impl Sql,
    user_id: Uuid,
    lifetimes: Lifetimes,
) -> anyhow::Result<RefreshToken> {
    let family_expires_at = Utc::now() + to_chrono(lifetimes.absolute);
    insert(
        db,
        user_id,
        Uuid::now_v7(),
        family_expires_at,
        lifetimes.idle,
    )
    .await
}

/// Takes the user's row lock until the transaction ends: every revocation and every rotation
/// of the user's refresh tokens takes it first, so that a revocation waits for a rotation in
/// flight and then sees the token it inserted, and a rotation that comes second sees the
/// revocation. `false` when the user no longer exists.
async fn lock_user(db: &impl Sql, user_id: Uuid) -> anyhow::Result<bool> {
    let row = db
        .query_typed_opt(
            "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
            &[(&user_id, Type::UUID)],
        )
        .await
        .context("locking the user's sessions")?;
    Ok(row.is_some())
}

/// Consumes `token` and issues the next one of its family. Run it in a transaction: the user's
/// lock holds until commit, and the revocation of a reused family must be committed even though
/// the caller answers 401.
pub async fn rotate(db: &impl Sql, token: &str, lifetimes: Lifetimes) -> anyhow::Result<Rotation> {
    let token_hash = hash(token);
    let owner = db
        .query_typed_opt(
            "SELECT user_id FROM refresh_tokens WHERE token_hash = $1",
            &[(&token_hash, Type::BYTEA)],
        )
        .await
        .context("looking up a refresh token")?;
    let Some(owner) = owner.map(|row| row.get::<_, Uuid>(0)) else {
        return Ok(Rotation::Invalid);
    };
    if !lock_user(db, owner).await? {
        return Ok(Rotation::Invalid);
    }
    // Read after the lock: a revocation that committed while this waited is seen here.
    let consumed = db
        .query_typed_opt(
            "UPDATE refresh_tokens SET used_at = now()
             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()
             RETURNING user_id, family_id, family_expires_at",
            &[(&token_hash, Type::BYTEA)],
        )
        .await
        .context("consuming a refresh token")?;
    if let Some(row) = consumed {
        let next = insert(db, row.get(0), row.get(1), row.get(2), lifetimes.idle).await?;
        return Ok(Rotation::Rotated {
            user_id: row.get(0),
            next,
        });
    }
    let known = db
        .query_typed_opt(
            "SELECT family_id, used_at IS NOT NULL FROM refresh_tokens WHERE token_hash = $1",
            &[(&token_hash, Type::BYTEA)],
        )
        .await
        .context("looking up a refresh token")?;
    match known {
        Some(row) if row.get::<_, bool>(1) => {
            let family_id = row.get(0);
            revoke_family(db, family_id).await?;
            Ok(Rotation::Reused {
                user_id: owner,
                family_id,
            })
        }
        _ => Ok(Rotation::Invalid),
    }
}

/// The caller must hold the user's lock (see [`lock_user`]).
async fn revoke_family(db: &impl Sql, family_id: Uuid) -> anyhow::Result<()> {
    db.execute_typed(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        &[(&family_id, Type::UUID)],
    )
    .await
    .context("revoking a refresh token family")?;
    Ok(())
}

/// Revokes the session (refresh family) `family_id` of `user_id`, as logout does with the
/// access token's `sid`. Run it in a transaction.
pub async fn revoke_session(db: &impl Sql, user_id: Uuid, family_id: Uuid) -> anyhow::Result<()> {
    lock_user(db, user_id).await?;
    db.execute_typed(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        &[(&family_id, Type::UUID), (&user_id, Type::UUID)],
    )
    .await
    .context("revoking a session")?;
    Ok(())
}

/// Revokes the family of `token` if it belongs to `user_id`; returns that family's id. Run it
/// in a transaction.
pub async fn revoke_family_of(
    db: &impl Sql,
    token: &str,
    user_id: Uuid,
) -> anyhow::Result<Option<Uuid>> {
    lock_user(db, user_id).await?;
    let row = db
        .query_typed_opt(
            "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
            &[(&hash(token), Type::BYTEA), (&user_id, Type::UUID)],
        )
        .await
        .context("looking up a refresh token")?;
    let Some(row) = row else { return Ok(None) };
    let family_id: Uuid = row.get(0);
    revoke_family(db, family_id).await?;
    Ok(Some(family_id))
}

/// Revokes every family of the user, including one a concurrent rotation is inserting. Run it
/// in a transaction.
pub async fn revoke_all(db: &impl Sql, user_id: Uuid) -> anyhow::Result<()> {
    lock_user(db, user_id).await?;
    db.execute_typed(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        &[(&user_id, Type::UUID)],
    )
    .await
    .context("revoking refresh tokens")?;
    Ok(())
}
