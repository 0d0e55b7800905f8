//! `eddy queue receive --follow --ack --json` under faults: several follower
//! processes share a queue while some are SIGKILLed and restarted and the
//! redis-server under them is killed (kill -9) and restarted on the same port
//! and data directory with `appendfsync always`. A producer sends messages
//! with unique sequence numbers the whole time, retrying failed sends. In the
//! end every confirmed message was printed by some follower, and nothing is
//! left pending once the survivors have drained the queue.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use eddy::engine::redis::RedisOptions;
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

const QUEUE: &str = "jobs";
const MESSAGES: u64 = 3_000;
const FOLLOWERS: usize = 3;
/// Sends in flight at once.
const SENDERS: u64 = 8;
const VISIBILITY: &str = "1s";
/// The whole test must stay well under a minute.
const DEADLINE: Duration = Duration::from_secs(50);

/// Sequence number -> how many times it was printed, over every follower.
type Printed = Arc<Mutex<BTreeMap<u64, u32>>>;

/// Lines printed with a delivery count above 1 (taken over from a dead
/// consumer, or read again after a lost reply).
static REDELIVERED: AtomicU64 = AtomicU64::new(0);

/// One `eddy queue receive --follow` process and the thread reading its
/// stdout.
struct Follower {
    child: Child,
    reader: Option<JoinHandle<()>>,
    stderr: PathBuf,
}

impl Follower {
    fn spawn(url: &str, dir: &Path, n: usize, printed: &Printed) -> Self {
        let stderr = dir.join(format!("follower-{n}.stderr"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["--url", url, "--json", "queue", "receive", QUEUE])
            .args(["--follow", "--ack", "--count", "8"])
            .args(["--visibility-timeout", VISIBILITY])
            .env_remove("EDDY_URL")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("create a stderr file"))
            .spawn()
            .expect("run the eddy binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let printed = printed.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("read a follower's stdout");
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("follower {n} printed {line:?}: {e}"));
                let seq = v["data"]["seq"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("no data.seq in {line}"));
                if v["delivery_count"].as_u64() > Some(1) {
                    REDELIVERED.fetch_add(1, Ordering::Relaxed);
                }
                *printed.lock().unwrap().entry(seq).or_default() += 1;
            }
        });
        Self {
            child,
            reader: Some(reader),
            stderr,
        }
    }

    /// SIGKILL, then wait for its output to be read to the end.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL a follower");
        self.child.wait().expect("wait for a follower");
        self.join_reader();
    }

    /// SIGTERM, then wait (bounded) for its exit status.
    fn terminate(&mut self, within: Duration) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s TERM failed: {status}");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for a follower") {
                self.join_reader();
                return status.code();
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("a follower's stdout reader panicked");
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Send `MESSAGES` messages `{"seq": n}`, retrying each until a send returns
/// success; returns the confirmed sequence numbers.
impl Drop for Follower {
    /// A failing test must not leave followers running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn produce(url: String, stop: Arc<AtomicBool>) -> JoinHandle<(BTreeSet<u64>, u64)> {
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let mq = eddy::EddyBuilder::new(&url)
                .redis_options(
                    RedisOptions::default()
                        .response_timeout(Duration::from_secs(2))
                        .connect_attempts(10),
                )
                .open()
                .await
                .expect("connect the producer");
            let queue = mq.queue(QUEUE).await.expect("the queue exists");
            let mut senders = Vec::new();
            for lane in 0..SENDERS {
                let (queue, stop) = (queue.clone(), stop.clone());
                senders.push(tokio::spawn(async move {
                    let (mut confirmed, mut failed) = (BTreeSet::new(), 0u64);
                    for seq in (lane..MESSAGES).step_by(SENDERS as usize) {
                        while !stop.load(Ordering::Relaxed) {
                            match queue.send(&json!({ "seq": seq })).await {
                                Ok(_) => {
                                    confirmed.insert(seq);
                                    break;
                                }
                                Err(_) => {
                                    // Unknown outcome or refused: send it again
                                    // (a duplicate is fine, a gap is not).
                                    failed += 1;
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                    }
                    (confirmed, failed)
                }));
            }
            let (mut confirmed, mut failed) = (BTreeSet::new(), 0);
            for s in senders {
                let (c, f) = s.await.expect("a sender task panicked");
                confirmed.extend(c);
                failed += f;
            }
            (confirmed, failed)
        })
    })
}

fn eddy_json(url: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--url", url, "--json"])
        .args(args)
        .env_remove("EDDY_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the eddy binary");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Wait until `done()` or the deadline; returns whether it happened.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    done()
}

#[test]
fn followers_print_every_confirmed_message_through_consumer_and_redis_crashes() {
    let started = Instant::now();
    let deadline = started + DEADLINE;
    let logs = tempfile::tempdir().expect("a temp dir");
    let mut redis = RedisServer::builder()
        .appendonly(true) // appendfsync always: a confirmed send survives kill -9
        .start()
        .expect("start redis-server");
    let url = redis.url();
    assert!(eddy_json(&url, &["queue", "create", QUEUE]).is_some());

    let printed: Printed = Arc::default();
    let mut spawned = 0;
    let mut followers: Vec<Follower> = (0..FOLLOWERS)
        .map(|_| {
            spawned += 1;
            Follower::spawn(&url, logs.path(), spawned, &printed)
        })
        .collect();
    let mut retired = Vec::new();

    let stop = Arc::new(AtomicBool::new(false));
    let producer = produce(url.clone(), stop.clone());
    let printed_so_far = || printed.lock().unwrap().len() as u64;

    // Faults while messages flow, each once the followers have printed a
    // further share of the messages (so each one hits a busy queue).
    #[derive(Debug)]
    enum Fault {
        KillFollower(usize),
        KillRedis,
    }
    let schedule = [
        Fault::KillFollower(0),
        Fault::KillRedis,
        Fault::KillFollower(1),
        Fault::KillRedis,
        Fault::KillFollower(2),
        Fault::KillRedis,
    ];
    let step = MESSAGES / (schedule.len() as u64 + 1);
    for (i, fault) in schedule.iter().enumerate() {
        let target = step * (i as u64 + 1);
        assert!(
            wait_until(deadline, || printed_so_far() >= target),
            "stuck before fault {fault:?}: {} of {MESSAGES} printed",
            printed_so_far()
        );
        match fault {
            Fault::KillFollower(slot) => {
                followers[*slot].kill();
                spawned += 1;
                let restarted = Follower::spawn(&url, logs.path(), spawned, &printed);
                retired.push(std::mem::replace(&mut followers[*slot], restarted));
            }
            Fault::KillRedis => {
                redis.kill().expect("kill -9 redis-server");
                thread::sleep(Duration::from_millis(300));
                redis.restart().expect("restart redis-server on its AOF");
            }
        }
    }

    let joined = wait_until(deadline, || producer.is_finished());
    stop.store(true, Ordering::Relaxed);
    let (confirmed, failed_sends) = producer.join().expect("the producer panicked");
    assert!(joined, "the producer did not finish in time");
    assert_eq!(
        confirmed.len() as u64,
        MESSAGES,
        "every message is eventually confirmed"
    );

    let missing = || -> Vec<u64> {
        let printed = printed.lock().unwrap();
        confirmed
            .iter()
            .filter(|s| !printed.contains_key(s))
            .copied()
            .collect()
    };
    let all_printed = wait_until(deadline, || missing().is_empty());
    let info = || eddy_json(&url, &["queue", "info", QUEUE]).unwrap_or_default();
    let drained = wait_until(deadline, || {
        let i = info();
        i["pending"] == 0 && i["lag"] == 0
    });

    let exits: Vec<Option<i32>> = followers
        .iter_mut()
        .map(|f| f.terminate(Duration::from_secs(10)))
        .collect();
    let diagnostics = || {
        followers
            .iter()
            .chain(&retired)
            .map(|f| format!("--- {}\n{}", f.stderr.display(), f.stderr()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let missing = missing();
    assert!(
        all_printed && missing.is_empty(),
        "{} confirmed messages never printed, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        diagnostics()
    );
    let final_info = info();
    assert!(
        drained && final_info["pending"] == 0 && final_info["lag"] == 0,
        "queue not drained: {final_info}\n{}",
        diagnostics()
    );
    assert_eq!(
        exits,
        vec![Some(0); FOLLOWERS],
        "SIGTERM stops a follower with status 0\n{}",
        diagnostics()
    );

    let printed = printed.lock().unwrap();
    let unexpected: Vec<_> = printed.keys().filter(|s| **s >= MESSAGES).collect();
    assert!(
        unexpected.is_empty(),
        "printed but never sent: {unexpected:?}"
    );
    let duplicates: u32 = printed.values().map(|n| n - 1).sum();
    eprintln!(
        "follow: {} confirmed, {} printed ({duplicates} duplicates, {} with delivery count > 1), {failed_sends} failed sends retried, {} followers killed, 3 Redis crashes, {:.1}s",
        confirmed.len(),
        printed.len(),
        REDELIVERED.load(Ordering::Relaxed),
        retired.len(),
        started.elapsed().as_secs_f64()
    );
}
