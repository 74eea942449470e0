//! `POST /api/v1/auth/{register,login,refresh,logout,logout-all}`.

mod session;
mod state;

use std::time::Duration;

use api::AuthUser;
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use domain::{
    accounts::{self as users, Email, Password, password},
    sessions::{refresh, revocation},
};
use http_kit::{ApiError, FieldError, Json, OptionalJson, rate_limit};
use platform::Platform;
use serde::Deserialize;

pub use session::REFRESH_COOKIE;
use session::{clear_cookie, refresh_token_from};
pub use state::AuthState;

/// Failed logins allowed per account per window, whatever the client IP.
pub const LOGIN_FAILURES_MAX: u64 = 10;
pub const LOGIN_FAILURES_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Longer inputs cannot be a valid password: refuse them before paying for a hash.
const LOGIN_PASSWORD_MAX_BYTES: usize = 4 * password::MAX_CHARS;

/// Every (method, path) this function serves: the template's HTTP API, the cargo-lambda watch
/// router and the OpenAPI document are checked against this list by the test suite.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
];

/// The auth routes with their state, as `main` serves them on Lambda.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    Ok(router(AuthState::new(platform).await?))
}

pub fn router(state: AuthState) -> Router {
    Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh_session))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/logout-all", post(logout_all))
        .with_state(state)
}

#[derive(Deserialize)]
struct RegisterBody {
    email: String,
    password: String,
    name: String,
}

async fn register(
    State(state): State<AuthState>,
    Json(body): Json<RegisterBody>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let email = Email::parse(&body.email)
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok();
    let name = users::parse_name(&body.name)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let password = Password::parse(&body.password, &[body.email.trim(), body.name.trim()])
        .map_err(|err| errors.push(api::errors::password_field("password", &err)))
        .ok();
    let (Some(email), Some(name), Some(password)) = (email, name, password) else {
        return Err(ApiError::Validation(errors));
    };

    // Hash before taking a connection: the pool is small and hashing is slow.
    let hash = password::hash(password.expose()).await?;
    let mut conn = state.db.get().await?;
    let tx = conn.transaction().await?;
    let Some(user) = users::insert(&*tx, email.as_str(), &name, &hash).await? else {
        return Err(ApiError::conflict(
            "email_taken",
            "An account with this email already exists",
        ));
    };
    let refresh =
        refresh::start_family(&*tx, user.user.id, state.config.refresh_token_expires_in).await?;
    tx.commit().await?;
    session::respond(&state, StatusCode::CREATED, &user, &refresh)
}

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
}

async fn login(
    State(state): State<AuthState>,
    Json(body): Json<LoginBody>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    let failures_key = state.cache.key(&format!("login_fail:{email}"));
    ensure_account_not_locked(&state, &failures_key).await?;

    let user = {
        let conn = state.db.get().await?;
        users::find_by_email(&**conn, &email).await?
    };
    // An unknown email still pays for one verification, so both failures take the same time.
    let stored = user
        .as_ref()
        .map_or(password::DUMMY_HASH.as_str(), |u| u.password_hash.as_str());
    let password_ok = body.password.len() <= LOGIN_PASSWORD_MAX_BYTES
        && password::verify(&body.password, stored).await?;
    let Some(user) = user.filter(|_| password_ok) else {
        if let Err(err) = rate_limit::hit(&state.cache, &failures_key, LOGIN_FAILURES_WINDOW).await
        {
            tracing::warn!(error = %err, "redis unavailable: failed login not counted");
        }
        return Err(ApiError::InvalidCredentials);
    };

    let conn = state.db.get().await?;
    let refresh =
        refresh::start_family(&**conn, user.user.id, state.config.refresh_token_expires_in).await?;
    session::respond(&state, StatusCode::OK, &user, &refresh)
}

/// After too many failures on one account, refuse it for the rest of the window, whatever the
/// IP; a Redis outage lets logins through (they are still rate limited per IP when it returns).
async fn ensure_account_not_locked(state: &AuthState, key: &str) -> Result<(), ApiError> {
    let counted: redis::RedisResult<(Option<u64>, i64)> = state
        .cache
        .run(|mut conn| async move {
            redis::pipe()
                .get(key)
                .pttl(key)
                .query_async(&mut conn)
                .await
        })
        .await;
    match counted {
        Ok((Some(failures), ttl_ms)) if failures >= LOGIN_FAILURES_MAX => {
            Err(ApiError::TooManyRequests {
                retry_after_secs: u64::try_from(ttl_ms).unwrap_or(0).div_ceil(1000).max(1),
                detail: "Too many failed logins for this account, try again later".into(),
            })
        }
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::warn!(error = %err, "redis unavailable: per-account login limit skipped");
            Ok(())
        }
    }
}

#[derive(Deserialize, Default)]
struct RefreshBody {
    refresh_token: Option<String>,
}

async fn refresh_session(
    State(state): State<AuthState>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<RefreshBody>,
) -> Result<Response, ApiError> {
    let token = refresh_token_from(body.and_then(|b| b.refresh_token), &headers)
        .ok_or_else(|| ApiError::Unauthorized("A refresh token is required".into()))?;
    let mut conn = state.db.get().await?;
    let tx = conn.transaction().await?;
    let rotation = refresh::rotate(&*tx, &token, state.config.refresh_token_expires_in).await?;
    match rotation {
        refresh::Rotation::Rotated { user_id, next } => {
            let user = users::find_by_id(&*tx, user_id).await?.ok_or_else(|| {
                ApiError::Unauthorized("The refresh token is invalid or expired".into())
            })?;
            tx.commit().await?;
            session::respond(&state, StatusCode::OK, &user, &next)
        }
        refresh::Rotation::Reused => {
            // The family's revocation must stick even though the answer is an error.
            tx.commit().await?;
            tracing::warn!("a used refresh token was presented again: its family is revoked");
            Err(ApiError::Unauthorized(
                "The refresh token is invalid or expired".into(),
            ))
        }
        refresh::Rotation::Invalid => Err(ApiError::Unauthorized(
            "The refresh token is invalid or expired".into(),
        )),
    }
}

async fn logout(
    State(state): State<AuthState>,
    caller: AuthUser,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<RefreshBody>,
) -> Result<Response, ApiError> {
    let conn = state.db.get().await?;
    if let Some(token) = refresh_token_from(body.and_then(|b| b.refresh_token), &headers) {
        refresh::revoke_family_of(&**conn, &token, caller.id).await?;
    }
    revocation::deny(&state, &**conn, &caller.claims).await?;
    Ok((StatusCode::NO_CONTENT, clear_cookie()).into_response())
}

async fn logout_all(
    State(state): State<AuthState>,
    caller: AuthUser,
) -> Result<Response, ApiError> {
    let conn = state.db.get().await?;
    refresh::revoke_all(&**conn, caller.id, None).await?;
    // Committed on its own, so the cached generation never runs ahead of Postgres.
    revocation::bump_generation(&state, &**conn, caller.id).await?;
    Ok((StatusCode::NO_CONTENT, clear_cookie()).into_response())
}
