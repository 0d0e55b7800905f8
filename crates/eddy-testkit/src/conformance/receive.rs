//! Receiving: counts, delivery counts, consumers, blocking, competing
//! consumers, argument checks.

use std::collections::BTreeSet;
use std::time::Duration;

use eddy::{ErrorKind, Receive};
use tokio::time::Instant;

use super::{assert_kind, ids, ns, numbered, send_numbered, take, CaseResult, Harness, Outcome};

/// Receiving from an empty queue returns no messages (and does not wait).
pub async fn receive_on_empty_queue_returns_nothing(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("empty").await?;
    let start = Instant::now();
    assert!(q.receive(&Receive::new()).await?.is_empty());
    assert!(q.receive(&take(100, "c")).await?.is_empty());
    assert!(dlq.receive(&take(100, "c")).await?.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "a non-blocking receive must not wait"
    );
    Ok(Outcome::Passed)
}

/// At most `count` messages per receive, oldest first; the default is one.
pub async fn receive_respects_count(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("count").await?;
    send_numbered(&q, 0..6).await?;
    assert_eq!(ns(&q.receive(&Receive::new()).await?), vec![0]);
    assert_eq!(ns(&q.receive(&take(2, "c")).await?), vec![1, 2]);
    assert_eq!(ns(&q.receive(&take(2, "c")).await?), vec![3, 4]);
    assert_eq!(ns(&q.receive(&take(2, "c")).await?), vec![5]);
    assert!(q.receive(&take(2, "c")).await?.is_empty());
    Ok(Outcome::Passed)
}

/// A first delivery has delivery count 1.
pub async fn new_messages_have_delivery_count_one(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("dc").await?;
    send_numbered(&q, 0..3).await?;
    let got = q.receive(&take(10, "c")).await?;
    assert!(got.iter().all(|m| m.delivery_count == 1), "{got:?}");
    Ok(Outcome::Passed)
}

/// A received, unacknowledged message is not handed out again by receive
/// (it stays pending); a second consumer gets only newer messages.
pub async fn received_messages_are_not_redelivered(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("once").await?;
    send_numbered(&q, 0..2).await?;
    assert_eq!(ns(&q.receive(&take(10, "a")).await?), vec![0, 1]);
    assert!(q.receive(&take(10, "a")).await?.is_empty());
    assert!(q.receive(&take(10, "b")).await?.is_empty());
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (2, 2, 0));
    q.send(&numbered(2)).await?;
    assert_eq!(ns(&q.receive(&take(10, "b")).await?), vec![2]);
    Ok(Outcome::Passed)
}

/// Consumers show in `info` with their pending counts, sorted by name.
pub async fn consumer_shows_in_info(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("consumers").await?;
    send_numbered(&q, 0..6).await?;
    q.receive(&take(3, "worker-b")).await?;
    q.receive(&take(1, "worker-a")).await?;
    let idle = q.receive(&take(1, "idle-reader")).await?;
    q.ack(&ids(&idle)).await?;
    let info = q.info().await?;
    let seen: Vec<(String, u64)> = info
        .consumers
        .iter()
        .map(|c| (c.name.clone(), c.pending))
        .collect();
    assert_eq!(
        seen,
        [
            ("idle-reader".to_owned(), 0),
            ("worker-a".to_owned(), 1),
            ("worker-b".to_owned(), 3),
        ]
    );
    assert!(info.consumers.iter().all(|c| c.idle_ms < 60_000));
    // The default consumer name is LeanMQ's.
    q.receive(&Receive::new()).await?;
    let names: Vec<String> = q
        .info()
        .await?
        .consumers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert!(
        names.contains(&eddy::queue::DEFAULT_CONSUMER.to_owned()),
        "{names:?}"
    );
    Ok(Outcome::Passed)
}

/// A consumer is registered by its first receive even if that receive finds
/// nothing new, so a monitor sees a started but starved worker.
pub async fn consumer_that_read_nothing_is_listed(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("starved").await?;
    assert!(q.receive(&take(1, "empty-queue-reader")).await?.is_empty());
    send_numbered(&q, 0..1).await?;
    q.receive(&take(1, "first")).await?;
    assert!(q.receive(&take(1, "late")).await?.is_empty());
    let names: Vec<(String, u64)> = q
        .info()
        .await?
        .consumers
        .iter()
        .map(|c| (c.name.clone(), c.pending))
        .collect();
    assert_eq!(
        names,
        [
            ("empty-queue-reader".to_owned(), 0),
            ("first".to_owned(), 1),
            ("late".to_owned(), 0),
        ],
        "every consumer that called receive is listed"
    );
    Ok(Outcome::Passed)
}

/// A blocking receive on an empty queue returns nothing after about the
/// block time.
pub async fn blocking_receive_times_out_empty(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("block").await?;
    let block = Duration::from_millis(300);
    let start = Instant::now();
    let got = q.receive(&take(1, "c").block(block)).await?;
    let took = start.elapsed();
    assert!(got.is_empty());
    assert!(
        took >= block - Duration::from_millis(20),
        "returned after {took:?}, before the {block:?} block ended"
    );
    assert!(
        took < block + Duration::from_secs(2),
        "returned after {took:?} for a {block:?} block"
    );
    Ok(Outcome::Passed)
}

/// A blocked reader wakes as soon as another task sends, well before its
/// block time ends.
pub async fn blocking_receive_wakes_on_send(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("wake").await?;
    let sender = q.clone();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sender.send(&numbered(7)).await
    });
    let start = Instant::now();
    let got = q
        .receive(&take(5, "c").block(Duration::from_secs(20)))
        .await?;
    let took = start.elapsed();
    send.await.expect("sender task")?;
    assert_eq!(ns(&got), vec![7]);
    assert!(
        took < Duration::from_secs(3),
        "woke after {took:?}: the send should wake the reader at once"
    );
    Ok(Outcome::Passed)
}

/// Messages sent before any consumer exists are delivered: the group starts
/// at the beginning of the stream.
pub async fn messages_sent_before_first_consumer_are_delivered(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("early").await?;
    send_numbered(&q, 0..3).await?;
    assert!(q.info().await?.consumers.is_empty());
    assert_eq!(q.info().await?.lag, 3);
    // Also through a handle looked up later, as another service would.
    let q2 = mq.queue("early").await?;
    assert_eq!(ns(&q2.receive(&take(10, "first")).await?), vec![0, 1, 2]);
    Ok(Outcome::Passed)
}

/// Competing consumers of one group each get different messages, and
/// together all of them.
pub async fn competing_consumers_get_disjoint_messages(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("compete").await?;
    send_numbered(&q, 0..30).await?;
    let consumers = ["c1", "c2", "c3"];
    let mut by_consumer: Vec<Vec<u64>> = vec![Vec::new(); 3];
    loop {
        let mut any = false;
        for (i, c) in consumers.iter().enumerate() {
            let got = q.receive(&take(4, c)).await?;
            any |= !got.is_empty();
            by_consumer[i].extend(ns(&got));
        }
        if !any {
            break;
        }
    }
    let mut all: Vec<u64> = by_consumer.concat();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a message went to two consumers: {by_consumer:?}"
    );
    all.sort_unstable();
    assert_eq!(all, (0..30).collect::<Vec<_>>());
    let info = q.info().await?;
    let pending: Vec<u64> = info.consumers.iter().map(|c| c.pending).collect();
    let expected: Vec<u64> = by_consumer.iter().map(|v| v.len() as u64).collect();
    assert_eq!(pending, expected);
    assert_eq!((info.pending, info.lag), (30, 0));
    Ok(Outcome::Passed)
}

/// Consumers receiving concurrently (separate tasks, some blocking) still
/// get disjoint messages that together are all of them.
pub async fn concurrent_consumers_get_disjoint_messages(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("concurrent").await?;
    let total = 200_u64;
    let mut tasks = Vec::new();
    for c in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut idle = 0;
            while idle < 3 {
                let opts = take(7, &format!("c{c}")).block(Duration::from_millis(100));
                let got = q.receive(&opts).await?;
                if got.is_empty() {
                    idle += 1;
                } else {
                    idle = 0;
                    q.ack(&ids(&got)).await?;
                    mine.extend(ns(&got));
                }
            }
            Ok::<_, eddy::Error>(mine)
        }));
    }
    for chunk in (0..total).collect::<Vec<_>>().chunks(10) {
        let batch: Vec<_> = chunk.iter().map(|n| numbered(*n)).collect();
        q.send_batch(&batch).await?;
        tokio::task::yield_now().await;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("consumer task")?);
    }
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a message was delivered twice");
    assert_eq!(distinct, (0..total).collect::<BTreeSet<_>>());
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(Outcome::Passed)
}

/// `count = 0` is `InvalidArgument` and an invalid consumer name
/// `InvalidName`; neither delivers anything.
pub async fn invalid_receive_arguments_are_rejected(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("args").await?;
    send_numbered(&q, 0..3).await?;
    assert_kind(q.receive(&take(0, "c")).await, ErrorKind::InvalidArgument);
    assert_kind(dlq.receive(&take(0, "c")).await, ErrorKind::InvalidArgument);
    for bad in [
        "",
        "has space",
        "tab\tname",
        "line\nbreak",
        &"c".repeat(201),
    ] {
        assert_kind(q.receive(&take(1, bad)).await, ErrorKind::InvalidName);
    }
    let info = q.info().await?;
    assert_eq!((info.lag, info.pending), (3, 0));
    assert!(info.consumers.is_empty());
    // Unusual but valid consumer names work.
    for ok in ["host-1:pid-2", "ünïcode", &"c".repeat(200)] {
        q.receive(&take(1, ok)).await?;
    }
    assert_eq!(q.info().await?.consumers.len(), 3);
    Ok(Outcome::Passed)
}

/// A DLQ is a queue too: its messages can be received, with their failure
/// history, by the DLQ's own group.
pub async fn dlq_can_be_received_from(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("dlqread").await?;
    send_numbered(&q, 0..2).await?;
    let got = q.receive(&take(2, "c")).await?;
    assert_eq!(q.dead_letter(&ids(&got), "broken").await?, 2);
    let dead = dlq.receive(&take(10, "inspector")).await?;
    assert_eq!(ns(&dead), vec![0, 1]);
    assert!(dead.iter().all(|m| m.delivery_count == 1));
    assert_eq!(dead[0].failures().len(), 1);
    assert_eq!(dead[0].failures()[0].reason, "broken");
    let info = dlq.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (2, 2, 0));
    assert_eq!(info.consumers[0].name, "inspector");
    assert!(dlq.receive(&take(10, "inspector")).await?.is_empty());
    Ok(Outcome::Passed)
}
