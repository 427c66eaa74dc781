//! `ferry-finder clean-uploads` aborts unfinished multipart uploads under a prefix.

use ferry_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn clean_uploads_aborts_only_under_the_prefix() {
    let rgw = rgw();
    let bucket = rgw.bucket("clean").await;
    let c = rgw.client();
    for key in ["stale/a", "stale/b", "keep/c"] {
        c.create_multipart_upload()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .expect("create upload");
    }
    assert_eq!(rgw.uploads(&bucket).await, 3);
    let mut args: Vec<String> = vec![
        "clean-uploads".into(),
        format!("s3://{bucket}/stale/"),
        "--older-than".into(),
        "0s".into(),
    ];
    args.extend(rgw.flags("dest"));
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let mut cmd = std::process::Command::new(bin("ferry-finder"));
    cmd.args(&dry);
    isolate(&mut cmd);
    cmd.envs(rgw.envs("dest"));
    let out = run(cmd);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 unfinished upload(s) found"));
    assert_eq!(rgw.uploads(&bucket).await, 3, "a dry run aborts nothing");

    let mut cmd = std::process::Command::new(bin("ferry-finder"));
    cmd.args(&args);
    isolate(&mut cmd);
    cmd.envs(rgw.envs("dest"));
    let out = run(cmd);
    assert!(out.status.success());
    let left = c.list_multipart_uploads().bucket(&bucket).send().await.unwrap();
    let keys: Vec<&str> = left.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, vec!["keep/c"]);
}
