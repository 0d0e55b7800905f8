//! The storage engine: streams, consumer groups, pending lists, and the few
//! atomic operations the queue layer needs.
//!
//! Everything above this trait (queues, bus, runtime) is written once. An
//! engine only stores and moves opaque entries; it knows nothing of JSON,
//! metadata or events. Each method that changes more than one key is atomic:
//! one Lua script on Redis, one critical section in the embedded engine.
//!
//! Key names are chosen by [`KeyLayout`] and passed in fully resolved, so a
//! cluster layout only changes how names are spelled.

mod id;
pub(crate) mod keys;
pub mod memory;
pub mod redis;
mod url;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub use id::EntryId;
pub use keys::{validate_name, KeyLayout, QueueKeys};
pub use url::redact_url;

use crate::error::{Error, ErrorKind, Result};

/// One stream entry as the engine returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The stream id.
    pub id: EntryId,
    /// The value of the entry's `data` field; `None` if a foreign writer left
    /// an entry without one.
    pub data: Option<Bytes>,
    /// How many times the entry has been delivered to the reading group,
    /// this delivery included (0 for entries read without a group: peek).
    pub delivery_count: u64,
    /// The entry's other fields, in stream order: empty for what eddy and
    /// LeanMQ write, but a foreign writer may add some, and a move keeps
    /// them (see [`Transfer`]).
    pub fields: Vec<(Bytes, Bytes)>,
}

impl Entry {
    /// A new entry with only a `data` field.
    pub fn new(id: EntryId, data: Option<Bytes>, delivery_count: u64) -> Self {
        Self {
            id,
            data,
            delivery_count,
            fields: Vec::new(),
        }
    }

    /// The same entry with these other fields.
    pub fn with_fields(mut self, fields: Vec<(Bytes, Bytes)>) -> Self {
        self.fields = fields;
        self
    }

    /// The value of the other field `name`, if the entry has it.
    pub fn field(&self, name: &str) -> Option<&Bytes> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// One entry to append, as part of an atomic [`Engine::append`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Append {
    /// The queue to append to (shared: a batch clones it per entry).
    pub keys: Arc<QueueKeys>,
    /// The value of the `data` field.
    pub data: Bytes,
    /// Remove the entry unread after this long (server clock).
    pub ttl: Option<Duration>,
    /// Make the entry visible only after this long (server clock).
    pub delay: Option<Duration>,
}

impl Append {
    /// An append of `data` to the queue `keys`.
    pub fn new(keys: impl Into<Arc<QueueKeys>>, data: Bytes) -> Self {
        let keys = keys.into();
        Self {
            keys,
            data,
            ttl: None,
            delay: None,
        }
    }

    /// Set a time to live.
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Set a delivery delay.
    pub fn delay(mut self, delay: Option<Duration>) -> Self {
        self.delay = delay;
        self
    }
}

/// What an append produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Appended {
    /// The entry is in the stream under this id.
    Entry(EntryId),
    /// The entry waits in the delayed set and gets its stream id when due.
    Delayed,
}

/// A consumer in a group, as `XINFO CONSUMERS` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The consumer's name.
    pub name: String,
    /// Entries delivered to it and not yet acknowledged.
    pub pending: u64,
    /// Milliseconds since it last read.
    pub idle_ms: u64,
}

/// The state of one queue's stream and group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StreamInfo {
    /// Entries in the stream (delivered or not, acknowledged or not).
    pub length: u64,
    /// Entries delivered to the group and not yet acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to the group.
    pub lag: u64,
    /// Consumers of the group.
    pub consumers: Vec<ConsumerInfo>,
    /// Milliseconds since the oldest pending entry was last delivered.
    pub oldest_pending_idle_ms: Option<u64>,
    /// Milliseconds since the oldest pending entry was first added to the
    /// stream (by the server's clock): how long the oldest unfinished
    /// message has been waiting overall.
    pub oldest_pending_age_ms: Option<u64>,
    /// Entries waiting in the delayed set.
    pub delayed: u64,
    /// The id of the first entry, if any.
    pub first_id: Option<EntryId>,
    /// The id of the last entry, if any.
    pub last_id: Option<EntryId>,
    /// Whether `lag` is an estimate: counting it exactly would mean
    /// reading the backlog (on Redis, after entries were deleted from the
    /// stream; see [`crate::QueueInfo::lag_estimated`]).
    pub lag_estimated: bool,
    /// Entries ever appended to the stream, deleted or trimmed ones
    /// included (Redis `XINFO STREAM` `entries-added`, Redis 7.0 and
    /// later); it only grows, until the stream is deleted or purged. On
    /// Redis it also counts the entries of an append refused by its check
    /// and rolled back (see `append_check.lua`).
    /// `None` where the server does not say.
    pub entries_added: Option<u64>,
    /// Entries the group has delivered at least once (Redis `XINFO
    /// GROUPS` `entries-read`). `None` where the server does not say:
    /// before Redis 7.0, or when deletions left Redis unable to tell.
    pub entries_read: Option<u64>,
}

/// A move of one entry from one queue to another: the destination gets a new
/// entry with every field of the source entry, in order, `data` replaced if
/// a new one is given and `fields` set (replaced where the source has them,
/// added after the rest otherwise); the source entry is acknowledged and
/// deleted. Fields are never dropped, so a foreign entry keeps all of its own.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Transfer {
    /// The source entry.
    pub id: EntryId,
    /// The new value of the `data` field; `None` keeps the source's as it
    /// is (or absent, if it had none).
    pub data: Option<Bytes>,
    /// Fields to set besides `data`.
    pub fields: Vec<(Bytes, Bytes)>,
}

impl Transfer {
    /// A transfer of entry `id`, its `data` written as `data`.
    pub fn new(id: EntryId, data: Bytes) -> Self {
        Self {
            id,
            data: Some(data),
            fields: Vec::new(),
        }
    }

    /// A transfer of entry `id` that keeps its `data` as it is.
    pub fn keep_data(id: EntryId) -> Self {
        Self {
            id,
            data: None,
            fields: Vec::new(),
        }
    }

    /// Also set the field `name` to `value`.
    pub fn field(mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.fields.push((name.into(), value.into()));
        self
    }

    /// The fields of the moved entry, given the source entry's `data` and
    /// other fields: what both engines write.
    pub fn apply(&self, data: Option<&Bytes>, fields: &[(Bytes, Bytes)]) -> Vec<(Bytes, Bytes)> {
        let mut out = Vec::with_capacity(fields.len() + self.fields.len() + 1);
        if let Some(d) = self.data.as_ref().or(data) {
            out.push((Bytes::from_static(b"data"), d.clone()));
        }
        for (i, (k, v)) in fields.iter().enumerate() {
            if k.as_ref() == b"data" {
                continue;
            }
            // Only the last copy of a repeated field, the one readers take,
            // is set; the others stay as they were.
            let is_last = !fields[i + 1..].iter().any(|(n, _)| n == k);
            let set = self
                .fields
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .filter(|_| is_last);
            out.push((k.clone(), set.map_or_else(|| v.clone(), |(_, v)| v.clone())));
        }
        for (k, v) in &self.fields {
            if k.as_ref() != b"data" && !out.iter().any(|(n, _)| n == k) {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }
}

/// Which optional behaviours an engine has; the conformance suite reads these
/// instead of silently skipping assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Time follows `tokio::time`, so tests may pause and advance it.
    pub virtual_time: bool,
    /// Data survives the process (a server holds it).
    pub durable: bool,
    /// Other OS processes can share the data.
    pub shared_between_processes: bool,
    /// A Redis Cluster: keys are spelled by [`KeyLayout::clustered`], an
    /// atomic step covers one hash slot (one queue and its DLQ, or queues
    /// sharing a hash tag), and the bus fans out through its relay.
    pub clustered: bool,
}

/// The storage engine.
///
/// Every method that writes more than one key is atomic. Methods never trim
/// entries that a group has not acknowledged.
#[async_trait]
pub trait Engine: Send + Sync + fmt::Debug + 'static {
    /// Where this engine stores data, for messages (`memory://`,
    /// `redis://127.0.0.1:6379/0`; never a password).
    fn describe(&self) -> String;

    /// The optional behaviours this engine has.
    fn capabilities(&self) -> Capabilities;

    /// The engine's clock, in milliseconds since the Unix epoch (the server's
    /// clock on Redis).
    async fn now_ms(&self) -> Result<u64>;

    /// Create a queue and its dead-letter queue if they do not exist: both
    /// streams with their groups (starting at the beginning), both metadata
    /// hashes, both registry entries. Idempotent; an existing `created_at` is
    /// kept.
    async fn create_queue(&self, queue: &QueueKeys, dlq: &QueueKeys, registry: &str) -> Result<()>;

    /// The fields of a metadata hash, or `None` if it does not exist.
    async fn metadata(&self, meta_key: &str) -> Result<Option<Vec<(String, String)>>>;

    /// [`Engine::metadata`] of several hashes, in their order; an engine may
    /// read them together (Redis pipelines them).
    async fn metadata_many(
        &self,
        meta_keys: &[String],
    ) -> Vec<Result<Option<Vec<(String, String)>>>> {
        let mut out = Vec::with_capacity(meta_keys.len());
        for key in meta_keys {
            out.push(self.metadata(key).await);
        }
        out
    }

    /// Every member of a set (the registry, a route set), sorted.
    async fn members(&self, key: &str) -> Result<Vec<String>>;

    /// Every member of the registry set, sorted.
    async fn registry(&self, registry: &str) -> Result<Vec<String>> {
        self.members(registry).await
    }

    /// Add members to a set; returns how many were new.
    async fn set_add(&self, key: &str, members: &[String]) -> Result<u64>;

    /// Remove members from a set; returns how many were there.
    async fn set_remove(&self, key: &str, members: &[String]) -> Result<u64>;

    /// Fan out: atomically append `data` to the stream
    /// `target_prefix + member` for every member of every `routes` set (each
    /// once), and to `log` if given. Returns the members, sorted. Fails
    /// with [`ErrorKind::StreamMissing`], writing nothing, if a target or
    /// the log does not exist.
    async fn publish(&self, publish: &Publish) -> Result<Vec<String>>;

    /// Several fan-outs as one atomic step, in order: every key is checked
    /// before the first write, so on an error none of them happened.
    /// Returns each one's members, as [`Engine::publish`] does.
    async fn publish_many(&self, batch: &[Publish]) -> Result<Vec<Vec<String>>>;

    /// Delete each queue's keys and remove it from the registry. Returns
    /// whether any key existed.
    async fn delete_queues(&self, queues: &[QueueKeys], registry: &str) -> Result<bool>;

    /// Append entries, all or none. Fails with [`ErrorKind::QueueNotFound`]
    /// (writing nothing) if a queue's metadata hash is missing, and with
    /// [`ErrorKind::StreamMissing`] if its stream is (never recreated
    /// without its group).
    async fn append(&self, appends: &[Append]) -> Result<Vec<Appended>>;

    /// Read up to `count` new entries for `consumer` in the queue's group,
    /// waiting up to `block` for the first one. Due delayed entries are made
    /// visible first; entries whose TTL has passed are removed, never
    /// returned.
    async fn read(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>>;

    /// Acknowledge entries in the queue's group; returns how many were pending.
    async fn ack(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64>;

    /// Acknowledge and delete entries; returns how many existed.
    async fn delete(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64>;

    /// Atomically move entries from `from` to `to` (see [`Transfer`]). An
    /// entry no longer in `from` is skipped (`None` in the result).
    async fn transfer(
        &self,
        from: &QueueKeys,
        to: &QueueKeys,
        moves: &[Transfer],
    ) -> Result<Vec<Option<EntryId>>>;

    /// Up to `count` entries with ids in `[start, end]`, oldest first,
    /// without delivering them.
    async fn range(
        &self,
        queue: &QueueKeys,
        start: EntryId,
        end: EntryId,
        count: usize,
    ) -> Result<Vec<Entry>>;

    /// Remove every entry, pending or not, delayed or not; the group stays.
    /// Returns how many stream entries were removed.
    async fn purge(&self, queue: &QueueKeys) -> Result<u64>;

    /// The state of the queue's stream and group.
    async fn info(&self, queue: &QueueKeys) -> Result<StreamInfo>;

    /// [`Engine::info`] of several queues, in their order; an engine may
    /// read them together (Redis pipelines them).
    async fn info_many(&self, queues: &[QueueKeys]) -> Vec<Result<StreamInfo>> {
        let mut out = Vec::with_capacity(queues.len());
        for q in queues {
            out.push(self.info(q).await);
        }
        out
    }

    /// Remove entries whose TTL has passed and make due delayed entries
    /// visible; returns how many entries expired.
    async fn sweep(&self, queue: &QueueKeys) -> Result<u64>;

    /// How many entries this handle has removed because their TTL passed
    /// (on a read, a claim or a sweep), per queue stream key, since it was
    /// opened. Process-local: other processes' removals are not in it. An
    /// engine that does not count returns nothing.
    fn expired_counts(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    /// Remove acknowledged history beyond `retention`: entries the group
    /// has delivered and acknowledged that are older than its age, or that
    /// have more than its length of such entries after them. Never an entry
    /// that is pending or not yet delivered. Returns how many were removed.
    async fn trim(&self, queue: &QueueKeys, retention: Retention) -> Result<u64>;

    /// Remove from the queue's group every consumer that holds no pending
    /// entry and has not read for at least `idle`; returns their names. A
    /// consumer that holds entries stays until they are acknowledged or
    /// claimed by another.
    async fn forget_consumers(&self, queue: &QueueKeys, idle: Duration) -> Result<Vec<String>>;

    /// Remove every entry older than `before` (epoch ms), acknowledged or
    /// not. Only for logs nobody consumes through the group (the bus's `all`
    /// log); a queue's history is trimmed with [`Engine::trim`].
    async fn trim_log(&self, stream: &str, before_ms: u64) -> Result<u64>;

    /// Set (or with `None` remove) one field of a metadata hash; fails with
    /// [`ErrorKind::QueueNotFound`] if the hash does not exist.
    async fn set_metadata(&self, queue: &QueueKeys, field: &str, value: Option<&str>)
        -> Result<()>;

    /// Take over up to `count` entries that have been pending for at least
    /// `min_idle` (their consumer crashed or hung) for `consumer`. Each
    /// claimed entry's delivery count goes up by one and is returned with
    /// it. Entries whose TTL passed are removed instead; pending ids whose
    /// entries were deleted are dropped from the pending list and reported.
    /// A retry parked until later ([`Engine::release`]) is passed over
    /// until it is due.
    ///
    /// An entry whose delivery count, once claimed, reaches `alone_from` was
    /// redelivered before (its handler may be one that kills its process)
    /// and is claimed on its own: first in line it is the only one claimed,
    /// later in line the claim stops before it, so that no other entry's
    /// delivery count rises with it. `u64::MAX` claims plain batches.
    async fn claim(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        alone_from: u64,
    ) -> Result<Claimed>;

    /// Reset the idle time of entries `consumer` still owns, so nobody
    /// reclaims them while it works (a lease extension). Entries another
    /// consumer has reclaimed are left alone. Returns how many were extended.
    async fn extend(&self, queue: &QueueKeys, consumer: &str, ids: &[EntryId]) -> Result<u64>;

    /// Keep entries `consumer` owns pending, with their delivery counts, but
    /// make them claimable (by claimers using `min_idle`) `after` from now:
    /// a retry with delay. Up to `min_idle`, the delivery is dated back; a
    /// longer `after` parks the entry: a marker for this delivery (entry
    /// and count) in the queue's delayed set, counted in
    /// [`StreamInfo::delayed`] until due, makes [`Engine::claim`] pass over
    /// it until then, however long it has been idle (with `min_idle` zero,
    /// nothing can hold an entry back from claimers: it is claimable at
    /// once). A later release of the same delivery replaces an earlier one.
    /// Atomic: the entry never leaves the pending list. Returns how many
    /// were released.
    async fn release(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        min_idle: Duration,
    ) -> Result<u64>;

    /// The retries [`Engine::release`] parked in the queue that still wait
    /// for their due time, soonest first. An entry acknowledged, deleted or
    /// taken over by another consumer since it was parked is not listed
    /// (its marker still counts in [`StreamInfo::delayed`] until due). A
    /// read: nothing changes.
    async fn parked(&self, queue: &QueueKeys) -> Result<Vec<ParkedRetry>>;

    /// Fail with [`ErrorKind::PermissionDenied`], naming the command, if
    /// this connection may not run every command eddy uses on keys like
    /// `probe_key` (a key under the prefix; nothing is written). Redis
    /// checks its ACL; an engine without access control has nothing to
    /// check.
    async fn check_access(&self, probe_key: &str) -> Result<()> {
        let _ = probe_key;
        Ok(())
    }
}

/// A retry waiting past the visibility timeout (see [`Engine::release`]):
/// its entry is still pending, held for its consumer, until it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParkedRetry {
    /// The pending entry.
    pub id: EntryId,
    /// The consumer that parked it, which holds it meanwhile.
    pub consumer: String,
    /// Deliveries so far: the next one, once due, is this plus one.
    pub delivery_count: u64,
    /// When it becomes claimable again, in milliseconds since the Unix
    /// epoch by the engine's clock ([`Engine::now_ms`]).
    pub due_ms: u64,
}

/// How much acknowledged history a queue keeps ([`Engine::trim`]): an
/// entry the group has delivered and acknowledged goes once it is older
/// than `age`, or once `length` newer acknowledged entries follow it,
/// whichever comes first. `None` is no limit of that kind; neither limit
/// ever touches a pending or undelivered entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep acknowledged entries at most this long (by their id's time).
    pub age: Option<Duration>,
    /// Keep at most this many acknowledged entries.
    pub length: Option<u64>,
}

impl Retention {
    /// Keep acknowledged entries for `age`, however many.
    pub fn age(age: Duration) -> Self {
        Self {
            age: Some(age),
            length: None,
        }
    }

    /// Keep at most `n` acknowledged entries, however old.
    pub fn length(n: u64) -> Self {
        Self {
            age: None,
            length: Some(n),
        }
    }

    /// Both limits (`None` for either leaves it out).
    pub fn new(age: Option<Duration>, length: Option<u64>) -> Self {
        Self { age, length }
    }

    /// Whether it removes anything at all.
    pub fn is_bounded(&self) -> bool {
        self.age.is_some() || self.length.is_some()
    }
}

/// One event to fan out with [`Engine::publish`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Publish {
    /// Route sets whose members name the target queues.
    pub routes: Vec<String>,
    /// A target's stream key is this prefix followed by the member.
    pub target_prefix: String,
    /// A stream that gets every event too (the bus's `all` log).
    pub log: Option<String>,
    /// The entry's `data`.
    pub data: Bytes,
}

impl Publish {
    /// A fan-out of `data` to the members of `routes`.
    pub fn new(routes: Vec<String>, target_prefix: impl Into<String>, data: Bytes) -> Self {
        Self {
            routes,
            target_prefix: target_prefix.into(),
            log: None,
            data,
        }
    }

    /// Also append to `log`.
    pub fn log(mut self, log: impl Into<String>) -> Self {
        self.log = Some(log.into());
        self
    }
}

/// What [`Engine::claim`] took over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Claimed {
    /// The claimed entries, with their new delivery counts.
    pub entries: Vec<Entry>,
    /// Pending ids the claim picked but did not take: their entries no
    /// longer exist (now dropped from the pending list) or, on Redis,
    /// another consumer took them between the pick and the claim.
    pub deleted: Vec<EntryId>,
}

/// [`ErrorKind::StreamMissing`] for stream key `stream`: a write found the
/// stream of a queue (or route target) gone.
pub(crate) fn stream_missing(stream: &str) -> Error {
    Error::new(
        ErrorKind::StreamMissing,
        format!(
            "the stream `{stream}` was deleted while its queue's metadata or routes stayed; nothing was written: recreate the queue (`eddy queue create NAME`, or `Eddy::create_queue_pair`; it keeps the queue's DLQ and delayed messages) or remove the route"
        ),
    )
}

/// A shared engine.
pub type SharedEngine = Arc<dyn Engine>;

/// Entries an engine handle removed because their TTL had passed, per
/// queue stream key, since the handle was opened: a process-local count
/// for the metrics ([`crate::metrics`]). Bumped only when something
/// expires, so the read path pays nothing for it.
#[derive(Debug, Default)]
pub(crate) struct ExpiredCounts(std::sync::Mutex<foldhash::HashMap<String, u64>>);

impl ExpiredCounts {
    pub(crate) fn add(&self, stream: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get_mut(stream) {
            Some(c) => *c += n,
            None => {
                m.insert(stream.to_owned(), n);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<(String, u64)> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// Open the engine a URL names: `memory://` (`memory://?history=30s` to
/// bound its acknowledged history, see [`memory::MemoryEngine::with_history`])
/// or a Redis deployment:
///
/// | URL | Redis |
/// |---|---|
/// | `redis://[user:pass@]host:port/db` | one standalone server (`rediss://` for TLS) |
/// | `redis+unix:///path/to.sock` | one standalone server on a unix socket |
/// | `redis+cluster://[user:pass@]host:port[,host:port...]` | a Redis Cluster, by seed nodes (`rediss+cluster://` for TLS) |
/// | `redis+sentinel://[user:pass@]host:port[,host:port...]/MASTER[/DB]` | the master a set of Sentinels name, followed through failovers (`rediss+sentinel://` for TLS); `?sentinel_username=&sentinel_password=` for the Sentinels' own credentials |
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// let engine = eddy::engine::open("memory://").await?;
/// assert_eq!(engine.describe(), "memory://");
/// # Ok(())
/// # }
/// ```
pub async fn open(url: &str) -> Result<SharedEngine> {
    open_with(url, &redis::RedisOptions::default()).await
}

/// Like [`open`], with options for the Redis engine.
pub async fn open_with(url: &str, options: &redis::RedisOptions) -> Result<SharedEngine> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "memory" => Ok(Arc::new(memory::MemoryEngine::from_url(url)?)),
        "redis" | "rediss" | "redis+unix" | "unix" | "redis+cluster" | "rediss+cluster"
        | "redis+sentinel" | "rediss+sentinel" => open_redis(url, scheme, options).await,
        _ => Err(Error::new(
            ErrorKind::InvalidUrl,
            format!(
                "unknown engine URL `{}`: use memory://, redis://host:port/db, rediss://host:port/db, redis+unix:///path, \
                 redis+cluster://host:port[,host:port...] or redis+sentinel://host:port[,host:port...]/MASTER",
                redact_url(url)
            ),
        )),
    }
}

#[cfg(feature = "redis")]
async fn open_redis(
    url: &str,
    scheme: &str,
    options: &redis::RedisOptions,
) -> Result<SharedEngine> {
    if scheme.starts_with("rediss")
        && !cfg!(any(feature = "tls-rustls", feature = "tls-native-tls"))
    {
        return Err(feature_disabled(
            url,
            &format!("`{scheme}://` (Redis over TLS) needs eddy's `tls-rustls` or `tls-native-tls` feature"),
        ));
    }
    Ok(Arc::new(redis::RedisEngine::connect(url, options).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str, _: &str, _: &redis::RedisOptions) -> Result<SharedEngine> {
    Err(feature_disabled(
        url,
        "the Redis engine needs eddy's `redis` feature (on by default; this build has \
         `default-features = false`): enable it, e.g. `eddy = { version = \"...\", features = [\"redis\"] }`",
    ))
}

/// [`ErrorKind::FeatureDisabled`]: this build cannot open `url`.
fn feature_disabled(url: &str, what: &str) -> Error {
    Error::new(
        ErrorKind::FeatureDisabled,
        format!("cannot open `{}`: {what}", redact_url(url)),
    )
}

#[cfg(all(test, not(feature = "redis")))]
mod without_redis {
    use super::*;

    #[tokio::test]
    async fn a_redis_url_names_the_feature_to_enable() {
        for url in [
            "redis://u:SECRET@127.0.0.1:6379/0",
            "rediss://127.0.0.1:6380/0",
            "redis+unix:///tmp/redis.sock?db=0",
        ] {
            let err = open(url).await.expect_err("no Redis engine in this build");
            assert_eq!(err.kind(), ErrorKind::FeatureDisabled, "{url}: {err}");
            assert!(err.message().contains("`redis` feature"), "{err}");
            assert!(!err.message().contains("SECRET"), "{err}");
        }
        assert_eq!(
            open("memory://")
                .await
                .map(|e| e.describe())
                .ok()
                .as_deref(),
            Some("memory://")
        );
    }
}
