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
//! - handler `Ok` → acknowledged; [`Fail::Reject`] (the seed's `return
//!   False`) → dead-lettered at once with the reason; [`Fail::Retry`], a
//!   panic or a timeout → retried (after the backoff or the delay the
//!   handler asks for), dead-lettered after the maximum deliveries. `?` on
//!   an [`Error`] retries what may pass ([`Error::is_retryable`]) and
//!   rejects the rest;
//! - an event whose id was handled (or is being handled) shortly before →
//!   acknowledged without running the handler (see
//!   [`ServiceBuilder::dedupe_window`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eddy::Result<()> {
//! use eddy::bus::Bus;
//! use eddy::service::{Context, Service};
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
//!         Ok(())
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

mod dedupe;
mod metrics;

/// Handlers are looked up by event type per delivery: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use dedupe::{IdKey, Seen, Verdict};
use metrics::Recorded;
pub use metrics::{Histogram, ServiceMetrics, Snapshot, TypeMetrics};

pub use crate::handler::{shutdown_signal, Fail};

use crate::bus::{Bus, Envelope, Event, Incoming, Published, Subscription};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::consumer::{self, Backoff, ConsumerOptions, ConsumerStats, KeyOf};
use crate::queue::Message;

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
        self.envelope.envelope_or_head()
    }

    /// Deliveries of this event to this service so far, this one included.
    pub fn delivery_count(&self) -> u64 {
        self.delivery_count
    }

    /// Publish a follow-up event: `source` is this service, `causation_id`
    /// the incoming event, `correlation_id` the incoming event's (or its id
    /// if it had none), and `traceparent` continues the incoming trace.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Published> {
        let cause = self.envelope.head();
        let out = self.bus.publish_caused(&self.service, cause, event).await?;
        self.metrics.published();
        Ok(out)
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<(), Fail>> + Send>>;
type Handler = Arc<dyn Fn(Context, &Incoming) -> BoxFuture + Send + Sync>;

/// Builds a [`Service`]: name, handlers, limits.
pub struct ServiceBuilder {
    name: String,
    bus: Bus,
    handlers: HashMap<String, Handler>,
    fallback: Option<Handler>,
    /// The consumer loop settings of [`ServiceBuilder::consumer_options`];
    /// `overrides` wins over them.
    options: ConsumerOptions,
    overrides: Overrides,
    order_by: Option<String>,
    dedupe_window: usize,
    metrics: Option<crate::metrics::Metrics>,
    metrics_listen: Option<std::net::SocketAddr>,
}

/// The consumer loop settings given through the builder's own methods.
#[derive(Debug, Clone, Default)]
struct Overrides {
    concurrency: Option<usize>,
    backoff: Option<Backoff>,
    max_deliveries: Option<u64>,
    handler_timeout: Option<Duration>,
    visibility_timeout: Option<Duration>,
    shutdown_timeout: Option<Duration>,
    history: Option<Option<Duration>>,
    history_length: Option<Option<u64>>,
}

impl Overrides {
    fn apply(&self, mut options: ConsumerOptions) -> ConsumerOptions {
        if let Some(n) = self.concurrency {
            options.concurrency = n;
        }
        if let Some(b) = self.backoff {
            options.backoff = b;
        }
        if let Some(n) = self.max_deliveries {
            options.max_deliveries = n;
        }
        if let Some(d) = self.handler_timeout {
            options.handler_timeout = d;
        }
        if let Some(d) = self.visibility_timeout {
            options.visibility_timeout = d;
        }
        if let Some(d) = self.shutdown_timeout {
            options.shutdown_timeout = d;
        }
        if let Some(h) = self.history {
            options.history = h;
        }
        if let Some(n) = self.history_length {
            options.history_length = n;
        }
        options
    }
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder")
            .field("name", &self.name)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("all_events", &self.fallback.is_some())
            .field("options", &self.consumer_settings())
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
            overrides: Overrides::default(),
            name,
            bus,
            handlers: HashMap::default(),
            fallback: None,
            order_by: None,
            dedupe_window: 10_000,
            metrics: None,
            metrics_listen: None,
        }
    }
}

impl ServiceBuilder {
    /// Handle events of type `E` (and subscribe to them).
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event,
        F: Fn(Context, E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Fail>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |ctx: Context, event: &Incoming| {
            let decoded = event.decode::<E>();
            let handler = handler.clone();
            Box::pin(async move {
                match decoded {
                    Ok(event) => handler(ctx, event).await,
                    // Missing or mistyped fields never get better.
                    Err(e) => Err(Fail::reject(e)),
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
        Fut: Future<Output = Result<(), Fail>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.fallback = Some(Arc::new(move |ctx: Context, event: &Incoming| {
            let (handler, env) = (handler.clone(), event.envelope().cloned());
            Box::pin(async move {
                match env {
                    Ok(env) => handler(ctx, env).await,
                    // Fields that cannot be read never get better.
                    Err(e) => Err(Fail::reject(e)),
                }
            })
        }));
        self
    }

    /// Handlers running at once (default 16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.overrides.concurrency = Some(n.max(1));
        self
    }

    /// Retry delays (default 200 ms doubling to 30 s, with jitter).
    pub fn retry(mut self, backoff: Backoff) -> Self {
        self.overrides.backoff = Some(backoff);
        self
    }

    /// Deliveries before a failing event is dead-lettered (default 5).
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.overrides.max_deliveries = Some(n.max(1));
        self
    }

    /// A handler running longer is abandoned and retried (default 60 s).
    pub fn handler_timeout(mut self, d: Duration) -> Self {
        self.overrides.handler_timeout = Some(d);
        self
    }

    /// Events held by a silent consumer this long are redelivered (default
    /// 30 s).
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.overrides.visibility_timeout = Some(d);
        self
    }

    /// How long `stop` lets in-flight handlers finish (default 10 s).
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.overrides.shutdown_timeout = Some(d);
        self
    }

    /// Report this service's counters, handler durations and queue gauges
    /// through `metrics` (see [`crate::metrics`] for the names), for an
    /// application that serves its own `/metrics`.
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Serve this service's metrics at `GET /metrics` on `addr` while it
    /// runs (with [`ServiceBuilder::metrics`], that list's too). Port 0
    /// picks a free port: [`RunningService::metrics_addr`] tells which. An
    /// address that cannot be bound fails [`ServiceBuilder::start`].
    pub fn metrics_listen(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_listen = Some(addr);
        self
    }

    /// Acknowledged events kept on the subscription queue, trimmed as the
    /// service goes (default one minute,
    /// [`crate::queue::consumer::DEFAULT_HISTORY`]; zero keeps none, `None`
    /// keeps all for something else to trim). Pending and undelivered
    /// events are never trimmed.
    pub fn history(mut self, keep: Option<Duration>) -> Self {
        self.overrides.history = Some(keep);
        self
    }

    /// Also keep at most this many acknowledged events on the subscription
    /// queue, however young (default `None`: the age alone bounds it; zero
    /// keeps none). Useful when a burst would otherwise hold a whole
    /// window of events in Redis.
    pub fn history_length(mut self, keep: Option<u64>) -> Self {
        self.overrides.history_length = Some(keep);
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

    /// The consumer loop settings (the consumer name, reclaim interval,
    /// read wait, an ordering key on messages...). What this builder sets
    /// with its own methods ([`ServiceBuilder::concurrency`],
    /// [`ServiceBuilder::retry`], [`ServiceBuilder::max_deliveries`],
    /// [`ServiceBuilder::history`], [`ServiceBuilder::history_length`] and the timeouts) wins over the same settings here, whichever is called
    /// first; a second call replaces the first one's settings.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use std::time::Duration;
    /// use eddy::queue::consumer::ConsumerOptions;
    /// use eddy::service::Service;
    ///
    /// let bus = eddy::bus::Bus::open("memory://").await?;
    /// let fast = ConsumerOptions::new().poll(Duration::from_millis(50)).max_deliveries(9);
    /// // Either order: 3 deliveries, and the 50 ms read wait.
    /// let a = Service::builder("billing", bus.clone()).max_deliveries(3).consumer_options(fast.clone());
    /// let b = Service::builder("billing", bus).consumer_options(fast).max_deliveries(3);
    /// for settings in [a.consumer_settings(), b.consumer_settings()] {
    ///     assert_eq!(settings.max_deliveries, 3);
    ///     assert_eq!(settings.poll, Duration::from_millis(50));
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn consumer_options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// The consumer loop settings the service will run with.
    pub fn consumer_settings(&self) -> ConsumerOptions {
        self.overrides.apply(self.options.clone())
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
        let exporter = match (&self.metrics, self.metrics_listen) {
            (None, None) => None,
            (given, _) => {
                let m = given.clone().unwrap_or_default();
                m.consumer(&queue, &self.name, &stats);
                m.service(&self.name, &metrics);
                m.bus(&self.bus);
                m.queue(&queue);
                Some(m)
            }
        };
        let metrics_server = match (exporter, self.metrics_listen) {
            (Some(m), Some(addr)) => Some(m.serve(addr).await?),
            _ => None,
        };
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let options = self.consumer_settings();
        // The service's own ordering (`order_by`) reads the event's field,
        // and wins over an ordering key given with `consumer_options`, as
        // the builder's own settings do. Such a key takes messages: it gets
        // the entry decoded as one.
        let order_by: Option<KeyOf<EventDelivery>> =
            match (self.order_by.clone(), options.ordering_key.clone()) {
                (Some(field), _) => Some(Arc::new(move |d: &EventDelivery| {
                    d.event
                        .as_ref()
                        .ok()
                        .and_then(|event| event.order_key(&field))
                })),
                (None, Some(key)) => Some(Arc::new(move |d: &EventDelivery| {
                    d.message().and_then(|m| key(&m))
                })),
                (None, None) => None,
            };
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
                let result = consumer::run_loop(
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
                .await;
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
            metrics_server,
        })
    }
}

/// An event read from a service's subscription queue: its head read from
/// the entry's bytes, its fields left in them ([`Incoming`]). An entry that
/// is not an event (not a JSON object, or one without a string `event_id`
/// and `event_type`): `event` says why, and the handler step dead-letters
/// it. One without `data`, or over the payload limit, goes to the
/// dead-letter queue as it is read.
pub(crate) struct EventDelivery {
    id: crate::EntryId,
    delivery_count: u64,
    event: Result<Arc<Incoming>>,
    /// The entry, for an ordering key that takes messages.
    entry: crate::engine::Entry,
    /// The delivery's span, for the fields known once the envelope is read.
    span: tracing::Span,
}

impl EventDelivery {
    /// Not an event (`event` is an error): the handler step dead-letters
    /// it, and counts it as malformed.
    fn new(entry: crate::engine::Entry, event: Result<Incoming>) -> Self {
        Self {
            id: entry.id,
            delivery_count: entry.delivery_count,
            event: event.map(Arc::new),
            entry,
            span: tracing::Span::none(),
        }
    }

    /// The entry decoded as a message, for an ordering key given with
    /// [`ServiceBuilder::consumer_options`].
    fn message(&self) -> Option<Message> {
        crate::queue::wire::decode(self.entry.clone(), usize::MAX).ok()
    }
}

impl crate::queue::Delivered for EventDelivery {
    fn decode(
        entry: crate::engine::Entry,
        max_bytes: usize,
    ) -> std::result::Result<Self, Box<crate::queue::wire::Undecodable>> {
        match crate::queue::wire::data_of(&entry, max_bytes) {
            Ok(raw) => {
                let read = Incoming::read(raw);
                Ok(Self::new(entry, read))
            }
            Err(reason) => Err(crate::queue::wire::Undecodable::new(entry, reason)),
        }
    }
    fn decode_any(entry: crate::engine::Entry) -> Self {
        let read = match crate::queue::wire::data_of(&entry, usize::MAX) {
            Ok(raw) => Incoming::read(raw),
            Err(reason) => Err(Error::new(ErrorKind::Decode, reason)),
        };
        Self::new(entry, read)
    }
    fn id(&self) -> crate::EntryId {
        self.id
    }
    fn delivery_count(&self) -> u64 {
        self.delivery_count
    }
    fn in_span(&mut self, span: &tracing::Span) {
        let Ok(event) = &self.event else { return };
        if span.is_disabled() {
            return;
        }
        let (event_id, event_type) = event.id_and_type();
        // As displayed, like the loop's own fields (a `&str` would be
        // quoted in text logs).
        use tracing::field::display;
        span.record("messaging.eddy.event_type", display(event_type));
        span.record("messaging.eddy.event_id", display(event_id));
        // Reading the envelope's `traceparent` takes a pass over the entry
        // before the handler's own: only for an OpenTelemetry layer.
        #[cfg(feature = "otel")]
        crate::bus::trace::set_parent(span, || event.head().traceparent.as_deref());
        self.span = span.clone();
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

    async fn handle(&self, delivery: EventDelivery) -> Result<(), Fail> {
        let (id, delivery_count) = (delivery.id, delivery.delivery_count);
        let event = match delivery.event {
            Ok(event) => event,
            Err(e) => {
                self.metrics.malformed();
                return Err(Fail::reject(format!("not an event: {e}")));
            }
        };
        let (event_id, event_type) = event.id_and_type();
        let handler = self.handlers.get(event_type).or(self.fallback.as_ref());
        // The handler is called (a typed one reads its event: see
        // `ServiceBuilder::on`) now; its future does nothing until awaited.
        let ctx = Context {
            bus: self.bus.clone(),
            service: self.service.clone(),
            delivery_count,
            metrics: self.metrics.clone(),
            envelope: event.clone(),
        };
        let run = handler.map(|handler| handler(ctx, &event));
        // Known to be an event once read whole: by the handler's read of
        // its event just now, or here.
        match event.checked_head() {
            Ok(head) => {
                if let Some(correlation_id) = &head.correlation_id {
                    let span = &delivery.span;
                    let correlation_id = tracing::field::display(correlation_id);
                    span.record("messaging.message.conversation_id", correlation_id);
                }
            }
            Err(e) => {
                self.metrics.malformed();
                return Err(Fail::reject(format!("not an event: {e}")));
            }
        }
        let key = match self.seen().admit(event_id, id) {
            Verdict::Duplicate => {
                self.metrics.duplicate();
                tracing::debug!(event_id = %event_id, "duplicate event dropped");
                return Ok(());
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
            return Ok(());
        };
        let started = Instant::now();
        let result = run.await;
        let elapsed = started.elapsed();
        mark.handled = result.is_ok();
        drop(mark);
        let recorded = match &result {
            Ok(()) => Recorded::Handled,
            Err(Fail::Reject { .. }) => Recorded::Rejected,
            Err(Fail::Retry { .. }) => Recorded::Failed,
        };
        self.metrics.record(event_type, recorded, elapsed);
        result
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
    metrics_server: Option<crate::metrics::MetricsServer>,
}

impl RunningService {
    /// Where [`ServiceBuilder::metrics_listen`] serves `/metrics`.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_server.as_ref().map(|s| s.addr())
    }

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
        let finished = self.task.await;
        if let Some(server) = self.metrics_server {
            server.stop().await;
        }
        match finished {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_builders_own_settings_win_over_consumer_options_in_any_order() {
        let bus = Bus::open("memory://").await.unwrap();
        let base = ConsumerOptions::new()
            .name("base".into())
            .concurrency(2)
            .max_deliveries(9)
            .poll(Duration::from_millis(50))
            .handler_timeout(Duration::from_secs(1))
            .visibility_timeout(Duration::from_secs(2))
            .shutdown_timeout(Duration::from_secs(3));
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
        let own = |b: ServiceBuilder| {
            b.concurrency(7)
                .retry(backoff)
                .max_deliveries(3)
                .handler_timeout(Duration::from_secs(11))
                .visibility_timeout(Duration::from_secs(12))
                .shutdown_timeout(Duration::from_secs(13))
        };
        let before = own(Service::builder("s", bus.clone())).consumer_options(base.clone());
        let after = own(Service::builder("s", bus.clone()).consumer_options(base.clone()));
        for built in [before.consumer_settings(), after.consumer_settings()] {
            assert_eq!(built.concurrency, 7);
            assert_eq!(built.backoff, backoff);
            assert_eq!(built.max_deliveries, 3);
            assert_eq!(built.handler_timeout, Duration::from_secs(11));
            assert_eq!(built.visibility_timeout, Duration::from_secs(12));
            assert_eq!(built.shutdown_timeout, Duration::from_secs(13));
            // What only `consumer_options` sets comes from it.
            assert_eq!(built.name, "base");
            assert_eq!(built.poll, Duration::from_millis(50));
        }
        // Without the builder's own settings, `consumer_options` decides.
        let plain = Service::builder("s", bus)
            .consumer_options(base)
            .consumer_settings();
        assert_eq!((plain.concurrency, plain.max_deliveries), (2, 9));
    }
}
