//! The report of a fault test, as RELIABILITY.md asks for it: sends
//! attempted, confirmed, failed and of unknown outcome; deliveries, unique and
//! duplicated; lost (confirmed, never delivered) and unexpected (delivered,
//! never sent), both of which must be 0; the final pending and lag. Shared by
//! `tests/faults.rs` (one server) and `tests/failover.rs` (Cluster and
//! Sentinel).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::{ErrorKind, Queue, SendOptions};
use serde_json::json;

use crate::conformance::support::Log;

/// Every send of a fault test, classified as RELIABILITY.md's report wants.
#[derive(Debug, Default)]
pub struct Sends {
    pub attempted: BTreeSet<i64>,
    /// A send returned Ok.
    pub confirmed: BTreeSet<i64>,
    /// Some attempt timed out: the outcome was unknown at the time.
    pub unknown: BTreeSet<i64>,
    /// Failed attempts by error kind.
    pub errors: BTreeMap<String, u64>,
    /// When each confirmed send was confirmed.
    pub confirmed_at: BTreeMap<i64, Instant>,
}

impl Sends {
    /// Count a failed attempt of send `n`.
    pub fn error(&mut self, n: i64, e: &eddy::Error) {
        if e.kind() == ErrorKind::Timeout {
            self.unknown.insert(n);
        }
        *self.errors.entry(format!("{:?}", e.kind())).or_default() += 1;
    }

    /// Failed attempts in all.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Print the report of RELIABILITY.md and check lost = 0, unexpected = 0.
pub fn report(row: &str, sends: &Sends, log: &Log, faults: &str, end: &eddy::QueueInfo) {
    report_replicated(row, sends, log, faults, end, None);
}

/// [`report`] for a fault that replication decides: with asynchronous
/// replication, a write the killed master confirmed but had not yet sent to
/// its replica dies with it (Redis's documented window). `replicated_before`
/// is a moment before which every confirmed write was seen on the replica
/// (the test checked the replication offsets); lost must be 0 among the
/// sends confirmed before it, and the rest are counted apart.
pub fn report_replicated(
    row: &str,
    sends: &Sends,
    log: &Log,
    faults: &str,
    end: &eddy::QueueInfo,
    replicated_before: Option<Instant>,
) {
    let deliveries = log.all();
    let delivered: BTreeSet<i64> = deliveries.iter().map(|d| d.n).collect();
    let (lost, in_window): (Vec<i64>, Vec<i64>) = sends
        .confirmed
        .difference(&delivered)
        .copied()
        .partition(|n| match (replicated_before, sends.confirmed_at.get(n)) {
            (Some(before), Some(at)) => *at < before,
            _ => true,
        });
    if replicated_before.is_some() {
        eprintln!(
            "{row}: confirmed after the last replication check and lost with the master: {} {in_window:?}",
            in_window.len()
        );
    }
    let unexpected: Vec<i64> = delivered.difference(&sends.attempted).copied().collect();
    let recovered = sends
        .unknown
        .iter()
        .filter(|n| !sends.confirmed.contains(n) && delivered.contains(n))
        .count();
    let duplicates = deliveries.len() - delivered.len();
    eprintln!(
        "{row} report: sends attempted={} confirmed={} failed={} ({:?}) unknown={} (recovered {recovered}); \
         delivered unique={} deliveries={} duplicates={duplicates} ({:.1}%); lost={} unexpected={}; \
         faults: {faults}; final pending={} lag={}",
        sends.attempted.len(),
        sends.confirmed.len(),
        sends.failed(),
        sends.errors,
        sends.unknown.len(),
        delivered.len(),
        deliveries.len(),
        100.0 * duplicates as f64 / deliveries.len().max(1) as f64,
        lost.len(),
        unexpected.len(),
        end.pending,
        end.lag,
    );
    assert!(
        lost.is_empty(),
        "{row}: confirmed sends never delivered: {lost:?}"
    );
    assert!(
        unexpected.is_empty(),
        "{row}: delivered but never sent: {unexpected:?}"
    );
    assert_eq!(
        (end.pending, end.lag),
        (0, 0),
        "{row}: final pending and lag"
    );
}

/// A producer task: sends `{"n": n}` with message id `m{n}` for n = 0, 1, ...
/// every `every`, retrying a failed send (same message id) until it is
/// confirmed, until `stop` is set.
pub fn producer(
    q: Queue,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Sends> {
    tokio::spawn(async move {
        let mut sends = Sends::default();
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            sends.attempted.insert(n);
            let give_up = Instant::now() + Duration::from_secs(20);
            loop {
                let opts = SendOptions::new().message_id(format!("m{n}"));
                match q.send_with(&json!({"n": n}), &opts).await {
                    Ok(_) => {
                        sends.confirmed.insert(n);
                        sends.confirmed_at.insert(n, Instant::now());
                        break;
                    }
                    Err(e) => {
                        assert!(
                            e.is_retryable(),
                            "send {n}: a fault must give a retryable error, got {e:?}"
                        );
                        sends.error(n, &e);
                        assert!(Instant::now() < give_up, "send {n} failed for 20 s: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            n += 1;
            tokio::time::sleep(every).await;
        }
        sends
    })
}
