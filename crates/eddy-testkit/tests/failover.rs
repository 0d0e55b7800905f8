//! Fault rows 22 and 23 of RELIABILITY.md: a Redis Cluster and a Sentinel
//! deployment losing or handing over their master under load.
//!
//! Each test runs a producer (a send every few milliseconds, each retried
//! with its message id until confirmed) and an acking consumer loop (which
//! also reclaims) on one queue, injects the fault, keeps the load on, and
//! then checks the fault report: every send confirmed before the last
//! replication check is delivered (lost = 0), nothing arrives that was never
//! sent, the queue ends drained, and the consumer resumed within a bound. A
//! SIGKILLed master takes with it what it confirmed but had not replicated
//! yet (Redis replicates asynchronously); the report counts those apart.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::{Eddy, EddyBuilder, Queue};
use eddy_testkit::conformance::faults::fast;
use eddy_testkit::conformance::support::{wait_drained, wait_until, Log, Loop};
use eddy_testkit::fault_report::{producer, report_replicated, Sends};
use eddy_testkit::{RedisCluster, RedisSentinel, RedisServer, CLUSTER_NODE_TIMEOUT};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How long the consumer may stall after a fault: the time the topology
/// takes to promote a replica, plus the 2 s of the target, plus slack for a
/// loaded 2-core machine. The figure measured is printed.
fn stall_bound(promotion: Duration) -> Duration {
    promotion + Duration::from_secs(2) + Duration::from_secs(8)
}

/// Waits until `replica` has received every write `master` had made when
/// this was called; returns that moment (every send confirmed before it is
/// on the replica).
fn replicated(master: &RedisServer, replica: &RedisServer) -> Instant {
    let at = Instant::now();
    let offset = |server: &RedisServer, field: &str| -> u64 {
        server
            .redis_cli(["INFO", "replication"])
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let target = offset(master, "master_repl_offset:");
    let deadline = Instant::now() + Duration::from_secs(10);
    while offset(replica, "slave_repl_offset:") < target {
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up in 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    at
}

/// A producer and an acking consumer on one queue.
struct Load {
    q: Queue,
    log: Log,
    consumer: Loop,
    stop: Arc<AtomicBool>,
    producer: tokio::task::JoinHandle<Sends>,
}

impl Load {
    async fn start(url: &str, queue: &str) -> Result<Self, Box<dyn std::error::Error>> {
        // eddy's warnings (retries, reconnects) in the test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("eddy=warn")),
            )
            .with_test_writer()
            .try_init();
        let mq = open(url).await?;
        let (q, _) = mq.create_queue_pair(queue).await?;
        // The consumer on a connection of its own, as another process's.
        let consumer_q = open(url).await?.queue(queue).await?;
        let log = Log::default();
        let opts = fast()
            .visibility_timeout(Duration::from_secs(2))
            .claim_interval(Duration::from_millis(200));
        let consumer = Loop::acking(consumer_q, opts, &log);
        let stop = Arc::new(AtomicBool::new(false));
        let producer = producer(q.clone(), Duration::from_millis(3), stop.clone());
        Ok(Self {
            q,
            log,
            consumer,
            stop,
            producer,
        })
    }

    /// Waits until a message sent after `since` is delivered: how long the
    /// consumer stalled.
    async fn resumed(&self, since: Instant, bound: Duration) -> Duration {
        let seen = self.log.ns().last().copied().unwrap_or(-1);
        loop {
            if self.log.ns().last().is_some_and(|&n| n > seen + 5) {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < bound,
                "the consumer did not resume within {bound:?} of the fault"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the producer, waits for every send confirmed before
    /// `replicated_before` to be delivered and the queue to drain, and
    /// checks the report.
    async fn finish(self, row: &str, faults: &str, replicated_before: Instant) -> TestResult {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.stop.store(true, Ordering::SeqCst);
        let sends = self.producer.await?;
        let must: BTreeSet<i64> = sends
            .confirmed_at
            .iter()
            .filter(|(_, at)| **at < replicated_before)
            .map(|(n, _)| *n)
            .collect();
        let log = &self.log;
        wait_until(
            Duration::from_secs(30),
            "every send confirmed and replicated is delivered",
            || async {
                let missing: Vec<i64> = must.difference(&log.ns()).copied().collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("missing {missing:?}"))
                }
            },
        )
        .await;
        wait_drained(&self.q, Duration::from_secs(30)).await;
        self.consumer.stop().await?;
        report_replicated(
            row,
            &sends,
            &self.log,
            faults,
            &self.q.info().await?,
            Some(replicated_before),
        );
        Ok(())
    }
}

async fn open(url: &str) -> eddy::Result<Eddy> {
    EddyBuilder::new(url).prefix("ft:").open().await
}

/// A queue name whose slot is among the first `within` slots of the master
/// that serves slot 0, so that a reshard of those slots moves it.
fn name_in_first_slots(cluster: &RedisCluster, within: u16) -> String {
    let node = &cluster.nodes()[0];
    (0..10_000)
        .map(|i| format!("row22-{i}"))
        .find(|name| {
            node.redis_cli(["CLUSTER", "KEYSLOT", &format!("ft:{{{name}}}")])
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
                .is_some_and(|slot| slot < within)
        })
        .unwrap_or_else(|| panic!("no name hashes below slot {within}"))
}

// ---- row 22: Redis Cluster ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row22_cluster_master_sigkilled_under_load() -> TestResult {
    let mut cluster = RedisCluster::start(3, 1)?;
    let load = Load::start(&cluster.url(), "row22-kill").await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let master = cluster.master_port_of("ft:{row22-kill}")?;
    let replica = cluster.replica_of(master)?;
    let t0 = {
        let nodes = cluster.nodes();
        let find = |p: u16| nodes.iter().find(|n| n.port() == p).expect("a node");
        tokio::task::block_in_place(|| replicated(find(master), find(replica)))
    };
    let killed = Instant::now();
    let promoted = tokio::task::block_in_place(|| cluster.kill_master(master))?;
    let promotion = killed.elapsed();
    let stall = load.resumed(killed, stall_bound(promotion)).await;
    eprintln!(
        "row22 kill: master :{master} SIGKILLed, replica :{promoted} serving after {promotion:?}; \
         consumer resumed {stall:?} after the kill (node timeout {CLUSTER_NODE_TIMEOUT:?})"
    );
    load.finish(
        "row22 kill",
        "SIGKILL of the queue's master; its replica promoted",
        t0,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row22_cluster_failover_under_load() -> TestResult {
    let mut cluster = RedisCluster::start(3, 1)?;
    let load = Load::start(&cluster.url(), "row22-failover").await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let master = cluster.master_port_of("ft:{row22-failover}")?;
    let replica = cluster.replica_of(master)?;
    let started = Instant::now();
    tokio::task::block_in_place(|| cluster.failover(replica))?;
    let took = started.elapsed();
    let stall = load.resumed(started, stall_bound(took)).await;
    eprintln!("row22 failover: CLUSTER FAILOVER to :{replica} took {took:?}; consumer resumed after {stall:?}");
    // A manual failover waits for the replica to catch up before it
    // switches: everything confirmed before it started is on the new master.
    load.finish(
        "row22 failover",
        "CLUSTER FAILOVER of the queue's master",
        started,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row22_cluster_reshard_under_load() -> TestResult {
    let mut cluster = RedisCluster::start(3, 1)?;
    let queue = name_in_first_slots(&cluster, 200);
    let load = Load::start(&cluster.url(), &queue).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let from = cluster.master_port_of(&format!("ft:{{{queue}}}"))?;
    let to = cluster
        .masters()?
        .into_iter()
        .map(|n| n.port)
        .find(|&p| p != from)
        .expect("another master");
    let started = Instant::now();
    let out = tokio::task::block_in_place(|| cluster.reshard(from, to, 200))?;
    let took = started.elapsed();
    assert_eq!(
        cluster.master_port_of(&format!("ft:{{{queue}}}"))?,
        to,
        "the queue's slot moved: {out}"
    );
    eprintln!("row22 reshard: 200 slots (with queue `{queue}`) moved :{from} -> :{to} in {took:?}");
    // Nothing is killed: everything confirmed is on a live node.
    load.finish(
        "row22 reshard",
        "redis-cli --cluster reshard of the queue's slot under load",
        Instant::now(),
    )
    .await
}

// ---- row 23: Sentinel ----

/// A Sentinel deployment (master, one replica, three Sentinels) under load
/// loses its master to `fault`, which returns the promoted server's port.
async fn sentinel_fault(
    row: &str,
    queue: &str,
    faults: &str,
    fault: impl FnOnce(&mut RedisSentinel) -> std::io::Result<u16>,
) -> TestResult {
    let mut deployment = RedisSentinel::start(1, 3)?;
    let load = Load::start(&deployment.url(), queue).await?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let master = deployment.master_port()?;
    let t0 = {
        let servers = deployment.servers();
        let m = servers.iter().find(|s| s.port() == master).expect("master");
        let r = servers
            .iter()
            .find(|s| s.port() != master)
            .expect("replica");
        tokio::task::block_in_place(|| replicated(m, r))
    };
    let started = Instant::now();
    let promoted = tokio::task::block_in_place(|| fault(&mut deployment))?;
    let took = started.elapsed();
    let stall = load.resumed(started, stall_bound(took)).await;
    eprintln!(
        "{row}: {faults}: master :{master} -> :{promoted} after {took:?}; consumer resumed {stall:?} after the fault"
    );
    load.finish(row, faults, t0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row23_sentinel_master_sigkilled_under_load() -> TestResult {
    sentinel_fault(
        "row23 kill",
        "row23-kill",
        "SIGKILL of the master; Sentinel promoted the replica",
        RedisSentinel::kill_master,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row23_sentinel_failover_under_load() -> TestResult {
    sentinel_fault(
        "row23 failover",
        "row23-failover",
        "SENTINEL FAILOVER",
        RedisSentinel::failover,
    )
    .await
}
