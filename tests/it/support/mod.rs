// Helpers shared by every test module; not each module uses each helper.
#![allow(dead_code)]

//! What every integration test stands on: a fresh database cloned from a migrated template
//! (milliseconds instead of a migration run), Redis keys isolated by a per-test prefix, and the
//! real router called in-process.

pub mod database;
pub mod moto;
pub mod proxy;
pub mod runtime_api;
pub mod sigv4;
pub mod throwaway;

use std::{collections::HashMap, net::SocketAddr};

use axum::{Router, body::Body, extract::ConnectInfo};
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use http_kit::Problem;
use platform::{Platform, config::Config, storage::S3};
use serde_json::Value;
use tower::ServiceExt;

pub use database::TestDatabase;

pub const REDIS_URL_DEFAULT: &str = "redis://127.0.0.1:6379";

/// A server that accepts connections and never answers a byte: a hung dependency (a frozen
/// node, a black-holed route), as opposed to one that refuses connections.
pub async fn hung_listener() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| REDIS_URL_DEFAULT.into())
}

/// A `REDIS_KEY_PREFIX` no other process uses: rate-limit counts, caches and deny entries that
/// other tests or a benchmark leave on the shared Redis are never seen.
pub fn fresh_key_prefix(label: &str) -> String {
    format!("{label}:{}:", uuid::Uuid::new_v4().simple())
}

pub struct TestApp {
    pub state: Platform,
    /// The uploads and users functions' S3 client.
    pub s3: S3,
    pub db: TestDatabase,
    pub router: Router,
    pub peer: SocketAddr,
}

/// Settings for a test app; anything not given takes the test defaults.
#[derive(Default)]
pub struct Settings(pub HashMap<String, String>);

impl Settings {
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.into(), value.into());
        self
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Settings::default()).await
    }

    pub async fn spawn_with(settings: Settings) -> Self {
        let db = TestDatabase::create().await;
        let prefix = fresh_key_prefix("test");
        let mut vars: HashMap<String, String> = HashMap::from([
            ("APP_ENV".into(), "test".into()),
            ("DATABASE_URL".into(), db.url.clone()),
            ("REDIS_URL".into(), redis_url()),
            ("REDIS_KEY_PREFIX".into(), prefix),
            (
                "JWT_SECRET".into(),
                "test-secret-that-is-long-enough-0123456789".into(),
            ),
            (
                "ALLOWED_ORIGINS".into(),
                "http://localhost:5173,https://app.example.com".into(),
            ),
            ("DB_POOL_MAX".into(), "4".into()),
            ("AWS_ENDPOINT_URL".into(), moto::ENDPOINT.into()),
            (
                "UPLOADS_BUCKET".into(),
                format!("uploads-{}", uuid::Uuid::new_v4().simple()),
            ),
        ]);
        vars.extend(settings.0);
        let config =
            Config::from_lookup(|name| vars.get(name).cloned()).expect("test config is valid");
        let state = Platform::new(config).await.expect("state builds");
        let router = local::app(&state).await.expect("routes build");
        let s3 = platform::storage::s3_client(&state.config).await;
        Self {
            state,
            s3,
            db,
            router,
            peer: "127.0.0.1:40000".parse().expect("addr"),
        }
    }

    /// The router of a second instance of the app: the same database and Redis key prefix, with
    /// the settings `change` makes, as another Lambda instance would run.
    pub async fn another_instance(&self, change: impl FnOnce(&mut Config)) -> Router {
        let mut config = (*self.state.config).clone();
        config.db_pool_max = 1;
        change(&mut config);
        let state = Platform::new(config).await.expect("state builds");
        local::app(&state).await.expect("routes build")
    }

    /// Sends a request through the real router, as the local server would (with a peer address).
    pub async fn send(&self, mut req: Request<Body>) -> TestResponse {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        send_to(&self.router, req).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.send(
            request(Method::GET, path)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> TestResponse {
        let req = request(Method::GET, path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        self.send(req).await
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> TestResponse {
        let mut builder = request(method, path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(builder.body(Body::from(body.to_string())).expect("request"))
            .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        self.json(Method::POST, path, body, None).await
    }

    /// Starts moto if needed and creates this test's uploads bucket.
    pub async fn with_bucket(self) -> Self {
        moto::ensure_running().await;
        self.s3
            .create_bucket()
            .bucket(&self.state.config.uploads_bucket)
            .send()
            .await
            .expect("creating the bucket");
        self
    }

    /// A Redis connection and this test's key prefix.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis is running (start it as .ci/run does)")
    }
}

pub fn request(method: Method, path: &str) -> http::request::Builder {
    Request::builder().method(method).uri(path)
}

pub async fn send_to(router: &Router, req: Request<Body>) -> TestResponse {
    let res = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router is infallible");
    TestResponse::read(res).await
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl TestResponse {
    /// Asserts the answer tells the browser to forget the refresh cookie.
    pub fn assert_refresh_cookie_cleared(&self) {
        let cleared = self
            .header("set-cookie")
            .expect("the refresh cookie is cleared");
        assert!(
            cleared.starts_with("refresh_token=;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
    }

    pub async fn read<B>(res: http::Response<B>) -> Self
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = res.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The problem+json body; fails the test when the response is not one.
    pub fn problem(&self) -> Problem {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "expected a problem+json body, got {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let problem: Problem = serde_json::from_slice(&self.body).expect("problem body");
        assert_eq!(
            problem.status,
            self.status.as_u16(),
            "problem status matches the HTTP status"
        );
        problem
    }
}

/// A registered user and the session that registration opened.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

pub const STRONG_PASSWORD: &str = "violet-canyon-drifts-47";

impl TestApp {
    /// Registers `email` through the API and returns its session.
    pub async fn register(&self, email: &str) -> Session {
        let res = self
            .post_json(
                "/api/v1/auth/register",
                &serde_json::json!({"email": email, "password": STRONG_PASSWORD, "name": "Test User"}),
            )
            .await;
        assert_eq!(
            res.status,
            201,
            "register {email}: {}",
            String::from_utf8_lossy(&res.body)
        );
        let body = res.json();
        Session {
            id: body["user"]["id"].as_str().expect("id").to_owned(),
            email: email.to_owned(),
            password: STRONG_PASSWORD.to_owned(),
            access_token: body["access_token"].as_str().expect("access").to_owned(),
            refresh_token: body["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// Makes `session`'s user an admin, as an operator would in SQL, and drops the cached
    /// profile so that the next request sees the role.
    pub async fn promote(&self, session: &Session) {
        let conn = self.db.connect().await;
        conn.execute(
            "UPDATE users SET role = 'admin' WHERE email = $1",
            &[&session.email],
        )
        .await
        .expect("promote");
        domain::accounts::invalidate_profile(&self.state, session.id.parse().expect("uuid")).await;
    }

    pub async fn login(&self, email: &str, password: &str) -> TestResponse {
        self.post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"email": email, "password": password}),
        )
        .await
    }

    /// Logs out the session of `access_token` (an empty body: only the access token is denied).
    pub async fn logout(&self, access_token: &str) -> TestResponse {
        self.json(
            Method::POST,
            "/api/v1/auth/logout",
            &serde_json::json!({}),
            Some(access_token),
        )
        .await
    }

    /// Sends a request from `ip`, the socket peer as the local server sees it.
    pub async fn send_from(&self, ip: &str, mut req: Request<Body>) -> TestResponse {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip.parse().expect("ip"), 40000)));
        send_to(&self.router, req).await
    }
}

/// The repository's root: this package lives in its `tests/` folder.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A binary of another workspace package (`db`, `local`), built beside this test binary:
/// `scripts/test.sh` builds them first, since cargo only hands a package's own binaries to its
/// tests. The test binary lives in `target/<profile>/deps/`, the binaries one folder up.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>/deps/<test binary>");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --bin {name}` (scripts/test.sh does)",
        bin.display()
    );
    bin
}
