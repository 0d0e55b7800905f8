//! What the runtime cases (consumer loop, bus, service, webhook, faults)
//! share, and what `tests/faults.rs` uses for the rows that need a real
//! process or a network fault: bounded polls, a consumer loop in a task that
//! records what it handled, the events the bus cases publish.
//!
//! Waits are bounded polls of a condition; under paused time (see
//! [`Harness::pause_time`](super::Harness::pause_time)) their sleeps take no
//! wall time.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eddy::bus::Bus;
use eddy::engine::Append;
use eddy::queue::consumer::{self, ConsumerOptions, ConsumerStats};
use eddy::service::RunningService;
use eddy::Fail;
use eddy::{Eddy, ErrorKind, Message, Queue};
use serde_json::Value;

use super::Harness;

/// Poll the async `check` every 20 ms until it holds or `limit` passes;
/// whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

/// Poll `check` every 20 ms until it holds; panic after `limit` with `what`
/// and the last state `check` reported.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let end = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {limit:?} waiting until {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until the queue has nothing pending, undelivered or delayed.
pub async fn wait_drained(q: &Queue, limit: Duration) {
    wait_until(limit, &format!("`{}` is drained", q.name()), || async {
        let info = q.info().await.map_err(|e| e.to_string())?;
        if info.pending == 0 && info.lag == 0 && info.delayed == 0 {
            Ok(())
        } else {
            Err(format!(
                "pending {} lag {} delayed {}",
                info.pending, info.lag, info.delayed
            ))
        }
    })
    .await;
}

/// One handler run seen by an in-process consumer.
#[derive(Debug, Clone)]
pub struct Run {
    /// The message's `n` field (-1 without one).
    pub n: i64,
    /// Its delivery count.
    pub dc: u64,
    /// Its message id.
    pub message_id: String,
}

/// The handler runs of a consumer, in the order they were recorded.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Run>>>);

impl Log {
    /// Record a run of `m`.
    pub fn record(&self, m: &Message) {
        let n = m.data.get("n").and_then(Value::as_i64).unwrap_or(-1);
        self.lock().push(Run {
            n,
            dc: m.delivery_count,
            message_id: m.message_id.clone(),
        });
    }

    /// Every run so far.
    pub fn all(&self) -> Vec<Run> {
        self.lock().clone()
    }

    /// The `n`s handled at least once.
    pub fn ns(&self) -> BTreeSet<i64> {
        self.all().iter().map(|d| d.n).collect()
    }

    /// The delivery counts of the runs of `n`.
    pub fn runs_of(&self, n: i64) -> Vec<u64> {
        self.all()
            .iter()
            .filter(|d| d.n == n)
            .map(|d| d.dc)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Run>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An in-process consumer loop running in a task until [`Loop::stop`].
#[derive(Debug)]
pub struct Loop {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<eddy::Result<()>>,
    stats: Arc<ConsumerStats>,
}

impl Loop {
    /// Run `handler` on `q` in a task of its own.
    pub fn spawn<H, Fut>(q: Queue, opts: ConsumerOptions, handler: H) -> Self
    where
        H: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Fail>> + Send + 'static,
    {
        let (stop, mut rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(ConsumerStats::default());
        let shutdown = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let task = tokio::spawn(consumer::run_with_stats(
            q,
            opts,
            handler,
            shutdown,
            stats.clone(),
        ));
        Self { stop, task, stats }
    }

    /// A loop that records every delivery in `log` and acknowledges it.
    pub fn acking(q: Queue, opts: ConsumerOptions, log: &Log) -> Self {
        let log = log.clone();
        Self::spawn(q, opts, move |m| {
            log.record(&m);
            async { Ok(()) }
        })
    }

    /// The loop's errors so far (engine calls that failed).
    pub fn errors(&self) -> u64 {
        self.stats.errors.load(Ordering::SeqCst)
    }

    /// Stop the loop and wait for it (at most 15 s: panics past that, or if
    /// the loop's task panicked); the loop's own result and its counters.
    pub async fn stop(self) -> eddy::Result<Arc<ConsumerStats>> {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .unwrap_or_else(|_| panic!("the consumer loop did not stop within 15 s"))
            .unwrap_or_else(|e| panic!("the consumer loop's task failed: {e}"))?;
        Ok(self.stats)
    }
}

/// Stop a service, panicking if it takes more than 15 s.
pub async fn stop_service(svc: RunningService) -> eddy::Result<()> {
    tokio::time::timeout(Duration::from_secs(15), svc.stop())
        .await
        .unwrap_or_else(|_| panic!("the service did not stop within 15 s"))?;
    Ok(())
}

/// A counter's value.
pub fn stat(c: &AtomicU64) -> u64 {
    c.load(Ordering::SeqCst)
}

/// The error kind of a result, if it failed.
pub fn kinds(r: &eddy::Result<impl std::fmt::Debug>) -> Option<ErrorKind> {
    r.as_ref().err().map(eddy::Error::kind)
}

/// Write an entry's `data` as raw bytes, bypassing eddy's encoder (as a
/// foreign or broken producer would).
pub async fn append_raw(mq: &Eddy, q: &Queue, data: &[u8]) -> eddy::Result<()> {
    mq.engine()
        .append(&[Append::new(q.keys().clone(), Bytes::copy_from_slice(data))])
        .await?;
    Ok(())
}

/// The bus prefix of the case that owns `mq`: the default `events:` under
/// the case's prefix, so that cases sharing one server (a cluster, see
/// [`run_all`](super::run_all)) never share routes.
pub fn bus_prefix(mq: &Eddy) -> String {
    format!("{}{}", mq.prefix(), eddy::bus::DEFAULT_PREFIX)
}

/// A bus on the same engine as `mq` (the only way to share the embedded
/// one), under [`bus_prefix`].
pub async fn shared_bus(mq: &Eddy) -> eddy::Result<Bus> {
    Bus::new(
        eddy::EddyBuilder::new("")
            .prefix(bus_prefix(mq))
            .with_engine(mq.engine().clone())?,
    )
    .await
}

/// A second bus handle as another process would have one: its own
/// connection where the engine is shared between processes; the same engine
/// otherwise.
pub async fn other_process_bus(h: &Harness, mq: &Eddy) -> eddy::Result<Bus> {
    if h.capabilities().shared_between_processes {
        Bus::new(h.builder().prefix(bus_prefix(mq)).open().await?).await
    } else {
        shared_bus(mq).await
    }
}

/// The event most bus cases publish.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderCreatedEvent {
    /// The order.
    pub order_id: String,
    /// Its total.
    pub total: f64,
}
eddy::event!(OrderCreatedEvent);

/// A second event type, for routing by type.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PaymentProcessedEvent {
    /// The order paid for.
    pub order_id: String,
    /// How the payment went.
    pub status: String,
}
eddy::event!(PaymentProcessedEvent);

/// An order `id` of 10.0.
pub fn order(id: &str) -> OrderCreatedEvent {
    OrderCreatedEvent {
        order_id: id.into(),
        total: 10.0,
    }
}
