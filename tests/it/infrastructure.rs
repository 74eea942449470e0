//! The deployable pieces agree with the code: every function crate has a SAM function and an
//! alarm, and every route the routers serve is in the HTTP API, the cargo-lambda watch router
//! and the OpenAPI document (and nothing else is).

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

/// Logical id of each SAM function, by the binary its CodeUri points at.
fn sam_functions(resources: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .filter_map(|(id, r)| {
            let uri = r["Properties"]["CodeUri"].as_str()?;
            let binary = uri.trim_end_matches('/').strip_prefix("target/lambda/")?;
            Some((binary.to_owned(), id.clone()))
        })
        .collect()
}

fn code_routes() -> BTreeMap<&'static str, &'static [(&'static str, &'static str)]> {
    BTreeMap::from([
        ("health", health::ROUTES),
        ("auth", auth::ROUTES),
        ("users", users::ROUTES),
        ("uploads", uploads::ROUTES),
    ])
}

fn as_set(routes: &[(&str, &str)]) -> BTreeSet<Route> {
    routes
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
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
        assert!(
            resources[id]
                .get("Metadata")
                .and_then(|m| m.get("BuildMethod"))
                .is_none(),
            "{name}: SAM must not build"
        );
    }
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
            in_template,
            as_set(routes),
            "{name}: template.yaml vs the router"
        );
    }
    let api = resources.get("HttpApi").expect("an HttpApi resource");
    assert!(
        api["Properties"].get("CorsConfiguration").is_none(),
        "the functions own CORS"
    );
}

#[test]
fn the_watch_router_and_openapi_list_every_route() {
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
    let openapi: serde_json::Value =
        serde_json::from_str(&repo_file("functions/health/openapi.json")).expect("openapi");
    let mut expected = BTreeSet::new();
    for (name, routes) in code_routes() {
        for (method, path) in routes.iter() {
            expected.insert(((*method).to_owned(), (*path).to_owned(), name.to_owned()));
            assert!(
                openapi["paths"][*path].get(method.to_lowercase()).is_some(),
                "openapi.json lacks {method} {path}"
            );
        }
    }
    assert_eq!(
        watched, expected,
        "cargo lambda watch router vs the routers"
    );
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
        for (method, path) in code_routes()[name].iter() {
            let path = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
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
