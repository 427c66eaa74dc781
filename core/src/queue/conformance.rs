//! The conformance suite every [`JobQueue`] backend passes (behind `testing`).

use std::time::Duration;

use super::{JobQueue, QueueError};

const LEASE: Duration = Duration::from_millis(300);

/// Send, receive, ack; an unacknowledged message comes back after its lease;
/// a stale receipt cannot ack (when `strict_receipts`: SQS accepts stale
/// receipts by design); nack delays; extend keeps it hidden.
pub async fn queue_redelivery(q: &dyn JobQueue, strict_receipts: bool) {
    let bodies: Vec<String> = (0..3).map(|i| format!("{{\"n\":{i}}}")).collect();
    let r = q.send_batch(&bodies).await.expect("send");
    assert!(r.iter().all(|r| r.is_ok()));
    let got = q.receive(10, LEASE, Duration::from_secs(2)).await.expect("receive");
    assert_eq!(got.len(), 3, "all three delivered");
    assert!(
        q.receive(10, LEASE, Duration::ZERO).await.unwrap().is_empty(),
        "hidden while leased"
    );
    q.ack(&got[0].receipt).await.expect("ack");
    q.nack(&got[1].receipt, Duration::from_secs(30), "boom")
        .await
        .expect("nack");
    q.extend(&got[2].receipt, Duration::from_secs(30))
        .await
        .expect("extend");
    tokio::time::sleep(LEASE * 2).await;
    assert!(
        q.receive(10, LEASE, Duration::ZERO).await.unwrap().is_empty(),
        "nacked with delay and extended stay hidden"
    );
    q.nack(&got[2].receipt, Duration::ZERO, "give back")
        .await
        .expect("nack now");
    let again = q.receive(10, LEASE, Duration::from_secs(2)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, got[2].body);
    assert_eq!(again[0].receives, 2);
    if strict_receipts {
        match q.ack(&got[2].receipt).await {
            Err(QueueError::LeaseLost { .. }) => {}
            other => panic!("a stale receipt must not ack: {other:?}"),
        }
    }
    // Lease lapses: delivered again.
    tokio::time::sleep(LEASE * 2).await;
    let third = q.receive(10, LEASE, Duration::from_secs(2)).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].receives, 3);
    q.ack(&third[0].receipt).await.unwrap();
    let s = q.stats().await.unwrap();
    assert_eq!(s.ready, 0);
    assert_eq!(s.in_flight, 1, "the delayed message is still in flight");
}

/// After `max_receives` deliveries without ack a message is parked as dead.
pub async fn queue_dead_letter(q: &dyn JobQueue, max_receives: u32) {
    q.send_batch(&["poison".to_string()]).await.unwrap();
    for i in 1..=max_receives {
        let got = q.receive(1, LEASE, Duration::from_secs(2)).await.unwrap();
        assert_eq!(got.len(), 1, "delivery {i}");
        q.nack(&got[0].receipt, Duration::ZERO, "still failing").await.unwrap();
    }
    assert!(
        q.receive(1, LEASE, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty(),
        "dead messages are not delivered"
    );
    assert_eq!(q.stats().await.unwrap().dead, 1);
}

/// Batched sends and acks: every entry of a batch larger than one request
/// arrives once, and acks of a batch remove them all.
pub async fn queue_batches(q: &dyn JobQueue) {
    use super::JobQueueExt;
    let bodies: Vec<String> = (0..37).map(|i| format!("{{\"batch\":{i}}}")).collect();
    q.send_all(bodies.clone(), 3).await.expect("send_all");
    let mut got = Vec::new();
    for _ in 0..40 {
        let m = q
            .receive(10, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .unwrap();
        got.extend(m);
        if got.len() >= bodies.len() {
            break;
        }
    }
    let mut seen: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
    seen.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(seen, want, "every message once");
    let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
    let acks = q.ack_many(&receipts).await;
    assert_eq!(acks.len(), receipts.len());
    assert!(acks.iter().all(|a| a.is_ok()), "{acks:?}");
    assert!(q.receive(10, LEASE, Duration::ZERO).await.unwrap().is_empty());
}

/// A requeued message comes back at once with its receive count at one, so
/// deliveries spent by dead workers never park it; a message dead-lettered by
/// the worker is not delivered, is counted dead, and comes back with
/// `redrive_dead`.
pub async fn queue_requeue_and_redrive(q: &dyn JobQueue, max_receives: u32) {
    q.send_batch(&["churned".to_string()]).await.unwrap();
    let mut id = None;
    for round in 0..2 {
        for i in 1..max_receives {
            let got = q
                .receive(1, Duration::from_millis(1), Duration::from_secs(2))
                .await
                .unwrap();
            assert_eq!(got.len(), 1, "round {round}, delivery {i}");
            assert_eq!(got[0].receives, i, "round {round}");
            let first = id.get_or_insert_with(|| got[0].id.clone());
            assert_eq!(&got[0].id, first, "a requeued message keeps its id");
            // The worker "dies": the lease of 1 ms lapses.
            if i + 1 == max_receives {
                q.requeue(&got[0]).await.expect("requeue");
            }
        }
    }
    let got = q.receive(1, LEASE, Duration::from_secs(2)).await.unwrap();
    assert_eq!((got.len(), got[0].receives, got[0].body.as_str()), (1, 1, "churned"));
    q.dead_letter(&got[0], "given up after 5 failed attempts")
        .await
        .unwrap();
    assert!(
        q.receive(1, LEASE, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "a dead-lettered message is not delivered"
    );
    let s = q.stats().await.unwrap();
    assert_eq!((s.live(), s.dead), (0, 1));
    assert_eq!(q.redrive_dead().await.unwrap(), 1);
    let s = q.stats().await.unwrap();
    assert_eq!((s.live(), s.dead), (1, 0));
    let got = q.receive(1, LEASE, Duration::from_secs(2)).await.unwrap();
    assert_eq!((got.len(), got[0].body.as_str()), (1, "churned"));
    q.ack(&got[0].receipt).await.unwrap();
    assert_eq!(q.redrive_dead().await.unwrap(), 0);
}
