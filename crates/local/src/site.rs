//! The web client (`web/dist`) served beside the API by the local server, as CloudFront serves
//! it from S3 in a deployment: client routes (paths without a file extension) answer
//! `index.html`, hashed assets under `/assets/` are cached for good, `index.html` never without
//! revalidation, and everything carries the site's Content-Security-Policy.
//!
//! It never answers for the API: `/api`, `/api/*`, `/health` and `/ready` always reach the API
//! router, so a missing API route stays a problem+json 404. The Lambda functions never link this.

use std::{
    convert::Infallible,
    path::{Path, PathBuf},
};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile, fs::ServeFileSystemResponseBody};

/// Hashed file names change with their content, so a year is safe.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The entry page names the current assets: always revalidated.
pub const NO_CACHE: &str = "no-cache";

/// The site's policy: only its own scripts and styles, API calls to itself, and the direct
/// upload to the storage origin (`storage`, the presigned URLs' origin).
pub fn content_security_policy(storage: Option<&str>) -> String {
    let connect = match storage {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_owned(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         font-src 'self'; connect-src {connect}; manifest-src 'self'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    )
}

#[derive(Clone)]
struct Site {
    api: Router,
    dir: PathBuf,
    csp: HeaderValue,
}

/// Where the built client is: `WEB_DIST`, else `web/dist` here or in the repository, when it
/// has been built (`index.html` exists).
pub fn dist_dir() -> Option<PathBuf> {
    let candidates = match std::env::var_os("WEB_DIST") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            PathBuf::from("web/dist"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist"),
        ],
    };
    candidates
        .into_iter()
        .find(|dir| dir.join("index.html").is_file())
}

/// The API with the client in front of everything that is not the API's.
pub fn with_client(api: Router, dir: PathBuf, csp: &str) -> anyhow::Result<Router> {
    let csp = HeaderValue::from_str(csp)?;
    Ok(Router::new()
        .fallback(dispatch)
        .with_state(Site { api, dir, csp }))
}

/// The API's paths; everything else is the site's.
pub fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path == "/health" || path == "/ready"
}

/// A client route: the last segment names no file (no extension), so the client draws it.
pub fn is_client_route(path: &str) -> bool {
    !path.rsplit('/').next().unwrap_or_default().contains('.')
}

async fn dispatch(State(site): State<Site>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if is_api_path(&path) {
        return match site.api.oneshot(req).await {
            Ok(res) => res,
            Err(never) => match never {},
        };
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let (mut res, cache) = if is_client_route(&path) {
        let index = ServeFile::new(site.dir.join("index.html"));
        (serve(index.oneshot(req).await), NO_CACHE)
    } else {
        let cache = if path.starts_with("/assets/") {
            IMMUTABLE
        } else {
            NO_CACHE
        };
        (serve(ServeDir::new(&site.dir).oneshot(req).await), cache)
    };
    let found = res.status().is_success() || res.status() == StatusCode::NOT_MODIFIED;
    let headers = res.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if found { cache } else { NO_CACHE }),
    );
    // helmet's defaults beside the site's own policy, as the API's answers carry them.
    for (name, value) in http_kit::layers::HELMET_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, site.csp.clone());
    res
}

fn serve(res: Result<axum::http::Response<ServeFileSystemResponseBody>, Infallible>) -> Response {
    match res {
        Ok(res) => res.map(Body::new),
        Err(never) => match never {},
    }
}
