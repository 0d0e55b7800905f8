//! One error type for the whole library, with a kind a caller can act on.

use std::fmt;
use std::sync::Arc;

/// What went wrong, in terms a caller can act on.
///
/// Match on this (with a wildcard arm: new kinds may be added) rather than on
/// the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The payload is not a JSON object. Wrap the value in an object.
    NotAnObject,
    /// The payload is larger than the configured limit. Send a reference
    /// (a URL or a key) instead, or raise `max_payload_bytes`.
    PayloadTooLarge,
    /// A message id is not of the form `<ms>-<seq>`.
    InvalidMessageId,
    /// A queue, service or path name is empty, too long, or contains
    /// characters outside `[A-Za-z0-9_.:-]`.
    InvalidName,
    /// The queue does not exist: create it first.
    QueueNotFound,
    /// The queue is at its configured maximum length; retry later.
    QueueFull,
    /// The engine URL could not be parsed, names an unknown scheme, or does
    /// not fit the server (a database index it does not have, `rediss://`
    /// to a plaintext server).
    InvalidUrl,
    /// Any other invalid argument (a zero count, a negative TTL, ...).
    InvalidArgument,
    /// The server could not be reached (after the bounded retry). Retryable.
    Unavailable,
    /// The server did not answer in time. The outcome of a write is unknown.
    Timeout,
    /// The server is out of memory (`OOM`); nothing was written.
    OutOfMemory,
    /// The server is a read-only replica; point the URL at the primary.
    ReadOnly,
    /// A consumer group vanished under a running consumer (`NOGROUP`).
    NoGroup,
    /// The queue's stream was deleted (by hand, `DEL`) while its metadata
    /// stayed: nothing was written, since recreating the stream without its
    /// consumer group would leave the message where no reader gets it.
    /// Recreate the queue (`eddy queue create NAME`,
    /// `Eddy::create_queue_pair`), then send again. Not retryable as is.
    StreamMissing,
    /// A key holds a value of the wrong type: something else wrote under
    /// eddy's prefix. Nothing was written.
    WrongType,
    /// The server refused the credentials or the command (ACL).
    PermissionDenied,
    /// An entry read from a queue could not be decoded.
    Decode,
    /// A transaction was used after it was committed or is empty.
    Transaction,
    /// On Redis Cluster, one atomic step would span hash slots: a
    /// transaction over queues that do not share a hash tag. Nothing was
    /// written; name the queues with one tag (`{shop}orders`,
    /// `{shop}payments`, see [`KeyLayout`](crate::engine::KeyLayout)) to
    /// keep them in one slot.
    CrossSlot,
    /// A webhook request's handler rejected it or failed its last allowed
    /// delivery (the request goes to the path's dead-letter queue); the message
    /// carries the handler's reason. Sending the same request again is
    /// unlikely to help.
    Rejected,
    /// Any other server or I/O error.
    Backend,
    /// This build of eddy leaves out what the call needs: a Redis URL
    /// without the `redis` feature, `rediss://` without `tls-rustls` or
    /// `tls-native-tls`. The message names the Cargo feature to enable.
    FeatureDisabled,
}

/// The error type of every fallible eddy operation.
///
/// Its [`Display`](fmt::Display) is the whole message for people; the error
/// it comes from (the Redis client's, serde_json's, an I/O error), when
/// there is one, is its [`source`](std::error::Error::source).
///
/// Written by hand rather than with `thiserror`: one struct whose `Display`
/// is a field and whose `source` is another needs no derive, and the library
/// keeps one proc-macro dependency fewer.
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    /// Shared, so that the error stays `Clone`.
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Shorthand for `Result<T, eddy::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, caused by `source` (returned by
    /// [`std::error::Error::source`]). The message should already say what
    /// matters of it: callers print the message, not always the chain.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unavailable
                | ErrorKind::Timeout
                | ErrorKind::OutOfMemory
                | ErrorKind::ReadOnly
                | ErrorKind::QueueFull
        )
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::new(ErrorKind::Decode, format!("invalid JSON: {e}")).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn the_cause_is_the_source_and_survives_a_clone() {
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let shown = json.to_string();
        let err = Error::from(json).clone();
        assert_eq!(err.kind(), ErrorKind::Decode);
        let source = err.source().expect("a serde_json error as the source");
        assert_eq!(source.to_string(), shown);
        assert!(source.downcast_ref::<serde_json::Error>().is_some());

        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = Error::new(ErrorKind::Unavailable, "lost the connection").with_source(io);
        let source = err.source().expect("an io error as the source");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("std::io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(err.to_string(), "lost the connection");

        assert!(Error::invalid_argument("zero count").source().is_none());
    }
}
