use serde::Serialize;

use super::{Eddy, Queue, SendOptions};
use crate::engine::{Append, Appended, EntryId};
use crate::error::Result;

/// Sends to one or more queues that commit all or none: one Lua script on
/// Redis, one critical section embedded. Each payload is validated when it
/// is added, so a bad one fails before anything is written.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use serde_json::json;
/// let mq = eddy::Eddy::open("memory://").await?;
/// let (orders, _) = mq.create_queue_pair("orders").await?;
/// let (emails, _) = mq.create_queue_pair("emails").await?;
///
/// let mut tx = mq.transaction();
/// tx.send(&orders, &json!({"order_id": 1}))?;
/// tx.send(&emails, &json!({"to": "a@example.com"}))?;
/// let ids = tx.commit().await?;
/// assert_eq!(ids.len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Transaction {
    mq: Eddy,
    appends: Vec<Append>,
}

impl Transaction {
    pub(super) fn new(mq: Eddy) -> Self {
        Self {
            mq,
            appends: Vec::new(),
        }
    }

    /// Add a send.
    pub fn send<T: Serialize + ?Sized>(&mut self, queue: &Queue, payload: &T) -> Result<&mut Self> {
        self.send_with(queue, payload, &SendOptions::default())
    }

    /// Add a send with options (TTL, delay, message id).
    pub fn send_with<T: Serialize + ?Sized>(
        &mut self,
        queue: &Queue,
        payload: &T,
        opts: &SendOptions,
    ) -> Result<&mut Self> {
        let data = self.mq.encode(payload, opts)?;
        self.appends.push(
            Append::new(queue.keys.clone(), data)
                .ttl(opts.ttl)
                .delay(opts.delay),
        );
        Ok(self)
    }

    /// How many sends are queued.
    pub fn len(&self) -> usize {
        self.appends.len()
    }

    /// Whether no send is queued.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty()
    }

    /// Write every send, or none. Returns each send's stream id (`None` for
    /// delayed sends), in the order they were added.
    pub async fn commit(self) -> Result<Vec<Option<EntryId>>> {
        if self.appends.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .mq
            .engine()
            .append(&self.appends)
            .await?
            .into_iter()
            .map(|a| match a {
                Appended::Entry(id) => Some(id),
                Appended::Delayed => None,
            })
            .collect())
    }
}
