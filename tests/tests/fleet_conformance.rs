//! The JobQueue and StateStore conformance suites over the real protocols:
//! `SqsQueue` and `DynamoStateStore` against moto.

use ferry_core::queue::{conformance as queue_conf, JobQueue, SqsQueue};
use ferry_core::state::{conformance as state_conf, DynamoStateStore};
use ferry_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn sqs_queue_conformance() {
    let sdk = aws_services().await;
    let url = SqsQueue::create(&sdk, &unique("conf"), 3).await.expect("create queue");
    let q = SqsQueue::new(&sdk, &url);
    // SQS accepts a stale receipt handle by design (docs/STATE.md).
    queue_conf::queue_redelivery(&q, false).await;
    let url = SqsQueue::create(&sdk, &unique("conf-dlq"), 3).await.unwrap();
    let q = SqsQueue::new(&sdk, &url);
    queue_conf::queue_dead_letter(&q, 3).await;
    let redrive = q.redrive().await.unwrap().expect("a redrive policy");
    assert_eq!(redrive.max_receives, 3);
    let url = SqsQueue::create(&sdk, &unique("conf-batch"), 3).await.unwrap();
    queue_conf::queue_batches(&SqsQueue::new(&sdk, &url)).await;
    let url = SqsQueue::create(&sdk, &unique("conf-requeue"), 3).await.unwrap();
    queue_conf::queue_requeue_and_redrive(&SqsQueue::new(&sdk, &url), 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_refuses_oversize_messages_per_entry() {
    let sdk = aws_services().await;
    let url = SqsQueue::create(&sdk, &unique("big"), 3).await.unwrap();
    let q = SqsQueue::new(&sdk, &url);
    let bodies = vec!["{\"ok\":1}".to_string(), "x".repeat(300 * 1024)];
    let r = q.send_batch(&bodies).await.unwrap();
    assert!(r[0].is_ok());
    let e = r[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("307200 bytes") && e.contains("limit"), "{e}");
    assert!(
        !r[1].as_ref().unwrap_err().is_retryable(),
        "an oversized message is never sent again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dynamo_state_conformance() {
    let sdk = dynamodb_service().await;
    let table = unique("state");
    DynamoStateStore::create_table(&sdk, &table)
        .await
        .expect("create table");
    DynamoStateStore::create_table(&sdk, &table)
        .await
        .expect("create is idempotent");
    let s = DynamoStateStore::new(&sdk, &table);
    state_conf::lease_is_exclusive(&s, "bkt").await;
    state_conf::run_counters_add_up(&s).await;
    state_conf::runs_complete(&s).await;
    state_conf::claim_done_records_under_the_lease(&s, "bkt").await;
    state_conf::run_tally_counts_each_object_once(&s, "bkt").await;
    state_conf::fleet_bandwidth_is_shared(&s).await;
}
