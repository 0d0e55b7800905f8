//! Recovering a crashed consumer's backlog (RELIABILITY.md rows 1 and 11 at
//! scale): its pending messages come back in batches, handled concurrently,
//! and new messages keep flowing meanwhile. (The case with a process that
//! dies on a message is in `tests/reclaim.rs`: it needs real processes.)
//!
//! On the embedded engine time is paused, so the rates compared below are
//! in the engine's virtual time: what they compare is how the loop spaces its
//! work (batches, concurrency), not how fast this machine is.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::queue::consumer::{Backoff, ConsumerOptions};
use eddy::{Message, Queue, Receive};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::support::{wait_drained, Loop};
use super::{CaseResult, Harness, Outcome as CaseOutcome};

const VISIBILITY: Duration = Duration::from_millis(300);

fn opts() -> ConsumerOptions {
    ConsumerOptions::new()
        .concurrency(16)
        .visibility_timeout(VISIBILITY)
        .claim_interval(Duration::from_millis(50))
        .poll(Duration::from_millis(50))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .shutdown_timeout(Duration::from_secs(2))
}

/// What the handler saw: how many ran, the most at once, and each message's
/// (n, delivery count) in the order they finished.
#[derive(Default)]
struct Seen {
    running: AtomicUsize,
    peak: AtomicUsize,
    handled: AtomicU64,
    order: Mutex<Vec<(i64, u64)>>,
}

impl Seen {
    fn handled(&self) -> u64 {
        self.handled.load(Ordering::SeqCst)
    }
}

/// A consumer loop whose handler works `work` per message (awaiting, as
/// I/O would) and records it in `seen`.
fn spawn_loop(q: Queue, opts: ConsumerOptions, work: Duration, seen: Arc<Seen>) -> Loop {
    Loop::spawn(q, opts, move |m: Message| {
        let seen = seen.clone();
        async move {
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(work).await;
            let n = m.data.get("n").and_then(Value::as_i64).unwrap_or(-1);
            seen.order.lock().unwrap().push((n, m.delivery_count));
            seen.running.fetch_sub(1, Ordering::SeqCst);
            seen.handled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
}

/// Send `range` as `{"n": i}` in batches.
async fn send_range(q: &Queue, range: std::ops::Range<i64>) -> eddy::Result<()> {
    let all: Vec<Value> = range.map(|n| json!({ "n": n })).collect();
    for chunk in all.chunks(500) {
        q.send_batch(chunk).await?;
    }
    Ok(())
}

/// Receive every waiting message as consumer `crashed` and never settle
/// them: what a consumer that died mid-work leaves pending.
async fn crash_holding_everything(q: &Queue, n: usize) -> eddy::Result<()> {
    let mut held = 0;
    while held < n {
        let got = q
            .receive(&Receive::new().count(1000).consumer("crashed"))
            .await?;
        assert!(!got.is_empty(), "only {held} of {n} messages to hold");
        held += got.len();
    }
    Ok(())
}

/// Poll until `seen` has handled `n` messages; the time it took.
async fn until_handled(seen: &Seen, n: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    while seen.handled() < n {
        assert!(
            start.elapsed() < limit,
            "handled {} of {n} in {limit:?}",
            seen.handled()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

/// A crashed consumer's 5,000 pending messages are reclaimed in batches and
/// handled concurrently, in about the time the same loop takes for 5,000
/// fresh messages; not one at a time, each waiting for the one before.
pub async fn crashed_backlog_is_reclaimed_in_batches(h: &Harness) -> CaseResult {
    h.pause_time();
    const N: i64 = 5_000;
    let work = Duration::from_millis(2);
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("backlog").await?;

    // The normal rate: the loop on fresh messages.
    send_range(&q, 0..N).await?;
    let fresh = Arc::new(Seen::default());
    let l = spawn_loop(q.clone(), opts(), work, fresh.clone());
    let normal = until_handled(&fresh, N as u64, Duration::from_secs(60)).await;
    l.stop().await?;
    wait_drained(&q, Duration::from_secs(5)).await;

    // The same messages, held by a consumer that crashed.
    send_range(&q, N..2 * N).await?;
    crash_holding_everything(&q, N as usize).await?;
    tokio::time::sleep(VISIBILITY + VISIBILITY / 2).await;
    let seen = Arc::new(Seen::default());
    let l = spawn_loop(q.clone(), opts(), work, seen.clone());
    let recovery = until_handled(&seen, N as u64, Duration::from_secs(120)).await;
    l.stop().await?;
    wait_drained(&q, Duration::from_secs(5)).await;

    let order = seen.order.lock().unwrap().clone();
    assert!(
        order
            .iter()
            .all(|(n, dc)| (N..2 * N).contains(n) && *dc == 2),
        "each reclaimed once, delivery count 2"
    );
    assert_eq!(order.len() as i64, N, "each handled once");
    assert!(dlq.peek(10).await?.is_empty(), "nothing dead-lettered");
    let peak = seen.peak.load(Ordering::SeqCst);
    eprintln!(
        "{N} fresh in {normal:?} (peak {}), {N} reclaimed in {recovery:?} (peak {peak})",
        fresh.peak.load(Ordering::SeqCst)
    );
    assert!(
        peak >= 8,
        "reclaimed messages ran {peak} at a time; want them handled concurrently"
    );
    assert!(
        recovery <= normal * 3 + Duration::from_secs(1),
        "recovery took {recovery:?}, normal flow {normal:?}"
    );
    Ok(CaseOutcome::Passed)
}

/// A message sent while a big backlog is being reclaimed is handled before
/// the reclaim finishes.
pub async fn new_messages_flow_during_a_reclaim(h: &Harness) -> CaseResult {
    h.pause_time();
    const N: i64 = 3_000;
    const FRESH: i64 = -7;
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("flow").await?;
    send_range(&q, 0..N).await?;
    crash_holding_everything(&q, N as usize).await?;
    tokio::time::sleep(VISIBILITY + VISIBILITY / 2).await;

    let seen = Arc::new(Seen::default());
    let l = spawn_loop(q.clone(), opts(), Duration::from_millis(2), seen.clone());
    until_handled(&seen, 100, Duration::from_secs(30)).await;
    q.send(&json!({ "n": FRESH })).await?;
    until_handled(&seen, N as u64 + 1, Duration::from_secs(120)).await;
    l.stop().await?;

    let order = seen.order.lock().unwrap().clone();
    let at = order
        .iter()
        .position(|(n, _)| *n == FRESH)
        .expect("the new message was never handled");
    let reclaimed_after = order[at..].iter().filter(|(_, dc)| *dc == 2).count();
    eprintln!("the new message was handled after {at} others, {reclaimed_after} reclaimed ones still to come");
    assert_eq!(order[at].1, 1, "delivered by a read, not reclaimed");
    assert!(
        reclaimed_after >= 1_000,
        "the new message waited for the reclaim: handled at position {at} of {}",
        order.len()
    );
    Ok(CaseOutcome::Passed)
}
