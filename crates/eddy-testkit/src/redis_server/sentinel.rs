//! [`RedisSentinel`]: a master, its replicas and a quorum of Sentinels, all
//! real `redis-server` processes, for tests.

use std::fs;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use super::RedisServer;

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "eddy";

/// How long a master may be unreachable before the Sentinels call it down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Sentinel deployment owned by a test: killed on drop.
///
/// ```no_run
/// use eddy_testkit::RedisSentinel;
///
/// # fn main() -> std::io::Result<()> {
/// let mut deployment = RedisSentinel::start(2, 3)?; // 2 replicas, 3 Sentinels
/// let url = deployment.url(); // redis+sentinel://127.0.0.1:S1,.../eddy
/// deployment.failover()?; // SENTINEL FAILOVER, waits for the new master
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RedisSentinel {
    /// The master first, then the replicas (roles change on failover).
    servers: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
}

impl RedisSentinel {
    /// Starts a master with `replicas` replicas and `sentinels` Sentinels
    /// (quorum: a majority), and waits until the replicas are in sync and
    /// every Sentinel knows the replicas and the other Sentinels.
    ///
    /// # Errors
    ///
    /// If a process cannot be started or the deployment does not settle in
    /// 30 s.
    pub fn start(replicas: usize, sentinels: usize) -> io::Result<Self> {
        let master = RedisServer::builder().appendonly(true).start()?;
        let master_port = master.port();
        let mut servers = vec![master];
        for _ in 0..replicas {
            servers.push(
                RedisServer::builder()
                    .appendonly(true)
                    .arg("--replicaof", "127.0.0.1")
                    .flag(master_port.to_string())
                    .start()?,
            );
        }
        let quorum = sentinels / 2 + 1;
        let mut started = Vec::new();
        for _ in 0..sentinels {
            let dir = tempfile::Builder::new()
                .prefix("eddy-sentinel-")
                .tempdir()?
                .keep();
            let conf = dir.join("sentinel.conf");
            fs::write(
                &conf,
                format!(
                    "sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} {quorum}\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {}\n\
                     sentinel failover-timeout {MASTER_NAME} 10000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    DOWN_AFTER.as_millis()
                ),
            )?;
            started.push(
                RedisServer::builder()
                    .config_file(&conf)
                    .dir(&dir)
                    .flag("--sentinel")
                    .start()?,
            );
        }
        let mut deployment = Self {
            servers,
            sentinels: started,
        };
        deployment.wait_until_settled(master_port)?;
        Ok(deployment)
    }

    /// `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,.../eddy`.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", seeds.join(","))
    }

    /// The data servers (master and replicas).
    pub fn servers(&self) -> &[RedisServer] {
        &self.servers
    }

    /// The Sentinels.
    pub fn sentinels(&self) -> &[RedisServer] {
        &self.sentinels
    }

    /// The server on `port`, for kills and pauses.
    pub fn server_mut(&mut self, port: u16) -> Option<&mut RedisServer> {
        self.servers.iter_mut().find(|s| s.port() == port)
    }

    /// The master's port, as the first answering Sentinel reports it.
    ///
    /// # Errors
    ///
    /// If no Sentinel answers.
    pub fn master_port(&self) -> io::Result<u16> {
        let mut last = None;
        for sentinel in &self.sentinels {
            match sentinel.redis_cli(["SENTINEL", "get-master-addr-by-name", MASTER_NAME]) {
                Ok(out) => {
                    if let Some(port) = out.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                        return Ok(port);
                    }
                    last = Some(out);
                }
                Err(e) => last = Some(e.to_string()),
            }
        }
        Err(io::Error::other(format!(
            "no Sentinel reports the master: {last:?}"
        )))
    }

    /// `SENTINEL FAILOVER`: promotes a replica; waits until every Sentinel
    /// reports the new master and it answers as a master. Returns its port.
    ///
    /// # Errors
    ///
    /// If the failover does not finish in 30 s.
    pub fn failover(&mut self) -> io::Result<u16> {
        let old = self.master_port()?;
        let out = self.sentinels[0].redis_cli(["SENTINEL", "FAILOVER", MASTER_NAME])?;
        if out != "OK" {
            return Err(io::Error::other(format!("SENTINEL FAILOVER: {out}")));
        }
        self.wait_for_new_master(old)
    }

    /// SIGKILLs the master and waits until the Sentinels promote a replica.
    /// Returns the new master's port.
    ///
    /// # Errors
    ///
    /// If no replica is promoted in 30 s.
    pub fn kill_master(&mut self) -> io::Result<u16> {
        let old = self.master_port()?;
        self.server_mut(old)
            .ok_or_else(|| io::Error::other(format!("no server on port {old}")))?
            .kill()?;
        self.wait_for_new_master(old)
    }

    fn wait_for_new_master(&mut self, old: u16) -> io::Result<u16> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let ports: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| {
                    s.redis_cli(["SENTINEL", "get-master-addr-by-name", MASTER_NAME])
                        .ok()
                        .and_then(|out| out.lines().nth(1).and_then(|p| p.trim().parse().ok()))
                })
                .collect();
            if let Some(Some(new)) = ports.first().copied() {
                if new != old && ports.iter().all(|p| *p == Some(new)) {
                    if let Some(server) = self.servers.iter().find(|s| s.port() == new) {
                        if server
                            .redis_cli(["ROLE"])
                            .is_ok_and(|role| role.starts_with("master"))
                        {
                            return Ok(new);
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "no new master after {SETTLE_TIMEOUT:?} (Sentinels report {ports:?}, old {old})"
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_until_settled(&mut self, master_port: u16) -> io::Result<()> {
        let replicas = self.servers.len() - 1;
        let others = self.sentinels.len() - 1;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let in_sync = self.servers[0]
                .redis_cli(["INFO", "replication"])
                .map(|info| info.matches("state=online").count() == replicas)
                .unwrap_or(false);
            let known = self.sentinels.iter().all(|s| {
                let count = |what: &str| {
                    s.redis_cli(["SENTINEL", what, MASTER_NAME])
                        .map(|out| out.lines().filter(|l| *l == "name").count())
                        .unwrap_or(0)
                };
                count("replicas") == replicas && count("sentinels") == others
            });
            if in_sync && known {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "the Sentinel deployment on master {master_port} did not settle within \
                     {SETTLE_TIMEOUT:?} (replicas in sync: {in_sync}, Sentinels agree: {known})"
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        // The Sentinel directories were kept (a Sentinel rewrites its
        // configuration file); remove them once the Sentinels are gone.
        for sentinel in &mut self.sentinels {
            let _ = sentinel.kill();
            let _ = fs::remove_dir_all(sentinel.dir());
        }
    }
}
