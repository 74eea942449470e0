//! Rules of AWS that the linters do not know, held against `template.yaml` and the workflows:
//! each test names a way the first deploy (or a later one) would fail or ship something unsafe.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

fn repo_file(path: &str) -> String {
    let full = crate::support::repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&repo_file(path)).unwrap_or_else(|e| panic!("{path} is YAML: {e}"))
}

fn template() -> Value {
    yaml("template.yaml")
}

/// The value under a CloudFormation tag (`!Ref X` → `X`), or the value itself.
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

/// The tag of a short-form intrinsic (`!Ref`, `!Sub`, ...), without the `!`.
fn tag(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(tagged) => Some(tagged.tag.to_string().trim_start_matches('!').to_owned()),
        _ => None,
    }
}

/// The logical id a `!Ref X` names.
fn ref_target(v: &Value) -> Option<&str> {
    (tag(v).as_deref() == Some("Ref"))
        .then(|| untag(v).as_str())
        .flatten()
}

/// Every string inside a value, intrinsics included, joined: enough to ask what it mentions.
fn text(v: &Value) -> String {
    match untag(v) {
        Value::String(s) => s.clone(),
        Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        Value::Mapping(map) => map
            .iter()
            .map(|(k, v)| format!("{} {}", text(k), text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => serde_yaml_ng::to_string(other).unwrap_or_default(),
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

fn of_type(resources: &BTreeMap<String, Value>, ty: &str) -> BTreeMap<String, Value> {
    resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn events(function: &Value) -> Vec<(String, Value)> {
    function["Properties"]["Events"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn is_true(v: &Value) -> bool {
    match untag(v) {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        // `!If [cond, true, false]`: true on at least one branch.
        Value::Sequence(items) => items.iter().skip(1).any(is_true),
        _ => false,
    }
}

#[test]
fn no_read_replica_has_a_source_whose_master_password_rds_manages() {
    let template = template();
    let resources = resources(&template);
    let instances = of_type(&resources, "AWS::RDS::DBInstance");
    let replicas: Vec<_> = instances
        .iter()
        .filter_map(|(id, r)| {
            let source = &r["Properties"]["SourceDBInstanceIdentifier"];
            (!source.is_null()).then(|| (id.clone(), ref_target(source).map(str::to_owned)))
        })
        .collect();
    assert!(!replicas.is_empty(), "the template has a read replica");
    for (replica, source) in replicas {
        let source = source.unwrap_or_else(|| panic!("{replica}: the source is a !Ref"));
        let primary = &instances[&source]["Properties"];
        assert!(
            !is_true(&primary["ManageMasterUserPassword"]),
            "{replica} replicates {source}, whose master password RDS manages: RDS cannot create \
             that replica"
        );
        assert!(
            text(&primary["MasterUserPassword"]).contains("{{resolve:secretsmanager:"),
            "{source}: the master password comes from a stack secret through a dynamic reference"
        );
    }
}

#[test]
fn the_database_secret_is_attached_and_rotated_from_inside_the_vpc() {
    let template = template();
    let transforms = text(&template["Transform"]);
    assert!(
        transforms.contains("AWS::SecretsManager-"),
        "HostedRotationLambda needs the AWS::SecretsManager transform"
    );
    let resources = resources(&template);
    let attachments = of_type(&resources, "AWS::SecretsManager::SecretTargetAttachment");
    let attached: BTreeMap<String, String> = attachments
        .iter()
        .filter_map(|(id, a)| {
            let secret = ref_target(&a["Properties"]["SecretId"])?;
            let target = ref_target(&a["Properties"]["TargetId"])?;
            assert_eq!(
                a["Properties"]["TargetType"].as_str(),
                Some("AWS::RDS::DBInstance"),
                "{id}"
            );
            Some((secret.to_owned(), target.to_owned()))
        })
        .collect();
    let primary = &resources["Database"]["Properties"];
    let password = text(&primary["MasterUserPassword"]);
    let secret = attached
        .iter()
        .find(|(secret, target)| {
            *target == "Database" && password.contains(&format!("${{{secret}}}"))
        })
        .map(|(secret, _)| secret.clone())
        .expect("the primary's password is a secret attached to it (SecretTargetAttachment)");
    assert!(
        !resources[&secret]["Properties"]["GenerateSecretString"].is_null(),
        "{secret} is generated at create time"
    );
    let rotations = of_type(&resources, "AWS::SecretsManager::RotationSchedule");
    let rotation = rotations
        .values()
        .find(|r| {
            let id = ref_target(&r["Properties"]["SecretId"]).unwrap_or_default();
            id == secret || attachments.contains_key(id)
        })
        .expect("a RotationSchedule rotates the database secret");
    let hosted = &rotation["Properties"]["HostedRotationLambda"];
    assert!(
        hosted["RotationType"]
            .as_str()
            .is_some_and(|t| t.starts_with("PostgreSQL")),
        "hosted PostgreSQL rotation"
    );
    assert!(
        text(&hosted["VpcSubnetIds"]).contains("PrivateSubnet"),
        "the rotation function runs in the private subnets"
    );
    let group = ref_target(&hosted["VpcSecurityGroupIds"]).expect("a security group of its own");
    let egress = text(&resources[group]["Properties"]["SecurityGroupEgress"]);
    assert!(
        egress.contains("DatabaseSecurityGroup") && egress.contains("EndpointSecurityGroup"),
        "{group} reaches Postgres and the Secrets Manager endpoint"
    );
    let endpoints = of_type(&resources, "AWS::EC2::VPCEndpoint");
    assert!(
        endpoints
            .values()
            .any(|e| text(&e["Properties"]["ServiceName"]).ends_with(".secretsmanager")),
        "a route to Secrets Manager from the private subnets"
    );
}

#[test]
fn schedule_names_contain_the_stack_name() {
    let template = template();
    let resources = resources(&template);
    let mut schedules = 0;
    for (id, function) in of_type(&resources, "AWS::Serverless::Function") {
        for (name, event) in events(&function) {
            if !matches!(event["Type"].as_str(), Some("ScheduleV2" | "Schedule")) {
                continue;
            }
            schedules += 1;
            let given = &event["Properties"]["Name"];
            assert!(
                text(given).contains("${AWS::StackName}"),
                "{id}.{name}: without a Name derived from the stack, SAM names the schedule \
                 after its logical id and two stacks in one account collide"
            );
        }
    }
    for (id, schedule) in of_type(&resources, "AWS::Scheduler::Schedule") {
        schedules += 1;
        assert!(
            text(&schedule["Properties"]["Name"]).contains("${AWS::StackName}"),
            "{id}"
        );
    }
    assert!(
        schedules >= 3,
        "the backup, drill and maintenance schedules"
    );
}

#[test]
fn every_http_function_is_published_with_an_alias_and_a_canary_rolled_back_by_alarms() {
    let template = template();
    let resources = resources(&template);
    let alarms = of_type(&resources, "AWS::CloudWatch::Alarm");
    let mut http_functions = 0;
    for (id, function) in of_type(&resources, "AWS::Serverless::Function") {
        let is_http = events(&function)
            .iter()
            .any(|(_, e)| e["Type"].as_str() == Some("HttpApi"));
        if !is_http {
            continue;
        }
        http_functions += 1;
        let props = &function["Properties"];
        assert!(
            props["AutoPublishAlias"]
                .as_str()
                .is_some_and(|a| !a.is_empty()),
            "{id} has an AutoPublishAlias"
        );
        let preference = &props["DeploymentPreference"];
        let kind = preference["Type"].as_str().unwrap_or_default();
        assert!(
            kind.starts_with("Canary") || kind.starts_with("Linear"),
            "{id}: a gradual deployment, not {kind:?}"
        );
        let named: Vec<&str> = preference["Alarms"]
            .as_sequence()
            .map(|a| a.iter().filter_map(ref_target).collect())
            .unwrap_or_default();
        let mut watches = BTreeSet::new();
        for alarm in &named {
            let alarm = alarms
                .get(*alarm)
                .unwrap_or_else(|| panic!("{id}: {alarm} is an alarm of the template"));
            let p = &alarm["Properties"];
            assert!(
                text(&p["Dimensions"]).contains(&id) || text(&p["MetricName"]).contains("5xx"),
                "{id}: its rollback alarms watch this function"
            );
            watches.insert(text(&p["MetricName"]));
        }
        assert!(
            watches
                .iter()
                .any(|m| m.contains("5xx") || m.contains("Errors")),
            "{id}: a rollback alarm on errors or 5xx, has {watches:?}"
        );
        assert!(
            watches
                .iter()
                .any(|m| m.contains("Duration") || m.contains("Latency")),
            "{id}: a rollback alarm on latency, has {watches:?}"
        );
    }
    assert_eq!(http_functions, 4, "health, auth, users, uploads");
}

#[test]
fn the_cloudfront_api_origin_sends_the_origin_verify_secret() {
    let template = template();
    let resources = resources(&template);
    let distributions = of_type(&resources, "AWS::CloudFront::Distribution");
    assert!(!distributions.is_empty(), "a CloudFront distribution");
    for (id, distribution) in distributions {
        let origins = distribution["Properties"]["DistributionConfig"]["Origins"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let api: Vec<_> = origins
            .iter()
            .filter(|o| text(&o["DomainName"]).contains("execute-api"))
            .collect();
        assert!(!api.is_empty(), "{id} has the HTTP API as an origin");
        for origin in api {
            let headers = origin["OriginCustomHeaders"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            let verify = headers
                .iter()
                .find(|h| {
                    h["HeaderName"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case("x-origin-verify"))
                })
                .unwrap_or_else(|| panic!("{id}: the API origin sends X-Origin-Verify"));
            assert!(
                text(&verify["HeaderValue"]).contains("{{resolve:secretsmanager:"),
                "{id}: X-Origin-Verify comes from a secret, never a literal"
            );
        }
    }
}

#[test]
fn the_http_api_has_no_default_route() {
    let template = template();
    let resources = resources(&template);
    for (id, function) in of_type(&resources, "AWS::Serverless::Function") {
        for (name, event) in events(&function) {
            if event["Type"].as_str() == Some("HttpApi") {
                assert_ne!(
                    event["Properties"]["Path"].as_str().unwrap_or("$default"),
                    "$default",
                    "{id}.{name}: a $default route sends every unknown path to a function"
                );
            }
        }
    }
    for (id, route) in of_type(&resources, "AWS::ApiGatewayV2::Route") {
        assert_ne!(text(&route["Properties"]["RouteKey"]), "$default", "{id}");
    }
}

#[test]
fn the_http_api_throttles_the_credential_routes_and_catch_alls_on_their_own() {
    let template = template();
    let resources = resources(&template);
    let api = &resources["HttpApi"]["Properties"];
    let settings = api["RouteSettings"].as_mapping().expect("RouteSettings");
    let mut declared = BTreeSet::new();
    for function in of_type(&resources, "AWS::Serverless::Function").values() {
        for (_, event) in events(function) {
            if event["Type"].as_str() == Some("HttpApi") {
                let p = &event["Properties"];
                declared.insert(format!(
                    "{} {}",
                    p["Method"].as_str().unwrap_or("ANY").to_uppercase(),
                    p["Path"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    for (key, value) in settings {
        let key = key.as_str().expect("route key");
        assert!(
            declared.contains(key),
            "RouteSettings names {key}, which is no route"
        );
        assert!(
            !value["ThrottlingBurstLimit"].is_null() && !value["ThrottlingRateLimit"].is_null(),
            "{key}"
        );
    }
    for key in [
        "POST /api/v1/auth/login",
        "POST /api/v1/auth/register",
        "ANY /api/v1/auth/{proxy+}",
    ] {
        assert!(
            settings.contains_key(Value::String(key.into())),
            "{key} is throttled"
        );
    }
}

/// Jobs of a workflow, by id.
fn jobs(workflow: &Value) -> BTreeMap<String, Value> {
    workflow["jobs"]
        .as_mapping()
        .expect("jobs")
        .iter()
        .map(|(k, v)| (k.as_str().expect("job id").to_owned(), v.clone()))
        .collect()
}

fn needs(job: &Value) -> Vec<String> {
    match &job["needs"] {
        Value::String(one) => vec![one.clone()],
        Value::Sequence(many) => many
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every job `id` waits for, directly or through others.
fn all_needs(jobs: &BTreeMap<String, Value>, id: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = needs(&jobs[id]);
    while let Some(next) = todo.pop() {
        if seen.insert(next.clone()) {
            todo.extend(needs(&jobs[&next]));
        }
    }
    seen
}

fn runs(job: &Value) -> String {
    job["steps"]
        .as_sequence()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| s["run"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn deploy_jobs_need_every_ci_job_to_have_passed() {
    let ci = yaml(".github/workflows/ci.yml");
    let triggers = |workflow: &Value| -> BTreeSet<String> {
        workflow["on"]
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        triggers(&ci).contains("workflow_call"),
        "ci.yml can be called by the deploy workflow"
    );
    let deploy = yaml(".github/workflows/deploy.yml");
    let jobs = jobs(&deploy);
    let ci_jobs: BTreeSet<String> = jobs
        .iter()
        .filter(|(_, j)| {
            j["uses"]
                .as_str()
                .is_some_and(|u| u.ends_with("/workflows/ci.yml"))
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!ci_jobs.is_empty(), "deploy.yml runs ci.yml as a job");
    let deploying: Vec<&String> = jobs
        .iter()
        .filter(|(_, j)| runs(j).contains("sam deploy"))
        .map(|(id, _)| id)
        .collect();
    assert!(!deploying.is_empty(), "a job runs sam deploy");
    for id in deploying {
        let waits = all_needs(&jobs, id);
        for ci_job in &ci_jobs {
            assert!(
                waits.contains(ci_job),
                "{id} runs sam deploy without waiting for {ci_job}: a red build would ship"
            );
        }
        let environment = text(&jobs[id]["environment"]);
        assert!(
            environment.contains("production"),
            "{id} deploys production through the production environment (its reviewers)"
        );
        let script = runs(&jobs[id]);
        assert!(
            script.contains("--max-wait") || script.contains("max_wait"),
            "{id}: sam deploy gets a max wait long enough for a first create"
        );
    }
    let on = triggers(&deploy);
    assert!(
        !on.contains("pull_request") && !on.contains("pull_request_target"),
        "pull requests never deploy"
    );
}

/// The commands that tests and the scripts they run start, and what must install each on a
/// GitHub runner (words one of ci.yml's steps must contain).
const STARTED_TOOLS: [(&str, &str, &[&str]); 6] = [
    (
        "/usr/lib/postgresql/15/bin",
        "the Postgres 15 server binaries (initdb, pg_ctl)",
        &["postgresql-15"],
    ),
    ("redis-server", "redis-server", &["redis-server"]),
    ("moto_server", "moto", &["moto[server]"]),
    ("openssl", "openssl", &["openssl"]),
    ("cargo-nextest", "cargo-nextest", &["cargo-nextest"]),
    ("/usr/sbin/nginx", "nginx", &["nginx"]),
];

#[test]
fn ci_installs_every_tool_the_test_suite_starts() {
    let sources: String = ["tests/it/support", "tests/it"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(crate::support::repo_root().join(dir))
                .expect("tests dir")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        })
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .chain(
            ["scripts/services.sh", "scripts/test.sh"]
                .into_iter()
                .map(repo_file),
        )
        .collect();
    let ci = yaml(".github/workflows/ci.yml");
    let test_job = jobs(&ci)
        .into_iter()
        .find(|(_, j)| runs(j).contains("scripts/test.sh"))
        .map(|(_, j)| j)
        .expect("a ci.yml job runs scripts/test.sh");
    assert_eq!(
        test_job["runs-on"].as_str(),
        Some("ubuntu-latest"),
        "the test job runs on ubuntu-latest"
    );
    // Lines of the job's steps that install something: `run` lines naming an installer, and the
    // tools given to install actions.
    let steps = test_job["steps"].as_sequence().cloned().unwrap_or_default();
    let installs: String = steps
        .iter()
        .flat_map(|step| {
            let runs = step["run"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .filter(|l| {
                    [
                        "apt-get install",
                        "pip install",
                        "pip\" install",
                        "cargo install",
                    ]
                    .iter()
                    .any(|i| l.contains(i))
                });
            let runs: Vec<String> = runs.map(str::to_owned).collect();
            let tools = step["with"]["tool"].as_str().map(str::to_owned);
            runs.into_iter().chain(tools)
        })
        .collect::<Vec<_>>()
        .join("\n");
    for (started, what, words) in STARTED_TOOLS {
        if !sources.contains(started) {
            continue;
        }
        assert!(
            words.iter().all(|w| installs.contains(w)),
            "the tests start {started}, but no ci.yml step installs {what} ({words:?})"
        );
    }
}

/// `scripts/preflight.sh` against stand-ins for `aws` and `gh`, on parameters written to a
/// folder of its own. Each stand-in answers from the variables the test sets.
struct Preflight {
    dir: std::path::PathBuf,
}

impl Preflight {
    const AWS: &'static str = r#"#!/usr/bin/env bash
case "$1 $2" in
  "acm describe-certificate") echo "${STUB_CERT_STATUS:-ISSUED}" ;;
  "cloudformation describe-stacks") [ -n "${STUB_CF_DOMAIN:-}" ] && echo "$STUB_CF_DOMAIN" || exit 254 ;;
  "service-quotas get-service-quota") echo "${STUB_QUOTA:-1000.0}" ;;
  "lambda get-account-settings") echo "${STUB_UNRESERVED:-1000}" ;;
  "lambda get-function-concurrency") exit 254 ;;
  *) echo "unexpected aws $*" >&2; exit 2 ;;
esac
"#;
    const GH: &'static str = r#"#!/usr/bin/env bash
[ "$1 $2" = "variable list" ] || exit 2
echo "${STUB_GH_VARS:-}" | tr ',' '\n'
"#;

    fn new(params: &serde_json::Value) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "preflight-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("temp dir");
        for (name, body) in [("aws", Self::AWS), ("gh", Self::GH)] {
            let path = bin.join(name);
            std::fs::write(&path, body).expect("stub");
            let mut perms = std::fs::metadata(&path).expect("stub").permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
            std::fs::set_permissions(&path, perms).expect("chmod");
        }
        let env = params["Environment"].as_str().expect("Environment");
        std::fs::write(dir.join(format!("{env}.json")), params.to_string()).expect("params");
        Self { dir }
    }

    /// Runs the preflight for `env`; the exit status and everything it printed.
    fn run(&self, env: &str, vars: &[(&str, &str)]) -> (bool, String) {
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(crate::support::repo_root().join("scripts/preflight.sh"))
            .arg(env)
            .env("PATH", path)
            .env("PREFLIGHT_PARAMS_DIR", &self.dir)
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_OUTPUT")
            .env_remove("AWS_DEPLOY_ROLE_ARN")
            .env_remove("AWS_CFN_EXECUTION_ROLE_ARN")
            .env_remove("SAM_ARTIFACTS_BUCKET");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("bash runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

impl Drop for Preflight {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn env_params(env: &str) -> serde_json::Value {
    serde_json::from_str(&repo_file(&format!("infra/{env}.json"))).expect("infra/<env>.json")
}

const GH_VARS: (&str, &str) = (
    "STUB_GH_VARS",
    "AWS_DEPLOY_ROLE_ARN,AWS_CFN_EXECUTION_ROLE_ARN,SAM_ARTIFACTS_BUCKET",
);

#[test]
fn the_preflight_passes_the_committed_parameters_without_a_custom_domain() {
    for env in ["staging", "production"] {
        let preflight = Preflight::new(&env_params(env));
        let (passed, out) = preflight.run(env, &[GH_VARS]);
        assert!(passed, "{env}: {out}");
        assert!(out.contains("needs_web_origin=true"), "{env}: {out}");
        let (passed, out) = preflight.run(
            env,
            &[GH_VARS, ("STUB_CF_DOMAIN", "d111111abcdef8.cloudfront.net")],
        );
        assert!(passed, "{env}: {out}");
        assert!(
            out.contains("web_origin=https://d111111abcdef8.cloudfront.net"),
            "{env}: the web origin comes from the stack's output: {out}"
        );
    }
}

#[test]
fn the_preflight_refuses_placeholder_parameters() {
    let mut params = env_params("production");
    params["WebOrigin"] = "https://app.example.com".into();
    params["AlarmEmail"] = "oncall@example.com".into();
    let (passed, out) = Preflight::new(&params).run("production", &[GH_VARS]);
    assert!(!passed, "{out}");
    assert!(out.contains("refused  production: WebOrigin="), "{out}");
    assert!(out.contains("refused  production: AlarmEmail="), "{out}");
}

#[test]
fn the_preflight_refuses_a_certificate_cloudfront_cannot_use() {
    let mut params = env_params("production");
    params["DomainName"] = "api.backend.test".into();
    params["WebOrigin"] = "https://api.backend.test".into();
    params["CertificateArn"] =
        "arn:aws:acm:eu-west-1:210987654321:certificate/1f2e3d4c-aaaa-bbbb-cccc-0123456789ab"
            .into();
    let preflight = Preflight::new(&params);
    let (passed, out) = preflight.run("production", &[GH_VARS]);
    assert!(!passed, "{out}");
    assert!(out.contains("is in eu-west-1"), "{out}");

    params["CertificateArn"] =
        "arn:aws:acm:us-east-1:210987654321:certificate/1f2e3d4c-aaaa-bbbb-cccc-0123456789ab"
            .into();
    let preflight = Preflight::new(&params);
    let (passed, out) = preflight.run("production", &[GH_VARS]);
    assert!(passed, "an issued us-east-1 certificate passes: {out}");
    let (passed, out) = preflight.run(
        "production",
        &[GH_VARS, ("STUB_CERT_STATUS", "PENDING_VALIDATION")],
    );
    assert!(!passed, "{out}");
    assert!(out.contains("PENDING_VALIDATION, not ISSUED"), "{out}");

    params
        .as_object_mut()
        .expect("object")
        .remove("CertificateArn");
    let (passed, out) = Preflight::new(&params).run("production", &[GH_VARS]);
    assert!(!passed, "{out}");
    assert!(out.contains("needs CertificateArn"), "{out}");
}

#[test]
fn the_preflight_refuses_a_lambda_concurrency_quota_too_small_for_the_reservations() {
    // Production reserves 162; Lambda keeps 100 unreserved.
    let preflight = Preflight::new(&env_params("production"));
    let (passed, out) = preflight.run("production", &[GH_VARS, ("STUB_QUOTA", "10.0")]);
    assert!(!passed, "a new account's quota of 10: {out}");
    assert!(out.contains("request at least 262"), "{out}");
    let (passed, out) = preflight.run(
        "production",
        &[
            GH_VARS,
            ("STUB_QUOTA", "1000.0"),
            ("STUB_UNRESERVED", "200"),
        ],
    );
    assert!(!passed, "staging already holds most of it: {out}");
    assert!(out.contains("under the 100 Lambda keeps"), "{out}");
    let (passed, out) = preflight.run(
        "production",
        &[GH_VARS, ("STUB_QUOTA", "262.0"), ("STUB_UNRESERVED", "262")],
    );
    assert!(passed, "exactly enough: {out}");
}

#[test]
fn the_preflight_refuses_missing_github_variables() {
    let preflight = Preflight::new(&env_params("staging"));
    let (passed, out) = preflight.run("staging", &[("STUB_GH_VARS", "AWS_DEPLOY_ROLE_ARN")]);
    assert!(!passed, "{out}");
    assert!(
        out.contains("the GitHub variable AWS_CFN_EXECUTION_ROLE_ARN is not set"),
        "{out}"
    );
    let (passed, out) = preflight.run(
        "staging",
        &[
            ("GITHUB_ACTIONS", "true"),
            (
                "AWS_DEPLOY_ROLE_ARN",
                "arn:aws:iam::210987654321:role/deploy",
            ),
        ],
    );
    assert!(!passed, "inside GitHub Actions: {out}");
    assert!(
        out.contains("the GitHub variable AWS_CFN_EXECUTION_ROLE_ARN is not set"),
        "{out}"
    );
}

/// What CloudFront's header means to the functions, through the real app and its layers.
mod origin_verify {
    use crate::support::{Settings, TestApp, request};
    use axum::body::Body;
    use http::Method;

    const SECRET: &str = "cloudfront-origin-verify-value-0123456789";

    fn get(path: &str, header: Option<&str>) -> http::Request<Body> {
        let mut req = request(Method::GET, path);
        if let Some(value) = header {
            req = req.header("x-origin-verify", value);
        }
        req.body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn with_a_secret_a_request_around_cloudfront_is_refused_before_any_route() {
        let app =
            TestApp::spawn_with(Settings::default().set("ORIGIN_VERIFY_SECRET", SECRET)).await;
        for header in [None, Some("a-guess")] {
            let res = app.send(get("/ready", header)).await;
            assert_eq!(res.status, 403, "{header:?}");
            assert_eq!(res.problem().code, "forbidden");
            assert!(
                res.header("x-request-id").is_some(),
                "a refused request still gets the layers of every response"
            );
            let res = app.send(get("/api/v1/users/me", header)).await;
            assert_eq!(res.status, 403, "before authentication: {header:?}");
        }
        let res = app.send(get("/ready", Some(SECRET))).await;
        assert_eq!(res.status, 200);
    }

    #[tokio::test]
    async fn during_a_rotation_the_previous_value_is_accepted_too() {
        let app = TestApp::spawn_with(Settings::default().set("ORIGIN_VERIFY_SECRET", SECRET).set(
            "ORIGIN_VERIFY_PREVIOUS_SECRET",
            "the-value-before-the-rotation",
        ))
        .await;
        assert_eq!(app.send(get("/ready", Some(SECRET))).await.status, 200);
        let res = app
            .send(get("/ready", Some("the-value-before-the-rotation")))
            .await;
        assert_eq!(res.status, 200);
        assert_eq!(app.send(get("/ready", Some("other"))).await.status, 403);
    }

    #[tokio::test]
    async fn unset_in_development_and_test_every_request_is_allowed() {
        let app = TestApp::spawn().await;
        assert_eq!(app.send(get("/ready", None)).await.status, 200);
    }

    #[tokio::test]
    async fn unset_in_staging_or_production_every_request_is_refused() {
        for env in ["staging", "production"] {
            let app = TestApp::spawn_with(
                Settings::default()
                    .set("APP_ENV", env)
                    .set("ALLOWED_ORIGINS", "https://app.example.com"),
            )
            .await;
            let res = app.send(get("/ready", None)).await;
            assert_eq!(
                res.status, 403,
                "{env}: a deployed function never falls open"
            );
            let res = app.send(get("/ready", Some(SECRET))).await;
            assert_eq!(res.status, 403, "{env}");
        }
    }
}

#[test]
fn each_deploy_role_trusts_only_its_own_github_environment() {
    let bootstrap = yaml("infra/bootstrap.yaml");
    let resources = resources(&bootstrap);
    assert!(
        !resources["GitHubOidcProvider"]["Condition"].is_null(),
        "an account may already have GitHub's OIDC provider"
    );
    let deploy = yaml(".github/workflows/deploy.yml");
    let session: u64 = jobs(&deploy)
        .values()
        .flat_map(|j| j["steps"].as_sequence().cloned().unwrap_or_default())
        .find_map(|s| {
            s["with"]["role-duration-seconds"]
                .as_u64()
                .or_else(|| s["with"]["role-duration-seconds"].as_str()?.parse().ok())
        })
        .expect("deploy.yml asks for a role session length");
    assert!(session >= 3 * 3600, "a first create can take over an hour");
    for (id, env) in [
        ("StagingDeployRole", "staging"),
        ("ProductionDeployRole", "production"),
    ] {
        let role = &resources[id]["Properties"];
        let statements = role["AssumeRolePolicyDocument"]["Statement"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        assert_eq!(statements.len(), 1, "{id}: one way in");
        let trust = &statements[0];
        assert_eq!(
            trust["Action"].as_str(),
            Some("sts:AssumeRoleWithWebIdentity")
        );
        assert!(
            trust["Condition"]["StringLike"].is_null(),
            "{id}: no wildcard in the subject"
        );
        let equals = &trust["Condition"]["StringEquals"];
        assert_eq!(
            equals["token.actions.githubusercontent.com:aud"].as_str(),
            Some("sts.amazonaws.com"),
            "{id}"
        );
        assert_eq!(
            text(&equals["token.actions.githubusercontent.com:sub"]),
            format!("repo:${{GitHubOwner}}/${{GitHubRepository}}:environment:{env}"),
            "{id}: trusted only for the {env} environment of this repository"
        );
        assert!(
            role["MaxSessionDuration"].as_u64().unwrap_or(3600) >= session,
            "{id}: allows the session deploy.yml asks for"
        );
    }
    let execution = &resources["CloudFormationExecutionRole"]["Properties"];
    assert_eq!(
        text(&execution["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]),
        "Service cloudformation.amazonaws.com",
        "only CloudFormation can act as the execution role"
    );
    let common = text(&resources["DeployCommonPolicy"]["Properties"]["PolicyDocument"]);
    assert!(
        common.contains("iam:PassRole")
            && common.contains("CloudFormationExecutionRole.Arn")
            && common.contains("iam:PassedToService"),
        "the deploy roles pass the execution role, to CloudFormation only"
    );
}

/// The application's own login: the migrate function creates it from its secret, with only the
/// privileges the application needs, and keeps it in step with rotations.
mod app_role {
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    use serde_json::json;

    use crate::support::{
        moto,
        throwaway::{PgOptions, ThrowawayPostgres},
    };

    async fn secrets() -> aws_sdk_secretsmanager::Client {
        moto::ensure_running().await;
        aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(moto::ENDPOINT)
                .credentials_provider(Credentials::new("test", "test", None, None, "test"))
                .http_client(platform::aws::http_client())
                .build(),
        )
    }

    fn login(user: &str, password: &str) -> String {
        json!({"username": user, "password": password, "engine": "postgres", "host": "127.0.0.1",
               "dbname": "postgres", "masterarn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:master"})
            .to_string()
    }

    async fn up(pg: &ThrowawayPostgres, arn: &str, command: migrate::Request) {
        let (url, arn) = (pg.superuser_url(), arn.to_owned());
        let config = platform::config::Config::from_lookup(move |name| match name {
            "DATABASE_URL" => Some(url.clone()),
            "APP_ENV" => Some("production".into()),
            "APP_DATABASE_SECRET_ARN" => Some(arn.clone()),
            "AWS_ENDPOINT_URL" => Some(moto::ENDPOINT.into()),
            _ => None,
        })
        .expect("config");
        migrate::handle(&config, command).await.expect("migrate");
    }

    async fn connect(
        pg: &ThrowawayPostgres,
        user: &str,
        password: &str,
    ) -> Option<tokio_postgres::Client> {
        let (client, conn) =
            tokio_postgres::connect(&pg.url(user, password, "postgres"), tokio_postgres::NoTls)
                .await
                .ok()?;
        tokio::spawn(conn);
        Some(client)
    }

    #[tokio::test]
    async fn the_application_logs_in_as_its_own_role_with_only_the_rights_it_needs() {
        let pg = ThrowawayPostgres::start(&PgOptions::default());
        let sm = secrets().await;
        let arn = sm
            .create_secret()
            .name(format!("app-login-{}", uuid::Uuid::new_v4().simple()))
            .secret_string(login("app_user", "first-app-password"))
            .send()
            .await
            .expect("secret")
            .arn()
            .expect("arn")
            .to_owned();
        up(&pg, &arn, migrate::Request::UP).await;

        let app = connect(&pg, "app_user", "first-app-password")
            .await
            .expect("the secret's login works");
        app.execute(
            "INSERT INTO users (id, email, name, password_hash) VALUES (gen_random_uuid(), 'a@b.test', 'A', 'h')",
            &[],
        )
        .await
        .expect("the application writes its tables");
        app.query_one("SELECT count(*) FROM users", &[])
            .await
            .expect("and reads them");
        for forbidden in [
            "SELECT * FROM schema_migrations",
            "CREATE TABLE intruder (x int)",
            "DROP TABLE users",
            "CREATE ROLE intruder",
        ] {
            assert!(
                app.batch_execute(forbidden).await.is_err(),
                "the application may not: {forbidden}"
            );
        }

        // A rotation: the multi-user scheme's next login is the clone, with a new password.
        sm.put_secret_value()
            .secret_id(&arn)
            .secret_string(login("app_user_clone", "second-app-password"))
            .send()
            .await
            .expect("rotate");
        up(
            &pg,
            &arn,
            migrate::Request {
                command: migrate::Command::Status,
            },
        )
        .await;
        assert!(
            connect(&pg, "app_user_clone", "second-app-password")
                .await
                .is_none(),
            "status changes nothing"
        );
        up(&pg, &arn, migrate::Request::UP).await;
        let clone = connect(&pg, "app_user_clone", "second-app-password")
            .await
            .expect("the rotated login works after up");
        clone
            .query_one("SELECT count(*) FROM users", &[])
            .await
            .expect("with the same rights");

        // The secret's password is the truth: one changed behind its back is set back.
        pg.psql("ALTER ROLE app_user_clone PASSWORD 'changed-by-hand'");
        up(&pg, &arn, migrate::Request::UP).await;
        assert!(
            connect(&pg, "app_user_clone", "second-app-password")
                .await
                .is_some()
        );
        assert!(
            connect(&pg, "app_user_clone", "changed-by-hand")
                .await
                .is_none()
        );
    }
}

#[test]
fn the_http_functions_connect_with_the_applications_own_login_not_the_master() {
    let template = template();
    let resources = resources(&template);
    let master = "DatabaseSecret";
    let global = ref_target(
        &template["Globals"]["Function"]["Environment"]["Variables"]["DATABASE_SECRET_ARN"],
    )
    .expect("a global DATABASE_SECRET_ARN");
    for (id, function) in of_type(&resources, "AWS::Serverless::Function") {
        let own = &function["Properties"]["Environment"]["Variables"]["DATABASE_SECRET_ARN"];
        let secret = ref_target(own).unwrap_or(global);
        let is_http = events(&function)
            .iter()
            .any(|(_, e)| e["Type"].as_str() == Some("HttpApi"));
        if is_http {
            assert_ne!(secret, master, "{id} connects as the master user");
        }
    }
    let app = global;
    let rotation = of_type(&resources, "AWS::SecretsManager::RotationSchedule")
        .into_values()
        .find(|r| {
            let id = ref_target(&r["Properties"]["SecretId"]).unwrap_or_default();
            id == app || text(&resources[id]["Properties"]["SecretId"]) == app
        })
        .expect("the application's secret rotates");
    let hosted = &rotation["Properties"]["HostedRotationLambda"];
    assert_eq!(hosted["RotationType"].as_str(), Some("PostgreSQLMultiUser"));
    assert_eq!(ref_target(&hosted["MasterSecretArn"]), Some(master));
    assert!(
        text(&resources[app]["Properties"]["GenerateSecretString"]).contains("masterarn"),
        "the multi-user rotation finds the master secret through masterarn"
    );
    let migrate = &resources["MigrateFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        ref_target(&migrate["APP_DATABASE_SECRET_ARN"]),
        Some(app),
        "the migrate function creates the login its secret names"
    );
}

/// The lifecycle rules of a bucket's `LifecycleConfiguration`.
fn lifecycle_rules(bucket: &Value) -> Vec<Value> {
    bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn deleted_uploads_stay_restorable_for_a_while_and_are_then_gone_for_good() {
    let template = template();
    let resources = resources(&template);
    let uploads = &resources["UploadsBucket"];
    assert_eq!(
        uploads["Properties"]["VersioningConfiguration"]["Status"].as_str(),
        Some("Enabled"),
        "a deleted or overwritten upload can be brought back"
    );
    let rules = lifecycle_rules(uploads);
    let enabled = |r: &&Value| r["Status"].as_str() == Some("Enabled");
    let noncurrent_days: Vec<u64> = rules
        .iter()
        .filter(enabled)
        .filter_map(|r| r["NoncurrentVersionExpiration"]["NoncurrentDays"].as_u64())
        .collect();
    assert!(
        noncurrent_days.iter().any(|d| (1..=30).contains(d)),
        "noncurrent versions expire within 30 days: a deleted account's files must end, \
         found {noncurrent_days:?}"
    );
    assert!(
        rules
            .iter()
            .filter(enabled)
            .any(|r| is_true(&r["ExpiredObjectDeleteMarker"])),
        "the delete markers left by deletions are removed once nothing is behind them"
    );
    assert!(
        rules.iter().filter(enabled).any(|r| {
            r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
                .as_u64()
                .is_some()
        }),
        "abandoned multipart uploads are still aborted"
    );
    for (id, role) in of_type(&resources, "AWS::IAM::Role") {
        assert!(
            !text(&role["Properties"]["Policies"]).contains("s3:DeleteObjectVersion"),
            "{id} may delete object versions: only the lifecycle rule ends a version"
        );
    }
}

#[test]
fn the_cross_region_copy_of_the_backups_is_off_unless_a_destination_is_named() {
    let template = template();
    let parameter = &template["Parameters"]["BackupReplicaBucketArn"];
    assert_eq!(
        parameter["Default"].as_str(),
        Some(""),
        "empty by default: the copy is opt-in"
    );
    let condition = text(&template["Conditions"]["ReplicateBackups"]);
    assert!(condition.contains("BackupReplicaBucketArn"), "{condition}");
    let resources = resources(&template);
    let backups = &resources["BackupsBucket"]["Properties"];
    assert_eq!(
        backups["VersioningConfiguration"]["Status"].as_str(),
        Some("Enabled"),
        "S3 replication needs versioning on the source"
    );
    let replication = &backups["ReplicationConfiguration"];
    assert_eq!(
        tag(replication).as_deref(),
        Some("If"),
        "the replication rule exists only with a destination"
    );
    let branches = untag(replication).as_sequence().expect("!If [cond, a, b]");
    assert_eq!(branches[0].as_str(), Some("ReplicateBackups"));
    assert_eq!(
        ref_target(&branches[2]),
        Some("AWS::NoValue"),
        "no replication without a destination"
    );
    let rules = branches[1]["Rules"].as_sequence().expect("rules");
    assert!(
        rules
            .iter()
            .all(|r| ref_target(&r["Destination"]["Bucket"]) == Some("BackupReplicaBucketArn")),
        "every rule replicates to the named bucket"
    );
    let role_id = text(&branches[1]["Role"]);
    let role_id = role_id.split('.').next().unwrap_or_default();
    let role = &resources[role_id];
    assert_eq!(
        role["Condition"].as_str(),
        Some("ReplicateBackups"),
        "{role_id} exists only when replication is on"
    );
    let policy = text(&role["Properties"]["Policies"]);
    assert!(
        policy.contains("s3:ReplicateObject") && !policy.contains("s3:*"),
        "{role_id}: replication rights only"
    );
    let replica = yaml("infra/backup-replica.yaml");
    assert_eq!(
        replica["Resources"]["ReplicaBucket"]["Properties"]["VersioningConfiguration"]["Status"]
            .as_str(),
        Some("Enabled"),
        "S3 replication needs versioning on the destination too"
    );
}

/// The logical id a `!GetAtt X.Attr` names.
fn getatt_target(v: &Value) -> Option<String> {
    (tag(v).as_deref() == Some("GetAtt"))
        .then(|| text(v).split('.').next().map(str::to_owned))
        .flatten()
}

/// The schedule whose `Name` contains `name`.
fn schedule<'a>(resources: &'a BTreeMap<String, Value>, name: &str) -> (&'a str, &'a Value) {
    resources
        .iter()
        .find(|(_, r)| {
            r["Type"].as_str() == Some("AWS::Scheduler::Schedule")
                && text(&r["Properties"]["Name"]).contains(name)
        })
        .map(|(id, r)| (id.as_str(), r))
        .unwrap_or_else(|| panic!("a schedule named *{name}*"))
}

/// The value of an ECS container's environment variable.
fn container_env(container: &Value, name: &str) -> Option<Value> {
    container["Environment"]
        .as_sequence()?
        .iter()
        .find_map(|pair| (pair["Name"].as_str() == Some(name)).then(|| pair["Value"].clone()))
}

fn containers(task_definition: &Value) -> Vec<Value> {
    task_definition["Properties"]["ContainerDefinitions"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
}

/// Checks an ECS target the way EventBridge Scheduler needs it, and answers the task
/// definition's logical id.
fn ecs_target(resources: &BTreeMap<String, Value>, id: &str, target: &Value) -> String {
    let cluster = getatt_target(&target["Arn"]).unwrap_or_default();
    assert_eq!(
        resources[&cluster]["Type"].as_str(),
        Some("AWS::ECS::Cluster"),
        "{id} targets a cluster's ARN"
    );
    let ecs = &target["EcsParameters"];
    assert_eq!(ecs["LaunchType"].as_str(), Some("FARGATE"), "{id}");
    assert!(
        ecs["PlatformVersion"]
            .as_str()
            .is_some_and(|v| v == "LATEST" || v >= "1.4.0"),
        "{id}: ARM64 and ephemeral storage need platform version 1.4.0"
    );
    let network = &ecs["NetworkConfiguration"]["AwsvpcConfiguration"];
    assert_eq!(
        network["AssignPublicIp"].as_str(),
        Some("DISABLED"),
        "{id}: the task stays in the private subnets, with no public address"
    );
    let subnets = network["Subnets"].as_sequence().expect("subnets");
    assert!(
        !subnets.is_empty()
            && subnets
                .iter()
                .all(|s| ref_target(s).is_some_and(|s| s.starts_with("PrivateSubnet"))),
        "{id}: private subnets only"
    );
    let definition = ref_target(&ecs["TaskDefinitionArn"])
        .unwrap_or_else(|| panic!("{id}: TaskDefinitionArn is a !Ref"))
        .to_owned();
    assert_eq!(
        resources[&definition]["Type"].as_str(),
        Some("AWS::ECS::TaskDefinition")
    );
    // The role the schedule runs as may start that family and pass the task's own two roles.
    let role = getatt_target(&target["RoleArn"]).expect("RoleArn");
    let policy = text(&resources[&role]["Properties"]["Policies"]);
    let family = text(&resources[&definition]["Properties"]["Family"]);
    assert!(
        policy.contains("ecs:RunTask") && policy.contains(&format!("task-definition/{family}:")),
        "{role} runs {family}"
    );
    let task = &resources[&definition]["Properties"];
    for passed in ["TaskRoleArn", "ExecutionRoleArn"] {
        let passed = getatt_target(&task[passed]).expect(passed);
        assert!(
            policy.contains("iam:PassRole") && policy.contains(&format!("{passed}.Arn")),
            "{role} passes {passed} (ECS developer guide, \"Amazon ECS EventBridge IAM role\")"
        );
    }
    assert!(
        policy.contains("iam:PassedToService"),
        "{role} passes to ECS only"
    );
    definition
}

#[test]
fn the_weekly_drill_runs_as_a_fargate_task_and_never_on_the_backup_function() {
    let template = template();
    let resources = resources(&template);
    for (id, function) in of_type(&resources, "AWS::Serverless::Function") {
        for (name, event) in events(&function) {
            assert!(
                !text(&event["Properties"]["Input"]).contains("drill"),
                "{id}.{name} runs the drill in a function: it restores into the primary"
            );
        }
    }
    let (id, drill) = schedule(&resources, "weekly-restore-drill");
    let target = &drill["Properties"]["Target"];
    assert!(
        tag(target).is_none(),
        "{id}: always the task, whatever the parameters"
    );
    assert_ne!(
        getatt_target(&target["Arn"]).as_deref(),
        Some("BackupFunction"),
        "{id} does not invoke the function"
    );
    let definition = ecs_target(&resources, id, target);
    assert_eq!(definition, "DrillTaskDefinition");
}

#[test]
fn the_drill_restores_into_its_own_postgres_and_cannot_reach_the_database() {
    let template = template();
    let resources = resources(&template);
    let drill = &resources["DrillTaskDefinition"];
    let containers = containers(drill);
    let sidecar = containers
        .iter()
        .find(|c| ref_target(&c["Image"]) == Some("DrillDatabaseImageUri"))
        .expect("a Postgres container in the drill's task");
    let sidecar_name = sidecar["Name"].as_str().expect("name");
    assert!(
        text(&sidecar["Command"]).contains("listen_addresses=127.0.0.1"),
        "the scratch Postgres trusts local connections, so it listens on the loopback only"
    );
    assert!(
        !sidecar["HealthCheck"]["Command"].is_null(),
        "a health check the drill can wait for"
    );
    let runner = containers
        .iter()
        .find(|c| text(&c["Command"]).contains("drill"))
        .expect("the container that runs db drill");
    assert!(
        is_true(&runner["Essential"]),
        "the task ends with the drill"
    );
    assert!(
        runner["DependsOn"]
            .as_sequence()
            .is_some_and(|d| d.iter().any(|d| {
                d["ContainerName"].as_str() == Some(sidecar_name)
                    && d["Condition"].as_str() == Some("HEALTHY")
            })),
        "the drill starts once its Postgres answers"
    );
    let url = container_env(runner, "DATABASE_URL").expect("the drill's DATABASE_URL");
    assert!(
        tag(&url).is_none(),
        "a literal URL, naming no stack resource"
    );
    let url = url.as_str().unwrap_or_default();
    assert!(
        url.starts_with("postgres://")
            && (url.contains("@127.0.0.1:") || url.contains("@localhost:")),
        "the drill restores into the task's own Postgres, not {url}"
    );
    assert!(
        !text(&drill["Properties"]).contains("Database.Endpoint")
            && !text(&drill["Properties"]).contains("DbProxy"),
        "nothing in the drill's task names the RDS endpoints"
    );
    for container in &containers {
        assert!(
            container["Secrets"].is_null(),
            "{}: the drill gets no database secret",
            text(&container["Name"])
        );
    }
    for role in ["TaskRoleArn", "ExecutionRoleArn"] {
        let role = getatt_target(&drill["Properties"][role]).expect(role);
        let role = text(&resources[&role]["Properties"]);
        assert!(
            !role.contains("secretsmanager") && !role.contains("rds"),
            "the drill's roles read no secret and touch no database: {role}"
        );
    }
    // The network: the drill's security group opens nothing to Postgres, and the database
    // admits nothing from it.
    let (id, schedule) = schedule(&resources, "weekly-restore-drill");
    let groups = &schedule["Properties"]["Target"]["EcsParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        ["SecurityGroups"];
    for group in groups.as_sequence().expect("security groups") {
        let group = ref_target(group).expect("a !Ref");
        assert_ne!(
            group, "LambdaSecurityGroup",
            "{id}: the functions' group reaches the database"
        );
        let egress = &resources[group]["Properties"]["SecurityGroupEgress"];
        assert!(
            egress.as_sequence().is_some_and(|rules| rules
                .iter()
                .all(|r| r["FromPort"].as_u64() == Some(443) && r["ToPort"].as_u64() == Some(443))),
            "{group}: HTTPS only"
        );
        for (rule, r) in of_type(&resources, "AWS::EC2::SecurityGroupEgress") {
            assert_ne!(
                ref_target(&r["Properties"]["GroupId"]),
                Some(group),
                "{rule}"
            );
        }
        for (rule, r) in of_type(&resources, "AWS::EC2::SecurityGroupIngress") {
            if ref_target(&r["Properties"]["SourceSecurityGroupId"]) == Some(group) {
                assert_eq!(
                    ref_target(&r["Properties"]["GroupId"]),
                    Some("EndpointSecurityGroup"),
                    "{rule}: the drill reaches the VPC endpoints only"
                );
            }
        }
    }
}

#[test]
fn the_backup_and_drill_tasks_hold_only_what_they_need_in_s3_and_secrets() {
    let template = template();
    let resources = resources(&template);
    for definition in ["BackupTaskDefinition", "DrillTaskDefinition"] {
        let task = &resources[definition]["Properties"];
        assert_eq!(
            text(&task["RuntimePlatform"]),
            "CpuArchitecture ARM64 OperatingSystemFamily LINUX",
            "{definition}: the image is linux/arm64"
        );
        // Fargate's valid pairs (ECS developer guide, "Task CPU and memory").
        let cpu: u64 = text(&task["Cpu"]).parse().expect("cpu");
        let memory: u64 = text(&task["Memory"]).parse().expect("memory");
        let valid = match cpu {
            1024 => (2048..=8192).contains(&memory),
            2048 => (4096..=16384).contains(&memory),
            4096 => (8192..=30720).contains(&memory),
            _ => false,
        } && memory.is_multiple_of(1024);
        assert!(
            valid,
            "{definition}: {cpu} CPU units with {memory} MiB is no Fargate size"
        );
        for container in containers(&resources[definition]) {
            if ref_target(&container["Image"]) == Some("BackupImageUri") {
                assert!(
                    is_true(&container["ReadonlyRootFilesystem"]),
                    "{definition}: db writes nothing locally"
                );
            }
        }

        let task_role = getatt_target(&task["TaskRoleArn"]).expect("task role");
        let statements = resources[&task_role]["Properties"]["Policies"]
            .as_sequence()
            .expect("inline policies")
            .iter()
            .flat_map(|p| {
                p["PolicyDocument"]["Statement"]
                    .as_sequence()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>();
        assert!(
            resources[&task_role]["Properties"]["ManagedPolicyArns"].is_null(),
            "{task_role}: no managed policy beside its own statements"
        );
        for statement in &statements {
            let actions = text(&statement["Action"]);
            let resource = text(&statement["Resource"]);
            assert!(
                actions
                    .split_whitespace()
                    .all(|a| a.starts_with("s3:") && a != "s3:*"),
                "{task_role}: S3 actions only, each named: {actions}"
            );
            assert!(
                !actions.contains("Delete"),
                "{task_role}: a backup task never deletes a backup"
            );
            assert!(
                resource.starts_with("BackupsBucket.Arn")
                    || resource.starts_with("${BackupsBucket.Arn}/backups/"),
                "{task_role}: the backups bucket's backups/ only, not {resource}"
            );
            if resource == "BackupsBucket.Arn" {
                assert_eq!(
                    text(&statement["Condition"]),
                    "StringLike s3:prefix backups/*",
                    "{task_role}: lists backups/ only"
                );
            }
        }
        let execution = getatt_target(&task["ExecutionRoleArn"]).expect("execution role");
        let own = text(&resources[&execution]["Properties"]["Policies"]);
        let named: BTreeSet<&str> = own.split_whitespace().collect();
        for secret in ["AppSecret", "AppDatabaseSecret"] {
            assert!(!named.contains(secret), "{execution} reads {secret}");
        }
        assert!(
            !own.contains("rds-db:") && !own.contains("rds:"),
            "{execution}"
        );
    }
    // Only the backup's container gets the master password, injected by ECS.
    let backup = containers(&resources["BackupTaskDefinition"]);
    let injected = text(&backup[0]["Secrets"]);
    assert!(
        injected.contains("${DatabaseSecret}:password::"),
        "the backup logs in as the master user, as the function does: {injected}"
    );
    let url = text(&container_env(&backup[0], "DATABASE_URL").expect("DATABASE_URL"));
    assert!(
        url.starts_with("postgres://app_admin@${Database.Endpoint.Address}:"),
        "straight to the primary (a long dump would pin a proxy connection), and no password \
         in the template: {url}"
    );
    let pull = text(&resources["BackupTaskPullPolicy"]["Properties"]["PolicyDocument"]);
    assert!(
        pull.contains("ecr:BatchGetImage") && pull.contains(":repository/${Repository}"),
        "the execution roles pull from the images' repository only"
    );
}

#[test]
fn the_daily_backup_runs_where_backup_platform_says() {
    let template = template();
    let platform = &template["Parameters"]["BackupPlatform"];
    assert_eq!(text(&platform["AllowedValues"]), "lambda fargate");
    assert!(text(&template["Conditions"]["BackupOnFargate"]).contains("BackupPlatform"));
    let resources = resources(&template);
    let (id, daily) = schedule(&resources, "daily-backup");
    let target = &daily["Properties"]["Target"];
    assert_eq!(
        tag(target).as_deref(),
        Some("If"),
        "{id}: Lambda or Fargate"
    );
    let branches = untag(target).as_sequence().expect("!If [cond, a, b]");
    assert_eq!(branches[0].as_str(), Some("BackupOnFargate"));
    assert_eq!(
        ecs_target(&resources, id, &branches[1]),
        "BackupTaskDefinition"
    );
    let backup = containers(&resources["BackupTaskDefinition"]);
    assert_eq!(text(&backup[0]["Command"]), "backup");
    assert_eq!(
        getatt_target(&branches[2]["Arn"]).as_deref(),
        Some("BackupFunction"),
        "{id}: on Lambda, the function"
    );
    assert_eq!(text(&branches[2]["Input"]), r#"{"task":"backup"}"#);
    let network = &branches[1]["EcsParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"];
    assert_eq!(
        text(&network["SecurityGroups"]),
        text(&template["Globals"]["Function"]["VpcConfig"]["SecurityGroupIds"]),
        "{id}: the Fargate backup reaches the database as the function does"
    );
}

/// The steps of a job, in order.
fn steps(job: &Value) -> Vec<Value> {
    job["steps"].as_sequence().cloned().unwrap_or_default()
}

#[test]
fn the_deploy_pushes_the_backup_images_by_commit_before_sam_deploy_names_them() {
    let deploy = yaml(".github/workflows/deploy.yml");
    let jobs = jobs(&deploy);
    for (id, job) in jobs.iter().filter(|(_, j)| runs(j).contains("sam deploy")) {
        let steps = steps(job);
        let run = |s: &Value| s["run"].as_str().unwrap_or_default().to_owned();
        let push = steps
            .iter()
            .position(|s| {
                let r = run(s);
                r.contains("docker buildx build") && r.contains("--push")
            })
            .unwrap_or_else(|| panic!("{id} builds and pushes the backup images"));
        let push_script = run(&steps[push]);
        assert!(
            push_script.contains("--platform linux/arm64")
                && push_script.contains("infra/backup/Dockerfile")
                && push_script.contains("$GITHUB_SHA"),
            "{id}: linux/arm64 images of infra/backup/Dockerfile, tagged by commit"
        );
        let first_deploy = steps
            .iter()
            .position(|s| run(s).contains("sam deploy"))
            .expect("sam deploy");
        assert!(
            push < first_deploy,
            "{id}: the images are pushed before the stack that names them is deployed"
        );
        let login = steps
            .iter()
            .position(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("aws-actions/amazon-ecr-login@"))
            })
            .unwrap_or_else(|| panic!("{id} logs in to ECR"));
        assert!(login < push);
        let built = steps
            .iter()
            .position(|s| run(s).contains("--bin db"))
            .unwrap_or_else(|| panic!("{id} builds the db binary the image carries"));
        assert!(built < push);
        let push_id = steps[push]["id"].as_str().expect("the push step has an id");
        for step in steps.iter().filter(|s| {
            let r = run(s);
            r.contains("sam deploy") && r.contains("check_params.py overrides")
        }) {
            let script = run(step);
            let env = text(&step["env"]);
            assert!(
                script.contains("BackupImageUri=") && script.contains("DrillDatabaseImageUri="),
                "{id}: every deploy from the template passes both image URIs"
            );
            assert!(
                env.contains(&format!("steps.{push_id}.outputs.")),
                "{id}: the URIs are the pushed images"
            );
        }
    }
}

/// An alarm's runbook, as its description names it (`Runbook docs/runbooks/x.md`).
fn runbook_of(alarm: &Value) -> Option<String> {
    let description = text(&alarm["Properties"]["AlarmDescription"]);
    let (_, rest) = description.split_once("Runbook ")?;
    Some(rest.split_whitespace().next()?.to_owned())
}

/// The one alarm watching `metric`, with its properties.
fn alarm_on<'a>(alarms: &'a BTreeMap<String, Value>, metric: &str) -> (&'a str, &'a Value) {
    let found: Vec<(&str, &Value)> = alarms
        .iter()
        .filter(|(_, a)| {
            let p = &a["Properties"];
            text(&p["MetricName"]) == metric
                || p["Metrics"].as_sequence().is_some_and(|ms| {
                    ms.iter()
                        .any(|m| text(&m["MetricStat"]["Metric"]["MetricName"]) == metric)
                })
        })
        .map(|(id, a)| (id.as_str(), &a["Properties"]))
        .collect();
    assert!(!found.is_empty(), "an alarm on {metric}");
    found[0]
}

fn threshold(p: &Value) -> f64 {
    p["Threshold"].as_f64().expect("a numeric threshold")
}

#[test]
fn every_alarm_names_a_runbook_that_exists_and_names_it_back() {
    let template = template();
    let alarms = of_type(&resources(&template), "AWS::CloudWatch::Alarm");
    assert!(alarms.len() > 30, "{}", alarms.len());
    for (id, alarm) in &alarms {
        let runbook = runbook_of(alarm).unwrap_or_else(|| panic!("{id} names no runbook"));
        assert!(
            runbook.starts_with("docs/runbooks/") && runbook.ends_with(".md"),
            "{id}: {runbook}"
        );
        let body = repo_file(&runbook);
        // The alarm's name is `${AWS::StackName}-<suffix>`: the runbook quotes the suffix.
        let name = text(&alarm["Properties"]["AlarmName"]);
        let suffix = name
            .strip_prefix("${AWS::StackName}")
            .unwrap_or_else(|| panic!("{id}: the name starts with the stack's: {name}"));
        let generic = suffix
            .split('-')
            .map(|part| {
                if ["health", "auth", "users", "uploads", "backup", "migrate"].contains(&part) {
                    "<function>"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("-");
        assert!(
            body.contains(suffix) || body.contains(&generic),
            "{runbook} mentions {id}'s alarm ({suffix} or {generic})"
        );
    }
}

#[test]
fn each_threshold_of_the_spec_has_its_alarm_and_every_new_alarm_a_log_query() {
    let template = template();
    let resources = resources(&template);
    let alarms = of_type(&resources, "AWS::CloudWatch::Alarm");

    let latency = &alarms["ApiLatencyP95Alarm"]["Properties"];
    assert_eq!(latency["ExtendedStatistic"].as_str(), Some("p95"));
    assert_eq!(threshold(latency), 500.0);
    let errors = &alarms["Api5xxRateAlarm"]["Properties"];
    assert_eq!(threshold(errors), 1.0, "error rate above 1 %");

    let (_, db) = alarm_on(&alarms, "DbQueryTime");
    assert_eq!(threshold(db), 200.0, "database time above 200 ms");
    assert_eq!(
        db["ComparisonOperator"].as_str(),
        Some("GreaterThanThreshold")
    );
    for m in db["Metrics"].as_sequence().expect("metric math") {
        if m.get("MetricStat").is_some() {
            assert_eq!(
                m["MetricStat"]["Metric"]["Namespace"].as_str(),
                Some("Backend")
            );
            assert_eq!(m["MetricStat"]["Stat"].as_str(), Some("p95"));
        }
    }

    let (_, uptime) = alarm_on(&alarms, "SuccessPercent");
    assert_eq!(threshold(uptime), 99.5, "uptime below 99.5 %");
    assert_eq!(
        uptime["ComparisonOperator"].as_str(),
        Some("LessThanThreshold")
    );
    let canary_id = ref_target(&uptime["Dimensions"][0]["Value"]).expect("the canary");
    let canary = &resources[canary_id]["Properties"];
    assert_eq!(
        canary["Schedule"]["Expression"].as_str(),
        Some("rate(5 minutes)")
    );
    let script = text(&canary["Code"]["Script"]);
    for step in ["'/health'", "'/api/v1/auth/login'"] {
        assert!(script.contains(step), "the canary calls {step}");
    }
    assert!(is_true(&canary["StartCanaryAfterCreation"]));

    let (_, bypass) = alarm_on(&alarms, "RateLimiterBypassed");
    assert_eq!(threshold(bypass), 0.0, "any bypass");
    alarm_on(&alarms, "DatabaseMemoryUsagePercentage");
    alarm_on(&alarms, "Evictions");
    alarm_on(&alarms, "ReplicaLag");

    // The new alarms' runbooks carry the Logs Insights query that finds the requests.
    for metric in [
        "DbQueryTime",
        "SuccessPercent",
        "RateLimiterBypassed",
        "Evictions",
        "ReplicaLag",
    ] {
        let (id, _) = alarm_on(&alarms, metric);
        let runbook = repo_file(&runbook_of(&alarms[id]).expect("a runbook"));
        assert!(
            runbook.contains("Logs Insights") && runbook.contains("fields @timestamp"),
            "{id}'s runbook has a Logs Insights query"
        );
        assert!(
            runbook.contains("Dashboard"),
            "{id}'s runbook names its dashboard widget"
        );
    }
}

#[test]
fn backup_and_drill_alarms_stay_quiet_before_the_first_run_and_catch_a_silence_or_a_failure() {
    let template = template();
    let alarms = of_type(&resources(&template), "AWS::CloudWatch::Alarm");
    for metric in ["BackupSucceeded", "DrillSucceeded"] {
        let on: Vec<&Value> = alarms
            .values()
            .map(|a| &a["Properties"])
            .filter(|p| text(&p["MetricName"]) == metric)
            .collect();
        assert_eq!(on.len(), 2, "{metric}: a silence alarm and a failure alarm");
        for p in &on {
            assert_ne!(
                p["TreatMissingData"].as_str(),
                Some("breaching"),
                "{metric}: no data before the first run is not a failure"
            );
            assert!(
                p["TreatMissingData"].as_str().is_some(),
                "{metric}: chosen, not defaulted"
            );
        }
        let silence = on
            .iter()
            .find(|p| p["TreatMissingData"].as_str() == Some("missing"))
            .unwrap_or_else(|| panic!("{metric}: a silence alarm"));
        // A new alarm starts in INSUFFICIENT_DATA; reports ending puts it back there, which
        // must notify.
        assert!(
            silence["InsufficientDataActions"]
                .as_sequence()
                .is_some_and(|a| !a.is_empty()),
            "{metric}: a silence notifies"
        );
        let failure = on
            .iter()
            .find(|p| p["TreatMissingData"].as_str() == Some("notBreaching"))
            .unwrap_or_else(|| panic!("{metric}: a failure alarm"));
        assert_eq!(failure["Statistic"].as_str(), Some("Minimum"));
        assert_eq!(
            threshold(failure),
            1.0,
            "{metric}: a 0 reported is a failure"
        );
    }
}

#[test]
fn alarms_notify_by_optional_email_and_optional_https() {
    let template = template();
    let resources = resources(&template);
    let subscriptions = of_type(&resources, "AWS::SNS::Subscription");
    let protocols: BTreeSet<String> = subscriptions
        .values()
        .map(|s| {
            assert!(s["Condition"].as_str().is_some(), "optional: {s:?}");
            text(&s["Properties"]["Protocol"])
        })
        .collect();
    assert_eq!(
        protocols,
        BTreeSet::from(["email".to_owned(), "https".to_owned()])
    );
    for param in ["AlarmEmail", "AlarmWebhookUrl"] {
        assert_eq!(
            template["Parameters"][param]["Default"].as_str(),
            Some(""),
            "{param} is optional"
        );
    }
}

/// The dashboard's JSON, with every `${...}` of its `!Sub` replaced by a placeholder.
fn dashboard_body(dashboard: &Value) -> serde_json::Value {
    let body = &dashboard["Properties"]["DashboardBody"];
    let source = match untag(body) {
        Value::Sequence(parts) => text(&parts[0]),
        other => text(other),
    };
    let mut out = String::new();
    let mut rest = source.as_str();
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${") + start;
        out.push_str("SUBSTITUTED");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("the dashboard body is JSON: {e}\n{out}"))
}

#[test]
fn the_dashboard_charts_every_request_metric_the_functions_write() {
    let template = template();
    let resources = resources(&template);
    let dashboards = of_type(&resources, "AWS::CloudWatch::Dashboard");
    assert_eq!(
        dashboards.len(),
        1,
        "one dashboard per stack, so per environment"
    );
    let (_, dashboard) = dashboards.iter().next().expect("the dashboard");
    assert!(text(&dashboard["Properties"]["DashboardName"]).contains("${AWS::StackName}"));
    let body = dashboard_body(dashboard);
    let mut charted = BTreeSet::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        for row in widget["properties"]["metrics"].as_array().expect("metrics") {
            let row = row.as_array().expect("a metric row");
            // `...` repeats the row above with other dimensions: the same metric.
            if let (Some(namespace), Some(name)) = (row[0].as_str(), row[1].as_str())
                && namespace != "..."
            {
                charted.insert(format!("{namespace}/{name}"));
            }
        }
    }
    // Every metric a request can write, from the code that writes them.
    platform::metrics::mark_process_start();
    let line = rt().block_on(async {
        let ((), used) = platform::metrics::RequestMetrics::scope(async {
            platform::metrics::db_pool_wait(std::time::Duration::from_millis(1));
            platform::metrics::db_time(std::time::Duration::from_millis(1));
            platform::metrics::redis_call(std::time::Duration::from_millis(1));
            platform::metrics::profile_cache(true);
        })
        .await;
        used.line(
            &platform::metrics::Outcome {
                route: "/x",
                method: "GET",
                status: 200,
                latency: std::time::Duration::from_millis(2),
                cold_start: true,
            },
            0,
        )
    });
    let line: serde_json::Value = serde_json::from_str(&line).expect("EMF");
    let written: Vec<String> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| format!("Backend/{}", m["Name"].as_str().expect("name")))
        .collect();
    let missing: Vec<&String> = written
        .iter()
        .filter(|m| {
            !charted.contains(*m) && !m.ends_with("/DbConnections") && !m.ends_with("/RedisCalls")
        })
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
    for other in [
        "Backend/Backup/BackupSucceeded",
        "Backend/Backup/DrillSucceeded",
        "Backend/Backup/BackupBytes",
        "Backend/Backup/BackupDuration",
        "Backend/Backup/DrillBytes",
        "Backend/Backup/DrillDuration",
        "AWS/ElastiCache/Evictions",
        "AWS/RDS/ReplicaLag",
        "CloudWatchSynthetics/SuccessPercent",
    ] {
        assert!(charted.contains(other), "{other} is on the dashboard");
    }
    // And every Backend metric an alarm or the dashboard names is one the code writes.
    let alarms = of_type(&resources, "AWS::CloudWatch::Alarm");
    for (id, alarm) in &alarms {
        let p = &alarm["Properties"];
        let mut named = vec![(text(&p["Namespace"]), text(&p["MetricName"]))];
        for m in p["Metrics"].as_sequence().into_iter().flatten() {
            let metric = &m["MetricStat"]["Metric"];
            named.push((text(&metric["Namespace"]), text(&metric["MetricName"])));
        }
        for (namespace, name) in named {
            if namespace == "Backend" {
                assert!(
                    written.contains(&format!("Backend/{name}")),
                    "{id}: {name} is written"
                );
            }
        }
    }
    for metric in &charted {
        if let Some(name) = metric.strip_prefix("Backend/")
            && !name.contains('/')
        {
            assert!(
                written.contains(metric),
                "the dashboard's {metric} is written"
            );
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// The distribution, and the resource a `!Ref`/`!GetAtt` in one of its behaviors names.
fn distribution_config(resources: &BTreeMap<String, Value>) -> Value {
    let distributions = of_type(resources, "AWS::CloudFront::Distribution");
    let (_, distribution) = distributions
        .iter()
        .next()
        .expect("a CloudFront distribution");
    distribution["Properties"]["DistributionConfig"].clone()
}

fn behavior(config: &Value, pattern: Option<&str>) -> Value {
    match pattern {
        None => config["DefaultCacheBehavior"].clone(),
        Some(pattern) => config["CacheBehaviors"]
            .as_sequence()
            .and_then(|b| {
                b.iter()
                    .find(|b| b["PathPattern"].as_str() == Some(pattern))
            })
            .cloned()
            .unwrap_or_else(|| panic!("a cache behavior for {pattern}")),
    }
}

fn referenced<'a>(resources: &'a BTreeMap<String, Value>, v: &Value, ty: &str) -> &'a Value {
    let id = ref_target(v)
        .map(str::to_owned)
        .or_else(|| getatt_target(v))
        .unwrap_or_else(|| panic!("a reference to a {ty}, not {v:?}"));
    let resource = &resources[&id];
    assert_eq!(resource["Type"].as_str(), Some(ty), "{id} is a {ty}");
    &resource["Properties"]
}

/// A custom header a response headers policy sets, and whether it overrides the origin's.
fn custom_header(policy: &Value, name: &str) -> Option<(String, bool)> {
    policy["ResponseHeadersPolicyConfig"]["CustomHeadersConfig"]["Items"]
        .as_sequence()?
        .iter()
        .find(|h| {
            h["Header"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|h| (text(&h["Value"]), is_true(&h["Override"])))
}

/// Runs the site's CloudFront Function (cloudfront-js) in node on each path; the URIs it
/// forwards to the bucket.
fn rewritten(code: &str, paths: &[&str]) -> Vec<String> {
    let script = format!(
        "{code}\nfor (const uri of {paths}) console.log(handler({{ request: {{ uri, headers: {{}} }} }}).uri);",
        paths = serde_json::to_string(paths).expect("paths")
    );
    let out = std::process::Command::new("node")
        .arg("-e")
        .arg(script)
        .output()
        .expect("node runs (scripts/test-web.sh needs it too)");
    assert!(
        out.status.success(),
        "the function runs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_site_answers_client_routes_with_index_html_and_never_the_api() {
    let template = template();
    let resources = resources(&template);
    let config = distribution_config(&resources);
    let default = behavior(&config, None);
    assert_eq!(text(&default["TargetOriginId"]), "site");
    let associations = default["FunctionAssociations"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let viewer_request = associations
        .iter()
        .find(|a| a["EventType"].as_str() == Some("viewer-request"))
        .expect("the site behavior runs a viewer-request function");
    let function = referenced(
        &resources,
        &viewer_request["FunctionARN"],
        "AWS::CloudFront::Function",
    );
    assert!(
        is_true(&function["AutoPublish"]),
        "the function is published"
    );
    let code = function["FunctionCode"].as_str().expect("inline code");
    let paths = [
        "/",
        "/profile",
        "/admin/users",
        "/uploads/",
        "/assets/index-abc123.js",
        "/favicon.ico",
        "/index.html",
        "/api",
        "/api/v1/users/me",
        "/api/v1/nothing",
    ];
    assert_eq!(
        rewritten(code, &paths),
        [
            "/index.html",
            "/index.html",
            "/index.html",
            "/index.html",
            "/assets/index-abc123.js",
            "/favicon.ico",
            "/index.html",
            "/api",
            "/api/v1/users/me",
            "/api/v1/nothing",
        ]
    );
    // The API's behaviors run no site function, and no error response of the distribution
    // (they apply to every behavior) turns the API's errors into the client's page.
    for pattern in ["/api/*", "/health", "/ready"] {
        let api = behavior(&config, Some(pattern));
        assert_eq!(text(&api["TargetOriginId"]), "api", "{pattern}");
        assert!(
            api["FunctionAssociations"].is_null(),
            "{pattern} runs no site function"
        );
    }
    assert!(
        config["CustomErrorResponses"].is_null(),
        "no distribution-wide error page"
    );
}

#[test]
fn hashed_assets_are_cached_for_good_and_index_html_is_always_revalidated() {
    let template = template();
    let resources = resources(&template);
    let config = distribution_config(&resources);

    let assets = behavior(&config, Some("/assets/*"));
    assert_eq!(text(&assets["TargetOriginId"]), "site");
    let cache = &referenced(
        &resources,
        &assets["CachePolicyId"],
        "AWS::CloudFront::CachePolicy",
    )["CachePolicyConfig"];
    for ttl in ["MinTTL", "DefaultTTL", "MaxTTL"] {
        assert_eq!(cache[ttl].as_u64(), Some(31_536_000), "assets' {ttl}");
    }
    let headers = referenced(
        &resources,
        &assets["ResponseHeadersPolicyId"],
        "AWS::CloudFront::ResponseHeadersPolicy",
    );
    let (value, overrides) = custom_header(headers, "Cache-Control").expect("Cache-Control");
    assert!(value.contains("max-age=31536000") && value.contains("immutable"));
    assert!(overrides);

    let default = behavior(&config, None);
    let cache = &referenced(
        &resources,
        &default["CachePolicyId"],
        "AWS::CloudFront::CachePolicy",
    )["CachePolicyConfig"];
    assert_eq!(
        cache["MinTTL"].as_u64(),
        Some(0),
        "index.html may be revalidated"
    );
    assert_eq!(cache["DefaultTTL"].as_u64(), Some(0));
    let headers = referenced(
        &resources,
        &default["ResponseHeadersPolicyId"],
        "AWS::CloudFront::ResponseHeadersPolicy",
    );
    assert_eq!(
        custom_header(headers, "Cache-Control"),
        Some(("no-cache".to_owned(), true))
    );
}

#[test]
fn the_site_has_a_strict_content_security_policy_on_every_page_and_asset() {
    let template = template();
    let resources = resources(&template);
    let config = distribution_config(&resources);
    for pattern in [None, Some("/assets/*")] {
        let site = behavior(&config, pattern);
        let policy = referenced(
            &resources,
            &site["ResponseHeadersPolicyId"],
            "AWS::CloudFront::ResponseHeadersPolicy",
        );
        let security = &policy["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"];
        let csp = &security["ContentSecurityPolicy"];
        assert!(
            is_true(&csp["Override"]),
            "{pattern:?}: the policy overrides"
        );
        let csp = text(&csp["ContentSecurityPolicy"]);
        let directive = |name: &str| {
            csp.split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(name).map(str::trim).map(str::to_owned))
                .unwrap_or_else(|| panic!("{pattern:?}: the CSP has {name}: {csp}"))
        };
        assert_eq!(directive("default-src"), "'none'");
        assert_eq!(directive("script-src"), "'self'");
        assert_eq!(directive("style-src"), "'self'");
        assert_eq!(directive("object-src"), "'none'");
        assert_eq!(directive("base-uri"), "'none'");
        assert_eq!(directive("frame-ancestors"), "'none'");
        let connect = directive("connect-src");
        assert!(connect.starts_with("'self'"), "{connect}");
        assert!(
            connect.contains("${UploadsBucket}.s3."),
            "the client may PUT to the uploads bucket's presigned URLs: {connect}"
        );
        for loose in ["'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https: "] {
            assert!(
                !csp.split_whitespace().any(|w| w == loose.trim()),
                "{pattern:?}: the CSP allows {loose}: {csp}"
            );
        }
        assert!(is_true(&security["StrictTransportSecurity"]["Override"]));
        assert_eq!(
            security["StrictTransportSecurity"]["AccessControlMaxAgeSec"].as_u64(),
            Some(31_536_000)
        );
        assert!(is_true(&security["ContentTypeOptions"]["Override"]));
    }
}

#[test]
fn the_deploy_publishes_the_built_client_with_its_caching_and_invalidates_index_html() {
    let deploy = yaml(".github/workflows/deploy.yml");
    let all: Vec<Value> = jobs(&deploy).values().flat_map(steps).collect();
    let position = |what: &str, pred: &dyn Fn(&str) -> bool| {
        all.iter()
            .position(|s| pred(s["run"].as_str().unwrap_or_default()))
            .unwrap_or_else(|| panic!("a deploy step {what}"))
    };
    let build = position("builds web/", &|run| run.contains("npm run build"));
    assert_eq!(
        all[build]["working-directory"].as_str(),
        Some("web"),
        "the build runs in web/"
    );
    let publish = position("publishes the client", &|run| run.contains("aws s3 sync"));
    assert!(
        build < publish,
        "the client is built before it is published"
    );
    let run = all[publish]["run"].as_str().unwrap_or_default();
    let syncs: Vec<&str> = run
        .split("aws ")
        .filter(|c| c.starts_with("s3 sync"))
        .collect();
    let assets = syncs
        .iter()
        .find(|c| c.contains("web/dist/assets"))
        .expect("the hashed assets are synced");
    assert!(assets.contains("immutable") && assets.contains("max-age=31536000"));
    let entry = syncs
        .iter()
        .find(|c| c.contains("web/dist ") && c.contains("--exclude \"assets/*\""))
        .expect("the rest of web/dist is synced");
    assert!(entry.contains("--cache-control \"no-cache\""));
    let invalidation = run
        .split("aws ")
        .find(|c| c.starts_with("cloudfront create-invalidation"))
        .expect("an invalidation");
    assert!(invalidation.contains("/index.html"), "{invalidation}");
}

fn distribution_of(template: &Value) -> Value {
    let resources = resources(template);
    let distributions = of_type(&resources, "AWS::CloudFront::Distribution");
    assert_eq!(distributions.len(), 1, "one CloudFront distribution");
    distributions.into_values().next().expect("distribution")["Properties"]["DistributionConfig"]
        .clone()
}

#[test]
fn cloudfront_redirects_http_and_a_custom_domain_allows_tls_1_2_or_newer_only() {
    let template = template();
    let config = distribution_of(&template);
    let mut behaviours = vec![config["DefaultCacheBehavior"].clone()];
    behaviours.extend(
        config["CacheBehaviors"]
            .as_sequence()
            .cloned()
            .unwrap_or_default(),
    );
    for behaviour in &behaviours {
        let policy = behaviour["ViewerProtocolPolicy"].as_str();
        assert!(
            matches!(policy, Some("redirect-to-https" | "https-only")),
            "{}: plain HTTP is redirected or refused, got {policy:?}",
            behaviour["PathPattern"].as_str().unwrap_or("default")
        );
    }
    // `!If [UseCustomDomain, {custom certificate}, {default certificate}]`.
    let certificate = untag(&config["ViewerCertificate"]);
    let custom = &certificate[1];
    assert!(
        ref_target(&custom["AcmCertificateArn"]) == Some("CertificateArn"),
        "the custom domain's branch uses the CertificateArn parameter"
    );
    assert_eq!(
        custom["MinimumProtocolVersion"].as_str(),
        Some("TLSv1.2_2021")
    );
    assert_eq!(custom["SslSupportMethod"].as_str(), Some("sni-only"));
    let param = &template["Parameters"]["CertificateArn"];
    assert!(
        param["AllowedPattern"]
            .as_str()
            .is_some_and(|p| p.contains(":acm:us-east-1:")),
        "CloudFront takes certificates from us-east-1 only"
    );
}

#[test]
fn the_site_sends_hsts_for_a_year_with_subdomains() {
    let template = template();
    let config = distribution_of(&template);
    let policy = ref_target(&config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"])
        .expect("the site's behaviour uses a headers policy of the stack")
        .to_owned();
    let hsts = &template["Resources"][policy.as_str()]["Properties"]["ResponseHeadersPolicyConfig"]
        ["SecurityHeadersConfig"]["StrictTransportSecurity"];
    assert!(
        hsts["AccessControlMaxAgeSec"].as_u64() >= Some(31_536_000),
        "at least a year, as the API sends: {hsts:?}"
    );
    assert_eq!(hsts["IncludeSubdomains"].as_bool(), Some(true));
    assert_eq!(
        hsts["Override"].as_bool(),
        Some(true),
        "the policy's value wins over an origin's"
    );
}

#[test]
fn a_hosted_zone_gets_alias_records_for_the_custom_domain_only() {
    let template = template();
    let zone = &template["Parameters"]["HostedZoneId"];
    assert_eq!(zone["Default"].as_str(), Some(""), "optional");
    let resources = resources(&template);
    let groups = of_type(&resources, "AWS::Route53::RecordSetGroup");
    assert_eq!(groups.len(), 1, "one record set group for the site");
    let (id, group) = groups.into_iter().next().expect("group");
    let condition = group["Condition"].as_str().expect("a conditional resource");
    let condition_text = text(&template["Conditions"][condition]);
    assert!(
        condition_text.contains("UseCustomDomain") && condition_text.contains("HostedZoneId"),
        "{id} exists only with a custom domain and a zone: {condition_text}"
    );
    assert_eq!(
        ref_target(&group["Properties"]["HostedZoneId"]),
        Some("HostedZoneId")
    );
    let mut types = BTreeSet::new();
    for record in group["Properties"]["RecordSets"]
        .as_sequence()
        .expect("records")
    {
        assert_eq!(ref_target(&record["Name"]), Some("DomainName"));
        let alias = &record["AliasTarget"];
        assert_eq!(
            getatt_target(&alias["DNSName"]).as_deref(),
            Some("Distribution"),
            "{id}: an alias to the distribution"
        );
        assert_eq!(text(&alias["DNSName"]), "Distribution.DomainName");
        assert_eq!(
            alias["HostedZoneId"].as_str(),
            Some("Z2FDTNDATAQYW2"),
            "CloudFront's fixed hosted zone"
        );
        types.insert(record["Type"].as_str().expect("type").to_owned());
    }
    assert_eq!(
        types,
        BTreeSet::from(["A".into(), "AAAA".into()]),
        "IPv4 and IPv6 (the distribution has IPv6 on)"
    );
    let rule = text(&template["Rules"]["HostedZoneNeedsDomain"]);
    assert!(
        rule.contains("DomainName"),
        "a zone without a domain is refused"
    );
}

#[test]
fn ci_runs_the_image_builds_coverage_advisories_and_npm_audit() {
    let ci = yaml(".github/workflows/ci.yml");
    let jobs = jobs(&ci);
    let uses_with = |job: &Value, action: &str| -> Vec<Value> {
        job["steps"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
            .map(|s| s["with"].clone())
            .collect()
    };
    let builds: Vec<Value> = jobs
        .values()
        .flat_map(|j| uses_with(j, "docker/build-push-action"))
        .collect();
    let built: BTreeSet<(String, String)> = builds
        .iter()
        .map(|w| {
            (
                w["file"].as_str().unwrap_or("Dockerfile").to_owned(),
                w["target"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert!(
        built.contains(&("Dockerfile".into(), "api".into())),
        "the api image is built: {built:?}"
    );
    assert!(
        built.iter().any(|(file, _)| file == "web/Dockerfile"),
        "the web image is built: {built:?}"
    );

    let all_runs: String = jobs.values().map(runs).collect::<Vec<_>>().join("\n");
    assert!(
        all_runs.contains("cargo llvm-cov report --lcov"),
        "an lcov report"
    );
    assert!(
        all_runs.contains("GITHUB_STEP_SUMMARY") && all_runs.contains("--summary-only"),
        "the coverage totals go to the job summary"
    );
    let artifacts: Vec<Value> = jobs
        .values()
        .flat_map(|j| uses_with(j, "actions/upload-artifact"))
        .collect();
    assert!(
        artifacts
            .iter()
            .any(|w| w["path"].as_str().is_some_and(|p| p.contains("lcov"))),
        "the lcov file is uploaded"
    );
    assert!(all_runs.contains("cargo deny check advisories"));
    assert!(all_runs.contains("npm audit"));
}

#[test]
fn the_opentelemetry_collector_layer_is_optional_and_receives_every_functions_traces() {
    let template = template();
    let parameter = &template["Parameters"]["OtelCollectorLayerArn"];
    assert_eq!(
        parameter["Default"].as_str(),
        Some(""),
        "without the layer, no function sends traces"
    );
    assert!(
        text(&parameter["AllowedPattern"]).contains(":layer:"),
        "only a layer version ARN is accepted: {parameter:?}"
    );
    let condition = &template["Conditions"]["UseOtelCollector"];
    assert_eq!(tag(condition).as_deref(), Some("Not"), "{condition:?}");
    assert!(
        text(condition).contains("OtelCollectorLayerArn"),
        "{condition:?}"
    );

    // `!If [UseOtelCollector, <then>, !Ref AWS::NoValue]`: only with the layer.
    let only_with_the_layer = |value: &Value| -> Value {
        assert_eq!(tag(value).as_deref(), Some("If"), "{value:?}");
        let branches = untag(value).as_sequence().expect("the If's branches");
        assert_eq!(branches[0].as_str(), Some("UseOtelCollector"), "{value:?}");
        assert_eq!(ref_target(&branches[2]), Some("AWS::NoValue"), "{value:?}");
        branches[1].clone()
    };
    let function = &template["Globals"]["Function"];
    let layers = function["Layers"]
        .as_sequence()
        .expect("a global list of layers");
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert_eq!(
        ref_target(&only_with_the_layer(&layers[0])),
        Some("OtelCollectorLayerArn")
    );
    // The collector's OTLP/HTTP receiver, on the function's own host.
    let endpoint = &function["Environment"]["Variables"]["OTEL_EXPORTER_OTLP_ENDPOINT"];
    assert_eq!(
        only_with_the_layer(endpoint).as_str(),
        Some("http://localhost:4318")
    );

    // No function replaces the global list or points its traces elsewhere.
    for (id, function) in of_type(&resources(&template), "AWS::Serverless::Function") {
        let properties = &function["Properties"];
        assert!(
            properties.get("Layers").is_none(),
            "{id} has layers of its own"
        );
        assert!(
            properties["Environment"]["Variables"]
                .get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .is_none(),
            "{id} sends its traces elsewhere"
        );
    }
}
