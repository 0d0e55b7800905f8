//! The `queue` and `latency` scenarios: producers → one queue → consumers,
//! with `receive` + `ack` and with the consumer loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy::queue::consumer::{self, ConsumerOptions, ConsumerStats};
use eddy::{Eddy, EntryId, Queue, Receive};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::measure::{self, CpuMeter, Histogram, Payload, Phase};
use super::raw::{self, RawSpec};
use super::{Env, RunResult, Spec};
use crate::error::{CliError, CliResult};

/// How long a read waits for the first message.
const POLL: Duration = Duration::from_millis(100);

/// How consumers take messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Consume {
    /// `receive` COUNT batch, then one `ack` for the batch.
    ReceiveAck,
    /// `eddy::queue::consumer::run` with concurrency batch.
    ConsumerLoop,
    /// `receive_as` into the payload's struct (no JSON `Map`), then one
    /// `ack` for the batch.
    ReceiveAsAck,
}

/// `eddy bench queue`.
pub async fn throughput(env: &Env, spec: &Spec, raw: bool) -> CliResult<RunResult> {
    let mut out = RunResult::default();
    if raw {
        let phase = raw_phase(env, spec, None).await?;
        out.phases
            .push(("raw_", "raw loop (redis crate)".into(), phase));
    }
    let phase = eddy_phase(env, spec, Consume::ReceiveAck, None).await?;
    out.phases.push(("", "eddy receive + ack".into(), phase));
    let phase = eddy_phase(env, spec, Consume::ConsumerLoop, None).await?;
    out.phases
        .push(("loop_", "eddy consumer loop".into(), phase));
    let phase = eddy_phase(env, spec, Consume::ReceiveAsAck, None).await?;
    out.phases
        .push(("typed_", "eddy receive_as + ack".into(), phase));
    // Put the primary phase first, as the JSON reads.
    out.phases.sort_by_key(|(k, _, _)| order(k));
    Ok(out)
}

/// `eddy bench latency`.
pub async fn latency(env: &Env, spec: &Spec, raw: bool) -> CliResult<RunResult> {
    let mut out = RunResult::default();
    let rate = Some(spec.rate);
    if raw {
        let phase = raw_phase(env, spec, rate).await?;
        out.phases
            .push(("raw_", "raw loop (redis crate)".into(), phase));
    }
    let phase = eddy_phase(env, spec, Consume::ReceiveAck, rate).await?;
    out.phases.push(("", "eddy receive + ack".into(), phase));
    let phase = eddy_phase(env, spec, Consume::ConsumerLoop, rate).await?;
    out.phases
        .push(("loop_", "eddy consumer loop".into(), phase));
    out.phases.sort_by_key(|(k, _, _)| order(k));
    Ok(out)
}

pub(super) fn order(key: &str) -> u8 {
    match key {
        "" => 0,
        "raw_" => 9,
        _ => 1,
    }
}

pub(super) async fn raw_phase(env: &Env, spec: &Spec, rate: Option<f64>) -> CliResult<Phase> {
    let raw = RawSpec {
        url: env.url.clone(),
        prefix: format!("{}{}:", env.prefix, env.fresh("raw")),
        messages: spec.messages,
        producers: spec.producers,
        consumers: spec.consumers,
        batch: spec.batch,
        payload_bytes: spec.payload_bytes,
        streams: 1,
        rate,
        window: if rate.is_some() { 0 } else { spec.window },
    };
    eprintln!("raw loop: {} messages", raw.messages);
    tokio::task::spawn_blocking(move || raw::run(&raw))
        .await
        .map_err(|e| CliError::new(format!("raw baseline failed: {e}")))?
}

/// Shared by the tasks of one phase.
struct Tally {
    hist: Histogram,
    acked: AtomicU64,
    done: Mutex<Option<Instant>>,
    target: u64,
    /// Sent by all producers so far.
    sent: AtomicU64,
    /// Producers stay at most this many messages ahead of the acks (0: no
    /// limit).
    window: u64,
    /// Wakes producers waiting for the window.
    progress: Notify,
    /// The acknowledgement count a waiting producer needs before it is
    /// woken (`u64::MAX`: none waits).
    resume_at: AtomicU64,
    /// See [`Tally::reserve`].
    slack: u64,
}

impl Tally {
    fn new(target: u64, window: u64, slack: u64) -> Self {
        Self {
            hist: Histogram::default(),
            acked: AtomicU64::new(0),
            done: Mutex::new(None),
            target,
            sent: AtomicU64::new(0),
            window,
            progress: Notify::new(),
            resume_at: AtomicU64::new(u64::MAX),
            slack,
        }
    }

    /// Wait until `more` messages fit in the window, then count them sent.
    ///
    /// A producer that finds the window full waits for room for `slack`
    /// more messages than its batch. On the embedded engine that is a
    /// quarter of the window: otherwise every acknowledged batch wakes it,
    /// and that wakeup (through the runtime's driver when the producer's
    /// thread is parked) is the harness's cost, not eddy's. On Redis it is
    /// 0: there the bursts a larger slack makes slow receive + ack down
    /// more than the wakeups, which hide behind round trips (BENCHMARKS.md
    /// has both measurements). The raw baseline polls instead and pays
    /// nothing on the consumer's side.
    async fn reserve(&self, more: u64) {
        if self.window > 0 {
            let limit = self.window.max(more);
            loop {
                let sent = self.sent.load(Ordering::SeqCst);
                if sent + more <= self.acked.load(Ordering::SeqCst) + limit {
                    break;
                }
                let resume = (sent + more + self.slack).saturating_sub(limit).min(sent);
                let progressed = self.progress.notified();
                tokio::pin!(progressed);
                progressed.as_mut().enable();
                self.resume_at.fetch_min(resume, Ordering::SeqCst);
                if self.acked.load(Ordering::SeqCst) >= resume {
                    continue;
                }
                progressed.await;
            }
        }
        self.sent.fetch_add(more, Ordering::SeqCst);
    }

    fn add_acked(&self, n: u64) {
        let total = self.acked.fetch_add(n, Ordering::SeqCst) + n;
        if self.window > 0 && total >= self.resume_at.load(Ordering::SeqCst) {
            self.resume_at.store(u64::MAX, Ordering::SeqCst);
            self.progress.notify_waiters();
        }
        if total >= self.target {
            self.done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(Instant::now);
        }
    }

    fn finished(&self) -> bool {
        self.acked.load(Ordering::Relaxed) >= self.target
    }
}

/// The longest a phase may take before the bench gives up on it.
pub(super) fn deadline(messages: u64, rate: Option<f64>) -> Duration {
    let floor = match rate {
        Some(r) => messages as f64 / r,
        None => messages as f64 / 2_000.0,
    };
    Duration::from_secs_f64(60.0 + 2.0 * floor)
}

async fn eddy_phase(env: &Env, spec: &Spec, how: Consume, rate: Option<f64>) -> CliResult<Phase> {
    let name = env.fresh("q");
    let admin = env.mq("").await?;
    admin.create_queue_pair(&name).await?;
    // Each producer and consumer has its own handle (on Redis its own
    // connection), as separate processes would.
    let (mut producers, mut producers_on_threads) = (Vec::new(), Vec::new());
    for i in 0..spec.producers {
        if env.is_redis() {
            producers.push(open_queue(env, &name).await?);
        } else {
            producers_on_threads.push(i);
        }
    }
    let mut consumers = Vec::new();
    for _ in 0..spec.consumers {
        consumers.push(open_queue(env, &name).await?);
    }
    let window = if rate.is_some() { 0 } else { spec.window };
    let slack = if env.is_redis() { 0 } else { window / 4 };
    let tally = Arc::new(Tally::new(spec.messages, window, slack));
    eprintln!(
        "eddy {}: {} messages",
        match how {
            Consume::ReceiveAck => "receive + ack",
            Consume::ConsumerLoop => "consumer loop",
            Consume::ReceiveAsAck => "receive_as + ack",
        },
        spec.messages
    );
    let cpu = CpuMeter::start(env.redis_url());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks: JoinSet<CliResult> = JoinSet::new();
    let mut scraper = None;
    let started = Instant::now();
    match how {
        Consume::ReceiveAck => {
            for (i, q) in consumers.into_iter().enumerate() {
                let (tally, batch) = (tally.clone(), spec.batch);
                tasks.spawn(receive_ack(q, format!("c{i}"), batch, tally));
            }
        }
        Consume::ConsumerLoop => {
            let metrics = spec.metrics.then(eddy::metrics::Metrics::new);
            for (i, q) in consumers.into_iter().enumerate() {
                let (tally, stop) = (tally.clone(), stop_rx.clone());
                let metrics = metrics.clone();
                tasks.spawn(consumer_loop(
                    q,
                    format!("c{i}"),
                    spec.batch,
                    tally,
                    stop,
                    metrics,
                ));
            }
            if let Some(m) = &metrics {
                scraper = Some(super::Scraper::start(m));
            }
        }
        Consume::ReceiveAsAck => {
            for (i, q) in consumers.into_iter().enumerate() {
                let (tally, batch) = (tally.clone(), spec.batch);
                tasks.spawn(receive_as_ack(q, format!("c{i}"), batch, tally));
            }
        }
    }
    // On the embedded engine each producer runs on a thread of its own,
    // with its own runtime, as the raw baseline's producers do (and as a
    // separate process would). On the consumers' runtime, a producer and a
    // consumer loop that wake each other stay on one worker thread (tokio
    // runs the task a worker wakes next on that worker, and the other,
    // parked, is not asked to steal), so the consumer loop phase would run
    // on one core. On Redis, where a producer's wakeups come from its
    // connection, that does not happen, and a third busy thread beside
    // redis-server slows the consumer loop down: producers stay on the
    // shared runtime there (BENCHMARKS.md has the figures).
    for (i, q) in producers.into_iter().enumerate() {
        let spec = spec.clone();
        tasks.spawn(produce(q, i, spec, rate, started, tally.clone()));
    }
    for i in producers_on_threads {
        let (spec, tally, opener, name) = (spec.clone(), tally.clone(), env.opener(), name.clone());
        let mut stop = stop_rx.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::new(format!("cannot start a producer's runtime: {e}")))?;
            runtime.block_on(async move {
                let work = async {
                    let q = opener.mq("").await?.queue(&name).await?;
                    produce(q, i, spec, rate, started, tally).await
                };
                // Aborting the phase's tasks does not reach this thread,
                // and the runtime waits for it at exit: a failed phase
                // stops it here (a producer may be waiting for acks that
                // will never come).
                tokio::select! {
                    r = work => r,
                    _ = stop.wait_for(|s| *s) => Ok(()),
                }
            })
        });
        tasks.spawn(async move {
            thread
                .await
                .map_err(|e| CliError::new(format!("a producer thread failed: {e}")))?
        });
    }
    let limit = deadline(spec.messages, rate);
    let waited = tokio::time::timeout(limit, wait_until_done(&tally, &mut tasks)).await;
    drop(scraper);
    let _ = stop_tx.send(true);
    let finished = match waited {
        Ok(r) => r,
        Err(_) => Err(CliError::new(format!(
            "the phase did not finish within {limit:?}: {} of {} messages acknowledged",
            tally.acked.load(Ordering::Relaxed),
            spec.messages
        ))),
    };
    let usage = cpu.finish(spec.messages);
    if finished.is_err() {
        tasks.abort_all();
    }
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            if finished.is_ok() {
                return Err(e);
            }
        }
    }
    finished?;
    let end = tally
        .done
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(Instant::now);
    admin.delete_queue(&name, false).await?;
    Ok(Phase::new(spec.messages, end - started, &tally.hist, usage))
}

/// Wait until every message is acknowledged, or a task fails.
async fn wait_until_done(tally: &Tally, tasks: &mut JoinSet<CliResult>) -> CliResult {
    let tick = Duration::from_millis(1);
    while !tally.finished() {
        match tokio::time::timeout(tick, tasks.join_next()).await {
            Ok(Some(Ok(Err(e)))) => return Err(e),
            Ok(Some(Err(e))) => return Err(CliError::new(format!("a benchmark task failed: {e}"))),
            Ok(None) => tokio::time::sleep(tick).await,
            Ok(Some(Ok(Ok(())))) | Err(_) => {}
        }
    }
    Ok(())
}

async fn open_queue(env: &Env, name: &str) -> CliResult<Queue> {
    let mq: Eddy = env.mq("").await?;
    Ok(mq.queue(name).await?)
}

async fn produce(
    q: Queue,
    index: usize,
    spec: Spec,
    rate: Option<f64>,
    started: Instant,
    tally: Arc<Tally>,
) -> CliResult {
    let n = raw::share(spec.messages, spec.producers, index);
    let pad = measure::padding(spec.payload_bytes);
    let mut seq = index as u64 * 1_000_000_000;
    let mut sent = 0;
    match rate {
        Some(r) => {
            // One message at a time, on schedule: a batch would add its own
            // wait to the latency.
            let every = Duration::from_secs_f64(spec.producers as f64 / r);
            let start = tokio::time::Instant::from_std(started);
            while sent < n {
                tokio::time::sleep_until(start + every.mul_f64(sent as f64)).await;
                seq += 1;
                q.send(&Payload {
                    sent_us: measure::now_us(),
                    seq,
                    pad: &pad,
                })
                .await?;
                sent += 1;
            }
        }
        None => {
            let mut batch = Vec::with_capacity(spec.batch);
            while sent < n {
                let k = (spec.batch as u64).min(n - sent);
                tally.reserve(k).await;
                let now = measure::now_us();
                batch.clear();
                for _ in 0..k {
                    seq += 1;
                    batch.push(Payload {
                        sent_us: now,
                        seq,
                        pad: &pad,
                    });
                }
                q.send_batch(&batch).await?;
                sent += k;
            }
        }
    }
    Ok(())
}

fn sent_us(m: &eddy::Message) -> Option<u64> {
    m.data.get("sent_us")?.as_u64()
}

async fn receive_ack(q: Queue, consumer: String, batch: usize, tally: Arc<Tally>) -> CliResult {
    let opts = Receive::new().count(batch).consumer(consumer).block(POLL);
    let mut ids: Vec<EntryId> = Vec::with_capacity(batch);
    while !tally.finished() {
        let msgs = q.receive(&opts).await?;
        if msgs.is_empty() {
            continue;
        }
        let now = measure::now_us();
        ids.clear();
        for m in &msgs {
            if let Some(sent) = sent_us(m) {
                tally.hist.record_since(sent, now);
            }
            ids.push(m.id);
        }
        q.ack(&ids).await?;
        tally.add_acked(ids.len() as u64);
    }
    Ok(())
}

/// The payload as a consumer that wants all of it declares it.
#[derive(serde::Deserialize)]
struct Received {
    sent_us: u64,
    #[allow(dead_code)]
    seq: u64,
    #[allow(dead_code)]
    pad: String,
}

async fn receive_as_ack(q: Queue, consumer: String, batch: usize, tally: Arc<Tally>) -> CliResult {
    let opts = Receive::new().count(batch).consumer(consumer).block(POLL);
    let mut ids: Vec<EntryId> = Vec::with_capacity(batch);
    while !tally.finished() {
        let msgs = q.receive_as::<Received>(&opts).await?;
        if msgs.is_empty() {
            continue;
        }
        let now = measure::now_us();
        ids.clear();
        for m in &msgs {
            tally.hist.record_since(m.payload.sent_us, now);
            ids.push(m.id);
        }
        q.ack(&ids).await?;
        tally.add_acked(ids.len() as u64);
    }
    Ok(())
}

async fn consumer_loop(
    q: Queue,
    consumer: String,
    batch: usize,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
    metrics: Option<eddy::metrics::Metrics>,
) -> CliResult {
    let stats = Arc::new(ConsumerStats::default());
    if let Some(m) = &metrics {
        m.consumer(&q, q.keys().group.as_str(), &stats);
        m.queue(&q);
    }
    let opts = ConsumerOptions::new()
        .name(consumer)
        .concurrency(batch)
        .poll(POLL);
    let hist_tally = tally.clone();
    let handler = move |m: eddy::Message| {
        if let Some(sent) = sent_us(&m) {
            hist_tally.hist.record_since(sent, measure::now_us());
        }
        std::future::ready(Ok(()))
    };
    // Count acknowledgements as the loop's acker reports them.
    let watcher = {
        let (stats, tally, mut stop) = (stats.clone(), tally.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                let now = ConsumerStats::get(&stats.acked);
                if now > seen {
                    tally.add_acked(now - seen);
                    seen = now;
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_micros(500)) => {}
                }
            }
        })
    };
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    consumer::run_with_stats(q, opts, handler, shutdown, stats).await?;
    let _ = watcher.await;
    Ok(())
}
