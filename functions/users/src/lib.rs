//! `/api/v1/users/me` (profile, password, account) and the admin listing `/api/v1/users`.
//!
//! Who may call what is decided by extractors (`AuthUser`, `AdminUser`, `SelfOrAdmin`), never
//! by checks inside handlers. Reads that must see the caller's own writes use the primary; the
//! admin listing tolerates lag and reads the replica.

use api::{AdminUser, AuthUser, SelfOrAdmin, pages};
use axum::{
    Json as JsonBody, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use domain::{
    accounts::{self as users, Credentials, Email, Password, User, guessing, password},
    files,
    sessions::{refresh, revocation},
};
use http_kit::{ApiError, FieldError, Json, Page, Pagination, Query, client_ip::ClientNetwork};
use platform::{Platform, storage::LazyS3};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};

/// What the users routes reach: the platform, the token keys, and S3 (deleting an account
/// deletes its files).
pub type UsersState = api::RouteState<LazyS3>;

/// The users group's routes, each declared once with its handler: the router and the OpenAPI
/// operations both come from here.
pub fn api() -> OpenApiRouter<UsersState> {
    OpenApiRouter::new()
        .routes(routes!(me, update_me, delete_me))
        .routes(routes!(change_password))
        .routes(routes!(list))
        .routes(routes!(show))
}

/// This group's part of the OpenAPI document.
pub fn openapi_part() -> OpenApi {
    let mut doc = api().into_openapi();
    doc.tags = Some(vec![
        utoipa::openapi::tag::TagBuilder::new()
            .name("users")
            .description(Some("The signed-in user, and users for admins."))
            .build(),
    ]);
    doc
}

/// The users routes with their state, as `main` serves them on Lambda.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    let s3 = LazyS3::new(platform.config.clone());
    Ok(router(UsersState::new(platform, s3)?))
}

pub fn router(state: UsersState) -> Router {
    // The routes of `api`, without building their OpenAPI operations (http_kit::declared).
    http_kit::declared_routes!(me, update_me, delete_me, change_password, list, show)
        .with_state(state)
}

/// The signed-in user
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "users",
    operation_id = "getMe",
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The signed-in user.", body = User),
        (status = 404, description = "The account no longer exists."),
    )
)]
async fn me(State(state): State<UsersState>, caller: AuthUser) -> Result<JsonBody<User>, ApiError> {
    users::cached_profile(&state, caller.id, caller.read_ahead.as_ref())
        .await?
        .map(JsonBody)
        .ok_or(ApiError::NotFound)
}

/// `name` and/or `email`; changing `email` requires `current_password`.
#[derive(Deserialize, ToSchema)]
struct UpdateMeRequest {
    #[schema(min_length = 1, max_length = 100)]
    name: Option<String>,
    #[schema(format = "email", max_length = 254)]
    email: Option<String>,
    current_password: Option<String>,
}

/// Change the signed-in user's name and/or email
///
/// Changing `email` requires `current_password`. An email that another account already uses
/// answers 409.
#[utoipa::path(
    patch,
    path = "/api/v1/users/me",
    tag = "users",
    operation_id = "updateMe",
    request_body = UpdateMeRequest,
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The updated user.", body = User),
        (status = 404, description = "The account no longer exists."),
        (status = 409, description = "Another account already uses this email (`email_taken`)."),
    )
)]
async fn update_me(
    State(state): State<UsersState>,
    caller: AuthUser,
    network: ClientNetwork,
    Json(body): Json<UpdateMeRequest>,
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
        check_password(&state, &network, given, &current).await?;
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

#[derive(Deserialize, ToSchema)]
struct ChangePasswordRequest {
    current_password: String,
    /// 12 to 128 characters, no composition rules; weak passwords are refused with 422.
    #[schema(min_length = 12, max_length = 128)]
    new_password: String,
}

/// Change the signed-in user's password
///
/// Ends every session of the user, this one included: every refresh family and every access
/// token, as a logout-all does. The user signs in again with the new password.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/password",
    tag = "users",
    operation_id = "changePassword",
    request_body = ChangePasswordRequest,
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "The password was changed."),
        (status = 404, description = "The account no longer exists."),
    )
)]
async fn change_password(
    State(state): State<UsersState>,
    caller: AuthUser,
    network: ClientNetwork,
    Json(body): Json<ChangePasswordRequest>,
) -> Result<Response, ApiError> {
    let current = current_user(&state, caller.id).await?;
    let hints = [current.user.email.as_str(), current.user.name.as_str()];
    let new_password = Password::parse(&body.new_password, &hints)
        .map_err(|err| api::errors::password("new_password", &err))?;
    check_password(&state, &network, &body.current_password, &current).await?;
    let hash = password::hash(&state.hashing, new_password.expose()).await?;
    let mut conn = state.db.get().await?;
    let tx = conn.transaction().await?;
    users::update_password(&*tx, caller.id, &hash).await?;
    refresh::revoke_all(&*tx, caller.id).await?;
    tx.commit().await?;
    revocation::bump_generation(&state, &**conn, caller.id).await?;
    users::invalidate_profile(&state, caller.id).await;
    tracing::info!(audit = "password_changed", user_id = %caller.id, "audit: password changed");
    // The session is over: the browser may forget its refresh cookie.
    Ok((StatusCode::NO_CONTENT, api::cookie::clear_refresh()).into_response())
}

#[derive(Deserialize, ToSchema)]
struct DeleteMeRequest {
    current_password: String,
}

/// Delete the signed-in user's account
///
/// Its files, sessions and tokens go with it.
#[utoipa::path(
    delete,
    path = "/api/v1/users/me",
    tag = "users",
    operation_id = "deleteMe",
    request_body = DeleteMeRequest,
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "The account and its sessions are gone."),
        (status = 404, description = "The account no longer exists."),
    )
)]
async fn delete_me(
    State(state): State<UsersState>,
    caller: AuthUser,
    network: ClientNetwork,
    Json(body): Json<DeleteMeRequest>,
) -> Result<Response, ApiError> {
    let current = current_user(&state, caller.id).await?;
    check_password(&state, &network, &body.current_password, &current).await?;
    // Files first: if S3 fails, the account stays whole and the user can try again.
    files::delete_user_objects(
        state.s3.client().await,
        &state.config.uploads_bucket,
        caller.id,
    )
    .await
    .map_err(ApiError::Unavailable)?;
    // One statement: the user's rows in every other table go with it (ON DELETE CASCADE).
    let conn = state.db.get().await?;
    users::delete(&**conn, caller.id).await?;
    // Outstanding tokens die with the user: the revocation check finds no one.
    revocation::forget_user(&state, caller.id).await;
    users::invalidate_profile(&state, caller.id).await;
    tracing::info!(audit = "account_deleted", user_id = %caller.id, "audit: account deleted");
    Ok((StatusCode::NO_CONTENT, api::cookie::clear_refresh()).into_response())
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
/// The check counts against the account's guessing limit, as a login does (a stolen access
/// token must not become a way to guess the password).
async fn check_password(
    state: &UsersState,
    network: &ClientNetwork,
    given: &str,
    current: &Credentials,
) -> Result<(), ApiError> {
    let attempt = guessing::begin(&state.cache, &current.user.email, &network.0)
        .await
        .map_err(|locked| {
            api::errors::locked(
                &locked,
                "Too many wrong passwords for this account, try again later",
            )
        })?;
    if password::verify(&state.hashing, given, &current.password_hash).await? {
        attempt.succeeded(&state.cache).await;
        Ok(())
    } else {
        Err(ApiError::field("current_password", "is incorrect"))
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EmailFilter {
    /// Only users whose email starts with this prefix (case-insensitive), at most 254 bytes.
    #[param(max_length = 254)]
    email: Option<String>,
}

/// List users (admin)
///
/// Only for role `admin`; other users get 403.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    operation_id = "listUsers",
    params(Pagination, EmailFilter),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page of users, ordered stably.", body = Page<User>),
        (status = 403, description = "The caller is not an admin."),
    )
)]
async fn list(
    State(state): State<UsersState>,
    admin: AdminUser,
    page: Pagination,
    Query(filter): Query<EmailFilter>,
) -> Result<JsonBody<Page<User>>, ApiError> {
    let prefix = filter
        .email
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty());
    if prefix.is_some_and(|p| p.len() > Email::MAX_BYTES) {
        return Err(ApiError::query_field("email", "must be at most 254 bytes"));
    }
    // The listing tolerates replica lag: it reads the read pool.
    let conn = state.db_read.get().await?;
    let after = page.cursor.map(pages::position);
    let (items, next) = users::list(&**conn, after, prefix, page.limit).await?;
    // Who looked at the user list, not what they searched for (an email prefix is personal).
    tracing::info!(
        audit = "users_listed",
        user_id = %admin.id,
        filtered = prefix.is_some(),
        "audit: admin listed users"
    );
    Ok(JsonBody(Page::new(items, next.map(pages::cursor))))
}

/// One user (admin, or the user itself)
///
/// Anyone else gets 403, whether or not the id exists.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    operation_id = "getUser",
    params(("id" = uuid::Uuid, Path, description = "The user's id.")),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The user.", body = User),
        (status = 403, description = "The caller is neither an admin nor this user."),
        (status = 404, description = "No such user (for an admin)."),
    )
)]
async fn show(
    State(state): State<UsersState>,
    access: SelfOrAdmin,
) -> Result<JsonBody<User>, ApiError> {
    users::cached_profile(&state, access.target, None)
        .await?
        .map(JsonBody)
        .ok_or(ApiError::NotFound)
}
