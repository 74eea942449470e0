//! The deployable pieces agree with the code: every function crate has a SAM function and an
//! alarm; the routes each group declares (its router and its OpenAPI operations come from the
//! same declaration) are exactly those of the HTTP API and of the cargo-lambda watch router;
//! and the committed `docs/openapi.json` is exactly what the declarations generate.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use http::Method;
use serde_yaml_ng::Value;

use crate::support::{TestApp, request, send_to};

type Route = (String, String);

fn repo_file(path: &str) -> String {
    let full = crate::support::repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn template() -> Value {
    serde_yaml_ng::from_str(&repo_file("template.yaml")).expect("template.yaml is YAML")
}

/// The value under a CloudFormation tag (`!Ref X` → `X`), or the value itself.
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

fn resources(template: &Value) -> BTreeMap<String, Value> {
    template["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(k, v)| (k.as_str().expect("logical id").to_owned(), v.clone()))
        .collect()
}

fn function_crates() -> BTreeSet<String> {
    let dir = crate::support::repo_root().join("functions");
    std::fs::read_dir(dir)
        .expect("functions/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Logical id of each SAM function, by the function crate its CodeUri points at.
fn sam_functions(resources: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .filter_map(|(id, r)| {
            let uri = r["Properties"]["CodeUri"].as_str()?;
            let name = uri.trim_end_matches('/').strip_prefix("functions/")?;
            Some((name.to_owned(), id.clone()))
        })
        .collect()
}

/// Each group's declared routes, read off its part of the OpenAPI document.
fn code_routes() -> BTreeMap<&'static str, BTreeSet<Route>> {
    [
        ("health", health::openapi_part()),
        ("auth", auth::openapi_part()),
        ("users", users::openapi_part()),
        ("uploads", uploads::openapi_part()),
    ]
    .into_iter()
    .map(|(name, doc)| {
        let routes: BTreeSet<Route> = http_kit::openapi::routes(&doc).into_iter().collect();
        assert!(!routes.is_empty(), "{name} declares no route");
        (name, routes)
    })
    .collect()
}

/// Catch-alls let each function answer its own 404, 405 and CORS preflights; they are not
/// routes of the contract.
fn is_catch_all(method: &str, path: &str) -> bool {
    method == "ANY" || path == "$default" || path.contains("{proxy+}")
}

#[test]
fn every_function_crate_has_a_sam_function_built_by_cargo_lambda() {
    let template = template();
    let resources = resources(&template);
    let functions = sam_functions(&resources);
    for name in function_crates() {
        let id = functions
            .get(&name)
            .unwrap_or_else(|| panic!("functions/{name} has no SAM function"));
        let props = &resources[id]["Properties"];
        let globals = &template["Globals"]["Function"];
        let runtime = props["Runtime"].as_str().or(globals["Runtime"].as_str());
        assert_eq!(runtime, Some("provided.al2023"), "{name}");
        let arch = props
            .get("Architectures")
            .or(globals.get("Architectures"))
            .expect("architectures");
        assert_eq!(
            arch.as_sequence()
                .and_then(|a| a.first())
                .and_then(Value::as_str),
            Some("arm64"),
            "{name}"
        );
        // `sam build` runs cargo-lambda in the crate's own folder (so cargo resolves that
        // crate's features alone) and builds its binary of the same name.
        let metadata = &resources[id]["Metadata"];
        assert_eq!(
            metadata["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}: built by sam build with cargo-lambda"
        );
        assert_eq!(
            metadata["BuildProperties"]["Binary"].as_str(),
            Some(name.as_str()),
            "{name}: the binary sam build copies"
        );
        let manifest = repo_file(&format!("functions/{name}/Cargo.toml"));
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "functions/{name}/Cargo.toml names the package {name}"
        );
    }
}

/// A zip holds only the bootstrap: nothing may point at a file beside it, which no build step
/// puts there any more (the RDS CA bundle and the migrations are compiled in).
#[test]
fn no_function_reads_a_file_the_build_does_not_ship() {
    let text = repo_file("template.yaml");
    assert!(
        !text.contains("/var/task/"),
        "template.yaml points a function at a file in /var/task"
    );
}

/// CI and the deploy build the functions with `sam build`, and the deploy ships what it built:
/// a `sam deploy` of template.yaml itself would zip each crate's source folder.
#[test]
fn the_pipeline_deploys_what_sam_build_built() {
    let ci = repo_file(".github/workflows/ci.yml");
    assert!(ci.contains("scripts/sam-build.sh"), "ci.yml runs sam build");
    let deploy = repo_file(".github/workflows/deploy.yml");
    assert!(
        deploy.contains("scripts/sam-build.sh"),
        "deploy.yml runs sam build"
    );
    let deploys: Vec<&str> = deploy
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("sam deploy "))
        .collect();
    assert!(deploys.len() >= 2, "deploy.yml runs sam deploy");
    for line in deploys {
        assert!(
            line.contains("--template-file .aws-sam/build/template.yaml")
                || line.contains("--template-file .rollback-template.yaml"),
            "deploy.yml deploys an unbuilt template: {line}"
        );
        // Given a template in another folder, sam looks for samconfig.toml beside it.
        if line.contains(".aws-sam/build/") {
            assert!(
                line.contains("--config-file \"$PWD/samconfig.toml\""),
                "deploy.yml's sam deploy of the built template names its configuration: {line}"
            );
        }
    }
    // A `sam deploy --config-env ENV` by hand deploys the built template too.
    let samconfig = repo_file("samconfig.toml");
    let templates: Vec<&str> = samconfig
        .lines()
        .filter(|l| l.starts_with("template_file"))
        .collect();
    assert!(!templates.is_empty(), "samconfig.toml names the template");
    for line in templates {
        assert_eq!(line, "template_file = \".aws-sam/build/template.yaml\"");
    }
    let run = repo_file(".ci/run");
    assert!(
        run.contains("scripts/sam-build.sh"),
        ".ci/run runs sam build"
    );
}

#[test]
fn every_function_has_an_alarm() {
    let template = template();
    let resources = resources(&template);
    let alarmed: BTreeSet<String> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .flat_map(|r| {
            r["Properties"]["Dimensions"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|d| d["Name"].as_str() == Some("FunctionName"))
        .filter_map(|d| untag(&d["Value"]).as_str().map(str::to_owned))
        .collect();
    for (name, id) in sam_functions(&resources) {
        assert!(alarmed.contains(&id), "{name} ({id}) has no alarm");
    }
}

#[test]
fn the_http_api_routes_match_the_routers_exactly() {
    let template = template();
    let resources = resources(&template);
    let functions = sam_functions(&resources);
    for (name, routes) in code_routes() {
        let id = &functions[name];
        let events = resources[id]["Properties"]["Events"]
            .as_mapping()
            .cloned()
            .unwrap_or_default();
        let in_template: BTreeSet<Route> = events
            .values()
            .filter(|e| e["Type"].as_str() == Some("HttpApi"))
            .map(|e| {
                let p = &e["Properties"];
                (
                    p["Method"].as_str().unwrap_or("ANY").to_uppercase(),
                    p["Path"].as_str().unwrap_or("$default").to_owned(),
                )
            })
            .filter(|(m, p)| !is_catch_all(m, p))
            .collect();
        assert_eq!(
            in_template, routes,
            "{name}: template.yaml vs the declared routes"
        );
    }
    let api = resources.get("HttpApi").expect("an HttpApi resource");
    assert!(
        api["Properties"].get("CorsConfiguration").is_none(),
        "the functions own CORS"
    );
}

#[test]
fn the_watch_router_lists_exactly_the_declared_routes() {
    let manifest: toml::Value = toml::from_str(&repo_file("Cargo.toml")).expect("Cargo.toml");
    let watch = &manifest["workspace"]["metadata"]["lambda"]["watch"]["router"];
    let mut watched = BTreeSet::new();
    for (path, targets) in watch.as_table().expect("watch router") {
        for t in targets.as_array().expect("targets") {
            watched.insert((
                t["method"].as_str().expect("method").to_owned(),
                path.clone(),
                t["function"].as_str().expect("fn").to_owned(),
            ));
        }
    }
    let mut expected = BTreeSet::new();
    for (name, routes) in code_routes() {
        for (method, path) in routes {
            expected.insert((method, path, name.to_owned()));
        }
    }
    assert_eq!(
        watched, expected,
        "cargo lambda watch router vs the declared routes"
    );
}

#[test]
fn the_committed_openapi_document_is_the_generated_one() {
    let committed = repo_file("docs/openapi.json");
    let generated = local::openapi_json();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_owned(),
                |i| format!("line {}", i + 1),
            );
        panic!(
            "docs/openapi.json differs from the route declarations ({first_difference}): \
             run `cargo run -p local --bin openapi`"
        );
    }
}

#[test]
fn the_document_names_every_route_of_every_group_and_nothing_else() {
    let doc = local::openapi();
    let in_doc: BTreeSet<Route> = http_kit::openapi::routes(&doc).into_iter().collect();
    let declared: BTreeSet<Route> = code_routes().into_values().flatten().collect();
    assert_eq!(in_doc, declared);
}

/// The statuses the shared layers and extractors answer are on every operation that can
/// answer them, with a problem+json body.
#[test]
fn every_operation_documents_the_shared_error_statuses() {
    let doc: serde_json::Value =
        serde_json::to_value(local::openapi()).expect("the document is JSON");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            let has = |status: &str| responses.contains_key(status);
            let limited = !http_kit::rate_limit::EXEMPT.contains(&path.as_str());
            let mut expected = Vec::new();
            if limited {
                expected.extend(["429", "500", "503"]);
            }
            if op.get("requestBody").is_some() {
                expected.extend(["400", "413", "415", "422"]);
            }
            if path.contains('{') {
                expected.push("404");
            }
            let bearer = op["security"]
                .as_array()
                .is_some_and(|reqs| reqs.iter().any(|r| r.get("bearerAuth").is_some()));
            if bearer {
                expected.push("401");
            }
            for status in expected {
                assert!(has(status), "{method} {path} does not document {status}");
            }
            for (status, response) in responses {
                // A degraded /health answers its own body, as the contract says.
                let is_error = status.starts_with('4') || status.starts_with('5');
                if !is_error || (path == "/health" && status == "503") {
                    continue;
                }
                let resolved = match response["$ref"].as_str() {
                    Some(r) => {
                        &doc["components"]["responses"]
                            [r.trim_start_matches("#/components/responses/")]
                    }
                    None => response,
                };
                assert!(
                    resolved["content"]
                        .get("application/problem+json")
                        .is_some(),
                    "{method} {path} {status} has no problem+json body"
                );
            }
        }
    }
}

#[tokio::test]
async fn every_listed_route_is_served_by_its_router() {
    let app = TestApp::spawn().await;
    let routers = [
        (
            "health",
            health::routes(app.state.clone()).await.expect("routes"),
        ),
        (
            "auth",
            auth::routes(app.state.clone()).await.expect("routes"),
        ),
        (
            "users",
            users::routes(app.state.clone()).await.expect("routes"),
        ),
        (
            "uploads",
            uploads::routes(app.state.clone()).await.expect("routes"),
        ),
    ];
    for (name, router) in routers {
        let router = http_kit::app(router, &app.state);
        for (method, path) in &code_routes()[name] {
            let path = path
                .replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{file}", "swagger-ui.css");
            let req = request(
                Method::from_bytes(method.as_bytes()).expect("method"),
                &path,
            )
            .body(Body::empty())
            .expect("req");
            let res = send_to(&router, req).await;
            assert!(
                res.status != 404 && res.status != 405,
                "{name} does not serve {method} {path}: {}",
                res.status
            );
        }
    }
}
