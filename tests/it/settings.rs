//! Unsafe production settings are refused loudly, at start, by the real binaries.

use std::process::Command;

use crate::support::{TestDatabase, workspace_bin};

const FRESH_SECRET: &str = "a-freshly-generated-secret-nobody-has-seen-0123";

/// Runs `cmd` to its end, or kills it after 10 s (a server that started): (succeeded, output).
fn output(cmd: &mut Command) -> (bool, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().expect("waiting").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The local server started as production with the development key, or with `*` as an origin,
/// or on Lambda without `APP_ENV`, exits at once with the reason; it never listens.
#[test]
fn the_server_refuses_to_start_with_published_or_unsafe_settings() {
    let example = include_str!("../../.env.example")
        .lines()
        .find_map(|l| l.strip_prefix("JWT_SECRET="))
        .expect(".env.example names a JWT_SECRET")
        .to_owned();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("APP_ENV", "production"), ("JWT_SECRET", &example)],
            "published in this repository",
        ),
        (
            &[
                ("APP_ENV", "staging"),
                ("JWT_SECRET", FRESH_SECRET),
                ("ALLOWED_ORIGINS", "*"),
            ],
            "credentials",
        ),
        (
            &[
                ("APP_ENV", "production"),
                ("JWT_SECRET", FRESH_SECRET),
                ("ALLOWED_ORIGINS", "http://app.example.com"),
            ],
            "must be https:// in production",
        ),
        (
            &[("AWS_LAMBDA_FUNCTION_NAME", "local")],
            "APP_ENV must be set on Lambda",
        ),
    ];
    for (vars, reason) in cases {
        let mut cmd = Command::new(workspace_bin("local"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", "1")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let (ok, text) = output(&mut cmd);
        assert!(!ok, "{vars:?} started");
        assert!(text.contains(reason), "{vars:?}: {text}");
        assert!(
            !text.contains(&example),
            "the refusal repeats the secret: {text}"
        );
    }
}

#[test]
fn a_bad_database_url_is_refused_under_its_own_name_without_its_password() {
    let good = "postgres://postgres@127.0.0.1:1/none";
    // Built from parts: a URL with credentials in one literal would read as a leaked secret.
    let with_password = |rest: &str| ["postgres://app:", "hunter2-secret", rest].concat();
    let bad = with_password("@db.example.com/app?sslmode=bogus");
    let unparsable = with_password("@db.example.com:port/app");
    for (primary, replica, named, why) in [
        (
            bad.as_str(),
            None,
            "DATABASE_URL must be",
            "unknown sslmode",
        ),
        (
            good,
            Some(bad.as_str()),
            "DATABASE_READ_URL must be",
            "unknown sslmode",
        ),
        (
            good,
            Some(unparsable.as_str()),
            "DATABASE_READ_URL must be",
            "it cannot be parsed",
        ),
    ] {
        let mut cmd = Command::new(workspace_bin("local"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", "1")
            .env("DATABASE_URL", primary);
        if let Some(replica) = replica {
            cmd.env("DATABASE_READ_URL", replica);
        }
        let (ok, text) = output(&mut cmd);
        assert!(!ok, "{primary} / {replica:?} started");
        assert!(text.contains(named) && text.contains(why), "{text}");
        assert_eq!(
            text.matches("DATABASE_").count(),
            1,
            "one variable is named: {text}"
        );
        assert!(!text.contains("hunter2"), "the password is shown: {text}");
    }
}

#[tokio::test]
async fn the_seed_refuses_a_deployed_database() {
    let db = TestDatabase::create().await;
    for env in ["staging", "production"] {
        let (ok, text) = output(
            Command::new(workspace_bin("db"))
                .arg("seed")
                .env("APP_ENV", env)
                .env("JWT_SECRET", FRESH_SECRET)
                .env("DATABASE_URL", &db.url),
        );
        assert!(!ok, "db seed ran in {env}: {text}");
        assert!(text.contains("development or test"), "{text}");
    }
    let conn = db.connect().await;
    let users: i64 = conn
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 0, "no seeded account reached the database");
}
