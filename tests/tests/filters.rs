//! Selection end to end: `--modified-since` / `--modified-before` on a
//! local source (file times set by the test) and on radosgw (the time
//! between two uploads), and `--prefix-list` from a file.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ferry_tests::*;

fn args(src: String, dst: &std::path::Path, state: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        src,
        dst.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[tokio::test(flavor = "multi_thread")]
async fn local_files_are_selected_by_their_modification_time() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let files = BTreeMap::from([
        ("old.txt".to_string(), data(100, 1)),
        ("mid/ten-days.txt".to_string(), data(200, 2)),
        ("new.txt".to_string(), data(300, 3)),
    ]);
    write_tree(&src, &files);
    let day = Duration::from_secs(86_400);
    for (key, age) in [("old.txt", 30 * day), ("mid/ten-days.txt", 10 * day)] {
        let f = std::fs::File::options().write(true).open(src.join(key)).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }
    let pick = |keys: &[&str]| -> BTreeMap<String, Vec<u8>> {
        keys.iter().map(|k| (k.to_string(), files[*k].clone())).collect()
    };
    let url = src.display().to_string();
    let recent = work.path().join("recent");
    let out = run(finder(
        &args(
            url.clone(),
            &recent,
            &work.path().join("a.sqlite"),
            &["--modified-since", "14d"],
        ),
        &[],
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same(
        "modified in the last 14 days",
        &pick(&["mid/ten-days.txt", "new.txt"]),
        &read_tree(&recent),
    );

    let older = work.path().join("older");
    let state = work.path().join("b.sqlite");
    let out = run(finder(
        &args(url.clone(), &older, &state, &["--modified-before", "14d"]),
        &[],
    ));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same("modified before 14 days ago", &pick(&["old.txt"]), &read_tree(&older));

    let never = ["--modified-since", "2026-01-01", "--modified-before", "2025-01-01"];
    let out = run(finder(&args(url.clone(), &older, &state, &never), &[]));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("--modified-before: is not after --modified-since"),
        "{}",
        output_text(&out)
    );
    let out = run(finder(
        &args(url, &older, &state, &["--modified-since", "last week"]),
        &[],
    ));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("--modified-since: \"last week\" is not a time"),
        "{}",
        output_text(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bucket_objects_are_selected_by_when_they_were_written() {
    let rgw = rgw();
    let src = rgw.bucket("since-src").await;
    rgw.put_all(&src, &BTreeMap::from([("before.txt".to_string(), data(100, 11))]))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = BTreeMap::from([("after.txt".to_string(), data(200, 12))]);
    rgw.put_all(&src, &after).await;
    let work = tempfile::tempdir().unwrap();
    let dst = work.path().join("dst");
    let mut a = args(
        format!("s3://{src}/"),
        &dst,
        &work.path().join("s.sqlite"),
        &["--modified-since", &cut],
    );
    a.extend(rgw.flags("src"));
    let out = run(finder(&a, &rgw.envs("src")));
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same("written after the cut", &after, &read_tree(&dst));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_list_file_selects_its_prefixes_only() {
    let rgw = rgw();
    let src = rgw.bucket("plist-src").await;
    let files = BTreeMap::from([
        ("in/a/1.txt".to_string(), data(100, 21)),
        ("in/ab/2.txt".to_string(), data(100, 22)),
        ("in/b/3.txt".to_string(), data(100, 23)),
        ("in/c/deep/4.txt".to_string(), data(100, 24)),
        ("out/5.txt".to_string(), data(100, 25)),
    ]);
    rgw.put_all(&src, &files).await;
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("prefixes.txt");
    std::fs::write(&list, "a/\n# a comment\n\nc/\nc/deep/\n").unwrap();
    let dst = work.path().join("dst");
    let state = work.path().join("s.sqlite");
    let plist = list.display().to_string();
    let mut a = args(format!("s3://{src}/in/"), &dst, &state, &["--prefix-list", &plist]);
    a.extend(rgw.flags("src"));
    let out = run(finder(&a, &rgw.envs("src")));
    assert!(out.status.success(), "{}", output_text(&out));
    let want = BTreeMap::from([
        ("a/1.txt".to_string(), files["in/a/1.txt"].clone()),
        ("c/deep/4.txt".to_string(), files["in/c/deep/4.txt"].clone()),
    ]);
    assert_same("the listed prefixes, relative to the source's", &want, &read_tree(&dst));

    let missing = work.path().join("nope.txt").display().to_string();
    let mut a = args(format!("s3://{src}/in/"), &dst, &state, &["--prefix-list", &missing]);
    a.extend(rgw.flags("src"));
    let out = run(finder(&a, &rgw.envs("src")));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains(&format!("--prefix-list {missing}: cannot read the file")),
        "{}",
        output_text(&out)
    );
}
