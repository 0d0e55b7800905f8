//! The consumer loop: receive, run a handler per message with a concurrency
//! limit, and settle every message — acknowledge, retry later, or dead-letter
//! — so that none is lost or wedged.
//!
//! - A message held by a consumer that died or hung is reclaimed after the
//!   visibility timeout and redelivered, delivery count +1. Reclaiming
//!   takes a batch per claim (up to the free concurrency), with a read
//!   between batches, so that new messages keep flowing while a big backlog
//!   comes back (`fetch.rs`). A reclaimed message that was already
//!   redelivered before (delivery count 3, or `max_deliveries` if lower)
//!   and not by this process's own retries may be one that kills its
//!   process: it is claimed alone and runs alone, so that it takes no
//!   bystander's delivery count up with it, and no bystander to the DLQ
//!   (`leases.rs`).
//! - While a handler works, its lease is extended, so a slow-but-alive
//!   handler is not run twice; a handler past its timeout is abandoned and
//!   retried (`inline.rs`).
//! - A handler's `Ok` is acknowledged in batches by one task (`acker.rs`).
//!   Retries wait with exponential backoff and jitter, or as long as the
//!   handler asks ([`Fail::retry_after`], longer than the visibility
//!   timeout too), measured by the server's clock (see [`Queue::release`]).
//!   After `max_deliveries` the message goes to the DLQ with the reason,
//!   the attempts and the last error — also when no handler ever returned
//!   because it killed its process each time (`retry.rs`).
//! - Messages with the same ordering key run one at a time, in order
//!   (`ordering.rs`).
//! - The queue stays bounded: acknowledged history older than
//!   [`ConsumerOptions::history`] is trimmed as the loop acknowledges, and
//!   consumers that ended are removed from the group after
//!   [`ConsumerOptions::forget_idle`] (`janitor.rs`).
//! - Engine errors (lost connection, Redis restarting, NOGROUP, OOM) are
//!   logged, counted and retried with backoff: never a silent drop or a hot
//!   loop. On stop, handlers in flight may finish up to a deadline
//!   (`shutdown.rs`).

mod acker;
mod fetch;
mod inline;
mod janitor;
mod leases;
mod options;
mod ordering;
mod retry;
mod shutdown;

/// Keyed by stream ids and ordering keys, per message: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use janitor::{DEFAULT_FORGET_IDLE, DEFAULT_HISTORY};
pub use options::{default_consumer_name, Backoff, ConsumerOptions, ConsumerStats, OrderingKey};
pub(crate) use retry::{out_of_deliveries, retry_delay};

use super::{Delivered, Message, Queue};
use crate::engine::EntryId;
use crate::error::Result;
use crate::handler::Fail;
use fetch::Fetch;
use inline::{Inline, Start};
use ordering::{Chains, Link};
use retry::Handled;

/// What the loop needs to settle a message, shared by its tasks.
struct Settle {
    queue: Queue,
    opts: ConsumerOptions,
    stats: Arc<ConsumerStats>,
    /// Messages in hand, whose leases are extended.
    in_flight: Mutex<HashSet<EntryId>>,
    /// Last handler error per message, for the DLQ record (bounded).
    last_error: Mutex<HashMap<EntryId, String>>,
    acks: mpsc::UnboundedSender<acker::AckRequest>,
    /// Acknowledgements handed to the acker, and those it has written (or
    /// given up on): how far behind it is.
    acks_handed: AtomicU64,
    acks_done: Arc<AtomicU64>,
    chains: Mutex<Chains>,
}

impl Settle {
    /// The shared state, and its acker running.
    fn start(
        queue: Queue,
        opts: ConsumerOptions,
        stats: Arc<ConsumerStats>,
    ) -> (Arc<Self>, JoinHandle<()>) {
        let (acks, ack_rx) = mpsc::unbounded_channel();
        let acks_done = Arc::new(AtomicU64::new(0));
        let acker = tokio::spawn(acker::ack_batches(
            queue.clone(),
            ack_rx,
            stats.clone(),
            acks_done.clone(),
            janitor::Janitor::new(queue.clone(), &opts),
        ));
        let settle = Arc::new(Settle {
            queue,
            opts,
            stats,
            in_flight: Mutex::new(HashSet::default()),
            last_error: Mutex::new(HashMap::default()),
            acks,
            acks_handed: AtomicU64::new(0),
            acks_done,
            chains: Mutex::new(Chains::default()),
        });
        (settle, acker)
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Run the consumer loop on `queue` until `shutdown` completes, then stop
/// fetching and let in-flight handlers finish (up to
/// [`ConsumerOptions::shutdown_timeout`]); unfinished ones stay pending for
/// another consumer. Returns the counters.
///
/// The handler's `Ok` acknowledges the message; [`Fail`] retries or
/// dead-letters it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use std::time::Duration;
/// use eddy::queue::consumer::{run, ConsumerOptions};
/// use eddy::Fail;
///
/// let mq = eddy::Eddy::open("memory://").await?;
/// let (q, _) = mq.create_queue_pair("jobs").await?;
/// q.send(&serde_json::json!({"n": 1})).await?;
///
/// let stop = tokio::time::sleep(Duration::from_millis(200));
/// let stats = run(q, ConsumerOptions::new(), |msg| async move {
///     if msg.data["n"] == 1 { Ok(()) } else { Err(Fail::reject("unexpected")) }
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
    Fut: Future<Output = Result<(), Fail>> + Send + 'static,
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
    Fut: Future<Output = Result<(), Fail>> + Send + 'static,
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
    Fut: Future<Output = Result<(), Fail>> + Send + 'static,
    S: Future<Output = ()> + Send,
{
    opts.concurrency = opts.concurrency.max(1);
    opts.max_deliveries = opts.max_deliveries.max(1);
    crate::engine::keys::validate_consumer(&opts.name)?;
    let (settle, acker) = Settle::start(queue.clone(), opts.clone(), stats.clone());
    let extender = tokio::spawn(leases::extend_leases(settle.clone()));
    let permits = Arc::new(Semaphore::new(opts.concurrency));
    let alone_from = leases::isolate_from(opts.max_deliveries);
    let mut fetch = Fetch::new(alone_from);
    let mut dispatch = Dispatch {
        settle: settle.clone(),
        handler: Arc::new(handler),
        key,
        permits: permits.clone(),
        inline: Inline::new(),
        alone_from,
    };
    let mut error_pause = Duration::from_millis(50);
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
        // A read in progress is never cancelled: what it delivers is ours and
        // must be handled or left pending, so shutdown is checked between reads.
        let msgs = match fetch.next::<T>(&queue, &opts, &permits).await {
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
        dispatch.batch(msgs, first).await;
        settle.let_acker_catch_up().await;
    }

    // Only the tasks still running hold the shared state now.
    drop(dispatch);
    let tasks = shutdown::Tasks { acker, extender };
    shutdown::drain(settle, &permits, tasks).await;
    Ok(())
}

/// Hands each message of a batch to its handler.
struct Dispatch<T, H> {
    settle: Arc<Settle>,
    handler: Arc<H>,
    key: Option<KeyOf<T>>,
    permits: Arc<Semaphore>,
    inline: Inline,
    alone_from: u64,
}

impl<T, H, Fut> Dispatch<T, H>
where
    T: Delivered,
    H: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Fail>> + Send + 'static,
{
    /// Dispatch a fetched batch; `first` is the permit the fetch was made
    /// with.
    async fn batch(&mut self, msgs: Vec<T>, first: OwnedSemaphorePermit) {
        let settle = self.settle.clone();
        let max_deliveries = settle.opts.max_deliveries;
        let mut first = Some(first);
        // The whole batch is in hand from now on: its leases are extended
        // while earlier messages of the batch are being dispatched (a
        // handler's first poll runs here, in the loop).
        Settle::lock(&settle.in_flight).extend(
            msgs.iter()
                .filter(|m| m.delivery_count() <= max_deliveries)
                .map(|m| m.id()),
        );
        // Handled inline and to be acknowledged: handed to the acker at the
        // end of the batch, and before anything in it waits.
        let mut acked_inline: Vec<EntryId> = Vec::new();
        for mut msg in msgs {
            let (id, delivery_count) = (msg.id(), msg.delivery_count());
            if delivery_count > max_deliveries {
                settle.ack_inline(&mut acked_inline);
                let reason = settle.over_max_reason(id, delivery_count);
                match msg.into_message() {
                    Some(msg) => settle.dead_letter(msg, reason).await,
                    None => {
                        settle.dead_letter_id(id, reason).await;
                    }
                }
                continue;
            }
            let permit = match first.take() {
                Some(p) => p,
                None => match self.permits.clone().try_acquire_owned() {
                    Ok(p) => p,
                    // Cannot happen (only this loop takes permits); leave it
                    // pending for a reclaim rather than exceed the limit.
                    Err(_) => {
                        Settle::lock(&settle.in_flight).remove(&id);
                        continue;
                    }
                },
            };
            ConsumerStats::bump(&settle.stats.delivered);
            if delivery_count > 1 {
                ConsumerStats::bump(&settle.stats.redelivered);
            }
            let isolation = if settle.is_suspect(id, delivery_count, self.alone_from) {
                settle.isolate(&self.permits, &mut acked_inline).await
            } else {
                None
            };
            let span = delivery_span(&settle.queue, id, delivery_count);
            msg.in_span(&span);
            let link = self
                .key
                .as_ref()
                .and_then(|k| k(&msg))
                .map(|key| settle.link(key));
            let handled = Handled { id, delivery_count };
            // The fast path (see `inline`). A message with an ordering key,
            // or one run in isolation, is not started here at all: its
            // handler is called in its task, after the ones it must follow.
            let start = if link.is_none() && isolation.is_none() {
                match span.in_scope(|| self.inline.start(&*self.handler, msg)) {
                    Ok(start) if start.acked() => {
                        acked_inline.push(id);
                        drop(permit);
                        continue;
                    }
                    other => other,
                }
            } else {
                Err(msg)
            };
            let task = tokio::spawn(
                deliver(
                    settle.clone(),
                    self.handler.clone(),
                    start,
                    handled,
                    link,
                    permit,
                )
                .instrument(span),
            );
            if let Some(others) = isolation {
                let _ = task.await;
                settle.flush_acks().await;
                drop(others);
            }
        }
        settle.ack_inline(&mut acked_inline);
    }
}

/// The span a delivery's handler runs in. Its fields are named as
/// OpenTelemetry's messaging conventions name them; the event's, empty
/// here, are filled in by a service ([`Delivered::in_span`]), since a span's
/// fields are all declared where it is made. Nothing is formatted or
/// allocated when the span is disabled.
fn delivery_span(queue: &Queue, id: EntryId, delivery_count: u64) -> tracing::Span {
    use tracing::field::Empty;
    tracing::info_span!(
        "delivery",
        messaging.destination.name = %queue.name(),
        messaging.consumer.group.name = %queue.keys().group,
        messaging.message.id = %id,
        // i64: OpenTelemetry has no unsigned integers (a u64 would be
        // exported as text).
        messaging.eddy.delivery_count = i64::try_from(delivery_count).unwrap_or(i64::MAX),
        messaging.eddy.event_type = Empty,
        messaging.eddy.event_id = Empty,
        messaging.message.conversation_id = Empty,
    )
}

/// A message's task: wait for its turn (ordering key), run its handler to
/// the end (or start it, if the loop did not), settle it, and free its
/// permit.
async fn deliver<T, H, Fut>(
    settle: Arc<Settle>,
    handler: Arc<H>,
    start: std::result::Result<Start<Fut>, T>,
    handled: Handled,
    link: Option<Link>,
    permit: OwnedSemaphorePermit,
) where
    H: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), Fail>>,
{
    let turn = match link {
        Some(link) => Some(link.wait().await),
        None => None,
    };
    let start = start.unwrap_or_else(|msg| Start::new(&*handler, msg));
    let result = start
        .finish(settle.opts.handler_timeout, &settle.stats)
        .await;
    settle.settle(handled, result).await;
    Settle::lock(&settle.in_flight).remove(&handled.id);
    if let Some(turn) = turn {
        settle.unlink(turn);
    }
    drop(permit);
}
