//! The requesting side of request/reply: one reply queue per client, one
//! listener task reading it with blocking reads, and a oneshot per waiting
//! request keyed by correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{CORRELATION_ID, REPLY, REPLY_ERROR};
use crate::error::ErrorKind;
use crate::queue::{Eddy, Message, Queue, Receive};

/// What a reply carried: the handler's value, or why it failed.
pub(crate) type ReplyBody = Result<Value, String>;

/// Counters of a client's requests, read with [`RequestStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub answered: AtomicU64,
    pub failed: AtomicU64,
    pub timed_out: AtomicU64,
    pub late_replies: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> RequestStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RequestStats {
            sent: get(&self.sent),
            answered: get(&self.answered),
            failed: get(&self.failed),
            timed_out: get(&self.timed_out),
            late_replies: get(&self.late_replies),
        }
    }
}

/// What happened to the requests a [`Webhook`](super::Webhook) client sent.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// let webhook = eddy::webhook::Webhook::open("memory://").await?;
/// let stats = webhook.request_stats();
/// assert_eq!((stats.sent, stats.late_replies), (0, 0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestStats {
    /// Requests sent.
    pub sent: u64,
    /// Requests answered with a reply value.
    pub answered: u64,
    /// Requests answered with a failure ([`ErrorKind::Rejected`]).
    pub failed: u64,
    /// Requests that gave up waiting ([`ErrorKind::Timeout`]).
    pub timed_out: u64,
    /// Replies that found no caller waiting — they came after the caller's
    /// timeout, or answered the same request twice — and were dropped.
    pub late_replies: u64,
}

/// Requests waiting for their reply, by correlation id.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    map: Mutex<HashMap<String, oneshot::Sender<ReplyBody>>>,
}

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<ReplyBody>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a request from [`Waiting`] when the caller stops waiting (reply,
/// timeout, error or a dropped future), so a later reply is counted as late
/// instead of reaching anyone.
#[derive(Debug)]
pub(crate) struct WaitGuard {
    waiting: Arc<Waiting>,
    correlation_id: String,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.correlation_id);
    }
}

/// One client's reply queue and its listener.
#[derive(Debug)]
pub(crate) struct Replies {
    /// The path requests carry in `_reply_to`: `/reply/<client id>`.
    pub path: String,
    queue_name: String,
    mq: Eddy,
    waiting: Arc<Waiting>,
    /// Taken when the listener is stopped.
    listener: Option<JoinHandle<()>>,
    deleted: bool,
}

/// The consumer name of the listener in its reply queue's group.
const LISTENER: &str = "reply-listener";
/// How long one read of the reply queue waits.
const LISTEN_BLOCK: Duration = Duration::from_secs(5);

impl Replies {
    /// Create this client's reply queue and start its listener.
    pub async fn start(mq: &Eddy, counters: Arc<Counters>) -> crate::Result<Self> {
        let client_id = uuid::Uuid::new_v4().simple().to_string();
        let path = format!("/reply/{client_id}");
        let queue_name = super::queue_name(&path)?;
        let (queue, _) = mq.create_queue_pair(&queue_name).await?;
        let waiting = Arc::new(Waiting::default());
        let listener = tokio::spawn(listen(mq.clone(), queue, waiting.clone(), counters));
        tracing::debug!(queue = %queue_name, "reply queue created");
        Ok(Self {
            path,
            queue_name,
            mq: mq.clone(),
            waiting,
            listener: Some(listener),
            deleted: false,
        })
    }

    /// The reply queue's name (`reply_<client id>`).
    pub fn queue_name(&self) -> &str {
        &self.queue_name
    }

    /// Register a request; its reply arrives on the returned receiver.
    pub fn wait_for(&self, correlation_id: &str) -> (WaitGuard, oneshot::Receiver<ReplyBody>) {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(correlation_id.to_owned(), tx);
        let guard = WaitGuard {
            waiting: self.waiting.clone(),
            correlation_id: correlation_id.to_owned(),
        };
        (guard, rx)
    }

    /// Stop listening, fail the requests still waiting, delete the queue.
    pub async fn close(mut self) -> crate::Result<()> {
        stop(self.listener.take()).await;
        self.waiting.lock().clear();
        self.deleted = true;
        match self.mq.delete_queue(&self.queue_name, false).await {
            Err(e) if e.kind() != ErrorKind::QueueNotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        let listener = self.listener.take();
        if let Some(l) = &listener {
            l.abort();
        }
        self.waiting.lock().clear();
        if self.deleted {
            return;
        }
        // Best effort: without a runtime (or one shutting down) the queue
        // stays; `eddy queue delete reply_<id>` removes it.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (mq, name) = (self.mq.clone(), self.queue_name.clone());
            rt.spawn(async move {
                stop(listener).await;
                if let Err(e) = mq.delete_queue(&name, false).await {
                    tracing::debug!(queue = %name, error = %e, "reply queue not deleted");
                }
            });
        }
    }
}

/// Stop the listener and wait until it has: a listener still running (abort
/// takes effect only between polls, and it may be mid-poll on another
/// worker) would see its queue deleted and put it back.
async fn stop(listener: Option<JoinHandle<()>>) {
    if let Some(l) = listener {
        l.abort();
        let _ = l.await;
    }
}

/// Read replies as they come (blocking reads, no polling), hand each to the
/// request waiting for it, and delete them from the queue.
async fn listen(mq: Eddy, queue: Queue, waiting: Arc<Waiting>, counters: Arc<Counters>) {
    let recv = Receive::new()
        .count(512)
        .consumer(LISTENER)
        .block(LISTEN_BLOCK);
    let mut pause = Duration::from_millis(50);
    loop {
        match queue.receive(&recv).await {
            Ok(replies) => {
                pause = Duration::from_millis(50);
                if replies.is_empty() {
                    continue;
                }
                let ids: Vec<_> = replies.iter().map(|m| m.id).collect();
                for reply in replies {
                    deliver(reply, &waiting, &counters);
                }
                // Replies are not history worth keeping: ack and delete.
                if let Err(e) = queue.delete(&ids).await {
                    tracing::warn!(queue = %queue.name(), error = %e, "delivered replies not deleted; they stay pending");
                }
            }
            Err(e) => {
                tracing::warn!(queue = %queue.name(), error = %e, ?pause, "reading replies failed; retrying");
                if matches!(e.kind(), ErrorKind::NoGroup | ErrorKind::QueueNotFound) {
                    // Deleted from outside (`eddy queue delete`): put it back.
                    if let Err(e) = mq.create_queue_pair(queue.name()).await {
                        tracing::warn!(queue = %queue.name(), error = %e, "reply queue not recreated");
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn deliver(reply: Message, waiting: &Waiting, counters: &Counters) {
    let mut data = reply.data;
    let Some(Value::String(correlation_id)) = data.remove(CORRELATION_ID) else {
        Counters::bump(&counters.late_replies);
        tracing::warn!(id = %reply.id, "reply without a `{CORRELATION_ID}` dropped");
        return;
    };
    let body = body(&mut data);
    let sender = waiting.lock().remove(&correlation_id);
    match sender.map(|tx| tx.send(body)) {
        Some(Ok(())) => {}
        _ => {
            Counters::bump(&counters.late_replies);
            tracing::debug!(%correlation_id, "reply with no caller waiting (late or duplicate) dropped");
        }
    }
}

fn body(data: &mut Map<String, Value>) -> ReplyBody {
    match data.remove(REPLY_ERROR) {
        None | Some(Value::Null) => Ok(data.remove(REPLY).unwrap_or(Value::Null)),
        Some(Value::String(reason)) => Err(reason),
        Some(other) => Err(other.to_string()),
    }
}
