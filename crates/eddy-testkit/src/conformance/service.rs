//! The service runtime (`eddy::service`): typed handlers on a subscription
//! queue, the envelope a handler's publishes carry, rejections and retries,
//! events nobody handles and entries that are no event.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::bus::{Envelope, Subscription};
use eddy::service::{Context, Service};
use eddy::Fail;
use eddy::Receive;

use super::consumer::fast;
use super::support::{eventually, order, shared_bus, OrderCreatedEvent, PaymentProcessedEvent};
use super::{CaseResult, Harness, Outcome};

/// An event of a type the service has no handler for is acknowledged,
/// counted, and never left pending.
pub async fn unknown_event_type_is_acknowledged(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let svc = Service::builder("catch-all", bus.clone())
        .consumer_options(fast())
        .on(|_ctx: Context, _e: OrderCreatedEvent| async { Ok(()) })
        .start()
        .await?;
    // Route an unknown type to the service by hand (as an old subscription would).
    bus.subscribe("catch-all", &Subscription::types(["MysteryEvent"]))
        .await?;
    bus.publish_envelope(&Envelope::from_parts("MysteryEvent", Default::default())?)
        .await?;
    let q = bus.subscription_queue("catch-all").await?;
    let acked = eventually(Duration::from_secs(3), || async {
        svc.metrics().unknown == 1
    })
    .await;
    assert!(acked, "unknown event counted");
    // Acknowledgements are batched: the ack may land just after the count.
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut info = q.info().await?;
    while (info.pending, info.lag) != (0, 0) && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        info = q.info().await?;
    }
    assert_eq!((info.pending, info.lag), (0, 0), "never left pending");
    svc.stop().await?;
    Ok(Outcome::Passed)
}

/// An entry that starts as eddy writes events but is broken further on is
/// not an event: dead-lettered with its reason, seen by no handler, and not
/// counted under its id (a good copy with the same id is handled).
pub async fn a_broken_event_is_dead_lettered_and_its_id_stays_free(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let handled = Arc::new(Mutex::new(Vec::new()));
    let seen = handled.clone();
    let svc = Service::builder("strict-service", bus.clone())
        .consumer_options(fast())
        .on(move |_ctx: Context, e: OrderCreatedEvent| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .map_err(|_| Fail::retry("poisoned"))?
                    .push(e.order_id);
                Ok(())
            }
        })
        .start()
        .await?;
    let q = bus.subscription_queue("strict-service").await?;
    let start = r#"{"event_id":"same-1","event_type":"OrderCreatedEvent","order_id":"#;
    for data in [
        format!(r#"{start}"broken","total":1}} trailing"#),
        format!(r#"{start}"good","total":2}}"#),
    ] {
        bus.queues()
            .engine()
            .append(&[eddy::engine::Append::new(
                q.keys().clone(),
                bytes::Bytes::from(data),
            )])
            .await?;
    }
    let done = eventually(Duration::from_secs(5), || async {
        let m = svc.metrics();
        m.malformed == 1 && m.handled() == 1
    })
    .await;
    assert!(done, "{:?}", svc.metrics());
    assert_eq!(*handled.lock().unwrap_or_else(|p| p.into_inner()), ["good"]);
    let dlq = bus.queues().dead_letter_queue(q.name()).await?;
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut dead = dlq.peek(10).await?;
    while dead.is_empty() && tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
        dead = dlq.peek(10).await?;
    }
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = &dead[0].failures()[0].reason;
    assert!(reason.contains("not an event"), "{reason}");
    svc.stop().await?;
    Ok(Outcome::Passed)
}

/// What a handler publishes through its `Context` names the service as its
/// source and the handled event as its cause and correlation, in the same
/// trace.
pub async fn service_context_sets_envelope(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let svc = Service::builder("payment-service", bus.clone())
        .consumer_options(fast())
        .on(|ctx: Context, e: OrderCreatedEvent| async move {
            ctx.publish(&PaymentProcessedEvent {
                order_id: e.order_id,
                status: "succeeded".into(),
            })
            .await?;
            Ok(())
        })
        .start()
        .await?;
    let watch = bus
        .subscribe("watcher", &Subscription::types(["PaymentProcessedEvent"]))
        .await?;
    let sent = bus.publish(&order("o9")).await?;
    let got = watch
        .receive(&Receive::new().block(Duration::from_secs(5)))
        .await?;
    let e = Envelope::from_message(&got[0])?;
    assert_eq!(e.source.as_deref(), Some("payment-service"));
    assert_eq!(e.causation_id.as_deref(), Some(sent.event_id.as_str()));
    assert_eq!(e.correlation_id.as_deref(), Some(sent.event_id.as_str()));
    assert!(e
        .traceparent
        .as_deref()
        .is_some_and(|t| t.starts_with("00-") && t.len() == 55));
    assert_eq!(e.decode::<PaymentProcessedEvent>()?.order_id, "o9");
    // The event published from the handler can arrive before the handler
    // has returned and been counted: wait for the count.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = svc.metrics();
        let handled = m.by_type.get("OrderCreatedEvent").map(|t| t.handled);
        if handled == Some(1) || tokio::time::Instant::now() >= deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(
        m.by_type.get("OrderCreatedEvent").map(|t| t.handled),
        Some(1)
    );
    assert_eq!(m.published, 1);
    svc.stop().await?;
    Ok(Outcome::Passed)
}

/// A rejection dead-letters at once; a retry is retried up to
/// `max_deliveries`, then dead-lettered; the metrics count each.
pub async fn service_reject_and_retry_outcomes(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let svc = Service::builder("picky", bus.clone())
        .consumer_options(fast())
        .max_deliveries(2)
        .on(|_ctx: Context, e: OrderCreatedEvent| async move {
            match e.order_id.as_str() {
                "reject-me" => Err(Fail::reject("Event handling returned false")),
                "flaky" => Err(Fail::retry("database unavailable")),
                _ => Ok(()),
            }
        })
        .start()
        .await?;
    bus.publish(&order("reject-me")).await?;
    bus.publish(&order("flaky")).await?;
    bus.publish(&order("fine")).await?;
    let dlq = bus.queues().dead_letter_queue("sub:picky").await?;
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = dlq.peek(10).await?;
        if dead.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dead.len(), 2);
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| m.failures()[0].reason.clone())
        .collect();
    assert!(
        reasons.iter().any(|r| r == "Event handling returned false"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("database unavailable")),
        "{reasons:?}"
    );
    let m = svc.metrics().by_type["OrderCreatedEvent"].clone();
    assert_eq!((m.handled, m.rejected, m.failed), (1, 1, 2));
    svc.stop().await?;
    Ok(Outcome::Passed)
}
