//! The container setup: the `local` server as the api image runs it (every address, the
//! HEALTHCHECK's probe, SIGTERM), and the files that Docker, compose, nginx and Kubernetes read,
//! held to what the routes, the template and the rules say. Docker does not run here;
//! GitHub CI builds the images, and scripts/check-containers.sh lints them.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Stdio,
    time::Duration,
};

use serde_yaml_ng::Value;

use crate::support::{TestDatabase, repo_root, workspace_bin};

fn repo_file(path: &str) -> String {
    let full = repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&repo_file(path)).unwrap_or_else(|e| panic!("{path} is YAML: {e}"))
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("addr").port()
}

/// The `local` server on `port`, with `extra` settings on top of a test database's.
fn spawn_local(db: &TestDatabase, port: u16, extra: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(workspace_bin("local"))
        .env("APP_ENV", "test")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &db.url)
        .env("REDIS_URL", crate::support::redis_url())
        .env(
            "REDIS_KEY_PREFIX",
            crate::support::fresh_key_prefix("containers"),
        )
        .env("JWT_SECRET", "test-secret-that-is-long-enough-0123456789")
        .env("LOG_LEVEL", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the local server")
}

async fn wait_for_listener(addr: &str) {
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

/// `local healthcheck` as the image's HEALTHCHECK runs it: exit status and stderr.
async fn healthcheck(port: u16, bind_address: Option<&str>) -> (bool, String) {
    let mut probe = tokio::process::Command::new(workspace_bin("local"));
    probe.arg("healthcheck").env("PORT", port.to_string());
    match bind_address {
        Some(ip) => probe.env("BIND_ADDRESS", ip),
        None => probe.env_remove("BIND_ADDRESS"),
    };
    let out = tokio::time::timeout(Duration::from_secs(10), probe.output())
        .await
        .expect("the probe answers within its own 3 s timeout")
        .expect("running local healthcheck");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the child is running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "SIGTERM delivered");
}

#[tokio::test]
async fn with_bind_address_0_0_0_0_the_server_answers_on_every_address_and_its_healthcheck_follows_it()
 {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut server = spawn_local(&db, port, &[("BIND_ADDRESS", "0.0.0.0")]);
    wait_for_listener(&format!("127.0.0.1:{port}")).await;

    // 127.0.0.2 is another address of this host: only a server on every address answers there.
    assert!(
        tokio::net::TcpStream::connect(format!("127.0.0.2:{port}"))
            .await
            .is_ok(),
        "a server bound to 0.0.0.0 answers on 127.0.0.2 too"
    );
    let (healthy, stderr) = healthcheck(port, Some("0.0.0.0")).await;
    assert!(
        healthy,
        "the probe passes while /ready answers 200: {stderr}"
    );

    sigterm(&server);
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the server stops within 10 s of SIGTERM")
        .expect("exit status");
    assert!(status.success(), "a graceful stop exits 0, got {status}");

    let (healthy, stderr) = healthcheck(port, Some("0.0.0.0")).await;
    assert!(!healthy, "the probe fails once the server is gone");
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "the failure names the address it tried: {stderr}"
    );
}

#[tokio::test]
async fn by_default_the_server_listens_on_loopback_only() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let _server = spawn_local(&db, port, &[]);
    wait_for_listener(&format!("127.0.0.1:{port}")).await;
    assert!(
        tokio::net::TcpStream::connect(format!("127.0.0.2:{port}"))
            .await
            .is_err(),
        "a developer's server is not reachable on the host's other addresses"
    );
    let (healthy, stderr) = healthcheck(port, None).await;
    assert!(healthy, "the probe finds the loopback server: {stderr}");
}

#[tokio::test]
async fn a_bind_address_that_is_no_ip_address_stops_the_server_with_one_line_naming_it() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let server = spawn_local(&db, port, &[("BIND_ADDRESS", "every-interface")]);
    let out = tokio::time::timeout(Duration::from_secs(20), server.wait_with_output())
        .await
        .expect("the server stops at once")
        .expect("output");
    assert!(!out.status.success(), "a bad setting is a failed start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains("BIND_ADDRESS") && lines[0].contains("every-interface"),
        "the line names the variable and the value: {stderr}"
    );
}

// ------------------------------------------------------------------------------------------
// Dockerfiles
// ------------------------------------------------------------------------------------------

/// One instruction: its keyword and its arguments, continuation lines joined.
struct Instruction {
    keyword: String,
    args: String,
}

/// The stages of a Dockerfile by name (or index), each with its `FROM` arguments first.
fn stages(path: &str) -> BTreeMap<String, Vec<Instruction>> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in repo_file(path).lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: BTreeMap<String, Vec<Instruction>> = BTreeMap::new();
    let mut name = None;
    for (i, line) in joined.iter().enumerate() {
        let (keyword, args) = line.split_once(' ').unwrap_or((line, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            let words: Vec<_> = args.split_whitespace().collect();
            let stage = match words.iter().position(|w| w.eq_ignore_ascii_case("as")) {
                Some(at) => words[at + 1].to_owned(),
                None => format!("#{i}"),
            };
            name = Some(stage.clone());
            stages.entry(stage).or_default();
        }
        if let Some(stage) = &name {
            stages.get_mut(stage).expect("stage").push(Instruction {
                keyword,
                args: args.trim().to_owned(),
            });
        }
    }
    stages
}

fn args_of<'a>(stage: &'a [Instruction], keyword: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter(|i| i.keyword == keyword)
        .map(|i| i.args.as_str())
        .collect()
}

#[test]
fn the_api_image_runs_as_non_root_with_a_healthcheck_on_ready_and_stops_on_sigterm() {
    let stages = stages("Dockerfile");
    let api = stages
        .get("api")
        .expect("a stage named api (docker build --target api)");

    let base = args_of(api, "FROM")[0];
    assert!(
        base.contains("distroless") || base.contains("-slim"),
        "the final image is distroless or debian-slim, got {base}"
    );
    let user = *args_of(api, "USER")
        .last()
        .expect("the api stage sets USER");
    let uid = user.split(':').next().unwrap_or(user);
    assert!(
        uid != "root" && uid != "0",
        "the server does not run as root, got USER {user}"
    );

    let healthcheck = args_of(api, "HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1, "one HEALTHCHECK");
    let probe = healthcheck[0];
    let cmd = &probe[probe.find("CMD").expect("HEALTHCHECK ... CMD") + 3..];
    let cmd: Vec<String> = serde_json::from_str(cmd.trim()).expect("the probe is in exec form");
    assert_eq!(
        cmd,
        ["/usr/local/bin/local", "healthcheck"],
        "the probe is `local healthcheck`, which asks for /ready"
    );

    let entrypoint = args_of(api, "ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint.last().expect("an ENTRYPOINT"))
        .expect("ENTRYPOINT in exec form: a shell in between would not pass SIGTERM to the server");
    assert_eq!(entrypoint, ["/usr/local/bin/local"]);
    assert_eq!(args_of(api, "STOPSIGNAL"), ["SIGTERM"]);

    let env = args_of(api, "ENV").join(" ");
    assert!(
        env.contains("BIND_ADDRESS=0.0.0.0"),
        "the server listens on the container's interfaces, not its loopback: {env}"
    );
    for copied in args_of(api, "COPY") {
        if let Some(from) = copied.strip_prefix("--from=") {
            let source = from.split_whitespace().next().unwrap_or_default();
            assert!(
                stages.contains_key(source),
                "COPY --from={source} names a stage"
            );
        }
    }
}

#[test]
fn the_api_image_compiles_its_dependencies_in_a_layer_of_their_own() {
    let stages = stages("Dockerfile");
    let (cook_stage, cook) = stages
        .iter()
        .find(|(_, s)| {
            args_of(s, "RUN")
                .iter()
                .any(|r| r.contains("cargo chef cook"))
        })
        .expect("a stage runs cargo chef cook");
    let before_cook: Vec<_> = cook
        .iter()
        .take_while(|i| !(i.keyword == "RUN" && i.args.contains("cargo chef cook")))
        .filter(|i| i.keyword == "COPY")
        .map(|i| i.args.as_str())
        .collect();
    // Besides the recipe, only what a dependency's build reads: cargo's configuration and the
    // Swagger UI files utoipa-swagger-ui's build script swaps in (.cargo/config.toml).
    let read_by_dependencies = [
        ".cargo .cargo",
        "functions/health/swagger-ui functions/health/swagger-ui",
    ];
    assert!(
        before_cook
            .iter()
            .all(|c| c.contains("recipe.json") || read_by_dependencies.contains(c)),
        "{cook_stage}: only the recipe is copied before the dependencies are built, so that a \
         change to our code keeps that layer: {before_cook:?}"
    );
    let (_, build) = stages
        .iter()
        .find(|(_, s)| {
            args_of(s, "FROM")
                .first()
                .is_some_and(|f| f.split_whitespace().next() == Some(cook_stage.as_str()))
        })
        .expect("the build stage starts from the cooked dependencies");
    assert!(
        args_of(build, "RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "the build uses Cargo.lock as committed"
    );
}

/// Whether `.dockerignore` leaves `path` (relative to the repository) out of the build context.
/// Its patterns are the simple kind it uses: a name or path, `**/name`, and `!` exceptions.
fn docker_ignores(rules: &str, path: &str) -> bool {
    let mut ignored = false;
    for rule in rules.lines().map(str::trim) {
        if rule.is_empty() || rule.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match rule.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, rule),
        };
        let matches = |pattern: &str| {
            if let Some(name) = pattern.strip_prefix("**/") {
                path.split('/').any(|part| part == name)
            } else if let Some(prefix) = pattern.strip_suffix(".*") {
                path == pattern || path.starts_with(&format!("{prefix}."))
            } else {
                path == pattern || path.starts_with(&format!("{pattern}/"))
            }
        };
        if matches(pattern) {
            ignored = !negated;
        }
    }
    ignored
}

#[test]
fn the_api_images_build_context_holds_every_file_the_code_embeds() {
    let root = repo_root();
    let rules = repo_file(".dockerignore");
    let mut embedded = Vec::new();
    let mut todo = vec![root.join("crates"), root.join("functions")];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).expect("source dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source");
            for (at, _) in source.match_indices("include_str!(\"") {
                let rest = &source[at + "include_str!(\"".len()..];
                let Some(end) = rest.find('"') else { continue };
                let target = path.parent().expect("dir").join(&rest[..end]);
                let Ok(target) = target.canonicalize() else {
                    continue;
                };
                let relative = target
                    .strip_prefix(root.canonicalize().expect("root"))
                    .expect("inside the repository")
                    .to_string_lossy()
                    .into_owned();
                embedded.push(relative);
            }
        }
    }
    assert!(
        embedded.iter().any(|p| p == "docs/openapi.json"),
        "the scan finds the health function's document: {embedded:?}"
    );
    for path in [
        "migrations/0001_x.up.sql",
        "Cargo.lock",
        "crates/local/src/lib.rs",
    ] {
        assert!(!docker_ignores(&rules, path), "{path} is in the context");
    }
    for path in embedded {
        assert!(
            !docker_ignores(&rules, &path),
            "the code embeds {path}, which .dockerignore leaves out: the image would not build"
        );
    }
}

// ------------------------------------------------------------------------------------------
// docker compose
// ------------------------------------------------------------------------------------------

#[test]
fn compose_starts_only_postgres_redis_and_moto_unless_the_app_profile_is_asked_for() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let mut default = BTreeSet::new();
    let mut app = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().expect("service name").to_owned();
        match service["profiles"].as_sequence() {
            None => {
                default.insert(name);
            }
            Some(profiles) => {
                if profiles.iter().any(|p| p.as_str() == Some("app")) {
                    app.insert(name);
                }
            }
        }
    }
    assert_eq!(
        default,
        BTreeSet::from(["moto".into(), "postgres".into(), "redis".into()]),
        "`docker compose up -d` alone starts the services the tests use, nothing else"
    );
    assert_eq!(app, BTreeSet::from(["api".into(), "web".into()]));
    assert_eq!(
        compose["services"]["api"]["build"]["target"].as_str(),
        Some("api")
    );
    let web_context = match &compose["services"]["web"]["build"] {
        Value::String(context) => context.clone(),
        build => build["context"].as_str().unwrap_or_default().to_owned(),
    };
    assert_eq!(web_context.trim_start_matches("./"), "web");

    let moto = compose["services"]["moto"]["image"]
        .as_str()
        .expect("moto's image");
    let version: Vec<u32> = moto
        .rsplit_once(':')
        .expect("a pinned tag")
        .1
        .split('.')
        .map(|n| n.parse().expect("a numeric version"))
        .collect();
    assert!(
        version >= vec![5, 2, 5],
        "moto {moto}: before 5.2.5 CompleteMultipartUpload answers with the wrong XML root"
    );
}

// ------------------------------------------------------------------------------------------
// nginx and CloudFront
// ------------------------------------------------------------------------------------------

/// The headers nginx adds to the site's responses, by lower-case name, with the uploads origin
/// written as `UPLOADS`.
fn nginx_site_headers() -> BTreeMap<String, String> {
    let conf = repo_file("web/nginx.conf");
    conf.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("add_header "))
        .map(|rest| {
            let (name, value) = rest.split_once(' ').expect("add_header NAME VALUE");
            let value = value.trim().trim_end_matches(';').trim();
            let value = value.strip_suffix("always").unwrap_or(value).trim();
            let value = value
                .trim_matches('"')
                .replace("${UPLOADS_ORIGIN}", "UPLOADS");
            (name.to_ascii_lowercase(), value)
        })
        .collect()
}

/// The security headers SiteEntryHeadersPolicy (the site's pages) makes CloudFront add, in the
/// same form.
fn cloudfront_site_headers() -> BTreeMap<String, String> {
    let template = yaml("template.yaml");
    let policy = &template["Resources"]["SiteEntryHeadersPolicy"];
    assert_eq!(
        policy["Type"].as_str(),
        Some("AWS::CloudFront::ResponseHeadersPolicy")
    );
    let config = &policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"];
    let mut headers = BTreeMap::new();
    let hsts = &config["StrictTransportSecurity"];
    let mut value = format!(
        "max-age={}",
        hsts["AccessControlMaxAgeSec"].as_u64().expect("max-age")
    );
    if hsts["IncludeSubdomains"].as_bool() == Some(true) {
        value.push_str("; includeSubDomains");
    }
    if hsts["Preload"].as_bool() == Some(true) {
        value.push_str("; preload");
    }
    headers.insert("strict-transport-security".into(), value);
    let csp = match &config["ContentSecurityPolicy"]["ContentSecurityPolicy"] {
        Value::Tagged(sub) => sub.value.as_str().expect("!Sub string").to_owned(),
        other => other.as_str().expect("CSP").to_owned(),
    };
    headers.insert(
        "content-security-policy".into(),
        csp.replace(
            "https://${UploadsBucket}.s3.${AWS::Region}.${AWS::URLSuffix} https://${UploadsBucket}.s3.${AWS::URLSuffix}",
            "UPLOADS",
        ),
    );
    if !config["ContentTypeOptions"].is_null() {
        headers.insert("x-content-type-options".into(), "nosniff".into());
    }
    if let Some(option) = config["FrameOptions"]["FrameOption"].as_str() {
        headers.insert("x-frame-options".into(), option.into());
    }
    if let Some(policy) = config["ReferrerPolicy"]["ReferrerPolicy"].as_str() {
        headers.insert("referrer-policy".into(), policy.into());
    }
    if let Some(protection) = config["XSSProtection"]["Protection"].as_bool() {
        headers.insert(
            "x-xss-protection".into(),
            if protection { "1" } else { "0" }.into(),
        );
    }
    headers
}

#[test]
fn nginx_sends_the_site_headers_cloudfront_sends() {
    let nginx = nginx_site_headers();
    assert_eq!(
        nginx,
        cloudfront_site_headers(),
        "web/nginx.conf and template.yaml's SiteEntryHeadersPolicy differ"
    );
    assert!(
        nginx["content-security-policy"].starts_with("default-src 'none'"),
        "a strict CSP: {}",
        nginx["content-security-policy"]
    );
}

// ------------------------------------------------------------------------------------------
// Kubernetes
// ------------------------------------------------------------------------------------------

fn manifest(kind: &str) -> Value {
    let dir = repo_root().join("deploy/k8s");
    for entry in std::fs::read_dir(&dir).expect("deploy/k8s") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("manifest");
        let value: Value = serde_yaml_ng::from_str(&text).expect("one YAML document a file");
        if value["kind"].as_str() == Some(kind) {
            return value;
        }
    }
    panic!("deploy/k8s holds a {kind}");
}

#[test]
fn the_kubernetes_example_runs_restricted_probes_real_routes_and_scales_at_70_percent_cpu() {
    let deployment = manifest("Deployment");
    let service = manifest("Service");
    let hpa = manifest("HorizontalPodAutoscaler");
    let name = deployment["metadata"]["name"].as_str().expect("name");

    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let containers = pod["containers"].as_sequence().expect("containers");
    let api = &containers[0];
    let restricted = &api["securityContext"];
    assert_eq!(
        restricted["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(restricted["readOnlyRootFilesystem"].as_bool(), Some(true));

    // The probes ask for routes the server has, on the port it listens on.
    let port = api["ports"][0]["containerPort"]
        .as_u64()
        .expect("containerPort");
    let env: BTreeMap<_, _> = api["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().unwrap_or_default(), e["value"].clone()))
        .collect();
    assert_eq!(env["PORT"].as_str(), Some(port.to_string().as_str()));
    assert_eq!(env["BIND_ADDRESS"].as_str(), Some("0.0.0.0"));
    let probe_path = |probe: &str| api[probe]["httpGet"]["path"].as_str().map(str::to_owned);
    assert_eq!(probe_path("livenessProbe").as_deref(), Some("/ready"));
    assert_eq!(probe_path("startupProbe").as_deref(), Some("/ready"));
    assert_eq!(probe_path("readinessProbe").as_deref(), Some("/health"));
    let openapi: serde_json::Value =
        serde_json::from_str(&repo_file("docs/openapi.json")).expect("docs/openapi.json");
    for path in ["/ready", "/health"] {
        assert!(
            openapi["paths"][path]["get"].is_object(),
            "GET {path} is a route of the server"
        );
    }

    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service selects the Deployment's pods"
    );
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_str(),
        Some("http")
    );

    assert_eq!(hpa["apiVersion"].as_str(), Some("autoscaling/v2"));
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["kind"].as_str(),
        Some("Deployment")
    );
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"].as_str(), Some(name));
    let metrics = hpa["spec"]["metrics"].as_sequence().expect("metrics");
    assert_eq!(metrics.len(), 1, "one metric: CPU");
    let cpu = &metrics[0]["resource"];
    assert_eq!(cpu["name"].as_str(), Some("cpu"));
    assert_eq!(cpu["target"]["type"].as_str(), Some("Utilization"));
    assert_eq!(cpu["target"]["averageUtilization"].as_u64(), Some(70));
    assert!(
        !api["resources"]["requests"]["cpu"].is_null(),
        "CPU utilization is measured against the pods' request"
    );
}

// ------------------------------------------------------------------------------------------
// Dependabot
// ------------------------------------------------------------------------------------------

#[test]
fn dependabot_watches_cargo_npm_actions_docker_and_compose() {
    let config = yaml(".github/dependabot.yml");
    let mut watched: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for update in config["updates"].as_sequence().expect("updates") {
        let ecosystem = update["package-ecosystem"].as_str().expect("ecosystem");
        let mut dirs: Vec<String> = update["directories"]
            .as_sequence()
            .map(|d| {
                d.iter()
                    .filter_map(|d| d.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(dir) = update["directory"].as_str() {
            dirs.push(dir.to_owned());
        }
        watched
            .entry(ecosystem.to_owned())
            .or_default()
            .extend(dirs);
    }
    let has = |ecosystem: &str, dir: &str| {
        watched
            .get(ecosystem)
            .is_some_and(|dirs| dirs.iter().any(|d| d == dir))
    };
    assert!(has("cargo", "/"), "{watched:?}");
    assert!(has("npm", "/web"), "{watched:?}");
    assert!(has("github-actions", "/"), "{watched:?}");
    assert!(has("docker-compose", "/"), "{watched:?}");
    // Every folder with a Dockerfile.
    for dockerfile in ["Dockerfile", "web/Dockerfile", "infra/backup/Dockerfile"] {
        let dir = match dockerfile.rsplit_once('/') {
            Some((dir, _)) => format!("/{dir}"),
            None => "/".to_owned(),
        };
        assert!(has("docker", &dir), "{dockerfile}: {watched:?}");
    }
}

// ------------------------------------------------------------------------------------------
// nginx serving the web image's configuration
// ------------------------------------------------------------------------------------------

/// nginx with `web/nginx.conf` as the image renders it, on a port of this test, serving a stand-in
/// for the built client and passing the API routes to `api`. Stops when dropped.
struct Nginx {
    dir: std::path::PathBuf,
    child: std::process::Child,
    port: u16,
}

impl Nginx {
    const UPLOADS_ORIGIN: &'static str = "http://localhost:5000";

    async fn start(api: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("nginx-{}", uuid::Uuid::new_v4().simple()));
        let html = dir.join("html");
        std::fs::create_dir_all(html.join("assets")).expect("html dir");
        std::fs::write(
            html.join("index.html"),
            "<!doctype html><title>client</title>",
        )
        .expect("index.html");
        std::fs::write(html.join("assets/app-1a2b3c.js"), "console.log(1)").expect("bundle");

        let port = free_port();
        // What the image's entrypoint substitutes, and where this test listens and serves from
        // instead of the image's 8080 and /usr/share/nginx/html.
        let conf = repo_file("web/nginx.conf");
        for expected in ["listen 8080;", "root /usr/share/nginx/html;"] {
            assert!(conf.contains(expected), "web/nginx.conf has `{expected}`");
        }
        let site = conf
            .replace("${API_UPSTREAM}", api)
            .replace("${UPLOADS_ORIGIN}", Self::UPLOADS_ORIGIN)
            .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"))
            .replace(
                "root /usr/share/nginx/html;",
                &format!("root {};", html.display()),
            );
        std::fs::write(dir.join("site.conf"), site).expect("site.conf");
        // The image's own nginx.conf around it, with paths inside this test's folder; one process
        // (no master and workers), so that stopping the child stops nginx.
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\nhttp {{\n  include /etc/nginx/mime.types;\n  access_log off;\n  \
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
             scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n",
            d = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), main).expect("nginx.conf");

        let child = std::process::Command::new("/usr/sbin/nginx")
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting /usr/sbin/nginx (scripts/test.sh installs it)");
        let nginx = Self { dir, child, port };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
        panic!("nginx did not start with web/nginx.conf:\n{log}");
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Vec<&'a str> {
    res.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ASCII header"))
        .collect()
}

#[tokio::test]
async fn nginx_serves_client_routes_with_the_site_headers_and_passes_the_api_through() {
    let db = TestDatabase::create().await;
    let api_port = free_port();
    let _api = spawn_local(&db, api_port, &[]);
    wait_for_listener(&format!("127.0.0.1:{api_port}")).await;
    let nginx = Nginx::start(&format!("http://127.0.0.1:{api_port}")).await;
    let expected: BTreeMap<String, String> = cloudfront_site_headers()
        .into_iter()
        .map(|(k, v)| (k, v.replace("UPLOADS", Nginx::UPLOADS_ORIGIN)))
        .collect();

    // A client route, a deep one, and the root: the client's index.html with every site header.
    for path in [
        "/",
        "/account/settings",
        "/uploads/0b6f0a52-1c7e-4f7b-9d0e-2f1c9a6e7d41",
    ] {
        let res = nginx.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        for (name, value) in &expected {
            assert_eq!(header(&res, name), [value.as_str()], "{path}: {name}");
        }
        assert_eq!(
            res.text().await.expect("body"),
            "<!doctype html><title>client</title>",
            "{path} is answered by the client"
        );
    }

    // A bundle: the file, cached for a year, with the same headers.
    let res = nginx.get("/assets/app-1a2b3c.js").await;
    assert_eq!(res.status(), 200);
    assert!(
        header(&res, "cache-control")
            .iter()
            .any(|v| v.contains("max-age=31536000")),
        "{:?}",
        res.headers()
    );
    assert_eq!(
        header(&res, "content-security-policy"),
        [expected["content-security-policy"].as_str()]
    );

    // A missing file is a 404, not the client.
    for path in ["/assets/app-000000.js", "/favicon.ico", "/robots.txt"] {
        let res = nginx.get(path).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_ne!(
            res.text().await.expect("body"),
            "<!doctype html><title>client</title>",
            "{path}"
        );
    }

    // The API's routes are the API's answers, with its headers and none of the site's.
    let res = nginx.get("/api/v1/no-such-route").await;
    assert_eq!(res.status(), 404);
    assert_eq!(
        header(&res, "content-type"),
        ["application/problem+json"],
        "the API's problem+json, not the client"
    );
    assert_eq!(
        header(&res, "content-security-policy"),
        ["default-src 'none'; frame-ancestors 'none'"],
        "only the API's own CSP"
    );
    let res = nginx.get("/ready").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&res.text().await.expect("body")).expect("JSON");
    assert_eq!(body["status"], "ready");
    let res = nginx.get("/health").await;
    let body: serde_json::Value =
        serde_json::from_str(&res.text().await.expect("body")).expect("JSON");
    assert!(body["checks"]["database"].is_string(), "{body}");
}
