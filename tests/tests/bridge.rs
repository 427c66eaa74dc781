//! `ferry-events-bridge` end to end: OSS event notifications POSTed over HTTP
//! (or replayed from stdin) → SQS → `ferry-worker` → destination, with
//! authentication and malformed bodies refused before anything is queued, and
//! the latency from POST to object at the destination measured.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_core::queue::JobQueue;
use ferry_tests::fleet::{stop, Fleet, S3Job};
use ferry_tests::*;

const TOKEN: &str = "bridge-test-secret-0123456789";

fn oss_event(bucket: &str, name: &str, key: &str, body: &[u8], time: &str) -> serde_json::Value {
    serde_json::json!({
        "eventName": name, "eventSource": "acs:oss", "eventTime": time, "eventVersion": "1.0",
        "oss": {"bucket": {"name": bucket, "arn": format!("acs:oss:cn-hangzhou:1:{bucket}")},
                "object": {"key": key, "size": body.len(), "eTag": hex::encode(ferry_core::etag::md5(body)).to_uppercase()},
                "ossSchemaVersion": "1.0"},
        "region": "cn-hangzhou"
    })
}

/// POSTs `body` to the bridge; returns (status, response body).
fn bridge(fleet: &Fleet, job: &S3Job, extra_env: &[(&str, &str)]) -> (Child, String) {
    let addr = free_addr();
    let mut c = Command::new(bin("ferry-events-bridge"));
    c.args(["--listen", &addr]).args(job.worker_args()).args(fleet.flags());
    isolate(&mut c);
    for (k, v) in fleet.envs() {
        c.env(k, v);
    }
    c.env("FERRY_BRIDGE_TOKEN", TOKEN);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let child = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the bridge");
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "the bridge did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn oss_events_over_http_and_stdin_reach_the_destination() {
    let (rgw, moto) = (rgw(), moto());
    // radosgw stands in for the OSS source bucket.
    let (src_bucket, dst_bucket) = (rgw.bucket("oss-src").await, moto.bucket("oss-dst").await);
    let objects: BTreeMap<String, Vec<u8>> = [
        "photos/a b.jpg",
        "photos/x+y%z.txt",
        "photos/视频.mp4",
        "photos/late.txt",
    ]
    .iter()
    .enumerate()
    .map(|(i, k)| (k.to_string(), data(3000 + i * 100, 40 + i as u64)))
    .collect();
    rgw.put_all(&src_bucket, &objects).await;
    let fleet = Fleet::new("bridge", true, 5).await;
    let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &moto.endpoint, &[]);
    let (mut bridge_proc, addr) = bridge(&fleet, &job, &[]);
    let q = fleet.queue();

    let keys: Vec<&String> = objects.keys().collect();
    let events: Vec<serde_json::Value> = keys[..3]
        .iter()
        .map(|k| {
            oss_event(
                &src_bucket,
                "ObjectCreated:PutObject",
                k,
                &objects[*k],
                "2026-11-22T06:45:43.000Z",
            )
        })
        .collect();
    let notification = serde_json::json!({"events": events}).to_string();

    let (status, _) = http_post(&addr, "/invoke", &[], &notification);
    assert_eq!(status, 401, "no credentials");
    let (status, _) = http_post(
        &addr,
        "/invoke",
        &[("x-ferry-token", "wrong-token-0123456789".into())],
        &notification,
    );
    assert_eq!(status, 401, "a wrong token");
    let (status, text) = http_post(&addr, "/invoke", &[("x-ferry-token", TOKEN.into())], "{\"records\": 1}");
    assert_eq!(status, 400, "malformed: {text}");
    assert!(text.contains("not an OSS event notification"), "{text}");
    let (status, _) = http_post(
        &addr,
        "/invoke",
        &[("x-fc-control-path", "/invoke".into())],
        &notification,
    );
    assert_eq!(
        status, 401,
        "Function Compute event invocations are not trusted unless asked"
    );
    let s = q.stats().await.unwrap();
    assert_eq!((s.ready, s.in_flight), (0, 0), "nothing queued for refused requests");

    let signature = format!(
        "sha256={}",
        ferry_events_bridge::Auth::new(TOKEN)
            .unwrap()
            .sign(notification.as_bytes())
    );
    let (status, text) = http_post(
        &addr,
        "/invoke",
        &[("x-ferry-signature", signature), ("x-fc-request-id", "req-1".into())],
        &notification,
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, r#"{"ignored":0,"queued":3}"#);

    // Replay from stdin.
    let late = serde_json::json!({"events": [oss_event(&src_bucket, "ObjectCreated:AppendObject", keys[3], &objects[keys[3]], "2026-11-22T06:45:44.000Z")]});
    let mut replay = Command::new(bin("ferry-events-bridge"));
    replay.arg("--stdin").args(job.worker_args()).args(fleet.flags());
    isolate(&mut replay);
    for (k, v) in fleet.envs() {
        replay.env(k, v);
    }
    let mut child = replay.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(late.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("queued 1 job(s)"));

    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let worker = fleet.worker(&job.worker_args(), &envs);
    let t = Instant::now();
    while moto.read_all(&dst_bucket, "").await != objects {
        assert!(t.elapsed() < Duration::from_secs(60), "the objects did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _) = stop(worker);
    assert!(st.success());
    let _ = bridge_proc.kill();
    let _ = bridge_proc.wait();
    assert_same("from OSS events", &objects, &moto.read_all(&dst_bucket, "").await);
}

/// Latency from the POST of an event to the object at the destination, over
/// 200 events sent one at a time (the figure in docs/EVENTS.md).
#[tokio::test(flavor = "multi_thread")]
async fn event_to_destination_latency_over_200_events() {
    const N: usize = 200;
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("lat-src").await, moto.bucket("lat-dst").await);
    let objects: BTreeMap<String, Vec<u8>> = (0..N)
        .map(|i| (format!("e/{i:04}"), data(2000 + i, i as u64)))
        .collect();
    rgw.put_all(&src_bucket, &objects).await;
    let fleet = Fleet::new("latency", true, 5).await;
    let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &moto.endpoint, &[]);
    let (mut bridge_proc, addr) = bridge(&fleet, &job, &[]);
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let worker = fleet.worker(&job.worker_args(), &envs);
    // Let the worker reach its long poll before the first event.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let client = moto.client();
    let mut sent: BTreeMap<String, Instant> = BTreeMap::new();
    let mut arrived: BTreeMap<String, Instant> = BTreeMap::new();
    let started = Instant::now();
    let keys: Vec<String> = objects.keys().cloned().collect();
    let mut next = 0;
    while arrived.len() < N {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{} of {N} arrived",
            arrived.len()
        );
        if next < N {
            // One event every 20 ms.
            let k = &keys[next];
            let body = serde_json::json!({"events": [oss_event(&src_bucket, "ObjectCreated:PutObject", k, &objects[k], "2026-11-22T06:45:43.000Z")]}).to_string();
            let (status, text) = http_post(&addr, "/", &[("x-ferry-token", TOKEN.into())], &body);
            assert_eq!(status, 200, "{text}");
            sent.insert(k.clone(), Instant::now());
            next += 1;
        }
        let listed = client.list_objects_v2().bucket(&dst_bucket).send().await.unwrap();
        let now = Instant::now();
        for o in listed.contents() {
            if let Some(k) = o.key() {
                arrived.entry(k.to_string()).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, _) = stop(worker);
    assert!(st.success());
    let _ = bridge_proc.kill();
    let _ = bridge_proc.wait();
    let mut ms: Vec<f64> = keys
        .iter()
        .map(|k| (arrived[k].duration_since(sent[k])).as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let (median, p99) = (ms[N / 2], ms[(N * 99) / 100 - 1]);
    eprintln!(
        "event POST → object at destination over {N} events: median {median:.0} ms, p99 {p99:.0} ms, max {:.0} ms",
        ms[N - 1]
    );
    assert!(p99 < 10_000.0, "p99 {p99:.0} ms");
    assert_same("latency run", &objects, &moto.read_all(&dst_bucket, "").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn function_compute_event_invocations_can_be_trusted_when_asked() {
    let (rgw, moto) = (rgw(), moto());
    let (src_bucket, dst_bucket) = (rgw.bucket("fc-src").await, moto.bucket("fc-dst").await);
    let fleet = Fleet::new("fc", true, 5).await;
    let job = S3Job::new(&src_bucket, &rgw.endpoint, &dst_bucket, &moto.endpoint, &[]);
    let (mut bridge_proc, addr) = bridge(&fleet, &job, &[("FERRY_BRIDGE_TRUST_FC_EVENTS", "true")]);
    let n = serde_json::json!({"events": [oss_event(&src_bucket, "ObjectCreated:PutObject", "k", b"abc", "2026-11-22T06:45:43.000Z")]}).to_string();
    let (status, _) = http_post(&addr, "/", &[("x-fc-control-path", "/invoke".into())], &n);
    assert_eq!(status, 401, "only /invoke is an event invocation");
    let (status, text) = http_post(
        &addr,
        "/invoke",
        &[
            ("x-fc-control-path", "/invoke".into()),
            ("x-fc-request-id", "r-2".into()),
        ],
        &n,
    );
    let _ = bridge_proc.kill();
    let _ = bridge_proc.wait();
    assert_eq!(status, 200, "{text}");
    assert_eq!(fleet.queue().stats().await.unwrap().ready, 1);
}
