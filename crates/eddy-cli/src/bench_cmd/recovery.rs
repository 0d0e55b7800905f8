//! The `recovery` scenario: how fast the consumer loop takes back what a
//! crashed consumer held, beside how fast the same loop takes fresh
//! messages, in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::queue::consumer::{self, ConsumerOptions, ConsumerStats};
use eddy::{Queue, Receive};
use tokio::sync::watch;

use super::measure::{self, CpuMeter, Histogram, Payload, Phase};
use super::queue::deadline;
use super::{Env, RunResult, Spec};
use crate::error::{CliError, CliResult};

/// The recovering loop's visibility timeout: the crashed consumer's
/// messages become claimable this long after the crash.
const VISIBILITY: Duration = Duration::from_millis(500);

/// Messages per send and per read while the queue is filled and held.
const CHUNK: usize = 1_000;

/// `eddy bench recovery`.
pub async fn reclaim(env: &Env, spec: &Spec) -> CliResult<RunResult> {
    let mut out = RunResult::default();
    let normal = phase(env, spec, false).await?;
    let recovery = phase(env, spec, true).await?;
    let ratio = recovery.rate / normal.rate;
    out.phases
        .push(("", "recovery (reclaimed by the loop)".into(), recovery));
    out.phases
        .push(("loop_", "normal (consumer loop, fresh)".into(), normal));
    out.extra.push(("vs_normal", ratio));
    Ok(out)
}

/// Fill a queue with `spec.messages`, optionally have a consumer take them
/// all and crash, then time one consumer loop until it has acknowledged
/// every message.
async fn phase(env: &Env, spec: &Spec, crashed: bool) -> CliResult<Phase> {
    let name = env.fresh("q");
    let admin = env.mq("").await?;
    let (q, _) = admin.create_queue_pair(&name).await?;
    eprintln!(
        "{}: filling a queue with {} messages",
        if crashed { "recovery" } else { "normal" },
        spec.messages
    );
    fill(&q, spec).await?;
    if crashed {
        hold(&q, spec.messages).await?;
        // Dropped without a word, as a killed process would: every message
        // stays pending under "crashed" until its visibility timeout passes.
        tokio::time::sleep(VISIBILITY + VISIBILITY / 5).await;
    }
    let consumer_q = env.mq("").await?.queue(&name).await?;
    let stats = Arc::new(ConsumerStats::default());
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let opts = ConsumerOptions::new()
        .name("rescuer".to_owned())
        .concurrency(spec.batch)
        .visibility_timeout(VISIBILITY)
        .claim_interval(Duration::from_millis(100))
        .poll(Duration::from_millis(100));
    let cpu = CpuMeter::start(env.redis_url());
    let started = Instant::now();
    let task = tokio::spawn(consumer::run_with_stats(
        consumer_q,
        opts,
        |_m: eddy::Message| std::future::ready(Ok(())),
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
        stats.clone(),
    ));
    let limit = deadline(spec.messages, None);
    let finished = loop {
        let acked = ConsumerStats::get(&stats.acked);
        if acked >= spec.messages {
            break Ok(Instant::now());
        }
        if task.is_finished() || started.elapsed() > limit {
            break Err(CliError::new(format!(
                "the consumer loop acknowledged {acked} of {} messages in {:?}",
                spec.messages,
                started.elapsed()
            )));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    };
    let usage = cpu.finish(spec.messages);
    let _ = stop_tx.send(true);
    let stopped = task
        .await
        .map_err(|e| CliError::new(format!("the consumer loop failed: {e}")))?;
    let end = finished?;
    stopped?;
    let redelivered = ConsumerStats::get(&stats.redelivered);
    if crashed && redelivered < spec.messages {
        return Err(CliError::new(format!(
            "only {redelivered} of {} messages were redeliveries: the crash did not hold them all",
            spec.messages
        )));
    }
    admin.delete_queue(&name, false).await?;
    Ok(Phase::new(
        spec.messages,
        end - started,
        &Histogram::default(),
        usage,
    ))
}

async fn fill(q: &Queue, spec: &Spec) -> CliResult {
    let pad = measure::padding(spec.payload_bytes);
    let mut sent = 0;
    let mut batch = Vec::with_capacity(CHUNK);
    while sent < spec.messages {
        let k = (CHUNK as u64).min(spec.messages - sent);
        batch.clear();
        let now = measure::now_us();
        for i in 0..k {
            batch.push(Payload {
                sent_us: now,
                seq: sent + i,
                pad: &pad,
            });
        }
        q.send_batch(&batch).await?;
        sent += k;
    }
    Ok(())
}

/// Receive every message as consumer `crashed`, never acknowledging.
async fn hold(q: &Queue, messages: u64) -> CliResult {
    let read = Receive::new().count(CHUNK).consumer("crashed");
    let mut held = 0;
    while held < messages {
        let got = q.receive(&read).await?.len() as u64;
        if got == 0 {
            return Err(CliError::new(format!(
                "the crashing consumer found only {held} of {messages} messages"
            )));
        }
        held += got;
    }
    Ok(())
}
