//! Bad input gets a clear error naming the setting, bucket or file, a non-zero
//! exit status and no panic.

use ferry_tests::*;

fn expect_error(args: &[&str], envs: &[(String, String)], needles: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = run(finder(&args, envs));
    assert_eq!(out.status.code(), Some(2), "exit status 2 for bad input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "no panic: {err}");
    for n in needles {
        assert!(err.contains(n), "error should mention {n:?}: {err}");
    }
}

#[test]
fn bad_input_is_explained() {
    let rgw = rgw();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let s = src.display().to_string();
    let state = work.path().join("s.sqlite").display().to_string();

    expect_error(&[&s, "s3:///nobucket", "--state", &state], &[], &["no bucket"]);
    expect_error(&[&s, "gs://b/k", "--state", &state], &[], &["unsupported scheme"]);
    expect_error(
        &["/definitely/not/here", "/tmp/x", "--state", &state],
        &[],
        &["/definitely/not/here"],
    );
    expect_error(
        &[&s, "s3://bkt/", "--dest-vendor", "aliyun-oss", "--state", &state],
        &[],
        &["--dest-region"],
    );
    expect_error(
        &[&s, "s3://bkt/", "--dest-vendor", "nope", "--state", &state],
        &[],
        &["nope", "aliyun-oss"],
    );
    expect_error(
        &[&s, "s3://bkt/", "--part-size", "1MiB", "--state", &state],
        &[],
        &["--part-size"],
    );

    let cfg = work.path().join("job.toml");
    std::fs::write(&cfg, "[source]\nurl = \"/tmp\"\nendpont = \"x\"\n").unwrap();
    expect_error(&["--config", &cfg.display().to_string()], &[], &["endpont", "job.toml"]);

    let dest = rgw.flags("dest");
    let mut args: Vec<&str> = vec![&s, "s3://no-such-bucket-ferry/", "--state", &state];
    args.extend(dest.iter().map(String::as_str));
    expect_error(&args, &rgw.envs("dest"), &["no-such-bucket-ferry", "does not exist"]);

    let wrong = vec![
        ("FERRY_DEST_ACCESS_KEY_ID".to_string(), "wrong".to_string()),
        ("FERRY_DEST_SECRET_ACCESS_KEY".to_string(), "wrong-secret".to_string()),
    ];
    expect_error(&args, &wrong, &["access denied"]);
    let out = run(finder(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &wrong));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("wrong-secret"),
        "secrets never printed"
    );

    let unreachable: Vec<&str> = vec![
        &s,
        "s3://bkt/",
        "--dest-endpoint",
        "http://127.0.0.1:9",
        "--dest-path-style",
        "--state",
        &state,
    ];
    expect_error(&unreachable, &rgw.envs("dest"), &["cannot reach", "127.0.0.1:9"]);
}
