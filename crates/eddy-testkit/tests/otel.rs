//! Feature `otel`: an event published inside a span and handled by a
//! service is one trace, publisher to consumer, and the consumer's
//! delivery span carries the messaging fields. Spans go to the SDK's
//! in-memory exporter. Each case runs on the embedded engine and on a
//! redis-server of its own: the `traceparent` travels in the stored entry.
//!
//! `cargo test -p eddy-testkit --features otel --test otel`
#![cfg(feature = "otel")]

use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

use eddy::bus::{Bus, Envelope, Subscription};
use eddy::service::{Context, Service};
use eddy_testkit::RedisServer;

#[derive(serde::Serialize, serde::Deserialize)]
struct OrderPlaced {
    order_id: String,
}
eddy::event!(OrderPlaced);

#[derive(serde::Serialize, serde::Deserialize)]
struct OrderShipped {
    order_id: String,
}
eddy::event!(OrderShipped);

/// Spans of this thread (the test runtime is current-thread) go to the
/// returned exporter while the guard lives.
fn trace_to_memory() -> (
    InMemorySpanExporter,
    SdkTracerProvider,
    tracing::subscriber::DefaultGuard,
) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("eddy-test"));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (exporter, provider, guard)
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    match attr(span, key) {
        Some(v) => v.as_str().into_owned(),
        None => panic!("span {} has no {key}: {:?}", span.name, span.attributes),
    }
}

/// The delivery span of the service's event of `event_type`.
fn delivery<'a>(spans: &'a [SpanData], event_type: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| {
            s.name == "delivery"
                && attr(s, "messaging.eddy.event_type").map(|v| v.as_str())
                    == Some(event_type.into())
        })
        .unwrap_or_else(|| panic!("no delivery span of {event_type} in {spans:#?}"))
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no event handled in 10 s"))
        .unwrap_or_else(|| panic!("the handler's channel closed"))
}

/// Both engines: the embedded one, and a redis-server that lives as long
/// as the returned guard.
fn engines() -> Vec<(String, Option<RedisServer>)> {
    let server = RedisServer::start().expect("start a redis-server (is redis-server installed?)");
    vec![("memory://".to_owned(), None), (server.url(), Some(server))]
}

#[tokio::test]
async fn a_published_event_and_its_deliveries_are_one_trace() {
    for (url, _server) in engines() {
        one_trace_across_deliveries(&url).await;
    }
}

#[tokio::test]
async fn an_event_published_outside_any_span_is_delivered_in_the_trace_it_names() {
    for (url, _server) in engines() {
        trace_named_by_the_envelope(&url).await;
    }
}

async fn one_trace_across_deliveries(url: &str) {
    let (exporter, provider, _guard) = trace_to_memory();
    let bus = Bus::open(url).await.unwrap();
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    // shipping handles the order and publishes a follow-up, which billing
    // handles: three hops, one trace.
    let shipping = Service::builder("shipping", bus.clone())
        .on(|ctx: Context, e: OrderPlaced| async move {
            ctx.publish(&OrderShipped {
                order_id: e.order_id,
            })
            .await?;
            Ok(())
        })
        .start()
        .await
        .unwrap();
    let billing = Service::builder("billing", bus.clone())
        .on(move |ctx: Context, _: OrderShipped| {
            let handled_tx = handled_tx.clone();
            async move {
                let _ = handled_tx.send(ctx.envelope().traceparent.clone());
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();

    let checkout = tracing::info_span!("checkout");
    let mut env = Envelope::new(&OrderPlaced {
        order_id: "o1".into(),
    })
    .unwrap();
    env.correlation_id = Some("cart-7".into());
    let published = bus
        .publish_envelope(&env)
        .instrument(checkout.clone())
        .await
        .unwrap();
    drop(checkout);
    let followup_traceparent = next(&mut handled).await.unwrap();
    shipping.stop().await.unwrap();
    billing.stop().await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let checkout = spans.iter().find(|s| s.name == "checkout").unwrap();
    let trace_id: TraceId = checkout.span_context.trace_id();
    let placed = delivery(&spans, "OrderPlaced");
    assert_eq!(placed.span_context.trace_id(), trace_id);
    assert_eq!(placed.parent_span_id, checkout.span_context.span_id());
    assert!(placed.parent_span_is_remote);
    assert_eq!(text(placed, "messaging.destination.name"), "sub:shipping");
    assert!(!text(placed, "messaging.consumer.group.name").is_empty());
    assert!(text(placed, "messaging.message.id").contains('-'));
    assert_eq!(
        attr(placed, "messaging.eddy.delivery_count"),
        Some(&Value::I64(1))
    );
    assert_eq!(text(placed, "messaging.eddy.event_id"), published.event_id);
    assert_eq!(text(placed, "messaging.message.conversation_id"), "cart-7");

    // The follow-up's traceparent names shipping's delivery span, and
    // billing's delivery is its child, with the correlation carried on.
    let shipped = delivery(&spans, "OrderShipped");
    assert_eq!(shipped.span_context.trace_id(), trace_id);
    assert_eq!(shipped.parent_span_id, placed.span_context.span_id());
    let named: Vec<&str> = followup_traceparent.split('-').collect();
    assert_eq!(named[1], trace_id.to_string());
    assert_eq!(named[2], placed.span_context.span_id().to_string());
    assert_eq!(text(shipped, "messaging.destination.name"), "sub:billing");
    assert_eq!(text(shipped, "messaging.message.conversation_id"), "cart-7");
}

async fn trace_named_by_the_envelope(url: &str) {
    let (exporter, provider, _guard) = trace_to_memory();
    let bus = Bus::open(url).await.unwrap();
    let queue = bus
        .subscribe("audit", &Subscription::types(["OrderPlaced"]))
        .await
        .unwrap();
    // No span: `publish_as` starts a trace of its own.
    bus.publish_as(
        "web",
        &OrderPlaced {
            order_id: "o2".into(),
        },
    )
    .await
    .unwrap();
    let sent = queue.peek(1).await.unwrap();
    let traceparent = Envelope::from_message(&sent[0])
        .unwrap()
        .traceparent
        .unwrap();
    let (handled_tx, mut handled) = mpsc::unbounded_channel();
    let audit = Service::builder("audit", bus.clone())
        .on(move |_: Context, e: OrderPlaced| {
            let handled_tx = handled_tx.clone();
            async move {
                let _ = handled_tx.send(e.order_id);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    assert_eq!(next(&mut handled).await, "o2");
    audit.stop().await.unwrap();
    provider.force_flush().unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let span = delivery(&spans, "OrderPlaced");
    let named: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(span.span_context.trace_id().to_string(), named[1]);
    assert_eq!(span.parent_span_id.to_string(), named[2]);
    assert_ne!(span.parent_span_id, SpanId::INVALID);
    // publish_as correlates the event with itself.
    let event_id = text(span, "messaging.eddy.event_id");
    assert_eq!(text(span, "messaging.message.conversation_id"), event_id);
}
