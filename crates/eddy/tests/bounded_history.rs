//! The embedded engine's bounded history (`memory://?history=0s`) under the
//! bus and the service runtime: what they acknowledge leaves at once, what
//! a group still has to read stays. (The engine's own cases are in
//! `src/engine/memory/tests.rs`.)

use std::time::Duration;

use eddy::bus::Bus;
use eddy::queue::consumer::ConsumerStats;
use eddy::service::{Context, Service};
use eddy::{EddyBuilder, EntryId, Queue, Receive};

#[derive(serde::Serialize, serde::Deserialize)]
struct Ping {
    n: u64,
}
eddy::event!(Ping);

async fn bus() -> Bus {
    let mq = EddyBuilder::new("memory://?history=0s")
        .prefix("events:")
        .open()
        .await
        .unwrap_or_else(|e| panic!("open: {e}"));
    Bus::new(mq).await.unwrap_or_else(|e| panic!("bus: {e}"))
}

async fn length(q: &Queue) -> u64 {
    q.info().await.map(|i| i.length).unwrap_or(u64::MAX)
}

async fn receive(q: &Queue, n: usize) -> Vec<EntryId> {
    let got = q
        .receive(&Receive::new().count(n))
        .await
        .unwrap_or_default();
    got.iter().map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_with_services_keeps_no_history() {
    let bus = bus().await;
    let mut services = Vec::new();
    for name in ["a", "b"] {
        let service = Service::builder(name, bus.clone())
            .on(|_: Context, _: Ping| async { Ok(()) })
            .start()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        services.push(service);
    }
    for n in 0..500 {
        bus.publish(&Ping { n })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let done = || {
        services
            .iter()
            .all(|s| ConsumerStats::get(&s.stats().acked) == 500)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(done(), "every service handled every event");
    let queues = bus
        .queues()
        .list_queues()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        queues.len() >= 6,
        "the log, two subscriptions, their DLQs: {queues:?}"
    );
    let left: Vec<(String, u64)> = queues
        .iter()
        .map(|q| (q.name.clone(), q.length))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(left.is_empty(), "history left behind: {left:?}");
    for s in services {
        s.stop().await.unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test]
async fn an_event_log_read_through_its_group_is_trimmed_like_a_queue() {
    let bus = bus().await;
    let log = bus
        .queues()
        .queue("all")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    bus.publish(&Ping { n: 0 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        length(&log).await,
        0,
        "unread, the log keeps only the window"
    );
    for n in 1..4 {
        bus.publish(&Ping { n })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if n == 1 {
            // Someone consumes the log: from now on it is a queue.
            assert_eq!(receive(&log, 10).await.len(), 0);
        }
    }
    assert_eq!(length(&log).await, 2, "kept for the group that reads it");
    let read = receive(&log, 1).await;
    bus.publish(&Ping { n: 4 })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(length(&log).await, 3, "pending and unread entries stay");
    assert_eq!(log.ack(&read).await.ok(), Some(1));
    assert_eq!(length(&log).await, 2);
}
