//! Uploads against the moto S3 server and real Postgres: bytes really go up and come back.

use http::Method;
use serde_json::{Value, json};

use crate::support::{STRONG_PASSWORD, Session, Settings, TestApp};

async fn declare(
    app: &TestApp,
    who: &Session,
    filename: &str,
    content_type: &str,
    size: usize,
) -> crate::support::TestResponse {
    app.json(
        Method::POST,
        "/api/v1/uploads",
        &json!({"filename": filename, "content_type": content_type, "size": size}),
        Some(&who.access_token),
    )
    .await
}

/// PUTs `bytes` to the presigned URL with the headers the API asked for (optionally overridden).
async fn put(created: &Value, bytes: &[u8], content_type: Option<&str>) -> u16 {
    let client = reqwest::Client::new();
    let mut req = client
        .put(created["upload_url"].as_str().expect("url"))
        .body(bytes.to_vec());
    for (name, value) in created["headers"].as_object().expect("headers") {
        if name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let value = value.as_str().expect("header value");
        let value = if name.eq_ignore_ascii_case("content-type") {
            content_type.unwrap_or(value)
        } else {
            value
        };
        req = req.header(name.as_str(), value);
    }
    req.send().await.expect("PUT to S3").status().as_u16()
}

async fn complete(app: &TestApp, who: &Session, id: &str) -> crate::support::TestResponse {
    app.json(
        Method::POST,
        &format!("/api/v1/uploads/{id}/complete"),
        &json!({}),
        Some(&who.access_token),
    )
    .await
}

#[tokio::test]
async fn a_file_goes_up_through_the_presigned_url_and_comes_back_byte_for_byte() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let res = declare(&app, &ana, "holiday photo.png", "image/png", bytes.len()).await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let created = res.json();
    assert_eq!(created["method"], "PUT");
    assert_eq!(created["headers"]["Content-Type"], "image/png");
    assert_eq!(
        created["headers"]["Content-Length"],
        bytes.len().to_string()
    );
    let expires =
        chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().expect("expires"))
            .expect("rfc3339");
    let minutes = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_minutes();
    assert!((14..=15).contains(&minutes), "{minutes}");
    let id = created["id"].as_str().expect("id").to_owned();
    let url = created["upload_url"].as_str().expect("url");
    assert!(
        url.contains(&format!("uploads/{}/{id}", ana.id)),
        "the key is ours, never the filename: {url}"
    );

    let pending = app
        .get_with_token(&format!("/api/v1/uploads/{id}"), &ana.access_token)
        .await
        .json();
    assert_eq!(pending["status"], "pending");
    assert!(pending.get("download_url").is_none());

    assert_eq!(put(&created, &bytes, None).await, 200);
    let res = complete(&app, &ana, &id).await;
    assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    assert_eq!(res.json()["status"], "ready");

    let shown = app
        .get_with_token(&format!("/api/v1/uploads/{id}"), &ana.access_token)
        .await
        .json();
    assert_eq!(shown["filename"], "holiday photo.png");
    assert_eq!(shown["size"], bytes.len());
    assert_eq!(shown["content_type"], "image/png");
    let download_url = shown["download_url"].as_str().expect("download url");
    // The signed URL makes S3 answer with an attachment disposition (moto does not echo it back,
    // so the signed parameter is what can be checked here).
    let url = reqwest::Url::parse(download_url).expect("url");
    let disposition = url
        .query_pairs()
        .find(|(k, _)| k == "response-content-disposition")
        .map(|(_, v)| v.into_owned())
        .expect("a signed content disposition");
    assert!(
        disposition.starts_with("attachment;") && disposition.contains("holiday photo.png"),
        "{disposition}"
    );
    let download = reqwest::get(download_url).await.expect("GET from S3");
    assert_eq!(download.status().as_u16(), 200);
    assert_eq!(
        download.bytes().await.expect("body").as_ref(),
        bytes.as_slice(),
        "byte for byte"
    );
    let expires = chrono::DateTime::parse_from_rfc3339(
        shown["download_expires_at"].as_str().expect("expires"),
    )
    .expect("rfc3339");
    assert!((expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds() <= 300);
}

#[tokio::test]
async fn a_wrong_size_or_type_is_refused_at_complete() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;

    let created = declare(&app, &ana, "a.txt", "text/plain", 10).await.json();
    assert_eq!(put(&created, b"short", None).await, 200);
    let res = complete(&app, &ana, created["id"].as_str().expect("id")).await;
    assert_eq!(res.status, 409);
    assert_eq!(res.problem().code, "upload_mismatch");

    let created = declare(&app, &ana, "b.png", "image/png", 4).await.json();
    assert_eq!(put(&created, b"text", Some("text/plain")).await, 200);
    let res = complete(&app, &ana, created["id"].as_str().expect("id")).await;
    assert_eq!(res.status, 409);
    assert_eq!(res.problem().code, "upload_mismatch");
    let shown = app
        .get_with_token(
            &format!("/api/v1/uploads/{}", created["id"].as_str().expect("id")),
            &ana.access_token,
        )
        .await;
    assert_eq!(
        shown.json()["status"],
        "pending",
        "a refused upload is not marked ready"
    );

    let never = declare(&app, &ana, "c.pdf", "application/pdf", 3)
        .await
        .json();
    let res = complete(&app, &ana, never["id"].as_str().expect("id")).await;
    assert_eq!(res.status, 409);
    assert_eq!(res.problem().code, "upload_missing");
}

#[tokio::test]
async fn another_users_upload_is_a_404() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let ben = app.register("ben@example.com").await;
    let created = declare(&app, &ana, "mine.txt", "text/plain", 2)
        .await
        .json();
    assert_eq!(put(&created, b"hi", None).await, 200);
    let id = created["id"].as_str().expect("id");
    assert_eq!(complete(&app, &ben, id).await.status, 404);
    assert_eq!(
        app.get_with_token(&format!("/api/v1/uploads/{id}"), &ben.access_token)
            .await
            .status,
        404
    );
    let res = app
        .json(
            Method::DELETE,
            &format!("/api/v1/uploads/{id}"),
            &json!({}),
            Some(&ben.access_token),
        )
        .await;
    assert_eq!(res.status, 404, "nothing of Ben's to delete");
    assert_eq!(res.problem().code, "not_found");
    assert_eq!(
        complete(&app, &ana, id).await.status,
        200,
        "Ana's upload is untouched"
    );
    let listed = app
        .get_with_token("/api/v1/uploads", &ben.access_token)
        .await
        .json();
    assert_eq!(listed["items"].as_array().expect("items").len(), 0);
}

#[tokio::test]
async fn oversized_and_disallowed_declarations_are_422() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let res = declare(&app, &ana, "big.png", "image/png", 10 * 1024 * 1024 + 1).await;
    assert_eq!(res.status, 422);
    assert_eq!(res.problem().errors.expect("errors")[0].field, "size");
    let res = declare(&app, &ana, "ok.png", "image/png", 10 * 1024 * 1024).await;
    assert_eq!(res.status, 201, "exactly the limit is fine");
    let res = declare(&app, &ana, "run.exe", "application/x-msdownload", 100).await;
    assert_eq!(res.status, 422);
    assert_eq!(
        res.problem().errors.expect("errors")[0].field,
        "content_type"
    );
    let res = declare(&app, &ana, "page.html", "text/html", 100).await;
    assert_eq!(res.status, 422);
    let res = declare(&app, &ana, "empty.txt", "text/plain", 0).await;
    assert_eq!(res.status, 422);
    let res = app
        .json(
            Method::POST,
            "/api/v1/uploads",
            &json!({"filename": "x.txt", "content_type": "text/plain", "size": -5}),
            Some(&ana.access_token),
        )
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(
        app.post_json(
            "/api/v1/uploads",
            &json!({"filename": "x", "content_type": "text/plain", "size": 1})
        )
        .await
        .status,
        401
    );
}

#[tokio::test]
async fn path_traversal_and_unicode_filenames_are_sanitized() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    for (given, stored) in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("résumé 2024.pdf", "résumé 2024.pdf"),
        ("写真\u{202e}gnp.png", "写真gnp.png"),
        ("a\nb\rc.txt", "abc.txt"),
    ] {
        let created = declare(&app, &ana, given, "text/plain", 1).await.json();
        let id = created["id"].as_str().expect("id");
        assert!(
            !created["upload_url"]
                .as_str()
                .expect("url")
                .contains("passwd")
        );
        let shown = app
            .get_with_token(&format!("/api/v1/uploads/{id}"), &ana.access_token)
            .await
            .json();
        assert_eq!(shown["filename"], stored, "{given:?}");
    }
}

#[tokio::test]
async fn a_deleted_upload_loses_its_object_and_is_then_not_found() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let created = declare(&app, &ana, "gone.txt", "text/plain", 4)
        .await
        .json();
    assert_eq!(put(&created, b"bye!", None).await, 200);
    let id = created["id"].as_str().expect("id");
    assert_eq!(complete(&app, &ana, id).await.status, 200);
    let key = format!("uploads/{}/{id}", ana.id);
    head_object(&app, &key)
        .await
        .expect("the object is there before the delete");
    // Once gone, it is not found, as for `GET`.
    for expected in [204, 404] {
        let res = app
            .json(
                Method::DELETE,
                &format!("/api/v1/uploads/{id}"),
                &json!({}),
                Some(&ana.access_token),
            )
            .await;
        assert_eq!(res.status, expected);
    }
    assert_eq!(
        app.get_with_token(&format!("/api/v1/uploads/{id}"), &ana.access_token)
            .await
            .status,
        404
    );
    let err = head_object(&app, &key)
        .await
        .expect_err("the object is gone");
    assert!(
        err.is_not_found(),
        "S3 answers 404 Not Found for the key, not another error: {err:?}"
    );
}

/// Two deletions of one upload at once: one deletes it, the other finds it gone, as it would
/// have a moment later. Never two successes for one deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_deletions_at_once_exactly_one_succeeds() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("racing-deletes@example.com").await;
    for round in 0..20 {
        let created = declare(&app, &ana, "twice.txt", "text/plain", 4)
            .await
            .json();
        let path = format!("/api/v1/uploads/{}", created["id"].as_str().expect("id"));
        let empty = json!({});
        let delete = || app.json(Method::DELETE, &path, &empty, Some(&ana.access_token));
        let (a, b) = tokio::join!(delete(), delete());
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [204, 404], "round {round}");
    }
}

/// HEAD of one key in the test's bucket; the error is S3's own answer (a network or
/// credentials failure is an unhandled error, never `NotFound`).
async fn head_object(
    app: &TestApp,
    key: &str,
) -> Result<
    aws_sdk_s3::operation::head_object::HeadObjectOutput,
    aws_sdk_s3::operation::head_object::HeadObjectError,
> {
    app.s3
        .head_object()
        .bucket(&app.state.config.uploads_bucket)
        .key(key)
        .send()
        .await
        .map_err(aws_sdk_s3::error::SdkError::into_service_error)
}

#[tokio::test]
async fn the_list_is_paginated_newest_first() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            declare(&app, &ana, &format!("f{i}.txt"), "text/plain", 1)
                .await
                .json()["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let first = app
        .get_with_token("/api/v1/uploads?limit=3", &ana.access_token)
        .await
        .json();
    let cursor = first["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let second = app
        .get_with_token(
            &format!("/api/v1/uploads?limit=3&cursor={cursor}"),
            &ana.access_token,
        )
        .await
        .json();
    assert!(second["next_cursor"].is_null());
    let seen: Vec<String> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .chain(second["items"].as_array().expect("items"))
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    ids.reverse();
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn s3_unreachable_is_a_503_and_leaves_postgres_as_it_was() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let created = declare(&app, &ana, "a.txt", "text/plain", 2).await.json();
    assert_eq!(put(&created, b"ok", None).await, 200);
    let id = created["id"].as_str().expect("id").to_owned();

    let broken = TestApp::spawn_with(
        Settings::default()
            .set("DATABASE_URL", &app.db.url)
            .set("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .set("UPLOADS_BUCKET", &app.state.config.uploads_bucket),
    )
    .await;
    let res = complete(&broken, &ana, &id).await;
    assert_eq!(res.status, 503);
    assert_eq!(res.problem().code, "service_unavailable");
    let res = broken
        .json(
            Method::DELETE,
            &format!("/api/v1/uploads/{id}"),
            &json!({}),
            Some(&ana.access_token),
        )
        .await;
    assert_eq!(res.status, 503);
    let res = broken
        .json(
            Method::DELETE,
            "/api/v1/users/me",
            &json!({"current_password": STRONG_PASSWORD}),
            Some(&ana.access_token),
        )
        .await;
    assert_eq!(
        res.status, 503,
        "the account is kept when its files cannot be removed"
    );

    let conn = app.db.connect().await;
    let row = conn
        .query_one(
            "SELECT status FROM uploads WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .expect("row still there");
    assert_eq!(row.get::<_, String>(0), "pending");
    let users: i64 = conn
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 1);
    assert_eq!(
        complete(&app, &ana, &id).await.status,
        200,
        "it completes once S3 is back"
    );
}

#[tokio::test]
async fn deleting_the_account_removes_its_objects() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let ben = app.register("ben@example.com").await;
    for who in [&ana, &ben] {
        let created = declare(&app, who, "keep.txt", "text/plain", 3).await.json();
        assert_eq!(put(&created, b"abc", None).await, 200);
    }
    let list = |prefix: String| {
        let s3 = app.s3.clone();
        let bucket = app.state.config.uploads_bucket.clone();
        async move {
            s3.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .send()
                .await
                .expect("list")
                .key_count()
                .unwrap_or(0)
        }
    };
    assert_eq!(
        list(format!("uploads/{}/", ana.id)).await,
        1,
        "the listing sees Ana's file before the deletion"
    );
    let res = app
        .json(
            Method::DELETE,
            "/api/v1/users/me",
            &json!({"current_password": STRONG_PASSWORD}),
            Some(&ana.access_token),
        )
        .await;
    assert_eq!(res.status, 204);
    assert_eq!(list(format!("uploads/{}/", ana.id)).await, 0);
    assert_eq!(
        list(format!("uploads/{}/", ben.id)).await,
        1,
        "other users' files stay"
    );
}

#[tokio::test]
async fn abandoned_uploads_are_cleaned_up() {
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let abandoned = declare(&app, &ana, "old.txt", "text/plain", 3).await.json();
    assert_eq!(put(&abandoned, b"old", None).await, 200);
    let done = declare(&app, &ana, "done.txt", "text/plain", 3)
        .await
        .json();
    assert_eq!(put(&done, b"new", None).await, 200);
    assert_eq!(
        complete(&app, &ana, done["id"].as_str().expect("id"))
            .await
            .status,
        200
    );
    let conn = app.db.connect().await;
    conn.execute(
        "UPDATE uploads SET created_at = now() - interval '2 days'",
        &[],
    )
    .await
    .expect("age");

    let removed = domain::files::clean_up_abandoned(
        &**conn,
        &app.s3,
        &app.state.config.uploads_bucket,
        uploads::ABANDONED_AFTER,
    )
    .await
    .expect("cleanup");
    assert_eq!(removed, 1);
    let old_id = abandoned["id"].as_str().expect("id");
    assert_eq!(
        app.get_with_token(&format!("/api/v1/uploads/{old_id}"), &ana.access_token)
            .await
            .status,
        404
    );
    let done_id = done["id"].as_str().expect("id");
    assert_eq!(
        app.get_with_token(&format!("/api/v1/uploads/{done_id}"), &ana.access_token)
            .await
            .json()["status"],
        "ready"
    );
}

/// The secret the S3 client signs with: the emulator's fixed test credentials unless the
/// environment names others.
fn signing_secret() -> String {
    std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "test".into())
}

#[tokio::test]
async fn the_upload_url_signs_the_declared_type_length_and_key_for_15_minutes() {
    use crate::support::sigv4;
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let res = declare(&app, &ana, "report.pdf", "application/pdf", 1234).await;
    assert_eq!(res.status, 201, "{}", String::from_utf8_lossy(&res.body));
    let created = res.json();
    let id = created["id"].as_str().expect("id");
    let signed = sigv4::parse("PUT", created["upload_url"].as_str().expect("url"));

    assert_eq!(signed.expires_secs, 15 * 60, "valid for 15 minutes");
    for header in ["host", "content-type", "content-length"] {
        assert!(
            signed.signed_headers.iter().any(|h| h == header),
            "{header} is bound by the signature: {:?}",
            signed.signed_headers
        );
    }
    assert_eq!(signed.key, format!("uploads/{}/{id}", ana.id));
    let secret = signing_secret();
    let declared = [
        ("content-type", "application/pdf"),
        ("content-length", "1234"),
    ];
    assert!(
        sigv4::verify(&signed, &declared, &secret),
        "the signature covers exactly the declared type and length"
    );
    assert!(
        !sigv4::verify(
            &signed,
            &[
                ("content-type", "application/pdf"),
                ("content-length", "1229")
            ],
            &secret
        ),
        "another length breaks the signature"
    );
    assert!(
        !sigv4::verify(
            &signed,
            &[("content-type", "text/html"), ("content-length", "1234")],
            &secret
        ),
        "another type breaks the signature"
    );
}

#[tokio::test]
async fn the_download_url_is_signed_for_5_minutes_with_an_attachment_disposition() {
    use crate::support::sigv4;
    let app = TestApp::spawn().await.with_bucket().await;
    let ana = app.register("ana@example.com").await;
    let bytes = b"hello, world".to_vec();
    let created = declare(&app, &ana, "notes.txt", "text/plain", bytes.len())
        .await
        .json();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(put(&created, &bytes, None).await, 200);
    assert_eq!(complete(&app, &ana, &id).await.status, 200);
    let shown = app
        .get_with_token(&format!("/api/v1/uploads/{id}"), &ana.access_token)
        .await
        .json();
    let signed = sigv4::parse("GET", shown["download_url"].as_str().expect("url"));
    assert_eq!(signed.expires_secs, 5 * 60, "valid for 5 minutes");
    assert_eq!(signed.key, format!("uploads/{}/{id}", ana.id));
    assert!(
        signed
            .param("response-content-disposition")
            .is_some_and(|d| d.starts_with("attachment;")),
        "the disposition is a signed query parameter"
    );
    assert!(sigv4::verify(&signed, &[], &signing_secret()));
}

/// A file PUT through its presigned URL after its account was deleted has no row: the daily
/// maintenance removes it, and leaves everyone else's files alone.
#[tokio::test]
async fn objects_uploaded_after_their_account_was_deleted_are_removed() {
    let app = TestApp::spawn().await.with_bucket().await;
    let leaver = app.register("leaver@example.com").await;
    let stayer = app.register("stayer@example.com").await;
    let late = declare(&app, &leaver, "late.txt", "text/plain", 4)
        .await
        .json();
    let kept = declare(&app, &stayer, "kept.txt", "text/plain", 4)
        .await
        .json();
    assert_eq!(put(&kept, b"kept", None).await, 200);
    let deleted = app
        .json(
            Method::DELETE,
            "/api/v1/users/me",
            &json!({"current_password": leaver.password}),
            Some(&leaver.access_token),
        )
        .await;
    assert_eq!(deleted.status, 204);
    // The URL is still within its 15 minutes: S3 takes the file.
    assert_eq!(put(&late, b"late", None).await, 200);
    let bucket = &app.state.config.uploads_bucket;
    let keys = |app: &TestApp| {
        let (s3, bucket) = (app.s3.clone(), bucket.clone());
        async move {
            s3.list_objects_v2()
                .bucket(bucket)
                .send()
                .await
                .expect("list")
                .contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(keys(&app).await.len(), 2);

    let conn = app.db.connect().await;
    let removed = domain::files::clean_up_orphans(&**conn, &app.s3, bucket)
        .await
        .expect("cleanup");
    assert_eq!(removed, 1);
    let left = keys(&app).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].ends_with(kept["id"].as_str().expect("id")),
        "{left:?}"
    );
}
