//! The route declarations, tried from outside. The operations, their body fields and their query
//! parameters are read off the generated document, so a route added later is covered without
//! a new test.

use std::collections::BTreeSet;

use axum::body::Body;
use http::{Method, header};
use serde_json::{Value, json};

use crate::support::{Session, TestApp, request};

async fn admin(app: &TestApp) -> Session {
    let session = app.register("contract-admin@example.com").await;
    app.promote(&session).await;
    session
}

/// The names of the string properties of the JSON body an operation takes, if any.
fn body_text_fields(doc: &Value, op: &Value) -> Vec<String> {
    let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") else {
        return Vec::new();
    };
    let schema = resolve(doc, schema);
    let Some(properties) = schema["properties"].as_object() else {
        return Vec::new();
    };
    properties
        .iter()
        .filter(|(_, p)| {
            let ty = &p["type"];
            ty == "string" || ty.as_array().is_some_and(|t| t.contains(&json!("string")))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The named schema a body points at, through an `Option`'s `oneOf` with null if need be.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return &doc["components"]["schemas"][name];
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(found) = schema[key]
            .as_array()
            .and_then(|alts| alts.iter().find(|a| a.get("$ref").is_some()))
        {
            return resolve(doc, found);
        }
    }
    schema
}

fn query_parameters(op: &Value) -> Vec<String> {
    op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// U+0000 cannot be stored by Postgres and is no part of any name, email or token: wherever it
/// appears, in any text field of any body or in any query parameter, the answer is a 4xx that
/// names where, never a 500 (the extractors refuse it before any handler runs).
#[tokio::test]
async fn text_holding_nul_is_refused_naming_the_field_on_every_route() {
    let app = TestApp::spawn().await.with_bucket().await;
    let caller = admin(&app).await;
    let doc = serde_json::to_value(local::openapi()).expect("JSON");
    let mut fields_tried = BTreeSet::new();
    let mut params_tried = BTreeSet::new();

    for (path, item) in doc["paths"].as_object().expect("paths") {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{file}", "index.css");
        for (method, op) in item.as_object().expect("item") {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            for field in body_text_fields(&doc, op) {
                let res = app
                    .json(
                        method.clone(),
                        &concrete,
                        &json!({ &field: "a\u{0}b" }),
                        Some(&caller.access_token),
                    )
                    .await;
                assert_eq!(res.status, 422, "{method} {path} with NUL in {field}");
                let problem = res.problem();
                let errors = problem.errors.expect("field errors");
                assert_eq!(errors[0].field, field, "{method} {path}");
                assert!(errors[0].message.contains("U+0000"), "{errors:?}");
                fields_tried.insert(format!("{method} {path} {field}"));
            }
            for param in query_parameters(op) {
                let req = request(method.clone(), &format!("{concrete}?{param}=a%00b"))
                    .header(
                        header::AUTHORIZATION,
                        format!("Bearer {}", caller.access_token),
                    )
                    .body(Body::empty())
                    .expect("request");
                let res = app.send(req).await;
                assert_eq!(res.status, 400, "{method} {path} with NUL in ?{param}");
                let problem = res.problem();
                assert!(
                    problem.detail.contains(&format!("`{param}`")),
                    "{method} {path}: {}",
                    problem.detail
                );
                params_tried.insert(format!("{method} {path} {param}"));
            }
        }
    }

    // The document really was walked: the fields an attacker would reach for are among them.
    for expected in [
        "POST /api/v1/auth/login email",
        "POST /api/v1/auth/register name",
        "POST /api/v1/auth/logout refresh_token",
        "PATCH /api/v1/users/me email",
        "POST /api/v1/uploads filename",
    ] {
        assert!(
            fields_tried.contains(expected),
            "{expected} not tried: {fields_tried:?}"
        );
    }
    for expected in [
        "GET /api/v1/users email",
        "GET /api/v1/users cursor",
        "GET /api/v1/uploads limit",
    ] {
        assert!(
            params_tried.contains(expected),
            "{expected} not tried: {params_tried:?}"
        );
    }
    // And the caller's session is untouched: no handler ran (a logout would have revoked it).
    let me = app
        .get_with_token("/api/v1/users/me", &caller.access_token)
        .await;
    assert_eq!(me.status, 200);
}
