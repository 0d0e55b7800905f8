//! The three shapes of Redis eddy runs on, behind one connection type.
//!
//! - **Standalone** (`redis://`, `rediss://`, `redis+unix://`): a
//!   `ConnectionManager`, which reconnects by itself.
//! - **Cluster** (`redis+cluster://`, `rediss+cluster://`): the redis
//!   crate's `cluster_async::ClusterConnection`. It owns the slot map: it
//!   follows `MOVED` and `ASK`, retries `TRYAGAIN` and `CLUSTERDOWN` with
//!   backoff, and refreshes the map after a failover or a reshard. eddy
//!   routes nothing itself; it only keeps every atomic step in one slot (see
//!   [`KeyLayout`](crate::engine::KeyLayout)).
//! - **Sentinel** (`redis+sentinel://`, `rediss+sentinel://`): the redis
//!   crate's `SentinelClient` names the master; [`SentinelLink`] holds a
//!   `ConnectionManager` to it and replaces it when the sentinels name
//!   another one, so every connection (commands, blocking reads, the bus's
//!   batcher, the reclaimer) follows a failover.
//!
//! Why the `redis` crate rather than `fred`: eddy already stands on it for
//! standalone Redis (scripts by SHA, MULTI/EXEC pipelines, the connection
//! manager), and its cluster and sentinel clients take the same commands,
//! pipelines and scripts, so the engine's code is the same on all three.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use tokio::time::Instant;

/// A connection of any topology; cheap to clone (each variant is a handle
/// onto a multiplexed connection).
#[derive(Clone)]
pub(super) enum Conn {
    /// Standalone commands.
    Manager(ConnectionManager),
    /// A standalone or Sentinel-resolved connection for blocking reads.
    Multiplexed(MultiplexedConnection),
    /// A cluster connection for blocking reads (one per read in flight;
    /// dropped after an error, so the next one maps the slots afresh).
    Cluster(ClusterConnection),
    /// Commands to a cluster, on a connection replaced when its slot map
    /// stays stale (see [`ClusterLink`]).
    ClusterShared(Arc<ClusterLink>),
    /// Commands to whichever node the sentinels name master.
    Sentinel(Arc<SentinelLink>),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Multiplexed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::ClusterShared(link) => {
                let link = link.clone();
                Box::pin(async move {
                    let (generation, mut c) = link.current();
                    let result = c.req_packed_command(cmd).await;
                    if let Err(e) = &result {
                        // The client followed what redirects it could; a
                        // reply that still says the slot is elsewhere (or a
                        // node it has no connection to) means its map is
                        // stale: the calls after this one get a fresh one.
                        if e.is_cluster_error()
                            || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
                            || e.is_io_error()
                        {
                            link.reconnect(generation).await;
                        }
                    }
                    result
                })
            }
            Conn::Sentinel(link) => {
                let link = link.clone();
                Box::pin(async move {
                    link.send(Request::One(cmd)).await.map(|r| match r {
                        Reply::One(v) => v,
                        Reply::Many(vs) => Value::Array(vs),
                    })
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Multiplexed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::ClusterShared(link) => {
                let link = link.clone();
                Box::pin(async move { cluster_pipeline(&link, cmd, offset, count).await })
            }
            Conn::Sentinel(link) => {
                let link = link.clone();
                Box::pin(async move {
                    link.send(Request::Many(cmd, offset, count))
                        .await
                        .map(|r| match r {
                            Reply::One(v) => vec![v],
                            Reply::Many(vs) => vs,
                        })
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Multiplexed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::ClusterShared(_) => 0,
            Conn::Sentinel(link) => link.db,
        }
    }
}

/// How many times a pipeline is re-issued while its slot moves.
const MOVING_RETRIES: u32 = 12;

/// A pipeline on a cluster connection, re-issued while its slot moves.
///
/// The cluster client follows `MOVED` and `ASK` for single commands (and
/// scripts) itself, but hands a pipeline's redirects back as its replies:
/// a transaction queued on a node that lost the slot comes back as
/// `EXECABORT` over `MOVED`. Every pipeline eddy sends touches one slot and
/// is either a transaction (all or nothing: an aborted one wrote nothing)
/// or reads, so sending it again is safe. After `MOVED` or `READONLY` (the
/// node lost the slot, or became a replica) or a node the client has no
/// connection to or that refuses one, the [`ClusterLink`] connects afresh
/// to learn the new owner.
/// `ASK`, `TRYAGAIN` and `CLUSTERDOWN` (a slot being
/// migrated, a failover under way) pass with time. Each attempt waits 20 ms
/// doubling to 500 ms, about 4 s in all; then the caller gets the error
/// (`Unavailable`: retry).
async fn cluster_pipeline(
    link: &ClusterLink,
    pipe: &Pipeline,
    offset: usize,
    count: usize,
) -> RedisResult<Vec<Value>> {
    use redis::ServerErrorKind as K;
    let mut delay = Duration::from_millis(20);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (generation, mut c) = link.current();
        let result = c.req_packed_commands(pipe, offset, count).await;
        if let Err(e) = &result {
            // A connection lost mid-request: the pipeline may have run, so
            // it is not sent again (its error says the outcome is unknown);
            // the calls after it get a fresh connection.
            if e.is_io_error() && !e.is_connection_refusal() {
                link.reconnect(generation).await;
                return result;
            }
        }
        // Not sent at all: no connection to that node, or refused.
        let stale = result.as_ref().err().is_some_and(|e| {
            e.kind() == redis::ErrorKind::ClusterConnectionNotFound || e.is_connection_refusal()
        });
        let motion = slot_in_motion(&result);
        if motion.is_none() && !stale {
            return result;
        }
        if attempt >= MOVING_RETRIES {
            return result;
        }
        tracing::debug!(
            ?motion,
            attempt,
            "a pipeline's slot is moving; re-issuing it"
        );
        if stale || matches!(motion, Some((K::Moved | K::ReadOnly, _))) {
            link.reconnect(generation).await;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// The cluster connection eddy's commands share, and the client to make a
/// new one with.
///
/// The redis crate's cluster connection refreshes its slot map from one
/// node after a redirect; during a failover that node may still hold the
/// old map, and then every call meets `MOVED` (or a node it has no
/// connection to) until some later error refreshes it again. When a call
/// shows the map is stale, the link connects afresh (which reads the map
/// from the seeds, at most every 200 ms) and the calls after it use the new
/// connection; calls in flight finish on the old one.
pub(super) struct ClusterLink {
    client: ClusterClient,
    current: RwLock<(u64, ClusterConnection)>,
    /// When the last reconnection ended; one at a time.
    reconnected: tokio::sync::Mutex<Option<Instant>>,
}

impl ClusterLink {
    pub(super) fn new(client: ClusterClient, conn: ClusterConnection) -> Self {
        Self {
            client,
            current: RwLock::new((0, conn)),
            reconnected: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection to use now, with its generation.
    pub(super) fn current(&self) -> (u64, ClusterConnection) {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        (current.0, current.1.clone())
    }

    /// Replace the connection of generation `seen` (unless another call
    /// did already, or did less than 200 ms ago).
    async fn reconnect(&self, seen: u64) {
        let mut last = self.reconnected.lock().await;
        if self.current().0 != seen || last.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return;
        }
        match self.client.get_async_connection().await {
            Ok(conn) => {
                let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                *current = (seen + 1, conn);
                tracing::debug!(
                    generation = seen + 1,
                    "reconnected to the cluster for a fresh slot map"
                );
            }
            Err(e) => {
                tracing::debug!(error = %e, "reconnecting to the cluster failed; the next call tries again");
            }
        }
        *last = Some(Instant::now());
    }
}

/// Why a pipeline's reply says its slot is elsewhere or moving, if it does,
/// and for `MOVED` the node that serves it now.
fn slot_in_motion(
    result: &RedisResult<Vec<Value>>,
) -> Option<(redis::ServerErrorKind, Option<(String, u16)>)> {
    use redis::ServerErrorKind as K;
    let moving = |se: &redis::ServerError| match se.kind() {
        Some(k @ (K::Moved | K::Ask | K::TryAgain | K::ClusterDown | K::ReadOnly)) => {
            // MOVED's detail: `SLOT HOST:PORT`.
            let to = se
                .details()
                .and_then(|d| d.split_ascii_whitespace().nth(1))
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)));
            Some((k, to))
        }
        _ => None,
    };
    match result {
        Err(e) => e
            .clone()
            .into_server_errors()?
            .iter()
            .find_map(|(_, se)| moving(se)),
        Ok(values) => values.iter().find_map(|v| match v {
            Value::ServerError(se) => moving(se),
            _ => None,
        }),
    }
}

/// Where blocking reads get their connections from.
pub(super) enum Topology {
    Standalone(Box<Client>),
    /// A client whose connections have no response timeout of their own
    /// (`blocking_read` bounds the wait).
    Cluster(Box<ClusterClient>),
    Sentinel(Arc<SentinelLink>),
}

impl Topology {
    /// A new connection for blocking reads, and the topology generation it
    /// belongs to (a Sentinel failover starts a new one, and pooled
    /// connections of an older one are dropped).
    pub(super) async fn blocking_connection(
        &self,
        config: &redis::AsyncConnectionConfig,
    ) -> RedisResult<(u64, Conn)> {
        match self {
            Topology::Standalone(client) => client
                .get_multiplexed_async_connection_with_config(config)
                .await
                .map(|c| (0, Conn::Multiplexed(c))),
            Topology::Cluster(client) => client
                .get_async_connection()
                .await
                .map(|c| (0, Conn::Cluster(c))),
            Topology::Sentinel(link) => {
                let (generation, client) = link.client();
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await
                    .map(|c| (generation, Conn::Multiplexed(c)))
            }
        }
    }

    /// The current generation (see [`Topology::blocking_connection`]).
    pub(super) fn generation(&self) -> u64 {
        match self {
            Topology::Sentinel(link) => link.generation(),
            _ => 0,
        }
    }

    /// A blocking read failed: behind Sentinel, ask the sentinels whether
    /// the master moved, so that the next connection goes to the new one.
    pub(super) async fn read_failed(&self, generation: u64) {
        if let Topology::Sentinel(link) = self {
            link.refresh(generation).await;
        }
    }
}

enum Request<'a> {
    One(&'a Cmd),
    Many(&'a Pipeline, usize, usize),
}

enum Reply {
    One(Value),
    Many(Vec<Value>),
}

/// How often a request refused by a replica (`READONLY`) or by a closed
/// port is sent again behind Sentinel, waiting for the sentinels to name
/// the new master: 50 ms doubling to 1 s, about 7 s in all, which covers a
/// failover with Sentinel's usual `down-after-milliseconds` of a few
/// seconds... and then the caller's own retry takes over.
const REFUSED_RETRIES: u32 = 10;
/// The least time between two questions to the sentinels.
const REFRESH_EVERY: Duration = Duration::from_millis(200);

/// The master the sentinels name, and a connection manager to it.
pub(super) struct SentinelLink {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: RwLock<Current>,
    config: ConnectionManagerConfig,
    master: String,
    db: i64,
}

struct Current {
    generation: u64,
    client: Client,
    manager: ConnectionManager,
    asked: Instant,
}

impl SentinelLink {
    /// Ask the sentinels for the master and connect to it.
    pub(super) async fn connect(
        mut sentinel: SentinelClient,
        master: &str,
        db: i64,
        config: ConnectionManagerConfig,
    ) -> RedisResult<Self> {
        let client = sentinel.async_get_client().await?;
        let manager = client
            .get_connection_manager_with_config(config.clone())
            .await?;
        Ok(Self {
            sentinel: tokio::sync::Mutex::new(sentinel),
            current: RwLock::new(Current {
                generation: 1,
                client,
                manager,
                asked: Instant::now(),
            }),
            config,
            master: master.to_owned(),
            db,
        })
    }

    fn generation(&self) -> u64 {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    fn client(&self) -> (u64, Client) {
        let c = self.current.read().unwrap_or_else(|p| p.into_inner());
        (c.generation, c.client.clone())
    }

    fn manager(&self) -> (u64, ConnectionManager) {
        let c = self.current.read().unwrap_or_else(|p| p.into_inner());
        (c.generation, c.manager.clone())
    }

    /// Note that the sentinels were just asked (for the rate limit).
    fn asked_now(&self) {
        self.current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .asked = Instant::now();
    }

    /// Ask the sentinels for the master again, unless someone did since
    /// `seen` was current; switch to it if it moved. Errors are logged: the
    /// caller's request fails or retries on its own terms.
    pub(super) async fn refresh(&self, seen: u64) {
        let mut sentinel = self.sentinel.lock().await;
        let asked = {
            let c = self.current.read().unwrap_or_else(|p| p.into_inner());
            if c.generation != seen {
                return;
            }
            c.asked
        };
        let wait = REFRESH_EVERY.saturating_sub(asked.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let found = match sentinel.async_get_client().await {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(master = %self.master, error = %e, "no Sentinel named a master; retrying");
                self.asked_now();
                return;
            }
        };
        let moved = {
            let c = self.current.read().unwrap_or_else(|p| p.into_inner());
            c.client.get_connection_info().addr() != found.get_connection_info().addr()
        };
        if !moved {
            self.asked_now();
            return;
        }
        match found
            .get_connection_manager_with_config(self.config.clone())
            .await
        {
            Ok(manager) => {
                tracing::info!(master = %self.master, to = %found.get_connection_info().addr(), "following a Sentinel failover to the new master");
                let mut c = self.current.write().unwrap_or_else(|p| p.into_inner());
                *c = Current {
                    generation: c.generation + 1,
                    client: found,
                    manager,
                    asked: Instant::now(),
                };
            }
            Err(e) => {
                tracing::warn!(master = %self.master, error = %e, "the master the sentinels named does not answer yet; retrying");
                self.asked_now();
            }
        }
    }

    /// Send a request to the master. A request that did not run (the node
    /// is a replica now, or refused the connection) is sent again once the
    /// sentinels name the new master; one that may have run (a connection
    /// dropped mid-request) is not, and its error says its outcome is
    /// unknown, as on a standalone Redis.
    async fn send(&self, req: Request<'_>) -> RedisResult<Reply> {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            let (generation, mut manager) = self.manager();
            let result = match req {
                Request::One(cmd) => manager.req_packed_command(cmd).await.map(Reply::One),
                Request::Many(p, offset, count) => manager
                    .req_packed_commands(p, offset, count)
                    .await
                    .map(Reply::Many),
            };
            let refused = match &result {
                Err(e) => is_refused(e),
                Ok(Reply::Many(vs)) => vs.iter().any(is_readonly_value),
                Ok(Reply::One(v)) => is_readonly_value(v),
            };
            if refused && attempt < REFUSED_RETRIES {
                attempt += 1;
                self.refresh(generation).await;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
                continue;
            }
            if let Err(e) = &result {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.refresh(generation).await;
                }
            }
            return result;
        }
    }
}

/// An error that says the request did not run on a master.
fn is_refused(e: &RedisError) -> bool {
    e.is_connection_refusal()
        || matches!(e.code(), Some("READONLY" | "MASTERDOWN"))
        || e.to_string().contains("READONLY")
}

/// A `READONLY` reply inside a pipeline's answers (a MULTI/EXEC sent to a
/// replica answers each queued command with it).
fn is_readonly_value(v: &Value) -> bool {
    match v {
        Value::ServerError(e) => e.code() == "READONLY",
        Value::Array(items) => items.iter().any(is_readonly_value),
        _ => false,
    }
}
