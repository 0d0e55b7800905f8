//! TTL and delayed delivery. On an engine whose clock follows `tokio::time`
//! time is paused and advanced; on others the cases use short real
//! durations and sleep.

use std::time::Duration;

use eddy::SendOptions;
use tokio::time::Instant;

use super::{ids, ns, numbered, send_numbered, take, CaseResult, Harness, Outcome};

/// A TTL and a wait that is safely past it, on this engine's clock. Real
/// durations leave room for a loaded test machine: a case must not see a
/// message expire between two of its own calls.
pub(super) fn ttl_and_wait(h: &Harness) -> (Duration, Duration) {
    if h.pause_time() {
        (Duration::from_secs(10), Duration::from_secs(11))
    } else {
        (Duration::from_millis(400), Duration::from_millis(900))
    }
}

/// An expired message is never returned by receive; the read removes it.
pub async fn expired_message_is_never_received(h: &Harness) -> CaseResult {
    let (ttl, wait) = ttl_and_wait(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ttl").await?;
    q.send_with(&numbered(0), &SendOptions::new().ttl(ttl))
        .await?;
    q.send(&numbered(1)).await?;
    q.send_with(&numbered(2), &SendOptions::new().ttl(ttl))
        .await?;
    h.advance(wait).await;
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![1]);
    let info = q.info().await?;
    assert_eq!(
        (info.length, info.pending, info.lag),
        (1, 1, 0),
        "expired entries are removed at read time"
    );
    assert_eq!(info.consumers[0].pending, 1);
    assert!(q.receive(&take(10, "c")).await?.is_empty());
    Ok(Outcome::Passed)
}

/// `sweep_expired` removes expired messages from every queue and counts
/// them; unexpired ones stay.
pub async fn sweep_expired_removes_and_counts(h: &Harness) -> CaseResult {
    let (ttl, wait) = ttl_and_wait(h);
    let mq = h.eddy();
    let (a, _) = mq.create_queue_pair("a").await?;
    let (b, _) = mq.create_queue_pair("b").await?;
    for n in 0..3 {
        a.send_with(&numbered(n), &SendOptions::new().ttl(ttl))
            .await?;
    }
    a.send(&numbered(3)).await?;
    a.send_with(
        &numbered(4),
        &SendOptions::new().ttl(Duration::from_secs(3600)),
    )
    .await?;
    b.send_with(&numbered(10), &SendOptions::new().ttl(ttl))
        .await?;
    assert_eq!(mq.sweep_expired().await?, 0, "nothing has expired yet");
    h.advance(wait).await;
    assert_eq!(mq.sweep_expired().await?, 4);
    assert_eq!(mq.sweep_expired().await?, 0);
    assert_eq!(ns(&a.peek(10).await?), vec![3, 4]);
    assert_eq!(b.info().await?.length, 0);
    assert_eq!(a.info().await?.lag, 2);
    // The per-queue sweep counts the same way.
    b.send_with(&numbered(11), &SendOptions::new().ttl(ttl))
        .await?;
    h.advance(wait).await;
    assert_eq!(a.sweep_expired().await?, 0);
    assert_eq!(b.sweep_expired().await?, 1);
    assert_eq!(b.info().await?.length, 0);
    Ok(Outcome::Passed)
}

/// A message read before its TTL passes is delivered, carrying its TTL in
/// whole seconds (rounded up, as LeanMQ stores it).
pub async fn unexpired_message_carries_its_ttl(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ttl2").await?;
    q.send_with(
        &numbered(0),
        &SendOptions::new().ttl(Duration::from_millis(1500)),
    )
    .await?;
    q.send_with(
        &numbered(1),
        &SendOptions::new().ttl(Duration::from_secs(60)),
    )
    .await?;
    let got = q.receive(&take(10, "c")).await?;
    assert_eq!(ns(&got), vec![0, 1]);
    assert_eq!(got[0].ttl, Some(2));
    assert_eq!(got[1].ttl, Some(60));
    Ok(Outcome::Passed)
}

/// A delivered, unacknowledged message whose TTL passes is removed by the
/// sweep, pending entry included.
pub async fn expired_pending_message_is_swept(h: &Harness) -> CaseResult {
    let (ttl, wait) = ttl_and_wait(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ttl3").await?;
    q.send_with(&numbered(0), &SendOptions::new().ttl(ttl))
        .await?;
    let got = q.receive(&take(1, "c")).await?;
    assert_eq!(ns(&got), vec![0]);
    h.advance(wait).await;
    assert_eq!(q.sweep_expired().await?, 1);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending), (0, 0));
    assert_eq!(info.consumers[0].pending, 0);
    assert_eq!(q.ack(&ids(&got)).await?, 0);
    Ok(Outcome::Passed)
}

/// Dead-lettering clears the TTL: a message in the DLQ does not expire, nor
/// after it is requeued.
pub async fn dead_lettered_message_loses_its_ttl(h: &Harness) -> CaseResult {
    let (ttl, wait) = ttl_and_wait(h);
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("ttl4").await?;
    q.send_with(&numbered(0), &SendOptions::new().ttl(ttl))
        .await?;
    let got = q.receive(&take(1, "c")).await?;
    assert!(got[0].ttl.is_some());
    q.dead_letter_messages(&got, "later").await?;
    let dead = dlq.peek(1).await?;
    assert_eq!(dead[0].ttl, None);
    h.advance(wait).await;
    assert_eq!(mq.sweep_expired().await?, 0);
    assert_eq!(dlq.info().await?.length, 1);
    assert_eq!(dlq.requeue_all().await?, 1);
    h.advance(wait).await;
    let back = q.receive(&take(1, "c")).await?;
    assert_eq!(ns(&back), vec![0]);
    assert_eq!(back[0].ttl, None);
    Ok(Outcome::Passed)
}

/// A delayed message is invisible (not received, not peeked, counted in
/// `delayed`) until its time, then delivered like any other.
pub async fn delayed_message_is_invisible_until_due(h: &Harness) -> CaseResult {
    let (delay, wait) = ttl_and_wait(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("delay").await?;
    let id = q
        .send_with(
            &numbered(0),
            &SendOptions::new().delay(delay).message_id("later"),
        )
        .await?;
    assert_eq!(
        id, None,
        "a delayed message gets its id when it becomes visible"
    );
    q.send(&numbered(1)).await?;
    // A zero delay is no delay.
    let now = q
        .send_with(&numbered(2), &SendOptions::new().delay(Duration::ZERO))
        .await?;
    assert!(now.is_some());
    let info = q.info().await?;
    assert_eq!((info.length, info.delayed), (2, 1));
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![1, 2]);
    assert!(q.peek(10).await?.iter().all(|m| m.data["n"] != 0));
    h.advance(wait).await;
    let got = q.receive(&take(10, "c")).await?;
    assert_eq!(ns(&got), vec![0]);
    assert_eq!(got[0].message_id, "later");
    assert_eq!(got[0].delivery_count, 1);
    let info = q.info().await?;
    assert_eq!((info.length, info.delayed, info.pending), (3, 0, 3));
    Ok(Outcome::Passed)
}

/// A blocked reader receives a delayed message when it becomes due,
/// without anyone sending anything else.
pub async fn blocking_receive_wakes_for_delayed_message(h: &Harness) -> CaseResult {
    let (delay, _) = ttl_and_wait(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("delay2").await?;
    q.send_with(&numbered(0), &SendOptions::new().delay(delay))
        .await?;
    let start = Instant::now();
    let got = q.receive(&take(1, "c").block(delay * 20)).await?;
    let took = start.elapsed();
    assert_eq!(ns(&got), vec![0]);
    assert!(
        took + Duration::from_millis(20) >= delay,
        "delivered after {took:?}, before its {delay:?} delay"
    );
    assert!(
        took < delay + Duration::from_secs(3),
        "delivered after {took:?} for a {delay:?} delay"
    );
    Ok(Outcome::Passed)
}

/// `purge` drops delayed messages too: they never appear.
pub async fn purge_removes_delayed_messages(h: &Harness) -> CaseResult {
    let (delay, wait) = ttl_and_wait(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("delay3").await?;
    q.send_with(&numbered(0), &SendOptions::new().delay(delay))
        .await?;
    send_numbered(&q, 1..2).await?;
    assert_eq!(
        q.purge().await?,
        1,
        "one stream entry; the delayed one is not in the stream yet"
    );
    assert_eq!(q.info().await?.delayed, 0);
    h.advance(wait).await;
    assert!(q.receive(&take(10, "c")).await?.is_empty());
    assert_eq!(q.info().await?.length, 0);
    Ok(Outcome::Passed)
}
