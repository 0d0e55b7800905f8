//! Connecting to Redis, and the connections commands run on: one shared
//! connection manager (reconnecting by itself) for every command but
//! blocking reads, which take a pooled connection of their own.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};

use super::errors::{error_text, fatal_connect_error};
use super::scripts::Scripts;
use super::{map_err, RedisEngine, RedisOptions};
use crate::error::{Error, ErrorKind, Result};

impl RedisEngine {
    /// Connect, retrying a few times with backoff, and check the server is
    /// Redis 7.0 or newer.
    pub async fn connect(url: &str, options: &RedisOptions) -> Result<Self> {
        let shown = crate::engine::redact_url(url);
        #[cfg(feature = "tls-rustls")]
        if url.starts_with("rediss:") {
            ensure_rustls_provider();
        }
        let client = Client::open(url).map_err(|e| {
            Error::new(
                ErrorKind::InvalidUrl,
                format!("invalid Redis URL `{shown}`: {e}"),
            )
            .with_source(e)
        })?;
        // One connection per attempt, so that a failure that retrying
        // cannot fix (credentials, DB index, TLS) ends the wait at once. It
        // becomes the first pooled connection for blocking reads.
        let mut delay = options.connect_backoff;
        let mut attempt = 0;
        let first = loop {
            attempt += 1;
            let e = match client
                .get_multiplexed_async_connection_with_config(&blocking_config(options))
                .await
            {
                Ok(c) => break c,
                Err(e) => e,
            };
            if let Some(fatal) = fatal_connect_error(&client, &shown, &e, options).await {
                return Err(fatal);
            }
            if attempt >= options.connect_attempts {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "cannot reach Redis at {shown} after {attempt} attempt(s): {}; is redis-server running there?",
                        map_err(e.clone()).message()
                    ),
                )
                .with_source(e));
            }
            tracing::debug!(url = %shown, attempt, error = %error_text(&e), "Redis not reachable yet; retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(Duration::from_secs(2));
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "Redis at {shown} dropped the connection while eddy connected: {}; retry",
                        map_err(e.clone()).message()
                    ),
                )
                .with_source(e)
            })?;
        let engine = Self {
            client,
            conn,
            blocking: Mutex::new(vec![first]),
            scripts: Scripts::new(),
            expired: super::super::ExpiredCounts::default(),
            url: shown,
            options: options.clone(),
        };
        engine.check_version().await?;
        engine.preload_scripts().await;
        Ok(engine)
    }

    /// Load the publish script now, so that the first publishes do not
    /// meet NOSCRIPT: a call that does is sent again after loading the
    /// script, behind calls issued after it, and the bus's batcher issues
    /// its calls in order (see `bus/batch.rs`). Best effort: an account
    /// without SCRIPT rights still works, loading on first use.
    async fn preload_scripts(&self) {
        let mut conn = self.conn();
        if let Err(e) = self.scripts.publish_many.load_async(&mut conn).await {
            tracing::debug!(error = %e, "could not preload a script; it loads on first use");
        }
    }

    async fn check_version(&self) -> Result<()> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(map_err)?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(Error::new(
                ErrorKind::Backend,
                format!(
                    "{} runs Redis {version}; eddy needs Redis 7.0 or newer",
                    self.url
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(super) async fn blocking_conn(&self) -> Result<MultiplexedConnection> {
        let pooled = self
            .blocking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        if let Some(c) = pooled {
            return Ok(c);
        }
        self.client
            .get_multiplexed_async_connection_with_config(&blocking_config(&self.options))
            .await
            .map_err(map_err)
    }

    pub(super) fn return_blocking_conn(&self, c: MultiplexedConnection) {
        let mut pool = self.blocking.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 64 {
            pool.push(c);
        }
    }
}

/// A connection for blocking reads. No response timeout: the read itself is
/// bounded by BLOCK, and `blocking_read` bounds the wait.
fn blocking_config(options: &RedisOptions) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(None)
}

/// The redis crate builds its rustls configuration on the process's
/// default crypto provider, which rustls only picks by itself when exactly
/// one provider is compiled in: install ring's (the one `tls-rustls` brings)
/// unless the application installed one, so that another dependency turning
/// on aws-lc-rs too cannot make the first `rediss://` connection panic.
#[cfg(feature = "tls-rustls")]
fn ensure_rustls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // An error means another thread installed one meanwhile: also fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
