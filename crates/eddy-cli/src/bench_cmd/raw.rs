//! The raw baseline: the minimal loop with the same client library (the
//! redis crate), no eddy. Producer threads pipeline XADDs (one pipeline per
//! batch), consumer threads XREADGROUP COUNT batch and XACK each batch in one
//! command; every thread has its own connection. With `streams` > 1 each
//! message is added to every stream (a fan-out), each stream read by its
//! own consumers. With a rate, producers send one XADD at a time on
//! schedule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{Connection, Value};

use super::measure::{self, CpuMeter, Histogram, Payload, Phase};
use crate::error::{CliError, CliResult};

/// What the raw loop runs.
#[derive(Debug, Clone)]
pub struct RawSpec {
    pub url: String,
    /// Key prefix of the streams.
    pub prefix: String,
    pub messages: u64,
    pub producers: usize,
    /// Consumers per stream.
    pub consumers: usize,
    pub batch: usize,
    pub payload_bytes: usize,
    /// Streams each message is added to.
    pub streams: usize,
    /// Messages per second (all producers together), or as fast as possible.
    pub rate: Option<f64>,
    /// Producers stay at most this many messages ahead of the slowest
    /// stream's acks (0: no limit).
    pub window: u64,
}

fn redis_err(e: redis::RedisError) -> CliError {
    CliError::new(format!("raw baseline: Redis error: {e}"))
}

fn connect(url: &str) -> CliResult<Connection> {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .map_err(redis_err)
}

/// The server's `redis_version`.
pub fn server_version(url: &str) -> CliResult<String> {
    let servers = super::nodes::servers(url)?;
    let mut c = connect(servers.first().map_or(url, String::as_str))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut c)
        .map_err(redis_err)?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

const GROUP: &str = "g";

/// Run the raw loop (blocking: call it from a blocking thread).
pub fn run(spec: &RawSpec) -> CliResult<Phase> {
    // One hash tag: on a cluster every stream is on one master, which the
    // loop talks to directly (a per-shard baseline).
    let streams: Vec<String> = (0..spec.streams)
        .map(|i| format!("{}{{raw}}:{i}", spec.prefix))
        .collect();
    let node = super::nodes::server_of(&spec.url, &streams[0])?;
    let mut admin = connect(&node)?;
    for s in &streams {
        let _: () = redis::cmd("DEL")
            .arg(s)
            .query(&mut admin)
            .map_err(redis_err)?;
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(s)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(&mut admin)
            .map_err(redis_err)?;
    }
    let hist = Histogram::default();
    let sent = AtomicU64::new(0);
    let acked: Vec<AtomicU64> = streams.iter().map(|_| AtomicU64::new(0)).collect();
    let last_ack = Mutex::new(None::<Instant>);
    let failed = Mutex::new(None::<CliError>);
    let stop = std::sync::atomic::AtomicBool::new(false);

    // Connect everyone before the clock starts.
    let mut consumer_conns = Vec::new();
    for (si, _) in streams.iter().enumerate() {
        for ci in 0..spec.consumers {
            consumer_conns.push((si, ci, connect(&node)?));
        }
    }
    let mut producer_conns = Vec::new();
    for pi in 0..spec.producers {
        producer_conns.push((pi, connect(&node)?));
    }
    let cpu = CpuMeter::start(Some(&spec.url));
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (si, ci, mut conn) in consumer_conns {
            let (stream, acked, hist, last_ack, failed, stop) =
                (&streams[si], &acked[si], &hist, &last_ack, &failed, &stop);
            scope.spawn(move || {
                let consumer = format!("c{ci}");
                let r = consume(
                    &mut conn, stream, &consumer, spec, acked, hist, last_ack, stop,
                );
                if let Err(e) = r {
                    stop.store(true, Ordering::Relaxed);
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            });
        }
        for (pi, mut conn) in producer_conns {
            let (streams, failed, stop, acked, sent) = (&streams, &failed, &stop, &acked, &sent);
            scope.spawn(move || {
                let window = Window { acked, sent };
                let r = produce(&mut conn, streams, pi, spec, started, stop, &window);
                if let Err(e) = r {
                    stop.store(true, Ordering::Relaxed);
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            });
        }
    });
    let usage = cpu.finish(spec.messages);
    for s in &streams {
        let _: Result<(), _> = redis::cmd("DEL").arg(s).query(&mut admin);
    }
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let end = last_ack
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or_else(Instant::now);
    Ok(Phase::new(spec.messages, end - started, &hist, usage))
}

/// This producer's share of `total`.
pub fn share(total: u64, workers: usize, i: usize) -> u64 {
    let w = workers as u64;
    total / w + u64::from((i as u64) < total % w)
}

/// The producers' side of the window: what was sent, what each stream
/// acknowledged.
struct Window<'a> {
    acked: &'a [AtomicU64],
    sent: &'a AtomicU64,
}

impl Window<'_> {
    /// Wait until `more` messages fit in `window`, then count them sent.
    fn reserve(&self, more: u64, window: u64, stop: &std::sync::atomic::AtomicBool) {
        if window > 0 {
            let limit = window.max(more);
            loop {
                let acked = self
                    .acked
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                if self.sent.load(Ordering::Relaxed) + more <= acked + limit
                    || stop.load(Ordering::Relaxed)
                {
                    break;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.sent.fetch_add(more, Ordering::Relaxed);
    }
}

fn produce(
    conn: &mut Connection,
    streams: &[String],
    index: usize,
    spec: &RawSpec,
    started: Instant,
    stop: &std::sync::atomic::AtomicBool,
    window: &Window<'_>,
) -> CliResult {
    let n = share(spec.messages, spec.producers, index);
    let pad = measure::padding(spec.payload_bytes);
    let mut seq = index as u64 * 1_000_000_000;
    let per_batch = if spec.rate.is_some() {
        1
    } else {
        spec.batch as u64
    };
    let interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(spec.producers as f64 / r));
    let mut sent = 0;
    let mut buf = Vec::with_capacity(spec.payload_bytes + 64);
    while sent < n {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(every) = interval {
            let due = started + every.mul_f64(sent as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let k = per_batch.min(n - sent);
        window.reserve(k, spec.window, stop);
        let mut pipe = redis::pipe();
        let now = measure::now_us();
        for _ in 0..k {
            buf.clear();
            seq += 1;
            let p = Payload {
                sent_us: now,
                seq,
                pad: &pad,
            };
            serde_json::to_writer(&mut buf, &p)
                .map_err(|e| CliError::new(format!("raw baseline: {e}")))?;
            for s in streams {
                pipe.cmd("XADD")
                    .arg(s)
                    .arg("*")
                    .arg("data")
                    .arg(&buf[..])
                    .ignore();
            }
        }
        pipe.query::<()>(conn).map_err(redis_err)?;
        sent += k;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn consume(
    conn: &mut Connection,
    stream: &str,
    consumer: &str,
    spec: &RawSpec,
    acked: &AtomicU64,
    hist: &Histogram,
    last_ack: &Mutex<Option<Instant>>,
    stop: &std::sync::atomic::AtomicBool,
) -> CliResult {
    let mut ids: Vec<Vec<u8>> = Vec::with_capacity(spec.batch);
    while acked.load(Ordering::Relaxed) < spec.messages && !stop.load(Ordering::Relaxed) {
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(spec.batch)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(stream)
            .arg(">")
            .query(conn)
            .map_err(redis_err)?;
        let now = measure::now_us();
        ids.clear();
        for_each_entry(reply, |id, data| {
            if let Some(sent) = data.and_then(measure::sent_us_of) {
                hist.record_since(sent, now);
            }
            ids.push(id);
        });
        if ids.is_empty() {
            continue;
        }
        let mut ack = redis::cmd("XACK");
        ack.arg(stream).arg(GROUP);
        for id in &ids {
            ack.arg(&id[..]);
        }
        let _: u64 = ack.query(conn).map_err(redis_err)?;
        let total = acked.fetch_add(ids.len() as u64, Ordering::Relaxed) + ids.len() as u64;
        if total >= spec.messages {
            let now = Instant::now();
            let mut last = last_ack.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|l| l < now) {
                *last = Some(now);
            }
        }
    }
    Ok(())
}

/// Walk `[[stream, [[id, [field, value, ...]], ...]]]` (RESP2) or its RESP3
/// map form, handing each entry's id and `data` value to `f`.
fn for_each_entry(reply: Value, mut f: impl FnMut(Vec<u8>, Option<&[u8]>)) {
    let entries = match reply {
        Value::Array(mut streams) => match streams.pop() {
            Some(Value::Array(mut pair)) if pair.len() == 2 => pair.pop(),
            _ => None,
        },
        Value::Map(mut streams) => streams.pop().map(|(_, v)| v),
        _ => None,
    };
    let Some(Value::Array(entries)) = entries else {
        return;
    };
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let Some(Value::BulkString(id)) = parts.pop() else {
            continue;
        };
        let data = match &fields {
            Some(Value::Array(kv)) => kv.chunks(2).find_map(|pair| match pair {
                [Value::BulkString(k), Value::BulkString(v)] if k == b"data" => Some(&v[..]),
                _ => None,
            }),
            _ => None,
        };
        f(id, data);
    }
}
