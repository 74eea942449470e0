//! `/api/v1/users/me` (profile, password, account) and the admin listing `/api/v1/users`.
//!
//! Who may call what is decided by extractors (`AuthUser`, `AdminUser`, `SelfOrAdmin`), never
//! by checks inside handlers. Reads that must see the caller's own writes use the primary; the
//! admin listing tolerates lag and reads the replica.

use api::{AdminUser, AuthUser, SelfOrAdmin, pages};
use axum::{
    Json as JsonBody, Router,
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, put},
};
use domain::{
    accounts::{self as users, Credentials, Email, Password, User, password},
    files,
    sessions::{refresh, revocation},
};
use http_kit::{ApiError, FieldError, Json, Page, Pagination};
use platform::Platform;
use serde::Deserialize;

mod state;
pub use state::UsersState;

/// Every (method, path) this function serves: the template's HTTP API, the cargo-lambda watch
/// router and the OpenAPI document are checked against this list by the test suite.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/users/me"),
    ("PATCH", "/api/v1/users/me"),
    ("DELETE", "/api/v1/users/me"),
    ("PUT", "/api/v1/users/me/password"),
    ("GET", "/api/v1/users"),
    ("GET", "/api/v1/users/{id}"),
];

/// The users routes with their state, as `main` serves them on Lambda.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    Ok(router(UsersState::new(platform).await?))
}

pub fn router(state: UsersState) -> Router {
    Router::new()
        .route(
            "/api/v1/users/me",
            get(me).patch(update_me).delete(delete_me),
        )
        .route("/api/v1/users/me/password", put(change_password))
        .route("/api/v1/users", get(list))
        .route("/api/v1/users/{id}", get(show))
        .with_state(state)
}

async fn me(State(state): State<UsersState>, caller: AuthUser) -> Result<JsonBody<User>, ApiError> {
    users::cached_profile(&state, caller.id)
        .await?
        .map(JsonBody)
        .ok_or(ApiError::NotFound)
}

#[derive(Deserialize)]
struct UpdateMe {
    name: Option<String>,
    email: Option<String>,
    current_password: Option<String>,
}

async fn update_me(
    State(state): State<UsersState>,
    caller: AuthUser,
    Json(body): Json<UpdateMe>,
) -> Result<JsonBody<User>, ApiError> {
    if body.name.is_none() && body.email.is_none() {
        return Err(ApiError::Validation(vec![FieldError::new(
            "name",
            "name or email is required",
        )]));
    }
    let mut errors = Vec::new();
    let name = body
        .name
        .as_deref()
        .map(users::parse_name)
        .transpose()
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok()
        .flatten();
    let email = body
        .email
        .as_deref()
        .map(Email::parse)
        .transpose()
        .map_err(|m| errors.push(FieldError::new("email", m)))
        .ok()
        .flatten();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }

    let current = current_user(&state, caller.id).await?;
    let email = email.filter(|e| e.as_str() != current.user.email);
    if email.is_some() {
        // Changing the sign-in identity needs the password, not just a (possibly stolen) token.
        let given = body.current_password.as_deref().unwrap_or_default();
        if given.is_empty() {
            return Err(ApiError::field(
                "current_password",
                "is required to change the email",
            ));
        }
        check_password(given, &current).await?;
    }
    let conn = state.db.get().await?;
    let updated = users::update_profile(
        &**conn,
        caller.id,
        name.as_deref(),
        email.as_ref().map(Email::as_str),
    )
    .await?
    .map_err(|users::EmailTaken| {
        ApiError::conflict("email_taken", "An account with this email already exists")
    })?
    .ok_or(ApiError::NotFound)?;
    users::invalidate_profile(&state, caller.id).await;
    Ok(JsonBody(updated))
}

#[derive(Deserialize)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Changes the password and ends every other session: all refresh families but the caller's,
/// and every access token (the caller refreshes to get a new one).
async fn change_password(
    State(state): State<UsersState>,
    caller: AuthUser,
    Json(body): Json<ChangePassword>,
) -> Result<Response, ApiError> {
    let current = current_user(&state, caller.id).await?;
    let hints = [current.user.email.as_str(), current.user.name.as_str()];
    let new_password = Password::parse(&body.new_password, &hints)
        .map_err(|err| api::errors::password("new_password", &err))?;
    check_password(&body.current_password, &current).await?;
    let hash = password::hash(new_password.expose()).await?;
    let conn = state.db.get().await?;
    users::update_password(&**conn, caller.id, &hash).await?;
    refresh::revoke_all(&**conn, caller.id, caller.claims.sid).await?;
    revocation::bump_generation(&state, &**conn, caller.id).await?;
    users::invalidate_profile(&state, caller.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct DeleteMe {
    current_password: String,
}

async fn delete_me(
    State(state): State<UsersState>,
    caller: AuthUser,
    Json(body): Json<DeleteMe>,
) -> Result<Response, ApiError> {
    let current = current_user(&state, caller.id).await?;
    check_password(&body.current_password, &current).await?;
    // Files first: if S3 fails, the account stays whole and the user can try again.
    files::delete_user_objects(&state.s3, &state.config.uploads_bucket, caller.id)
        .await
        .map_err(ApiError::Unavailable)?;
    // One statement: the user's rows in every other table go with it (ON DELETE CASCADE).
    let conn = state.db.get().await?;
    users::delete(&**conn, caller.id).await?;
    // Outstanding tokens die with the user: the revocation check finds no one.
    revocation::forget_user(&state, caller.id).await;
    users::invalidate_profile(&state, caller.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's row from the primary. The connection goes back to the (small) pool before any
/// password hashing or S3 call, which take far longer than the query.
async fn current_user(state: &UsersState, id: uuid::Uuid) -> Result<Credentials, ApiError> {
    let conn = state.db.get().await?;
    users::find_by_id(&**conn, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A wrong current password is a 422 on that field, not a 401: the session itself is fine.
async fn check_password(given: &str, current: &Credentials) -> Result<(), ApiError> {
    if password::verify(given, &current.password_hash).await? {
        Ok(())
    } else {
        Err(ApiError::field("current_password", "is incorrect"))
    }
}

#[derive(Deserialize)]
struct EmailFilter {
    email: Option<String>,
}

async fn list(
    State(state): State<UsersState>,
    _admin: AdminUser,
    page: Pagination,
    Query(filter): Query<EmailFilter>,
) -> Result<JsonBody<Page<User>>, ApiError> {
    let prefix = filter
        .email
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    // The listing tolerates replica lag: it reads the read pool.
    let conn = state.db_read.get().await?;
    let after = page.cursor.map(pages::position);
    let (items, next) = users::list(&**conn, after, prefix, page.limit).await?;
    Ok(JsonBody(Page::new(items, next.map(pages::cursor))))
}

async fn show(
    State(state): State<UsersState>,
    access: SelfOrAdmin,
) -> Result<JsonBody<User>, ApiError> {
    users::cached_profile(&state, access.target)
        .await?
        .map(JsonBody)
        .ok_or(ApiError::NotFound)
}
