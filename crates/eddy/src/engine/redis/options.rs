//! The Redis engine's connection settings: compiled with or without the
//! `redis` feature, so that code setting them builds either way (a build
//! without the feature then refuses Redis URLs when it opens one).

use std::time::Duration;

/// Connection settings for the Redis engine.
///
/// ```
/// use std::time::Duration;
/// let opts = eddy::engine::redis::RedisOptions::default()
///     .connect_attempts(5)
///     .response_timeout(Duration::from_secs(2));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// How many times to try the first connection before giving up.
    pub connect_attempts: u32,
    /// Delay before the second attempt; doubles each time.
    pub connect_backoff: Duration,
    /// Time allowed for one connection attempt.
    pub connect_timeout: Duration,
    /// Time allowed for one command's reply. A write that times out has an
    /// unknown outcome ([`ErrorKind::Timeout`](crate::ErrorKind::Timeout)).
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_attempts: 4,
            connect_backoff: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisOptions {
    /// Set [`RedisOptions::connect_attempts`] (at least 1).
    pub fn connect_attempts(mut self, n: u32) -> Self {
        self.connect_attempts = n.max(1);
        self
    }
    /// Set [`RedisOptions::connect_backoff`].
    pub fn connect_backoff(mut self, d: Duration) -> Self {
        self.connect_backoff = d;
        self
    }
    /// Set [`RedisOptions::connect_timeout`].
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Set [`RedisOptions::response_timeout`].
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }
}
