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
    expect_error(&[&s, "ftp://host/k", "--state", &state], &[], &["unsupported scheme"]);
    expect_error(&[&s, "oss://bkt/k/", "--state", &state], &[], &["--dest-region"]);
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
    expect_error(
        &[&s, "/tmp/x", "--compare", "bogus", "--state", &state],
        &[],
        &["compare", "bogus", "mtime", "checksum"],
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

/// A work directory with a source tree of one small file.
fn one_file_tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    write_tree(
        &src,
        &std::collections::BTreeMap::from([("f".to_string(), data(10, 1))]),
    );
    (work, src)
}

#[test]
fn a_location_that_looks_like_a_url_but_is_not_says_what_was_meant() {
    let (work, src) = one_file_tree();
    let s = src.display().to_string();
    let state = work.path().join("s.sqlite").display().to_string();
    for (typed, meant) in [("s3:/bucket/x", "s3://bucket/x"), ("s3:bucket", "s3://bucket")] {
        let args = [s.as_str(), typed, "--state", state.as_str()];
        expect_error(&args, &[], &[&format!("did you mean {meant:?}")]);
    }
    // Nothing was copied into a local folder named after the typo.
    assert!(!std::path::Path::new("s3:").exists() && !std::path::Path::new("s3:bucket").exists());
}

/// An AWS service that cannot be reached, or that refuses, is one readable
/// line naming the operation and the resource and saying what to do, never
/// the SDK's `Debug` dump.
#[test]
fn service_failures_are_one_line_with_what_to_do() {
    let (work, src) = one_file_tree();
    let mut c = std::process::Command::new(bin("ferry-worker"));
    c.args([
        "--queue",
        "http://127.0.0.1:9/123456789012/gone",
        "--state",
        "dynamodb://gone",
    ]);
    isolate(&mut c);
    c.env("FERRY_SRC_URL", src.display().to_string())
        .env("FERRY_DEST_URL", work.path().join("dst").display().to_string())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    let out = run(c);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let line = lines[0];
    assert!(line.contains("GetQueueAttributes") && line.contains("/gone"), "{line}");
    assert!(line.contains("check the endpoint"), "{line}");
    for dump in ["DispatchFailure(", "ConnectorError {", "Os {", "source:"] {
        assert!(!line.contains(dump), "no Debug dump ({dump}): {line}");
    }
}

/// Access keys are read from the environment or the job file only: given as
/// a flag (where `ps` and shell history would show them), they are refused
/// with the variable to use instead, by every binary and subcommand.
#[test]
fn keys_given_as_flags_are_refused_with_the_variable_to_use() {
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("s.sqlite").display().to_string();
    let (src, dest) = ("/tmp/a", "s3://bucket/x");
    let runs: [(&str, Vec<&str>, &str); 4] = [
        (
            "ferry-finder",
            vec![src, dest, "--src-access-key-id", "AKIAEXAMPLE", "--state", &state],
            "FERRY_SRC_ACCESS_KEY_ID",
        ),
        (
            "ferry-finder",
            vec!["verify", src, dest, "--dest-secret-access-key", "s3cr3t"],
            "FERRY_DEST_SECRET_ACCESS_KEY",
        ),
        (
            "ferry-worker",
            vec!["--dest-session-token", "tok", "--state", &state],
            "FERRY_DEST_SESSION_TOKEN",
        ),
        (
            "ferry-events-bridge",
            vec!["--src-session-token", "tok", "--state", &state],
            "FERRY_SRC_SESSION_TOKEN",
        ),
    ];
    for (binary, args, var) in runs {
        let mut c = std::process::Command::new(bin(binary));
        c.args(&args);
        isolate(&mut c);
        let out = run(c);
        assert_eq!(out.status.code(), Some(2), "{binary} {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{binary} names {var}: {err}");
        assert!(
            err.contains("never read from flags") && !err.contains("panicked"),
            "{binary}: {err}"
        );
        assert!(
            !err.contains("s3cr3t") && !err.contains("AKIAEXAMPLE"),
            "the key is not echoed: {err}"
        );
    }
}
