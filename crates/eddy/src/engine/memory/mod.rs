//! The embedded engine: streams, groups and pending lists in process memory,
//! with Redis's semantics.
//!
//! One mutex guards the whole state, so every operation is atomic the way a
//! Lua script is on Redis. Blocking reads wait on a per-stream [`Notify`]
//! (woken by appends, never by polling) and on the next delayed entry's due
//! time. The clock is `tokio::time`, so tests can pause and advance it.

mod log;
mod operations;
mod park;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;

use self::state::{State, Stored};
use super::{EntryId, QueueKeys};
use crate::error::{Error, ErrorKind, Result};

/// The engine's maps are keyed by key names: foldhash, not SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The in-process engine, selected by `memory://`.
///
/// Like a Redis stream, a queue keeps its acknowledged entries as history
/// until something trims them ([`Queue::trim_history`], a janitor). On
/// Redis that history lives in the server; here it lives in this process,
/// so a long-running application should bound it: [`MemoryEngine::with_history`]
/// (`memory://?history=30s`) drops acknowledged entries older than the
/// window as the engine goes, on every acknowledgement, with no timer to
/// fall behind. The default keeps history until trimmed, as Redis does, so
/// that both engines answer every call the same way.
///
/// ```
/// use eddy::engine::{Engine, memory::MemoryEngine};
/// let engine = MemoryEngine::new();
/// assert_eq!(engine.describe(), "memory://");
/// let bounded = MemoryEngine::with_history(std::time::Duration::from_secs(30));
/// assert_eq!(bounded.describe(), "memory://?history=30000ms");
/// ```
///
/// [`Queue::trim_history`]: crate::Queue::trim_history
#[derive(Debug)]
pub struct MemoryEngine {
    state: Mutex<State>,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
    epoch_ms: u64,
    started: Instant,
    /// Acknowledged entries older than this are dropped as the engine goes;
    /// `None` keeps them until trimmed.
    history: Option<Duration>,
    expired: super::ExpiredCounts,
}

fn no_group(keys: &QueueKeys) -> Error {
    Error::new(
        ErrorKind::NoGroup,
        format!(
            "consumer group `{}` of `{}` does not exist: the queue was deleted or purged by hand; create it again",
            keys.group, keys.stream
        ),
    )
}

fn queue_full(keys: &QueueKeys, max: u64) -> Error {
    Error::new(
        ErrorKind::QueueFull,
        format!(
            "queue `{}` holds its maximum of {max} entries; nothing was sent: retry later or raise its max length",
            keys.name
        ),
    )
}

fn not_found(keys: &QueueKeys) -> Error {
    Error::new(
        ErrorKind::QueueNotFound,
        format!("queue `{}` does not exist: create it first", keys.name),
    )
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryEngine {
    /// A new, empty engine that keeps acknowledged history until it is
    /// trimmed, as Redis does.
    pub fn new() -> Self {
        let epoch_ms = wall_clock_ms();
        Self {
            state: Mutex::new(State::default()),
            wakers: Mutex::new(HashMap::default()),
            epoch_ms,
            started: Instant::now(),
            history: None,
            expired: super::ExpiredCounts::default(),
        }
    }

    /// A new, empty engine that keeps acknowledged entries for at most
    /// `history` (zero: none at all), so its memory stays bounded by the
    /// unacknowledged backlog plus that window of traffic.
    ///
    /// Entries leave a stream oldest first once every consumer group has
    /// acknowledged them (an entry some group still has pending, and every
    /// entry after it, stays), checked on each acknowledgement, deletion
    /// and dead-lettering of the stream. The bus's `all` log keeps the same
    /// window, checked as events are published: by age alone while nobody
    /// consumes it through its group (it is then only a replay record, and
    /// [`Bus::replay`] sees just the window), as any queue once someone
    /// does.
    ///
    /// [`Bus::replay`]: crate::bus::Bus::replay
    pub fn with_history(history: Duration) -> Self {
        Self {
            history: Some(history),
            ..Self::new()
        }
    }

    /// The engine a `memory://` URL names: `memory://`, or
    /// `memory://?history=DURATION` (humantime: `0s`, `500ms`, `30s`, `1h`)
    /// for [`MemoryEngine::with_history`].
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidUrl,
                format!(
                    "invalid embedded engine URL `{}`: {why}; use memory:// or memory://?history=30s",
                    super::redact_url(url)
                ),
            )
        };
        let rest = url
            .strip_prefix("memory://")
            .ok_or_else(|| bad("it does not start with memory://"))?;
        // `memory:///` as well: an empty path is no path.
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let query = match rest.split_once('?') {
            None if rest.is_empty() => return Ok(Self::new()),
            Some(("", query)) => query,
            _ => return Err(bad("the embedded engine has no host or path")),
        };
        let mut history = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("history", value)) => {
                    let keep = humantime::parse_duration(value)
                        .map_err(|e| bad(&format!("history `{value}` is not a duration ({e})")))?;
                    history = Some(keep);
                }
                // The key only: the value could be a password meant for Redis.
                _ => {
                    let key = pair.split_once('=').map_or(pair, |(k, _)| k);
                    return Err(bad(&format!("unknown option `{key}`")));
                }
            }
        }
        Ok(match history {
            Some(keep) => Self::with_history(keep),
            None => Self::new(),
        })
    }

    /// The oldest id that history must keep, if the engine bounds it.
    fn history_cutoff(&self) -> Option<EntryId> {
        let keep = self.history?;
        if keep.is_zero() {
            return Some(EntryId::MAX);
        }
        let ms = self.clock_ms().saturating_sub(keep.as_millis() as u64);
        Some(EntryId::new(ms, 0))
    }

    /// Drop the acknowledged history of `keys`'s stream beyond the
    /// engine's window (see [`MemoryEngine::with_history`]); the removed
    /// payloads go to `out`, to be freed after the lock is released.
    fn settle(&self, st: &mut State, keys: &QueueKeys, out: &mut Vec<Stored>) {
        if let Some(cutoff) = self.history_cutoff() {
            st.trim_acknowledged(&keys.stream, Some(&keys.expiry), cutoff, out);
        }
    }

    /// The later of the wall clock and the start time plus `tokio::time`
    /// elapsed: the wall clock normally (so ids agree with `SystemTime` in
    /// other code), the virtual clock when a test pauses and advances time.
    fn clock_ms(&self) -> u64 {
        let virtual_ms = self.epoch_ms + self.started.elapsed().as_millis() as u64;
        virtual_ms.max(wall_clock_ms())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change
        // visible to callers of an async fn in a way we could repair, and every
        // mutation below completes before returning; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waker(&self, stream: &str) -> Arc<Notify> {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = wakers.get(stream) {
            return n.clone();
        }
        wakers.entry(stream.to_owned()).or_default().clone()
    }

    /// Wake the readers blocked on each stream (once per call per stream
    /// is enough: a woken reader takes everything new).
    fn wake<S: AsRef<str>>(&self, streams: impl IntoIterator<Item = S>) {
        let wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for s in streams {
            if let Some(n) = wakers.get(s.as_ref()) {
                n.notify_waiters();
            }
        }
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Float epoch seconds as LeanMQ writes them (`str(time.time())`).
pub(crate) fn epoch_secs_string(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

#[cfg(test)]
mod tests;
