//! notification-service: subscribes to every event and turns each of the
//! shop's three into a notification for the customer, kept in a bounded
//! in-memory list ([`Notifications`]) and logged at `info`. Other event
//! types are acknowledged without a notification. Events of one order are
//! handled one at a time, in the order they arrive, so an order's
//! notifications go out in the order its events happened.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use eddy::bus::{Bus, Envelope, Event};
use eddy::service::{Context, Service, ServiceBuilder};
use eddy::Fail;
use serde::Serialize;

use crate::events::{OrderCreatedEvent, OrderShippedEvent, PaymentProcessedEvent};
use crate::shop::Shared;

/// The service's name (its subscription queue is `sub:notification-service`).
pub const NAME: &str = "notification-service";

/// One notification sent to a customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Notification {
    /// The event it is about.
    pub event_id: String,
    /// That event's type.
    pub event_type: String,
    /// The order it is about.
    pub order_id: String,
    /// What the customer reads.
    pub text: String,
}

impl Notification {
    /// The notification for one of the shop's events, or `None` for any
    /// other event type.
    ///
    /// ```
    /// use eddy::bus::Envelope;
    /// use eddy_shop::{Notification, OrderShippedEvent};
    ///
    /// let env = Envelope::new(&OrderShippedEvent::new("o1", "TRACK-ABCD1234", "DHL")).unwrap();
    /// let n = Notification::for_event(&env).unwrap().unwrap();
    /// assert_eq!(n.text, "Order o1 shipped via DHL, tracking TRACK-ABCD1234");
    /// ```
    pub fn for_event(env: &Envelope) -> eddy::Result<Option<Self>> {
        let (order_id, text) = match env.event_type.as_str() {
            OrderCreatedEvent::TYPE => {
                let e: OrderCreatedEvent = env.decode()?;
                let text = format!(
                    "Order {} created for user {}: total ${:.2}",
                    e.order_id, e.user_id, e.total
                );
                (e.order_id, text)
            }
            PaymentProcessedEvent::TYPE => {
                let e: PaymentProcessedEvent = env.decode()?;
                let text = format!(
                    "Payment {} for order {} {}: ${:.2}",
                    e.payment_id, e.order_id, e.status, e.amount
                );
                (e.order_id, text)
            }
            OrderShippedEvent::TYPE => {
                let e: OrderShippedEvent = env.decode()?;
                let text = format!(
                    "Order {} shipped via {}, tracking {}",
                    e.order_id, e.carrier, e.tracking_number
                );
                (e.order_id, text)
            }
            _ => return Ok(None),
        };
        Ok(Some(Self {
            event_id: env.event_id.clone(),
            event_type: env.event_type.clone(),
            order_id,
            text,
        }))
    }
}

/// The most recent notifications (a bounded list) and how many were sent
/// in all. Cheap to clone.
///
/// ```
/// let log = eddy_shop::Notifications::new(2);
/// assert_eq!((log.total(), log.recent().len()), (0, 0));
/// ```
#[derive(Debug, Clone)]
pub struct Notifications {
    inner: Arc<Mutex<Recent>>,
}

#[derive(Debug)]
struct Recent {
    list: VecDeque<Notification>,
    cap: usize,
    total: u64,
}

impl Notifications {
    /// Keep the last `cap` notifications.
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Recent {
                list: VecDeque::with_capacity(cap.min(1024)),
                cap,
                total: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recent> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, n: Notification) {
        let mut r = self.lock();
        r.total += 1;
        if r.cap == 0 {
            return;
        }
        if r.list.len() == r.cap {
            r.list.pop_front();
        }
        r.list.push_back(n);
    }

    /// The kept notifications, oldest first.
    pub fn recent(&self) -> Vec<Notification> {
        self.lock().list.iter().cloned().collect()
    }

    /// Notifications sent since the start.
    pub fn total(&self) -> u64 {
        self.lock().total
    }
}

pub(crate) fn builder(bus: Bus, shared: Arc<Shared>) -> ServiceBuilder {
    Service::builder(NAME, bus)
        .concurrency(shared.config.concurrency)
        .visibility_timeout(shared.config.visibility_timeout)
        .history(Some(shared.config.history))
        .history_length(shared.config.history_length)
        // A customer must not hear "shipped" before "payment succeeded".
        .order_by("order_id")
        .on_any(move |_ctx: Context, env: Envelope| {
            let shared = shared.clone();
            async move {
                // A shop event without its fields will never decode.
                match Notification::for_event(&env).map_err(Fail::reject)? {
                    Some(n) => {
                        tracing::info!(order_id = %n.order_id, event_type = %n.event_type, "{}", n.text);
                        shared.notifications.push(n);
                    }
                    None => {
                        tracing::debug!(event_type = %env.event_type, "not a shop event; no notification")
                    }
                }
                shared.handled();
                Ok(())
            }
        })
}
