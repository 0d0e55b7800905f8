//! The queue counts sampled over the last minutes, for the chart: a ring
//! buffer of samples, each the totals and every queue's counts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use eddy::QueueInfo;

/// One queue's counts (a queue with its DLQ), as the table shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Not yet delivered.
    pub ready: u64,
    /// Delivered, not yet acknowledged.
    pub unacked: u64,
    /// In the dead-letter queue.
    pub dead_lettered: u64,
    /// Waiting for their delivery time.
    pub delayed: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.ready += other.ready;
        self.unacked += other.unacked;
        self.dead_lettered += other.dead_lettered;
        self.delayed += other.delayed;
    }
}

/// Each queue's counts by name (a DLQ counted under its queue), from a
/// listing; queues that could not be read are left out.
pub fn counts(queues: &[QueueInfo]) -> BTreeMap<&str, Counts> {
    let mut out: BTreeMap<&str, Counts> = BTreeMap::new();
    for q in queues.iter().filter(|q| q.error.is_none()) {
        let name = if q.is_dlq {
            q.name.strip_suffix(":dlq").unwrap_or(&q.name)
        } else {
            &q.name
        };
        let c = out.entry(name).or_default();
        if q.is_dlq {
            c.dead_lettered = q.length;
        } else {
            c.ready = q.lag;
            c.unacked = q.pending;
            c.delayed = q.delayed;
        }
    }
    out
}

/// One sample: when, the totals, and each queue's counts.
#[derive(Debug)]
struct Sample {
    /// Milliseconds since the Unix epoch (this machine's clock).
    at_ms: u64,
    total: Counts,
    queues: Vec<(Arc<str>, Counts)>,
}

/// A point of a series, as `/api/throughput` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    /// The counts then.
    #[serde(flatten)]
    pub counts: Counts,
}

/// The last samples, oldest first.
#[derive(Debug)]
pub struct History {
    kept: usize,
    samples: Mutex<VecDeque<Sample>>,
    /// Queue names shared by the samples (one allocation per queue, not
    /// one per queue per sample).
    names: Mutex<BTreeMap<String, Arc<str>>>,
}

impl History {
    /// At most `kept` samples.
    pub fn new(kept: usize) -> Self {
        Self {
            kept: kept.max(1),
            samples: Mutex::default(),
            names: Mutex::default(),
        }
    }

    /// Record a listing as a sample taken now.
    pub fn record(&self, queues: &[QueueInfo]) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let by_queue = counts(queues);
        let mut total = Counts::default();
        let mut list = Vec::with_capacity(by_queue.len());
        {
            let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            names.retain(|name, _| by_queue.contains_key(name.as_str()));
            for (name, c) in by_queue {
                total.add(c);
                let shared = names
                    .entry(name.to_owned())
                    .or_insert_with(|| Arc::from(name))
                    .clone();
                list.push((shared, c));
            }
        }
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == self.kept {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at_ms,
            total,
            queues: list,
        });
    }

    /// The totals over time, or one queue's counts (zero in the samples
    /// taken before it existed).
    pub fn series(&self, queue: Option<&str>) -> Vec<Point> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .map(|s| Point {
                t: s.at_ms,
                counts: match queue {
                    None => s.total,
                    Some(name) => s
                        .queues
                        .binary_search_by(|(n, _)| (**n).cmp(name))
                        .map_or_else(|_| Counts::default(), |i| s.queues[i].1),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_samples() {
        let history = History::new(3);
        for _ in 0..5 {
            history.record(&[]);
        }
        assert_eq!(history.series(None).len(), 3);
        assert_eq!(history.series(Some("nope"))[0].counts, Counts::default());
    }
}
