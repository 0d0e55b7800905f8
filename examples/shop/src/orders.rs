//! order-service: creates orders and follows them through payment and
//! shipping, keeping them in an [`OrderStore`].
//!
//! Status only moves forward — `created` → `paid` | `payment_failed` →
//! `shipped` — whatever order the events arrive in: an `OrderShippedEvent`
//! before its `PaymentProcessedEvent` leaves the order `shipped` and the late
//! payment is still recorded; a late payment never moves a shipped order
//! back. A second, different payment or shipment for an order that already
//! has one is logged and ignored (the first one decided the order);
//! redelivered duplicates change nothing.
//!
//! An event for an order this store has never seen is retried with backoff
//! (the delivery may reach an order-service replica that has the order, or
//! the order's creation may still be on its way); on delivery
//! [`UNKNOWN_ORDER_DELIVERIES`] the order is *adopted*: recorded from the
//! event itself, marked [`Order::adopted`], with what the event tells. The
//! event is a fact about the order; dead-lettering it would only lose that
//! fact. Within one process this never happens: [`Shop::create_order`]
//! records an order before publishing it. The store is in memory, one per
//! process: replicas of order-service would need a shared one to agree.
//!
//! [`Shop::create_order`]: crate::Shop::create_order

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::watch;

use crate::events::{OrderShippedEvent, PaymentProcessedEvent, PAYMENT_FAILED, PAYMENT_SUCCEEDED};
use crate::Item;

/// The delivery of an event for an unknown order at which the order is
/// adopted instead of retried (deliveries 1 and 2 are retried).
pub const UNKNOWN_ORDER_DELIVERIES: u64 = 3;

/// Where an order is. Only moves forward: `Created` → `Paid` |
/// `PaymentFailed` → `Shipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OrderStatus {
    /// Placed, waiting for payment.
    Created,
    /// Payment succeeded, waiting for shipping.
    Paid,
    /// Payment declined (final).
    PaymentFailed,
    /// On its way (final).
    Shipped,
}

impl OrderStatus {
    /// Every status, in the order they are reached.
    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Created,
        OrderStatus::Paid,
        OrderStatus::PaymentFailed,
        OrderStatus::Shipped,
    ];

    /// The status as the seed spells it: `created`, `paid`,
    /// `payment_failed`, `shipped`.
    ///
    /// ```
    /// assert_eq!(eddy_shop::OrderStatus::PaymentFailed.as_str(), "payment_failed");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Created => "created",
            OrderStatus::Paid => "paid",
            OrderStatus::PaymentFailed => "payment_failed",
            OrderStatus::Shipped => "shipped",
        }
    }

    /// Nothing more will happen to the order (`payment_failed` or `shipped`).
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::PaymentFailed | OrderStatus::Shipped)
    }

    /// Position in the lifecycle; `Paid` and `PaymentFailed` are the same
    /// step.
    fn step(self) -> u8 {
        match self {
            OrderStatus::Created => 0,
            OrderStatus::Paid | OrderStatus::PaymentFailed => 1,
            OrderStatus::Shipped => 2,
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An order as order-service knows it. Timestamps are float seconds since
/// the Unix epoch (the seed's `time.time()`); payment and shipping times are
/// the events' own timestamps.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Order {
    /// The order id.
    pub order_id: String,
    /// Who placed it (`None` if adopted from a later event).
    pub user_id: Option<String>,
    /// What was ordered (empty if adopted).
    pub items: Vec<Item>,
    /// The order total (the amount paid, if adopted from a payment).
    pub total: f64,
    /// Where it is.
    pub status: OrderStatus,
    /// The payment that decided it.
    pub payment_id: Option<String>,
    /// `succeeded` or `failed`.
    pub payment_status: Option<String>,
    /// The amount the payment was for.
    pub amount: Option<f64>,
    /// The shipment's tracking number.
    pub tracking_number: Option<String>,
    /// The shipment's carrier.
    pub carrier: Option<String>,
    /// When it was created (`None` if adopted).
    pub created_at: Option<f64>,
    /// When the payment was processed.
    pub payment_processed_at: Option<f64>,
    /// When it shipped.
    pub shipped_at: Option<f64>,
    /// When this record last changed.
    pub updated_at: f64,
    /// Learned from a payment or shipping event rather than created here.
    pub adopted: bool,
}

impl Order {
    /// A new order, status `created`, total computed from the items.
    pub fn new(order_id: impl Into<String>, user_id: impl Into<String>, items: Vec<Item>) -> Self {
        let now = now_secs();
        Self {
            order_id: order_id.into(),
            user_id: Some(user_id.into()),
            total: crate::order_total(&items),
            items,
            status: OrderStatus::Created,
            payment_id: None,
            payment_status: None,
            amount: None,
            tracking_number: None,
            carrier: None,
            created_at: Some(now),
            payment_processed_at: None,
            shipped_at: None,
            updated_at: now,
            adopted: false,
        }
    }

    fn adopt(order_id: &str) -> Self {
        Self {
            user_id: None,
            created_at: None,
            adopted: true,
            ..Self::new(order_id, "", Vec::new())
        }
    }
}

/// What an event did to an order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// The status moved forward.
    Advanced {
        /// The status before.
        from: OrderStatus,
        /// The status now.
        to: OrderStatus,
    },
    /// The event's details were recorded; the status was already at or past
    /// where the event would put it (it arrived late).
    Recorded,
    /// The same event was applied before (a redelivery).
    Duplicate,
    /// A different payment or shipment was already recorded; this one was
    /// ignored.
    Conflict(String),
}

/// The order is not in the store (and was not adopted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownOrder(pub String);

impl std::fmt::Display for UnknownOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "order {} is not known to this order-service", self.0)
    }
}

impl std::error::Error for UnknownOrder {}

/// How many orders are in each status, kept as orders change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OrderCounts {
    /// Orders in the store.
    pub orders: usize,
    /// In `created`.
    pub created: usize,
    /// In `paid`.
    pub paid: usize,
    /// In `payment_failed`.
    pub payment_failed: usize,
    /// In `shipped`.
    pub shipped: usize,
}

impl OrderCounts {
    /// Orders in a final status.
    pub fn finished(&self) -> usize {
        self.payment_failed + self.shipped
    }

    /// The count for one status.
    pub fn get(&self, status: OrderStatus) -> usize {
        match status {
            OrderStatus::Created => self.created,
            OrderStatus::Paid => self.paid,
            OrderStatus::PaymentFailed => self.payment_failed,
            OrderStatus::Shipped => self.shipped,
        }
    }

    fn slot(&mut self, status: OrderStatus) -> &mut usize {
        match status {
            OrderStatus::Created => &mut self.created,
            OrderStatus::Paid => &mut self.paid,
            OrderStatus::PaymentFailed => &mut self.payment_failed,
            OrderStatus::Shipped => &mut self.shipped,
        }
    }
}

/// order-service's orders, in memory, shared by its handlers. Cheap to
/// clone. Changes are announced through [`OrderStore::watch`], so a caller
/// can wait for orders to finish without polling.
///
/// ```
/// use eddy_shop::{Order, OrderStatus, OrderStore, PaymentProcessedEvent};
///
/// let store = OrderStore::new();
/// store.insert(Order::new("o1", "u1", vec![]));
/// store.apply_payment(&PaymentProcessedEvent::new("PAY-1", "o1", 0.0, "failed"), 1.0, false).unwrap();
/// assert_eq!(store.get("o1").unwrap().status, OrderStatus::PaymentFailed);
/// assert_eq!(store.counts().finished(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct OrderStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    orders: Mutex<HashMap<String, Order>>,
    counts: watch::Sender<OrderCounts>,
}

impl Default for OrderStore {
    fn default() -> Self {
        Self::new()
    }
}

impl OrderStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(StoreInner {
                orders: Mutex::new(HashMap::new()),
                counts: watch::channel(OrderCounts::default()).0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Order>> {
        // Every update leaves the map consistent, so a panic elsewhere
        // while it was held does not make it unusable.
        self.inner.orders.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add an order; `false` (and nothing changes) if its id exists.
    pub fn insert(&self, order: Order) -> bool {
        let mut orders = self.lock();
        if orders.contains_key(&order.order_id) {
            return false;
        }
        let status = order.status;
        orders.insert(order.order_id.clone(), order);
        self.inner.counts.send_modify(|c| {
            c.orders += 1;
            *c.slot(status) += 1;
        });
        true
    }

    /// Remove an order (when its creation could not be published).
    pub fn remove(&self, order_id: &str) -> Option<Order> {
        let mut orders = self.lock();
        let order = orders.remove(order_id)?;
        self.inner.counts.send_modify(|c| {
            c.orders -= 1;
            *c.slot(order.status) -= 1;
        });
        Some(order)
    }

    /// A copy of one order.
    pub fn get(&self, order_id: &str) -> Option<Order> {
        self.lock().get(order_id).cloned()
    }

    /// A copy of every order, sorted by id.
    pub fn all(&self) -> Vec<Order> {
        let mut out: Vec<Order> = self.lock().values().cloned().collect();
        out.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        out
    }

    /// Orders per status now.
    pub fn counts(&self) -> OrderCounts {
        *self.inner.counts.borrow()
    }

    /// Follow the counts as they change (e.g. `wait_for(|c| c.finished() ==
    /// n)`).
    pub fn watch(&self) -> watch::Receiver<OrderCounts> {
        self.inner.counts.subscribe()
    }

    /// Find the order, or adopt it if `adopt`; the closure updates it and
    /// says what happened. Status changes are counted here, in one place.
    fn update(
        &self,
        order_id: &str,
        adopt: bool,
        at: f64,
        f: impl FnOnce(&mut Order) -> Applied,
    ) -> Result<Applied, UnknownOrder> {
        let mut orders = self.lock();
        let mut counts = None::<(Option<OrderStatus>, OrderStatus)>;
        let order = match orders.get_mut(order_id) {
            Some(o) => o,
            None if adopt => {
                tracing::warn!(
                    order_id,
                    "event for an order this order-service never saw; adopting it from the event"
                );
                counts = Some((None, OrderStatus::Created));
                orders
                    .entry(order_id.to_owned())
                    .or_insert_with(|| Order::adopt(order_id))
            }
            None => return Err(UnknownOrder(order_id.to_owned())),
        };
        let applied = f(order);
        if applied != Applied::Duplicate {
            order.updated_at = now_secs().max(at);
        }
        if let Applied::Advanced { from, to } = applied {
            counts = Some((counts.map_or(Some(from), |(adopted, _)| adopted), to));
        }
        if let Some((from, to)) = counts {
            self.inner.counts.send_modify(|c| {
                match from {
                    Some(from) => *c.slot(from) -= 1,
                    None => c.orders += 1,
                }
                *c.slot(to) += 1;
            });
        }
        Ok(applied)
    }

    /// Apply a `PaymentProcessedEvent` that happened at `at`: record the
    /// payment and move a `created` order to `paid` or `payment_failed`. An
    /// unknown order is an error unless `adopt`.
    pub fn apply_payment(
        &self,
        ev: &PaymentProcessedEvent,
        at: f64,
        adopt: bool,
    ) -> Result<Applied, UnknownOrder> {
        self.update(&ev.order_id, adopt, at, |order| {
            if let Some(existing) = &order.payment_id {
                return if *existing == ev.payment_id {
                    Applied::Duplicate
                } else {
                    Applied::Conflict(format!(
                        "order {} already has payment {existing}; ignoring payment {}",
                        order.order_id, ev.payment_id
                    ))
                };
            }
            order.payment_id = Some(ev.payment_id.clone());
            order.payment_status = Some(ev.status.clone());
            order.amount = Some(ev.amount);
            order.payment_processed_at = Some(at);
            if order.adopted && order.total == 0.0 {
                order.total = ev.amount;
            }
            let to = if ev.succeeded() {
                OrderStatus::Paid
            } else {
                OrderStatus::PaymentFailed
            };
            advance(order, to)
        })
    }

    /// Apply an `OrderShippedEvent` that happened at `at`: record the
    /// shipment and move the order to `shipped`. An unknown order is an
    /// error unless `adopt`.
    pub fn apply_shipment(
        &self,
        ev: &OrderShippedEvent,
        at: f64,
        adopt: bool,
    ) -> Result<Applied, UnknownOrder> {
        self.update(&ev.order_id, adopt, at, |order| {
            if let Some(existing) = &order.tracking_number {
                return if *existing == ev.tracking_number {
                    Applied::Duplicate
                } else {
                    Applied::Conflict(format!(
                        "order {} already shipped as {existing}; ignoring shipment {}",
                        order.order_id, ev.tracking_number
                    ))
                };
            }
            if order.status == OrderStatus::PaymentFailed {
                // Shipping only ships paid orders, so two contradicting
                // payments were published; the parcel has left either way.
                tracing::warn!(order_id = %order.order_id, "order shipped although its payment failed");
            }
            order.tracking_number = Some(ev.tracking_number.clone());
            order.carrier = Some(ev.carrier.clone());
            order.shipped_at = Some(at);
            advance(order, OrderStatus::Shipped)
        })
    }
}

fn advance(order: &mut Order, to: OrderStatus) -> Applied {
    if to.step() > order.status.step() {
        let from = std::mem::replace(&mut order.status, to);
        Applied::Advanced { from, to }
    } else {
        Applied::Recorded
    }
}

/// Whether `status` is one payment-service sends.
pub(crate) fn is_payment_status(status: &str) -> bool {
    status == PAYMENT_SUCCEEDED || status == PAYMENT_FAILED
}

pub(crate) fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(order: &str, payment: &str, status: &str) -> PaymentProcessedEvent {
        PaymentProcessedEvent::new(payment, order, 10.0, status)
    }

    fn shipped(order: &str, tracking: &str) -> OrderShippedEvent {
        OrderShippedEvent::new(order, tracking, "UPS")
    }

    #[test]
    fn shipped_before_paid_stays_shipped_and_records_the_payment() {
        let store = OrderStore::new();
        store.insert(Order::new("o1", "u1", vec![]));
        let a = store.apply_shipment(&shipped("o1", "T1"), 2.0, false);
        assert_eq!(
            a,
            Ok(Applied::Advanced {
                from: OrderStatus::Created,
                to: OrderStatus::Shipped
            })
        );
        let b = store.apply_payment(&paid("o1", "P1", "succeeded"), 1.0, false);
        assert_eq!(b, Ok(Applied::Recorded));
        let o = store.get("o1").unwrap();
        assert_eq!(o.status, OrderStatus::Shipped);
        assert_eq!(o.payment_id.as_deref(), Some("P1"));
        assert_eq!(o.payment_status.as_deref(), Some("succeeded"));
        assert_eq!(o.tracking_number.as_deref(), Some("T1"));
        let c = store.counts();
        assert_eq!((c.orders, c.created, c.shipped, c.finished()), (1, 0, 1, 1));
    }

    #[test]
    fn duplicates_and_conflicts_change_nothing() {
        let store = OrderStore::new();
        store.insert(Order::new("o1", "u1", vec![]));
        store
            .apply_payment(&paid("o1", "P1", "failed"), 1.0, false)
            .unwrap();
        let before = store.get("o1").unwrap();
        assert_eq!(
            store.apply_payment(&paid("o1", "P1", "failed"), 1.0, false),
            Ok(Applied::Duplicate)
        );
        assert!(matches!(
            store.apply_payment(&paid("o1", "P2", "succeeded"), 1.5, false),
            Ok(Applied::Conflict(_))
        ));
        let after = store.get("o1").unwrap();
        assert_eq!(after.status, OrderStatus::PaymentFailed);
        assert_eq!(after.payment_id, before.payment_id);
        assert_eq!(store.counts().payment_failed, 1);
    }

    #[test]
    fn unknown_orders_are_refused_or_adopted() {
        let store = OrderStore::new();
        assert_eq!(
            store.apply_payment(&paid("o9", "P9", "succeeded"), 1.0, false),
            Err(UnknownOrder("o9".into()))
        );
        assert_eq!(store.counts().orders, 0);
        store
            .apply_payment(&paid("o9", "P9", "succeeded"), 1.0, true)
            .unwrap();
        let o = store.get("o9").unwrap();
        assert!(o.adopted);
        assert_eq!((o.status, o.total), (OrderStatus::Paid, 10.0));
        let c = store.counts();
        assert_eq!((c.orders, c.created, c.paid), (1, 0, 1));
        store.remove("o9");
        assert_eq!(store.counts(), OrderCounts::default());
    }
}
