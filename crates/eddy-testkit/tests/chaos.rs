//! The chaos program's short preset, as CI runs it: a few thousand messages
//! through consumer processes while consumers are SIGKILLed and SIGTERMed
//! and Redis is killed, restarted, frozen and has its connections cut. Fails
//! on any loss (see src/bin/chaos.rs for the run and its report).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

#[test]
fn short_chaos_run_loses_nothing() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .arg("--short")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the chaos program");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let report: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["report"] == "eddy-chaos")
        .unwrap_or_else(|| panic!("no JSON report line\n{context}"));

    assert_eq!(report["lost"], 0, "{context}");
    assert_eq!(report["unexpected"], 0, "{context}");
    assert_eq!(report["final"]["xpending"], 0, "{context}");
    assert_eq!(report["final"]["unread"], 0, "{context}");
    assert!(report["faults"]["total"].as_u64() >= Some(6), "{context}");
    assert!(report["faults"]["kinds"].as_u64() >= Some(4), "{context}");
    assert_eq!(report["pass"], true, "{context}");
    assert!(
        out.status.success(),
        "exit status {}\n{context}",
        out.status
    );
    // The preset is meant to stay well inside a CI step.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    eprintln!("{stdout}");
}
