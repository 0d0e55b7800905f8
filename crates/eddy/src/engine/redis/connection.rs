//! Connecting to Redis, and the connections commands run on: one shared
//! connection (reconnecting by itself) for every command but blocking
//! reads, which take a pooled connection of their own. Standalone, Cluster
//! and Sentinel differ only in how those connections are made
//! (`topology.rs`).

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};

use super::errors::{error_text, fatal_connect_error};
use super::scripts::Scripts;
use super::topology::ClusterLink;
use super::topology::{Conn, SentinelLink, Topology};
use super::{map_err, RedisEngine, RedisOptions};
use crate::error::{Error, ErrorKind, Result};

/// What connecting produced: the topology, the shared command connection,
/// and a first connection for blocking reads when one was made on the way.
type Connected = (Topology, Conn, Option<(u64, Conn)>);

impl RedisEngine {
    /// Connect, retrying a few times with backoff, and check the server is
    /// Redis 7.0 or newer and of the topology the URL names.
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self> {
        let shown = crate::engine::redact_url(url);
        #[cfg(feature = "tls-rustls")]
        if url.starts_with("rediss") {
            ensure_rustls_provider();
        }
        let scheme = url
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let clustered = scheme.ends_with("+cluster");
        // Boxed: the cluster and Sentinel clients' connect futures nest
        // deep, and every caller's future (Eddy::open, Bus::new, ...) would
        // otherwise carry them inline.
        let connecting: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Connected>> + Send + '_>,
        > = match scheme.as_str() {
            "redis+cluster" | "rediss+cluster" => Box::pin(connect_cluster(url, &shown, options)),
            "redis+sentinel" | "rediss+sentinel" => {
                Box::pin(connect_sentinel(url, &shown, options))
            }
            _ => Box::pin(connect_standalone(url, &shown, options)),
        };
        let (topology, conn, first) = connecting.await?;
        let engine = Self {
            topology,
            conn,
            clustered,
            blocking: Mutex::new(first.into_iter().collect()),
            scripts: Scripts::new(),
            expired: super::super::ExpiredCounts::default(),
            url: shown,
            options: options.clone(),
        };
        engine.check_server().await?;
        engine.preload_scripts().await;
        Ok(engine)
    }

    /// Load the publish script now, so that the first publishes do not
    /// meet NOSCRIPT: a call that does is sent again after loading the
    /// script, behind calls issued after it, and the bus's batcher issues
    /// its calls in order (see `bus/batch.rs`). Best effort: an account
    /// without SCRIPT rights still works, loading on first use.
    async fn preload_scripts(&self) {
        let mut conn = self.conn();
        if let Err(e) = self.scripts.publish_many.load_async(&mut conn).await {
            tracing::debug!(error = %e, "could not preload a script; it loads on first use");
        }
    }

    /// The server is Redis 7.0 or newer, and of the kind the URL names: a
    /// `redis://` URL at a cluster node or a Sentinel would fail later in
    /// ways that do not say why.
    async fn check_server(&self) -> Result<()> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("server");
        let info: String = match &self.conn {
            // INFO goes to every node by default; one says enough.
            Conn::ClusterShared(link) => {
                let v = link
                    .current()
                    .1
                    .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
                    .await
                    .map_err(map_err)?;
                redis::from_redis_value(v).map_err(|e| map_err(e.into()))?
            }
            _ => cmd.query_async(&mut self.conn()).await.map_err(map_err)?,
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let version = field("redis_version:");
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "{} runs Redis {version}; eddy needs Redis 7.0 or newer",
                    self.url
                ),
            ));
        }
        let wrong = match (field("redis_mode:").as_str(), &self.topology) {
            ("cluster", Topology::Standalone(_) | Topology::Sentinel(_)) => Some(
                "is a Redis Cluster node: use redis+cluster://HOST:PORT[,HOST:PORT...] \
                 (rediss+cluster:// with TLS), so that eddy follows the cluster's slots",
            ),
            ("sentinel", Topology::Standalone(_)) => Some(
                "is a Redis Sentinel, which holds no data: use \
                 redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME",
            ),
            _ => None,
        };
        match wrong {
            Some(why) => Err(Error::new(
                ErrorKind::InvalidUrl,
                format!("{} {why}", self.url),
            )),
            None => Ok(()),
        }
    }

    pub(super) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// A connection for one blocking read, and its topology generation
    /// (give both back with [`Self::return_blocking_conn`]).
    pub(super) async fn blocking_conn(&self) -> Result<(u64, Conn)> {
        let current = self.topology.generation();
        loop {
            let pooled = self
                .blocking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop();
            match pooled {
                Some((generation, c)) if generation == current => return Ok((generation, c)),
                // Made before a failover: it points at the old master.
                Some(_) => continue,
                None => break,
            }
        }
        self.topology
            .blocking_connection(&blocking_config(&self.options))
            .await
            .map_err(map_err)
    }

    pub(super) fn return_blocking_conn(&self, c: (u64, Conn)) {
        let mut pool = self.blocking.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 64 {
            pool.push(c);
        }
    }
}

/// Retry `connect` with backoff until it succeeds, fails in a way that
/// retrying cannot fix (`fatal`), or runs out of attempts.
///
/// `fatal` takes the error by value: a closure over a borrowed error
/// (`AsyncFnMut(&RedisError)`) would make the connect future's `Send` bound
/// higher-ranked, which rustc cannot prove for the callers' futures.
async fn with_retries<T, F, Fut, G, GFut>(
    options: &RedisOptions,
    shown: &str,
    what: &str,
    mut connect: F,
    mut fatal: G,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
    G: FnMut(redis::RedisError) -> GFut,
    GFut: std::future::Future<Output = Option<Error>>,
{
    let mut delay = options.connect_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let e = match connect().await {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        if let Some(fatal) = fatal(e.clone()).await {
            return Err(fatal);
        }
        if attempt >= options.connect_attempts {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot reach {what} at {shown} after {attempt} attempt(s): {}",
                    map_err(e.clone()).message()
                ),
            )
            .with_source(e));
        }
        tracing::debug!(url = %shown, attempt, error = %error_text(&e), "Redis not reachable yet; retrying");
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2).min(Duration::from_secs(2));
    }
}

fn manager_config(options: &RedisOptions) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
}

fn invalid_url(shown: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidUrl,
        format!("invalid Redis URL `{shown}`: {why}"),
    )
}

async fn connect_standalone(url: &str, shown: &str, options: &RedisOptions) -> Result<Connected> {
    let client = Client::open(url).map_err(|e| invalid_url(shown, &e).with_source(e))?;
    // One connection per attempt, so that a failure that retrying cannot
    // fix (credentials, DB index, TLS) ends the wait at once. It becomes
    // the first pooled connection for blocking reads.
    let config = blocking_config(options);
    let first = with_retries(
        options,
        shown,
        "Redis",
        || client.get_multiplexed_async_connection_with_config(&config),
        |e| {
            let client = &client;
            async move { fatal_connect_error(client, shown, &e, options).await }
        },
    )
    .await
    .map_err(|e| match e.kind() {
        ErrorKind::Unavailable => Error::new(
            ErrorKind::Unavailable,
            format!(
                "{}; is redis-server running there{}?",
                e.message(),
                // A TLS port resets a plaintext handshake.
                if shown.starts_with("redis://") && e.message().contains("reset by peer") {
                    ", or does it require TLS (use rediss://)"
                } else {
                    ""
                }
            ),
        ),
        _ => e,
    })?;
    let conn = client
        .get_connection_manager_with_config(manager_config(options))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "Redis at {shown} dropped the connection while eddy connected: {}; retry",
                    map_err(e.clone()).message()
                ),
            )
            .with_source(e)
        })?;
    Ok((
        Topology::Standalone(Box::new(client)),
        Conn::Manager(conn),
        Some((0, super::topology::Conn::Multiplexed(first))),
    ))
}

async fn connect_cluster(url: &str, shown: &str, options: &RedisOptions) -> Result<Connected> {
    let list = HostList::parse(url, shown, 6379)?;
    if !matches!(list.path, "" | "/" | "/0") {
        return Err(invalid_url(
            shown,
            "Redis Cluster has database 0 only: leave the path out (redis+cluster://HOST:PORT,HOST:PORT)",
        ));
    }
    if !list.query.is_empty() {
        return Err(invalid_url(
            shown,
            "a cluster URL takes no parameters: put credentials in the user info (redis+cluster://USER:PASSWORD@HOST:PORT,...)",
        ));
    }
    let nodes: Vec<String> = list.hosts.iter().map(|h| list.node_url(h, "")).collect();
    let build = |response_timeout: Duration| -> Result<ClusterClient> {
        ClusterClientBuilder::new(nodes.clone())
            .connection_timeout(options.connect_timeout)
            .response_timeout(response_timeout)
            // MOVED/ASK are followed at once; TRYAGAIN, CLUSTERDOWN and
            // lost connections are retried with backoff up to ~3 s, then
            // the caller gets the error (and retries on its own terms).
            .retries(6)
            .min_retry_wait(50)
            .max_retry_wait(1000)
            .build()
            .map_err(|e| invalid_url(shown, error_text(&e)).with_source(e))
    };
    let client = build(options.response_timeout)?;
    // Blocking reads are bounded by `blocking_read`, not by the client.
    let blocking = build(Duration::from_secs(24 * 3600))?;
    let conn = with_retries(
        options,
        shown,
        "any seed node of the Redis Cluster",
        || client.get_async_connection(),
        |e| std::future::ready(cluster_fatal(shown, &e)),
    )
    .await?;
    Ok((
        Topology::Cluster(Box::new(blocking)),
        Conn::ClusterShared(std::sync::Arc::new(ClusterLink::new(client, conn))),
        None,
    ))
}

/// A cluster connection failure that retrying cannot fix.
fn cluster_fatal(shown: &str, e: &redis::RedisError) -> Option<Error> {
    let text = e.to_string();
    if text.contains("cluster support disabled") {
        return Some(
            Error::new(
                ErrorKind::InvalidUrl,
                format!(
                    "{shown} is not a Redis Cluster (the server has cluster support disabled): \
                     use redis://HOST:PORT/DB for a standalone server"
                ),
            )
            .with_source(e.clone()),
        );
    }
    if matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
    {
        return Some(
            Error::new(
                ErrorKind::PermissionDenied,
                format!("the Redis Cluster at {shown} refused the credentials: {text}"),
            )
            .with_source(e.clone()),
        );
    }
    None
}

async fn connect_sentinel(url: &str, shown: &str, options: &RedisOptions) -> Result<Connected> {
    let list = HostList::parse(url, shown, 26379)?;
    let mut parts = list.path.trim_start_matches('/').split('/');
    let master = parts.next().unwrap_or_default();
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db.parse::<i64>().map_err(|_| {
            invalid_url(
                shown,
                format!("`{db}` is not a database index (use MASTER_NAME/DB)"),
            )
        })?,
    };
    if master.is_empty() || parts.next().is_some() {
        return Err(invalid_url(
            shown,
            "name the master: redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]",
        ));
    }
    // Credentials in the URL are the master's and replicas'; the
    // sentinels' own, if they have any, come as query parameters.
    let mut sentinel_auth = String::new();
    let mut sentinel_user = String::new();
    for (k, v) in list.query_pairs() {
        match k {
            "sentinel_username" => sentinel_user = v.to_owned(),
            "sentinel_password" => sentinel_auth = v.to_owned(),
            _ => {
                return Err(invalid_url(
                    shown,
                    format!("unknown parameter `{k}` (a Sentinel URL takes sentinel_username and sentinel_password)"),
                ))
            }
        }
    }
    let sentinel_userinfo = match (sentinel_user.is_empty(), sentinel_auth.is_empty()) {
        (true, true) => String::new(),
        (_, true) => format!("{sentinel_user}@"),
        _ => format!("{sentinel_user}:{sentinel_auth}@"),
    };
    let sentinels: Vec<String> = list
        .hosts
        .iter()
        .map(|h| list.node_url_with(h, &sentinel_userinfo, ""))
        .collect();
    // The master's settings, decoded by the redis crate from a URL of the
    // same user info and database.
    let master_info = list
        .node_url(&list.hosts[0], &format!("/{db}"))
        .into_connection_info()
        .map_err(|e| invalid_url(shown, error_text(&e)).with_source(e))?;
    let mut node = SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(master_info.redis_settings().clone());
    if let redis::ConnectionAddr::TcpTls { insecure, .. } = master_info.addr() {
        node = node.set_tls_mode(if *insecure {
            redis::TlsMode::Insecure
        } else {
            redis::TlsMode::Secure
        });
    }
    let link = with_retries(
        options,
        shown,
        "a Redis Sentinel",
        || async {
            let client = SentinelClient::build(
                sentinels.clone(),
                String::from(master),
                Some(node.clone()),
                SentinelServerType::Master,
            )?;
            SentinelLink::connect(client, master, db, manager_config(options)).await
        },
        |e| std::future::ready(sentinel_fatal(shown, master, &e)),
    )
    .await?;
    let link = std::sync::Arc::new(link);
    Ok((Topology::Sentinel(link.clone()), Conn::Sentinel(link), None))
}

/// A Sentinel connection failure that retrying cannot fix.
fn sentinel_fatal(shown: &str, master: &str, e: &redis::RedisError) -> Option<Error> {
    if e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
        return Some(
            Error::new(
                ErrorKind::InvalidUrl,
                format!(
                    "no Sentinel at {shown} knows a master named `{master}`: check the name \
                     (SENTINEL MASTERS lists them)"
                ),
            )
            .with_source(e.clone()),
        );
    }
    if matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM")) {
        return Some(map_err(e.clone()));
    }
    None
}

/// A URL naming several hosts: `SCHEME://[USERINFO@]HOST[:PORT][,HOST[:PORT]...][PATH][?QUERY][#FRAGMENT]`.
struct HostList<'a> {
    tls: bool,
    userinfo: &'a str,
    hosts: Vec<String>,
    path: &'a str,
    query: &'a str,
    fragment: &'a str,
}

impl<'a> HostList<'a> {
    fn parse(url: &'a str, shown: &str, default_port: u16) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid_url(shown, "no `://`"))?;
        // A password may hold `/` or `?`: the user info ends at the last `@`.
        let (userinfo, rest) = match rest.rfind('@') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => ("", rest),
        };
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut list = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            if host.is_empty() {
                return Err(invalid_url(shown, "an empty host in the host list"));
            }
            let (name, port) = match host.rsplit_once(':') {
                Some((name, port)) if !name.ends_with(':') || name.starts_with('[') => {
                    let port: u16 = port.parse().map_err(|_| {
                        invalid_url(shown, format!("`{port}` is not a port number"))
                    })?;
                    (name, port)
                }
                _ => (host, default_port),
            };
            list.push(format!("{name}:{port}"));
        }
        Ok(Self {
            tls: scheme.to_ascii_lowercase().starts_with("rediss"),
            userinfo,
            hosts: list,
            path,
            query,
            fragment,
        })
    }

    /// A `redis://` (or `rediss://`) URL for one node with this list's
    /// user info, then `path`.
    fn node_url(&self, host: &str, path: &str) -> String {
        let userinfo = match self.userinfo {
            "" => String::new(),
            u => format!("{u}@"),
        };
        self.node_url_with(host, &userinfo, path)
    }

    fn node_url_with(&self, host: &str, userinfo: &str, path: &str) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let fragment = match self.fragment {
            "" => String::new(),
            f => format!("#{f}"),
        };
        format!("{scheme}://{userinfo}{host}{path}{fragment}")
    }

    fn query_pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
    }
}
/// A connection for blocking reads. No response timeout: the read itself is
/// bounded by BLOCK, and `blocking_read` bounds the wait.
fn blocking_config(options: &RedisOptions) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(None)
}

/// The redis crate builds its rustls configuration on the process's
/// default crypto provider, which rustls only picks by itself when exactly
/// one provider is compiled in: install ring's (the one `tls-rustls` brings)
/// unless the application installed one, so that another dependency turning
/// on aws-lc-rs too cannot make the first `rediss://` connection panic.
#[cfg(feature = "tls-rustls")]
fn ensure_rustls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one meanwhile: also fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
