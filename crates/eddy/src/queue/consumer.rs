//! The consumer loop: receive, run a handler per message with a concurrency
//! limit, and settle every message — acknowledge, retry later, or dead-letter
//! — so that none is lost or wedged.
//!
//! - A message held by a consumer that died or hung is reclaimed after the
//!   visibility timeout and redelivered, delivery count +1. Reclaiming
//!   takes a batch per claim (up to the free concurrency), with a read
//!   between batches, so that new messages keep flowing while a big backlog
//!   comes back. A reclaimed message that was already redelivered before
//!   (delivery count 3, or `max_deliveries` if lower) and not by this
//!   process's own retries may be one that kills its process: it is claimed
//!   alone and runs alone, so that it takes no bystander's delivery count
//!   up with it, and no bystander to the DLQ.
//! - While a handler works, its lease is extended, so a slow-but-alive
//!   handler is not run twice; a handler past its timeout is abandoned and
//!   retried.
//! - Retries wait with exponential backoff and jitter, measured by the
//!   server's clock (the message stays pending, backdated; see
//!   [`Queue::release`]). After `max_deliveries` the message goes to the DLQ
//!   with the reason, the attempts and the last error — also when no handler
//!   ever returned because it killed its process each time.
//! - Engine errors (lost connection, Redis restarting, NOGROUP, OOM) are
//!   logged, counted and retried with backoff: never a silent drop or a hot
//!   loop.

/// Keyed by stream ids and ordering keys, per message: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use super::{Delivered, Message, Queue, Receive};
use crate::engine::EntryId;
use crate::error::Result;

/// What a handler decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Done: acknowledge it.
    Ack,
    /// Failed for now: retry after the backoff for this attempt, or
    /// dead-letter once the maximum deliveries are reached.
    Retry {
        /// Why, kept as the last error for the DLQ record.
        error: String,
    },
    /// Like [`Outcome::Retry`], after a delay the handler chooses (capped at
    /// the visibility timeout).
    RetryAfter {
        /// How long to wait.
        after: Duration,
        /// Why.
        error: String,
    },
    /// Will never succeed: dead-letter it now with the reason.
    Reject {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// A retry for `error`.
    pub fn retry(error: impl ToString) -> Self {
        Outcome::Retry {
            error: error.to_string(),
        }
    }

    /// A rejection for `reason`.
    pub fn reject(reason: impl Into<String>) -> Self {
        Outcome::Reject {
            reason: reason.into(),
        }
    }
}

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
    /// 5 deliveries, backoff 200 ms doubling to 30 s.
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
    /// Moved to the DLQ.
    pub dead_lettered: AtomicU64,
    /// Handlers that panicked.
    pub panics: AtomicU64,
    /// Handlers that ran past the timeout.
    pub timeouts: AtomicU64,
    /// Engine errors (each followed by a backoff).
    pub errors: AtomicU64,
}

impl ConsumerStats {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// What the loop needs to settle a message, shared by its tasks.
struct Settle {
    queue: Queue,
    opts: ConsumerOptions,
    stats: Arc<ConsumerStats>,
    in_flight: Mutex<HashSet<EntryId>>,
    /// Last handler error per message, for the DLQ record (bounded).
    last_error: Mutex<HashMap<EntryId, String>>,
    acks: mpsc::UnboundedSender<AckRequest>,
    /// Acknowledgements handed to the acker, and those it has written (or
    /// given up on): how far behind it is.
    acks_handed: AtomicU64,
    acks_done: Arc<AtomicU64>,
    /// Per ordering key: the completion of the last message dispatched.
    chains: Mutex<HashMap<String, (u64, Chain)>>,
}

/// The longest the loop waits for handlers to free permits before a read
/// (see the loop).
const BATCH_WAIT: Duration = Duration::from_millis(1);

/// While reclaiming, and reads find nothing new, claim this many batches per
/// read: reclaiming goes at nearly the speed of reading, and a message sent
/// meanwhile waits a few batches at most. A read that finds messages makes
/// the loop alternate, one claim per read.
const RECLAIMS_PER_IDLE_READ: u32 = 8;

/// The delivery count from which a reclaimed message is claimed and run
/// alone. A message that kills its process takes the others in flight with
/// it, and each such crash raises their delivery counts: by one when it
/// crashes on a read's batch, by one more when its first reclaim (in a
/// batch) crashes again. From the next reclaim on it runs alone, so a
/// bystander ends at delivery count 3 at most; with `max_deliveries` below
/// 3, at the count that is its last chance.
fn isolate_from(max_deliveries: u64) -> u64 {
    max_deliveries.clamp(2, 3)
}

/// A handler's first poll, run inline in the loop, taking longer than this
/// is CPU-bound work. When [`SLOW_POLLS`] of the last 16 inline polls were
/// that slow (or one took [`INLINE_STOP`]), the loop spawns every handler
/// for [`INLINE_PAUSE`], so that such handlers run in parallel on the
/// runtime's workers rather than one after another in the loop. One poll
/// just over the mark is not enough: on a busy machine a fast handler is
/// now and then descheduled mid-poll for a millisecond or more (turning
/// inlining off at 1 ms cost the embedded bus 10-20% and its p50 under load
/// went from 1.2 to 12-32 ms).
const INLINE_MAX: Duration = Duration::from_micros(100);
const SLOW_POLLS: u32 = 3;
/// One first poll this long turns the fast path off at once.
const INLINE_STOP: Duration = Duration::from_millis(20);
const INLINE_PAUSE: Duration = Duration::from_secs(1);

/// A delivery's handler once called: running, or done (a panic in the
/// handler's synchronous part, before it returns a future, is done too).
enum Start<F> {
    Running(Pin<Box<futures::future::CatchUnwind<AssertUnwindSafe<F>>>>),
    Finished(std::thread::Result<Outcome>),
}

impl<F: Future<Output = Outcome>> Start<F> {
    /// Call the handler.
    fn new<T>(handler: &(impl Fn(T) -> F + ?Sized), msg: T) -> Self {
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler(msg))) {
            Ok(fut) => Start::Running(Box::pin(AssertUnwindSafe(fut).catch_unwind())),
            Err(panic) => Start::Finished(Err(panic)),
        }
    }

    /// Call the handler and poll its future once.
    fn now<T>(handler: &(impl Fn(T) -> F + ?Sized), msg: T) -> Self {
        match Self::new(handler, msg) {
            Start::Running(mut run) => match run.as_mut().now_or_never() {
                Some(done) => Start::Finished(done),
                None => Start::Running(run),
            },
            other => other,
        }
    }
}

/// What settling needs of a message once its handler has consumed it.
#[derive(Clone, Copy)]
struct Handled {
    id: EntryId,
    delivery_count: u64,
}

type Chain = futures::future::Shared<tokio::sync::oneshot::Receiver<()>>;

const MAX_REMEMBERED_ERRORS: usize = 10_000;

impl Settle {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn dead_letter(&self, msg: Message, reason: String) {
        let id = msg.id;
        let moved = self.queue.dead_letter_messages(&[msg], &reason).await;
        self.dead_lettered(id, moved);
    }

    /// Dead-letter a message the handler consumed, by id: the engine reads
    /// it back (one more round trip, on the failure path only) so the hot
    /// path never clones a message for the case it fails.
    async fn dead_letter_id(&self, id: EntryId, reason: String) {
        let moved = self.queue.dead_letter(&[id], &reason).await;
        self.dead_lettered(id, moved);
    }

    fn dead_lettered(&self, id: EntryId, moved: Result<u64>) {
        Self::lock(&self.last_error).remove(&id);
        match moved {
            Ok(0) => tracing::debug!(%id, "not dead-lettered: no longer in the queue"),
            Ok(_) => ConsumerStats::bump(&self.stats.dead_lettered),
            Err(e) => {
                // Still pending: it will be reclaimed and dead-lettered again.
                ConsumerStats::bump(&self.stats.errors);
                tracing::warn!(%id, error = %e, "dead-lettering failed; the message stays pending");
            }
        }
    }

    /// Hand `id` to the acker (which batches acknowledgements).
    fn ack(&self, id: EntryId) {
        {
            let mut errors = Self::lock(&self.last_error);
            if !errors.is_empty() {
                errors.remove(&id);
            }
        }
        self.acks_handed.fetch_add(1, Ordering::Relaxed);
        // A lost ack means a redelivery, never a loss.
        if self.acks.send(AckRequest::Ack(id)).is_err() {
            tracing::warn!(%id, "acker stopped; the message will be redelivered");
        }
    }

    /// [`Settle::ack`] for the messages a read's handlers finished inline:
    /// one request to the acker and one lock of each map for the lot,
    /// rather than per message. Empties `ids`.
    fn ack_inline(&self, ids: &mut Vec<EntryId>) {
        if ids.is_empty() {
            return;
        }
        {
            let mut errors = Self::lock(&self.last_error);
            if !errors.is_empty() {
                for id in ids.iter() {
                    errors.remove(id);
                }
            }
        }
        {
            let mut in_flight = Self::lock(&self.in_flight);
            for id in ids.iter() {
                in_flight.remove(id);
            }
        }
        let n = ids.len();
        self.acks_handed.fetch_add(n as u64, Ordering::Relaxed);
        // A lost ack means a redelivery, never a loss.
        if self
            .acks
            .send(AckRequest::Many(std::mem::take(ids)))
            .is_err()
        {
            tracing::warn!(n, "acker stopped; the messages will be redelivered");
        }
    }

    async fn settle(&self, msg: Handled, outcome: Outcome) {
        let id = msg.id;
        let retry = |after: Duration, error: String| (after, error);
        let (after, error) = match outcome {
            Outcome::Ack => return self.ack(id),
            Outcome::Reject { reason } => {
                tracing::info!(%id, %reason, "rejected; dead-lettering");
                return self.dead_letter_id(id, reason).await;
            }
            Outcome::Retry { error } => retry(self.opts.backoff.delay(msg.delivery_count), error),
            Outcome::RetryAfter { after, error } => retry(after, error),
        };
        if msg.delivery_count >= self.opts.max_deliveries {
            let reason = format!(
                "failed {} deliveries (max_deliveries {}); last error: {error}",
                msg.delivery_count, self.opts.max_deliveries
            );
            return self.dead_letter_id(id, reason).await;
        }
        {
            let mut errs = Self::lock(&self.last_error);
            if errs.len() < MAX_REMEMBERED_ERRORS {
                errs.insert(id, error.clone());
            }
        }
        tracing::debug!(%id, attempt = msg.delivery_count, ?after, %error, "retrying later");
        let released = self
            .queue
            .release(&self.opts.name, &[id], after, self.opts.visibility_timeout)
            .await;
        match released {
            Ok(_) => ConsumerStats::bump(&self.stats.retried),
            Err(e) => {
                ConsumerStats::bump(&self.stats.errors);
                tracing::warn!(%id, error = %e, "release failed; the message is retried after the visibility timeout");
            }
        }
    }
}

/// Run the consumer loop on `queue` until `shutdown` completes, then stop
/// fetching and let in-flight handlers finish (up to
/// [`ConsumerOptions::shutdown_timeout`]); unfinished ones stay pending for
/// another consumer. Returns the counters.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use std::time::Duration;
/// use eddy::queue::consumer::{run, ConsumerOptions, Outcome};
///
/// let mq = eddy::Eddy::open("memory://").await?;
/// let (q, _) = mq.create_queue_pair("jobs").await?;
/// q.send(&serde_json::json!({"n": 1})).await?;
///
/// let stop = tokio::time::sleep(Duration::from_millis(200));
/// let stats = run(q, ConsumerOptions::new(), |msg| async move {
///     if msg.data["n"] == 1 { Outcome::Ack } else { Outcome::reject("unexpected") }
/// }, stop).await?;
/// assert_eq!(stats.acked.load(std::sync::atomic::Ordering::Relaxed), 1);
/// # Ok(())
/// # }
/// ```
pub async fn run<H, Fut, S>(
    queue: Queue,
    opts: ConsumerOptions,
    handler: H,
    shutdown: S,
) -> Result<Arc<ConsumerStats>>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    let stats = Arc::new(ConsumerStats::default());
    run_with_stats(queue, opts, handler, shutdown, stats.clone()).await?;
    Ok(stats)
}

/// Like [`run`], updating counters the caller holds (to watch them live).
pub async fn run_with_stats<H, Fut, S>(
    queue: Queue,
    opts: ConsumerOptions,
    handler: H,
    shutdown: S,
    stats: Arc<ConsumerStats>,
) -> Result<()>
where
    H: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    let key = opts.ordering_key.clone();
    run_loop(queue, opts, key, handler, shutdown, stats).await
}

/// An ordering key on the loop's items.
pub(crate) type KeyOf<T> = Arc<dyn Fn(&T) -> Option<String> + Send + Sync>;

/// The consumer loop over items of type `T`: [`run_with_stats`] for
/// messages, and the service runtime for events decoded straight into
/// their envelopes. `key` is the ordering key (`opts.ordering_key` is
/// not read: it takes messages).
pub(crate) async fn run_loop<T, H, Fut, S>(
    queue: Queue,
    mut opts: ConsumerOptions,
    key: Option<KeyOf<T>>,
    handler: H,
    shutdown: S,
    stats: Arc<ConsumerStats>,
) -> Result<()>
where
    T: Delivered,
    H: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    opts.concurrency = opts.concurrency.max(1);
    opts.max_deliveries = opts.max_deliveries.max(1);
    crate::engine::keys::validate_consumer(&opts.name)?;
    let handler = Arc::new(handler);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let acks_done = Arc::new(AtomicU64::new(0));
    let acker = tokio::spawn(ack_batches(
        queue.clone(),
        ack_rx,
        stats.clone(),
        acks_done.clone(),
    ));
    let settle = Arc::new(Settle {
        queue: queue.clone(),
        opts: opts.clone(),
        stats: stats.clone(),
        in_flight: Mutex::new(HashSet::default()),
        last_error: Mutex::new(HashMap::default()),
        acks: ack_tx,
        acks_handed: AtomicU64::new(0),
        acks_done,
        chains: Mutex::new(HashMap::default()),
    });
    let mut dispatched: u64 = 0;
    let extender = tokio::spawn(extend_leases(settle.clone()));
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let mut next_claim = Instant::now();
    let alone_from = isolate_from(opts.max_deliveries);
    let (mut claims_since_read, mut claims_per_read) = (0u32, 1u32);
    let mut error_pause = Duration::from_millis(50);
    // Handlers run inline on their first poll from this instant on (see
    // the fast path below); the last 16 inline polls, a bit set per slow one.
    let mut inline_after = Instant::now();
    let mut slow_polls: u16 = 0;
    tokio::pin!(shutdown);

    loop {
        let first = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        // Read in batches, not a message at a time: with handlers in flight
        // and few permits free, give them a moment (at most BATCH_WAIT) to
        // free half the permits, so one read fetches many. Without this,
        // fast handlers freeing permits one by one made every read (a round
        // trip, and on Redis a MULTI/EXEC) fetch one or two messages.
        let half = opts.concurrency / 2;
        if permits.available_permits() + 1 < half {
            let more = (half - 1) as u32;
            if let Ok(Ok(p)) = tokio::time::timeout(BATCH_WAIT, permits.acquire_many(more)).await {
                drop(p);
            }
        }
        let free = permits.available_permits() + 1;
        let fetched = async {
            let mut msgs = Vec::new();
            // Reclaim a batch at a time while there is something to claim,
            // with a read between batches (see RECLAIMS_PER_IDLE_READ) so
            // that new messages keep flowing during a long reclaim.
            if Instant::now() >= next_claim && claims_since_read < claims_per_read {
                msgs = queue
                    .claim_stale_decoded::<T>(&opts.name, opts.visibility_timeout, free, alone_from)
                    .await?;
                if msgs.is_empty() {
                    next_claim = Instant::now() + opts.claim_interval;
                } else {
                    claims_since_read += 1;
                }
            }
            if msgs.is_empty() {
                let reclaiming = Instant::now() >= next_claim;
                let recv = Receive::new().count(free).consumer(opts.name.clone());
                // Mid-reclaim the read must not wait: the next batch is ready.
                let recv = if reclaiming {
                    recv
                } else {
                    let wait = opts
                        .poll
                        .min(next_claim.saturating_duration_since(Instant::now()));
                    recv.block(wait.max(Duration::from_millis(1)))
                };
                msgs = queue.receive_decoded::<T>(&recv).await?;
                if reclaiming {
                    claims_per_read = if msgs.is_empty() {
                        RECLAIMS_PER_IDLE_READ
                    } else {
                        1
                    };
                }
                claims_since_read = 0;
            }
            Ok::<_, crate::Error>(msgs)
        };
        // A read in progress is never cancelled: what it delivers is ours and
        // must be handled or left pending, so shutdown is checked between reads.
        let msgs = match fetched.await {
            Ok(m) => {
                error_pause = Duration::from_millis(50);
                m
            }
            Err(e) => {
                ConsumerStats::bump(&stats.errors);
                tracing::warn!(queue = %queue.name(), error = %e, kind = ?e.kind(), pause = ?error_pause, "consumer read failed; backing off");
                drop(first);
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(error_pause) => {}
                }
                error_pause = (error_pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut first = Some(first);
        // The whole batch is in hand from now on: its leases are extended
        // while earlier messages of the batch are being dispatched (a
        // handler's first poll runs here, in the loop).
        Settle::lock(&settle.in_flight).extend(
            msgs.iter()
                .filter(|m| m.delivery_count() <= opts.max_deliveries)
                .map(|m| m.id()),
        );
        // Handled inline and to be acknowledged: handed to the acker at the
        // end of the batch, and before anything in it waits.
        let mut acked_inline: Vec<EntryId> = Vec::new();
        for msg in msgs {
            let (id, delivery_count) = (msg.id(), msg.delivery_count());
            if delivery_count > opts.max_deliveries {
                settle.ack_inline(&mut acked_inline);
                let last = Settle::lock(&settle.last_error).get(&id).cloned();
                let reason = format!(
                    "delivered {} times (max_deliveries {}); last error: {}",
                    delivery_count,
                    opts.max_deliveries,
                    last.unwrap_or_else(|| {
                        "none recorded: the handler never finished (its process died or it hung)"
                            .into()
                    })
                );
                match msg.into_message() {
                    Some(msg) => settle.dead_letter(msg, reason).await,
                    None => settle.dead_letter_id(id, reason).await,
                }
                continue;
            }
            let permit = match first.take() {
                Some(p) => p,
                None => match permits.clone().try_acquire_owned() {
                    Ok(p) => p,
                    // Cannot happen (only this loop takes permits); leave it
                    // pending for a reclaim rather than exceed the limit.
                    Err(_) => {
                        Settle::lock(&settle.in_flight).remove(&id);
                        continue;
                    }
                },
            };
            ConsumerStats::bump(&stats.delivered);
            if delivery_count > 1 {
                ConsumerStats::bump(&stats.redelivered);
            }
            // Redelivered more than once, and not by this process's own
            // retries (no recorded error): its handler may be what crashed
            // the processes before. It was claimed alone; run it alone too,
            // after every other handler has finished and been acknowledged,
            // so that if it crashes again it takes nothing else down with it.
            // A first redelivery runs in its batch: if one of the batch kills
            // the process, the others come back once more, then alone.
            let suspect =
                delivery_count >= alone_from && !Settle::lock(&settle.last_error).contains_key(&id);
            let isolation = if suspect {
                settle.ack_inline(&mut acked_inline);
                let others = permits
                    .clone()
                    .acquire_many_owned(opts.concurrency.saturating_sub(1) as u32)
                    .await
                    .ok();
                flush_acks(&settle).await;
                others
            } else {
                None
            };
            let span = tracing::info_span!("delivery", queue = %queue.name(), group = %queue.keys().group, msg_id = %id, attempt = delivery_count);
            dispatched += 1;
            let chain = key.as_ref().and_then(|k| k(&msg)).map(|key| {
                let (done, rx) = tokio::sync::oneshot::channel::<()>();
                let prev = Settle::lock(&settle.chains)
                    .insert(key.clone(), (dispatched, rx.shared()))
                    .map(|(_, prev)| prev);
                (key, dispatched, prev, done)
            });
            let handled = Handled { id, delivery_count };
            // The fast path: a handler that finishes on its first poll (most
            // do: they compute and return, or their I/O is ready) runs here,
            // in the loop, and is acknowledged without a task of its own:
            // spawning one per message, and waking it on another worker,
            // cost more than the handlers themselves. A handler that is
            // still pending moves to a task as before. First polls that take
            // long (CPU-bound or blocking work) turn the fast path off for a
            // while, so that such handlers keep running in parallel and the
            // loop keeps reading; meanwhile the batch's other messages are
            // already in `in_flight`, so their leases are extended. A message
            // with an ordering key, or one run in isolation, is not started
            // here at all: its handler is called in its task, after the ones
            // it must follow.
            // (Two clock readings per message, not three: they were ~2% of
            // a service's CPU in `eddy bench bus`, perf. Both are tokio's
            // clock, which a test may pause: a paused clock never finds a
            // handler slow.)
            let inline_at = (chain.is_none() && isolation.is_none())
                .then(Instant::now)
                .filter(|now| *now >= inline_after);
            let start = if let Some(started) = inline_at {
                let start = span.in_scope(|| Start::now(&*handler, msg));
                let took = started.elapsed();
                slow_polls = slow_polls << 1 | u16::from(took > INLINE_MAX);
                if took > INLINE_STOP || slow_polls.count_ones() >= SLOW_POLLS {
                    inline_after = started + took + INLINE_PAUSE;
                    slow_polls = 0;
                }
                if let Start::Finished(Ok(Outcome::Ack)) = start {
                    acked_inline.push(handled.id);
                    drop(permit);
                    continue;
                }
                Ok(start)
            } else {
                // Called in its task.
                Err(msg)
            };
            let settle_outer = settle.clone();
            let (settle, handler, timeout) =
                (settle.clone(), handler.clone(), opts.handler_timeout);
            let task = tokio::spawn(
                async move {
                    let chain = match chain {
                        Some((key, seq, prev, done)) => {
                            if let Some(prev) = prev {
                                let _ = prev.await;
                            }
                            Some((key, seq, done))
                        }
                        None => None,
                    };
                    let finished = match start.unwrap_or_else(|msg| Start::new(&*handler, msg)) {
                        Start::Running(run) => tokio::time::timeout(timeout, run).await,
                        Start::Finished(done) => Ok(done),
                    };
                    let outcome = match finished {
                        Ok(Ok(outcome)) => outcome,
                        Ok(Err(panic)) => {
                            ConsumerStats::bump(&settle.stats.panics);
                            let what = panic_message(&panic);
                            tracing::error!(panic = %what, "handler panicked");
                            Outcome::retry(format!("handler panicked: {what}"))
                        }
                        Err(_) => {
                            ConsumerStats::bump(&settle.stats.timeouts);
                            tracing::warn!(?timeout, "handler timed out");
                            Outcome::retry(format!("handler timed out after {timeout:?}"))
                        }
                    };
                    settle.settle(handled, outcome).await;
                    Settle::lock(&settle.in_flight).remove(&handled.id);
                    if let Some((key, seq, done)) = chain {
                        let _ = done.send(());
                        let mut chains = Settle::lock(&settle.chains);
                        if chains.get(&key).is_some_and(|(s, _)| *s == seq) {
                            chains.remove(&key);
                        }
                    }
                    drop(permit);
                }
                .instrument(span),
            );
            if let Some(others) = isolation {
                let _ = task.await;
                flush_acks(&settle_outer).await;
                drop(others);
            }
        }
        settle.ack_inline(&mut acked_inline);
        // A loop that always finds work never waits: on the embedded engine
        // every await above is ready at once, so the tasks it wakes (its
        // acker above all) wait until tokio's budget forces it to yield,
        // on its worker while the other sleeps. The acker then ran once per
        // ~100 reads, acknowledging 10,000 messages 10 ms late (and the
        // consumer loop bench was held back by its window). So the loop
        // yields when its acker is more than a few reads behind. Not after
        // every read: on Redis, where the acker keeps up, that cost the
        // consumer loop 1.06x -> 0.88x of the raw loop.
        let behind = settle
            .acks_handed
            .load(Ordering::Relaxed)
            .saturating_sub(settle.acks_done.load(Ordering::Relaxed));
        if behind > 4 * opts.concurrency as u64 {
            tokio::task::yield_now().await;
        }
    }

    // Drain: wait for in-flight handlers up to the deadline.
    let drained = tokio::time::timeout(
        opts.shutdown_timeout,
        permits.acquire_many(opts.concurrency as u32),
    )
    .await;
    extender.abort();
    if drained.is_err() {
        let left: Vec<EntryId> = Settle::lock(&settle.in_flight).iter().copied().collect();
        tracing::warn!(n = left.len(), "handlers still running at the shutdown deadline; their messages stay pending for another consumer");
        // Let others retry them right away instead of after the visibility timeout.
        let _ = queue
            .release(&opts.name, &left, Duration::ZERO, opts.visibility_timeout)
            .await;
    }
    drop(settle);
    // The acker ends once every sender is gone. Handlers abandoned at the
    // deadline still hold one: then only give it a moment to flush.
    let flush = if drained.is_ok() {
        Duration::from_secs(5)
    } else {
        Duration::from_millis(500)
    };
    let _ = tokio::time::timeout(flush, acker).await;
    Ok(())
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// What the acker is asked to do.
enum AckRequest {
    /// Acknowledge this message (with whatever else has accumulated).
    Ack(EntryId),
    /// Acknowledge these messages (handled inline, a batch at a time).
    Many(Vec<EntryId>),
    /// Acknowledge everything received so far, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Acknowledge in batches: whatever has accumulated goes in one XACK.
async fn ack_batches(
    queue: Queue,
    mut rx: mpsc::UnboundedReceiver<AckRequest>,
    stats: Arc<ConsumerStats>,
    done: Arc<AtomicU64>,
) {
    let mut requests = Vec::with_capacity(512);
    let mut ids = Vec::with_capacity(512);
    let mut flushed = Vec::new();
    while rx.recv_many(&mut requests, 512).await > 0 {
        for r in requests.drain(..) {
            match r {
                AckRequest::Ack(id) => ids.push(id),
                AckRequest::Many(many) => ids.extend(many),
                AckRequest::Flush(done) => flushed.push(done),
            }
        }
        if !ids.is_empty() {
            ack_with_retries(&queue, &ids, &stats).await;
            done.fetch_add(ids.len() as u64, Ordering::Relaxed);
            ids.clear();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn ack_with_retries(queue: &Queue, ids: &[EntryId], stats: &ConsumerStats) {
    let mut pause = Duration::from_millis(50);
    for attempt in 1..=5 {
        match queue.ack(ids).await {
            Ok(_) => {
                stats.acked.fetch_add(ids.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                ConsumerStats::bump(&stats.errors);
                tracing::warn!(error = %e, attempt, n = ids.len(), "ack failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

/// Wait until every acknowledgement handed to the acker so far is written.
async fn flush_acks(settle: &Settle) {
    let (done, wait) = tokio::sync::oneshot::channel();
    if settle.acks.send(AckRequest::Flush(done)).is_ok() {
        let _ = wait.await;
    }
}

/// Every third of the visibility timeout, extend the leases of every
/// message still being handled.
async fn extend_leases(settle: Arc<Settle>) {
    let every = (settle.opts.visibility_timeout / 3).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ids: Vec<EntryId> = Settle::lock(&settle.in_flight).iter().copied().collect();
        if ids.is_empty() {
            continue;
        }
        if let Err(e) = settle.queue.extend(&settle.opts.name, &ids).await {
            ConsumerStats::bump(&settle.stats.errors);
            tracing::warn!(error = %e, n = ids.len(), "lease extension failed");
        }
    }
}
