//! The options of a send and of a receive.

use std::time::Duration;

use super::DEFAULT_CONSUMER;

/// Options for one send.
///
/// ```
/// use std::time::Duration;
/// let opts = eddy::SendOptions::new()
///     .ttl(Duration::from_secs(60))
///     .delay(Duration::from_secs(5))
///     .message_id("order-7-created");
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SendOptions {
    /// Remove the message unread after this long (server clock).
    pub ttl: Option<Duration>,
    /// Deliver no earlier than this long from now (server clock).
    pub delay: Option<Duration>,
    /// The message id stored in `_metadata.id` (a UUID v4 if not set).
    pub message_id: Option<String>,
    /// Members the sender writes after the payload's own (a webhook's
    /// `_leanmq`), as JSON text: spliced in, so the payload's bytes stay
    /// as it serialized them.
    pub(crate) members: Vec<(&'static str, Box<serde_json::value::RawValue>)>,
}

impl SendOptions {
    /// No TTL, no delay, a fresh UUID.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set a TTL.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Set a delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
    /// Set the message id.
    pub fn message_id(mut self, id: impl Into<String>) -> Self {
        self.message_id = Some(id.into());
        self
    }
    /// Write the member `name: value` after the payload's own members.
    pub(crate) fn member(
        mut self,
        name: &'static str,
        value: Box<serde_json::value::RawValue>,
    ) -> Self {
        self.members.push((name, value));
        self
    }
}

/// Options for [`Queue::receive`](super::Queue::receive).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Receive {
    /// At most this many messages (default 1).
    pub count: usize,
    /// Wait up to this long for the first message (default: don't wait).
    pub block: Option<Duration>,
    /// The consumer name (default `default-consumer`).
    pub consumer: String,
}

impl Default for Receive {
    fn default() -> Self {
        Self {
            count: 1,
            block: None,
            consumer: DEFAULT_CONSUMER.to_owned(),
        }
    }
}

impl Receive {
    /// One message, no waiting, consumer `default-consumer`.
    pub fn new() -> Self {
        Self::default()
    }
    /// Set the maximum count.
    pub fn count(mut self, n: usize) -> Self {
        self.count = n;
        self
    }
    /// Wait up to `d` for the first message.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = Some(d);
        self
    }
    /// Set the consumer name.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }
}
