//! payment-service: charges each new order after a simulated processing
//! time and publishes the outcome.
//!
//! Whether a payment fails, and its id, are drawn from a [`StdRng`] seeded
//! with the shop's seed and the order id: the same seed gives every order
//! the same outcome in every run (whatever order the concurrent handlers
//! run in), and a redelivered `OrderCreatedEvent` publishes the same
//! payment again — a duplicate order-service recognises — never a
//! contradicting second one.
//!
//! [`StdRng`]: rand::rngs::StdRng

use std::sync::Arc;

use eddy::bus::Bus;
use eddy::service::{Context, Service, ServiceBuilder};
use rand::Rng;

use crate::events::{OrderCreatedEvent, PaymentProcessedEvent, PAYMENT_FAILED, PAYMENT_SUCCEEDED};
use crate::shop::{rng_for, Shared};

/// The service's name (its subscription queue is `sub:payment-service`).
pub const NAME: &str = "payment-service";

pub(crate) fn builder(bus: Bus, shared: Arc<Shared>) -> ServiceBuilder {
    Service::builder(NAME, bus)
        .concurrency(shared.config.concurrency)
        .visibility_timeout(shared.config.visibility_timeout)
        .history(Some(shared.config.history))
        .history_length(shared.config.history_length)
        .on(move |ctx: Context, order: OrderCreatedEvent| {
            let shared = shared.clone();
            async move {
                let config = &shared.config;
                if !config.payment_delay.is_zero() {
                    tokio::time::sleep(config.payment_delay).await;
                }
                let mut rng = rng_for(config.seed, NAME, &order.order_id);
                let failed = rng.random_bool(config.failure_rate);
                let payment_id = format!("PAY-{:016X}", rng.random::<u64>());
                let status = if failed {
                    PAYMENT_FAILED
                } else {
                    PAYMENT_SUCCEEDED
                };
                ctx.publish(&PaymentProcessedEvent::new(
                    payment_id,
                    &order.order_id,
                    order.total,
                    status,
                ))
                .await?;
                tracing::debug!(order_id = %order.order_id, status, "payment processed");
                shared.handled();
                Ok(())
            }
        })
}
