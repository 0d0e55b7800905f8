//! The service runtime: the seed's `Microservice`, done properly.
//!
//! A service subscribes to event types on the [`Bus`], and runs a typed
//! handler per type on its subscription queue through the consumer loop
//! ([`crate::queue::consumer`]), with a concurrency limit, optional ordering
//! per key, retries with backoff and a handler timeout. For each message:
//!
//! - not an event at all → dead-lettered at once with the reason;
//! - an event type with no handler → acknowledged and logged (the seed's
//!   behaviour — it never stays pending);
//! - handler `Ok` → acknowledged; [`HandlerError::Reject`] (the seed's
//!   `return False`) → dead-lettered at once with the reason;
//!   [`HandlerError::Retry`], a panic or a timeout → retried with backoff,
//!   dead-lettered after the maximum deliveries.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eddy::Result<()> {
//! use eddy::bus::Bus;
//! use eddy::service::{Context, HandlerError, Service};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Ping { n: u32 }
//! eddy::event!(Ping);
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Pong { n: u32 }
//! eddy::event!(Pong);
//!
//! let bus = Bus::open("memory://").await?;
//! let pinger = Service::builder("ponger", bus.clone())
//!     .on(|ctx: Context, ping: Ping| async move {
//!         ctx.publish(&Pong { n: ping.n + 1 }).await?;
//!         Ok::<_, HandlerError>(())
//!     })
//!     .start()
//!     .await?;
//! let pongs = bus.subscribe("test", &eddy::bus::Subscription::types(["Pong"])).await?;
//! bus.publish(&Ping { n: 1 }).await?;
//! let got = pongs.receive(&eddy::Receive::new().block(std::time::Duration::from_secs(5))).await?;
//! assert_eq!(got[0].data["n"], 2);
//! assert_eq!(got[0].data["source"], "ponger");
//! pinger.stop().await?;
//! # Ok(())
//! # }
//! ```

mod metrics;

/// Handlers are looked up by event type per delivery: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use metrics::Recorded;
pub use metrics::{Histogram, ServiceMetrics, Snapshot, TypeMetrics};

use crate::bus::{Bus, Envelope, Event, Incoming, Published, Subscription};
use crate::error::{Error, Result};
use crate::queue::consumer::{self, Backoff, ConsumerOptions, ConsumerStats, KeyOf, Outcome};
use crate::queue::Message;

/// Why a handler did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandlerError {
    /// Retrying cannot help: dead-letter the event now with this reason.
    Reject(String),
    /// Possibly transient: retry with backoff, dead-letter after the maximum
    /// deliveries.
    Retry(String),
}

impl HandlerError {
    /// Dead-letter now.
    pub fn reject(reason: impl Into<String>) -> Self {
        HandlerError::Reject(reason.into())
    }

    /// Retry later.
    pub fn retry(error: impl std::fmt::Display) -> Self {
        HandlerError::Retry(error.to_string())
    }
}

impl From<Error> for HandlerError {
    fn from(e: Error) -> Self {
        HandlerError::Retry(e.to_string())
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandlerError::Reject(r) => write!(f, "rejected: {r}"),
            HandlerError::Retry(e) => write!(f, "failed: {e}"),
        }
    }
}

impl std::error::Error for HandlerError {}

/// What a handler gets besides its event: who it is, what it is handling,
/// and a way to publish follow-up events.
#[derive(Debug, Clone)]
pub struct Context {
    bus: Bus,
    service: Arc<str>,
    envelope: Arc<Incoming>,
    delivery_count: u64,
    metrics: Arc<ServiceMetrics>,
}

impl Context {
    /// The service handling the event.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The incoming event's envelope. A typed handler's event is read
    /// straight from the entry; the envelope's `data` (the event's fields
    /// as JSON) is built on the first call here, and kept.
    pub fn envelope(&self) -> &Envelope {
        self.envelope.envelope()
    }

    /// Deliveries of this event to this service so far, this one included.
    pub fn delivery_count(&self) -> u64 {
        self.delivery_count
    }

    /// Publish a follow-up event: `source` is this service, `causation_id`
    /// the incoming event, `correlation_id` the incoming event's (or its id
    /// if it had none), and `traceparent` continues the incoming trace.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Published> {
        let mut env = Envelope::new(event)?;
        let incoming = self.envelope.head();
        env.source = Some(self.service.to_string());
        env.causation_id = Some(incoming.event_id.clone());
        env.correlation_id = Some(
            incoming
                .correlation_id
                .clone()
                .unwrap_or_else(|| incoming.event_id.clone()),
        );
        env.traceparent = Some(crate::bus::new_traceparent(incoming.traceparent.as_deref()));
        let out = self.bus.publish_envelope(&env).await?;
        self.metrics.published();
        Ok(out)
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;
type Handler = Arc<dyn Fn(Context, &Incoming) -> BoxFuture + Send + Sync>;

/// Builds a [`Service`]: name, handlers, limits.
pub struct ServiceBuilder {
    name: String,
    bus: Bus,
    handlers: HashMap<String, Handler>,
    fallback: Option<Handler>,
    options: ConsumerOptions,
    order_by: Option<String>,
    dedupe_window: usize,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("all_events", &self.fallback.is_some())
            .field("options", &self.options)
            .finish()
    }
}

/// A service: the seed's `Microservice`.
#[derive(Debug)]
pub struct Service;

impl Service {
    /// Start building the service `name` on `bus`.
    pub fn builder(name: impl Into<String>, bus: Bus) -> ServiceBuilder {
        let name = name.into();
        ServiceBuilder {
            options: ConsumerOptions::new().name(consumer::default_consumer_name()),
            name,
            bus,
            handlers: HashMap::default(),
            fallback: None,
            order_by: None,
            dedupe_window: 10_000,
        }
    }
}

impl ServiceBuilder {
    /// Handle events of type `E` (and subscribe to them).
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event,
        F: Fn(Context, E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx: Context, event: &Incoming| {
            let decoded = event.decode::<E>();
            let handler = handler.clone();
            Box::pin(async move {
                match decoded {
                    Ok(event) => handler(ctx, event).await,
                    // Missing or mistyped fields never get better.
                    Err(e) => Err(HandlerError::Reject(e.to_string())),
                }
            })
        });
        self.handlers.insert(E::TYPE.to_owned(), erased);
        self
    }

    /// Handle every event type without a typed handler, as an envelope (and
    /// subscribe to all types).
    pub fn on_any<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Context, Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.fallback = Some(Arc::new(move |ctx: Context, event: &Incoming| {
            let (handler, env) = (handler.clone(), event.envelope().clone());
            Box::pin(async move { handler(ctx, env).await })
        }));
        self
    }

    /// Handlers running at once (default 16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.options.concurrency = n.max(1);
        self
    }

    /// Retry delays (default 200 ms doubling to 30 s, with jitter).
    pub fn retry(mut self, backoff: Backoff) -> Self {
        self.options.backoff = backoff;
        self
    }

    /// Deliveries before a failing event is dead-lettered (default 5).
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.options.max_deliveries = n.max(1);
        self
    }

    /// A handler running longer is abandoned and retried (default 60 s).
    pub fn handler_timeout(mut self, d: Duration) -> Self {
        self.options.handler_timeout = d;
        self
    }

    /// Events held by a silent consumer this long are redelivered (default
    /// 30 s).
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.options.visibility_timeout = d;
        self
    }

    /// How long `stop` lets in-flight handlers finish (default 10 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.options.shutdown_timeout = d;
        self
    }

    /// Handle events with the same value of field `field` (e.g. `order_id`,
    /// or an envelope field such as `correlation_id`) one at a time, in the
    /// order they arrive. Events without the field (or with it null) are
    /// not ordered; fields starting with `_` are the queue's, not the
    /// event's. It replaces an ordering key given with
    /// [`ServiceBuilder::consumer_options`].
    pub fn order_by(mut self, field: impl Into<String>) -> Self {
        self.order_by = Some(field.into());
        self
    }

    /// Remember at least this many handled event ids (and at most twice as
    /// many) to drop duplicates (default 10,000; 0 turns it off). Events
    /// being handled are always remembered until their handler ends.
    pub fn dedupe_window(mut self, n: usize) -> Self {
        self.dedupe_window = n;
        self
    }

    /// Replace the consumer loop settings wholesale.
    pub fn consumer_options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    fn subscription(&self) -> Subscription {
        if self.fallback.is_some() {
            Subscription::All
        } else {
            let mut types: Vec<String> = self.handlers.keys().cloned().collect();
            types.sort();
            Subscription::Types(types)
        }
    }

    /// Subscribe (routes are stored in the engine, so publishers in any
    /// process reach this service) and start handling events.
    pub async fn start(self) -> Result<RunningService> {
        let queue = self.bus.subscribe(&self.name, &self.subscription()).await?;
        let metrics = Arc::new(ServiceMetrics::default());
        let stats = Arc::new(ConsumerStats::default());
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let options = self.options;
        // The service's own ordering (`order_by`) reads the decoded event,
        // and wins over an ordering key given with `consumer_options` (as
        // it always has). Such a key takes messages: without `order_by`,
        // events are then read as messages first, as that key expects.
        let message_key = match self.order_by {
            Some(_) => None,
            None => options.ordering_key.clone(),
        };
        let order_by: Option<KeyOf<EventDelivery>> = self.order_by.clone().map(|field| {
            Arc::new(move |d: &EventDelivery| {
                d.event
                    .as_ref()
                    .ok()
                    .and_then(|event| event.envelope().order_key(&field))
            }) as KeyOf<EventDelivery>
        });
        let dispatch = Arc::new(Dispatch {
            bus: self.bus.clone(),
            service: self.name.clone().into(),
            handlers: self.handlers,
            fallback: self.fallback,
            metrics: metrics.clone(),
            seen: Mutex::new(Seen::new(self.dedupe_window)),
        });
        let name = self.name.clone();
        let task = tokio::spawn({
            let stats = stats.clone();
            async move {
                let shutdown = async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                };
                tracing::info!(service = %name, "service started");
                let result = match message_key {
                    None => {
                        consumer::run_loop(
                            queue,
                            options,
                            order_by,
                            move |d: EventDelivery| {
                                let dispatch = dispatch.clone();
                                async move { dispatch.handle(d).await }
                            },
                            shutdown,
                            stats,
                        )
                        .await
                    }
                    Some(key) => {
                        consumer::run_loop(
                            queue,
                            options,
                            Some(key),
                            move |m: Message| {
                                let dispatch = dispatch.clone();
                                async move { dispatch.handle(EventDelivery::from(m)).await }
                            },
                            shutdown,
                            stats,
                        )
                        .await
                    }
                };
                tracing::info!(service = %name, "service stopped");
                result
            }
        });
        Ok(RunningService {
            name: self.name,
            stop: stop_tx,
            task,
            metrics,
            stats,
        })
    }
}

/// Recently handled event ids, and the ones being handled, for dropping
/// duplicates (a publish retried after a lost reply carries the same id).
///
/// Handled ids are kept in two generations: new ones go into the current
/// set, and when it holds `cap` ids it becomes the previous set and the
/// old previous set is dropped whole. So the window remembers at least the
/// last `cap` handled ids and at most `2 * cap`. An exact sliding window
/// has to find and remove its oldest id on every insert: a lookup in a
/// long-cold part of the table, which was ~5% of a service's CPU in
/// `eddy bench bus` (perf). Ids being handled are kept apart, in a map that
/// is never rotated, so a handler that runs for a long time keeps its copies
/// out however many events finish meanwhile.
///
/// Ids in eddy's own form (a lowercase hyphenated UUID) are kept as the
/// 128-bit number they spell: no allocation, and nothing to follow when a
/// generation is dropped. Any other id is kept as its text.
struct Seen {
    /// Handled ids: `[current, previous]`.
    handled: [Generation; 2],
    /// Ids being handled, and through which stream entry.
    in_flight: HashMap<IdKey, crate::EntryId>,
    cap: usize,
}

#[derive(Default)]
struct Generation {
    uuids: HashSet<u128>,
    texts: HashSet<Arc<str>>,
}

impl Generation {
    fn len(&self) -> usize {
        self.uuids.len() + self.texts.len()
    }

    fn contains(&self, key: &IdKey) -> bool {
        match key {
            IdKey::Uuid(n) => self.uuids.contains(n),
            IdKey::Text(t) => self.texts.contains(t),
        }
    }

    fn insert(&mut self, key: &IdKey) {
        match key {
            IdKey::Uuid(n) => self.uuids.insert(*n),
            IdKey::Text(t) => self.texts.insert(t.clone()),
        };
    }

    fn clear(&mut self) {
        self.uuids.clear();
        self.texts.clear();
    }
}

/// An event id as the window keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IdKey {
    Uuid(u128),
    Text(Arc<str>),
}

/// The number a lowercase hyphenated UUID spells; `None` for any other
/// text (other forms of the same UUID are other ids: ids compare as text).
fn uuid_number(id: &str) -> Option<u128> {
    if id.len() != 36 || id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    uuid::Uuid::try_parse(id).ok().map(|u| u.as_u128())
}

impl Seen {
    fn new(cap: usize) -> Self {
        Self {
            handled: Default::default(),
            in_flight: HashMap::default(),
            cap,
        }
    }

    fn was_handled(&self, key: &IdKey) -> bool {
        self.handled.iter().any(|g| g.contains(key))
    }

    /// Whether this delivery duplicates an event handled or being handled
    /// through another entry; if not, it is now in flight, under the key
    /// returned (none when the window is off). A redelivery of the same
    /// entry is never a duplicate: acknowledging it would settle the copy
    /// in hand too.
    fn admit(&mut self, event_id: &str, entry: crate::EntryId) -> Verdict {
        if self.cap == 0 {
            return Verdict::Fresh(None);
        }
        let key = match uuid_number(event_id) {
            Some(n) => IdKey::Uuid(n),
            None => IdKey::Text(Arc::from(event_id)),
        };
        if self.was_handled(&key) {
            return Verdict::Duplicate;
        }
        match self.in_flight.get(&key) {
            Some(other) if *other != entry => Verdict::Duplicate,
            Some(_) => Verdict::Fresh(Some(key)),
            None => {
                self.in_flight.insert(key.clone(), entry);
                Verdict::Fresh(Some(key))
            }
        }
    }

    /// The handler of `entry` is done with the event admitted under `key`:
    /// remember it if it was handled; either way it is no longer in flight
    /// through `entry` (a failed one may be tried again by a later
    /// delivery). The in-flight mark of another entry stays: a failed
    /// redelivery must not clear the mark of a copy still being handled.
    fn done(&mut self, key: &IdKey, entry: crate::EntryId, handled: bool) {
        if self.in_flight.get(key) == Some(&entry) {
            self.in_flight.remove(key);
        }
        if !handled {
            return;
        }
        // (An id handled twice, by two copies in flight at once, is only
        // kept in the current generation again: no need to look first.)
        let [current, previous] = &mut self.handled;
        if current.len() >= self.cap {
            // Keeps the emptied set's allocation for the next generation.
            std::mem::swap(current, previous);
            current.clear();
        }
        current.insert(key);
    }
}

enum Verdict {
    Duplicate,
    Fresh(Option<IdKey>),
}

/// An event read from a service's subscription queue: its envelope (or, as
/// eddy writes events, only its id and type) read and its fields left in
/// the entry's bytes ([`Incoming`]), or, for anything else, decoded the
/// general way (the entry's `Map`, then [`Envelope::from_json`]), whose
/// answer stands. Not an event: `event` says why, and the handler step
/// dead-letters it.
///
/// An entry read by its id and type only is checked when its event is read,
/// in the handler step: one that starts as an eddy event but is not JSON at
/// all is dead-lettered there ("not an event: entry is not valid JSON: …",
/// counted as malformed), not moved to the dead-letter queue as it is read,
/// as other undecodable entries are. Either way it ends in the dead-letter
/// queue with its bytes, and no handler sees it.
pub(crate) struct EventDelivery {
    id: crate::EntryId,
    delivery_count: u64,
    event: Result<Arc<Incoming>>,
}

impl From<Message> for EventDelivery {
    fn from(m: Message) -> Self {
        Self {
            id: m.id,
            delivery_count: m.delivery_count,
            // The message is ours: its fields move, uncopied.
            event: Envelope::from_json(m.data).map(|env| Arc::new(Incoming::decoded(env))),
        }
    }
}

impl crate::queue::Delivered for EventDelivery {
    fn decode(
        entry: crate::engine::Entry,
        max_bytes: usize,
    ) -> std::result::Result<Self, Box<crate::queue::wire::Undecodable>> {
        let fast = entry
            .data
            .as_ref()
            .filter(|raw| raw.len() <= max_bytes)
            .and_then(Incoming::from_wire_bytes);
        match fast {
            Some(event) => Ok(Self {
                id: entry.id,
                delivery_count: entry.delivery_count,
                event: Ok(Arc::new(event)),
            }),
            None => crate::queue::wire::decode(entry, max_bytes).map(Self::from),
        }
    }
    fn id(&self) -> crate::EntryId {
        self.id
    }
    fn delivery_count(&self) -> u64 {
        self.delivery_count
    }
}

struct Dispatch {
    bus: Bus,
    service: Arc<str>,
    handlers: HashMap<String, Handler>,
    fallback: Option<Handler>,
    metrics: Arc<ServiceMetrics>,
    seen: Mutex<Seen>,
}

impl Dispatch {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn handle(&self, delivery: EventDelivery) -> Outcome {
        let (id, delivery_count) = (delivery.id, delivery.delivery_count);
        let event = match delivery.event {
            Ok(event) => event,
            Err(e) => {
                self.metrics.malformed();
                return Outcome::reject(format!("not an event: {e}"));
            }
        };
        let (event_id, event_type) = event.id_and_type();
        let handler = self.handlers.get(event_type).or(self.fallback.as_ref());
        // The handler is called (a typed one reads its event: see
        // `ServiceBuilder::on`) before anything counts the entry as an
        // event: an entry read the quick way is known to be one only once
        // read (`Incoming::from_wire_bytes`). Its future does nothing
        // until awaited.
        let ctx = Context {
            bus: self.bus.clone(),
            service: self.service.clone(),
            delivery_count,
            metrics: self.metrics.clone(),
            envelope: event.clone(),
        };
        let run = handler.map(|handler| handler(ctx, &event));
        if let Some(e) = event.not_an_event() {
            self.metrics.malformed();
            return Outcome::reject(format!("not an event: {e}"));
        }
        let key = match self.seen().admit(event_id, id) {
            Verdict::Duplicate => {
                self.metrics.duplicate();
                tracing::debug!(event_id = %event_id, "duplicate event dropped");
                return Outcome::Ack;
            }
            Verdict::Fresh(key) => key,
        };
        // Clears the in-flight mark however the handler ends (a panic or a
        // timeout drops this future).
        let mut mark = InFlight {
            dispatch: self,
            key,
            entry: id,
            handled: false,
        };
        let Some(run) = run else {
            self.metrics.unknown();
            tracing::warn!(service = %self.service, event_type = %event_type, event_id = %event_id, "no handler for this event type; acknowledging it");
            return Outcome::Ack;
        };
        let started = Instant::now();
        let result = run.await;
        let elapsed = started.elapsed();
        mark.handled = result.is_ok();
        drop(mark);
        match result {
            Ok(()) => {
                self.metrics.record(event_type, Recorded::Handled, elapsed);
                Outcome::Ack
            }
            Err(HandlerError::Reject(reason)) => {
                self.metrics.record(event_type, Recorded::Rejected, elapsed);
                Outcome::Reject { reason }
            }
            Err(HandlerError::Retry(error)) => {
                self.metrics.record(event_type, Recorded::Failed, elapsed);
                Outcome::Retry { error }
            }
        }
    }
}

struct InFlight<'a> {
    dispatch: &'a Dispatch,
    key: Option<IdKey>,
    entry: crate::EntryId,
    handled: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.dispatch.seen().done(key, self.entry, self.handled);
        }
    }
}

/// A started service.
#[derive(Debug)]
pub struct RunningService {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    metrics: Arc<ServiceMetrics>,
    stats: Arc<ConsumerStats>,
}

impl RunningService {
    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Handler counters and latencies per event type.
    pub fn metrics(&self) -> Snapshot {
        self.metrics.snapshot()
    }

    /// The consumer loop's counters (deliveries, retries, dead-letters...).
    pub fn stats(&self) -> &ConsumerStats {
        &self.stats
    }

    /// Stop fetching, let in-flight handlers finish up to the shutdown
    /// timeout, and wait. Unfinished events stay pending for another
    /// instance.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(Error::new(
                crate::ErrorKind::Backend,
                format!("service {} task failed: {e}", self.name),
            )),
        }
    }

    /// Stop and release everything (the same as [`RunningService::stop`];
    /// kept for the seed's `close`).
    pub async fn close(self) -> Result<()> {
        self.stop().await
    }

    /// Run until SIGINT or SIGTERM, then stop gracefully.
    pub async fn run_until_signal(self) -> Result<()> {
        shutdown_signal().await;
        self.stop().await
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryId;

    fn fresh(v: Verdict) -> Option<IdKey> {
        match v {
            Verdict::Fresh(key) => key,
            Verdict::Duplicate => None,
        }
    }

    #[test]
    fn the_dedupe_window_drops_copies_and_forgets_the_oldest() {
        let (e1, e2) = (EntryId::new(1, 0), EntryId::new(2, 0));
        let mut seen = Seen::new(2);
        let a = fresh(seen.admit("a", e1)).unwrap();
        // Another copy while the first is being handled; a redelivery of
        // the same entry is not a copy.
        assert!(matches!(seen.admit("a", e2), Verdict::Duplicate));
        assert!(fresh(seen.admit("a", e1)).is_some());
        seen.done(&a, e1, true);
        assert!(matches!(seen.admit("a", e2), Verdict::Duplicate));
        // A failed handler is forgotten: the next copy runs.
        let b = fresh(seen.admit("b", e1)).unwrap();
        seen.done(&b, e1, false);
        let b = fresh(seen.admit("b", e2)).unwrap();
        seen.done(&b, e2, true);
        // A window of two remembers at least the last two handled ids and
        // at most four: a third starts a new generation, and a fifth drops
        // the generation of the first two.
        let handle = |seen: &mut Seen, id: &str, n: u64| {
            let e = EntryId::new(9, n);
            let k = fresh(seen.admit(id, e)).unwrap();
            seen.done(&k, e, true);
        };
        handle(&mut seen, "c", 0);
        assert!(matches!(seen.admit("a", e2), Verdict::Duplicate));
        handle(&mut seen, "d", 1);
        handle(&mut seen, "e", 2);
        assert!(fresh(seen.admit("a", e2)).is_some());
        assert!(fresh(seen.admit("b", e2)).is_some());
        for id in ["c", "d", "e"] {
            assert!(matches!(seen.admit(id, e1), Verdict::Duplicate), "{id}");
        }
        assert!(seen.handled.iter().all(|g| g.len() <= 2));
        // eddy's own ids are kept as numbers; other spellings of the same
        // UUID are other ids, as their text differs.
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let k = fresh(seen.admit(id, e1)).unwrap();
        assert_eq!(k, IdKey::Uuid(uuid_number(id).unwrap()));
        seen.done(&k, e1, true);
        assert!(matches!(seen.admit(id, e2), Verdict::Duplicate));
        let upper = id.to_uppercase();
        assert!(matches!(
            seen.admit(&upper, e2),
            Verdict::Fresh(Some(IdKey::Text(_)))
        ));
        for other in [
            "x",
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
        ] {
            assert_eq!(uuid_number(other), None, "{other}");
        }
        // Three more handled ids push the UUID out of the window.
        for (n, t) in ["f1", "f2", "f3"].into_iter().enumerate() {
            handle(&mut seen, t, 10 + n as u64);
        }
        assert!(seen.handled.iter().all(|g| g.uuids.is_empty()));
        assert!(fresh(seen.admit(id, e2)).is_some());
        // An event still being handled stays in however many others finish
        // meanwhile; a failed copy leaves it to be tried again.
        let slow = fresh(seen.admit("slow", e1)).unwrap();
        for n in 0..10 {
            handle(&mut seen, &format!("g{n}"), 20 + n);
        }
        assert!(matches!(seen.admit("slow", e2), Verdict::Duplicate));
        seen.done(&slow, e1, false);
        assert!(fresh(seen.admit("slow", e2)).is_some());
        // A copy handled through one entry while another entry's copy is
        // in flight: the id is handled, and stays so when the other copy
        // then fails, until the generations move past it.
        // (Entry 3 is redelivered while its first delivery runs; the first
        // fails, entry 4's copy is admitted, then 3's redelivery succeeds.)
        let (e3, e4) = (EntryId::new(3, 0), EntryId::new(4, 0));
        let first = fresh(seen.admit("h", e3)).unwrap();
        let again = fresh(seen.admit("h", e3)).unwrap();
        seen.done(&first, e3, false);
        let h4 = fresh(seen.admit("h", e4)).unwrap();
        seen.done(&again, e3, true);
        assert!(matches!(
            seen.admit("h", EntryId::new(5, 0)),
            Verdict::Duplicate
        ));
        seen.done(&h4, e4, false);
        assert!(matches!(
            seen.admit("h", EntryId::new(5, 0)),
            Verdict::Duplicate
        ));
        for n in 0..4 {
            handle(&mut seen, &format!("k{n}"), 40 + n);
        }
        assert!(fresh(seen.admit("h", EntryId::new(5, 0))).is_some());
        // A failed redelivery of entry 1 finishing after its copy in entry
        // 2 was admitted leaves entry 2's mark alone.
        let mut seen = Seen::new(4);
        let k1 = fresh(seen.admit("r", e1)).unwrap();
        let again = fresh(seen.admit("r", e1)).unwrap();
        seen.done(&k1, e1, false);
        let k2 = fresh(seen.admit("r", e2)).unwrap();
        seen.done(&again, e1, false);
        assert!(matches!(
            seen.admit("r", EntryId::new(3, 0)),
            Verdict::Duplicate
        ));
        seen.done(&k2, e2, true);
        assert!(matches!(
            seen.admit("r", EntryId::new(3, 0)),
            Verdict::Duplicate
        ));
        // Off: nothing is remembered.
        let mut off = Seen::new(0);
        assert!(matches!(off.admit("a", e1), Verdict::Fresh(None)));
        assert!(matches!(off.admit("a", e2), Verdict::Fresh(None)));
    }
}
