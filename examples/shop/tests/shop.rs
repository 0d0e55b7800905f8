//! The shop end to end, on the embedded engine and on a real redis-server
//! started for the test.

use std::collections::HashMap;
use std::time::Duration;

use eddy::bus::{Bus, Envelope};
use eddy_shop::{
    run_demo, DemoOptions, DemoSummary, Item, OrderCreatedEvent, OrderShippedEvent, OrderStatus,
    PaymentProcessedEvent, Shop, ShopConfig, ShopService,
};
use eddy_testkit::RedisServer;

const WAIT: Duration = Duration::from_secs(30);

fn redis() -> RedisServer {
    RedisServer::start().expect("redis-server must be installed to run these tests")
}

/// The invariants of every finished demo run.
fn check(s: &DemoSummary, n: usize) {
    assert_eq!(s.orders, n);
    assert_eq!(s.by_status.values().sum::<usize>(), n, "{s:?}");
    assert_eq!(s.by_status["created"] + s.by_status["paid"], 0, "{s:?}");
    assert_eq!(s.dead_lettered, 0);
    let shipped = s.by_status["shipped"] as u64;
    // OrderCreated + PaymentProcessed per order, OrderShipped per shipped one.
    assert_eq!(s.events_published, 2 * n as u64 + shipped);
    // created → payment, notification; processed → order, shipping,
    // notification; shipped → order, notification.
    assert_eq!(s.events_handled, 5 * n as u64 + 2 * shipped);
    assert_eq!(s.order_states.len(), n);
    // One notification per event; an order's in the order of its events.
    assert_eq!(s.notifications.len() as u64, s.events_published.min(1000));
    if s.events_published <= 1000 {
        let mut seen: HashMap<&str, Vec<&str>> = HashMap::new();
        for n in &s.notifications {
            seen.entry(&n.order_id).or_default().push(&n.event_type);
        }
        for types in seen.values() {
            let want = &[
                "OrderCreatedEvent",
                "PaymentProcessedEvent",
                "OrderShippedEvent",
            ];
            assert_eq!(types[..], want[..types.len()], "{types:?}");
        }
    }
    for o in &s.order_states {
        assert!(o.status.is_final(), "{o:?}");
        match o.status {
            OrderStatus::Shipped => {
                assert_eq!(o.payment_status.as_deref(), Some("succeeded"));
                let t = o.tracking_number.as_deref().unwrap();
                assert!(t.starts_with("TRACK-") && t.len() == 14, "{t}");
                assert!(t[6..]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
                assert!(eddy_shop::CARRIERS.contains(&o.carrier.as_deref().unwrap()));
            }
            _ => {
                assert_eq!(o.payment_status.as_deref(), Some("failed"));
                assert_eq!(o.tracking_number, None);
            }
        }
    }
    assert!(s.events_per_s > 0.0);
}

async fn demo_suite(url: &str) {
    let s = run_demo(url, DemoOptions::new().orders(50).seed(7))
        .await
        .unwrap();
    check(&s, 50);

    let s = run_demo(url, DemoOptions::new().orders(50).failure_rate(0.0))
        .await
        .unwrap();
    check(&s, 50);
    assert_eq!(s.by_status["shipped"], 50);

    let s = run_demo(url, DemoOptions::new().orders(50).failure_rate(1.0))
        .await
        .unwrap();
    check(&s, 50);
    assert_eq!(s.by_status["payment_failed"], 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_on_the_embedded_engine() {
    demo_suite("memory://").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_on_redis() {
    let server = redis();
    // Three runs on one server: each starts from the shop's queues reset.
    demo_suite(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_seed_reproduces_every_order() {
    let run = || run_demo("memory://", DemoOptions::new().orders(200).seed(42));
    let (a, b) = (run().await.unwrap(), run().await.unwrap());
    check(&a, 200);
    assert_eq!(a.seed, 42);
    assert_eq!(a.order_states, b.order_states);
    // 10% of 200, give or take.
    let failed = a.by_status["payment_failed"];
    assert!((5..=40).contains(&failed), "{failed}");
}

#[tokio::test]
async fn bad_options_are_refused() {
    let e = run_demo("memory://", DemoOptions::new().failure_rate(1.5))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), eddy::ErrorKind::InvalidArgument);
    assert!(e.message().contains("0.0 to 1.0"), "{e}");
    let e = run_demo("memory://", DemoOptions::new().orders(0))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), eddy::ErrorKind::InvalidArgument);
}

/// Wait until the shop's handlers have handled `n` events in all.
async fn handled(shop: &Shop, n: u64) {
    tokio::time::timeout(WAIT, shop.watch_handled().wait_for(|h| *h >= n))
        .await
        .expect("handlers did not finish in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_status_only_moves_forward() {
    let bus = Bus::open("memory://").await.unwrap();
    // order-service alone: the test plays payment and shipping.
    let shop = Shop::start_services(bus.clone(), ShopConfig::new(), &[ShopService::Order])
        .await
        .unwrap();
    let items = vec![Item::new("P-1", "Pen", 2.5, 2)];
    shop.create_order_with_id("o1", "u1", items.clone())
        .await
        .unwrap();
    shop.create_order_with_id("o2", "u2", items).await.unwrap();

    // o1: shipped first, then its payment — in reversed order.
    bus.publish(&OrderShippedEvent::new("o1", "TRACK-AAAA1111", "DHL"))
        .await
        .unwrap();
    handled(&shop, 1).await;
    assert_eq!(
        shop.orders().get("o1").unwrap().status,
        OrderStatus::Shipped
    );
    bus.publish(&PaymentProcessedEvent::new("PAY-1", "o1", 5.0, "succeeded"))
        .await
        .unwrap();
    handled(&shop, 2).await;
    let o1 = shop.orders().get("o1").unwrap();
    assert_eq!(o1.status, OrderStatus::Shipped);
    assert_eq!(o1.payment_id.as_deref(), Some("PAY-1"));
    assert_eq!(o1.payment_status.as_deref(), Some("succeeded"));
    assert_eq!(o1.tracking_number.as_deref(), Some("TRACK-AAAA1111"));
    assert_eq!(o1.carrier.as_deref(), Some("DHL"));
    assert!(o1.shipped_at.is_some() && o1.payment_processed_at.is_some());

    // o2: paid, shipped, then a redelivered payment and a contradicting
    // one: neither moves it back.
    let pay = PaymentProcessedEvent::new("PAY-2", "o2", 5.0, "succeeded");
    bus.publish(&pay).await.unwrap();
    handled(&shop, 3).await;
    assert_eq!(shop.orders().get("o2").unwrap().status, OrderStatus::Paid);
    bus.publish(&OrderShippedEvent::new("o2", "TRACK-BBBB2222", "UPS"))
        .await
        .unwrap();
    handled(&shop, 4).await;
    bus.publish(&pay).await.unwrap();
    bus.publish(&PaymentProcessedEvent::new("PAY-X", "o2", 5.0, "failed"))
        .await
        .unwrap();
    handled(&shop, 6).await;
    let o2 = shop.orders().get("o2").unwrap();
    assert_eq!(o2.status, OrderStatus::Shipped);
    assert_eq!(o2.payment_id.as_deref(), Some("PAY-2"));

    // A payment with a status nobody sends is dead-lettered, not guessed at.
    bus.publish(&PaymentProcessedEvent::new("PAY-3", "o2", 5.0, "pending"))
        .await
        .unwrap();
    let dlq = bus
        .queues()
        .dead_letter_queue("sub:order-service")
        .await
        .unwrap();
    tokio::time::timeout(WAIT, async {
        while dlq.info().await.unwrap().length == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let c = shop.orders().counts();
    assert_eq!((c.orders, c.shipped), (2, 2));
    shop.stop().await.unwrap();
}

/// The seed's first flaw: a publisher with its own bus (another process)
/// must reach the same subscribers. Here the publisher is a second `Bus` on
/// the same Redis, publishing an order this shop's order-service never
/// created: the shop pays and ships it, and order-service adopts it after
/// its retries instead of dead-lettering it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_on_another_bus_routes_the_same_way() {
    let server = redis();
    let shop_bus = Bus::open(&server.url()).await.unwrap();
    let shop = Shop::start(shop_bus, ShopConfig::new().failure_rate(0.0))
        .await
        .unwrap();

    let other = Bus::open(&server.url()).await.unwrap();
    let order = OrderCreatedEvent::new("ext-1", "user-9", vec![Item::new("P-9", "Mug", 8.0, 3)]);
    let sent = other.publish(&order).await.unwrap();
    assert_eq!(
        sent.delivered_to,
        ["notification-service", "payment-service"]
    );

    let mut counts = shop.orders().watch();
    tokio::time::timeout(WAIT, counts.wait_for(|c| c.finished() == 1))
        .await
        .expect("the external order never finished")
        .unwrap();
    // Shipped is final, but the payment may still be on its way back
    // (both are retried, then adopted): wait for all 7 handlings.
    handled(&shop, 7).await;
    let o = shop.orders().get("ext-1").unwrap();
    assert!(o.adopted);
    assert_eq!(o.status, OrderStatus::Shipped);
    assert_eq!(o.total, 24.0);
    assert_eq!(o.payment_status.as_deref(), Some("succeeded"));
    assert_eq!(shop.dead_lettered().await.unwrap(), 0);
    assert_eq!(shop.notifications().total(), 3);

    // The events form one flow: source, correlation and causation set.
    let log = other.replay(std::time::UNIX_EPOCH, 10).await.unwrap();
    let [created, paid, shipped]: [Envelope; 3] = log.try_into().unwrap();
    assert_eq!(paid.source.as_deref(), Some("payment-service"));
    assert_eq!(shipped.source.as_deref(), Some("shipping-service"));
    assert_eq!(
        paid.causation_id.as_deref(),
        Some(created.event_id.as_str())
    );
    assert_eq!(
        shipped.causation_id.as_deref(),
        Some(paid.event_id.as_str())
    );
    assert_eq!(
        shipped.correlation_id.as_deref(),
        Some(created.event_id.as_str())
    );
    shop.stop().await.unwrap();
}

/// The services split over two "processes" (two buses on one Redis):
/// order-service in one, the other three in the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_in_separate_processes() {
    let server = redis();
    let config = ShopConfig::new().seed(3);
    let back_office = Shop::start_services(
        Bus::open(&server.url()).await.unwrap(),
        config.clone(),
        &[
            ShopService::Payment,
            ShopService::Shipping,
            ShopService::Notification,
        ],
    )
    .await
    .unwrap();
    let front = Shop::start_services(
        Bus::open(&server.url()).await.unwrap(),
        config,
        &[ShopService::Order],
    )
    .await
    .unwrap();
    for i in 0..20 {
        front
            .create_order(&format!("user-{i}"), vec![Item::new("P-1", "Pen", 1.0, 1)])
            .await
            .unwrap();
    }
    let mut counts = front.orders().watch();
    let c = *tokio::time::timeout(WAIT, counts.wait_for(|c| c.finished() == 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.orders, 20);
    assert!(front.orders().all().iter().all(|o| !o.adopted));
    assert_eq!(back_office.orders().counts().orders, 0);
    // payment: 20, shipping: 20, notification: 40 + shipped.
    handled(&back_office, 80 + c.shipped as u64).await;
    assert_eq!(front.dead_lettered().await.unwrap(), 0);
    assert_eq!(back_office.dead_lettered().await.unwrap(), 0);
    front.stop().await.unwrap();
    back_office.stop().await.unwrap();
}
