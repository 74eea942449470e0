//! The users table: the one place that reads and writes it. Functions take any
//! `GenericClient`, so they work on a pooled connection or inside a transaction alike.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{GenericClient, Row, types::Type};
use uuid::Uuid;

/// A user as the API shows it: never the password hash.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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

pub async fn find_by_email(
    db: &impl GenericClient,
    email: &str,
) -> anyhow::Result<Option<Credentials>> {
    let row = db
        .query_typed_opt(
            &format!("SELECT {COLUMNS} FROM users WHERE lower(email) = lower($1)"),
            &[(&email, Type::TEXT)],
        )
        .await
        .context("finding a user by email")?;
    Ok(row.as_ref().map(credentials))
}

pub async fn find_by_id(db: &impl GenericClient, id: Uuid) -> anyhow::Result<Option<Credentials>> {
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
    db: &impl GenericClient,
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
