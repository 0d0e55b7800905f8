//! Prometheus metrics (`eddy::metrics`): every counter, histogram and gauge
//! after a known workload, and the `/metrics` endpoint a service serves.

use std::sync::Arc;
use std::time::Duration;

use eddy::bus::{Envelope, Subscription};
use eddy::metrics::Metrics;
use eddy::queue::consumer::{self, ConsumerStats};
use eddy::service::{Context, Service};
use eddy::{Fail, SendOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::consumer::fast;
use super::support::{eventually, order, shared_bus, OrderCreatedEvent};
use super::{numbered, send_numbered, take, CaseResult, Harness, Outcome};

/// The value of the sample `name{labels}` in Prometheus text, where the
/// sample's labels include all of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

fn expect(text: &str, name: &str, labels: &[(&str, &str)], want: f64) {
    let got = sample(text, name, labels);
    assert_eq!(got, Some(want), "{name}{labels:?} in:\n{text}");
}

/// A service that handles one event, rejects one, retries one until it
/// runs out of deliveries and skips an unknown type: every counter says so,
/// the histogram counts each handler run, and the gauges read the queue.
pub async fn service_metrics_count_a_known_workload(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let metrics = Metrics::new();
    let svc = Service::builder("counted", bus.clone())
        .consumer_options(fast())
        .max_deliveries(2)
        .metrics(&metrics)
        .on(|_ctx: Context, e: OrderCreatedEvent| async move {
            match e.order_id.as_str() {
                "reject-me" => Err(Fail::reject("no")),
                "flaky" => Err(Fail::retry("database unavailable")),
                _ => Ok(()),
            }
        })
        .start()
        .await?;
    bus.subscribe("counted", &Subscription::types(["MysteryEvent"]))
        .await?;
    bus.publish(&order("reject-me")).await?;
    bus.publish(&order("flaky")).await?;
    bus.publish(&order("fine")).await?;
    bus.publish_envelope(&Envelope::from_parts("MysteryEvent", Default::default())?)
        .await?;
    let q = bus.subscription_queue("counted").await?;
    let settled = eventually(Duration::from_secs(5), || async {
        let s = svc.stats();
        ConsumerStats::get(&s.dead_lettered) == 2 && ConsumerStats::get(&s.acked) == 2
    })
    .await;
    assert!(settled, "two dead-lettered, two acknowledged");
    let text = metrics.render().await?;
    let me = [("queue", "sub:counted"), ("consumer_group", "counted")];
    expect(&text, "eddy_messages_received_total", &me, 5.0);
    expect(&text, "eddy_messages_redelivered_total", &me, 1.0);
    expect(&text, "eddy_messages_acknowledged_total", &me, 2.0);
    expect(&text, "eddy_messages_retried_total", &me, 1.0);
    expect(&text, "eddy_handler_panics_total", &me, 0.0);
    let reason = |r| [me[0], me[1], ("reason", r)];
    expect(
        &text,
        "eddy_messages_dead_lettered_total",
        &reason("rejected"),
        1.0,
    );
    expect(
        &text,
        "eddy_messages_dead_lettered_total",
        &reason("max_deliveries"),
        1.0,
    );
    let order_type = [("event_type", "OrderCreatedEvent")];
    expect(&text, "eddy_events_published_total", &order_type, 3.0);
    expect(&text, "eddy_events_fanned_out_total", &order_type, 3.0);
    expect(
        &text,
        "eddy_events_published_total",
        &[("event_type", "MysteryEvent")],
        1.0,
    );
    let handled = |o| {
        [
            ("service", "counted"),
            ("event_type", "OrderCreatedEvent"),
            ("outcome", o),
        ]
    };
    expect(&text, "eddy_events_handled_total", &handled("handled"), 1.0);
    expect(
        &text,
        "eddy_events_handled_total",
        &handled("rejected"),
        1.0,
    );
    expect(&text, "eddy_events_handled_total", &handled("failed"), 2.0);
    let skipped = |r| [("service", "counted"), ("reason", r)];
    expect(
        &text,
        "eddy_events_skipped_total",
        &skipped("unknown_type"),
        1.0,
    );
    expect(
        &text,
        "eddy_events_skipped_total",
        &skipped("duplicate"),
        0.0,
    );
    let latency = [("service", "counted"), ("event_type", "OrderCreatedEvent")];
    expect(&text, "eddy_handler_duration_seconds_count", &latency, 4.0);
    let inf = [latency[0], latency[1], ("le", "+Inf")];
    expect(&text, "eddy_handler_duration_seconds_bucket", &inf, 4.0);
    // The gauges, read from the engine at the scrape: nothing waits, the
    // two dead letters are in the DLQ, the service is the one consumer.
    let gauge = [("queue", "sub:counted")];
    expect(&text, "eddy_queue_dead_letter_messages", &gauge, 2.0);
    expect(&text, "eddy_queue_ready_messages", &gauge, 0.0);
    expect(&text, "eddy_queue_consumers", &gauge, 1.0);
    expect(&text, "eddy_queue_delayed_messages", &gauge, 0.0);
    assert!(
        text.contains("# TYPE eddy_handler_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE eddy_messages_received counter"),
        "{text}"
    );
    assert_eq!(q.info().await?.pending, 0);
    svc.stop().await?;
    Ok(Outcome::Passed)
}

/// The per-queue gauges of every queue: ready, unacknowledged, DLQ depth,
/// delayed, oldest pending age and consumers, as the engine has them.
pub async fn queue_gauges_read_every_queue(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (busy, _) = mq.create_queue_pair("busy").await?;
    let (idle, _) = mq.create_queue_pair("idle").await?;
    send_numbered(&busy, 0..5).await?;
    busy.send_with(
        &numbered(9),
        &SendOptions::new().delay(Duration::from_secs(3600)),
    )
    .await?;
    let got = busy.receive(&take(3, "worker")).await?;
    busy.dead_letter(&[got[0].id], "bad").await?; // 2 pending, 2 ready
    h.advance(Duration::from_millis(1500)).await;
    let metrics = Metrics::new();
    metrics.all_queues(&mq);
    let text = metrics.render().await?;
    let b = [("queue", "busy")];
    expect(&text, "eddy_queue_ready_messages", &b, 2.0);
    expect(&text, "eddy_queue_unacknowledged_messages", &b, 2.0);
    expect(&text, "eddy_queue_dead_letter_messages", &b, 1.0);
    expect(&text, "eddy_queue_delayed_messages", &b, 1.0);
    expect(&text, "eddy_queue_consumers", &b, 1.0);
    let age = sample(&text, "eddy_queue_oldest_pending_age_seconds", &b).unwrap_or(-1.0);
    assert!(
        (1.0..60.0).contains(&age),
        "oldest pending age {age}:\n{text}"
    );
    let i = [("queue", "idle")];
    expect(&text, "eddy_queue_ready_messages", &i, 0.0);
    expect(&text, "eddy_queue_consumers", &i, 0.0);
    expect(&text, "eddy_queue_oldest_pending_age_seconds", &i, 0.0);
    assert!(
        sample(&text, "eddy_queue_ready_messages", &[("queue", "busy:dlq")]).is_none(),
        "a DLQ is a label of its queue's gauge, not a queue of its own:\n{text}"
    );
    drop(idle);
    Ok(Outcome::Passed)
}

/// A consumer loop counts under its queue and group, and messages whose
/// TTL passed are counted as expired when a read removes them.
pub async fn consumer_loop_and_expiry_counters(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("metered").await?;
    let (ttl, wait) = super::timing::ttl_and_wait(h);
    for n in 0..3 {
        q.send_with(&numbered(n), &SendOptions::new().ttl(ttl))
            .await?;
    }
    h.advance(wait).await;
    send_numbered(&q, 3..7).await?;
    let metrics = Metrics::new();
    let stats = Arc::new(ConsumerStats::default());
    metrics.consumer(&q, "workers", &stats);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(consumer::run_with_stats(
        q.clone(),
        fast().name("w1".to_owned()),
        |_m| async { Ok(()) },
        async {
            let _ = stopped.await;
        },
        stats.clone(),
    ));
    let done = eventually(Duration::from_secs(5), || async {
        ConsumerStats::get(&stats.acked) == 4
    })
    .await;
    assert!(done, "the four live messages acknowledged");
    let _ = stop.send(());
    run.await
        .map_err(|e| eddy::Error::new(eddy::ErrorKind::Backend, e.to_string()))??;
    let text = metrics.render().await?;
    let me = [("queue", "metered"), ("consumer_group", "workers")];
    expect(&text, "eddy_messages_received_total", &me, 4.0);
    expect(&text, "eddy_messages_acknowledged_total", &me, 4.0);
    expect(
        &text,
        "eddy_messages_expired_total",
        &[("queue", "metered")],
        3.0,
    );
    assert!(q.receive(&take(10, "late")).await?.is_empty());
    Ok(Outcome::Passed)
}

/// `ServiceBuilder::metrics_listen` serves the text at `GET /metrics` (and
/// nothing else) while the service runs, and stops with it.
pub async fn service_serves_its_metrics_endpoint(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let svc = Service::builder("scraped", bus.clone())
        .consumer_options(fast())
        .metrics_listen(
            "127.0.0.1:0"
                .parse()
                .map_err(|e| eddy::Error::new(eddy::ErrorKind::InvalidArgument, format!("{e}")))?,
        )
        .on(|_ctx: Context, _e: OrderCreatedEvent| async { Ok(()) })
        .start()
        .await?;
    let addr = svc
        .metrics_addr()
        .ok_or_else(|| eddy::Error::new(eddy::ErrorKind::Backend, "no metrics address"))?;
    bus.publish(&order("o1")).await?;
    let handled = eventually(Duration::from_secs(5), || async {
        svc.metrics().handled() == 1
    })
    .await;
    assert!(handled);
    let (head, body) = http_get(addr, "/metrics").await?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    expect(
        &body,
        "eddy_events_handled_total",
        &[("service", "scraped"), ("outcome", "handled")],
        1.0,
    );
    expect(
        &body,
        "eddy_queue_consumers",
        &[("queue", "sub:scraped")],
        1.0,
    );
    let (head, _) = http_get(addr, "/other").await?;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    svc.stop().await?;
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "the endpoint stops with the service");
    Ok(Outcome::Passed)
}

/// One HTTP/1.1 GET; returns the head and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> eddy::Result<(String, String)> {
    let io = |e: std::io::Error| eddy::Error::new(eddy::ErrorKind::Backend, e.to_string());
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok((head.to_owned(), body.to_owned()))
}

/// `sent_total` counts every message ever added to a queue and
/// `delivered_total` every first delivery: acknowledging, dead-lettering
/// and trimming lower neither, a redelivery does not count again, and
/// `list_queues` reports the same. Purging starts both from zero.
pub async fn queue_totals_count_sends_and_first_deliveries(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("totals").await?;
    let info = q.info().await?;
    if info.sent_total.is_none() {
        return Ok(Outcome::NotApplicable(
            "the server does not count added entries (Redis before 7.0)",
        ));
    }
    assert_eq!((info.sent_total, info.delivered_total), (Some(0), Some(0)));

    send_numbered(&q, 0..6).await?;
    let got = q.receive(&take(4, "worker")).await?;
    assert_eq!(got.len(), 4);
    q.ack(&[got[0].id, got[1].id]).await?;
    let info = q.info().await?;
    assert_eq!(
        (info.sent_total, info.delivered_total, info.pending),
        (Some(6), Some(4), 2)
    );

    // Dead-lettering settles a delivery and adds a message to the DLQ.
    q.dead_letter(&[got[2].id], "bad").await?;
    q.trim_history(Duration::ZERO).await?;
    let info = q.info().await?;
    assert_eq!(
        (info.sent_total, info.delivered_total, info.pending),
        (Some(6), Some(4), 1)
    );
    assert!(info.length < 6, "trimmed: {info:?}");
    let dinfo = dlq.info().await?;
    assert_eq!(
        (dinfo.sent_total, dinfo.delivered_total),
        (Some(1), Some(0))
    );

    // The rest delivered for the first time; all settled.
    let rest = q.receive(&take(10, "worker")).await?;
    assert_eq!(rest.len(), 2);
    let ids: Vec<_> = rest.iter().map(|m| m.id).chain([got[3].id]).collect();
    q.ack(&ids).await?;
    q.trim_history(Duration::ZERO).await?;
    let listed = mq.list_queues().await?;
    let row = listed
        .iter()
        .find(|r| r.name == "totals")
        .expect("totals is listed");
    assert_eq!(
        (row.sent_total, row.delivered_total, row.pending),
        (Some(6), Some(6), 0)
    );
    let info = q.info().await?;
    assert_eq!((info.sent_total, info.delivered_total), (Some(6), Some(6)));

    // Purging recreates the stream: the counts start again.
    send_numbered(&q, 10..12).await?;
    q.purge().await?;
    let info = q.info().await?;
    assert_eq!((info.sent_total, info.delivered_total), (Some(0), Some(0)));
    Ok(Outcome::Passed)
}
