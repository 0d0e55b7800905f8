//! Retries due later than the visibility timeout: a 10-minute retry with a
//! 30-second visibility timeout (on an engine whose clock follows
//! `tokio::time`, paused and advanced; elsewhere, a short real timeout and
//! a delay a few times longer). The message waits, pending with its
//! delivery count, behind a marker in the queue's delayed set, and comes
//! back when due, counted exactly towards `max_deliveries`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::queue::consumer::{self, Backoff, ConsumerOptions};
use eddy::{Fail, Queue};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ids, ns, send_numbered, take, CaseResult, Harness, Outcome};

/// The visibility timeout and a retry delay well past it, on this engine's
/// clock.
fn timeout_and_delay(h: &Harness) -> (Duration, Duration) {
    if h.pause_time() {
        (Duration::from_secs(30), Duration::from_secs(600))
    } else {
        (Duration::from_millis(500), Duration::from_millis(3000))
    }
}

/// A message released for longer than the visibility timeout is not
/// claimable until due, even when nobody touches the queue for several
/// timeouts meanwhile; then it comes back with its delivery count plus one,
/// as its own entry. Meanwhile it counts as pending and as delayed. A
/// short release beside it is unaffected.
pub async fn release_past_the_visibility_timeout_waits_until_due(h: &Harness) -> CaseResult {
    let (vt, after) = timeout_and_delay(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("parked").await?;
    send_numbered(&q, 0..3).await?;
    let got = q.receive(&take(3, "worker")).await?;
    assert_eq!(q.release("intruder", &[got[0].id], after, vt).await?, 0);
    assert_eq!(q.release("worker", &[got[0].id], after, vt).await?, 1);
    let parked_at = Instant::now();
    assert_eq!(q.release("worker", &[got[2].id], vt / 4, vt).await?, 1);
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed), (3, 1));

    // Three timeouts without a read, a sweep or a claim: n = 1 (never
    // released) and n = 2 (released briefly) are stale, n = 0 is not.
    h.advance(vt * 3).await;
    let stale = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ns(&stale), vec![1, 2]);
    assert_eq!(q.ack(&ids(&stale)).await?, 2);
    // Reads and claims along the way do not take it either (up to half a
    // timeout before it is due: real clocks need the margin).
    while parked_at.elapsed() + vt + vt / 2 < after {
        h.advance(vt).await;
        assert!(q.receive(&take(10, "reader")).await?.is_empty());
        assert!(
            q.claim_stale("rescuer", vt, 10).await?.is_empty(),
            "claimed {:?} before its retry was due",
            parked_at.elapsed()
        );
    }
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed), (1, 1));

    h.advance(after.saturating_sub(parked_at.elapsed()) + vt / 4)
        .await;
    let retried = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ids(&retried), vec![got[0].id], "the same entry, not a copy");
    assert_eq!(retried[0].delivery_count, 2);
    assert_eq!(retried[0].data, got[0].data);
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed), (1, 0));
    assert_eq!(q.ack(&ids(&retried)).await?, 1);
    Ok(Outcome::Passed)
}

/// A parked retry that is settled or taken over before it is due is left
/// alone: its marker goes, and it is never handed out again by it.
pub async fn a_parked_retry_settled_or_taken_over_is_left_alone(h: &Harness) -> CaseResult {
    let (vt, after) = timeout_and_delay(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("unparked").await?;
    send_numbered(&q, 0..2).await?;
    let got = q.receive(&take(2, "worker")).await?;
    assert_eq!(q.release("worker", &ids(&got), after, vt).await?, 2);
    assert_eq!(q.info().await?.delayed, 2);
    // n = 0 is acknowledged after all; n = 1 is taken by a claimer that
    // waits for no idle time at all (nothing can hold a message back from
    // it), which raises its delivery count.
    assert_eq!(q.ack(&[got[0].id]).await?, 1);
    let taken = q.claim_stale("impatient", Duration::ZERO, 10).await?;
    assert_eq!(ns(&taken), vec![1]);
    assert_eq!(taken[0].delivery_count, 2);

    // Past the markers' first renewal, a read tends them: both are stale.
    h.advance(vt).await;
    assert!(q.receive(&take(10, "worker")).await?.is_empty());
    assert_eq!(q.info().await?.delayed, 0);
    // The taken one is the impatient claimer's, on its own lease: stale
    // after a timeout, and its delivery count goes on from 2.
    h.advance(vt + vt / 4).await;
    let again = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ns(&again), vec![1]);
    assert_eq!(again[0].delivery_count, 3);
    assert_eq!(q.ack(&ids(&again)).await?, 1);
    h.advance(after).await;
    assert!(q.claim_stale("rescuer", vt, 10).await?.is_empty());
    assert!(q.receive(&take(10, "worker")).await?.is_empty());
    Ok(Outcome::Passed)
}

/// Through the consumer loop: a handler that asks for a retry after ten
/// visibility timeouts gets it then, not before, with the delivery count
/// going on; after `max_deliveries` the message goes to the DLQ with the
/// handler's error, and the counts the handler saw are exactly 1, 2, 3.
pub async fn consumer_retry_after_past_the_visibility_timeout(h: &Harness) -> CaseResult {
    let (vt, after) = timeout_and_delay(h);
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("retry-later").await?;
    send_numbered(&q, 0..2).await?;
    // n = 0 always asks for a late retry; n = 1 asks twice, then succeeds.
    let seen: Arc<Mutex<Vec<(u64, u64, Instant)>>> = Arc::default();
    let settled = Arc::new(Notify::new());
    let opts = ConsumerOptions::new()
        .name("worker".into())
        .concurrency(4)
        .max_deliveries(3)
        .visibility_timeout(vt)
        .claim_interval(vt / 10)
        .poll(vt / 10)
        .backoff(Backoff::new(vt / 100, vt / 100));
    let handler = {
        let (seen, settled) = (seen.clone(), settled.clone());
        move |msg: eddy::Message| {
            let (seen, settled) = (seen.clone(), settled.clone());
            async move {
                let n = msg.data["n"].as_u64().unwrap_or(99);
                let count = msg.delivery_count;
                let deliveries = {
                    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                    seen.push((n, count, Instant::now()));
                    seen.len()
                };
                // 3 deliveries of n = 0, 3 of n = 1: then both are settled
                // (n = 0 once the loop has dead-lettered it, just after).
                if deliveries == 6 {
                    settled.notify_one();
                }
                if n == 1 && count == 3 {
                    return Ok(());
                }
                Err(Fail::retry_after(after, format!("not yet ({n}, {count})")))
            }
        }
    };
    let stop = {
        let settled = settled.clone();
        async move {
            // A bound, so that a broken loop fails instead of hanging.
            let _ = tokio::time::timeout(after * 4, settled.notified()).await;
        }
    };
    let started = Instant::now();
    let stats = consumer::run(q.clone(), opts, handler, stop).await?;
    assert!(started.elapsed() < after * 4, "the retries never all came");

    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for n in [0, 1] {
        let mine: Vec<&(u64, u64, Instant)> = seen.iter().filter(|(m, _, _)| *m == n).collect();
        let counts: Vec<u64> = mine.iter().map(|(_, c, _)| *c).collect();
        assert_eq!(counts, vec![1, 2, 3], "n = {n}: {seen:?}");
        for pair in mine.windows(2) {
            let waited = pair[1].2 - pair[0].2;
            assert!(
                waited >= after,
                "n = {n} retried after {waited:?}, asked for {after:?}"
            );
        }
    }
    let dead = wait_for_dead_letter(h, &dlq, vt).await?;
    assert_eq!(ns(&dead), vec![0]);
    let failures = dead[0].failures();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0]
            .reason
            .starts_with("failed 3 deliveries (max_deliveries 3); last error: not yet (0, 3)"),
        "{}",
        failures[0].reason
    );
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.delayed), (1, 0, 0));
    assert_eq!(
        stats
            .dead_lettered
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(stats.retried.load(std::sync::atomic::Ordering::Relaxed), 4);
    Ok(Outcome::Passed)
}

/// The DLQ's messages, once there are some (the loop dead-letters just
/// after the last handler returns).
async fn wait_for_dead_letter(
    h: &Harness,
    dlq: &Queue,
    vt: Duration,
) -> eddy::Result<Vec<eddy::Message>> {
    for _ in 0..50 {
        let dead = dlq.peek(10).await?;
        if !dead.is_empty() {
            return Ok(dead);
        }
        h.advance(vt / 10).await;
    }
    dlq.peek(10).await
}
