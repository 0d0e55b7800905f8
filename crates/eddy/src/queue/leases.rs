//! Leases: taking over messages whose consumer went quiet, extending a
//! lease, handing a message back for a later retry.

use std::time::Duration;

use super::{Delivered, Message, ParkedRetry, Queue};
use crate::engine::EntryId;
use crate::error::{Error, Result};

/// Lease operations the consumer loop builds on.
impl Queue {
    /// Take over messages pending for at least `min_idle` (their consumer
    /// crashed or hung) for `consumer`, each with its delivery count raised
    /// by one. Undecodable ones go to the DLQ as in [`Queue::receive`].
    pub async fn claim_stale(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Message>> {
        self.claim_stale_decoded(consumer, min_idle, count, u64::MAX)
            .await
    }

    /// [`Queue::claim_stale`], each entry decoded as `T`; an entry whose
    /// delivery count reaches `alone_from` is claimed alone (see
    /// [`Engine::claim`](crate::engine::Engine::claim)).
    pub(crate) async fn claim_stale_decoded<T: Delivered>(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        alone_from: u64,
    ) -> Result<Vec<T>> {
        if count == 0 {
            return Err(Error::invalid_argument("count must be at least 1"));
        }
        let claimed = self
            .engine()
            .claim(&self.keys, consumer, min_idle, count, alone_from)
            .await?;
        if !claimed.deleted.is_empty() {
            tracing::debug!(queue = %self.keys.name, n = claimed.deleted.len(), "pending ids not claimed: entries deleted, or taken by another consumer first");
        }
        self.decode_delivered(claimed.entries).await
    }

    /// Keep `consumer`'s lease on messages it is still working on.
    pub async fn extend(&self, consumer: &str, ids: &[EntryId]) -> Result<u64> {
        self.engine().extend(&self.keys, consumer, ids).await
    }

    /// Hand messages back for a retry `after` from now, their delivery
    /// counts kept: consumers that reclaim after `visibility_timeout` idle
    /// take them when due. A wait longer than the visibility timeout parks
    /// them, counted in [`QueueInfo::delayed`](super::QueueInfo::delayed)
    /// (and still pending) until due; see
    /// [`Engine::release`](crate::engine::Engine::release).
    pub async fn release(
        &self,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        visibility_timeout: Duration,
    ) -> Result<u64> {
        self.engine()
            .release(&self.keys, consumer, ids, after, visibility_timeout)
            .await
    }

    /// The retries waiting past the visibility timeout (see
    /// [`Queue::release`]), soonest due first, each with its consumer, its
    /// delivery count so far and its due time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use std::time::Duration;
    /// let mq = eddy::Eddy::open("memory://").await?;
    /// let (q, _) = mq.create_queue_pair("jobs").await?;
    /// q.send(&serde_json::json!({"n": 1})).await?;
    /// let got = q.receive(&eddy::Receive::new().consumer("worker")).await?;
    /// let vt = Duration::from_secs(30);
    /// q.release("worker", &[got[0].id], Duration::from_secs(600), vt).await?;
    /// let parked = q.parked().await?;
    /// assert_eq!((parked[0].id, parked[0].delivery_count), (got[0].id, 1));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn parked(&self) -> Result<Vec<ParkedRetry>> {
        self.engine().parked(&self.keys).await
    }
}
