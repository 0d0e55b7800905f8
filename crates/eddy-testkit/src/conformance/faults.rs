//! The rows of the fault matrix (RELIABILITY.md) that apply to every engine
//! and need neither a second process nor a network fault: handler panics
//! (8), handlers slower than the visibility timeout (9), poison messages
//! (10), undecodable entries (12), oversized payloads (13), malformed ids
//! (14), unknown event types (15), a TTL passing unswept (18). Where Redis
//! can be faulted in a way the embedded engine cannot (raw `redis-cli`
//! writes, bytes counted on the wire), a row does that too. The other rows
//! are in `tests/faults.rs`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy::bus::{Bus, Envelope, Subscription};
use eddy::queue::consumer::{Backoff, ConsumerOptions};
use eddy::service::{Context, Service};
use eddy::Fail;
use eddy::{EddyBuilder, EntryId, ErrorKind, Receive, SendOptions};
use serde_json::{json, Value};

use super::counting::CountingEngine;
use super::support::{
    append_raw, kinds, order, shared_bus, stat, stop_service, wait_drained, wait_until, Log, Loop,
    OrderCreatedEvent,
};
use super::{CaseResult, Harness, Outcome as CaseOutcome};
use crate::proxy::Proxy;

/// Consumer settings for the fault rows: quick retries and reclaims.
pub fn fast() -> ConsumerOptions {
    ConsumerOptions::new()
        .visibility_timeout(Duration::from_millis(500))
        .claim_interval(Duration::from_millis(50))
        .poll(Duration::from_millis(100))
        .backoff(Backoff::new(
            Duration::from_millis(10),
            Duration::from_millis(40),
        ))
        .handler_timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(2))
}

/// A service on `bus` with [`fast`] consumer settings.
pub fn fast_service(name: &str, bus: &Bus) -> eddy::service::ServiceBuilder {
    Service::builder(name, bus.clone()).consumer_options(fast())
}

/// Row 8: a panicking handler is a failed delivery (retried, then
/// dead-lettered); the worker stays up.
pub async fn row08_handler_panics(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("row08").await?;
    q.send(&json!({"n": 0, "explode": true})).await?;
    for n in 1..=5 {
        q.send(&json!({"n": n})).await?;
    }
    let log = Log::default();
    let lp = {
        let log = log.clone();
        // A long visibility timeout: this row is about panics, and a
        // machine stalled past a short one (CI on two cores) would
        // rightly redeliver the others, which the counts below rule out.
        let opts = fast()
            .max_deliveries(3)
            .visibility_timeout(Duration::from_secs(5));
        Loop::spawn(q.clone(), opts, move |m| {
            log.record(&m);
            let explode = m.data.contains_key("explode");
            async move {
                if explode {
                    panic!("boom on delivery {}", m.delivery_count);
                }
                Ok(())
            }
        })
    };
    wait_until(
        Duration::from_secs(10),
        "the panicking message is dead-lettered",
        || async {
            let dead = dlq.peek(10).await.map_err(|e| e.to_string())?;
            if dead.len() == 1 {
                Ok(())
            } else {
                Err(format!("{} in the DLQ", dead.len()))
            }
        },
    )
    .await;
    // The worker is still up: a message sent now is handled.
    q.send(&json!({"n": 6})).await?;
    wait_until(
        Duration::from_secs(5),
        "the loop still handles messages",
        || async {
            if log.ns().contains(&6) {
                Ok(())
            } else {
                Err(format!("{:?}", log.ns()))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    let stats = lp.stop().await?;
    assert_eq!(log.runs_of(0), [1, 2, 3], "retried up to max_deliveries");
    assert_eq!(
        (1..=6).filter(|n| log.runs_of(*n) == [1]).count(),
        6,
        "the others ran once each"
    );
    assert_eq!(stat(&stats.panics), 3);
    assert_eq!((stat(&stats.retried), stat(&stats.dead_lettered)), (2, 1));
    let dead = dlq.peek(10).await?;
    let failures = dead[0].failures();
    assert_eq!(failures.len(), 1);
    let reason = &failures[0].reason;
    assert!(reason.contains("failed 3 deliveries"), "{reason}");
    assert!(
        reason.contains("handler panicked: boom on delivery 3"),
        "{reason}"
    );
    assert_eq!(dead[0].data["n"], 0);
    Ok(CaseOutcome::Passed)
}

/// Row 9: two instances of a service compete; a slow-but-alive handler
/// keeps its lease, a hung one is timed out and retried once.
pub async fn row09_handler_slower_than_visibility_timeout(h: &Harness) -> CaseResult {
    h.pause_time();
    let v = Duration::from_millis(600);
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let runs: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let instance = |bus: &Bus| {
        let runs = runs.clone();
        fast_service("row09-svc", bus)
            .visibility_timeout(v)
            .handler_timeout(Duration::from_secs(2))
            .on(move |ctx: Context, e: OrderCreatedEvent| {
                let runs = runs.clone();
                async move {
                    runs.lock()
                        .unwrap()
                        .push((e.order_id.clone(), ctx.delivery_count()));
                    match e.order_id.as_str() {
                        // Alive but slow: works for more than 2 V.
                        "slow" => tokio::time::sleep(v * 2 + Duration::from_millis(200)).await,
                        // Hung on its first delivery.
                        "hang" if ctx.delivery_count() == 1 => std::future::pending::<()>().await,
                        _ => {}
                    }
                    Ok(())
                }
            })
    };
    let one = instance(&bus).start().await?;
    let two = instance(&bus).start().await?;
    bus.publish(&order("slow")).await?;
    bus.publish(&order("hang")).await?;
    for i in 0..4 {
        bus.publish(&order(&format!("quick-{i}"))).await?;
    }
    let q = bus.subscription_queue("row09-svc").await?;
    wait_until(
        Duration::from_secs(10),
        "every event is handled",
        || async {
            let handled = one.metrics().handled() + two.metrics().handled();
            if handled == 6 {
                Ok(())
            } else {
                Err(format!("handled {handled}: {:?}", runs.lock().unwrap()))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    let runs = runs.lock().unwrap().clone();
    let of = |id: &str| {
        runs.iter()
            .filter(|r| r.0 == id)
            .map(|r| r.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("slow"),
        [1],
        "the slow-but-alive handler ran once: its lease was extended"
    );
    assert_eq!(
        of("hang"),
        [1, 2],
        "the hung handler timed out and was retried once"
    );
    let timeouts = stat(&one.stats().timeouts) + stat(&two.stats().timeouts);
    let redelivered = stat(&one.stats().redelivered) + stat(&two.stats().redelivered);
    assert_eq!((timeouts, redelivered), (1, 1));
    stop_service(one).await?;
    stop_service(two).await?;
    Ok(CaseOutcome::Passed)
}

/// Row 10: a poison event goes to the DLQ after `max_deliveries` with the
/// reason, attempts and last error; the others keep flowing.
pub async fn row10_poison_message(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let svc = fast_service("row10-svc", &bus)
        .max_deliveries(3)
        .on(|ctx: Context, e: OrderCreatedEvent| async move {
            if e.order_id == "poison" {
                return Err(Fail::retry(format!(
                    "cannot parse order (attempt {})",
                    ctx.delivery_count()
                )));
            }
            Ok(())
        })
        .start()
        .await?;
    bus.publish(&order("ok-0")).await?;
    let poison = bus.publish(&order("poison")).await?;
    for i in 1..10 {
        bus.publish(&order(&format!("ok-{i}"))).await?;
    }
    let dlq = bus.queues().dead_letter_queue("sub:row10-svc").await?;
    wait_until(
        Duration::from_secs(10),
        "the poison is dead-lettered and the rest handled",
        || async {
            let dead = dlq.peek(10).await.map_err(|e| e.to_string())?.len();
            let handled = svc.metrics().handled();
            if dead == 1 && handled == 10 {
                Ok(())
            } else {
                Err(format!("dead {dead} handled {handled}"))
            }
        },
    )
    .await;
    wait_drained(
        &bus.subscription_queue("row10-svc").await?,
        Duration::from_secs(5),
    )
    .await;
    let dead = dlq.peek(10).await?;
    let m = &dead[0];
    assert_eq!(m.message_id, poison.event_id, "the DLQ keeps the event id");
    assert_eq!(
        Envelope::from_message(m)?.decode::<OrderCreatedEvent>()?,
        order("poison")
    );
    let failures = m.failures();
    assert_eq!(failures.len(), 1);
    let reason = &failures[0].reason;
    assert!(
        reason.contains("failed 3 deliveries (max_deliveries 3)"),
        "reason and attempts: {reason}"
    );
    assert!(
        reason.contains("cannot parse order (attempt 3)"),
        "the last error: {reason}"
    );
    let t = svc.metrics().by_type["OrderCreatedEvent"].clone();
    assert_eq!((t.handled, t.failed), (10, 3));
    let s = svc.stats();
    assert_eq!((stat(&s.retried), stat(&s.dead_lettered)), (2, 1));
    stop_service(svc).await?;
    Ok(CaseOutcome::Passed)
}

/// Row 12: bad JSON, non-UTF-8 and missing fields are not retried: to the
/// DLQ at once, with the raw bytes and the reason.
pub async fn row12_undecodable_entries(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("row12").await?;
    let bad: [(&[u8], &str); 3] = [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{\"n\": 1,", "not valid JSON"),
        (b"[1, 2]", "not an object"),
    ];
    for (raw, _) in &bad {
        append_raw(&mq, &q, raw).await?;
    }
    let mut expected = bad.len();
    if let Some(server) = h.redis_server() {
        let stream = format!("{}row12", h.prefix());
        // As the matrix has it: from redis-cli, a lone 0xff byte and an entry
        // without a `data` field at all.
        use std::os::unix::ffi::OsStringExt;
        let ff = std::ffi::OsString::from_vec(vec![0xff]);
        server.redis_cli([
            "XADD".into(),
            stream.clone().into(),
            "*".into(),
            "data".into(),
            ff,
        ])?;
        server.redis_cli(["XADD", &stream, "*", "other", "x"])?;
        expected += 2;
    }
    q.send(&json!({"n": 7})).await?;

    let log = Log::default();
    let lp = Loop::acking(q.clone(), fast(), &log);
    wait_until(
        Duration::from_secs(10),
        "the good message is handled, the bad ones dead-lettered",
        || async {
            let dead = dlq.peek(20).await.map_err(|e| e.to_string())?.len();
            if dead == expected && log.ns().contains(&7) {
                Ok(())
            } else {
                Err(format!("dead {dead}, log {:?}", log.all()))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    let stats = lp.stop().await?;
    assert_eq!(log.runs_of(7), [1]);
    assert_eq!(
        log.all().len(),
        1,
        "no handler ever saw a bad entry: {:?}",
        log.all()
    );
    assert_eq!(stat(&stats.retried), 0, "not retried");
    let dead = dlq.peek(20).await?;
    for (i, (raw, why)) in bad.iter().enumerate() {
        let m = &dead[i];
        let failures = m.failures();
        assert_eq!(failures.len(), 1, "dead-lettered once, at once: {m:?}");
        assert!(
            failures[0].reason.contains(why),
            "{}: {why}",
            failures[0].reason
        );
        match std::str::from_utf8(raw) {
            Ok(text) => assert_eq!(m.data["_raw"], *text, "the raw bytes are kept"),
            Err(_) => assert_eq!(
                m.data["_raw_hex"], "fffe7b7d",
                "the raw bytes are kept, as hex"
            ),
        }
    }
    if h.redis_server().is_some() {
        assert_eq!(dead[3].data["_raw_hex"], "ff");
        assert!(
            dead[4].failures()[0].reason.contains("no `data` field"),
            "{:?}",
            dead[4]
        );
    }

    // Missing fields one level up: JSON that is no event, and an event
    // without a field its type requires. Dead-lettered at once too.
    let bus = shared_bus(&mq).await?;
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let svc = fast_service("row12-svc", &bus)
        .on(move |_ctx: Context, _e: OrderCreatedEvent| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        })
        .start()
        .await?;
    let sub = bus.subscription_queue("row12-svc").await?;
    sub.send(&json!({"hello": "not an event"})).await?;
    let mut fields = serde_json::Map::new();
    fields.insert("total".into(), json!(3.5));
    bus.publish_envelope(&Envelope::from_parts("OrderCreatedEvent", fields)?)
        .await?;
    let sub_dlq = bus.queues().dead_letter_queue("sub:row12-svc").await?;
    wait_until(
        Duration::from_secs(10),
        "both are dead-lettered",
        || async {
            let n = sub_dlq.peek(10).await.map_err(|e| e.to_string())?.len();
            if n == 2 {
                Ok(())
            } else {
                Err(format!("{n} dead-lettered"))
            }
        },
    )
    .await;
    wait_drained(&sub, Duration::from_secs(5)).await;
    let reasons: Vec<String> = sub_dlq
        .peek(10)
        .await?
        .iter()
        .map(|m| m.failures()[0].reason.clone())
        .collect();
    // Handled concurrently: either may reach the DLQ first.
    assert!(
        reasons.iter().any(|r| r.contains("not an event")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("order_id")),
        "names the missing field: {reasons:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran");
    let m = svc.metrics();
    assert_eq!(
        (m.malformed, m.by_type["OrderCreatedEvent"].rejected),
        (1, 1)
    );
    assert_eq!(stat(&svc.stats().retried), 0, "not retried");
    stop_service(svc).await?;
    Ok(CaseOutcome::Passed)
}

/// Row 13: an oversized payload is refused before sending; an oversized
/// entry already in a queue goes to the DLQ whole.
pub async fn row13_oversized_payload(h: &Harness) -> CaseResult {
    const LIMIT: usize = 4096;
    h.pause_time();
    // On Redis, talk through a proxy that counts the bytes sent.
    let proxy = match h.redis_server() {
        Some(server) => Some(Proxy::start(("127.0.0.1", server.port())).await?),
        None => None,
    };
    let url = proxy.as_ref().map_or(h.url().to_owned(), Proxy::url);
    let base = h.eddy();
    let builder = EddyBuilder::new(&url).prefix(h.prefix());
    let mq = match &proxy {
        Some(_) => builder.open().await?,
        None => builder.with_engine(base.engine().clone())?,
    };
    let small = EddyBuilder::new("")
        .prefix(h.prefix())
        .max_payload_bytes(LIMIT)
        .with_engine(mq.engine().clone())?;
    let (q, _) = mq.create_queue_pair("row13").await?;
    let bus = shared_bus(&mq).await?;
    bus.subscribe("row13-svc", &Subscription::All).await?;

    // 100 MB through Redis; the same check with 2 MB elsewhere, since
    // encoding 100 MB takes seconds in a debug build.
    let blob = match &proxy {
        Some(_) => "x".repeat(100 << 20),
        None => "x".repeat(2 << 20),
    };
    let sent_before = proxy.as_ref().map_or(0, Proxy::bytes_to_server);
    let r = q.send(&json!({"blob": blob})).await;
    assert_eq!(kinds(&r), Some(ErrorKind::PayloadTooLarge), "{r:?}");
    let message = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("limit"), "says what to do: {message}");
    let mut fields = serde_json::Map::new();
    fields.insert("blob".into(), Value::String("y".repeat(2 << 20)));
    let r = bus
        .publish_envelope(&Envelope::from_parts("BlobEvent", fields)?)
        .await;
    assert_eq!(kinds(&r), Some(ErrorKind::PayloadTooLarge), "{r:?}");
    if let Some(proxy) = &proxy {
        let sent = proxy.bytes_to_server() - sent_before;
        assert!(
            sent < 1024,
            "rejected before sending: {sent} bytes went to Redis"
        );
    }
    assert_eq!(q.info().await?.length, 0);
    assert_eq!(
        bus.subscription_queue("row13-svc")
            .await?
            .info()
            .await?
            .length,
        0
    );

    // An oversized entry already in a queue (another producer with a larger
    // limit wrote it) goes to the DLQ when read, whole.
    let (sq, sdlq) = small.create_queue_pair("row13-small").await?;
    let big = serde_json::to_vec(&json!({"n": 1, "pad": "y".repeat(3 * LIMIT)}))?;
    append_raw(&small, &sq, &big).await?;
    sq.send(&json!({"n": 2})).await?;
    let log = Log::default();
    let lp = Loop::acking(sq.clone(), fast(), &log);
    wait_until(
        Duration::from_secs(10),
        "the oversized entry is dead-lettered",
        || async {
            let dead = sdlq.peek(10).await.map_err(|e| e.to_string())?.len();
            if dead == 1 && log.ns().contains(&2) {
                Ok(())
            } else {
                Err(format!("dead {dead} log {:?}", log.all()))
            }
        },
    )
    .await;
    wait_drained(&sq, Duration::from_secs(5)).await;
    lp.stop().await?;
    assert_eq!(
        log.ns(),
        BTreeSet::from([2]),
        "the handler never saw the oversized entry"
    );
    let dead = &sdlq.peek(10).await?[0];
    let reason = &dead.failures()[0].reason;
    assert!(
        reason.contains(&format!("over this reader's {LIMIT}-byte limit")),
        "{reason}"
    );
    let kept = dead.raw_data().unwrap_or_default();
    assert!(
        kept.len() > big.len() && kept.starts_with(&big[..big.len() - 1]),
        "every byte is kept"
    );
    Ok(CaseOutcome::Passed)
}

/// Row 14: a malformed id is a typed error before any command reaches the
/// engine; a well-formed unknown id acknowledges, deletes and moves
/// nothing. Every call goes through an engine that counts the calls reaching
/// the real one (on Redis, through a proxy that counts the bytes too): the
/// refusals must leave both counts where they were.
pub async fn row14_malformed_ids(h: &Harness) -> CaseResult {
    let proxy = match h.redis_server() {
        Some(server) => Some(Proxy::start(("127.0.0.1", server.port())).await?),
        None => None,
    };
    let underneath = match &proxy {
        Some(p) => eddy::engine::open(&p.url()).await?,
        None => h.engine().clone(),
    };
    let engine = CountingEngine::new(underneath);
    let mq = h.builder().with_engine(engine.clone())?;
    let (q, dlq) = mq.create_queue_pair("row14").await?;
    let id = q.send(&json!({"n": 1})).await?;
    q.receive(&Receive::new()).await?;

    let bytes = || proxy.as_ref().map_or(0, Proxy::bytes_to_server);
    let (calls_before, bytes_before) = (engine.calls(), bytes());
    for bad in [
        "nope",
        "12",
        "1-x",
        "-1",
        "1-2-3",
        "",
        " 1-0",
        "1-0 ",
        "99999999999999999999999-0",
    ] {
        let r = bad.parse::<EntryId>();
        assert_eq!(
            r.as_ref().err().map(eddy::Error::kind),
            Some(ErrorKind::InvalidMessageId),
            "{bad:?}: {r:?}"
        );
    }
    assert_eq!(
        kinds(&dlq.ack(&[id]).await),
        Some(ErrorKind::InvalidArgument),
        "a DLQ is never acknowledged"
    );
    assert_eq!(
        kinds(&q.requeue(&[id]).await),
        Some(ErrorKind::InvalidArgument),
        "only a DLQ requeues"
    );
    assert_eq!(
        kinds(&dlq.dead_letter(&[id], "r").await),
        Some(ErrorKind::InvalidArgument),
        "a DLQ has no DLQ of its own"
    );
    assert_eq!(
        (engine.calls(), bytes()),
        (calls_before, bytes_before),
        "typed errors before any command (engine calls, bytes to Redis)"
    );
    // No ids: nothing to do, and nothing sent to Redis for it.
    assert_eq!(q.ack(&[]).await?, 0);
    assert_eq!(q.delete(&[]).await?, 0);
    assert_eq!(bytes(), bytes_before, "no command for an empty id list");

    // Well-formed but unknown, the extremes included: acknowledges,
    // deletes, moves nothing.
    for unknown in [EntryId::new(1, 0), EntryId::MIN, EntryId::MAX] {
        assert_eq!(q.ack(&[unknown]).await?, 0, "{unknown}");
        assert_eq!(q.delete(&[unknown]).await?, 0, "{unknown}");
        assert_eq!(q.dead_letter(&[unknown], "r").await?, 0, "{unknown}");
        assert_eq!(dlq.requeue(&[unknown]).await?, 0, "{unknown}");
        assert_eq!(dlq.delete(&[unknown]).await?, 0, "{unknown}");
    }
    assert!(engine.calls() > calls_before, "these did reach the engine");
    assert_eq!(
        q.ack(&[EntryId::new(1, 0), id]).await?,
        1,
        "the known one counts"
    );
    let info = q.info().await?;
    assert_eq!((info.length, info.pending), (1, 0));
    assert!(dlq.peek(10).await?.is_empty());
    Ok(CaseOutcome::Passed)
}

/// Row 15: events of a type the service does not handle are acknowledged,
/// never left pending or retried.
pub async fn row15_unknown_event_type(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let bus = shared_bus(&mq).await?;
    let svc = fast_service("row15-svc", &bus)
        .on(|_ctx: Context, _e: OrderCreatedEvent| async { Ok(()) })
        .start()
        .await?;
    // An old subscription routes types the service no longer handles.
    match h.redis_server() {
        Some(server) => {
            let routes = format!("{}routes:", bus.queues().prefix());
            server.redis_cli(["SADD", &format!("{routes}MysteryEvent"), "row15-svc"])?;
            server.redis_cli(["SADD", &format!("{routes}RetiredEvent"), "row15-svc"])?;
        }
        None => {
            bus.subscribe(
                "row15-svc",
                &Subscription::types(["MysteryEvent", "RetiredEvent"]),
            )
            .await?;
        }
    }
    for i in 0..5 {
        let mut fields = serde_json::Map::new();
        fields.insert("i".into(), json!(i));
        let kind = if i % 2 == 0 {
            "MysteryEvent"
        } else {
            "RetiredEvent"
        };
        let sent = bus
            .publish_envelope(&Envelope::from_parts(kind, fields)?)
            .await?;
        assert_eq!(sent.delivered_to, ["row15-svc"]);
        bus.publish(&order(&format!("o{i}"))).await?;
    }
    let q = bus.subscription_queue("row15-svc").await?;
    wait_until(
        Duration::from_secs(10),
        "every event is settled",
        || async {
            let m = svc.metrics();
            if m.unknown == 5 && m.handled() == 5 {
                Ok(())
            } else {
                Err(format!("{m:?}"))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    assert!(bus
        .queues()
        .dead_letter_queue("sub:row15-svc")
        .await?
        .peek(10)
        .await?
        .is_empty());
    assert_eq!(stat(&svc.stats().retried), 0, "acknowledged, not retried");
    stop_service(svc).await?;
    Ok(CaseOutcome::Passed)
}

/// Row 18: a TTL that passes while no consumer and no sweeper runs: the
/// expired message is never handled, nor dead-lettered.
pub async fn row18_ttl_passes_unswept(h: &Harness) -> CaseResult {
    h.pause_time();
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("row18").await?;
    let ttl = SendOptions::new().ttl(Duration::from_secs(1));
    q.send_with(&json!({"n": 1}), &ttl).await?;
    q.send(&json!({"n": 2})).await?;
    // A consumer takes a TTL'd message and dies before handling it.
    q.send_with(&json!({"n": 3}), &ttl).await?;
    q.send(&json!({"n": 4})).await?;
    let _ = q
        .receive(&Receive::new().count(10).consumer("died"))
        .await?;
    q.send_with(&json!({"n": 5}), &ttl).await?;
    q.send(&json!({"n": 6})).await?;
    // Consumers paused 2 s; no sweeper runs.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = Log::default();
    let lp = Loop::acking(
        q.clone(),
        fast().visibility_timeout(Duration::from_millis(200)),
        &log,
    );
    wait_until(
        Duration::from_secs(10),
        "the live messages are handled",
        || async {
            let ns = log.ns();
            if [2, 4, 6].iter().all(|n| ns.contains(n)) {
                Ok(())
            } else {
                Err(format!("{:?}", log.all()))
            }
        },
    )
    .await;
    wait_drained(&q, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    lp.stop().await?;
    let ns = log.ns();
    assert!(
        !ns.contains(&1) && !ns.contains(&3) && !ns.contains(&5),
        "an expired message is never handled: {:?}",
        log.all()
    );
    let left: Vec<Value> = q
        .peek(10)
        .await?
        .iter()
        .map(|m| m.data["n"].clone())
        .collect();
    assert!(
        !left.contains(&json!(1)) && !left.contains(&json!(3)) && !left.contains(&json!(5)),
        "expired ones are removed: {left:?}"
    );
    assert!(dlq.peek(10).await?.is_empty(), "expired, not dead-lettered");
    Ok(CaseOutcome::Passed)
}
