//! Configuration from Secrets Manager (moto), and a password rotation survived without a restart.

use std::collections::HashMap;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use platform::Platform;
use secrecy::SecretString;
use serde_json::json;

use crate::support::{
    TestApp, moto,
    throwaway::{PgOptions, TestCa, ThrowawayPostgres},
};

async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    moto::ensure_running().await;
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto::ENDPOINT)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .http_client(platform::aws::http_client())
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    value: &serde_json::Value,
) -> String {
    let name = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let out = client
        .create_secret()
        .name(&name)
        .secret_string(value.to_string())
        .send()
        .await
        .expect("create secret");
    out.arn().expect("arn").to_owned()
}

fn lookup(
    vars: HashMap<&'static str, String>,
) -> impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static {
    move |name: &str| vars.get(name).cloned()
}

const JWT: &str = "secret-from-secrets-manager-0123456789abcdef";

struct Fixture {
    pg: ThrowawayPostgres,
    client: aws_sdk_secretsmanager::Client,
    db_arn: String,
    vars: HashMap<&'static str, String>,
}

const ORIGIN_VERIFY: &str = "origin-verify-value-from-the-app-secret";

async fn fixture() -> Fixture {
    let pg = ThrowawayPostgres::start(&PgOptions::default());
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'first-password'");
    let client = secrets_client().await;
    let db_arn = create_secret(
        &client,
        &json!({"username": "app", "password": "first-password", "host": "127.0.0.1", "port": pg.port, "dbname": "postgres", "engine": "postgres"}),
    )
    .await;
    let app_arn = create_secret(
        &client,
        &json!({"JWT_SECRET": JWT, "RATE_LIMIT_MAX": "1000", "ORIGIN_VERIFY_SECRET": ORIGIN_VERIFY}),
    )
    .await;
    let vars = HashMap::from([
        ("APP_ENV", "production".to_owned()),
        (
            "DATABASE_URL",
            format!("postgres://placeholder@127.0.0.1:{}/postgres", pg.port),
        ),
        ("DATABASE_SECRET_ARN", db_arn.clone()),
        ("APP_SECRET_ARN", app_arn),
        ("AWS_ENDPOINT_URL", moto::ENDPOINT.to_owned()),
        ("REDIS_URL", crate::support::redis_url()),
        ("REDIS_KEY_PREFIX", crate::support::fresh_key_prefix("test")),
    ]);
    Fixture {
        pg,
        client,
        db_arn,
        vars,
    }
}

async fn health(state: &Platform) -> u16 {
    let res = crate::support::send_to(
        &local::app(state).await.expect("routes"),
        // As CloudFront sends it: production refuses requests without it.
        crate::support::request(http::Method::GET, "/health")
            .header("x-origin-verify", ORIGIN_VERIFY)
            .body(axum::body::Body::empty())
            .expect("req"),
    )
    .await;
    res.status.as_u16()
}

#[tokio::test]
async fn settings_and_database_credentials_come_from_secrets_manager() {
    let f = fixture().await;
    let (config, refresh) = platform::secrets::load(lookup(f.vars.clone()))
        .await
        .expect("config loads");
    assert_eq!(config.rate_limit_max, 1000, "settings from the app secret");
    let expected_kid = domain::sessions::tokens::key_id(&SecretString::from(JWT.to_owned()));
    let state = Platform::with_refresh(config, refresh)
        .await
        .expect("state");
    let tokens =
        domain::sessions::TokenKeys::from_config(state.config.clone()).expect("token keys");
    let token = tokens.issue(uuid::Uuid::new_v4(), 0, None).expect("token");
    let header = jsonwebtoken::decode_header(&token.token).expect("header");
    assert_eq!(
        header.kid.as_deref(),
        Some(expected_kid.as_str()),
        "signed with the secret's JWT key"
    );
    assert_eq!(
        health(&state).await,
        200,
        "connected with the secret's credentials"
    );
    assert!(
        !format!("{:?}", state.config).contains("first-password"),
        "secrets never print"
    );
}

#[tokio::test]
async fn a_rotated_password_is_picked_up_without_a_restart() {
    let f = fixture().await;
    let (config, refresh) = platform::secrets::load(lookup(f.vars.clone()))
        .await
        .expect("config loads");
    let rotating = Platform::with_refresh(config.clone(), refresh)
        .await
        .expect("state");
    let stuck = Platform::new(config)
        .await
        .expect("state without a refresh");
    assert_eq!(health(&rotating).await, 200);
    assert_eq!(health(&stuck).await, 200);

    // What a rotation does: a new password in Postgres and in the secret, old sessions gone.
    f.pg.psql("ALTER ROLE app PASSWORD 'second-password'");
    f.client
        .put_secret_value()
        .secret_id(&f.db_arn)
        .secret_string(
            json!({"username": "app", "password": "second-password", "host": "127.0.0.1", "port": f.pg.port, "dbname": "postgres"})
                .to_string(),
        )
        .send()
        .await
        .expect("rotate the secret");
    f.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'");

    assert_eq!(
        health(&rotating).await,
        200,
        "the pool re-read the secret and reconnected"
    );
    assert_eq!(
        health(&stuck).await,
        503,
        "without re-reading, the old password is refused"
    );
}

#[tokio::test]
async fn secrets_manager_unreachable_at_cold_start_fails_with_one_clear_line() {
    let mut vars = HashMap::from([
        ("APP_SECRET_ARN", APP_SECRET_ARN.to_owned()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:1".to_owned()),
    ]);
    let line = start_up_error(vars.clone()).await;
    assert!(
        line.contains("APP_SECRET_ARN") && !line.contains('\n'),
        "{line}"
    );

    vars.insert(
        "DATABASE_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:db".to_owned(),
    );
    vars.remove("APP_SECRET_ARN");
    assert!(start_up_error(vars).await.contains("DATABASE_SECRET_ARN"));
}

#[tokio::test]
async fn an_endpoint_the_sdk_cannot_send_to_is_named_at_cold_start() {
    let line = start_up_error(HashMap::from([
        ("APP_SECRET_ARN", APP_SECRET_ARN.to_owned()),
        (
            "AWS_ENDPOINT_URL",
            "http://bücher.localhost:5000".to_owned(),
        ),
    ]))
    .await;
    assert!(
        line.contains("AWS_ENDPOINT_URL must be") && !line.contains("APP_SECRET_ARN"),
        "{line}"
    );
}

const APP_SECRET_ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app";

/// The one line that stops a cold start with these variables.
async fn start_up_error(vars: HashMap<&'static str, String>) -> String {
    let err = platform::secrets::load(lookup(vars))
        .await
        .err()
        .expect("start-up must fail");
    format!("{err:#}")
}

#[tokio::test]
async fn without_secret_arns_the_environment_is_used_as_is() {
    let app = TestApp::spawn().await;
    let vars = HashMap::from([
        ("DATABASE_URL", app.db.url.clone()),
        ("RATE_LIMIT_MAX", "7".to_owned()),
    ]);
    let (config, _) = platform::secrets::load(lookup(vars)).await.expect("config");
    assert_eq!(config.rate_limit_max, 7);
}

/// An HTTPS server (openssl s_server) with a certificate of a private CA, stopped on drop.
struct Impostor(std::process::Child);

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The SDK's connections check the service's certificate: an endpoint whose certificate chains
/// to no public root (an impostor on the path) is refused at the handshake, before the request,
/// with its credentials' signature, is sent.
#[tokio::test]
async fn an_endpoint_whose_certificate_no_public_root_signed_is_refused() {
    let ca = TestCa::new();
    let (cert, key) = ca.server_cert("impostor", "127.0.0.1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let _server = Impostor(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not listen"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let config = platform::aws::sdk_config(
        Some(&format!("https://127.0.0.1:{port}")),
        Some("us-east-1".into()),
        std::time::Duration::from_secs(5),
    )
    .await;
    let err = aws_sdk_secretsmanager::Client::new(&config)
        .get_secret_value()
        .secret_id("app")
        .send()
        .await
        .expect_err("an untrusted certificate must not be accepted");
    let chain = format!(
        "{}",
        aws_sdk_secretsmanager::error::DisplayErrorContext(&err)
    );
    assert!(chain.contains("UnknownIssuer"), "{chain}");
}
