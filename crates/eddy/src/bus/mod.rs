//! The event bus: typed events fanned out to per-service subscription
//! queues.
//!
//! Routes live in the engine (on Redis, in Redis), never in process memory,
//! so every process that publishes routes the same way — the seed's first
//! flaw was a per-process subscriber map. Under the bus prefix (`events:`):
//!
//! | key | type | content |
//! |---|---|---|
//! | `events:sub:SERVICE` (+ `:dlq`, ...) | queue pair | the service's subscription queue |
//! | `events:routes:TYPE` | set | services subscribed to `TYPE` |
//! | `events:routes:*` | set | services subscribed to every type |
//! | `events:all` (+ `:dlq`, ...) | queue pair | every event published, for replay |
//!
//! Publishing an event is one atomic step: one Lua script on Redis, one
//! critical section embedded. Publishes that overlap in time share that
//! step (a group commit: see `batch.rs`), each keeping its own result.
//!
//! On a Redis Cluster the subscription queues are in different hash slots
//! and no script can write them together: a publish is one append to the
//! `all` log, and a relay that every bus runs fans it out (see `relay.rs`).

mod batch;
mod envelope;
mod incoming;
mod log;
mod relay;
#[cfg(test)]
mod tests;
pub(crate) mod trace;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

pub use envelope::{Envelope, Event, RESERVED};
pub(crate) use incoming::Incoming;
pub use log::DEFAULT_LOG_HISTORY;

use crate::engine::{validate_name, EntryId, Publish, SharedEngine};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::{Eddy, EddyBuilder, Queue};

/// The default bus prefix.
pub const DEFAULT_PREFIX: &str = "events:";

/// The queue name of the log of every event.
const ALL_LOG: &str = "all";

/// Which events a service subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subscription {
    /// Every event type.
    All,
    /// These event types.
    Types(Vec<String>),
}

impl Subscription {
    /// A subscription to the given type names.
    pub fn types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscription::Types(types.into_iter().map(Into::into).collect())
    }
}

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The event's id.
    pub event_id: String,
    /// The services it was delivered to (their subscription queues).
    pub delivered_to: Vec<String>,
}

/// The envelope's fields of an event being published, besides its type.
struct Head<'a> {
    event_id: String,
    timestamp: f64,
    source: Option<&'a str>,
    correlation_id: Option<&'a str>,
    causation_id: Option<&'a str>,
    traceparent: Option<String>,
}

impl Head<'_> {
    /// A fresh id, the time now, no extras.
    fn new() -> Self {
        Self {
            event_id: envelope::new_event_id(),
            timestamp: crate::queue::wire::now_secs(),
            source: None,
            correlation_id: None,
            causation_id: None,
            traceparent: trace::current_traceparent(),
        }
    }
}

/// The event bus. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use eddy::bus::{Bus, Envelope, Subscription};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderCreatedEvent { order_id: String, total: f64 }
/// eddy::event!(OrderCreatedEvent);
///
/// let bus = Bus::open("memory://").await?;
/// let queue = bus.subscribe("payment-service", &Subscription::types(["OrderCreatedEvent"])).await?;
/// let sent = bus.publish(&OrderCreatedEvent { order_id: "o1".into(), total: 9.5 }).await?;
/// assert_eq!(sent.delivered_to, ["payment-service"]);
///
/// let msg = &queue.receive(&eddy::Receive::new()).await?[0];
/// let event: OrderCreatedEvent = Envelope::from_message(msg)?.decode()?;
/// assert_eq!(event.order_id, "o1");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Bus {
    mq: Eddy,
    /// Overlapping publishes share engine calls (see `batch.rs`).
    batcher: Arc<batch::Batcher>,
    /// The `all` log's retention, applied as events are published.
    log: Arc<log::LogHistory>,
    /// Events published through this handle and its clones, for the
    /// metrics.
    published: Arc<PublishCounts>,
    /// On a Redis Cluster: the `all` log, which publishes append to, and
    /// the guard of this bus's relay, which fans the log out.
    cluster: Option<ClusterLog>,
}

#[derive(Debug, Clone)]
struct ClusterLog {
    keys: Arc<crate::engine::QueueKeys>,
    _relay: Option<Arc<relay::RelayGuard>>,
}

/// Events a bus handle (and its clones) published, per event type: how
/// many, and to how many subscription queues in all.
#[derive(Debug, Default)]
pub(crate) struct PublishCounts(std::sync::Mutex<foldhash::HashMap<String, (u64, u64)>>);

impl PublishCounts {
    fn add(&self, event_type: &str, fanned_out: usize) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let c = match m.get_mut(event_type) {
            Some(c) => c,
            None => m.entry(event_type.to_owned()).or_default(),
        };
        c.0 += 1;
        c.1 += fanned_out as u64;
    }

    /// `(event type, published, appended to subscription queues)`.
    pub(crate) fn snapshot(&self) -> Vec<(String, u64, u64)> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, (p, d))| (k.clone(), *p, *d)).collect()
    }
}

impl Bus {
    /// Open the engine at `url` with the bus prefix `events:`.
    pub async fn open(url: &str) -> Result<Self> {
        Self::new(EddyBuilder::new(url).prefix(DEFAULT_PREFIX).open().await?).await
    }

    /// A bus on an engine that is already open, under the bus prefix.
    pub async fn with_engine(engine: SharedEngine) -> Result<Self> {
        Self::new(
            EddyBuilder::new("")
                .prefix(DEFAULT_PREFIX)
                .with_engine(engine)?,
        )
        .await
    }

    /// A bus over `mq`, whose prefix becomes the bus prefix.
    pub async fn new(mq: Eddy) -> Result<Self> {
        let (log, _) = mq.create_queue_pair(ALL_LOG).await?;
        let cluster = mq.engine().capabilities().clustered.then(|| {
            let keys = Arc::new(log.keys().clone());
            let relay = relay::start(mq.clone(), keys.clone());
            if relay.is_none() {
                tracing::warn!("no tokio runtime: this bus publishes to the cluster's log, but another process's bus must relay it");
            }
            ClusterLog {
                keys,
                _relay: relay,
            }
        });
        let batcher = match &cluster {
            Some(cluster) => batch::Batcher::for_log(cluster.keys.clone()),
            None => batch::Batcher::default(),
        };
        Ok(Self {
            mq,
            batcher: Arc::new(batcher),
            log: Arc::new(log::LogHistory::new(Some(DEFAULT_LOG_HISTORY))),
            published: Arc::default(),
            cluster,
        })
    }

    /// Keep this much of the `all` log (default ten minutes,
    /// [`DEFAULT_LOG_HISTORY`]); `None` keeps it all, for something else
    /// to trim with [`Bus::trim_log`]. Publishers trim it as they publish.
    pub fn log_history(mut self, keep: Option<Duration>) -> Self {
        self.log = Arc::new(log::LogHistory::new(keep));
        self
    }

    /// What [`Bus::log_history`] set.
    pub fn log_history_kept(&self) -> Option<Duration> {
        self.log.keep()
    }

    pub(crate) fn publish_counts(&self) -> &Arc<PublishCounts> {
        &self.published
    }

    /// The queues underneath (prefix `events:`).
    pub fn queues(&self) -> &Eddy {
        &self.mq
    }

    fn routes_key(&self, event_type: &str) -> String {
        format!("{}routes:{event_type}", self.mq.prefix())
    }

    fn all_routes_key(&self) -> String {
        format!("{}routes:*", self.mq.prefix())
    }

    /// The set of every event type that was ever given a route, so that
    /// [`Bus::routes`] can list them without scanning the keyspace (a
    /// `KEYS`/`SCAN` would block or page a production Redis). Named outside
    /// the `routes:` namespace so that no event type can collide with it.
    fn route_index_key(&self) -> String {
        format!("{}route-index", self.mq.prefix())
    }

    fn sub_queue_name(service: &str) -> Result<String> {
        validate_name(service).map_err(|_| {
            Error::new(
                ErrorKind::InvalidName,
                format!("invalid service name `{service}`: use 1 to 190 characters from A-Z a-z 0-9 _ - . :"),
            )
        })?;
        Ok(format!("sub:{service}"))
    }

    /// Subscribe `service` to event types (or all), creating its
    /// subscription queue pair `sub:SERVICE`. Routes are stored in the
    /// engine and add to earlier ones. Events published earlier are not
    /// copied in; use [`Bus::replay`] for those.
    pub async fn subscribe(&self, service: &str, subscription: &Subscription) -> Result<Queue> {
        let name = Self::sub_queue_name(service)?;
        let keys: Vec<String> = match subscription {
            Subscription::All => vec![self.all_routes_key()],
            Subscription::Types(types) => {
                for t in types {
                    validate_name(t)?;
                }
                types.iter().map(|t| self.routes_key(t)).collect()
            }
        };
        // The queue first: a route must never point at a queue without a group.
        let (queue, _) = self.mq.create_queue_pair(&name).await?;
        // The index before the routes: a route that exists is always listed.
        if let Subscription::Types(types) = subscription {
            self.mq
                .engine()
                .set_add(&self.route_index_key(), types)
                .await?;
        }
        for key in keys {
            self.mq
                .engine()
                .set_add(&key, std::slice::from_ref(&service.to_owned()))
                .await?;
        }
        // Once more after the routes: an `unsubscribe` racing with this one
        // may have dropped the type from the index in between.
        if let Subscription::Types(types) = subscription {
            self.mq
                .engine()
                .set_add(&self.route_index_key(), types)
                .await?;
        }
        Ok(queue)
    }

    /// Remove routes of `service` (its queue and pending events stay).
    pub async fn unsubscribe(&self, service: &str, subscription: &Subscription) -> Result<()> {
        Self::sub_queue_name(service)?;
        let keys = match subscription {
            Subscription::All => vec![self.all_routes_key()],
            Subscription::Types(types) => types.iter().map(|t| self.routes_key(t)).collect(),
        };
        for key in keys {
            self.mq
                .engine()
                .set_remove(&key, std::slice::from_ref(&service.to_owned()))
                .await?;
        }
        // A type nobody subscribes to any more leaves the index, so that an
        // unsubscribed bus leaves no key behind. Not atomic with a
        // concurrent subscribe, which is why `subscribe` adds to the index
        // again after its routes: a race can at worst drop a type from the
        // listing until the next subscribe to it, never from a publish,
        // which reads the route sets themselves.
        if let Subscription::Types(types) = subscription {
            let mut unused = Vec::new();
            for t in types {
                if self
                    .mq
                    .engine()
                    .members(&self.routes_key(t))
                    .await?
                    .is_empty()
                {
                    unused.push(t.clone());
                }
            }
            if !unused.is_empty() {
                self.mq
                    .engine()
                    .set_remove(&self.route_index_key(), &unused)
                    .await?;
            }
        }
        Ok(())
    }

    /// The services that receive events of `event_type`.
    pub async fn subscribers(&self, event_type: &str) -> Result<Vec<String>> {
        let mut out = self
            .mq
            .engine()
            .members(&self.routes_key(event_type))
            .await?;
        out.extend(self.mq.engine().members(&self.all_routes_key()).await?);
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Every route: each event type that some service subscribes to, with
    /// its services, sorted by type; services subscribed to all types are
    /// listed under `"*"` (first, when there are any). Types whose last
    /// subscriber left are not listed. Routes recorded by an eddy older
    /// than the route index are found by [`Bus::subscribers`] but not here.
    pub async fn routes(&self) -> Result<Vec<(String, Vec<String>)>> {
        let engine = self.mq.engine();
        let mut types = engine.members(&self.route_index_key()).await?;
        types.sort();
        let mut out = Vec::with_capacity(types.len() + 1);
        let mut all = engine.members(&self.all_routes_key()).await?;
        if !all.is_empty() {
            all.sort();
            out.push(("*".to_owned(), all));
        }
        for event_type in types {
            let mut services = engine.members(&self.routes_key(&event_type)).await?;
            if services.is_empty() {
                continue;
            }
            services.sort();
            out.push((event_type, services));
        }
        Ok(out)
    }

    /// The subscription queue of `service`.
    pub async fn subscription_queue(&self, service: &str) -> Result<Queue> {
        self.mq.queue(&Self::sub_queue_name(service)?).await
    }

    /// Publish a typed event. With the `otel` feature its `traceparent` is
    /// the current span's trace context, if it has one.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Published> {
        self.publish_fields(E::TYPE, event, &Head::new()).await
    }

    /// Publish an event with its envelope (source, correlation, ...) set by
    /// the caller. Publishing the same envelope twice delivers two copies
    /// with the same `event_id`, which consumers can drop. An event field
    /// named like an envelope field (see [`RESERVED`]) is refused, as
    /// [`Envelope::from_parts`] refuses it. With the `otel` feature, an
    /// envelope without a `traceparent` gets the current span's.
    pub async fn publish_envelope(&self, env: &Envelope) -> Result<Published> {
        let head = Head {
            event_id: env.event_id.clone(),
            timestamp: env.timestamp,
            source: env.source.as_deref(),
            correlation_id: env.correlation_id.as_deref(),
            causation_id: env.causation_id.as_deref(),
            traceparent: env.traceparent.clone().or_else(trace::current_traceparent),
        };
        self.publish_fields(&env.event_type, &env.data, &head).await
    }

    /// Publish an event from outside any handler on behalf of `service`:
    /// `source` is `service`, and the event starts its own correlation and
    /// trace (handlers publish through [`crate::service::Context`] instead);
    /// with the `otel` feature, the current span's trace if there is one.
    pub async fn publish_as<E: Event>(&self, service: &str, event: &E) -> Result<Published> {
        let mut head = Head::new();
        let id = head.event_id.clone();
        head.source = Some(service);
        head.correlation_id = Some(&id);
        if head.traceparent.is_none() {
            head.traceparent = Some(envelope::new_traceparent(None));
        }
        self.publish_fields(E::TYPE, event, &head).await
    }

    /// Publish a follow-up of `cause` from `service`'s handler: `source` is
    /// the service, `causation_id` the cause, `correlation_id` the cause's
    /// (or its id if it had none), and `traceparent` continues its trace
    /// (with `otel`, from the handler's span, which the cause's parents).
    pub(crate) async fn publish_caused<E: Event>(
        &self,
        service: &str,
        cause: &Envelope,
        event: &E,
    ) -> Result<Published> {
        let mut head = Head::new();
        head.source = Some(service);
        head.causation_id = Some(&cause.event_id);
        head.correlation_id = Some(cause.correlation_id.as_deref().unwrap_or(&cause.event_id));
        if head.traceparent.is_none() {
            head.traceparent = Some(envelope::new_traceparent(cause.traceparent.as_deref()));
        }
        self.publish_fields(E::TYPE, event, &head).await
    }

    /// Publish the event `data` (any value that serializes as a JSON
    /// object: a typed event, or an envelope's `Map`) of type `event_type`.
    async fn publish_fields<D: serde::Serialize + ?Sized>(
        &self,
        event_type: &str,
        data: &D,
        head: &Head<'_>,
    ) -> Result<Published> {
        let entry = self.encode(event_type, data, head)?;
        self.fan_out(event_type, head.event_id.clone(), entry).await
    }

    async fn fan_out(&self, event_type: &str, event_id: String, data: Bytes) -> Result<Published> {
        let delivered_to = self.publish_or_log(event_type, data).await?;
        self.published.add(event_type, delivered_to.len());
        if let Some(keep) = self.log.claim() {
            let bus = self.clone();
            tokio::spawn(async move {
                if let Err(e) = bus.trim_log(keep).await {
                    tracing::warn!(error = %e, "trimming the bus's `all` log failed; the next publish tries again");
                }
            });
        }
        Ok(Published {
            event_id,
            delivered_to,
        })
    }

    /// One server: one script appends to every subscription queue and the
    /// log. A cluster: one append to the log, which the relays fan out.
    /// Returns the subscribers.
    async fn publish_or_log(&self, event_type: &str, data: Bytes) -> Result<Vec<String>> {
        let publish = Publish::new(
            vec![self.routes_key(event_type), self.all_routes_key()],
            format!("{}sub:", self.mq.prefix()),
            data,
        )
        .log(format!("{}{ALL_LOG}", self.mq.prefix()));
        self.batcher.publish(self.mq.engine(), publish).await
    }

    /// The entry of an event, the seed's flat JSON: `event_id`,
    /// `event_type` and `timestamp` first, the event's fields as they
    /// serialize, the envelope's extras that are set, then the queue's
    /// `_metadata`, whose id is the event's. The event is serialized once,
    /// straight into the entry, by the queue's encoder.
    fn encode<D: serde::Serialize + ?Sized>(
        &self,
        event_type: &str,
        data: &D,
        head: &Head<'_>,
    ) -> Result<Bytes> {
        use crate::queue::wire::{Beside, Field};
        validate_name(event_type).map_err(|_| envelope::invalid_type(event_type))?;
        let lead = [
            ("event_id", Field::Text(&head.event_id)),
            ("event_type", Field::Text(event_type)),
            ("timestamp", Field::Number(head.timestamp)),
        ];
        let extras = [
            ("source", head.source),
            ("correlation_id", head.correlation_id),
            ("causation_id", head.causation_id),
            ("traceparent", head.traceparent.as_deref()),
        ];
        let mut tail = [("", Field::Number(0.0)); 4];
        let mut set = 0;
        for (name, value) in extras {
            if let Some(value) = value {
                tail[set] = (name, Field::Text(value));
                set += 1;
            }
        }
        let beside = Beside {
            lead: &lead,
            tail: &tail[..set],
            reserved: &RESERVED,
            reserved_by: "the event envelope",
        };
        let opts = crate::SendOptions::new().message_id(head.event_id.clone());
        self.mq
            .encode_beside(data, &opts, head.timestamp, &beside)
            .map_err(|e| match e.kind() {
                ErrorKind::NotAnObject => Error::new(
                    ErrorKind::NotAnObject,
                    format!("event {event_type} must serialize to a JSON object: {e}"),
                ),
                _ => e,
            })
    }

    /// Remove events older than `keep` from the `all` log (it is a replay
    /// log, read by nobody's group, so queue retention never trims it).
    /// Returns how many were removed.
    ///
    /// On a Redis Cluster the log is what the relays read, so it is trimmed
    /// like a queue's history: an event no relay has acknowledged yet stays,
    /// however old.
    pub async fn trim_log(&self, keep: Duration) -> Result<u64> {
        if let Some(cluster) = &self.cluster {
            return self
                .mq
                .engine()
                .trim(&cluster.keys, crate::engine::Retention::age(keep))
                .await;
        }
        let now = self.mq.engine().now_ms().await?;
        let before = now.saturating_sub(keep.as_millis() as u64);
        self.mq
            .engine()
            .trim_log(&format!("{}{ALL_LOG}", self.mq.prefix()), before)
            .await
    }

    /// Waits until every event published so far (by any process) has been
    /// fanned out to its subscription queues, or `timeout` passes.
    ///
    /// On one server a publish is its fan-out, so this returns at once. On a
    /// Redis Cluster the relays fan the log out a moment after `publish`
    /// returns (see the module docs): this is for a caller that must see
    /// the copies in place, such as a test or a tool that publishes and then
    /// reads a subscription queue. A publish is durable without it.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Timeout`] with the number of events still waiting, or
    /// the engine's error.
    pub async fn relayed(&self, timeout: Duration) -> Result<()> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let info = self.mq.engine().info(&cluster.keys).await?;
            if info.lag == 0 && info.pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "after {timeout:?}, {} event(s) of the bus's log are not relayed yet and {} are being relayed: is a bus running (every Bus relays)?",
                        info.lag, info.pending
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Events from the `all` log published at or after `since`, oldest
    /// first, at most `count`. A new service can catch up with this.
    pub async fn replay(&self, since: SystemTime, count: usize) -> Result<Vec<Envelope>> {
        let ms = since
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis() as u64;
        let log = self.mq.queue(ALL_LOG).await?;
        log.peek_from(EntryId::new(ms, 0), count)
            .await?
            .iter()
            .map(Envelope::from_message)
            .collect()
    }
}
