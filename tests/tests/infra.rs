//! The CloudFormation templates against the code, so they cannot drift apart:
//!
//! * every environment variable a task definition sets is one the binaries
//!   read (a job setting of `ferry_cli::args::env_names`, a flag's `env`
//!   in the binary's `--help`, or a telemetry variable), and every flag in a
//!   container command is in that binary's `--help`;
//! * the IAM policies of the task roles grant exactly the actions of the SDK
//!   operations the code calls: nothing the code never calls, nothing it
//!   calls at run time missing. The operations are found by scanning the
//!   sources for the SDK's operation builders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ferry_tests::bin;
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn templates() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root().join("infra")).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let v: Value = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p, v));
        }
    }
    assert!(!out.is_empty(), "no template in infra/");
    out
}

fn resources(t: &Value, kind: &str) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(k, r)| (k.as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// Every string inside `v`, through intrinsic functions (`!If`, `!Split`, …).
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Sequence(s) => s.iter().for_each(|x| strings(x, out)),
        Value::Mapping(m) => m.values().for_each(|x| strings(x, out)),
        Value::Tagged(t) => strings(&t.value, out),
        _ => {}
    }
}

fn help(binary: &str) -> String {
    help_of(binary, &[])
}

/// The `--help` of `binary`'s subcommand `sub` (none: the binary's own).
fn help_of(binary: &str, sub: &[String]) -> String {
    let out = std::process::Command::new(bin(binary))
        .args(sub)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{binary} --help: {e}"));
    // One space for every run of blanks: clap wraps "[env: NAME=]" anywhere.
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a binary (its `--help` is `help`) reads the variable `var`: a job
/// setting, a telemetry variable, a flag's `env`, or the SDK's region.
fn reads(help: &str, var: &str, settings: &BTreeSet<String>) -> bool {
    settings.contains(var)
        || ferry_cli::otel::ENV_VARS.contains(&var)
        || help.contains(&format!("[env: {var}="))
        || var == "AWS_REGION"
}

/// Asserts that `binary` (its `--help` is `help`) reads every variable of
/// `vars`, which resource `name` of the template at `path` sets; returns how
/// many were checked.
fn assert_read(path: &Path, name: &str, binary: &str, help: &str, vars: &[&str], settings: &BTreeSet<String>) -> usize {
    for var in vars {
        assert!(
            reads(help, var, settings),
            "{}: {name} sets {var}, which {binary} does not read",
            path.display()
        );
    }
    vars.len()
}

#[test]
fn every_container_setting_is_one_the_binaries_read() {
    let settings: BTreeSet<String> = ferry_cli::args::env_names().into_iter().map(|(v, _)| v).collect();
    let mut checked = 0;
    for (path, t) in templates() {
        for (name, task) in resources(&t, "AWS::ECS::TaskDefinition") {
            for c in task["Properties"]["ContainerDefinitions"].as_sequence().unwrap() {
                let cmd: Vec<String> = c["Command"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                let binary = &cmd[0];
                assert!(
                    ["ferry-finder", "ferry-worker", "ferry-events-bridge", "ferry-gateway"].contains(&binary.as_str()),
                    "{}: {name} runs {binary}",
                    path.display()
                );
                let sub: Vec<String> = cmd[1..].iter().take_while(|a| !a.starts_with('-')).cloned().collect();
                let text = help_of(binary, &sub);
                for flag in cmd.iter().filter(|a| a.starts_with("--")) {
                    assert!(
                        text.contains(flag.as_str()),
                        "{}: {name}: {binary} has no flag {flag}",
                        path.display()
                    );
                }
                let vars = c["Environment"].as_sequence().unwrap().iter();
                let vars: Vec<&str> = vars.map(|e| e["Name"].as_str().unwrap()).collect();
                checked += assert_read(&path, &name, binary, &text, &vars, &settings);
            }
        }
    }
    for (path, t) in templates() {
        for (name, lt) in resources(&t, "AWS::EC2::LaunchTemplate") {
            let mut script = Vec::new();
            strings(&lt["Properties"]["LaunchTemplateData"]["UserData"], &mut script);
            let (env, exec) = ferry_tests::user_data_settings(&script.join("\n"));
            let cmd: Vec<&str> = exec.split_whitespace().collect();
            let binary = cmd.first().and_then(|b| b.rsplit('/').next()).unwrap_or_default();
            assert!(
                ["ferry-finder", "ferry-worker"].contains(&binary),
                "{}: {name} starts {exec:?}",
                path.display()
            );
            let text = help(binary);
            for flag in cmd.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    text.contains(flag),
                    "{}: {name}: {binary} has no flag {flag}",
                    path.display()
                );
            }
            assert!(
                env.len() > 10,
                "{}: {name}: no environment file in its user data",
                path.display()
            );
            let vars: Vec<&str> = env.keys().map(String::as_str).collect();
            checked += assert_read(&path, &name, binary, &text, &vars, &settings);
        }
    }
    assert!(checked > 60, "only {checked} variables checked");
}

/// SDK operation builder → the IAM actions it needs.
const OPERATIONS: &[(&str, &[&str])] = &[
    ("head_object", &["s3:GetObject"]),
    // With a version id (reads pinned to a version, replayed histories).
    ("get_object", &["s3:GetObject", "s3:GetObjectVersion"]),
    ("put_object", &["s3:PutObject"]),
    ("create_multipart_upload", &["s3:PutObject"]),
    ("upload_part", &["s3:PutObject"]),
    ("upload_part_copy", &["s3:PutObject", "s3:GetObject"]),
    ("complete_multipart_upload", &["s3:PutObject"]),
    ("list_parts", &["s3:ListMultipartUploadParts"]),
    ("abort_multipart_upload", &["s3:AbortMultipartUpload"]),
    ("list_multipart_uploads", &["s3:ListBucketMultipartUploads"]),
    ("delete_object", &["s3:DeleteObject"]),
    ("list_objects_v2", &["s3:ListBucket"]),
    ("list_object_versions", &["s3:ListBucketVersions"]),
    ("get_bucket_versioning", &["s3:GetBucketVersioning"]),
    (
        "get_object_tagging",
        &["s3:GetObjectTagging", "s3:GetObjectVersionTagging"],
    ),
    ("put_object_tagging", &["s3:PutObjectTagging"]),
    ("delete_object_tagging", &["s3:DeleteObjectTagging"]),
    ("head_bucket", &["s3:ListBucket"]),
    ("send_message", &["sqs:SendMessage"]),
    ("send_message_batch", &["sqs:SendMessage"]),
    ("receive_message", &["sqs:ReceiveMessage"]),
    ("delete_message", &["sqs:DeleteMessage"]),
    ("delete_message_batch", &["sqs:DeleteMessage"]),
    ("change_message_visibility", &["sqs:ChangeMessageVisibility"]),
    ("change_message_visibility_batch", &["sqs:ChangeMessageVisibility"]),
    ("get_queue_attributes", &["sqs:GetQueueAttributes"]),
    ("create_queue", &["sqs:CreateQueue"]),
    ("get_queue_url", &["sqs:GetQueueUrl"]),
    ("set_queue_attributes", &["sqs:SetQueueAttributes"]),
    ("get_item", &["dynamodb:GetItem"]),
    ("put_item", &["dynamodb:PutItem"]),
    ("update_item", &["dynamodb:UpdateItem"]),
    ("delete_item", &["dynamodb:DeleteItem"]),
    ("query", &["dynamodb:Query"]),
    ("batch_get_item", &["dynamodb:BatchGetItem"]),
    ("batch_write_item", &["dynamodb:BatchWriteItem"]),
    // A transaction is authorised per item: ferry's hold a condition check and a put.
    (
        "transact_write_items",
        &["dynamodb:ConditionCheckItem", "dynamodb:PutItem"],
    ),
    ("create_table", &["dynamodb:CreateTable"]),
    ("get_secret_value", &["secretsmanager:GetSecretValue"]),
];

/// Operations only `--create-resources` (development) calls; the stack creates
/// those resources itself.
const DEVELOPMENT_ONLY: &[&str] = &["create_queue", "get_queue_url", "set_queue_attributes", "create_table"];

/// Actions the code needs without calling an operation for them: a PUT with a
/// canned ACL (`s3:PutObjectAcl`) or with SSE-KMS (the KMS key's data keys).
const IMPLIED: &[&str] = &["s3:PutObjectAcl", "kms:GenerateDataKey", "kms:Decrypt"];

/// The SDK operations the product's sources call.
fn operations_used() -> BTreeSet<&'static str> {
    let mut used = BTreeSet::new();
    let mut stack: Vec<PathBuf> = [
        "core/src",
        "worker/src",
        "finder/src",
        "events-bridge/src",
        "gateway/src",
    ]
    .iter()
    .map(|d| root().join(d))
    .collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("conformance.rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            for (op, _) in OPERATIONS {
                if text.contains(&format!(".{op}()")) {
                    used.insert(*op);
                }
            }
        }
    }
    used
}

#[test]
fn task_roles_grant_exactly_what_the_code_calls() {
    let used = operations_used();
    assert!(
        used.contains("receive_message") && used.contains("upload_part"),
        "{used:?}"
    );
    let actions: BTreeMap<&str, &[&str]> = OPERATIONS.iter().copied().collect();
    let needed: BTreeSet<String> = used
        .iter()
        .filter(|op| !DEVELOPMENT_ONLY.contains(op))
        .flat_map(|op| actions[op].iter().map(|a| a.to_string()))
        .collect();
    let allowed: BTreeSet<String> = needed
        .iter()
        .cloned()
        .chain(IMPLIED.iter().map(|a| a.to_string()))
        .collect();
    for (path, t) in templates() {
        let mut granted = BTreeSet::new();
        let roles = resources(&t, "AWS::IAM::Role").into_iter().filter(|(_, role)| {
            // The scheduler's role and the managed execution role are not ferry's calls.
            let principal = format!("{:?}", role["Properties"]["AssumeRolePolicyDocument"]);
            (principal.contains("ecs-tasks.amazonaws.com") || principal.contains("ec2.amazonaws.com"))
                && !role["Properties"]["Policies"].is_null()
        });
        let bridge = resources(&t, "AWS::IAM::ManagedPolicy");
        for (name, role) in roles.chain(bridge) {
            let mut all = Vec::new();
            let policies = match role["Properties"]["Policies"].as_sequence() {
                Some(list) => list
                    .iter()
                    // An instance's start-up script's own needs (the release tarball), not ferry's.
                    .filter(|p| p["PolicyName"] != "bootstrap")
                    .cloned()
                    .collect(),
                None => vec![role["Properties"]["PolicyDocument"].clone()],
            };
            strings(&Value::Sequence(policies), &mut all);
            for a in all.iter().flat_map(|s| s.split(',')) {
                let is_action = a.split_once(':').is_some_and(|(svc, op)| {
                    !svc.is_empty()
                        && svc.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                        && op.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                        && op.chars().all(|c| c.is_ascii_alphanumeric())
                });
                if is_action {
                    assert!(
                        allowed.contains(a),
                        "{}: {name} grants {a}, which no operation of the code needs",
                        path.display()
                    );
                    granted.insert(a.to_string());
                }
            }
        }
        let missing: Vec<_> = needed.difference(&granted).collect();
        assert!(
            missing.is_empty(),
            "{}: the code calls operations needing {missing:?}, which no task role grants",
            path.display()
        );
    }
}
