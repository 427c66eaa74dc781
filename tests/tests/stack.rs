//! Invariant 14: what ships is proven under the permissions it ships with.
//!
//! `infra/ferry.yaml` is deployed into a moto that enforces IAM. The finder,
//! the worker and the events bridge then run configured only from the stack:
//! each task definition's command and environment (or the bridge's managed
//! policy and the stack's outputs), each with the keys of an IAM user holding
//! exactly its role's policies (`tests/stack/deploy.py`: moto cannot assume a
//! role whose principal is a service). What is added is what AWS itself
//! provides and a local server cannot: the endpoint (`AWS_ENDPOINT_URL`) and
//! path-style addressing for it, the credentials, and a health address the
//! test can bind. Objects must arrive, byte for byte, read back by the admin.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::*;
use serde_json::{json, Value};

/// Deploys `template` as `stack` with `params` (admin keys); returns what
/// `tests/stack/deploy.py` prints.
pub fn deploy(template: &str, stack: &str, params: Value) -> Value {
    let iam = moto_iam();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let out = Command::new(moto_python())
        .arg(root.join("tests/stack/deploy.py"))
        .arg(&iam.endpoint)
        .arg(root.join(template))
        .arg(stack)
        .arg(params.to_string())
        .env("AWS_ACCESS_KEY_ID", &iam.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &iam.secret_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run tests/stack/deploy.py");
    assert!(
        out.status.success(),
        "deploying {template}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("deploy.py prints JSON")
}

/// A process of `binary` with `args`, the environment `env` (and nothing of
/// the host's AWS settings), the keys of `role`, and the local endpoint.
pub fn as_role(binary: &str, args: &[String], env: &BTreeMap<String, String>, role: &Value) -> Command {
    let mut c = Command::new(bin(binary));
    c.args(args);
    isolate(&mut c);
    for (k, v) in env {
        c.env(k, v);
    }
    c.env("AWS_ACCESS_KEY_ID", role["key"].as_str().expect("a user key"))
        .env("AWS_SECRET_ACCESS_KEY", role["secret"].as_str().expect("a user secret"))
        .env("AWS_ENDPOINT_URL", moto_iam().endpoint)
        .env("FERRY_SRC_PATH_STYLE", "true")
        .env("FERRY_DEST_PATH_STYLE", "true");
    c
}

/// How the stack starts one binary: its command, its environment, and the
/// role whose policies it runs with.
struct Launch {
    binary: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    role: Value,
}

impl Launch {
    fn command(&self) -> Command {
        let mut args = self.args.clone();
        // The health address made one the test can bind.
        if let Some(i) = args.iter().position(|a| a == "--health-addr") {
            args[i + 1] = "127.0.0.1:0".into();
        }
        as_role(&self.binary, &args, &self.env, &self.role)
    }
}

/// The finder and the worker of the ECS stack: each task definition's
/// command, environment and task role.
fn ecs(stack: &Value) -> (Launch, Launch) {
    let task = |name: &str, role: &str| {
        let t = &stack["tasks"][name];
        let cmd: Vec<String> = t["command"]
            .as_array()
            .unwrap_or_else(|| panic!("task {name}: {stack}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        Launch {
            binary: cmd[0].clone(),
            args: cmd[1..].to_vec(),
            env: t["environment"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect(),
            role: stack["roles"][role].clone(),
        }
    };
    (task("FinderTask", "FinderRole"), task("WorkerTask", "WorkerRole"))
}

/// The finder and the worker of the EC2 stack: the systemd unit's
/// `ExecStart` and the environment file each launch template's user data
/// writes, and the instance role.
fn ec2(stack: &Value) -> (Launch, Launch) {
    let launch = |name: &str, role: &str| {
        let script = stack["launch_templates"][name]["user_data"]
            .as_str()
            .unwrap_or_else(|| panic!("launch template {name}: {stack}"));
        let (env, exec) = ferry_tests::user_data_settings(script);
        let exec: Vec<String> = exec.split_whitespace().map(String::from).collect();
        Launch {
            binary: exec[0].rsplit('/').next().unwrap().to_string(),
            args: exec[1..].to_vec(),
            env,
            role: stack["roles"][role].clone(),
        }
    };
    (
        launch("FinderLaunchTemplate", "FinderRole"),
        launch("WorkerLaunchTemplate", "WorkerRole"),
    )
}

/// A process killed when dropped: a failing test leaves nothing running
/// against the shared IAM-enforcing server.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_logged(mut c: Command, log: &std::path::Path) -> Running {
    let f = std::fs::File::create(log).unwrap();
    Running(c.stdout(Stdio::null()).stderr(f).spawn().expect("spawn"))
}

fn stop(mut running: Running) {
    let child = &mut running.0;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_for(server: &Server, bucket: &str, key: &str) -> Vec<u8> {
    let t = Instant::now();
    loop {
        // The whole bucket: moto's IAM signature check refuses a prefix holding a `/`.
        if let Some(v) = server.read_all(bucket, "").await.remove(key) {
            return v;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{key} did not arrive in 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deploys `template` and runs its finder, a worker and the events bridge
/// as `launches` says, each under its own role's policies.
async fn prove(template: &str, params: Value, launches: fn(&Value) -> (Launch, Launch)) {
    let iam = moto_iam();
    let (src, dst) = (iam.bucket("stack-src").await, iam.bucket("stack-dst").await);
    let mut objects: BTreeMap<String, Vec<u8>> = (0..6)
        .map(|i| (format!("data/{i}.txt"), data(2000 + i * 100, i as u64)))
        .collect();
    objects.insert("data/big.bin".into(), data(7 * 1024 * 1024 + 5, 77));
    iam.put_all(&src, &objects).await;
    let listed_by_workers = params.get("ListJobs").is_some();
    let mut params = params;
    params["SourceBucket"] = src.clone().into();
    params["DestBucket"] = dst.clone().into();
    params["AlarmEmail"] = "ops@example.com".into();
    if params.get("Gateway").is_some() {
        // The operator's tokens secret, empty until a token is issued.
        let name = unique("gateway-tokens");
        admin_secrets(&iam)
            .await
            .create_secret()
            .name(&name)
            .secret_string(r#"{"tokens": []}"#)
            .send()
            .await
            .unwrap();
        params["GatewayTokensSecretName"] = name.into();
    }
    let stack = deploy(template, &unique("ferry"), params);
    let roles = &stack["roles"];
    let (finder, worker) = launches(&stack);
    let work = tempfile::tempdir().unwrap();

    // The roles are enforced: the finder's keys cannot take jobs off the queue.
    let queue_url = stack["outputs"]["QueueUrl"].as_str().unwrap().to_string();
    let finder_keys = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&iam.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            roles["FinderRole"]["key"].as_str().unwrap(),
            roles["FinderRole"]["secret"].as_str().unwrap(),
            None,
            None,
            "test",
        ))
        .load()
        .await;
    use ferry_core::queue::JobQueue;
    let refused = ferry_core::queue::SqsQueue::new(&finder_keys, &queue_url)
        .receive(1, Duration::from_secs(5), Duration::ZERO)
        .await
        .expect_err("the finder's keys must not receive jobs")
        .to_string();
    assert!(
        refused.contains("AccessDenied") && refused.contains("ReceiveMessage"),
        "{refused}"
    );
    assert!(
        refused.contains("grant this action"),
        "the error says what to do: {refused}"
    );
    assert!(!refused.contains('\n'), "one line: {refused}");

    // The scheduled finder, as the stack starts it (once here).
    let mut once = finder.command();
    once.env_remove("FERRY_SCHEDULE");
    let out = run(once);
    assert!(
        out.status.success(),
        "the finder under FinderRole: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A worker, as the stack starts it.
    let mut command = worker.command();
    command.env("RUST_LOG", "info");
    let worker_log = work.path().join("worker.log");
    let worker_process = spawn_logged(command, &worker_log);

    // The operator follows the run with the stack's StatusCommand (admin keys).
    let status_cmd: Vec<String> = stack["outputs"]["StatusCommand"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut status = Command::new(bin(&status_cmd[0]));
    status
        .args(&status_cmd[1..])
        .args(["--timeout", "120s", "--interval", "500ms"]);
    isolate(&mut status);
    status
        .env("AWS_ACCESS_KEY_ID", &iam.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &iam.secret_key)
        .env("AWS_ENDPOINT_URL", &iam.endpoint);
    let out = run(status);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{shown}\nworker:\n{}",
        std::fs::read_to_string(&worker_log).unwrap_or_default()
    );
    if listed_by_workers {
        assert!(
            shown.contains("key ranges listed by workers (0 given up)"),
            "the workers listed the source under their role:\n{shown}"
        );
    }
    assert_same(
        "copied under the stack's roles",
        &objects,
        &iam.read_all(&dst, "").await,
    );
    assert_eq!(iam.uploads(&dst).await, 0);

    // The events bridge with its managed policy's keys, configured from the
    // worker task's job settings; the worker above copies what it queues.
    let bridge_user = &stack["managed_policies"]["BridgePolicy"];
    let addr = free_addr();
    let mut bridge = as_role(
        "ferry-events-bridge",
        &["--listen".into(), addr.clone()],
        &worker.env,
        bridge_user,
    );
    bridge.env("FERRY_BRIDGE_TOKEN", "stack-test-token-0123456789");
    let bridge_log = work.path().join("bridge.log");
    let bridge = spawn_logged(bridge, &bridge_log);
    wait_listening(&addr, "the bridge", &bridge_log);
    let body = data(4321, 9);
    iam.put_one(&src, "events/new.txt", &body).await;
    let event = serde_json::json!({"events": [{
        "eventName": "ObjectCreated:PutObject", "eventSource": "acs:oss",
        "eventTime": "2026-12-03T10:00:00.000Z", "eventVersion": "1.0",
        "oss": {"bucket": {"name": src, "arn": format!("acs:oss:cn-hangzhou:1:{src}")},
                "object": {"key": "events/new.txt", "size": body.len(),
                           "eTag": hex::encode(ferry_core::etag::md5(&body)).to_uppercase()},
                "ossSchemaVersion": "1.0"},
        "region": "cn-hangzhou"
    }]});
    let (code, answer) = http_post(
        &addr,
        "/",
        &[("x-ferry-token", "stack-test-token-0123456789".into())],
        &event.to_string(),
    );
    assert_eq!(
        code,
        200,
        "{answer}\n{}",
        std::fs::read_to_string(&bridge_log).unwrap_or_default()
    );
    assert_eq!(wait_for(&iam, &dst, "events/new.txt").await, body);
    stop(bridge);
    if stack["tasks"].get("GatewayTask").is_some() {
        prove_gateway(&stack, &iam, &dst, work.path()).await;
    }
    stop(worker_process);
    let logged = std::fs::read_to_string(&worker_log).unwrap_or_default();
    assert!(
        !logged.contains("AccessDenied") && !logged.contains("not authorized"),
        "the worker needed a permission its role lacks:\n{logged}"
    );
}

/// Secrets Manager on `iam` with the admin's keys.
async fn admin_secrets(iam: &Server) -> aws_sdk_secretsmanager::Client {
    let admin = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&iam.endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            &iam.access_key,
            &iam.secret_key,
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&admin)
}

/// The upload gateway as the stack runs it: the gateway task's command and
/// environment under GatewayRole, its tokens put into the stack's secret
/// after it started (read again while it serves: the reload period is the
/// one setting shortened here), and a client's calls made against it:
/// every store, ledger and secret request the gateway makes itself runs
/// under the role. (The presigned PUTs are not: moto authorises none while
/// it enforces IAM; they need the role's s3:PutObject, which its
/// CreateMultipartUpload proves.)
async fn prove_gateway(stack: &Value, iam: &Server, dst: &str, work: &std::path::Path) {
    let t = &stack["tasks"]["GatewayTask"];
    let mut args: Vec<String> = t["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let addr = free_addr();
    let at = args.iter().position(|a| a == "--listen").expect("the task listens") + 1;
    args[at] = addr.clone();
    let env: BTreeMap<String, String> = t["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let mut gateway = as_role(&args[0], &args[1..], &env, &stack["roles"]["GatewayRole"]);
    gateway
        .env("FERRY_GATEWAY_TOKENS_RELOAD", "500ms")
        .env("RUST_LOG", "info");
    let log = work.join("gateway.log");
    let gateway = spawn_logged(gateway, &log);
    wait_listening(&addr, "the gateway", &log);

    // An operator issues a token and puts the tokens file into the secret.
    let tokens = work.join("tokens.json");
    let mut issue = Command::new(bin("ferry-gateway"));
    issue
        .args(["token", "issue", "--id", "site-1", "--prefix", "site-1-", "--tokens"])
        .arg(&tokens);
    isolate(&mut issue);
    let out = run(issue);
    assert!(out.status.success(), "{}", output_text(&out));
    admin_secrets(iam)
        .await
        .put_secret_value()
        .secret_id(&env["FERRY_GATEWAY_TOKENS_SECRET"])
        .secret_string(std::fs::read_to_string(&tokens).unwrap())
        .send()
        .await
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));

    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let call = |method: &str, path: &str, body: Option<Value>| -> (u16, Value) {
        let mut headers = vec![("Authorization".to_string(), format!("Bearer {token}"))];
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let (status, answer) = http_request(method, &format!("http://{addr}{path}"), &headers, body.as_bytes());
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        let v = serde_json::from_slice(&answer).unwrap_or_else(|_| panic!("not JSON: {answer:?}\n{logged}"));
        (status, v)
    };
    let prefix = env["FERRY_GATEWAY_DEST"]
        .split_once("://")
        .and_then(|(_, r)| r.split_once('/'))
        .map(|(_, p)| p.to_string())
        .unwrap();

    // Listing (s3:ListBucket), an upload in parts created (PutObject and
    // the ledger), its parts listed, and aborted.
    let (s, v) = call("GET", "/v1/objects?prefix=site-1-", None);
    assert_eq!(s, 200, "{v}");
    let big = json!({"key": "site-1-big.bin", "size": 11 * 1024 * 1024 + 1, "part_size": 5 * 1024 * 1024});
    let (s, up) = call("POST", "/v1/uploads", Some(big));
    assert_eq!((s, up["parts"].as_array().map(Vec::len)), (200, Some(3)), "{up}");
    let id = up["id"].as_str().unwrap().to_string();
    let (s, v) = call("GET", &format!("/v1/uploads/{id}"), None);
    assert_eq!((s, v["held"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    assert_eq!(iam.uploads(dst).await, 1);
    let (s, v) = call("DELETE", &format!("/v1/uploads/{id}"), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(iam.uploads(dst).await, 0);

    // An object sent whole, completed and verified (the HEAD: s3:GetObject).
    // moto authorises no presigned request when it enforces IAM, so the
    // admin stands in for the client's PUT; the gateway checks what arrived.
    let body = data(3000, 41);
    let md5 = hex::encode(ferry_core::etag::md5(&body));
    let small = json!({"key": "site-1-a.txt", "size": body.len(), "md5s": [md5]});
    let (s, up) = call("POST", "/v1/uploads", Some(small));
    assert_eq!((s, &up["whole"]), (200, &json!(true)), "{up}");
    iam.put_one(dst, &format!("{prefix}site-1-a.txt"), &body).await;
    let (s, done) = call(
        "POST",
        &format!("/v1/uploads/{}/complete", up["id"].as_str().unwrap()),
        None,
    );
    assert_eq!((s, &done["complete"]), (200, &json!(true)), "{done}");
    let (s, v) = call("POST", "/v1/uploads", Some(json!({"key": "other.txt", "size": 1})));
    assert_eq!(s, 403, "outside the token's prefix: {v}");
    stop(gateway);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("Tokens reloaded"), "{logged}");
    assert!(
        !logged.contains("AccessDenied") && !logged.contains("not authorized"),
        "the gateway needed a permission its role lacks:\n{logged}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ecs_stack_runs_under_its_own_roles() {
    prove(
        "infra/ferry.yaml",
        // No '/' in the gateway's keys: moto (5.1, enforcing IAM) refuses
        // the signature of a listing whose prefix holds one.
        serde_json::json!({"ImageUri": "ferry:test", "Gateway": "true", "GatewayPrefix": "gw-"}),
        ecs,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ec2_stack_runs_under_its_own_roles() {
    prove(
        "infra/ferry-ec2.yaml",
        // Fleet listing: the workers list the buckets under their role.
        serde_json::json!({"ArtifactBucket": "ferry-artifacts", "ListJobs": "2"}),
        ec2,
    )
    .await;
}
