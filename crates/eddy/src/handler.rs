//! What a handler returns, and when a runner stops: shared by the consumer
//! loop ([`crate::queue::consumer`]), the service runtime
//! ([`crate::service`]) and webhooks ([`crate::webhook`]), which sit on top
//! of this module and never import one another for it.
//!
//! Every handler returns a `Result`: `Ok` acknowledges the message (a
//! webhook's `Ok` also carries the reply), and [`Fail`] says what to do
//! instead: retry it (after the backoff, or after a delay the handler
//! chooses, however long) or reject it (dead-letter it now). `?` on an
//! [`eddy::Error`](crate::Error) retries what [`Error::is_retryable`] says
//! may pass (a lost connection, a full queue) and rejects the rest.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eddy::Result<()> {
//! use std::time::Duration;
//! use eddy::queue::consumer::{run, ConsumerOptions};
//! use eddy::Fail;
//!
//! let mq = eddy::Eddy::open("memory://").await?;
//! let (jobs, dlq) = mq.create_queue_pair("jobs").await?;
//! jobs.send(&serde_json::json!({"n": -1})).await?;
//!
//! let stop = tokio::time::sleep(Duration::from_millis(200));
//! run(jobs, ConsumerOptions::new(), |msg| async move {
//!     match msg.data["n"].as_i64() {
//!         Some(n) if n >= 0 => Ok(()),
//!         Some(_) => Err(Fail::reject("n must not be negative")),
//!         None => Err(Fail::retry_after(Duration::from_secs(600), "n is not there yet")),
//!     }
//! }, stop).await?;
//! assert_eq!(dlq.peek(1).await?[0].failures()[0].reason, "n must not be negative");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use crate::error::Error;

/// Why a handler did not acknowledge its message, and what to do with it.
///
/// A handler returns `Result<_, Fail>`; `Ok` acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fail {
    /// Possibly transient: deliver it again later, or dead-letter it once
    /// it has had its maximum deliveries.
    Retry {
        /// Why, kept as the last error for the dead-letter record.
        error: String,
        /// How long to wait: `None` for the runner's backoff for this
        /// attempt. Any length works: a wait past the visibility timeout
        /// parks the message until it is due, its delivery count kept.
        after: Option<Duration>,
    },
    /// Will never succeed: dead-letter it now, with this reason.
    Reject {
        /// Why.
        reason: String,
    },
}

impl Fail {
    /// Retry after the backoff for this attempt.
    pub fn retry(error: impl fmt::Display) -> Self {
        Fail::Retry {
            error: error.to_string(),
            after: None,
        }
    }

    /// Retry `after` from now (instead of the backoff).
    pub fn retry_after(after: Duration, error: impl fmt::Display) -> Self {
        Fail::Retry {
            error: error.to_string(),
            after: Some(after),
        }
    }

    /// Dead-letter now with `reason`.
    pub fn reject(reason: impl fmt::Display) -> Self {
        Fail::Reject {
            reason: reason.to_string(),
        }
    }

    /// Whether the message is to be delivered again.
    pub fn is_retry(&self) -> bool {
        matches!(self, Fail::Retry { .. })
    }

    /// The error or the reason, as the dead-letter record keeps it.
    pub fn message(&self) -> &str {
        match self {
            Fail::Retry { error, .. } => error,
            Fail::Reject { reason } => reason,
        }
    }
}

/// `?` in a handler: an error that may pass ([`Error::is_retryable`]: the
/// server unreachable or out of memory, a full queue...) retries with the
/// backoff; any other (bad data, a missing queue, a refused command) would
/// fail the same way every time, so it rejects, the error as the reason.
impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        if e.is_retryable() {
            Fail::retry(e)
        } else {
            Fail::reject(e)
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Retry { error, .. } => write!(f, "failed: {error}"),
            Fail::Reject { reason } => write!(f, "rejected: {reason}"),
        }
    }
}

impl std::error::Error for Fail {}

/// What a handler's panic said, for logs and dead-letter records.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM: the signal every runner's
/// `run_until_signal` stops on.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn an_engine_error_retries_only_when_it_may_pass() {
        let passing = Error::new(ErrorKind::Unavailable, "connection refused");
        assert_eq!(Fail::from(passing), Fail::retry("connection refused"));
        let full = Error::new(ErrorKind::QueueFull, "full");
        assert!(Fail::from(full).is_retry());
        let bad = Error::new(ErrorKind::Decode, "missing field `total`");
        let fail = Fail::from(bad);
        assert_eq!(fail, Fail::reject("missing field `total`"));
        assert_eq!(fail.message(), "missing field `total`");
        assert_eq!(fail.to_string(), "rejected: missing field `total`");
        assert!(!Fail::from(Error::new(ErrorKind::QueueNotFound, "gone")).is_retry());
    }
}
