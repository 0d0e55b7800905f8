//! Queues with dead-letter queues: LeanMQ 0.2's API and wire format, without
//! its flaws (no trimming of unread messages, atomic dead-lettering and
//! requeueing, delivery counts without a round trip per message, TTL enforced
//! at read time, undecodable entries dead-lettered instead of dropped).

pub mod consumer;
mod dead_letter;
mod history;
mod info;
mod leases;
mod options;
mod transaction;
mod upkeep;
pub(crate) mod wire;

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::engine::{
    self, Append, Appended, EntryId, KeyLayout, QueueKeys, SharedEngine, StreamInfo,
};
pub use crate::engine::{ParkedRetry, Retention};
use crate::error::{Error, ErrorKind, Result};

pub use info::{ConsumerStatus, QueueInfo};
pub use options::{Receive, SendOptions};
pub use transaction::Transaction;
pub use upkeep::Sweeper;
pub(crate) use wire::Delivered;
pub use wire::{Failure, Message, TypedMessage};

/// The default maximum encoded size of a message: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The consumer name used when none is given (LeanMQ's).
pub const DEFAULT_CONSUMER: &str = "default-consumer";

/// A handle on an engine under one key prefix: creates, finds, lists and
/// deletes queues. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use serde_json::json;
///
/// let mq = eddy::Eddy::open("memory://").await?;
/// let (orders, _dlq) = mq.create_queue_pair("orders").await?;
/// orders.send(&json!({"order_id": 7})).await?;
///
/// let got = orders.receive(&eddy::Receive::new().count(10)).await?;
/// assert_eq!(got[0].data["order_id"], 7);
/// orders.ack(&[got[0].id]).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Eddy {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    engine: SharedEngine,
    layout: KeyLayout,
    max_payload_bytes: usize,
}

/// Settings for [`Eddy`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// let mq = eddy::EddyBuilder::new("memory://")
///     .prefix("jobs:")
///     .max_payload_bytes(64 * 1024)
///     .open()
///     .await?;
/// assert_eq!(mq.prefix(), "jobs:");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EddyBuilder {
    url: String,
    prefix: String,
    max_payload_bytes: usize,
    redis: engine::redis::RedisOptions,
}

impl EddyBuilder {
    /// Settings for the engine at `url` with defaults: prefix `mq:`
    /// (LeanMQ's), 1 MiB payload limit.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "mq:".to_owned(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            redis: Default::default(),
        }
    }

    /// The key prefix (`mq:` by default; LeanMQ's webhooks use `webhook:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The largest encoded message accepted, and read without dead-lettering.
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.max_payload_bytes = n;
        self
    }

    /// Connection settings for a Redis URL.
    pub fn redis_options(mut self, options: engine::redis::RedisOptions) -> Self {
        self.redis = options;
        self
    }

    /// Connect, and check that the connection may run every command eddy
    /// uses on keys under the prefix (on Redis, the user's ACL), so that a
    /// missing permission is an error here, naming it, rather than in the
    /// middle of work.
    pub async fn open(self) -> Result<Eddy> {
        // A bad prefix fails before anything connects.
        let layout = KeyLayout::new(&self.prefix)?;
        let engine = engine::open_with(&self.url, &self.redis).await?;
        let mq = Eddy::from_parts(engine, layout, self.max_payload_bytes);
        let probe = mq.layout().queue("eddy-access-check")?;
        mq.engine().check_access(&probe.stream).await?;
        Ok(mq)
    }

    /// Use an engine that is already open (to share one between prefixes).
    pub fn with_engine(self, engine: SharedEngine) -> Result<Eddy> {
        let layout = KeyLayout::new(&self.prefix)?;
        Ok(Eddy::from_parts(engine, layout, self.max_payload_bytes))
    }
}

impl Eddy {
    /// Connect to the engine at `url` with default settings (see
    /// [`EddyBuilder`]).
    pub async fn open(url: &str) -> Result<Self> {
        EddyBuilder::new(url).open().await
    }

    fn from_parts(engine: SharedEngine, layout: KeyLayout, max_payload_bytes: usize) -> Self {
        // A cluster needs each queue's keys in one slot (see KeyLayout).
        let layout = if engine.capabilities().clustered {
            layout.into_clustered()
        } else {
            layout
        };
        Self {
            inner: Arc::new(Shared {
                engine,
                layout,
                max_payload_bytes,
            }),
        }
    }

    /// Whether `other` lists the same queues: the same engine and prefix.
    pub(crate) fn same_queues(&self, other: &Eddy) -> bool {
        Arc::ptr_eq(&self.inner.engine, &other.inner.engine) && self.prefix() == other.prefix()
    }

    /// The engine underneath.
    pub fn engine(&self) -> &SharedEngine {
        &self.inner.engine
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.layout.prefix()
    }

    /// How this handle spells keys.
    pub(crate) fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }

    /// The payload size limit.
    pub fn max_payload_bytes(&self) -> usize {
        self.inner.max_payload_bytes
    }

    fn handle(&self, keys: QueueKeys, dlq: QueueKeys) -> Queue {
        Queue {
            mq: self.clone(),
            keys,
            dlq,
        }
    }

    /// Create a queue and its dead-letter queue (idempotent) and return both.
    pub async fn create_queue_pair(&self, name: &str) -> Result<(Queue, Queue)> {
        let keys = self.inner.layout.queue(name)?;
        let dlq = self.inner.layout.dlq(name)?;
        self.inner
            .engine
            .create_queue(&keys, &dlq, &self.inner.layout.registry())
            .await?;
        Ok((
            self.handle(keys.clone(), dlq.clone()),
            self.handle(dlq, keys),
        ))
    }

    /// The queue `name`; [`ErrorKind::QueueNotFound`] if it was not created.
    pub async fn queue(&self, name: &str) -> Result<Queue> {
        let keys = self.inner.layout.queue(name)?;
        let dlq = self.inner.layout.dlq(name)?;
        if self.inner.engine.metadata(&keys.meta).await?.is_none() {
            return Err(queue_not_found(name));
        }
        Ok(self.handle(keys, dlq))
    }

    /// The dead-letter queue of queue `name`.
    pub async fn dead_letter_queue(&self, name: &str) -> Result<Queue> {
        let keys = self.inner.layout.queue(name)?;
        let dlq = self.inner.layout.dlq(name)?;
        if self.inner.engine.metadata(&dlq.meta).await?.is_none() {
            return Err(Error::new(
                ErrorKind::QueueNotFound,
                format!("queue `{name}` has no dead-letter queue: create the queue first (eddy queue create {name})"),
            ));
        }
        Ok(self.handle(dlq, keys))
    }

    /// Every queue and DLQ under this prefix, with its state, sorted by name.
    ///
    /// A queue that cannot be read (a key of the wrong type, its stream
    /// deleted by hand) does not fail the list: it is a row with
    /// [`QueueInfo::error`] set, and the rest are listed as usual. A
    /// registry member whose metadata is gone (deleted by hand) or that eddy
    /// cannot name is skipped, as LeanMQ does. Only a failure to read the
    /// registry itself fails the call.
    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>> {
        let layout = &self.inner.layout;
        let mut queues = Vec::new();
        for key in self.inner.engine.registry(&layout.registry()).await? {
            let Some((name, is_dlq)) = layout.parse_stream_key(&key) else {
                continue;
            };
            let (Ok(keys), Ok(dlq)) = (layout.queue(&name), layout.dlq(&name)) else {
                continue; // a foreign registry member eddy cannot name
            };
            queues.push(if is_dlq {
                self.handle(dlq, keys)
            } else {
                self.handle(keys, dlq)
            });
        }
        // Every queue's metadata and state at once: the engine batches them
        // (on Redis a pipeline per hundred queues).
        let keys: Vec<QueueKeys> = queues.iter().map(|q| q.keys.clone()).collect();
        let meta_keys: Vec<String> = queues.iter().map(|q| q.keys.meta.clone()).collect();
        let metadata = self.inner.engine.metadata_many(&meta_keys);
        let (metadata, infos) = tokio::join!(metadata, self.inner.engine.info_many(&keys));
        let mut out: Vec<QueueInfo> = queues
            .iter()
            .zip(metadata)
            .zip(infos)
            .filter_map(|((q, meta), info)| Self::list_row(q, meta, info))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One row of [`Eddy::list_queues`] from the queue's metadata and
    /// state: `None` for a queue whose metadata is gone.
    fn list_row(
        q: &Queue,
        meta: Result<Option<Vec<(String, String)>>>,
        info: Result<StreamInfo>,
    ) -> Option<QueueInfo> {
        let error = match (meta, info) {
            (Ok(None), _) => return None,
            (Ok(Some(meta)), Ok(info)) => return Some(q.assemble(&meta, info)),
            // The metadata is there, so the stream is what is gone.
            (Ok(Some(_)), Err(e)) if e.kind() == ErrorKind::QueueNotFound => {
                engine::stream_missing(&q.keys.stream)
            }
            (Ok(Some(_)), Err(e)) | (Err(e), _) => e,
        };
        Some(QueueInfo {
            name: q.keys.name.clone(),
            stream: q.keys.stream.clone(),
            is_dlq: q.keys.is_dlq,
            consumer_group: q.keys.group.clone(),
            length: 0,
            pending: 0,
            lag: 0,
            lag_estimated: false,
            delayed: 0,
            max_length: None,
            consumers: Vec::new(),
            oldest_pending_idle_ms: None,
            oldest_pending_age_ms: None,
            created_at: None,
            sent_total: None,
            delivered_total: None,
            error: Some(error.to_string()),
        })
    }

    /// Delete queue `name` with all its messages, and its DLQ unless
    /// `keep_dlq`. [`ErrorKind::QueueNotFound`] if it does not exist.
    pub async fn delete_queue(&self, name: &str, keep_dlq: bool) -> Result<()> {
        let q = self.queue(name).await?;
        let mut keys = vec![q.keys.clone()];
        if !keep_dlq {
            keys.push(q.dlq.clone());
        }
        self.inner
            .engine
            .delete_queues(&keys, &self.inner.layout.registry())
            .await?;
        Ok(())
    }

    /// Start a transaction: sends to several queues that commit all or none.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        payload: &T,
        opts: &SendOptions,
    ) -> Result<Bytes> {
        self.encode_at(payload, opts, wire::now_secs())
    }

    /// Encode with `_metadata.timestamp` set to `timestamp`.
    pub(crate) fn encode_at<T: Serialize + ?Sized>(
        &self,
        payload: &T,
        opts: &SendOptions,
        timestamp: f64,
    ) -> Result<Bytes> {
        let tail: Vec<(&str, wire::Field<'_>)> = opts
            .members
            .iter()
            .map(|(name, value)| (*name, wire::Field::Json(value)))
            .collect();
        let beside = wire::Beside {
            tail: &tail,
            ..wire::Beside::default()
        };
        self.encode_beside(payload, opts, timestamp, &beside)
    }

    /// [`Eddy::encode_at`] with members of the sender's own around the
    /// payload's (a bus event's envelope).
    pub(crate) fn encode_beside<T: Serialize + ?Sized>(
        &self,
        payload: &T,
        opts: &SendOptions,
        timestamp: f64,
        beside: &wire::Beside<'_>,
    ) -> Result<Bytes> {
        if opts.ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::invalid_argument("TTL must be longer than zero"));
        }
        let mut generated = uuid::Uuid::encode_buffer();
        let message_id: &str = match &opts.message_id {
            Some(id) if id.is_empty() || id.len() > 200 => {
                return Err(Error::invalid_argument(
                    "message id must be 1 to 200 characters",
                ))
            }
            Some(id) => id,
            // Written on the stack, not into a String: `new_v4` asks the
            // kernel each time, and formatting through `Display` allocated.
            None => wire::random_uuid()
                .hyphenated()
                .encode_lower(&mut generated),
        };
        let ttl_secs = opts
            .ttl
            .map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0));
        wire::encode(
            payload,
            message_id,
            timestamp,
            ttl_secs,
            self.inner.max_payload_bytes,
            beside,
        )
    }
}

fn queue_not_found(name: &str) -> Error {
    Error::new(
        ErrorKind::QueueNotFound,
        format!("queue `{name}` does not exist: create it first (eddy queue create {name})"),
    )
}

/// A queue or dead-letter queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Queue {
    mq: Eddy,
    keys: QueueKeys,
    /// For a queue its DLQ; for a DLQ its queue.
    dlq: QueueKeys,
}

impl Queue {
    /// The name (`orders`, or `orders:dlq`).
    pub fn name(&self) -> &str {
        &self.keys.name
    }

    /// Whether this is a dead-letter queue.
    pub fn is_dlq(&self) -> bool {
        self.keys.is_dlq
    }

    /// The keys this queue lives under.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    fn engine(&self) -> &SharedEngine {
        &self.mq.inner.engine
    }

    /// The handle this queue was opened through.
    pub(crate) fn eddy(&self) -> &Eddy {
        &self.mq
    }

    /// For a queue its DLQ's keys; for a DLQ its queue's.
    pub(crate) fn dlq_keys(&self) -> &QueueKeys {
        &self.dlq
    }

    /// Send one message; returns its stream id, or `None` if it was sent with
    /// a delay (it gets its id when it becomes visible).
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        payload: &T,
        opts: &SendOptions,
    ) -> Result<Option<EntryId>> {
        let data = self.mq.encode(payload, opts)?;
        let append = Append::new(self.keys.clone(), data)
            .ttl(opts.ttl)
            .delay(opts.delay);
        let out = self.engine().append(std::slice::from_ref(&append)).await?;
        Ok(match out.first() {
            Some(Appended::Entry(id)) => Some(*id),
            _ => None,
        })
    }

    /// Send one message (a JSON object) and return its stream id.
    pub async fn send<T: Serialize + ?Sized>(&self, payload: &T) -> Result<EntryId> {
        let data = self.mq.encode(payload, &SendOptions::default())?;
        match self
            .engine()
            .append(&[Append::new(self.keys.clone(), data)])
            .await?
            .first()
        {
            Some(Appended::Entry(id)) => Ok(*id),
            _ => Err(Error::new(
                ErrorKind::Backend,
                "the engine did not return an id for an undelayed send",
            )),
        }
    }

    /// Send many messages in one atomic append (one round trip on Redis).
    pub async fn send_batch<T: Serialize>(&self, payloads: &[T]) -> Result<Vec<EntryId>> {
        let opts = SendOptions::default();
        let keys = Arc::new(self.keys.clone());
        // One clock reading for the batch: its messages are sent together.
        let now = wire::now_secs();
        let appends = payloads
            .iter()
            .map(|p| Ok(Append::new(keys.clone(), self.mq.encode_at(p, &opts, now)?)))
            .collect::<Result<Vec<_>>>()?;
        if appends.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .engine()
            .append(&appends)
            .await?
            .into_iter()
            .filter_map(|a| match a {
                Appended::Entry(id) => Some(id),
                Appended::Delayed => None,
            })
            .collect())
    }

    /// Receive up to `opts.count` new messages for `opts.consumer`, waiting
    /// up to `opts.block` for the first. Each message stays pending until
    /// acknowledged, deleted or dead-lettered. An entry that cannot be
    /// decoded (not JSON, not UTF-8, over the size limit) is moved to the DLQ
    /// with its raw bytes and the reason, never returned or dropped.
    pub async fn receive(&self, opts: &Receive) -> Result<Vec<Message>> {
        self.receive_decoded(opts).await
    }

    /// [`Queue::receive`], each entry decoded as `T` (the consumer loop's
    /// items: messages, or a service's events).
    pub(crate) async fn receive_decoded<T: Delivered>(&self, opts: &Receive) -> Result<Vec<T>> {
        let entries = self.read_new(opts).await?;
        self.decode_delivered(entries).await
    }

    /// The entries a receive delivers, its options checked first.
    async fn read_new(&self, opts: &Receive) -> Result<Vec<crate::engine::Entry>> {
        if opts.count == 0 {
            return Err(Error::invalid_argument("count must be at least 1"));
        }
        engine::keys::validate_consumer(&opts.consumer)?;
        self.engine()
            .read(&self.keys, &opts.consumer, opts.count, opts.block)
            .await
    }

    /// Like [`Queue::receive`], each payload deserialized straight into `T`
    /// from the entry's bytes: no JSON `Map` in between, which is most of
    /// what receiving costs the client. Entries that are not JSON objects
    /// go to the DLQ as with `receive`; so do objects that do not
    /// deserialize into `T`, with the serde error as the reason: this
    /// consumer could never handle them, and retrying would not help. The
    /// members `T` does not take are skipped, checked only for JSON syntax.
    pub async fn receive_as<T: serde::de::DeserializeOwned>(
        &self,
        opts: &Receive,
    ) -> Result<Vec<TypedMessage<T>>> {
        if self.is_dlq() {
            return Err(Error::invalid_argument(format!(
                "`{}` is a dead-letter queue, whose messages have any shape: read it with receive or peek",
                self.name()
            )));
        }
        let entries = self.read_new(opts).await?;
        let max = self.mq.inner.max_payload_bytes;
        let mut out = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for e in entries {
            match wire::decode_as::<T>(e, max) {
                Ok(m) => out.push(m),
                Err(u) => bad.push(u),
            }
        }
        self.dead_letter_undecodable(&bad).await?;
        Ok(out)
    }

    /// Decode delivered entries; move undecodable ones to the DLQ.
    async fn decode_delivered<T: Delivered>(
        &self,
        entries: Vec<crate::engine::Entry>,
    ) -> Result<Vec<T>> {
        let max = self.mq.inner.max_payload_bytes;
        let mut out = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for e in entries {
            if self.is_dlq() {
                // A DLQ has nowhere further to send an entry: it is handed
                // over whatever its size or shape.
                out.push(T::decode_any(e));
                continue;
            }
            match T::decode(e, max) {
                Ok(m) => out.push(m),
                Err(u) => bad.push(u),
            }
        }
        self.dead_letter_undecodable(&bad).await?;
        Ok(out)
    }

    /// Acknowledge messages; returns how many were pending. Ids are checked
    /// before anything is sent; an unknown but well-formed id counts 0.
    pub async fn ack(&self, ids: &[EntryId]) -> Result<u64> {
        if self.is_dlq() {
            return Err(Error::invalid_argument(format!(
                "`{}` is a dead-letter queue: delete or requeue its messages instead of acknowledging them",
                self.name()
            )));
        }
        self.engine().ack(&self.keys, ids).await
    }

    /// Acknowledge and permanently delete messages; returns how many existed.
    pub async fn delete(&self, ids: &[EntryId]) -> Result<u64> {
        self.engine().delete(&self.keys, ids).await
    }

    /// The messages with these ids that are still in the queue, in id order.
    async fn fetch(&self, ids: &[EntryId]) -> Result<Vec<Message>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            for e in self.engine().range(&self.keys, *id, *id, 1).await? {
                out.push(wire::decode_any(e));
            }
        }
        Ok(out)
    }

    /// Up to `count` messages from the head of the queue, without delivering
    /// or removing them (delivered-but-unacknowledged ones included).
    pub async fn peek(&self, count: usize) -> Result<Vec<Message>> {
        self.peek_from(EntryId::MIN, count).await
    }

    /// Like [`Queue::peek`], starting at id `start`.
    pub async fn peek_from(&self, start: EntryId, count: usize) -> Result<Vec<Message>> {
        if count == 0 {
            return Err(Error::invalid_argument("count must be at least 1"));
        }
        Ok(self
            .engine()
            .range(&self.keys, start, EntryId::MAX, count)
            .await?
            .into_iter()
            .map(wire::decode_any)
            .collect())
    }

    /// Remove every message (pending and delayed too); returns how many
    /// stream entries were removed.
    pub async fn purge(&self) -> Result<u64> {
        self.engine().purge(&self.keys).await
    }

    /// Length, pending, lag, consumers, oldest pending age, creation time.
    pub async fn info(&self) -> Result<QueueInfo> {
        let (meta, info) = tokio::try_join!(
            self.engine().metadata(&self.keys.meta),
            self.engine().info(&self.keys)
        )?;
        let Some(meta) = meta else {
            return Err(queue_not_found(self.name()));
        };
        Ok(self.assemble(&meta, info))
    }

    /// A queue's [`QueueInfo`] from its metadata hash and its stream's state.
    fn assemble(&self, meta: &[(String, String)], info: StreamInfo) -> QueueInfo {
        let field = |name: &str| {
            meta.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let created_at = field("created_at").and_then(|v| v.parse().ok());
        let max_length = field("max_length").and_then(|v| v.parse().ok());
        QueueInfo {
            name: self.keys.name.clone(),
            stream: self.keys.stream.clone(),
            is_dlq: self.keys.is_dlq,
            consumer_group: self.keys.group.clone(),
            length: info.length,
            pending: info.pending,
            lag: info.lag,
            lag_estimated: info.lag_estimated,
            delayed: info.delayed,
            max_length,
            consumers: info.consumers.into_iter().map(Into::into).collect(),
            oldest_pending_idle_ms: info.oldest_pending_idle_ms,
            oldest_pending_age_ms: info.oldest_pending_age_ms,
            created_at,
            sent_total: info.entries_added,
            delivered_total: info.entries_read,
            error: None,
        }
    }
}
