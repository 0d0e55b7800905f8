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
        let name = q.queue_name();
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

/// One queue's running totals: what its rates are computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Messages ever added to the queue ([`QueueInfo::sent_total`]).
    pub sent: Option<u64>,
    /// Messages delivered and no longer pending: acknowledged,
    /// dead-lettered or moved (`delivered_total - pending`).
    pub settled: Option<u64>,
}

/// Each queue's totals by name (its DLQ left out: a dead-lettering is a
/// settlement of the queue, not a send); queues that could not be read
/// are left out.
pub fn totals(queues: &[QueueInfo]) -> BTreeMap<&str, Totals> {
    queues
        .iter()
        .filter(|q| q.error.is_none() && !q.is_dlq)
        .map(|q| {
            let t = Totals {
                sent: q.sent_total,
                settled: q.delivered_total.map(|d| d.saturating_sub(q.pending)),
            };
            (q.name.as_str(), t)
        })
        .collect()
}

/// One sample: when, the totals, and each queue's counts and totals.
#[derive(Debug)]
struct Sample {
    /// Milliseconds since the Unix epoch (this machine's clock).
    at_ms: u64,
    total: Counts,
    /// Sorted by name.
    queues: Vec<(Arc<str>, Counts, Totals)>,
}

impl Sample {
    fn queue(&self, name: &str) -> Option<&(Arc<str>, Counts, Totals)> {
        self.queues
            .binary_search_by(|(n, _, _)| (**n).cmp(name))
            .ok()
            .map(|i| &self.queues[i])
    }
}

/// The rates of one interval between two samples, as `/api/throughput`
/// answers them: `None` where no queue's counter could be compared (not
/// counted, or gone down: a queue purged or recreated).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    /// Milliseconds since the Unix epoch: the end of the interval.
    pub t: u64,
    /// Messages sent per second.
    pub sent_per_s: Option<f64>,
    /// Messages settled per second.
    pub settled_per_s: Option<f64>,
}

/// How much a counter grew from `before` to `after`; `None` if either is
/// unknown or it went down.
fn growth(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    after?.checked_sub(before?)
}

/// Sum what is known; `None` if nothing is.
fn sum(parts: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    parts
        .flatten()
        .fold(None, |acc, n| Some(acc.unwrap_or(0) + n))
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
        let by_queue_totals = totals(queues);
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
                let t = by_queue_totals.get(name).copied().unwrap_or_default();
                list.push((shared, c, t));
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
                    Some(name) => s.queue(name).map_or_else(Counts::default, |q| q.1),
                },
            })
            .collect()
    }

    /// The send and settle rates of every interval between consecutive
    /// samples, of all queues or of one. A queue counts in an interval
    /// only if it is in both samples and its counter did not go down.
    pub fn rates(&self, queue: Option<&str>) -> Vec<Rate> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(before, after)| rate(before, after, queue))
            .collect()
    }
}

/// The rates from `before` to `after`, of all queues or of `queue`.
fn rate(before: &Sample, after: &Sample, queue: Option<&str>) -> Rate {
    let pairs: Vec<(Totals, Totals)> = match queue {
        Some(name) => before
            .queue(name)
            .zip(after.queue(name))
            .map(|(b, a)| (b.2, a.2))
            .into_iter()
            .collect(),
        None => after
            .queues
            .iter()
            .filter_map(|(name, _, a)| before.queue(name).map(|b| (b.2, *a)))
            .collect(),
    };
    let sent = sum(pairs.iter().map(|(b, a)| growth(b.sent, a.sent)));
    let settled = sum(pairs.iter().map(|(b, a)| growth(b.settled, a.settled)));
    let secs = after.at_ms.saturating_sub(before.at_ms) as f64 / 1000.0;
    let per_s = |n: Option<u64>| n.filter(|_| secs > 0.0).map(|n| n as f64 / secs);
    Rate {
        t: after.at_ms,
        sent_per_s: per_s(sent),
        settled_per_s: per_s(settled),
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
        assert_eq!(history.rates(None).len(), 2);
        assert_eq!(history.rates(None)[0].sent_per_s, None);
    }

    fn sample(at_ms: u64, queues: &[(&str, u64, u64)]) -> Sample {
        Sample {
            at_ms,
            total: Counts::default(),
            queues: queues
                .iter()
                .map(|(name, sent, settled)| {
                    let t = Totals {
                        sent: Some(*sent),
                        settled: Some(*settled),
                    };
                    (Arc::from(*name), Counts::default(), t)
                })
                .collect(),
        }
    }

    #[test]
    fn rates_per_second_skip_counters_that_went_down() {
        let before = sample(1_000, &[("a", 10, 4), ("b", 100, 50), ("gone", 7, 7)]);
        // `b` was recreated: its counters start again and are left out.
        let after = sample(3_000, &[("a", 30, 10), ("b", 2, 0), ("new", 9, 9)]);
        let all = rate(&before, &after, None);
        assert_eq!((all.sent_per_s, all.settled_per_s), (Some(10.0), Some(3.0)));
        let b = rate(&before, &after, Some("b"));
        assert_eq!((b.sent_per_s, b.settled_per_s), (None, None));
        let new = rate(&before, &after, Some("new"));
        assert_eq!(new.sent_per_s, None);
        assert_eq!(new.t, 3_000);
    }
}
