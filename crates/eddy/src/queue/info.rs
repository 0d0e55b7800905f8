//! What [`super::Queue::info`] and [`super::Eddy::list_queues`] report.

use serde::Serialize;

use crate::engine::ConsumerInfo;

/// A queue as [`Eddy::list_queues`](super::Eddy::list_queues) and [`Queue::info`](super::Queue::info) describe it.
///
/// A queue [`Eddy::list_queues`](super::Eddy::list_queues) could not read (a key of the wrong type,
/// its stream deleted by hand) is a row with [`QueueInfo::error`] set: its
/// name, stream, DLQ flag and group are right, its counts are zero and its
/// consumers empty because they are unknown. Check `error` before adding
/// counts up.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct QueueInfo {
    /// The queue's name (`orders`, or `orders:dlq` for a DLQ).
    pub name: String,
    /// The stream key.
    pub stream: String,
    /// Whether this is a dead-letter queue.
    pub is_dlq: bool,
    /// The consumer group.
    pub consumer_group: String,
    /// Entries in the stream, acknowledged or not.
    pub length: u64,
    /// Delivered, not yet acknowledged.
    pub pending: u64,
    /// Not yet delivered.
    pub lag: u64,
    /// Whether `lag` is an estimate. On Redis, once any entry was deleted
    /// from the stream (a dead-letter, a TTL expiry, a delete by id) Redis
    /// stops counting the lag itself, and where more than 100 messages
    /// wait, counting them would mean reading them all: `info` then gives
    /// an estimate from the stream's counters (it may include deleted
    /// entries or acknowledged history).
    pub lag_estimated: bool,
    /// Waiting for their delivery time.
    pub delayed: u64,
    /// The maximum length, if one is set.
    pub max_length: Option<u64>,
    /// The group's consumers.
    pub consumers: Vec<ConsumerStatus>,
    /// How long the oldest pending message has waited since its delivery.
    pub oldest_pending_idle_ms: Option<u64>,
    /// How long the oldest pending message has existed since it was sent
    /// (server clock): the age of the oldest unfinished work.
    pub oldest_pending_age_ms: Option<u64>,
    /// When the queue was created (float epoch seconds).
    pub created_at: Option<f64>,
    /// Messages ever added to the queue's stream: sent, promoted from
    /// the delayed set, or moved in (requeued, dead-lettered into a DLQ).
    /// It only grows, acknowledging and trimming do not lower it; purging
    /// or recreating the queue starts it again from zero. Sampled twice,
    /// its difference is the queue's send rate. `None` where the server
    /// does not count (Redis before 7.0). On Redis a plain send refused
    /// after its entries were written (the queue full, or deleted, when
    /// the transaction's check ran) is counted too, though its entries
    /// were removed at once: Redis counts every XADD, and the all-or-none
    /// check rolls back with XDEL. The embedded engine writes nothing in
    /// that case and does not count it.
    pub sent_total: Option<u64>,
    /// Messages ever delivered to the queue's group at least once (a
    /// redelivery does not count again). `delivered_total - pending` is
    /// how many were settled: acknowledged, dead-lettered or moved. `None`
    /// where the server does not say (Redis before 7.0, or when deletions
    /// from the stream left Redis unable to count).
    pub delivered_total: Option<u64>,
    /// Why the queue could not be read, and what to do about it; `None`
    /// for a healthy queue (always, from [`Queue::info`](super::Queue::info), which returns the
    /// error instead).
    pub error: Option<String>,
}

impl QueueInfo {
    /// The queue this stream belongs to: its own name, or for a DLQ
    /// (`NAME:dlq`) the name of its queue, to show a queue and its DLQ as
    /// one row.
    pub fn queue_name(&self) -> &str {
        match (self.is_dlq, self.name.strip_suffix(":dlq")) {
            (true, Some(queue)) => queue,
            _ => &self.name,
        }
    }
}

/// A consumer of a queue's group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConsumerStatus {
    /// The consumer's name.
    pub name: String,
    /// Messages delivered to it and not yet acknowledged.
    pub pending: u64,
    /// Milliseconds since it last read.
    pub idle_ms: u64,
}

impl From<ConsumerInfo> for ConsumerStatus {
    fn from(c: ConsumerInfo) -> Self {
        Self {
            name: c.name,
            pending: c.pending,
            idle_ms: c.idle_ms,
        }
    }
}
