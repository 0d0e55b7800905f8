//! The consumer loop, the event bus and the service runtime, on both engines.
//! Each test runs once on `memory://` and once on a redis-server of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::bus::{Bus, Envelope, Subscription};
use eddy::queue::consumer::{self, Backoff, ConsumerOptions};
use eddy::service::{Context, Service};
use eddy::Fail;
use eddy::{Eddy, EddyBuilder, Receive};
use eddy_testkit::RedisServer;
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// An engine for one test: the URL, and the server guard that keeps a Redis
/// alive for the test's duration.
struct Env {
    url: String,
    _server: Option<RedisServer>,
}

impl Env {
    fn memory() -> Self {
        Self {
            url: "memory://".into(),
            _server: None,
        }
    }

    fn redis() -> Self {
        let server = RedisServer::start().expect("redis-server must be installed (see README)");
        Self {
            url: server.url(),
            _server: Some(server),
        }
    }

    async fn mq(&self) -> eddy::Result<Eddy> {
        EddyBuilder::new(&self.url).prefix("rt:").open().await
    }
}

/// Memory URLs are per process: share one engine between handles there.
async fn shared_bus(mq: &Eddy) -> eddy::Result<Bus> {
    Bus::with_engine(mq.engine().clone()).await
}

fn fast() -> ConsumerOptions {
    ConsumerOptions::new()
        .visibility_timeout(Duration::from_millis(300))
        .claim_interval(Duration::from_millis(50))
        .poll(Duration::from_millis(50))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .handler_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(5))
}

/// Poll `check` until it holds or `limit` passes.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}

macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() -> super::TestResult { super::$name(super::Env::memory()).await } )*
        }
        mod redis {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() -> super::TestResult { super::$name(super::Env::redis()).await } )*
        }
    };
}

both_engines!(
    poison_message_goes_to_dlq_after_max_deliveries,
    panic_is_retried_and_worker_survives,
    reject_dead_letters_at_once,
    crashed_consumers_messages_are_reclaimed,
    slow_handler_keeps_its_lease,
    hung_handler_times_out_and_is_retried,
    stop_drains_in_flight_work,
    ordering_key_serializes_same_key,
    bus_routes_are_durable_and_shared,
    unknown_event_type_is_acknowledged,
    a_broken_event_is_dead_lettered_and_its_id_stays_free,
    replay_from_the_all_log,
    service_context_sets_envelope,
    service_reject_and_retry_outcomes,
    janitor_trims_only_acknowledged_history,
    max_length_rejects_instead_of_dropping,
    all_log_is_trimmed_by_age,
    info_reports_the_oldest_pending_age,
    overlapping_publishes_each_get_their_own_result,
    cpu_bound_handlers_still_run_in_parallel,
    handler_panicking_before_its_future_exists_is_retried,
    pipelined_publishes_from_one_task_keep_their_order,
    ordering_key_covers_the_handlers_synchronous_part,
);

async fn poison_message_goes_to_dlq_after_max_deliveries(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, dlq) = mq.create_queue_pair("poison").await?;
    q.send(&json!({"poison": true})).await?;
    for i in 0..5 {
        q.send(&json!({"n": i})).await?;
    }
    let ok = Arc::new(AtomicU64::new(0));
    let seen = ok.clone();
    let stop = async { tokio::time::sleep(Duration::from_millis(1500)).await };
    let stats = consumer::run(
        q.clone(),
        fast().max_deliveries(3),
        move |m| {
            let seen = seen.clone();
            async move {
                if m.data.contains_key("poison") {
                    Err(Fail::retry(format!(
                        "cannot digest (attempt {})",
                        m.delivery_count
                    )))
                } else {
                    seen.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        },
        stop,
    )
    .await?;
    assert_eq!(ok.load(Ordering::SeqCst), 5, "other messages keep flowing");
    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].failures()[0].reason;
    assert!(reason.contains("failed 3 deliveries"), "{reason}");
    assert!(reason.contains("cannot digest (attempt 3)"), "{reason}");
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 1);
    assert_eq!(stats.retried.load(Ordering::SeqCst), 2);
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(())
}

async fn panic_is_retried_and_worker_survives(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, dlq) = mq.create_queue_pair("panics").await?;
    q.send(&json!({"boom": true})).await?;
    q.send(&json!({"fine": true})).await?;
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let log = attempts.clone();
    let stats = consumer::run(
        q.clone(),
        fast(),
        move |m| {
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push((m.data.contains_key("boom"), m.delivery_count));
                if m.data.contains_key("boom") && m.delivery_count == 1 {
                    panic!("handler exploded");
                }
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1000)),
    )
    .await?;
    let attempts = attempts.lock().unwrap().clone();
    assert!(
        attempts.contains(&(true, 1)) && attempts.contains(&(true, 2)),
        "{attempts:?}"
    );
    assert!(attempts.contains(&(false, 1)));
    assert_eq!(stats.panics.load(Ordering::SeqCst), 1);
    assert!(dlq.peek(10).await?.is_empty());
    assert_eq!(q.info().await?.pending, 0);
    Ok(())
}

async fn reject_dead_letters_at_once(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, dlq) = mq.create_queue_pair("rejects").await?;
    q.send(&json!({"bad": 1})).await?;
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    consumer::run(
        q.clone(),
        fast(),
        move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err(Fail::reject("invalid order")) }
        },
        tokio::time::sleep(Duration::from_millis(500)),
    )
    .await?;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry for a rejection");
    let dead = dlq.peek(10).await?;
    assert_eq!(dead[0].failures()[0].reason, "invalid order");
    assert_eq!(dead[0].data["bad"], 1);
    assert_eq!(q.info().await?.length, 0, "gone from the queue");
    Ok(())
}

async fn crashed_consumers_messages_are_reclaimed(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("reclaim").await?;
    for i in 0..3 {
        q.send(&json!({"n": i})).await?;
    }
    // A consumer takes all three and dies without acknowledging.
    let taken = q
        .receive(&Receive::new().count(3).consumer("dead-worker"))
        .await?;
    assert_eq!(taken.len(), 3);
    let counts = Arc::new(Mutex::new(Vec::new()));
    let c = counts.clone();
    let started = std::time::Instant::now();
    consumer::run(
        q.clone(),
        fast().name("rescuer".into()),
        move |m| {
            c.lock()
                .unwrap()
                .push((m.data["n"].as_u64(), m.delivery_count, started.elapsed()));
            async { Ok(()) }
        },
        tokio::time::sleep(Duration::from_millis(1200)),
    )
    .await?;
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (_, dc, at) in &counts {
        assert_eq!(*dc, 2, "delivery count +1");
        assert!(
            *at >= Duration::from_millis(250),
            "not before the visibility timeout: {at:?}"
        );
    }
    let info = q.info().await?;
    assert_eq!(info.pending, 0);
    Ok(())
}

async fn slow_handler_keeps_its_lease(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("slow").await?;
    q.send(&json!({"slow": true})).await?;
    let runs = Arc::new(AtomicU64::new(0));
    let mq2 = mq.clone();
    // A second consumer competes for reclaims while the first is slow.
    let rival_runs = Arc::new(AtomicU64::new(0));
    let rr = rival_runs.clone();
    let rival = tokio::spawn(async move {
        let q2 = mq2.queue("slow").await.unwrap();
        consumer::run(
            q2,
            fast().name("rival".into()),
            move |_| {
                rr.fetch_add(1, Ordering::SeqCst);
                async { Ok(()) }
            },
            tokio::time::sleep(Duration::from_millis(2000)),
        )
        .await
    });
    let r = runs.clone();
    consumer::run(
        q.clone(),
        fast().name("slowpoke".into()),
        move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(1000)).await; // > 3 × V
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(200)),
    )
    .await?;
    rival.await??;
    assert_eq!(
        runs.load(Ordering::SeqCst) + rival_runs.load(Ordering::SeqCst),
        1,
        "the slow-but-alive handler's message must not run twice"
    );
    assert_eq!(q.info().await?.pending, 0);
    Ok(())
}

async fn hung_handler_times_out_and_is_retried(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("hung").await?;
    q.send(&json!({"x": 1})).await?;
    let counts = Arc::new(Mutex::new(Vec::new()));
    let c = counts.clone();
    let stats = consumer::run(
        q.clone(),
        fast().handler_timeout(Duration::from_millis(100)),
        move |m| {
            c.lock().unwrap().push(m.delivery_count);
            let hang = m.delivery_count == 1;
            async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1000)),
    )
    .await?;
    assert_eq!(*counts.lock().unwrap(), vec![1, 2]);
    assert_eq!(stats.timeouts.load(Ordering::SeqCst), 1);
    assert_eq!(q.info().await?.pending, 0);
    Ok(())
}

async fn stop_drains_in_flight_work(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("drain").await?;
    for i in 0..4 {
        q.send(&json!({"n": i})).await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let task = tokio::spawn(consumer::run(
        q.clone(),
        fast().concurrency(4),
        move |_| {
            let (d, s) = (d.clone(), s.clone());
            async move {
                s.notify_one();
                tokio::time::sleep(Duration::from_millis(300)).await;
                d.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
        async {
            let _ = rx.await;
        },
    ));
    started.notified().await;
    tx.send(()).ok();
    task.await??;
    assert_eq!(done.load(Ordering::SeqCst), 4, "in-flight handlers finish");
    assert_eq!(
        q.info().await?.pending,
        0,
        "and are acknowledged before stop returns"
    );
    Ok(())
}

async fn ordering_key_serializes_same_key(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("ordered").await?;
    for i in 0..20 {
        q.send(&json!({"key": format!("k{}", i % 2), "n": i}))
            .await?;
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    consumer::run(
        q.clone(),
        fast().concurrency(8).ordering_key(|m| {
            m.data
                .get("key")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        }),
        move |m| {
            let l = l.clone();
            async move {
                let n = m.data["n"].as_u64().unwrap();
                // Later messages finish faster: only ordering keeps them in order.
                tokio::time::sleep(Duration::from_millis(20 - n)).await;
                l.lock().unwrap().push(n);
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1500)),
    )
    .await?;
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 20);
    for parity in 0..2 {
        let seq: Vec<u64> = log.iter().copied().filter(|n| n % 2 == parity).collect();
        let mut sorted = seq.clone();
        sorted.sort();
        assert_eq!(seq, sorted, "key k{parity} out of order");
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct OrderCreatedEvent {
    order_id: String,
    total: f64,
}
eddy::event!(OrderCreatedEvent);

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct PaymentProcessedEvent {
    order_id: String,
    status: String,
}
eddy::event!(PaymentProcessedEvent);

fn order(id: &str) -> OrderCreatedEvent {
    OrderCreatedEvent {
        order_id: id.into(),
        total: 10.0,
    }
}

/// A second bus handle as another process would have one: its own
/// connection on Redis; the same engine on memory (the only way to share it).
async fn other_process_bus(env: &Env, mq: &Eddy) -> eddy::Result<Bus> {
    if env.url.starts_with("memory") {
        shared_bus(mq).await
    } else {
        Bus::open(&env.url).await
    }
}

async fn bus_routes_are_durable_and_shared(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let subscriber = shared_bus(&mq).await?;
    let publisher = other_process_bus(&env, &mq).await?;
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
    publisher.unsubscribe("audit", &Subscription::All).await?;
    assert_eq!(
        publisher.publish(&order("o2")).await?.delivered_to,
        ["payment-service"]
    );
    Ok(())
}

async fn unknown_event_type_is_acknowledged(env: Env) -> TestResult {
    let mq = env.mq().await?;
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
    let acked = eventually(Duration::from_secs(3), || svc.metrics().unknown == 1).await;
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
    Ok(())
}

/// An entry that starts as eddy writes events but is broken further on is
/// not an event: dead-lettered with its reason, seen by no handler, and not
/// counted under its id (a good copy with the same id is handled).
async fn a_broken_event_is_dead_lettered_and_its_id_stays_free(env: Env) -> TestResult {
    let mq = env.mq().await?;
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
    let done = eventually(Duration::from_secs(5), || {
        let m = svc.metrics();
        m.malformed == 1 && m.handled() == 1
    })
    .await;
    assert!(done, "{:?}", svc.metrics());
    assert_eq!(*handled.lock().map_err(|_| "poisoned")?, ["good"]);
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
    Ok(())
}

async fn replay_from_the_all_log(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let bus = shared_bus(&mq).await?;
    bus.publish(&order("before")).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = std::time::SystemTime::now();
    bus.publish(&order("after-1")).await?;
    bus.publish(&order("after-2")).await?;
    let events = bus.replay(since, 100).await?;
    let ids: Vec<String> = events
        .iter()
        .map(|e| e.decode::<OrderCreatedEvent>().map(|o| o.order_id))
        .collect::<eddy::Result<_>>()?;
    assert_eq!(ids, ["after-1", "after-2"]);
    Ok(())
}

async fn service_context_sets_envelope(env: Env) -> TestResult {
    let mq = env.mq().await?;
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
    Ok(())
}

async fn service_reject_and_retry_outcomes(env: Env) -> TestResult {
    let mq = env.mq().await?;
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
    Ok(())
}

async fn janitor_trims_only_acknowledged_history(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("history").await?;
    for i in 0..10 {
        q.send(&json!({"n": i})).await?;
    }
    // 0..4 acknowledged, 4..6 pending, 6..10 never delivered.
    let got = q.receive(&Receive::new().count(6)).await?;
    let acked: Vec<_> = got[..4].iter().map(|m| m.id).collect();
    q.ack(&acked).await?;
    // A long retention keeps everything.
    assert_eq!(q.trim_history(Duration::from_secs(3600)).await?, 0);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        mq.trim_history(Duration::ZERO).await?,
        4,
        "only acknowledged entries go"
    );
    let left: Vec<u64> = q
        .peek(20)
        .await?
        .iter()
        .map(|m| m.data["n"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(left, (4..10).collect::<Vec<u64>>());
    // Acknowledging an entry after a pending one frees nothing before it.
    q.ack(&[got[5].id]).await?;
    assert_eq!(
        q.trim_history(Duration::ZERO).await?,
        0,
        "entry 4 is still pending"
    );
    q.ack(&[got[4].id]).await?;
    assert_eq!(q.trim_history(Duration::ZERO).await?, 2);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (4, 0, 4));
    Ok(())
}

async fn max_length_rejects_instead_of_dropping(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("bounded").await?;
    let (other, _) = mq.create_queue_pair("unbounded").await?;
    q.set_max_length(Some(3)).await?;
    assert_eq!(q.info().await?.max_length, Some(3));
    for i in 0..3 {
        q.send(&json!({"n": i})).await?;
    }
    let err = q.send(&json!({"n": 3})).await.unwrap_err();
    assert_eq!(err.kind(), eddy::ErrorKind::QueueFull, "{err}");
    // A transaction that would overflow writes nothing anywhere.
    q.set_max_length(Some(4)).await?;
    let mut tx = mq.transaction();
    tx.send(&other, &json!({"x": 1}))?;
    tx.send(&q, &json!({"n": 3}))?;
    tx.send(&q, &json!({"n": 4}))?;
    assert_eq!(
        tx.commit().await.unwrap_err().kind(),
        eddy::ErrorKind::QueueFull
    );
    assert_eq!(other.info().await?.length, 0);
    assert_eq!(q.info().await?.length, 3, "nothing old was dropped");
    q.set_max_length(None).await?;
    q.send(&json!({"n": 5})).await?;
    assert_eq!(q.info().await?.length, 4);
    Ok(())
}

async fn all_log_is_trimmed_by_age(env: Env) -> TestResult {
    let mq = env.mq().await?;
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
    assert_eq!(bus.trim_log(Duration::from_millis(150)).await?, 1);
    let left: Vec<String> = bus
        .replay(std::time::UNIX_EPOCH, 10)
        .await?
        .iter()
        .map(|e| e.decode::<OrderCreatedEvent>().map(|o| o.order_id))
        .collect::<eddy::Result<_>>()?;
    assert_eq!(left, ["new"]);
    Ok(())
}

async fn info_reports_the_oldest_pending_age(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("aging").await?;
    q.send(&json!({"n": 1})).await?;
    assert_eq!(q.info().await?.oldest_pending_age_ms, None);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = q.receive(&Receive::new()).await?;
    // A reclaim resets the idle time but not the age.
    tokio::time::sleep(Duration::from_millis(50)).await;
    q.claim_stale("other", Duration::ZERO, 1).await?;
    let info = q.info().await?;
    let age = info.oldest_pending_age_ms.unwrap_or(0);
    let idle = info.oldest_pending_idle_ms.unwrap_or(u64::MAX);
    assert!(age >= 240, "age {age} ms counts from the send");
    assert!(idle < 200, "idle {idle} ms counts from the last delivery");
    q.ack(&[got[0].id]).await?;
    assert_eq!(q.info().await?.oldest_pending_age_ms, None);
    Ok(())
}

/// Publishes that overlap share engine calls (a group commit): each still
/// reaches exactly its own subscribers, once, and returns its own result;
/// on Redis, fewer script calls than events prove the batches formed, and a
/// key of the wrong type fails only the events it concerns.
async fn overlapping_publishes_each_get_their_own_result(env: Env) -> TestResult {
    let mq = env.mq().await?;
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
    let calls_before = evalsha_calls(&env)?;
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

    let Some(server) = &env._server else {
        return Ok(());
    };
    let calls = evalsha_calls(&env)? - calls_before;
    assert!(
        calls < N as u64 / 2,
        "{calls} script calls for {N} overlapping publishes: they were not batched"
    );
    // One target of the wrong type: the batch as a whole fails, nothing of it
    // is written, and each event is published again alone.
    server.redis_cli(["DEL", "events:sub:orders-svc"])?;
    server.redis_cli(["SET", "events:sub:orders-svc", "not a stream"])?;
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
    Ok(())
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
fn evalsha_calls(env: &Env) -> Result<u64, Box<dyn std::error::Error>> {
    let Some(server) = &env._server else {
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

/// The loop runs a handler that finishes on its first poll inline (no task
/// of its own); handlers that compute for long before returning must still
/// run side by side on the runtime's workers, not one after another.
async fn cpu_bound_handlers_still_run_in_parallel(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("crunch").await?;
    let n = 40u64;
    for i in 0..n {
        q.send(&json!({ "n": i })).await?;
    }
    let running = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let (r, m, d) = (running.clone(), most.clone(), done.clone());
    let finished = done.clone();
    let stop = async move {
        eventually(Duration::from_secs(20), || {
            finished.load(Ordering::SeqCst) >= n
        })
        .await;
    };
    consumer::run(
        q.clone(),
        fast().concurrency(4),
        move |_m| {
            let (running, most, done) = (r.clone(), m.clone(), d.clone());
            async move {
                // No await: 3 ms of work inside the first poll.
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let until = std::time::Instant::now() + Duration::from_millis(3);
                while std::time::Instant::now() < until {
                    std::hint::spin_loop();
                }
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
        stop,
    )
    .await?;
    assert_eq!(done.load(Ordering::SeqCst), n, "every message handled");
    assert!(
        most.load(Ordering::SeqCst) >= 2,
        "CPU-bound handlers ran one at a time"
    );
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(())
}

/// A handler closure that panics in its synchronous part (before it returns
/// a future) is a failed delivery like any other: retried, then
/// dead-lettered; the loop and the other messages carry on.
async fn handler_panicking_before_its_future_exists_is_retried(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, dlq) = mq.create_queue_pair("eager").await?;
    q.send(&json!({"bad": true})).await?;
    for i in 0..5 {
        q.send(&json!({"n": i})).await?;
    }
    let ok = Arc::new(AtomicU64::new(0));
    let seen = ok.clone();
    let stop = async { tokio::time::sleep(Duration::from_millis(1500)).await };
    let stats = consumer::run(
        q.clone(),
        fast().max_deliveries(2),
        move |m| {
            assert!(!m.data.contains_key("bad"), "cannot even start on this one");
            let seen = seen.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
        stop,
    )
    .await?;
    assert_eq!(ok.load(Ordering::SeqCst), 5, "the others were handled");
    assert_eq!(stats.panics.load(Ordering::SeqCst), 2);
    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    let reason = &dead[0].failures()[0].reason;
    assert!(reason.contains("cannot even start"), "{reason}");
    let info = q.info().await?;
    assert_eq!((info.pending, info.lag), (0, 0));
    Ok(())
}

/// One task that pipelines its publishes (many in flight, issued in order)
/// sees them applied in that order, though they share engine calls.
async fn pipelined_publishes_from_one_task_keep_their_order(env: Env) -> TestResult {
    use futures::StreamExt;

    let mq = env.mq().await?;
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
    Ok(())
}

/// With an ordering key, a handler is called only once the one before it
/// (same key) has finished: its synchronous part too, not only its future.
async fn ordering_key_covers_the_handlers_synchronous_part(env: Env) -> TestResult {
    let mq = env.mq().await?;
    let (q, _) = mq.create_queue_pair("ordered-sync").await?;
    for i in 0..10 {
        q.send(&json!({"n": i})).await?;
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    consumer::run(
        q.clone(),
        fast()
            .concurrency(8)
            .ordering_key(|_| Some("one".to_owned())),
        move |m| {
            let n = m.data["n"].as_u64().unwrap_or(99);
            l.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("call {n}"));
            let l = l.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                l.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("done {n}"));
                Ok(())
            }
        },
        tokio::time::sleep(Duration::from_millis(1000)),
    )
    .await?;
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let want: Vec<String> = (0..10)
        .flat_map(|n| [format!("call {n}"), format!("done {n}")])
        .collect();
    assert_eq!(log, want);
    Ok(())
}
