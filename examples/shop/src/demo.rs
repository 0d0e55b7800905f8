//! The demo behind `eddy demo`: the seed's example run end to end — start
//! the four services, place N orders, wait until every order is shipped or
//! its payment failed, stop, and sum up.
//!
//! On Redis the demo first resets the shop's subscription queues and routes
//! under `events:` ([`Shop::reset`]), so that leftovers of an earlier run
//! (or of a shop running elsewhere — don't point the demo at one) do not
//! mix in. The `all` log keeps every event, as always.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use rand::seq::index;
use rand::Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::notification_service::Notification;
use crate::orders::{OrderCounts, OrderStatus};
use crate::shop::{rng_for, Shop, ShopConfig};
use crate::Item;
use eddy::bus::Bus;
use eddy::{ErrorKind, Result};

/// The demo's product catalogue: id, name, unit price.
pub const CATALOGUE: [(&str, &str, f64); 6] = [
    ("P-1001", "Mechanical keyboard", 89.99),
    ("P-1002", "Wireless mouse", 24.50),
    ("P-1003", "USB-C hub", 39.00),
    ("P-1004", "27-inch monitor", 249.00),
    ("P-1005", "Laptop stand", 32.75),
    ("P-1006", "Noise-cancelling headphones", 199.99),
];

/// How orders are placed at once (on Redis each is a round trip).
const CREATE_CONCURRENCY: usize = 64;

/// What to run. Defaults: 3 orders, 10% failed payments, a random seed, no
/// simulated delays, no progress output.
///
/// ```
/// let opts = eddy_shop::DemoOptions::new().orders(50).failure_rate(0.0).seed(1);
/// assert_eq!(opts.orders, 50);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DemoOptions {
    /// Orders to place.
    pub orders: usize,
    /// The share of payments that fail (0.0 to 1.0).
    pub failure_rate: f64,
    /// Seeds the orders and their outcomes (random if `None`; the summary
    /// says which was used).
    pub seed: Option<u64>,
    /// Use the seed's processing times (1.5 s per payment, 2 s per
    /// shipment) instead of none.
    pub realistic: bool,
    /// Report progress on stderr every 10% of the orders.
    pub progress: bool,
    /// Give up after this long (default: 60 s plus 10 ms per order, plus the
    /// simulated delays).
    pub timeout: Option<Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            orders: 3,
            failure_rate: 0.10,
            seed: None,
            realistic: false,
            progress: false,
            timeout: None,
        }
    }
}

impl DemoOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the number of orders.
    pub fn orders(mut self, n: usize) -> Self {
        self.orders = n;
        self
    }

    /// Set the failure rate.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Set the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Use the seed's processing times.
    pub fn realistic(mut self, on: bool) -> Self {
        self.realistic = on;
        self
    }

    /// Report progress on stderr.
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Set the overall timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}

/// One order at the end of the demo.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct OrderState {
    /// The order id.
    pub order_id: String,
    /// Who placed it.
    pub user_id: Option<String>,
    /// Its total.
    pub total: f64,
    /// Its final status.
    pub status: OrderStatus,
    /// `succeeded` or `failed`.
    pub payment_status: Option<String>,
    /// The tracking number, if shipped.
    pub tracking_number: Option<String>,
    /// The carrier, if shipped.
    pub carrier: Option<String>,
}

/// What a demo run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DemoSummary {
    /// Orders placed.
    pub orders: usize,
    /// Orders per status (every status, zeros included).
    pub by_status: BTreeMap<String, usize>,
    /// Events published (orders created, payments, shipments).
    pub events_published: u64,
    /// Events handled successfully, summed over the four services.
    pub events_handled: u64,
    /// Messages in the four services' dead-letter queues at the end.
    pub dead_lettered: u64,
    /// From the first order placed until every order was final and every
    /// event handled, in seconds.
    pub elapsed_s: f64,
    /// `events_handled / elapsed_s`.
    pub events_per_s: f64,
    /// The seed used.
    pub seed: u64,
    /// The engine (`memory://`, `redis://host:port/db`).
    pub engine: String,
    /// Every order's final state, by order id.
    pub order_states: Vec<OrderState>,
    /// The last notifications notification-service sent (at most 1,000),
    /// oldest first.
    pub notifications: Vec<Notification>,
    /// Each service's handling, in the shop's order of services.
    pub services: Vec<ServiceReport>,
    /// The event flow: per event type, how many each service handled.
    pub flow: BTreeMap<String, BTreeMap<String, u64>>,
}

/// How one service of the demo did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ServiceReport {
    /// The service.
    pub name: String,
    /// Events handled successfully.
    pub handled: u64,
    /// Deliveries that failed and were retried.
    pub retried: u64,
    /// Messages in its dead-letter queue at the end.
    pub dead_lettered: u64,
    /// Handler time, median and 99th percentile, in milliseconds (the
    /// upper bound of the histogram bucket; `None` if it handled nothing).
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    pub p99_ms: Option<f64>,
}

impl ServiceReport {
    fn new(name: &str, metrics: &eddy::service::Snapshot, dead_lettered: u64) -> Self {
        // Every event type's latencies together.
        let mut all = eddy::service::Histogram::default();
        for t in metrics.by_type.values() {
            for (sum, c) in all.counts.iter_mut().zip(t.latency.counts) {
                *sum += c;
            }
            all.count += t.latency.count;
            all.sum_us = all.sum_us.saturating_add(t.latency.sum_us);
        }
        let ms = |q: f64| all.quantile_us(q).map(|us| us as f64 / 1000.0);
        Self {
            name: name.to_owned(),
            handled: metrics.handled(),
            retried: metrics.by_type.values().map(|t| t.failed).sum(),
            dead_lettered,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        }
    }
}

impl DemoSummary {
    /// The machine-readable summary `eddy demo --json` prints:
    /// `{"orders","by_status","events_published","events_handled",
    /// "dead_lettered","elapsed_s","events_per_s","seed","engine",
    /// "services","flow"}` (seconds to the microsecond, rate to a tenth).
    pub fn to_json(&self) -> impl Serialize + '_ {
        // A struct, not a JSON map: its fields keep this order.
        #[derive(Serialize)]
        struct Line<'a> {
            orders: usize,
            by_status: &'a BTreeMap<String, usize>,
            events_published: u64,
            events_handled: u64,
            dead_lettered: u64,
            elapsed_s: f64,
            events_per_s: f64,
            seed: u64,
            engine: &'a str,
            services: &'a [ServiceReport],
            flow: &'a BTreeMap<String, BTreeMap<String, u64>>,
        }
        Line {
            orders: self.orders,
            by_status: &self.by_status,
            events_published: self.events_published,
            events_handled: self.events_handled,
            dead_lettered: self.dead_lettered,
            elapsed_s: (self.elapsed_s * 1e6).round() / 1e6,
            events_per_s: (self.events_per_s * 10.0).round() / 10.0,
            seed: self.seed,
            engine: &self.engine,
            services: &self.services,
            flow: &self.flow,
        }
    }
}

/// The orders of a demo run: ids `ORD-000001`..., a random user
/// `user-1000`..`user-9999` and 1 to 3 different catalogue products, 1 to 3
/// of each — the same for the same seed.
///
/// ```
/// let orders = eddy_shop::demo_orders(2, 42);
/// assert_eq!(orders[0].0, "ORD-000001");
/// assert_eq!(orders, eddy_shop::demo_orders(2, 42));
/// ```
pub fn demo_orders(n: usize, seed: u64) -> Vec<(String, String, Vec<Item>)> {
    let mut rng = rng_for(seed, "demo", "orders");
    (1..=n)
        .map(|i| {
            let user = format!("user-{}", rng.random_range(1000..=9999));
            let k = rng.random_range(1..=3);
            let items = index::sample(&mut rng, CATALOGUE.len(), k)
                .into_iter()
                .map(|p| {
                    let (id, name, price) = CATALOGUE[p];
                    Item::new(id, name, price, rng.random_range(1..=3))
                })
                .collect();
            (format!("ORD-{i:06}"), user, items)
        })
        .collect()
}

/// Run the demo on the engine at `url` (`memory://`, `redis://...`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eddy::Result<()> {
/// let summary = eddy_shop::run_demo("memory://", eddy_shop::DemoOptions::new().orders(5).failure_rate(0.0)).await?;
/// assert_eq!(summary.by_status["shipped"], 5);
/// assert_eq!(summary.events_published, 15);
/// assert_eq!(summary.dead_lettered, 0);
/// # Ok(())
/// # }
/// ```
pub async fn run_demo(url: &str, opts: DemoOptions) -> Result<DemoSummary> {
    if opts.orders == 0 {
        return Err(eddy::Error::new(
            ErrorKind::InvalidArgument,
            "the demo needs at least 1 order",
        ));
    }
    let mut config = if opts.realistic {
        ShopConfig::realistic()
    } else {
        ShopConfig::new()
    }
    .failure_rate(opts.failure_rate);
    if let Some(seed) = opts.seed {
        config = config.seed(seed);
    }
    let seed = config.seed;
    let n = opts.orders;
    let timeout = opts.timeout.unwrap_or_else(|| default_timeout(n, &config));
    let orders = demo_orders(n, seed);

    let bus = Bus::open(url).await?;
    Shop::reset(&bus).await?;
    let shop = Shop::start(bus, config).await?;
    let engine = shop.bus().queues().engine().describe();

    let started = Instant::now();
    let run = async {
        futures::stream::iter(&orders)
            .map(|(id, user, items)| shop.create_order_with_id(id, user, items.clone()))
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        let counts = wait_final(&shop, n, opts.progress.then_some(started)).await;
        // Every final order is not yet every event handled: shipping-service
        // may still have a failed payment to acknowledge, notification-service
        // a shipment to announce. Each order causes 5 handlings, plus 2 if
        // it shipped.
        let expected = 5 * n as u64 + 2 * counts.shipped as u64;
        let _ = shop
            .watch_handled()
            .wait_for(|handled| *handled >= expected)
            .await;
        Ok::<_, eddy::Error>(())
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = shop.stop().await;
            return Err(e);
        }
        Err(_) => {
            let counts = shop.orders().counts();
            let handled = *shop.watch_handled().borrow();
            let dead = shop.dead_lettered().await.unwrap_or(0);
            let _ = shop.stop().await;
            return Err(eddy::Error::new(
                ErrorKind::Timeout,
                format!(
                    "the demo did not finish within {timeout:?}: {} of {n} orders reached a final state ({} created, {} paid), {handled} events handled, {dead} dead-lettered; run with RUST_LOG=warn to see why, or raise the timeout",
                    counts.finished(), counts.created, counts.paid
                ),
            ));
        }
    }
    let elapsed = started.elapsed();

    // The runtime records a handler's metrics just after the handler
    // returns, possibly on another thread; let it catch up with our count.
    let handled = *shop.watch_handled().borrow();
    for _ in 0..100 {
        if shop.events_handled() >= handled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let events_handled = shop.events_handled();
    let events_published = shop.events_published();
    let counts = shop.orders().counts();
    let order_states = shop
        .orders()
        .all()
        .into_iter()
        .map(|o| OrderState {
            order_id: o.order_id,
            user_id: o.user_id,
            total: o.total,
            status: o.status,
            payment_status: o.payment_status,
            tracking_number: o.tracking_number,
            carrier: o.carrier,
        })
        .collect();
    let notifications = shop.notifications().recent();
    // Read the DLQs after the services stopped: nothing moves any more.
    let bus = shop.bus().clone();
    let handled_by: Vec<(String, eddy::service::Snapshot)> = shop
        .services()
        .iter()
        .map(|s| (s.name().to_owned(), s.metrics()))
        .collect();
    shop.stop().await?;
    let mut dead_lettered = 0;
    let mut services = Vec::new();
    let mut flow: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (name, metrics) in &handled_by {
        let dlq = bus
            .queues()
            .dead_letter_queue(&format!("sub:{name}"))
            .await?;
        let dead = dlq.info().await?.length;
        dead_lettered += dead;
        services.push(ServiceReport::new(name, metrics, dead));
        for (event_type, t) in &metrics.by_type {
            flow.entry(event_type.clone())
                .or_default()
                .insert(name.clone(), t.handled);
        }
    }

    let elapsed_s = elapsed.as_secs_f64();
    Ok(DemoSummary {
        orders: n,
        by_status: OrderStatus::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), counts.get(*s)))
            .collect(),
        events_published,
        events_handled,
        dead_lettered,
        elapsed_s,
        events_per_s: if elapsed_s > 0.0 {
            events_handled as f64 / elapsed_s
        } else {
            0.0
        },
        seed,
        engine,
        order_states,
        notifications,
        services,
        flow,
    })
}

/// Wait until `n` orders are final, reporting every 10% on stderr if
/// `progress` holds the start time.
async fn wait_final(shop: &Shop, n: usize, progress: Option<Instant>) -> OrderCounts {
    let mut counts = shop.orders().watch();
    let mut decile = 1;
    loop {
        let c = *counts.borrow_and_update();
        if let Some(started) = progress {
            while decile <= 10 && c.finished() >= (decile * n).div_ceil(10) {
                // Progress is best effort: a closed stderr is no reason to fail.
                let _ = writeln!(
                    std::io::stderr(),
                    "demo: {}/{n} orders final ({}%) after {:.1}s",
                    c.finished(),
                    decile * 10,
                    started.elapsed().as_secs_f64()
                );
                decile += 1;
            }
        }
        // The sender lives in the shop, which outlives this wait.
        if c.finished() >= n || counts.changed().await.is_err() {
            return c;
        }
    }
}

fn default_timeout(n: usize, config: &ShopConfig) -> Duration {
    let waves = (n / config.concurrency.max(1) + 1) as u32;
    Duration::from_secs(60)
        + Duration::from_millis(10) * n as u32
        + (config.payment_delay + config.shipping_delay) * waves * 2
}
