//! The worker loop in process, over memory stores and the embedded queue and
//! state: jobs drain, a store that throttles is retried by the retrying
//! layer, a queue that fails is asked again, and a job that can never
//! succeed is given up after its attempts and dead-lettered, with nothing
//! lost or copied twice.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_core::db::Db;
use ferry_core::etag;
use ferry_core::events::EventContext;
use ferry_core::job::{Job, SrcRef};
use ferry_core::queue::failing::{FailingQueue, QueueOp};
use ferry_core::queue::{EmbeddedQueue, JobQueue, JobQueueExt};
use ferry_core::state::{EmbeddedStateStore, RecordKey, StateStore, Status};
use ferry_core::store::conformance::data;
use ferry_core::store::failing::{FailingStore, Fault, Op};
use ferry_core::store::{GetOptions, MemoryStore, ObjectStore, PutOptions, RetryingStore};
use ferry_worker::engine::{Engine, EngineConfig};
use ferry_worker::runner::{self, Control, RunnerConfig};

struct Rig {
    _dir: tempfile::TempDir,
    src: Arc<MemoryStore>,
    failing_src: Arc<FailingStore>,
    dst: Arc<MemoryStore>,
    queue: Arc<FailingQueue>,
    state: Arc<dyn StateStore>,
    /// Objects above this are split into spans of `giant_span` bytes.
    giant: (u64, u64),
}

async fn rig(objects: &[(&str, Bytes)]) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("state.sqlite")).unwrap();
    let src = Arc::new(MemoryStore::new());
    for (k, b) in objects {
        src.put(k, b.clone(), etag::md5(b), &PutOptions::default())
            .await
            .unwrap();
    }
    Rig {
        _dir: dir,
        failing_src: Arc::new(FailingStore::new(src.clone())),
        src,
        dst: Arc::new(MemoryStore::new()),
        queue: Arc::new(FailingQueue::new(Arc::new(EmbeddedQueue::new(db.clone(), 10)))),
        state: Arc::new(EmbeddedStateStore::new(db)),
        giant: (u64::MAX, 1 << 30),
    }
}

impl Rig {
    fn engine(&self) -> Arc<Engine> {
        Arc::new(Engine::new(
            RetryingStore::wrap(self.failing_src.clone(), 3),
            self.dst.clone(),
            self.state.clone(),
            "dst".into(),
            PutOptions::default(),
            EngineConfig {
                multipart_threshold: 8 << 20,
                part_size: 5 << 20,
                concurrency: 4,
                max_in_flight: 64 << 20,
                giant_threshold: self.giant.0,
                giant_span: self.giant.1,
                lease: Duration::from_secs(30),
            },
        ))
    }

    async fn queue_jobs(&self, keys: &[&str]) {
        let mut bodies = Vec::new();
        for k in keys {
            let h = self.src.head(k).await.unwrap().unwrap();
            let src = SrcRef {
                key: k.to_string(),
                size: h.size,
                etag: h.etag,
                version: None,
            };
            bodies.push(Job::copy("run-1", src, k.to_string()).to_body());
        }
        self.queue.send_all(bodies, 3).await.unwrap();
    }

    /// Runs the loop until the queue is drained.
    async fn drain(&self, max_attempts: u32) -> runner::RunnerSummary {
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let cfg = RunnerConfig {
            workers: 4,
            lease: Duration::from_secs(30),
            max_receives: 10,
            max_attempts,
            grace: Duration::ZERO,
            events: EventContext {
                src_bucket: "src".into(),
                src_prefix: String::new(),
                dest_prefix: String::new(),
                delete: false,
            },
        };
        let control = Control {
            stop,
            producer_done: Some(Arc::new(AtomicBool::new(true))),
        };
        let queue: Arc<dyn JobQueue> = self.queue.clone();
        tokio::time::timeout(Duration::from_secs(60), runner::run(self.engine(), queue, cfg, control))
            .await
            .expect("the loop drains the queue and ends")
    }

    async fn body_at_dest(&self, key: &str) -> Bytes {
        self.dst.get(key, &GetOptions::default()).await.unwrap().body
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_drains_the_queue_through_throttling_and_queue_failures() {
    let objects = [
        ("small", data(70_000, 1)),
        ("throttled", data(120_000, 2)),
        ("big", data((9 << 20) + 321, 3)),
    ];
    let r = rig(&objects).await;
    r.queue_jobs(&["small", "throttled", "big"]).await;
    // Two throttled reads of one object and of one part: the retrying layer
    // absorbs them; two failed receives: the loop backs off and asks again.
    r.failing_src
        .inject(Fault::retryable(Op::Get).on_key("throttled").times(2));
    r.failing_src
        .inject(Fault::retryable(Op::Get).on_key("big").after(1).times(1));
    r.queue.fail(QueueOp::Receive, 2);

    let summary = r.drain(3).await;

    assert_eq!((summary.acked, summary.failed_attempts, summary.given_up), (3, 0, 0));
    for (k, b) in &objects {
        assert_eq!(&r.body_at_dest(k).await, b, "{k} arrived byte for byte");
        let rec = r
            .state
            .get(&RecordKey {
                bucket: "dst".into(),
                key: k.to_string(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.status, Status::Done, "{k}");
    }
    assert_eq!(
        r.failing_src.calls(Op::Get),
        1 + 3 + 3,
        "small once, throttled thrice, big's two parts plus one retry"
    );
    assert!(
        r.queue.calls(QueueOp::Receive) >= 3,
        "the loop asked again after failed receives"
    );
    assert_eq!(r.queue.stats().await.unwrap().live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_cannot_succeed_is_given_up_after_its_attempts_and_dead_lettered() {
    let objects = [("good", data(10_000, 4)), ("refused", data(10_000, 5))];
    let r = rig(&objects).await;
    r.queue_jobs(&["good", "refused"]).await;
    // A refusal no retry cures, on every read of one object.
    r.failing_src
        .inject(Fault::fatal(Op::Get).on_key("refused").times(u32::MAX));

    let summary = r.drain(2).await;

    assert_eq!(summary.acked, 1);
    assert_eq!(
        (summary.failed_attempts, summary.given_up),
        (2, 1),
        "two attempts, then given up"
    );
    assert_eq!(r.body_at_dest("good").await, objects[0].1);
    assert!(r.dst.head("refused").await.unwrap().is_none(), "nothing written for it");
    let rec = r
        .state
        .get(&RecordKey {
            bucket: "dst".into(),
            key: "refused".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, Status::Failed);
    assert!(
        rec.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("given up after 2 failed attempts"),
        "{rec:?}"
    );
    let stats = r.queue.stats().await.unwrap();
    assert_eq!((stats.live(), stats.dead), (0, 1), "{stats:?}");
    assert_eq!(
        r.failing_src.calls(Op::Get),
        1 + 2,
        "a fatal refusal is not retried by the store layer"
    );
}

/// The parts of `key`'s upload the destination still holds: none once
/// completed or aborted.
async fn open_uploads(dst: &MemoryStore) -> usize {
    dst.list_uploads("").await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_giant_object_is_copied_in_spans_and_completed_by_the_last() {
    // 10 parts of 5 MiB (the last shorter) in spans of 2 parts: 5 span jobs.
    let body = data((47 << 20) + 7, 9);
    let mut r = rig(&[("giant", body.clone()), ("small", data(1000, 10))]).await;
    r.giant = (20 << 20, 10 << 20);
    r.queue_jobs(&["giant", "small"]).await;
    let summary = r.drain(3).await;
    assert_eq!(
        (summary.acked, summary.failed_attempts, summary.given_up),
        (2 + 5, 0, 0),
        "two jobs and five spans"
    );
    assert!(
        r.body_at_dest("giant").await == body,
        "the giant object arrived byte for byte"
    );
    let rec = r
        .state
        .get(&RecordKey {
            bucket: "dst".into(),
            key: "giant".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.status, Status::Done);
    assert_eq!(open_uploads(&r.dst).await, 0, "the upload is completed");
    for first in [1, 3, 5, 7, 9] {
        let key = format!("giant#parts-{first}-{}", first + 1);
        let span = r
            .state
            .get(&RecordKey {
                bucket: "dst#spans".into(),
                key,
            })
            .await
            .unwrap();
        assert_eq!(
            span.map(|s| s.status),
            Some(Status::Done),
            "span from part {first} is done"
        );
    }
    let run = r.state.run_tally("run-1").await.unwrap();
    assert_eq!(run.done, 2, "the giant object counts once in its run: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changed_under_its_spans_is_planned_again_with_the_new_version() {
    let first = data((31 << 20) + 3, 11);
    let mut r = rig(&[("giant", first)]).await;
    r.giant = (20 << 20, 10 << 20);
    r.queue_jobs(&["giant"]).await;
    // The object's job alone: it queues its spans.
    let engine = r.engine();
    let msg = r
        .queue
        .receive(1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .remove(0);
    let job = Job::parse(&msg.body).unwrap();
    let holder = ferry_core::lease::LeaseHolder::new(1, &msg.id);
    let outcome = engine.run_job(&job, &holder).await.unwrap();
    let ferry_worker::engine::JobOutcome::Split { spans } = outcome else {
        panic!("a giant object is split: {outcome:?}")
    };
    assert_eq!(spans.len(), 4, "7 parts in spans of 2");
    r.queue
        .send_all(spans.iter().map(Job::to_body).collect(), 3)
        .await
        .unwrap();
    r.queue.ack(&msg.receipt).await.unwrap();
    // The source changes before any span runs.
    let second = data((33 << 20) + 5, 12);
    r.src
        .put("giant", second.clone(), etag::md5(&second), &PutOptions::default())
        .await
        .unwrap();
    let summary = r.drain(3).await;
    assert_eq!(summary.given_up, 0);
    assert!(r.body_at_dest("giant").await == second, "the new version arrived whole");
    assert_eq!(open_uploads(&r.dst).await, 0, "the abandoned upload was aborted");
}
