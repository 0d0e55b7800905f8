//! How long the `all` log keeps events. It is a replay record that no
//! group consumes, so nothing acknowledges (or trims) its entries; the
//! publishers trim it as they publish, at most once per half window (at
//! most 4 times a second, at least once a minute), in a task of its own so
//! that no publish waits for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Events the `all` log keeps by default: ten minutes, enough for a
/// service deployed a little late to catch up with [`super::Bus::replay`].
pub const DEFAULT_LOG_HISTORY: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub(super) struct LogHistory {
    keep: Option<Duration>,
    every_ms: u64,
    start: Instant,
    /// Milliseconds after `start` when the next trim is due.
    next_ms: AtomicU64,
}

impl LogHistory {
    pub(super) fn new(keep: Option<Duration>) -> Self {
        let every = keep
            .map(|k| (k / 2).clamp(Duration::from_millis(250), Duration::from_secs(60)))
            .unwrap_or_default();
        Self {
            keep,
            every_ms: every.as_millis() as u64,
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn keep(&self) -> Option<Duration> {
        self.keep
    }

    /// The window to trim to, if a trim is due now; the caller that gets
    /// it does the trim (one caller per interval).
    pub(super) fn claim(&self) -> Option<Duration> {
        let keep = self.keep?;
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now < next {
            return None;
        }
        self.next_ms
            .compare_exchange(
                next,
                now + self.every_ms,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .ok()
            .map(|_| keep)
    }
}
