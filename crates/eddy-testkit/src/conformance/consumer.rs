//! The consumer loop (`eddy::queue::consumer`): retries, dead-lettering,
//! panics, reclaims, leases, handler timeouts, draining on stop, ordering
//! keys. On the embedded engine time is paused: the loops below wait out
//! visibility timeouts and backoffs in no wall time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::queue::consumer::{self, Backoff, ConsumerOptions};
use eddy::Fail;
use eddy::Receive;
use serde_json::json;

use super::support::eventually;
use super::{CaseResult, Harness, Outcome as CaseOutcome};

/// Consumer settings that make retries and reclaims quick.
pub(super) fn fast() -> ConsumerOptions {
    ConsumerOptions::new()
        .visibility_timeout(Duration::from_millis(300))
        .claim_interval(Duration::from_millis(50))
        .poll(Duration::from_millis(50))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .handler_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(5))
}

/// A message whose handler always asks for a retry goes to the DLQ after
/// `max_deliveries`, with the reason; the others keep flowing.
pub async fn poison_message_goes_to_dlq_after_max_deliveries(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("poison").await?;
    q.send(&json!({"poison": true})).await?;
    for i in 0..5 {
        q.send(&json!({"n": i})).await?;
    }
    let ok = Arc::new(AtomicU64::new(0));
    let seen = ok.clone();
    let stop = async { tokio::time::sleep(Duration::from_millis(1500)).await };
    let stats = consumer::run(
        q.clone(),
        fast().max_deliveries(3),
        move |m| {
            let seen = seen.clone();
            async move {
                if m.data.contains_key("poison") {
                    Err(Fail::retry(format!(
                        "cannot digest (attempt {})",
                        m.delivery_count
                    )))
                } else {
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        },
        stop,
    )
    .await?;
    assert_eq!(ok.load(Ordering::SeqCst), 5, "other messages keep flowing");
    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].failures()[0].reason;
    assert!(reason.contains("failed 3 deliveries"), "{reason}");
    assert!(reason.contains("cannot digest (attempt 3)"), "{reason}");
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 1);
    assert_eq!(stats.retried.load(Ordering::SeqCst), 2);
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(CaseOutcome::Passed)
}

/// A panicking handler is a failed delivery: retried, and the loop lives on.
pub async fn panic_is_retried_and_worker_survives(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("panics").await?;
    q.send(&json!({"boom": true})).await?;
    q.send(&json!({"fine": true})).await?;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let log = attempts.clone();
    let stats = consumer::run(
        q.clone(),
        fast(),
        move |m| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((m.data.contains_key("boom"), m.delivery_count));
                if m.data.contains_key("boom") && m.delivery_count == 1 {
                    panic!("handler exploded");
                }
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1000)),
    )
    .await?;
    let attempts = attempts.lock().unwrap().clone();
    assert!(
        attempts.contains(&(true, 1)) && attempts.contains(&(true, 2)),
        "{attempts:?}"
    );
    assert!(attempts.contains(&(false, 1)));
    assert_eq!(stats.panics.load(Ordering::SeqCst), 1);
    assert!(dlq.peek(10).await?.is_empty());
    assert_eq!(q.info().await?.pending, 0);
    Ok(CaseOutcome::Passed)
}

/// A rejection dead-letters at once, without a retry.
pub async fn reject_dead_letters_at_once(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("rejects").await?;
    q.send(&json!({"bad": 1})).await?;
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    consumer::run(
        q.clone(),
        fast(),
        move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err(Fail::reject("invalid order")) }
        },
        tokio::time::sleep(Duration::from_millis(500)),
    )
    .await?;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry for a rejection");
    let dead = dlq.peek(10).await?;
    assert_eq!(dead[0].failures()[0].reason, "invalid order");
    assert_eq!(dead[0].data["bad"], 1);
    assert_eq!(q.info().await?.length, 0, "gone from the queue");
    Ok(CaseOutcome::Passed)
}

/// What a crashed consumer held is reclaimed after the visibility timeout,
/// not before, with its delivery count raised.
pub async fn crashed_consumers_messages_are_reclaimed(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("reclaim").await?;
    for i in 0..3 {
        q.send(&json!({"n": i})).await?;
    }
    // A consumer takes all three and dies without acknowledging.
    let taken = q
        .receive(&Receive::new().count(3).consumer("dead-worker"))
        .await?;
    assert_eq!(taken.len(), 3);
    let counts = Arc::new(Mutex::new(Vec::new()));
    let c = counts.clone();
    let started = tokio::time::Instant::now();
    consumer::run(
        q.clone(),
        fast().name("rescuer".into()),
        move |m| {
            c.lock()
                .unwrap()
                .push((m.data["n"].as_u64(), m.delivery_count, started.elapsed()));
            async { Ok(()) }
        },
        tokio::time::sleep(Duration::from_millis(1200)),
    )
    .await?;
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (_, dc, at) in &counts {
        assert_eq!(*dc, 2, "delivery count +1");
        assert!(
            *at >= Duration::from_millis(250),
            "not before the visibility timeout: {at:?}"
        );
    }
    let info = q.info().await?;
    assert_eq!(info.pending, 0);
    Ok(CaseOutcome::Passed)
}

/// A handler that works for longer than the visibility timeout keeps its
/// lease (the loop extends it, also while stopping): a rival consumer that
/// reclaims stale messages all along never takes the message over.
///
/// The rival starts only once the slow handler holds the message, so the
/// case cannot pass by the rival receiving it first; it keeps reclaiming
/// until well after the slow handler finished.
pub async fn slow_handler_keeps_its_lease(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("slow").await?;
    q.send(&json!({"slow": true})).await?;
    let v = Duration::from_millis(300);
    let work = Duration::from_millis(1000); // > 3 × V
    let runs = Arc::new(AtomicU64::new(0));
    let holding = Arc::new(tokio::sync::Notify::new());
    let (r, held) = (runs.clone(), holding.clone());
    let (stop_slow, slow_stopped) = tokio::sync::oneshot::channel::<()>();
    let slowpoke = tokio::spawn(consumer::run(
        q.clone(),
        fast().visibility_timeout(v).name("slowpoke".into()),
        move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            held.notify_one();
            async move {
                tokio::time::sleep(work).await;
                Ok(())
            }
        },
        async {
            let _ = slow_stopped.await;
        },
    ));
    holding.notified().await;
    let rival_runs = Arc::new(AtomicU64::new(0));
    let rr = rival_runs.clone();
    let rival = tokio::spawn(consumer::run(
        mq.queue("slow").await?,
        fast().visibility_timeout(v).name("rival".into()),
        move |_| {
            rr.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        },
        tokio::time::sleep(work * 2),
    ));
    // Stop the slow consumer while its handler is still working: draining,
    // it must go on extending the lease.
    tokio::time::sleep(v).await;
    let _ = stop_slow.send(());
    slowpoke.await??;
    rival.await??;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the slow handler ran once");
    assert_eq!(
        rival_runs.load(Ordering::SeqCst),
        0,
        "the rival took over a message whose handler was alive"
    );
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (1, 0, 0));
    Ok(CaseOutcome::Passed)
}

/// A handler that never finishes is timed out and its message retried.
pub async fn hung_handler_times_out_and_is_retried(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("hung").await?;
    q.send(&json!({"x": 1})).await?;
    let counts = Arc::new(Mutex::new(Vec::new()));
    let c = counts.clone();
    let stats = consumer::run(
        q.clone(),
        fast().handler_timeout(Duration::from_millis(100)),
        move |m| {
            c.lock().unwrap().push(m.delivery_count);
            let hang = m.delivery_count == 1;
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1000)),
    )
    .await?;
    assert_eq!(*counts.lock().unwrap(), vec![1, 2]);
    assert_eq!(stats.timeouts.load(Ordering::SeqCst), 1);
    assert_eq!(q.info().await?.pending, 0);
    Ok(CaseOutcome::Passed)
}

/// Stopping the loop lets in-flight handlers finish and acknowledges them
/// before `run` returns.
pub async fn stop_drains_in_flight_work(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("drain").await?;
    for i in 0..4 {
        q.send(&json!({"n": i})).await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let task = tokio::spawn(consumer::run(
        q.clone(),
        fast().concurrency(4),
        move |_| {
            let (d, s) = (d.clone(), s.clone());
            async move {
                s.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
        async {
            let _ = rx.await;
        },
    ));
    started.notified().await;
    tx.send(()).ok();
    task.await??;
    assert_eq!(done.load(Ordering::SeqCst), 4, "in-flight handlers finish");
    assert_eq!(
        q.info().await?.pending,
        0,
        "and are acknowledged before stop returns"
    );
    Ok(CaseOutcome::Passed)
}

/// Messages with the same ordering key are handled one after another, in
/// order, even with concurrency.
pub async fn ordering_key_serializes_same_key(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ordered").await?;
    for i in 0..20 {
        q.send(&json!({"key": format!("k{}", i % 2), "n": i}))
            .await?;
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    consumer::run(
        q.clone(),
        fast().concurrency(8).ordering_key(|m| {
            m.data
                .get("key")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        }),
        move |m| {
            let l = l.clone();
            async move {
                let n = m.data["n"].as_u64().unwrap();
                // Later messages finish faster: only ordering keeps them in order.
                tokio::time::sleep(Duration::from_millis(20 - n)).await;
                l.lock().unwrap().push(n);
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1500)),
    )
    .await?;
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 20);
    for parity in 0..2 {
        let seq: Vec<u64> = log.iter().copied().filter(|n| n % 2 == parity).collect();
        let mut sorted = seq.clone();
        sorted.sort();
        assert_eq!(seq, sorted, "key k{parity} out of order");
    }
    Ok(CaseOutcome::Passed)
}

/// The loop runs a handler that finishes on its first poll inline (no task
/// of its own); handlers that compute for long before returning must still
/// run side by side on the runtime's workers, not one after another.
pub async fn cpu_bound_handlers_still_run_in_parallel(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("crunch").await?;
    let n = 40u64;
    for i in 0..n {
        q.send(&json!({ "n": i })).await?;
    }
    let running = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let (r, m, d) = (running.clone(), most.clone(), done.clone());
    let finished = done.clone();
    let stop = async move {
        eventually(Duration::from_secs(20), || async {
            finished.load(Ordering::SeqCst) >= n
        })
        .await;
    };
    consumer::run(
        q.clone(),
        fast().concurrency(4),
        move |_m| {
            let (running, most, done) = (r.clone(), m.clone(), d.clone());
            async move {
                // No await: 3 ms of work inside the first poll.
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let until = std::time::Instant::now() + Duration::from_millis(3);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
        stop,
    )
    .await?;
    assert_eq!(done.load(Ordering::SeqCst), n, "every message handled");
    assert!(
        most.load(Ordering::SeqCst) >= 2,
        "CPU-bound handlers ran one at a time"
    );
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(CaseOutcome::Passed)
}

/// A handler closure that panics in its synchronous part (before it returns
/// a future) is a failed delivery like any other: retried, then
/// dead-lettered; the loop and the other messages carry on.
pub async fn handler_panicking_before_its_future_exists_is_retried(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("eager").await?;
    q.send(&json!({"bad": true})).await?;
    for i in 0..5 {
        q.send(&json!({"n": i})).await?;
    }
    let ok = Arc::new(AtomicU64::new(0));
    let seen = ok.clone();
    let stop = async { tokio::time::sleep(Duration::from_millis(1500)).await };
    let stats = consumer::run(
        q.clone(),
        fast().max_deliveries(2),
        move |m| {
            assert!(!m.data.contains_key("bad"), "cannot even start on this one");
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
        stop,
    )
    .await?;
    assert_eq!(ok.load(Ordering::SeqCst), 5, "the others were handled");
    assert_eq!(stats.panics.load(Ordering::SeqCst), 2);
    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].failures()[0].reason;
    assert!(reason.contains("cannot even start"), "{reason}");
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(CaseOutcome::Passed)
}

/// With an ordering key, a handler is called only once the one before it
/// (same key) has finished: its synchronous part too, not only its future.
pub async fn ordering_key_covers_the_handlers_synchronous_part(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ordered-sync").await?;
    for i in 0..10 {
        q.send(&json!({"n": i})).await?;
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    consumer::run(
        q.clone(),
        fast()
            .concurrency(8)
            .ordering_key(|_| Some("one".to_owned())),
        move |m| {
            let n = m.data["n"].as_u64().unwrap_or(99);
            l.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("call {n}"));
            let l = l.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                l.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("done {n}"));
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1000)),
    )
    .await?;
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let want: Vec<String> = (0..10)
        .flat_map(|n| [format!("call {n}"), format!("done {n}")])
        .collect();
    assert_eq!(log, want);
    Ok(CaseOutcome::Passed)
}
