//! shipping-service: ships each paid order after a simulated processing
//! time, with a tracking number `TRACK-XXXXXXXX` (8 uppercase letters or
//! digits) and a carrier (FedEx, UPS, USPS or DHL). Failed payments are
//! acknowledged and ignored.
//!
//! Like payment-service, the tracking number and carrier come from an RNG
//! seeded with the shop's seed and the order id, so a redelivery ships the
//! same parcel again (a duplicate) rather than a second one.

use std::sync::Arc;

use eddy::bus::Bus;
use eddy::service::{Context, Service, ServiceBuilder};
use rand::Rng;

use crate::events::{OrderShippedEvent, PaymentProcessedEvent};
use crate::shop::{rng_for, Shared};

/// The service's name (its subscription queue is `sub:shipping-service`).
pub const NAME: &str = "shipping-service";

/// The carriers a parcel may go with.
pub const CARRIERS: [&str; 4] = ["FedEx", "UPS", "USPS", "DHL"];

const TRACKING_ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

pub(crate) fn builder(bus: Bus, shared: Arc<Shared>) -> ServiceBuilder {
    Service::builder(NAME, bus)
        .concurrency(shared.config.concurrency)
        .visibility_timeout(shared.config.visibility_timeout)
        .history(Some(shared.config.history))
        .history_length(shared.config.history_length)
        .on(move |ctx: Context, payment: PaymentProcessedEvent| {
            let shared = shared.clone();
            async move {
                if !payment.succeeded() {
                    tracing::debug!(order_id = %payment.order_id, status = %payment.status, "payment did not succeed; nothing to ship");
                    shared.handled();
                    return Ok(());
                }
                let config = &shared.config;
                if !config.shipping_delay.is_zero() {
                    tokio::time::sleep(config.shipping_delay).await;
                }
                let mut rng = rng_for(config.seed, NAME, &payment.order_id);
                let tracking: String = (0..8)
                    .map(|_| char::from(TRACKING_ALPHABET[rng.random_range(0..TRACKING_ALPHABET.len())]))
                    .collect();
                let carrier = CARRIERS[rng.random_range(0..CARRIERS.len())];
                ctx.publish(&OrderShippedEvent::new(
                    &payment.order_id,
                    format!("TRACK-{tracking}"),
                    carrier,
                ))
                .await?;
                tracing::debug!(order_id = %payment.order_id, carrier, "order shipped");
                shared.handled();
                Ok(())
            }
        })
}
