//! The Redis engine: Redis 7.0+, every multi-key operation atomic: one Lua
//! script (loaded once, called by SHA), or for the two hot paths, reads and
//! plain appends, one MULTI/EXEC whose stream commands run outside Lua.
//! Blocking reads run on their own connections so they never stall other
//! commands.
//!
//! Built with the `redis` feature (on by default); without it only
//! [`RedisOptions`] is here, and opening a Redis URL fails with
//! [`crate::ErrorKind::FeatureDisabled`].

mod options;

pub use options::RedisOptions;

#[cfg(feature = "redis")]
mod errors;
#[cfg(feature = "redis")]
mod park;
#[cfg(feature = "redis")]
mod scripts;
#[cfg(feature = "redis")]
mod values;

#[cfg(feature = "redis")]
use std::sync::Mutex;
#[cfg(feature = "redis")]
use std::time::Duration;

#[cfg(feature = "redis")]
use async_trait::async_trait;
#[cfg(feature = "redis")]
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
#[cfg(feature = "redis")]
use redis::{AsyncConnectionConfig, Client, Value};

#[cfg(feature = "redis")]
use super::{
    Append, Appended, Capabilities, Claimed, Engine, Entry, EntryId, ParkedRetry, Publish,
    QueueKeys, StreamInfo, Transfer,
};
#[cfg(feature = "redis")]
use crate::error::{Error, ErrorKind, Result};
#[cfg(feature = "redis")]
use errors::{error_text, fatal_connect_error};
#[cfg(feature = "redis")]
use scripts::Scripts;

/// The Redis engine, selected by `redis://`, `rediss://` or `redis+unix://`.
#[cfg(feature = "redis")]
pub struct RedisEngine {
    client: Client,
    conn: ConnectionManager,
    /// Idle connections for blocking reads, one per concurrent reader.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    scripts: Scripts,
    url: String,
    options: RedisOptions,
}

#[cfg(feature = "redis")]
impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("url", &self.url)
            .finish()
    }
}

/// A count as Redis reads one (a signed 64-bit integer): anything larger
/// means "all", which `i64::MAX` says too.
#[cfg(feature = "redis")]
fn redis_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(feature = "redis")]
pub(crate) fn map_err(e: redis::RedisError) -> Error {
    map_err_as(e, false)
}

/// [`map_err`] for a command that writes: a timeout leaves its outcome
/// unknown, and the message says so.
#[cfg(feature = "redis")]
pub(crate) fn map_write_err(e: redis::RedisError) -> Error {
    map_err_as(e, true)
}

#[cfg(feature = "redis")]
fn map_err_as(e: redis::RedisError, write: bool) -> Error {
    let code = e.code().unwrap_or_default();
    let kind = match code {
        "EDDY_NOQUEUE" => ErrorKind::QueueNotFound,
        "EDDY_NOSTREAM" => ErrorKind::StreamMissing,
        "EDDY_QUEUE_FULL" => ErrorKind::QueueFull,
        "NOGROUP" => ErrorKind::NoGroup,
        "OOM" => ErrorKind::OutOfMemory,
        "READONLY" => ErrorKind::ReadOnly,
        "WRONGTYPE" => ErrorKind::WrongType,
        "NOPERM" | "NOAUTH" | "WRONGPASS" => ErrorKind::PermissionDenied,
        "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" => ErrorKind::Unavailable,
        _ if e.is_timeout() => ErrorKind::Timeout,
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Backend,
    };
    let text = error_text(&e);
    let message = match kind {
        ErrorKind::QueueNotFound => format!(
            "queue `{}` does not exist: create it first",
            e.detail().unwrap_or_default()
        ),
        ErrorKind::StreamMissing => {
            return super::stream_missing(e.detail().unwrap_or_default()).with_source(e);
        }
        ErrorKind::QueueFull => format!(
            "queue `{}`; nothing was sent: retry later or raise its max length",
            e.detail().unwrap_or_default()
        ),
        ErrorKind::OutOfMemory => format!("Redis is out of memory; nothing was written: {text}"),
        ErrorKind::ReadOnly => {
            format!("Redis is a read-only replica; connect to the primary: {text}")
        }
        ErrorKind::WrongType => format!(
            "{text}: something else wrote this key under eddy's prefix; nothing was written: \
             inspect the key (TYPE) and remove it, or use another prefix"
        ),
        ErrorKind::Timeout if write => format!(
            "Redis did not answer in time, so the write's outcome is unknown (check before sending it again): {text}"
        ),
        ErrorKind::Timeout => {
            format!("Redis did not answer in time: {text}; retry, or raise the response timeout")
        }
        ErrorKind::Unavailable => format!("Redis is unavailable: {text}"),
        _ => format!("Redis error: {text}"),
    };
    Error::new(kind, message).with_source(e)
}

#[cfg(feature = "redis")]
impl RedisEngine {
    /// Connect, retrying a few times with backoff, and check the server is
    /// Redis 7.0 or newer.
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self> {
        let shown = super::redact_url(url);
        #[cfg(feature = "tls-rustls")]
        if url.starts_with("rediss:") {
            ensure_rustls_provider();
        }
        let client = Client::open(url).map_err(|e| {
            Error::new(
                ErrorKind::InvalidUrl,
                format!("invalid Redis URL `{shown}`: {e}"),
            )
            .with_source(e)
        })?;
        // One connection per attempt, so that a failure that retrying
        // cannot fix (credentials, DB index, TLS) ends the wait at once. It
        // becomes the first pooled connection for blocking reads.
        let mut delay = options.connect_backoff;
        let mut attempt = 0;
        let first = loop {
            attempt += 1;
            let e = match client
                .get_multiplexed_async_connection_with_config(&blocking_config(options))
                .await
            {
                Ok(c) => break c,
                Err(e) => e,
            };
            if let Some(fatal) = fatal_connect_error(&client, &shown, &e, options).await {
                return Err(fatal);
            }
            if attempt >= options.connect_attempts {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "cannot reach Redis at {shown} after {attempt} attempt(s): {}; is redis-server running there?",
                        map_err(e.clone()).message()
                    ),
                )
                .with_source(e));
            }
            tracing::debug!(url = %shown, attempt, error = %error_text(&e), "Redis not reachable yet; retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(Duration::from_secs(2));
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config)
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
        let engine = Self {
            client,
            conn,
            blocking: Mutex::new(vec![first]),
            scripts: Scripts::new(),
            url: shown,
            options: options.clone(),
        };
        engine.check_version().await?;
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

    async fn check_version(&self) -> Result<()> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
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
        Ok(())
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn blocking_conn(&self) -> Result<MultiplexedConnection> {
        let pooled = self
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        if let Some(c) = pooled {
            return Ok(c);
        }
        self.client
            .get_multiplexed_async_connection_with_config(&blocking_config(&self.options))
            .await
            .map_err(map_err)
    }

    fn return_blocking_conn(&self, c: MultiplexedConnection) {
        let mut pool = self.blocking.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 64 {
            pool.push(c);
        }
    }

    /// `XREADGROUP ... BLOCK` on a connection of its own.
    async fn blocking_read(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        wait: Duration,
    ) -> Result<Vec<Entry>> {
        let mut c = self.blocking_conn().await?;
        let ms = wait.as_millis().clamp(1, u64::MAX as u128) as u64;
        let cmd = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&queue.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(redis_count(count))
            .arg("BLOCK")
            .arg(ms)
            .arg("STREAMS")
            .arg(&queue.stream)
            .arg(">")
            .clone();
        let limit = wait + self.options.response_timeout;
        let reply = tokio::time::timeout(limit, cmd.query_async::<Value>(&mut c)).await;
        match reply {
            Ok(Ok(v)) => {
                self.return_blocking_conn(c);
                values::read_reply(v)
            }
            // A failed or timed-out connection is dropped, not pooled.
            Ok(Err(e)) => Err(map_err(e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "Redis at {} did not answer a blocking read in time",
                    self.url
                ),
            )),
        }
    }

    /// A non-blocking read: prepare_read.lua and XREADGROUP in one
    /// MULTI/EXEC, so entries go straight from XREADGROUP to us (through Lua
    /// they would cost more than the read itself), then expired ones are
    /// dropped if the queue has a TTL index. Redis refuses every command of
    /// a MULTI while it is out of memory, where read.lua (one script whose
    /// writes are pcalled) still reads: that is the fallback. Returns the
    /// entries, the next delayed due time and whether the TTL index exists.
    async fn read_now(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
    ) -> Result<(Vec<Entry>, Option<u64>, bool)> {
        let mut reloaded = false;
        loop {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .ignore_errors()
                .cmd("EVALSHA")
                .arg(self.scripts.prepare_read.get_hash())
                .arg(3)
                .arg(&queue.stream)
                .arg(&queue.expiry)
                .arg(&queue.delayed)
                .arg(&queue.group)
                .arg(consumer)
                .cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&queue.group)
                .arg(consumer)
                .arg("COUNT")
                .arg(redis_count(count))
                .arg("STREAMS")
                .arg(&queue.stream)
                .arg(">");
            let replied: redis::RedisResult<Vec<Value>> = pipe.query_async(&mut self.conn()).await;
            let mut replies = match replied {
                Ok(replies) => replies,
                Err(e) => {
                    let err = map_transaction_err(e, map_err);
                    if err.kind() != ErrorKind::OutOfMemory {
                        return Err(err);
                    }
                    return self.read_in_script(queue, consumer, count).await;
                }
            };
            let (Some(read), Some(prepared)) = (replies.pop(), replies.pop()) else {
                return Err(Error::new(
                    ErrorKind::Backend,
                    "Redis answered a read's MULTI/EXEC with too few replies",
                ));
            };
            let mut entries = match read {
                Value::ServerError(e) => return Err(map_err(e.into())),
                v => values::read_reply(v)?,
            };
            let (next_due, has_expiry) = match prepared {
                Value::Array(parts) => match parts.as_slice() {
                    [Value::Int(due), Value::Int(expiry)] => {
                        (u64::try_from(*due).ok(), *expiry == 1)
                    }
                    _ => return Err(values::unexpected("prepare_read.lua", &Value::Array(parts))),
                },
                // Redis lost the script (a restart, SCRIPT FLUSH): load it.
                // This read promoted nothing and registered no consumer: if
                // it delivered nothing either, read again; else keep what it
                // delivered and check it for TTLs to be safe.
                Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript) => {
                    self.scripts
                        .prepare_read
                        .load_async(&mut self.conn())
                        .await
                        .map_err(map_err)?;
                    if entries.is_empty() && !reloaded {
                        reloaded = true;
                        continue;
                    }
                    (None, true)
                }
                Value::ServerError(e) => return Err(map_err(e.into())),
                other => return Err(values::unexpected("prepare_read.lua", &other)),
            };
            if has_expiry && !entries.is_empty() {
                entries = self.drop_expired(queue, entries).await?;
            }
            return Ok((entries, next_due, has_expiry));
        }
    }

    /// read.lua: promotion, the read and the TTL filter in one script (the
    /// entries pass through Lua, which costs), for when Redis refuses
    /// MULTI/EXEC: out of memory.
    async fn read_in_script(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
    ) -> Result<(Vec<Entry>, Option<u64>, bool)> {
        let mut inv = self.scripts.read.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.expiry)
            .key(&queue.delayed)
            .arg(&queue.group)
            .arg(consumer)
            .arg(redis_count(count));
        let reply: Value = self.invoke_read(&inv).await?;
        values::read_script_reply(reply)
    }

    /// Remove delivered entries whose TTL has passed; returns the others.
    async fn drop_expired(&self, queue: &QueueKeys, mut entries: Vec<Entry>) -> Result<Vec<Entry>> {
        let mut inv = self.scripts.drop_expired.prepare_invoke();
        inv.key(&queue.stream).key(&queue.expiry).arg(&queue.group);
        for e in &entries {
            inv.arg(e.id.to_string());
        }
        let dropped: Vec<String> = self.invoke_read(&inv).await?;
        if !dropped.is_empty() {
            entries.retain(|e| !dropped.iter().any(|d| *d == e.id.to_string()));
        }
        Ok(entries)
    }

    /// The first round trip of a claim: claim.lua (types checked, the
    /// claimer registered, whether a TTL index exists, and the oldest
    /// pending ids idle for at least `min_idle_ms`, in id order, with their
    /// delivery counts, parked retries not yet due passed over).
    async fn claim_candidates(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        min_idle_ms: u64,
        count: usize,
    ) -> Result<(bool, Vec<(EntryId, u64)>)> {
        let mut inv = self.scripts.claim.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.expiry)
            .key(&queue.delayed)
            .arg(&queue.group)
            .arg(consumer)
            .arg(min_idle_ms)
            .arg(redis_count(count));
        let reply: Value = self.invoke_read(&inv).await?;
        values::claim_candidates(reply)
    }

    /// Append entries without TTL or delay: one `XADD` per entry and
    /// append_check.lua in one MULTI/EXEC. Same checks and the same
    /// all-or-none outcome as append.lua, but Redis runs each XADD directly:
    /// through a Lua call, the call itself was most of an append's server
    /// time (BENCHMARKS.md, "What each change bought").
    async fn append_plain(&self, appends: &[Append]) -> Result<Vec<Appended>> {
        let mut queues: Vec<(&QueueKeys, usize)> = Vec::new();
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        for a in appends {
            match queues.iter_mut().find(|(q, _)| q.stream == a.keys.stream) {
                Some((_, n)) => *n += 1,
                None => queues.push((&a.keys, 1)),
            }
            // NOMKSTREAM: a stream deleted under its queue is not recreated
            // without its group; the check reports it.
            pipe.cmd("XADD")
                .arg(&a.keys.stream)
                .arg("NOMKSTREAM")
                .arg("*")
                .arg("data")
                .arg(a.data.as_ref());
        }
        let check = pipe
            .cmd("EVAL")
            .arg(APPEND_CHECK.as_str())
            .arg(queues.len() * 4);
        for (q, _) in &queues {
            check
                .arg(&q.meta)
                .arg(&q.stream)
                .arg(&q.expiry)
                .arg(&q.delayed);
        }
        for (_, n) in &queues {
            check.arg(*n);
        }
        let mut replies: Vec<Value> = pipe
            .query_async(&mut self.conn())
            .await
            .map_err(|e| map_transaction_err(e, map_write_err))?;
        let checked = replies.pop();
        if replies.len() != appends.len() {
            return Err(Error::new(
                ErrorKind::Backend,
                "Redis answered an append's MULTI/EXEC with the wrong number of replies",
            ));
        }
        match checked {
            Some(Value::Int(1)) => {}
            Some(Value::ServerError(e)) => return Err(map_write_err(e.into())),
            other => {
                return Err(values::unexpected(
                    "append_check.lua",
                    &other.unwrap_or(Value::Nil),
                ))
            }
        }
        replies
            .into_iter()
            .map(|reply| match reply {
                Value::BulkString(id) => std::str::from_utf8(&id)
                    .map_err(|_| values::unexpected("XADD", &Value::BulkString(id.clone())))?
                    .parse()
                    .map(Appended::Entry),
                Value::ServerError(e) => Err(map_write_err(e.into())),
                other => Err(values::unexpected("XADD", &other)),
            })
            .collect()
    }

    /// Run an EVALSHA command built by hand (its arguments in one buffer,
    /// unlike a `ScriptInvocation`), loading the script if Redis lost it.
    async fn evalsha<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut conn = self.conn();
        match cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                script.load_async(&mut conn).await.map_err(map_write_err)?;
                cmd.query_async(&mut conn).await.map_err(map_write_err)
            }
            other => other.map_err(map_write_err),
        }
    }

    async fn invoke<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        inv.invoke_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    /// [`Self::invoke`] for a script the caller sees as a read.
    async fn invoke_read<T: redis::FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        inv.invoke_async(&mut self.conn()).await.map_err(map_err)
    }
}

/// The check that ends a plain append's transaction (see the script), as
/// sent: without comments or indentation, since EVAL makes Redis hash the
/// whole text on every call.
#[cfg(feature = "redis")]
static APPEND_CHECK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("lua/append_check.lua")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
});

/// What one claim takes of the idle pending entries (oldest first, with
/// their delivery counts): up to `count`, each with its count once claimed.
/// An entry whose count then reaches `alone_from` was redelivered before
/// and may be one that kills its process: it is taken alone, as the whole
/// batch when it is first in line, else the batch stops before it.
#[cfg(feature = "redis")]
fn pick_claims(idle: &[(EntryId, u64)], count: usize, alone_from: u64) -> Vec<(EntryId, u64)> {
    let mut picked = Vec::new();
    for &(id, deliveries) in idle {
        let after = deliveries.saturating_add(1);
        let alone = after >= alone_from;
        if alone && !picked.is_empty() {
            break;
        }
        picked.push((id, after));
        if alone || picked.len() >= count {
            break;
        }
    }
    picked
}

/// A failed MULTI/EXEC as the error of its first failing command (e.g.
/// NOGROUP from the XREADGROUP of a deleted queue, OOM from any of them).
#[cfg(feature = "redis")]
fn map_transaction_err(e: redis::RedisError, map: fn(redis::RedisError) -> Error) -> Error {
    let first = e
        .clone()
        .into_server_errors()
        .and_then(|errs| errs.first().map(|(_, se)| se.clone()));
    match first {
        Some(first) => map(redis::RedisError::from(first)),
        None => map(e),
    }
}

/// A connection for blocking reads. No response timeout: the read itself is
/// bounded by BLOCK, and `blocking_read` bounds the wait.
#[cfg(feature = "redis")]
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

#[cfg(feature = "redis")]
fn ms_arg(d: Option<Duration>) -> String {
    d.map(|d| d.as_millis().to_string()).unwrap_or_default()
}

#[cfg(feature = "redis")]
#[async_trait]
impl Engine for RedisEngine {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            virtual_time: false,
            durable: true,
            shared_between_processes: true,
        }
    }

    async fn now_ms(&self) -> Result<u64> {
        let (s, us): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(s * 1000 + us / 1000)
    }

    async fn create_queue(&self, queue: &QueueKeys, dlq: &QueueKeys, registry: &str) -> Result<()> {
        let mut inv = self.scripts.create_queue.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.meta)
            .key(&dlq.stream)
            .key(&dlq.meta)
            .key(registry)
            .arg(&queue.group)
            .arg(&dlq.group);
        let _: i64 = self.invoke(&inv).await?;
        Ok(())
    }

    async fn metadata(&self, meta_key: &str) -> Result<Option<Vec<(String, String)>>> {
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(meta_key)
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        Ok(if fields.is_empty() {
            None
        } else {
            Some(fields)
        })
    }

    async fn members(&self, key: &str) -> Result<Vec<String>> {
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        members.sort();
        Ok(members)
    }

    async fn set_add(&self, key: &str, members: &[String]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        redis::cmd("SADD")
            .arg(key)
            .arg(members)
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn set_remove(&self, key: &str, members: &[String]) -> Result<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        redis::cmd("SREM")
            .arg(key)
            .arg(members)
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn publish(&self, p: &Publish) -> Result<Vec<String>> {
        // A batch of one: one script for both, so they cannot drift apart.
        let mut out = self.publish_many(std::slice::from_ref(p)).await?;
        out.pop().ok_or_else(|| {
            Error::new(
                ErrorKind::Backend,
                "Redis answered a publish with no result: the event may or may not have been published",
            )
        })
    }

    async fn publish_many(&self, batch: &[Publish]) -> Result<Vec<Vec<String>>> {
        // Each route set and log once in KEYS; the events refer to them by
        // index (a bus's batch shares its `all` routes and log).
        fn index<'a>(keys: &mut Vec<&'a str>, key: &'a str) -> usize {
            match keys.iter().position(|k| *k == key) {
                Some(i) => i + 1,
                None => {
                    keys.push(key);
                    keys.len()
                }
            }
        }
        let mut keys: Vec<&str> = Vec::new();
        let mut args: Vec<Vec<usize>> = Vec::with_capacity(batch.len());
        for p in batch {
            let log = p.log.as_deref().map_or(0, |l| index(&mut keys, l));
            let mut refs = vec![log];
            refs.extend(p.routes.iter().map(|r| index(&mut keys, r)));
            args.push(refs);
        }
        let mut inv = self.scripts.publish_many.prepare_invoke();
        for k in &keys {
            inv.key(*k);
        }
        for (p, refs) in batch.iter().zip(&args) {
            inv.arg(&p.target_prefix)
                .arg(p.data.as_ref())
                .arg(refs[0])
                .arg(refs.len() - 1);
            for r in &refs[1..] {
                inv.arg(*r);
            }
        }
        self.invoke(&inv).await
    }

    async fn delete_queues(&self, queues: &[QueueKeys], registry: &str) -> Result<bool> {
        let mut inv = self.scripts.delete_queues.prepare_invoke();
        inv.key(registry);
        for q in queues {
            inv.key(&q.stream)
                .key(&q.meta)
                .key(&q.expiry)
                .key(&q.delayed);
        }
        let n: i64 = self.invoke(&inv).await?;
        Ok(n == 1)
    }

    async fn append(&self, appends: &[Append]) -> Result<Vec<Appended>> {
        if appends.iter().all(|a| a.ttl.is_none() && a.delay.is_none()) {
            return self.append_plain(appends).await;
        }
        // Keys once per queue, then per entry its queue's index and data
        // (plus TTL, delay and nonce when any entry has one).
        let mut queues: Vec<&QueueKeys> = Vec::new();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.append.get_hash());
        let mut entries = Vec::with_capacity(appends.len());
        for a in appends {
            let i = match queues.iter().position(|q| q.stream == a.keys.stream) {
                Some(i) => i,
                None => {
                    queues.push(&a.keys);
                    queues.len() - 1
                }
            };
            entries.push(i + 1);
        }
        cmd.arg(queues.len() * 4);
        for q in &queues {
            cmd.arg(&q.meta)
                .arg(&q.stream)
                .arg(&q.expiry)
                .arg(&q.delayed);
        }
        let full = appends.iter().any(|a| a.ttl.is_some() || a.delay.is_some());
        cmd.arg(if full { "1" } else { "0" });
        for (a, qi) in appends.iter().zip(entries) {
            cmd.arg(qi).arg(a.data.as_ref());
            if full {
                let nonce = if a.delay.is_some() {
                    format!("{:016x}", rand::random::<u64>())
                } else {
                    String::new()
                };
                cmd.arg(ms_arg(a.ttl)).arg(ms_arg(a.delay)).arg(nonce);
            }
        }
        let ids: Vec<String> = self.evalsha(&self.scripts.append, &cmd).await?;
        ids.iter()
            .map(|s| {
                if s.is_empty() {
                    Ok(Appended::Delayed)
                } else {
                    s.parse().map(Appended::Entry)
                }
            })
            .collect()
    }

    async fn read(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>> {
        let deadline = block.map(|b| tokio::time::Instant::now() + b);
        loop {
            let (entries, next_due, has_expiry) = self.read_now(queue, consumer, count).await?;
            if !entries.is_empty() {
                return Ok(entries);
            }
            let Some(deadline) = deadline else {
                return Ok(entries);
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(entries);
            }
            let mut wait = deadline - now;
            if let Some(due) = next_due {
                let server_now = self.now_ms().await?;
                wait = wait.min(Duration::from_millis(due.saturating_sub(server_now).max(1)));
            }
            let mut entries = self.blocking_read(queue, consumer, count, wait).await?;
            if entries.is_empty() {
                continue;
            }
            if has_expiry {
                entries = self.drop_expired(queue, entries).await?;
                if entries.is_empty() {
                    continue;
                }
            }
            return Ok(entries);
        }
    }

    async fn ack(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&queue.stream).arg(&queue.group);
        for id in ids {
            cmd.arg(id.to_string());
        }
        cmd.query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn delete(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = self.scripts.delete.prepare_invoke();
        inv.key(&queue.stream).key(&queue.expiry).arg(&queue.group);
        for id in ids {
            inv.arg(id.to_string());
        }
        self.invoke(&inv).await
    }

    async fn transfer(
        &self,
        from: &QueueKeys,
        to: &QueueKeys,
        moves: &[Transfer],
    ) -> Result<Vec<Option<EntryId>>> {
        if moves.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.scripts.transfer.prepare_invoke();
        inv.key(&from.stream)
            .key(&from.expiry)
            .key(&to.stream)
            .key(&to.meta)
            .arg(&from.group);
        for m in moves {
            inv.arg(m.id.to_string());
            match &m.data {
                Some(d) => inv.arg("1").arg(d.as_ref()),
                None => inv.arg("0").arg(""),
            };
            inv.arg(m.fields.len());
            for (k, v) in &m.fields {
                inv.arg(k.as_ref()).arg(v.as_ref());
            }
        }
        let ids: Vec<String> = self.invoke(&inv).await?;
        ids.iter()
            .map(|s| {
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse().map(Some)
                }
            })
            .collect()
    }

    async fn range(
        &self,
        queue: &QueueKeys,
        start: EntryId,
        end: EntryId,
        count: usize,
    ) -> Result<Vec<Entry>> {
        if start > end {
            return Ok(Vec::new());
        }
        let reply: Value = redis::cmd("XRANGE")
            .arg(&queue.stream)
            .arg(start.to_string())
            .arg(end.to_string())
            .arg("COUNT")
            .arg(redis_count(count))
            .query_async(&mut self.conn())
            .await
            .map_err(map_err)?;
        values::entries(reply, 0)
    }

    async fn purge(&self, queue: &QueueKeys) -> Result<u64> {
        let mut inv = self.scripts.purge.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.expiry)
            .key(&queue.delayed)
            .key(&queue.meta)
            .arg(&queue.group);
        self.invoke(&inv).await
    }

    async fn info(&self, queue: &QueueKeys) -> Result<StreamInfo> {
        values::info(&mut self.conn(), queue).await
    }

    async fn sweep(&self, queue: &QueueKeys) -> Result<u64> {
        let mut total = 0;
        loop {
            let mut inv = self.scripts.sweep.prepare_invoke();
            inv.key(&queue.stream)
                .key(&queue.expiry)
                .key(&queue.delayed)
                .arg(&queue.group);
            let (n, more): (u64, u64) = self.invoke(&inv).await?;
            total += n;
            if more == 0 {
                return Ok(total);
            }
        }
    }

    async fn claim(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        alone_from: u64,
    ) -> Result<Claimed> {
        let min_idle_ms = min_idle.as_millis() as u64;
        let (has_expiry, idle) = self
            .claim_candidates(queue, consumer, min_idle_ms, count)
            .await?;
        let picked = pick_claims(&idle, count, alone_from);
        if picked.is_empty() {
            return Ok(Claimed::default());
        }
        // XCLAIM re-checks the idle time of each id: one another consumer
        // took (or its owner touched) since XPENDING is left alone, so the
        // two round trips claim nothing twice. It also drops the pending ids
        // of deleted entries and returns the rest with their fields.
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&queue.stream)
            .arg(&queue.group)
            .arg(consumer)
            .arg(min_idle_ms);
        for (id, _) in &picked {
            cmd.arg(id.to_string());
        }
        let reply: Value = cmd
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)?;
        let mut out = values::claim_reply(reply, &picked)?;
        if has_expiry && !out.entries.is_empty() {
            out.entries = self.drop_expired(queue, out.entries).await?;
        }
        Ok(out)
    }

    async fn trim(&self, queue: &QueueKeys, retention: Duration) -> Result<u64> {
        let mut inv = self.scripts.trim.prepare_invoke();
        inv.key(&queue.stream)
            .arg(&queue.group)
            .arg(retention.as_millis() as u64);
        self.invoke(&inv).await
    }

    async fn trim_log(&self, stream: &str, before_ms: u64) -> Result<u64> {
        redis::cmd("XTRIM")
            .arg(stream)
            .arg("MINID")
            .arg(format!("{before_ms}-0"))
            .query_async(&mut self.conn())
            .await
            .map_err(map_write_err)
    }

    async fn set_metadata(
        &self,
        queue: &QueueKeys,
        field: &str,
        value: Option<&str>,
    ) -> Result<()> {
        let mut inv = self.scripts.set_metadata.prepare_invoke();
        inv.key(&queue.meta)
            .arg(field)
            .arg(if value.is_some() { "1" } else { "0" })
            .arg(value.unwrap_or_default());
        let _: i64 = self.invoke(&inv).await?;
        Ok(())
    }

    async fn extend(&self, queue: &QueueKeys, consumer: &str, ids: &[EntryId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut inv = self.scripts.extend.prepare_invoke();
        inv.key(&queue.stream).arg(&queue.group).arg(consumer);
        for id in ids {
            inv.arg(id.to_string());
        }
        self.invoke(&inv).await
    }

    async fn release(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        min_idle: Duration,
    ) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        if after > min_idle && !min_idle.is_zero() {
            return park::park(self, queue, consumer, ids, after).await;
        }
        let mut inv = self.scripts.release.prepare_invoke();
        inv.key(&queue.stream)
            .key(&queue.delayed)
            .arg(&queue.group)
            .arg(consumer)
            .arg(after.as_millis() as u64)
            .arg(min_idle.as_millis() as u64);
        for id in ids {
            inv.arg(id.to_string());
        }
        self.invoke(&inv).await
    }

    async fn parked(&self, queue: &QueueKeys) -> Result<Vec<ParkedRetry>> {
        park::parked(self, queue).await
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;

    fn idle(counts: &[u64]) -> Vec<(EntryId, u64)> {
        counts
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{}-0", i + 1).parse().unwrap(), *c))
            .collect()
    }

    fn counts(picked: &[(EntryId, u64)]) -> Vec<u64> {
        picked.iter().map(|(_, c)| *c).collect()
    }

    #[test]
    fn a_batch_stops_before_a_redelivered_entry() {
        // alone_from 3: an entry delivered twice before is claimed alone.
        assert_eq!(
            counts(&pick_claims(&idle(&[1, 1, 2, 1]), 10, 3)),
            vec![2, 2]
        );
        assert_eq!(counts(&pick_claims(&idle(&[2, 1, 1]), 10, 3)), vec![3]);
        assert_eq!(
            counts(&pick_claims(&idle(&[1, 1, 1, 1]), 3, 3)),
            vec![2, 2, 2]
        );
        assert!(pick_claims(&idle(&[]), 3, 3).is_empty());
        // "never alone" stays never, even at the top of the count range.
        assert_eq!(
            counts(&pick_claims(&idle(&[u64::MAX]), 3, 1 << 53)),
            vec![u64::MAX]
        );
    }
}
