//! `eddy bench SCENARIO`: throughput and latency of eddy's queues, event
//! bus, request/reply and fixed-rate delivery, each run next to a raw
//! baseline on the same Redis in the same process (see BENCHMARKS.md).

mod bus;
mod measure;
mod nodes;
mod queue;
mod raw;
mod recovery;
mod redis_server;
mod rpc;

use std::time::Duration;

use clap::{Args, ValueEnum};
use eddy::engine::SharedEngine;
use eddy::{Eddy, EddyBuilder};
use serde_json::{json, Map, Value};

use crate::duration::parse_duration;
use crate::error::{CliError, CliResult};
use crate::output::Output;
use measure::Phase;

/// `eddy bench` help, after the options.
pub const BENCH_HELP: &str = "\
Scenarios:
  queue    producers send batches (send_batch), consumers receive COUNT
           --batch and acknowledge each batch in one call; measured from the
           first send to the last ack. Also runs the consumer loop
           (eddy::queue::consumer::run, concurrency --batch) on the same load.
  bus      1 publisher -> --services services (default 3) through the service
           runtime; events/s handled and acknowledged by all of them, then
           p50/p99/p99.9 at a fixed --rate for --duration.
  rpc      Webhook::request round trips with --concurrency callers in flight.
  latency  the queue at a fixed --rate for --duration: p50, p99, p99.9, max,
           with receive + ack and with the consumer loop.
  recovery a consumer takes --messages (default 200000) and crashes without
           acknowledging; the consumer loop (concurrency --batch, visibility
           timeout 500 ms) reclaims them all: msg/s from its start to the
           last ack, beside the same loop on as many fresh messages in the
           same run (loop_msgs_per_s) and the ratio (vs_normal).

On Redis every scenario but recovery also runs a raw baseline in the same process: the
minimal loop with the same client library (the redis crate) — pipelined
XADD (--batch per pipeline), XREADGROUP COUNT --batch, one XACK per batch,
producers and consumers on their own connections and threads, the same
payload — and prints eddy's throughput as a fraction of it (vs raw; with
--runs, the median of each run's ratio). For `bus` the raw loop fans each
message out to one stream per service; for `latency` it runs at the same
fixed rate; for `rpc` it is the plain queue loop.

Producers stay at most --window messages ahead of the acknowledgements
(the raw loop's too). Latency is measured from the send timestamp in each
payload to the moment the consumer has it. Peak RSS is the process's
VmHWM, reset before each phase where the kernel allows it. CPU us/msg is
the CPU time of this process and of redis-server (INFO cpu) during the
phase, per message: where the time goes. Queues and streams live under a
fresh prefix (bench-PID-N:) and are deleted afterwards; on the embedded
engine acknowledged entries are dropped as they are acknowledged
(memory://?history=0s, see --history), as a bounded deployment would.

Output: a table for people, then one JSON line (only the JSON line with
--json) with scenario, engine, msgs_per_s (events_per_s for bus,
requests_per_s and msgs_per_s for rpc), p50_ms, p99_ms, peak_rss_mb, and
raw_msgs_per_s / vs_raw where the baseline ran; other phases are prefixed
(loop_, rate_, raw_). With --runs N every figure is the median of N runs.

Examples:
  eddy bench queue                                  # embedded engine
  eddy bench queue --url redis://127.0.0.1:6380/0
  eddy bench queue --spawn-redis --runs 3           # a private redis-server
  eddy bench latency --spawn-redis --rate 1000 --duration 10s";

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Produce -> consume -> ack throughput.
    Queue,
    /// Event fan-out, 1 publisher -> N services.
    Bus,
    /// Request/reply round trips.
    Rpc,
    /// Queue latency at a fixed rate.
    Latency,
    /// Reclaiming a crashed consumer's messages, beside fresh ones.
    Recovery,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Queue => "queue",
            Scenario::Bus => "bus",
            Scenario::Rpc => "rpc",
            Scenario::Latency => "latency",
            Scenario::Recovery => "recovery",
        }
    }
}

/// `eddy bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scenario.
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// Messages (events for bus, requests for rpc) per phase [default:
    /// queue 200000 on Redis, 1000000 embedded; bus 50000 / 200000; rpc
    /// 20000 / 100000; latency: --rate x --duration; recovery 200000].
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,

    /// Producer tasks (queue, latency).
    #[arg(long, default_value_t = 1, value_name = "P")]
    pub producers: usize,

    /// Consumer tasks (queue, latency).
    #[arg(long, default_value_t = 1, value_name = "C")]
    pub consumers: usize,

    /// Messages per send_batch / receive / ack, per raw pipeline; publishes
    /// in flight and handler concurrency for bus.
    #[arg(long, default_value_t = 100, value_name = "B")]
    pub batch: usize,

    /// Producers (the bus publisher) stay at most this many messages ahead
    /// of the acknowledgements, as backpressure would keep them; 0 lets
    /// them run ahead without limit (the backlog then dominates latency and
    /// memory).
    #[arg(long, default_value_t = 10_000, value_name = "W")]
    pub window: u64,

    /// Embedded engine only: how long acknowledged entries are kept, when
    /// --url is plain memory:// (a URL's own ?history= wins). The engine
    /// drops older ones as it goes (`memory://?history=D`), as a deployment
    /// bounds its history; Redis keeps history in the server, outside the
    /// measured process.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "D")]
    pub history: Duration,

    /// Size of each JSON payload (before eddy's `_metadata`).
    #[arg(long, default_value_t = 200, value_name = "S")]
    pub payload_bytes: usize,

    /// Messages (events) per second for latency and the fixed-rate bus
    /// phase.
    #[arg(long, default_value_t = 1000.0, value_name = "R")]
    pub rate: f64,

    /// How long the fixed-rate phases run: seconds or 500ms, 2s, 1m.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "D")]
    pub duration: Duration,

    /// Services subscribed to the event (bus).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub services: usize,

    /// Requests in flight (rpc).
    #[arg(long, default_value_t = 32, value_name = "K")]
    pub concurrency: usize,

    /// Repeat the whole scenario this many times; figures are medians.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub runs: usize,

    /// Start a private redis-server on a free port for this run (and use
    /// it instead of --url).
    #[arg(long)]
    pub spawn_redis: bool,

    /// Skip the raw baseline.
    #[arg(long)]
    pub no_raw: bool,

    /// Report the services and consumer loops through `eddy::metrics` and
    /// render the Prometheus text once a second while the bench runs (a
    /// scrape fifteen times as often as Prometheus's default), to measure
    /// what metrics cost (bus, queue).
    #[arg(long)]
    pub metrics: bool,

    /// Tokio worker threads for eddy's side [default: on Redis one fewer
    /// than the cores, leaving one to the redis-server sharing the machine;
    /// embedded, one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,
}

impl BenchArgs {
    /// The runtime's worker threads (see `--workers`).
    ///
    /// Why fewer on Redis: the client and a local redis-server share the
    /// cores, and a tokio worker per core makes the client's tasks wake each
    /// other across threads while Redis wants a core of its own; the
    /// embedded engine, which does all the work in-process, gets more from
    /// every core. BENCHMARKS.md ("Method") has the measurements behind
    /// both choices.
    pub fn workers(&self, url: &str) -> usize {
        let cores = measure::nproc();
        match self.workers {
            Some(n) => usize::from(n),
            None if self.spawn_redis || !url.starts_with("memory") => {
                cores.saturating_sub(1).max(1)
            }
            None => cores,
        }
    }
}

/// Where a scenario runs: the engine, and a fresh key prefix.
#[derive(Debug)]
pub(crate) struct Env {
    pub url: String,
    /// The embedded engine, shared by every handle (it lives in-process).
    pub memory: Option<SharedEngine>,
    pub prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl Env {
    pub fn is_redis(&self) -> bool {
        self.memory.is_none()
    }

    /// The Redis URL, if the engine is Redis.
    pub fn redis_url(&self) -> Option<&str> {
        self.is_redis().then_some(self.url.as_str())
    }

    /// Queues under the bench prefix plus `sub`, on their own connection
    /// for Redis.
    pub async fn mq(&self, sub: &str) -> CliResult<Eddy> {
        self.opener().mq(sub).await
    }

    /// How to open handles from another runtime (a producer's own thread).
    pub fn opener(&self) -> Opener {
        Opener {
            url: self.url.clone(),
            memory: self.memory.clone(),
            prefix: self.prefix.clone(),
        }
    }

    /// A fresh name for this phase's queue (or key).
    pub fn fresh(&self, what: &str) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{what}{n}")
    }
}

/// Opens handles like [`Env::mq`], from any runtime.
#[derive(Clone)]
pub(crate) struct Opener {
    url: String,
    memory: Option<SharedEngine>,
    prefix: String,
}

impl Opener {
    pub async fn mq(&self, sub: &str) -> CliResult<Eddy> {
        let b = EddyBuilder::new(&self.url).prefix(format!("{}{sub}", self.prefix));
        Ok(match &self.memory {
            Some(e) => b.with_engine(e.clone())?,
            None => b.open().await?,
        })
    }
}

/// The resolved settings of one scenario.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub messages: u64,
    pub producers: usize,
    pub consumers: usize,
    pub batch: usize,
    pub window: u64,
    pub payload_bytes: usize,
    pub rate: f64,
    pub duration: Duration,
    pub services: usize,
    pub concurrency: usize,
    pub metrics: bool,
}

/// `--metrics`: render `metrics` once a second until dropped (each render
/// reads every registered queue's gauges from the engine, as a scrape does).
pub(crate) struct Scraper(tokio::task::JoinHandle<()>);

impl Scraper {
    pub(crate) fn start(metrics: &eddy::metrics::Metrics) -> Self {
        let metrics = metrics.clone();
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = metrics.render().await {
                    eprintln!("bench: metrics render failed: {e}");
                }
            }
        }))
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One run of a scenario: its phases (JSON key prefix, label, figures) and
/// scenario-specific extra figures.
#[derive(Debug, Default)]
pub(crate) struct RunResult {
    pub phases: Vec<(&'static str, String, Phase)>,
    pub extra: Vec<(&'static str, f64)>,
}

/// Run `eddy bench`.
pub async fn run(url: &str, args: BenchArgs, out: &mut Output) -> CliResult {
    if args.batch == 0 || args.producers == 0 || args.consumers == 0 || args.runs == 0 {
        return Err(CliError::new(
            "--batch, --producers, --consumers and --runs must be at least 1",
        ));
    }
    if args.services == 0 || args.concurrency == 0 {
        return Err(CliError::new(
            "--services and --concurrency must be at least 1",
        ));
    }
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(CliError::new("--rate must be a positive number"));
    }
    let server = if args.spawn_redis {
        if !url.starts_with("memory") {
            return Err(CliError::new(
                "--spawn-redis starts its own Redis: leave --url out (or memory://)",
            ));
        }
        Some(redis_server::PrivateRedis::start()?)
    } else {
        None
    };
    let url = server.as_ref().map_or_else(|| url.to_owned(), |s| s.url());
    let url = if url == "memory://" {
        format!("memory://?history={}ms", args.history.as_millis())
    } else {
        url
    };
    let memory = if url.starts_with("memory") {
        Some(eddy::engine::open(&url).await?)
    } else {
        None
    };
    let engine = if memory.is_some() { "memory" } else { "redis" };
    let redis_version = match &memory {
        None => Some(raw::server_version(&url)?),
        Some(_) => None,
    };
    let env = Env {
        url: url.clone(),
        memory,
        prefix: format!(
            "bench-{}-{}:",
            std::process::id(),
            measure::now_us() % 1_000_000
        ),
        next: Default::default(),
    };
    let spec = resolve(&args, env.is_redis());
    let raw = env.is_redis() && !args.no_raw;
    let load_start = measure::load_average();

    let mut runs: Vec<RunResult> = Vec::with_capacity(args.runs);
    for i in 0..args.runs {
        if args.runs > 1 {
            eprintln!("run {} of {}", i + 1, args.runs);
        }
        let result = match args.scenario {
            Scenario::Queue => queue::throughput(&env, &spec, raw).await?,
            Scenario::Latency => queue::latency(&env, &spec, raw).await?,
            Scenario::Bus => bus::fan_out(&env, &spec, raw).await?,
            Scenario::Rpc => rpc::round_trips(&env, &spec, raw).await?,
            Scenario::Recovery => recovery::reclaim(&env, &spec).await?,
        };
        runs.push(result);
    }
    let load_end = measure::load_average();

    let mut header = Map::new();
    header.insert("scenario".into(), json!(args.scenario.name()));
    header.insert("engine".into(), json!(engine));
    header.insert("eddy_version".into(), json!(env!("CARGO_PKG_VERSION")));
    header.insert("url".into(), json!(eddy::engine::redact_url(&url)));
    if let Some(v) = &redis_version {
        header.insert("redis_version".into(), json!(v));
    }
    header.insert("messages".into(), json!(spec.messages));
    match args.scenario {
        Scenario::Queue | Scenario::Latency => {
            header.insert("producers".into(), json!(spec.producers));
            header.insert("consumers".into(), json!(spec.consumers));
        }
        Scenario::Bus => {
            header.insert("services".into(), json!(spec.services));
        }
        Scenario::Rpc => {
            header.insert("concurrency".into(), json!(spec.concurrency));
        }
        Scenario::Recovery => {}
    }
    header.insert("batch".into(), json!(spec.batch));
    if matches!(args.scenario, Scenario::Queue | Scenario::Bus) {
        header.insert("window".into(), json!(spec.window));
    }
    header.insert("payload_bytes".into(), json!(spec.payload_bytes));
    if matches!(args.scenario, Scenario::Latency | Scenario::Bus) {
        header.insert("rate".into(), json!(spec.rate));
        header.insert("duration_s".into(), json!(spec.duration.as_secs_f64()));
    }
    header.insert("runs".into(), json!(args.runs));
    header.insert("nproc".into(), json!(measure::nproc()));
    header.insert(
        "workers".into(),
        json!(tokio::runtime::Handle::current().metrics().num_workers()),
    );
    header.insert("load_1m_start".into(), json!(load_start));
    header.insert("load_1m_end".into(), json!(load_end));

    let (machine, human) = report(args.scenario, &header, &runs);
    let machine = Value::Object(machine);
    out.result(machine.clone(), &format!("{human}{machine}"))?;
    drop(server);
    Ok(())
}

fn resolve(args: &BenchArgs, redis: bool) -> Spec {
    let messages = args.messages.unwrap_or(match (args.scenario, redis) {
        (Scenario::Queue, true) => 200_000,
        (Scenario::Queue, false) => 1_000_000,
        (Scenario::Bus, true) => 50_000,
        (Scenario::Bus, false) => 200_000,
        (Scenario::Rpc, true) => 20_000,
        (Scenario::Rpc, false) => 100_000,
        (Scenario::Latency, _) => (args.rate * args.duration.as_secs_f64()).ceil() as u64,
        (Scenario::Recovery, _) => 200_000,
    });
    Spec {
        messages: messages.max(1),
        producers: args.producers,
        consumers: args.consumers,
        batch: args.batch,
        window: args.window,
        payload_bytes: args.payload_bytes,
        rate: args.rate,
        duration: args.duration,
        services: args.services,
        concurrency: args.concurrency,
        metrics: args.metrics,
    }
}

fn rate_key(s: Scenario) -> (&'static str, &'static str) {
    match s {
        Scenario::Bus => ("events_per_s", "events/s"),
        Scenario::Rpc => ("requests_per_s", "req/s"),
        Scenario::Queue | Scenario::Latency | Scenario::Recovery => ("msgs_per_s", "msg/s"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn round(x: f64, digits: i32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let m = 10f64.powi(digits);
    json!((x * m).round() / m)
}

/// Medians across runs: the JSON object and the human table.
fn report(
    scenario: Scenario,
    header: &Map<String, Value>,
    runs: &[RunResult],
) -> (Map<String, Value>, String) {
    let (rate_key, rate_unit) = rate_key(scenario);
    let mut machine = header.clone();
    let Some(first) = runs.first() else {
        return (machine, String::new());
    };
    // Per phase key: its runs' figures.
    let phases: Vec<(&'static str, String, Vec<&Phase>)> = first
        .phases
        .iter()
        .map(|(key, label, _)| {
            let all = runs
                .iter()
                .filter_map(|r| r.phases.iter().find(|(k, _, _)| k == key))
                .map(|(_, _, p)| p)
                .collect();
            (*key, label.clone(), all)
        })
        .collect();
    let med = |ps: &[&Phase], f: fn(&Phase) -> f64| median(ps.iter().map(|p| f(p)).collect());
    // Each run's raw baseline ran next to its eddy phases, under the same
    // conditions: compare within runs, then take the median ratio.
    let raw_runs: Option<Vec<f64>> = phases
        .iter()
        .find(|(k, _, _)| *k == "raw_")
        .map(|(_, _, ps)| ps.iter().map(|p| p.rate).collect());

    let mut table = vec![[
        "phase".to_owned(),
        rate_unit.to_owned(),
        "p50 ms".into(),
        "p99 ms".into(),
        "p99.9 ms".into(),
        "max ms".into(),
        "vs raw".into(),
        "peak RSS MB".into(),
        "client CPU us/msg".into(),
        "redis CPU us/msg".into(),
    ]];
    let mut per_run = Vec::new();
    for (key, label, ps) in &phases {
        let rate = med(ps, |p| p.rate);
        // A fixed-rate phase runs at the rate asked, not as fast as it can.
        let vs_raw = raw_runs
            .as_ref()
            .filter(|_| !matches!(*key, "raw_" | "rate_"))
            .map(|raw| median(ps.iter().zip(raw).map(|(p, r)| p.rate / r).collect()));
        let lat = |f: fn(&Phase) -> f64| med(ps, f);
        let (p50, p99, p999, max) = (
            lat(|p| p.latency.p50_ms),
            lat(|p| p.latency.p99_ms),
            lat(|p| p.latency.p999_ms),
            lat(|p| p.latency.max_ms),
        );
        // A peak is the highest of the runs, not their median: the first run
        // of a process peaks highest (the allocator grows its heap then).
        let rss = ps.iter().map(|p| p.peak_rss_mb).fold(f64::NAN, f64::max);
        let client_cpu = med(ps, |p| p.client_cpu_us);
        let redis_cpu = med(ps, |p| p.redis_cpu_us);
        machine.insert(format!("{key}{rate_key}"), round(rate, 0));
        if scenario == Scenario::Rpc && key.is_empty() {
            machine.insert("msgs_per_s".into(), round(rate, 0));
        }
        machine.insert(format!("{key}p50_ms"), round(p50, 3));
        machine.insert(format!("{key}p99_ms"), round(p99, 3));
        machine.insert(format!("{key}p999_ms"), round(p999, 3));
        machine.insert(format!("{key}max_ms"), round(max, 3));
        machine.insert(format!("{key}peak_rss_mb"), round(rss, 1));
        machine.insert(format!("{key}client_cpu_us_per_msg"), round(client_cpu, 2));
        machine.insert(format!("{key}redis_cpu_us_per_msg"), round(redis_cpu, 2));
        if let Some(v) = vs_raw {
            machine.insert(format!("{key}vs_raw"), round(v, 3));
        }
        if *key == "raw_" && scenario == Scenario::Bus {
            // The name for the baseline, whatever the unit.
            machine.insert("raw_msgs_per_s".into(), round(rate, 0));
        }
        if scenario == Scenario::Rpc && *key == "raw_" {
            machine.insert("raw_msgs_per_s".into(), round(rate, 0));
        }
        machine.insert(
            format!("{key}{rate_key}_runs"),
            Value::Array(ps.iter().map(|p| round(p.rate, 0)).collect()),
        );
        per_run.push(format!(
            "{label}: {}",
            ps.iter()
                .map(|p| thousands(p.rate))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        table.push([
            label.clone(),
            thousands(rate),
            fixed(p50),
            fixed(p99),
            fixed(p999),
            fixed(max),
            vs_raw.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
            format!("{rss:.1}"),
            fixed_to(client_cpu, 1),
            fixed_to(redis_cpu, 1),
        ]);
    }
    for (key, first_value) in &first.extra {
        // An idle figure means something only in the first run: later runs
        // start in a process that has already been under load, and the
        // allocator keeps some of what that load used.
        let v = if key.starts_with("idle_") {
            *first_value
        } else {
            median(
                runs.iter()
                    .filter_map(|r| r.extra.iter().find(|(k, _)| k == key))
                    .map(|(_, v)| *v)
                    .collect(),
            )
        };
        // A ratio needs more digits than a size in MB.
        let digits = if key.starts_with("vs_") { 3 } else { 1 };
        machine.insert((*key).to_owned(), round(v, digits));
    }
    let mut human = format!(
        "eddy bench {} on {} ({})\n",
        scenario.name(),
        header["engine"].as_str().unwrap_or_default(),
        header
            .get("redis_version")
            .and_then(Value::as_str)
            .map_or_else(
                || "embedded".to_owned(),
                |v| format!("Redis {v}, {}", header["url"].as_str().unwrap_or_default())
            ),
    );
    let settings: Vec<String> = header
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "scenario" | "engine" | "url" | "redis_version" | "eddy_version"
            )
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    human.push_str(&settings.join(" "));
    human.push_str("\n\n");
    human.push_str(&render(&table));
    if runs.len() > 1 {
        human.push_str(&format!(
            "\nmedians of {} runs; per run ({rate_unit}):\n",
            runs.len()
        ));
        for line in per_run {
            human.push_str(&format!("  {line}\n"));
        }
    }
    for (key, _) in &first.extra {
        if let Some(v) = machine.get(*key) {
            human.push_str(&format!("{key}: {v}\n"));
        }
    }
    human.push('\n');
    (machine, human)
}

fn fixed(x: f64) -> String {
    fixed_to(x, 3)
}

fn fixed_to(x: f64, digits: usize) -> String {
    if x.is_finite() {
        format!("{x:.digits$}")
    } else {
        "-".to_owned()
    }
}

/// 123456.7 as `123,457`.
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Columns padded to their widest cell: the label left-aligned, figures
/// right-aligned.
fn render<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c == 0 {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            } else {
                line.push_str(&format!("  {cell:>w$}", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_figures() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
