//! eddy-chaos: push many messages through several consumer processes while
//! injecting faults, then print the report of `RELIABILITY.md` ("What a
//! fault-test report shows").
//!
//! ```text
//! cargo run --release -p eddy-testkit --bin chaos -- --messages 100000
//! cargo run -p eddy-testkit --bin chaos -- --short     # CI: 5,000 messages, < 60 s
//! cargo run -p eddy-testkit --bin chaos -- --help
//! ```
//!
//! It starts its own redis-server (AOF, `appendfsync always` unless told
//! otherwise) in a temporary directory, runs C consumer processes (this
//! program again, as `chaos worker`: eddy's consumer loop) and sends N
//! messages with unique ids, a few of them markers that always fail (to the
//! DLQ after the maximum deliveries) or are rejected (to the DLQ at once).
//! While messages flow it injects faults, each once the run has made a
//! further share of its progress: SIGKILL a consumer and restart it, SIGTERM
//! one (it must exit 0), kill -9 Redis and restart it on its AOF, freeze Redis
//! (SIGSTOP, SIGCONT), and cut every client connection (`CLIENT KILL TYPE
//! normal`). Then it waits for the queue to drain, stops the consumers, checks
//! the final state in Redis itself and prints the report and one JSON line.
//! Exit status 1 if a confirmed message was lost, a delivered one was never
//! sent, something is left pending or unread, the DLQ is not exactly the
//! marker messages, or a consumer did not exit 0 on SIGTERM.
//!
//! Accounting: each consumer process appends one line per handled delivery to
//! a file of its own, with one unbuffered write (which survives SIGKILL),
//! before its handler returns. A message counts as acknowledged when a
//! handler returned `Ack` for it; a consumer killed between that and the
//! batched XACK sees the message delivered again: a duplicate, not a loss.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::engine::redis::RedisOptions;
use eddy::queue::consumer::{self, Backoff, ConsumerOptions, ConsumerStats};
use eddy::Fail;
use eddy::{EddyBuilder, EntryId, ErrorKind, Message};
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

const QUEUE: &str = "chaos";

const USAGE: &str = "\
eddy-chaos: push messages through consumer processes while injecting faults,
then print the fault-test report of RELIABILITY.md (and one JSON line).

Usage: chaos [--short] [OPTIONS]

Options (defaults: full run; --short in brackets):
  --short                  the CI preset: 5000 messages, 3 consumers, 6 faults
  --messages N             messages to send                      100000 [5000]
  --consumers C            consumer processes                         4 [3]
  --faults F               faults to inject (kinds in rotation)      12 [6]
  --duration-limit DUR     give up (and fail) after this long      600s [55s]
  --appendfsync POLICY     always | everysec | no                    always
  --visibility-timeout DUR reclaim a silent consumer's messages after   1s
  --concurrency N          handlers per consumer process                 16
  --max-deliveries N       deliveries before the DLQ                      4
  --poison N               messages that always fail                100 [10]
  --rejects N              messages the handler rejects             100 [10]
  --killers N              messages that abort their process every time 0 [2]
                           (matrix row 11; see the report's notes)
  --pause DUR              how long Redis stays frozen (SIGSTOP)       3s [2500ms]
  --rate N                 messages sent per second (0: no limit)   2500 [300]
  --work DUR               mean time a handler takes (0 to 2x it)  10ms [30ms]
  --batch N                messages per atomic send                 50 [10]
  --senders N              sends in flight                                4
  --keep-dir               keep the temporary directory (worker logs)
Durations: 500ms, 2s, 1m, or a bare number of seconds.

Exit status 0 only if lost = 0, unexpected = 0, final pending and lag are 0,
the DLQ holds exactly the marker messages, and consumers exit 0 on SIGTERM.";

// ---------------------------------------------------------------------------
// Configuration

#[derive(Debug, Clone)]
struct Config {
    preset: &'static str,
    messages: u64,
    consumers: usize,
    faults: usize,
    duration_limit: Duration,
    appendfsync: String,
    visibility: Duration,
    claim_interval: Duration,
    concurrency: usize,
    max_deliveries: u64,
    poison: u64,
    rejects: u64,
    killers: u64,
    pause: Duration,
    redis_down: Duration,
    rate: u64,
    work: Duration,
    batch: usize,
    senders: usize,
    keep_dir: bool,
}

impl Config {
    fn full() -> Self {
        Self {
            preset: "full",
            messages: 100_000,
            consumers: 4,
            faults: 12,
            duration_limit: Duration::from_secs(600),
            appendfsync: "always".into(),
            visibility: Duration::from_secs(1),
            claim_interval: Duration::from_millis(500),
            concurrency: 16,
            max_deliveries: 4,
            poison: 100,
            rejects: 100,
            killers: 0,
            pause: Duration::from_secs(3),
            redis_down: Duration::from_millis(500),
            rate: 2_500,
            work: Duration::from_millis(10),
            batch: 50,
            senders: 4,
            keep_dir: false,
        }
    }

    fn short() -> Self {
        Self {
            preset: "short",
            messages: 5_000,
            consumers: 3,
            faults: 6,
            duration_limit: Duration::from_secs(55),
            poison: 10,
            rejects: 10,
            killers: 2,
            pause: Duration::from_millis(2500),
            rate: 300,
            work: Duration::from_millis(30),
            batch: 10,
            ..Self::full()
        }
    }

    fn parse(args: &[String]) -> Result<Self, String> {
        let mut c = if args.iter().any(|a| a == "--short") {
            Self::short()
        } else {
            Self::full()
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--short" => {}
                "--keep-dir" => c.keep_dir = true,
                "--messages" => c.messages = number(value()?)?,
                "--consumers" => c.consumers = number(value()?)?,
                "--faults" => c.faults = number(value()?)?,
                "--duration-limit" => c.duration_limit = duration(value()?)?,
                "--appendfsync" => {
                    c.appendfsync = value()?.to_owned();
                    if !matches!(c.appendfsync.as_str(), "always" | "everysec" | "no") {
                        return Err("--appendfsync is always, everysec or no".into());
                    }
                }
                "--visibility-timeout" => c.visibility = duration(value()?)?,
                "--concurrency" => c.concurrency = number(value()?)?,
                "--max-deliveries" => c.max_deliveries = number(value()?)?,
                "--poison" => c.poison = number(value()?)?,
                "--rejects" => c.rejects = number(value()?)?,
                "--killers" => c.killers = number(value()?)?,
                "--pause" => c.pause = duration(value()?)?,
                "--rate" => c.rate = number(value()?)?,
                "--work" => c.work = duration(value()?)?,
                "--batch" => c.batch = number(value()?)?,
                "--senders" => c.senders = number(value()?)?,
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        if c.messages == 0 || c.consumers == 0 || c.batch == 0 || c.senders == 0 {
            return Err("--messages, --consumers, --batch and --senders must be at least 1".into());
        }
        if c.poison + c.rejects + c.killers > c.messages / 4 {
            return Err("markers (--poison, --rejects, --killers) must be at most a quarter of the messages".into());
        }
        if c.visibility < Duration::from_millis(100) || c.concurrency == 0 || c.max_deliveries == 0
        {
            return Err("--visibility-timeout must be at least 100ms; --concurrency and --max-deliveries at least 1".into());
        }
        Ok(c)
    }
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))
}

fn duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| format!("`{s}` is not a duration"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: use ms, s or m")),
    };
    if !(0.0..1e7).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

// ---------------------------------------------------------------------------
// Messages

/// What a message asks of its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Handled and acknowledged.
    Ok,
    /// The handler always fails: dead-lettered after the maximum deliveries.
    Poison,
    /// The handler rejects it: dead-lettered at once.
    Reject,
    /// The handler aborts its process, every time.
    Killer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Poison => "poison",
            Kind::Reject => "reject",
            Kind::Killer => "killer",
        }
    }

    /// Markers, spread evenly over the run, each kind at its own offset.
    fn of(i: u64, c: &Config) -> Kind {
        let marker = |count: u64, offset: u64| {
            count > 0 && {
                let stride = (c.messages / count).max(1);
                i / stride < count && i % stride == stride * offset / 8
            }
        };
        if marker(c.killers, 6) {
            Kind::Killer
        } else if marker(c.poison, 4) {
            Kind::Poison
        } else if marker(c.rejects, 2) {
            Kind::Reject
        } else {
            Kind::Ok
        }
    }
}

fn uid(i: u64) -> String {
    format!("m{i}")
}

fn parse_uid(s: &str, messages: u64) -> Option<u64> {
    s.strip_prefix('m')?.parse().ok().filter(|i| *i < messages)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---------------------------------------------------------------------------
// The worker: one consumer process

struct WorkerArgs {
    url: String,
    name: String,
    log: PathBuf,
    visibility: Duration,
    claim_interval: Duration,
    concurrency: usize,
    max_deliveries: u64,
    work: Duration,
}

impl WorkerArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let get = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
                .ok_or_else(|| format!("worker: missing {flag}"))
        };
        Ok(Self {
            url: get("--url")?,
            name: get("--name")?,
            log: get("--log")?.into(),
            visibility: Duration::from_millis(number(&get("--visibility-ms")?)?),
            claim_interval: Duration::from_millis(number(&get("--claim-ms")?)?),
            concurrency: number(&get("--concurrency")?)?,
            max_deliveries: number(&get("--max-deliveries")?)?,
            work: Duration::from_micros(number(&get("--work-us")?)?),
        })
    }
}

/// One line, one unbuffered write: it survives the process being killed.
fn record(log: &Mutex<File>, line: &str) -> io::Result<()> {
    lock(log).write_all(line.as_bytes())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn worker(a: WorkerArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .try_init();
    // Registered first: from here on SIGTERM means "finish and exit 0".
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.log)
        .map_err(|e| format!("open {}: {e}", a.log.display()))?;
    let log = Arc::new(Mutex::new(log));
    // A plain thread: a read of tokio's stdin would hold up the runtime's
    // shutdown until the pipe closed.
    thread::spawn(|| {
        let mut buf = [0u8; 64];
        while matches!(io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        eprintln!("worker: the coordinator is gone; exiting");
        std::process::exit(3);
    });
    let pid = std::process::id();
    record(&log, &format!("S {} {pid} {}\n", a.name, now_ms())).map_err(|e| e.to_string())?;

    // Redis may be down or frozen right now (a fault): keep trying.
    let options = RedisOptions::default()
        .connect_attempts(3)
        .response_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let queue = loop {
        let opened = async {
            let mq = EddyBuilder::new(&a.url)
                .redis_options(options.clone())
                .open()
                .await?;
            mq.queue(QUEUE).await
        };
        match opened.await {
            Ok(q) => break q,
            Err(e) if started.elapsed() < Duration::from_secs(60) => {
                eprintln!("worker {}: not connected yet: {e}", a.name);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(format!("cannot open the queue: {e}")),
        }
    };

    let handler_log = log.clone();
    let work_us = a.work.as_micros() as u64;
    let handler = move |msg: Message| {
        let log = handler_log.clone();
        async move {
            // Some work, so that faults find messages in flight.
            if work_us > 0 {
                let us = rand::random_range(0..2 * work_us);
                tokio::time::sleep(Duration::from_micros(us)).await;
            }
            let field = |k: &str| msg.data.get(k).and_then(Value::as_str).unwrap_or("-");
            let (tag, outcome) = match field("kind") {
                "ok" => ('A', Ok(())),
                "poison" => (
                    'F',
                    Err(Fail::retry("poison marker: this message always fails")),
                ),
                "reject" => ('R', Err(Fail::reject("reject marker: invalid by design"))),
                "killer" => ('K', Err(Fail::retry("unreachable: the process aborts"))),
                _ => ('X', Err(Fail::reject("not a chaos message"))),
            };
            let line = format!(
                "{tag} {} {} {} {}\n",
                field("uid"),
                msg.id,
                msg.delivery_count,
                now_ms()
            );
            if let Err(e) = record(&log, &line) {
                return Err(Fail::retry(format!("cannot record the delivery: {e}")));
            }
            if tag == 'K' {
                std::process::abort();
            }
            outcome
        }
    };
    let opts = ConsumerOptions::new()
        .name(a.name.clone())
        .concurrency(a.concurrency)
        .visibility_timeout(a.visibility)
        .claim_interval(a.claim_interval)
        .max_deliveries(a.max_deliveries)
        .backoff(Backoff::new(Duration::from_millis(100), a.visibility))
        .shutdown_timeout(Duration::from_secs(10));
    let stats = Arc::new(ConsumerStats::default());
    let shutdown = async move {
        terminate.recv().await;
    };
    consumer::run_with_stats(queue, opts, handler, shutdown, stats.clone())
        .await
        .map_err(|e| e.to_string())?;
    let n = |c: &AtomicU64| ConsumerStats::get(c);
    record(
        &log,
        &format!(
            "E {} {} {} {} {} {} {}\n",
            n(&stats.delivered),
            n(&stats.redelivered),
            n(&stats.acked),
            n(&stats.retried),
            n(&stats.dead_lettered),
            n(&stats.errors),
            now_ms()
        ),
    )
    .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// Consumer processes, seen from the coordinator

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExitCause {
    /// We sent SIGKILL (a fault).
    Killed,
    /// We sent SIGTERM (a fault, or the end of the run).
    Terminated,
    /// It exited on its own (a killer message, or a start-up failure).
    OnItsOwn,
}

#[derive(Debug)]
struct WorkerExit {
    name: String,
    cause: ExitCause,
    status: Option<ExitStatus>,
}

impl WorkerExit {
    fn describe(&self) -> String {
        match self.status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (_, Some(sig)) => format!("signal {sig}"),
                _ => s.to_string(),
            },
            None => "did not exit in time; killed".into(),
        }
    }
}

struct Running {
    child: Child,
    name: String,
}

struct Workers {
    exe: PathBuf,
    dir: PathBuf,
    url: String,
    cfg: Config,
    slots: Vec<Option<Running>>,
    started: usize,
    exits: Vec<WorkerExit>,
    stopping: bool,
}

impl Workers {
    fn spawn(&mut self, slot: usize) -> io::Result<()> {
        self.started += 1;
        let name = format!("w{slot}-{}", self.started);
        let stderr = File::create(self.dir.join(format!("{name}.err")))?;
        let child = Command::new(&self.exe)
            .arg("worker")
            .args(["--url", &self.url, "--name", &name, "--log"])
            .arg(self.dir.join(format!("{name}.log")))
            .args([
                "--visibility-ms",
                &self.cfg.visibility.as_millis().to_string(),
            ])
            .args([
                "--claim-ms",
                &self.cfg.claim_interval.as_millis().to_string(),
            ])
            .args(["--concurrency", &self.cfg.concurrency.to_string()])
            .args(["--max-deliveries", &self.cfg.max_deliveries.to_string()])
            .args(["--work-us", &self.cfg.work.as_micros().to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // The worker exits when this pipe closes: no orphans if the
            // coordinator dies.
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        self.slots[slot] = Some(Running { child, name });
        Ok(())
    }

    /// SIGKILL the consumer in `slot`; returns its name.
    fn kill(&mut self, slot: usize) -> Option<String> {
        let mut w = self.slots[slot].take()?;
        let _ = w.child.kill();
        let status = w.child.wait().ok();
        self.exits.push(WorkerExit {
            name: w.name.clone(),
            cause: ExitCause::Killed,
            status,
        });
        Some(w.name)
    }

    /// SIGTERM the consumers in `slots` and wait for them (SIGKILL after
    /// `within`); returns each one's exit record index.
    fn terminate(&mut self, slots: &[usize], within: Duration) -> Vec<usize> {
        let mut waiting = Vec::new();
        for &slot in slots {
            if let Some(w) = self.slots[slot].take() {
                let _ = signal(w.child.id(), "TERM");
                waiting.push(w);
            }
        }
        let deadline = Instant::now() + within;
        let mut done = Vec::new();
        while !waiting.is_empty() {
            let mut i = 0;
            while i < waiting.len() {
                if let Ok(Some(status)) = waiting[i].child.try_wait() {
                    let w = waiting.swap_remove(i);
                    done.push((w.name, Some(status)));
                } else if Instant::now() >= deadline {
                    let mut w = waiting.swap_remove(i);
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    done.push((w.name, None));
                } else {
                    i += 1;
                }
            }
            thread::sleep(Duration::from_millis(10));
        }
        done.into_iter()
            .map(|(name, status)| {
                self.exits.push(WorkerExit {
                    name,
                    cause: ExitCause::Terminated,
                    status,
                });
                self.exits.len() - 1
            })
            .collect()
    }

    /// Restart consumers that exited on their own.
    fn reap(&mut self) -> io::Result<()> {
        for slot in 0..self.slots.len() {
            let exited = match self.slots[slot].as_mut() {
                Some(w) => w.child.try_wait()?,
                None => continue,
            };
            if let Some(status) = exited {
                if let Some(w) = self.slots[slot].take() {
                    self.exits.push(WorkerExit {
                        name: w.name,
                        cause: ExitCause::OnItsOwn,
                        status: Some(status),
                    });
                }
                if !self.stopping {
                    self.spawn(slot)?;
                }
            }
        }
        Ok(())
    }

    /// SIGKILL every consumer still running (on an early exit).
    fn kill_all(&mut self) {
        self.stopping = true;
        for slot in 0..self.slots.len() {
            self.kill(slot);
        }
    }

    fn name(&self, slot: usize) -> Option<String> {
        self.slots[slot].as_ref().map(|w| w.name.clone())
    }
}

fn signal(pid: u32, name: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -s {name} {pid}: {status}")))
    }
}

// ---------------------------------------------------------------------------
// The producer

const ATTEMPTED: u8 = 1;
const CONFIRMED: u8 = 2;
const FAILED: u8 = 4;
const UNKNOWN: u8 = 8;

/// Send outcomes, per attempt and per message.
struct Sends {
    flags: Vec<AtomicU8>,
    attempted: AtomicU64,
    confirmed: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
    /// A sample error message per outcome class, with its count.
    errors: Mutex<BTreeMap<(String, String), u64>>,
    finished_ms: AtomicU64,
}

impl Sends {
    fn new(n: u64) -> Self {
        Self {
            flags: (0..n).map(|_| AtomicU8::new(0)).collect(),
            attempted: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            finished_ms: AtomicU64::new(0),
        }
    }

    fn mark(&self, range: std::ops::Range<u64>, flag: u8) {
        for i in range {
            self.flags[i as usize].fetch_or(flag, Ordering::Relaxed);
        }
    }

    fn has(&self, i: u64, flag: u8) -> bool {
        self.flags[i as usize].load(Ordering::Relaxed) & flag != 0
    }
}

/// Whether a failed send certainly wrote nothing, or its outcome is unknown.
fn certainly_not_written(e: &eddy::Error) -> bool {
    match e.kind() {
        // The connection was refused, or the server was still loading its
        // data and refused the command: it never ran.
        ErrorKind::Unavailable => {
            let m = e.message().to_ascii_lowercase();
            m.contains("refused") || m.contains("loading")
        }
        ErrorKind::OutOfMemory
        | ErrorKind::QueueFull
        | ErrorKind::QueueNotFound
        | ErrorKind::WrongType
        | ErrorKind::ReadOnly
        | ErrorKind::PermissionDenied => true,
        // Timeouts and connections lost mid-call: it may have been written.
        _ => false,
    }
}

async fn produce(
    url: String,
    cfg: Config,
    sends: Arc<Sends>,
    abort: Arc<AtomicBool>,
) -> Result<(), String> {
    let mq = EddyBuilder::new(&url)
        .redis_options(
            RedisOptions::default()
                .connect_attempts(5)
                .response_timeout(Duration::from_secs(2)),
        )
        .open()
        .await
        .map_err(|e| e.to_string())?;
    let queue = mq.queue(QUEUE).await.map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicU64::new(0));
    let began = tokio::time::Instant::now();
    let mut lanes = Vec::new();
    for _ in 0..cfg.senders {
        let (queue, cfg, sends, abort, next) = (
            queue.clone(),
            cfg.clone(),
            sends.clone(),
            abort.clone(),
            next.clone(),
        );
        lanes.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(cfg.batch as u64, Ordering::Relaxed);
                if start >= cfg.messages {
                    return;
                }
                if cfg.rate > 0 {
                    let due = Duration::from_secs_f64(start as f64 / cfg.rate as f64);
                    tokio::time::sleep_until(began + due).await;
                }
                let range = start..(start + cfg.batch as u64).min(cfg.messages);
                let payloads: Vec<Value> = range
                    .clone()
                    .map(|i| json!({ "uid": uid(i), "kind": Kind::of(i, &cfg).name(), "n": i }))
                    .collect();
                let n = payloads.len() as u64;
                let mut pause = Duration::from_millis(20);
                loop {
                    if abort.load(Ordering::Relaxed) {
                        return;
                    }
                    sends.mark(range.clone(), ATTEMPTED);
                    sends.attempted.fetch_add(n, Ordering::Relaxed);
                    match queue.send_batch(&payloads).await {
                        Ok(_) => {
                            sends.mark(range.clone(), CONFIRMED);
                            sends.confirmed.fetch_add(n, Ordering::Relaxed);
                            break;
                        }
                        Err(e) => {
                            let (class, flag, counter) = if certainly_not_written(&e) {
                                ("failed", FAILED, &sends.failed)
                            } else {
                                ("unknown", UNKNOWN, &sends.unknown)
                            };
                            sends.mark(range.clone(), flag);
                            counter.fetch_add(n, Ordering::Relaxed);
                            let mut text = e.message().to_owned();
                            text.truncate(100);
                            *lock(&sends.errors)
                                .entry((class.to_owned(), text))
                                .or_default() += 1;
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(1));
                        }
                    }
                }
            }
        }));
    }
    for lane in lanes {
        lane.await.map_err(|e| e.to_string())?;
    }
    sends.finished_ms.store(now_ms(), Ordering::Relaxed);
    Ok(())
}

// ---------------------------------------------------------------------------
// Looking at Redis directly (sync connections with short timeouts)

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(conn)
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: Option<&redis::Value>) -> Option<u64> {
    match v? {
        redis::Value::Int(i) => u64::try_from(*i).ok(),
        v => text(v)?.parse().ok(),
    }
}

fn pairs(v: &redis::Value) -> HashMap<String, redis::Value> {
    match v {
        redis::Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| Some((text(&kv[0])?, kv.get(1)?.clone())))
            .collect(),
        redis::Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v.clone())))
            .collect(),
        _ => HashMap::new(),
    }
}

/// The group's state as Redis reports it.
#[derive(Debug, Clone, Default)]
struct GroupState {
    /// XPENDING's count.
    xpending: u64,
    /// XINFO GROUPS `pending`.
    pending: u64,
    /// XINFO GROUPS `lag`; `None` when Redis cannot tell (after deletions).
    lag: Option<u64>,
    /// Entries after `last-delivered-id`, counted with XRANGE.
    unread: u64,
    length: u64,
}

fn group_state(
    conn: &mut redis::Connection,
    stream: &str,
    group: &str,
) -> redis::RedisResult<GroupState> {
    let xpending: redis::Value = redis::cmd("XPENDING").arg(stream).arg(group).query(conn)?;
    let xpending = match &xpending {
        redis::Value::Array(v) => int(v.first()).unwrap_or(0),
        _ => 0,
    };
    let groups: redis::Value = redis::cmd("XINFO").arg("GROUPS").arg(stream).query(conn)?;
    let g = match &groups {
        redis::Value::Array(gs) => gs
            .iter()
            .map(pairs)
            .find(|g| g.get("name").and_then(text).as_deref() == Some(group)),
        _ => None,
    }
    .unwrap_or_default();
    let last = g
        .get("last-delivered-id")
        .and_then(text)
        .unwrap_or_else(|| "0-0".into());
    let mut unread = 0;
    let mut cursor = format!("({last}");
    loop {
        let batch: Vec<redis::Value> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&cursor)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(conn)?;
        unread += batch.len() as u64;
        match batch.last() {
            Some(redis::Value::Array(e)) if batch.len() == 10_000 => {
                cursor = format!("({}", e.first().and_then(text).unwrap_or_default());
            }
            _ => break,
        }
    }
    let length: u64 = redis::cmd("XLEN").arg(stream).query(conn)?;
    Ok(GroupState {
        xpending,
        pending: int(g.get("pending")).unwrap_or(0),
        lag: int(g.get("lag")),
        unread,
        length,
    })
}

/// One pending entry: id, consumer, delivery count.
#[derive(Debug, Clone)]
struct Pending {
    id: String,
    consumer: String,
    /// Milliseconds since its last delivery (or lease extension).
    idle_ms: u64,
    deliveries: u64,
}

fn pending_entries(url: &str, stream: &str, group: &str) -> redis::RedisResult<Vec<Pending>> {
    let mut conn = connect(url)?;
    let rows: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query(&mut conn)?;
    Ok(rows
        .iter()
        .filter_map(|r| match r {
            redis::Value::Array(c) => Some(Pending {
                id: text(c.first()?)?,
                consumer: text(c.get(1)?)?,
                idle_ms: int(c.get(2))?,
                deliveries: int(c.get(3))?,
            }),
            _ => None,
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Faults

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FaultKind {
    ConsumerKill,
    RedisKill,
    ClientKill,
    RedisPause,
    ConsumerTerm,
}

const ROTATION: [FaultKind; 5] = [
    FaultKind::ConsumerKill,
    FaultKind::RedisKill,
    FaultKind::ClientKill,
    FaultKind::RedisPause,
    FaultKind::ConsumerTerm,
];

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            FaultKind::ConsumerKill => "consumer SIGKILL + restart",
            FaultKind::RedisKill => "redis kill -9 + restart on AOF",
            FaultKind::ClientKill => "CLIENT KILL TYPE normal",
            FaultKind::RedisPause => "redis SIGSTOP/SIGCONT",
            FaultKind::ConsumerTerm => "consumer SIGTERM + restart",
        }
    }

    fn key(self) -> &'static str {
        match self {
            FaultKind::ConsumerKill => "consumer_sigkill",
            FaultKind::RedisKill => "redis_kill9_restart",
            FaultKind::ClientKill => "client_kill",
            FaultKind::RedisPause => "redis_pause",
            FaultKind::ConsumerTerm => "consumer_sigterm",
        }
    }
}

#[derive(Debug)]
struct Fault {
    kind: FaultKind,
    /// When the fault began.
    started_ms: u64,
    /// When its effect was complete: the consumer dead, Redis back, the
    /// connections cut. Redelivery latency is measured from here.
    at_ms: u64,
    /// The consumer it hit.
    target: Option<String>,
    /// Entries pending just before it.
    pending_before: Vec<Pending>,
    detail: String,
    /// For SIGTERM: the consumer's exit record.
    exit: Option<usize>,
}

/// Counts handled deliveries by reading only what consumers appended since
/// the last look.
#[derive(Default)]
struct Progress {
    offsets: HashMap<PathBuf, u64>,
    lines: u64,
}

impl Progress {
    fn update(&mut self, dir: &Path) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return self.lines;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "log") {
                continue;
            }
            let offset = self.offsets.entry(path.clone()).or_default();
            let Ok(mut f) = File::open(&path) else {
                continue;
            };
            if f.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() {
                // Only whole lines; a partial one is counted next time.
                let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
                self.lines += buf[..end].iter().filter(|b| **b == b'\n').count() as u64;
                *offset += end as u64;
            }
        }
        self.lines
    }
}

struct Run {
    cfg: Config,
    url: String,
    stream: String,
    group: String,
    dir: PathBuf,
    deadline: Instant,
    abort: Arc<AtomicBool>,
    sends: Arc<Sends>,
}

impl Run {
    fn out_of_time(&self) -> bool {
        if Instant::now() >= self.deadline {
            self.abort.store(true, Ordering::Relaxed);
        }
        self.abort.load(Ordering::Relaxed)
    }
}

/// Inject `cfg.faults` faults, fault k once the run is k/(F+1) of the way
/// (half sends confirmed, half deliveries handled) and at least the
/// visibility timeout plus the claim interval plus 500 ms after the previous
/// one ended.
fn inject_faults(
    run: &Run,
    redis: &Mutex<RedisServer>,
    workers: &Mutex<Workers>,
) -> Result<Vec<Fault>, String> {
    let cfg = &run.cfg;
    let mut faults = Vec::new();
    let mut progress = Progress::default();
    let mut last_end = Instant::now();
    // Long enough for a dead consumer's messages to be taken over before the
    // next fault, so each fault's redelivery latency is its own.
    let gap = cfg.visibility + cfg.claim_interval + Duration::from_millis(500);
    let mut victim = 0;
    for k in 0..cfg.faults {
        let kind = ROTATION[k % ROTATION.len()];
        let threshold = (k + 1) as f64 / (cfg.faults + 1) as f64;
        loop {
            if run.out_of_time() {
                return Ok(faults);
            }
            let handled = progress.update(&run.dir) as f64;
            let confirmed = run.sends.confirmed.load(Ordering::Relaxed) as f64;
            let done = (handled.min(cfg.messages as f64) + confirmed) / (2 * cfg.messages) as f64;
            if done >= threshold && last_end.elapsed() >= gap {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let pending_before = pending_entries(&run.url, &run.stream, &run.group).unwrap_or_default();
        let started_ms = now_ms();
        let mut fault = Fault {
            kind,
            started_ms,
            at_ms: started_ms,
            target: None,
            pending_before,
            detail: String::new(),
            exit: None,
        };
        match kind {
            FaultKind::ConsumerKill | FaultKind::ConsumerTerm => {
                let mut w = lock(workers);
                w.reap().map_err(|e| format!("restart a consumer: {e}"))?;
                // The consumer holding the most messages, so the fault
                // catches some in flight (in turn when none holds any).
                let held = |slot: usize| {
                    let name = w.name(slot);
                    fault
                        .pending_before
                        .iter()
                        .filter(|p| Some(&p.consumer) == name.as_ref())
                        .count()
                };
                let slot = (0..cfg.consumers)
                    .map(|i| (i + victim) % cfg.consumers)
                    .max_by_key(|s| held(*s))
                    .unwrap_or(0);
                victim += 1;
                fault.target = w.name(slot);
                if kind == FaultKind::ConsumerKill {
                    w.kill(slot);
                    fault.detail = format!("SIGKILLed {}", fault.target.as_deref().unwrap_or("?"));
                } else {
                    let exit = w.terminate(&[slot], Duration::from_secs(20));
                    fault.exit = exit.first().copied();
                    let how = fault.exit.map_or("?".into(), |i| w.exits[i].describe());
                    fault.detail = format!(
                        "SIGTERMed {}: {how} after {} ms",
                        fault.target.as_deref().unwrap_or("?"),
                        now_ms() - started_ms
                    );
                }
                fault.at_ms = now_ms();
                w.spawn(slot)
                    .map_err(|e| format!("restart a consumer: {e}"))?;
            }
            FaultKind::RedisKill => {
                let mut r = lock(redis);
                r.kill().map_err(|e| format!("kill redis: {e}"))?;
                thread::sleep(cfg.redis_down);
                r.restart().map_err(|e| format!("restart redis: {e}"))?;
                fault.at_ms = now_ms();
                fault.detail = format!("down {} ms, pid now {}", fault.at_ms - started_ms, r.pid());
            }
            FaultKind::RedisPause => {
                let mut r = lock(redis);
                r.pause().map_err(|e| format!("pause redis: {e}"))?;
                thread::sleep(cfg.pause);
                r.resume().map_err(|e| format!("resume redis: {e}"))?;
                fault.at_ms = now_ms();
                fault.detail = format!("frozen {} ms", fault.at_ms - started_ms);
            }
            FaultKind::ClientKill => {
                let r = lock(redis);
                let killed = r
                    .redis_cli(["CLIENT", "KILL", "TYPE", "normal"])
                    .map_err(|e| format!("CLIENT KILL: {e}"))?;
                fault.at_ms = now_ms();
                fault.detail = format!("{killed} connections cut");
            }
        }
        fault.detail += &format!("; {} pending before", fault.pending_before.len());
        eprintln!(
            "chaos: fault {}/{}: {} ({})",
            k + 1,
            cfg.faults,
            kind.name(),
            fault.detail
        );
        faults.push(fault);
        last_end = Instant::now();
    }
    Ok(faults)
}

// ---------------------------------------------------------------------------
// The analysis

/// One handled delivery, from a consumer's file.
struct Handled {
    tag: u8,
    index: Option<u64>,
    entry: String,
    deliveries: u64,
    at_ms: u64,
}

fn read_records(dir: &Path, messages: u64) -> io::Result<(Vec<Handled>, Vec<String>)> {
    let mut handled = Vec::new();
    let mut stats = Vec::new();
    for e in fs::read_dir(dir)? {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "log") {
            continue;
        }
        for line in BufReader::new(File::open(&path)?).lines() {
            let line = line?;
            let f: Vec<&str> = line.split(' ').collect();
            match f.first().copied() {
                Some("E") => stats.push(line.clone()),
                Some("A" | "F" | "R" | "K" | "X") if f.len() == 5 => handled.push(Handled {
                    tag: f[0].as_bytes()[0],
                    index: parse_uid(f[1], messages),
                    entry: f[2].to_owned(),
                    deliveries: f[3].parse().unwrap_or(0),
                    at_ms: f[4].parse().unwrap_or(0),
                }),
                _ => {}
            }
        }
    }
    handled.sort_by_key(|h| h.at_ms);
    Ok((handled, stats))
}

/// A DLQ entry: which message, and the reason of its last failure.
struct DeadLetter {
    index: Option<u64>,
    reason: String,
}

fn reason_class(reason: &str) -> &'static str {
    if reason.contains("reject marker") {
        "rejected by the handler"
    } else if reason.contains("max_deliveries") && reason.contains("none recorded") {
        "max deliveries: no handler ever finished (process died)"
    } else if reason.contains("max_deliveries") {
        "max deliveries: the handler failed every time"
    } else {
        "other"
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn latency_json(v: &mut [u64]) -> Value {
    v.sort_unstable();
    json!({
        "n": v.len(),
        "min": v.first(),
        "p50": (!v.is_empty()).then(|| percentile(v, 0.5)),
        "p95": (!v.is_empty()).then(|| percentile(v, 0.95)),
        "max": v.last(),
    })
}

fn latency_text(v: &Value) -> String {
    if v["n"] == 0 {
        return "none".into();
    }
    format!(
        "n {}, min {} ms, p50 {} ms, p95 {} ms, max {} ms",
        v["n"], v["min"], v["p50"], v["p95"], v["max"]
    )
}

// ---------------------------------------------------------------------------
// The coordinator

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return run_worker(&args[1..]);
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cfg = match Config::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match coordinate(cfg) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_worker(args: &[String]) -> ExitCode {
    let result = WorkerArgs::parse(args).and_then(|a| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(worker(a))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn coordinate(cfg: Config) -> Result<bool, String> {
    let t0 = Instant::now();
    let t0_ms = now_ms();
    let dir = tempfile::Builder::new()
        .prefix("eddy-chaos-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let redis = RedisServer::builder()
        .appendonly(true)
        .arg("--appendfsync", &cfg.appendfsync)
        .start()
        .map_err(|e| e.to_string())?;
    let url = redis.url();
    let version = redis
        .redis_cli(["INFO", "server"])
        .ok()
        .and_then(|i| {
            i.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let redis = Arc::new(Mutex::new(redis));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (keys, dlq) = rt
        .block_on(async {
            let mq = eddy::Eddy::open(&url).await?;
            mq.create_queue_pair(QUEUE).await
        })
        .map_err(|e| e.to_string())?;
    let (stream, group) = (keys.keys().stream.clone(), keys.keys().group.clone());
    drop(keys);

    let run = Arc::new(Run {
        cfg: cfg.clone(),
        url: url.clone(),
        stream: stream.clone(),
        group: group.clone(),
        dir: dir.path().to_path_buf(),
        deadline: t0 + cfg.duration_limit,
        abort: Arc::new(AtomicBool::new(false)),
        sends: Arc::new(Sends::new(cfg.messages)),
    });
    eprintln!(
        "chaos: {} messages, {} consumers, {} faults; redis {version} at {url}, appendfsync {}; logs in {}",
        cfg.messages,
        cfg.consumers,
        cfg.faults,
        cfg.appendfsync,
        dir.path().display()
    );

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let workers = Arc::new(Mutex::new(Workers {
        exe,
        dir: dir.path().to_path_buf(),
        url: url.clone(),
        cfg: cfg.clone(),
        slots: (0..cfg.consumers).map(|_| None).collect(),
        started: 0,
        exits: Vec::new(),
        stopping: false,
    }));
    let supervising = Arc::new(AtomicBool::new(true));
    let _cleanup = Cleanup {
        workers: workers.clone(),
        supervising: supervising.clone(),
    };
    for slot in 0..cfg.consumers {
        lock(&workers).spawn(slot).map_err(|e| e.to_string())?;
    }
    let supervisor = {
        let (workers, supervising) = (workers.clone(), supervising.clone());
        thread::spawn(move || {
            while supervising.load(Ordering::Relaxed) {
                if let Err(e) = lock(&workers).reap() {
                    eprintln!("chaos: cannot restart a consumer: {e}");
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let sending_started = Instant::now();
    let producer = rt.spawn(produce(
        url.clone(),
        cfg.clone(),
        run.sends.clone(),
        run.abort.clone(),
    ));
    let injector = {
        let (run, redis, workers) = (run.clone(), redis.clone(), workers.clone());
        thread::spawn(move || inject_faults(&run, &redis, &workers))
    };
    let faults = injector
        .join()
        .map_err(|_| "the fault injector panicked".to_owned())?;
    let faults = match faults {
        Ok(f) => f,
        Err(e) => {
            run.abort.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    // The producer stops by itself, or at the deadline.
    let watchdog = {
        let run = run.clone();
        rt.spawn(async move {
            while !run.out_of_time() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let produced = rt.block_on(producer);
    watchdog.abort();
    let sending = sending_started.elapsed();
    let producer_error = match produced {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(e.to_string()),
    };
    if let Some(e) = producer_error {
        eprintln!("chaos: producer: {e}");
        run.abort.store(true, Ordering::Relaxed);
    }

    // Drain: wait until Redis shows nothing pending and nothing unread, four
    // times in a row.
    let drain_started = Instant::now();
    let mut calm = 0;
    while calm < 4 && !run.out_of_time() {
        let state = connect(&url).and_then(|mut c| group_state(&mut c, &stream, &group));
        match state {
            Ok(s) if s.xpending == 0 && s.pending == 0 && s.unread == 0 => calm += 1,
            _ => calm = 0,
        }
        thread::sleep(Duration::from_millis(250));
    }
    let drain = drain_started.elapsed();

    // Stop the consumers the clean way; each must exit 0.
    supervising.store(false, Ordering::Relaxed);
    let _ = supervisor.join();
    let final_exits = {
        let mut w = lock(&workers);
        w.stopping = true;
        let _ = w.reap();
        let slots: Vec<usize> = (0..cfg.consumers).collect();
        w.terminate(&slots, Duration::from_secs(20))
    };

    // The final state, from Redis itself.
    let final_state = connect(&url)
        .and_then(|mut c| group_state(&mut c, &stream, &group))
        .map_err(|e| format!("final XPENDING/XINFO: {e}"))?;
    // The queue handle's connection may have died with Redis while idle: its
    // first command then fails and reconnects, so try a few times.
    let read_dlq = || {
        rt.block_on(async {
            let mut out = Vec::new();
            let mut from = EntryId::MIN;
            loop {
                let batch = dlq.peek_from(from, 1000).await?;
                let Some(last) = batch.last().map(|m| m.id) else {
                    break;
                };
                for m in &batch {
                    out.push(DeadLetter {
                        index: m
                            .data
                            .get("uid")
                            .and_then(Value::as_str)
                            .and_then(|u| parse_uid(u, cfg.messages)),
                        reason: m
                            .failures()
                            .last()
                            .map(|f| f.reason.clone())
                            .unwrap_or_default(),
                    });
                }
                from = last.next();
            }
            Ok::<_, eddy::Error>(out)
        })
    };
    let mut dead_letters = read_dlq();
    for _ in 0..5 {
        if dead_letters.is_ok() {
            break;
        }
        thread::sleep(Duration::from_millis(200));
        dead_letters = read_dlq();
    }
    let dead_letters = dead_letters.map_err(|e| format!("read the DLQ: {e}"))?;

    let (handled, worker_stats) =
        read_records(dir.path(), cfg.messages).map_err(|e| format!("read worker logs: {e}"))?;
    let w = lock(&workers);
    let report = Report {
        cfg: &cfg,
        version: &version,
        sends: &run.sends,
        handled: &handled,
        dead_letters: &dead_letters,
        faults: &faults,
        exits: &w.exits,
        final_exits: &final_exits,
        started: w.started,
        final_state: &final_state,
        worker_stats: worker_stats.len(),
        timings: (t0.elapsed(), sending, drain),
        t0_ms,
        timed_out: run.abort.load(Ordering::Relaxed),
    };
    let pass = report.print();
    drop(w);
    if !pass || cfg.keep_dir {
        let kept = dir.keep();
        eprintln!("chaos: worker logs kept in {}", kept.display());
    }
    Ok(pass)
}

/// On every way out of the run: stop restarting consumers and SIGKILL any
/// still running.
struct Cleanup {
    workers: Arc<Mutex<Workers>>,
    supervising: Arc<AtomicBool>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.supervising.store(false, Ordering::Relaxed);
        lock(&self.workers).kill_all();
    }
}

struct Report<'a> {
    cfg: &'a Config,
    version: &'a str,
    sends: &'a Sends,
    handled: &'a [Handled],
    dead_letters: &'a [DeadLetter],
    faults: &'a [Fault],
    exits: &'a [WorkerExit],
    final_exits: &'a [usize],
    started: usize,
    final_state: &'a GroupState,
    worker_stats: usize,
    timings: (Duration, Duration, Duration),
    t0_ms: u64,
    timed_out: bool,
}

impl Report<'_> {
    /// Print the report and the JSON line; returns whether the run passed.
    fn print(&self) -> bool {
        let cfg = self.cfg;
        let n = cfg.messages;
        let kind = |i: u64| Kind::of(i, cfg);

        // Per message: handled deliveries, acknowledgements and the entries
        // they were acknowledged from.
        let mut deliveries = vec![0u32; n as usize];
        let mut acks: Vec<Vec<&str>> = vec![Vec::new(); n as usize];
        // A message seen under two stream entries was stored twice: a send
        // with an unknown outcome had in fact been written.
        let mut first_entry: Vec<Option<&str>> = vec![None; n as usize];
        let mut stored_twice = vec![false; n as usize];
        let mut unexpected = BTreeSet::new();
        let mut redelivered = 0u64;
        let mut by_entry: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
        let mut entry_kind: HashMap<&str, Kind> = HashMap::new();
        for h in self.handled {
            if h.deliveries > 1 {
                redelivered += 1;
            }
            by_entry
                .entry(h.entry.as_str())
                .or_default()
                .push((h.deliveries, h.at_ms));
            match h.index {
                Some(i) if self.sends.has(i, ATTEMPTED) => {
                    deliveries[i as usize] += 1;
                    entry_kind.insert(h.entry.as_str(), kind(i));
                    match first_entry[i as usize] {
                        None => first_entry[i as usize] = Some(h.entry.as_str()),
                        Some(e) if e != h.entry => stored_twice[i as usize] = true,
                        Some(_) => {}
                    }
                    if h.tag == b'A' {
                        acks[i as usize].push(h.entry.as_str());
                    }
                }
                _ => {
                    unexpected.insert(h.entry.clone());
                }
            }
        }
        let mut dlq_reasons: BTreeMap<&str, u64> = BTreeMap::new();
        let mut dlq_samples: BTreeMap<&str, &str> = BTreeMap::new();
        let mut in_dlq = vec![0u32; n as usize];
        for d in self.dead_letters {
            let class = reason_class(&d.reason);
            *dlq_reasons.entry(class).or_default() += 1;
            dlq_samples.entry(class).or_insert(d.reason.as_str());
            match d.index {
                Some(i) if self.sends.has(i, ATTEMPTED) => in_dlq[i as usize] += 1,
                _ => {
                    unexpected.insert(format!("dlq:{}", d.reason));
                }
            }
        }

        let mut confirmed_messages = 0u64;
        let mut unknown_messages = 0u64;
        let mut unknown_written = 0u64;
        let mut recovered = 0u64;
        let mut never_confirmed = 0u64;
        let mut delivered_unique = 0u64;
        let mut acked_unique = 0u64;
        let mut lost = Vec::new();
        let mut lost_never_delivered = 0u64;
        let (mut dup_same_entry, mut dup_resent) = (0u64, 0u64);
        let mut dlq_wrong = Vec::new();
        let mut dlq_missing = Vec::new();
        let mut dlq_twice = 0u64;
        let mut markers = BTreeMap::new();
        for i in 0..n {
            let k = kind(i);
            let idx = i as usize;
            if k != Kind::Ok {
                *markers.entry(k.name()).or_insert(0u64) += 1;
            }
            let confirmed = self.sends.has(i, CONFIRMED);
            confirmed_messages += u64::from(confirmed);
            if self.sends.has(i, UNKNOWN) {
                unknown_messages += 1;
                unknown_written += u64::from(stored_twice[idx]);
                recovered += u64::from(!self.sends.has(i, CONFIRMED) && deliveries[idx] > 0);
            }
            if self.sends.has(i, ATTEMPTED) && !confirmed {
                never_confirmed += 1;
            }
            delivered_unique += u64::from(deliveries[idx] > 0);
            acked_unique += u64::from(!acks[idx].is_empty());
            if acks[idx].len() > 1 {
                let mut entries = acks[idx].clone();
                entries.sort_unstable();
                entries.dedup();
                let extra = acks[idx].len() as u64 - 1;
                let resent = entries.len() as u64 - 1;
                dup_resent += resent;
                dup_same_entry += extra - resent;
            }
            if confirmed && acks[idx].is_empty() && in_dlq[idx] == 0 {
                lost.push(i);
                lost_never_delivered += u64::from(deliveries[idx] == 0);
            }
            dlq_twice += u64::from(in_dlq[idx].saturating_sub(1));
            match (k, in_dlq[idx] > 0) {
                (Kind::Ok, true) => dlq_wrong.push(i),
                (Kind::Ok, false) | (_, true) => {}
                (_, false) if confirmed => dlq_missing.push(i),
                (_, false) => {}
            }
        }
        let duplicates = dup_same_entry + dup_resent;
        let dup_rate = duplicates as f64 / acked_unique.max(1) as f64;
        let dlq_exact = dlq_wrong.is_empty() && dlq_missing.is_empty();

        // Faults and what they did.
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        let mut latency: BTreeMap<FaultKind, (u64, u64, Vec<u64>)> = BTreeMap::new();
        let mut resumed: BTreeMap<FaultKind, Vec<u64>> = BTreeMap::new();
        let times: Vec<u64> = self.handled.iter().map(|h| h.at_ms).collect();
        for f in self.faults {
            *by_kind.entry(f.kind.key()).or_default() += 1;
            let (held, again, lat) = latency.entry(f.kind).or_default();
            for p in &f.pending_before {
                if f.target.as_ref().is_some_and(|t| *t != p.consumer) {
                    continue;
                }
                if entry_kind.get(p.id.as_str()) != Some(&Kind::Ok) {
                    continue; // markers are retried by design, not by the fault
                }
                if p.idle_ms >= cfg.visibility.as_millis() as u64 {
                    continue; // already due for reclaim before the fault
                }
                *held += 1;
                let next = by_entry.get(p.id.as_str()).and_then(|recs| {
                    recs.iter()
                        .filter(|(d, t)| *d > p.deliveries && *t >= f.started_ms)
                        .map(|(_, t)| *t)
                        .min()
                });
                if let Some(t) = next {
                    *again += 1;
                    lat.push(t.saturating_sub(f.at_ms));
                }
            }
            if matches!(
                f.kind,
                FaultKind::RedisKill | FaultKind::RedisPause | FaultKind::ClientKill
            ) {
                let i = times.partition_point(|t| *t < f.at_ms);
                if let Some(t) = times.get(i) {
                    resumed.entry(f.kind).or_default().push(t - f.at_ms);
                }
            }
        }
        let kinds = by_kind.len();
        let bound = (cfg.visibility + cfg.claim_interval).as_millis() as u64;
        let mut latency_by_kind = serde_json::Map::new();
        for (k, (held, again, lat)) in &mut latency {
            let mut l = latency_json(lat);
            l["held"] = json!(held);
            l["redelivered"] = json!(again);
            latency_by_kind.insert(k.key().into(), l);
        }
        let mut resumed_by_kind = serde_json::Map::new();
        for (k, v) in &mut resumed {
            resumed_by_kind.insert(k.key().into(), latency_json(v));
        }
        let max_latency = latency
            .values()
            .flat_map(|(_, _, l)| l.iter().copied())
            .max();

        let count = |c: ExitCause| self.exits.iter().filter(|e| e.cause == c).count();
        let sigterm_exits: Vec<&WorkerExit> = self
            .faults
            .iter()
            .filter_map(|f| f.exit)
            .chain(self.final_exits.iter().copied())
            .map(|i| &self.exits[i])
            .collect();
        let clean_exits = sigterm_exits
            .iter()
            .filter(|e| e.status.is_some_and(|s| s.success()))
            .count();
        let on_own: Vec<String> = self
            .exits
            .iter()
            .filter(|e| e.cause == ExitCause::OnItsOwn)
            .map(|e| format!("{} ({})", e.name, e.describe()))
            .collect();

        let s = self.final_state;
        let lag = s.lag.unwrap_or(s.unread);
        let faults_ok = self.faults.len() >= cfg.faults;
        let checks = [
            ("lost = 0", lost.is_empty()),
            ("unexpected = 0", unexpected.is_empty()),
            ("final pending = 0", s.xpending == 0 && s.pending == 0),
            ("final lag = 0", lag == 0 && s.unread == 0),
            ("DLQ = the marker messages", dlq_exact),
            (
                "consumers exit 0 on SIGTERM",
                clean_exits == sigterm_exits.len(),
            ),
            ("every fault injected", faults_ok),
            ("within the duration limit", !self.timed_out),
        ];
        let pass = checks.iter().all(|(_, ok)| *ok);

        let (total, sending, drain) = self.timings;
        let sends = self.sends;
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let dead_total = self.dead_letters.len() as u64;
        let handled_total = self.handled.len() as u64;

        println!("eddy chaos run ({} preset)", cfg.preset);
        println!(
            "  {n} messages ({} markers: {}), {} consumer processes x {} handlers, visibility timeout {} ms, claim interval {} ms, max deliveries {}",
            markers.values().sum::<u64>(),
            markers
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", "),
            cfg.consumers,
            cfg.concurrency,
            cfg.visibility.as_millis(),
            cfg.claim_interval.as_millis(),
            cfg.max_deliveries
        );
        let durability = match cfg.appendfsync.as_str() {
            "always" => "every confirmed write is on disk before the reply: no loss accepted",
            "everysec" => "a Redis crash may lose about the last second of confirmed writes (operator's choice)",
            _ => "the OS decides when to write: a Redis crash may lose confirmed writes (operator's choice)",
        };
        println!(
            "  redis {} with AOF, appendfsync {} ({durability})",
            self.version, cfg.appendfsync
        );
        println!(
            "  {:.1} s in all: sending {:.1} s, draining {:.1} s after the last send",
            total.as_secs_f64(),
            sending.as_secs_f64(),
            drain.as_secs_f64()
        );
        println!(
            "sends (per message attempt; a failed or unknown send is retried until confirmed)"
        );
        println!("  attempted           {:>9}", ld(&sends.attempted));
        println!("  confirmed           {:>9}   ({confirmed_messages} unique messages; never confirmed: {never_confirmed})", ld(&sends.confirmed));
        println!(
            "  failed with error   {:>9}   (certainly not written: connection refused, server loading)",
            ld(&sends.failed)
        );
        println!(
            "  unknown outcome     {:>9}   (timeout or connection lost mid-call; {unknown_messages} messages: {unknown_written} of them had in fact been written, so are stored twice; {recovered} delivered though never confirmed)",
            ld(&sends.unknown)
        );
        for ((class, text), count) in lock(&sends.errors).iter().take(8) {
            println!("      {class:<7} x{count:<5} {text}");
        }
        println!("delivery");
        println!(
            "  handled deliveries  {handled_total:>9}   ({redelivered} with delivery count > 1)"
        );
        println!("  unique delivered    {delivered_unique:>9}");
        println!("  acknowledged        {acked_unique:>9}   (unique messages whose handler returned Ack)");
        println!("  dead-lettered       {dead_total:>9}");
        for (class, count) in &dlq_reasons {
            println!(
                "      {count:>6}  {class}  (e.g. \"{}\")",
                dlq_samples[class]
            );
        }
        println!(
            "  LOST                {:>9}   (confirmed, neither acknowledged nor dead-lettered; {lost_never_delivered} never delivered){}",
            lost.len(),
            if lost.is_empty() { String::new() } else { format!(" e.g. {:?}", &lost[..lost.len().min(10)]) }
        );
        println!(
            "  UNEXPECTED          {:>9}   (delivered or dead-lettered, never sent){}",
            unexpected.len(),
            if unexpected.is_empty() {
                String::new()
            } else {
                format!(" e.g. {:?}", unexpected.iter().take(5).collect::<Vec<_>>())
            }
        );
        println!(
            "  duplicates          {duplicates:>9}   ({:.3}% of acknowledged messages: {dup_same_entry} the same entry redelivered, {dup_resent} from resent sends)",
            100.0 * dup_rate
        );
        println!(
            "faults injected: {} of {} kinds (asked for {})",
            self.faults.len(),
            kinds,
            cfg.faults
        );
        for (k, v) in &by_kind {
            println!("  {v:>3}  {k}");
        }
        for (i, f) in self.faults.iter().enumerate() {
            println!(
                "      #{:<2} +{:>6.1} s  {:<32} {}",
                i + 1,
                f.started_ms.saturating_sub(self.t0_ms) as f64 / 1000.0,
                f.kind.name(),
                f.detail
            );
        }
        println!(
            "redelivery after faults (V = {} ms; a dead consumer's messages are due within V + claim interval = {bound} ms)\n  held: messages in flight at the fault (held by the consumer hit, or by any for Redis faults; not yet due for reclaim)",
            cfg.visibility.as_millis()
        );
        for (k, v) in &latency_by_kind {
            println!(
                "  {k:<22} held {:>4}, redelivered {:>4}; latency after the fault: {}",
                v["held"],
                v["redelivered"],
                latency_text(v)
            );
        }
        println!(
            "processing resumed after Redis faults (first handled delivery after Redis was back)"
        );
        for (k, v) in &resumed_by_kind {
            println!("  {k:<22} {}", latency_text(v));
        }
        println!(
            "consumer processes: {} started; {} SIGKILLed, {} SIGTERMed ({clean_exits} of {} exited 0), {} exited on their own{}; {} wrote final stats",
            self.started,
            count(ExitCause::Killed),
            count(ExitCause::Terminated),
            sigterm_exits.len(),
            on_own.len(),
            if on_own.is_empty() { String::new() } else { format!(": {}", on_own.join(", ")) },
            self.worker_stats
        );
        println!(
            "final state (from Redis): XPENDING {}, XINFO GROUPS pending {}, lag {} (unread after last-delivered-id: {}), stream length {}; DLQ {} entries, exactly the markers: {}{}",
            s.xpending,
            s.pending,
            s.lag.map_or("nil".into(), |l| l.to_string()),
            s.unread,
            s.length,
            dead_total,
            if dlq_exact { "yes" } else { "NO" },
            if dlq_exact {
                String::new()
            } else {
                format!(
                    " (non-markers in the DLQ: {} e.g. {:?}; confirmed markers missing: {} e.g. {:?})",
                    dlq_wrong.len(),
                    &dlq_wrong[..dlq_wrong.len().min(5)],
                    dlq_missing.len(),
                    &dlq_missing[..dlq_missing.len().min(5)]
                )
            }
        );
        if dlq_twice > 0 {
            println!(
                "  ({dlq_twice} markers are in the DLQ twice: sent twice after an unknown outcome)"
            );
        }
        if cfg.killers > 0 {
            println!("  note: a killer message aborts its process; messages read in the same batch die with it once and come back after the visibility timeout, where the consumer loop runs every unexplained redelivery alone (after the acknowledgements of everything else are written), so only the killer itself reaches the DLQ");
        }
        println!(
            "checks: {}",
            checks
                .iter()
                .map(|(name, ok)| format!("{name} {}", if *ok { "ok" } else { "FAILED" }))
                .collect::<Vec<_>>()
                .join("; ")
        );
        println!("RESULT: {}", if pass { "PASS" } else { "FAIL" });

        let line = json!({
            "report": "eddy-chaos",
            "pass": pass,
            "preset": cfg.preset,
            "messages": n,
            "consumers": cfg.consumers,
            "visibility_timeout_ms": cfg.visibility.as_millis() as u64,
            "appendfsync": cfg.appendfsync,
            "redis_version": self.version,
            "duration_s": (total.as_secs_f64() * 10.0).round() / 10.0,
            "sends": {
                "attempted": ld(&sends.attempted),
                "confirmed": ld(&sends.confirmed),
                "failed": ld(&sends.failed),
                "unknown": ld(&sends.unknown),
                "confirmed_messages": confirmed_messages,
                "unknown_messages": unknown_messages,
                "unknown_messages_written": unknown_written,
                "recovered": recovered,
                "never_confirmed": never_confirmed,
            },
            "handled_deliveries": handled_total,
            "redeliveries": redelivered,
            "delivered": delivered_unique,
            "acknowledged": acked_unique,
            "dead_lettered": { "total": dead_total, "by_reason": dlq_reasons },
            "lost": lost.len(),
            "unexpected": unexpected.len(),
            "duplicates": {
                "count": duplicates,
                "rate": dup_rate,
                "same_entry_redelivered": dup_same_entry,
                "resent": dup_resent,
            },
            "faults": { "total": self.faults.len(), "kinds": kinds, "by_kind": by_kind },
            "redelivery_latency_ms": latency_by_kind,
            "redelivery_bound_ms": bound,
            "redelivery_max_ms": max_latency,
            "resumed_after_redis_fault_ms": resumed_by_kind,
            "consumers_started": self.started,
            "sigterm_exits": { "total": sigterm_exits.len(), "clean": clean_exits },
            "final": {
                "xpending": s.xpending,
                "pending": s.pending,
                "lag": s.lag,
                "unread": s.unread,
                "dlq_entries": dead_total,
                "dlq_exact": dlq_exact,
            },
            "checks": checks.iter().map(|(k, ok)| (k.to_string(), json!(ok))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{line}");
        let _ = io::stdout().flush();
        pass
    }
}
