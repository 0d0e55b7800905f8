//! Keeping queues bounded by hand or on a timer: removing expired
//! messages, trimming acknowledged history, forgetting consumers that
//! ended, capping a queue's length. Consumer loops do the same as they go
//! (`consumer::janitor`); these are for queues used otherwise.

use std::time::Duration;

use super::{Eddy, Queue, Retention};
use crate::error::Result;

impl Eddy {
    /// Remove expired messages from every queue (reads already skip them;
    /// this frees their memory). Returns how many were removed.
    pub async fn sweep_expired(&self) -> Result<u64> {
        let layout = &self.inner.layout;
        let mut total = 0;
        for key in self.inner.engine.registry(&layout.registry()).await? {
            let Some((name, is_dlq)) = layout.parse_stream_key(&key) else {
                continue;
            };
            let keys = if is_dlq {
                layout.dlq(&name)
            } else {
                layout.queue(&name)
            };
            if let Ok(keys) = keys {
                total += self.inner.engine.sweep(&keys).await?;
            }
        }
        Ok(total)
    }

    /// Run [`Eddy::sweep_expired`] every `interval` in a background task,
    /// until the returned guard is dropped.
    pub fn spawn_sweeper(&self, interval: Duration) -> Sweeper {
        self.spawn_janitor(interval, None)
    }

    /// Remove acknowledged history older than `retention` from every queue
    /// (see [`Queue::trim_history`]). Returns how many entries were removed.
    pub async fn trim_history(&self, retention: Duration) -> Result<u64> {
        let layout = &self.inner.layout;
        let mut total = 0;
        for key in self.inner.engine.registry(&layout.registry()).await? {
            let Some((name, is_dlq)) = layout.parse_stream_key(&key) else {
                continue;
            };
            // A DLQ's entries are never acknowledged: nothing to trim there.
            if is_dlq {
                continue;
            }
            if let Ok(keys) = layout.queue(&name) {
                total += self
                    .inner
                    .engine
                    .trim(&keys, Retention::age(retention))
                    .await?;
            }
        }
        Ok(total)
    }

    /// A background janitor, until the returned guard is dropped: every
    /// `interval` it removes expired messages and, if `retention` is set,
    /// acknowledged history older than it.
    pub fn spawn_janitor(&self, interval: Duration, retention: Option<Duration>) -> Sweeper {
        let mq = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match mq.sweep_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(expired = n, "swept expired messages"),
                    Err(e) => tracing::warn!(error = %e, "TTL sweep failed; will retry"),
                }
                if let Some(keep) = retention {
                    match mq.trim_history(keep).await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(trimmed = n, "trimmed acknowledged history"),
                        Err(e) => tracing::warn!(error = %e, "history trim failed; will retry"),
                    }
                }
            }
        });
        Sweeper { task }
    }
}

/// Stops the background TTL sweep when dropped.
#[derive(Debug)]
pub struct Sweeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Queue {
    /// Remove acknowledged history older than `retention`: entries this
    /// queue's group has delivered and acknowledged. An entry that is pending
    /// or not yet delivered is never removed. Returns how many were.
    pub async fn trim_history(&self, retention: Duration) -> Result<u64> {
        self.engine()
            .trim(&self.keys, Retention::age(retention))
            .await
    }

    /// Remove acknowledged history beyond `retention`: by age, by length or
    /// both ([`Retention`]). As with [`Queue::trim_history`], an entry that
    /// is pending or not yet delivered is never removed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use eddy::queue::Retention;
    /// use eddy::Receive;
    ///
    /// let mq = eddy::Eddy::open("memory://").await?;
    /// let (orders, _) = mq.create_queue_pair("orders").await?;
    /// for n in 0..5 {
    ///     orders.send(&serde_json::json!({ "n": n })).await?;
    /// }
    /// let got = orders.receive(&Receive::new().count(5)).await?;
    /// let ids: Vec<_> = got.iter().map(|m| m.id).collect();
    /// orders.ack(&ids).await?;
    /// // The two newest acknowledged entries stay.
    /// assert_eq!(orders.apply_retention(Retention::length(2)).await?, 3);
    /// assert_eq!(orders.peek(10).await?.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn apply_retention(&self, retention: Retention) -> Result<u64> {
        self.engine().trim(&self.keys, retention).await
    }

    /// Remove from this queue's group the consumers that hold no message and
    /// have not read for at least `idle` (processes that ended; each run
    /// of a service joins under a new name). Returns their names.
    pub async fn forget_idle_consumers(&self, idle: Duration) -> Result<Vec<String>> {
        self.engine().forget_consumers(&self.keys, idle).await
    }

    /// Cap the queue at `max` entries (`None` removes the cap): a send that
    /// would go past it fails with [`ErrorKind::QueueFull`](crate::ErrorKind::QueueFull) instead of
    /// dropping anything. The count is the stream's length, acknowledged
    /// history included until [`Queue::trim_history`] removes it.
    pub async fn set_max_length(&self, max: Option<u64>) -> Result<()> {
        let value = max.map(|m| m.to_string());
        self.engine()
            .set_metadata(&self.keys, "max_length", value.as_deref())
            .await
    }

    /// Remove this queue's expired messages now; returns how many.
    pub async fn sweep_expired(&self) -> Result<u64> {
        self.engine().sweep(&self.keys).await
    }
}
