//! `/api/v1/uploads`: user files in S3 through presigned URLs.
//!
//! The API never carries file bytes. A client declares a file, PUTs it straight to S3 with the
//! presigned URL (bound to the declared type and length, valid 15 minutes), then calls
//! `complete`, which checks the object with HeadObject before marking it ready. Downloads are
//! presigned GETs valid 5 minutes, always as an attachment.

mod filename;
mod state;

use std::{collections::BTreeMap, time::Duration};

use api::{AuthUser, pages};
use aws_sdk_s3::presigning::PresigningConfig;
use axum::{
    Json as JsonBody, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::files::{self as uploads, Upload};
use http_kit::{ApiError, Created, FieldError, Json, Page, Pagination, PathId};
use platform::Platform;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use filename::sanitize as sanitize_filename;
pub use state::UploadsState;

pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
pub const DOWNLOAD_URL_LIFETIME: Duration = Duration::from_secs(5 * 60);
pub use domain::files::ABANDONED_AFTER;

/// Every (method, path) this function serves: the template's HTTP API, the cargo-lambda watch
/// router and the OpenAPI document are checked against this list by the test suite.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/uploads"),
    ("GET", "/api/v1/uploads"),
    ("GET", "/api/v1/uploads/{id}"),
    ("DELETE", "/api/v1/uploads/{id}"),
    ("POST", "/api/v1/uploads/{id}/complete"),
];

/// The uploads routes with their state, as `main` serves them on Lambda.
pub async fn routes(platform: Platform) -> anyhow::Result<Router> {
    Ok(router(UploadsState::new(platform).await?))
}

pub fn router(state: UploadsState) -> Router {
    Router::new()
        .route("/api/v1/uploads", post(create).get(list))
        .route("/api/v1/uploads/{id}", get(show).delete(remove))
        .route("/api/v1/uploads/{id}/complete", post(complete))
        .with_state(state)
}

#[derive(Deserialize)]
struct CreateUpload {
    filename: String,
    content_type: String,
    size: serde_json::Value,
}

#[derive(Serialize)]
struct CreatedUpload {
    id: Uuid,
    upload_url: String,
    method: &'static str,
    headers: BTreeMap<String, String>,
    expires_at: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn s3_unavailable(err: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Unavailable(anyhow::Error::new(err).context("calling S3"))
}

async fn create(
    State(state): State<UploadsState>,
    caller: AuthUser,
    Json(body): Json<CreateUpload>,
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

#[derive(Serialize)]
struct UploadView {
    #[serde(flatten)]
    upload: Upload,
    #[serde(skip_serializing_if = "Option::is_none")]
    download_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    download_expires_at: Option<String>,
}

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

/// Removes the object, then the row. Deleting what is already gone is fine (204); an S3
/// failure keeps the row, so nothing is left half-deleted.
async fn remove(
    State(state): State<UploadsState>,
    caller: AuthUser,
    PathId(id): PathId<Uuid>,
) -> Result<Response, ApiError> {
    let conn = state.db.get().await?;
    if let Some(upload) = uploads::find_owned(&**conn, id, caller.id).await? {
        state
            .s3
            .delete_object()
            .bucket(&state.config.uploads_bucket)
            .key(&upload.object_key)
            .send()
            .await
            .map_err(s3_unavailable)?;
        uploads::delete(&**conn, id).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

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
