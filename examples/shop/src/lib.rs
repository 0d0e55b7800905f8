//! The seed's e-commerce example on eddy: four services talking only
//! through events on the bus.
//!
//! ```text
//! cargo run -p eddy-cli -- demo                      # 3 orders, embedded engine
//! cargo run --release -p eddy-cli -- demo --orders 10000 --json
//! cargo run -p eddy-cli -- --url redis://127.0.0.1:6379/0 demo --realistic
//! ```
//!
//! | service | handles | publishes |
//! |---|---|---|
//! | order-service | `PaymentProcessedEvent`, `OrderShippedEvent` | `OrderCreatedEvent` ([`Shop::create_order`]) |
//! | payment-service | `OrderCreatedEvent` | `PaymentProcessedEvent` (`succeeded` / `failed`) |
//! | shipping-service | `PaymentProcessedEvent` (succeeded) | `OrderShippedEvent` |
//! | notification-service | every event | — (a [`Notification`] each) |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eddy::Result<()> {
//! use eddy_shop::{Item, OrderStatus, Shop, ShopConfig};
//!
//! let bus = eddy::bus::Bus::open("memory://").await?;
//! let shop = Shop::start(bus, ShopConfig::new().failure_rate(1.0)).await?;
//! let id = shop.create_order("user-7", vec![Item::new("P-1002", "Wireless mouse", 24.5, 1)]).await?;
//! shop.orders().watch().wait_for(|c| c.finished() == 1).await.unwrap();
//! assert_eq!(shop.orders().get(&id).unwrap().status, OrderStatus::PaymentFailed);
//! shop.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Handlers publish their follow-up events through their
//! [`Context`](eddy::service::Context), so every event carries its
//! `source`, and the `correlation_id` of the order's first event. Routes
//! live in the engine: services in different processes on one Redis
//! ([`Shop::start_services`]) route exactly as in one process.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::print_stdout
    )
)]

mod demo;
mod events;
pub mod http;
mod notification_service;
mod order_service;
pub mod orders;
mod payment_service;
mod shipping_service;
mod shop;

pub use demo::{
    demo_orders, run_demo, DemoOptions, DemoSummary, OrderState, ServiceReport, CATALOGUE,
};
pub use events::{
    checked_total, order_total, Item, OrderCreatedEvent, OrderShippedEvent, PaymentProcessedEvent,
    PAYMENT_FAILED, PAYMENT_SUCCEEDED,
};
pub use notification_service::{Notification, Notifications};
pub use orders::{Applied, Order, OrderCounts, OrderStatus, OrderStore, UnknownOrder};
pub use shipping_service::CARRIERS;
pub use shop::{Shop, ShopConfig, ShopService};
