//! `POST /api/v1/auth/{register,login,refresh,logout,logout-all}`.

mod session;

use api::AuthUser;
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use domain::{
    accounts::{self as users, Email, Password, guessing, password},
    sessions::{refresh, revocation},
};
use http_kit::{ApiError, FieldError, Json, OptionalJson, client_ip::ClientNetwork};
use platform::Platform;
use serde::Deserialize;
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

pub use session::REFRESH_COOKIE;
use session::{TokenResponse, clear_cookie, refresh_token_from};
/// What the auth routes reach: the platform and the token keys; no S3.
pub type AuthState = api::RouteState;

/// Longer inputs cannot be a valid password: refuse them before paying for a hash.
const LOGIN_PASSWORD_MAX_BYTES: usize = 4 * password::MAX_CHARS;

/// The auth group's routes, each declared once with its handler: the router and the OpenAPI
/// operations both come from here.
pub fn api() -> OpenApiRouter<AuthState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh_session))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
}

/// This group's part of the OpenAPI document.
pub fn openapi_part() -> OpenApi {
    let mut doc = api().into_openapi();
    doc.tags = Some(vec![
        utoipa::openapi::tag::TagBuilder::new()
            .name("auth")
            .description(Some("Registration, sign-in and session tokens."))
            .build(),
    ]);
    doc
}

/// The auth routes with their state, as `main` serves them on Lambda.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    // No S3 client: auth stores no files.
    Ok(router(AuthState::new(platform, ())?))
}

pub fn router(state: AuthState) -> Router {
    // The routes of `api`, without building their OpenAPI operations (http_kit::declared).
    http_kit::declared_routes!(register, login, refresh_session, logout, logout_all)
        .with_state(state)
}

#[derive(Deserialize, ToSchema)]
struct RegisterRequest {
    #[schema(format = "email", max_length = 254)]
    email: String,
    /// 12 to 128 characters, no composition rules; weak passwords are refused with 422.
    #[schema(min_length = 12, max_length = 128)]
    password: String,
    #[schema(min_length = 1, max_length = 100)]
    name: String,
}

/// Create an account and sign in
///
/// Creates a user with role `user` and answers with a fresh token pair. An email that is
/// already registered answers 409.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    operation_id = "register",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account was created. The refresh token is also set as a cookie.", body = TokenResponse, headers(("Set-Cookie" = String, description = "The refresh token: `refresh_token=<token>; Max-Age=<refresh_expires_in>; HttpOnly; Secure; SameSite=Strict; Path=/api/v1/auth`."))),
        (status = 409, description = "An account with this email already exists (`email_taken`)."),
    )
)]
async fn register(
    State(state): State<AuthState>,
    network: ClientNetwork,
    Json(body): Json<RegisterRequest>,
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
    let hash = password::hash(&state.hashing, password.expose()).await?;
    let mut conn = state.db.get().await?;
    let tx = conn.transaction().await?;
    let Some(user) = users::insert(&*tx, email.as_str(), &name, &hash).await? else {
        return Err(ApiError::conflict(
            "email_taken",
            "An account with this email already exists",
        ));
    };
    let refresh = refresh::start_family(
        &*tx,
        user.user.id,
        refresh::Lifetimes::from_config(&state.config),
    )
    .await?;
    tx.commit().await?;
    // The network an account was created from is its owner's.
    guessing::remember_network(&state.cache, &user.user.email, &network.0).await;
    session::respond(&state, StatusCode::CREATED, &user, &refresh)
}

#[derive(Deserialize, ToSchema)]
struct LoginRequest {
    email: String,
    password: String,
}

/// Sign in with email and password
///
/// A wrong email or password answers 401 with code `invalid_credentials`, the same for both.
/// Failed logins are rate limited per account as well as per client IP.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    operation_id = "login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in. The refresh token is also set as a cookie.", body = TokenResponse, headers(("Set-Cookie" = String, description = "The refresh token, as on register."))),
        (status = 401, description = "The email or password is incorrect (`invalid_credentials`)."),
    )
)]
async fn login(
    State(state): State<AuthState>,
    network: ClientNetwork,
    Json(body): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    // No address is longer: refuse before any key or query is built from it.
    if email.len() > Email::MAX_BYTES {
        return Err(ApiError::field("email", "must be at most 254 bytes"));
    }
    // The slot is taken before the check, so a burst cannot run more checks than the limit.
    let attempt = guessing::begin(&state.cache, &email, &network.0)
        .await
        .map_err(|locked| {
            api::errors::locked(
                &locked,
                "Too many failed logins for this account, try again later",
            )
        })?;

    let user = {
        let conn = state.db.get().await?;
        users::find_by_email(&**conn, &email).await?
    };
    // An unknown email still pays for one verification, so both failures take the same time.
    let stored = match &user {
        Some(u) => u.password_hash.as_str(),
        None => password::dummy_hash(&state.hashing).await?,
    };
    let password_ok = body.password.len() <= LOGIN_PASSWORD_MAX_BYTES
        && password::verify(&state.hashing, &body.password, stored).await?;
    // The account when there is one; never the address that was typed.
    let user_id = user.as_ref().map(|u| u.user.id.to_string());
    let Some(user) = user.filter(|_| password_ok) else {
        tracing::info!(
            audit = "login_failed",
            user_id = user_id.as_deref().unwrap_or("unknown"),
            "audit: login failed"
        );
        return Err(ApiError::InvalidCredentials);
    };
    attempt.succeeded(&state.cache).await;

    let conn = state.db.get().await?;
    let refresh = refresh::start_family(
        &**conn,
        user.user.id,
        refresh::Lifetimes::from_config(&state.config),
    )
    .await?;
    tracing::info!(audit = "login_succeeded", user_id = %user.user.id, "audit: login succeeded");
    session::respond(&state, StatusCode::OK, &user, &refresh)
}

/// The refresh token in the body. Without a body, or with `refresh_token` absent or empty, the
/// `refresh_token` cookie is used.
#[derive(Deserialize, Default, ToSchema)]
struct RefreshRequest {
    refresh_token: Option<String>,
}

/// Rotate the refresh token
///
/// Takes the refresh token from the body's `refresh_token` or, when the body is absent, from
/// the `refresh_token` cookie. Refresh tokens are rotated on every use; presenting an
/// already-used refresh token revokes its whole family and answers 401.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    request_body(content = Option<RefreshRequest>),
    security((), ("refreshCookie" = [])),
    responses(
        (status = 200, description = "A new token pair. The new refresh token is also set as a cookie; the presented one is now used.", body = TokenResponse, headers(("Set-Cookie" = String, description = "The new refresh token, as on register."))),
        (status = 401, description = "No refresh token, or one that is invalid, expired, revoked or already used."),
    )
)]
async fn refresh_session(
    State(state): State<AuthState>,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    let token = refresh_token_from(body.and_then(|b| b.refresh_token), &headers)
        .ok_or_else(|| ApiError::Unauthorized("A refresh token is required".into()))?;
    let mut conn = state.db.get().await?;
    let tx = conn.transaction().await?;
    let rotation =
        refresh::rotate(&*tx, &token, refresh::Lifetimes::from_config(&state.config)).await?;
    match rotation {
        refresh::Rotation::Rotated { user_id, next } => {
            let user = users::find_by_id(&*tx, user_id).await?.ok_or_else(|| {
                ApiError::Unauthorized("The refresh token is invalid or expired".into())
            })?;
            tx.commit().await?;
            session::respond(&state, StatusCode::OK, &user, &next)
        }
        refresh::Rotation::Reused { user_id, family_id } => {
            // The family's revocation must stick even though the answer is an error.
            tx.commit().await?;
            // A replayed token means that two parties hold this session, and whoever rotated it
            // last holds an access token of it: the session's access tokens end with it (its
            // id is the family's). The user's other sessions are left alone.
            revocation::deny_session(&state, &**conn, user_id, family_id).await?;
            tracing::warn!(
                audit = "refresh_token_reused",
                %user_id,
                "audit: a used refresh token was presented again; its session is revoked"
            );
            Err(ApiError::Unauthorized(
                "The refresh token is invalid or expired".into(),
            ))
        }
        refresh::Rotation::Invalid => Err(ApiError::Unauthorized(
            "The refresh token is invalid or expired".into(),
        )),
    }
}

/// Sign out of this session
///
/// The refresh token may be given in the body, as the `refresh_token` cookie, or not at all.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    request_body(content = Option<RefreshRequest>),
    security(("bearerAuth" = [], "refreshCookie" = []), ("bearerAuth" = [])),
    responses(
        (status = 204, description = "Signed out: the session's refresh tokens and the current access token are unusable from now on, and the refresh cookie is cleared.", headers(("Set-Cookie" = String, description = "Clears the `refresh_token` cookie (`Max-Age=0`)."))),
    )
)]
async fn logout(
    State(state): State<AuthState>,
    caller: AuthUser,
    headers: HeaderMap,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> Result<Response, ApiError> {
    let mut conn = state.db.get().await?;
    let tx = conn.transaction().await?;
    // The session the access token belongs to ends whether or not its refresh token is sent.
    if let Some(sid) = caller.claims.sid {
        refresh::revoke_session(&*tx, caller.id, sid).await?;
    }
    if let Some(token) = refresh_token_from(body.and_then(|b| b.refresh_token), &headers) {
        refresh::revoke_family_of(&*tx, &token, caller.id).await?;
    }
    tx.commit().await?;
    revocation::deny(&state, &**conn, &caller.claims).await?;
    tracing::info!(audit = "logout", user_id = %caller.id, "audit: logout");
    Ok((StatusCode::NO_CONTENT, clear_cookie()).into_response())
}

/// Sign out of every session
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout-all",
    tag = "auth",
    operation_id = "logoutAll",
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "Every refresh token of the user and the current access token are unusable from now on, and the refresh cookie is cleared.", headers(("Set-Cookie" = String, description = "Clears the `refresh_token` cookie (`Max-Age=0`)."))),
    )
)]
async fn logout_all(
    State(state): State<AuthState>,
    caller: AuthUser,
) -> Result<Response, ApiError> {
    let mut conn = state.db.get().await?;
    let tx = conn.transaction().await?;
    refresh::revoke_all(&*tx, caller.id).await?;
    tx.commit().await?;
    // Committed on its own, so the cached generation never runs ahead of Postgres.
    revocation::bump_generation(&state, &**conn, caller.id).await?;
    tracing::info!(audit = "logout_all", user_id = %caller.id, "audit: logout from every session");
    Ok((StatusCode::NO_CONTENT, clear_cookie()).into_response())
}
