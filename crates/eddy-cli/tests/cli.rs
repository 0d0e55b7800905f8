//! The `eddy` binary against a real redis-server started per test (and a
//! few commands on `memory://`). Every test uses its own server, so tests
//! never see each other's queues.

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use eddy_testkit::RedisServer;
use serde_json::Value;

/// One run of the binary.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Assert success and return stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "{self:#?}");
        self.stdout
    }

    /// Assert a failure with exit status 1, nothing on stdout and exactly one
    /// `error: ...` line on stderr; return the message.
    fn fails(self) -> String {
        assert_eq!(self.code, Some(1), "{self:#?}");
        assert!(self.stdout.is_empty(), "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{self:#?}");
        lines[0]
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("no `error: ` prefix: {self:#?}"))
            .to_owned()
    }

    /// Each stdout line as JSON.
    fn json_lines(self) -> Vec<Value> {
        let args = self.args.clone();
        self.ok()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{args:?}: {l}: {e}")))
            .collect()
    }

    /// Stdout as exactly one JSON object.
    fn json(self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines.remove(0)
    }
}

/// Run `eddy --url URL ARGS...` with `stdin` (or none).
fn eddy_with_stdin(url: &str, args: &[&str], stdin: Option<String>) -> Run {
    let mut all = vec!["--url".to_owned(), url.to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(&all)
        .env_remove("EDDY_URL")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the eddy binary");
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        thread::spawn(move || {
            // The CLI may exit early on a usage error; a broken pipe is fine.
            let _ = pipe.write_all(input.as_bytes());
        })
    });
    let out = child.wait_with_output().expect("wait for eddy");
    if let Some(w) = writer {
        w.join().expect("stdin writer");
    }
    Run {
        args: all,
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

fn eddy(url: &str, args: &[&str]) -> Run {
    eddy_with_stdin(url, args, None)
}

fn redis() -> RedisServer {
    RedisServer::start().expect("start redis-server")
}

fn info(url: &str, queue: &str) -> Value {
    eddy(url, &["--json", "queue", "info", queue]).json()
}

/// `(length, pending, lag)` of a queue.
fn counts(url: &str, queue: &str) -> (u64, u64, u64) {
    let i = info(url, queue);
    let n = |k: &str| i[k].as_u64().unwrap_or_else(|| panic!("{k} in {i}"));
    (n("length"), n("pending"), n("lag"))
}

fn ids_of(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["id"].as_str().expect("id is a string").to_owned())
        .collect()
}

fn assert_message_shape(m: &Value) {
    let obj = m.as_object().expect("a message is an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["data", "delivery_count", "id", "timestamp"], "{m}");
    assert!(m["id"].as_str().is_some_and(|id| id.contains('-')), "{m}");
    assert!(m["data"].is_object(), "{m}");
    assert!(m["timestamp"].as_f64().is_some_and(|t| t > 1e9), "{m}");
    assert!(m["delivery_count"].is_u64(), "{m}");
}

fn lines(n: usize) -> String {
    (0..n).map(|i| format!("{{\"n\": {i}}}\n")).collect()
}

#[test]
fn queue_lifecycle() {
    let server = redis();
    queue_lifecycle_on(&server.url());
}

fn queue_lifecycle_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();

    let created = eddy(url, &["queue", "create", "orders"]).ok();
    assert!(created.contains("orders:dlq"), "{created}");
    // Idempotent.
    let again = eddy(url, &["--json", "queue", "create", "orders"]).json();
    assert_eq!(again["created"], "orders");
    assert_eq!(again["dlq"], "orders:dlq");

    let id = eddy(url, &["queue", "send", "orders", r#"{"order_id": 1}"#]).ok();
    let id = id.trim();
    assert!(id.parse::<eddy::EntryId>().is_ok(), "{id}");
    let sent = eddy(
        url,
        &["--json", "queue", "send", "orders", r#"{"order_id": 2}"#],
    )
    .json();
    assert!(
        sent["id"].as_str().is_some_and(|s| s.contains('-')),
        "{sent}"
    );

    // 1000 lines from stdin, with blank lines skipped: several batches.
    let input = format!("\n{}\n\n", lines(1000));
    let count = eddy_with_stdin(
        url,
        &["--json", "queue", "send", "orders", "-"],
        Some(input),
    )
    .json();
    assert_eq!(count["count"], 1000);
    let human = eddy_with_stdin(url, &["queue", "send", "orders", "-"], Some(lines(3))).ok();
    assert_eq!(human.trim(), "sent 3 messages");
    assert_eq!(counts(url, "orders"), (1005, 0, 1005));

    // The first message is the one sent first; stdin lines keep their order.
    let peeked = eddy(url, &["--json", "queue", "peek", "orders", "--count", "3"]).json_lines();
    assert_eq!(peeked.len(), 3);
    peeked.iter().for_each(assert_message_shape);
    assert_eq!(peeked[0]["id"], id);
    assert_eq!(peeked[0]["data"]["order_id"], 1);
    assert_eq!(peeked[0]["delivery_count"], 0);
    assert_eq!(peeked[2]["data"]["n"], 0);

    let got = eddy(
        url,
        &[
            "--json",
            "queue",
            "receive",
            "orders",
            "--count",
            "2",
            "--consumer",
            "w1",
        ],
    )
    .json_lines();
    assert_eq!(got.len(), 2);
    got.iter().for_each(assert_message_shape);
    assert_eq!(got[0]["delivery_count"], 1);
    assert_eq!(got[1]["data"]["order_id"], 2);
    assert_eq!(counts(url, "orders"), (1005, 2, 1003));

    let ids = ids_of(&got);
    let acked = eddy(url, &["--json", "queue", "ack", "orders", &ids[0], &ids[1]]).json();
    assert_eq!(acked["acknowledged"], 2);
    let again = eddy(url, &["queue", "ack", "orders", &ids[0]]).ok();
    assert_eq!(again.trim(), "acknowledged 0 messages");
    assert_eq!(counts(url, "orders").1, 0);

    // Human output.
    let table = eddy(url, &["queue", "peek", "orders", "--count", "2"]).ok();
    let header = table.lines().next().unwrap_or_default();
    for column in ["ID", "DELIVERIES", "TIMESTAMP", "DATA"] {
        assert!(header.contains(column), "{table}");
    }
    // The payload as it was sent, spacing included.
    assert!(table.contains(r#"{"order_id": 1}"#), "{table}");
    let human_info = eddy(url, &["queue", "info", "orders"]).ok();
    assert!(human_info.contains("length"), "{human_info}");
    assert!(human_info.contains("1005"), "{human_info}");
    assert!(human_info.contains("w1"), "{human_info}");

    let listed = eddy(url, &["--json", "queue", "list"]).json_lines();
    let names: Vec<&str> = listed.iter().filter_map(|q| q["name"].as_str()).collect();
    assert_eq!(names, ["orders", "orders:dlq"]);
    assert_eq!(listed[0]["length"], 1005);
    assert_eq!(listed[1]["is_dlq"], true);
    let human_list = eddy(url, &["queue", "list"]).ok();
    assert!(human_list.starts_with("NAME"), "{human_list}");
    assert_eq!(human_list.lines().count(), 3, "{human_list}");

    let purged = eddy(url, &["--json", "queue", "purge", "orders"]).json();
    assert_eq!(purged["purged"], 1005);
    assert_eq!(counts(url, "orders"), (0, 0, 0));
    assert_eq!(
        eddy(url, &["queue", "peek", "orders"]).ok().trim(),
        "no messages"
    );

    let deleted = eddy(url, &["--json", "queue", "delete", "orders"]).json();
    assert_eq!(deleted["deleted"], "orders");
    assert_eq!(deleted["dlq_deleted"], true);
    let err = eddy(url, &["queue", "info", "orders"]).fails();
    assert!(err.contains("`orders` does not exist"), "{err}");
    assert!(eddy(url, &["--json", "queue", "list"]).ok().is_empty());
    let err = eddy(url, &["queue", "delete", "orders"]).fails();
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn dead_letter_and_requeue() {
    let server = redis();
    dead_letter_and_requeue_on(&server.url());
}

fn dead_letter_and_requeue_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "pay"]).ok();
    for n in 1..=3 {
        eddy(url, &["queue", "send", "pay", &format!(r#"{{"n": {n}}}"#)]).ok();
    }
    let got = eddy(url, &["--json", "queue", "receive", "pay", "--count", "3"]).json_lines();
    let ids = ids_of(&got);

    let moved = eddy(
        url,
        &[
            "--json",
            "queue",
            "dead-letter",
            "pay",
            &ids[0],
            &ids[1],
            "--reason",
            "card declined",
        ],
    )
    .json();
    assert_eq!(moved["dead_lettered"], 2);
    assert_eq!(counts(url, "pay"), (1, 1, 0));

    let dead = eddy(url, &["--json", "dlq", "list", "pay"]).json_lines();
    assert_eq!(dead.len(), 2);
    for m in &dead {
        assert_eq!(m["failures"][0]["reason"], "card declined", "{m}");
        assert!(m["failures"][0]["timestamp"].as_f64().is_some(), "{m}");
        assert!(m["data"]["n"].is_u64(), "{m}");
    }
    let human = eddy(url, &["dlq", "list", "pay"]).ok();
    assert!(human.contains("card declined"), "{human}");
    assert!(human.contains("failed 20"), "{human}");

    // Requeue one by its DLQ id, then the rest with --all.
    let dead_ids = ids_of(&dead);
    let one = eddy(url, &["--json", "dlq", "requeue", "pay", &dead_ids[0]]).json();
    assert_eq!(one["requeued"], 1);
    let rest = eddy(url, &["--json", "dlq", "requeue", "pay", "--all"]).json();
    assert_eq!(rest["requeued"], 1);
    assert!(eddy(url, &["--json", "dlq", "list", "pay"]).ok().is_empty());
    assert_eq!(
        eddy(url, &["dlq", "list", "pay"]).ok().trim(),
        "no messages"
    );

    let back = eddy(url, &["--json", "queue", "receive", "pay", "--count", "10"]).json_lines();
    assert_eq!(back.len(), 2);
    for m in &back {
        assert_message_shape(m);
        let requeues = m["data"]["_requeues"].as_array().expect("_requeues");
        assert_eq!(requeues.len(), 1, "{m}");
        // On a cluster the stream key carries the queue's hash tag.
        let stream = if url.starts_with("redis+cluster") {
            "mq:{pay}"
        } else {
            "mq:pay"
        };
        assert_eq!(requeues[0]["to_queue"], stream, "{m}");
        assert_eq!(m["data"]["_failures"][0]["reason"], "card declined", "{m}");
    }

    // dlq purge.
    let back_ids = ids_of(&back);
    eddy(
        url,
        &[
            "queue",
            "dead-letter",
            "pay",
            &back_ids[0],
            "--reason",
            "again",
        ],
    )
    .ok();
    assert_eq!(
        eddy(url, &["--json", "dlq", "purge", "pay"]).json()["purged"],
        1
    );
    assert_eq!(counts(url, "pay:dlq").0, 0);

    // delete --keep-dlq keeps the DLQ reachable.
    eddy(url, &["queue", "delete", "pay", "--keep-dlq"]).ok();
    let listed = eddy(url, &["--json", "queue", "list"]).json_lines();
    let names: Vec<&str> = listed.iter().filter_map(|q| q["name"].as_str()).collect();
    assert_eq!(names, ["pay:dlq"]);
    eddy(url, &["dlq", "list", "pay"]).ok();
}

/// A 2 MB message sent with a raised limit survives a dead-letter and a
/// requeue by clients at the default 1 MiB limit, byte for byte.
#[test]
fn big_message_survives_moves_by_clients_with_a_smaller_limit() {
    let server = redis();
    big_message_survives_moves_by_clients_with_a_smaller_limit_on(&server.url());
}

fn big_message_survives_moves_by_clients_with_a_smaller_limit_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "big"]).ok();
    let blob = "b".repeat(2_000_000);
    let line = format!("{{\"blob\": \"{blob}\", \"n\": 12345678901234567890123}}\n");
    let sent = eddy_with_stdin(
        url,
        &[
            "--json",
            "--max-payload-bytes",
            "10000000",
            "queue",
            "send",
            "big",
            "-",
        ],
        Some(line),
    )
    .json();
    assert_eq!(sent["count"], 1);
    let peeked = eddy(url, &["--json", "queue", "peek", "big"]).json_lines();
    let id = ids_of(&peeked).remove(0);
    eddy(url, &["queue", "dead-letter", "big", "--reason", "x", &id]).ok();
    eddy(url, &["dlq", "requeue", "big", "--all"]).ok();
    let printed = eddy(
        url,
        &[
            "--json",
            "--max-payload-bytes",
            "10000000",
            "queue",
            "receive",
            "big",
            "--count",
            "1",
        ],
    )
    .ok();
    let got: Vec<Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]["data"]["blob"].as_str().map(str::len),
        Some(blob.len())
    );
    // The payload as it was sent: the big integer's digits, the spacing.
    assert!(
        printed.contains(&format!(
            r#"{{"blob": "{blob}", "n": 12345678901234567890123,"_failures":[{{"#
        )),
        "{}",
        &printed[printed.len().saturating_sub(300)..]
    );
    assert_eq!(got[0]["data"]["_failures"][0]["reason"], "x");
}

#[test]
fn receive_ack_block_and_send_options() {
    let server = redis();
    receive_ack_block_and_send_options_on(&server.url());
}

fn receive_ack_block_and_send_options_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "jobs"]).ok();
    eddy_with_stdin(url, &["queue", "send", "jobs", "-"], Some(lines(3))).ok();

    // --ack acknowledges exactly what was printed.
    let got = eddy(
        url,
        &[
            "--json", "queue", "receive", "jobs", "--count", "2", "--ack",
        ],
    )
    .json_lines();
    assert_eq!(got.len(), 2);
    assert_eq!(counts(url, "jobs"), (3, 0, 1));

    // An empty receive prints nothing with --json, a note for people.
    eddy(url, &["queue", "receive", "jobs"]).ok();
    assert!(eddy(url, &["--json", "queue", "receive", "jobs"])
        .ok()
        .is_empty());
    assert_eq!(
        eddy(url, &["queue", "receive", "jobs"]).ok().trim(),
        "no messages"
    );

    // A delayed send has no id yet; --block waits for it.
    let delayed = eddy(
        url,
        &[
            "--json",
            "queue",
            "send",
            "jobs",
            r#"{"later": true}"#,
            "--delay",
            "300ms",
        ],
    )
    .json();
    assert_eq!(delayed["id"], Value::Null);
    assert_eq!(delayed["delayed"], true);
    assert_eq!(info(url, "jobs")["delayed"], 1);
    let started = Instant::now();
    let got = eddy(
        url,
        &["--json", "queue", "receive", "jobs", "--block", "5s"],
    )
    .json_lines();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["data"]["later"], true);
    assert!(started.elapsed() < Duration::from_secs(4));

    // --block with nothing to receive waits about that long.
    let started = Instant::now();
    eddy(url, &["queue", "receive", "jobs", "--block", "0.3"]).ok();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // TTL and message id are accepted; the TTL is stored in seconds.
    let sent = eddy(
        url,
        &[
            "--json", "queue", "send", "jobs", "{}", "--ttl", "1m", "--id", "job-7",
        ],
    )
    .json();
    assert!(sent["id"].is_string(), "{sent}");
}

#[test]
fn bad_inputs_fail_with_one_line_and_change_nothing() {
    let server = redis();
    bad_inputs_fail_with_one_line_and_change_nothing_on(&server.url());
}

fn bad_inputs_fail_with_one_line_and_change_nothing_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    eddy(url, &["queue", "send", "q", r#"{"keep": 1}"#]).ok();
    let got = eddy(url, &["--json", "queue", "receive", "q"]).json_lines();
    let pending = ids_of(&got).remove(0);
    let before = counts(url, "q");
    assert_eq!(before, (1, 1, 0));

    let big = format!(r#"{{"x": "{}"}}"#, "y".repeat(400));
    let cases: Vec<(Vec<&str>, Option<String>, &str)> = vec![
        (
            vec!["queue", "send", "q", "[1, 2]"],
            None,
            "must be a JSON object",
        ),
        (
            vec!["queue", "send", "q", "42"],
            None,
            "must be a JSON object",
        ),
        (
            vec!["queue", "send", "q", r#"{"a": "#],
            None,
            "invalid JSON",
        ),
        (
            vec!["--max-payload-bytes", "300", "queue", "send", "q", &big],
            None,
            "over the 300-byte limit",
        ),
        (
            vec!["queue", "ack", "q", &pending, "nope"],
            None,
            "invalid message id `nope`",
        ),
        (
            vec!["queue", "dead-letter", "q", &pending, "12", "--reason", "r"],
            None,
            "invalid message id `12`",
        ),
        (
            vec!["dlq", "requeue", "q", "1-x"],
            None,
            "invalid message id `1-x`",
        ),
        (
            vec!["queue", "send", "nosuch", "{}"],
            None,
            "`nosuch` does not exist",
        ),
        (
            vec!["queue", "ack", "nosuch", "1-0"],
            None,
            "`nosuch` does not exist",
        ),
        (
            vec!["queue", "purge", "nosuch"],
            None,
            "`nosuch` does not exist",
        ),
        (
            vec!["dlq", "list", "nosuch"],
            None,
            "eddy queue create nosuch",
        ),
        (vec!["queue", "create", "bad name"], None, "invalid name"),
        (vec!["queue", "create", "q:dlq"], None, "invalid name"),
        (vec!["queue", "send", "q", "{}", "--ttl", "0"], None, "TTL"),
        (
            vec!["queue", "send", "q", "-", "--ttl", "0"],
            Some(lines(3)),
            "TTL",
        ),
        (
            vec!["queue", "send", "q", "-", "--id", "x"],
            Some(lines(3)),
            "--id names one message",
        ),
    ];
    for (args, stdin, want) in cases {
        let err = eddy_with_stdin(url, &args, stdin).fails();
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(counts(url, "q"), before, "{args:?} changed the queue");
        assert_eq!(counts(url, "q:dlq").0, 0, "{args:?} changed the DLQ");
    }
    let listed = eddy(url, &["--json", "queue", "list"]).json_lines();
    assert_eq!(listed.len(), 2, "no queue was created: {listed:?}");
    let peeked = eddy(url, &["--json", "queue", "peek", "q"]).json_lines();
    assert_eq!(peeked.len(), 1);
    assert_eq!(peeked[0]["data"]["keep"], 1);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["queue", "send", "q", "{}", "--ttl", "-1"][..],
        &["queue", "send", "q", "{}", "--delay", "soon"],
        &["queue", "receive", "q", "--block", "1x"],
        &["dlq", "requeue", "q"],
        &["queue", "ack", "q"],
        &["queue", "nope"],
    ] {
        let run = eddy("memory://", args);
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.starts_with("error: "), "{run:#?}");
    }
    let run = eddy("memory://", &["queue", "send", "q", "{}", "--ttl", "-1"]);
    assert!(run.stderr.contains("must not be negative"), "{run:#?}");
}

#[test]
fn unreachable_redis_fails_fast_naming_the_url() {
    let url = "redis://127.0.0.1:1/0";
    let started = Instant::now();
    let err = eddy(url, &["queue", "list"]).fails();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains(url), "{err}");
    let err = eddy(url, &["queue", "send", "q", "{}"]).fails();
    assert!(err.contains(url), "{err}");
    let err = eddy("http://example.invalid", &["queue", "list"]).fails();
    assert!(err.contains("unknown engine URL"), "{err}");
}

#[test]
fn memory_engine_starts_empty_each_run() {
    let url = "memory://";
    eddy(url, &["queue", "create", "x"]).ok();
    assert_eq!(
        eddy(url, &["--json", "queue", "create", "x"]).json()["created"],
        "x"
    );
    assert!(eddy(url, &["--json", "queue", "list"]).ok().is_empty());
    assert_eq!(eddy(url, &["queue", "list"]).ok().trim(), "no queues");
    let err = eddy(url, &["queue", "info", "x"]).fails();
    assert!(err.contains("eddy queue create x"), "{err}");
    // The default URL is memory://.
    let run = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["queue", "create", "y"])
        .env_remove("EDDY_URL")
        .output()
        .expect("run eddy");
    assert!(run.status.success(), "{run:?}");
}

#[test]
fn url_from_the_environment() {
    let server = redis();
    let run = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--json", "queue", "create", "env"])
        .env("EDDY_URL", server.url())
        .output()
        .expect("run eddy");
    assert!(run.status.success(), "{run:?}");
    let listed = eddy(&server.url(), &["--json", "queue", "list"]).json_lines();
    assert_eq!(listed.len(), 2);
}

#[test]
fn help_documents_the_json_output() {
    let help = eddy("memory://", &["--help"]).ok();
    for needle in [
        "--json",
        "delivery_count",
        "\"failures\"",
        "EDDY_URL",
        "memory://",
    ] {
        assert!(help.contains(needle), "{needle} missing from --help");
    }
}

/// `--count` past what Redis takes (it parses a signed 64-bit count), 0 or
/// negative is a usage error naming the option and the range, before any
/// connection: the queue is untouched.
#[test]
fn counts_out_of_range_are_usage_errors_before_redis() {
    let server = redis();
    counts_out_of_range_are_usage_errors_before_redis_on(&server.url());
}

fn counts_out_of_range_are_usage_errors_before_redis_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    eddy(url, &["queue", "send", "q", r#"{"n": 1}"#]).ok();
    for command in [
        &["queue", "peek", "q"][..],
        &["queue", "receive", "q"],
        &["queue", "receive", "q", "--follow", "--ack"],
        &["dlq", "list", "q"],
    ] {
        for count in [
            "9223372036854775808",
            "18446744073709551616",
            "99999999999999999999999",
            "0",
            "-1",
        ] {
            let mut args = command.to_vec();
            args.extend(["--count", count]);
            // A URL nobody listens on: the range is checked before any
            // connection is tried.
            for url in [url, "redis://127.0.0.1:1/0"] {
                let run = eddy(url, &args);
                assert_eq!(run.code, Some(2), "{run:#?}");
                assert!(run.stderr.starts_with("error: "), "{run:#?}");
                assert!(run.stderr.contains("--count"), "{run:#?}");
                assert!(run.stderr.contains("1..="), "{run:#?}");
                assert!(!run.stderr.contains("ERR"), "{run:#?}");
            }
        }
    }
    for bytes in ["0", "-5", "18446744073709551616"] {
        let run = eddy(url, &["--max-payload-bytes", bytes, "queue", "peek", "q"]);
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert!(run.stderr.contains("--max-payload-bytes"), "{run:#?}");
    }
    assert_eq!(counts(url, "q"), (1, 0, 1));
    // The largest count is accepted.
    let max = eddy(url, &["--json", "queue", "peek", "q", "--count", "1000000"]);
    assert_eq!(max.json_lines().len(), 1);
}

/// No raw terminal control reaches a terminal from human output: a failure
/// reason, message data, and an error message that quotes the input all
/// show their control characters escaped (`\x1b`, `\u{9b}`), each on its
/// one line. --json output is JSON, escaped by its own rules.
#[test]
fn human_output_escapes_control_characters() {
    let server = redis();
    human_output_escapes_control_characters_on(&server.url());
}

fn human_output_escapes_control_characters_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    // ESC, BEL, DEL and the C1 CSI (U+009B), as JSON escapes and raw.
    let data = "{\"t\": \"a\\u001b[2Jb\\u0007c\u{7f}d\u{9b}31m\"}";
    eddy(url, &["queue", "send", "q", data]).ok();
    eddy(url, &["queue", "send", "q", r#"{"n": 2}"#]).ok();
    let raw = |s: &str| {
        s.chars()
            .filter(|c| c.is_control() && *c != '\n')
            .map(|c| format!("{:?}", c))
            .collect::<Vec<_>>()
    };

    let peeked = eddy(url, &["queue", "peek", "q"]).ok();
    assert_eq!(raw(&peeked), Vec::<String>::new(), "{peeked}");
    assert!(peeked.contains(r"\u{9b}31m"), "{peeked}");

    let got = eddy(url, &["--json", "queue", "receive", "q", "--count", "2"]).json_lines();
    let reason = "bad\x1b[2J\x1b]0;title\x07 tab\there\nnext\u{9b}1m\r";
    eddy(
        url,
        &[
            "queue",
            "dead-letter",
            "q",
            &ids_of(&got)[0],
            "--reason",
            reason,
        ],
    )
    .ok();
    let listed = eddy(url, &["dlq", "list", "q"]).ok();
    assert!(!listed.as_bytes().contains(&0x1b), "{listed:?}");
    assert_eq!(raw(&listed), Vec::<String>::new(), "{listed:?}");
    let failure = listed
        .lines()
        .find(|l| l.trim_start().starts_with("failed "))
        .unwrap_or_else(|| panic!("no failure line: {listed}"));
    assert!(
        failure.ends_with(r"bad\x1b[2J\x1b]0;title\x07 tab\there\nnext\u{9b}1m\r"),
        "{failure}"
    );
    // JSON keeps the reason exactly.
    let dead = eddy(url, &["--json", "dlq", "list", "q"]).json_lines();
    assert_eq!(dead[0]["failures"][0]["reason"], reason);

    // An error quoting a bad id escapes it too.
    let run = eddy(url, &["queue", "ack", "q", "1-0\x1b[2J"]);
    let message = run.fails();
    assert!(!message.contains('\x1b'), "{message:?}");
    assert!(message.contains(r"\x1b[2J"), "{message:?}");
    // So does a usage error quoting the value given (clap drops whole
    // ESC sequences from it; what is left is escaped).
    for value in ["\x1b[2J", "7\x1b\x07\u{9b}"] {
        let run = eddy(url, &["queue", "peek", "q", "--count", value]);
        assert_eq!(run.code, Some(2), "{run:#?}");
        assert_eq!(raw(&run.stderr), Vec::<String>::new(), "{run:#?}");
        assert!(run.stderr.contains("1..="), "{run:#?}");
    }
}

/// `queue list` with one broken queue (its stream a string key) lists every
/// queue, the broken one as a row with its error, and exits 1 naming it.
#[test]
fn queue_list_shows_a_broken_queue_and_the_rest() {
    let server = redis();
    let url = &server.url();
    for name in ["good", "bad"] {
        eddy(url, &["queue", "create", name]).ok();
    }
    eddy(url, &["queue", "send", "good", r#"{"n":1}"#]).ok();
    server.redis_cli(["DEL", "mq:bad"]).expect("DEL");
    server.redis_cli(["SET", "mq:bad", "x"]).expect("SET");

    let human = eddy(url, &["queue", "list"]);
    assert_eq!(human.code, Some(1), "{human:#?}");
    assert!(
        human
            .stderr
            .starts_with("error: 1 queue could not be read (bad)"),
        "{human:#?}"
    );
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{human:#?}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].ends_with("ERROR"),
        "{human:#?}"
    );
    assert!(
        lines[1].starts_with("bad ") && lines[1].contains(" - "),
        "{human:#?}"
    );
    assert!(
        lines[1].split_whitespace().count() > 8,
        "the error is shown: {human:#?}"
    );
    assert!(lines[3].starts_with("good "), "{human:#?}");
    assert!(
        lines[3].split_whitespace().nth(1) == Some("1"),
        "{human:#?}"
    );

    let json = eddy(url, &["--json", "queue", "list"]);
    assert_eq!(json.code, Some(1), "{json:#?}");
    let rows: Vec<Value> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["bad", "bad:dlq", "good", "good:dlq"]);
    assert!(
        rows[0]["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{rows:?}"
    );
    assert!(rows[2]["error"].is_null(), "{rows:?}");
    assert_eq!(rows[2]["length"], 1);
}

/// `queue trim` removes acknowledged history only; `queue sweep` removes
/// expired messages and consumers that ended holding nothing.
#[test]
fn trim_and_sweep() {
    let server = redis();
    trim_and_sweep_on(&server.url());
}

fn trim_and_sweep_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "jobs"]).ok();
    eddy_with_stdin(url, &["queue", "send", "jobs", "-"], Some(lines(5))).ok();
    eddy(
        url,
        &["queue", "send", "jobs", r#"{"brief": 1}"#, "--ttl", "100ms"],
    )
    .ok();
    // Three acknowledged by `gone`, one held by `holder`, two never delivered.
    let acked = eddy(
        url,
        &[
            "--json",
            "queue",
            "receive",
            "jobs",
            "--count",
            "3",
            "--consumer",
            "gone",
            "--ack",
        ],
    )
    .json_lines();
    assert_eq!(acked.len(), 3);
    let held = eddy(
        url,
        &["--json", "queue", "receive", "jobs", "--consumer", "holder"],
    )
    .json_lines();
    assert_eq!(held.len(), 1);
    assert_eq!(counts(url, "jobs"), (6, 1, 2));

    let kept = eddy(
        url,
        &["--json", "queue", "trim", "jobs", "--older-than", "1h"],
    )
    .json();
    assert_eq!(kept["trimmed"], 0, "younger than an hour");
    let by_length = eddy(url, &["queue", "trim", "jobs", "--keep", "2"]).ok();
    assert_eq!(
        by_length.trim(),
        "removed 1 acknowledged message beyond the newest 2 from `jobs`"
    );
    thread::sleep(Duration::from_millis(300));
    let human = eddy(url, &["queue", "trim", "jobs", "--older-than", "0s"]).ok();
    assert_eq!(
        human.trim(),
        "removed 2 acknowledged messages older than 0s from `jobs`"
    );
    assert_eq!(
        counts(url, "jobs"),
        (3, 1, 2),
        "the held and the undelivered stay"
    );

    let swept = eddy(
        url,
        &["--json", "queue", "sweep", "jobs", "--idle", "200ms"],
    )
    .json();
    assert_eq!(swept["expired"], 1, "{swept}");
    assert_eq!(
        swept["consumers_removed"],
        serde_json::json!(["gone"]),
        "{swept}"
    );
    let names: Vec<String> = info(url, "jobs")["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["holder"], "a consumer holding a message stays");
    assert_eq!(counts(url, "jobs"), (2, 1, 1));

    let missing = eddy(url, &["queue", "trim", "nope", "--older-than", "1s"]).fails();
    assert!(missing.contains("nope"), "{missing}");
    let usage = eddy(url, &["queue", "trim", "jobs"]);
    assert_eq!(
        usage.code,
        Some(2),
        "--older-than or --keep is required: {usage:#?}"
    );
}

/// `queue send -` sends stdin's lines as they come: a bad line stops it
/// with every line before it sent and none after; a pipe that stays open
/// is sent from while it is open; --ttl and --delay apply to each line.
#[test]
fn stdin_is_sent_as_it_comes() {
    let server = redis();
    stdin_is_sent_as_it_comes_on(&server.url());
}

fn stdin_is_sent_as_it_comes_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    let big = format!(r#"{{"x": "{}"}}"#, "y".repeat(400));
    let mut bad_line_500: String = lines(1000)
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 499 {
                "[500]\n".to_owned()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    bad_line_500.push_str("{\"after\": 1}\n");
    let invalid_last = format!("{}{{\"n\":\n", lines(999));
    let big_last = format!("{}{big}\n", lines(999));
    let mut length = 0;
    for (args, stdin, want, before) in [
        (
            vec!["queue", "send", "q", "-"],
            bad_line_500,
            "line 500: payload must be a JSON object",
            499,
        ),
        (
            vec!["queue", "send", "q", "-"],
            invalid_last,
            "line 1000: invalid JSON",
            999,
        ),
        (
            vec!["--max-payload-bytes", "300", "queue", "send", "q", "-"],
            big_last,
            "line 1000: payload is",
            999,
        ),
    ] {
        let err = eddy_with_stdin(url, &args, Some(stdin)).fails();
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(
            err.contains(&format!("{before} messages before it were sent")),
            "{args:?}: {err}"
        );
        length += before;
        assert_eq!(counts(url, "q"), (length, 0, length), "{args:?}");
    }
    // In order, and nothing from the bad line on.
    eddy(url, &["queue", "purge", "q"]).ok();
    let stopped = "{\"n\": 0}\n{\"n\": 1}\nnot json\n{\"n\": 3}\n".to_owned();
    eddy_with_stdin(url, &["queue", "send", "q", "-"], Some(stopped)).fails();
    let peeked = eddy(url, &["--json", "queue", "peek", "q"]).json_lines();
    let ns: Vec<u64> = peeked
        .iter()
        .map(|m| m["data"]["n"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(ns, [0, 1]);

    // A pipe that stays open: its lines arrive while it is open.
    eddy(url, &["queue", "purge", "q"]).ok();
    let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--url", url, "queue", "send", "q", "-"])
        .env_remove("EDDY_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the eddy binary");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    pipe.write_all(lines(3).as_bytes()).expect("write to eddy");
    pipe.flush().expect("flush");
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts(url, "q").0 < 3 {
        assert!(
            Instant::now() < deadline,
            "lines of an open pipe were not sent"
        );
        thread::sleep(Duration::from_millis(50));
    }
    pipe.write_all(b"{\"n\": 3}\n").expect("write to eddy");
    drop(pipe);
    let out = child.wait_with_output().expect("eddy ends");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sent 4 messages"
    );

    // --ttl and --delay apply to every line.
    eddy(url, &["queue", "purge", "q"]).ok();
    eddy_with_stdin(
        url,
        &["queue", "send", "q", "-", "--delay", "1h"],
        Some(lines(2)),
    )
    .ok();
    assert_eq!(info(url, "q")["delayed"], 2);
    eddy(url, &["queue", "purge", "q"]).ok();
    eddy_with_stdin(
        url,
        &["queue", "send", "q", "-", "--ttl", "200ms"],
        Some(lines(2)),
    )
    .ok();
    thread::sleep(Duration::from_millis(400));
    let swept = eddy(url, &["--json", "queue", "sweep", "q"]).json();
    assert_eq!(swept["expired"], 2, "{swept}");
}

/// `receive --follow` reads in batches by default and still prints the
/// messages in the order they were sent.
#[test]
fn follow_prints_in_order_by_default() {
    // Enough messages that handlers run unordered would interleave: with
    // the ordering chain removed, 500 showed it one run in three.
    const N: usize = 3000;
    let server = redis();
    let url = server.url();
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    eddy_with_stdin(url, &["queue", "send", "q", "-"], Some(lines(N))).ok();
    let follow = spawn_eddy(
        url,
        &["--json", "queue", "receive", "q", "--follow", "--ack"],
    );
    let (got, status) = first_lines_then_stop(follow, N);
    assert!(status.success(), "{status:?}");
    let ns: Vec<u64> = got
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["data"]["n"]
                .as_u64()
                .unwrap_or(u64::MAX)
        })
        .collect();
    assert_eq!(ns, (0..N as u64).collect::<Vec<u64>>());
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts(url, "q") != (N as u64, 0, 0) {
        assert!(Instant::now() < deadline, "{:?}", counts(url, "q"));
        thread::sleep(Duration::from_millis(50));
    }
}

/// `receive --follow --history-length N` keeps at most N acknowledged
/// messages on the queue while it runs, however young (the age kept is
/// an hour here).
#[test]
fn follow_keeps_a_bounded_history_length() {
    const N: usize = 200;
    let server = redis();
    let url = server.url();
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    eddy_with_stdin(url, &["queue", "send", "q", "-"], Some(lines(N))).ok();
    let mut follow = spawn_eddy(
        url,
        &[
            "--json",
            "queue",
            "receive",
            "q",
            "--follow",
            "--ack",
            "--history",
            "1h",
            "--history-length",
            "10",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while counts(url, "q") != (10, 0, 0) {
        assert!(Instant::now() < deadline, "{:?}", counts(url, "q"));
        thread::sleep(Duration::from_millis(50));
    }
    follow.kill().expect("stop the follower");
    follow.wait().expect("the follower ends");
}

/// Read `n` lines from a running command's stdout, then stop it with
/// SIGTERM; returns the lines and how it exited.
fn first_lines_then_stop(
    mut child: std::process::Child,
    n: usize,
) -> (Vec<String>, std::process::ExitStatus) {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("stdout is piped");
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(n)
        .map(|l| l.expect("a line"))
        .collect();
    let stop = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(stop.success());
    (lines, child.wait().expect("the command ends"))
}

fn spawn_eddy(url: &str, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["--url", url])
        .args(args)
        .env_remove("EDDY_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the eddy binary")
}

/// `eddy tail` prints new messages without consuming them: afterwards
/// they are all still undelivered and no consumer joined.
#[test]
fn tail_shows_new_messages_without_consuming_them() {
    let server = redis();
    tail_shows_new_messages_without_consuming_them_on(&server.url());
}

fn tail_shows_new_messages_without_consuming_them_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    eddy(url, &["queue", "send", "q", r#"{"old": 1}"#]).ok();
    let tail = spawn_eddy(url, &["--json", "tail", "q"]);
    // Sent while the tail runs (after it has had time to start).
    thread::sleep(Duration::from_millis(500));
    eddy_with_stdin(url, &["queue", "send", "q", "-"], Some(lines(3))).ok();
    let (got, _) = first_lines_then_stop(tail, 3);
    let ns: Vec<u64> = got
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("JSON")["data"]["n"]
                .as_u64()
                .unwrap_or(99)
        })
        .collect();
    assert_eq!(
        ns,
        [0, 1, 2],
        "only what was sent after it started, in order"
    );
    assert_eq!(counts(url, "q"), (4, 0, 4), "nothing was consumed");
    assert_eq!(info(url, "q")["consumers"], serde_json::json!([]));
    // --since reaches back.
    let (back, _) = first_lines_then_stop(
        spawn_eddy(url, &["--json", "tail", "q", "--since", "1h"]),
        4,
    );
    assert_eq!(back.len(), 4);
    let first: Value = serde_json::from_str(&back[0]).expect("JSON");
    assert_eq!(first["data"]["old"], 1, "{back:?}");
}

/// `eddy events`: publish reaches the routed services, routes lists them,
/// replay and tail read the `all` log.
#[test]
fn events_publish_routes_replay_and_tail() {
    let server = redis();
    events_publish_routes_replay_and_tail_on(&server.url());
}

fn events_publish_routes_replay_and_tail_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    // A subscriber: its subscription queue and route, as a service makes them.
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async {
        let bus = eddy::bus::Bus::open(url).await.expect("bus");
        bus.subscribe("billing", &eddy::bus::Subscription::types(["OrderPlaced"]))
            .await
            .expect("subscribe");
    });
    let published = eddy(
        url,
        &[
            "--json",
            "events",
            "publish",
            "OrderPlaced",
            r#"{"order_id": 7}"#,
            "--source",
            "cli",
        ],
    )
    .json();
    assert_eq!(published["delivered_to"], serde_json::json!(["billing"]));
    let id = published["event_id"].as_str().expect("an id").to_owned();
    let routes = eddy(url, &["--json", "events", "routes", "OrderPlaced"]).json();
    assert_eq!(routes["services"], serde_json::json!(["billing"]));
    let nobody = eddy(url, &["events", "routes", "Nothing"]).ok();
    assert_eq!(nobody.trim(), "no service subscribes to Nothing");
    let all = eddy(url, &["--json", "events", "routes"]).json();
    assert_eq!(
        all["routes"],
        serde_json::json!([{ "event_type": "OrderPlaced", "services": ["billing"] }])
    );
    assert_eq!(
        eddy(url, &["events", "routes"]).ok().trim(),
        "OrderPlaced -> billing"
    );
    // The subscriber's queue (under the bus prefix) holds the event.
    let sub = eddy(
        url,
        &[
            "--prefix",
            "events:",
            "--json",
            "queue",
            "peek",
            "sub:billing",
        ],
    )
    .json();
    assert_eq!(sub["data"]["order_id"], 7);
    assert_eq!(sub["data"]["event_id"], id.as_str());
    assert_eq!(sub["data"]["source"], "cli");

    let replayed = eddy(url, &["--json", "events", "replay", "--since", "1m"]).json();
    assert_eq!(replayed["event_id"], id.as_str());
    assert_eq!(replayed["event_type"], "OrderPlaced");
    assert_eq!(replayed["order_id"], 7);

    let tail = spawn_eddy(url, &["events", "tail"]);
    thread::sleep(Duration::from_millis(500));
    eddy(
        url,
        &["events", "publish", "OrderShipped", r#"{"order_id": 8}"#],
    )
    .ok();
    let (got, _) = first_lines_then_stop(tail, 1);
    let e: Value = serde_json::from_str(&got[0]).expect("JSON");
    assert_eq!(
        (e["event_type"].as_str(), e["order_id"].as_u64()),
        (Some("OrderShipped"), Some(8))
    );

    let bad = eddy(url, &["events", "publish", "OrderPlaced", "[1]"]).fails();
    assert!(bad.contains("JSON object"), "{bad}");
    let reserved = eddy(
        url,
        &["events", "publish", "OrderPlaced", r#"{"event_id": "x"}"#],
    )
    .fails();
    assert!(reserved.contains("reserves"), "{reserved}");
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = eddy("memory://", &["completions", shell]).ok();
        assert!(out.contains("eddy") && out.contains("queue"), "{shell}");
    }
    let usage = eddy("memory://", &["completions", "tcsh"]);
    assert_eq!(usage.code, Some(2));
}

#[test]
fn errors_are_json_under_json() {
    let run = eddy("memory://", &["--json", "queue", "info", "nope"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.is_empty());
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{run:#?}");
    let e: Value = serde_json::from_str(lines[0]).expect("one JSON object");
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("nope")),
        "{e}"
    );
}

/// `dlq requeue --all` with --reason, --limit and --dry-run.
#[test]
fn dlq_requeue_picks_by_reason_and_limit_and_can_dry_run() {
    let server = redis();
    dlq_requeue_picks_by_reason_and_limit_and_can_dry_run_on(&server.url());
}

fn dlq_requeue_picks_by_reason_and_limit_and_can_dry_run_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    eddy(url, &["queue", "create", "q"]).ok();
    eddy_with_stdin(url, &["queue", "send", "q", "-"], Some(lines(10))).ok();
    let got = eddy(url, &["--json", "queue", "receive", "q", "--count", "10"]).json_lines();
    let ids = ids_of(&got);
    let (timeouts, bad) = ids.split_at(6);
    let mut args = vec!["queue", "dead-letter", "q"];
    args.extend(timeouts.iter().map(String::as_str));
    args.extend(["--reason", "upstream timeout"]);
    eddy(url, &args).ok();
    let mut args = vec!["queue", "dead-letter", "q"];
    args.extend(bad.iter().map(String::as_str));
    args.extend(["--reason", "bad total"]);
    eddy(url, &args).ok();
    assert_eq!(counts(url, "q:dlq").0, 10);

    let dry = eddy(
        url,
        &[
            "--json",
            "dlq",
            "requeue",
            "q",
            "--all",
            "--reason",
            "timeout",
            "--dry-run",
        ],
    )
    .json();
    assert_eq!(dry["would_requeue"], 6);
    assert_eq!(counts(url, "q:dlq").0, 10, "a dry run moves nothing");

    let some = eddy(
        url,
        &[
            "--json", "dlq", "requeue", "q", "--all", "--reason", "timeout", "--limit", "4",
        ],
    )
    .json();
    assert_eq!(some["requeued"], 4);
    let rest = eddy(
        url,
        &[
            "--json", "dlq", "requeue", "q", "--all", "--reason", "timeout",
        ],
    )
    .json();
    assert_eq!(rest["requeued"], 2);
    assert_eq!(counts(url, "q:dlq").0, 4, "the `bad total` ones stay");
    let left = eddy(url, &["--json", "dlq", "list", "q"]).json_lines();
    assert!(
        left.iter()
            .all(|m| m["failures"][0]["reason"] == "bad total"),
        "{left:?}"
    );
    let all = eddy(url, &["--json", "dlq", "requeue", "q", "--all"]).json();
    assert_eq!(all["requeued"], 4);
    let usage = eddy(url, &["dlq", "requeue", "q", "--dry-run"]);
    assert_eq!(usage.code, Some(2), "--dry-run needs --all: {usage:#?}");
}

/// `eddy top`: each queue with its DLQ in one row; refreshes give rates.
#[test]
fn top_shows_every_queue_and_how_fast_it_grows() {
    let server = redis();
    top_shows_every_queue_and_how_fast_it_grows_on(&server.url());
}

fn top_shows_every_queue_and_how_fast_it_grows_on(url: &str) {
    let url = url.to_owned();
    let url = &url;
    let url = url.as_str();
    for q in ["a", "b"] {
        eddy(url, &["queue", "create", q]).ok();
    }
    eddy_with_stdin(url, &["queue", "send", "a", "-"], Some(lines(5))).ok();
    let got = eddy(
        url,
        &[
            "--json",
            "queue",
            "receive",
            "a",
            "--count",
            "2",
            "--consumer",
            "w",
        ],
    )
    .json_lines();
    eddy(
        url,
        &[
            "queue",
            "dead-letter",
            "a",
            got[0]["id"].as_str().unwrap_or("0-0"),
            "--reason",
            "x",
        ],
    )
    .ok();
    let snap = eddy(url, &["--json", "top", "--once"]).json();
    let rows = snap["queues"].as_array().expect("queues");
    assert_eq!(rows.len(), 2, "{snap}");
    let a = &rows[0];
    assert_eq!(a["queue"], "a");
    assert_eq!(
        (
            &a["ready"],
            &a["unacked"],
            &a["dead_lettered"],
            &a["consumers"]
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{a}"
    );
    assert_eq!(a["ready_per_s"], Value::Null, "no rate from one snapshot");
    let human = eddy(url, &["top", "--once"]).ok();
    assert!(human.starts_with("eddy top: 2 queues"), "{human}");
    assert!(human.lines().any(|l| l.starts_with("b ")), "{human}");

    // Refreshing: the second snapshot has rates; a send in between shows.
    let top = spawn_eddy(url, &["--json", "top", "--interval", "500ms"]);
    thread::sleep(Duration::from_millis(200));
    eddy_with_stdin(url, &["queue", "send", "b", "-"], Some(lines(10))).ok();
    let (snaps, _) = first_lines_then_stop(top, 3);
    let last: Value = serde_json::from_str(&snaps[2]).expect("JSON");
    let b = &last["queues"][1];
    assert_eq!(b["ready"], 10, "{last}");
    assert!(b["ready_per_s"].as_f64().is_some(), "{last}");
}

/// The command tests above, on a Redis Cluster and through Sentinel: the
/// same commands, the same output. Each test gets a topology of its own, so
/// that the tests' queue names never meet.
macro_rules! on_topologies {
    ($($name:ident => $body:ident),* $(,)?) => {
        mod on_a_cluster {
            $(
                #[test]
                fn $name() {
                    let cluster = eddy_testkit::RedisCluster::start(3, 0).expect("a 3-master cluster");
                    super::$body(&cluster.url());
                }
            )*
        }
        mod through_sentinel {
            $(
                #[test]
                fn $name() {
                    let sentinel = eddy_testkit::RedisSentinel::start(1, 1).expect("a Sentinel deployment");
                    super::$body(&sentinel.url());
                }
            )*
        }
    };
}

on_topologies!(
    queue_lifecycle => queue_lifecycle_on,
    dead_letter_and_requeue => dead_letter_and_requeue_on,
    receive_ack_block_and_send_options => receive_ack_block_and_send_options_on,
    trim_and_sweep => trim_and_sweep_on,
    tail_shows_new_messages_without_consuming_them => tail_shows_new_messages_without_consuming_them_on,
    events_publish_routes_replay_and_tail => events_publish_routes_replay_and_tail_on,
    dlq_requeue_picks_by_reason_and_limit_and_can_dry_run => dlq_requeue_picks_by_reason_and_limit_and_can_dry_run_on,
    top_shows_every_queue_and_how_fast_it_grows => top_shows_every_queue_and_how_fast_it_grows_on,
    bad_inputs_fail_with_one_line_and_change_nothing => bad_inputs_fail_with_one_line_and_change_nothing_on,
    big_message_survives_moves_by_clients_with_a_smaller_limit => big_message_survives_moves_by_clients_with_a_smaller_limit_on,
    stdin_is_sent_as_it_comes => stdin_is_sent_as_it_comes_on,
    human_output_escapes_control_characters => human_output_escapes_control_characters_on,
);
