//! Configuration from AWS Secrets Manager, read once per cold start.
//!
//! - `APP_SECRET_ARN`: a JSON object of settings (`JWT_SECRET`, `JWT_PREVIOUS_SECRETS`,
//!   `ORIGIN_VERIFY_SECRET`, `REDIS_AUTH_TOKEN`, ...). Its keys take the place of environment
//!   variables of the same name.
//! - `DATABASE_SECRET_ARN`: the RDS-managed secret (`username`, `password`, `host`, `port`,
//!   `dbname`). Its credentials go into `DATABASE_URL` and `DATABASE_READ_URL` (which keep their
//!   host and options, such as `sslmode=verify-full`); without `DATABASE_URL` the URL is built
//!   from the secret. When Postgres later rejects the password (a rotation), the pools read the
//!   secret again through the returned [`Refresh`].
//!
//! If Secrets Manager cannot be read at cold start, start-up fails with one line naming the
//! variable. No secret value is ever logged.

use std::{collections::HashMap, sync::Arc, time::Duration};

use anyhow::Context;
use aws_sdk_secretsmanager::Client;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{
    config::{Config, ConfigError},
    state::Refresh,
};

#[derive(Deserialize)]
struct DatabaseSecret {
    username: String,
    password: String,
    host: Option<String>,
    port: Option<u16>,
    dbname: Option<String>,
}

/// Reads the process environment and the secrets it names.
pub async fn load_from_env() -> anyhow::Result<(Config, Refresh)> {
    load(|name| std::env::var(name).ok()).await
}

/// Like [`load_from_env`], reading variables through `lookup`.
pub async fn load(
    lookup: impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static,
) -> anyhow::Result<(Config, Refresh)> {
    let app_arn = lookup("APP_SECRET_ARN").filter(|v| !v.is_empty());
    let db_arn = lookup("DATABASE_SECRET_ARN").filter(|v| !v.is_empty());
    if app_arn.is_none() && db_arn.is_none() {
        return Ok((Config::from_lookup(lookup)?, Refresh::default()));
    }
    // Checked before the first call, which would otherwise blame the secret's ARN.
    let endpoint = crate::config::parse_aws_endpoint(lookup("AWS_ENDPOINT_URL").as_deref())?;
    let client = client(endpoint, lookup("AWS_REGION")).await;

    let mut overrides: HashMap<String, String> = HashMap::new();
    if let Some(arn) = &app_arn {
        let json = read(&client, arn)
            .await
            .map_err(|e| startup_error("APP_SECRET_ARN", &e))?;
        let values: HashMap<String, serde_json::Value> = serde_json::from_str(json.expose_secret())
            .map_err(|_| {
                ConfigError("APP_SECRET_ARN must hold a JSON object of settings".into())
            })?;
        for (key, value) in values {
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            overrides.insert(key, text);
        }
    }
    if let Some(token) = overrides.get("REDIS_AUTH_TOKEN").cloned() {
        let url = overrides
            .get("REDIS_URL")
            .cloned()
            .or_else(|| lookup("REDIS_URL"));
        if let Some(url) = url {
            overrides.insert("REDIS_URL".into(), with_redis_password(&url, &token));
        }
    }
    let mut refresh = Refresh::default();
    if let Some(arn) = &db_arn {
        let secret = read_database_secret(&client, arn)
            .await
            .map_err(|e| startup_error("DATABASE_SECRET_ARN", &e))?;
        let primary_base = lookup("DATABASE_URL");
        let replica_base = lookup("DATABASE_READ_URL").filter(|v| !v.is_empty());
        overrides.insert(
            "DATABASE_URL".into(),
            database_url(primary_base.as_deref(), &secret),
        );
        if let Some(base) = &replica_base {
            overrides.insert(
                "DATABASE_READ_URL".into(),
                database_url(Some(base), &secret),
            );
        }
        refresh.primary = Some(refresher(client.clone(), arn.clone(), primary_base));
        refresh.replica =
            replica_base.map(|base| refresher(client.clone(), arn.clone(), Some(base)));
    }
    let merged = move |name: &str| overrides.get(name).cloned().or_else(|| lookup(name));
    Ok((Config::from_lookup(merged)?, refresh))
}

fn startup_error(variable: &str, err: &anyhow::Error) -> ConfigError {
    ConfigError(format!(
        "could not read {variable} from Secrets Manager: {err:#}"
    ))
}

async fn client(endpoint: Option<String>, region: Option<String>) -> Client {
    Client::new(&crate::aws::sdk_config(endpoint.as_deref(), region, Duration::from_secs(5)).await)
}

async fn read(client: &Client, arn: &str) -> anyhow::Result<SecretString> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!("{}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
        })?;
    out.secret_string()
        .map(|s| SecretString::from(s.to_owned()))
        .context("the secret has no string value")
}

async fn read_database_secret(client: &Client, arn: &str) -> anyhow::Result<DatabaseSecret> {
    let json = read(client, arn).await?;
    serde_json::from_str(json.expose_secret())
        .map_err(|_| anyhow::anyhow!("the secret is not the RDS secret JSON"))
}

/// The login (`username`, `password`) held by a database secret: the JSON that RDS, the
/// stack and Secrets Manager's rotation functions use.
pub async fn database_login(config: &Config, arn: &str) -> anyhow::Result<(String, SecretString)> {
    let region = std::env::var("AWS_REGION").ok();
    let client = client(config.aws_endpoint_url.clone(), region).await;
    let secret = read_database_secret(&client, arn).await?;
    Ok((secret.username, SecretString::from(secret.password)))
}

fn refresher(client: Client, arn: String, base: Option<String>) -> crate::db::CredentialRefresh {
    Arc::new(move || {
        let (client, arn, base) = (client.clone(), arn.clone(), base.clone());
        Box::pin(async move {
            let secret = read_database_secret(&client, &arn)
                .await
                .context("re-reading DATABASE_SECRET_ARN")?;
            Ok(SecretString::from(database_url(base.as_deref(), &secret)))
        })
    })
}

/// `base` with the secret's credentials, or a URL built from the secret alone.
fn database_url(base: Option<&str>, secret: &DatabaseSecret) -> String {
    let user = utf8_percent_encode(&secret.username, NON_ALPHANUMERIC);
    let password = utf8_percent_encode(&secret.password, NON_ALPHANUMERIC);
    match base.filter(|b| !b.is_empty()) {
        Some(base) => {
            let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
            let host_part = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{user}:{password}@{host_part}")
        }
        None => format!(
            "postgres://{user}:{password}@{}:{}/{}?sslmode=verify-full",
            secret.host.as_deref().unwrap_or("localhost"),
            secret.port.unwrap_or(5432),
            secret.dbname.as_deref().unwrap_or("postgres"),
        ),
    }
}

/// `redis[s]://host:port` with the AUTH token as its password.
fn with_redis_password(url: &str, token: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("rediss", url));
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!(
        "{scheme}://:{}@{host_part}",
        utf8_percent_encode(token, NON_ALPHANUMERIC)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> DatabaseSecret {
        DatabaseSecret {
            username: "app".into(),
            password: "p@ss:w/rd".into(),
            host: Some("db.internal".into()),
            port: Some(5432),
            dbname: Some("app".into()),
        }
    }

    #[test]
    fn credentials_replace_those_of_the_base_url() {
        let url = database_url(
            Some("postgres://placeholder@db.internal:5432/app?sslmode=verify-full"),
            &secret(),
        );
        assert_eq!(
            url,
            "postgres://app:p%40ss%3Aw%2Frd@db.internal:5432/app?sslmode=verify-full"
        );
        let url = database_url(None, &secret());
        assert_eq!(
            url,
            "postgres://app:p%40ss%3Aw%2Frd@db.internal:5432/app?sslmode=verify-full"
        );
    }

    #[test]
    fn the_redis_token_becomes_the_password() {
        assert_eq!(
            with_redis_password("rediss://cache.internal:6379", "t0k/en"),
            "rediss://:t0k%2Fen@cache.internal:6379"
        );
    }
}
