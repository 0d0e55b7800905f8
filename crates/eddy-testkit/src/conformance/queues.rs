//! Queue pairs: create, look up, list, delete; names; independence.

use eddy::ErrorKind;
use serde_json::json;

use super::{
    assert_kind, assert_recent, ids, ns, numbered, send_numbered, take, CaseResult, Harness,
    Outcome,
};

/// `create_queue_pair` returns the queue and its DLQ with LeanMQ's key
/// layout and group names.
pub async fn create_queue_pair_returns_queue_and_dlq(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("orders").await?;
    assert_eq!(q.name(), "orders");
    assert!(!q.is_dlq());
    let stream = h.stream_key("orders");
    assert_eq!(q.keys().stream, stream);
    assert_eq!(q.keys().group, "orders-group");
    assert_eq!(dlq.name(), "orders:dlq");
    assert!(dlq.is_dlq());
    assert_eq!(dlq.keys().stream, format!("{stream}:dlq"));
    assert_eq!(dlq.keys().group, "orders-group-dlq");

    let info = q.info().await?;
    assert_eq!(info.name, "orders");
    assert_eq!(info.stream, stream);
    assert!(!info.is_dlq);
    assert_eq!(info.consumer_group, "orders-group");
    assert_eq!(
        (info.length, info.pending, info.lag, info.delayed),
        (0, 0, 0, 0)
    );
    assert!(info.consumers.is_empty());
    assert_eq!(info.oldest_pending_idle_ms, None);
    assert_recent(info.created_at.expect("created_at is set"), 60.0);

    let dinfo = dlq.info().await?;
    assert_eq!(dinfo.name, "orders:dlq");
    assert!(dinfo.is_dlq);
    assert_eq!(dinfo.consumer_group, "orders-group-dlq");
    assert_eq!(dinfo.length, 0);
    assert_recent(dinfo.created_at.expect("DLQ created_at is set"), 60.0);

    // The metadata hashes hold what a LeanMQ client reads.
    let meta = h
        .engine()
        .metadata(&q.keys().meta)
        .await?
        .expect("queue metadata exists");
    let get = |k: &str| meta.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    assert_eq!(get("dlq"), Some(format!("{stream}:dlq")));
    assert_eq!(get("consumer_group"), Some("orders-group".to_owned()));
    let dmeta = h
        .engine()
        .metadata(&dlq.keys().meta)
        .await?
        .expect("DLQ metadata exists");
    let dget = |k: &str| dmeta.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
    assert_eq!(dget("main_queue"), Some(stream.clone()));
    assert_eq!(dget("is_dlq"), Some("true".to_owned()));
    assert_eq!(dget("consumer_group"), Some("orders-group-dlq".to_owned()));
    Ok(Outcome::Passed)
}

/// Creating a pair again changes nothing: messages and `created_at` stay.
pub async fn create_queue_pair_is_idempotent(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("jobs").await?;
    let created = q.info().await?.created_at;
    let dcreated = dlq.info().await?.created_at;
    send_numbered(&q, 0..3).await?;
    let got = q.receive(&take(1, "c1")).await?;
    q.dead_letter(&[got[0].id], "boom").await?;

    h.advance(std::time::Duration::from_millis(20)).await;
    let (q2, dlq2) = mq.create_queue_pair("jobs").await?;
    let info = q2.info().await?;
    assert_eq!(info.created_at, created, "created_at must be kept");
    assert_eq!(dlq2.info().await?.created_at, dcreated);
    assert_eq!((info.length, info.lag, info.pending), (2, 2, 0));
    assert_eq!(dlq2.info().await?.length, 1);
    // The group was not reset: the next delivery continues after n = 0.
    assert_eq!(ns(&q2.receive(&take(10, "c1")).await?), vec![1, 2]);
    assert_eq!(mq.list_queues().await?.len(), 2);
    Ok(Outcome::Passed)
}

/// `queue` and `dead_letter_queue` on names never created fail with
/// `QueueNotFound`; once created they succeed.
pub async fn unknown_queue_is_not_found(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    assert_kind(mq.queue("nope").await, ErrorKind::QueueNotFound);
    assert_kind(mq.dead_letter_queue("nope").await, ErrorKind::QueueNotFound);
    mq.create_queue_pair("nope").await?;
    let q = mq.queue("nope").await?;
    assert_eq!(q.name(), "nope");
    assert!(!q.is_dlq());
    let dlq = mq.dead_letter_queue("nope").await?;
    assert_eq!(dlq.name(), "nope:dlq");
    assert!(dlq.is_dlq());
    // The handles work: a message sent through one is seen by the other.
    q.send(&json!({"x": 1})).await?;
    let (orig, _) = mq.create_queue_pair("nope").await?;
    assert_eq!(orig.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// Invalid names fail with `InvalidName` everywhere and register nothing.
pub async fn invalid_names_are_rejected(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let long = "a".repeat(201);
    let bad = [
        "",
        "has space",
        "tab\t",
        "new\nline",
        "x:dlq",
        "x:metadata",
        "x:expiry",
        "x:delayed",
        "registry",
        "slash/name",
        "{x}",
        "x{}",
        "a{b",
        "a}b",
        "}a{b",
        "a{b}{c}",
        "é",
        long.as_str(),
    ];
    for name in bad {
        assert_kind(mq.create_queue_pair(name).await, ErrorKind::InvalidName);
        assert_kind(mq.queue(name).await, ErrorKind::InvalidName);
        assert_kind(mq.dead_letter_queue(name).await, ErrorKind::InvalidName);
        assert_kind(mq.delete_queue(name, false).await, ErrorKind::InvalidName);
    }
    assert!(mq.list_queues().await?.is_empty());
    // The limits themselves are fine.
    let longest = "b".repeat(200);
    for name in ["a", "A-z_0.9:x", longest.as_str(), "{shop}orders"] {
        mq.create_queue_pair(name).await?;
    }
    assert_eq!(mq.list_queues().await?.len(), 8);
    Ok(Outcome::Passed)
}

/// A prefix nobody used has no queues.
pub async fn list_queues_is_empty_for_a_new_prefix(h: &Harness) -> CaseResult {
    assert!(h.eddy().list_queues().await?.is_empty());
    Ok(Outcome::Passed)
}

/// `list_queues` shows every queue and DLQ, sorted by name, with counts.
pub async fn list_queues_shows_queues_and_dlqs_sorted(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (b, _) = mq.create_queue_pair("b").await?;
    let (a, _) = mq.create_queue_pair("a").await?;
    send_numbered(&a, 0..3).await?;
    send_numbered(&b, 0..1).await?;
    let got = a.receive(&take(2, "w")).await?;
    a.dead_letter(&[got[0].id], "bad").await?;

    let list = mq.list_queues().await?;
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a", "a:dlq", "b", "b:dlq"]);
    let flags: Vec<bool> = list.iter().map(|i| i.is_dlq).collect();
    assert_eq!(flags, [false, true, false, true]);
    let streams: Vec<String> = list.iter().map(|i| i.stream.clone()).collect();
    assert_eq!(
        streams,
        [
            h.stream_key("a"),
            format!("{}:dlq", h.stream_key("a")),
            h.stream_key("b"),
            format!("{}:dlq", h.stream_key("b"))
        ]
    );
    let groups: Vec<&str> = list.iter().map(|i| i.consumer_group.as_str()).collect();
    assert_eq!(groups, ["a-group", "a-group-dlq", "b-group", "b-group-dlq"]);
    let counts: Vec<(u64, u64, u64)> = list.iter().map(|i| (i.length, i.pending, i.lag)).collect();
    assert_eq!(counts, [(2, 1, 1), (1, 0, 1), (1, 0, 1), (0, 0, 0)]);
    assert_eq!(list[0].consumers.len(), 1);
    assert_eq!(list[0].consumers[0].name, "w");
    assert_eq!(list[0].consumers[0].pending, 1);
    assert!(list.iter().all(|i| i.created_at.is_some()));
    Ok(Outcome::Passed)
}

/// `delete_queue` removes the queue, its messages and its DLQ.
pub async fn delete_queue_removes_queue_and_dlq(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("gone").await?;
    let (other, _) = mq.create_queue_pair("stays").await?;
    send_numbered(&q, 0..3).await?;
    send_numbered(&other, 0..2).await?;
    let got = q.receive(&take(1, "c")).await?;
    q.dead_letter(&ids(&got), "x").await?;

    mq.delete_queue("gone", false).await?;
    assert_kind(mq.queue("gone").await, ErrorKind::QueueNotFound);
    assert_kind(mq.dead_letter_queue("gone").await, ErrorKind::QueueNotFound);
    let names: Vec<String> = mq
        .list_queues()
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["stays", "stays:dlq"]);
    assert!(q.peek(10).await?.is_empty());
    assert!(dlq.peek(10).await?.is_empty());
    assert_kind(q.info().await, ErrorKind::QueueNotFound);
    assert_kind(dlq.info().await, ErrorKind::QueueNotFound);
    assert_eq!(other.info().await?.length, 2);

    // Created again, it starts empty.
    let (q, dlq) = mq.create_queue_pair("gone").await?;
    assert_eq!(q.info().await?.length, 0);
    assert_eq!(dlq.info().await?.length, 0);
    assert!(q.receive(&take(10, "c")).await?.is_empty());
    Ok(Outcome::Passed)
}

/// `delete_queue(name, keep_dlq = true)` keeps the DLQ and its messages;
/// they can be requeued once the queue exists again.
pub async fn delete_queue_keep_dlq_keeps_dead_letters(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("k").await?;
    send_numbered(&q, 0..3).await?;
    let got = q.receive(&take(2, "c")).await?;
    q.dead_letter(&ids(&got), "no").await?;

    mq.delete_queue("k", true).await?;
    assert_kind(mq.queue("k").await, ErrorKind::QueueNotFound);
    let dlq = mq.dead_letter_queue("k").await?;
    let names: Vec<String> = mq
        .list_queues()
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["k:dlq"]);
    assert_eq!(dlq.info().await?.length, 2);

    // Requeueing needs the queue: it fails and the messages stay put.
    let dead = dlq.peek(10).await?;
    assert_kind(dlq.requeue(&ids(&dead)).await, ErrorKind::QueueNotFound);
    assert_kind(dlq.requeue_all().await, ErrorKind::QueueNotFound);
    assert_eq!(dlq.info().await?.length, 2);

    let (q, dlq) = mq.create_queue_pair("k").await?;
    assert_eq!(q.info().await?.length, 0);
    assert_eq!(dlq.requeue_all().await?, 2);
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![0, 1]);
    Ok(Outcome::Passed)
}

/// Deleting a queue that does not exist fails with `QueueNotFound`.
pub async fn delete_unknown_queue_is_not_found(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    assert_kind(
        mq.delete_queue("never", false).await,
        ErrorKind::QueueNotFound,
    );
    assert_kind(
        mq.delete_queue("never", true).await,
        ErrorKind::QueueNotFound,
    );
    mq.create_queue_pair("once").await?;
    mq.delete_queue("once", false).await?;
    assert_kind(
        mq.delete_queue("once", false).await,
        ErrorKind::QueueNotFound,
    );
    Ok(Outcome::Passed)
}

/// A handle on a deleted queue: writes fail with `QueueNotFound`, reads of
/// the group fail, range reads and counts see nothing.
pub async fn operations_on_a_deleted_queue(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("d").await?;
    let sent = send_numbered(&q, 0..2).await?;
    mq.delete_queue("d", false).await?;

    assert_kind(q.send(&numbered(9)).await, ErrorKind::QueueNotFound);
    assert_kind(q.send_batch(&[numbered(9)]).await, ErrorKind::QueueNotFound);
    assert_kind(q.info().await, ErrorKind::QueueNotFound);
    let read = q.receive(&take(1, "c")).await;
    assert!(
        matches!(&read, Err(e) if matches!(e.kind(), ErrorKind::NoGroup | ErrorKind::QueueNotFound)),
        "receive on a deleted queue: {read:?}"
    );
    assert!(q.peek(10).await?.is_empty());
    assert_eq!(q.ack(&sent).await?, 0);
    assert_eq!(q.delete(&sent).await?, 0);
    assert_eq!(q.dead_letter(&sent, "x").await?, 0);
    assert_eq!(dlq.requeue(&sent).await?, 0);
    assert_eq!(dlq.requeue_all().await?, 0);
    assert_eq!(q.sweep_expired().await?, 0);
    assert!(mq.list_queues().await?.is_empty());
    assert_kind(mq.queue("d").await, ErrorKind::QueueNotFound);
    Ok(Outcome::Passed)
}

/// Purging through a handle on a deleted queue must not bring the queue's
/// stream or group back (the queue stays deleted; nothing is left behind).
pub async fn purge_of_a_deleted_queue_does_not_resurrect_it(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("p").await?;
    send_numbered(&q, 0..2).await?;
    mq.delete_queue("p", false).await?;
    let purged = q.purge().await;
    assert!(
        matches!(purged, Ok(0))
            || matches!(&purged, Err(e) if e.kind() == ErrorKind::QueueNotFound),
        "purge of a deleted queue: {purged:?}"
    );
    assert_kind(mq.queue("p").await, ErrorKind::QueueNotFound);
    // Nothing may be left under the queue's keys: no stream, no group.
    let left = h.engine().info(q.keys()).await;
    assert!(
        left.is_err(),
        "purge of a deleted queue left its stream behind: {left:?}"
    );
    let read = q.receive(&take(1, "c")).await;
    assert!(
        read.is_err(),
        "receive on a deleted, purged queue: {read:?}"
    );
    Ok(Outcome::Passed)
}

/// Queues under one prefix do not affect each other.
pub async fn queues_are_independent(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (a, adlq) = mq.create_queue_pair("a").await?;
    let (b, bdlq) = mq.create_queue_pair("b").await?;
    send_numbered(&a, 0..3).await?;
    send_numbered(&b, 10..12).await?;
    let got = a.receive(&take(10, "c")).await?;
    assert_eq!(ns(&got), vec![0, 1, 2]);
    a.ack(&ids(&got[..1])).await?;
    a.dead_letter(&ids(&got[1..2]), "x").await?;
    assert_eq!(b.info().await?.lag, 2);
    assert_eq!(bdlq.info().await?.length, 0);
    assert_eq!(adlq.info().await?.length, 1);
    a.purge().await?;
    assert_eq!(ns(&b.receive(&take(10, "c")).await?), vec![10, 11]);
    assert_eq!(b.info().await?.pending, 2);
    assert_eq!(a.info().await?.pending, 0);
    Ok(Outcome::Passed)
}

/// The same queue name under two prefixes names two different queues.
pub async fn prefixes_are_independent(h: &Harness) -> CaseResult {
    let one = h.eddy_with_prefix("one:");
    let two = h.eddy_with_prefix("two:");
    let (q1, _) = one.create_queue_pair("same").await?;
    assert_kind(two.queue("same").await, ErrorKind::QueueNotFound);
    let (q2, _) = two.create_queue_pair("same").await?;
    send_numbered(&q1, 0..2).await?;
    send_numbered(&q2, 5..6).await?;
    assert_eq!(ns(&q2.receive(&take(10, "c")).await?), vec![5]);
    assert_eq!(ns(&q1.receive(&take(10, "c")).await?), vec![0, 1]);
    assert_eq!(one.list_queues().await?.len(), 2);
    assert_eq!(two.list_queues().await?.len(), 2);
    assert!(h.eddy().list_queues().await?.is_empty());
    one.delete_queue("same", false).await?;
    assert_eq!(two.list_queues().await?.len(), 2);
    assert_eq!(q2.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// A second connection (another process) sees the same queues and
/// messages.
pub async fn second_connection_shares_queues(h: &Harness) -> CaseResult {
    let Some(other) = h.reconnect().await? else {
        return Ok(Outcome::NotApplicable(
            "the engine is not shared between processes",
        ));
    };
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("shared").await?;
    send_numbered(&q, 0..2).await?;
    let q2 = other.queue("shared").await?;
    let got = q2.receive(&take(1, "far")).await?;
    assert_eq!(ns(&got), vec![0]);
    assert_eq!(q.info().await?.pending, 1);
    assert_eq!(ns(&q.receive(&take(10, "near")).await?), vec![1]);
    assert_eq!(q.ack(&ids(&got)).await?, 1);
    assert_eq!(q2.info().await?.pending, 1);
    Ok(Outcome::Passed)
}

/// Queues and messages outlive the connection that wrote them: a client
/// that connects later (after the writer is gone) finds them.
pub async fn data_outlives_the_writer(h: &Harness) -> CaseResult {
    if !h.capabilities().durable {
        return Ok(Outcome::NotApplicable(
            "the engine's data lives only as long as its process",
        ));
    }
    let Some(writer) = h.reconnect().await? else {
        return Ok(Outcome::NotApplicable(
            "the engine is durable but cannot be opened a second time here",
        ));
    };
    let (q, _) = writer.create_queue_pair("durable").await?;
    send_numbered(&q, 0..3).await?;
    drop((q, writer));
    let Some(reader) = h.reconnect().await? else {
        return Ok(Outcome::NotApplicable("no second connection"));
    };
    let q = reader.queue("durable").await?;
    assert_eq!(ns(&q.receive(&take(10, "later")).await?), vec![0, 1, 2]);
    let names: Vec<String> = reader
        .list_queues()
        .await?
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["durable", "durable:dlq"]);
    Ok(Outcome::Passed)
}
