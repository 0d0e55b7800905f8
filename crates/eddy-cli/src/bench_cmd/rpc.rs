//! The `rpc` scenario: `Webhook::request` round trips to an echo handler
//! running on the webhook service loop, with K requests in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::queue::consumer::ConsumerOptions;
use eddy::webhook::{queue_name, Delivery, Webhook, WebhookBuilder};
use serde_json::Value;
use tokio::task::JoinSet;

use super::measure::{self, CpuMeter, Histogram, Payload, Phase};
use super::queue::{deadline, raw_phase};
use super::{Env, RunResult, Spec};
use crate::error::{CliError, CliResult};

const PATH: &str = "/bench/echo";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `eddy bench rpc`.
pub async fn round_trips(env: &Env, spec: &Spec, raw: bool) -> CliResult<RunResult> {
    let sub = format!("{}:", env.fresh("rpc"));
    let server = WebhookBuilder::new()
        .consumer_options(ConsumerOptions::new().concurrency(spec.concurrency.max(16)))
        .with_queues(env.mq(&sub).await?);
    server.on(PATH, |d: Delivery| async move {
        Ok(d.data().get("seq").cloned().unwrap_or(Value::Null))
    })?;
    let running = server.start().await?;
    let client = Webhook::new(env.mq(&sub).await?);
    let pad = Arc::new(measure::padding(spec.payload_bytes));
    let payload = |seq: u64, pad: &str| {
        serde_json::to_value(Payload {
            sent_us: measure::now_us(),
            seq,
            pad,
        })
        .map_err(|e| CliError::new(e.to_string()))
    };
    // The first request creates the reply queue and starts its listener.
    client
        .request(PATH, &payload(0, &pad)?, REQUEST_TIMEOUT)
        .await?;

    eprintln!(
        "eddy rpc: {} requests, {} in flight",
        spec.messages, spec.concurrency
    );
    let hist = Arc::new(Histogram::default());
    let next = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(env.redis_url());
    let started = Instant::now();
    let mut callers: JoinSet<CliResult> = JoinSet::new();
    for _ in 0..spec.concurrency {
        let (client, hist, next, pad, n) = (
            client.clone(),
            hist.clone(),
            next.clone(),
            pad.clone(),
            spec.messages,
        );
        callers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok(());
                }
                let body = serde_json::to_value(Payload {
                    sent_us: measure::now_us(),
                    seq: i,
                    pad: &pad,
                })
                .map_err(|e| CliError::new(e.to_string()))?;
                let t0 = Instant::now();
                let reply = client.request(PATH, &body, REQUEST_TIMEOUT).await?;
                hist.record(t0.elapsed().as_micros() as u64);
                if reply != i {
                    return Err(CliError::new(format!(
                        "request {i} got the reply {reply} of another request"
                    )));
                }
            }
        });
    }
    let limit = deadline(spec.messages, None);
    let joined = tokio::time::timeout(limit, async {
        while let Some(r) = callers.join_next().await {
            r.map_err(|e| CliError::new(format!("a caller failed: {e}")))??;
        }
        Ok::<_, CliError>(())
    })
    .await;
    let elapsed = started.elapsed();
    let usage = cpu.finish(spec.messages);
    match joined {
        Ok(r) => r?,
        Err(_) => {
            return Err(CliError::new(format!(
                "the rpc phase did not finish within {limit:?}"
            )))
        }
    }
    let phase = Phase::new(spec.messages, elapsed, &hist, usage);
    let mut out = RunResult::default();
    out.phases.push((
        "",
        format!("eddy request/reply x{}", spec.concurrency),
        phase,
    ));

    client.close().await?;
    running.stop().await?;
    server
        .queues()
        .delete_queue(&queue_name(PATH)?, false)
        .await?;

    if raw {
        // A queue loop, long enough to measure (a round trip is two messages).
        let spec = Spec {
            messages: spec.messages.max(200_000),
            producers: 1,
            consumers: 1,
            ..spec.clone()
        };
        let phase = raw_phase(env, &spec, None).await?;
        out.phases
            .push(("raw_", "raw queue loop (redis crate)".into(), phase));
    }
    Ok(out)
}
