//! Development data: one admin and a few users, with real argon2id hashes. Idempotent: running
//! it again changes nothing (existing emails are left as they are).

use anyhow::Context;
use tokio_postgres::{Client, types::Type};

/// (email, name, role, password): the development credentials listed in the README.
pub const SEED_USERS: [(&str, &str, &str, &str); 4] = [
    (
        "admin@example.com",
        "Ada Admin",
        "admin",
        "admin-dev-password-2024!",
    ),
    (
        "ana@example.com",
        "Ana Lopez",
        "user",
        "ana-dev-password-2024!",
    ),
    (
        "ben@example.com",
        "Ben Okafor",
        "user",
        "ben-dev-password-2024!",
    ),
    (
        "chen@example.com",
        "Chen Wei",
        "user",
        "chen-dev-password-2024!",
    ),
];

/// Inserts the seed users that are missing; returns how many were inserted.
pub async fn seed(client: &Client) -> anyhow::Result<usize> {
    let mut inserted = 0;
    for (email, name, role, password) in SEED_USERS {
        let exists = client
            .query_typed_opt(
                "SELECT 1 FROM users WHERE lower(email) = $1",
                &[(&email, Type::TEXT)],
            )
            .await
            .context("looking up a seed user")?
            .is_some();
        if exists {
            continue;
        }
        let hash = domain::accounts::password::hash(
            &platform::work::Slots::per_core(std::time::Duration::from_secs(60)),
            password,
        )
        .await?;
        let id = uuid::Uuid::now_v7();
        let rows = client
            .execute_typed(
                "INSERT INTO users (id, email, name, role, password_hash) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
                &[(&id, Type::UUID), (&email, Type::TEXT), (&name, Type::TEXT), (&role, Type::TEXT), (&hash, Type::TEXT)],
            )
            .await
            .context("inserting a seed user")?;
        inserted += usize::try_from(rows).unwrap_or(0);
    }
    Ok(inserted)
}
