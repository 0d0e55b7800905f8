//! The rows of the fault matrix in RELIABILITY.md (rows 1–22) that need a
//! real process, a network fault or a Redis of their own, each against a
//! redis-server of its own. The rows that apply to every engine as they are
//! (8, 9, 10, 12, 13, 14, 15, 18) are in the conformance suite
//! (`src/conformance/faults.rs`), run on both engines by `tests/engines.rs`
//! (`memory_engine::rowNN_*`, `redis_engine::rowNN_*`); the helpers below
//! that both use come from `eddy_testkit::conformance::support`.
//!
//! Real processes where the row says so: `fault-worker` (src/bin) is a
//! consumer process that the tests SIGKILL, SIGTERM or let abort itself, and a
//! second process that subscribes and publishes on the bus. Network faults go
//! through [`eddy_testkit::proxy::Proxy`]. Waits are bounded polls of a
//! condition, failing with what was last seen; fixed sleeps only where the
//! fault itself is a duration (a frozen server, an expired TTL).
//!
//! Row 17 also runs on the embedded engine, with paused `tokio::time`
//! (`row17_*_memory`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy::bus::{Bus, Envelope, Subscription};
use eddy::engine::redis::RedisOptions;
use eddy::service::{Context, Service};
use eddy::{Eddy, EddyBuilder, ErrorKind, Receive, SendOptions};
use eddy_testkit::conformance::faults::fast;
use eddy_testkit::conformance::support::{
    kinds, order, stop_service, wait_drained, wait_until, Log, Loop, OrderCreatedEvent,
};
use eddy_testkit::fault_report::{producer, report, Sends};
use eddy_testkit::proxy::Proxy;
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------
// Connections

async fn open(url: &str, options: RedisOptions) -> eddy::Result<Eddy> {
    EddyBuilder::new(url)
        .prefix("rt:")
        .redis_options(options)
        .open()
        .await
}

/// Short timeouts, so a fault shows up as an error quickly.
fn impatient() -> RedisOptions {
    RedisOptions::default()
        .connect_attempts(3)
        .connect_backoff(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
}

// ---------------------------------------------------------------------------
// Waiting, recording, reporting

// ---------------------------------------------------------------------------
// Worker processes

/// A `fault-worker` child process whose stdout lines are collected (with
/// the time each arrived) by a reader thread. Killed on drop.
struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Worker {
    fn spawn(args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fault-worker"))
            .args(args)
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
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Self { child, lines }
    }

    /// `fault-worker consume` on queue `queue` (prefix `rt:`).
    fn consume(url: &str, queue: &str, options: &[&str]) -> Self {
        let mut args = vec![
            "consume".to_owned(),
            format!("url={url}"),
            format!("queue={queue}"),
        ];
        args.extend(options.iter().map(|o| (*o).to_owned()));
        Self::spawn(&args)
    }

    fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    /// The parsed `start`/`done`/`abort`/`park` lines: (kind, n, delivery
    /// count, when).
    fn events(&self) -> Vec<(String, i64, u64, Instant)> {
        self.lines()
            .into_iter()
            .filter_map(|(at, line)| {
                let mut w = line.split(' ');
                let kind = w.next()?.to_owned();
                if !matches!(kind.as_str(), "start" | "done" | "abort" | "park") {
                    return None;
                }
                let n = w.next()?.parse().ok()?;
                let dc = w.next()?.parse().ok()?;
                Some((kind, n, dc, at))
            })
            .collect()
    }

    fn ns(&self, kind: &str) -> BTreeSet<i64> {
        self.events()
            .into_iter()
            .filter(|e| e.0 == kind)
            .map(|e| e.1)
            .collect()
    }

    async fn wait_for_line(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[(Instant, String)]) -> bool,
    ) {
        wait_until(limit, what, || async {
            let lines = self.lines();
            if pred(&lines) {
                Ok(())
            } else {
                Err(format!(
                    "{:?}",
                    lines.iter().map(|l| &l.1).collect::<Vec<_>>()
                ))
            }
        })
        .await;
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// Wait for the process to exit, at most `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader thread take the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return status;
            }
            assert!(
                Instant::now() < end,
                "the worker did not exit within {limit:?}; output: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `fault-worker` to completion (a bus command) and return its stdout.
fn run_worker(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fault-worker"))
        .args(args)
        .output()
        .expect("the fault-worker binary runs");
    assert!(
        out.status.success(),
        "fault-worker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

// ---------------------------------------------------------------------------
// Row 1: consumer SIGKILLed mid-batch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row01_consumer_sigkilled_mid_batch() -> TestResult {
    const N: i64 = 30;
    let v = Duration::from_millis(1000);
    let claim = Duration::from_millis(100);
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let (q, _) = mq.create_queue_pair("row01").await?;
    for n in 0..N {
        q.send(&json!({"n": n})).await?;
    }
    let opts = [
        "visibility_ms=1000",
        "claim_ms=100",
        "handler_ms=150",
        "concurrency=4",
    ];
    let mut a = Worker::consume(
        &server.url(),
        "row01",
        &[&opts[..], &["name=worker-a"]].concat(),
    );
    // B competes from the start, as another replica would.
    let mut b = Worker::consume(
        &server.url(),
        "row01",
        &[&opts[..], &["name=worker-b"]].concat(),
    );
    b.wait_for_line(Duration::from_secs(10), "worker B is ready", |l| {
        l.iter().any(|(_, s)| s == "ready")
    })
    .await;
    a.wait_for_line(
        Duration::from_secs(10),
        "worker A started 6 handlers",
        |l| l.iter().filter(|(_, s)| s.starts_with("start ")).count() >= 6,
    )
    .await;
    a.child.kill()?; // SIGKILL: no drain, no release, no final ack
    let killed_at = Instant::now();
    a.wait_exit(Duration::from_secs(5)).await;
    let a_started = a.ns("start");
    let a_done = a.ns("done");
    let in_flight: BTreeSet<i64> = a_started.difference(&a_done).copied().collect();
    assert!(
        !in_flight.is_empty(),
        "the kill must land mid-batch: {:?}",
        a.lines()
    );
    wait_until(
        Duration::from_secs(15),
        "every message is handled once A's are reclaimed",
        || async {
            let done: BTreeSet<i64> = a_done.union(&b.ns("done")).copied().collect();
            let missing: Vec<i64> = (0..N).filter(|n| !done.contains(n)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not done: {missing:?}"))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;

    let b_events = b.events();
    for n in &in_flight {
        let (_, _, dc, at) = b_events
            .iter()
            .find(|e| e.0 == "start" && e.1 == *n)
            .unwrap_or_else(|| panic!("message {n}, in flight at the kill, was not redelivered"));
        assert_eq!(*dc, 2, "message {n}: delivery count +1");
        let after = at.duration_since(killed_at);
        assert!(
            after >= v / 4 && after <= v + claim + Duration::from_millis(2000),
            "message {n} redelivered {after:?} after the kill; want within V ({v:?}) plus the claim interval"
        );
    }
    let unexpected: Vec<i64> = b
        .ns("start")
        .into_iter()
        .filter(|n| !(0..N).contains(n))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    b.signal("TERM");
    assert!(b.wait_exit(Duration::from_secs(10)).await.success());
    eprintln!(
        "row01: {} in flight at the kill, redelivered to B with delivery count 2; A done {}, B done {}",
        in_flight.len(),
        a_done.len(),
        b.ns("done").len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 2: SIGTERM mid-batch

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row02_consumer_sigtermed_mid_batch() -> TestResult {
    const N: i64 = 20;
    // A long visibility timeout: the slow message comes back at once only
    // because the worker released it, not because its lease ran out.
    let v = Duration::from_secs(20);
    let shutdown = Duration::from_millis(1000);
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let (q, _) = mq.create_queue_pair("row02").await?;
    for n in 0..N {
        // Message 1 takes 30 s: longer than the drain deadline.
        q.send(&json!({"n": n, "slow": n == 1})).await?;
    }
    let mut w = Worker::consume(
        &server.url(),
        "row02",
        &[
            "visibility_ms=20000",
            "claim_ms=100",
            "poll_ms=200",
            "handler_ms=300",
            "concurrency=4",
            "shutdown_ms=1000",
        ],
    );
    w.wait_for_line(
        Duration::from_secs(10),
        "4 handlers started, the slow one among them",
        |l| {
            let starts: Vec<&String> = l
                .iter()
                .map(|x| &x.1)
                .filter(|s| s.starts_with("start "))
                .collect();
            starts.len() >= 4 && starts.iter().any(|s| s.starts_with("start 1 "))
        },
    )
    .await;
    w.signal("TERM");
    let termed = Instant::now();
    let status = w.wait_exit(Duration::from_secs(15)).await;
    let took = termed.elapsed();
    assert!(
        status.success(),
        "exit 0 after SIGTERM, got {status:?}; output {:?}",
        w.lines()
    );
    let lines: Vec<String> = w.lines().into_iter().map(|l| l.1).collect();
    let term_at = lines
        .iter()
        .position(|l| l == "term")
        .expect("the worker saw SIGTERM");
    assert!(lines.iter().any(|l| l.starts_with("exit ")), "{lines:?}");
    // Stop fetching: at most the one read in progress at the signal delivers.
    let late = lines[term_at..]
        .iter()
        .filter(|l| l.starts_with("start "))
        .count();
    assert!(late <= 4, "kept fetching after SIGTERM: {lines:?}");
    let started = w.ns("start");
    let done = w.ns("done");
    let unfinished: Vec<i64> = started.difference(&done).copied().collect();
    assert_eq!(
        unfinished,
        [1],
        "every in-flight handler but the slow one finished"
    );
    // The slow one was released, not left to its 20 s lease: another
    // consumer claims it at once, delivery count +1.
    let info = q.info().await?;
    assert_eq!(info.pending, 1, "only the slow message is still pending");
    assert_eq!(
        info.lag,
        (N as u64) - started.len() as u64,
        "nothing fetched but not started"
    );
    let rescued = q.claim_stale("rescuer", v, 10).await?;
    assert_eq!(
        rescued.len(),
        1,
        "the released message is claimable right away"
    );
    assert_eq!(
        (rescued[0].data["n"].as_i64(), rescued[0].delivery_count),
        (Some(1), 2)
    );
    // The drain deadline is `shutdown_timeout`; the consumer loop then waits
    // up to 5 s more for its acker, which cannot end while the abandoned
    // handler holds a sender (see the report). Bound both.
    assert!(
        took <= shutdown + Duration::from_secs(5) + Duration::from_millis(2500),
        "exited {took:?} after SIGTERM"
    );
    eprintln!(
        "row02: exit 0 {took:?} after SIGTERM (drain deadline {shutdown:?}); {} done, 1 released",
        done.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 3: a crash between the steps of a DLQ move, requeue or fan-out

/// `redis-cli MONITOR`: every command the server runs, scripts' included.
struct Monitor {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Monitor {
    async fn start(server: &RedisServer) -> Self {
        let mut child = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &server.port().to_string(),
                "MONITOR",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        wait_until(Duration::from_secs(5), "MONITOR is on", || async {
            let l = lines.lock().unwrap();
            if l.iter().any(|x| x == "OK") {
                Ok(())
            } else {
                Err(format!("{l:?}"))
            }
        })
        .await;
        let m = Self { child, lines };
        m.until(server, "monitor-started").await;
        m
    }

    /// Everything monitored up to an `ECHO marker` (sent now), as
    /// (source, command) with source `lua` for commands run by a script;
    /// redis-cli's own ECHO is left out.
    async fn until(&self, server: &RedisServer, marker: &str) -> Vec<(String, String)> {
        server.redis_cli(["ECHO", marker]).expect("redis-cli ECHO");
        wait_until(
            Duration::from_secs(5),
            &format!("MONITOR shows {marker}"),
            || async {
                let lines = self.lines.lock().unwrap();
                if lines.iter().any(|l| l.contains(marker)) {
                    Ok(())
                } else {
                    Err(format!("{lines:?}"))
                }
            },
        )
        .await;
        let mut lines = self.lines.lock().unwrap();
        let taken: Vec<String> = lines.drain(..).collect();
        taken
            .iter()
            .take_while(|l| !l.contains(marker))
            .filter_map(|l| {
                let source = l.split_once('[')?.1.split_once(']')?.0;
                let source = source.split_once(' ').map_or(source, |s| s.1).to_owned();
                let command = l
                    .split_once("] \"")?
                    .1
                    .split('"')
                    .next()?
                    .to_ascii_uppercase();
                Some((source, command))
            })
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commands a client may send around an atomic operation: the script call
/// and reads. Any other command from a client would be a write outside the
/// script, i.e. a step a crash could separate from the others.
const CLIENT_MAY_SEND: [&str; 12] = [
    "EVALSHA", "EVAL", "SCRIPT", "XRANGE", "HGETALL", "SMEMBERS", "TIME", "XINFO", "XPENDING",
    "PING", "CLIENT", "HELLO",
];

fn check_one_script(what: &str, seen: &[(String, String)], lua_writes: &[&str]) {
    let client: Vec<&str> = seen
        .iter()
        .filter(|s| s.0 != "lua")
        .map(|s| s.1.as_str())
        .collect();
    let lua: Vec<&str> = seen
        .iter()
        .filter(|s| s.0 == "lua")
        .map(|s| s.1.as_str())
        .collect();
    let calls = client
        .iter()
        .filter(|c| **c == "EVALSHA" || **c == "EVAL")
        .count();
    assert_eq!(
        calls, 1,
        "{what}: exactly one script call; client sent {client:?}"
    );
    let others: Vec<&&str> = client
        .iter()
        .filter(|c| !CLIENT_MAY_SEND.contains(c))
        .collect();
    assert!(
        others.is_empty(),
        "{what}: writes outside the script: {others:?} (client sent {client:?})"
    );
    for w in lua_writes {
        assert!(
            lua.contains(w),
            "{what}: the script itself runs {w}; it ran {lua:?}"
        );
    }
}

/// The other atomic shape: one MULTI/EXEC holding every write (Redis runs
/// it whole or, if the client dies before EXEC, not at all), plus the
/// script that checks inside it.
fn check_one_transaction(what: &str, seen: &[(String, String)], writes: &[&str]) {
    let client: Vec<&str> = seen
        .iter()
        .filter(|s| s.0 != "lua")
        .map(|s| s.1.as_str())
        .collect();
    let multi = client.iter().position(|c| *c == "MULTI");
    let exec = client.iter().position(|c| *c == "EXEC");
    let (Some(multi), Some(exec)) = (multi, exec) else {
        panic!("{what}: expected one MULTI/EXEC; client sent {client:?}");
    };
    assert!(multi < exec, "{what}: MULTI before EXEC: {client:?}");
    assert_eq!(
        client
            .iter()
            .filter(|c| **c == "MULTI" || **c == "EXEC")
            .count(),
        2,
        "{what}: exactly one MULTI/EXEC; client sent {client:?}"
    );
    let outside: Vec<&&str> = client[..multi]
        .iter()
        .chain(&client[exec + 1..])
        .filter(|c| !CLIENT_MAY_SEND.contains(c) || **c == "EVAL" || **c == "EVALSHA")
        .collect();
    assert!(
        outside.is_empty(),
        "{what}: writes or scripts outside the MULTI/EXEC: {outside:?} (client sent {client:?})"
    );
    let inside = &client[multi + 1..exec];
    assert!(
        inside.contains(&"EVAL"),
        "{what}: the checking script runs inside the transaction: {client:?}"
    );
    for w in writes {
        assert!(
            inside.contains(w),
            "{what}: the transaction runs {w}; it ran {inside:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row03_crash_between_steps_impossible() -> TestResult {
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let bus = Bus::new(
        EddyBuilder::new(server.url())
            .prefix("events:")
            .open()
            .await?,
    )
    .await?;
    let (q, dlq) = mq.create_queue_pair("row03").await?;
    let (other, _) = mq.create_queue_pair("row03-other").await?;
    for n in 0..3 {
        q.send(&json!({"n": n})).await?;
    }
    let got = q.receive(&Receive::new().count(3).consumer("c")).await?;
    let a = bus
        .subscribe("svc-a", &Subscription::types(["OrderCreatedEvent"]))
        .await?;
    bus.subscribe("svc-b", &Subscription::types(["OrderCreatedEvent"]))
        .await?;
    // Load every script once, so the monitored calls are plain EVALSHAs.
    q.dead_letter_messages(&got[..1], "warm-up").await?;
    dlq.requeue_all().await?;
    bus.publish(&order("warm-up")).await?;

    let monitor = Monitor::start(&server).await;
    q.dead_letter_messages(&got[1..2], "row 3").await?;
    let seen = monitor.until(&server, "after-dead-letter").await;
    check_one_script("dead-letter", &seen, &["XADD", "XACK", "XDEL"]);

    let dead = dlq.peek(10).await?;
    assert_eq!(dlq.requeue(&[dead[0].id]).await?, 1);
    let seen = monitor.until(&server, "after-requeue").await;
    check_one_script("requeue", &seen, &["XADD", "XACK", "XDEL"]);

    let sent = bus.publish(&order("o3")).await?;
    assert_eq!(sent.delivered_to, ["svc-a", "svc-b"]);
    let seen = monitor.until(&server, "after-publish").await;
    check_one_script("fan-out", &seen, &["XADD"]);
    let xadds = seen
        .iter()
        .filter(|s| s.0 == "lua" && s.1 == "XADD")
        .count();
    assert_eq!(
        xadds, 3,
        "one script appends to both services and the `all` log"
    );

    // A transaction over two queues: one append script too.
    let mut tx = mq.transaction();
    tx.send(&q, &json!({"n": 10}))?
        .send(&other, &json!({"n": 11}))?;
    tx.commit().await?;
    let seen = monitor.until(&server, "after-transaction").await;
    check_one_transaction("transaction", &seen, &["XADD"]);

    // The script checks before its first write, so a failure half-way is
    // impossible too: with the DLQ's key of the wrong type, the message stays
    // where it was.
    server.redis_cli(["DEL", "rt:row03:dlq"])?;
    server.redis_cli(["SET", "rt:row03:dlq", "not a stream"])?;
    let before = q.info().await?;
    let r = q.dead_letter_messages(&got[2..3], "row 3").await;
    assert_eq!(kinds(&r), Some(ErrorKind::WrongType), "{r:?}");
    let after = q.info().await?;
    assert_eq!(
        (after.length, after.pending),
        (before.length, before.pending),
        "nothing half-moved"
    );
    // A transaction whose second queue's stream is of the wrong type: the
    // check inside the MULTI/EXEC takes the first queue's entry back out.
    let other_len = other.info().await?.length;
    let mut tx = mq.transaction();
    tx.send(&other, &json!({"n": 12}))?
        .send(&dlq, &json!({"n": 13}))?;
    let r = tx.commit().await;
    assert_eq!(kinds(&r), Some(ErrorKind::WrongType), "{r:?}");
    assert_eq!(
        other.info().await?.length,
        other_len,
        "the transaction wrote nothing"
    );
    assert!(
        other.peek(100).await?.iter().all(|m| m.data["n"] != 12),
        "the rolled-back entry is not readable"
    );
    // And a fan-out with one target of the wrong type writes to no target.
    let a_len = a.info().await?.length;
    let log_len = bus.queues().queue("all").await?.info().await?.length;
    server.redis_cli(["DEL", "events:sub:svc-b"])?;
    server.redis_cli(["SET", "events:sub:svc-b", "not a stream"])?;
    let r = bus.publish(&order("o4")).await;
    assert_eq!(kinds(&r), Some(ErrorKind::WrongType), "{r:?}");
    assert_eq!(a.info().await?.length, a_len, "svc-a got nothing");
    assert_eq!(
        bus.queues().queue("all").await?.info().await?.length,
        log_len,
        "the log got nothing"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 4: Redis killed and restarted with AOF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row04_redis_killed_and_restarted_with_aof() -> TestResult {
    // appendonly yes, appendfsync always: every confirmed write is on disk.
    let mut server = RedisServer::builder().appendonly(true).start()?;
    let options = RedisOptions::default()
        .response_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_millis(500));
    let mq = open(&server.url(), options.clone()).await?;
    let consumer_mq = open(&server.url(), options).await?;
    let (q, _) = mq.create_queue_pair("row04").await?;
    let log = Log::default();
    let consumer_q = consumer_mq.queue("row04").await?;
    let opts = fast()
        .visibility_timeout(Duration::from_secs(1))
        .claim_interval(Duration::from_millis(100));
    let lp = Loop::acking(consumer_q, opts, &log);
    let stop = Arc::new(AtomicBool::new(false));
    let prod = producer(q.clone(), Duration::from_millis(10), stop.clone());

    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.kill()?; // kill -9: no shutdown, no final fsync
        tokio::time::sleep(Duration::from_millis(400)).await;
        tokio::task::block_in_place(|| server.restart())?; // same port, same dir, AOF replayed
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::SeqCst);
    let sends = prod.await?;
    assert!(sends.failed() > 0, "the kills must have failed some sends");
    wait_until(
        Duration::from_secs(20),
        "every confirmed send is delivered",
        || async {
            let delivered = log.ns();
            let missing: Vec<&i64> = sends.confirmed.difference(&delivered).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(10)).await;
    let errors = lp.errors();
    lp.stop().await?;
    assert!(errors > 0, "the consumer saw the faults and recovered");
    report(
        "row04",
        &sends,
        &log,
        "kill -9 of Redis x2 (AOF, appendfsync always)",
        &q.info().await?,
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 5: Redis down at start

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row05_redis_down_at_start() -> TestResult {
    // Hold the port, bound but not listening: connections are refused, and
    // no other test's server can take it meanwhile.
    let reserved = tokio::net::TcpSocket::new_v4()?;
    reserved.bind("127.0.0.1:0".parse()?)?;
    let port = reserved.local_addr()?.port();
    let url = format!("redis://127.0.0.1:{port}/0");

    // Never comes: a bounded number of attempts, then a typed error.
    let started = Instant::now();
    let r = open(&url, impatient()).await;
    let took = started.elapsed();
    assert_eq!(kinds(&r), Some(ErrorKind::Unavailable), "{r:?}");
    let message = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("after 3 attempt(s)"), "{message}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");

    // Comes 1.5 s late: retries with backoff, ready as soon as it answers.
    let (tx, rx) = std::sync::mpsc::channel();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(reserved);
        let server = RedisServer::builder().port(port).start();
        let _ = tx.send(Instant::now());
        server
    });
    let options = RedisOptions::default()
        .connect_attempts(10)
        .connect_backoff(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let mq = open(&url, options).await;
    let opened = Instant::now();
    let server = late.join().expect("the starter thread")?;
    let mq = mq?;
    let ready = rx.recv()?;
    let (q, _) = mq.create_queue_pair("row05").await?;
    q.send(&json!({"n": 1})).await?;
    // Doubling backoff: the wait after Redis is up is at most about as long
    // as Redis was down. (`ready` is taken once the starter thread saw PONG,
    // so the engine may even have connected a moment before.)
    let (lag, down) = (opened.saturating_duration_since(ready), ready - started);
    assert!(
        lag <= down + Duration::from_millis(500),
        "opened {lag:?} after Redis was ready; it was down {down:?}"
    );
    eprintln!("row05: gave up after {took:?}; opened {lag:?} after the late server was ready");
    drop(server);
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 6: Redis frozen

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row06_redis_frozen() -> TestResult {
    let mut server = RedisServer::start()?;
    let response_timeout = Duration::from_millis(500);
    let options = impatient().response_timeout(response_timeout);
    let mq = open(&server.url(), options.clone()).await?;
    let (q, _) = mq.create_queue_pair("row06").await?;
    let log = Log::default();
    let lp = Loop::acking(
        open(&server.url(), options).await?.queue("row06").await?,
        fast(),
        &log,
    );

    // A producer that records each send's outcome and how long it took.
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));
    let producer = {
        let (q, stop, results) = (q.clone(), stop.clone(), results.clone());
        tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let r = q
                    .send_with(
                        &json!({"n": n}),
                        &SendOptions::new().message_id(format!("m{n}")),
                    )
                    .await;
                results
                    .lock()
                    .unwrap()
                    .push((n, t, t.elapsed(), r.map(|_| ())));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGSTOP: the server keeps its sockets but answers nothing for 3 s.
    server.pause()?;
    let frozen = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.resume()?;
    let thawed = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // CLIENT PAUSE: writes held for 2 s.
    server.redis_cli(["CLIENT", "PAUSE", "2000", "WRITE"])?;
    let write_paused = Instant::now();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    stop.store(true, Ordering::SeqCst);
    producer.await?;

    let results = std::mem::take(&mut *results.lock().unwrap());
    let mut sends = Sends::default();
    for (n, _, took, r) in &results {
        sends.attempted.insert(*n);
        match r {
            Ok(()) => {
                sends.confirmed.insert(*n);
            }
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Timeout | ErrorKind::Unavailable),
                    "send {n}: a frozen server gives Timeout or Unavailable, got {e:?}"
                );
                sends.error(*n, e);
            }
        }
        assert!(
            *took <= response_timeout + Duration::from_millis(1500),
            "send {n} took {took:?}: a frozen server must not hang a send"
        );
    }
    let failed_in = |from: Instant, to: Instant| {
        results
            .iter()
            .filter(|(_, t, _, r)| *t >= from && *t <= to && r.is_err())
            .count()
    };
    assert!(
        failed_in(frozen, thawed) > 0,
        "sends during SIGSTOP returned errors"
    );
    assert!(
        failed_in(write_paused, write_paused + Duration::from_millis(1500)) > 0,
        "sends during CLIENT PAUSE returned errors"
    );
    assert!(
        results
            .iter()
            .any(|(_, t, _, r)| *t > write_paused + Duration::from_millis(2000) && r.is_ok()),
        "sends succeed again after the pauses"
    );
    // Never Ok-then-lost; processing resumes.
    wait_until(
        Duration::from_secs(15),
        "every confirmed send is delivered",
        || async {
            let delivered = log.ns();
            let missing: Vec<&i64> = sends.confirmed.difference(&delivered).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(10)).await;
    lp.stop().await?;
    report(
        "row06",
        &sends,
        &log,
        "SIGSTOP 3 s, CLIENT PAUSE WRITE 2 s",
        &q.info().await?,
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 7: connection cut mid-read

fn info_field(server: &RedisServer, section: &str, field: &str) -> u64 {
    let info = server.redis_cli(["INFO", section]).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row07_connection_cut_mid_read() -> TestResult {
    let server = RedisServer::start()?;
    let proxy = Proxy::start(("127.0.0.1", server.port())).await?;
    let direct = open(&server.url(), RedisOptions::default()).await?;
    let (q, _) = direct.create_queue_pair("row07").await?;
    let via_proxy = open(
        &proxy.url(),
        impatient().response_timeout(Duration::from_secs(2)),
    )
    .await?;
    let pq = via_proxy.queue("row07").await?;

    // A consumer blocks in XREADGROUP through the proxy. The link freezes,
    // entries arrive and the server delivers them to it; then the link is cut
    // before the reply gets through: delivered to us, never received.
    let reader = {
        let pq = pq.clone();
        tokio::spawn(async move {
            pq.receive(
                &Receive::new()
                    .count(10)
                    .consumer("victim")
                    .block(Duration::from_secs(10)),
            )
            .await
        })
    };
    wait_until(
        Duration::from_secs(5),
        "the read is blocked in Redis",
        || async {
            match info_field(&server, "clients", "blocked_clients") {
                1 => Ok(()),
                n => Err(format!("blocked_clients {n}")),
            }
        },
    )
    .await;
    proxy.pause();
    // One atomic append: the blocked read wakes to all five at once.
    let batch: Vec<Value> = (0..5).map(|n| json!({"n": n})).collect();
    q.send_batch(&batch).await?;
    wait_until(
        Duration::from_secs(5),
        "Redis delivered the entries to the blocked read",
        || async {
            let info = q.info().await.map_err(|e| e.to_string())?;
            if info.pending == 5 {
                Ok(())
            } else {
                Err(format!("pending {}", info.pending))
            }
        },
    )
    .await;
    proxy.cut();
    proxy.resume();
    let got = reader.await?;
    assert!(
        matches!(
            kinds(&got),
            Some(ErrorKind::Unavailable | ErrorKind::Timeout)
        ),
        "the cut read fails with a typed error, never an empty success: {got:?}"
    );

    // The consumer loop, through the proxy again, gets them back from the
    // pending list after the visibility timeout, delivery count 2.
    let log = Log::default();
    let lp = Loop::acking(pq.clone(), fast().name("victim".into()), &log);
    wait_until(Duration::from_secs(10), "the 5 come back", || async {
        if log.ns().len() == 5 {
            Ok(())
        } else {
            Err(format!("{:?}", log.all()))
        }
    })
    .await;
    assert!(
        log.all().iter().all(|d| d.dc == 2),
        "redelivered from the pending list: {:?}",
        log.all()
    );

    // CLIENT KILL TYPE normal, repeatedly, under a running loop and a producer.
    let stop = Arc::new(AtomicBool::new(false));
    let prod = producer(q.clone(), Duration::from_millis(10), stop.clone());
    let connections = proxy.connections();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = server.redis_cli(["CLIENT", "KILL", "TYPE", "normal"])?;
        assert_ne!(killed, "0", "connections were killed");
        proxy.cut();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let sends = prod.await?;
    wait_until(
        Duration::from_secs(15),
        "every confirmed send is delivered",
        || async {
            let seen: BTreeSet<String> = log.all().into_iter().map(|d| d.message_id).collect();
            let missing: Vec<&i64> = sends
                .confirmed
                .iter()
                .filter(|n| !seen.contains(&format!("m{n}")))
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(10)).await;
    assert!(
        proxy.connections() > connections,
        "the loop reconnected through the proxy"
    );
    let errors = lp.errors();
    lp.stop().await?;
    assert!(errors > 0, "the consumer saw the cuts");
    eprintln!("row07: 5 delivered-but-never-received entries came back with delivery count 2; {} sends confirmed across 3 CLIENT KILLs + cuts; consumer errors {errors}", sends.confirmed.len());
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 11: a message that kills its process every time

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_message_kills_its_process_every_time() -> TestResult {
    use std::os::unix::process::ExitStatusExt;
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let (q, dlq) = mq.create_queue_pair("row11").await?;
    q.send(&json!({"n": 0})).await?;
    q.send(&json!({"n": 1, "abort": true})).await?;
    q.send(&json!({"n": 2})).await?;
    q.send(&json!({"n": 3})).await?;
    let opts = [
        "visibility_ms=400",
        "claim_ms=50",
        "poll_ms=100",
        "concurrency=1",
        "max_deliveries=3",
    ];
    let mut aborts = Vec::new();
    let mut done = BTreeSet::new();
    // Restart the worker each time it dies, as a supervisor would.
    for run in 1..=8 {
        let mut w = Worker::consume(&server.url(), "row11", &opts);
        let settled = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if w.child.try_wait()?.is_some() {
                    return Ok::<bool, std::io::Error>(false);
                }
                let finished = dlq.peek(10).await.map(|d| d.len() == 1).unwrap_or(false)
                    && done.union(&w.ns("done")).count() == 3;
                if finished {
                    return Ok(true);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|_| {
            format!(
                "run {run}: the worker neither died nor finished: {:?}",
                w.lines()
            )
        })??;
        if settled {
            done.extend(w.ns("done"));
            w.signal("TERM");
            assert!(w.wait_exit(Duration::from_secs(10)).await.success());
            break;
        }
        let status = w.wait_exit(Duration::from_secs(5)).await;
        assert_eq!(
            status.signal(),
            Some(6),
            "run {run}: the handler aborts the process: {status:?}"
        );
        let abort = w
            .events()
            .into_iter()
            .find(|e| e.0 == "abort")
            .expect("an abort line");
        aborts.push(abort.2);
        done.extend(w.ns("done"));
    }
    assert_eq!(
        aborts,
        [1, 2, 3],
        "delivery count rises with each reclaim, up to max_deliveries"
    );
    assert_eq!(
        done,
        BTreeSet::from([0, 2, 3]),
        "the other messages were handled"
    );
    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data["n"], 1);
    let reason = &dead[0].failures()[0].reason;
    assert!(
        reason.contains("delivered 4 times (max_deliveries 3)"),
        "{reason}"
    );
    assert!(
        reason.contains("never finished"),
        "no handler ever returned: {reason}"
    );
    wait_drained(&q, Duration::from_secs(5)).await;
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 16: publish retried after a lost reply

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row16_publish_retried_after_lost_reply() -> TestResult {
    let server = RedisServer::start()?;
    let proxy = Proxy::start(("127.0.0.1", server.port())).await?;
    let bus = Bus::open(&server.url()).await?;
    let publisher = Bus::new(
        EddyBuilder::new(proxy.url())
            .prefix("events:")
            .redis_options(impatient())
            .open()
            .await?,
    )
    .await?;
    let calls = Arc::new(AtomicU64::new(0));
    bus.subscribe("row16-svc", &Subscription::types(["OrderCreatedEvent"]))
        .await?;
    // Load the publish script, so the swallowed reply is the publish's own.
    publisher.publish(&order("warm-up")).await?;
    let q = bus.subscription_queue("row16-svc").await?;
    let warm = q.receive(&Receive::new().consumer("warm-up")).await?;
    q.ack(&[warm[0].id]).await?;

    let env = Envelope::new(&order("o16"))?;
    proxy.drop_replies(1);
    let first = publisher.publish_envelope(&env).await;
    assert_eq!(proxy.dropped_replies(), 1);
    let e = first.expect_err("the reply was lost: the publisher must get an error, not Ok");
    assert!(e.is_retryable(), "{e:?}");
    // Retry with the same envelope until confirmed.
    let mut attempts = 1;
    loop {
        attempts += 1;
        match publisher.publish_envelope(&env).await {
            Ok(sent) => {
                assert_eq!(sent.event_id, env.event_id);
                break;
            }
            Err(e) if e.is_retryable() && attempts < 20 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let copies = q.peek(10).await?[1..].to_vec();
    assert!(
        copies.len() >= 2,
        "the lost-reply publish was carried out: {copies:?}"
    );
    assert!(
        copies.iter().all(|m| m.message_id == env.event_id),
        "duplicates carry the same event id"
    );

    let c = calls.clone();
    let svc = Service::builder("row16-svc", bus.clone())
        .consumer_options(fast())
        .on(move |_ctx: Context, _e: OrderCreatedEvent| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .start()
        .await?;
    let dupes = copies.len() as u64 - 1;
    wait_until(
        Duration::from_secs(10),
        "the duplicates are dropped",
        || async {
            let m = svc.metrics();
            if m.duplicates == dupes && m.handled() == 1 {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran once");
    eprintln!("row16: {} copies of one event after {attempts} publish attempts; duplicates dropped {dupes}", copies.len());
    stop_service(svc).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 17: client clocks skewed — TTL and delay use the server's clock

/// Redis: the client sends durations only; the server turns them into
/// deadlines with its own clock (`TIME` in the script). MONITOR shows what
/// the client sent; the TTL index and the delayed set show what the server
/// computed, next to the server's `TIME`. A client clock set to any value
/// could not move a deadline, because no client time is sent for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row17_ttl_and_delay_use_the_server_clock() -> TestResult {
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let (q, _) = mq.create_queue_pair("row17").await?;
    let server_ms = || -> u64 {
        let t = server.redis_cli(["TIME"]).expect("TIME");
        let mut it = t
            .lines()
            .map(|l| l.trim().parse::<u64>().expect("a number"));
        let (s, us) = (it.next().expect("seconds"), it.next().expect("micros"));
        s * 1000 + us / 1000
    };

    let before = server_ms();
    let id = q
        .send_with(
            &json!({"n": 1}),
            &SendOptions::new().ttl(Duration::from_secs(3600)),
        )
        .await?;
    let after = server_ms();
    let id = id.expect("an undelayed send has an id");
    let score = server.redis_cli(["ZSCORE", "rt:row17:expiry", &id.to_string()])?;
    let expire_ms = (score.parse::<f64>()? * 1000.0).round() as u64;
    assert!(
        expire_ms >= before + 3_600_000 - 1 && expire_ms <= after + 3_600_000 + 1,
        "expiry {expire_ms} = server TIME ({before}..{after}) + 1 h"
    );
    assert!(
        id.ms >= before && id.ms <= after,
        "the id is the server's clock too"
    );

    let before = server_ms();
    assert_eq!(
        q.send_with(
            &json!({"n": 2}),
            &SendOptions::new().delay(Duration::from_millis(1500))
        )
        .await?,
        None
    );
    let after = server_ms();
    let due = server.redis_cli(["ZRANGE", "rt:row17:delayed", "0", "0", "WITHSCORES"])?;
    let due_ms: u64 = due.lines().last().expect("a score").trim().parse()?;
    assert!(
        due_ms >= before + 1500 && due_ms <= after + 1500,
        "due {due_ms} = server TIME ({before}..{after}) + 1.5 s"
    );

    // What the client sent: durations, never a deadline. The deadline's
    // seconds appear nowhere in the call (a deadline an hour ahead cannot be
    // the `_metadata.timestamp` of a message stamped now).
    let monitor = Monitor::start(&server).await;
    q.send_with(
        &json!({"n": 3}),
        &SendOptions::new().ttl(Duration::from_secs(3600)),
    )
    .await?;
    let lines = {
        server.redis_cli(["ECHO", "row17-sent"])?;
        wait_until(Duration::from_secs(5), "MONITOR shows the send", || async {
            let l = monitor.lines.lock().unwrap();
            if l.iter().any(|x| x.contains("row17-sent")) {
                Ok(())
            } else {
                Err(format!("{l:?}"))
            }
        })
        .await;
        monitor.lines.lock().unwrap().clone()
    };
    let call = lines
        .iter()
        .find(|l| l.contains("\"EVALSHA\""))
        .expect("the append call");
    assert!(
        call.contains("\"3600000\""),
        "the TTL travels as a duration: {call}"
    );
    let zadd = lines
        .iter()
        .find(|l| l.contains("[0 lua]") && l.contains("\"ZADD\""))
        .expect("the script indexes the TTL");
    let deadline = zadd.split('"').nth(5).expect("the ZADD score").to_owned();
    let deadline_secs = deadline.split('.').next().unwrap_or_default();
    assert!(
        !call.contains(deadline_secs),
        "the deadline {deadline} was computed by the server, not sent: {call}"
    );

    // And the delay is honoured by the server's clock.
    assert!(
        q.receive(&Receive::new().count(10)).await?.len() == 2,
        "the two undelayed ones"
    );
    wait_until(
        Duration::from_secs(5),
        "the delayed message is due",
        || async {
            let got = q
                .receive(&Receive::new())
                .await
                .map_err(|e| e.to_string())?;
            match got.first() {
                Some(m) if m.data["n"] == 2 => {
                    let now = server_ms();
                    if now >= due_ms {
                        Ok(())
                    } else {
                        Err(format!("delivered at {now}, before {due_ms}"))
                    }
                }
                Some(m) => Err(format!("unexpected {m:?}")),
                None => Err("not yet".into()),
            }
        },
    )
    .await;
    Ok(())
}

/// Embedded: the engine's clock follows `tokio::time`; advance it by an hour
/// while this process's wall clock moves by milliseconds. TTL and delay go
/// by the engine's clock.
#[tokio::test(start_paused = true)]
async fn row17_ttl_and_delay_use_the_engine_clock_memory() -> TestResult {
    let mq = open("memory://", RedisOptions::default()).await?;
    let (q, _) = mq.create_queue_pair("row17").await?;
    let wall = std::time::SystemTime::now();
    q.send_with(
        &json!({"n": 1}),
        &SendOptions::new().ttl(Duration::from_secs(60)),
    )
    .await?;
    q.send_with(
        &json!({"n": 2}),
        &SendOptions::new().delay(Duration::from_secs(60)),
    )
    .await?;
    q.send(&json!({"n": 3})).await?;
    let engine_before = mq.engine().now_ms().await?;
    tokio::time::advance(Duration::from_secs(3600)).await;
    let engine_after = mq.engine().now_ms().await?;
    assert!(
        engine_after - engine_before >= 3_599_000,
        "the engine's clock moved an hour: {engine_before} -> {engine_after}"
    );
    let got: Vec<i64> = q
        .receive(&Receive::new().count(10))
        .await?
        .iter()
        .map(|m| m.data["n"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(got, [3, 2], "the TTL'd one expired, the delayed one is due");
    let moved = wall.elapsed().unwrap_or_default();
    assert!(
        moved < Duration::from_secs(60),
        "the wall clock moved only {moved:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 19: stream or group deleted under running consumers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row19_stream_or_group_deleted_under_consumers() -> TestResult {
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let (q, _) = mq.create_queue_pair("row19").await?;
    let log = Log::default();
    let lp = Loop::acking(q.clone(), fast(), &log);
    q.send(&json!({"n": 0})).await?;
    wait_until(Duration::from_secs(5), "the loop runs", || async {
        if log.ns().contains(&0) {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let nogroup = || -> u64 {
        let info = server.redis_cli(["INFO", "errorstats"]).expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("errorstat_NOGROUP:count="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    for (step, fault) in [
        ("DEL", vec!["DEL", "rt:row19"]),
        (
            "XGROUP DESTROY",
            vec!["XGROUP", "DESTROY", "rt:row19", "row19-group"],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (name, args) = fault;
        let n = step as i64 + 1;
        let (errors_before, nogroup_before) = (lp.errors(), nogroup());
        server.redis_cli(&args)?;
        // A typed error for anyone reading now.
        let r = q.receive(&Receive::new().consumer("probe")).await;
        assert_eq!(kinds(&r), Some(ErrorKind::NoGroup), "{name}: {r:?}");
        if name == "DEL" {
            // A send fails rather than recreate the stream without its
            // group; it succeeds once the queue is recreated, below.
            let r = q.send(&json!({"n": n})).await;
            assert_eq!(kinds(&r), Some(ErrorKind::StreamMissing), "{name}: {r:?}");
        } else {
            // The stream is there: the message waits for the group.
            q.send(&json!({"n": n})).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let errors = lp.errors() - errors_before;
        let server_errors = nogroup() - nogroup_before;
        assert!(errors >= 2, "{name}: errors are counted ({errors})");
        assert!(
            // Redis counts an error inside a script twice (the command and
            // the script); without backoff these would be in the thousands.
            errors <= 15 && server_errors <= 40,
            "{name}: backoff, no hot loop: {errors} loop errors, {server_errors} NOGROUP replies in 2 s"
        );
        assert!(
            !log.ns().contains(&n),
            "{name}: nothing handled without a group"
        );
        // The loop never recreates the group by itself: that is a choice.
        let groups = server.redis_cli(["XINFO", "GROUPS", "rt:row19"])?;
        assert!(
            !groups.contains("row19-group"),
            "{name}: the group was recreated behind our back: {groups}"
        );
        // Recreating is explicit; then the loop resumes.
        mq.create_queue_pair("row19").await?;
        if name == "DEL" {
            q.send(&json!({"n": n})).await?;
        }
        wait_until(
            Duration::from_secs(8),
            &format!("the loop resumes after {name}"),
            || async {
                if log.ns().contains(&n) {
                    Ok(())
                } else {
                    Err(format!("{:?}", log.all()))
                }
            },
        )
        .await;
        eprintln!("row19 {name}: {errors} loop errors, {server_errors} NOGROUP replies in 2 s, resumed after recreation");
    }
    lp.stop().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 20: Redis out of memory

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row20_redis_out_of_memory() -> TestResult {
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let bus = Bus::new(
        EddyBuilder::new(server.url())
            .prefix("events:")
            .open()
            .await?,
    )
    .await?;
    let (q, _) = mq.create_queue_pair("row20").await?;
    let mut subs = Vec::new();
    for s in ["svc-a", "svc-b", "svc-c"] {
        subs.push(
            bus.subscribe(s, &Subscription::types(["OrderCreatedEvent"]))
                .await?,
        );
    }
    bus.publish(&order("before")).await?;
    for n in 0..5 {
        q.send(&json!({"n": n})).await?;
    }
    // One delayed message, due while Redis is out of memory.
    q.send_with(
        &json!({"n": 5}),
        &SendOptions::new().delay(Duration::from_millis(50)),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(100)).await; // now due
                                                          // Fill memory past the limit, with nothing evictable.
    server.redis_cli(["CONFIG", "SET", "maxmemory-policy", "noeviction"])?;
    server.redis_cli(["SETRANGE", "filler", "4000000", "x"])?;
    let used = info_field(&server, "memory", "used_memory");
    server.redis_cli([
        "CONFIG",
        "SET",
        "maxmemory",
        &(used - 1_000_000).to_string(),
    ])?;
    assert!(
        server.redis_cli(["SET", "probe", "x"])?.starts_with("OOM"),
        "Redis is out of memory"
    );

    let r = q.send(&json!({"n": 99})).await;
    assert_eq!(kinds(&r), Some(ErrorKind::OutOfMemory), "{r:?}");
    assert!(r.err().is_some_and(|e| e.is_retryable()));
    let all_log = bus.queues().queue("all").await?;
    let lengths = || async {
        let mut out: Vec<u64> = Vec::new();
        for q in subs.iter().chain([&all_log]) {
            out.push(q.info().await?.length);
        }
        Ok::<_, eddy::Error>(out)
    };
    let before = lengths().await?;
    let r = bus.publish(&order("during-oom")).await;
    assert_eq!(kinds(&r), Some(ErrorKind::OutOfMemory), "{r:?}");
    let after = lengths().await?;
    assert_eq!(
        before, after,
        "the fan-out to 3 services wrote to none of them (nor the log)"
    );

    // Consumers keep reading what is there and acknowledging it, even with
    // a delayed message due that cannot be moved into the stream now.

    // (Promotion of the due delayed message pcalls its XADD, so OOM leaves
    // it delayed instead of failing the read.)
    let log = Log::default();
    let lp = Loop::acking(q.clone(), fast(), &log);
    wait_until(
        Duration::from_secs(10),
        "the 5 messages are handled and acknowledged during the OOM",
        || async {
            let info = q.info().await.map_err(|e| e.to_string())?;
            let handled = log.ns();
            if (0..5).all(|n| handled.contains(&n)) && info.pending == 0 && info.lag == 0 {
                Ok(())
            } else {
                Err(format!(
                    "handled {handled:?}, pending {}, lag {}, loop errors {}",
                    info.pending,
                    info.lag,
                    lp.errors()
                ))
            }
        },
    )
    .await;
    assert!(
        server.redis_cli(["SET", "probe", "x"])?.starts_with("OOM"),
        "still out of memory"
    );

    // Memory freed: sends work again, the delayed message comes through.
    server.redis_cli(["DEL", "filler"])?;
    server.redis_cli(["CONFIG", "SET", "maxmemory", "0"])?;
    q.send(&json!({"n": 100})).await?;
    assert_eq!(bus.publish(&order("after")).await?.delivered_to.len(), 3);
    wait_until(Duration::from_secs(10), "the rest is handled", || async {
        let handled = log.ns();
        if handled.contains(&5) && handled.contains(&100) {
            Ok(())
        } else {
            Err(format!("{handled:?}"))
        }
    })
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    lp.stop().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 21: subscriptions made in another process

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row21_subscriptions_made_in_another_process() -> TestResult {
    let server = RedisServer::start()?;
    let url = server.url();
    let bus = Bus::open(&url).await?;
    let url_arg = format!("url={url}");
    // Another OS process subscribes `audit` ...
    let out = run_worker(&[
        "subscribe",
        &url_arg,
        "service=audit",
        "types=OrderCreatedEvent",
    ]);
    assert_eq!(out, "subscribed");
    // ... and this one `billing`.
    let billing = bus
        .subscribe("billing", &Subscription::types(["OrderCreatedEvent"]))
        .await?;
    // Publishing here reaches the other process's subscription...
    let sent = bus.publish(&order("o1")).await?;
    assert_eq!(sent.delivered_to, ["audit", "billing"]);
    let audit = bus.subscription_queue("audit").await?;
    assert_eq!(audit.receive(&Receive::new().count(10)).await?.len(), 1);
    // ...and publishing there reaches ours: both processes route the same way.
    let data = r#"{"order_id": "o2", "total": 2.5}"#;
    let out = run_worker(&[
        "publish",
        &url_arg,
        "type=OrderCreatedEvent",
        &format!("data={data}"),
    ]);
    let mut words = out.split(' ');
    assert_eq!(words.next(), Some("published"));
    let event_id = words.next().unwrap_or_default().to_owned();
    assert_eq!(words.next(), Some("audit,billing"), "{out}");
    let got = billing.receive(&Receive::new().count(10)).await?;
    let events: Vec<Envelope> = got
        .iter()
        .map(Envelope::from_message)
        .collect::<eddy::Result<_>>()?;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].event_id, event_id);
    assert_eq!(events[1].decode::<OrderCreatedEvent>()?.order_id, "o2");
    // An unsubscription there changes routing here.
    assert_eq!(
        run_worker(&[
            "unsubscribe",
            &url_arg,
            "service=audit",
            "types=OrderCreatedEvent"
        ]),
        "unsubscribed"
    );
    assert_eq!(bus.publish(&order("o3")).await?.delivered_to, ["billing"]);
    assert_eq!(bus.subscribers("OrderCreatedEvent").await?, ["billing"]);
    Ok(())
}

// ---------------------------------------------------------------------------
// Row 22: consumer SIGKILLed with a retry parked past the visibility timeout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row22_consumer_sigkilled_with_a_parked_retry() -> TestResult {
    let later = Duration::from_millis(4000);
    let server = RedisServer::start()?;
    let mq = open(&server.url(), RedisOptions::default()).await?;
    let (q, _) = mq.create_queue_pair("row22").await?;
    let parked_id = q
        .send(&json!({"n": 0, "park_ms": later.as_millis() as u64}))
        .await?;
    q.send(&json!({"n": 1, "slow": true})).await?;
    // One handler at a time: n = 1 starts only once n = 0's retry is
    // written, so the kill lands after the park and mid-handler of n = 1.
    let opts = ["visibility_ms=1000", "claim_ms=100", "concurrency=1"];
    let mut a = Worker::consume(
        &server.url(),
        "row22",
        &[&opts[..], &["name=worker-a"]].concat(),
    );
    a.wait_for_line(
        Duration::from_secs(10),
        "worker A parked n = 0 and started n = 1",
        |l| l.iter().any(|(_, s)| s.starts_with("start 1 ")),
    )
    .await;
    a.child.kill()?; // SIGKILL: no drain, no release, no final ack
    a.wait_exit(Duration::from_secs(5)).await;
    let a_events = a.events();
    let (_, _, _, parked_seen) = a_events
        .iter()
        .find(|e| e.0 == "park" && e.1 == 0)
        .cloned()
        .unwrap_or_else(|| panic!("A never parked n = 0: {:?}", a.lines()));

    // Nothing is lost: n = 0 parked for A (count 1), n = 1 pending for A.
    let parked = q.parked().await?;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(
        (
            parked[0].id,
            parked[0].consumer.as_str(),
            parked[0].delivery_count
        ),
        (parked_id, "worker-a", 1)
    );
    let info = q.info().await?;
    assert_eq!((info.pending, info.delayed, info.lag), (2, 1, 0));

    // B takes both over: n = 1 after the visibility timeout, n = 0 once due.
    let mut b = Worker::consume(
        &server.url(),
        "row22",
        &[&opts[..], &["name=worker-b", "slow_ms=0"]].concat(),
    );
    wait_until(
        Duration::from_secs(15),
        "worker B handled both messages",
        || async {
            let done = b.ns("done");
            if done == BTreeSet::from([0, 1]) {
                Ok(())
            } else {
                Err(format!("{:?}", b.lines()))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    let starts: Vec<(i64, u64, Instant)> = b
        .events()
        .into_iter()
        .filter(|e| e.0 == "start")
        .map(|e| (e.1, e.2, e.3))
        .collect();
    assert_eq!(
        starts.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![(1, 2), (0, 2)],
        "once each, delivery count 2: {:?}",
        b.lines()
    );
    // The park line is printed just before the park is written, and read
    // by a thread: a little slack.
    let waited = starts[1].2.duration_since(parked_seen);
    assert!(
        waited + Duration::from_millis(250) >= later,
        "n = 0 came back {waited:?} after it was parked for {later:?}"
    );
    b.signal("TERM");
    assert!(b.wait_exit(Duration::from_secs(10)).await.success());
    eprintln!("row22: n = 0 parked by A came back to B after {waited:?}; n = 1 reclaimed");
    Ok(())
}
