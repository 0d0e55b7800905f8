//! The event bus (`eddy::bus`): routes shared between handles and listed, the `all`
//! log (replay, trimming by age), publishes that overlap or are pipelined.

use std::time::Duration;

use eddy::bus::{Bus, Envelope, Subscription};
use eddy::Receive;

use super::support::{
    order, other_process_bus, shared_bus, OrderCreatedEvent, PaymentProcessedEvent,
};
use super::{CaseResult, Harness, Outcome};

/// How long a case waits for a cluster's relay to fan events out.
const RELAYED: Duration = Duration::from_secs(30);

/// Subscriptions made through one handle route what another publishes
/// (another connection where the engine allows it), by type or all.
pub async fn bus_routes_are_durable_and_shared(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let subscriber = shared_bus(&mq).await?;
    let publisher = other_process_bus(h, &mq).await?;
    let pay = subscriber
        .subscribe(
            "payment-service",
            &Subscription::types(["OrderCreatedEvent"]),
        )
        .await?;
    let audit = subscriber.subscribe("audit", &Subscription::All).await?;
    let ship = subscriber
        .subscribe(
            "shipping-service",
            &Subscription::types(["PaymentProcessedEvent"]),
        )
        .await?;
    let sent = publisher.publish(&order("o1")).await?;
    publisher.relayed(RELAYED).await?;
    assert_eq!(sent.delivered_to, ["audit", "payment-service"]);
    assert_eq!(
        publisher.subscribers("OrderCreatedEvent").await?,
        ["audit", "payment-service"]
    );
    let got = pay.receive(&Receive::new().count(10)).await?;
    assert_eq!(got.len(), 1);
    let env1 = Envelope::from_message(&got[0])?;
    assert_eq!(env1.event_id, sent.event_id);
    assert_eq!(env1.decode::<OrderCreatedEvent>()?, order("o1"));
    assert_eq!(
        got[0].message_id, sent.event_id,
        "the queue's message id is the event id"
    );
    assert_eq!(audit.receive(&Receive::new().count(10)).await?.len(), 1);
    assert!(ship.receive(&Receive::new()).await?.is_empty());
    let routes = |pairs: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        pairs
            .iter()
            .map(|(t, s)| (t.to_string(), s.iter().map(|s| s.to_string()).collect()))
            .collect()
    };
    assert_eq!(
        publisher.routes().await?,
        routes(&[
            ("*", &["audit"]),
            ("OrderCreatedEvent", &["payment-service"]),
            ("PaymentProcessedEvent", &["shipping-service"]),
        ]),
        "every route, read through the other handle"
    );
    publisher.unsubscribe("audit", &Subscription::All).await?;
    publisher
        .unsubscribe(
            "shipping-service",
            &Subscription::types(["PaymentProcessedEvent"]),
        )
        .await?;
    assert_eq!(
        subscriber.routes().await?,
        routes(&[("OrderCreatedEvent", &["payment-service"])]),
        "a type without subscribers is not listed"
    );
    assert_eq!(
        publisher.publish(&order("o2")).await?.delivered_to,
        ["payment-service"]
    );
    Ok(Outcome::Passed)
}

/// `replay` returns the events of the `all` log since a time, in order.
pub async fn replay_from_the_all_log(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    bus.publish(&order("before")).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The log's ids are the engine's clock, which paused time moves.
    let since = std::time::UNIX_EPOCH + Duration::from_millis(mq.engine().now_ms().await?);
    bus.publish(&order("after-1")).await?;
    bus.publish(&order("after-2")).await?;
    let events = bus.replay(since, 100).await?;
    let ids: Vec<String> = events
        .iter()
        .map(|e| e.decode::<OrderCreatedEvent>().map(|o| o.order_id))
        .collect::<eddy::Result<_>>()?;
    assert_eq!(ids, ["after-1", "after-2"]);
    Ok(Outcome::Passed)
}

/// The `all` log keeps the envelope and is trimmed by age.
pub async fn all_log_is_trimmed_by_age(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let sent = bus.publish_as("order-service", &order("old")).await?;
    let log = bus.queues().queue("all").await?;
    let first = &log.peek(1).await?[0];
    let e = Envelope::from_message(first)?;
    assert_eq!(e.source.as_deref(), Some("order-service"));
    assert_eq!(e.correlation_id.as_deref(), Some(sent.event_id.as_str()));
    assert!(e.traceparent.is_some());
    assert_eq!(bus.trim_log(Duration::from_secs(3600)).await?, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish(&order("new")).await?;
    // On a cluster only what the relay has fanned out can be trimmed.
    bus.relayed(RELAYED).await?;
    assert_eq!(bus.trim_log(Duration::from_millis(150)).await?, 1);
    let left: Vec<String> = bus
        .replay(std::time::UNIX_EPOCH, 10)
        .await?
        .iter()
        .map(|e| e.decode::<OrderCreatedEvent>().map(|o| o.order_id))
        .collect::<eddy::Result<_>>()?;
    assert_eq!(left, ["new"]);
    Ok(Outcome::Passed)
}

/// Publishes that overlap share engine calls (a group commit): each still
/// reaches exactly its own subscribers, once, and returns its own result;
/// on Redis, fewer script calls than events prove the batches formed, and a
/// key of the wrong type fails only the events it concerns.
pub async fn overlapping_publishes_each_get_their_own_result(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let orders = bus
        .subscribe("orders-svc", &Subscription::types(["OrderCreatedEvent"]))
        .await?;
    let payments = bus
        .subscribe(
            "payments-svc",
            &Subscription::types(["PaymentProcessedEvent"]),
        )
        .await?;
    let audit = bus.subscribe("audit", &Subscription::All).await?;
    let calls_before = evalsha_calls(h)?;
    const N: usize = 300;
    let results = publish_at_once(&bus, N, 3).await;
    let mut ids = std::collections::HashSet::new();
    for (i, r) in results.into_iter().enumerate() {
        let sent = r?;
        let want: &[&str] = if i % 3 == 0 {
            &["audit", "payments-svc"]
        } else {
            &["audit", "orders-svc"]
        };
        assert_eq!(sent.delivered_to, want, "publish {i}");
        assert!(ids.insert(sent.event_id), "event ids are distinct");
    }
    bus.relayed(RELAYED).await?;
    assert_eq!(orders.info().await?.length, (N - N / 3) as u64);
    assert_eq!(payments.info().await?.length, (N / 3) as u64);
    assert_eq!(audit.info().await?.length, N as u64);
    assert_eq!(
        bus.queues().queue("all").await?.info().await?.length,
        N as u64
    );
    let got = orders.receive(&Receive::new().count(N)).await?;
    assert!(got
        .iter()
        .all(|m| Envelope::from_message(m).is_ok_and(|e| e.event_type == "OrderCreatedEvent")));

    let Some(server) = h.redis_server() else {
        return Ok(Outcome::Passed);
    };
    let calls = evalsha_calls(h)? - calls_before;
    assert!(
        calls < N as u64 / 2,
        "{calls} script calls for {N} overlapping publishes: they were not batched"
    );
    // One target of the wrong type: the batch as a whole fails, nothing of it
    // is written, and each event is published again alone.
    let target = format!("{}sub:orders-svc", bus.queues().prefix());
    server.redis_cli(["DEL", target.as_str()])?;
    server.redis_cli(["SET", target.as_str(), "not a stream"])?;
    let audit_before = audit.info().await?.length;
    let results = publish_at_once(&bus, 60, 2).await;
    for (i, r) in results.iter().enumerate() {
        match (i % 2, r) {
            (0, Ok(sent)) => assert_eq!(sent.delivered_to, ["audit", "payments-svc"]),
            (1, Err(e)) => assert_eq!(e.kind(), eddy::ErrorKind::WrongType, "{e}"),
            _ => panic!("publish {i}: {r:?}"),
        }
    }
    assert_eq!(
        audit.info().await?.length,
        audit_before + 30,
        "only the payments reached the audit queue"
    );
    Ok(Outcome::Passed)
}

/// Publish `n` events at once: every `every`-th a payment, the rest orders.
async fn publish_at_once(
    bus: &Bus,
    n: usize,
    every: usize,
) -> Vec<eddy::Result<eddy::bus::Published>> {
    futures::future::join_all((0..n).map(|i| {
        let bus = bus.clone();
        async move {
            if i % every == 0 {
                let paid = PaymentProcessedEvent {
                    order_id: format!("o{i}"),
                    status: "ok".into(),
                };
                bus.publish(&paid).await
            } else {
                bus.publish(&order(&format!("o{i}"))).await
            }
        }
    }))
    .await
}

/// Script calls the test's redis-server has run so far (0 on memory).
fn evalsha_calls(h: &Harness) -> std::io::Result<u64> {
    let Some(server) = h.redis_server() else {
        return Ok(0);
    };
    let stats = server.redis_cli(["INFO", "commandstats"])?;
    Ok(stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// One task that pipelines its publishes (many in flight, issued in order)
/// sees them applied in that order, though they share engine calls.
pub async fn pipelined_publishes_from_one_task_keep_their_order(h: &Harness) -> CaseResult {
    use futures::StreamExt;

    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let q = bus
        .subscribe("ordered", &Subscription::types(["OrderCreatedEvent"]))
        .await?;
    const N: usize = 500;
    let sent: Vec<_> = futures::stream::iter(0..N)
        .map(|i| {
            let bus = bus.clone();
            async move { bus.publish(&order(&format!("o{i}"))).await }
        })
        .buffered(64)
        .collect()
        .await;
    for r in sent {
        r?;
    }
    bus.relayed(RELAYED).await?;
    let got = q.receive(&Receive::new().count(N)).await?;
    let ids: Vec<String> = got
        .iter()
        .map(|m| {
            Ok(Envelope::from_message(m)?
                .decode::<OrderCreatedEvent>()?
                .order_id)
        })
        .collect::<eddy::Result<_>>()?;
    let want: Vec<String> = (0..N).map(|i| format!("o{i}")).collect();
    assert_eq!(ids, want);
    Ok(Outcome::Passed)
}

/// Publishers keep the `all` log to its window (ten minutes by default)
/// without anyone calling `trim_log`.
pub async fn all_log_is_bounded_by_its_publishers(h: &Harness) -> CaseResult {
    h.pause_time();
    let bus = eddy::bus::Bus::new(h.eddy_with_prefix("bounded:")).await?;
    assert_eq!(bus.log_history_kept(), Some(eddy::bus::DEFAULT_LOG_HISTORY));
    let bus = bus.log_history(Some(Duration::ZERO));
    let log = bus.queues().queue("all").await?;
    for i in 0..5 {
        bus.publish(&order(&format!("old-{i}"))).await?;
    }
    h.advance(Duration::from_millis(300)).await;
    bus.publish(&order("new")).await?;
    let bounded = super::support::eventually(Duration::from_secs(5), || async {
        log.info().await.is_ok_and(|i| i.length <= 1)
    })
    .await;
    assert!(bounded, "the old events went from the log");
    let kept = bus.log_history(None);
    for i in 0..3 {
        kept.publish(&order(&format!("kept-{i}"))).await?;
    }
    h.advance(Duration::from_millis(300)).await;
    kept.publish(&order("last")).await?;
    h.advance(Duration::from_millis(300)).await;
    assert!(log.info().await?.length >= 4, "`None` keeps the log");
    Ok(Outcome::Passed)
}
