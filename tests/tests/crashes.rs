//! Crash rounds: two `ferry-worker` processes drain a run of large and many
//! small objects while, round after round, one of them is killed with
//! SIGKILL at a random moment and started again. The run must end complete,
//! every object byte-identical, no extra key, no multipart upload left
//! unfinished, and `ferry-finder verify` must agree. Once on the embedded
//! queue and state file, once on SQS and DynamoDB.
//!
//! CI runs a reduced count. `FERRY_FAULTS_FULL=1` runs the full one: 20 rounds
//! and multi-GiB objects (3 GiB per mode, emptied after each; run it with
//! `--test-threads 1` so the test servers' memory store holds one at a time). `FERRY_FAULT_ROUNDS=N` overrides the round count,
//! and `FERRY_FAULT_SEED=S` replays a run's kill moments (the seed is printed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::fleet::Fleet;
use ferry_tests::*;
use rand::{Rng, SeedableRng};

const MIB: usize = 1024 * 1024;

/// Rounds and object sizes of a run.
struct Plan {
    rounds: usize,
    /// Time between kills, milliseconds.
    gap: std::ops::Range<u64>,
    big: Vec<usize>,
    small: usize,
    seed: u64,
}

fn plan() -> Plan {
    let full = std::env::var("FERRY_FAULTS_FULL").is_ok_and(|v| v == "1");
    let (rounds, gap, big, small) = if full {
        (20, 500..5000, vec![2048 * MIB + 3, 1024 * MIB + 5], 1000)
    } else {
        (6, 200..1200, vec![160 * MIB + 3], 150)
    };
    let rounds = std::env::var("FERRY_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(rounds);
    let seed = std::env::var("FERRY_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    Plan {
        rounds,
        gap,
        big,
        small,
        seed,
    }
}

/// Writes the source tree: the large objects and the many small ones. Large
/// files are written in 8 MiB blocks so multi-GiB trees need no such buffer.
fn write_source(root: &Path, plan: &Plan) -> BTreeMap<String, u64> {
    use std::io::Write;
    let mut sizes = BTreeMap::new();
    for (i, &len) in plan.big.iter().enumerate() {
        let path = root.join(format!("big/{i}.bin"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut left = len;
        let mut block = 0u64;
        while left > 0 {
            let n = left.min(8 * MIB);
            f.write_all(&data(n, (i as u64) << 32 | block)).unwrap();
            left -= n;
            block += 1;
        }
        f.flush().unwrap();
        sizes.insert(format!("big/{i}.bin"), len as u64);
    }
    let small: BTreeMap<String, Vec<u8>> = (0..plan.small)
        .map(|i| {
            (
                format!("small/{:02}/{i:04}", i % 17),
                data(1000 + (i * 397) % 40_000, 7000 + i as u64),
            )
        })
        .collect();
    write_tree(root, &small);
    sizes.extend(small.iter().map(|(k, v)| (k.clone(), v.len() as u64)));
    sizes
}

/// A worker process whose log is appended to `log`.
fn spawn(args: &[String], envs: &[(String, String)], log: &Path) -> Child {
    let mut c = Command::new(bin("ferry-worker"));
    c.args(args);
    isolate(&mut c);
    for (k, v) in envs {
        c.env(k, v);
    }
    let f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    c.stdout(Stdio::null()).stderr(f).spawn().expect("spawn ferry-worker")
}

/// Kills a random one of `workers` with SIGKILL at random moments, `rounds`
/// times, restarting it each time; returns the kills done while work was
/// still under way (the status shows something in flight or queued).
fn kill_rounds(plan: &Plan, workers: &mut [Child], respawn: &dyn Fn() -> Child, busy: &dyn Fn() -> bool) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed);
    let mut mid_run = 0;
    for round in 0..plan.rounds {
        std::thread::sleep(Duration::from_millis(rng.random_range(plan.gap.clone())));
        let i = rng.random_range(0..workers.len());
        let was_busy = busy();
        workers[i].kill().expect("SIGKILL");
        workers[i].wait().expect("reap");
        eprintln!(
            "round {}: killed worker {i} ({})",
            round + 1,
            if was_busy { "mid-run" } else { "idle" }
        );
        mid_run += usize::from(was_busy);
        workers[i] = respawn();
    }
    mid_run
}

/// Queues the job of `cfg` on the fleet (a finder without workers); returns
/// a worker's arguments and environment for it.
fn queue_run(fleet: &Fleet, cfg: &str, rgw: &Server) -> (Vec<String>, Vec<(String, String)>) {
    let out = run(fleet.finder(&["--config".into(), cfg.to_string()], &rgw.envs("dest")));
    assert!(out.status.success());
    let mut args = fleet.flags();
    args.extend(["--config", cfg, "--workers", "4"].map(String::from));
    let mut envs = fleet.envs();
    envs.extend(rgw.envs("dest"));
    (args, envs)
}

/// Whether the fleet's latest run is still under way (`status` says so).
fn fleet_busy(fleet: &Fleet) -> bool {
    let mut s = Command::new(bin("ferry-finder"));
    s.arg("status").args(fleet.flags());
    isolate(&mut s);
    for (k, v) in fleet.envs() {
        s.env(k, v);
    }
    !String::from_utf8_lossy(&s.output().expect("status").stdout).contains("Status: complete")
}

fn stop_all(workers: Vec<Child>) {
    for mut w in workers {
        let _ = Command::new("kill").args(["-TERM", &w.id().to_string()]).status();
        let t = Instant::now();
        while w.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(60), "a worker ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The full comparison: a byte-for-byte read of the destination, no
/// unfinished upload, and `ferry-finder verify`.
async fn compare(rgw: &Server, bucket: &str, src: &Path, sizes: &BTreeMap<String, u64>) -> u64 {
    let got = rgw.read_all(bucket, "").await;
    let want = read_tree(src);
    assert_eq!(want.len(), sizes.len());
    assert_same("after the crash rounds", &want, &got);
    assert_eq!(rgw.uploads(bucket).await, 0, "no unfinished multipart upload left");
    let mut verify = Command::new(bin("ferry-finder"));
    verify
        .args(["verify", &src.display().to_string(), &format!("s3://{bucket}/")])
        .args(rgw.flags("dest"));
    isolate(&mut verify);
    for (k, v) in rgw.envs("dest") {
        verify.env(k, v);
    }
    let out = run(verify);
    assert!(out.status.success(), "verify agrees");
    // The full count writes gigabytes to a server that keeps them in memory.
    rgw.empty(bucket).await;
    sizes.values().sum()
}

/// The job's settings, shared by finder and workers: 8 MiB parts, two at a
/// time, and a 3 s lease so a killed worker's objects are taken over quickly.
/// The destination is `endpoint`: a proxy that holds each part 300 ms, so
/// the kills land mid-transfer.
fn job_file(dir: &Path, src: &Path, bucket: &str, endpoint: &str) -> PathBuf {
    let job = dir.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = {:?}\n[destination]\nurl = \"s3://{bucket}/\"\nendpoint = {:?}\npath_style = true\n\
             [transfer]\npart_size = \"8MiB\"\nmultipart_threshold = \"8MiB\"\nconcurrency = 2\nlease = \"3s\"\nmax_receives = 50\n",
            src.display().to_string(),
            endpoint
        ),
    )
    .unwrap();
    job
}

async fn slow_parts(rgw: &Server) -> ferry_tests::proxy::Proxy {
    ferry_tests::proxy::Proxy::start_slow(
        &rgw.endpoint,
        ferry_tests::proxy::Delay {
            ops: vec!["UploadPart"],
            by: Duration::from_millis(300),
        },
    )
    .await
}

fn report(mode: &str, plan: &Plan, mid_run: usize, objects: usize, bytes: u64, took: Duration) {
    eprintln!(
        "crash rounds ({mode}): seed {}, {} rounds survived ({mid_run} mid-run), {objects} objects and {bytes} bytes verified, \
         nothing lost or corrupted, {:.0?}",
        plan.seed, plan.rounds, took
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_rounds_on_the_embedded_queue_lose_nothing() {
    let (rgw, plan) = (rgw(), plan());
    let bucket = rgw.bucket("crash-embedded").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let sizes = write_source(&src, &plan);
    let state = work.path().join("state.sqlite").display().to_string();
    let slow = slow_parts(&rgw).await;
    let cfg = job_file(work.path(), &src, &bucket, &slow.endpoint)
        .display()
        .to_string();
    let t = Instant::now();
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
    let args: Vec<String> = ["--config", &cfg, "--state", &state, "--workers", "4"]
        .map(String::from)
        .to_vec();
    let log = work.path().join("workers.log");
    let respawn = || spawn(&args, &rgw.envs("dest"), &log);
    let mut workers = vec![respawn(), respawn()];
    let status = |wait: bool| {
        let mut s = Command::new(bin("ferry-finder"));
        s.args(["status", "--state", &state]);
        if wait {
            s.args(["--wait", "--interval", "500ms", "--timeout", "900s"]);
        }
        isolate(&mut s);
        s.output().expect("status")
    };
    let busy = || !String::from_utf8_lossy(&status(false).stdout).contains("Status: complete");
    let mid_run = kill_rounds(&plan, &mut workers, &respawn, &busy);
    let done = status(true);
    let text = String::from_utf8_lossy(&done.stdout).to_string();
    stop_all(workers);
    eprintln!(
        "{text}\n--- workers logged:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(done.status.code(), Some(0), "the run completes: {text}");
    assert!(text.contains("Status: complete"), "{text}");
    let bytes = compare(&rgw, &bucket, &src, &sizes).await;
    report("embedded", &plan, mid_run, sizes.len(), bytes, t.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_nine_rounds_on_sqs_and_dynamodb_lose_nothing() {
    let (rgw, plan) = (rgw(), plan());
    let bucket = rgw.bucket("crash-fleet").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let sizes = write_source(&src, &plan);
    let slow = slow_parts(&rgw).await;
    let cfg = job_file(work.path(), &src, &bucket, &slow.endpoint)
        .display()
        .to_string();
    let fleet = Fleet::new("crash", true, 50).await;
    let t = Instant::now();
    let (args, envs) = queue_run(&fleet, &cfg, &rgw);
    let log = work.path().join("workers.log");
    let respawn = || spawn(&args, &envs, &log);
    let mut workers = vec![respawn(), respawn()];
    let busy = || fleet_busy(&fleet);
    let mid_run = kill_rounds(&plan, &mut workers, &respawn, &busy);
    let done = fleet.status(None, "900s").output().expect("status");
    let text = String::from_utf8_lossy(&done.stdout).to_string();
    stop_all(workers);
    eprintln!(
        "{text}\n--- workers logged:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(done.status.code(), Some(0), "the run completes: {text}");
    let bytes = compare(&rgw, &bucket, &src, &sizes).await;
    report("SQS and DynamoDB", &plan, mid_run, sizes.len(), bytes, t.elapsed());
}

/// Churn: workers killed with SIGKILL or stopped with SIGTERM (an ECS or Auto
/// Scaling scale-in, with a short grace) `events` times, one every `gap`, each
/// replaced at once (a stopped worker drains while its replacement starts, as
/// on ECS). Returns (kills, scale-ins, events while work was under way) and the
/// stopped workers still draining.
fn churn_rounds(
    plan: &Plan,
    events: usize,
    workers: &mut [Child],
    respawn: &dyn Fn() -> Child,
    busy: &dyn Fn() -> bool,
) -> ((usize, usize, usize), Vec<Child>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(plan.seed);
    let (mut kills, mut terms, mut mid_run) = (0, 0, 0);
    let mut draining = Vec::new();
    for round in 0..events {
        std::thread::sleep(Duration::from_millis(rng.random_range(plan.gap.clone())));
        let i = rng.random_range(0..workers.len());
        mid_run += usize::from(busy());
        let term = rng.random_bool(0.4);
        let mut old = std::mem::replace(&mut workers[i], respawn());
        if term {
            let _ = Command::new("kill").args(["-TERM", &old.id().to_string()]).status();
            draining.push(old);
            terms += 1;
        } else {
            old.kill().expect("SIGKILL");
            old.wait().expect("reap");
            kills += 1;
        }
        eprintln!(
            "churn {}: {} worker {i}",
            round + 1,
            if term { "stopped" } else { "killed" }
        );
    }
    ((kills, terms, mid_run), draining)
}

/// Invariant 11: deliveries spent by workers that died or were scaled in never
/// push a job into the dead-letter queue. The queue parks a message after 10
/// receives (as the templates ship it), fewer than the churn costs the large
/// objects (the deliveries counted are printed); every object must still
/// arrive, no message may be dead-lettered, no upload be left and `status
/// --wait` must exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn churn_of_kills_and_scale_ins_dead_letters_no_healthy_job() {
    // Events come faster than in the crash rounds, so most land mid-run and
    // the large objects' messages are delivered again and again.
    let (rgw, plan) = (
        rgw(),
        Plan {
            gap: 150..450,
            ..plan()
        },
    );
    let events = std::env::var("FERRY_CHURN_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if plan.rounds > 6 { 80 } else { 30 });
    let bucket = rgw.bucket("churn").await;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let sizes = write_source(&src, &plan);
    // Parts held 1.2 s each: the large object takes longer than the churn.
    let slow = ferry_tests::proxy::Proxy::start_slow(
        &rgw.endpoint,
        ferry_tests::proxy::Delay {
            ops: vec!["UploadPart"],
            by: Duration::from_millis(1200),
        },
    )
    .await;
    let cfg = job_file(work.path(), &src, &bucket, &slow.endpoint);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("lease = \"3s\"", "lease = \"2s\"\nshutdown_grace = \"1s\"");
    std::fs::write(&cfg, text).unwrap();
    let cfg = cfg.display().to_string();
    // The delivery limit the templates ship (maxReceiveCount 10).
    let fleet = Fleet::new("churn", true, 10).await;
    let t = Instant::now();
    let (args, mut envs) = queue_run(&fleet, &cfg, &rgw);
    envs.push(("RUST_LOG".into(), "info,ferry_worker::runner=debug".into()));
    let log = work.path().join("workers.log");
    let respawn = || spawn(&args, &envs, &log);
    let mut workers = vec![respawn(), respawn(), respawn()];
    let busy = || fleet_busy(&fleet);
    let ((kills, terms, mid_run), draining) = churn_rounds(&plan, events, &mut workers, &respawn, &busy);
    let done = fleet.status(None, "900s").output().expect("status");
    let shown = String::from_utf8_lossy(&done.stdout).to_string();
    stop_all(workers);
    stop_all(draining);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let requeued = logged.matches("Requeued a redelivered message").count();
    let big_deliveries = logged
        .lines()
        .filter(|l| l.contains("Message received") || l.contains("Requeued a redelivered"))
        .count();
    eprintln!("{shown}\n--- workers logged {} lines", logged.lines().count());
    if done.status.code() != Some(0) {
        eprintln!("{logged}");
    }
    assert_eq!(done.status.code(), Some(0), "the run completes: {shown}");
    assert!(mid_run > 0, "the churn landed mid-run");
    use ferry_core::queue::JobQueue;
    let q = fleet.queue().stats().await.unwrap();
    assert_eq!((q.live(), q.dead), (0, 0), "no job dead-lettered: {shown}");
    assert_eq!(ferry_tests::fleet::count(&shown, "failed"), 0, "{shown}");
    assert!(!shown.contains("stranded"), "{shown}");
    let bytes = compare(&rgw, &bucket, &src, &sizes).await;
    eprintln!(
        "churn: seed {}, {kills} SIGKILLs and {terms} SIGTERM scale-ins ({mid_run} mid-run), {big_deliveries} deliveries seen, \
         {requeued} redeliveries requeued, \
         {} objects and {bytes} bytes verified, 0 dead letters, {:.0?}",
        plan.seed,
        sizes.len(),
        t.elapsed()
    );
}
