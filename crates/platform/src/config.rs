//! Typed settings, read once per process from the environment (and, on Lambda, Secrets Manager).
//!
//! A missing or invalid value stops start-up with one line naming the variable. Secret values are
//! wrapped in [`SecretString`] so that neither `Debug` nor `Display` can print them, and an error
//! about a secret never repeats its value.

use std::{fmt, str::FromStr, time::Duration};

use secrecy::ExposeSecret;
/// Re-exported so that crates holding a setting need no secrecy dependency of their own.
pub use secrecy::SecretString;

/// A configuration problem, worded as the one line an operator needs to fix it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn invalid(name: &str, expected: &str, got: &str) -> Self {
        Self(format!("{name} must be {expected} (got {got:?})"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Staging,
    Production,
}

impl AppEnv {
    /// Staging and production refuse development defaults for secrets.
    pub fn is_deployed(self) -> bool {
        matches!(self, Self::Staging | Self::Production)
    }
}

impl FromStr for AppEnv {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "staging" => Ok(Self::Staging),
            "production" => Ok(Self::Production),
            _ => Err(()),
        }
    }
}

impl fmt::Display for AppEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Staging => "staging",
            Self::Production => "production",
        })
    }
}

/// Every setting of the product. Built by [`Config::from_env`] in `main`, or by
/// [`Config::from_lookup`] in tests, which then never touch the process environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: AppEnv,
    pub app_name: String,
    pub app_url: String,
    pub port: u16,
    pub database_url: SecretString,
    pub database_read_url: Option<SecretString>,
    /// PEM bundle trusted for Postgres TLS in addition to the public web roots (the RDS CA).
    pub database_ca_cert: Option<String>,
    pub db_pool_max: usize,
    pub db_statement_timeout: Duration,
    pub redis_url: SecretString,
    /// Every Redis key starts with this, so that several apps (or tests) can share one Redis.
    pub redis_key_prefix: String,
    /// The HS256 signing key; `None` only when deployed without one (see `require_jwt_secret`).
    pub jwt_secret: Option<SecretString>,
    /// Earlier signing secrets, still accepted for verification during a key rotation.
    pub jwt_previous_secrets: Vec<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_expires_in: Duration,
    /// Password hashes and checks at once (`PASSWORD_HASH_CONCURRENCY`, default: the cores).
    pub password_hash_concurrency: usize,
    /// How long a request waits for a hashing slot before a 503 (`PASSWORD_HASH_WAIT`, 5 s).
    pub password_hash_wait: Duration,
    /// A refresh token's idle lifetime: each rotation starts it again.
    pub refresh_token_expires_in: Duration,
    /// `REFRESH_TOKEN_ABSOLUTE_LIFETIME` (30 days): no session outlives this since its login,
    /// however often it is refreshed.
    pub refresh_token_absolute_lifetime: Duration,
    pub allowed_origins: Vec<String>,
    pub rate_limit_max: u32,
    pub rate_limit_window: Duration,
    pub trust_forwarded_for: bool,
    /// `EMF_METRICS` (default `true`): one CloudWatch EMF line per request. `false` leaves only
    /// the logs, for a platform whose log pipeline makes no metrics of them.
    pub emf_metrics: bool,
    /// `ORIGIN_VERIFY_SECRET`: the value CloudFront sends as `X-Origin-Verify`. Requests without
    /// it are refused; unset, they are all allowed in development and test, and all refused in
    /// staging and production (`http_kit::origin_verify`).
    pub origin_verify_secret: Option<SecretString>,
    /// `ORIGIN_VERIFY_PREVIOUS_SECRET`: the value before a rotation, accepted until CloudFront
    /// sends the new one.
    pub origin_verify_previous_secret: Option<SecretString>,
    pub log_level: String,
    pub sentry_dsn: Option<SecretString>,
    /// The git commit that is running (`RELEASE`), named in error reports.
    pub release: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: where traces go (`<endpoint>/v1/traces`, OTLP over
    /// HTTP/protobuf); unset, there are none ([`crate::traces`]).
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: the traces' service, by default the function's name.
    pub otel_service_name: String,
    pub uploads_bucket: String,
    /// The largest upload a client may declare.
    pub max_upload_bytes: u64,
    /// Content types a client may upload (lower case, no parameters).
    pub upload_content_types: Vec<String>,
    /// Where the daily backups go (`backups/...`).
    pub backup_bucket: String,
    pub aws_endpoint_url: Option<String>,
    /// `APP_DATABASE_SECRET_ARN` (the migrate function only): the secret of the application's
    /// own database login, which the migrate function creates and keeps in step with it.
    pub app_database_secret_arn: Option<String>,
}

/// Images, PDF and plain text.
const DEFAULT_UPLOAD_TYPES: &str =
    "image/jpeg,image/png,image/gif,image/webp,application/pdf,text/plain";
const DEV_JWT_SECRET: &str = "development-only-secret-change-me-0123456789";
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// The settings file a new developer copies: whatever `JWT_SECRET` it publishes is public.
const ENV_EXAMPLE: &str = include_str!("../../../.env.example");

/// Whether `secret` is one this repository publishes, with which anyone could sign tokens.
fn is_published_jwt_secret(secret: &str) -> bool {
    let in_env_example = ENV_EXAMPLE
        .lines()
        .filter_map(|line| line.trim().strip_prefix("JWT_SECRET="))
        .any(|value| value.trim().trim_matches('"') == secret);
    in_env_example || secret == DEV_JWT_SECRET
}

/// `ALLOWED_ORIGINS`: each an origin (`scheme://host[:port]`, nothing after). The API answers
/// with credentials (the refresh cookie), so `*` cannot work and is refused with a clear error;
/// `null` (sandboxed frames, `file:` pages) would let any such page in; deployed, only https.
fn parse_allowed_origins(raw: &str, app_env: AppEnv) -> Result<Vec<String>, ConfigError> {
    let mut origins = Vec::new();
    for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let refuse = |why: &str| Err(ConfigError(format!("ALLOWED_ORIGINS: {origin:?} {why}")));
        if origin == "*" {
            return refuse(
                "cannot be allowed: the API sends credentials (the refresh cookie), which browsers refuse with a wildcard origin; list each origin",
            );
        }
        if origin.eq_ignore_ascii_case("null") {
            return refuse("is refused: any sandboxed frame or local file would be let in");
        }
        let Some((scheme, rest)) = origin.split_once("://") else {
            return refuse("is not an origin like https://app.example.com");
        };
        if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
            return refuse("is not an origin like https://app.example.com (no path)");
        }
        if app_env == AppEnv::Production && scheme != "https" {
            return refuse("must be https:// in production");
        }
        origins.push(origin.to_owned());
    }
    Ok(origins)
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT`: an `http://` or `https://` URL the exporter can send to, or
/// empty (no traces).
fn parse_otlp_endpoint(raw: Option<&str>) -> Result<Option<String>, ConfigError> {
    parse_optional_http_url("OTEL_EXPORTER_OTLP_ENDPOINT", raw, "http://localhost:4318")
}

/// A URL setting that may be left empty: blank is `None`, anything else must be an HTTP URL.
fn parse_optional_http_url(
    name: &str,
    raw: Option<&str>,
    example: &str,
) -> Result<Option<String>, ConfigError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(url) => parse_http_url(name, url, example).map(Some),
    }
}

/// An `http://` or `https://` URL with a host, read as the HTTP clients read it (`http::Uri`,
/// ASCII only).
fn parse_http_url(name: &str, raw: &str, example: &str) -> Result<String, ConfigError> {
    let valid = raw.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|host| !host.is_empty())
    });
    if !valid {
        return Err(ConfigError::invalid(
            name,
            &format!("an http:// or https:// URL such as {example}"),
            raw,
        ));
    }
    Ok(raw.to_owned())
}

/// A Postgres connection URL, read as the pools read it (`db`), so that a typo stops start-up
/// under the variable's own name. The URL holds a password, so it is not echoed.
fn parse_database_url(name: &str, url: String) -> Result<SecretString, ConfigError> {
    match crate::db::check_url(&url) {
        Ok(()) => Ok(url.into()),
        Err(err) => Err(ConfigError(format!(
            "{name} must be a Postgres URL such as postgres://USER@HOST:5432/DATABASE: \
             {err:#} (the value is not shown: it holds a password)"
        ))),
    }
}

/// `LOG_LEVEL`: a level, or comma-separated `target=level` directives beside one. Each word must
/// be a level: tracing would read any other bare word as a target to log in full, and leave
/// everything else silent, so a typo such as `warning` must stop start-up instead.
fn parse_log_level(raw: Option<String>) -> Result<String, ConfigError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let Some(raw) = raw else {
        return Ok("info".into());
    };
    let level = |word: &str| {
        let word = word.trim().to_ascii_lowercase();
        LEVELS.contains(&word.as_str()).then_some(word)
    };
    let directives: Option<Vec<String>> = raw
        .split(',')
        .map(|directive| match directive.split_once('=') {
            Some((target, word)) if !target.trim().is_empty() => {
                Some(format!("{}={}", target.trim(), level(word)?))
            }
            Some(_) => None,
            None => level(directive),
        })
        .collect();
    directives.map(|d| d.join(",")).ok_or_else(|| {
        ConfigError::invalid(
            "LOG_LEVEL",
            "error, warn, info, debug, trace or off, or levels per target such as warn,auth=debug",
            &raw,
        )
    })
}

/// `SENTRY_DSN`: read as sentry reads it. The DSN holds a key, so an invalid one is not echoed.
fn parse_sentry_dsn(raw: Option<String>) -> Result<Option<SecretString>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.trim().parse::<sentry::types::Dsn>().is_err() {
        return Err(ConfigError(
            "SENTRY_DSN must be a DSN such as https://KEY@o0.ingest.sentry.io/0 (the value is \
             not shown: it holds a key)"
                .into(),
        ));
    }
    Ok(Some(raw.trim().to_owned().into()))
}

/// S3's rules for a bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, starting
/// and ending with a letter or digit.
fn parse_bucket(name: &str, bucket: String) -> Result<String, ConfigError> {
    let bytes = bucket.as_bytes();
    let valid = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && !bucket.contains("..");
    if !valid {
        return Err(ConfigError::invalid(
            name,
            "an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens",
            &bucket,
        ));
    }
    Ok(bucket)
}

/// `UPLOAD_CONTENT_TYPES`: at least one `type/subtype`, lower-cased; an empty list would refuse
/// every upload.
fn parse_content_types(raw: &str) -> Result<Vec<String>, ConfigError> {
    let types: Vec<String> = raw
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    let valid = !types.is_empty()
        && types.iter().all(|t| {
            t.split_once('/').is_some_and(|(kind, sub)| {
                let token = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
                };
                token(kind) && token(sub)
            })
        });
    if !valid {
        return Err(ConfigError::invalid(
            "UPLOAD_CONTENT_TYPES",
            "a comma-separated list of MIME types such as image/png,application/pdf",
            raw,
        ));
    }
    Ok(types)
}

/// `AWS_ENDPOINT_URL`: an `http://` or `https://` URL the AWS SDK can send to, or empty (AWS
/// itself). The SDK reads it as an `http::Uri`, which takes ASCII only: a host name with other
/// letters is written in its `xn--` form. Checked here so that a bad value stops start-up
/// instead of failing every S3 or Secrets Manager call.
pub(crate) fn parse_aws_endpoint(raw: Option<&str>) -> Result<Option<String>, ConfigError> {
    parse_optional_http_url(
        "AWS_ENDPOINT_URL",
        raw,
        "http://127.0.0.1:5000 (a host name in ASCII, its xn-- form)",
    )
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, which answers a variable's value by name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&lookup)
    }

    /// One copy of the reading for every caller's `lookup`. It runs once per start; compiled
    /// once per closure it made the uploads function 31 KB larger (docs/BENCHMARKS.md).
    fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(lookup);
        let app_env = env.parse_or(
            "APP_ENV",
            AppEnv::Development,
            "one of development, test, staging, production",
        )?;
        let on_lambda = lookup("AWS_LAMBDA_FUNCTION_NAME").is_some();
        // On Lambda the development default would be a silent downgrade: say which it is.
        if on_lambda && lookup("APP_ENV").is_none() {
            return Err(ConfigError(
                "APP_ENV must be set on Lambda (development, test, staging or production)".into(),
            ));
        }

        // Deployed, a missing secret is reported by the functions that sign or verify tokens
        // (`require_jwt_secret`); the others (health, migrate, backup) run without one.
        let jwt_secret = match env.get("JWT_SECRET") {
            Some(secret) => Some(secret),
            None if app_env.is_deployed() => None,
            None => Some(DEV_JWT_SECRET.to_owned()),
        };
        if jwt_secret
            .as_ref()
            .is_some_and(|s| s.len() < MIN_JWT_SECRET_BYTES)
        {
            return Err(ConfigError(format!(
                "JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes long"
            )));
        }
        if app_env.is_deployed() && jwt_secret.as_deref().is_some_and(is_published_jwt_secret) {
            return Err(ConfigError(
                "JWT_SECRET is a value published in this repository (the development default or \
                 .env.example): anyone could sign tokens with it. Generate one: \
                 openssl rand -base64 48"
                    .into(),
            ));
        }

        let db_pool_max = env.parse_or(
            "DB_POOL_MAX",
            if on_lambda { 2 } else { 10 },
            "a whole number from 1 to 1000",
        )?;
        if !(1..=1000).contains(&db_pool_max) {
            return Err(ConfigError::invalid(
                "DB_POOL_MAX",
                "a whole number from 1 to 1000",
                &db_pool_max.to_string(),
            ));
        }
        let rate_limit_max =
            env.positive_or("RATE_LIMIT_MAX", 100u32, "a positive whole number")?;

        let app_name = env.get("APP_NAME").unwrap_or_else(|| "backend".into());
        Ok(Self {
            app_env,
            app_name: app_name.clone(),
            app_url: match env.get("APP_URL") {
                None => "http://localhost:3000".into(),
                Some(raw) => parse_http_url("APP_URL", raw.trim(), "https://app.example.com")?,
            },
            port: env.parse_or("PORT", 3000, "a port number from 1 to 65535")?,
            database_url: parse_database_url(
                "DATABASE_URL",
                env.get("DATABASE_URL").unwrap_or_else(|| {
                    "postgres://postgres@127.0.0.1:5432/backend_development".into()
                }),
            )?,
            database_read_url: env
                .get("DATABASE_READ_URL")
                .map(|url| parse_database_url("DATABASE_READ_URL", url))
                .transpose()?,
            database_ca_cert: env.get("DATABASE_CA_CERT"),
            db_pool_max,
            db_statement_timeout: env
                .duration_or("DB_STATEMENT_TIMEOUT", Duration::from_secs(5))?,
            redis_url: env
                .get("REDIS_URL")
                .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
                .into(),
            redis_key_prefix: env.get("REDIS_KEY_PREFIX").unwrap_or_else(|| "app:".into()),
            jwt_secret: jwt_secret.map(Into::into),
            jwt_previous_secrets: parse_previous_secrets(
                env.get("JWT_PREVIOUS_SECRETS").as_deref(),
            )?,
            jwt_issuer: env.get("JWT_ISSUER").unwrap_or_else(|| app_name.clone()),
            jwt_audience: env
                .get("JWT_AUDIENCE")
                .unwrap_or_else(|| format!("{app_name}-api")),
            jwt_expires_in: env.duration_or("JWT_EXPIRES_IN", Duration::from_secs(15 * 60))?,
            refresh_token_expires_in: env.duration_or(
                "REFRESH_TOKEN_EXPIRES_IN",
                Duration::from_secs(7 * 24 * 3600),
            )?,
            password_hash_concurrency: env.positive_or(
                "PASSWORD_HASH_CONCURRENCY",
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
                "a positive whole number",
            )?,
            password_hash_wait: env.duration_or("PASSWORD_HASH_WAIT", Duration::from_secs(5))?,
            refresh_token_absolute_lifetime: env.duration_or(
                "REFRESH_TOKEN_ABSOLUTE_LIFETIME",
                Duration::from_secs(30 * 24 * 3600),
            )?,
            // Deployed, the web client is served from the API's own origin (CloudFront), so no
            // other origin is allowed unless named; locally, the Vite dev server's.
            allowed_origins: parse_allowed_origins(
                &env.get("ALLOWED_ORIGINS").unwrap_or_else(|| {
                    if app_env.is_deployed() {
                        String::new()
                    } else {
                        "http://localhost:5173".into()
                    }
                }),
                app_env,
            )?,
            rate_limit_max,
            rate_limit_window: env
                .duration_or("RATE_LIMIT_WINDOW", Duration::from_secs(15 * 60))?,
            trust_forwarded_for: env.parse_or("TRUST_FORWARDED_FOR", false, "true or false")?,
            emf_metrics: env.parse_or("EMF_METRICS", true, "true or false")?,
            origin_verify_secret: env.get("ORIGIN_VERIFY_SECRET").map(Into::into),
            origin_verify_previous_secret: env.get("ORIGIN_VERIFY_PREVIOUS_SECRET").map(Into::into),
            log_level: parse_log_level(env.get("LOG_LEVEL"))?,
            sentry_dsn: parse_sentry_dsn(env.get("SENTRY_DSN"))?,
            release: env.get("RELEASE").filter(|r| !r.is_empty()),
            otel_exporter_otlp_endpoint: parse_otlp_endpoint(
                env.get("OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
            )?,
            otel_service_name: env.get("OTEL_SERVICE_NAME").unwrap_or_else(|| {
                lookup("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| "local".into())
            }),
            uploads_bucket: parse_bucket(
                "UPLOADS_BUCKET",
                env.get("UPLOADS_BUCKET")
                    .unwrap_or_else(|| format!("{app_name}-uploads")),
            )?,
            max_upload_bytes: env.positive_or(
                "MAX_UPLOAD_BYTES",
                10 * 1024 * 1024,
                "a positive number of bytes",
            )?,
            upload_content_types: parse_content_types(
                &env.get("UPLOAD_CONTENT_TYPES")
                    .unwrap_or_else(|| DEFAULT_UPLOAD_TYPES.into()),
            )?,
            backup_bucket: parse_bucket(
                "BACKUP_BUCKET",
                env.get("BACKUP_BUCKET")
                    .unwrap_or_else(|| format!("{app_name}-backups")),
            )?,
            aws_endpoint_url: parse_aws_endpoint(env.get("AWS_ENDPOINT_URL").as_deref())?,
            app_database_secret_arn: env.get("APP_DATABASE_SECRET_ARN"),
        })
    }

    /// The signing key, or the one-line error that stops a function that needs it.
    pub fn require_jwt_secret(&self) -> Result<&SecretString, ConfigError> {
        self.jwt_secret
            .as_ref()
            .ok_or_else(|| ConfigError("JWT_SECRET is required in staging and production".into()))
    }

    /// The read pool's URL: the replica when one is configured, the primary otherwise.
    pub fn read_url(&self) -> &SecretString {
        self.database_read_url
            .as_ref()
            .unwrap_or(&self.database_url)
    }
}

/// `JWT_PREVIOUS_SECRETS`: comma-separated secrets. Each key's `kid` is derived from the secret
/// itself, so a rotation needs no key ids to be chosen or kept in step.
fn parse_previous_secrets(raw: Option<&str>) -> Result<Vec<SecretString>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .map(|secret| {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(ConfigError(format!(
                    "JWT_PREVIOUS_SECRETS: each secret must be at least {MIN_JWT_SECRET_BYTES} bytes long"
                )));
            }
            Ok(SecretString::from(secret.to_owned()))
        })
        .collect()
}

/// Durations are written `900` (seconds), `900s`, `15m`, `2h`, `7d` or `250ms`.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().ok()?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    };
    (!duration.is_zero()).then_some(duration)
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A variable that is unset or blank counts as absent.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse_or<T: FromStr>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(name, expected, &raw)),
        }
    }

    /// Like [`Env::parse_or`], refusing zero.
    fn positive_or<T: FromStr + Default + PartialEq>(
        &self,
        name: &str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        let value = self.parse_or(name, default, expected)?;
        if value == T::default() {
            return Err(ConfigError::invalid(
                name,
                expected,
                &self.get(name).unwrap_or_default(),
            ));
        }
        Ok(value)
    }

    fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => parse_duration(&raw).ok_or_else(|| {
                ConfigError::invalid(name, "a duration such as 900, 15m, 7d or 250ms", &raw)
            }),
        }
    }
}

/// For call sites that must hand a secret to a library; keeps `expose_secret` greppable.
pub fn expose(secret: &SecretString) -> &str {
    secret.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn traces_need_an_http_endpoint_and_are_named_after_the_function() {
        let off = config(&[]).expect("valid");
        assert!(off.otel_exporter_otlp_endpoint.is_none());
        assert_eq!(off.otel_service_name, "local");
        let on = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            ("AWS_LAMBDA_FUNCTION_NAME", "backend-users"),
            ("APP_ENV", "test"),
        ])
        .expect("valid");
        assert_eq!(
            on.otel_exporter_otlp_endpoint.as_deref(),
            Some("http://localhost:4318")
        );
        assert_eq!(on.otel_service_name, "backend-users");
        let named = config(&[("OTEL_SERVICE_NAME", "api")]).expect("valid");
        assert_eq!(named.otel_service_name, "api");
        assert_refused(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &[
                "localhost:4318",
                "http://",
                "http://local host:4318",
                "http://collectör:4318",
                "grpc://localhost:4317",
            ],
        );
    }

    #[test]
    fn database_urls_are_read_as_the_pools_read_them_and_never_echoed() {
        let tls = "postgres://app@db.example.com:5432/app?sslmode=verify-full&sslrootcert=/ca.pem";
        let config = config(&[
            ("DATABASE_URL", tls),
            (
                "DATABASE_READ_URL",
                "postgres://app@replica.example.com/app",
            ),
        ])
        .expect("valid");
        assert_eq!(config.database_url.expose_secret(), tls);
        assert!(config.database_read_url.is_some());
        // Built from parts: a URL with credentials in one literal would read as a leaked secret.
        let with_password = |rest: &str| ["postgres://app:", "hunter2-secret", rest].concat();
        for name in ["DATABASE_URL", "DATABASE_READ_URL"] {
            for bad in [
                with_password("@db.example.com/app?sslmode=bogus"),
                with_password("@db.example.com:port/app"),
            ] {
                let err = refusal(&[(name, &bad)]);
                assert!(
                    err.contains(&format!("{name} must be a Postgres URL")),
                    "{err}"
                );
                assert!(!err.contains("hunter2"), "{err}");
            }
        }
    }

    #[test]
    fn the_aws_endpoint_is_a_url_the_sdk_can_send_to() {
        for good in [
            "http://127.0.0.1:5000",
            "https://s3.eu-west-1.amazonaws.com",
            "http://xn--bcher-kva.example:4566/",
        ] {
            let config = config(&[("AWS_ENDPOINT_URL", good)]).expect(good);
            assert_eq!(config.aws_endpoint_url.as_deref(), Some(good));
        }
        assert!(
            config(&[("AWS_ENDPOINT_URL", "")])
                .expect("empty")
                .aws_endpoint_url
                .is_none()
        );
        assert_refused(
            "AWS_ENDPOINT_URL",
            &[
                "http://bücher.example:5000",
                "localhost:5000",
                "ftp://127.0.0.1:5000",
                "http://",
                "http://local host:5000",
            ],
        );
        // Secrets Manager is reached before the configuration is read (`secrets::load`), with
        // the raw value: blanks mean no endpoint there too, and spaces around one are dropped.
        assert_eq!(parse_aws_endpoint(Some("   ")).expect("blank"), None);
        assert_eq!(
            parse_aws_endpoint(Some(" http://127.0.0.1:5000 \n")).expect("padded"),
            Some("http://127.0.0.1:5000".to_owned())
        );
    }

    #[test]
    fn a_log_level_is_levels_and_targets_never_a_bare_word() {
        for (raw, read) in [
            ("warn", "warn"),
            (" WARN ", "warn"),
            ("warn, auth=debug", "warn,auth=debug"),
            ("off", "off"),
        ] {
            assert_eq!(config(&[("LOG_LEVEL", raw)]).expect(raw).log_level, read);
        }
        assert_eq!(config(&[]).expect("default").log_level, "info");
        assert_refused(
            "LOG_LEVEL",
            &[
                "warning",
                "loud",
                "warn,",
                "=debug",
                "auth=loud",
                "info,users",
            ],
        );
    }

    #[test]
    fn counts_that_would_stop_the_service_are_refused() {
        for name in [
            "MAX_UPLOAD_BYTES",
            "PASSWORD_HASH_CONCURRENCY",
            "RATE_LIMIT_MAX",
        ] {
            let err = refusal(&[(name, "0")]);
            assert!(err.contains(&format!("{name} must be a positive")), "{err}");
        }
        assert_refused(
            "UPLOAD_CONTENT_TYPES",
            &[
                ",",
                "image",
                "image/",
                "text/plain;charset=utf-8",
                "image/*, /png",
            ],
        );
        let types = config(&[(
            "UPLOAD_CONTENT_TYPES",
            " Image/PNG, application/vnd.ms-excel ",
        )])
        .expect("valid");
        assert_eq!(
            types.upload_content_types,
            ["image/png", "application/vnd.ms-excel"]
        );
    }

    #[test]
    fn buckets_follow_s3_naming_rules() {
        for good in ["abc", "backend-uploads-dev", "my.bucket.1"] {
            assert_eq!(
                config(&[("UPLOADS_BUCKET", good)])
                    .expect(good)
                    .uploads_bucket,
                good
            );
        }
        for bad in [
            "ab",
            "Bad_Bucket!",
            "-uploads",
            "uploads-",
            "a..b",
            &"a".repeat(64),
        ] {
            for name in ["UPLOADS_BUCKET", "BACKUP_BUCKET"] {
                let err = refusal(&[(name, bad)]);
                assert!(
                    err.contains(&format!("{name} must be an S3 bucket name")),
                    "{err}"
                );
            }
        }
        let err = refusal(&[("APP_NAME", "MyApp")]);
        assert!(err.contains("\"MyApp-uploads\""), "{err}");
    }

    #[test]
    fn an_invalid_sentry_dsn_is_refused_without_echoing_it() {
        let dsn = "https://0123456789abcdef@o1.ingest.sentry.io/42";
        let on = config(&[("SENTRY_DSN", dsn)]).expect("valid");
        assert_eq!(on.sentry_dsn.as_ref().map(expose), Some(dsn));
        for bad in [
            "xyz",
            "https://o1.ingest.sentry.io/42",
            "https://secretkey@host",
        ] {
            let err = refusal(&[("SENTRY_DSN", bad)]);
            assert!(err.contains("SENTRY_DSN must be"), "{bad}: {err}");
            assert!(!err.contains(bad), "{err}");
        }
    }

    #[test]
    fn the_app_url_is_an_http_url() {
        let on = config(&[("APP_URL", "https://app.example.com")]).expect("valid");
        assert_eq!(on.app_url, "https://app.example.com");
        assert_refused(
            "APP_URL",
            &["notaurl", "app.example.com", "ftp://app.example.com"],
        );
    }

    /// Each of `bad` stops start-up with the line that names `name`.
    fn assert_refused(name: &str, bad: &[&str]) {
        for value in bad {
            let err = refusal(&[(name, value)]);
            assert!(err.contains(&format!("{name} must be")), "{value}: {err}");
        }
    }

    fn refusal(vars: &[(&str, &str)]) -> String {
        match config(vars) {
            Ok(_) => panic!("{vars:?} was accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn deployed_environments_refuse_the_jwt_secrets_this_repository_publishes() {
        let example = ENV_EXAMPLE
            .lines()
            .find_map(|l| l.strip_prefix("JWT_SECRET="))
            .expect(".env.example names a JWT_SECRET");
        for env in ["staging", "production"] {
            for secret in [DEV_JWT_SECRET, example] {
                let why = refusal(&[("APP_ENV", env), ("JWT_SECRET", secret)]);
                assert!(why.contains("published"), "{env}: {why}");
                assert!(
                    !why.contains(secret),
                    "the message repeats the secret: {why}"
                );
            }
            let fresh = "a-freshly-generated-secret-nobody-has-seen-0123";
            config(&[("APP_ENV", env), ("JWT_SECRET", fresh)]).expect("a fresh secret");
        }
        config(&[("APP_ENV", "development"), ("JWT_SECRET", example)]).expect("fine locally");
    }

    #[test]
    fn on_lambda_app_env_must_be_named() {
        let why = refusal(&[("AWS_LAMBDA_FUNCTION_NAME", "users")]);
        assert!(why.contains("APP_ENV must be set"), "{why}");
        config(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "users"),
            ("APP_ENV", "development"),
        ])
        .expect("named");
    }

    #[test]
    fn allowed_origins_are_checked_at_start() {
        let why = refusal(&[("ALLOWED_ORIGINS", "https://a.example.com,*")]);
        assert!(why.contains("credentials"), "{why}");
        let why = refusal(&[("ALLOWED_ORIGINS", "null")]);
        assert!(why.contains("refused"), "{why}");
        let why = refusal(&[("ALLOWED_ORIGINS", "https://a.example.com/app")]);
        assert!(why.contains("no path"), "{why}");
        let secret = (
            "JWT_SECRET",
            "a-freshly-generated-secret-nobody-has-seen-0123",
        );
        let why = refusal(&[
            ("APP_ENV", "production"),
            secret,
            ("ALLOWED_ORIGINS", "http://app.example.com"),
        ]);
        assert!(why.contains("https"), "{why}");
        let c = config(&[
            ("APP_ENV", "production"),
            secret,
            ("ALLOWED_ORIGINS", "https://app.example.com"),
        ])
        .expect("https in production");
        assert_eq!(
            c.allowed_origins,
            vec!["https://app.example.com".to_owned()]
        );
        let c = config(&[("APP_ENV", "production"), secret]).expect("no origin named");
        assert!(c.allowed_origins.is_empty(), "deployed, none by default");
        let c = config(&[("ALLOWED_ORIGINS", "http://localhost:5173")]).expect("http locally");
        assert_eq!(c.allowed_origins.len(), 1);
    }

    #[test]
    fn defaults_match_the_design() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.port, 3000);
        assert_eq!(c.db_pool_max, 10);
        assert_eq!(c.rate_limit_max, 100);
        assert_eq!(c.rate_limit_window, Duration::from_secs(900));
        assert_eq!(c.jwt_expires_in, Duration::from_secs(900));
        assert_eq!(c.refresh_token_expires_in, Duration::from_secs(604_800));
        assert_eq!(
            c.refresh_token_absolute_lifetime,
            Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(c.allowed_origins, vec!["http://localhost:5173".to_owned()]);
    }

    #[test]
    fn the_pool_defaults_to_two_connections_on_lambda() {
        let c =
            config(&[("AWS_LAMBDA_FUNCTION_NAME", "users"), ("APP_ENV", "test")]).expect("valid");
        assert_eq!(c.db_pool_max, 2);
    }

    #[test]
    fn an_invalid_value_names_its_variable() {
        let err = config(&[("DB_POOL_MAX", "lots")]).expect_err("invalid");
        assert!(err.to_string().contains("DB_POOL_MAX"), "{err}");
        let err = config(&[("RATE_LIMIT_WINDOW", "soon")]).expect_err("invalid");
        assert!(err.to_string().contains("RATE_LIMIT_WINDOW"), "{err}");
    }

    #[test]
    fn a_short_jwt_secret_is_refused_without_echoing_it() {
        let err = config(&[("JWT_SECRET", "short-secret-value")]).expect_err("too short");
        assert!(err.to_string().contains("JWT_SECRET"));
        assert!(!err.to_string().contains("short-secret-value"));
    }

    #[test]
    fn production_requires_a_jwt_secret_where_tokens_are_used() {
        let c = config(&[("APP_ENV", "production")]).expect("functions without tokens start");
        let err = c.require_jwt_secret().expect_err("required");
        assert!(err.to_string().contains("JWT_SECRET"));
    }

    #[test]
    fn secrets_do_not_print() {
        let c = config(&[("DATABASE_URL", "postgres://u:hunter2hunter2@db/x")]).expect("valid");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("900"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), None);
        assert_eq!(parse_duration("1w"), None);
    }
}
