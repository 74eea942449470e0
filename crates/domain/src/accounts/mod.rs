//! Accounts: the users table (the one place that reads and writes it), emails, and the
//! password policy and hashing. Functions take any [`platform::db::Sql`] (a pooled connection
//! or a transaction alike), which traces each statement.

use anyhow::Context;
use chrono::{DateTime, Utc};
use platform::db::Sql;
use serde::{Deserialize, Serialize};
use tokio_postgres::{Row, types::Type};
use uuid::Uuid;

pub use crate::Position;
use platform::{
    Platform,
    cache::{Cache, ReadAhead},
};

pub mod email;
pub mod guessing;
pub mod password;

pub use email::Email;
pub use password::Password;

/// A user as the API shows it: never the password hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(value_type = Role)]
    pub role: String,
    /// RFC 3339, UTC.
    pub created_at: DateTime<Utc>,
    /// RFC 3339, UTC.
    pub updated_at: DateTime<Utc>,
}

/// The roles a user can have, as the document lists them (the column is text).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum Role {
    User,
    Admin,
}

/// A user with what authentication needs.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub token_generation: i32,
}

const COLUMNS: &str =
    "id, email, name, role, created_at, updated_at, password_hash, token_generation";

fn credentials(row: &Row) -> Credentials {
    Credentials {
        user: User {
            id: row.get(0),
            email: row.get(1),
            name: row.get(2),
            role: row.get(3),
            created_at: row.get(4),
            updated_at: row.get(5),
        },
        password_hash: row.get(6),
        token_generation: row.get(7),
    }
}

pub async fn find_by_email(db: &impl Sql, email: &str) -> anyhow::Result<Option<Credentials>> {
    let row = db
        .query_typed_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1)"),
            &[(&email, Type::TEXT)],
        )
        .await
        .context("finding a user by email")?;
    Ok(row.as_ref().map(credentials))
}

pub async fn find_by_id(db: &impl Sql, id: Uuid) -> anyhow::Result<Option<Credentials>> {
    let row = db
        .query_typed_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE id = $1"),
            &[(&id, Type::UUID)],
        )
        .await
        .context("finding a user by id")?;
    Ok(row.as_ref().map(credentials))
}

/// Inserts a user; `None` when the email is already taken (whatever its case).
pub async fn insert(
    db: &impl Sql,
    email: &str,
    name: &str,
    password_hash: &str,
) -> anyhow::Result<Option<Credentials>> {
    let row = db
        .query_typed_opt(
            &format!(
                "INSERT INTO users (id, email, name, password_hash) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
            ),
            &[
                (&Uuid::now_v7(), Type::UUID),
                (&email, Type::TEXT),
                (&name, Type::TEXT),
                (&password_hash, Type::TEXT),
            ],
        )
        .await
        .context("inserting a user")?;
    Ok(row.as_ref().map(credentials))
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// Profiles are read through Redis for this long; every write to a user deletes its entry.
pub const PROFILE_CACHE_SECS: u64 = 60;

fn profile_key(state: &Platform, id: Uuid) -> String {
    profile_cache_key(&state.cache, id)
}

/// The key of a user's cached profile, also for the limiter to read ahead
/// (`platform::cache::ReadAhead`).
pub fn profile_cache_key(cache: &Cache, id: Uuid) -> String {
    cache.key(&format!("user:{id}"))
}

/// A user's profile, read through the Redis cache (or taken from `read_ahead`, what the rate
/// limiter read in its round trip, when it holds the key). Any cache error falls through to
/// Postgres (the primary, so that a user always sees their own writes) and never fails the
/// request.
pub async fn cached_profile(
    state: &Platform,
    id: Uuid,
    read_ahead: Option<&ReadAhead>,
) -> anyhow::Result<Option<User>> {
    use redis::AsyncCommands;
    let key = profile_key(state, id);
    let read = match read_ahead.and_then(|read| read.get(&key)) {
        Some(value) => Ok(value.map(str::to_owned)),
        None => {
            state
                .cache
                .run(|mut conn| {
                    let key = &key;
                    async move { conn.get::<_, Option<String>>(key).await }
                })
                .await
        }
    };
    match read {
        Ok(Some(json)) => match serde_json::from_str(&json) {
            Ok(user) => {
                platform::metrics::profile_cache(true);
                return Ok(Some(user));
            }
            Err(err) => tracing::warn!(error = %err, "unreadable cached profile: reading Postgres"),
        },
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "profile cache unavailable: reading Postgres"),
    }
    platform::metrics::profile_cache(false);
    let db = state.db.get().await?;
    let Some(found) = find_by_id(&**db, id).await? else {
        return Ok(None);
    };
    // A cache fill: skipped while Redis is paused (see `Cache::run`).
    if let Ok(json) = serde_json::to_string(&found.user)
        && let Err(err) =
            state
                .cache
                .run(|mut conn| async move {
                    conn.set_ex::<_, _, ()>(key, json, PROFILE_CACHE_SECS).await
                })
                .await
    {
        tracing::warn!(error = %err, "profile cache unavailable: not cached");
    }
    Ok(Some(found.user))
}

/// Drops a user's cached profile; call after every write to that user.
pub async fn invalidate_profile(state: &Platform, id: Uuid) {
    use redis::AsyncCommands;
    let key = profile_key(state, id);
    if let Err(err) = state
        .cache
        .run_critical(|mut conn| {
            let key = key.clone();
            async move { conn.del::<_, ()>(key).await }
        })
        .await
    {
        tracing::warn!(error = %err, "profile cache unavailable: entry not invalidated");
    }
}

/// A display name: trimmed, 1 to 100 characters.
pub fn parse_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    match name.chars().count() {
        0 => Err("is required"),
        n if n > 100 => Err("must be at most 100 characters"),
        _ if name.chars().any(char::is_control) => Err("must not contain control characters"),
        _ => Ok(name.to_owned()),
    }
}

/// Applies a profile change; `Ok(None)` when the new email belongs to someone else.
pub async fn update_profile(
    db: &impl Sql,
    id: Uuid,
    name: Option<&str>,
    email: Option<&str>,
) -> anyhow::Result<Result<Option<User>, EmailTaken>> {
    let result = db
        .query_typed_opt(
            &format!(
                "UPDATE users SET name = coalesce($2, name), email = coalesce($3, email), updated_at = now()
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[(&id, Type::UUID), (&name, Type::TEXT), (&email, Type::TEXT)],
        )
        .await;
    match result {
        Ok(row) => Ok(Ok(row.as_ref().map(|r| credentials(r).user))),
        Err(err) if err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
            Ok(Err(EmailTaken))
        }
        Err(err) => Err(anyhow::Error::new(err).context("updating a user")),
    }
}

/// Another account already uses this email.
#[derive(Debug, Clone, Copy)]
pub struct EmailTaken;

pub async fn update_password(db: &impl Sql, id: Uuid, password_hash: &str) -> anyhow::Result<()> {
    db.execute_typed(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        &[(&id, Type::UUID), (&password_hash, Type::TEXT)],
    )
    .await
    .context("updating a password")?;
    Ok(())
}

/// Deletes the user; every row that belongs to them goes with it (ON DELETE CASCADE).
pub async fn delete(db: &impl Sql, id: Uuid) -> anyhow::Result<bool> {
    let n = db
        .execute_typed("DELETE FROM users WHERE id = $1", &[(&id, Type::UUID)])
        .await
        .context("deleting a user")?;
    Ok(n == 1)
}

/// One page of users after `after`, oldest first, optionally only emails starting with `prefix`.
/// Keyset pagination: a row inserted between two pages never shifts what the next page holds.
pub async fn list(
    db: &impl Sql,
    after: Option<Position>,
    email_prefix: Option<&str>,
    limit: i64,
) -> anyhow::Result<(Vec<User>, Option<Position>)> {
    let pattern = email_prefix.map(|p| format!("{}%", escape_like(&p.to_lowercase())));
    let rows = db
        .query_typed(
            &format!(
                "SELECT {COLUMNS} FROM users
                 WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))
                   AND ($3::text IS NULL OR lower(email) LIKE $3)
                 ORDER BY created_at, id
                 LIMIT $4"
            ),
            &[
                (&after.map(|c| c.created_at), Type::TIMESTAMPTZ),
                (&after.map(|c| c.id), Type::UUID),
                (&pattern, Type::TEXT),
                (&(limit + 1), Type::INT8),
            ],
        )
        .await
        .context("listing users")?;
    let mut users: Vec<User> = rows.iter().map(|r| credentials(r).user).collect();
    let next = if users.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
        users.pop();
        users.last().map(|u| Position {
            created_at: u.created_at,
            id: u.id,
        })
    } else {
        None
    };
    Ok((users, next))
}

/// `LIKE` treats `%`, `_` and `\` specially; a prefix filter must match them literally.
fn escape_like(raw: &str) -> String {
    raw.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
