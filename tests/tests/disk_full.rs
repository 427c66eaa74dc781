//! A local destination whose file system fills up: the run ends with a clear
//! error naming the file and what to do, leaves no partial file at any key,
//! and, once space is freed, a second run finishes the transfer. A
//! multipart copy reserves its whole staging file before fetching a byte, so
//! an object that cannot fit fails at once instead of half-way. The
//! destination is a 24 MiB tmpfs mounted for the test (the suite runs as
//! root; without the mount the test fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::*;

const MIB: usize = 1024 * 1024;

/// A tmpfs mounted for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} failed (the suite needs root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_reported_clearly_leaves_no_partial_file_and_resumes() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let mut files: BTreeMap<String, Vec<u8>> = (0..10)
        .map(|i| (format!("small/{i}"), data(100 * 1024, 500 + i as u64)))
        .collect();
    files.insert("big.bin".into(), data(14 * MIB + 9, 501));
    write_tree(&src, &files);
    let dst = work.path().join("dst");
    let _fs = Tmpfs::mount(&dst, "24m");
    // 16 MiB taken: room for the small files and a part or so, not the big one.
    let filler = dst.join("filler");
    std::fs::write(&filler, vec![0u8; 16 * MIB]).unwrap();

    let args = vec![
        src.display().to_string(),
        dst.display().to_string(),
        "--state".into(),
        work.path().join("s.sqlite").display().to_string(),
        "--part-size".into(),
        "5MiB".into(),
        "--multipart-threshold".into(),
        "5MiB".into(),
        "--concurrency".into(),
        "1".into(),
    ];
    let first = run(finder(&args, &[]));
    let text = output_text(&first);
    assert_eq!(first.status.code(), Some(1), "the run reports a failure: {text}");
    assert!(
        text.contains("file system is full") && text.contains("big.bin"),
        "the error says what happened and to which object: {text}"
    );
    let mut partial = read_tree(&dst);
    partial.remove("filler");
    assert!(!partial.contains_key("big.bin"), "no partial file at the key");
    let small: BTreeMap<String, Vec<u8>> = files
        .iter()
        .filter(|(k, _)| k.starts_with("small/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_same("what fitted", &small, &partial);

    std::fs::remove_file(&filler).unwrap();
    let second = run(finder(&args, &[]));
    assert!(second.status.success(), "the run completes once space is freed");
    assert_same("after freeing space", &files, &read_tree(&dst));
    assert!(!dst.join(".ferry-uploads").exists(), "nothing staged is left behind");
}
