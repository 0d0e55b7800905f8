//! An engine that hands every call to a real engine underneath and counts
//! the calls: how a case checks that eddy refused something *before* it
//! reached the engine, on any engine (on Redis a proxy's byte count says the
//! same; the embedded engine has no wire to watch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy::engine::{
    Append, Appended, Capabilities, Claimed, Engine, Entry, EntryId, ParkedRetry, Publish,
    QueueKeys, Retention, SharedEngine, StreamInfo, Transfer,
};
use eddy::Result;

/// The engine `inner`, with a count of the calls that reached it.
#[derive(Debug)]
pub struct CountingEngine {
    inner: SharedEngine,
    calls: AtomicU64,
}

impl CountingEngine {
    /// Count the calls to `inner`.
    pub fn new(inner: SharedEngine) -> Arc<Self> {
        Arc::new(Self {
            inner,
            calls: AtomicU64::new(0),
        })
    }

    /// How many calls reached the engine underneath so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn call(&self) -> &dyn Engine {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_ref()
    }
}

#[async_trait::async_trait]
impl Engine for CountingEngine {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn expired_counts(&self) -> Vec<(String, u64)> {
        self.inner.expired_counts()
    }

    async fn now_ms(&self) -> Result<u64> {
        self.call().now_ms().await
    }

    async fn create_queue(&self, queue: &QueueKeys, dlq: &QueueKeys, registry: &str) -> Result<()> {
        self.call().create_queue(queue, dlq, registry).await
    }

    async fn metadata(&self, meta_key: &str) -> Result<Option<Vec<(String, String)>>> {
        self.call().metadata(meta_key).await
    }

    async fn metadata_many(
        &self,
        meta_keys: &[String],
    ) -> Vec<Result<Option<Vec<(String, String)>>>> {
        self.call().metadata_many(meta_keys).await
    }

    async fn members(&self, key: &str) -> Result<Vec<String>> {
        self.call().members(key).await
    }

    async fn registry(&self, registry: &str) -> Result<Vec<String>> {
        self.call().registry(registry).await
    }

    async fn set_add(&self, key: &str, members: &[String]) -> Result<u64> {
        self.call().set_add(key, members).await
    }

    async fn set_remove(&self, key: &str, members: &[String]) -> Result<u64> {
        self.call().set_remove(key, members).await
    }

    async fn publish(&self, publish: &Publish) -> Result<Vec<String>> {
        self.call().publish(publish).await
    }

    async fn publish_many(&self, batch: &[Publish]) -> Result<Vec<Vec<String>>> {
        self.call().publish_many(batch).await
    }

    async fn delete_queues(&self, queues: &[QueueKeys], registry: &str) -> Result<bool> {
        self.call().delete_queues(queues, registry).await
    }

    async fn append(&self, appends: &[Append]) -> Result<Vec<Appended>> {
        self.call().append(appends).await
    }

    async fn read(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>> {
        self.call().read(queue, consumer, count, block).await
    }

    async fn ack(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        self.call().ack(queue, ids).await
    }

    async fn delete(&self, queue: &QueueKeys, ids: &[EntryId]) -> Result<u64> {
        self.call().delete(queue, ids).await
    }

    async fn transfer(
        &self,
        from: &QueueKeys,
        to: &QueueKeys,
        moves: &[Transfer],
    ) -> Result<Vec<Option<EntryId>>> {
        self.call().transfer(from, to, moves).await
    }

    async fn range(
        &self,
        queue: &QueueKeys,
        start: EntryId,
        end: EntryId,
        count: usize,
    ) -> Result<Vec<Entry>> {
        self.call().range(queue, start, end, count).await
    }

    async fn purge(&self, queue: &QueueKeys) -> Result<u64> {
        self.call().purge(queue).await
    }

    async fn info(&self, queue: &QueueKeys) -> Result<StreamInfo> {
        self.call().info(queue).await
    }

    async fn info_many(&self, queues: &[QueueKeys]) -> Vec<Result<StreamInfo>> {
        self.call().info_many(queues).await
    }

    async fn parked(&self, queue: &QueueKeys) -> Result<Vec<ParkedRetry>> {
        self.call().parked(queue).await
    }

    async fn sweep(&self, queue: &QueueKeys) -> Result<u64> {
        self.call().sweep(queue).await
    }

    async fn trim(&self, queue: &QueueKeys, retention: Retention) -> Result<u64> {
        self.call().trim(queue, retention).await
    }

    async fn forget_consumers(&self, queue: &QueueKeys, idle: Duration) -> Result<Vec<String>> {
        self.call().forget_consumers(queue, idle).await
    }

    async fn trim_log(&self, stream: &str, before_ms: u64) -> Result<u64> {
        self.call().trim_log(stream, before_ms).await
    }

    async fn set_metadata(
        &self,
        queue: &QueueKeys,
        field: &str,
        value: Option<&str>,
    ) -> Result<()> {
        self.call().set_metadata(queue, field, value).await
    }

    async fn claim(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        alone_from: u64,
    ) -> Result<Claimed> {
        self.call()
            .claim(queue, consumer, min_idle, count, alone_from)
            .await
    }

    async fn extend(&self, queue: &QueueKeys, consumer: &str, ids: &[EntryId]) -> Result<u64> {
        self.call().extend(queue, consumer, ids).await
    }

    async fn release(
        &self,
        queue: &QueueKeys,
        consumer: &str,
        ids: &[EntryId],
        after: Duration,
        min_idle: Duration,
    ) -> Result<u64> {
        self.call()
            .release(queue, consumer, ids, after, min_idle)
            .await
    }
}
