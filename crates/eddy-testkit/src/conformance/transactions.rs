//! Transactions: several sends to several queues, all or none.

use std::time::Duration;

use eddy::{ErrorKind, SendOptions};
use serde_json::json;

use super::{assert_kind, ns, numbered, take, CaseResult, Harness, Outcome};

/// A committed transaction writes every send, in order, and returns their
/// ids. (The queues of one transaction share a hash tag, `{tx}`, which keeps
/// them in one slot of a Redis Cluster; elsewhere it is part of the name.)
pub async fn transaction_commits_all(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (orders, _) = mq.create_queue_pair("{tx}orders").await?;
    let (emails, _) = mq.create_queue_pair("{tx}emails").await?;
    let mut tx = mq.transaction();
    assert!(tx.is_empty());
    tx.send(&orders, &numbered(0))?
        .send(&emails, &numbered(100))?
        .send(&orders, &numbered(1))?;
    tx.send_with(
        &emails,
        &numbered(101),
        &SendOptions::new().message_id("tx-mail"),
    )?;
    assert_eq!(tx.len(), 4);
    let out = tx.commit().await?;
    assert_eq!(out.len(), 4);
    assert!(out.iter().all(Option::is_some));
    let o = orders.receive(&take(10, "c")).await?;
    let e = emails.receive(&take(10, "c")).await?;
    assert_eq!(ns(&o), vec![0, 1]);
    assert_eq!(ns(&e), vec![100, 101]);
    assert_eq!(Some(o[0].id), out[0]);
    assert_eq!(Some(e[0].id), out[1]);
    assert_eq!(Some(o[1].id), out[2]);
    assert_eq!(Some(e[1].id), out[3]);
    assert_eq!(e[1].message_id, "tx-mail");
    Ok(Outcome::Passed)
}

/// A transaction that includes a send to a queue that no longer exists fails
/// with `QueueNotFound` and writes nothing to the other queues.
pub async fn transaction_to_missing_queue_writes_nothing(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (a, _) = mq.create_queue_pair("{tx}a").await?;
    let (b, _) = mq.create_queue_pair("{tx}b").await?;
    let (gone, _) = mq.create_queue_pair("{tx}gone").await?;
    mq.delete_queue("{tx}gone", false).await?;
    let mut tx = mq.transaction();
    tx.send(&a, &numbered(0))?
        .send(&b, &numbered(1))?
        .send(&gone, &numbered(2))?
        .send(&a, &numbered(3))?;
    assert_kind(tx.commit().await, ErrorKind::QueueNotFound);
    assert_eq!(a.info().await?.length, 0);
    assert_eq!(b.info().await?.length, 0);
    assert!(a.receive(&take(10, "c")).await?.is_empty());
    // The missing queue was not brought back either.
    assert_kind(mq.queue("{tx}gone").await, ErrorKind::QueueNotFound);
    // Missing first, with a delayed send: same.
    let mut tx = mq.transaction();
    tx.send(&gone, &numbered(4))?;
    tx.send_with(
        &a,
        &numbered(5),
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )?;
    assert_kind(tx.commit().await, ErrorKind::QueueNotFound);
    assert_eq!(a.info().await?.delayed, 0);
    Ok(Outcome::Passed)
}

/// A bad payload fails at `tx.send`, before anything is written, and is not
/// added; the rest can still be committed.
pub async fn transaction_rejects_bad_payload_at_send(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (a, _) = mq.create_queue_pair("a").await?;
    let mut tx = mq.transaction();
    tx.send(&a, &numbered(0))?;
    assert_kind(tx.send(&a, &json!([1])).map(|_| ()), ErrorKind::NotAnObject);
    assert_kind(
        tx.send(&a, &json!({"_metadata": 1})).map(|_| ()),
        ErrorKind::InvalidArgument,
    );
    assert_kind(
        tx.send_with(&a, &numbered(1), &SendOptions::new().ttl(Duration::ZERO))
            .map(|_| ()),
        ErrorKind::InvalidArgument,
    );
    assert_eq!(tx.len(), 1);
    assert_eq!(
        a.info().await?.length,
        0,
        "nothing is written before commit"
    );
    assert_eq!(tx.commit().await?.len(), 1);
    assert_eq!(ns(&a.receive(&take(10, "c")).await?), vec![0]);
    Ok(Outcome::Passed)
}

/// An empty transaction commits without writing.
pub async fn empty_transaction_commits(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (a, _) = mq.create_queue_pair("a").await?;
    let tx = mq.transaction();
    assert!(tx.is_empty());
    assert!(tx.commit().await?.is_empty());
    assert_eq!(a.info().await?.length, 0);
    Ok(Outcome::Passed)
}

/// Delayed sends in a transaction return `None` and wait in the delayed
/// set; TTL and message id options are kept.
pub async fn transaction_with_delay_and_options(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (a, dlq) = mq.create_queue_pair("a").await?;
    let mut tx = mq.transaction();
    tx.send_with(
        &a,
        &numbered(0),
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )?;
    tx.send_with(
        &a,
        &numbered(1),
        &SendOptions::new()
            .ttl(Duration::from_secs(3600))
            .message_id("t"),
    )?;
    tx.send(&dlq, &numbered(2))?;
    let out = tx.commit().await?;
    assert_eq!(out.len(), 3);
    assert!(out[0].is_none());
    assert!(out[1].is_some() && out[2].is_some());
    let info = a.info().await?;
    assert_eq!((info.length, info.delayed), (1, 1));
    let got = a.receive(&take(10, "c")).await?;
    assert_eq!(ns(&got), vec![1]);
    assert_eq!(got[0].message_id, "t");
    assert_eq!(got[0].ttl, Some(3600));
    assert_eq!(ns(&dlq.peek(10).await?), vec![2]);
    Ok(Outcome::Passed)
}

/// On a Redis Cluster, a transaction over queues in different hash slots is
/// refused with `CrossSlot` before anything is written, and the error says
/// how to co-locate them.
pub async fn transaction_across_slots_is_refused_on_a_cluster(h: &Harness) -> CaseResult {
    if !h.capabilities().clustered {
        return Ok(Outcome::NotApplicable(
            "one server holds every key: any transaction is one step",
        ));
    }
    let mq = h.eddy();
    // `P{a}` and `P{b}` hash to slots 15495 and 3300.
    let (a, _) = mq.create_queue_pair("a").await?;
    let (b, _) = mq.create_queue_pair("b").await?;
    let mut tx = mq.transaction();
    tx.send(&a, &numbered(0))?.send(&b, &numbered(1))?;
    let err = tx.commit().await.expect_err("different slots");
    assert_eq!(err.kind(), ErrorKind::CrossSlot, "{err}");
    assert!(err.to_string().contains("hash tag"), "{err}");
    assert_eq!(a.info().await?.length, 0);
    assert_eq!(b.info().await?.length, 0);
    // One queue's own DLQ is in its slot: that transaction commits.
    let dlq_a = mq.dead_letter_queue("a").await?;
    let mut tx = mq.transaction();
    tx.send(&a, &numbered(2))?.send(&dlq_a, &numbered(3))?;
    assert_eq!(tx.commit().await?.len(), 2);
    Ok(Outcome::Passed)
}
