//! [`RedisCluster`]: a real Redis Cluster of `redis-server` processes, for
//! tests.
//!
//! Every node is a [`RedisServer`] started with `--cluster-enabled yes` on a
//! port at or below 55535 (the cluster bus listens on port + 10000, which
//! must also be free); `redis-cli --cluster create` assigns the slots and the
//! replicas. The nodes are killed when the guard drops.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{RedisServer, RedisServerBuilder};

/// The cluster node timeout the nodes are started with: how long a master
/// may be unreachable before its replica takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long to wait for the cluster to agree on its configuration.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Ports are drawn from this range: below the kernel's ephemeral range
/// (32768+) so a client socket seldom holds one, and far enough below 55535
/// that port + 10000 is a valid bus port.
const PORTS: std::ops::RangeInclusive<u16> = 20000..=30000;

/// A running Redis Cluster owned by a test.
///
/// ```no_run
/// use eddy_testkit::RedisCluster;
///
/// # fn main() -> std::io::Result<()> {
/// let cluster = RedisCluster::start(3, 1)?; // 3 masters, 1 replica each
/// let url = cluster.url(); // redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`, the parts tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node id.
    pub id: String,
    /// Its TCP port.
    pub port: u16,
    /// Whether it is a master (else a replica).
    pub master: bool,
    /// Whether the cluster marks it failed (`fail` or `fail?`).
    pub failed: bool,
    /// For a replica, the id of its master.
    pub master_id: Option<String>,
    /// How many slots it serves.
    pub slots: usize,
    /// The slot ranges it serves (not those being migrated or imported).
    pub ranges: Vec<std::ops::RangeInclusive<u16>>,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each, creates the
    /// cluster and waits until every node reports `cluster_state:ok` and
    /// agrees on all 16384 slots.
    ///
    /// # Errors
    ///
    /// If a node cannot be started, `redis-cli --cluster create` fails, or
    /// the cluster does not settle within 30 s.
    pub fn start(masters: usize, replicas: usize) -> io::Result<Self> {
        Self::start_with(masters, replicas, |builder| builder)
    }

    /// As [`start`](Self::start), with each node's builder adjusted by
    /// `configure` (e.g. `.appendonly(true)` or TLS options).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(
        masters: usize,
        replicas: usize,
        configure: impl Fn(RedisServerBuilder) -> RedisServerBuilder,
    ) -> io::Result<Self> {
        let count = masters * (1 + replicas);
        let mut nodes = Vec::with_capacity(count);
        let mut taken = HashSet::new();
        while nodes.len() < count {
            let port = cluster_port(&mut taken)?;
            let builder = configure(
                RedisServer::builder()
                    .port(port)
                    .arg("--cluster-enabled", "yes")
                    .arg("--cluster-config-file", "nodes.conf")
                    .arg(
                        "--cluster-node-timeout",
                        NODE_TIMEOUT.as_millis().to_string(),
                    )
                    // A replica with stale data may still take over: the
                    // tests kill masters on purpose.
                    .arg("--cluster-replica-validity-factor", "0"),
            );
            match builder.start() {
                Ok(node) => nodes.push(node),
                // Someone took the port (or its bus port) meanwhile: pick another.
                Err(e) if e.to_string().contains("listening") || e.to_string().contains("bind") => {
                }
                Err(e) => return Err(e),
            }
        }
        let mut cluster = Self { nodes };
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port())),
        );
        create.extend([
            "--cluster-replicas".to_owned(),
            replicas.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        let out = cluster.nodes[0].redis_cli(&create)?;
        if !out.contains("All 16384 slots covered") {
            return Err(io::Error::other(format!(
                "redis-cli --cluster create failed:\n{out}"
            )));
        }
        cluster.wait_until_settled()?;
        Ok(cluster)
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Every node, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node listening on `port`, for kills and restarts.
    pub fn node_mut(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.nodes.iter_mut().find(|n| n.port() == port)
    }

    /// A node that is running, to ask about the cluster.
    fn any_running(&mut self) -> io::Result<&RedisServer> {
        let index = (0..self.nodes.len())
            .find(|&i| self.nodes[i].is_running() && self.nodes[i].redis_cli(["PING"]).is_ok())
            .ok_or_else(|| io::Error::other("no cluster node is running"))?;
        Ok(&self.nodes[index])
    }

    /// `CLUSTER NODES`, as seen by a running node.
    ///
    /// # Errors
    ///
    /// If no node answers.
    pub fn topology(&mut self) -> io::Result<Vec<ClusterNode>> {
        let text = self.any_running()?.redis_cli(["CLUSTER", "NODES"])?;
        Ok(parse_cluster_nodes(&text))
    }

    /// The masters that serve slots and are not failed.
    ///
    /// # Errors
    ///
    /// If no node answers.
    pub fn masters(&mut self) -> io::Result<Vec<ClusterNode>> {
        Ok(self
            .topology()?
            .into_iter()
            .filter(|n| n.master && !n.failed && n.slots > 0)
            .collect())
    }

    /// The port of the master serving `key`'s slot.
    ///
    /// # Errors
    ///
    /// If no node answers or the slot has no master.
    pub fn master_port_of(&mut self, key: &str) -> io::Result<u16> {
        let node = self.any_running()?;
        let slot: u16 = node
            .redis_cli(["CLUSTER", "KEYSLOT", key])?
            .trim()
            .parse()
            .map_err(|e| io::Error::other(format!("CLUSTER KEYSLOT: {e}")))?;
        let text = node.redis_cli(["CLUSTER", "NODES"])?;
        if let Some(master) = parse_cluster_nodes(&text)
            .into_iter()
            .find(|n| n.master && !n.failed && n.ranges.iter().any(|r| r.contains(&slot)))
        {
            return Ok(master.port);
        }
        Err(io::Error::other(format!("no master serves slot {slot}")))
    }

    /// Runs `CLUSTER FAILOVER` on the replica `replica_port` and waits until
    /// it is a master the cluster agrees on.
    ///
    /// # Errors
    ///
    /// If the node is not a replica or the failover does not finish in 30 s.
    pub fn failover(&mut self, replica_port: u16) -> io::Result<()> {
        let node = self
            .node_mut(replica_port)
            .ok_or_else(|| io::Error::other(format!("no node on port {replica_port}")))?;
        let out = node.redis_cli(["CLUSTER", "FAILOVER"])?;
        if out != "OK" {
            return Err(io::Error::other(format!("CLUSTER FAILOVER: {out}")));
        }
        self.wait_for(SETTLE_TIMEOUT, "the failover to finish", |nodes| {
            nodes
                .iter()
                .any(|n| n.port == replica_port && n.master && n.slots > 0)
        })?;
        self.wait_until_settled()
    }

    /// A replica of the master on `master_port`.
    ///
    /// # Errors
    ///
    /// If no node answers or the master has no replica.
    pub fn replica_of(&mut self, master_port: u16) -> io::Result<u16> {
        let nodes = self.topology()?;
        let master = nodes
            .iter()
            .find(|n| n.port == master_port)
            .ok_or_else(|| io::Error::other(format!("no node on port {master_port}")))?;
        nodes
            .iter()
            .find(|n| n.master_id.as_deref() == Some(master.id.as_str()) && !n.failed)
            .map(|n| n.port)
            .ok_or_else(|| io::Error::other(format!("master {master_port} has no replica")))
    }

    /// SIGKILLs the master on `master_port` and waits until one of its
    /// replicas serves its slots.
    ///
    /// # Errors
    ///
    /// If the node is not a running master or no replica takes over in 30 s.
    pub fn kill_master(&mut self, master_port: u16) -> io::Result<u16> {
        let replica = self.replica_of(master_port)?;
        self.node_mut(master_port)
            .ok_or_else(|| io::Error::other(format!("no node on port {master_port}")))?
            .kill()?;
        self.wait_for(SETTLE_TIMEOUT, "a replica to take over", |nodes| {
            nodes
                .iter()
                .any(|n| n.port == replica && n.master && n.slots > 0)
        })?;
        Ok(replica)
    }

    /// Moves `slots` slots from the master on `from` to the master on `to`
    /// with `redis-cli --cluster reshard` (keys move with `MIGRATE`).
    ///
    /// # Errors
    ///
    /// If `redis-cli` fails.
    pub fn reshard(&mut self, from: u16, to: u16, slots: usize) -> io::Result<String> {
        let nodes = self.topology()?;
        let id = |port: u16| {
            nodes
                .iter()
                .find(|n| n.port == port)
                .map(|n| n.id.clone())
                .ok_or_else(|| io::Error::other(format!("no node on port {port}")))
        };
        let (from_id, to_id) = (id(from)?, id(to)?);
        let seed = format!("127.0.0.1:{from}");
        let out = self.any_running()?.redis_cli([
            "--cluster",
            "reshard",
            &seed,
            "--cluster-from",
            &from_id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
            "--cluster-pipeline",
            "100",
        ])?;
        self.wait_until_settled()?;
        Ok(out)
    }

    /// Waits until every running node reports `cluster_state:ok`, all 16384
    /// slots assigned, and the same view of which nodes are masters.
    ///
    /// # Errors
    ///
    /// If that does not happen within 30 s.
    pub fn wait_until_settled(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let mut views = Vec::new();
            let mut ok = true;
            for node in &mut self.nodes {
                if !node.is_running() {
                    continue;
                }
                let info = node.redis_cli(["CLUSTER", "INFO"]).unwrap_or_default();
                if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                    ok = false;
                    break;
                }
                let mut masters: Vec<u16> =
                    parse_cluster_nodes(&node.redis_cli(["CLUSTER", "NODES"]).unwrap_or_default())
                        .into_iter()
                        .filter(|n| n.master && !n.failed && n.slots > 0)
                        .map(|n| n.port)
                        .collect();
                masters.sort_unstable();
                views.push(masters);
            }
            if ok && !views.is_empty() && views.windows(2).all(|w| w[0] == w[1]) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the cluster did not settle within {SETTLE_TIMEOUT:?}: {:?}",
                    self.topology()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[ClusterNode]) -> bool,
    ) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(nodes) = self.topology() {
                if done(&nodes) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "timed out after {timeout:?} waiting for {what}: {:?}",
                    self.topology()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `ip:port@busport[,hostname]` → port.
fn port_of(address: &str) -> u16 {
    address
        .split('@')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let flags = fields[2];
            // The slot ranges after the 8 fields; `[...]` is a slot being
            // migrated or imported.
            let ranges: Vec<std::ops::RangeInclusive<u16>> = fields[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .filter_map(|r| {
                    let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                    Some(lo.parse().ok()?..=hi.parse().ok()?)
                })
                .collect();
            let slots = ranges.iter().map(|r| r.len()).sum();
            Some(ClusterNode {
                id: fields[0].to_owned(),
                port: port_of(fields[1]),
                master: flags.contains("master"),
                failed: flags.contains("fail"),
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
                ranges,
            })
        })
        .collect()
}

/// A port in [`PORTS`] whose bus port (+10000) is also free right now.
fn cluster_port(taken: &mut HashSet<u16>) -> io::Result<u16> {
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(PORTS);
        if taken.contains(&port) || taken.contains(&(port + 10000)) {
            continue;
        }
        let free = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if free(port) && free(port + 10000) {
            taken.insert(port);
            taken.insert(port + 10000);
            return Ok(port);
        }
    }
    Err(io::Error::other(
        "no free port pair (port, port + 10000) for a cluster node",
    ))
}
