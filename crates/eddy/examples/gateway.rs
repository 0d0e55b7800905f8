//! cargo run -p eddy --example gateway                                   # embedded engine
//! cargo run -p eddy --example gateway -- --url redis://127.0.0.1:6379/0  # on Redis
//!
//! The API gateway of LeanMQ's docs, over eddy's webhooks: the gateway turns
//! HTTP-style calls into requests on queues (`/order/create`,
//! `/order/status`), an order service answers them, and the gateway prints
//! each reply as a response. Payments arrive as a fire-and-forget webhook
//! (`/payment/completed`). Nothing is lost if the order service is slow or
//! restarting: the requests wait in its queues, failed ones are retried, and
//! a malformed one ends in the dead-letter queue with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy::webhook::{Delivery, Webhook};
use eddy::ErrorKind;
use eddy::Fail;
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> eddy::Result<()> {
    let url = url_from_args();
    let engine = eddy::engine::open(&url).await?;
    println!("engine: {}\n", engine.describe());

    let orders = order_service(Webhook::with_engine(engine.clone())?)?;
    let running = orders.start().await?;

    let gateway = Webhook::with_engine(engine)?;
    let calls: [(&str, &str, Value); 6] = [
        (
            "POST",
            "/orders",
            json!({"user_id": "u-1", "items": [{"sku": "book", "qty": 2, "price": 12.5}]}),
        ),
        ("GET", "/orders/o-1", Value::Null),
        (
            "POST",
            "/payments",
            json!({"order_id": "o-1", "amount": 25.0}),
        ),
        ("GET", "/orders/o-1", Value::Null),
        ("GET", "/orders/o-404", Value::Null),
        ("POST", "/orders", json!({"user_id": "u-2", "items": []})),
    ];
    for (method, path, body) in calls {
        let started = Instant::now();
        let (status, response) = route(&gateway, method, path, body).await;
        println!(
            "{method:4} {path:14} -> {status} {response}   ({:.2?})",
            started.elapsed()
        );
        if method == "POST" && path == "/payments" {
            // The payment webhook is asynchronous: give the service a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let stats = gateway.request_stats();
    println!(
        "\ngateway: {} requests, {} answered, {} failed, {} timed out",
        stats.sent, stats.answered, stats.failed, stats.timed_out
    );
    gateway.close().await?; // deletes the gateway's reply queue
    let served = running.stop().await?;
    for (path, s) in served.paths() {
        println!(
            "order service {path}: {} handled, {} dead-lettered",
            s.acked.load(std::sync::atomic::Ordering::Relaxed),
            s.dead_lettered.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    Ok(())
}

/// `--url URL` or a bare URL argument; `memory://` by default.
fn url_from_args() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "--url") {
        Some(i) => args.get(i + 1).cloned(),
        None => args.first().cloned(),
    }
    .unwrap_or_else(|| "memory://".to_owned())
}

/// The gateway: an HTTP-style call becomes a request to a webhook path, and
/// the reply (or the failure) becomes a status code and a body.
async fn route(gateway: &Webhook, method: &str, path: &str, body: Value) -> (u16, Value) {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method, segments.as_slice()) {
        ("POST", ["orders"]) => gateway.request("/order/create", &body, TIMEOUT).await,
        ("GET", ["orders", id]) => {
            gateway
                .request("/order/status", &json!({"order_id": id}), TIMEOUT)
                .await
        }
        ("POST", ["payments"]) => match gateway.send("/payment/completed", &body).await {
            Ok(_) => return (202, json!({"accepted": true})),
            Err(e) => Err(e),
        },
        _ => return (404, json!({"error": "no such route"})),
    };
    match result {
        Ok(reply) if reply["status"] == "not_found" => (404, reply),
        Ok(reply) if method == "POST" => (201, reply),
        Ok(reply) => (200, reply),
        Err(e) if e.kind() == ErrorKind::Rejected => (400, json!({"error": e.message()})),
        Err(e) if e.kind() == ErrorKind::Timeout => (504, json!({"error": e.message()})),
        Err(e) => (502, json!({"error": e.message()})),
    }
}

#[derive(Debug, Clone)]
struct Order {
    user_id: String,
    total: f64,
    status: &'static str,
}

/// The order service: creates orders, answers status queries, and records
/// payments.
fn order_service(webhook: Webhook) -> eddy::Result<Webhook> {
    let orders: Arc<Mutex<HashMap<String, Order>>> = Arc::default();

    let store = orders.clone();
    webhook.on("/order/create", move |d: Delivery| {
        let store = store.clone();
        async move {
            let items = d.data()["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                // A malformed order never gets better: dead-letter it now.
                return Err(Fail::reject("an order needs at least one item"));
            }
            let total: f64 = items
                .iter()
                .map(|i| i["qty"].as_f64().unwrap_or(1.0) * i["price"].as_f64().unwrap_or(0.0))
                .sum();
            let user_id = d.data()["user_id"].as_str().unwrap_or("anonymous").to_owned();
            let mut orders = store.lock().unwrap_or_else(|p| p.into_inner());
            let order_id = format!("o-{}", orders.len() + 1);
            let order = Order { user_id, total, status: "created" };
            orders.insert(order_id.clone(), order.clone());
            Ok(json!({"order_id": order_id, "user_id": order.user_id, "total": total, "status": order.status}))
        }
    })?;

    let store = orders.clone();
    webhook.on("/order/status", move |d: Delivery| {
        let store = store.clone();
        async move {
            let order_id = d.data()["order_id"].as_str().unwrap_or_default().to_owned();
            let orders = store.lock().unwrap_or_else(|p| p.into_inner());
            Ok(match orders.get(&order_id) {
                Some(o) => json!({"order_id": order_id, "status": o.status, "total": o.total}),
                None => json!({"order_id": order_id, "status": "not_found"}),
            })
        }
    })?;

    let store = orders;
    webhook.on("/payment/completed", move |d: Delivery| {
        let store = store.clone();
        async move {
            let order_id = d.data()["order_id"].as_str().unwrap_or_default().to_owned();
            let mut orders = store.lock().unwrap_or_else(|p| p.into_inner());
            match orders.get_mut(&order_id) {
                Some(order) => {
                    order.status = "paid";
                    Ok(())
                }
                // Maybe the order is not created yet: try again later.
                None => Err(Fail::retry(format!("no order {order_id} yet"))),
            }
        }
    })?;
    Ok(webhook)
}
