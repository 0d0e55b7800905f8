//! The consumer loop's settings and counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::janitor::{DEFAULT_FORGET_IDLE, DEFAULT_HISTORY};
use crate::queue::Message;

/// Exponential backoff with jitter: attempt `n` waits a random time in
/// `[d/2, d]` where `d = initial * multiplier^(n-1)`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first retry's delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// Randomize each delay (to spread retries of many messages).
    pub jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl Backoff {
    /// A backoff from `initial` to `max`, doubling, with jitter.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            ..Self::default()
        }
    }

    /// The delay before retry number `attempt` (1 for the first retry).
    pub fn delay(&self, attempt: u64) -> Duration {
        let exp = self
            .multiplier
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let d = self.initial.as_secs_f64() * exp;
        let d = d.min(self.max.as_secs_f64()).max(0.0);
        let d = if self.jitter {
            d * (0.5 + rand::random::<f64>() * 0.5)
        } else {
            d
        };
        Duration::from_secs_f64(d)
    }
}

/// Extracts the ordering key of a message: messages with the same key are
/// handled one at a time, in the order this consumer received them.
pub type OrderingKey = Arc<dyn Fn(&Message) -> Option<String> + Send + Sync>;

/// Settings of a consumer loop.
#[derive(Clone)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// This consumer's name in the group (default: host-pid-random).
    pub name: String,
    /// Handlers running at once.
    pub concurrency: usize,
    /// A message whose consumer is silent this long is reclaimed by others.
    pub visibility_timeout: Duration,
    /// A handler running longer is abandoned and its message retried.
    pub handler_timeout: Duration,
    /// Deliveries after which a failing message goes to the DLQ.
    pub max_deliveries: u64,
    /// Delay between retries.
    pub backoff: Backoff,
    /// How often to look for messages to reclaim (and retries that are due).
    pub claim_interval: Duration,
    /// How long one read waits for new messages.
    pub poll: Duration,
    /// On stop, how long in-flight handlers may still run.
    pub shutdown_timeout: Duration,
    /// Handle messages with the same key one at a time, in order (a retried
    /// message comes back after later ones, as with any broker).
    pub ordering_key: Option<OrderingKey>,
    /// Acknowledged history the loop keeps on its queue, trimmed as it
    /// goes (default [`DEFAULT_HISTORY`]; `Some(ZERO)` keeps none, `None`
    /// keeps everything for something else to trim).
    pub history: Option<Duration>,
    /// At most this many acknowledged entries are kept too, however young
    /// (default `None`: the age alone bounds the history). Trimmed on the
    /// same schedule as [`ConsumerOptions::history`] (at least once a
    /// second), and applied even when that is `None`. A trim of a queue
    /// longer than the bound reads up to that many entries on Redis to
    /// find the oldest one kept, so keep it to thousands, not millions.
    pub history_length: Option<u64>,
    /// Consumers of the queue's group that hold nothing and have not read
    /// for this long are removed (default [`DEFAULT_FORGET_IDLE`]; `None`
    /// keeps them).
    pub forget_idle: Option<Duration>,
}

impl std::fmt::Debug for ConsumerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerOptions")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("handler_timeout", &self.handler_timeout)
            .field("max_deliveries", &self.max_deliveries)
            .field("backoff", &self.backoff)
            .field("claim_interval", &self.claim_interval)
            .field("poll", &self.poll)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("ordering_key", &self.ordering_key.is_some())
            .field("history", &self.history)
            .field("history_length", &self.history_length)
            .field("forget_idle", &self.forget_idle)
            .finish()
    }
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        Self {
            name: default_consumer_name(),
            concurrency: 16,
            visibility_timeout: Duration::from_secs(30),
            handler_timeout: Duration::from_secs(60),
            max_deliveries: 5,
            backoff: Backoff::default(),
            claim_interval: Duration::from_millis(500),
            poll: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(10),
            ordering_key: None,
            history: Some(DEFAULT_HISTORY),
            history_length: None,
            forget_idle: Some(DEFAULT_FORGET_IDLE),
        }
    }
}

/// `hostname-pid-xxxx`: unique per process, recognisable in `queue info`.
pub fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "eddy".to_owned());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {
        $( $(#[$doc])* pub fn $field(mut self, v: $ty) -> Self { self.$field = v; self } )*
    };
}

impl ConsumerOptions {
    /// Defaults: 16 at once, visibility 30 s, handler timeout 60 s,
    /// 5 deliveries, backoff 200 ms doubling to 30 s, 1 minute of
    /// acknowledged history, consumers idle for an hour removed.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Set the consumer name.
        name: String,
        /// Set the concurrency (at least 1).
        concurrency: usize,
        /// Set the visibility timeout.
        visibility_timeout: Duration,
        /// Set the handler timeout.
        handler_timeout: Duration,
        /// Set the maximum deliveries (at least 1).
        max_deliveries: u64,
        /// Set the retry backoff.
        backoff: Backoff,
        /// Set the reclaim interval.
        claim_interval: Duration,
        /// Set the read wait.
        poll: Duration,
        /// Set the drain deadline.
        shutdown_timeout: Duration,
    }

    /// Keep this much acknowledged history on the queue (zero keeps none).
    pub fn history(mut self, keep: Duration) -> Self {
        self.history = Some(keep);
        self
    }

    /// Also keep at most `n` acknowledged entries on the queue (zero keeps
    /// none), whatever the age limit.
    pub fn history_length(mut self, n: u64) -> Self {
        self.history_length = Some(n);
        self
    }

    /// Never trim the queue's acknowledged history (something else does,
    /// such as [`crate::Eddy::spawn_janitor`]).
    pub fn keep_all_history(mut self) -> Self {
        self.history = None;
        self
    }

    /// Remove the group's consumers that hold nothing after `idle` without
    /// reading (`None`: never).
    pub fn forget_idle(mut self, idle: Option<Duration>) -> Self {
        self.forget_idle = idle;
        self
    }

    /// Handle messages with the same key (by `key`) one at a time, in order.
    pub fn ordering_key(
        mut self,
        key: impl Fn(&Message) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.ordering_key = Some(Arc::new(key));
        self
    }
}

/// Counters of a consumer loop, updated as it runs.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ConsumerStats {
    /// Messages handed to the handler.
    pub delivered: AtomicU64,
    /// Of those, redeliveries (delivery count > 1).
    pub redelivered: AtomicU64,
    /// Acknowledged.
    pub acked: AtomicU64,
    /// Handed back for a retry.
    pub retried: AtomicU64,
    /// Moved to the DLQ, for any reason.
    pub dead_lettered: AtomicU64,
    /// Of those, the ones the handler rejected ([`crate::Fail::Reject`]);
    /// the others ran out of deliveries.
    pub rejected: AtomicU64,
    /// Handlers that panicked.
    pub panics: AtomicU64,
    /// Handlers that ran past the timeout.
    pub timeouts: AtomicU64,
    /// Engine errors (each followed by a backoff).
    pub errors: AtomicU64,
    /// Acknowledged entries trimmed from the queue's history.
    pub trimmed: AtomicU64,
}

impl ConsumerStats {
    pub(super) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
