//! The secrets sweep: every binary is run with secrets in play (store keys
//! and session tokens from the environment, keys from a Secrets Manager
//! secret, a malformed secret, a wrong key the store refuses, the bridge's
//! token and a wrong one), with trace logging, on success and failure paths.
//! Everything they printed, the bridge's HTTP answers, the queued messages
//! and the embedded state file are then scanned: no secret may appear.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_core::queue::JobQueue;
use ferry_tests::fleet::{stop, Fleet, S3Job};
use ferry_tests::*;

/// What was printed or stored, by where it came from.
#[derive(Default)]
struct Sweep {
    seen: Vec<(String, String)>,
}

impl Sweep {
    fn add(&mut self, what: &str, text: impl Into<String>) {
        self.seen.push((what.to_string(), text.into()));
    }

    fn output(&mut self, what: &str, out: &std::process::Output) {
        self.add(&format!("{what} stdout"), String::from_utf8_lossy(&out.stdout));
        self.add(&format!("{what} stderr"), String::from_utf8_lossy(&out.stderr));
    }

    /// Fails naming the first place a secret appears; returns (places, bytes).
    fn check(&self, secrets: &[&str]) -> (usize, usize) {
        for (what, text) in &self.seen {
            for s in secrets {
                assert!(!text.contains(s), "a secret ({}…) appears in {what}:\n{text}", &s[..6]);
            }
        }
        (self.seen.len(), self.seen.iter().map(|(_, t)| t.len()).sum())
    }
}

fn trace() -> (String, String) {
    ("RUST_LOG".into(), "trace".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_any_output_message_or_state_file() {
    let (rgw, moto) = (rgw(), moto());
    let mut sweep = Sweep::default();
    let tag = unique("sweep");
    // Secrets unique to this run, so a hit cannot be a coincidence.
    let (moto_key, moto_secret, moto_token) = (
        format!("AKIA{}", &tag[tag.len() - 8..].to_uppercase()),
        format!("moto-secret-{tag}"),
        format!("session-token-{tag}"),
    );
    let wrong_secret = format!("wrong-secret-{tag}");
    let bridge_token = format!("bridge-token-{tag}");
    let wrong_token = format!("wrong-token-{tag}");
    let malformed_value = format!("malformed-value-{tag}");

    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files: BTreeMap<String, Vec<u8>> = (0..6).map(|i| (format!("f/{i}"), data(3000 + i, i as u64))).collect();
    write_tree(&src, &files);

    // 1. An embedded sync to moto with keys and a session token in the environment.
    let dst = moto.bucket("sweep-dst").await;
    let state = work.path().join("s.sqlite");
    let mut args = vec![
        src.display().to_string(),
        format!("s3://{dst}/"),
        "--state".into(),
        state.display().to_string(),
    ];
    args.extend(moto.flags("dest"));
    let envs = vec![
        ("FERRY_DEST_ACCESS_KEY_ID".to_string(), moto_key.clone()),
        ("FERRY_DEST_SECRET_ACCESS_KEY".to_string(), moto_secret.clone()),
        ("FERRY_DEST_SESSION_TOKEN".to_string(), moto_token.clone()),
        trace(),
    ];
    let out = run(finder(&args, &envs));
    assert!(out.status.success());
    sweep.output("sync with session token", &out);
    assert_same("sweep sync", &files, &moto.read_all(&dst, "").await);
    let mut verify = Command::new(bin("ferry-finder"));
    verify.arg("verify").args(&args[..2]).args(moto.flags("dest"));
    isolate(&mut verify);
    verify.envs(envs.iter().cloned());
    let out = run(verify);
    assert!(out.status.success());
    sweep.output("verify", &out);
    let mut status = Command::new(bin("ferry-finder"));
    status.args(["status", "--state", &state.display().to_string()]);
    isolate(&mut status);
    status.envs(envs.iter().cloned());
    sweep.output("status", &run(status));
    sweep.add(
        "embedded state file",
        String::from_utf8_lossy(&std::fs::read(&state).unwrap()),
    );

    // 2. A wrong secret key, refused by radosgw's signature check.
    let rdst = rgw.bucket("sweep-wrong").await;
    let mut wrong_args = vec![
        src.display().to_string(),
        format!("s3://{rdst}/"),
        "--state".into(),
        work.path().join("w.sqlite").display().to_string(),
    ];
    wrong_args.extend(rgw.flags("dest"));
    let out = run(finder(
        &wrong_args,
        &[
            ("FERRY_DEST_ACCESS_KEY_ID".to_string(), rgw.access_key.clone()),
            ("FERRY_DEST_SECRET_ACCESS_KEY".to_string(), wrong_secret.clone()),
            trace(),
        ],
    ));
    assert!(!out.status.success(), "a wrong key is refused");
    sweep.output("wrong key", &out);

    // 3. A fleet whose source keys come from Secrets Manager: finder, worker, status.
    let (s_src, s_dst) = (rgw.bucket("sweep-ssrc").await, moto.bucket("sweep-sdst").await);
    rgw.put_all(&s_src, &files).await;
    let fleet = Fleet::new("sweep", true, 5).await;
    let name = unique("ferry/sweep-keys");
    let value = serde_json::json!({"access_key_id": rgw.access_key, "secret_access_key": rgw.secret_key}).to_string();
    fleet.put_secret(&name, &value).await;
    let job = S3Job::new(&s_src, &rgw.endpoint, &s_dst, &moto.endpoint, &["--src-secret", &name]);
    let mut fenvs = moto.envs("dest");
    fenvs.push(trace());
    let out = run(fleet.finder(&job.args, &fenvs));
    assert!(out.status.success());
    sweep.output("fleet finder", &out);
    let queued = fleet
        .queue()
        .receive(10, Duration::from_secs(1), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(!queued.is_empty());
    for m in &queued {
        sweep.add("queued message", m.body.clone());
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let worker = fleet.worker(&job.worker_args(), &fenvs);
    let status = run(fleet.status(None, "120s"));
    assert_eq!(status.status.code(), Some(0));
    sweep.output("fleet status", &status);
    let (st, log) = stop(worker);
    assert!(st.success());
    sweep.add("fleet worker log", log);
    assert_same("sweep fleet", &files, &moto.read_all(&s_dst, "").await);

    // 4. A malformed secret: the error names the secret, never its value.
    let bad = unique("ferry/sweep-bad");
    fleet
        .put_secret(&bad, &format!("{{\"access_key_id\": \"{malformed_value}\", oops"))
        .await;
    let bad_job = S3Job::new(&s_src, &rgw.endpoint, &s_dst, &moto.endpoint, &["--src-secret", &bad]);
    let out = run(fleet.finder(&bad_job.args, &fenvs));
    assert!(!out.status.success(), "a malformed secret is an error");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&bad),
        "the error names the secret"
    );
    sweep.output("malformed secret", &out);

    // 5. The events bridge with a token; a wrong token and an oversized body are refused.
    let addr = free_addr();
    let log_path = work.path().join("bridge.log");
    let mut c = Command::new(bin("ferry-events-bridge"));
    c.args(["--listen", &addr]).args(job.worker_args()).args(fleet.flags());
    isolate(&mut c);
    c.envs(fleet.envs())
        .env("FERRY_BRIDGE_TOKEN", &bridge_token)
        .env("RUST_LOG", "trace");
    let mut bridge = c
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "the bridge did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, body) = http_post(
        &addr,
        "/invoke",
        &[("x-ferry-token", wrong_token.clone())],
        "{\"events\": []}",
    );
    assert_eq!(code, 401);
    sweep.add("bridge answer to a wrong token", body);
    let (code, body) = http_post(&addr, "/invoke", &[], "{\"events\": []}");
    assert_eq!(code, 401);
    sweep.add("bridge answer without a token", body);
    let big = "x".repeat(7 * 1024 * 1024);
    let (code, body) = http_post(&addr, "/invoke", &[("x-ferry-token", bridge_token.clone())], &big);
    assert_eq!(code, 413, "an oversized body is refused");
    sweep.add("bridge answer to an oversized body", body);
    let _ = bridge.kill();
    let _ = bridge.wait();
    sweep.add("bridge log", std::fs::read_to_string(&log_path).unwrap());

    let secrets = [
        moto_key.as_str(),
        moto_secret.as_str(),
        moto_token.as_str(),
        wrong_secret.as_str(),
        rgw.secret_key.as_str(),
        bridge_token.as_str(),
        wrong_token.as_str(),
        malformed_value.as_str(),
    ];
    let (places, bytes) = sweep.check(&secrets);
    eprintln!(
        "secrets sweep: {} secrets, {places} outputs and stores, {bytes} bytes scanned, 0 found",
        secrets.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_that_would_escape_a_local_destination_are_refused() {
    let moto = moto();
    let bucket = moto.bucket("escape").await;
    let hostile = ["../escaped", "a/../../escaped2", "b/./c", "/abs", "d//e"];
    let mut objects: BTreeMap<String, Vec<u8>> = hostile
        .iter()
        .enumerate()
        .map(|(i, k)| (k.to_string(), data(100 + i, 40 + i as u64)))
        .collect();
    objects.insert("fine/ok".into(), data(500, 49));
    moto.put_all(&bucket, &objects).await;
    let listed = moto.read_all(&bucket, "").await;
    assert!(
        listed.contains_key("../escaped"),
        "the store keeps the hostile keys: {:?}",
        listed.keys()
    );

    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("inside/dst");
    std::fs::create_dir_all(&dst).unwrap();
    let mut args = vec![
        format!("s3://{bucket}/"),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
    ];
    args.extend(moto.flags("src"));
    let out = run(finder(&args, &moto.envs("src")));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "the refused keys are failures: {text}");
    for k in ["../escaped", "a/../../escaped2"] {
        assert!(text.contains(k), "the refusal names {k:?}: {text}");
    }
    assert_eq!(
        read_tree(&dst),
        BTreeMap::from([("fine/ok".to_string(), objects["fine/ok"].clone())]),
        "only the safe key is written"
    );
    // Nothing appeared outside the destination.
    let outside: Vec<_> = walk_names(work.path())
        .into_iter()
        .filter(|p| p.contains("escaped") || p.ends_with("abs"))
        .collect();
    assert!(outside.is_empty(), "files written outside the destination: {outside:?}");
}

fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk_names(&p));
        }
    }
    out
}
