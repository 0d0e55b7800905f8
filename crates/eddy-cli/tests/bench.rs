//! `eddy bench` runs every scenario and prints one JSON line with the
//! figures it promises. Tiny runs: this checks the shape of the output,
//! never how fast anything is (figures come from the program itself, see
//! BENCHMARKS.md).

use std::process::Command;

use eddy_testkit::RedisServer;
use serde_json::Value;

/// Run `eddy --json bench ARGS...` and parse its one line of output.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("--json")
        .arg("bench")
        .args(args)
        .output()
        .expect("run eddy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "eddy bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn number(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn has_figures(v: &Value, rate_key: &str) {
    for key in [rate_key, "p50_ms", "p99_ms", "peak_rss_mb"] {
        assert!(number(v, key) > 0.0, "`{key}` in {v}");
    }
}

#[test]
fn every_scenario_runs_on_the_embedded_engine() {
    let q = bench(&["queue", "--messages", "3000", "--batch", "50"]);
    assert_eq!(
        (q["scenario"].as_str(), q["engine"].as_str()),
        (Some("queue"), Some("memory"))
    );
    has_figures(&q, "msgs_per_s");
    assert!(number(&q, "loop_msgs_per_s") > 0.0, "{q}");
    assert!(
        q.get("raw_msgs_per_s").is_none(),
        "no baseline without Redis: {q}"
    );

    let b = bench(&[
        "bus",
        "--messages",
        "500",
        "--rate",
        "500",
        "--duration",
        "200ms",
    ]);
    has_figures(&b, "events_per_s");
    assert!(number(&b, "rate_p99_ms") > 0.0, "{b}");
    assert!(number(&b, "idle_rss_mb") > 0.0, "{b}");

    let r = bench(&["rpc", "--messages", "200", "--concurrency", "4"]);
    has_figures(&r, "requests_per_s");
    assert_eq!(r["msgs_per_s"], r["requests_per_s"], "{r}");

    let l = bench(&["latency", "--rate", "500", "--duration", "200ms"]);
    has_figures(&l, "msgs_per_s");
    assert!(number(&l, "p999_ms") >= number(&l, "p50_ms"), "{l}");

    recovery_figures(&bench(&["recovery", "--messages", "2000", "--batch", "50"]));
}

/// The recovery rate beside the normal rate of the same run, and the ratio.
fn recovery_figures(v: &Value) {
    assert_eq!(v["scenario"], "recovery", "{v}");
    let (recovery, normal) = (number(v, "msgs_per_s"), number(v, "loop_msgs_per_s"));
    assert!(recovery > 0.0 && normal > 0.0, "{v}");
    let ratio = number(v, "vs_normal");
    assert!((ratio - recovery / normal).abs() < 0.01, "{v}");
}

#[test]
fn redis_scenarios_run_next_to_the_raw_baseline() {
    let server = RedisServer::start().expect("start redis-server");
    let url = server.url();
    let q = bench(&[
        "queue",
        "--url",
        &url,
        "--messages",
        "3000",
        "--batch",
        "50",
    ]);
    assert_eq!(q["engine"], "redis");
    has_figures(&q, "msgs_per_s");
    assert!(number(&q, "raw_msgs_per_s") > 0.0, "{q}");
    assert!(number(&q, "vs_raw") > 0.0, "{q}");
    assert!(number(&q, "redis_cpu_us_per_msg") >= 0.0, "{q}");
    assert!(q["redis_version"].is_string(), "{q}");

    let l = bench(&[
        "latency",
        "--url",
        &url,
        "--rate",
        "500",
        "--duration",
        "200ms",
    ]);
    assert!(number(&l, "raw_p99_ms") > 0.0, "{l}");

    let b = bench(&[
        "bus",
        "--url",
        &url,
        "--messages",
        "500",
        "--rate",
        "500",
        "--duration",
        "200ms",
    ]);
    assert!(number(&b, "raw_msgs_per_s") > 0.0, "{b}");

    let r = bench(&[
        "rpc",
        "--url",
        &url,
        "--messages",
        "200",
        "--concurrency",
        "4",
    ]);
    assert!(number(&r, "raw_msgs_per_s") > 0.0, "{r}");

    recovery_figures(&bench(&[
        "recovery",
        "--url",
        &url,
        "--messages",
        "2000",
        "--batch",
        "50",
    ]));

    // Nothing is left behind under the bench prefix.
    let keys = server.redis_cli(["KEYS", "bench-*"]).expect("redis-cli");
    assert!(keys.trim().is_empty(), "left behind: {keys}");
}
