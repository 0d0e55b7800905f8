//! The shop: its four services started together on one bus (or any subset
//! of them, one process each, on Redis), with their configuration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eddy::bus::{Bus, Envelope, Event, Subscription};
use eddy::service::RunningService;
use eddy::{ErrorKind, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::watch;

use crate::events::{Item, OrderCreatedEvent, OrderShippedEvent, PaymentProcessedEvent};
use crate::notification_service::Notifications;
use crate::orders::{Order, OrderStore};
use crate::{notification_service, order_service, payment_service, shipping_service};

/// How the services behave. Defaults: no simulated delays, 10% of payments
/// fail, a random seed, 64 handlers at once per service.
///
/// ```
/// use std::time::Duration;
/// let config = eddy_shop::ShopConfig::realistic().failure_rate(0.0).seed(7);
/// assert_eq!(config.payment_delay, Duration::from_millis(1500));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShopConfig {
    /// How long payment-service takes per payment.
    pub payment_delay: Duration,
    /// How long shipping-service takes per shipment.
    pub shipping_delay: Duration,
    /// The share of payments that fail, 0.0 to 1.0.
    pub failure_rate: f64,
    /// Seeds the outcomes: with the same seed and order ids, every order
    /// gets the same payment outcome, payment id, tracking number and
    /// carrier.
    pub seed: u64,
    /// Handlers running at once, per service.
    pub concurrency: usize,
    /// Events held by a crashed instance of a service are taken over by
    /// another after this long.
    pub visibility_timeout: Duration,
    /// Handled events each service keeps on its subscription queue
    /// (default [`eddy::queue::consumer::DEFAULT_HISTORY`]).
    pub history: Duration,
    /// At most this many handled events each service keeps too (`None`:
    /// the age alone bounds it).
    pub history_length: Option<u64>,
    /// Where each service reports its metrics (`None`: nowhere).
    pub metrics: Option<eddy::metrics::Metrics>,
}

impl Default for ShopConfig {
    fn default() -> Self {
        Self {
            payment_delay: Duration::ZERO,
            shipping_delay: Duration::ZERO,
            failure_rate: 0.10,
            seed: rand::random(),
            concurrency: 64,
            visibility_timeout: Duration::from_secs(30),
            history: eddy::queue::consumer::DEFAULT_HISTORY,
            history_length: None,
            metrics: None,
        }
    }
}

impl ShopConfig {
    /// The defaults (no delays).
    pub fn new() -> Self {
        Self::default()
    }

    /// The seed's simulated processing times: 1.5 s per payment, 2 s per
    /// shipment.
    pub fn realistic() -> Self {
        Self {
            payment_delay: Duration::from_millis(1500),
            shipping_delay: Duration::from_secs(2),
            ..Self::default()
        }
    }

    /// Set the share of failing payments (0.0 to 1.0).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Set the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Set payment-service's simulated processing time.
    pub fn payment_delay(mut self, d: Duration) -> Self {
        self.payment_delay = d;
        self
    }

    /// Set shipping-service's simulated processing time.
    pub fn shipping_delay(mut self, d: Duration) -> Self {
        self.shipping_delay = d;
        self
    }

    /// Set the handlers running at once per service (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Set how long before another instance takes over a crashed one's events.
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.visibility_timeout = d;
        self
    }

    /// Report every service's counters, handler durations and queue
    /// gauges through `metrics` (the caller serves them).
    pub fn metrics(mut self, metrics: &eddy::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Set how long each service keeps handled events (zero keeps none).
    pub fn history(mut self, keep: Duration) -> Self {
        self.history = keep;
        self
    }

    /// Also keep at most `n` handled events per service (zero keeps none).
    pub fn history_length(mut self, n: Option<u64>) -> Self {
        self.history_length = n;
        self
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(eddy::Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "failure rate {} is out of range: use 0.0 to 1.0",
                    self.failure_rate
                ),
            ));
        }
        Ok(())
    }
}

/// One of the shop's services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShopService {
    /// Creates orders; follows payments and shipments.
    Order,
    /// Charges new orders.
    Payment,
    /// Ships paid orders.
    Shipping,
    /// Notifies customers of every event.
    Notification,
}

impl ShopService {
    /// All four, in the order they are started.
    pub const ALL: [ShopService; 4] = [
        ShopService::Order,
        ShopService::Payment,
        ShopService::Shipping,
        ShopService::Notification,
    ];

    /// The service's name, as in the seed (`order-service`, ...).
    ///
    /// ```
    /// assert_eq!(eddy_shop::ShopService::Payment.name(), "payment-service");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ShopService::Order => order_service::NAME,
            ShopService::Payment => payment_service::NAME,
            ShopService::Shipping => shipping_service::NAME,
            ShopService::Notification => notification_service::NAME,
        }
    }

    /// The service with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What the services' handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ShopConfig,
    pub(crate) orders: OrderStore,
    pub(crate) notifications: Notifications,
    handled: watch::Sender<u64>,
}

impl Shared {
    /// Count a successfully handled event (the last thing a handler does).
    pub(crate) fn handled(&self) {
        self.handled.send_modify(|n| *n += 1);
    }
}

/// A StdRng for one decision about one key (an order), seeded from the
/// shop's seed: the same inputs give the same draws on every run and every
/// platform (FNV-1a, not the std hasher, whose output may change).
pub(crate) fn rng_for(seed: u64, purpose: &str, key: &str) -> StdRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = seed
        .to_le_bytes()
        .into_iter()
        .chain(purpose.bytes())
        .chain([0])
        .chain(key.bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    StdRng::seed_from_u64(h)
}

/// The running shop.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// use eddy_shop::{Item, OrderStatus, Shop, ShopConfig};
///
/// let bus = eddy::bus::Bus::open("memory://").await?;
/// let shop = Shop::start(bus, ShopConfig::new().failure_rate(0.0)).await?;
/// let id = shop.create_order("user-1", vec![Item::new("P-1", "Pen", 2.5, 2)]).await?;
/// let mut counts = shop.orders().watch();
/// counts.wait_for(|c| c.finished() == 1).await.unwrap();
/// let order = shop.orders().get(&id).unwrap();
/// assert_eq!(order.status, OrderStatus::Shipped);
/// assert!(order.tracking_number.unwrap().starts_with("TRACK-"));
/// shop.stop().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Shop {
    bus: Bus,
    shared: Arc<Shared>,
    services: Vec<RunningService>,
    orders_published: AtomicU64,
}

/// How many notifications [`Shop::notifications`] keeps.
const NOTIFICATIONS_KEPT: usize = 1000;

impl Shop {
    /// Start all four services on `bus` in this process.
    pub async fn start(bus: Bus, config: ShopConfig) -> Result<Self> {
        Self::start_services(bus, config, &ShopService::ALL).await
    }

    /// Start only `services` (e.g. one per process, all on the same Redis).
    /// Orders created through this shop are known to its order-service;
    /// events for orders created elsewhere are retried, then adopted (see
    /// [`crate::orders`]).
    pub async fn start_services(
        bus: Bus,
        config: ShopConfig,
        services: &[ShopService],
    ) -> Result<Self> {
        config.validate()?;
        let shared = Arc::new(Shared {
            config,
            orders: OrderStore::new(),
            notifications: Notifications::new(NOTIFICATIONS_KEPT),
            handled: watch::channel(0).0,
        });
        let mut running = Vec::with_capacity(services.len());
        for service in services {
            let (bus, shared) = (bus.clone(), shared.clone());
            let metrics = shared.config.metrics.clone();
            let builder = match service {
                ShopService::Order => order_service::builder(bus, shared),
                ShopService::Payment => payment_service::builder(bus, shared),
                ShopService::Shipping => shipping_service::builder(bus, shared),
                ShopService::Notification => notification_service::builder(bus, shared),
            };
            let builder = match &metrics {
                Some(m) => builder.metrics(m),
                None => builder,
            };
            match builder.start().await {
                Ok(s) => running.push(s),
                Err(e) => {
                    // The start error is the one to report.
                    let _ = stop_all(running).await;
                    return Err(e);
                }
            }
        }
        Ok(Self {
            bus,
            shared,
            services: running,
            orders_published: AtomicU64::new(0),
        })
    }

    /// Delete the shop services' subscription queues (with their DLQs and
    /// anything pending in them) and their routes, so that a demo starts
    /// from nothing on a Redis that an earlier run used. Leaves the `all`
    /// log and everything else alone. Do not call it while the shop runs
    /// anywhere.
    pub async fn reset(bus: &Bus) -> Result<()> {
        let types = [
            OrderCreatedEvent::TYPE,
            PaymentProcessedEvent::TYPE,
            OrderShippedEvent::TYPE,
        ];
        for service in ShopService::ALL {
            let name = service.name();
            // Routes first: a publish must never reach a deleted queue.
            bus.unsubscribe(name, &Subscription::All).await?;
            bus.unsubscribe(name, &Subscription::types(types)).await?;
            match bus
                .queues()
                .delete_queue(&format!("sub:{name}"), false)
                .await
            {
                Err(e) if e.kind() != ErrorKind::QueueNotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The bus the services run on.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The configuration.
    pub fn config(&self) -> &ShopConfig {
        &self.shared.config
    }

    /// order-service's orders.
    pub fn orders(&self) -> &OrderStore {
        &self.shared.orders
    }

    /// notification-service's notifications.
    pub fn notifications(&self) -> &Notifications {
        &self.shared.notifications
    }

    /// The running services.
    pub fn services(&self) -> &[RunningService] {
        &self.services
    }

    /// Follow the number of events the shop's handlers have handled
    /// successfully (updated as each handler finishes, so a caller can wait
    /// for the shop to go quiet without polling).
    pub fn watch_handled(&self) -> watch::Receiver<u64> {
        self.shared.handled.subscribe()
    }

    /// Place an order with a fresh id (a UUID): record it, then publish
    /// `OrderCreatedEvent` with order-service as its source. Returns the id.
    pub async fn create_order(&self, user_id: &str, items: Vec<Item>) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.create_order_with_id(&id, user_id, items).await?;
        Ok(id)
    }

    /// Place an order with the caller's id ([`ErrorKind::InvalidArgument`]
    /// if this shop has it already, or if its total is not an amount of
    /// money: see [`checked_total`](crate::checked_total)). Nothing is
    /// recorded or published on an error.
    pub async fn create_order_with_id(
        &self,
        order_id: &str,
        user_id: &str,
        items: Vec<Item>,
    ) -> Result<()> {
        crate::checked_total(&items).map_err(|e| {
            eddy::Error::new(ErrorKind::InvalidArgument, format!("order {order_id}: {e}"))
        })?;
        let event = OrderCreatedEvent::new(order_id, user_id, items.clone());
        let mut env = Envelope::new(&event)?;
        env.source = Some(order_service::NAME.to_owned());
        // Recorded before it is published, so the order's own events always
        // find it here.
        if !self
            .shared
            .orders
            .insert(Order::new(order_id, user_id, items))
        {
            return Err(eddy::Error::new(
                ErrorKind::InvalidArgument,
                format!("order {order_id} exists already; use a new id"),
            ));
        }
        if let Err(e) = self.bus.publish_envelope(&env).await {
            self.shared.orders.remove(order_id);
            return Err(e);
        }
        self.orders_published.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Events published: `OrderCreatedEvent`s by [`Shop::create_order`]
    /// plus everything the handlers published.
    pub fn events_published(&self) -> u64 {
        self.orders_published.load(Ordering::Relaxed)
            + self
                .services
                .iter()
                .map(|s| s.metrics().published)
                .sum::<u64>()
    }

    /// Events handled successfully, summed over the services (from their
    /// runtime metrics).
    pub fn events_handled(&self) -> u64 {
        self.services.iter().map(|s| s.metrics().handled()).sum()
    }

    /// Messages in the services' dead-letter queues (`sub:SERVICE:dlq`),
    /// summed: read from the engine, so it counts every process's.
    pub async fn dead_lettered(&self) -> Result<u64> {
        let mut total = 0;
        for s in &self.services {
            let dlq = self
                .bus
                .queues()
                .dead_letter_queue(&format!("sub:{}", s.name()))
                .await?;
            total += dlq.info().await?.length;
        }
        Ok(total)
    }

    /// Stop every service (in parallel), letting in-flight handlers finish.
    pub async fn stop(self) -> Result<()> {
        stop_all(self.services).await
    }
}

async fn stop_all(services: Vec<RunningService>) -> Result<()> {
    let results = futures::future::join_all(services.into_iter().map(RunningService::stop)).await;
    results.into_iter().collect()
}
