//! order-service's handlers: payment and shipping outcomes update the
//! [`OrderStore`](crate::OrderStore) (see [`crate::orders`] for the rules).

use std::sync::Arc;
use std::time::Duration;

use eddy::bus::Bus;
use eddy::queue::consumer::Backoff;
use eddy::service::{Context, Service, ServiceBuilder};
use eddy::Fail;

use crate::events::{OrderShippedEvent, PaymentProcessedEvent};
use crate::orders::{is_payment_status, Applied, UNKNOWN_ORDER_DELIVERIES};
use crate::shop::Shared;

/// The service's name (its subscription queue is `sub:order-service`).
pub const NAME: &str = "order-service";

pub(crate) fn builder(bus: Bus, shared: Arc<Shared>) -> ServiceBuilder {
    let (on_payment, on_shipment) = (shared.clone(), shared.clone());
    Service::builder(NAME, bus)
        .concurrency(shared.config.concurrency)
        .visibility_timeout(shared.config.visibility_timeout)
        .history(Some(shared.config.history))
        .history_length(shared.config.history_length)
        // Unknown orders are retried quickly: the record is usually a moment away.
        .retry(Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(2),
        ))
        .on(move |ctx: Context, ev: PaymentProcessedEvent| {
            let shared = on_payment.clone();
            async move {
                if !is_payment_status(&ev.status) {
                    return Err(Fail::reject(format!(
                        "payment {} has status `{}`; expected `succeeded` or `failed`",
                        ev.payment_id, ev.status
                    )));
                }
                let adopt = ctx.delivery_count() >= UNKNOWN_ORDER_DELIVERIES;
                let applied = shared
                    .orders
                    .apply_payment(&ev, ctx.envelope().timestamp, adopt)
                    .map_err(Fail::retry)?;
                log(&ev.order_id, "PaymentProcessedEvent", &applied);
                shared.handled();
                Ok(())
            }
        })
        .on(move |ctx: Context, ev: OrderShippedEvent| {
            let shared = on_shipment.clone();
            async move {
                let adopt = ctx.delivery_count() >= UNKNOWN_ORDER_DELIVERIES;
                let applied = shared
                    .orders
                    .apply_shipment(&ev, ctx.envelope().timestamp, adopt)
                    .map_err(Fail::retry)?;
                log(&ev.order_id, "OrderShippedEvent", &applied);
                shared.handled();
                Ok(())
            }
        })
}

fn log(order_id: &str, event: &str, applied: &Applied) {
    match applied {
        Applied::Advanced { from, to } => {
            tracing::debug!(order_id, event, %from, %to, "order status changed")
        }
        Applied::Recorded => {
            tracing::debug!(order_id, event, "late event recorded; status unchanged")
        }
        Applied::Duplicate => tracing::debug!(order_id, event, "duplicate event; nothing to do"),
        Applied::Conflict(why) => tracing::warn!(order_id, event, "{why}"),
    }
}
