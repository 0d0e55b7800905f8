//! A message that kills its process, among many that do not (RELIABILITY.md
//! row 11 at scale): the restarted worker reclaims the crashed one's backlog
//! in batches, and still takes no bystander to the dead-letter queue. Runs
//! `fault-worker` against a redis-server of its own.
//!
//! The in-process reclaim cases (a crashed consumer's backlog reclaimed in
//! batches, new messages flowing meanwhile) are in the conformance suite
//! (`src/conformance/reclaim.rs`), run on every engine by `tests/engines.rs`.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::EddyBuilder;
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

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
