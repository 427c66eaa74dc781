//! The binaries as long-running services: a scheduled finder that runs again
//! and picks up new objects, `status` on the embedded store, and a worker
//! daemon's health endpoint and graceful SIGTERM (running jobs released, so
//! another worker resumes them without waiting for the lease).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_core::state::StateStore;
use ferry_tests::fleet::{count, stop, Fleet, SlowMultipart};
use ferry_tests::*;

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_scheduled_finder_runs_again_and_status_reads_the_embedded_store() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    let mut files: BTreeMap<String, Vec<u8>> = (0..5).map(|i| (format!("a/{i}"), data(1000 + i, i as u64))).collect();
    write_tree(&src, &files);
    let state = work.path().join("state.sqlite").display().to_string();
    let mut c = finder(
        &[
            src.display().to_string(),
            dst.display().to_string(),
            "--state".into(),
            state.clone(),
            "--schedule".into(),
            "rate:1s".into(),
            "--workers".into(),
            "2".into(),
        ],
        &[],
    );
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first run", Duration::from_secs(30), || {
        dst.exists() && read_tree(&dst) == files
    });
    files.insert("b/new".into(), data(777, 99));
    write_tree(&src, &files);
    wait_for("a later run to copy the new file", Duration::from_secs(30), || {
        read_tree(&dst) == files
    });
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "a scheduled finder stops on SIGTERM with exit 0: {status:?}"
    );

    let mut s = Command::new(bin("ferry-finder"));
    s.args(["status", "--state", &state]);
    isolate(&mut s);
    let out = run(s);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0));
    assert!(report.contains("Status: complete"), "{report}");
    assert_eq!(count(&report, "found"), 6, "the latest run saw every file");
    assert_eq!(count(&report, "failed"), 0);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> String {
    let mut c = std::net::TcpStream::connect(addr).expect("connect to the health endpoint");
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_releases_running_jobs_and_health_answers() {
    let (rgw, moto) = (rgw(), moto());
    // A long lease: only a release lets the second worker in quickly.
    let slow = SlowMultipart::new("grace", 40, &["--lease", "120s", "--shutdown-grace", "1s"]).await;
    let (dst_bucket, body) = (slow.dst_bucket.clone(), slow.body.clone());
    let fleet = Fleet::new("grace", true, 5).await;
    let (args, wargs) = (slow.job.args.clone(), slow.job.worker_args());
    let mut envs = rgw.envs("src");
    envs.extend(moto.envs("dest"));
    let health = format!("127.0.0.1:{}", free_port());
    let mut first_args = wargs.clone();
    first_args.extend(["--health-addr".to_string(), health.clone()]);
    let mut info = envs.clone();
    info.push(("RUST_LOG".into(), "info".into()));
    let first = fleet.worker(&first_args, &info);
    wait_for("the health endpoint", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&health).is_ok()
    });
    let ok = http_get(&health, "/healthz");
    assert!(ok.starts_with("HTTP/1.1 200") && ok.ends_with("ok\n"), "{ok}");

    assert!(run(fleet.finder(&args, &envs)).status.success());
    let rk = slow.record();
    let state = fleet.state();
    let t = Instant::now();
    while state.get(&rk).await.unwrap().map(|r| r.parts.len()).unwrap_or(0) < 2 {
        assert!(t.elapsed() < Duration::from_secs(60), "no parts recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    let (st, log) = stop(first);
    assert!(st.success(), "exit 0 after SIGTERM");
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "the worker stops within its grace"
    );
    assert!(log.contains("released"), "{log}");
    let rec = state.get(&rk).await.unwrap().unwrap();
    assert_eq!(rec.worker, None, "the object lease is released");
    assert!(!rec.parts.is_empty(), "recorded parts are kept for resume");

    let second = fleet.worker(&wargs, &envs);
    let status = run(fleet.status(None, "60s"));
    let (st2, _) = stop(second);
    assert_eq!(
        status.status.code(),
        Some(0),
        "resumed without waiting out the 120 s lease"
    );
    assert!(st2.success());
    assert_same(
        "released and resumed",
        &BTreeMap::from([("big.bin".to_string(), body)]),
        &moto.read_all(&dst_bucket, "").await,
    );
}
