//! What the scenarios measure with: a lock-free latency histogram, the
//! payload (which carries its send time), peak RSS and the machine's load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Microseconds since the Unix epoch: the payload's send stamp. Producer
/// and consumer share the process, so they share the clock.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The benchmark payload: `{"sent_us":…,"seq":…,"pad":"xxx…"}`, padded to
/// the requested size (a typical ~200-byte JSON object by default).
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    pub sent_us: u64,
    pub seq: u64,
    pub pad: &'a str,
}

/// The padding that brings a payload to about `size` bytes.
pub fn padding(size: usize) -> String {
    let probe = Payload {
        sent_us: now_us(),
        seq: 1_000_000,
        pad: "",
    };
    let base = serde_json::to_vec(&probe).map_or(48, |v| v.len());
    "x".repeat(size.saturating_sub(base))
}

/// The `sent_us` of a raw payload, without parsing the JSON (the raw loop
/// must stay minimal): it is the first field.
pub fn sent_us_of(raw: &[u8]) -> Option<u64> {
    let rest = raw.strip_prefix(b"{\"sent_us\":")?;
    let mut v: u64 = 0;
    for &b in rest.iter().take_while(|b| b.is_ascii_digit()) {
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

/// Values below this are counted exactly (1 µs buckets).
const EXACT: u64 = 2048;
/// Sub-buckets per power of two above that: ~1.6% resolution.
const SUB_BITS: u32 = 6;
const FIRST_EXP: u32 = 11; // 2^11 == EXACT

/// Latencies in microseconds, recorded from any thread without locks.
#[derive(Debug)]
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        let n = EXACT as usize + ((64 - FIRST_EXP) << SUB_BITS) as usize;
        Self {
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

fn index(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (EXACT + (u64::from(e - FIRST_EXP) << SUB_BITS) + sub) as usize
}

/// The middle of bucket `i`, in microseconds.
fn value_of(i: usize) -> f64 {
    let i = i as u64;
    if i < EXACT {
        return i as f64;
    }
    let j = i - EXACT;
    let e = (j >> SUB_BITS) as u32 + FIRST_EXP;
    let sub = j & ((1 << SUB_BITS) - 1);
    let width = 1u64 << (e - SUB_BITS);
    ((1u64 << e) + sub * width) as f64 + width as f64 / 2.0
}

impl Histogram {
    pub fn record(&self, us: u64) {
        self.buckets[index(us)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// Record the latency of a payload sent at `sent_us`, as of `now`.
    pub fn record_since(&self, sent_us: u64, now: u64) {
        self.record(now.saturating_sub(sent_us));
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn quantile_us(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return f64::NAN;
        }
        let target = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= target {
                return value_of(i).min(self.max.load(Ordering::Relaxed) as f64);
            }
        }
        self.max.load(Ordering::Relaxed) as f64
    }

    pub fn summary(&self) -> Latency {
        let ms = |us: f64| us / 1000.0;
        Latency {
            p50_ms: ms(self.quantile_us(0.50)),
            p99_ms: ms(self.quantile_us(0.99)),
            p999_ms: ms(self.quantile_us(0.999)),
            max_ms: if self.count() == 0 {
                f64::NAN
            } else {
                ms(self.max.load(Ordering::Relaxed) as f64)
            },
        }
    }
}

/// Latency percentiles of one phase, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The figures of one phase of one run.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Messages (events, requests) per second.
    pub rate: f64,
    pub latency: Latency,
    pub peak_rss_mb: f64,
    /// CPU time of this process per message, in microseconds.
    pub client_cpu_us: f64,
    /// CPU time of the Redis server per message, in microseconds.
    pub redis_cpu_us: f64,
}

impl Phase {
    pub fn new(count: u64, elapsed: Duration, hist: &Histogram, usage: Usage) -> Self {
        Self {
            rate: count as f64 / elapsed.as_secs_f64().max(1e-9),
            latency: hist.summary(),
            peak_rss_mb: usage.peak_rss_mb,
            client_cpu_us: usage.client_cpu_us,
            redis_cpu_us: usage.redis_cpu_us,
        }
    }
}

/// CPU time spent by this process and by the Redis server during a phase:
/// where the time goes, beside how much work got done. Starting it also
/// resets the peak RSS.
#[derive(Debug)]
pub struct CpuMeter {
    /// Every server behind the URL (every master of a cluster).
    redis: Vec<redis::Client>,
    client_start: f64,
    redis_start: f64,
}

impl CpuMeter {
    pub fn start(redis_url: Option<&str>) -> Self {
        reset_peak_rss();
        let redis: Vec<redis::Client> = redis_url
            .and_then(|u| super::nodes::servers(u).ok())
            .unwrap_or_default()
            .iter()
            .filter_map(|u| redis::Client::open(u.as_str()).ok())
            .collect();
        let redis_start = servers_cpu_s(&redis);
        Self {
            redis,
            client_start: process_cpu_s(),
            redis_start,
        }
    }

    /// CPU per message and peak RSS so far: call it when the phase's
    /// work is done, before cleaning up.
    pub fn finish(&self, count: u64) -> Usage {
        let n = count.max(1) as f64;
        Usage {
            client_cpu_us: (process_cpu_s() - self.client_start) * 1e6 / n,
            redis_cpu_us: (servers_cpu_s(&self.redis) - self.redis_start) * 1e6 / n,
            peak_rss_mb: peak_rss_mb(),
        }
    }
}

/// What [`CpuMeter::finish`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub client_cpu_us: f64,
    pub redis_cpu_us: f64,
    pub peak_rss_mb: f64,
}

/// The servers' CPU time, summed; NaN without servers.
fn servers_cpu_s(servers: &[redis::Client]) -> f64 {
    if servers.is_empty() {
        return f64::NAN;
    }
    servers.iter().map(redis_cpu_s).sum()
}

/// The server's `used_cpu_user + used_cpu_sys` in seconds.
fn redis_cpu_s(client: &redis::Client) -> f64 {
    let info: Option<String> = client
        .get_connection()
        .and_then(|mut c| redis::cmd("INFO").arg("cpu").query(&mut c))
        .ok();
    let Some(info) = info else {
        return f64::NAN;
    };
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    match (field("used_cpu_user:"), field("used_cpu_sys:")) {
        (Some(u), Some(s)) => u + s,
        _ => f64::NAN,
    }
}

/// User + system CPU time of this process (all threads) in seconds, from
/// /proc/self/stat (clock ticks of 10 ms).
fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    match (tick(11), tick(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

fn status_kb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Reset the process's peak RSS to its current RSS (Linux 4.0+), so each
/// phase reports its own peak. Returns whether the kernel allowed it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size (VmHWM) in MB.
pub fn peak_rss_mb() -> f64 {
    status_kb("VmHWM:").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Current resident set size (VmRSS) in MB.
pub fn rss_mb() -> f64 {
    status_kb("VmRSS:").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_close() {
        let h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        let s = h.summary();
        assert!((s.p50_ms - 50.0).abs() / 50.0 < 0.02, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() / 99.0 < 0.02, "{s:?}");
        assert_eq!(s.max_ms, 100.0);
        for v in [0, 1, 2047, 2048, 2049, 1 << 20, u64::MAX / 2] {
            let mid = value_of(index(v));
            assert!(
                (mid - v as f64).abs() <= (v as f64) / 64.0 + 1.0,
                "{v} -> {mid}"
            );
        }
    }

    #[test]
    fn payloads_have_the_size_asked_and_a_readable_stamp() {
        let pad = padding(200);
        let p = Payload {
            sent_us: now_us(),
            seq: 1_234_567,
            pad: &pad,
        };
        let bytes = serde_json::to_vec(&p).unwrap_or_default();
        assert!((195..=205).contains(&bytes.len()), "{}", bytes.len());
        assert_eq!(sent_us_of(&bytes), Some(p.sent_us));
    }
}
