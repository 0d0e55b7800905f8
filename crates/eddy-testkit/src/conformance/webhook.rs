//! Webhooks and request/reply (`eddy::webhook`): replies reach their own
//! caller, timeouts and late replies, retries and dead-lettering, handling
//! by hand. The webhooks of a case share the embedded engine; on Redis each
//! opens its own connections, as separate processes would. (Interop with
//! LeanMQ's `LeanMQWebhook` is in `tests/webhook.rs`: it needs Python.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::queue::consumer::{Backoff, ConsumerOptions};
use eddy::webhook::{Delivery, Webhook};
use eddy::ErrorKind;
use eddy::Fail;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::support::eventually;
use super::{CaseResult, Harness, Outcome};

/// A webhook client or service with `options` on the case's engine.
async fn webhook_with(h: &Harness, options: ConsumerOptions) -> eddy::Result<Webhook> {
    let builder = Webhook::builder().consumer_options(options);
    if h.capabilities().shared_between_processes {
        builder.open(h.url()).await
    } else {
        builder.with_engine(h.engine().clone())
    }
}

async fn webhook(h: &Harness) -> eddy::Result<Webhook> {
    webhook_with(h, fast()).await
}

/// Consumer settings that make retries and reclaims quick.
pub fn fast() -> ConsumerOptions {
    ConsumerOptions::new()
        .concurrency(64)
        .visibility_timeout(Duration::from_secs(2))
        .claim_interval(Duration::from_millis(50))
        .poll(Duration::from_millis(200))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .max_deliveries(3)
        .handler_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(5))
}

/// What a recording handler saw.
pub type Seen = Arc<Mutex<Vec<Map<String, Value>>>>;

/// A handler that records the data it gets.
pub fn recorder() -> (
    Seen,
    impl Fn(Delivery) -> std::future::Ready<Result<(), Fail>> + Send + Sync + 'static,
) {
    let seen = Seen::default();
    let sink = seen.clone();
    (seen, move |d: Delivery| {
        sink.lock().unwrap().push(d.data().clone());
        std::future::ready(Ok(()))
    })
}

/// Assert that `data` carries LeanMQ's `_leanmq.webhook` field for `path`.
#[track_caller]
pub fn assert_leanmq_field(data: &Map<String, Value>, path: &str) {
    let webhook = &data["_leanmq"]["webhook"];
    assert_eq!(webhook["path"], path, "{data:?}");
    assert!(webhook["timestamp"].is_f64(), "{data:?}");
    assert_eq!(
        webhook.as_object().map(|o| o.len()),
        Some(2),
        "_leanmq.webhook is {{path, timestamp}}: {data:?}"
    );
}

/// Requests get their handler's reply (null without a value); plain sends
/// reach the same handlers; bad input is refused before sending; closing or
/// dropping a client deletes its reply queue.
pub async fn request_reply(h: &Harness) -> CaseResult {
    h.pause_time();
    let service = webhook(h).await?;
    let orders = Arc::new(Mutex::new(Vec::<Value>::new()));
    let store = orders.clone();
    service.on("/order/create/", move |d: Delivery| {
        let store = store.clone();
        async move {
            let mut orders = store.lock().unwrap();
            let order_id = format!("o-{}", orders.len() + 1);
            orders.push(json!({"order_id": order_id, "items": d.data()["items"]}));
            Ok(json!({"order_id": order_id, "status": "created"}))
        }
    })?;
    let store = orders.clone();
    service.on("/order/status", move |d: Delivery| {
        let store = store.clone();
        async move {
            let id = d.data()["order_id"].clone();
            let known = store.lock().unwrap().iter().any(|o| o["order_id"] == id);
            Ok(json!({"order_id": id, "status": if known { "created" } else { "unknown" }}))
        }
    })?;
    service.on("/audit", |_d: Delivery| async { Ok(()) })?;
    let running = service.start().await?;

    let gateway = webhook(h).await?;
    let t = Duration::from_secs(10);
    let created = gateway
        .request("/order/create", &json!({"items": ["A", "B"]}), t)
        .await?;
    assert_eq!(created, json!({"order_id": "o-1", "status": "created"}));
    let status = gateway
        .request("/order/status", &json!({"order_id": "o-1"}), t)
        .await?;
    assert_eq!(status, json!({"order_id": "o-1", "status": "created"}));
    let status = gateway
        .request("/order/status", &json!({"order_id": "o-404"}), t)
        .await?;
    assert_eq!(status["status"], "unknown");
    // A handler without a reply value answers null.
    assert_eq!(gateway.request("audit", &json!({}), t).await?, Value::Null);
    // Plain sends reach the same handlers and ask for nothing back.
    gateway
        .send("/order/create", &json!({"items": ["C"]}))
        .await?;
    assert!(eventually(t, || async { orders.lock().unwrap().len() == 2 }).await);

    let stats = gateway.request_stats();
    assert_eq!(
        (
            stats.sent,
            stats.answered,
            stats.timed_out,
            stats.late_replies
        ),
        (4, 4, 0, 0)
    );
    // Bad input is refused before anything is sent.
    let err = gateway.request("/", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName);
    let err = gateway.request("/x", &json!([1]), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotAnObject);

    // Closing deletes the reply queue; a later request makes a new one.
    let first = gateway.reply_queue().unwrap();
    gateway.close().await?;
    assert_eq!(
        gateway.queues().queue(&first).await.unwrap_err().kind(),
        ErrorKind::QueueNotFound
    );
    assert_eq!(gateway.request("/audit", &json!({}), t).await?, Value::Null);
    assert_ne!(gateway.reply_queue().unwrap(), first);
    gateway.close().await?;
    // Dropping the last handle deletes the reply queue too (best effort, in
    // the background).
    let dropped = webhook(h).await?;
    assert_eq!(dropped.request("/audit", &json!({}), t).await?, Value::Null);
    let name = dropped.reply_queue().unwrap();
    drop(dropped);
    let queues = gateway.queues().clone();
    assert!(
        eventually(t, || async {
            queues
                .queue(&name)
                .await
                .is_err_and(|e| e.kind() == ErrorKind::QueueNotFound)
        })
        .await,
        "reply queue {name} left behind"
    );

    let stats = running.stop().await?;
    let acked = |p: &str| stats.path(p).unwrap().acked.load(Ordering::Relaxed);
    assert_eq!(acked("/order/create"), 2);
    assert_eq!(acked("/order/status"), 2);
    assert_eq!(acked("/audit"), 3);
    Ok(Outcome::Passed)
}

/// A thousand requests at once from two clients: each gets its own reply.
pub async fn thousand_concurrent_requests(h: &Harness) -> CaseResult {
    h.pause_time();
    let service = webhook(h).await?;
    service.on("/echo", |d: Delivery| async move {
        Ok(json!({"n": d.data()["n"], "token": d.data()["token"]}))
    })?;
    let running = service.start().await?;
    // Two clients, so a reply reaching the wrong client would show too.
    let clients = [webhook(h).await?, webhook(h).await?];
    let started = Instant::now();
    let requests = (0..1000u64).map(|n| {
        let client = clients[(n % 2) as usize].clone();
        tokio::spawn(async move {
            let token = uuid_like(n);
            let reply = client
                .request(
                    "/echo",
                    &json!({"n": n, "token": token}),
                    Duration::from_secs(60),
                )
                .await?;
            assert_eq!(
                reply,
                json!({"n": n, "token": token}),
                "request {n} got another's reply"
            );
            Ok::<_, eddy::Error>(())
        })
    });
    for r in futures::future::join_all(requests).await {
        r??;
    }
    eprintln!(
        "[{}] 1000 concurrent requests answered in {:?}",
        h.engine_name(),
        started.elapsed()
    );
    for c in &clients {
        let s = c.request_stats();
        assert_eq!((s.sent, s.answered, s.late_replies), (500, 500, 0), "{s:?}");
        c.close().await?;
    }
    let stats = running.stop().await?;
    assert_eq!(
        stats.path("/echo").unwrap().acked.load(Ordering::Relaxed),
        1000
    );
    Ok(Outcome::Passed)
}

fn uuid_like(n: u64) -> String {
    format!("{n:08x}-{:016x}", rand::random::<u64>())
}

/// A request that times out fails with `Timeout`; its late reply is
/// consumed, counted and dropped, and never answers the next request.
pub async fn timeout_then_late_reply_is_dropped(h: &Harness) -> CaseResult {
    h.pause_time();
    // One handler at a time: request 1's late reply is sent before request 2
    // is even handled.
    let service = webhook_with(h, fast().concurrency(1)).await?;
    service.on("/slow", |d: Delivery| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(json!({"n": d.data()["n"]}))
    })?;
    let running = service.start().await?;
    let client = webhook(h).await?;

    let err = client
        .request("/slow", &json!({"n": 1}), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.is_retryable());
    // Request 2 waits while request 1's reply arrives with no caller.
    let reply = client
        .request("/slow", &json!({"n": 2}), Duration::from_secs(10))
        .await?;
    assert_eq!(reply, json!({"n": 2}), "request 2 must get its own reply");
    assert!(
        eventually(Duration::from_secs(5), || async {
            client.late_replies() == 1
        })
        .await
    );
    let stats = client.request_stats();
    assert_eq!(
        (
            stats.sent,
            stats.answered,
            stats.timed_out,
            stats.late_replies
        ),
        (2, 1, 1, 1),
        "{stats:?}"
    );
    // The late reply was consumed and deleted, not left pending.
    let reply_queue = client
        .queues()
        .queue(&client.reply_queue().unwrap())
        .await?;
    assert!(
        eventually(Duration::from_secs(5), || async {
            reply_queue
                .info()
                .await
                .is_ok_and(|i| i.pending == 0 && i.length == 0)
        })
        .await
    );
    client.close().await?;
    running.stop().await?;
    Ok(Outcome::Passed)
}

/// Handler errors and panics are retried, then dead-lettered with the
/// reason; a request to a failing handler fails fast with that reason.
pub async fn handler_errors_are_retried_then_dead_lettered(h: &Harness) -> CaseResult {
    h.pause_time();
    let service = webhook(h).await?; // max_deliveries 3
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    service.on("/flaky", move |_d: Delivery| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(Fail::retry("database is down")) }
    })?;
    service.on("/reject", |_d: Delivery| async {
        Err::<(), _>(Fail::reject("order total is negative"))
    })?;
    service.on("/panics", |_d: Delivery| async {
        if true {
            panic!("boom");
        }
        Ok::<(), Fail>(())
    })?;
    // Fails twice, then works: retries lead to a reply.
    let attempts = Arc::new(AtomicU64::new(0));
    let a = attempts.clone();
    service.on("/third-time-lucky", move |d: Delivery| {
        let n = a.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n < 3 {
                Err(Fail::retry(format!("attempt {n} failed")))
            } else {
                Ok(json!({"delivery_count": d.delivery_count()}))
            }
        }
    })?;
    let running = service.start().await?;
    let client = webhook(h).await?;
    let t = Duration::from_secs(10);

    // A plain send: retried with backoff, dead-lettered after 3 deliveries.
    client.send("/flaky", &json!({"order_id": "o-1"})).await?;
    let dlq = client.queues().dead_letter_queue("flaky").await?;
    assert!(
        eventually(t, || async {
            dlq.peek(10).await.is_ok_and(|m| m.len() == 1)
        })
        .await
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let dead = &dlq.peek(10).await?[0];
    assert_eq!(dead.data["order_id"], "o-1");
    assert_leanmq_field(&dead.data, "/flaky");
    let failures = dead.failures();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].reason.contains("failed 3 deliveries")
            && failures[0].reason.contains("database is down"),
        "{failures:?}"
    );

    // A request to a failing handler fails fast with the reason, after the
    // retries, instead of waiting for its timeout.
    let started = Instant::now();
    let err = client.request("/flaky", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("database is down"), "{err}");
    assert!(started.elapsed() < t);
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    let err = client.request("/reject", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("order total is negative"), "{err}");
    // The caller hears of the rejection as the message is dead-lettered:
    // the move may land a moment after the reply.
    let dlq = client.queues().dead_letter_queue("reject").await?;
    let mut dead = dlq.peek(10).await?;
    let until = Instant::now() + Duration::from_secs(5);
    while dead.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
        dead = dlq.peek(10).await?;
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].failures()[0].reason, "order total is negative");

    let err = client.request("/panics", &json!({}), t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert!(err.message().contains("boom"), "{err}");

    let reply = client.request("/third-time-lucky", &json!({}), t).await?;
    assert_eq!(reply, json!({"delivery_count": 3}));

    let stats = running.stop().await?;
    let panics = stats
        .path("/panics")
        .unwrap()
        .panics
        .load(Ordering::Relaxed);
    assert_eq!(panics, 3);
    let stats = client.request_stats();
    assert_eq!(
        (stats.failed, stats.answered, stats.late_replies),
        (3, 1, 0),
        "{stats:?}"
    );
    client.close().await?;
    Ok(Outcome::Passed)
}

/// `process_messages` handles what is waiting (up to a count per path),
/// blocks for new messages, retries failures after their backoff.
pub async fn process_messages_by_hand(h: &Harness) -> CaseResult {
    h.pause_time();
    let service = webhook(h).await?;
    let (seen, handler) = recorder();
    service.on("/a", handler)?;
    let fails = Arc::new(AtomicU64::new(0));
    let f = fails.clone();
    service.on("/b", move |d: Delivery| {
        let f = f.clone();
        async move {
            if d.data().get("fail").is_some() {
                f.fetch_add(1, Ordering::SeqCst);
                return Err(Fail::retry("not today"));
            }
            Ok(json!({"b": true}))
        }
    })?;
    let client = webhook(h).await?;
    for n in 0..3 {
        client.send("/a", &json!({"n": n})).await?;
    }
    client.send("/b", &json!({})).await?;
    client.send("/b", &json!({"fail": true})).await?;

    // Count is per path: 2 from /a, 2 from /b (one of which fails).
    assert_eq!(service.process_messages(false, Duration::ZERO, 2).await?, 3);
    assert_eq!(service.process_messages(false, Duration::ZERO, 2).await?, 1);
    assert_eq!(seen.lock().unwrap().len(), 3);

    // Nothing new: block waits for the timeout. The failed message comes back
    // after its backoff, and goes to the DLQ after 3 deliveries.
    let started = Instant::now();
    let mut handled = 0;
    while fails.load(Ordering::SeqCst) < 3 && started.elapsed() < Duration::from_secs(10) {
        handled += service
            .process_messages(true, Duration::from_millis(100), 10)
            .await?;
    }
    assert_eq!(handled, 0);
    assert_eq!(fails.load(Ordering::SeqCst), 3);
    let dlq = service.queues().dead_letter_queue("b").await?;
    assert_eq!(dlq.peek(10).await?.len(), 1);
    let started = Instant::now();
    assert_eq!(
        service
            .process_messages(true, Duration::from_millis(200), 10)
            .await?,
        0
    );
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A request answered by a batch processed by hand.
    let request = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .request("/b", &json!({}), Duration::from_secs(10))
                .await
        })
    };
    let mut answered = 0;
    let started = Instant::now();
    while answered == 0 && started.elapsed() < Duration::from_secs(10) {
        answered += service
            .process_messages(true, Duration::from_millis(200), 10)
            .await?;
    }
    assert_eq!(request.await??, json!({"b": true}));
    // No handlers, nothing to do.
    let idle = webhook(h).await?;
    assert_eq!(idle.process_messages(false, Duration::ZERO, 1).await?, 0);
    client.close().await?;
    Ok(Outcome::Passed)
}
