//! `/api/v1/uploads`: user files in S3 through presigned URLs.
//!
//! The API never carries file bytes. A client declares a file, PUTs it straight to S3 with the
//! presigned URL (bound to the declared type and length, valid 15 minutes), then calls
//! `complete`, which checks the object with HeadObject before marking it ready. Downloads are
//! presigned GETs valid 5 minutes, always as an attachment.

mod filename;

use std::{collections::BTreeMap, time::Duration};

use api::{AuthUser, pages};
use aws_sdk_s3::presigning::PresigningConfig;
use axum::{
    Json as JsonBody, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::files::{self as uploads, Upload};
use http_kit::{ApiError, Created, FieldError, Json, Page, Pagination, PathId};
use platform::{Platform, storage::LazyS3};
use serde::{Deserialize, Serialize};
use utoipa::{ToSchema, openapi::OpenApi};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub use filename::sanitize as sanitize_filename;
/// What the uploads routes reach: the platform, the token keys and S3.
pub type UploadsState = api::RouteState<LazyS3>;

pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
pub const DOWNLOAD_URL_LIFETIME: Duration = Duration::from_secs(5 * 60);
pub use domain::files::ABANDONED_AFTER;

/// The uploads group's routes, each declared once with its handler: the router and the OpenAPI
/// operations both come from here.
pub fn api() -> OpenApiRouter<UploadsState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, remove))
        .routes(routes!(complete))
}

/// This group's part of the OpenAPI document.
pub fn openapi_part() -> OpenApi {
    let mut doc = api().into_openapi();
    doc.tags = Some(vec![
        utoipa::openapi::tag::TagBuilder::new()
            .name("uploads")
            .description(Some("File uploads straight to S3 through presigned URLs."))
            .build(),
    ]);
    doc
}

/// The uploads routes with their state, as `main` serves them on Lambda.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    let s3 = LazyS3::new(platform.config.clone());
    Ok(router(UploadsState::new(platform, s3)?))
}

pub fn router(state: UploadsState) -> Router {
    // The routes of `api`, without building their OpenAPI operations (http_kit::declared).
    http_kit::declared_routes!(create, list, show, remove, complete).with_state(state)
}

#[derive(Deserialize, ToSchema)]
struct CreateUploadRequest {
    /// Stored cleaned of path separators and control characters, and cut to 255 bytes.
    #[schema(min_length = 1)]
    filename: String,
    /// The MIME type the file will be PUT with; one of `UPLOAD_CONTENT_TYPES`.
    #[schema(min_length = 1, example = "image/png")]
    content_type: String,
    /// Size in bytes, at most `MAX_UPLOAD_BYTES`. Read as any JSON value so that a wrong one is
    /// a 422 naming `size`, whatever its type.
    #[schema(value_type = i64, minimum = 1)]
    size: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
struct CreatedUpload {
    id: Uuid,
    /// Presigned S3 URL.
    #[schema(format = "uri")]
    upload_url: String,
    #[schema(value_type = String, example = "PUT")]
    method: &'static str,
    /// Headers the PUT request must carry, such as `Content-Type`.
    headers: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    #[schema(format = DateTime)]
    expires_at: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn s3_unavailable(err: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Unavailable(anyhow::Error::new(err).context("calling S3"))
}

/// Declare a file and get a presigned upload URL
///
/// PUT the file to `upload_url` with `headers` within 15 minutes, then call `complete`.
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    tag = "uploads",
    operation_id = "createUpload",
    request_body = CreateUploadRequest,
    security(("bearerAuth" = [])),
    responses((status = 201, description = "The upload is declared (status `pending`).", body = CreatedUpload))
)]
async fn create(
    State(state): State<UploadsState>,
    caller: AuthUser,
    Json(body): Json<CreateUploadRequest>,
) -> Result<Created<CreatedUpload>, ApiError> {
    let config = &state.config;
    let mut errors = Vec::new();
    if body.filename.trim().is_empty() {
        errors.push(FieldError::new("filename", "is required"));
    }
    let name = filename::sanitize(&body.filename);
    let content_type = body
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if !config.upload_content_types.contains(&content_type) {
        errors.push(FieldError::new(
            "content_type",
            format!("must be one of: {}", config.upload_content_types.join(", ")),
        ));
    }
    let size = match body.size.as_u64() {
        Some(0) | None => {
            errors.push(FieldError::new(
                "size",
                "must be a positive whole number of bytes",
            ));
            0
        }
        Some(n) if n > config.max_upload_bytes => {
            errors.push(FieldError::new(
                "size",
                format!("must be at most {} bytes", config.max_upload_bytes),
            ));
            0
        }
        Some(n) => n,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let size = i64::try_from(size).map_err(|_| ApiError::field("size", "is too large"))?;

    let id = Uuid::now_v7();
    let key = uploads::object_key(caller.id, id);
    let presigning = PresigningConfig::expires_in(UPLOAD_URL_LIFETIME)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    // Presigning is local computation: no call to S3 happens here.
    let presigned = state
        .s3
        .client()
        .await
        .put_object()
        .bucket(&config.uploads_bucket)
        .key(&key)
        .content_type(&content_type)
        .content_length(size)
        .presigned(presigning)
        .await
        .map_err(|e| ApiError::Unexpected(anyhow::Error::new(e).context("presigning an upload")))?;
    let conn = state.db.get().await?;
    uploads::insert(&**conn, id, caller.id, &name, &content_type, size).await?;

    let mut headers: BTreeMap<String, String> = presigned
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    headers.insert("Content-Type".into(), content_type);
    headers.insert("Content-Length".into(), size.to_string());
    headers.remove("content-type");
    headers.remove("content-length");
    let expires = Utc::now() + chrono::Duration::from_std(UPLOAD_URL_LIFETIME).unwrap_or_default();
    Ok(Created(CreatedUpload {
        id,
        upload_url: presigned.uri().to_owned(),
        method: "PUT",
        headers,
        expires_at: rfc3339(expires),
    }))
}

async fn owned(state: &UploadsState, id: Uuid, caller: &AuthUser) -> Result<Upload, ApiError> {
    let conn = state.db.get().await?;
    uploads::find_owned(&**conn, id, caller.id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Mark an upload ready once its file is in S3
///
/// Checks the stored object's size and type against the declaration.
#[utoipa::path(
    post,
    path = "/api/v1/uploads/{id}/complete",
    tag = "uploads",
    operation_id = "completeUpload",
    params(("id" = Uuid, Path, description = "The upload's id.")),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The upload, now `ready` (completing twice is fine).", body = Upload),
        (status = 404, description = "No such upload of the caller's."),
        (status = 409, description = "The file is not in S3 yet (`upload_missing`), or differs from the declaration (`upload_mismatch`)."),
    )
)]
async fn complete(
    State(state): State<UploadsState>,
    caller: AuthUser,
    PathId(id): PathId<Uuid>,
) -> Result<JsonBody<Upload>, ApiError> {
    let upload = owned(&state, id, &caller).await?;
    if upload.status == "ready" {
        return Ok(JsonBody(upload));
    }
    let head = state
        .s3
        .client()
        .await
        .head_object()
        .bucket(&state.config.uploads_bucket)
        .key(&upload.object_key)
        .send()
        .await;
    let head = match head {
        Ok(head) => head,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
            return Err(ApiError::conflict(
                "upload_missing",
                "The file has not been uploaded yet",
            ));
        }
        Err(err) => return Err(s3_unavailable(err)),
    };
    if head.content_length() != Some(upload.size) {
        return Err(ApiError::conflict(
            "upload_mismatch",
            format!(
                "The uploaded file is {} bytes, not the declared {}",
                head.content_length().unwrap_or(0),
                upload.size
            ),
        ));
    }
    let stored_type = head
        .content_type()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if stored_type != upload.content_type {
        return Err(ApiError::conflict(
            "upload_mismatch",
            format!(
                "The uploaded file is {stored_type:?}, not the declared {:?}",
                upload.content_type
            ),
        ));
    }
    let conn = state.db.get().await?;
    let ready = uploads::mark_ready(&**conn, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(JsonBody(ready))
}

#[derive(Serialize, ToSchema)]
struct UploadView {
    #[serde(flatten)]
    upload: Upload,
    /// Presigned S3 URL, valid 5 minutes; only once the upload is ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    download_url: Option<String>,
    /// When `download_url` stops working; present with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    download_expires_at: Option<String>,
}

/// One upload, with a download URL once it is ready
#[utoipa::path(
    get,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    operation_id = "getUpload",
    params(("id" = Uuid, Path, description = "The upload's id.")),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The upload.", body = UploadView),
        (status = 404, description = "No such upload of the caller's."),
    )
)]
async fn show(
    State(state): State<UploadsState>,
    caller: AuthUser,
    PathId(id): PathId<Uuid>,
) -> Result<JsonBody<UploadView>, ApiError> {
    let upload = owned(&state, id, &caller).await?;
    if upload.status != "ready" {
        return Ok(JsonBody(UploadView {
            upload,
            download_url: None,
            download_expires_at: None,
        }));
    }
    let presigning = PresigningConfig::expires_in(DOWNLOAD_URL_LIFETIME)
        .map_err(|e| ApiError::Unexpected(e.into()))?;
    let presigned = state
        .s3
        .client()
        .await
        .get_object()
        .bucket(&state.config.uploads_bucket)
        .key(&upload.object_key)
        .response_content_disposition(filename::content_disposition(&upload.filename))
        .presigned(presigning)
        .await
        .map_err(|e| {
            ApiError::Unexpected(anyhow::Error::new(e).context("presigning a download"))
        })?;
    let expires =
        Utc::now() + chrono::Duration::from_std(DOWNLOAD_URL_LIFETIME).unwrap_or_default();
    Ok(JsonBody(UploadView {
        upload,
        download_url: Some(presigned.uri().to_owned()),
        download_expires_at: Some(rfc3339(expires)),
    }))
}

/// Delete an upload and its file
///
/// Removes the object, then the row; an S3 failure keeps the row, so nothing is left
/// half-deleted. Only the owner may: anyone else's upload, like one that does not exist (or
/// no longer does), is a 404, as for `GET`, so the answer tells nothing about other users.
#[utoipa::path(
    delete,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    operation_id = "deleteUpload",
    params(("id" = Uuid, Path, description = "The upload's id.")),
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "The upload and its file are gone."),
        (status = 404, description = "No such upload of the caller's."),
    )
)]
async fn remove(
    State(state): State<UploadsState>,
    caller: AuthUser,
    PathId(id): PathId<Uuid>,
) -> Result<Response, ApiError> {
    let conn = state.db.get().await?;
    let upload = uploads::find_owned(&**conn, id, caller.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state
        .s3
        .client()
        .await
        .delete_object()
        .bucket(&state.config.uploads_bucket)
        .key(&upload.object_key)
        .send()
        .await
        .map_err(s3_unavailable)?;
    // A deletion running at the same time may have removed the row first: then this one found
    // nothing to delete, as it would have a moment later.
    if !uploads::delete(&**conn, id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The caller's uploads, newest first
#[utoipa::path(
    get,
    path = "/api/v1/uploads",
    tag = "uploads",
    operation_id = "listUploads",
    params(Pagination),
    security(("bearerAuth" = [])),
    responses((status = 200, description = "A page of the caller's uploads.", body = Page<Upload>))
)]
async fn list(
    State(state): State<UploadsState>,
    caller: AuthUser,
    page: Pagination,
) -> Result<JsonBody<Page<Upload>>, ApiError> {
    let conn = state.db.get().await?;
    let before = page.cursor.map(pages::position);
    let (items, next) = uploads::list(&**conn, caller.id, before, page.limit).await?;
    Ok(JsonBody(Page::new(items, next.map(pages::cursor))))
}
