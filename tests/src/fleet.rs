//! A fleet under test: an SQS queue (with its dead-letter queue) and a
//! DynamoDB table on moto, reached through counting proxies, and the
//! environment and flags that point `ferry-finder` and `ferry-worker` at them.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ferry_core::queue::SqsQueue;
use ferry_core::state::DynamoStateStore;

use crate::proxy::Proxy;
use crate::{aws_services, bin, finder, isolate, unique};

/// Queue, table and proxies of one test.
pub struct Fleet {
    /// Queue URL.
    pub queue_url: String,
    /// Table name.
    pub table: String,
    /// Proxy in front of moto for SQS.
    pub sqs: Proxy,
    /// Proxy in front of moto for DynamoDB.
    pub dynamo: Proxy,
    /// SDK configuration straight to moto (for checks).
    pub sdk: aws_config::SdkConfig,
    /// SDK configuration straight to moto's DynamoDB.
    pub sdk_dynamo: aws_config::SdkConfig,
}

fn moto_url() -> String {
    std::env::var("FERRY_TEST_MOTO").expect("FERRY_TEST_MOTO: run the tests with tests/run.sh")
}

impl Fleet {
    /// Names a queue and a table; `create` makes them now (otherwise the
    /// finder's `--create-resources` does) with `max_receives` deliveries
    /// before the dead-letter queue.
    pub async fn new(hint: &str, create: bool, max_receives: u32) -> Fleet {
        let sdk = aws_services().await;
        let sdk_dynamo = crate::dynamodb_service().await;
        let name = unique(hint);
        let queue_url = format!("{}/123456789012/{name}", moto_url());
        let table = unique(&format!("{hint}-state"));
        if create {
            SqsQueue::create(&sdk, &name, max_receives).await.expect("create queue");
            DynamoStateStore::create_table(&sdk_dynamo, &table)
                .await
                .expect("create table");
        }
        Fleet {
            queue_url,
            table,
            sqs: Proxy::start(&moto_url()).await,
            dynamo: Proxy::start(&std::env::var("FERRY_TEST_MOTO_DYNAMODB").expect("FERRY_TEST_MOTO_DYNAMODB")).await,
            sdk,
            sdk_dynamo,
        }
    }

    /// Creates or updates a Secrets Manager secret on moto.
    pub async fn put_secret(&self, name: &str, value: &str) {
        let sm = aws_sdk_secretsmanager::Client::new(&self.sdk);
        if sm.describe_secret().secret_id(name).send().await.is_ok() {
            sm.put_secret_value()
                .secret_id(name)
                .secret_string(value)
                .send()
                .await
                .unwrap();
        } else {
            sm.create_secret().name(name).secret_string(value).send().await.unwrap();
        }
    }

    /// The queue (straight to moto).
    pub fn queue(&self) -> SqsQueue {
        SqsQueue::new(&self.sdk, &self.queue_url)
    }

    /// The state store (straight to moto).
    pub fn state(&self) -> DynamoStateStore {
        DynamoStateStore::new(&self.sdk_dynamo, &self.table)
    }

    /// Polls the counters of `run` until `done` says so or 60 s pass; returns the last read.
    pub async fn counters_until(
        &self,
        run: &str,
        done: impl Fn(&ferry_core::state::RunCounters) -> bool,
    ) -> ferry_core::state::RunCounters {
        use ferry_core::state::StateStore;
        let (state, started) = (self.state(), Instant::now());
        loop {
            let c = state
                .run_get(run)
                .await
                .unwrap()
                .map(|r| r.counters)
                .unwrap_or_default();
            if done(&c) || started.elapsed() > Duration::from_secs(60) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `--queue URL --state dynamodb://TABLE`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--queue".into(),
            self.queue_url.clone(),
            "--state".into(),
            format!("dynamodb://{}", self.table),
        ]
    }

    /// The SDK's standard endpoint variables, pointing at the proxies.
    pub fn envs(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SQS".into(), self.sqs.endpoint.clone()),
            ("AWS_ENDPOINT_URL_DYNAMODB".into(), self.dynamo.endpoint.clone()),
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), moto_url()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ]
    }

    /// A `ferry-worker` process with `args` and `envs`; its log goes to a file read by [`stop`].
    pub fn worker(&self, args: &[String], envs: &[(String, String)]) -> Worker {
        let mut c = Command::new(bin("ferry-worker"));
        c.args(self.flags()).args(args);
        isolate(&mut c);
        for (k, v) in self.envs().iter().chain(envs) {
            c.env(k, v);
        }
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = c
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("spawn ferry-worker");
        Worker { child, log }
    }

    /// A `ferry-finder` command on this fleet.
    pub fn finder(&self, args: &[String], envs: &[(String, String)]) -> Command {
        let mut all: Vec<String> = args.to_vec();
        all.extend(self.flags());
        let mut env = self.envs();
        env.extend(envs.iter().cloned());
        finder(&all, &env)
    }

    /// `ferry-finder status --wait` on this fleet (with a timeout), for `run`
    /// or the latest run.
    pub fn status(&self, run: Option<&str>, timeout: &str) -> Command {
        let mut c = Command::new(bin("ferry-finder"));
        c.arg("status")
            .args(self.flags())
            .args(["--wait", "--interval", "300ms", "--timeout", timeout]);
        if let Some(r) = run {
            c.args(["--run", r]);
        }
        isolate(&mut c);
        for (k, v) in self.envs() {
            c.env(k, v);
        }
        c
    }
}

/// A running `ferry-worker`.
pub struct Worker {
    /// The process.
    pub child: Child,
    log: tempfile::NamedTempFile,
}

impl Worker {
    /// Kills the process with SIGKILL and waits for it.
    pub fn kill_nine(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A worker a failing test leaves behind is killed, not left polling the
/// shared servers.
impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to a worker and waits for it (bounded); returns its exit
/// status and everything it logged.
pub fn stop(mut worker: Worker) -> (std::process::ExitStatus, String) {
    let (child, log_file) = (&mut worker.child, &worker.log);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let log = String::from_utf8_lossy(&std::fs::read(log_file.path()).unwrap_or_default()).into_owned();
            eprintln!("--- worker {} ({status}) logged:\n{log}", child.id());
            return (status, log);
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the worker did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The run id a finder printed ("Run ID finished in …").
pub fn run_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split(" finished").next().map(str::to_string))
        .unwrap_or_else(|| panic!("no run id in the finder's output:\n{stdout}"))
}

/// The number on a status line like "  done:  12 objects".
pub fn count(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{label}:")))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{stdout}"))
}

/// An S3 → S3 job of a test: the finder's arguments (locations, endpoints,
/// extra flags) and the job file the workers share with it.
pub struct S3Job {
    /// `s3://SRC/ s3://DST/ --src-endpoint … --dest-endpoint … EXTRA…`.
    pub args: Vec<String>,
    file: tempfile::NamedTempFile,
}

impl S3Job {
    /// A job from `src_bucket` at `src_endpoint` to `dst_bucket` at
    /// `dst_endpoint` (path-style), with `extra` flags for finder and workers.
    pub fn new(src_bucket: &str, src_endpoint: &str, dst_bucket: &str, dst_endpoint: &str, extra: &[&str]) -> Self {
        let mut args = vec![format!("s3://{src_bucket}/"), format!("s3://{dst_bucket}/")];
        for (side, ep) in [("src", src_endpoint), ("dest", dst_endpoint)] {
            args.extend([
                format!("--{side}-endpoint"),
                ep.to_string(),
                format!("--{side}-path-style"),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let file = tempfile::NamedTempFile::new().expect("job file");
        std::fs::write(
            file.path(),
            format!("[source]\nurl = \"s3://{src_bucket}/\"\n[destination]\nurl = \"s3://{dst_bucket}/\"\n"),
        )
        .expect("write the job file");
        S3Job { args, file }
    }

    /// A worker's arguments: `--config FILE` and the finder's flags.
    pub fn worker_args(&self) -> Vec<String> {
        let mut w = vec!["--config".to_string(), self.file.path().display().to_string()];
        w.extend(self.args[2..].iter().cloned());
        w
    }
}

/// A multipart transfer slow enough to catch midway: one object of `mib` MiB
/// on radosgw, a moto destination behind a proxy that holds every UploadPart
/// for 400 ms, and a job of 5 MiB parts sent one at a time.
pub struct SlowMultipart {
    /// Source bucket (radosgw).
    pub src_bucket: String,
    /// Destination bucket (moto).
    pub dst_bucket: String,
    /// The object `big.bin`.
    pub body: Vec<u8>,
    /// The proxy in front of the destination.
    pub dst_proxy: Proxy,
    /// The job, with `extra` flags after the part settings.
    pub job: S3Job,
}

impl SlowMultipart {
    /// Sets it up.
    pub async fn new(hint: &str, mib: usize, extra: &[&str]) -> Self {
        let (rgw, moto) = (crate::rgw(), crate::moto());
        let src_bucket = rgw.bucket(&format!("{hint}-src")).await;
        let dst_bucket = moto.bucket(&format!("{hint}-dst")).await;
        let body = crate::data(mib * 1024 * 1024, mib as u64);
        rgw.put_all(
            &src_bucket,
            &std::collections::BTreeMap::from([("big.bin".to_string(), body.clone())]),
        )
        .await;
        let dst_proxy = Proxy::start_slow(
            &moto.endpoint,
            crate::proxy::Delay {
                ops: vec!["UploadPart"],
                by: Duration::from_millis(400),
            },
        )
        .await;
        let mut flags = vec![
            "--part-size",
            "5MiB",
            "--multipart-threshold",
            "5MiB",
            "--concurrency",
            "1",
        ];
        flags.extend_from_slice(extra);
        let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &dst_proxy.endpoint, &flags);
        SlowMultipart {
            src_bucket,
            dst_bucket,
            body,
            dst_proxy,
            job,
        }
    }

    /// Waits (at most 60 s) until `state` records `n` parts of the object.
    pub async fn wait_for_parts(&self, state: &impl ferry_core::state::StateStore, n: usize) {
        let (rk, started) = (self.record(), Instant::now());
        while state.get(&rk).await.unwrap().map(|r| r.parts.len()).unwrap_or(0) < n {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "fewer than {n} parts recorded in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The destination's record key of the object.
    pub fn record(&self) -> ferry_core::state::RecordKey {
        ferry_core::state::RecordKey {
            bucket: self.dst_bucket.clone(),
            key: "big.bin".into(),
        }
    }
}
