//! Prometheus metrics: message counters, handler duration histograms and
//! per-queue gauges, in the Prometheus text format.
//!
//! A [`Metrics`] is a list of things to read at scrape time: services
//! ([`crate::service::ServiceBuilder::metrics`]), consumer loops
//! ([`Metrics::consumer`]), buses ([`Metrics::bus`]) and queues whose
//! gauges are read from the engine ([`Metrics::queue`], or every queue of
//! an [`Eddy`] with [`Metrics::all_queues`]). Nothing is recorded on the
//! message path for it: the counters are the ones the consumer loop and
//! the service runtime keep anyway ([`ConsumerStats`], the service
//! [`Snapshot`](crate::service::Snapshot)), read when Prometheus asks. The
//! library installs no global recorder and opens no port unless told to
//! ([`Metrics::serve`], or [`crate::service::ServiceBuilder::metrics_listen`]).
//!
//! The encoding is the Prometheus project's own client,
//! `prometheus-client`, which keeps no global state; an application with
//! its own `prometheus_client::registry::Registry` registers the counters
//! with `registry.register_collector(Box::new(metrics.clone()))` (the
//! gauges need a round trip to the engine, so only [`Metrics::render`]
//! includes them).
//!
//! # Names
//!
//! Prometheus conventions (`eddy_` prefix, base units, `_total` on
//! counters); the labels follow the OpenTelemetry messaging conventions'
//! attributes: `queue` is `messaging.destination.name`, `consumer_group`
//! is `messaging.consumer.group.name`, `event_type` is the event's type.
//!
//! | metric | type | labels | OpenTelemetry counterpart |
//! |---|---|---|---|
//! | `eddy_messages_received_total` | counter | queue, consumer_group | `messaging.client.consumed.messages` |
//! | `eddy_messages_redelivered_total` | counter | queue, consumer_group | |
//! | `eddy_messages_acknowledged_total` | counter | queue, consumer_group | |
//! | `eddy_messages_retried_total` | counter | queue, consumer_group | |
//! | `eddy_messages_dead_lettered_total` | counter | queue, consumer_group, reason (`rejected`, `max_deliveries`) | |
//! | `eddy_messages_trimmed_total` | counter | queue, consumer_group | |
//! | `eddy_handler_panics_total`, `eddy_handler_timeouts_total` | counter | queue, consumer_group | |
//! | `eddy_consumer_errors_total` | counter | queue, consumer_group | |
//! | `eddy_messages_expired_total` | counter | queue | |
//! | `eddy_events_published_total` | counter | event_type | `messaging.client.sent.messages` |
//! | `eddy_events_fanned_out_total` | counter | event_type | |
//! | `eddy_events_handled_total` | counter | service, event_type, outcome (`handled`, `failed`, `rejected`) | |
//! | `eddy_events_skipped_total` | counter | service, reason (`unknown_type`, `malformed`, `duplicate`) | |
//! | `eddy_handler_duration_seconds` | histogram | service, event_type | `messaging.process.duration` |
//! | `eddy_queue_ready_messages` | gauge | queue | |
//! | `eddy_queue_unacknowledged_messages` | gauge | queue | |
//! | `eddy_queue_dead_letter_messages` | gauge | queue | |
//! | `eddy_queue_delayed_messages` | gauge | queue | |
//! | `eddy_queue_oldest_pending_age_seconds` | gauge | queue | |
//! | `eddy_queue_consumers` | gauge | queue | |
//! | `eddy_queue_ready_estimated` | gauge (0/1) | queue | |
//!
//! The counters are this process's since it started (Prometheus's `rate()`
//! handles restarts); the gauges are the queue's state in the engine,
//! whoever consumes it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eddy::Result<()> {
//! let mq = eddy::Eddy::open("memory://").await?;
//! let (orders, _) = mq.create_queue_pair("orders").await?;
//! orders.send(&serde_json::json!({"id": 1})).await?;
//!
//! let metrics = eddy::metrics::Metrics::new();
//! metrics.all_queues(&mq);
//! let text = metrics.render().await?;
//! assert!(text.contains(r#"eddy_queue_ready_messages{queue="orders"} 1"#));
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bus::{Bus, PublishCounts};
use crate::engine::{Engine, SharedEngine};
use crate::error::{Error, ErrorKind, Result};
use crate::queue::consumer::ConsumerStats;
use crate::queue::{Eddy, Queue};
use crate::service::{Histogram, ServiceMetrics};

/// The `Content-Type` of [`Metrics::render`]'s text (Prometheus text
/// format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads. Cheap to clone; clones share the list.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    inner: Arc<Mutex<Sources>>,
}

#[derive(Debug, Default)]
struct Sources {
    consumers: Vec<ConsumerSource>,
    services: Vec<ServiceSource>,
    buses: Vec<Weak<PublishCounts>>,
    engines: Vec<Weak<dyn Engine>>,
    queues: Vec<Queue>,
    all: Vec<Eddy>,
}

#[derive(Debug)]
struct ConsumerSource {
    queue: String,
    stream: String,
    group: String,
    stats: Weak<ConsumerStats>,
}

#[derive(Debug)]
struct ServiceSource {
    name: String,
    metrics: Weak<ServiceMetrics>,
}

impl Metrics {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, Sources> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Count a consumer loop's messages (the stats given to
    /// [`crate::queue::consumer::run_with_stats`]) under its queue and
    /// consumer group. Forgotten once the stats are dropped.
    pub fn consumer(&self, queue: &Queue, group: &str, stats: &Arc<ConsumerStats>) {
        let mut s = self.sources();
        s.consumers.push(ConsumerSource {
            queue: queue.name().to_owned(),
            stream: queue.keys().stream.clone(),
            group: group.to_owned(),
            stats: Arc::downgrade(stats),
        });
        add_engine(&mut s.engines, queue.eddy().engine());
    }

    pub(crate) fn service(&self, name: &str, metrics: &Arc<ServiceMetrics>) {
        self.sources().services.push(ServiceSource {
            name: name.to_owned(),
            metrics: Arc::downgrade(metrics),
        });
    }

    /// Count the events published through `bus` and its clones.
    pub fn bus(&self, bus: &Bus) {
        let counts = Arc::downgrade(bus.publish_counts());
        let mut s = self.sources();
        if !s.buses.iter().any(|b| Weak::ptr_eq(b, &counts)) {
            s.buses.push(counts);
        }
        add_engine(&mut s.engines, bus.queues().engine());
    }

    /// Read this queue's gauges (and its DLQ's depth) at each scrape: one
    /// pipelined round trip per scrape on Redis.
    pub fn queue(&self, queue: &Queue) {
        let mut s = self.sources();
        if !s.queues.iter().any(|q| q.keys() == queue.keys()) {
            s.queues.push(queue.clone());
        }
        add_engine(&mut s.engines, queue.eddy().engine());
    }

    /// Read the gauges of every queue of `mq` at each scrape (a listing:
    /// pipelined on Redis, about 40 ms for 1,000 queues on one core).
    pub fn all_queues(&self, mq: &Eddy) {
        let mut s = self.sources();
        if !s.all.iter().any(|m| m.same_queues(mq)) {
            s.all.push(mq.clone());
        }
        add_engine(&mut s.engines, mq.engine());
    }

    /// Everything, as Prometheus text: the counters, then the gauges read
    /// from the engine now. A queue that cannot be read is left out (and
    /// logged); an engine that cannot list its queues is an error.
    pub async fn render(&self) -> Result<String> {
        let (queues, all) = {
            let s = self.sources();
            (s.queues.clone(), s.all.clone())
        };
        let mut gauges = Vec::new();
        for mq in &all {
            gauges.extend(listed_gauges(mq).await?);
        }
        for q in &queues {
            if gauges.iter().any(|g: &QueueGauges| g.queue == q.name()) {
                continue;
            }
            match queue_gauges(q).await {
                Ok(g) => gauges.push(g),
                Err(e) => {
                    tracing::warn!(queue = %q.name(), error = %e, "metrics: queue gauges not read")
                }
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        registry.register_collector(Box::new(Gauges(gauges)));
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &registry)
            .map_err(|_| Error::new(ErrorKind::Backend, "metrics: encoding failed"))?;
        Ok(out)
    }

    /// Serve [`Metrics::render`] at `GET /metrics` on `addr` until the
    /// returned server is stopped or dropped. Port 0 picks a free port
    /// ([`MetricsServer::addr`] tells which).
    pub async fn serve(&self, addr: SocketAddr) -> Result<MetricsServer> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("metrics: cannot listen on {addr}: {e}; choose another address or port"),
            )
        })?;
        let addr = listener.local_addr().map_err(|e| {
            Error::new(
                ErrorKind::Backend,
                format!("metrics: listener address: {e}"),
            )
        })?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, self.clone(), stopped));
        Ok(MetricsServer {
            addr,
            stop,
            task: Some(task),
        })
    }
}

fn add_engine(engines: &mut Vec<Weak<dyn Engine>>, engine: &SharedEngine) {
    let w = Arc::downgrade(engine);
    engines.retain(|e| e.strong_count() > 0);
    if !engines.iter().any(|e| Weak::ptr_eq(e, &w)) {
        engines.push(w);
    }
}

/// A `/metrics` endpoint started by [`Metrics::serve`]. Dropping it stops
/// it too.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop listening and wait for the accept loop to end (a scrape in
    /// progress finishes on its own).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped.changed() => return,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(metrics.clone(), req));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10));
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics: connection ended");
            }
        });
    }
}

type Body = http_body_util::Full<Bytes>;

async fn answer(
    metrics: Metrics,
    req: hyper::Request<hyper::body::Incoming>,
) -> std::result::Result<hyper::Response<Body>, std::convert::Infallible> {
    let reply = |status: u16, content_type: &str, body: String| {
        let mut resp = hyper::Response::new(Body::new(Bytes::from(body)));
        *resp.status_mut() =
            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
            resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        resp
    };
    if req.uri().path() != "/metrics" {
        return Ok(reply(
            404,
            "text/plain",
            "not found: metrics are at /metrics\n".into(),
        ));
    }
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return Ok(reply(405, "text/plain", "use GET /metrics\n".into()));
    }
    Ok(match metrics.render().await {
        Ok(text) => reply(200, CONTENT_TYPE, text),
        Err(e) => reply(503, "text/plain", format!("metrics unavailable: {e}\n")),
    })
}

/// One queue's gauges, read from the engine.
#[derive(Debug, Clone)]
struct QueueGauges {
    queue: String,
    ready: u64,
    ready_estimated: bool,
    unacknowledged: u64,
    dead_letter: u64,
    delayed: u64,
    oldest_pending_age_ms: u64,
    consumers: u64,
}

async fn queue_gauges(q: &Queue) -> Result<QueueGauges> {
    let engine = q.eddy().engine();
    let mut infos = engine
        .info_many(&[q.keys().clone(), q.dlq_keys().clone()])
        .await;
    let dlq = infos
        .pop()
        .unwrap_or_else(|| Err(Error::new(ErrorKind::Backend, "no reply")))?;
    let main = infos
        .pop()
        .unwrap_or_else(|| Err(Error::new(ErrorKind::Backend, "no reply")))?;
    Ok(QueueGauges {
        queue: q.name().to_owned(),
        ready: main.lag,
        ready_estimated: main.lag_estimated,
        unacknowledged: main.pending,
        dead_letter: dlq.length,
        delayed: main.delayed,
        oldest_pending_age_ms: main.oldest_pending_age_ms.unwrap_or(0),
        consumers: main.consumers.len() as u64,
    })
}

async fn listed_gauges(mq: &Eddy) -> Result<Vec<QueueGauges>> {
    let listed = mq.list_queues().await?;
    let dlq_depth: foldhash::HashMap<&str, u64> = listed
        .iter()
        .filter(|i| i.is_dlq && i.error.is_none())
        .map(|i| (i.name.as_str(), i.length))
        .collect();
    let mut out = Vec::new();
    for i in listed.iter().filter(|i| !i.is_dlq) {
        if let Some(e) = &i.error {
            tracing::warn!(queue = %i.name, error = %e, "metrics: queue gauges not read");
            continue;
        }
        let dlq_name = format!("{}:dlq", i.name);
        out.push(QueueGauges {
            queue: i.name.clone(),
            ready: i.lag,
            ready_estimated: i.lag_estimated,
            unacknowledged: i.pending,
            dead_letter: dlq_depth.get(dlq_name.as_str()).copied().unwrap_or(0),
            delayed: i.delayed,
            oldest_pending_age_ms: i.oldest_pending_age_ms.unwrap_or(0),
            consumers: i.consumers.len() as u64,
        });
    }
    Ok(out)
}

/// The gauges of one scrape.
#[derive(Debug)]
struct Gauges(Vec<QueueGauges>);

impl Collector for Gauges {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        type Field = fn(&QueueGauges) -> f64;
        let families: [(&str, &str, Field); 7] = [
            ("eddy_queue_ready_messages", "Messages not yet delivered (the lag).", |g| g.ready as f64),
            ("eddy_queue_ready_estimated", "1 where the ready count is an estimate (Redis stopped counting the lag after a deletion and more than 100 wait).", |g| u8::from(g.ready_estimated) as f64),
            ("eddy_queue_unacknowledged_messages", "Messages delivered and not yet acknowledged.", |g| g.unacknowledged as f64),
            ("eddy_queue_dead_letter_messages", "Messages in the queue's dead-letter queue.", |g| g.dead_letter as f64),
            ("eddy_queue_delayed_messages", "Messages waiting for their delivery time.", |g| g.delayed as f64),
            ("eddy_queue_oldest_pending_age_seconds", "Age of the oldest unacknowledged message since it was sent (0 if none).", |g| g.oldest_pending_age_ms as f64 / 1000.0),
            ("eddy_queue_consumers", "Consumers in the queue's group.", |g| g.consumers as f64),
        ];
        for (name, help, field) in families {
            if self.0.is_empty() {
                break;
            }
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for g in &self.0 {
                let labels = [("queue", g.queue.as_str())];
                ConstGauge::new(field(g)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Encode one counter family: `rows` of (labels, value).
fn counters<const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[([(&str, &str); N], u64)],
) -> std::fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn histogram(
    family: &mut MetricEncoder,
    h: &Histogram,
    labels: &[(&str, &str); 2],
) -> std::fmt::Result {
    let bounds = Histogram::bounds_us();
    let buckets: Vec<(f64, u64)> = bounds
        .iter()
        .zip(h.counts.iter())
        .map(|(b, c)| {
            let upper = if *b == u64::MAX {
                f64::INFINITY
            } else {
                *b as f64 / 1e6
            };
            (upper, *c)
        })
        .collect();
    family
        .encode_family(labels)?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum_us as f64 / 1e6,
            h.count,
            &buckets,
            None,
        )
}

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let (consumers, services, buses, engines, names) = {
            let mut s = self.sources();
            let names: Vec<(String, String)> = s
                .consumers
                .iter()
                .map(|c| (c.stream.clone(), c.queue.clone()))
                .chain(
                    s.queues
                        .iter()
                        .map(|q| (q.keys().stream.clone(), q.name().to_owned())),
                )
                .collect();
            s.consumers.retain(|c| c.stats.strong_count() > 0);
            s.services.retain(|c| c.metrics.strong_count() > 0);
            s.buses.retain(|b| b.strong_count() > 0);
            s.engines.retain(|e| e.strong_count() > 0);
            let consumers: Vec<(String, String, Arc<ConsumerStats>)> = s
                .consumers
                .iter()
                .filter_map(|c| Some((c.queue.clone(), c.group.clone(), c.stats.upgrade()?)))
                .collect();
            let services: Vec<(String, crate::service::Snapshot)> = s
                .services
                .iter()
                .filter_map(|c| Some((c.name.clone(), c.metrics.upgrade()?.snapshot())))
                .collect();
            let buses: Vec<Arc<PublishCounts>> = s.buses.iter().filter_map(Weak::upgrade).collect();
            let engines: Vec<Arc<dyn Engine>> =
                s.engines.iter().filter_map(Weak::upgrade).collect();
            (consumers, services, buses, engines, names)
        };

        // Consumer loops: one row per (queue, group), summed over the loops
        // that share them.
        type Read = fn(&ConsumerStats) -> u64;
        let consumer_families: [(&str, &str, Read); 8] = [
            (
                "eddy_messages_received",
                "Messages handed to a handler (deliveries, redeliveries included).",
                |s| ConsumerStats::get(&s.delivered),
            ),
            (
                "eddy_messages_redelivered",
                "Deliveries of messages delivered before.",
                |s| ConsumerStats::get(&s.redelivered),
            ),
            (
                "eddy_messages_acknowledged",
                "Messages acknowledged.",
                |s| ConsumerStats::get(&s.acked),
            ),
            (
                "eddy_messages_retried",
                "Messages handed back for a later retry.",
                |s| ConsumerStats::get(&s.retried),
            ),
            (
                "eddy_messages_trimmed",
                "Acknowledged entries trimmed from the queue's history.",
                |s| ConsumerStats::get(&s.trimmed),
            ),
            ("eddy_handler_panics", "Handlers that panicked.", |s| {
                ConsumerStats::get(&s.panics)
            }),
            (
                "eddy_handler_timeouts",
                "Handlers that ran past their timeout.",
                |s| ConsumerStats::get(&s.timeouts),
            ),
            (
                "eddy_consumer_errors",
                "Engine errors the consumer loop backed off from.",
                |s| ConsumerStats::get(&s.errors),
            ),
        ];
        let mut summed: Vec<(&str, &str, [u64; 10])> = Vec::new();
        for (q, g, stats) in &consumers {
            let mut v = [0u64; 10];
            for (i, (_, _, read)) in consumer_families.iter().enumerate() {
                v[i] = read(stats);
            }
            let rejected = ConsumerStats::get(&stats.rejected);
            v[8] = rejected;
            v[9] = ConsumerStats::get(&stats.dead_lettered).saturating_sub(rejected);
            match summed.iter_mut().find(|(sq, sg, _)| sq == q && sg == g) {
                Some((_, _, acc)) => acc.iter_mut().zip(v).for_each(|(a, b)| *a += b),
                None => summed.push((q.as_str(), g.as_str(), v)),
            }
        }
        for (i, (name, help, _)) in consumer_families.iter().enumerate() {
            let rows: Vec<_> = summed
                .iter()
                .map(|(q, g, v)| ([("queue", *q), ("consumer_group", *g)], v[i]))
                .collect();
            counters(&mut enc, name, help, &rows)?;
        }
        let mut rows = Vec::new();
        for (q, g, v) in &summed {
            rows.push((
                [
                    ("queue", *q),
                    ("consumer_group", *g),
                    ("reason", "rejected"),
                ],
                v[8],
            ));
            rows.push((
                [
                    ("queue", *q),
                    ("consumer_group", *g),
                    ("reason", "max_deliveries"),
                ],
                v[9],
            ));
        }
        counters(
            &mut enc,
            "eddy_messages_dead_lettered",
            "Messages moved to the dead-letter queue, by reason: the handler rejected them, or they ran out of deliveries.",
            &rows,
        )?;

        // Expired entries, by queue name where a consumer or a gauge here
        // names the stream's queue, else by the stream key.
        let mut expired: Vec<(String, u64)> = Vec::new();
        for e in &engines {
            for (stream, n) in e.expired_counts() {
                let name = names
                    .iter()
                    .find(|(s, _)| *s == stream)
                    .map(|(_, q)| q.clone())
                    .unwrap_or(stream);
                match expired.iter_mut().find(|(q, _)| *q == name) {
                    Some((_, c)) => *c += n,
                    None => expired.push((name, n)),
                }
            }
        }
        expired.sort();
        let rows: Vec<_> = expired
            .iter()
            .map(|(q, n)| ([("queue", q.as_str())], *n))
            .collect();
        counters(
            &mut enc,
            "eddy_messages_expired",
            "Messages removed by this process because their time to live had passed.",
            &rows,
        )?;

        // The bus.
        let mut published: Vec<(String, u64, u64)> = Vec::new();
        for b in &buses {
            for (t, p, d) in b.snapshot() {
                match published.iter_mut().find(|(pt, _, _)| *pt == t) {
                    Some((_, pp, pd)) => {
                        *pp += p;
                        *pd += d;
                    }
                    None => published.push((t, p, d)),
                }
            }
        }
        published.sort();
        let rows: Vec<_> = published
            .iter()
            .map(|(t, p, _)| ([("event_type", t.as_str())], *p))
            .collect();
        counters(
            &mut enc,
            "eddy_events_published",
            "Events published on the bus.",
            &rows,
        )?;
        let rows: Vec<_> = published
            .iter()
            .map(|(t, _, d)| ([("event_type", t.as_str())], *d))
            .collect();
        counters(
            &mut enc,
            "eddy_events_fanned_out",
            "Copies of published events appended to subscription queues.",
            &rows,
        )?;

        // Services.
        let mut rows = Vec::new();
        for (svc, snap) in &services {
            for (t, m) in &snap.by_type {
                rows.push((
                    [
                        ("service", svc.as_str()),
                        ("event_type", t.as_str()),
                        ("outcome", "handled"),
                    ],
                    m.handled,
                ));
                rows.push((
                    [
                        ("service", svc.as_str()),
                        ("event_type", t.as_str()),
                        ("outcome", "failed"),
                    ],
                    m.failed,
                ));
                rows.push((
                    [
                        ("service", svc.as_str()),
                        ("event_type", t.as_str()),
                        ("outcome", "rejected"),
                    ],
                    m.rejected,
                ));
            }
        }
        counters(
            &mut enc,
            "eddy_events_handled",
            "Events a service's handlers finished, by outcome: handled (acknowledged), failed (retried later), rejected (dead-lettered).",
            &rows,
        )?;
        let mut rows = Vec::new();
        for (svc, snap) in &services {
            rows.push((
                [("service", svc.as_str()), ("reason", "unknown_type")],
                snap.unknown,
            ));
            rows.push((
                [("service", svc.as_str()), ("reason", "malformed")],
                snap.malformed,
            ));
            rows.push((
                [("service", svc.as_str()), ("reason", "duplicate")],
                snap.duplicates,
            ));
        }
        counters(
            &mut enc,
            "eddy_events_skipped",
            "Messages a service did not hand to a handler: no handler for the type (acknowledged), not an event (dead-lettered), a duplicate of one handled (acknowledged).",
            &rows,
        )?;
        if services.iter().any(|(_, s)| !s.by_type.is_empty()) {
            let mut family = enc.encode_descriptor(
                "eddy_handler_duration_seconds",
                "How long a service's handler ran per event.",
                None,
                MetricType::Histogram,
            )?;
            for (svc, snap) in &services {
                for (t, m) in &snap.by_type {
                    histogram(
                        &mut family,
                        &m.latency,
                        &[("service", svc.as_str()), ("event_type", t.as_str())],
                    )?;
                }
            }
        }
        Ok(())
    }
}
