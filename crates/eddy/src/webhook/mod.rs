//! LeanMQ's "internal webhooks over a queue": handlers registered by path,
//! senders that post to a path, and request/reply on top (the API gateway
//! pattern) — delivered with retries and a dead-letter queue instead of lost
//! HTTP calls.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eddy::Result<()> {
//! use std::time::Duration;
//! use eddy::webhook::{Delivery, Webhook};
//! use serde_json::json;
//!
//! let webhook = Webhook::open("memory://").await?;
//! webhook.on("/order/status/", |d: Delivery| async move {
//!     let order_id = d.data()["order_id"].clone();
//!     Ok(json!({"order_id": order_id, "status": "shipped"}))
//! })?;
//! let service = webhook.start().await?; // the consumer loop, one per path
//!
//! webhook.send("/order/status", &json!({"order_id": 7})).await?; // fire and forget
//! let reply = webhook
//!     .request("/order/status", &json!({"order_id": 8}), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(reply, json!({"order_id": 8, "status": "shipped"}));
//! service.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # On the wire (LeanMQ 0.2 compatible)
//!
//! A path maps to a queue as LeanMQ maps it ([`queue_name`]): `/order/status/`
//! → queue `order_status`, stream `webhook:order_status` with its DLQ
//! `webhook:order_status:dlq`. A send adds LeanMQ's field
//! `_leanmq: {"webhook": {"path": "/order/status", "timestamp": <float epoch
//! seconds>}}` (the path as [`normalize_path`] spells it) to the payload, so a
//! Python `@webhook.get("/order/status/")` handler and an eddy handler see the
//! same `data` whoever sent it.
//!
//! A request is a send with two more top-level fields (names in
//! [`REPLY_TO`] and [`CORRELATION_ID`]):
//!
//! | field | value |
//! |---|---|
//! | `_reply_to` | the path of the client's reply queue, `/reply/<client id>` (queue `reply_<client id>`) |
//! | `_correlation_id` | a fresh UUID per request |
//!
//! The reply is a webhook send to the `_reply_to` path of
//! `{"_correlation_id": …, "reply": VALUE}`, or `{"_correlation_id": …,
//! "error": "reason"}` when the handler rejected the request or failed its
//! last delivery. A Python service answers an eddy request the same way:
//!
//! ```python
//! @webhook.get("/order/status/")
//! def status(data):
//!     webhook.send(data["_reply_to"], {"_correlation_id": data["_correlation_id"],
//!                                      "reply": {"status": "shipped"}})
//! ```
//!
//! Each client has one reply queue, created at its first request and deleted
//! by [`Webhook::close`] (or, best effort, when the last handle is dropped
//! inside a Tokio runtime); a client that crashed leaves `reply_<id>` behind
//! for `eddy queue delete --prefix webhook: reply_<id>`. One listener task
//! per client reads it with blocking reads and hands each reply to its caller
//! through a oneshot channel. A reply that comes after its caller gave up
//! finds nobody waiting: it is dropped and counted
//! ([`RequestStats::late_replies`]), never handed to another caller.
//!
//! # Handling
//!
//! [`Webhook::on`] registers a handler per path; it gets a [`Delivery`] and
//! returns `Ok(reply)` (any `Serialize`; `()` for none), or a [`Fail`]:
//! [`Fail::reject`] dead-letters at once, [`Fail::retry`] retries with
//! backoff ([`Fail::retry_after`] after the delay it names) and
//! dead-letters after the maximum deliveries. Run the handlers as
//! a service — [`Webhook::run`], [`Webhook::start`] or
//! [`Webhook::run_until_signal`], the consumer loop of
//! [`crate::queue::consumer`] per path (concurrency, retries, reclaim of
//! messages of crashed consumers, graceful stop) — or one batch at a time
//! with [`Webhook::process_messages`], as LeanMQ offers.

mod path;
mod reply;
mod serve;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use path::{normalize_path, queue_name};
pub use reply::RequestStats;
pub use serve::{RunningWebhook, WebhookStats};

use crate::engine::{EntryId, SharedEngine};
use crate::error::{Error, ErrorKind, Result};
use crate::handler::Fail;
use crate::queue::consumer::ConsumerOptions;
use crate::queue::{Eddy, EddyBuilder, Message, Queue, SendOptions};
use reply::{Counters, Replies};

/// The default key prefix of webhook queues (LeanMQ's).
pub const DEFAULT_PREFIX: &str = "webhook:";
/// LeanMQ's field with the webhook's metadata: `{"webhook": {"path",
/// "timestamp"}}`.
pub const LEANMQ: &str = crate::queue::wire::LEANMQ;
/// The request field naming the path to send the reply to.
pub const REPLY_TO: &str = "_reply_to";
/// The request and reply field matching a reply to its request.
pub const CORRELATION_ID: &str = "_correlation_id";
/// The reply field holding the handler's reply value.
pub const REPLY: &str = "reply";
/// The reply field holding why the handler failed.
pub const REPLY_ERROR: &str = "error";

/// How many queue handles a client remembers as existing.
const KNOWN_QUEUES: usize = 4096;

type ReplyFuture = Pin<Box<dyn Future<Output = Result<Value, Fail>> + Send>>;
type Handler = Arc<dyn Fn(Delivery) -> ReplyFuture + Send + Sync>;

/// A registered path and its handler.
#[derive(Clone)]
struct Route {
    path: Arc<str>,
    queue_name: String,
    handler: Handler,
}

/// One message delivered to a webhook handler.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use eddy::webhook::{Delivery, Webhook};
///
/// #[derive(serde::Deserialize)]
/// struct Status { order_id: u64 }
///
/// let webhook = Webhook::open("memory://").await?;
/// webhook.on("/order/status", |d: Delivery| async move {
///     let status: Status = d.payload()?; // extra fields such as `_leanmq` are ignored
///     assert_eq!(d.path(), "/order/status");
///     assert!(d.sent_at().is_some());
///     Ok(status.order_id)
/// })?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Delivery {
    path: Arc<str>,
    message: Message,
}

impl Delivery {
    /// The path the handler was registered for (normalized:
    /// `/order/status`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The data, exactly as a LeanMQ handler gets it: the payload's fields
    /// plus `_leanmq` (and `_reply_to`, `_correlation_id` for a request).
    pub fn data(&self) -> &Map<String, Value> {
        &self.message.data
    }

    /// The data deserialized into a type.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.message.payload()
    }

    /// When the sender sent it (`_leanmq.webhook.timestamp`, float epoch
    /// seconds by the sender's clock).
    pub fn sent_at(&self) -> Option<f64> {
        self.message
            .data
            .get(LEANMQ)?
            .get("webhook")?
            .get("timestamp")?
            .as_f64()
    }

    /// Where the reply goes, if this is a request.
    pub fn reply_to(&self) -> Option<&str> {
        self.message.data.get(REPLY_TO)?.as_str()
    }

    /// The request's correlation id, if this is a request.
    pub fn correlation_id(&self) -> Option<&str> {
        self.message.data.get(CORRELATION_ID)?.as_str()
    }

    /// Whether a caller waits for a reply.
    pub fn is_request(&self) -> bool {
        self.reply_to().is_some() && self.correlation_id().is_some()
    }

    /// Deliveries so far, this one included (more than 1 on a retry).
    pub fn delivery_count(&self) -> u64 {
        self.message.delivery_count
    }

    /// The queue message underneath (stream id, message id, timestamps).
    pub fn message(&self) -> &Message {
        &self.message
    }
}

/// Settings for a [`Webhook`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use eddy::queue::consumer::ConsumerOptions;
/// let webhook = eddy::webhook::Webhook::builder()
///     .prefix("hooks:")
///     .consumer_options(ConsumerOptions::new().concurrency(64).max_deliveries(3))
///     .open("memory://")
///     .await?;
/// assert_eq!(webhook.queues().prefix(), "hooks:");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WebhookBuilder {
    prefix: String,
    options: ConsumerOptions,
    max_payload_bytes: usize,
}

impl Default for WebhookBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            options: ConsumerOptions::default(),
            max_payload_bytes: crate::queue::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}

impl WebhookBuilder {
    /// Defaults: prefix `webhook:`, [`ConsumerOptions::default`], 1 MiB
    /// payloads.
    pub fn new() -> Self {
        Self::default()
    }

    /// The key prefix (`webhook:`, LeanMQ's, by default).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How handlers run: concurrency, retries, backoff, timeouts, and the
    /// consumer name (also used by [`Webhook::process_messages`]).
    pub fn consumer_options(mut self, options: ConsumerOptions) -> Self {
        self.options = options;
        self
    }

    /// The largest encoded message accepted.
    pub fn max_payload_bytes(mut self, n: usize) -> Self {
        self.max_payload_bytes = n;
        self
    }

    /// Connect to the engine at `url`.
    pub async fn open(self, url: &str) -> Result<Webhook> {
        let mq = EddyBuilder::new(url)
            .prefix(self.prefix.clone())
            .max_payload_bytes(self.max_payload_bytes)
            .open()
            .await?;
        Ok(self.build(mq))
    }

    /// Use an engine that is already open (an embedded engine is shared
    /// only this way).
    pub fn with_engine(self, engine: SharedEngine) -> Result<Webhook> {
        let mq = EddyBuilder::new("")
            .prefix(self.prefix.clone())
            .max_payload_bytes(self.max_payload_bytes)
            .with_engine(engine)?;
        Ok(self.build(mq))
    }

    /// Use queues that are already open: their prefix and payload limit
    /// apply, not this builder's.
    pub fn with_queues(self, mq: Eddy) -> Webhook {
        self.build(mq)
    }

    fn build(self, mq: Eddy) -> Webhook {
        Webhook {
            inner: Arc::new(Inner {
                mq,
                options: self.options,
                routes: Mutex::new(Vec::new()),
                known: Mutex::new(HashMap::new()),
                replies: Mutex::new(None),
                replies_init: tokio::sync::Mutex::new(()),
                counters: Arc::new(Counters::default()),
            }),
        }
    }
}

/// Webhooks on one engine: send to paths, register handlers for paths, run
/// them, and make requests. Cheap to clone; clones share handlers, the reply
/// queue and the counters.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use std::time::Duration;
/// use eddy::webhook::{Delivery, Webhook};
/// use serde_json::json;
///
/// // A gateway and a service in one process share the embedded engine.
/// let engine = eddy::engine::open("memory://").await?;
/// let service = Webhook::with_engine(engine.clone())?;
/// service.on("/echo", |d: Delivery| async move {
///     Ok(d.data()["text"].clone())
/// })?;
/// let running = service.start().await?;
///
/// let gateway = Webhook::with_engine(engine)?;
/// let reply = gateway.request("/echo", &json!({"text": "hi"}), Duration::from_secs(5)).await?;
/// assert_eq!(reply, "hi");
/// gateway.close().await?;
/// running.stop().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Webhook {
    inner: Arc<Inner>,
}

struct Inner {
    mq: Eddy,
    options: ConsumerOptions,
    routes: Mutex<Vec<Route>>,
    /// Queues known to exist, by name: sends and replies skip the check.
    known: Mutex<HashMap<String, Queue>>,
    replies: Mutex<Option<Arc<Replies>>>,
    replies_init: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<String> = lock(&self.routes)
            .iter()
            .map(|r| r.path.to_string())
            .collect();
        f.debug_struct("Webhook")
            .field("prefix", &self.mq.prefix())
            .field("routes", &routes)
            .field("options", &self.options)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// LeanMQ's `_leanmq` value for a send to `normalized_path` now.
fn leanmq_field(normalized_path: &str) -> Result<Box<RawValue>> {
    #[derive(Serialize)]
    struct Sent<'a> {
        path: &'a str,
        timestamp: f64,
    }
    #[derive(Serialize)]
    struct Field<'a> {
        webhook: Sent<'a>,
    }
    Ok(serde_json::value::to_raw_value(&Field {
        webhook: Sent {
            path: normalized_path,
            timestamp: crate::queue::wire::now_secs(),
        },
    })?)
}

impl Webhook {
    /// Connect to the engine at `url` with the defaults of
    /// [`WebhookBuilder`].
    pub async fn open(url: &str) -> Result<Self> {
        WebhookBuilder::new().open(url).await
    }

    /// Use an engine that is already open, with the defaults of
    /// [`WebhookBuilder`].
    pub fn with_engine(engine: SharedEngine) -> Result<Self> {
        WebhookBuilder::new().with_engine(engine)
    }

    /// Webhooks over queues that are already open, under their prefix (for
    /// LeanMQ compatibility, [`DEFAULT_PREFIX`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// let mq = eddy::EddyBuilder::new("memory://").prefix("webhook:").open().await?;
    /// let webhook = eddy::webhook::Webhook::new(mq);
    /// assert_eq!(webhook.queue("/a/b").await?.keys().stream, "webhook:a_b");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(mq: Eddy) -> Self {
        WebhookBuilder::new().with_queues(mq)
    }

    /// Start configuring a webhook client.
    pub fn builder() -> WebhookBuilder {
        WebhookBuilder::new()
    }

    /// The queues underneath (prefix `webhook:`).
    pub fn queues(&self) -> &Eddy {
        &self.inner.mq
    }

    /// The consumer loop settings handlers run with.
    pub fn consumer_options(&self) -> &ConsumerOptions {
        &self.inner.options
    }

    /// The queue of `path`, creating it (and its DLQ) if missing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// let queue = webhook.queue("/order/status/").await?;
    /// assert_eq!(queue.keys().stream, "webhook:order_status");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn queue(&self, path: &str) -> Result<Queue> {
        self.created(&queue_name(path)?).await
    }

    async fn created(&self, name: &str) -> Result<Queue> {
        if let Some(q) = lock(&self.inner.known).get(name) {
            return Ok(q.clone());
        }
        let (queue, _) = self.inner.mq.create_queue_pair(name).await?;
        self.remember(name, &queue);
        Ok(queue)
    }

    fn remember(&self, name: &str, queue: &Queue) {
        let mut known = lock(&self.inner.known);
        if known.len() >= KNOWN_QUEUES {
            known.clear();
        }
        known.insert(name.to_owned(), queue.clone());
    }

    fn forget(&self, name: &str) {
        lock(&self.inner.known).remove(name);
    }

    /// Send `payload` to the queue `name` as LeanMQ's webhook does, with
    /// `_leanmq` for `path` after the payload's own members (and the
    /// members `opts` already holds), creating the queue if missing (again
    /// if it was deleted since this client created it). The payload is
    /// serialized once and kept as it serialized (key order, big integers).
    async fn append<T: Serialize + ?Sized>(
        &self,
        name: &str,
        path: &str,
        payload: &T,
        opts: SendOptions,
    ) -> Result<Option<EntryId>> {
        let opts = &opts.member(LEANMQ, leanmq_field(&normalize_path(path))?);
        match self.created(name).await?.send_with(payload, opts).await {
            Err(e) if e.kind() == ErrorKind::QueueNotFound => {
                self.forget(name);
                self.created(name).await?.send_with(payload, opts).await
            }
            other => other,
        }
    }

    /// Send `payload` (a JSON object) to `path`, as LeanMQ's
    /// `LeanMQWebhook.send`: the path's queue pair is created if missing and
    /// `_leanmq: {webhook: {path, timestamp}}` is added. Returns the stream
    /// id.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// webhook.send("/order/status/", &serde_json::json!({"order_id": 7, "status": "paid"})).await?;
    /// let queue = webhook.queue("/order/status").await?;
    /// let msg = &queue.peek(1).await?[0];
    /// assert_eq!(msg.data["_leanmq"]["webhook"]["path"], "/order/status");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send<T: Serialize + ?Sized>(&self, path: &str, payload: &T) -> Result<EntryId> {
        let name = queue_name(path)?;
        self.append(&name, path, payload, SendOptions::default())
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Backend,
                    "the engine did not return an id for an undelayed send",
                )
            })
    }

    /// Like [`Webhook::send`], with a TTL, a delay or a message id. Returns
    /// `None` for a delayed send (the message gets its id when it becomes
    /// visible).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use std::time::Duration;
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// let opts = eddy::SendOptions::new().ttl(Duration::from_secs(60));
    /// assert!(webhook.send_with("/cache/refresh", &serde_json::json!({}), &opts).await?.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_with<T: Serialize + ?Sized>(
        &self,
        path: &str,
        payload: &T,
        opts: &SendOptions,
    ) -> Result<Option<EntryId>> {
        let name = queue_name(path)?;
        self.append(&name, path, payload, opts.clone()).await
    }

    /// Send `payload` to `path` as a request and wait up to `timeout` for
    /// the handler's reply.
    ///
    /// Errors: [`ErrorKind::Timeout`] when no reply came in time (the
    /// request may still be handled later; its reply is then dropped and
    /// counted in [`RequestStats::late_replies`]); [`ErrorKind::Rejected`]
    /// when the handler rejected the request or failed its last delivery;
    /// the errors of [`Webhook::send`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use std::time::Duration;
    /// use eddy::ErrorKind;
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// // Nobody handles `/nobody`: the request times out.
    /// let err = webhook
    ///     .request("/nobody", &serde_json::json!({}), Duration::from_millis(20))
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Timeout);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn request<T: Serialize + ?Sized>(
        &self,
        path: &str,
        payload: &T,
        timeout: Duration,
    ) -> Result<Value> {
        let name = queue_name(path)?;
        let normalized = normalize_path(path);
        let replies = self.replies().await?;
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let opts = SendOptions::default()
            .member(REPLY_TO, serde_json::value::to_raw_value(&replies.path)?)
            .member(
                CORRELATION_ID,
                serde_json::value::to_raw_value(&correlation_id)?,
            );
        // Registered before sending: a fast reply must find its caller.
        let (_waiting, reply) = replies.wait_for(&correlation_id);
        drop(replies);
        self.append(&name, path, payload, opts).await?;
        let counters = &self.inner.counters;
        Counters::bump(&counters.sent);
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(Ok(value))) => {
                Counters::bump(&counters.answered);
                Ok(value)
            }
            Ok(Ok(Err(reason))) => {
                Counters::bump(&counters.failed);
                Err(Error::new(
                    ErrorKind::Rejected,
                    format!("the handler of {normalized} failed the request: {reason}"),
                ))
            }
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("the webhook client was closed while a request to {normalized} waited for its reply"),
            )),
            Err(_) => {
                Counters::bump(&counters.timed_out);
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "no reply from {normalized} within {timeout:?}: is a service handling it? (correlation id {correlation_id}; a later reply is dropped)"
                    ),
                ))
            }
        }
    }

    /// This client's reply queue and listener, started on first use.
    async fn replies(&self) -> Result<Arc<Replies>> {
        if let Some(r) = lock(&self.inner.replies).as_ref() {
            return Ok(r.clone());
        }
        let _init = self.inner.replies_init.lock().await;
        if let Some(r) = lock(&self.inner.replies).as_ref() {
            return Ok(r.clone());
        }
        let replies = Arc::new(Replies::start(&self.inner.mq, self.inner.counters.clone()).await?);
        *lock(&self.inner.replies) = Some(replies.clone());
        Ok(replies)
    }

    /// The name of this client's reply queue (`reply_<client id>`), if it
    /// has made a request since it was opened or closed.
    pub fn reply_queue(&self) -> Option<String> {
        lock(&self.inner.replies)
            .as_ref()
            .map(|r| r.queue_name().to_owned())
    }

    /// Counters of this client's requests: sent, answered, failed, timed
    /// out, and late replies dropped.
    pub fn request_stats(&self) -> RequestStats {
        self.inner.counters.snapshot()
    }

    /// Replies that came after their caller had stopped waiting, dropped
    /// (the same as `request_stats().late_replies`).
    pub fn late_replies(&self) -> u64 {
        self.request_stats().late_replies
    }

    /// Stop the reply listener, fail the requests still waiting
    /// ([`ErrorKind::Unavailable`]) and delete the reply queue. A later
    /// request starts a new reply queue. Registered handlers and running
    /// services are not affected.
    pub async fn close(&self) -> Result<()> {
        let _init = self.inner.replies_init.lock().await;
        let replies = lock(&self.inner.replies).take();
        let Some(replies) = replies else {
            return Ok(());
        };
        match Arc::try_unwrap(replies) {
            Ok(replies) => replies.close().await,
            // A request is between registering and waiting: it still holds
            // the channel, which deletes the queue when it is dropped.
            Err(_) => Ok(()),
        }
    }

    /// Register `handler` for `path` (replacing an earlier handler for the
    /// same queue). It returns the reply value for requests (`()` when there
    /// is none; ignored for plain sends) or a [`Fail`]. Handlers run
    /// once [`Webhook::start`], [`Webhook::run`] or
    /// [`Webhook::process_messages`] is called.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use eddy::Fail;
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// webhook.on("/order/status/", |d: eddy::webhook::Delivery| async move {
    ///     match d.data().get("status") {
    ///         Some(_) => Ok(()),
    ///         None => Err(Fail::reject("no status")),
    ///     }
    /// })?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn on<F, Fut, R>(&self, path: &str, handler: F) -> Result<()>
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Fail>> + Send + 'static,
        R: Serialize + 'static,
    {
        let queue_name = queue_name(path)?;
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(move |delivery: Delivery| {
            let fut = handler(delivery);
            Box::pin(async move {
                let reply = fut.await?;
                serde_json::to_value(&reply).map_err(|e| {
                    Fail::reject(format!("the reply cannot be serialized as JSON: {e}"))
                })
            })
        });
        let route = Route {
            path: normalize_path(path).into(),
            queue_name,
            handler: erased,
        };
        let mut routes = lock(&self.inner.routes);
        routes.retain(|r| r.queue_name != route.queue_name);
        routes.push(route);
        Ok(())
    }

    /// The normalized paths with a handler.
    pub fn paths(&self) -> Vec<String> {
        lock(&self.inner.routes)
            .iter()
            .map(|r| r.path.to_string())
            .collect()
    }

    fn routes(&self) -> Vec<Route> {
        lock(&self.inner.routes).clone()
    }

    /// Send a handler's reply (or failure) to the requester's reply queue.
    /// The queue is never created here: if it is gone, so is the caller.
    async fn send_reply(
        &self,
        reply_to: &str,
        correlation_id: &str,
        body: Result<Value, String>,
    ) -> Result<()> {
        let name = queue_name(reply_to)?;
        let cached = lock(&self.inner.known).get(&name).cloned();
        let queue = match cached {
            Some(q) => q,
            None => {
                let q = self.inner.mq.queue(&name).await?;
                self.remember(&name, &q);
                q
            }
        };
        let mut data = Map::new();
        data.insert(
            CORRELATION_ID.to_owned(),
            Value::String(correlation_id.to_owned()),
        );
        match body {
            Ok(value) => data.insert(REPLY.to_owned(), value),
            Err(reason) => data.insert(REPLY_ERROR.to_owned(), Value::String(reason)),
        };
        let opts = SendOptions::new().member(LEANMQ, leanmq_field(&normalize_path(reply_to))?);
        match queue.send_with(&data, &opts).await.map(|_| ()) {
            Err(e) if e.kind() == ErrorKind::QueueNotFound => {
                self.forget(&name);
                Err(e)
            }
            other => other,
        }
    }
}
