//! Interop of `eddy::webhook` with LeanMQ 0.2's `LeanMQWebhook`, both ways,
//! against a redis-server of the test's own: the real `leanmq` package runs
//! the small scripts in `tests/webhook/*.py` (JSON lines on stdout). Python
//! is found as `$EDDY_PYTHON`, else `<workspace>/.venv/bin/python`, and must
//! `import leanmq` (0.2.x); these tests fail with set-up instructions when it
//! cannot, they are never skipped:
//!
//! ```text
//! python3 -m venv .venv && .venv/bin/pip install leanmq==0.2.0
//! ```
//!
//! Request/reply, retries and dead-lettering on every engine are in the
//! conformance suite (`src/conformance/webhook.rs`, run by `tests/engines.rs`).
//!
use std::path::{Path, PathBuf};
use std::time::Duration;

use eddy::webhook::{queue_name, Webhook};
use eddy::ErrorKind;
use eddy_testkit::conformance::support::eventually;
use eddy_testkit::conformance::webhook::{assert_leanmq_field, fast, recorder};
use eddy_testkit::RedisServer;
use serde_json::{json, Map, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

// ---------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------

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
    stdout: String,
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
    PyOut {
        records,
        summary,
        stdout,
    }
}

fn port_args(server: &RedisServer) -> Vec<String> {
    vec!["--port".into(), server.port().to_string()]
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

/// An eddy send keeps the payload's bytes as it serialized them (a
/// 40-digit integer, keys out of order), `_leanmq` after them, as
/// LeanMQ's own send writes them; a Python handler gets them exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eddy_send_keeps_the_payloads_bytes_for_python() -> TestResult {
    let server = RedisServer::start()?;
    let webhook = Webhook::open(&server.url()).await?;
    // Written as Python's `json.dumps` writes it, to compare what it prints.
    let text = r#"{"z": 1234567890123456789012345678901234567890, "b": [1.5, "x"], "a": 1}"#;
    let payload = serde_json::value::RawValue::from_string(text.to_owned())?;
    webhook.send("/big/ints", &payload).await?;
    let queue = webhook.queue("/big/ints").await?;
    let stored = queue.peek(1).await?;
    let raw = String::from_utf8(stored[0].raw_data().unwrap_or_default().to_vec())?;
    let open = &text[..text.len() - 1];
    assert!(
        raw.starts_with(&format!(
            r#"{open},"_leanmq":{{"webhook":{{"path":"/big/ints","timestamp":"#
        )),
        "{raw}"
    );
    assert!(stored[0].payload_json(&["_leanmq"]).get().eq(text), "{raw}");

    let mut args = port_args(&server);
    args.extend(["--path", "/big/ints", "--expect", "1"].map(String::from));
    let handled = py("handle.py", &args).await;
    assert_eq!(handled.summary["handled"], 1, "{handled:?}");
    assert!(
        handled
            .stdout
            .contains(&format!(r#""data": {open}, "_leanmq": {{"webhook": "#)),
        "{}",
        handled.stdout
    );
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
