//! Counters and latency histograms per service and event type, kept
//! in-process (an exporter reads them through [`ServiceMetrics::snapshot`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 16] = [
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    5_000_000,
    u64::MAX,
];

/// A latency histogram with fixed log-spaced buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Histogram {
    /// Observations per bucket (same order as [`Histogram::bounds_us`]).
    pub counts: [u64; 16],
    /// Total observations.
    pub count: u64,
    /// Sum of observations in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// The upper bound of each bucket, in microseconds.
    pub fn bounds_us() -> &'static [u64; 16] {
        &BUCKETS_US
    }

    fn observe(&mut self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(15);
        self.counts[i] += 1;
        self.count += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    /// The bucket bound under which `q` (0..=1) of observations fall.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let want = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some(BUCKETS_US[i]);
            }
        }
        None
    }
}

/// Counts for one event type in one service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TypeMetrics {
    /// Handled successfully (acknowledged).
    pub handled: u64,
    /// Failed and handed back for a retry.
    pub failed: u64,
    /// Rejected by the handler (dead-lettered at once).
    pub rejected: u64,
    /// Handler latency.
    pub latency: Histogram,
}

/// Metrics of one service.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    inner: Mutex<Snapshot>,
}

/// A copy of a service's metrics at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Per event type.
    pub by_type: BTreeMap<String, TypeMetrics>,
    /// Events of a type with no handler (acknowledged and logged).
    pub unknown: u64,
    /// Messages that were not events at all (dead-lettered).
    pub malformed: u64,
    /// Duplicates of an event already handled (acknowledged, skipped).
    pub duplicates: u64,
    /// Events published by this service's handlers.
    pub published: u64,
}

impl Snapshot {
    /// Events handled successfully, over all types.
    pub fn handled(&self) -> u64 {
        self.by_type.values().map(|t| t.handled).sum()
    }
}

/// How one delivery ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    Handled,
    Failed,
    Rejected,
}

impl ServiceMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(&self, event_type: &str, outcome: Recorded, latency: Duration) {
        let mut s = self.lock();
        let t = match s.by_type.get_mut(event_type) {
            Some(t) => t,
            None => s.by_type.entry(event_type.to_owned()).or_default(),
        };
        match outcome {
            Recorded::Handled => t.handled += 1,
            Recorded::Failed => t.failed += 1,
            Recorded::Rejected => t.rejected += 1,
        }
        t.latency.observe(latency);
    }

    pub(crate) fn unknown(&self) {
        self.lock().unknown += 1;
    }

    pub(crate) fn malformed(&self) {
        self.lock().malformed += 1;
    }

    pub(crate) fn duplicate(&self) {
        self.lock().duplicates += 1;
    }

    pub(crate) fn published(&self) {
        self.lock().published += 1;
    }

    /// A copy of the current values.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles() {
        let mut h = Histogram::default();
        for ms in [1, 1, 1, 1, 1, 1, 1, 1, 1, 40] {
            h.observe(Duration::from_millis(ms));
        }
        assert_eq!(h.count, 10);
        assert_eq!(h.quantile_us(0.5), Some(1_000));
        assert_eq!(h.quantile_us(0.99), Some(50_000));
        assert_eq!(Histogram::default().quantile_us(0.5), None);
    }
}
