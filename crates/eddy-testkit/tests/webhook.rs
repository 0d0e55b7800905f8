//! Webhooks and request/reply (`eddy::webhook`).
//!
//! - Interop with LeanMQ 0.2's `LeanMQWebhook`, both ways, against a
//!   redis-server of the test's own: the real `leanmq` package runs the small
//!   scripts in `tests/webhook/*.py` (JSON lines on stdout). Python is found
//!   as `$EDDY_PYTHON`, else `<workspace>/.venv/bin/python`, and must
//!   `import leanmq` (0.2.x); these tests fail with set-up instructions when
//!   it cannot, they are never skipped:
//!
//!   ```text
//!   python3 -m venv .venv && .venv/bin/pip install leanmq==0.2.0
//!   ```
//!
//! - Request/reply, retries and dead-lettering on both engines: every test in
//!   `on_both_engines!` runs once on `memory://` and once on Redis.
//!
//! - Figures, not assertions: `request_reply_latency` (ignored by default)
//!   prints request/reply p50/p99 on both engines:
//!
//!   ```text
//!   cargo test --release -p eddy-testkit --test webhook -- --ignored --nocapture latency
//!   ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy::engine::SharedEngine;
use eddy::queue::consumer::{Backoff, ConsumerOptions};
use eddy::webhook::{queue_name, Delivery, Webhook};
use eddy::ErrorKind;
use eddy::Fail;
use eddy_testkit::RedisServer;
use serde_json::{json, Map, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------
// Harness: engines, Python
// ---------------------------------------------------------------------------

/// An engine for one test. On memory the webhooks of a test share one
/// embedded engine; on Redis each opens its own connections, as separate
/// processes would.
struct Env {
    url: String,
    memory: Option<SharedEngine>,
    _server: Option<RedisServer>,
}

impl Env {
    async fn memory() -> Self {
        Self {
            url: "memory://".into(),
            memory: Some(
                eddy::engine::open("memory://")
                    .await
                    .expect("memory engine"),
            ),
            _server: None,
        }
    }

    async fn redis() -> Self {
        let server = RedisServer::start().expect("redis-server must be installed (see README)");
        Self {
            url: server.url(),
            memory: None,
            _server: Some(server),
        }
    }

    /// A webhook client or service with `options`.
    async fn webhook_with(&self, options: ConsumerOptions) -> eddy::Result<Webhook> {
        let builder = Webhook::builder().consumer_options(options);
        match &self.memory {
            Some(engine) => builder.with_engine(engine.clone()),
            None => builder.open(&self.url).await,
        }
    }

    async fn webhook(&self) -> eddy::Result<Webhook> {
        self.webhook_with(fast()).await
    }
}

/// Consumer settings that make retries and reclaims quick.
fn fast() -> ConsumerOptions {
    ConsumerOptions::new()
        .concurrency(64)
        .visibility_timeout(Duration::from_secs(2))
        .claim_interval(Duration::from_millis(50))
        .poll(Duration::from_millis(200))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .max_deliveries(3)
        .handler_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Poll `check` until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check().await
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scripts_dir() -> PathBuf {
    manifest_dir().join("tests").join("webhook")
}

/// The Python interpreter with `leanmq` 0.2 installed. Panics with set-up
/// instructions when there is none: these tests are never skipped.
fn python() -> &'static Path {
    eddy_testkit::python::leanmq_python()
}

/// What a script printed: its records, and its final `{"summary": …}` line.
#[derive(Debug)]
struct PyOut {
    records: Vec<Value>,
    summary: Value,
}

/// Run `tests/webhook/SCRIPT ARGS…` and parse its JSON lines.
async fn py(script: &str, args: &[String]) -> PyOut {
    let out = tokio::process::Command::new(python())
        .arg(scripts_dir().join(script))
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUTF8", "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run python {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python {script} {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    let mut records = Vec::new();
    let mut summary = None;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("python {script} printed a non-JSON line ({e}): {line}"));
        match v.get("summary") {
            Some(s) => summary = Some(s.clone()),
            None => records.push(v),
        }
    }
    let summary = summary
        .unwrap_or_else(|| panic!("python {script} printed no summary:\n{stdout}\n{stderr}"));
    PyOut { records, summary }
}

fn port_args(server: &RedisServer) -> Vec<String> {
    vec!["--port".into(), server.port().to_string()]
}

/// What a recording handler saw.
type Seen = Arc<Mutex<Vec<Map<String, Value>>>>;

/// A handler that records the data it gets.
fn recorder() -> (
    Seen,
    impl Fn(Delivery) -> std::future::Ready<Result<(), Fail>> + Send + Sync + 'static,
) {
    let seen = Seen::default();
    let sink = seen.clone();
    (seen, move |d: Delivery| {
        sink.lock().unwrap().push(d.data().clone());
        std::future::ready(Ok(()))
    })
}

fn assert_leanmq_field(data: &Map<String, Value>, path: &str) {
    let webhook = &data["_leanmq"]["webhook"];
    assert_eq!(webhook["path"], path, "{data:?}");
    assert!(webhook["timestamp"].is_f64(), "{data:?}");
    assert_eq!(
        webhook.as_object().map(|o| o.len()),
        Some(2),
        "_leanmq.webhook is {{path, timestamp}}: {data:?}"
    );
}

// ---------------------------------------------------------------------------
// Interop with LeanMQWebhook
// ---------------------------------------------------------------------------

#[test]
fn paths_map_to_the_queues_leanmq_maps_them_to() {
    let paths = [
        "/order/status/",
        "order/status",
        "/order/status",
        "//order//status//",
        "/orders/{id}/items?x=1",
        "/a-b.c:d e",
        "/payments/€/refund",
        "/x—y",
        "/tab\there",
        "/UPPER/lower/123",
        "/café",
        "/名前/x",
        "/x/٣",
        "/",
        "",
        "/registry",
    ];
    let paths_json = serde_json::to_string(&paths).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(py("paths.py", &["--paths-json".into(), paths_json]));
    assert_eq!(out.records.len(), paths.len());
    for rec in &out.records {
        let path = rec["path"].as_str().unwrap();
        let python_queue = rec["queue"].as_str().unwrap();
        assert_eq!(
            eddy::webhook::normalize_path(path),
            rec["normalized"].as_str().unwrap(),
            "normalized {path:?}"
        );
        match queue_name(path) {
            Ok(ours) => assert_eq!(ours, python_queue, "queue of {path:?}"),
            // Refused only where LeanMQ's name is one eddy cannot spell: a
            // non-ASCII letter or digit, empty, or the registry's key.
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::InvalidName, "{path:?}: {e}");
                assert!(
                    !python_queue.is_ascii() || python_queue.is_empty() || python_queue == "registry",
                    "eddy refused {path:?} but LeanMQ maps it to the plain queue {python_queue:?}: {e}"
                );
            }
        }
    }
}

/// A Python `LeanMQWebhook.send` reaches an eddy handler with the same data a
/// Python handler would get, by hand (`process_messages`) and as a service.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_send_reaches_eddy_handler() -> TestResult {
    let server = RedisServer::start()?;
    let payloads = [
        json!({"order_id": "o-1", "status": "paid", "items": [{"sku": "A", "qty": 2}], "total": 19.5}),
        json!({"order_id": "o-2", "status": "shipped", "note": "ünïcødé ✓", "big": 12345678901234_i64, "none": null}),
    ];
    let mut args = port_args(&server);
    args.extend(["--path".into(), "/order/status/".into()]);
    for p in &payloads {
        args.extend(["--payload".into(), p.to_string()]);
    }
    let sent = py("send.py", &args).await;
    assert_eq!(sent.summary["sent"], 2);

    let webhook = Webhook::builder()
        .consumer_options(fast())
        .open(&server.url())
        .await?;
    let (seen, handler) = recorder();
    webhook.on("order/status", handler)?;
    assert_eq!(
        webhook
            .process_messages(true, Duration::from_secs(1), 10)
            .await?,
        2
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for ((rec, got), payload) in sent.records.iter().zip(&seen).zip(&payloads) {
        assert_eq!(rec["stream"], "webhook:order_status");
        // What Python stored, minus `_metadata` (which LeanMQ pops too).
        let mut want = rec["entry"].as_object().unwrap().clone();
        want.remove("_metadata");
        assert_eq!(*got, want);
        assert_leanmq_field(got, "/order/status");
        for (k, v) in payload.as_object().unwrap() {
            assert_eq!(got[k], *v, "field {k}");
        }
    }
    let queue = webhook.queue("/order/status").await?;
    let info = queue.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0), "{info:?}");

    // As a service.
    let (seen, handler) = recorder();
    webhook.on("/order/status", handler)?;
    let running = webhook.start().await?;
    let mut args = port_args(&server);
    args.extend([
        "--path".into(),
        "order/status".into(),
        "--payload".into(),
        json!({"order_id": "o-3"}).to_string(),
    ]);
    py("send.py", &args).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            seen.lock().unwrap().len() == 1
        })
        .await
    );
    running.stop().await?;
    assert_eq!(seen.lock().unwrap()[0]["order_id"], "o-3");
    Ok(())
}

/// An eddy send reaches a Python `@webhook.get` handler run by
/// `process_messages`, with the data an eddy handler gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eddy_send_reaches_python_handler() -> TestResult {
    let server = RedisServer::start()?;
    let webhook = Webhook::open(&server.url()).await?;
    let payloads = [
        json!({"order_id": "o-1", "status": "paid", "items": [{"sku": "A", "qty": 2}], "total": 19.5}),
        json!({"order_id": "o-2", "note": "ünïcødé ✓", "nested": {"a": [1, 2, {"b": null}]}}),
    ];
    webhook.send("/order/status/", &payloads[0]).await?;
    webhook.send("order/status", &payloads[1]).await?;
    // What a handler sees: the stored data without `_metadata`.
    let queue = webhook.queue("/order/status").await?;
    let stored: Vec<Map<String, Value>> =
        queue.peek(10).await?.into_iter().map(|m| m.data).collect();
    assert_eq!(stored.len(), 2);
    for (data, payload) in stored.iter().zip(&payloads) {
        assert_leanmq_field(data, "/order/status");
        let mut rest = data.clone();
        rest.remove("_leanmq");
        assert_eq!(Value::Object(rest), *payload);
    }

    let mut args = port_args(&server);
    args.extend(["--path", "/order/status/", "--expect", "2"].map(String::from));
    let handled = py("handle.py", &args).await;
    assert_eq!(handled.summary["handled"], 2, "{handled:?}");
    let got: Vec<&Value> = handled
        .records
        .iter()
        .filter_map(|r| r.get("data"))
        .collect();
    assert_eq!(got.len(), 2);
    for (py_data, ours) in got.iter().zip(&stored) {
        assert_eq!(**py_data, Value::Object(ours.clone()));
    }
    // LeanMQ acknowledged them.
    let info = queue.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0), "{info:?}");
    Ok(())
}

/// A Python service answers an eddy request by sending to `_reply_to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_service_answers_eddy_request() -> TestResult {
    let server = RedisServer::start()?;
    let webhook = Webhook::open(&server.url()).await?;
    let mut args = port_args(&server);
    args.extend(["--path", "/order/status/", "--expect", "1", "--reply"].map(String::from));
    let service = tokio::spawn(async move { py("handle.py", &args).await });
    let reply = webhook
        .request(
            "/order/status",
            &json!({"order_id": "o-9"}),
            Duration::from_secs(30),
        )
        .await?;
    assert_eq!(reply["handled_by"], "python");
    assert_eq!(reply["echo"]["order_id"], "o-9");
    assert_eq!(
        reply["echo"]["_reply_to"],
        format!(
            "/reply/{}",
            webhook.reply_queue().unwrap().trim_start_matches("reply_")
        )
    );
    let out = service.await?;
    assert_eq!(out.summary["handled"], 1);
    // Closing deletes the reply queue (and its DLQ).
    let name = webhook.reply_queue().unwrap();
    webhook.close().await?;
    let err = webhook.queues().queue(&name).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::QueueNotFound);
    assert_eq!(
        server.redis_cli([
            "EXISTS",
            &format!("webhook:{name}"),
            &format!("webhook:{name}:dlq")
        ])?,
        "0"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Request/reply, retries, dead-lettering: on both engines
// ---------------------------------------------------------------------------

macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> super::TestResult {
                    super::$name(super::Env::memory().await).await
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> super::TestResult {
                    super::$name(super::Env::redis().await).await
                }
            )*
        }
    };
}

on_both_engines!(
    request_reply,
    thousand_concurrent_requests,
    timeout_then_late_reply_is_dropped,
    handler_errors_are_retried_then_dead_lettered,
    process_messages_by_hand,
);

async fn request_reply(env: Env) -> TestResult {
    let service = env.webhook().await?;
    let orders = Arc::new(Mutex::new(Vec::<Value>::new()));
    let store = orders.clone();
    service.on("/order/create/", move |d: Delivery| {
        let store = store.clone();
        async move {
            let mut orders = store.lock().unwrap();
            let order_id = format!("o-{}", orders.len() + 1);
            orders.push(json!({"order_id": order_id, "items": d.data()["items"]}));
            Ok(json!({"order_id": order_id, "status": "created"}))
        }
    })?;
    let store = orders.clone();
    service.on("/order/status", move |d: Delivery| {
        let store = store.clone();
        async move {
            let id = d.data()["order_id"].clone();
            let known = store.lock().unwrap().iter().any(|o| o["order_id"] == id);
            Ok(json!({"order_id": id, "status": if known { "created" } else { "unknown" }}))
        }
    })?;
    service.on("/audit", |_d: Delivery| async { Ok(()) })?;
    let running = service.start().await?;

    let gateway = env.webhook().await?;
    let t = Duration::from_secs(10);
    let created = gateway
        .request("/order/create", &json!({"items": ["A", "B"]}), t)
        .await?;
    assert_eq!(created, json!({"order_id": "o-1", "status": "created"}));
    let status = gateway
        .request("/order/status", &json!({"order_id": "o-1"}), t)
        .await?;
    assert_eq!(status, json!({"order_id": "o-1", "status": "created"}));
    let status = gateway
        .request("/order/status", &json!({"order_id": "o-404"}), t)
        .await?;
    assert_eq!(status["status"], "unknown");
    // A handler without a reply value answers null.
    assert_eq!(gateway.request("audit", &json!({}), t).await?, Value::Null);
    // Plain sends reach the same handlers and ask for nothing back.
    gateway
        .send("/order/create", &json!({"items": ["C"]}))
        .await?;
    assert!(eventually(t, || async { orders.lock().unwrap().len() == 2 }).await);

    let stats = gateway.request_stats();
    assert_eq!(
        (
            stats.sent,
            stats.answered,
            stats.timed_out,
            stats.late_replies
        ),
        (4, 4, 0, 0)
    );
    // Bad input is refused before anything is sent.
    let err = gateway.request("/", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
    let err = gateway.request("/x", &json!([1]), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAnObject);

    // Closing deletes the reply queue; a later request makes a new one.
    let first = gateway.reply_queue().unwrap();
    gateway.close().await?;
    assert_eq!(
        gateway.queues().queue(&first).await.unwrap_err().kind(),
        ErrorKind::QueueNotFound
    );
    assert_eq!(gateway.request("/audit", &json!({}), t).await?, Value::Null);
    assert_ne!(gateway.reply_queue().unwrap(), first);
    gateway.close().await?;
    // Dropping the last handle deletes the reply queue too (best effort, in
    // the background).
    let dropped = env.webhook().await?;
    assert_eq!(dropped.request("/audit", &json!({}), t).await?, Value::Null);
    let name = dropped.reply_queue().unwrap();
    drop(dropped);
    let queues = gateway.queues().clone();
    assert!(
        eventually(t, || async {
            queues
                .queue(&name)
                .await
                .is_err_and(|e| e.kind() == ErrorKind::QueueNotFound)
        })
        .await,
        "reply queue {name} left behind"
    );

    let stats = running.stop().await?;
    let acked = |p: &str| stats.path(p).unwrap().acked.load(Ordering::Relaxed);
    assert_eq!(acked("/order/create"), 2);
    assert_eq!(acked("/order/status"), 2);
    assert_eq!(acked("/audit"), 3);
    Ok(())
}

async fn thousand_concurrent_requests(env: Env) -> TestResult {
    let service = env.webhook().await?;
    service.on("/echo", |d: Delivery| async move {
        Ok(json!({"n": d.data()["n"], "token": d.data()["token"]}))
    })?;
    let running = service.start().await?;
    // Two clients, so a reply reaching the wrong client would show too.
    let clients = [env.webhook().await?, env.webhook().await?];
    let started = Instant::now();
    let requests = (0..1000u64).map(|n| {
        let client = clients[(n % 2) as usize].clone();
        tokio::spawn(async move {
            let token = uuid_like(n);
            let reply = client
                .request(
                    "/echo",
                    &json!({"n": n, "token": token}),
                    Duration::from_secs(60),
                )
                .await?;
            assert_eq!(
                reply,
                json!({"n": n, "token": token}),
                "request {n} got another's reply"
            );
            Ok::<_, eddy::Error>(())
        })
    });
    for r in futures::future::join_all(requests).await {
        r??;
    }
    eprintln!(
        "[{}] 1000 concurrent requests answered in {:?}",
        env.url,
        started.elapsed()
    );
    for c in &clients {
        let s = c.request_stats();
        assert_eq!((s.sent, s.answered, s.late_replies), (500, 500, 0), "{s:?}");
        c.close().await?;
    }
    let stats = running.stop().await?;
    assert_eq!(
        stats.path("/echo").unwrap().acked.load(Ordering::Relaxed),
        1000
    );
    Ok(())
}

fn uuid_like(n: u64) -> String {
    format!("{n:08x}-{:016x}", rand::random::<u64>())
}

async fn timeout_then_late_reply_is_dropped(env: Env) -> TestResult {
    // One handler at a time: request 1's late reply is sent before request 2
    // is even handled.
    let service = env.webhook_with(fast().concurrency(1)).await?;
    service.on("/slow", |d: Delivery| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(json!({"n": d.data()["n"]}))
    })?;
    let running = service.start().await?;
    let client = env.webhook().await?;

    let err = client
        .request("/slow", &json!({"n": 1}), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_retryable());
    // Request 2 waits while request 1's reply arrives with no caller.
    let reply = client
        .request("/slow", &json!({"n": 2}), Duration::from_secs(10))
        .await?;
    assert_eq!(reply, json!({"n": 2}), "request 2 must get its own reply");
    assert!(
        eventually(Duration::from_secs(5), || async {
            client.late_replies() == 1
        })
        .await
    );
    let stats = client.request_stats();
    assert_eq!(
        (
            stats.sent,
            stats.answered,
            stats.timed_out,
            stats.late_replies
        ),
        (2, 1, 1, 1),
        "{stats:?}"
    );
    // The late reply was consumed and deleted, not left pending.
    let reply_queue = client
        .queues()
        .queue(&client.reply_queue().unwrap())
        .await?;
    assert!(
        eventually(Duration::from_secs(5), || async {
            reply_queue
                .info()
                .await
                .is_ok_and(|i| i.pending == 0 && i.length == 0)
        })
        .await
    );
    client.close().await?;
    running.stop().await?;
    Ok(())
}

async fn handler_errors_are_retried_then_dead_lettered(env: Env) -> TestResult {
    let service = env.webhook().await?; // max_deliveries 3
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    service.on("/flaky", move |_d: Delivery| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(Fail::retry("database is down")) }
    })?;
    service.on("/reject", |_d: Delivery| async {
        Err::<(), _>(Fail::reject("order total is negative"))
    })?;
    service.on("/panics", |_d: Delivery| async {
        if true {
            panic!("boom");
        }
        Ok::<(), Fail>(())
    })?;
    // Fails twice, then works: retries lead to a reply.
    let attempts = Arc::new(AtomicU64::new(0));
    let a = attempts.clone();
    service.on("/third-time-lucky", move |d: Delivery| {
        let n = a.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n < 3 {
                Err(Fail::retry(format!("attempt {n} failed")))
            } else {
                Ok(json!({"delivery_count": d.delivery_count()}))
            }
        }
    })?;
    let running = service.start().await?;
    let client = env.webhook().await?;
    let t = Duration::from_secs(10);

    // A plain send: retried with backoff, dead-lettered after 3 deliveries.
    client.send("/flaky", &json!({"order_id": "o-1"})).await?;
    let dlq = client.queues().dead_letter_queue("flaky").await?;
    assert!(
        eventually(t, || async {
            dlq.peek(10).await.is_ok_and(|m| m.len() == 1)
        })
        .await
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let dead = &dlq.peek(10).await?[0];
    assert_eq!(dead.data["order_id"], "o-1");
    assert_leanmq_field(&dead.data, "/flaky");
    let failures = dead.failures();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].reason.contains("failed 3 deliveries")
            && failures[0].reason.contains("database is down"),
        "{failures:?}"
    );

    // A request to a failing handler fails fast with the reason, after the
    // retries, instead of waiting for its timeout.
    let started = Instant::now();
    let err = client.request("/flaky", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("database is down"), "{err}");
    assert!(started.elapsed() < t);
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    let err = client.request("/reject", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("order total is negative"), "{err}");
    // The caller hears of the rejection as the message is dead-lettered:
    // the move may land a moment after the reply.
    let dlq = client.queues().dead_letter_queue("reject").await?;
    let mut dead = dlq.peek(10).await?;
    let until = Instant::now() + Duration::from_secs(5);
    while dead.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
        dead = dlq.peek(10).await?;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].failures()[0].reason, "order total is negative");

    let err = client.request("/panics", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("boom"), "{err}");

    let reply = client.request("/third-time-lucky", &json!({}), t).await?;
    assert_eq!(reply, json!({"delivery_count": 3}));

    let stats = running.stop().await?;
    let panics = stats
        .path("/panics")
        .unwrap()
        .panics
        .load(Ordering::Relaxed);
    assert_eq!(panics, 3);
    let stats = client.request_stats();
    assert_eq!(
        (stats.failed, stats.answered, stats.late_replies),
        (3, 1, 0),
        "{stats:?}"
    );
    client.close().await?;
    Ok(())
}

async fn process_messages_by_hand(env: Env) -> TestResult {
    let service = env.webhook().await?;
    let (seen, handler) = recorder();
    service.on("/a", handler)?;
    let fails = Arc::new(AtomicU64::new(0));
    let f = fails.clone();
    service.on("/b", move |d: Delivery| {
        let f = f.clone();
        async move {
            if d.data().get("fail").is_some() {
                f.fetch_add(1, Ordering::SeqCst);
                return Err(Fail::retry("not today"));
            }
            Ok(json!({"b": true}))
        }
    })?;
    let client = env.webhook().await?;
    for n in 0..3 {
        client.send("/a", &json!({"n": n})).await?;
    }
    client.send("/b", &json!({})).await?;
    client.send("/b", &json!({"fail": true})).await?;

    // Count is per path: 2 from /a, 2 from /b (one of which fails).
    assert_eq!(service.process_messages(false, Duration::ZERO, 2).await?, 3);
    assert_eq!(service.process_messages(false, Duration::ZERO, 2).await?, 1);
    assert_eq!(seen.lock().unwrap().len(), 3);

    // Nothing new: block waits for the timeout. The failed message comes back
    // after its backoff, and goes to the DLQ after 3 deliveries.
    let started = Instant::now();
    let mut handled = 0;
    while fails.load(Ordering::SeqCst) < 3 && started.elapsed() < Duration::from_secs(10) {
        handled += service
            .process_messages(true, Duration::from_millis(100), 10)
            .await?;
    }
    assert_eq!(handled, 0);
    assert_eq!(fails.load(Ordering::SeqCst), 3);
    let dlq = service.queues().dead_letter_queue("b").await?;
    assert_eq!(dlq.peek(10).await?.len(), 1);
    let started = Instant::now();
    assert_eq!(
        service
            .process_messages(true, Duration::from_millis(200), 10)
            .await?,
        0
    );
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A request answered by a batch processed by hand.
    let request = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .request("/b", &json!({}), Duration::from_secs(10))
                .await
        })
    };
    let mut answered = 0;
    let started = Instant::now();
    while answered == 0 && started.elapsed() < Duration::from_secs(10) {
        answered += service
            .process_messages(true, Duration::from_millis(200), 10)
            .await?;
    }
    assert_eq!(request.await??, json!({"b": true}));
    // No handlers, nothing to do.
    let idle = env.webhook().await?;
    assert_eq!(idle.process_messages(false, Duration::ZERO, 1).await?, 0);
    client.close().await?;
    Ok(())
}
