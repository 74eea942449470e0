//! The application's own database login, so that the functions never connect as the master user.
//!
//! After the migrations, `up` makes the database match `APP_DATABASE_SECRET_ARN`:
//! - the group role [`GROUP`] (no login) exists and holds exactly what the application needs:
//!   `SELECT, INSERT, UPDATE, DELETE` on the tables of `public`, their sequences, and the same on
//!   tables later migrations create (default privileges of the migrating role); nothing on
//!   `schema_migrations`, no DDL, no `CREATEDB`, no `CREATEROLE`;
//! - the secret's user exists, can log in with the secret's password, and is a member of it.
//!
//! Everything is idempotent, so every `up` repairs what a restore lost (a logical restore brings
//! tables back without their grants) and sets the password the secret holds now. The secret is
//! rotated by Secrets Manager's multi-user function, which alternates between `<user>` and
//! `<user>_clone` and creates the clone as a member of the user: whichever is current is the one
//! made to match. The secret is read on every run, never cached: a stale password would undo a
//! rotation. No password is ever logged.

use anyhow::Context;
use platform::config::{Config, SecretString, expose};
use tokio_postgres::Client;

/// The role holding the application's privileges.
pub const GROUP: &str = "app_rw";

const GROUP_PRIVILEGES: &str = r"
DO $$
BEGIN
  CREATE ROLE app_rw NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END
$$;
GRANT USAGE ON SCHEMA public TO app_rw;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO app_rw;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO app_rw;
REVOKE ALL ON TABLE schema_migrations FROM app_rw;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO app_rw;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO app_rw;
";

/// Reads the application's secret (when `APP_DATABASE_SECRET_ARN` is set) and makes its login
/// match; the name of the login, or `None` without a secret.
pub async fn ensure_from_config(
    config: &Config,
    client: &mut Client,
) -> anyhow::Result<Option<String>> {
    let Some(arn) = &config.app_database_secret_arn else {
        return Ok(None);
    };
    let (user, password) = platform::secrets::database_login(config, arn)
        .await
        .context("reading APP_DATABASE_SECRET_ARN")?;
    ensure(client, &user, &password).await?;
    Ok(Some(user))
}

/// Creates or updates the group role, its grants, and the login `user` with `password`.
pub async fn ensure(
    client: &mut Client,
    user: &str,
    password: &SecretString,
) -> anyhow::Result<()> {
    let tx = client
        .transaction()
        .await
        .context("starting a transaction")?;
    tx.batch_execute(GROUP_PRIVILEGES)
        .await
        .context("granting the application's privileges")?;
    let exists = tx
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await
        .context("looking up the application's login")?
        .is_some();
    // Postgres quotes the name and the password itself (format's %I and %L).
    let template = if exists {
        "SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)"
    } else {
        "SELECT format('CREATE ROLE %I WITH LOGIN PASSWORD %L', $1::text, $2::text)"
    };
    let statement: String = tx
        .query_one(template, &[&user, &expose(password)])
        .await
        .context("quoting the login")?
        .get(0);
    tx.batch_execute(&statement)
        .await
        .with_context(|| format!("setting the login of {user}"))?;
    let grant: String = tx
        .query_one("SELECT format('GRANT app_rw TO %I', $1::text)", &[&user])
        .await?
        .get(0);
    tx.batch_execute(&grant)
        .await
        .with_context(|| format!("making {user} a member of {GROUP}"))?;
    tx.commit().await.context("committing the login")?;
    tracing::info!(
        role = user,
        group = GROUP,
        "application login is in step with its secret"
    );
    Ok(())
}
