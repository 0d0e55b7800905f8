//! The shop's events, named and shaped as the seed's Python classes
//! (`event_type` is the class name), so a Python LeanMQ service and these
//! Rust services read each other's events. On the wire each is the flat JSON
//! object `{event_id, timestamp, event_type, <fields>}` (plus eddy's
//! envelope extras `source`, `correlation_id`, `causation_id`,
//! `traceparent`).
//!
//! Money is `f64`, as in the seed.

use serde::{Deserialize, Serialize};

/// `PaymentProcessedEvent::status` of a successful payment.
pub const PAYMENT_SUCCEEDED: &str = "succeeded";
/// `PaymentProcessedEvent::status` of a declined payment.
pub const PAYMENT_FAILED: &str = "failed";

/// One line of an order.
///
/// ```
/// let item = eddy_shop::Item::new("P-1001", "Mechanical keyboard", 89.99, 2);
/// assert_eq!(item.quantity, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Item {
    /// Catalogue id of the product.
    pub product_id: String,
    /// Product name.
    pub name: String,
    /// Unit price.
    pub price: f64,
    /// How many.
    pub quantity: u32,
}

impl Item {
    /// An order line.
    pub fn new(
        product_id: impl Into<String>,
        name: impl Into<String>,
        price: f64,
        quantity: u32,
    ) -> Self {
        Self {
            product_id: product_id.into(),
            name: name.into(),
            price,
            quantity,
        }
    }
}

/// The total of `items` (sum of price × quantity), rounded to cents.
///
/// ```
/// use eddy_shop::{order_total, Item};
/// let items = [Item::new("a", "A", 10.25, 2), Item::new("b", "B", 0.1, 3)];
/// assert_eq!(order_total(&items), 20.8);
/// assert!(order_total(&[]).is_sign_positive());
/// ```
pub fn order_total(items: &[Item]) -> f64 {
    let total: f64 = items.iter().map(|i| i.price * f64::from(i.quantity)).sum();
    // `+ 0.0`: the sum of no items is -0.0.
    (total * 100.0).round() / 100.0 + 0.0
}

/// The total of `items` if it is an amount of money: every price finite
/// and not negative, and the total (rounded to cents) finite. The error
/// says, for a person, which of these fails.
///
/// ```
/// use eddy_shop::{checked_total, Item};
/// assert_eq!(checked_total(&[Item::new("a", "A", 2.5, 2)]), Ok(5.0));
/// assert!(checked_total(&[Item::new("a", "A", 1e308, 2)]).is_err());
/// ```
pub fn checked_total(items: &[Item]) -> Result<f64, String> {
    for (i, item) in items.iter().enumerate() {
        if !item.price.is_finite() || item.price < 0.0 {
            return Err(format!(
                "`items[{i}].price` must be a finite number, 0 or more (got {})",
                item.price
            ));
        }
    }
    let total = order_total(items);
    if total.is_finite() {
        Ok(total)
    } else {
        // Published as JSON it would be null, which no payment can charge.
        Err(format!(
            "the order total is out of range: price × quantity summed over the items \
             must stay below {:e}",
            f64::MAX / 100.0
        ))
    }
}

/// An order was placed (published by order-service).
///
/// ```
/// use eddy::bus::Event;
/// assert_eq!(eddy_shop::OrderCreatedEvent::TYPE, "OrderCreatedEvent");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OrderCreatedEvent {
    /// The order.
    pub order_id: String,
    /// Who placed it.
    pub user_id: String,
    /// Sum of price × quantity over the items.
    pub total: f64,
    /// What was ordered.
    pub items: Vec<Item>,
}
eddy::event!(OrderCreatedEvent);

impl OrderCreatedEvent {
    /// The event for a new order; `total` is computed from the items.
    pub fn new(order_id: impl Into<String>, user_id: impl Into<String>, items: Vec<Item>) -> Self {
        Self {
            order_id: order_id.into(),
            user_id: user_id.into(),
            total: order_total(&items),
            items,
        }
    }
}

/// A payment attempt finished (published by payment-service); `status` is
/// [`PAYMENT_SUCCEEDED`] or [`PAYMENT_FAILED`].
///
/// ```
/// use eddy::bus::Event;
/// assert_eq!(eddy_shop::PaymentProcessedEvent::TYPE, "PaymentProcessedEvent");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PaymentProcessedEvent {
    /// The payment.
    pub payment_id: String,
    /// The order paid for.
    pub order_id: String,
    /// The amount charged (the order's total).
    pub amount: f64,
    /// `succeeded` or `failed`.
    pub status: String,
}
eddy::event!(PaymentProcessedEvent);

impl PaymentProcessedEvent {
    /// A payment outcome.
    pub fn new(
        payment_id: impl Into<String>,
        order_id: impl Into<String>,
        amount: f64,
        status: impl Into<String>,
    ) -> Self {
        Self {
            payment_id: payment_id.into(),
            order_id: order_id.into(),
            amount,
            status: status.into(),
        }
    }

    /// Whether the payment went through.
    pub fn succeeded(&self) -> bool {
        self.status == PAYMENT_SUCCEEDED
    }
}

/// An order left the warehouse (published by shipping-service).
///
/// ```
/// use eddy::bus::Event;
/// assert_eq!(eddy_shop::OrderShippedEvent::TYPE, "OrderShippedEvent");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OrderShippedEvent {
    /// The order.
    pub order_id: String,
    /// `TRACK-` and 8 uppercase letters or digits.
    pub tracking_number: String,
    /// FedEx, UPS, USPS or DHL.
    pub carrier: String,
}
eddy::event!(OrderShippedEvent);

impl OrderShippedEvent {
    /// A shipment.
    pub fn new(
        order_id: impl Into<String>,
        tracking_number: impl Into<String>,
        carrier: impl Into<String>,
    ) -> Self {
        Self {
            order_id: order_id.into(),
            tracking_number: tracking_number.into(),
            carrier: carrier.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy::bus::Envelope;
    use serde_json::json;

    #[tokio::test]
    async fn wire_format_is_the_seeds_flat_json() {
        let ev = OrderCreatedEvent::new("o1", "u1", vec![Item::new("p1", "Pen", 1.5, 2)]);
        let bus = eddy::bus::Bus::open("memory://").await.unwrap();
        bus.publish(&ev).await.unwrap();
        let log = bus.queues().queue("all").await.unwrap();
        let stored = log.peek(1).await.unwrap();
        let raw = String::from_utf8(stored[0].raw_data().unwrap().to_vec()).unwrap();
        // The envelope's head, then the event's fields in the order the
        // struct declares them (as the seed's `to_dict()`), then the queue's.
        let keys = [
            "event_id",
            "event_type",
            "timestamp",
            "order_id",
            "user_id",
            "total",
            "items",
            "_metadata",
        ];
        let at: Vec<Option<usize>> = keys
            .iter()
            .map(|k| raw.find(&format!("\"{k}\":")))
            .collect();
        assert!(at.iter().all(Option::is_some), "{raw}");
        assert!(at.windows(2).all(|w| w[0] < w[1]), "in this order: {raw}");
        assert!(raw.starts_with(r#"{"event_id":""#), "{raw}");
        let j = Envelope::from_message(&stored[0]).unwrap().to_json();
        assert_eq!(j["event_type"], "OrderCreatedEvent");
        assert_eq!(j["total"], 3.0);
        assert_eq!(
            j["items"],
            json!([{"product_id": "p1", "name": "Pen", "price": 1.5, "quantity": 2}])
        );
    }

    #[test]
    fn reads_a_python_event() {
        // As the seed's `PaymentProcessedEvent.to_dict()` writes it.
        let py = json!({
            "event_id": "6f1c", "timestamp": 1700000000.5, "event_type": "PaymentProcessedEvent",
            "payment_id": "PAY-1", "order_id": "o1", "amount": 12.5, "status": "succeeded"
        });
        let env = Envelope::from_json(py.as_object().unwrap().clone()).unwrap();
        let ev: PaymentProcessedEvent = env.decode().unwrap();
        assert!(ev.succeeded());
        assert_eq!(ev.amount, 12.5);
    }
}
