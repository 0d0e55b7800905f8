//! Running handlers: inline in the loop when they finish on their first
//! poll, else in a task of their own, under the handler timeout, with
//! panics caught.
//!
//! Most handlers finish on their first poll (they compute and return, or
//! their I/O is ready): such a handler runs in the loop, and its message is
//! acknowledged without a task of its own, since spawning one per message,
//! and waking it on another worker, costs more than the handlers
//! themselves. A handler still pending moves to a task. First polls that
//! take long (CPU-bound or blocking work) turn the fast path off for a
//! while, so that such handlers run in parallel on the runtime's workers
//! and the loop keeps reading.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use tokio::time::Instant;

use super::ConsumerStats;
use crate::handler::{panic_message, Fail};

/// A handler's first poll, run inline in the loop, taking longer than this
/// is CPU-bound work. When [`SLOW_POLLS`] of the last 16 inline polls were
/// that slow (or one took [`INLINE_STOP`]), the loop spawns every handler
/// for [`INLINE_PAUSE`]. One poll just over the mark is not enough: on a
/// busy machine a fast handler is now and then descheduled mid-poll for a
/// millisecond or more, and turning the fast path off for that costs far
/// more than it saves.
const INLINE_MAX: Duration = Duration::from_micros(100);
const SLOW_POLLS: u32 = 3;
/// One first poll this long turns the fast path off at once.
const INLINE_STOP: Duration = Duration::from_millis(20);
const INLINE_PAUSE: Duration = Duration::from_secs(1);

/// A delivery's handler once called: running, or done (a panic in the
/// handler's synchronous part, before it returns a future, is done too).
pub(super) enum Start<F> {
    Running(Pin<Box<futures::future::CatchUnwind<AssertUnwindSafe<F>>>>),
    Finished(std::thread::Result<Result<(), Fail>>),
}

impl<F: Future<Output = Result<(), Fail>>> Start<F> {
    /// Call the handler.
    pub(super) fn new<T>(handler: &(impl Fn(T) -> F + ?Sized), msg: T) -> Self {
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler(msg))) {
            Ok(fut) => Start::Running(Box::pin(AssertUnwindSafe(fut).catch_unwind())),
            Err(panic) => Start::Finished(Err(panic)),
        }
    }

    /// Call the handler and poll its future once.
    fn now<T>(handler: &(impl Fn(T) -> F + ?Sized), msg: T) -> Self {
        match Self::new(handler, msg) {
            Start::Running(mut run) => match run.as_mut().now_or_never() {
                Some(done) => Start::Finished(done),
                None => Start::Running(run),
            },
            other => other,
        }
    }

    /// Whether the handler is done and acknowledges its message.
    pub(super) fn acked(&self) -> bool {
        matches!(self, Start::Finished(Ok(Ok(()))))
    }

    /// Run the handler to its end (up to `timeout`): its result, or a retry
    /// for a panic or a timeout (counted in `stats`).
    pub(super) async fn finish(self, timeout: Duration, stats: &ConsumerStats) -> Result<(), Fail> {
        let finished = match self {
            Start::Running(run) => tokio::time::timeout(timeout, run).await,
            Start::Finished(done) => Ok(done),
        };
        match finished {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                ConsumerStats::bump(&stats.panics);
                let what = panic_message(panic.as_ref());
                tracing::error!(panic = %what, "handler panicked");
                Err(Fail::retry(format!("handler panicked: {what}")))
            }
            Err(_) => {
                ConsumerStats::bump(&stats.timeouts);
                tracing::warn!(?timeout, "handler timed out");
                Err(Fail::retry(format!("handler timed out after {timeout:?}")))
            }
        }
    }
}

/// Whether handlers run inline now: off for a while after slow first polls.
pub(super) struct Inline {
    /// Handlers run inline on their first poll from this instant on.
    after: Instant,
    /// The last 16 inline polls, a bit set per slow one.
    slow_polls: u16,
}

impl Inline {
    pub(super) fn new() -> Self {
        Self {
            after: Instant::now(),
            slow_polls: 0,
        }
    }

    /// Call the handler on `msg`, and poll it once here if handlers run
    /// inline now. Two readings of tokio's clock per message (which a test
    /// may pause: a paused clock never finds a handler slow).
    pub(super) fn start<T, F: Future<Output = Result<(), Fail>>>(
        &mut self,
        handler: &(impl Fn(T) -> F + ?Sized),
        msg: T,
    ) -> std::result::Result<Start<F>, T> {
        let started = Instant::now();
        if started < self.after {
            return Err(msg);
        }
        let start = Start::now(handler, msg);
        let took = started.elapsed();
        self.slow_polls = self.slow_polls << 1 | u16::from(took > INLINE_MAX);
        if took > INLINE_STOP || self.slow_polls.count_ones() >= SLOW_POLLS {
            self.after = started + took + INLINE_PAUSE;
            self.slow_polls = 0;
        }
        Ok(start)
    }
}
