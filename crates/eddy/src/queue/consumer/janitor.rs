//! Keeping a queue bounded while it is used: the acker trims the
//! acknowledged history it leaves behind, and forgets consumers that
//! ended (a process that restarts comes back under a new name; the old
//! one would stay in the group for ever).
//!
//! Trims follow the acknowledgements rather than a long timer: while
//! acknowledgements arrive, one trim every half history window (at most
//! 4 a second, at least one a minute), and a last one once the newest
//! acknowledged entry has passed the window, so a queue that goes quiet
//! is left with none of it. A trim never removes an entry that is pending
//! or not yet delivered ([`crate::Queue::trim_history`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{ConsumerOptions, ConsumerStats};
use crate::queue::{Queue, Retention};

/// Acknowledged history a consumer loop keeps by default: long enough to
/// look at what was just handled (`eddy queue peek`), short enough that a
/// queue's memory is its rate times one minute.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(60);

/// A consumer that holds nothing and has not read for this long is
/// removed from its group by default. A live consumer reads at least once
/// per poll (1 s by default), so only a consumer whose process ended (or
/// whose loop was stopped for good) gets this idle.
pub const DEFAULT_FORGET_IDLE: Duration = Duration::from_secs(3600);

const MIN_TRIM_EVERY: Duration = Duration::from_millis(250);
const MAX_TRIM_EVERY: Duration = Duration::from_secs(60);
const LENGTH_TRIM_EVERY: Duration = Duration::from_secs(1);
const MIN_FORGET_EVERY: Duration = Duration::from_secs(1);
const MAX_FORGET_EVERY: Duration = Duration::from_secs(600);

pub(super) struct Janitor {
    queue: Queue,
    history: Option<Duration>,
    retention: Retention,
    trim_every: Duration,
    /// Acknowledgements were written since the last turn.
    acked: bool,
    /// When the newest acknowledged entry has passed the window (plus one
    /// interval): trims are due until then.
    trim_until: Option<Instant>,
    last_trim: Instant,
    forget_idle: Option<Duration>,
    forget_every: Duration,
    next_forget: Instant,
}

impl Janitor {
    pub(super) fn new(queue: Queue, opts: &ConsumerOptions) -> Self {
        let retention = Retention::new(opts.history, opts.history_length);
        // The window the schedule follows: a length bound alone trims as
        // if no age were kept (at once after acknowledgements).
        let history = match (opts.history, opts.history_length) {
            (None, Some(_)) => Some(Duration::ZERO),
            (h, _) => h,
        };
        let mut trim_every = history
            .map(|h| (h / 2).clamp(MIN_TRIM_EVERY, MAX_TRIM_EVERY))
            .unwrap_or(MAX_TRIM_EVERY);
        if opts.history_length.is_some() {
            // A length bound is passed as entries are acknowledged, not as
            // time goes: trim at least once a second however long the age.
            trim_every = trim_every.min(LENGTH_TRIM_EVERY);
        }
        let forget_every = opts
            .forget_idle
            .map(|d| (d / 2).clamp(MIN_FORGET_EVERY, MAX_FORGET_EVERY))
            .unwrap_or(MAX_FORGET_EVERY);
        let now = Instant::now();
        Self {
            queue,
            history,
            retention,
            trim_every,
            acked: false,
            trim_until: None,
            last_trim: now,
            forget_idle: opts.forget_idle,
            forget_every,
            // At once: a restarted service forgets its predecessors' names.
            next_forget: now,
        }
    }

    /// Acknowledgements were just written. No clock is read here, once per
    /// batch: the next turn dates them.
    pub(super) fn acked(&mut self) {
        self.acked = self.history.is_some();
    }

    /// When the next piece of work is due, if any is.
    pub(super) fn due(&self) -> Option<Instant> {
        let trim =
            (self.acked || self.trim_until.is_some()).then(|| self.last_trim + self.trim_every);
        let forget = self.forget_idle.map(|_| self.next_forget);
        match (trim, forget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether work is due now.
    pub(super) fn is_due(&self) -> bool {
        self.due().is_some_and(|at| at <= Instant::now())
    }

    /// Do what is due. Failures are logged and counted; the next turn
    /// tries again.
    pub(super) async fn run(&mut self, stats: &ConsumerStats) {
        let now = Instant::now();
        if let (true, Some(history)) = (std::mem::take(&mut self.acked), self.history) {
            // The acknowledgements since the last turn were written by now.
            self.trim_until = Some(now + history + self.trim_every);
        }
        if let (Some(_), Some(until)) = (self.history, self.trim_until) {
            if self.last_trim + self.trim_every <= now {
                self.last_trim = now;
                if now >= until {
                    self.trim_until = None;
                }
                match self.queue.apply_retention(self.retention).await {
                    Ok(n) => {
                        stats.trimmed.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => {
                        ConsumerStats::bump(&stats.errors);
                        tracing::warn!(error = %e, queue = self.queue.name(), "trimming acknowledged history failed; will try again");
                    }
                }
            }
        }
        if let Some(idle) = self.forget_idle {
            if self.next_forget <= now {
                self.next_forget = now + self.forget_every;
                match self.queue.forget_idle_consumers(idle).await {
                    Ok(gone) if !gone.is_empty() => {
                        tracing::info!(queue = self.queue.name(), consumers = ?gone, "removed consumers idle for {idle:?} that held nothing");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        ConsumerStats::bump(&stats.errors);
                        tracing::warn!(error = %e, queue = self.queue.name(), "removing idle consumers failed; will try again");
                    }
                }
            }
        }
    }
}
