//! The `bus` scenario: one publisher, N services on the service runtime,
//! every event handled (and acknowledged) by all of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::bus::{Bus, Subscription};
use eddy::queue::consumer::ConsumerStats;
use eddy::service::{Context, RunningService, Service};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::measure::{self, CpuMeter, Histogram, Phase};
use super::queue::deadline;
use super::raw::{self, RawSpec};
use super::{Env, RunResult, Spec};
use crate::error::{CliError, CliResult};

/// The event every service handles. `phase` picks the histogram.
#[derive(Debug, Serialize, Deserialize)]
struct BenchEvent {
    sent_us: u64,
    seq: u64,
    phase: usize,
    pad: String,
}
eddy::event!(BenchEvent);

const THROUGHPUT: usize = 0;
const AT_RATE: usize = 1;

/// `eddy bench bus`.
pub async fn fan_out(env: &Env, spec: &Spec, raw: bool) -> CliResult<RunResult> {
    let sub = format!("{}:", env.fresh("bus"));
    let publisher = Bus::new(env.mq(&sub).await?).await?;
    let hists: Arc<[Histogram; 2]> = Arc::new(Default::default());
    let metrics = eddy::metrics::Metrics::new();
    metrics.bus(&publisher);
    let mut services = Vec::new();
    for i in 0..spec.services {
        // Each service on its own connection, as in its own process.
        let bus = Bus::new(env.mq(&sub).await?).await?;
        let hists = hists.clone();
        let mut builder = Service::builder(format!("svc{i}"), bus).concurrency(spec.batch);
        if spec.metrics {
            builder = builder.metrics(&metrics);
        }
        let service = builder
            .on(move |_ctx: Context, ev: BenchEvent| {
                if let Some(h) = hists.get(ev.phase) {
                    h.record_since(ev.sent_us, measure::now_us());
                }
                std::future::ready(Ok(()))
            })
            .start()
            .await?;
        services.push(service);
    }
    let _scraper = spec.metrics.then(|| super::Scraper::start(&metrics));
    let mut out = RunResult::default();
    // Idle: the services wait on their queues.
    tokio::time::sleep(Duration::from_secs(1)).await;
    out.extra.push(("idle_rss_mb", measure::rss_mb()));

    let pad = measure::padding(spec.payload_bytes.saturating_sub(10));
    eprintln!(
        "eddy bus: {} events to {} services",
        spec.messages, spec.services
    );
    let phase = run_phase(
        env.redis_url(),
        &publisher,
        &services,
        spec,
        &pad,
        None,
        &hists[THROUGHPUT],
    )
    .await?;
    out.phases.push(("", "eddy 1 -> services".into(), phase));

    let at_rate = (spec.rate * spec.duration.as_secs_f64()).ceil().max(1.0) as u64;
    eprintln!("eddy bus: {at_rate} events at {}/s", spec.rate);
    let rate_spec = Spec {
        messages: at_rate,
        ..spec.clone()
    };
    let phase = run_phase(
        env.redis_url(),
        &publisher,
        &services,
        &rate_spec,
        &pad,
        Some(spec.rate),
        &hists[AT_RATE],
    )
    .await?;
    out.phases
        .push(("rate_", format!("eddy at {}/s", spec.rate), phase));

    for s in services {
        s.stop().await?;
    }
    cleanup(&publisher, spec.services).await?;

    if raw {
        let raw = RawSpec {
            url: env.url.clone(),
            prefix: format!("{}{}:", env.prefix, env.fresh("raw")),
            messages: spec.messages,
            producers: 1,
            consumers: 1,
            batch: spec.batch,
            payload_bytes: spec.payload_bytes,
            streams: spec.services,
            rate: None,
            window: spec.window,
        };
        eprintln!(
            "raw fan-out loop: {} messages to {} streams",
            raw.messages, raw.streams
        );
        let phase = tokio::task::spawn_blocking(move || raw::run(&raw))
            .await
            .map_err(|e| CliError::new(format!("raw baseline failed: {e}")))??;
        out.phases
            .push(("raw_", "raw fan-out loop (redis crate)".into(), phase));
    }
    Ok(out)
}

/// A task stopped when its handle is dropped: a phase that times out
/// leaves no publisher running behind it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn acked(services: &[RunningService]) -> Vec<u64> {
    services
        .iter()
        .map(|s| ConsumerStats::get(&s.stats().acked))
        .collect()
}

/// Publish `spec.messages` events (as fast as `spec.batch` in flight allow,
/// or at `rate`) and wait until every service has acknowledged them all.
async fn run_phase(
    redis_url: Option<&str>,
    bus: &Bus,
    services: &[RunningService],
    spec: &Spec,
    pad: &str,
    rate: Option<f64>,
    hist: &Histogram,
) -> CliResult<Phase> {
    let phase = if rate.is_some() { AT_RATE } else { THROUGHPUT };
    let n = spec.messages;
    let base = acked(services);
    let cpu = CpuMeter::start(redis_url);
    let started = Instant::now();
    let event = |seq: u64| BenchEvent {
        sent_us: measure::now_us(),
        seq,
        phase,
        pad: pad.to_owned(),
    };
    // The slowest service's acknowledgements in this phase, kept current by
    // `waiting` below, for the publisher's window.
    let slowest = Arc::new(AtomicU64::new(0));
    let publishing = async {
        match rate {
            None => {
                // In a task of its own, as a service publishes: a future
                // polled by this function's caller (the CLI's `block_on`,
                // on the main thread) is woken through a futex and a context
                // switch per completed publish, a cost of the harness rather
                // than eddy's (BENCHMARKS.md has the profile).
                let (bus, pad, slowest) = (bus.clone(), pad.to_owned(), slowest.clone());
                let (window, batch) = (spec.window, spec.batch);
                let mut task = AbortOnDrop(tokio::spawn(async move {
                    futures::stream::iter(0..n)
                        .then(|i| {
                            let slowest = slowest.clone();
                            async move {
                                // Stay at most --window events ahead of the slowest service.
                                while window > 0 && i >= slowest.load(Ordering::Relaxed) + window {
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                                i
                            }
                        })
                        .map(|i| {
                            let bus = bus.clone();
                            let ev = BenchEvent {
                                sent_us: measure::now_us(),
                                seq: i,
                                phase,
                                pad: pad.clone(),
                            };
                            async move { bus.publish(&ev).await }
                        })
                        .buffer_unordered(batch)
                        .try_for_each(|_| std::future::ready(Ok(())))
                        .await
                }));
                (&mut task.0)
                    .await
                    .map_err(|e| CliError::new(format!("publisher task failed: {e}")))??;
            }
            Some(r) => {
                // On schedule, each publish in its own task so that a slow
                // one does not delay the next.
                let every = Duration::from_secs_f64(1.0 / r);
                let start = tokio::time::Instant::from_std(started);
                let mut inflight = JoinSet::new();
                for i in 0..n {
                    tokio::time::sleep_until(start + every.mul_f64(i as f64)).await;
                    let bus = bus.clone();
                    let ev = event(i);
                    inflight.spawn(async move { bus.publish(&ev).await });
                    while let Some(done) = inflight.try_join_next() {
                        done.map_err(|e| CliError::new(format!("publish task failed: {e}")))??;
                    }
                }
                while let Some(done) = inflight.join_next().await {
                    done.map_err(|e| CliError::new(format!("publish task failed: {e}")))??;
                }
            }
        }
        Ok::<_, CliError>(())
    };
    let waiting = async {
        loop {
            let now = acked(services);
            let least = now.iter().zip(&base).map(|(a, b)| a - b).min().unwrap_or(0);
            slowest.store(least, Ordering::Relaxed);
            if now.iter().zip(&base).all(|(a, b)| a - b >= n) {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    };
    let limit = deadline(n * services.len() as u64, rate);
    let (published, end) = tokio::time::timeout(limit, futures::future::join(publishing, waiting))
        .await
        .map_err(|_| {
            CliError::new(format!(
                "the bus phase did not finish within {limit:?}: acknowledged {:?} of {n} each",
                acked(services)
                    .iter()
                    .zip(&base)
                    .map(|(a, b)| a - b)
                    .collect::<Vec<_>>()
            ))
        })?;
    let usage = cpu.finish(n);
    published?;
    Ok(Phase::new(n, end - started, hist, usage))
}

/// Remove the services' routes and every queue under the bench prefix.
async fn cleanup(bus: &Bus, services: usize) -> CliResult {
    for i in 0..services {
        bus.unsubscribe(&format!("svc{i}"), &Subscription::types(["BenchEvent"]))
            .await?;
    }
    for q in bus.queues().list_queues().await? {
        if !q.is_dlq {
            bus.queues().delete_queue(&q.name, false).await?;
        }
    }
    Ok(())
}
