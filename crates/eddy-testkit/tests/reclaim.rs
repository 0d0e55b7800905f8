//! Recovering a crashed consumer's backlog (RELIABILITY.md rows 1 and 11 at
//! scale): its pending messages come back in batches, new messages keep
//! flowing meanwhile, and a message that kills its process still takes no
//! bystander to the dead-letter queue.
//!
//! The in-process cases run on both engines (`memory::*`, `redis::*`); the
//! process-killing case runs `fault-worker` against a redis-server of its own.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy::queue::consumer::{self, Backoff, ConsumerOptions, ConsumerStats};
use eddy::{Eddy, EddyBuilder, Message, Queue, Receive};
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The engine of one test: `memory://`, or a redis-server of its own.
struct Env {
    url: String,
    _server: Option<RedisServer>,
}

impl Env {
    fn memory() -> Self {
        Self {
            url: "memory://".into(),
            _server: None,
        }
    }

    fn redis() -> Self {
        let server = RedisServer::start().expect("redis-server must be installed (see README)");
        Self {
            url: server.url(),
            _server: Some(server),
        }
    }

    async fn mq(&self) -> eddy::Result<Eddy> {
        EddyBuilder::new(&self.url).prefix("rc:").open().await
    }
}

macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() -> super::TestResult { super::$name(super::Env::memory()).await } )*
        }
        mod redis {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() -> super::TestResult { super::$name(super::Env::redis()).await } )*
        }
    };
}

both_engines!(
    crashed_backlog_is_reclaimed_in_batches,
    new_messages_flow_during_a_reclaim,
);

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
struct Loop {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<eddy::Result<()>>,
}

impl Loop {
    fn spawn(q: Queue, opts: ConsumerOptions, work: Duration, seen: Arc<Seen>) -> Self {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let handler = move |m: Message| {
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
        };
        let stats = Arc::new(ConsumerStats::default());
        let task = tokio::spawn(consumer::run_with_stats(q, opts, handler, shutdown, stats));
        Self { stop, task }
    }

    async fn stop(self) -> TestResult {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .map_err(|_| "the consumer loop did not stop within 15 s")???;
        Ok(())
    }
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

async fn wait_drained(q: &Queue, limit: Duration) -> TestResult {
    let start = Instant::now();
    loop {
        let info = q.info().await?;
        if info.pending == 0 && info.lag == 0 {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(format!("not drained: pending {} lag {}", info.pending, info.lag).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A crashed consumer's 5,000 pending messages are reclaimed in batches and
/// handled concurrently, in about the time the same loop takes for 5,000
/// fresh messages; not one at a time, each waiting for the one before.
async fn crashed_backlog_is_reclaimed_in_batches(env: Env) -> TestResult {
    const N: i64 = 5_000;
    let work = Duration::from_millis(2);
    let mq = env.mq().await?;
    let (q, dlq) = mq.create_queue_pair("backlog").await?;

    // The normal rate: the loop on fresh messages.
    send_range(&q, 0..N).await?;
    let fresh = Arc::new(Seen::default());
    let l = Loop::spawn(q.clone(), opts(), work, fresh.clone());
    let normal = until_handled(&fresh, N as u64, Duration::from_secs(60)).await;
    l.stop().await?;
    wait_drained(&q, Duration::from_secs(5)).await?;

    // The same messages, held by a consumer that crashed.
    send_range(&q, N..2 * N).await?;
    crash_holding_everything(&q, N as usize).await?;
    tokio::time::sleep(VISIBILITY + VISIBILITY / 2).await;
    let seen = Arc::new(Seen::default());
    let l = Loop::spawn(q.clone(), opts(), work, seen.clone());
    let recovery = until_handled(&seen, N as u64, Duration::from_secs(120)).await;
    l.stop().await?;
    wait_drained(&q, Duration::from_secs(5)).await?;

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
    Ok(())
}

/// A message sent while a big backlog is being reclaimed is handled before
/// the reclaim finishes.
async fn new_messages_flow_during_a_reclaim(env: Env) -> TestResult {
    const N: i64 = 3_000;
    const FRESH: i64 = -7;
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("flow").await?;
    send_range(&q, 0..N).await?;
    crash_holding_everything(&q, N as usize).await?;
    tokio::time::sleep(VISIBILITY + VISIBILITY / 2).await;

    let seen = Arc::new(Seen::default());
    let l = Loop::spawn(q.clone(), opts(), Duration::from_millis(2), seen.clone());
    until_handled(&seen, 100, Duration::from_secs(30)).await;
    q.send(&json!({ "n": FRESH })).await?;
    until_handled(&seen, N as u64 + 1, Duration::from_secs(120)).await;
    l.stop().await?;

    let order = seen.order.lock().unwrap().clone();
    let at = order
        .iter()
        .position(|(n, _)| *n == FRESH)
        .ok_or("the new message was never handled")?;
    let reclaimed_after = order[at..].iter().filter(|(_, dc)| *dc == 2).count();
    eprintln!("the new message was handled after {at} others, {reclaimed_after} reclaimed ones still to come");
    assert_eq!(order[at].1, 1, "delivered by a read, not reclaimed");
    assert!(
        reclaimed_after >= 1_000,
        "the new message waited for the reclaim: handled at position {at} of {}",
        order.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// A message that kills its process, among many that do not

/// A `fault-worker consume` child whose stdout lines are collected by a
/// reader thread. Killed on drop.
struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn consume(url: &str, queue: &str, options: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fault-worker"))
            .args(["consume", &format!("url={url}"), &format!("queue={queue}")])
            .args(options)
            .arg("prefix=rc:")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the fault-worker binary runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// The `n`s of the lines starting with `kind` (`start`, `done`, `abort`).
    fn ns(&self, kind: &str) -> BTreeSet<i64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut w = l.split(' ');
                (w.next()? == kind).then_some(())?;
                w.next()?.parse().ok()
            })
            .collect()
    }

    fn delivery_counts(&self, kind: &str) -> Vec<u64> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let mut w = l.split(' ');
                (w.next()? == kind).then_some(())?;
                w.nth(1)?.parse().ok()
            })
            .collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("timed out after {limit:?}: {what}"))
}

/// Row 11 with company: a message that aborts its process every time is
/// handled among slow ones, four at a time. Each crash leaves every message
/// in flight pending; the restarted worker reclaims them in batches, but
/// what was already redelivered runs alone, so after max_deliveries only the
/// killer is dead-lettered and every other message is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_killer_takes_no_bystander_to_the_dlq() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    const N: i64 = 40;
    const KILLER: i64 = 5;
    let server = RedisServer::start()?;
    let mq = EddyBuilder::new(server.url()).prefix("rc:").open().await?;
    let (q, dlq) = mq.create_queue_pair("killer").await?;
    for n in 0..N {
        if n == KILLER {
            q.send(&json!({"n": n, "abort": true})).await?;
        } else {
            q.send(&json!({"n": n})).await?;
        }
    }
    let opts = [
        "visibility_ms=400",
        "claim_ms=50",
        "poll_ms=100",
        "concurrency=4",
        "handler_ms=100",
        "max_deliveries=3",
    ];
    let mut aborts = Vec::new();
    let mut done = BTreeSet::new();
    for run in 1..=10 {
        let mut w = Worker::consume(&server.url(), "killer", &opts);
        let died = within(
            Duration::from_secs(20),
            "the worker neither died nor finished",
            async {
                loop {
                    if let Some(status) = w.child.try_wait()? {
                        return Ok::<_, std::io::Error>(Some(status));
                    }
                    let dead: Vec<Value> = dlq.peek(100).await.map_or_else(
                        |_| Vec::new(),
                        |d| d.iter().map(|m| m.data["n"].clone()).collect(),
                    );
                    assert!(
                        dead.iter().all(|n| *n == json!(KILLER)),
                        "run {run}: a bystander was dead-lettered: {dead:?}"
                    );
                    let all_done = done.union(&w.ns("done")).count() as i64 == N - 1;
                    if all_done && dead.len() == 1 {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await??;
        // Let the reader thread take the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        done.extend(w.ns("done"));
        match died {
            None => {
                // A graceful stop writes its last acknowledgements.
                let pid = w.child.id().to_string();
                Command::new("kill").args(["-s", "TERM", &pid]).status()?;
                within(
                    Duration::from_secs(10),
                    "the worker stops on SIGTERM",
                    async {
                        while w.child.try_wait()?.is_none() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok::<_, std::io::Error>(())
                    },
                )
                .await??;
                break;
            }
            Some(status) => {
                assert_eq!(status.signal(), Some(6), "run {run}: the handler aborts");
                aborts.extend(w.delivery_counts("abort"));
            }
        }
    }
    assert_eq!(
        aborts,
        [1, 2, 3],
        "one abort per delivery, up to max_deliveries"
    );
    let expected: BTreeSet<i64> = (0..N).filter(|n| *n != KILLER).collect();
    assert_eq!(done, expected, "every other message was handled");
    let dead = dlq.peek(100).await?;
    let dead_ns: Vec<Value> = dead.iter().map(|m| m.data["n"].clone()).collect();
    assert_eq!(dead_ns, [json!(KILLER)], "only the killer is dead-lettered");
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(())
}
