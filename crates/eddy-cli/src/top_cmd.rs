//! `eddy top`: every queue's ready, unacknowledged, dead-lettered and
//! delayed messages and consumers, refreshed in place, with how fast the
//! backlog and the DLQ grow.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use eddy::{Eddy, QueueInfo};

use crate::error::CliResult;
use crate::output::{escape_controls, Output};

/// One queue with its DLQ.
#[derive(Debug, Clone, Default, Serialize)]
struct Row {
    queue: String,
    ready: u64,
    ready_estimated: bool,
    unacked: u64,
    dead_lettered: u64,
    delayed: u64,
    consumers: usize,
    /// Change of `ready` per second since the last refresh.
    ready_per_s: Option<f64>,
    /// Change of `dead_lettered` per second since the last refresh.
    dead_lettered_per_s: Option<f64>,
    error: Option<String>,
}

/// `eddy top [--interval DUR] [--once]`.
pub async fn run(
    mq: &Eddy,
    interval: Duration,
    once: bool,
    json: bool,
    out: &mut Output,
) -> CliResult {
    let redraw = !once && !json && std::io::stdout().is_terminal();
    // A refresh is a few engine calls per hundred queues; more than ten a
    // second would only load the server.
    let interval = interval.max(Duration::from_millis(100));
    let mut before: Option<(Instant, BTreeMap<String, Row>)> = None;
    loop {
        let started = Instant::now();
        let mut rows = rows(&mq.list_queues().await?);
        if let Some((then, prev)) = &before {
            let secs = started.duration_since(*then).as_secs_f64().max(1e-3);
            for row in rows.values_mut() {
                if let Some(p) = prev.get(&row.queue) {
                    row.ready_per_s = Some((row.ready as f64 - p.ready as f64) / secs);
                    row.dead_lettered_per_s =
                        Some((row.dead_lettered as f64 - p.dead_lettered as f64) / secs);
                }
            }
        }
        let took = started.elapsed();
        if json {
            let list: Vec<&Row> = rows.values().collect();
            out.result(
                serde_json::json!({ "queues": list, "read_ms": took.as_millis() as u64 }),
                "",
            )?;
            out.flush()?;
        } else {
            // The table escapes what it prints from the engine (names,
            // errors); the redraw is the only control sequence of its own.
            let text = table(&rows, took);
            if redraw {
                // Home and clear, then the table: a refresh in place.
                out.raw(&format!("\x1b[H\x1b[2J{text}"))?;
            } else {
                out.raw(&text)?;
            }
        }
        if once {
            return Ok(());
        }
        before = Some((started, rows));
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// The rows of `queues`, each queue with its DLQ, by name.
fn rows(queues: &[QueueInfo]) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for q in queues {
        let name = q.queue_name();
        let row = rows.entry(name.to_owned()).or_insert_with(|| Row {
            queue: name.to_owned(),
            ..Row::default()
        });
        if let Some(e) = &q.error {
            row.error = Some(e.clone());
        }
        if q.is_dlq {
            row.dead_lettered = q.length;
        } else {
            row.ready = q.lag;
            row.ready_estimated = q.lag_estimated;
            row.unacked = q.pending;
            row.delayed = q.delayed;
            row.consumers = q.consumers.len();
        }
    }
    rows
}

fn table(rows: &BTreeMap<String, Row>, took: Duration) -> String {
    let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:+.1}"));
    let mut out = Vec::new();
    let _ = writeln!(
        out,
        "eddy top: {} queues, read in {} ms",
        rows.len(),
        took.as_millis()
    );
    let _ = writeln!(
        out,
        "{:<32} {:>10} {:>10} {:>10} {:>8} {:>9} {:>10} {:>8}",
        "QUEUE", "READY", "UNACKED", "DLQ", "DELAYED", "CONSUMERS", "READY/S", "DLQ/S"
    );
    for r in rows.values() {
        let ready = if r.ready_estimated {
            format!("~{}", r.ready)
        } else {
            r.ready.to_string()
        };
        let _ = write!(
            out,
            "{:<32} {:>10} {:>10} {:>10} {:>8} {:>9} {:>10} {:>8}",
            escape_controls(&r.queue),
            ready,
            r.unacked,
            r.dead_lettered,
            r.delayed,
            r.consumers,
            rate(r.ready_per_s),
            rate(r.dead_lettered_per_s)
        );
        if let Some(e) = &r.error {
            let _ = write!(out, "  error: {}", escape_controls(e));
        }
        let _ = writeln!(out);
    }
    String::from_utf8_lossy(&out).trim_end().to_owned()
}
