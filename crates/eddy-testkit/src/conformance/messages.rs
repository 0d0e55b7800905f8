//! Acknowledge, delete, peek, purge and info.

use std::time::Duration;

use eddy::{EntryId, ErrorKind, Receive, SendOptions};
use serde_json::json;

use super::{assert_kind, ids, ns, numbered, send_numbered, take, CaseResult, Harness, Outcome};

/// `ack` returns how many messages were pending and clears them from the
/// pending list (and the consumer's count); a second ack counts 0.
/// Acknowledged entries stay in the stream as history.
pub async fn ack_returns_count_and_clears_pending(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ack").await?;
    send_numbered(&q, 0..4).await?;
    let got = q.receive(&take(3, "c")).await?;
    assert_eq!(q.info().await?.pending, 3);
    assert_eq!(q.ack(&ids(&got[..2])).await?, 2);
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag, info.length), (1, 1, 4));
    assert_eq!(info.consumers[0].pending, 1);
    assert_eq!(q.ack(&ids(&got[..2])).await?, 0, "already acknowledged");
    // Duplicates in one call count once.
    assert_eq!(q.ack(&[got[2].id, got[2].id]).await?, 1);
    let info = q.info().await?;
    assert_eq!(info.pending, 0);
    assert_eq!(info.oldest_pending_idle_ms, None);
    // Acknowledged messages are not delivered again.
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![3]);
    Ok(Outcome::Passed)
}

/// Acknowledging well-formed ids that are unknown, or known but not
/// delivered, counts 0 and changes nothing; an empty list counts 0.
pub async fn ack_of_unknown_ids_counts_zero(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ack0").await?;
    let sent = send_numbered(&q, 0..2).await?;
    assert_eq!(q.ack(&[]).await?, 0);
    assert_eq!(q.ack(&[EntryId::new(1, 0), EntryId::MAX]).await?, 0);
    assert_eq!(q.ack(&sent).await?, 0, "never delivered, so never pending");
    let info = q.info().await?;
    assert_eq!((info.length, info.lag, info.pending), (2, 2, 0));
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![0, 1]);
    Ok(Outcome::Passed)
}

/// A DLQ's messages are deleted or requeued, not acknowledged: `ack` on a
/// DLQ fails with `InvalidArgument` and changes nothing.
pub async fn ack_on_dlq_is_an_error(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("ackdlq").await?;
    send_numbered(&q, 0..1).await?;
    let got = q.receive(&take(1, "c")).await?;
    q.dead_letter(&ids(&got), "x").await?;
    let dead = dlq.receive(&take(1, "c")).await?;
    assert_kind(dlq.ack(&ids(&dead)).await, ErrorKind::InvalidArgument);
    assert_kind(dlq.ack(&[]).await, ErrorKind::InvalidArgument);
    let info = dlq.info().await?;
    assert_eq!((info.length, info.pending), (1, 1));
    Ok(Outcome::Passed)
}

/// `delete` removes messages (pending or not) and returns how many
/// existed; deleted messages are never delivered.
pub async fn delete_removes_messages(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("del").await?;
    let sent = send_numbered(&q, 0..5).await?;
    let got = q.receive(&take(2, "c")).await?; // 0, 1 pending
    assert_eq!(q.delete(&[sent[0], sent[3]]).await?, 2);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (3, 1, 2));
    assert_eq!(info.consumers[0].pending, 1);
    assert_eq!(q.delete(&[sent[0], sent[3]]).await?, 0, "already deleted");
    assert_eq!(q.delete(&[EntryId::new(1, 0)]).await?, 0);
    assert_eq!(q.delete(&[]).await?, 0);
    assert_eq!(
        q.ack(&[got[0].id]).await?,
        0,
        "a deleted message is no longer pending"
    );
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![2, 4]);
    assert_eq!(ns(&q.peek(10).await?), vec![1, 2, 4]);
    // Delete works on a DLQ too.
    q.dead_letter(&[sent[1]], "x").await?;
    let dead = dlq.peek(10).await?;
    assert_eq!(dlq.delete(&ids(&dead)).await?, 1);
    assert_eq!(dlq.info().await?.length, 0);
    Ok(Outcome::Passed)
}

/// `info().lag` counts the messages still to be delivered, also after
/// undelivered messages were deleted or dead-lettered.
pub async fn lag_ignores_deleted_messages(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("lag").await?;
    let sent = send_numbered(&q, 0..3).await?;
    assert_eq!(ns(&q.receive(&take(1, "c")).await?), vec![0]);
    assert_eq!(q.delete(&sent[1..2]).await?, 1, "deleted before delivery");
    assert_eq!(q.info().await?.lag, 1, "only n = 2 is left to deliver");
    assert_eq!(ns(&q.receive(&take(1, "c")).await?), vec![2]);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending), (2, 2));
    assert_eq!(info.lag, 0, "everything left was delivered");

    // Sent and dead-lettered before any delivery: nothing to deliver either.
    let more = send_numbered(&q, 3..5).await?;
    assert_eq!(q.dead_letter(&more, "never delivered").await?, 2);
    let info = q.info().await?;
    assert_eq!((info.length, info.lag), (2, 0));
    Ok(Outcome::Passed)
}

/// `peek` shows messages without delivering them: lag, pending and
/// consumers stay as they were; delivery count 0. Delivered but
/// unacknowledged messages are still shown.
pub async fn peek_does_not_deliver(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("peek").await?;
    assert!(q.peek(10).await?.is_empty());
    let sent = send_numbered(&q, 0..5).await?;
    let peeked = q.peek(3).await?;
    assert_eq!(ns(&peeked), vec![0, 1, 2]);
    assert_eq!(ids(&peeked), sent[..3].to_vec());
    assert!(peeked.iter().all(|m| m.delivery_count == 0));
    let info = q.info().await?;
    assert_eq!((info.lag, info.pending), (5, 0));
    assert!(info.consumers.is_empty());

    let got = q.receive(&take(2, "c")).await?;
    let peeked_after = q.peek(10).await?;
    assert_eq!(ns(&peeked_after), vec![0, 1, 2, 3, 4]);
    assert!(peeked_after.iter().all(|m| m.delivery_count == 0));
    assert_eq!(peeked_after[0].data, got[0].data);
    assert_eq!(peeked_after[0].message_id, got[0].message_id);
    assert_eq!(peeked_after[0].timestamp, got[0].timestamp);
    assert_eq!(q.info().await?.lag, 3);
    assert_kind(q.peek(0).await, ErrorKind::InvalidArgument);
    Ok(Outcome::Passed)
}

/// `peek_from` starts at the given id (inclusive).
pub async fn peek_from_starts_at_id(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("peekfrom").await?;
    let sent = send_numbered(&q, 0..5).await?;
    assert_eq!(ns(&q.peek_from(sent[2], 10).await?), vec![2, 3, 4]);
    assert_eq!(ns(&q.peek_from(sent[2].next(), 1).await?), vec![3]);
    assert_eq!(ns(&q.peek_from(sent[4], 10).await?), vec![4]);
    assert!(q.peek_from(sent[4].next(), 10).await?.is_empty());
    assert!(q.peek_from(EntryId::MAX, 10).await?.is_empty());
    assert_kind(q.peek_from(sent[0], 0).await, ErrorKind::InvalidArgument);
    Ok(Outcome::Passed)
}

/// `peek` works on a DLQ and shows the failure history.
pub async fn peek_on_dlq(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("peekdlq").await?;
    let sent = send_numbered(&q, 0..3).await?;
    q.dead_letter(&sent[1..], "r").await?;
    let dead = dlq.peek(10).await?;
    assert_eq!(ns(&dead), vec![1, 2]);
    assert!(dead
        .iter()
        .all(|m| m.delivery_count == 0 && m.failures().len() == 1));
    let info = dlq.info().await?;
    assert_eq!((info.length, info.lag, info.pending), (2, 2, 0));
    assert!(info.consumers.is_empty());
    Ok(Outcome::Passed)
}

/// `purge` removes every message, pending and delayed ones too, returns how
/// many stream entries it removed, and leaves the queue usable.
pub async fn purge_removes_everything_and_queue_stays_usable(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("purge").await?;
    send_numbered(&q, 0..5).await?;
    let got = q.receive(&take(2, "c")).await?;
    q.send_with(
        &numbered(99),
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )
    .await?;
    q.dead_letter(&[got[1].id], "x").await?;
    assert_eq!(q.info().await?.delayed, 1);

    assert_eq!(q.purge().await?, 4);
    let info = q.info().await?;
    assert_eq!(
        (info.length, info.pending, info.lag, info.delayed),
        (0, 0, 0, 0)
    );
    assert!(info.consumers.iter().all(|c| c.pending == 0));
    assert_eq!(info.oldest_pending_idle_ms, None);
    assert!(q.peek(10).await?.is_empty());
    assert!(q.receive(&take(10, "c")).await?.is_empty());
    assert_eq!(q.ack(&[got[0].id]).await?, 0);
    // The DLQ is a queue of its own: untouched.
    assert_eq!(dlq.info().await?.length, 1);

    // Still usable: sends are delivered from the start again.
    send_numbered(&q, 10..12).await?;
    let again = q.receive(&take(10, "c")).await?;
    assert_eq!(ns(&again), vec![10, 11]);
    assert_eq!(q.ack(&ids(&again)).await?, 2);
    assert!(mq.queue("purge").await.is_ok());
    assert_eq!(dlq.purge().await?, 1);
    assert_eq!(dlq.info().await?.length, 0);
    Ok(Outcome::Passed)
}

/// Purging an empty queue removes nothing.
pub async fn purge_of_empty_queue_returns_zero(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("purge0").await?;
    assert_eq!(q.purge().await?, 0);
    assert_eq!(dlq.purge().await?, 0);
    assert_eq!(q.purge().await?, 0);
    send_numbered(&q, 0..1).await?;
    assert_eq!(ns(&q.receive(&take(1, "c")).await?), vec![0]);
    Ok(Outcome::Passed)
}

/// `info` reports length, pending, lag, consumers with pending and idle,
/// the oldest pending message's idle time, delayed messages and the
/// creation time.
pub async fn info_reports_state(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("info").await?;
    send_numbered(&q, 0..6).await?;
    q.send_with(
        &numbered(6),
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )
    .await?;
    let info = q.info().await?;
    assert_eq!(
        (info.length, info.pending, info.lag, info.delayed),
        (6, 0, 6, 1)
    );
    assert_eq!(info.oldest_pending_idle_ms, None);

    let a = q.receive(&take(2, "a")).await?;
    q.receive(&take(1, "b")).await?;
    q.ack(&ids(&a[..1])).await?;
    let info = q.info().await?;
    assert_eq!(
        (info.length, info.pending, info.lag, info.delayed),
        (6, 2, 3, 1)
    );
    let consumers: Vec<(String, u64)> = info
        .consumers
        .iter()
        .map(|c| (c.name.clone(), c.pending))
        .collect();
    assert_eq!(consumers, [("a".to_owned(), 1), ("b".to_owned(), 1)]);
    let oldest = info
        .oldest_pending_idle_ms
        .expect("two messages are pending");
    assert!(oldest < 60_000, "{oldest}");
    assert!(info.consumers.iter().all(|c| c.idle_ms < 60_000));
    assert!(info.created_at.is_some());
    Ok(Outcome::Passed)
}

/// Idle times grow while nothing happens, and reading resets a consumer's.
pub async fn info_idle_times_grow(h: &Harness) -> CaseResult {
    let virtual_time = h.pause_time();
    let step = if virtual_time {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(250)
    };
    let step_ms = step.as_millis() as u64;
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("idle").await?;
    send_numbered(&q, 0..2).await?;
    q.receive(&take(1, "slow")).await?;
    h.advance(step).await;
    q.receive(&take(1, "fast")).await?;
    let info = q.info().await?;
    let slow = info
        .consumers
        .iter()
        .find(|c| c.name == "slow")
        .expect("slow consumer");
    let fast = info
        .consumers
        .iter()
        .find(|c| c.name == "fast")
        .expect("fast consumer");
    // Allow a little slack for clocks with coarse resolution.
    assert!(
        slow.idle_ms + 20 >= step_ms,
        "slow idle {} < {step_ms}",
        slow.idle_ms
    );
    assert!(
        fast.idle_ms < slow.idle_ms,
        "fast {} vs slow {}",
        fast.idle_ms,
        slow.idle_ms
    );
    let oldest = info.oldest_pending_idle_ms.expect("pending");
    assert!(
        oldest + 20 >= step_ms,
        "oldest pending idle {oldest} < {step_ms}"
    );
    Ok(Outcome::Passed)
}

/// `info` reports the age of the oldest pending message, counted from its
/// send (a reclaim does not reset it), beside its idle time.
pub async fn info_reports_the_oldest_pending_age(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("aging").await?;
    q.send(&json!({"n": 1})).await?;
    assert_eq!(q.info().await?.oldest_pending_age_ms, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = q.receive(&Receive::new()).await?;
    // A reclaim resets the idle time but not the age.
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.claim_stale("other", Duration::ZERO, 1).await?;
    let info = q.info().await?;
    let age = info.oldest_pending_age_ms.unwrap_or(0);
    let idle = info.oldest_pending_idle_ms.unwrap_or(u64::MAX);
    assert!(age >= 240, "age {age} ms counts from the send");
    assert!(idle < 200, "idle {idle} ms counts from the last delivery");
    q.ack(&[got[0].id]).await?;
    assert_eq!(q.info().await?.oldest_pending_age_ms, None);
    Ok(Outcome::Passed)
}
