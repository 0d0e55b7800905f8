//! Sending: ids, payload round trips, options, and rejected input that
//! writes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy::{ErrorKind, SendOptions};
use serde_json::{json, Value};

use super::{
    assert_kind, assert_recent, ns, numbered, send_numbered, take, CaseResult, Harness, Outcome,
};

/// Each send returns a larger id than the one before, and receive hands out
/// exactly those ids, in order.
pub async fn send_returns_increasing_ids_that_receive_returns(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("ids").await?;
    let sent = send_numbered(&q, 0..50).await?;
    assert!(
        sent.windows(2).all(|w| w[0] < w[1]),
        "ids must increase: {sent:?}"
    );
    let got = q.receive(&take(100, "c")).await?;
    let got_ids: Vec<_> = got.iter().map(|m| m.id).collect();
    assert_eq!(got_ids, sent);
    assert_eq!(ns(&got), (0..50).collect::<Vec<_>>());
    // A send after reading still gets a larger id.
    let later = q.send(&numbered(50)).await?;
    assert!(later > sent[49]);
    Ok(Outcome::Passed)
}

/// Payloads come back exactly as sent: nesting, unicode, escapes, numbers at
/// their limits, null, empty containers; through receive and peek alike.
pub async fn payload_round_trips_exactly(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("payloads").await?;
    let payloads = vec![
        json!({}),
        json!({"a": 1}),
        json!({
            "nested": {"deep": {"deeper": [1, [2, [3, {"x": null}]]]}},
            "unicode": "héllo wörld — 日本語 🦀 \u{1F600}",
            "escapes": "quote \" backslash \\ newline \n tab \t nul \u{0000} bell \u{0007}",
            "numbers": [0, -1, 1.5, -0.25, 1e-7, 1.7976931348623157e308, u64::MAX, i64::MIN],
            "bools": [true, false],
            "null": null,
            "empty_obj": {},
            "empty_arr": [],
            "empty_str": "",
            "_failures_lookalike": {"_metadata": "nested is fine"},
        }),
        json!({"long": "x".repeat(10_000)}),
        json!({"\u{e9}key with spaces": "v", "": "empty key"}),
    ];
    for p in &payloads {
        q.send(p).await?;
    }
    let peeked = q.peek(100).await?;
    let got = q.receive(&take(100, "c")).await?;
    assert_eq!(got.len(), payloads.len());
    for ((m, pk), want) in got.iter().zip(&peeked).zip(&payloads) {
        assert_eq!(&Value::Object(m.data.clone()), want);
        assert_eq!(&Value::Object(pk.data.clone()), want);
        assert_eq!(m.message_id, pk.message_id);
    }
    Ok(Outcome::Passed)
}

/// Any `Serialize` type that serializes to an object can be sent, and read
/// back typed.
pub async fn typed_payloads_round_trip(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("typed").await?;
    let mut map = BTreeMap::new();
    map.insert("b".to_owned(), 2_i64);
    map.insert("a".to_owned(), -1);
    q.send(&map).await?;
    let got = q.receive(&take(1, "c")).await?;
    let back: BTreeMap<String, i64> = got[0].payload()?;
    assert_eq!(back, map);
    let wrong: eddy::Result<BTreeMap<String, String>> = got[0].payload();
    assert_kind(wrong, ErrorKind::Decode);
    Ok(Outcome::Passed)
}

/// `SendOptions::message_id` is stored and read back; without it each
/// message gets a distinct UUID. The timestamp is the send time.
pub async fn message_id_option_is_kept(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("mid").await?;
    let id = q
        .send_with(
            &numbered(0),
            &SendOptions::new().message_id("order-7-created"),
        )
        .await?;
    assert!(id.is_some(), "an undelayed send returns its id");
    q.send(&numbered(1)).await?;
    q.send(&numbered(2)).await?;
    let got = q.receive(&take(10, "c")).await?;
    assert_eq!(got[0].message_id, "order-7-created");
    assert_eq!(Some(got[0].id), id);
    for m in &got[1..] {
        assert_eq!(m.message_id.len(), 36, "a UUID: {}", m.message_id);
        assert_eq!(m.message_id.matches('-').count(), 4);
    }
    assert_ne!(got[1].message_id, got[2].message_id);
    for m in &got {
        assert_recent(m.timestamp, 60.0);
        assert_eq!(m.ttl, None);
    }
    // The same message id twice is allowed: it is the sender's business.
    q.send_with(
        &numbered(3),
        &SendOptions::new().message_id("order-7-created"),
    )
    .await?;
    assert_eq!(q.info().await?.length, 4);
    Ok(Outcome::Passed)
}

/// A top-level `_metadata` field is reserved: `InvalidArgument`, nothing
/// written. A nested one is the payload's own business.
pub async fn metadata_field_is_reserved(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("meta").await?;
    assert_kind(
        q.send(&json!({"_metadata": {"id": "x"}})).await,
        ErrorKind::InvalidArgument,
    );
    assert_kind(
        q.send(&json!({"a": 1, "_metadata": null})).await,
        ErrorKind::InvalidArgument,
    );
    assert_eq!(q.info().await?.length, 0);
    q.send(&json!({"inner": {"_metadata": 1}, "s": "\"_metadata\""}))
        .await?;
    let got = q.receive(&take(1, "c")).await?;
    assert_eq!(got[0].data["inner"], json!({"_metadata": 1}));
    assert_eq!(got[0].data["s"], json!("\"_metadata\""));
    Ok(Outcome::Passed)
}

/// A payload that is not a JSON object fails with `NotAnObject` and writes
/// nothing.
pub async fn non_object_payload_is_rejected_and_nothing_written(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("objects").await?;
    q.send(&numbered(0)).await?;
    let bad = [
        json!([1, 2]),
        json!("text"),
        json!(42),
        json!(1.5),
        json!(true),
        json!(null),
        json!([]),
    ];
    for p in &bad {
        assert_kind(q.send(p).await, ErrorKind::NotAnObject);
        assert_kind(
            q.send_with(p, &SendOptions::new()).await,
            ErrorKind::NotAnObject,
        );
    }
    assert_kind(q.send(&vec![1, 2]).await, ErrorKind::NotAnObject);
    assert_kind(q.send(&"str").await, ErrorKind::NotAnObject);
    assert_kind(q.send(&()).await, ErrorKind::NotAnObject);
    let info = q.info().await?;
    assert_eq!((info.length, info.lag), (1, 1));
    Ok(Outcome::Passed)
}

/// A payload over the size limit fails with `PayloadTooLarge` and writes
/// nothing; one just under it is accepted.
pub async fn oversize_payload_is_rejected_and_nothing_written(h: &Harness) -> CaseResult {
    let mq = h.eddy_from(h.builder().max_payload_bytes(1024));
    assert_eq!(mq.max_payload_bytes(), 1024);
    let (q, _) = mq.create_queue_pair("big").await?;
    assert_kind(
        q.send(&json!({"x": "y".repeat(2000)})).await,
        ErrorKind::PayloadTooLarge,
    );
    assert_kind(
        q.send_batch(&[numbered(0), json!({"x": "y".repeat(2000)})])
            .await,
        ErrorKind::PayloadTooLarge,
    );
    let mut tx = mq.transaction();
    assert_kind(
        tx.send(&q, &json!({"x": "y".repeat(2000)})).map(|_| ()),
        ErrorKind::PayloadTooLarge,
    );
    assert_eq!(q.info().await?.length, 0);
    // ~900 bytes of payload plus the metadata stays under 1024.
    q.send(&json!({"x": "y".repeat(850)})).await?;
    assert_eq!(q.info().await?.length, 1);
    // The default limit is 1 MiB.
    let (q2, _) = h.eddy().create_queue_pair("big2").await?;
    q2.send(&json!({"x": "y".repeat(1_000_000)})).await?;
    assert_kind(
        q2.send(&json!({"x": "y".repeat(1 << 20)})).await,
        ErrorKind::PayloadTooLarge,
    );
    assert_eq!(q2.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// Invalid options fail with `InvalidArgument` and write nothing.
pub async fn invalid_send_options_are_rejected(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("opts").await?;
    let p = numbered(0);
    assert_kind(
        q.send_with(&p, &SendOptions::new().ttl(Duration::ZERO))
            .await,
        ErrorKind::InvalidArgument,
    );
    assert_kind(
        q.send_with(&p, &SendOptions::new().message_id("")).await,
        ErrorKind::InvalidArgument,
    );
    assert_kind(
        q.send_with(&p, &SendOptions::new().message_id("m".repeat(201)))
            .await,
        ErrorKind::InvalidArgument,
    );
    let info = q.info().await?;
    assert_eq!((info.length, info.delayed), (0, 0));
    q.send_with(&p, &SendOptions::new().message_id("m".repeat(200)))
        .await?;
    assert_eq!(q.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// `send_batch` writes all messages, in order, with increasing ids; an
/// empty batch writes nothing.
pub async fn send_batch_sends_all_in_order(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("batch").await?;
    assert!(q.send_batch::<Value>(&[]).await?.is_empty());
    assert_eq!(q.info().await?.length, 0);
    let payloads: Vec<Value> = (0..25).map(numbered).collect();
    let sent = q.send_batch(&payloads).await?;
    assert_eq!(sent.len(), 25);
    assert!(sent.windows(2).all(|w| w[0] < w[1]));
    let more = q.send_batch(&[numbered(25)]).await?;
    assert!(more[0] > sent[24]);
    let got = q.receive(&take(100, "c")).await?;
    assert_eq!(ns(&got), (0..26).collect::<Vec<_>>());
    let got_ids: Vec<_> = got.iter().map(|m| m.id).collect();
    assert_eq!(&got_ids[..25], &sent[..]);
    let mids: std::collections::HashSet<_> = got.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(mids.len(), 26, "each message gets its own message id");
    Ok(Outcome::Passed)
}

/// A batch with one bad payload fails and writes none of the others.
pub async fn send_batch_with_a_bad_payload_writes_nothing(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _) = mq.create_queue_pair("batch").await?;
    let batch = vec![numbered(0), json!([1]), numbered(2)];
    assert_kind(q.send_batch(&batch).await, ErrorKind::NotAnObject);
    let batch = vec![numbered(0), json!({"_metadata": 1})];
    assert_kind(q.send_batch(&batch).await, ErrorKind::InvalidArgument);
    assert_eq!(q.info().await?.length, 0);
    Ok(Outcome::Passed)
}

/// Sending to a queue that was deleted fails with `QueueNotFound`.
pub async fn send_to_deleted_queue_is_not_found(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("bye").await?;
    mq.delete_queue("bye", true).await?;
    assert_kind(q.send(&numbered(0)).await, ErrorKind::QueueNotFound);
    assert_kind(
        q.send_with(
            &numbered(0),
            &SendOptions::new().delay(Duration::from_secs(60)),
        )
        .await,
        ErrorKind::QueueNotFound,
    );
    // The kept DLQ still takes messages.
    dlq.send(&numbered(1)).await?;
    assert_eq!(dlq.info().await?.length, 1);
    Ok(Outcome::Passed)
}
