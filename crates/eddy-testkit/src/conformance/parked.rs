//! Retries due later than the visibility timeout: a 10-minute retry with a
//! 30-second visibility timeout (on an engine whose clock follows
//! `tokio::time`, paused and advanced; elsewhere, a 1-second timeout and a
//! 4-second retry, and a 10-minute retry checked while it waits). The
//! message waits, pending with its delivery count, behind a marker in the
//! queue's delayed set, and comes back when due, counted exactly towards
//! `max_deliveries`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::queue::consumer::{self, Backoff, ConsumerOptions};
use eddy::{EntryId, Fail, ParkedRetry, Queue};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{ids, ns, send_numbered, take, CaseResult, Harness, Outcome};

/// The visibility timeout and a retry delay well past it, on this engine's
/// clock.
fn timeout_and_delay(h: &Harness) -> (Duration, Duration) {
    if h.pause_time() {
        (Duration::from_secs(30), Duration::from_secs(600))
    } else {
        (Duration::from_secs(1), Duration::from_secs(4))
    }
}

/// The visibility timeout of [`timeout_and_delay`] and a retry ten minutes
/// away, as the brief of this suite has it, on every engine.
fn timeout_and_ten_minutes(h: &Harness) -> (Duration, Duration) {
    (timeout_and_delay(h).0, Duration::from_secs(600))
}

/// A ten-minute retry with a short visibility timeout: parked at once with
/// its due time (by the engine's clock) and its delivery count, held for
/// its consumer, and not handed to anyone as the visibility timeout passes
/// three times over, whoever reads or claims. Where time can be advanced,
/// it is then followed to its due time: claimed with the count plus one.
pub async fn a_ten_minute_retry_is_parked_with_its_due_time_and_count(h: &Harness) -> CaseResult {
    let (vt, after) = timeout_and_ten_minutes(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ten-minutes").await?;
    send_numbered(&q, 0..1).await?;
    let got = q.receive(&take(1, "worker")).await?;
    assert_eq!(got[0].delivery_count, 1);
    let before = h.engine().now_ms().await?;
    assert_eq!(q.release("worker", &ids(&got), after, vt).await?, 1);
    let since = h.engine().now_ms().await?;
    let due = |parked: &[ParkedRetry]| -> Vec<(EntryId, String, u64)> {
        parked
            .iter()
            .map(|p| (p.id, p.consumer.clone(), p.delivery_count))
            .collect()
    };
    let parked = q.parked().await?;
    assert_eq!(due(&parked), vec![(got[0].id, "worker".to_owned(), 1)]);
    let after_ms = after.as_millis() as u64;
    assert!(
        (before + after_ms..=since + after_ms).contains(&parked[0].due_ms),
        "due at {} ms, parked between {before} and {since} for {after_ms} ms",
        parked[0].due_ms
    );
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed, info.lag), (1, 1, 0));

    // Three visibility timeouts, a read and a claim after each.
    for _ in 0..3 {
        h.advance(vt).await;
        assert!(q.receive(&take(10, "reader")).await?.is_empty());
        let stolen = q.claim_stale("rescuer", vt, 10).await?;
        assert!(stolen.is_empty(), "claimed before due: {stolen:?}");
    }
    assert_eq!(q.parked().await?, parked, "still parked as it was");
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed), (1, 1));

    if !h.pause_time() {
        // Ten real minutes are not waited for: the message is settled by
        // its consumer after all, which ends its wait.
        assert_eq!(q.ack(&ids(&got)).await?, 1);
        assert!(q.parked().await?.is_empty());
        return Ok(Outcome::Passed);
    }
    // To the millisecond: the paused clock leads the wall clock by now, so
    // the engine's clock moves exactly as far as it is advanced.
    let left = parked[0].due_ms - h.engine().now_ms().await?;
    assert!(left < after.as_millis() as u64 - 3 * vt.as_millis() as u64 + 50);
    h.advance(Duration::from_millis(left - 1)).await;
    assert!(q.claim_stale("rescuer", vt, 10).await?.is_empty());
    assert_eq!(q.parked().await?.len(), 1, "a millisecond before due");
    h.advance(Duration::from_millis(1)).await;
    let retried = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ids(&retried), ids(&got));
    assert_eq!(retried[0].delivery_count, 2);
    assert!(q.parked().await?.is_empty());
    // Its marker goes with the next read.
    assert!(q.receive(&take(10, "reader")).await?.is_empty());
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed), (1, 0));
    assert_eq!(q.ack(&ids(&retried)).await?, 1);
    Ok(Outcome::Passed)
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
    // Its marker goes with the next read.
    assert!(q.receive(&take(10, "reader")).await?.is_empty());
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed), (1, 0));
    assert_eq!(q.ack(&ids(&retried)).await?, 1);
    Ok(Outcome::Passed)
}

/// The last word on a parked retry decides: acknowledged, it is no longer
/// listed; released again for a short while, it is claimable then (even by
/// a claimer that waits for no idle time, which passes over the parked
/// ones); parked again, its due time moves. Markers count as delayed until
/// due.
pub async fn a_parked_retry_follows_the_last_word_on_it(h: &Harness) -> CaseResult {
    let (vt, after) = timeout_and_delay(h);
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("unparked").await?;
    send_numbered(&q, 0..3).await?;
    let got = q.receive(&take(3, "worker")).await?;
    let parked_at = Instant::now();
    assert_eq!(q.release("worker", &ids(&got), after, vt).await?, 3);
    let first_due = q.parked().await?[2].due_ms;
    assert_eq!(q.parked().await?.len(), 3);
    assert_eq!(q.info().await?.delayed, 3);
    let listed =
        |parked: Vec<ParkedRetry>| -> Vec<EntryId> { parked.iter().map(|p| p.id).collect() };

    // n = 0 is acknowledged; n = 1 released again, briefly; n = 2 parked
    // again, for twice as long.
    assert_eq!(q.ack(&[got[0].id]).await?, 1);
    assert_eq!(q.release("worker", &[got[1].id], vt / 4, vt).await?, 1);
    assert_eq!(q.release("worker", &[got[2].id], after * 2, vt).await?, 1);
    let parked = q.parked().await?;
    assert_eq!(listed(parked.clone()), vec![got[2].id]);
    assert!(parked[0].due_ms >= first_due + after.as_millis() as u64);
    // n = 0's marker counts until due; n = 1's went with the new release.
    assert_eq!(q.info().await?.delayed, 2);

    let taken = q.claim_stale("impatient", Duration::ZERO, 10).await?;
    assert_eq!(ns(&taken), vec![1], "the parked n = 2 is passed over");
    assert_eq!(taken[0].delivery_count, 2);
    assert_eq!(q.ack(&ids(&taken)).await?, 1);

    // Past the first due time: n = 2 still waits for its second.
    h.advance(after.saturating_sub(parked_at.elapsed()) + vt / 4)
        .await;
    assert!(q.claim_stale("rescuer", vt, 10).await?.is_empty());
    assert!(q.receive(&take(10, "worker")).await?.is_empty());
    assert_eq!(listed(q.parked().await?), vec![got[2].id]);
    assert_eq!(
        q.info().await?.delayed,
        1,
        "n = 0's marker is gone once due"
    );

    h.advance((after * 2).saturating_sub(parked_at.elapsed()) + vt / 4)
        .await;
    let retried = q.claim_stale("rescuer", vt, 10).await?;
    assert_eq!(ns(&retried), vec![2]);
    assert_eq!(retried[0].delivery_count, 2);
    assert!(q.parked().await?.is_empty());
    assert!(q.receive(&take(10, "worker")).await?.is_empty());
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed), (1, 0));
    assert_eq!(q.ack(&ids(&retried)).await?, 1);
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
        .backoff(Backoff::new(vt / 100, vt / 100))
        // The acknowledged message is counted below; the minutes that pass
        // here would trim it.
        .keep_all_history();
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

/// A consumer dies (its runtime torn down: no drain, no release, no
/// acknowledgement, its connection gone) after parking one message and
/// while it runs another's handler. Neither is lost: the parked one stays
/// parked for the dead consumer, with its due time and count, and comes
/// to a survivor only once due; the other is pending and the survivor
/// reclaims it after the visibility timeout. Both come with delivery count
/// 2, once each. The park is one atomic step, so no moment of the death
/// leaves a message in neither state. Real time on every engine: the dying
/// consumer runs on a runtime of its own, whose clock cannot be paused
/// with this one's.
pub async fn a_parked_retry_survives_its_consumers_death(h: &Harness) -> CaseResult {
    let (vt, after) = (Duration::from_secs(1), Duration::from_secs(4));
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("crash").await?;
    // n = 0 is parked; n = 1's handler never returns.
    send_numbered(&q, 0..2).await?;
    let opts = |name: &str| {
        ConsumerOptions::new()
            .name(name.into())
            .concurrency(1)
            .max_deliveries(5)
            .visibility_timeout(vt)
            .claim_interval(vt / 10)
            .poll(vt / 10)
    };

    // The doomed consumer, in a "process" of its own: a thread and a
    // runtime (and, where the engine is a server, a connection) of its own.
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (die_tx, die_rx) = tokio::sync::oneshot::channel::<()>();
    let (builder, engine) = (h.builder(), h.engine().clone());
    let separate = h.capabilities().shared_between_processes;
    let doomed_opts = opts("doomed");
    let doomed = std::thread::spawn(move || -> eddy::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| eddy::Error::new(eddy::ErrorKind::Backend, e.to_string()))?;
        let result = rt.block_on(async move {
            let mq = if separate {
                builder.open().await?
            } else {
                builder.with_engine(engine)?
            };
            let q = mq.queue("crash").await?;
            let handler = move |msg: eddy::Message| {
                let started = started_tx.clone();
                async move {
                    let n = msg.data["n"].as_u64().unwrap_or(99);
                    let _ = started.send(n);
                    if n == 0 {
                        return Err(Fail::retry_after(after, "later"));
                    }
                    std::future::pending::<()>().await;
                    Ok(())
                }
            };
            tokio::select! {
                ran = consumer::run(q, doomed_opts, handler, std::future::pending()) => ran.map(drop),
                _ = die_rx => Ok(()),
            }
        });
        // The loop's future is gone, and with the runtime every task it
        // spawned (handlers, lease extension, acknowledgements), unpolled.
        drop(rt);
        result
    });
    // With one handler at a time, n = 1 starts only once n = 0's retry is
    // written: the death comes after the park, and before n = 1 is settled.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(10), started_rx.recv()).await {
            Ok(Some(n)) => seen.push(n),
            _ => panic!("the doomed consumer handled only {seen:?}"),
        }
    }
    assert_eq!(seen, vec![0, 1]);
    let _ = die_tx.send(());
    let died = tokio::task::spawn_blocking(move || doomed.join())
        .await
        .map_err(|e| eddy::Error::new(eddy::ErrorKind::Backend, e.to_string()))?;
    match died {
        Ok(result) => result?,
        Err(_) => panic!("the doomed consumer's thread panicked"),
    }
    let died_at = h.engine().now_ms().await?;

    let sent = q.peek(2).await?;
    let parked = q.parked().await?;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(
        (
            parked[0].id,
            parked[0].consumer.as_str(),
            parked[0].delivery_count
        ),
        (sent[0].id, "doomed", 1)
    );
    assert!(parked[0].due_ms > died_at, "due after the death");
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed, info.lag), (2, 1, 0));

    // A survivor takes over: n = 1 after the visibility timeout, n = 0
    // once due, each once, each with delivery count 2.
    let got: Arc<Mutex<Vec<(u64, u64, u64)>>> = Arc::default();
    let both = Arc::new(Notify::new());
    let handler = {
        let (got, both, engine) = (got.clone(), both.clone(), h.engine().clone());
        move |msg: eddy::Message| {
            let (got, both, engine) = (got.clone(), both.clone(), engine.clone());
            async move {
                let at = engine.now_ms().await?;
                let n = msg.data["n"].as_u64().unwrap_or(99);
                let mut got = got.lock().unwrap_or_else(|p| p.into_inner());
                got.push((n, msg.delivery_count, at));
                if got.len() == 2 {
                    both.notify_one();
                }
                Ok(())
            }
        }
    };
    let stop = {
        let both = both.clone();
        async move {
            let _ = tokio::time::timeout(after * 3, both.notified()).await;
            // Let a stray third delivery show itself.
            tokio::time::sleep(vt).await;
        }
    };
    consumer::run(q.clone(), opts("survivor"), handler, stop).await?;
    let got = got.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let order: Vec<(u64, u64)> = got.iter().map(|(n, c, _)| (*n, *c)).collect();
    assert_eq!(order, vec![(1, 2), (0, 2)], "{got:?}");
    assert!(
        got[1].2 >= parked[0].due_ms,
        "n = 0 delivered at {} ms, due at {} ms",
        got[1].2,
        parked[0].due_ms
    );
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed, info.lag), (0, 0, 0));
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
