//! Wire compatibility with LeanMQ 0.2, the Python library whose Redis layout
//! eddy speaks (DESIGN.md, "Wire format on Redis").
//!
//! Every test starts its own `redis-server` and drives the real `leanmq`
//! package through the small scripts in `tests/interop/*.py` (one per role,
//! JSON lines on stdout), against the eddy library (`eddy::Eddy`) and the
//! `eddy` binary (`--url URL --json`), in both directions.
//!
//! Python is found as `$EDDY_PYTHON`, else `<workspace>/.venv/bin/python`; it
//! must `import leanmq` (0.2.x). `bash .ci/run` sets both up; by hand:
//!
//! ```text
//! python3 -m venv .venv && .venv/bin/pip install leanmq==0.2.0
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy::{Eddy, EntryId, ErrorKind, Message, Receive, SendOptions};
use eddy_testkit::RedisServer;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------
// Harness: Python, the eddy binary, Redis
// ---------------------------------------------------------------------------

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scripts_dir() -> PathBuf {
    manifest_dir().join("tests").join("interop")
}

/// The Python interpreter with `leanmq` 0.2 installed. Panics with set-up
/// instructions when there is none: these tests are never skipped silently.
fn python() -> &'static Path {
    eddy_testkit::python::leanmq_python()
}

/// What a script printed: its records, and its final `{"summary": …}` line.
#[derive(Debug)]
struct PyOut {
    records: Vec<Value>,
    summary: Value,
    stdout: String,
}

/// The keys of each message's history records (`data[list]`) in the order
/// LeanMQ printed them, message by message: a `Value`'s map sorts its keys
/// (serde_json without `preserve_order`, as eddy leaves it).
fn history_keys(stdout: &str, list: &str) -> Vec<Vec<Vec<String>>> {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    use serde_json::value::RawValue;
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(k);
            }
            Ok(keys)
        }
    }
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow, default)]
        data: Option<std::collections::BTreeMap<String, &'a RawValue>>,
    }
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok()?.data)
        .map(|data| {
            let records: Vec<&RawValue> = data
                .get(list)
                .and_then(|v| serde_json::from_str(v.get()).ok())
                .unwrap_or_default();
            records
                .iter()
                .map(|r| {
                    serde_json::Deserializer::from_str(r.get())
                        .deserialize_map(Keys)
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}

/// Run `tests/interop/SCRIPT --port PORT ARGS…` and parse its JSON lines.
async fn py(server: &RedisServer, script: &str, args: &[&str]) -> PyOut {
    let out = tokio::process::Command::new(python())
        .arg(scripts_dir().join(script))
        .arg("--port")
        .arg(server.port().to_string())
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUTF8", "1")
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
    let summary =
        summary.unwrap_or_else(|| panic!("python {script} printed no summary:\n{stdout}"));
    PyOut {
        records,
        summary,
        stdout,
    }
}

/// `send.py`: LeanMQ `send_message` for each payload; returns one record per
/// message: `{stream_id, metadata}`.
async fn py_send(
    server: &RedisServer,
    queue: &str,
    payloads: &[Value],
    extra: &[&str],
) -> Vec<Value> {
    let texts: Vec<String> = payloads.iter().map(Value::to_string).collect();
    let mut args = vec!["--queue", queue];
    for t in &texts {
        args.extend(["--payload", t.as_str()]);
    }
    args.extend(extra);
    py(server, "send.py", &args).await.records
}

/// `receive.py`: LeanMQ `get_messages` (and `acknowledge_messages` with
/// `--ack`).
async fn py_receive(server: &RedisServer, queue: &str, extra: &[&str]) -> PyOut {
    let mut args = vec!["--queue", queue];
    args.extend(extra);
    py(server, "receive.py", &args).await
}

/// `list_queues.py`: LeanMQ's `QueueInfo` of the stream `key` (`mq:NAME`).
async fn py_queue_info(server: &RedisServer, key: &str) -> Value {
    let out = py(server, "list_queues.py", &[]).await;
    out.records
        .into_iter()
        .find(|q| q["name"] == key)
        .unwrap_or_else(|| panic!("LeanMQ's list_queues does not show {key}:\n{}", out.stdout))
}

/// `inspect_queue.py`: the raw Redis state of a queue pair.
struct Inspect {
    queue: Value,
    dlq: Value,
    registry: Vec<String>,
}

async fn inspect(server: &RedisServer, queue: &str) -> Inspect {
    let out = py(server, "inspect_queue.py", &["--queue", queue]).await;
    let [q, d]: [Value; 2] = out
        .records
        .try_into()
        .unwrap_or_else(|r| panic!("inspect_queue.py printed {r:?}"));
    Inspect {
        queue: q,
        dlq: d,
        registry: serde_json::from_value(out.summary["registry"].clone()).expect("registry"),
    }
}

fn entries(stream: &Value) -> &Vec<Value> {
    stream["entries"].as_array().expect("entries")
}

/// Run the `eddy` binary with `--url URL --json ARGS…` (and `stdin`).
async fn cli_run(server: &RedisServer, args: &[&str], stdin: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--url", &server.url(), "--json"])
        .args(args)
        .env_remove("EDDY_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the eddy binary");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("wait for eddy")
}

/// The `eddy` binary's JSON lines, asserting it succeeded.
async fn cli_lines(server: &RedisServer, args: &[&str]) -> Vec<Value> {
    cli_lines_stdin(server, args, "").await
}

async fn cli_lines_stdin(server: &RedisServer, args: &[&str], stdin: &str) -> Vec<Value> {
    let out = cli_run(server, args, stdin).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eddy {args:?} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("eddy {args:?} printed a non-JSON line ({e}): {l}"))
        })
        .collect()
}

/// The `eddy` binary's one JSON result object.
async fn cli(server: &RedisServer, args: &[&str]) -> Value {
    let mut lines = cli_lines(server, args).await;
    assert_eq!(lines.len(), 1, "eddy {args:?} printed {lines:?}");
    lines.remove(0)
}

fn redis() -> RedisServer {
    RedisServer::start().expect("start redis-server (is it installed?)")
}

async fn open(server: &RedisServer) -> Eddy {
    Eddy::open(&server.url()).await.expect("open eddy on redis")
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

fn assert_recent(ts: f64, what: &str) {
    let n = now();
    assert!(
        ts > n - 120.0 && ts <= n + 1.0,
        "{what} = {ts} is not a float epoch-seconds time near now ({n})"
    );
}

fn object(v: &Value) -> Map<String, Value> {
    v.as_object()
        .cloned()
        .unwrap_or_else(|| panic!("not an object: {v}"))
}

fn without(data: &Map<String, Value>, keys: &[&str]) -> Value {
    let mut d = data.clone();
    for k in keys {
        d.remove(*k);
    }
    Value::Object(d)
}

fn id(v: &Value) -> EntryId {
    v.as_str()
        .unwrap_or_else(|| panic!("not a stream id: {v}"))
        .parse()
        .expect("stream id")
}

/// Payloads LeanMQ users send: nesting, unicode, escapes, floats that need
/// exact round-tripping, ints at the edges of i64/u64, nulls, empties.
fn payloads() -> Vec<Value> {
    vec![
        json!({
            "order_id": 42,
            "total": 99.95,
            "items": [
                {"sku": "A-1", "qty": 2, "price": 10.5},
                {"sku": "B-2", "qty": 1, "tags": ["gift", "fragile"]}
            ],
            "customer": {"name": "Zoë Ångström", "address": {"city": "Zürich", "zip": "8001"}}
        }),
        json!({
            "text": "héllo wörld — 日本語 — 🦀🚀 — \"quoted\" \\ back\nnew line\ttab",
            "rtl": "مرحبا",
            "control": "a\u{0}b\u{1f}c",
            "key with spaces ü": true
        }),
        json!({
            "floats": [0.1, 0.30000000000000004, -1.5e-300, 1.7976931348623157e308, 2.5, 1e21, 123456789.12345679],
            "ints": [0, -1, 9007199254740993_i64, i64::MIN, u64::MAX],
            "one_point_oh": 1.0
        }),
        json!({
            "nothing": null, "yes": true, "no": false, "empty_obj": {}, "empty_list": [],
            "nested": [[[]], [{}], {"a": [1, {"b": [2, {"c": 3}]}]}]
        }),
        json!({}),
    ]
}

// ---------------------------------------------------------------------------
// 1. Python sends, eddy receives
// ---------------------------------------------------------------------------

fn check_received_python_message(m: &Message, payload: &Value, sent: &Value, ttl: Option<u64>) {
    assert_eq!(
        &Value::Object(m.data.clone()),
        payload,
        "payload of {}",
        m.id
    );
    assert!(!m.data.contains_key("_metadata"));
    assert_eq!(m.id, id(&sent["stream_id"]));
    let meta = &sent["metadata"];
    assert_eq!(m.message_id, meta["id"].as_str().expect("metadata.id"));
    assert_eq!(
        m.timestamp,
        meta["timestamp"].as_f64().expect("metadata.timestamp")
    );
    assert_eq!(m.ttl, ttl);
    assert_eq!(meta["ttl"], json!(ttl));
}

#[tokio::test]
async fn lib_receives_what_python_sends() {
    let server = redis();
    let payloads = payloads();
    let plain = py_send(&server, "orders", &payloads, &["--create"]).await;
    let with_ttl = py_send(&server, "orders", &payloads[..2], &["--ttl", "3600"]).await;

    let mq = open(&server).await;
    let q = mq
        .queue("orders")
        .await
        .expect("eddy finds the queue LeanMQ created");
    let got = q
        .receive(&Receive::new().count(100))
        .await
        .expect("receive");
    assert_eq!(got.len(), payloads.len() + 2);
    for (m, (p, s)) in got.iter().zip(payloads.iter().zip(&plain)) {
        check_received_python_message(m, p, s, None);
        assert_eq!(m.delivery_count, 1);
    }
    for (m, (p, s)) in got[payloads.len()..]
        .iter()
        .zip(payloads.iter().zip(&with_ttl))
    {
        check_received_python_message(m, p, s, Some(3600));
    }

    let ids: Vec<EntryId> = got.iter().map(|m| m.id).collect();
    assert_eq!(q.ack(&ids).await.expect("ack"), ids.len() as u64);
    assert_eq!(q.info().await.expect("info").pending, 0);
    let info = py_queue_info(&server, "mq:orders").await;
    assert_eq!(
        info["pending_messages"], 0,
        "LeanMQ sees pending messages: {info}"
    );
    // Acknowledged entries stay as history, as in LeanMQ.
    assert_eq!(info["message_count"], ids.len());
    assert!(py_receive(&server, "orders", &[]).await.records.is_empty());
}

#[tokio::test]
async fn cli_receives_what_python_sends() {
    let server = redis();
    let payloads = payloads();
    let sent = py_send(&server, "orders", &payloads, &["--create"]).await;
    let with_ttl = py_send(&server, "orders", &payloads[..1], &["--ttl", "60"]).await;

    let got = cli_lines(&server, &["queue", "receive", "orders", "--count", "100"]).await;
    assert_eq!(got.len(), payloads.len() + 1, "{got:?}");
    let want = payloads.iter().chain(&payloads[..1]);
    for (m, (p, s)) in got.iter().zip(want.zip(sent.iter().chain(&with_ttl))) {
        assert_eq!(&m["data"], p);
        assert_eq!(m["id"], s["stream_id"]);
        assert_eq!(m["timestamp"], s["metadata"]["timestamp"]);
        assert_eq!(m["delivery_count"], 1);
    }

    let ids: Vec<&str> = got.iter().map(|m| m["id"].as_str().expect("id")).collect();
    let mut args = vec!["queue", "ack", "orders"];
    args.extend(&ids);
    assert_eq!(
        cli(&server, &args).await,
        json!({"acknowledged": ids.len()})
    );
    let info = py_queue_info(&server, "mq:orders").await;
    assert_eq!(info["pending_messages"], 0, "{info}");
    assert_eq!(info["message_count"], ids.len());

    // `receive --ack` acknowledges what it printed.
    py_send(&server, "orders", &payloads[3..4], &[]).await;
    let got = cli_lines(&server, &["queue", "receive", "orders", "--ack"]).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"], payloads[3]);
    assert_eq!(
        py_queue_info(&server, "mq:orders").await["pending_messages"],
        0
    );
}

// ---------------------------------------------------------------------------
// 2. eddy sends, Python receives
// ---------------------------------------------------------------------------

#[tokio::test]
async fn python_receives_what_lib_sends() {
    let server = redis();
    let mq = open(&server).await;
    let (q, _) = mq.create_queue_pair("jobs").await.expect("create");
    let payloads = payloads();
    let first = q
        .send_with(
            &payloads[0],
            &SendOptions::new()
                .message_id("job-0")
                .ttl(Duration::from_secs(3600)),
        )
        .await
        .expect("send")
        .expect("undelayed send has an id");
    let mut ids = vec![first];
    for p in &payloads[1..] {
        ids.push(q.send(p).await.expect("send"));
    }

    let out = py_receive(&server, "jobs", &["--ack"]).await;
    assert_eq!(out.records.len(), payloads.len(), "{}", out.stdout);
    let peeked = q.peek(100).await.expect("peek");
    for ((m, p), (eid, e)) in out
        .records
        .iter()
        .zip(&payloads)
        .zip(ids.iter().zip(&peeked))
    {
        assert_eq!(id(&m["id"]), *eid, "LeanMQ's Message.id is the stream id");
        assert_eq!(
            &m["data"], p,
            "LeanMQ pops `_metadata` and sees exactly the payload"
        );
        assert_eq!(m["timestamp"].as_f64(), Some(e.timestamp));
        assert_recent(e.timestamp, "_metadata.timestamp");
        assert_eq!(m["delivery_count"], 1);
    }
    assert_eq!(out.summary["acked"], payloads.len());

    // The raw entries are LeanMQ's: one field `data`, `_metadata` {id, timestamp, ttl}.
    let state = inspect(&server, "jobs").await;
    let raw = entries(&state.queue);
    assert_eq!(raw.len(), payloads.len());
    for (r, eid) in raw.iter().zip(&ids) {
        assert_eq!(id(&r["id"]), *eid);
        assert_eq!(r["fields"], json!(["data"]));
        let meta = object(&r["data"]["_metadata"]);
        let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
        assert_eq!(keys, ["id", "timestamp", "ttl"]);
        assert!(meta["timestamp"].is_f64(), "timestamp is a float: {r}");
    }
    assert_eq!(raw[0]["data"]["_metadata"]["id"], "job-0");
    assert_eq!(raw[0]["data"]["_metadata"]["ttl"], 3600);
    let uuid = raw[1]["data"]["_metadata"]["id"].as_str().expect("uuid");
    assert!(
        uuid.len() == 36 && uuid.matches('-').count() == 4,
        "default message id is a UUID string like LeanMQ's: {uuid}"
    );
    assert_eq!(raw[1]["data"]["_metadata"]["ttl"], Value::Null);
    // The TTL index: stream id -> float epoch seconds, as LeanMQ writes it.
    let expiry = state.queue["expiry"].as_array().expect("expiry");
    assert_eq!(expiry.len(), 1, "{expiry:?}");
    assert_eq!(id(&expiry[0][0]), first);
    let at = expiry[0][1].as_f64().expect("score");
    assert!((at - (now() + 3600.0)).abs() < 120.0, "expiry score {at}");
    assert_eq!(state.queue["groups"][0]["pending"], 0);
    assert_eq!(q.info().await.expect("info").pending, 0);
}

#[tokio::test]
async fn python_receives_what_cli_sends() {
    let server = redis();
    assert_eq!(
        cli(&server, &["queue", "create", "jobs"]).await,
        json!({"created": "jobs", "dlq": "jobs:dlq"})
    );
    let payloads = payloads();
    let first = cli(
        &server,
        &[
            "queue",
            "send",
            "jobs",
            &payloads[0].to_string(),
            "--id",
            "cli-0",
            "--ttl",
            "1h",
        ],
    )
    .await;
    let mut ids = vec![first["id"].clone()];
    for p in &payloads[1..] {
        ids.push(cli(&server, &["queue", "send", "jobs", &p.to_string()]).await["id"].clone());
    }
    let out = py_receive(&server, "jobs", &["--ack"]).await;
    assert_eq!(out.records.len(), payloads.len(), "{}", out.stdout);
    for ((m, p), eid) in out.records.iter().zip(&payloads).zip(&ids) {
        assert_eq!(
            &m["id"], eid,
            "LeanMQ's Message.id is the stream id eddy printed"
        );
        assert_eq!(
            &m["data"], p,
            "LeanMQ pops `_metadata` and sees exactly the payload"
        );
        assert_recent(m["timestamp"].as_f64().expect("ts"), "timestamp");
    }
    assert_eq!(out.summary["acked"], payloads.len());
    let state = inspect(&server, "jobs").await;
    let raw = entries(&state.queue);
    for r in raw {
        assert_eq!(r["fields"], json!(["data"]));
    }
    assert_eq!(raw[0]["data"]["_metadata"]["id"], "cli-0");
    assert_eq!(raw[0]["data"]["_metadata"]["ttl"], 3600);
    assert_eq!(raw[1]["data"]["_metadata"]["ttl"], Value::Null);
    assert_eq!(state.queue["expiry"].as_array().expect("expiry").len(), 1);

    // A batch from stdin is one atomic append per batch; LeanMQ reads it all.
    let lines: String = payloads.iter().map(|p| format!("{p}\n")).collect();
    let sent = cli_lines_stdin(&server, &["queue", "send", "jobs", "-"], &lines).await;
    assert_eq!(sent, [json!({"count": payloads.len()})]);
    let out = py_receive(&server, "jobs", &["--ack"]).await;
    let got: Vec<&Value> = out.records.iter().map(|m| &m["data"]).collect();
    assert_eq!(got, payloads.iter().collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------
// 3. Python dead-letters, eddy lists the DLQ
// ---------------------------------------------------------------------------

async fn python_sends_and_dead_letters(
    server: &RedisServer,
    queue: &str,
    payloads: &[Value],
    reason: &str,
) -> Vec<Value> {
    let sent = py_send(server, queue, payloads, &["--create"]).await;
    let out = py(
        server,
        "dead_letter.py",
        &["--queue", queue, "--reason", reason],
    )
    .await;
    assert_eq!(out.summary["moved"], payloads.len(), "{}", out.stdout);
    sent
}

#[tokio::test]
async fn lib_lists_what_python_dead_letters() {
    let server = redis();
    let payloads = payloads();
    let sent =
        python_sends_and_dead_letters(&server, "payments", &payloads[..3], "card declined").await;

    let mq = open(&server).await;
    let dlq = mq.dead_letter_queue("payments").await.expect("dlq");
    let dead = dlq.peek(100).await.expect("peek");
    assert_eq!(dead.len(), 3);
    for (m, (p, s)) in dead.iter().zip(payloads.iter().zip(&sent)) {
        let failures = m.failures();
        assert_eq!(failures.len(), 1, "{m:?}");
        assert_eq!(failures[0].reason, "card declined");
        assert_recent(failures[0].timestamp, "_failures[0].timestamp");
        assert_eq!(&without(&m.data, &["_failures"]), p);
        assert_eq!(
            m.message_id,
            s["metadata"]["id"].as_str().expect("id"),
            "message id survives"
        );
    }
    let info = dlq.info().await.expect("dlq info");
    assert!(info.is_dlq);
    assert_eq!(info.length, 3);
    // LeanMQ acknowledges (but keeps) the source entries.
    assert_eq!(
        mq.queue("payments")
            .await
            .expect("q")
            .info()
            .await
            .expect("info")
            .pending,
        0
    );
}

#[tokio::test]
async fn cli_lists_what_python_dead_letters() {
    let server = redis();
    let payloads = payloads();
    let sent =
        python_sends_and_dead_letters(&server, "payments", &payloads[..2], "card declined").await;
    let dead = cli_lines(&server, &["dlq", "list", "payments"]).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (m, p) in dead.iter().zip(&payloads) {
        let data = object(&m["data"]);
        assert_eq!(&without(&data, &["_failures"]), p);
        assert_eq!(data["_failures"][0]["reason"], "card declined", "{m}");
        let failures = m["failures"].as_array().expect("failures");
        assert_eq!(failures.len(), 1, "{m}");
        assert_eq!(failures[0]["reason"], "card declined");
        assert_recent(
            failures[0]["timestamp"].as_f64().expect("ts"),
            "failure time",
        );
    }
    // LeanMQ's dead-lettering re-sends: the DLQ entries are new stream ids.
    let dlq_ids: Vec<&Value> = dead.iter().map(|m| &m["id"]).collect();
    assert!(sent.iter().all(|s| !dlq_ids.contains(&&s["stream_id"])));
}

// ---------------------------------------------------------------------------
// 4. eddy requeues, Python receives
// ---------------------------------------------------------------------------

fn check_requeued_in_python(out: &PyOut, payloads: &[Value], reason: &str) {
    let got = &out.records;
    assert_eq!(got.len(), payloads.len(), "{got:?}");
    let keys = history_keys(&out.stdout, "_requeues");
    assert_eq!(keys.len(), got.len());
    for ((m, p), keys) in got.iter().zip(payloads).zip(keys) {
        let data = object(&m["data"]);
        assert!(!data.contains_key("_metadata"));
        assert_eq!(&without(&data, &["_failures", "_requeues"]), p);
        assert_eq!(
            data["_failures"].as_array().expect("_failures kept").len(),
            1
        );
        assert_eq!(data["_failures"][0]["reason"], reason);
        let requeues = data["_requeues"].as_array().expect("_requeues");
        assert_eq!(requeues.len(), 1, "{m}");
        let r = object(&requeues[0]);
        assert_eq!(keys, [["timestamp", "from_dlq", "to_queue"]], "{m}");
        assert_eq!(r["from_dlq"], "mq:retry:dlq");
        assert_eq!(r["to_queue"], "mq:retry");
        assert_recent(
            r["timestamp"].as_f64().expect("ts"),
            "_requeues[0].timestamp",
        );
    }
}

async fn check_requeue_raw(server: &RedisServer, sent: &[Value]) {
    let state = inspect(server, "retry").await;
    assert!(
        entries(&state.dlq).is_empty(),
        "the DLQ is empty after requeueing: {}",
        state.dlq
    );
    let raw = entries(&state.queue);
    // LeanMQ keeps the acknowledged originals; the requeued copies follow.
    let requeued = &raw[raw.len() - sent.len()..];
    for (r, s) in requeued.iter().zip(sent) {
        assert_eq!(
            r["data"]["_metadata"]["id"], s["metadata"]["id"],
            "message id survives: {r}"
        );
    }
}

#[tokio::test]
async fn python_receives_what_lib_requeues() {
    let server = redis();
    let payloads = payloads();
    let sent = python_sends_and_dead_letters(&server, "retry", &payloads[..3], "timeout").await;
    let mq = open(&server).await;
    let dlq = mq.dead_letter_queue("retry").await.expect("dlq");
    let dead = dlq.peek(100).await.expect("peek");
    // One by id, the rest with requeue_all.
    assert_eq!(dlq.requeue(&[dead[0].id]).await.expect("requeue"), 1);
    assert_eq!(dlq.requeue_all().await.expect("requeue all"), 2);

    let out = py_receive(&server, "retry", &["--ack"]).await;
    check_requeued_in_python(&out, &payloads[..3], "timeout");
    assert_eq!(out.summary["acked"], 3);
    check_requeue_raw(&server, &sent).await;
}

#[tokio::test]
async fn python_receives_what_cli_requeues() {
    let server = redis();
    let payloads = payloads();
    let sent = python_sends_and_dead_letters(&server, "retry", &payloads[..2], "timeout").await;
    assert_eq!(
        cli(&server, &["dlq", "requeue", "retry", "--all"]).await,
        json!({"requeued": 2})
    );
    let out = py_receive(&server, "retry", &["--ack"]).await;
    check_requeued_in_python(&out, &payloads[..2], "timeout");
    check_requeue_raw(&server, &sent).await;
}

// ---------------------------------------------------------------------------
// 5. Transactions
// ---------------------------------------------------------------------------

#[tokio::test]
async fn python_sees_a_lib_transaction_whole() {
    let server = redis();
    let mq = open(&server).await;
    let (orders, _) = mq.create_queue_pair("tx-orders").await.expect("create");
    let (emails, _) = mq.create_queue_pair("tx-emails").await.expect("create");
    let mut tx = mq.transaction();
    tx.send(&orders, &json!({"order_id": 1, "total": 12.5}))
        .expect("add");
    tx.send_with(
        &emails,
        &json!({"to": "ada@example.com", "subject": "Commande reçue"}),
        &SendOptions::new().message_id("mail-1"),
    )
    .expect("add");
    let ids = tx.commit().await.expect("commit");
    assert_eq!(ids.len(), 2);

    let o = py_receive(&server, "tx-orders", &["--ack"]).await;
    assert_eq!(o.records.len(), 1);
    assert_eq!(o.records[0]["data"], json!({"order_id": 1, "total": 12.5}));
    assert_eq!(Some(id(&o.records[0]["id"])), ids[0]);
    let e = py_receive(&server, "tx-emails", &["--ack"]).await;
    assert_eq!(e.records.len(), 1);
    assert_eq!(
        e.records[0]["data"],
        json!({"to": "ada@example.com", "subject": "Commande reçue"})
    );
    assert_eq!(Some(id(&e.records[0]["id"])), ids[1]);
    let state = inspect(&server, "tx-emails").await;
    assert_eq!(
        entries(&state.queue)[0]["data"]["_metadata"]["id"],
        "mail-1"
    );
}

#[tokio::test]
async fn python_sees_nothing_of_a_failed_lib_transaction() {
    let server = redis();
    let mq = open(&server).await;
    let (kept, _) = mq.create_queue_pair("tx-kept").await.expect("create");
    let (gone, _) = mq.create_queue_pair("tx-gone").await.expect("create");
    // LeanMQ deletes one target queue under eddy's feet.
    let del = py(&server, "delete_queue.py", &["--queue", "tx-gone"]).await;
    assert_eq!(del.summary["deleted"], true);

    let mut tx = mq.transaction();
    tx.send(&kept, &json!({"n": 1})).expect("add");
    tx.send(&gone, &json!({"n": 2})).expect("add");
    tx.send(&kept, &json!({"n": 3})).expect("add");
    let err = tx
        .commit()
        .await
        .expect_err("a send to a deleted queue fails the transaction");
    assert_eq!(err.kind(), ErrorKind::QueueNotFound, "{err}");

    assert!(py_receive(&server, "tx-kept", &[]).await.records.is_empty());
    let kept_state = inspect(&server, "tx-kept").await;
    assert!(
        entries(&kept_state.queue).is_empty(),
        "{}",
        kept_state.queue
    );
    assert_eq!(
        py_queue_info(&server, "mq:tx-kept").await["message_count"],
        0
    );
    let gone_state = inspect(&server, "tx-gone").await;
    assert_eq!(
        gone_state.queue["exists"], false,
        "the deleted queue is not recreated: {}",
        gone_state.queue
    );
    assert!(!gone_state.registry.contains(&"mq:tx-gone".to_owned()));
}

#[tokio::test]
async fn python_sees_the_cli_lines_before_a_bad_one_and_nothing_after() {
    let server = redis();
    cli(&server, &["queue", "create", "batch"]).await;
    // The third line is not an object: the CLI stops there, having sent
    // the two before it (stdin is sent as it comes) and nothing after.
    let out = cli_run(
        &server,
        &["queue", "send", "batch", "-"],
        "{\"n\": 1}\n{\"n\": 2}\n[3]\n{\"n\": 4}\n",
    )
    .await;
    assert!(!out.status.success(), "a bad line must fail the command");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("2 messages before it were sent"), "{err}");
    assert_eq!(py_queue_info(&server, "mq:batch").await["message_count"], 2);
    let got = py_receive(&server, "batch", &["--count", "10"])
        .await
        .records;
    let ns: Vec<&Value> = got.iter().map(|r| &r["data"]["n"]).collect();
    assert_eq!(ns, [&json!(1), &json!(2)], "{got:?}");
}

#[tokio::test]
async fn lib_sees_a_python_transaction_whole() {
    let server = redis();
    py(&server, "create.py", &["--queue", "a", "--queue", "b"]).await;
    let tx = py(
        &server,
        "tx_send.py",
        &[
            "--send",
            r#"a={"k": "one", "n": 1.5}"#,
            "--send",
            r#"b={"k": "two", "list": [1, 2]}"#,
        ],
    )
    .await;
    let mq = open(&server).await;
    let a = mq
        .queue("a")
        .await
        .expect("a")
        .receive(&Receive::new().count(10))
        .await
        .expect("recv");
    let b = mq
        .queue("b")
        .await
        .expect("b")
        .receive(&Receive::new().count(10))
        .await
        .expect("recv");
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(
        Value::Object(a[0].data.clone()),
        json!({"k": "one", "n": 1.5})
    );
    assert_eq!(
        Value::Object(b[0].data.clone()),
        json!({"k": "two", "list": [1, 2]})
    );
    assert_eq!(
        a[0].message_id,
        tx.records[0]["message_id"].as_str().expect("id")
    );
    assert_eq!(
        b[0].message_id,
        tx.records[1]["message_id"].as_str().expect("id")
    );
}

// ---------------------------------------------------------------------------
// 6. Queues created on one side are usable on the other; metadata matches
// ---------------------------------------------------------------------------

#[tokio::test]
async fn python_uses_queues_created_by_lib() {
    let server = redis();
    let mq = open(&server).await;
    let (q, _) = mq.create_queue_pair("made-by-eddy").await.expect("create");
    q.send(&json!({"n": 1})).await.expect("send");
    q.send(&json!({"n": 2})).await.expect("send");
    q.send(&json!({"n": 3})).await.expect("send");
    // eddy's consumer holds the first one.
    let held = q
        .receive(&Receive::new().consumer("rust-1"))
        .await
        .expect("recv");
    assert_eq!(held.len(), 1);

    let info = py_queue_info(&server, "mq:made-by-eddy").await;
    assert_eq!(info["is_dlq"], false);
    assert_eq!(info["message_count"], 3);
    assert_eq!(info["pending_messages"], 1);
    assert_eq!(info["consumer_group"], "made-by-eddy-group");
    assert_recent(
        info["created_at"].as_f64().expect("created_at"),
        "created_at",
    );
    let dinfo = py_queue_info(&server, "mq:made-by-eddy:dlq").await;
    assert_eq!(dinfo["is_dlq"], true);
    assert_eq!(dinfo["message_count"], 0);
    assert_eq!(dinfo["consumer_group"], "made-by-eddy-group-dlq");

    // LeanMQ's get_queue works, and its consumers share the group.
    let out = py_receive(&server, "made-by-eddy", &["--ack", "--consumer", "py-1"]).await;
    let got: Vec<&Value> = out.records.iter().map(|m| &m["data"]).collect();
    assert_eq!(got, [&json!({"n": 2}), &json!({"n": 3})]);
    assert_eq!(
        py_queue_info(&server, "mq:made-by-eddy").await["pending_messages"],
        1
    );
    assert_eq!(q.ack(&[held[0].id]).await.expect("ack"), 1);
    assert_eq!(
        py_queue_info(&server, "mq:made-by-eddy").await["pending_messages"],
        0
    );
}

#[tokio::test]
async fn lib_uses_queues_created_by_python() {
    let server = redis();
    py(
        &server,
        "create.py",
        &["--queue", "made-by-python", "--queue", "other"],
    )
    .await;
    // LeanMQ creates its groups at `$`; they exist before any message, so
    // nothing sent afterwards is missed.
    py_send(&server, "made-by-python", &[json!({"from": "python"})], &[]).await;

    let mq = open(&server).await;
    let listed = mq.list_queues().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        names,
        ["made-by-python", "made-by-python:dlq", "other", "other:dlq"]
    );
    let main = &listed[0];
    assert!(!main.is_dlq);
    assert_eq!(main.consumer_group, "made-by-python-group");
    assert_eq!(main.stream, "mq:made-by-python");
    assert_eq!(main.length, 1);
    assert_eq!(main.lag, 1);
    assert_recent(main.created_at.expect("created_at"), "created_at");
    assert!(listed[1].is_dlq);
    assert_eq!(listed[1].consumer_group, "made-by-python-group-dlq");

    let q = mq.queue("made-by-python").await.expect("queue");
    mq.dead_letter_queue("made-by-python").await.expect("dlq");
    q.send(&json!({"from": "rust"})).await.expect("send");
    let got = q.receive(&Receive::new().count(10)).await.expect("recv");
    let data: Vec<Value> = got.iter().map(|m| Value::Object(m.data.clone())).collect();
    assert_eq!(data, [json!({"from": "python"}), json!({"from": "rust"})]);
    q.ack(&got.iter().map(|m| m.id).collect::<Vec<_>>())
        .await
        .expect("ack");

    // eddy's create_queue_pair on an existing LeanMQ queue changes nothing.
    let before = inspect(&server, "made-by-python").await;
    mq.create_queue_pair("made-by-python")
        .await
        .expect("create again");
    let after = inspect(&server, "made-by-python").await;
    assert_eq!(before.queue["metadata"], after.queue["metadata"]);
    assert_eq!(before.dlq["metadata"], after.dlq["metadata"]);
    let info = py_queue_info(&server, "mq:made-by-python").await;
    assert_eq!(info["message_count"], 2);
    assert_eq!(info["pending_messages"], 0);
}

#[tokio::test]
async fn lib_lists_around_python_queue_names_it_does_not_accept() {
    // LeanMQ accepts any queue name; eddy's names are [A-Za-z0-9_.:-]. A
    // LeanMQ queue eddy cannot name is left out of eddy's list, not an error.
    let server = redis();
    py(
        &server,
        "create.py",
        &["--queue", "odd name/1", "--queue", "fine"],
    )
    .await;
    let listed = open(&server).await.list_queues().await.expect("list");
    let names: Vec<&str> = listed.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["fine", "fine:dlq"]);
    let lines = cli_lines(&server, &["queue", "list"]).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[tokio::test]
async fn metadata_written_by_lib_matches_leanmq() {
    let server = redis();
    py(&server, "create.py", &["--queue", "py"]).await;
    open(&server)
        .await
        .create_queue_pair("rs")
        .await
        .expect("create");
    let py_state = inspect(&server, "py").await;
    let rs_state = inspect(&server, "rs").await;
    check_layout(&py_state, "py");
    check_layout(&rs_state, "rs");
    for state in [&py_state, &rs_state] {
        for s in ["mq:py", "mq:py:dlq", "mq:rs", "mq:rs:dlq"] {
            assert!(
                state.registry.contains(&s.to_owned()),
                "registry {:?}",
                state.registry
            );
        }
    }
}

#[tokio::test]
async fn cli_lists_python_queues_and_python_lists_cli_queues() {
    let server = redis();
    py(&server, "create.py", &["--queue", "from-py"]).await;
    py_send(&server, "from-py", &[json!({"a": 1}), json!({"a": 2})], &[]).await;
    cli(&server, &["queue", "create", "from-cli"]).await;
    cli(&server, &["queue", "send", "from-cli", r#"{"b": 1}"#]).await;

    let listed = cli_lines(&server, &["queue", "list"]).await;
    let names: Vec<&str> = listed
        .iter()
        .map(|q| q["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["from-cli", "from-cli:dlq", "from-py", "from-py:dlq"]
    );
    let find = |name: &str| {
        listed
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("`eddy queue list` lacks {name}: {listed:?}"))
    };
    assert_eq!(find("from-py")["length"], 2);
    assert_eq!(find("from-py")["lag"], 2);
    assert_eq!(find("from-py")["consumer_group"], "from-py-group");
    assert_eq!(find("from-py:dlq")["is_dlq"], true);
    assert_eq!(find("from-py:dlq")["consumer_group"], "from-py-group-dlq");
    assert_recent(
        find("from-py")["created_at"].as_f64().expect("created_at"),
        "created_at",
    );
    assert_eq!(find("from-cli")["length"], 1);

    // LeanMQ's get_queue and list_queues work on the CLI's queue.
    let info = py_queue_info(&server, "mq:from-cli").await;
    assert_eq!(info["message_count"], 1);
    assert_eq!(info["consumer_group"], "from-cli-group");
    assert_eq!(
        py_queue_info(&server, "mq:from-cli:dlq").await["is_dlq"],
        true
    );
    check_layout(&inspect(&server, "from-cli").await, "from-cli");
    let out = py_receive(&server, "from-cli", &["--ack"]).await;
    assert_eq!(out.records[0]["data"], json!({"b": 1}));
    // And eddy's `queue info` on LeanMQ's queue.
    let info = cli(&server, &["queue", "info", "from-py"]).await;
    assert_eq!(info["stream"], "mq:from-py");
    assert_eq!(info["pending"], 0);
}

/// The queue pair `name` looks exactly as LeanMQ's `create_queue_pair` lays
/// it out.
fn check_layout(state: &Inspect, name: &str) {
    let (q, d) = (&state.queue, &state.dlq);
    assert_eq!(q["type"], "stream");
    assert_eq!(d["type"], "stream");
    let meta = object(&q["metadata"]);
    let mut keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["consumer_group", "created_at", "dlq"],
        "{name}: {meta:?}"
    );
    assert_eq!(meta["dlq"], format!("mq:{name}:dlq"));
    assert_eq!(meta["consumer_group"], format!("{name}-group"));
    let created: f64 = meta["created_at"]
        .as_str()
        .expect("str")
        .parse()
        .expect("created_at is a float string");
    assert_recent(created, "created_at");

    let dmeta = object(&d["metadata"]);
    let mut keys: Vec<&str> = dmeta.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["consumer_group", "created_at", "is_dlq", "main_queue"],
        "{name}: {dmeta:?}"
    );
    assert_eq!(dmeta["is_dlq"], "true");
    assert_eq!(dmeta["main_queue"], format!("mq:{name}"));
    assert_eq!(dmeta["consumer_group"], format!("{name}-group-dlq"));
    let created: f64 = dmeta["created_at"]
        .as_str()
        .expect("str")
        .parse()
        .expect("created_at is a float string");
    assert_recent(created, "dlq created_at");

    let groups = |s: &Value| -> Vec<String> {
        s["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert_eq!(groups(q), [format!("{name}-group")]);
    assert_eq!(groups(d), [format!("{name}-group-dlq")]);
}

// ---------------------------------------------------------------------------
// 7. eddy dead-letters, Python reads the DLQ
// ---------------------------------------------------------------------------

#[tokio::test]
async fn python_reads_what_lib_dead_letters() {
    let server = redis();
    let mq = open(&server).await;
    let (q, _) = mq.create_queue_pair("mail").await.expect("create");
    let payloads = payloads();
    q.send_with(&payloads[1], &SendOptions::new().message_id("mail-1"))
        .await
        .expect("send");
    q.send(&payloads[2]).await.expect("send");
    let got = q.receive(&Receive::new().count(10)).await.expect("recv");
    assert_eq!(
        q.dead_letter(&[got[0].id], "smtp 550: mailbox unavailable")
            .await
            .expect("dlq"),
        1
    );
    assert_eq!(
        q.dead_letter_messages(&got[1..], "bounced")
            .await
            .expect("dlq"),
        1
    );

    let out = py_receive(&server, "mail", &["--dlq", "--ack"]).await;
    assert_eq!(out.records.len(), 2, "{}", out.stdout);
    for keys in history_keys(&out.stdout, "_failures") {
        assert_eq!(keys, [["timestamp", "reason"]]);
    }
    for (m, (p, reason)) in out.records.iter().zip(
        payloads[1..3]
            .iter()
            .zip(["smtp 550: mailbox unavailable", "bounced"]),
    ) {
        let data = object(&m["data"]);
        assert!(!data.contains_key("_metadata"));
        assert_eq!(&without(&data, &["_failures"]), p);
        let failures = data["_failures"].as_array().expect("_failures");
        assert_eq!(failures.len(), 1);
        let f = object(&failures[0]);
        assert_eq!(f["reason"], reason);
        assert_recent(
            f["timestamp"].as_f64().expect("ts"),
            "_failures[0].timestamp",
        );
    }
    // LeanMQ refuses to acknowledge on a DLQ (returns 0).
    assert_eq!(out.summary["acked"], 0);

    let state = inspect(&server, "mail").await;
    let dead = entries(&state.dlq);
    assert_eq!(
        dead[0]["data"]["_metadata"]["id"], "mail-1",
        "message id survives"
    );
    assert_eq!(dead[0]["data"]["_metadata"]["ttl"], Value::Null);
    assert_eq!(
        dead[0]["data"]["_metadata"]["timestamp"].as_f64(),
        Some(got[0].timestamp)
    );
    // eddy moves atomically: the source entry is gone, nothing left pending.
    assert!(entries(&state.queue).is_empty(), "{}", state.queue);
    assert_eq!(
        py_queue_info(&server, "mq:mail").await["pending_messages"],
        0
    );
    assert_eq!(
        py_queue_info(&server, "mq:mail:dlq").await["message_count"],
        2
    );
}

#[tokio::test]
async fn python_reads_what_lib_dead_letters_with_xrange() {
    // The same as above, read the way LeanMQ's own move/requeue code reads:
    // XRANGE on the DLQ stream, `_metadata` included.
    let server = redis();
    py(&server, "create.py", &["--queue", "py-made"]).await;
    let sent = py_send(&server, "py-made", &[json!({"x": [1, 2, {"y": "é"}]})], &[]).await;
    let mq = open(&server).await;
    let q = mq.queue("py-made").await.expect("queue");
    let got = q.receive(&Receive::new()).await.expect("recv");
    q.dead_letter_messages(&got, "handler rejected it")
        .await
        .expect("dead-letter");
    let state = inspect(&server, "py-made").await;
    let [dead] = entries(&state.dlq).as_slice() else {
        panic!("{}", state.dlq)
    };
    assert_eq!(dead["fields"], json!(["data"]));
    let data = object(&dead["data"]);
    assert_eq!(data["x"], json!([1, 2, {"y": "é"}]));
    assert_eq!(data["_failures"][0]["reason"], "handler rejected it");
    assert_eq!(data["_metadata"]["id"], sent[0]["metadata"]["id"]);
}

#[tokio::test]
async fn python_reads_what_cli_dead_letters() {
    let server = redis();
    cli(&server, &["queue", "create", "mail"]).await;
    let payloads = payloads();
    cli(
        &server,
        &[
            "queue",
            "send",
            "mail",
            &payloads[0].to_string(),
            "--id",
            "mail-0",
        ],
    )
    .await;
    let got = cli_lines(&server, &["queue", "receive", "mail"]).await;
    let stream_id = got[0]["id"].as_str().expect("id");
    assert_eq!(
        cli(
            &server,
            &[
                "queue",
                "dead-letter",
                "mail",
                stream_id,
                "--reason",
                "smtp 550"
            ]
        )
        .await,
        json!({"dead_lettered": 1})
    );
    let out = py_receive(&server, "mail", &["--dlq"]).await;
    assert_eq!(out.records.len(), 1, "{}", out.stdout);
    let data = object(&out.records[0]["data"]);
    assert_eq!(&without(&data, &["_failures"]), &payloads[0]);
    assert_eq!(data["_failures"][0]["reason"], "smtp 550");
    let state = inspect(&server, "mail").await;
    assert_eq!(entries(&state.dlq)[0]["data"]["_metadata"]["id"], "mail-0");
    assert!(entries(&state.queue).is_empty());
    assert_eq!(
        py_queue_info(&server, "mq:mail").await["pending_messages"],
        0
    );
}

// ---------------------------------------------------------------------------
// TTL and delayed delivery across the two
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ttl_index_is_shared_both_ways() {
    let server = redis();
    // LeanMQ's TTL: eddy never hands out an expired message.
    py_send(
        &server,
        "short",
        &[json!({"stale": true})],
        &["--create", "--ttl", "1"],
    )
    .await;
    py_send(&server, "short", &[json!({"fresh": true})], &[]).await;
    let mq = open(&server).await;
    let q = mq.queue("short").await.expect("queue");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = q.receive(&Receive::new().count(10)).await.expect("recv");
    let data: Vec<Value> = got.iter().map(|m| Value::Object(m.data.clone())).collect();
    assert_eq!(data, [json!({"fresh": true})]);
    q.ack(&[got[0].id]).await.expect("ack");

    // eddy's TTL: LeanMQ's sweep (process_expired_messages) reads eddy's index.
    q.send_with(
        &json!({"stale": 2}),
        &SendOptions::new().ttl(Duration::from_secs(1)),
    )
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let swept = py(&server, "expire.py", &[]).await;
    assert_eq!(swept.summary["expired"], 1);
    assert!(py_receive(&server, "short", &[]).await.records.is_empty());
}

#[tokio::test]
async fn python_receives_lib_delayed_sends_once_promoted() {
    let server = redis();
    let mq = open(&server).await;
    let (q, _) = mq.create_queue_pair("later").await.expect("create");
    let sent = q
        .send_with(
            &json!({"when": "later"}),
            &SendOptions::new().delay(Duration::from_millis(500)),
        )
        .await
        .expect("send");
    assert_eq!(sent, None);
    // eddy's delayed set is invisible to LeanMQ, and does not disturb it.
    assert!(py_receive(&server, "later", &[]).await.records.is_empty());
    assert_eq!(py_queue_info(&server, "mq:later").await["message_count"], 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // A LeanMQ consumer sees it once an eddy sweep (or read) promotes it.
    mq.sweep_expired().await.expect("sweep");
    let out = py_receive(&server, "later", &["--ack"]).await;
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0]["data"], json!({"when": "later"}));
}

// ---------------------------------------------------------------------------
// Edges of Python's JSON
// ---------------------------------------------------------------------------

#[tokio::test]
async fn python_big_ints_survive_lib_dead_letter_and_requeue() {
    // Python ints are unbounded and `json.dumps` writes them exactly; eddy
    // re-encodes a message when it dead-letters or requeues it, and must not
    // turn 2**64 + 1 into a float.
    let server = redis();
    let big = r#"{"big": 18446744073709551617, "neg": -9223372036854775809, "n": 1}"#;
    let out = py(
        &server,
        "send.py",
        &["--queue", "big", "--create", "--payload", big],
    )
    .await;
    assert_eq!(out.records.len(), 1);
    let mq = open(&server).await;
    let q = mq.queue("big").await.expect("queue");
    let got = q.receive(&Receive::new()).await.expect("recv");
    q.dead_letter_messages(&got, "retry later")
        .await
        .expect("dead-letter");
    // The CLI prints the payload as stored, big integers and all.
    let printed = |args: &'static [&'static str]| {
        let server = &server;
        async move {
            let out = cli_run(server, args, "").await;
            assert!(out.status.success(), "eddy {args:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let listed = printed(&["dlq", "list", "big"]).await;
    assert!(
        listed.contains(
            r#"{"big": 18446744073709551617, "neg": -9223372036854775809, "n": 1,"_failures":[{"timestamp":"#
        ),
        "{listed}"
    );
    let dlq = mq.dead_letter_queue("big").await.expect("dlq");
    dlq.requeue_all().await.expect("requeue");
    let peeked = printed(&["queue", "peek", "big"]).await;
    assert!(
        peeked.contains(
            r#""big": 18446744073709551617, "neg": -9223372036854775809, "n": 1,"_failures""#
        ),
        "{peeked}"
    );
    let out = py_receive(&server, "big", &["--ack"]).await;
    assert_eq!(out.records.len(), 1);
    assert!(
        out.stdout.contains("\"big\": 18446744073709551617")
            && out.stdout.contains("\"neg\": -9223372036854775809"),
        "Python's big ints were changed by eddy's dead-letter/requeue re-encoding:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn python_nan_payload_is_dead_lettered_not_lost() {
    // Python's json.dumps writes NaN/Infinity, which is not JSON. eddy reads
    // strict JSON: such an entry goes to the DLQ with its raw text and the
    // reason (never dropped, never acknowledged silently).
    let server = redis();
    py(
        &server,
        "send.py",
        &[
            "--queue",
            "nan",
            "--create",
            "--payload",
            r#"{"x": NaN, "ok": 1}"#,
        ],
    )
    .await;
    let mq = open(&server).await;
    let q = mq.queue("nan").await.expect("queue");
    assert!(q
        .receive(&Receive::new().count(10))
        .await
        .expect("recv")
        .is_empty());
    let dead = mq
        .dead_letter_queue("nan")
        .await
        .expect("dlq")
        .peek(10)
        .await
        .expect("peek");
    assert_eq!(dead.len(), 1);
    let raw = dead[0].data["_raw"].as_str().expect("_raw");
    assert!(raw.contains("NaN"), "{raw}");
    assert!(!dead[0].failures().is_empty());
    // LeanMQ reads it from the DLQ as it was sent: the entry moved whole.
    let out = py_receive(&server, "nan", &["--dlq"]).await;
    assert_eq!(out.records.len(), 1);
    assert_eq!(out.records[0]["data"]["x"], serde_json::json!("NaN"));
    assert_eq!(out.records[0]["data"]["ok"], serde_json::json!(1));
}
