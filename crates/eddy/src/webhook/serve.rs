//! Running webhook handlers: as a service (one consumer loop per path) or
//! one batch at a time (LeanMQ's `process_messages`). Both settle a message
//! the same way: acknowledge, retry with backoff, or dead-letter; and both
//! send a request's reply before acknowledging it.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{normalize_path, Delivery, Route, Webhook};
use crate::error::{Error, ErrorKind, Result};
use crate::handler::{panic_message, shutdown_signal, Fail};
use crate::queue::consumer::{self, out_of_deliveries, retry_delay, ConsumerStats};
use crate::queue::{Message, Queue, Receive};

/// The consumer loop counters of each path of a webhook service.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use std::sync::atomic::Ordering;
/// let webhook = eddy::webhook::Webhook::open("memory://").await?;
/// webhook.on("/ping", |_d: eddy::webhook::Delivery| async { Ok(()) })?;
/// let running = webhook.start().await?;
/// let stats = running.stop().await?;
/// assert_eq!(stats.path("/ping/").map(|s| s.acked.load(Ordering::Relaxed)), Some(0));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct WebhookStats {
    paths: Vec<(String, Arc<ConsumerStats>)>,
}

impl WebhookStats {
    /// The counters of `path` (any spelling LeanMQ maps to the same path).
    pub fn path(&self, path: &str) -> Option<&ConsumerStats> {
        let path = normalize_path(path);
        self.paths
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, s)| s.as_ref())
    }

    /// Every path with its counters.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &ConsumerStats)> {
        self.paths.iter().map(|(p, s)| (p.as_str(), s.as_ref()))
    }
}

/// A started webhook service. Dropping it stops the service gracefully in
/// the background; [`RunningWebhook::stop`] also waits for that.
#[derive(Debug)]
pub struct RunningWebhook {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    stats: WebhookStats,
}

impl RunningWebhook {
    /// The live counters per path.
    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }

    /// Stop fetching, let in-flight handlers finish (up to the shutdown
    /// timeout of the consumer options) and wait; unfinished messages stay
    /// pending for another instance. Returns the final counters.
    pub async fn stop(self) -> Result<WebhookStats> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(r) => r.map(|()| self.stats),
            Err(e) => Err(Error::new(
                ErrorKind::Backend,
                format!("webhook service task failed: {e}"),
            )),
        }
    }

    /// Run until SIGINT or SIGTERM, then stop gracefully.
    pub async fn run_until_signal(self) -> Result<WebhookStats> {
        shutdown_signal().await;
        self.stop().await
    }
}

/// What running a handler came to.
enum Handled {
    Done(Result<(), Fail>),
    /// The handler panicked: the consumer loop counts and retries it.
    Panicked(Box<dyn Any + Send>),
}

type Prepared = Vec<(Route, Queue, Arc<ConsumerStats>)>;

impl Webhook {
    /// Run the registered handlers until `shutdown` completes: one consumer
    /// loop per path with the consumer options (concurrency, retry with
    /// backoff, dead-lettering after the maximum deliveries, reclaim of
    /// messages whose consumer died), then stop gracefully. Returns the
    /// counters per path.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use std::time::Duration;
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// webhook.on("/ping", |_d: eddy::webhook::Delivery| async { Ok(()) })?;
    /// webhook.send("/ping", &serde_json::json!({})).await?;
    /// let stats = webhook.run(tokio::time::sleep(Duration::from_millis(200))).await?;
    /// assert_eq!(stats.path("/ping").map(|s| s.acked.load(std::sync::atomic::Ordering::Relaxed)), Some(1));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<S: Future<Output = ()>>(&self, shutdown: S) -> Result<WebhookStats> {
        let prepared = self.prepare().await?;
        let stats = stats_of(&prepared);
        let (stop, stopped) = watch::channel(false);
        let loops = self.loops(prepared, stopped);
        tokio::pin!(loops);
        tokio::select! {
            r = &mut loops => return r.map(|()| stats),
            () = shutdown => {}
        }
        let _ = stop.send(true);
        loops.await?;
        Ok(stats)
    }

    /// Run the handlers until SIGINT or SIGTERM (see [`Webhook::run`]).
    pub async fn run_until_signal(&self) -> Result<WebhookStats> {
        self.run(shutdown_signal()).await
    }

    /// Run the handlers in a background task (see [`Webhook::run`]) until
    /// [`RunningWebhook::stop`]. Paths registered later are not served by
    /// this service.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// webhook.on("/ping", |_d: eddy::webhook::Delivery| async { Ok("pong") })?;
    /// let running = webhook.start().await?;
    /// let reply = webhook.request("/ping", &serde_json::json!({}), std::time::Duration::from_secs(5)).await?;
    /// assert_eq!(reply, "pong");
    /// running.stop().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(&self) -> Result<RunningWebhook> {
        let prepared = self.prepare().await?;
        let stats = stats_of(&prepared);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(self.loops(prepared, stopped));
        Ok(RunningWebhook { stop, task, stats })
    }

    /// Every route with its queue (created if missing) and fresh counters.
    async fn prepare(&self) -> Result<Prepared> {
        let routes = self.routes();
        if routes.is_empty() {
            return Err(Error::invalid_argument(
                "no webhook handlers are registered: call on(path, handler) before running",
            ));
        }
        crate::engine::keys::validate_consumer(&self.inner.options.name)?;
        let mut out = Vec::with_capacity(routes.len());
        for route in routes {
            let queue = self.created(&route.queue_name).await?;
            out.push((route, queue, Arc::new(ConsumerStats::default())));
        }
        Ok(out)
    }

    fn loops(
        &self,
        prepared: Prepared,
        stopped: watch::Receiver<bool>,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let opts = self.inner.options.clone();
        let max_deliveries = opts.max_deliveries.max(1);
        let loops: Vec<_> = prepared
            .into_iter()
            .map(|(route, queue, stats)| {
                let webhook = self.clone();
                let mut stopped = stopped.clone();
                let handler = move |msg: Message| {
                    let (webhook, route) = (webhook.clone(), route.clone());
                    async move {
                        match webhook.handle(&route, msg, max_deliveries).await {
                            Handled::Done(result) => result,
                            // Let the loop count it, log it and retry it.
                            Handled::Panicked(p) => std::panic::resume_unwind(p),
                        }
                    }
                };
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                consumer::run_with_stats(queue, opts.clone(), handler, shutdown, stats)
            })
            .collect();
        async move {
            for result in futures::future::join_all(loops).await {
                result?;
            }
            Ok(())
        }
    }

    /// Run the handler of `route` on one message and decide its outcome. A
    /// request's reply is sent before the message is acknowledged; when the
    /// request is rejected or fails its last delivery, the caller gets the
    /// reason instead of waiting for its timeout.
    async fn handle(&self, route: &Route, msg: Message, max_deliveries: u64) -> Handled {
        let attempt = msg.delivery_count;
        let last = attempt >= max_deliveries;
        let delivery = Delivery {
            path: route.path.clone(),
            message: msg,
        };
        let request = match (delivery.reply_to(), delivery.correlation_id()) {
            (Some(to), Some(id)) => Some((to.to_owned(), id.to_owned())),
            _ => None,
        };
        let result = AssertUnwindSafe((route.handler)(delivery))
            .catch_unwind()
            .await;
        let outcome = match result {
            Ok(Ok(value)) => {
                let Some((reply_to, correlation_id)) = request else {
                    return Handled::Done(Ok(()));
                };
                match self.send_reply(&reply_to, &correlation_id, Ok(value)).await {
                    Ok(()) => Ok(()),
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::QueueNotFound | ErrorKind::InvalidName
                        ) =>
                    {
                        tracing::debug!(%reply_to, error = %e, "the caller's reply queue is gone; reply dropped");
                        Ok(())
                    }
                    Err(e) => Err(Fail::retry(format!(
                        "the reply to {reply_to} could not be sent: {e}"
                    ))),
                }
            }
            Ok(Err(Fail::Reject { reason })) => {
                self.reply_failure(request.as_ref(), &reason).await;
                Err(Fail::Reject { reason })
            }
            Ok(Err(retry)) => {
                if last {
                    let reason = format!(
                        "failed {attempt} deliveries; last error: {}",
                        retry.message()
                    );
                    self.reply_failure(request.as_ref(), &reason).await;
                }
                Err(retry)
            }
            Err(panic) => {
                if last {
                    let reason = format!(
                        "failed {attempt} deliveries; last error: handler panicked: {}",
                        panic_message(panic.as_ref())
                    );
                    self.reply_failure(request.as_ref(), &reason).await;
                }
                return Handled::Panicked(panic);
            }
        };
        Handled::Done(outcome)
    }

    /// Best effort: the request is dead-lettered whether or not its caller
    /// hears about it.
    async fn reply_failure(&self, request: Option<&(String, String)>, reason: &str) {
        let Some((reply_to, correlation_id)) = request else {
            return;
        };
        if let Err(e) = self
            .send_reply(reply_to, correlation_id, Err(reason.to_owned()))
            .await
        {
            tracing::debug!(%reply_to, error = %e, "failure reply not sent");
        }
    }

    /// Process one batch by hand, as LeanMQ's `process_messages`: for every
    /// registered path, take up to `count` messages — first those due for a
    /// retry or left by a consumer that died, then new ones — and run its
    /// handler on each (up to the consumer options' concurrency at once).
    /// When nothing is waiting on any path and `block` is set, wait up to
    /// `timeout` for new messages. Returns how many were handled
    /// successfully (and acknowledged).
    ///
    /// Unlike LeanMQ, a failing message is not dead-lettered at once: a
    /// [`Fail::Retry`] (or a panic) is retried by a later call after the
    /// backoff (or the delay it names), and dead-lettered after the maximum
    /// deliveries; a [`Fail::Reject`] is dead-lettered at once.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eddy::Result<()> {
    /// use std::time::Duration;
    /// let webhook = eddy::webhook::Webhook::open("memory://").await?;
    /// webhook.on("/ping", |_d: eddy::webhook::Delivery| async { Ok(()) })?;
    /// webhook.send("/ping", &serde_json::json!({"n": 1})).await?;
    /// assert_eq!(webhook.process_messages(true, Duration::from_secs(1), 10).await?, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn process_messages(
        &self,
        block: bool,
        timeout: Duration,
        count: usize,
    ) -> Result<usize> {
        if count == 0 {
            return Err(Error::invalid_argument("count must be at least 1"));
        }
        let opts = &self.inner.options;
        let routes = self.routes();
        let mut batches = Vec::with_capacity(routes.len());
        for route in routes {
            let queue = self.created(&route.queue_name).await?;
            let mut msgs = queue
                .claim_stale(&opts.name, opts.visibility_timeout, count)
                .await?;
            if msgs.len() < count {
                let recv = Receive::new()
                    .count(count - msgs.len())
                    .consumer(opts.name.clone());
                msgs.extend(queue.receive(&recv).await?);
            }
            batches.push((route, queue, msgs));
        }
        let mut read_error = None;
        if block && batches.iter().all(|(_, _, msgs)| msgs.is_empty()) {
            // Wait on every path at once; a read is never cancelled (what it
            // delivers must be handled), so this takes up to `timeout`.
            let recv = Receive::new()
                .count(count)
                .consumer(opts.name.clone())
                .block(timeout);
            let reads = batches.iter().map(|(_, queue, _)| queue.receive(&recv));
            let got = futures::future::join_all(reads).await;
            for ((route, _, msgs), read) in batches.iter_mut().zip(got) {
                match read {
                    Ok(m) => *msgs = m,
                    Err(e) => {
                        tracing::warn!(path = %route.path, error = %e, "reading webhook messages failed");
                        read_error.get_or_insert(e);
                    }
                }
            }
        }
        let jobs = batches.into_iter().flat_map(|(route, queue, msgs)| {
            msgs.into_iter()
                .map(move |msg| (route.clone(), queue.clone(), msg))
        });
        let settled: Vec<Result<bool>> = futures::stream::iter(jobs)
            .map(|(route, queue, msg)| async move { self.settle(&route, &queue, msg).await })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        let mut handled = 0;
        for r in settled {
            if r? {
                handled += 1;
            }
        }
        match read_error {
            Some(e) if handled == 0 => Err(e),
            _ => Ok(handled),
        }
    }

    /// Handle one message by hand and settle it as the consumer loop would.
    /// Returns whether it was acknowledged.
    async fn settle(&self, route: &Route, queue: &Queue, msg: Message) -> Result<bool> {
        let opts = &self.inner.options;
        let max = opts.max_deliveries.max(1);
        let attempt = msg.delivery_count;
        if attempt > max {
            let reason = format!(
                "delivered {attempt} times (max_deliveries {max}); the handler never finished (its process died or it hung)"
            );
            queue.dead_letter_messages(&[msg], &reason).await?;
            return Ok(false);
        }
        let result = match self.handle(route, msg.clone(), max).await {
            Handled::Done(result) => result,
            Handled::Panicked(p) => {
                let what = panic_message(p.as_ref());
                tracing::error!(path = %route.path, panic = %what, "webhook handler panicked");
                Err(Fail::retry(format!("handler panicked: {what}")))
            }
        };
        let (after, error) = match result {
            Ok(()) => {
                queue.ack(&[msg.id]).await?;
                return Ok(true);
            }
            Err(Fail::Reject { reason }) => {
                queue.dead_letter_messages(&[msg], &reason).await?;
                return Ok(false);
            }
            Err(Fail::Retry { error, after }) => {
                (retry_delay(after, &opts.backoff, attempt), error)
            }
        };
        if attempt >= max {
            let reason = out_of_deliveries(attempt, max, &error);
            queue.dead_letter_messages(&[msg], &reason).await?;
        } else {
            tracing::debug!(path = %route.path, id = %msg.id, attempt, ?after, %error, "retrying later");
            queue
                .release(&opts.name, &[msg.id], after, opts.visibility_timeout)
                .await?;
        }
        Ok(false)
    }
}

fn stats_of(prepared: &Prepared) -> WebhookStats {
    WebhookStats {
        paths: prepared
            .iter()
            .map(|(route, _, stats)| (route.path.to_string(), stats.clone()))
            .collect(),
    }
}
