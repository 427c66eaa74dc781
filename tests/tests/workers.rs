//! Several `ferry-worker` processes share one embedded queue: the finder only
//! queues (`--workers 0`), two worker processes drain it, every object arrives once.

use std::collections::BTreeMap;
use std::process::Command;

use ferry_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn two_worker_processes_drain_one_embedded_queue() {
    let rgw = rgw();
    let bucket = rgw.bucket("workers").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files: BTreeMap<String, Vec<u8>> = (0..60)
        .map(|i| (format!("f/{i:03}"), data(2000 + i, i as u64)))
        .collect();
    write_tree(&src, &files);
    let state = work.path().join("state.sqlite").display().to_string();
    let job = work.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = {:?}\n[destination]\nurl = \"s3://{bucket}/\"\nendpoint = {:?}\npath_style = true\n",
            src.display().to_string(),
            rgw.endpoint
        ),
    )
    .unwrap();
    let cfg = job.display().to_string();
    let out = run(finder(
        &[
            "--config".into(),
            cfg.clone(),
            "--state".into(),
            state.clone(),
            "--workers".into(),
            "0".into(),
        ],
        &rgw.envs("dest"),
    ));
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let queued = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("queued:"))
        .expect("a queued line");
    assert_eq!(queued.split_whitespace().nth(1), Some("60"), "{queued}");
    assert!(rgw.read_all(&bucket, "").await.is_empty(), "--workers 0 only queues");

    let spawn = || {
        let mut c = Command::new(bin("ferry-worker"));
        c.args([
            "--config",
            &cfg,
            "--state",
            &state,
            "--workers",
            "3",
            "--exit-when-empty",
        ]);
        isolate(&mut c);
        for (k, v) in rgw.envs("dest") {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let expect: BTreeMap<String, Vec<u8>> = files.clone();
    assert_same("two workers", &expect, &rgw.read_all(&bucket, "").await);

    let again = run(finder(
        &["--config".into(), cfg, "--state".into(), state],
        &rgw.envs("dest"),
    ));
    assert!(String::from_utf8_lossy(&again.stdout).contains("Nothing to transfer"));
}
