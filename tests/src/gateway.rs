//! An upload gateway for tests: `ferry-gateway` as a process in front of a
//! bucket, its tokens issued by its own command, and JSON calls to it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{bin, free_addr, http_request, isolate, output_text, run, Server};

/// A running gateway; killed when dropped.
pub struct Gateway {
    child: Child,
    /// `HOST:PORT`.
    pub addr: String,
    /// Its stderr.
    pub log: tempfile::NamedTempFile,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ferry-gateway COMMAND` for `bucket` (prefix `up/`) with the tokens and
/// state of `dir`, the store's keys and moto for Secrets Manager.
pub fn command(what: &str, rgw: &Server, bucket: &str, dir: &Path, extra: &[&str]) -> Command {
    command_at(what, rgw, &rgw.endpoint, bucket, dir, extra)
}

/// [`command`] reaching the store at `endpoint` (a proxy in front of `rgw`).
pub fn command_at(what: &str, rgw: &Server, endpoint: &str, bucket: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut tokens = vec!["--tokens".to_string(), dir.join("tokens.json").display().to_string()];
    if extra.contains(&"--tokens-secret") {
        tokens.clear();
    }
    let mut c = Command::new(bin("ferry-gateway"));
    c.args([what, &format!("s3://{bucket}/up/")])
        .args(tokens)
        .arg("--state")
        .arg(dir.join("state.db"))
        .args(["--dest-endpoint", endpoint, "--dest-path-style"])
        .args(extra);
    isolate(&mut c);
    for (k, v) in rgw.envs("dest") {
        c.env(k, v);
    }
    let moto = std::env::var("FERRY_TEST_MOTO").expect("FERRY_TEST_MOTO: run the tests with tests/run.sh");
    c.env("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    c
}

impl Gateway {
    /// Serves `bucket` (prefix `up/`) on a free port.
    pub fn start(rgw: &Server, bucket: &str, dir: &Path, extra: &[&str]) -> Gateway {
        Self::start_at(rgw, &rgw.endpoint, bucket, dir, extra)
    }

    /// [`Gateway::start`] reaching the store at `endpoint`: its presigned
    /// URLs name that host too.
    pub fn start_at(rgw: &Server, endpoint: &str, bucket: &str, dir: &Path, extra: &[&str]) -> Gateway {
        let addr = free_addr();
        let mut c = command_at("serve", rgw, endpoint, bucket, dir, extra);
        c.args(["--listen", &addr]);
        Self::spawn(c, addr)
    }

    /// Runs a `serve` command and waits until `addr` answers.
    pub fn spawn(mut c: Command, addr: String) -> Gateway {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = c
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("spawn ferry-gateway");
        crate::wait_listening(&addr, "the gateway", log.path());
        Gateway { child, addr, log }
    }

    /// One JSON call with the token; answers status and body.
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut headers = vec![("Authorization".to_string(), format!("Bearer {token}"))];
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let url = format!("http://{}{path}", self.addr);
        let (status, answer) = http_request(method, &url, &headers, body.as_bytes());
        let v = serde_json::from_slice(&answer).unwrap_or_else(|_| {
            panic!(
                "not JSON: {}\n{}",
                String::from_utf8_lossy(&answer),
                std::fs::read_to_string(self.log.path()).unwrap_or_default()
            )
        });
        (status, v)
    }
}

/// Issues a token with `ferry-gateway token issue` and returns it.
pub fn issue(dir: &Path, args: &[&str]) -> String {
    let mut c = Command::new(bin("ferry-gateway"));
    c.args(["token", "issue", "--tokens"])
        .arg(dir.join("tokens.json"))
        .args(args);
    isolate(&mut c);
    let out = run(c);
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
