//! Retention: trimming acknowledged history, and a maximum length that
//! rejects sends instead of dropping messages.

use std::time::Duration;

use eddy::{ErrorKind, Receive, SendOptions};
use serde_json::{json, Value};

use super::{assert_kind, ids, ns, numbered, send_numbered, take, CaseResult, Harness, Outcome};

/// Let a little time pass, so that every entry so far is older than "now".
async fn tick(h: &Harness) {
    h.advance(Duration::from_millis(20)).await;
}

/// `trim_history` removes acknowledged entries only: never one that is
/// pending, or after a pending one, or not yet delivered.
pub async fn trim_history_removes_only_acknowledged_history(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("trim").await?;
    send_numbered(&q, 0..6).await?;
    let got = q.receive(&take(4, "c")).await?; // 0..=3 delivered
    q.ack(&[got[0].id, got[1].id, got[3].id]).await?; // 2 stays pending
    tick(h).await;
    assert_eq!(
        q.trim_history(Duration::ZERO).await?,
        2,
        "0 and 1; 3 is after pending 2"
    );
    assert_eq!(ns(&q.peek(10).await?), vec![2, 3, 4, 5]);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (4, 1, 2));
    q.ack(&[got[2].id]).await?;
    assert_eq!(q.trim_history(Duration::ZERO).await?, 2);
    assert_eq!(q.trim_history(Duration::ZERO).await?, 0);
    // The undelivered ones are untouched and still delivered.
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![4, 5]);
    tick(h).await;
    assert_eq!(
        q.trim_history(Duration::ZERO).await?,
        0,
        "4 and 5 are pending"
    );
    Ok(Outcome::Passed)
}

/// `trim_history` keeps acknowledged entries younger than the retention.
pub async fn trim_history_keeps_the_retention_window(h: &Harness) -> CaseResult {
    let window = if h.pause_time() {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(1)
    };
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("trim2").await?;
    send_numbered(&q, 0..2).await?;
    let got = q.receive(&take(2, "c")).await?;
    q.ack(&ids(&got)).await?;
    assert_eq!(q.trim_history(window).await?, 0, "younger than the window");
    h.advance(window * 2).await;
    assert_eq!(q.trim_history(window).await?, 2);
    assert_eq!(q.info().await?.length, 0);
    Ok(Outcome::Passed)
}

/// `Eddy::trim_history` trims every queue and leaves DLQs alone.
pub async fn eddy_trim_history_covers_every_queue(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (a, adlq) = mq.create_queue_pair("a").await?;
    let (b, _) = mq.create_queue_pair("b").await?;
    for q in [&a, &b] {
        send_numbered(q, 0..3).await?;
        let got = q.receive(&take(3, "c")).await?;
        q.ack(&ids(&got[..2])).await?;
        q.dead_letter(&[got[2].id], "x").await?;
    }
    let dead = adlq.receive(&take(10, "c")).await?;
    assert_eq!(dead.len(), 1);
    tick(h).await;
    assert_eq!(mq.trim_history(Duration::ZERO).await?, 4);
    assert_eq!(a.info().await?.length, 0);
    assert_eq!(b.info().await?.length, 0);
    assert_eq!(
        adlq.info().await?.length,
        1,
        "DLQ entries are never acknowledged history"
    );
    Ok(Outcome::Passed)
}

/// A queue with a maximum length rejects sends past it with `QueueFull`
/// (retryable) and writes nothing; nothing already in it is dropped.
pub async fn max_length_rejects_sends_with_queue_full(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("{r}capped").await?;
    let (other, _) = mq.create_queue_pair("{r}other").await?;
    assert_eq!(q.info().await?.max_length, None);
    q.set_max_length(Some(3)).await?;
    assert_eq!(q.info().await?.max_length, Some(3));
    send_numbered(&q, 0..2).await?;
    let batch: Vec<Value> = (2..4).map(numbered).collect();
    let full = q.send_batch(&batch).await;
    assert_kind(full.clone(), ErrorKind::QueueFull);
    assert!(full.err().is_some_and(|e| e.is_retryable()));
    assert_eq!(q.info().await?.length, 2, "a batch is all or nothing");
    q.send(&numbered(2)).await?;
    assert_kind(q.send(&numbered(3)).await, ErrorKind::QueueFull);
    assert_kind(
        q.send_with(&numbered(3), &SendOptions::new().message_id("x"))
            .await,
        ErrorKind::QueueFull,
    );
    let mut tx = mq.transaction();
    tx.send(&other, &numbered(10))?.send(&q, &numbered(3))?;
    assert_kind(tx.commit().await, ErrorKind::QueueFull);
    assert_eq!(
        other.info().await?.length,
        0,
        "the transaction wrote nothing"
    );
    assert_eq!(ns(&q.peek(10).await?), vec![0, 1, 2], "nothing was dropped");

    // Acknowledged history still counts until it is trimmed.
    let got = q.receive(&take(3, "c")).await?;
    q.ack(&ids(&got)).await?;
    assert_kind(q.send(&numbered(3)).await, ErrorKind::QueueFull);
    tick(h).await;
    assert_eq!(q.trim_history(Duration::ZERO).await?, 3);
    q.send(&numbered(3)).await?;

    q.set_max_length(None).await?;
    assert_eq!(q.info().await?.max_length, None);
    send_numbered(&q, 4..10).await?;
    assert_eq!(q.info().await?.length, 7);
    Ok(Outcome::Passed)
}

/// Setting a maximum length on a queue that does not exist fails with
/// `QueueNotFound`.
pub async fn max_length_of_deleted_queue_is_not_found(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("gone").await?;
    mq.delete_queue("gone", false).await?;
    assert_kind(q.set_max_length(Some(1)).await, ErrorKind::QueueNotFound);
    assert_kind(q.set_max_length(None).await, ErrorKind::QueueNotFound);
    assert_kind(mq.queue("gone").await, ErrorKind::QueueNotFound);
    Ok(Outcome::Passed)
}

/// `Eddy::trim_history` (what the janitor runs) removes acknowledged
/// entries only, and nothing after a pending one.
pub async fn janitor_trims_only_acknowledged_history(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("history").await?;
    for i in 0..10 {
        q.send(&json!({"n": i})).await?;
    }
    // 0..4 acknowledged, 4..6 pending, 6..10 never delivered.
    let got = q.receive(&Receive::new().count(6)).await?;
    let acked: Vec<_> = got[..4].iter().map(|m| m.id).collect();
    q.ack(&acked).await?;
    // A long retention keeps everything.
    assert_eq!(q.trim_history(Duration::from_secs(3600)).await?, 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        mq.trim_history(Duration::ZERO).await?,
        4,
        "only acknowledged entries go"
    );
    let left: Vec<u64> = q
        .peek(20)
        .await?
        .iter()
        .map(|m| m.data["n"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(left, (4..10).collect::<Vec<u64>>());
    // Acknowledging an entry after a pending one frees nothing before it.
    q.ack(&[got[5].id]).await?;
    assert_eq!(
        q.trim_history(Duration::ZERO).await?,
        0,
        "entry 4 is still pending"
    );
    q.ack(&[got[4].id]).await?;
    assert_eq!(q.trim_history(Duration::ZERO).await?, 2);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (4, 0, 4));
    Ok(Outcome::Passed)
}

/// A full queue rejects sends and transactions (writing nothing anywhere)
/// instead of dropping old messages; lifting the maximum lets sends in.
pub async fn max_length_rejects_instead_of_dropping(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("{r}bounded").await?;
    let (other, _) = mq.create_queue_pair("{r}unbounded").await?;
    q.set_max_length(Some(3)).await?;
    assert_eq!(q.info().await?.max_length, Some(3));
    for i in 0..3 {
        q.send(&json!({"n": i})).await?;
    }
    let err = q.send(&json!({"n": 3})).await.unwrap_err();
    assert_eq!(err.kind(), eddy::ErrorKind::QueueFull, "{err}");
    // A transaction that would overflow writes nothing anywhere.
    q.set_max_length(Some(4)).await?;
    let mut tx = mq.transaction();
    tx.send(&other, &json!({"x": 1}))?;
    tx.send(&q, &json!({"n": 3}))?;
    tx.send(&q, &json!({"n": 4}))?;
    assert_eq!(
        tx.commit().await.unwrap_err().kind(),
        eddy::ErrorKind::QueueFull
    );
    assert_eq!(other.info().await?.length, 0);
    assert_eq!(q.info().await?.length, 3, "nothing old was dropped");
    q.set_max_length(None).await?;
    q.send(&json!({"n": 5})).await?;
    assert_eq!(q.info().await?.length, 4);
    Ok(Outcome::Passed)
}

/// A length bound keeps the newest acknowledged entries, counting only
/// those: a pending entry and everything after it stay, and together with
/// an age the stricter of the two wins.
pub async fn retention_by_length_keeps_the_newest_acknowledged(h: &Harness) -> CaseResult {
    use eddy::queue::Retention;
    let window = if h.pause_time() {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(2)
    };
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("trim-length").await?;
    send_numbered(&q, 0..10).await?;
    let got = q.receive(&take(8, "c")).await?; // 0..=7 delivered
    let mut acked = ids(&got);
    acked.remove(6); // 6 stays pending
    q.ack(&acked).await?;
    tick(h).await;
    assert_eq!(
        q.apply_retention(Retention::length(100)).await?,
        0,
        "fewer than 100 acknowledged"
    );
    // Below the pending 6 are 0..=5, acknowledged: the newest 2 stay.
    assert_eq!(q.apply_retention(Retention::length(2)).await?, 4);
    assert_eq!(ns(&q.peek(20).await?), vec![4, 5, 6, 7, 8, 9]);
    assert_eq!(q.apply_retention(Retention::length(2)).await?, 0);
    // The age is younger than the window: the length alone decides.
    assert_eq!(
        q.apply_retention(Retention::new(Some(window), Some(1)))
            .await?,
        1
    );
    assert_eq!(ns(&q.peek(20).await?), vec![5, 6, 7, 8, 9]);
    q.ack(&[got[6].id]).await?;
    // Now 5, 6, 7 are acknowledged: past the window they go by age
    // though the length would keep 3.
    h.advance(window * 2).await;
    assert_eq!(
        q.apply_retention(Retention::new(Some(window), Some(3)))
            .await?,
        3
    );
    assert_eq!(ns(&q.peek(20).await?), vec![8, 9], "undelivered stay");
    assert_eq!(q.apply_retention(Retention::length(0)).await?, 0);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (2, 0, 2));
    assert_eq!(
        q.apply_retention(Retention::default()).await?,
        0,
        "no bound removes nothing"
    );
    Ok(Outcome::Passed)
}

/// A consumer loop with a length bound and no age keeps exactly that many
/// acknowledged entries once its work is done.
pub async fn consumer_loop_keeps_a_bounded_length(h: &Harness) -> CaseResult {
    use eddy::queue::consumer;
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("length-loop").await?;
    send_numbered(&q, 0..30).await?;
    let stop = tokio::time::sleep(Duration::from_secs(3));
    let opts = super::consumer::fast().keep_all_history().history_length(5);
    let stats = consumer::run(q.clone(), opts, |_m| async move { Ok(()) }, stop).await?;
    assert_eq!(stats.acked.load(std::sync::atomic::Ordering::SeqCst), 30);
    assert_eq!(
        ns(&q.peek(50).await?),
        (25..30).collect::<Vec<_>>(),
        "the five newest acknowledged stay"
    );
    assert_eq!(stats.trimmed.load(std::sync::atomic::Ordering::SeqCst), 25);
    Ok(Outcome::Passed)
}

/// The consumer loop trims the history it acknowledges as it goes: with
/// no history kept, the queue is empty once everything is handled, a
/// message retried on the way included.
pub async fn consumer_loop_trims_what_it_acknowledges(h: &Harness) -> CaseResult {
    use eddy::queue::consumer;
    use eddy::Fail;
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("bounded-loop").await?;
    send_numbered(&q, 0..20).await?;
    let stop = tokio::time::sleep(Duration::from_secs(3));
    let opts = super::consumer::fast().history(Duration::ZERO);
    let stats = consumer::run(
        q.clone(),
        opts,
        |m| async move {
            if m.data["n"] == 5 && m.delivery_count < 3 {
                return Err(Fail::retry("not yet"));
            }
            Ok(())
        },
        stop,
    )
    .await?;
    let acked = stats.acked.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(acked, 20);
    let info = q.info().await?;
    assert_eq!(
        (info.length, info.pending, info.lag),
        (0, 0, 0),
        "nothing acknowledged is kept"
    );
    assert_eq!(stats.trimmed.load(std::sync::atomic::Ordering::SeqCst), 20);
    Ok(Outcome::Passed)
}

/// A loop keeps acknowledged history for its window (a minute by
/// default) and trims it after, also once the queue has gone quiet.
pub async fn consumer_loop_keeps_history_for_its_window(h: &Harness) -> CaseResult {
    use eddy::queue::consumer::{self, DEFAULT_HISTORY};
    // The default window where time can be advanced; a short one on a
    // real clock.
    let (opts, window) = if h.pause_time() {
        let opts = super::consumer::fast();
        assert_eq!(opts.history, Some(DEFAULT_HISTORY));
        (opts, DEFAULT_HISTORY)
    } else {
        let window = Duration::from_secs(1);
        (super::consumer::fast().history(window), window)
    };
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("windowed").await?;
    send_numbered(&q, 0..10).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(consumer::run(
        q.clone(),
        opts,
        |_| async { Ok(()) },
        async {
            let _ = stopped.await;
        },
    ));
    let handled = super::support::eventually(Duration::from_secs(5), || async {
        q.info().await.is_ok_and(|i| i.pending == 0 && i.lag == 0)
    })
    .await;
    assert!(handled, "the loop handles all ten");
    h.advance(window / 2).await;
    assert_eq!(q.info().await?.length, 10, "inside the window: all kept");
    let trimmed = super::support::eventually(window * 3, || async {
        q.info().await.is_ok_and(|i| i.length == 0)
    })
    .await;
    assert!(trimmed, "past the window, a quiet queue is trimmed too");
    let _ = stop.send(());
    let stats = run.await??;
    assert_eq!(stats.trimmed.load(std::sync::atomic::Ordering::SeqCst), 10);
    Ok(Outcome::Passed)
}

/// Consumers that hold nothing and have not read for the limit are
/// removed from the group, by hand and by a starting loop; a consumer
/// holding a message stays, however idle.
pub async fn idle_consumers_that_hold_nothing_are_forgotten(h: &Harness) -> CaseResult {
    use eddy::queue::consumer;
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("crowd").await?;
    send_numbered(&q, 0..2).await?;
    let old = q.receive(&take(1, "old")).await?;
    q.ack(&ids(&old)).await?;
    let held = q.receive(&take(1, "holder")).await?;
    assert_eq!(held.len(), 1);
    h.advance(Duration::from_millis(400)).await;
    assert!(q.receive(&take(1, "fresh")).await?.is_empty());
    let names = |info: eddy::QueueInfo| {
        let mut n: Vec<String> = info.consumers.into_iter().map(|c| c.name).collect();
        n.sort();
        n
    };
    assert_eq!(names(q.info().await?), ["fresh", "holder", "old"]);
    assert_eq!(
        q.forget_idle_consumers(Duration::from_millis(200)).await?,
        ["old"]
    );
    assert_eq!(names(q.info().await?), ["fresh", "holder"]);
    assert!(q
        .forget_idle_consumers(Duration::from_secs(3600))
        .await?
        .is_empty());

    // A loop that starts forgets the names its predecessors left.
    h.advance(Duration::from_millis(400)).await;
    let opts = super::consumer::fast()
        .name("next".into())
        .visibility_timeout(Duration::from_secs(3600))
        .forget_idle(Some(Duration::from_millis(200)));
    let stop = tokio::time::sleep(Duration::from_millis(300));
    consumer::run(q.clone(), opts, |_| async { Ok(()) }, stop).await?;
    assert_eq!(
        names(q.info().await?),
        ["holder", "next"],
        "`fresh` went; `holder` still holds its message"
    );
    let info = q.info().await?;
    assert_eq!(info.pending, 1);
    Ok(Outcome::Passed)
}
