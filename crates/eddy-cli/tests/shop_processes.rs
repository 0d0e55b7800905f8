//! The shop as four OS processes (`eddy shop SERVICE`) on a redis-server of
//! the test's own: orders go in over order-service's HTTP API,
//! payment-service is killed with SIGKILL while it is paying and started
//! again, and every order still reaches a final state — with the events of
//! each process reaching the services in the others.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use eddy_testkit::conformance::metrics::sample;
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

const ORDERS: usize = 200;
/// Orders placed before payment-service is killed.
const BEFORE_KILL: usize = 100;
/// The whole test must finish within this.
const BUDGET: Duration = Duration::from_secs(58);
/// payment-service pays 4 orders at a time, 100 ms each (40 orders/s), so
/// it is still busy with the first orders when it is killed.
const PAYMENT_ARGS: [&str; 10] = [
    "--visibility-timeout",
    "2s",
    "--seed",
    "7",
    "--failure-rate",
    "0.2",
    "--delay",
    "100ms",
    "--concurrency",
    "4",
];
const SERVICES: [&str; 4] = [
    "order-service",
    "payment-service",
    "shipping-service",
    "notification-service",
];
const POLL: Duration = Duration::from_millis(20);

/// One `eddy shop SERVICE` process: its stdout lines are collected as they
/// come; stderr goes to a file.
struct Proc {
    name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: PathBuf,
}

impl Proc {
    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Wait until a stdout line satisfies `pred`; return it.
    fn wait_line(&mut self, deadline: Instant, pred: impl Fn(&str) -> bool) -> String {
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status} before it was ready", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in time; stdout: {:?}",
                self.name,
                self.lines()
            );
            thread::sleep(POLL);
        }
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    fn terminate(&mut self, deadline: Instant) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -s TERM {}", self.name);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit after SIGTERM",
                self.name
            );
            thread::sleep(POLL);
        }
    }
}

/// Every process the test started; all are killed (SIGKILL) on drop, and
/// their stderr is printed if the test failed.
struct Procs {
    url: String,
    dir: tempfile::TempDir,
    procs: Vec<Proc>,
    started: usize,
}

impl Procs {
    fn new(url: String) -> Self {
        Self {
            url,
            dir: tempfile::tempdir().unwrap(),
            procs: Vec::new(),
            started: 0,
        }
    }

    /// Start `eddy --url URL shop NAME ARGS...`; returns its index.
    fn spawn(&mut self, name: &str, args: &[&str]) -> usize {
        self.started += 1;
        let stderr = self
            .dir
            .path()
            .join(format!("{}-{name}.stderr", self.started));
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["--url", &self.url, "shop", name])
            .args(args)
            .env_remove("EDDY_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("run the eddy binary");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (pipe, lines) = (child.stdout.take().unwrap(), stdout.clone());
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                match line {
                    Ok(l) => lines.lock().unwrap().push(l),
                    Err(_) => break,
                }
            }
        });
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            stdout,
            stderr,
        });
        self.procs.len() - 1
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if thread::panicking() {
            for p in &self.procs {
                let log = fs::read_to_string(&p.stderr).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {} stderr (last 40 lines) ---", p.name);
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// One request on a connection of its own (`eddy_testkit::http`);
/// the status and the JSON body.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let answer = eddy_testkit::http::request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        &body,
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        !answer
            .head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        answer.head
    );
    let json =
        serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body));
    (answer.status, json)
}

/// GET /metrics; the Prometheus text.
fn scrape(addr: &str) -> String {
    let answer =
        eddy_testkit::http::request(addr, "GET", "/metrics", &[], "", Duration::from_secs(10))
            .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.head);
    answer.body
}

fn order_body(i: usize) -> Value {
    json!({
        "order_id": format!("T-{i:04}"),
        "user_id": format!("user-{}", 1000 + i % 37),
        "items": [
            {"product_id": "P-1002", "name": "Wireless mouse", "price": 24.5, "quantity": 1 + i % 3},
            {"product_id": "P-1005", "name": "Laptop stand", "price": 32.75, "quantity": 1},
        ],
    })
}

fn post_orders(addr: &str, range: std::ops::RangeInclusive<usize>) {
    for i in range {
        let (status, reply) = http(addr, "POST", "/orders", Some(&order_body(i)));
        assert_eq!(status, 201, "{reply}");
        assert_eq!(reply["order_id"], format!("T-{i:04}"));
    }
}

fn by_status(addr: &str) -> Value {
    let (status, list) = http(addr, "GET", "/orders?status=created", None);
    assert_eq!(status, 200, "{list}");
    list["by_status"].clone()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// `eddy queue info` of a queue under the bus prefix, as JSON: the same on
/// every topology.
fn bus_queue_info(url: &str, queue: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "--url", url, "--prefix", "events:", "--json", "queue", "info", queue,
        ])
        .env_remove("EDDY_URL")
        .output()
        .expect("run eddy queue info");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("queue info is JSON")
}

/// Entries pending (delivered, not acknowledged) in a service's queue.
fn pending(url: &str, service: &str) -> u64 {
    n(&bus_queue_info(url, &format!("sub:{service}")), "pending")
}

fn wait_until(deadline: Instant, what: &str, mut cond: impl FnMut() -> bool) {
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(POLL);
    }
}

fn stderr_of(p: &Proc) -> String {
    fs::read_to_string(Path::new(&p.stderr)).unwrap_or_default()
}

#[test]
fn four_processes_survive_a_killed_payment_service() {
    let redis = RedisServer::start().expect("redis-server");
    four_processes_survive_a_killed_payment_service_on(&redis.url());
}

#[test]
fn four_processes_survive_a_killed_payment_service_on_a_cluster() {
    let cluster = eddy_testkit::RedisCluster::start(3, 1).expect("a 3-master cluster");
    four_processes_survive_a_killed_payment_service_on(&cluster.url());
}

#[test]
fn four_processes_survive_a_killed_payment_service_through_sentinel() {
    let sentinel = eddy_testkit::RedisSentinel::start(1, 3).expect("a Sentinel deployment");
    four_processes_survive_a_killed_payment_service_on(&sentinel.url());
}

fn four_processes_survive_a_killed_payment_service_on(url: &str) {
    let t0 = Instant::now();
    let deadline = t0 + BUDGET;
    let mut procs = Procs::new(url.to_owned());

    // Everything that listens first, so no event is published before its
    // subscribers' routes exist.
    let notify = procs.spawn("notification-service", &[]);
    let ship = procs.spawn(
        "shipping-service",
        &["--seed", "7", "--metrics-listen", "127.0.0.1:0"],
    );
    let mut pay = procs.spawn("payment-service", &PAYMENT_ARGS);
    let order = procs.spawn("order-service", &["--listen", "127.0.0.1:0"]);
    for i in [notify, ship, pay] {
        let name = procs.procs[i].name.clone();
        let ready = procs.procs[i].wait_line(deadline, |l| l.contains(": running on redis"));
        assert!(ready.starts_with(&format!("{name}: ")), "{ready}");
    }
    let said = procs.procs[ship].wait_line(deadline, |l| l.contains("metrics on http://"));
    let metrics_addr = said
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap()
        .to_owned();
    let ready = procs.procs[order].wait_line(deadline, |l| l.contains("listening on http://"));
    let addr = ready
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let started = t0.elapsed();

    // The first half, then kill payment-service while it is paying them.
    post_orders(&addr, 1..=BEFORE_KILL);
    wait_until(deadline, "20 orders are paid", || {
        let s = by_status(&addr);
        n(&s, "paid") + n(&s, "payment_failed") + n(&s, "shipped") >= 20
    });
    procs.procs[pay].child.kill().unwrap(); // SIGKILL
    procs.procs[pay].child.wait().unwrap();
    let killed_at = Instant::now();
    let at_kill = by_status(&addr);
    assert!(
        n(&at_kill, "created") > 0,
        "payment-service was killed after it paid everything: {at_kill}"
    );
    let stranded = pending(url, "payment-service");

    pay = procs.spawn("payment-service", &PAYMENT_ARGS);
    procs.procs[pay].wait_line(deadline, |l| l.contains(": running on redis"));
    post_orders(&addr, BEFORE_KILL + 1..=ORDERS);

    // Every order final. Events the killed process held come back after
    // the visibility timeout (2 s, set in PAYMENT_ARGS).
    wait_until(deadline, "every order is final", || {
        let s = by_status(&addr);
        n(&s, "shipped") + n(&s, "payment_failed") == ORDERS as u64
    });
    let finished_after = killed_at.elapsed();
    let (status, list) = http(&addr, "GET", "/orders", None);
    assert_eq!(status, 200);
    assert_eq!(list["count"], ORDERS);
    let orders = list["orders"].as_array().unwrap();
    let (mut shipped, mut failed) = (0, 0);
    for (i, o) in (1..=ORDERS).zip(orders) {
        assert_eq!(o["order_id"], format!("T-{i:04}"), "{o}");
        assert_eq!(o["user_id"], format!("user-{}", 1000 + i % 37), "{o}");
        assert_eq!(o["adopted"], false, "{o}");
        assert!(o["payment_id"].as_str().unwrap().starts_with("PAY-"), "{o}");
        match o["status"].as_str().unwrap() {
            "shipped" => {
                shipped += 1;
                assert_eq!(o["payment_status"], "succeeded", "{o}");
                let tracking = o["tracking_number"].as_str().unwrap();
                assert!(
                    tracking.starts_with("TRACK-") && tracking.len() == 14,
                    "{o}"
                );
                let carrier = o["carrier"].as_str().unwrap();
                assert!(["FedEx", "UPS", "USPS", "DHL"].contains(&carrier), "{o}");
                assert!(o["shipped_at"].as_f64().is_some(), "{o}");
            }
            "payment_failed" => {
                failed += 1;
                assert_eq!(o["payment_status"], "failed", "{o}");
                assert!(o["tracking_number"].is_null(), "{o}");
            }
            other => panic!("order not final: {other}: {o}"),
        }
    }
    assert!(
        shipped > 0 && failed > 0,
        "{shipped} shipped, {failed} failed"
    );
    let (status, one) = http(&addr, "GET", "/orders/T-0001", None);
    assert_eq!((status, &one["order_id"]), (200, &json!("T-0001")));
    assert_eq!(http(&addr, "GET", "/orders/T-9999", None).0, 404);

    // notification-service heard every order's creation (from
    // order-service) and its outcome (from payment- or shipping-service).
    wait_until(deadline, "every order's notifications are printed", || {
        let lines = procs.procs[notify].lines();
        (1..=ORDERS).all(|i| {
            let id = format!("T-{i:04}");
            let created = format!("Order {id} created for user");
            let failed = format!("for order {id} failed");
            let shipped = format!("Order {id} shipped via");
            lines.iter().any(|l| l.starts_with(&created))
                && lines
                    .iter()
                    .any(|l| l.contains(&failed) || l.starts_with(&shipped))
        })
    });
    // Nothing stuck or dead-lettered anywhere.
    wait_until(deadline, "every queue is drained", || {
        SERVICES.iter().all(|s| pending(url, s) == 0)
    });
    for s in SERVICES {
        let dlq = bus_queue_info(url, &format!("sub:{s}:dlq"));
        assert_eq!(n(&dlq, "length"), 0, "{s} dead-lettered events");
    }

    // shipping-service's own /metrics saw the same: every payment outcome
    // handled, a shipment published per shipped order, nothing waiting.
    let text = scrape(&metrics_addr);
    let payments = [
        ("service", "shipping-service"),
        ("event_type", "PaymentProcessedEvent"),
        ("outcome", "handled"),
    ];
    let handled = sample(&text, "eddy_events_handled_total", &payments).unwrap();
    assert!(handled >= ORDERS as f64, "{handled} handled:\n{text}");
    let shipments = [("event_type", "OrderShippedEvent")];
    let published = sample(&text, "eddy_events_published_total", &shipments).unwrap();
    assert!(
        published >= shipped as f64,
        "{published} published:\n{text}"
    );
    let queue = [("queue", "sub:shipping-service")];
    for gauge in [
        "eddy_queue_ready_messages",
        "eddy_queue_unacknowledged_messages",
        "eddy_queue_dead_letter_messages",
    ] {
        assert_eq!(sample(&text, gauge, &queue), Some(0.0), "{gauge}:\n{text}");
    }
    assert_eq!(
        sample(&text, "eddy_queue_consumers", &queue),
        Some(1.0),
        "{text}"
    );

    // SIGTERM: each stops gracefully and exits 0.
    for i in [order, pay, ship, notify] {
        let status = procs.procs[i].terminate(deadline);
        let p = &procs.procs[i];
        assert!(
            status.success(),
            "{} exited with {status}: {}",
            p.name,
            stderr_of(p)
        );
        let last = p.lines().last().cloned().unwrap_or_default();
        assert!(last.starts_with(&format!("{}: stopped", p.name)), "{last}");
    }
    eprintln!(
        "{ORDERS} orders: {shipped} shipped, {failed} payment_failed; services up in {:.1}s; \
         payment-service killed with {} orders awaiting payment, {stranded} events in its hands; \
         all final {:.1}s after the kill; {:.1}s in all",
        started.as_secs_f64(),
        n(&at_kill, "created"),
        finished_after.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
