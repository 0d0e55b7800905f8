//! Visibility timeouts: reclaiming messages whose consumer went quiet,
//! extending a lease, handing a message back for a later retry.

use std::time::Duration;

use bytes::Bytes;
use eddy::engine::Append;
use eddy::{EntryId, ErrorKind, SendOptions};

use super::{assert_kind, ids, ns, send_numbered, take, CaseResult, Harness, Outcome};

/// The visibility timeout the cases use, on this engine's clock.
fn visibility(h: &Harness) -> Duration {
    if h.pause_time() {
        Duration::from_secs(10)
    } else {
        Duration::from_millis(1000)
    }
}

/// Messages pending longer than the visibility timeout are taken over by
/// another consumer, each delivery raising the delivery count.
pub async fn claim_stale_takes_over_with_delivery_counts(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("claim").await?;
    send_numbered(&q, 0..3).await?;
    let first = q.receive(&take(10, "crashed")).await?;
    assert!(
        q.claim_stale("rescuer", vt, 10).await?.is_empty(),
        "nothing is stale yet"
    );

    h.advance(vt + vt / 4).await;
    let second = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ns(&second), vec![0, 1, 2]);
    assert_eq!(ids(&second), ids(&first), "the same entries, not copies");
    assert!(second.iter().all(|m| m.delivery_count == 2), "{second:?}");
    assert_eq!(second[0].data, first[0].data);
    assert_eq!(second[0].message_id, first[0].message_id);
    let info = q.info().await?;
    let owners: Vec<(String, u64)> = info
        .consumers
        .iter()
        .map(|c| (c.name.clone(), c.pending))
        .collect();
    assert_eq!(
        owners,
        [("crashed".to_owned(), 0), ("rescuer".to_owned(), 3)]
    );
    assert_eq!((info.pending, info.lag), (3, 0));
    // Just claimed: not stale again until another timeout passes.
    assert!(q.claim_stale("third", vt, 10).await?.is_empty());
    h.advance(vt + vt / 4).await;
    let third = q.claim_stale("third", vt, 10).await?;
    assert!(third.iter().all(|m| m.delivery_count == 3), "{third:?}");
    // Any consumer's ack settles it; nothing is left to claim or receive.
    assert_eq!(q.ack(&ids(&third)).await?, 3);
    h.advance(vt + vt / 4).await;
    assert!(q.claim_stale("fourth", vt, 10).await?.is_empty());
    assert!(q.receive(&take(10, "fourth")).await?.is_empty());
    Ok(Outcome::Passed)
}

/// Claiming takes the oldest stale messages first, at most `count`.
pub async fn claim_stale_respects_count_and_order(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("claim2").await?;
    send_numbered(&q, 0..5).await?;
    q.receive(&take(2, "a")).await?;
    q.receive(&take(3, "b")).await?;
    h.advance(vt + vt / 4).await;
    assert_eq!(ns(&q.claim_stale("c", vt, 2).await?), vec![0, 1]);
    assert_eq!(ns(&q.claim_stale("c", vt, 10).await?), vec![2, 3, 4]);
    assert!(q.claim_stale("c", vt, 10).await?.is_empty());
    Ok(Outcome::Passed)
}

/// Acknowledged, deleted and dead-lettered messages are never claimed.
pub async fn claim_stale_skips_settled_messages(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("claim3").await?;
    send_numbered(&q, 0..4).await?;
    let got = q.receive(&take(4, "a")).await?;
    q.ack(&[got[0].id]).await?;
    q.delete(&[got[1].id]).await?;
    q.dead_letter(&[got[2].id], "x").await?;
    h.advance(vt + vt / 4).await;
    let claimed = q.claim_stale("b", vt, 10).await?;
    assert_eq!(ns(&claimed), vec![3]);
    assert_eq!(dlq.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// A stale message whose TTL has passed is removed, never handed over.
pub async fn claim_stale_drops_expired_messages(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("claim4").await?;
    q.send_with(&super::numbered(0), &SendOptions::new().ttl(vt / 2))
        .await?;
    send_numbered(&q, 1..2).await?;
    q.receive(&take(2, "a")).await?;
    h.advance(vt + vt / 4).await;
    assert_eq!(ns(&q.claim_stale("b", vt, 10).await?), vec![1]);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending), (1, 1));
    Ok(Outcome::Passed)
}

/// An undecodable entry found by a claim goes to the DLQ like one found by
/// receive: never handed over, never lost.
pub async fn claim_stale_moves_undecodable_to_dlq(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("claim5").await?;
    h.engine()
        .append(&[Append::new(
            q.keys().clone(),
            Bytes::from_static(b"\xffgarbage"),
        )])
        .await?;
    send_numbered(&q, 0..1).await?;
    // A consumer that reads raw entries (another client) and crashes.
    let raw = h.engine().read(q.keys(), "crashed", 10, None).await?;
    assert_eq!(raw.len(), 2);
    h.advance(vt + vt / 4).await;
    assert_eq!(ns(&q.claim_stale("b", vt, 10).await?), vec![0]);
    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].data.contains_key("_raw_hex"), "{dead:?}");
    assert_eq!(dead[0].failures().len(), 1);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending), (1, 1));
    Ok(Outcome::Passed)
}

/// `claim_stale` with `count = 0` claims nothing (like `receive`, it may
/// refuse with `InvalidArgument`).
pub async fn claim_stale_with_zero_count_claims_nothing(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("claim6").await?;
    send_numbered(&q, 0..2).await?;
    q.receive(&take(2, "a")).await?;
    h.advance(vt + vt / 4).await;
    match q.claim_stale("b", vt, 0).await {
        Ok(got) => assert!(
            got.is_empty(),
            "claimed {} message(s) for count 0",
            got.len()
        ),
        Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}"),
    }
    let info = q.info().await?;
    let owners: Vec<(String, u64)> = info
        .consumers
        .iter()
        .map(|c| (c.name.clone(), c.pending))
        .collect();
    assert!(owners.contains(&("a".to_owned(), 2)), "{owners:?}");
    Ok(Outcome::Passed)
}

/// A claimer can ask for entries redelivered before to come alone
/// (`alone_from`, the consumer loop's guard against a message that kills
/// its process): first in line such an entry is the whole batch, later in
/// line the batch stops before it; the others come in batches.
pub async fn claim_takes_redelivered_entries_alone(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let step = vt * 5 / 8;
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("alone").await?;
    let engine = h.engine().clone();
    send_numbered(&q, 0..4).await?;
    let got = q.receive(&take(4, "crashed")).await?;
    h.advance(step).await;
    q.extend("crashed", &[got[0].id]).await?;
    h.advance(step).await;
    // n = 1, 2, 3 are stale; n = 0's lease was extended. Reclaim n = 1 once.
    let once = engine.claim(q.keys(), "a", vt, 1, 3).await?;
    let counts = |c: &eddy::engine::Claimed| -> Vec<(EntryId, u64)> {
        c.entries.iter().map(|e| (e.id, e.delivery_count)).collect()
    };
    assert_eq!(counts(&once), [(got[1].id, 2)]);

    h.advance(vt + vt / 4).await;
    // In line: n = 0 (count 1), n = 1 (count 2), n = 2 and 3 (count 1).
    let batch = engine.claim(q.keys(), "b", vt, 10, 3).await?;
    assert_eq!(
        counts(&batch),
        [(got[0].id, 2)],
        "the batch stops before the entry redelivered before"
    );
    let alone = engine.claim(q.keys(), "b", vt, 10, 3).await?;
    assert_eq!(counts(&alone), [(got[1].id, 3)], "claimed alone");
    let rest = engine.claim(q.keys(), "b", vt, 10, 3).await?;
    assert_eq!(counts(&rest), [(got[2].id, 2), (got[3].id, 2)]);
    assert!(engine
        .claim(q.keys(), "b", vt, 10, 3)
        .await?
        .entries
        .is_empty());

    // Without the limit, a plain batch.
    h.advance(vt + vt / 4).await;
    let plain = engine.claim(q.keys(), "c", vt, 10, u64::MAX).await?;
    assert_eq!(
        counts(&plain),
        [
            (got[0].id, 3),
            (got[1].id, 4),
            (got[2].id, 3),
            (got[3].id, 3)
        ]
    );
    Ok(Outcome::Passed)
}

/// `extend` keeps a consumer's lease: its message is not stale until a full
/// timeout after the extension. Only the owner can extend.
pub async fn extend_keeps_the_lease(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let step = vt * 5 / 8;
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("extend").await?;
    send_numbered(&q, 0..2).await?;
    let got = q.receive(&take(2, "worker")).await?;
    h.advance(step).await;
    assert_eq!(
        q.extend("worker", &got[..1].iter().map(|m| m.id).collect::<Vec<_>>())
            .await?,
        1
    );
    assert_eq!(
        q.extend("intruder", &ids(&got)).await?,
        0,
        "only the owner extends"
    );
    assert_eq!(q.extend("worker", &[EntryId::new(1, 0)]).await?, 0);
    assert_eq!(q.extend("worker", &[]).await?, 0);
    h.advance(step).await;
    // n = 1 was not extended and is stale; n = 0 was and is not.
    let claimed = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ns(&claimed), vec![1]);
    assert_eq!(claimed[0].delivery_count, 2);
    // Extending keeps the delivery count.
    h.advance(step * 2).await;
    let later = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ns(&later), vec![0, 1]);
    assert_eq!(
        later.iter().map(|m| m.delivery_count).collect::<Vec<_>>(),
        vec![2, 3]
    );
    Ok(Outcome::Passed)
}

/// `release` keeps a message pending with its delivery count but makes it
/// claimable `after` from now: a retry with delay. Only the owner can
/// release. (A delay past the visibility timeout: see [`super::parked`].)
pub async fn release_makes_message_claimable_later(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let after = vt / 4;
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("release").await?;
    send_numbered(&q, 0..3).await?;
    let got = q.receive(&take(3, "worker")).await?;
    assert_eq!(q.release("worker", &[got[0].id], after, vt).await?, 1);
    assert_eq!(q.release("intruder", &[got[1].id], after, vt).await?, 0);
    assert_eq!(q.release("worker", &[got[2].id], vt, vt).await?, 1);
    assert!(
        q.claim_stale("rescuer", vt, 10).await?.is_empty(),
        "not yet"
    );
    assert_eq!(q.info().await?.pending, 3);

    h.advance(after * 2).await;
    let retried = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ns(&retried), vec![0]);
    assert_eq!(retried[0].delivery_count, 2);

    h.advance(vt).await;
    // n = 1 and n = 2 are stale now (n = 2 was released for a whole
    // timeout); n = 0 was claimed a moment later than them.
    let rest = q.claim_stale("rescuer", vt, 10).await?;
    let mut rest_ns = ns(&rest);
    rest_ns.sort_unstable();
    assert!(rest_ns.ends_with(&[1, 2]), "{rest_ns:?}");
    Ok(Outcome::Passed)
}

/// `extend` and `release` with no ids count 0 without touching anything,
/// like `ack(&[])`, even on a queue that was deleted.
pub async fn lease_calls_without_ids_count_zero(h: &Harness) -> CaseResult {
    let vt = visibility(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("nolease").await?;
    assert_eq!(q.extend("c", &[]).await?, 0);
    assert_eq!(q.release("c", &[], vt, vt).await?, 0);
    let sent = send_numbered(&q, 0..1).await?;
    mq.delete_queue("nolease", false).await?;
    assert_eq!(q.ack(&[]).await?, 0);
    assert_eq!(q.extend("c", &[]).await?, 0);
    assert_eq!(q.release("c", &[], vt, vt).await?, 0);
    assert_kind(q.extend("c", &sent).await, ErrorKind::NoGroup);
    assert_kind(q.release("c", &sent, vt, vt).await, ErrorKind::NoGroup);
    Ok(Outcome::Passed)
}
