//! Dead-lettering and requeueing (atomic moves with history), and entries
//! that cannot be decoded.

use bytes::Bytes;
use eddy::engine::Append;
use eddy::{ErrorKind, SendOptions};
use serde_json::{json, Value};

use super::{
    assert_kind, assert_recent, ids, ns, numbered, send_numbered, take, CaseResult, Harness,
    Outcome,
};

/// `dead_letter` moves a message to the DLQ in one step: gone from the
/// queue (and its pending list), in the DLQ with its payload, message id and
/// `_failures: [{timestamp, reason}]`.
pub async fn dead_letter_moves_atomically(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("dl").await?;
    q.send_with(
        &json!({"n": 0, "deep": {"k": ["v"]}}),
        &SendOptions::new().message_id("x1"),
    )
    .await?;
    send_numbered(&q, 1..2).await?;
    let got = q.receive(&take(2, "c")).await?;
    assert_eq!(q.dead_letter(&[got[0].id], "payment declined").await?, 1);

    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (1, 1, 0));
    assert_eq!(info.consumers[0].pending, 1);
    assert_eq!(ns(&q.peek(10).await?), vec![1]);

    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(m.message_id, "x1");
    assert_eq!(m.timestamp, got[0].timestamp, "the send time is kept");
    assert_eq!(m.data["n"], json!(0));
    assert_eq!(m.data["deep"], json!({"k": ["v"]}));
    let failures = m.data["_failures"].as_array().expect("_failures is a list");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["reason"], json!("payment declined"));
    assert_recent(
        failures[0]["timestamp"]
            .as_f64()
            .expect("a float timestamp"),
        60.0,
    );
    let typed = m.failures();
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0].reason, "payment declined");
    let dinfo = dlq.info().await?;
    assert_eq!((dinfo.length, dinfo.lag, dinfo.pending), (1, 1, 0));
    Ok(Outcome::Passed)
}

/// Dead-lettering an id that already moved returns 0 and moves nothing.
pub async fn dead_letter_twice_returns_zero(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("dl2").await?;
    let sent = send_numbered(&q, 0..2).await?;
    assert_eq!(q.dead_letter(&sent[..1], "once").await?, 1);
    assert_eq!(q.dead_letter(&sent[..1], "twice").await?, 0);
    assert_eq!(
        q.dead_letter(&[sent[0], sent[0], sent[1], sent[1]], "mixed")
            .await?,
        1
    );
    assert_eq!(q.dead_letter(&[], "nothing").await?, 0);
    assert_eq!(
        q.dead_letter(&[eddy::EntryId::new(1, 0)], "unknown")
            .await?,
        0
    );
    assert_eq!(dlq.info().await?.length, 2);
    let reasons: Vec<String> = dlq
        .peek(10)
        .await?
        .iter()
        .map(|m| m.failures()[0].reason.clone())
        .collect();
    assert_eq!(reasons, ["once", "mixed"]);
    assert_eq!(q.info().await?.length, 0);
    Ok(Outcome::Passed)
}

/// A message can be dead-lettered before it was ever delivered.
pub async fn dead_letter_of_undelivered_message(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("dl3").await?;
    let sent = send_numbered(&q, 0..3).await?;
    assert_eq!(q.dead_letter(&sent[1..2], "poison").await?, 1);
    let info = q.info().await?;
    assert_eq!((info.length, info.lag, info.pending), (2, 2, 0));
    assert_eq!(ns(&q.receive(&take(10, "c")).await?), vec![0, 2]);
    assert_eq!(ns(&dlq.peek(10).await?), vec![1]);
    Ok(Outcome::Passed)
}

/// `dead_letter_messages` moves messages already in hand (no read first);
/// stale messages (already moved or deleted) are skipped.
pub async fn dead_letter_messages_in_hand(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("dl4").await?;
    send_numbered(&q, 0..4).await?;
    let got = q.receive(&take(4, "c")).await?;
    q.delete(&[got[3].id]).await?;
    assert_eq!(q.dead_letter_messages(&got[..2], "bad").await?, 2);
    assert_eq!(
        q.dead_letter_messages(&got, "again").await?,
        1,
        "only n = 2 is still there"
    );
    assert_eq!(q.dead_letter_messages(&[], "none").await?, 0);
    assert_eq!(ns(&dlq.peek(10).await?), vec![0, 1, 2]);
    let info = q.info().await?;
    assert_eq!((info.length, info.pending), (0, 0));
    Ok(Outcome::Passed)
}

/// Dead-lettering from a DLQ and requeueing into a queue that is not a DLQ
/// are `InvalidArgument`, and change nothing.
pub async fn dlq_only_and_queue_only_operations_are_rejected(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("dl5").await?;
    let sent = send_numbered(&q, 0..2).await?;
    q.dead_letter(&sent[..1], "x").await?;
    let dead = dlq.peek(10).await?;
    assert_kind(
        dlq.dead_letter(&ids(&dead), "again").await,
        ErrorKind::InvalidArgument,
    );
    assert_kind(
        dlq.dead_letter_messages(&dead, "again").await,
        ErrorKind::InvalidArgument,
    );
    assert_kind(q.requeue(&sent[1..]).await, ErrorKind::InvalidArgument);
    assert_kind(q.requeue_all().await, ErrorKind::InvalidArgument);
    assert_eq!(q.info().await?.length, 1);
    assert_eq!(dlq.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// `requeue` moves a message back to its queue in one step, appending
/// `_requeues: [{timestamp, from_dlq, to_queue}]` (full stream keys) and
/// keeping `_failures` and the message id; it is delivered again as new.
pub async fn requeue_moves_back_with_history(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("rq").await?;
    q.send_with(&numbered(0), &SendOptions::new().message_id("keep-me"))
        .await?;
    send_numbered(&q, 1..2).await?;
    let got = q.receive(&take(2, "c")).await?;
    q.ack(&got[1..].iter().map(|m| m.id).collect::<Vec<_>>())
        .await?;
    q.dead_letter(&[got[0].id], "flaky").await?;
    let dead = dlq.peek(10).await?;
    assert_eq!(dlq.requeue(&ids(&dead)).await?, 1);
    assert_eq!(dlq.info().await?.length, 0);
    assert_eq!(dlq.requeue(&ids(&dead)).await?, 0, "already requeued");

    let info = q.info().await?;
    assert_eq!((info.length, info.lag, info.pending), (2, 1, 0));
    let back = q.receive(&take(10, "c")).await?;
    assert_eq!(back.len(), 1);
    let m = &back[0];
    assert_eq!(m.delivery_count, 1);
    assert_eq!(m.message_id, "keep-me");
    assert_eq!(m.data["n"], json!(0));
    assert_eq!(m.failures().len(), 1);
    assert_eq!(m.failures()[0].reason, "flaky");
    let requeues = m.data["_requeues"].as_array().expect("_requeues is a list");
    assert_eq!(requeues.len(), 1);
    assert_eq!(
        requeues[0]["from_dlq"],
        json!(format!("{}:dlq", h.stream_key("rq")))
    );
    assert_eq!(requeues[0]["to_queue"], json!(h.stream_key("rq")));
    assert_recent(
        requeues[0]["timestamp"]
            .as_f64()
            .expect("a float timestamp"),
        60.0,
    );
    assert!(
        m.id > got[1].id,
        "a requeued message goes to the end of the queue"
    );
    Ok(Outcome::Passed)
}

/// Requeueing ids that are not in the DLQ returns 0.
pub async fn requeue_unknown_id_returns_zero(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("rq0").await?;
    let sent = send_numbered(&q, 0..1).await?;
    assert_eq!(dlq.requeue(&[]).await?, 0);
    assert_eq!(dlq.requeue(&[eddy::EntryId::new(1, 0)]).await?, 0);
    assert_eq!(
        dlq.requeue(&sent).await?,
        0,
        "an id of the queue, not the DLQ"
    );
    assert_eq!(dlq.requeue_all().await?, 0);
    assert_eq!(q.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// `requeue_all` moves every DLQ message back, oldest first, also past one
/// batch (500).
pub async fn requeue_all_moves_everything(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("rqall").await?;
    let payloads: Vec<Value> = (0..1200).map(numbered).collect();
    let sent = q.send_batch(&payloads).await?;
    // Dead-letter in reverse order, so DLQ order differs from send order.
    let reversed: Vec<_> = sent.iter().rev().copied().collect();
    assert_eq!(q.dead_letter(&reversed, "all bad").await?, 1200);
    assert_eq!(q.info().await?.length, 0);
    assert_eq!(dlq.info().await?.length, 1200);

    assert_eq!(dlq.requeue_all().await?, 1200);
    assert_eq!(dlq.info().await?.length, 0);
    let info = q.info().await?;
    assert_eq!((info.length, info.lag), (1200, 1200));
    let back = q.receive(&take(2000, "c")).await?;
    let want: Vec<u64> = (0..1200).rev().collect();
    assert_eq!(ns(&back), want, "requeued in DLQ order");
    assert!(back.iter().all(
        |m| m.failures().len() == 1 && m.data["_requeues"].as_array().map(Vec::len) == Some(1)
    ));
    Ok(Outcome::Passed)
}

/// Each trip through the DLQ appends to the histories, never replaces them.
pub async fn failure_history_accumulates_over_round_trips(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("hist").await?;
    q.send_with(&numbered(0), &SendOptions::new().message_id("m"))
        .await?;
    for round in 0..3 {
        let got = q.receive(&take(1, "c")).await?;
        assert_eq!(got.len(), 1, "round {round}");
        assert_eq!(got[0].message_id, "m");
        assert_eq!(
            q.dead_letter_messages(&got, &format!("fail {round}"))
                .await?,
            1
        );
        assert_eq!(dlq.requeue_all().await?, 1);
    }
    let m = &q.peek(1).await?[0];
    let reasons: Vec<String> = m.failures().into_iter().map(|f| f.reason).collect();
    assert_eq!(reasons, ["fail 0", "fail 1", "fail 2"]);
    assert_eq!(m.data["_requeues"].as_array().map(Vec::len), Some(3));
    assert_eq!(m.message_id, "m");
    let ts: Vec<f64> = m.failures().iter().map(|f| f.timestamp).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    Ok(Outcome::Passed)
}

/// Entries that cannot be decoded (not UTF-8, not JSON, not an object) are
/// moved to the DLQ with their raw content (`_raw` or `_raw_hex`) and the
/// reason; receive never returns them, and never drops them.
pub async fn undecodable_entries_go_to_dlq(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("raw").await?;
    let raw = |data: &'static [u8]| Append::new(q.keys().clone(), Bytes::from_static(data));
    q.send(&numbered(0)).await?;
    h.engine().append(&[raw(b"\xff"), raw(b"[1]")]).await?;
    q.send(&numbered(1)).await?;
    h.engine().append(&[raw(b"{nope"), raw(b"")]).await?;
    q.send(&numbered(2)).await?;
    assert_eq!(q.info().await?.length, 7);

    let got = q.receive(&take(100, "c")).await?;
    assert_eq!(
        ns(&got),
        vec![0, 1, 2],
        "only the decodable messages are returned"
    );
    let info = q.info().await?;
    assert_eq!((info.length, info.pending, info.lag), (3, 3, 0));
    assert_eq!(
        info.consumers[0].pending, 3,
        "undecodable entries are not left pending"
    );

    let dead = dlq.peek(10).await?;
    assert_eq!(dead.len(), 4, "every undecodable entry is kept: {dead:?}");
    let field = |i: usize, k: &str| dead[i].data.get(k).cloned();
    assert_eq!(field(0, "_raw_hex"), Some(json!("ff")));
    assert_eq!(field(1, "_raw"), Some(json!("[1]")));
    assert_eq!(field(2, "_raw"), Some(json!("{nope")));
    assert_eq!(field(3, "_raw"), Some(json!("")));
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| m.failures()[0].reason.clone())
        .collect();
    assert!(reasons[0].contains("UTF-8"), "{reasons:?}");
    assert!(reasons[1].contains("not an object"), "{reasons:?}");
    assert!(reasons[2].contains("JSON"), "{reasons:?}");
    assert!(reasons[3].contains("JSON"), "{reasons:?}");
    for m in &dead {
        assert_recent(m.failures()[0].timestamp, 60.0);
    }
    let kept: Vec<&[u8]> = dead.iter().filter_map(|m| m.raw_data()).collect();
    assert_eq!(
        kept,
        [&b"\xff"[..], b"[1]", b"{nope", b""],
        "the entries' bytes are kept as they were"
    );
    // Nothing more to read, and a second receive does not resurface them.
    assert!(q.receive(&take(100, "c")).await?.is_empty());
    assert_eq!(dlq.info().await?.length, 4);
    Ok(Outcome::Passed)
}

/// A message over a reader's payload limit is never shortened: a reader
/// with a smaller limit than the sender's dead-letters it whole (by id, or
/// because it cannot take it), requeues it whole, and a reader with a
/// large enough limit then gets every byte back.
pub async fn oversized_message_moves_whole(h: &Harness) -> CaseResult {
    let sender = h.eddy_from(h.builder().max_payload_bytes(1 << 20));
    let small = h.eddy_from(h.builder().max_payload_bytes(1500));
    let (q, _) = sender.create_queue_pair("huge").await?;
    let (sq, sdlq) = (
        small.queue("huge").await?,
        small.dead_letter_queue("huge").await?,
    );
    let body = "y".repeat(3000);
    let sent = q.send(&json!({"x": body})).await?;
    let original = q.peek(1).await?[0].raw_data().map(<[u8]>::to_vec);

    // Dead-lettered by id, then requeued, by the small-limit client.
    assert_eq!(sq.dead_letter(&[sent], "inspect").await?, 1);
    let dead = sdlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data["x"], json!(body), "kept whole in the DLQ");
    assert_eq!(sdlq.requeue_all().await?, 1);

    // Received by the small-limit client: to the DLQ, whole, with a reason
    // naming the size and the limit.
    assert!(sq.receive(&take(10, "c")).await?.is_empty());
    assert_eq!(sq.info().await?.length, 0);
    let dead = sdlq.peek(10).await?;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].data["x"], json!(body));
    let reasons: Vec<String> = dead[0].failures().into_iter().map(|f| f.reason).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[1].contains("1500-byte limit"), "{reasons:?}");
    let raw = dead[0].raw_data().expect("data").to_vec();
    let original = original.expect("data");
    // The original bytes up to the metadata's ttl are still there, unchanged.
    assert_eq!(raw[..3000], original[..3000]);

    // A client with a large enough limit gets it back intact.
    assert_eq!(
        sender
            .dead_letter_queue("huge")
            .await?
            .requeue_all()
            .await?,
        1
    );
    let got = q.receive(&take(10, "c")).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data["x"], json!(body));
    assert_eq!(got[0].failures().len(), 2);
    Ok(Outcome::Passed)
}

/// Dead-lettering and requeueing keep the payload's bytes exactly (big
/// integers, key order, escapes, spacing): the history records are the only
/// bytes added, and the TTL in `_metadata` is the only one changed.
pub async fn moves_keep_the_payload_bytes(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("bytes").await?;
    let payload = r#"{"z": 123456789012345678901234567890123, "a" :"\u00e9\n\"", "f": 1.50, "n": -0.0, "o": {"b":1,"a":2}, "_metadata": {"id": "m", "timestamp": 1.5, "ttl": 60, "extra": [1]}}"#;
    h.engine()
        .append(&[Append::new(q.keys().clone(), Bytes::from(payload))])
        .await?;
    let got = q.receive(&take(1, "c")).await?;
    assert_eq!(got[0].raw_data(), Some(payload.as_bytes()));
    assert_eq!(q.dead_letter_messages(&got, "why").await?, 1);
    let dead = &dlq.peek(1).await?[0];
    let raw = String::from_utf8(dead.raw_data().expect("data").to_vec()).expect("UTF-8");
    let cut = payload.find("\"ttl\": 60").expect("ttl") + "\"ttl\": ".len();
    assert_eq!(raw[..cut], payload[..cut], "{raw}");
    let rest = &raw[cut..];
    assert!(rest.starts_with(r#"null, "extra": [1]}"#), "{raw}");
    assert!(rest.contains(r#","_failures":[{"#), "{raw}");
    assert_eq!(dead.failures()[0].reason, "why");
    assert_eq!((dead.message_id.as_str(), dead.ttl), ("m", None));

    assert_eq!(dlq.requeue_all().await?, 1);
    let back = &q.peek(1).await?[0];
    let raw2 = String::from_utf8(back.raw_data().expect("data").to_vec()).expect("UTF-8");
    assert!(raw2.starts_with(&raw[..raw.len() - 1]), "{raw2}");
    assert!(raw2.ends_with(r#"}]}"#), "{raw2}");
    assert!(raw2.contains(r#","_requeues":[{"#), "{raw2}");
    assert!(
        back.payload_json(&[]).get().starts_with(
            r#"{"z": 123456789012345678901234567890123, "a" :"\u00e9\n\"", "f": 1.50,"#
        ),
        "{raw2}"
    );
    Ok(Outcome::Passed)
}

/// A payload sent as written (a 40-digit integer, keys out of order)
/// survives dead-letter → requeue, twice over, byte for byte: each move
/// adds its history record before the closing brace or bracket and changes
/// nothing else, and the payload a reader gets back is the one sent.
pub async fn big_integers_and_key_order_survive_dead_letter_and_requeue(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("big").await?;
    let text = r#"{"zeta": 1234567890123456789012345678901234567890, "alpha": {"y": -9876543210987654321098765432109876543210, "b": 1}, "mid": 0.1}"#;
    q.send(&serde_json::value::RawValue::from_string(text.to_owned()).map_err(eddy::Error::from)?)
        .await?;
    let raw =
        |m: &eddy::Message| String::from_utf8_lossy(m.raw_data().unwrap_or_default()).into_owned();
    // What each move may do: insert text just before the last `tail`
    // bytes (`}` of the object, or `]}` of a history list at its end).
    let grew = |before: &str, after: &str, inserted: &str, tail: usize| {
        let (head, last) = before.split_at(before.len() - tail);
        after.starts_with(head)
            && after.ends_with(last)
            && after[head.len()..].starts_with(inserted)
    };
    let sent = raw(&q.peek(1).await?[0]);
    assert!(sent.starts_with(&text[..text.len() - 1]), "{sent}");

    // By id (the consumer loop's way), then requeued by id.
    let got = q.receive(&take(1, "c")).await?;
    assert_eq!(q.dead_letter(&[got[0].id], "first").await?, 1);
    let dead = dlq.peek(1).await?;
    let after_dl = raw(&dead[0]);
    assert!(
        grew(&sent, &after_dl, r#","_failures":[{"timestamp":"#, 1),
        "{after_dl}"
    );
    assert_eq!(dlq.requeue(&[dead[0].id]).await?, 1);
    let back = q.receive(&take(1, "c")).await?;
    let after_rq = raw(&back[0]);
    assert!(
        grew(&after_dl, &after_rq, r#","_requeues":[{"timestamp":"#, 1),
        "{after_rq}"
    );

    // In hand, then every message of the DLQ: the lists grow in place.
    assert_eq!(q.dead_letter_messages(&back, "second").await?, 1);
    let after_dl2 = raw(&dlq.peek(1).await?[0]);
    let failures_end = after_rq.find(r#"}],"_requeues""#).expect("_failures ends") + 1;
    assert_eq!(
        after_dl2[..failures_end],
        after_rq[..failures_end],
        "{after_dl2}"
    );
    assert!(
        after_dl2[failures_end..].starts_with(r#",{"timestamp":"#),
        "{after_dl2}"
    );
    assert!(
        after_dl2.ends_with(&after_rq[failures_end..]),
        "{after_dl2}"
    );
    assert_eq!(dlq.requeue_all().await?, 1);
    let last = q.receive(&take(1, "c")).await?;
    let after_rq2 = raw(&last[0]);
    assert!(
        grew(&after_dl2, &after_rq2, r#",{"timestamp":"#, 2),
        "{after_rq2}"
    );
    assert_eq!(
        last[0].payload_json(&["_failures", "_requeues"]).get(),
        text,
        "the payload as sent"
    );
    let reasons: Vec<String> = last[0].failures().into_iter().map(|f| f.reason).collect();
    assert_eq!(reasons, ["first", "second"]);
    assert_eq!(last[0].message_id, got[0].message_id);
    Ok(Outcome::Passed)
}

/// The fields the queue writes itself (`_metadata`, `_failures`,
/// `_requeues`, `_leanmq`) are refused in a payload, by every way of
/// sending, and nothing is written.
pub async fn reserved_fields_are_refused(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _dlq) = mq.create_queue_pair("reserved").await?;
    for field in ["_metadata", "_failures", "_requeues", "_leanmq"] {
        let mut bad = serde_json::Map::new();
        bad.insert("n".into(), json!(1));
        bad.insert(
            field.into(),
            json!([{"timestamp": 1.0, "reason": "forged"}]),
        );
        assert_kind(q.send(&bad).await, ErrorKind::InvalidArgument);
        assert_kind(
            q.send_batch(&[json!({"ok": 1}), Value::Object(bad.clone())])
                .await,
            ErrorKind::InvalidArgument,
        );
        let mut tx = mq.transaction();
        assert_kind(tx.send(&q, &bad).map(|_| ()), ErrorKind::InvalidArgument);
    }
    assert_eq!(q.info().await?.length, 0, "nothing was written");
    // A nested field of the same name is the payload's own.
    q.send(&json!({"inner": {"_failures": 1, "_leanmq": 2}}))
        .await?;
    assert_eq!(q.info().await?.length, 1);
    Ok(Outcome::Passed)
}

/// A history record that is not `{timestamp, reason}` is shown with its
/// JSON, not dropped, and the real reasons beside it still show.
pub async fn malformed_failure_records_are_shown(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("badhist").await?;
    let raw = r#"{"n":1,"_failures":[7,{"timestamp":1.0,"reason":"real"},{"reason":5}]}"#;
    h.engine()
        .append(&[Append::new(q.keys().clone(), Bytes::from(raw))])
        .await?;
    let got = q.receive(&take(1, "c")).await?;
    assert_eq!(q.dead_letter_messages(&got, "latest").await?, 1);
    let failures = dlq.peek(1).await?[0].failures();
    let reasons: Vec<&str> = failures.iter().map(|f| f.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains('7'), "{reasons:?}");
    assert_eq!(reasons[1], "real");
    assert!(reasons[2].contains("5"), "{reasons:?}");
    assert_eq!(reasons[3], "latest");
    Ok(Outcome::Passed)
}

/// A DLQ has nowhere further to send an undecodable entry: receiving from
/// the DLQ hands it over raw, with its delivery count.
pub async fn undecodable_entry_in_dlq_is_handed_over_raw(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (_q, dlq) = mq.create_queue_pair("rawdlq").await?;
    h.engine()
        .append(&[Append::new(
            dlq.keys().clone(),
            Bytes::from_static(b"\x00\xfe"),
        )])
        .await?;
    let got = dlq.receive(&take(10, "c")).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.get("_raw_hex"), Some(&json!("00fe")));
    assert_eq!(got[0].delivery_count, 1);
    assert_eq!(got[0].message_id, "");
    let info = dlq.info().await?;
    assert_eq!((info.length, info.pending), (1, 1));
    assert_eq!(dlq.delete(&ids(&got)).await?, 1);
    Ok(Outcome::Passed)
}

/// `peek` shows an undecodable entry raw instead of failing, and does not
/// move it.
pub async fn peek_shows_undecodable_entries_raw(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("rawpeek").await?;
    q.send(&numbered(0)).await?;
    h.engine()
        .append(&[Append::new(
            q.keys().clone(),
            Bytes::from_static(b"not json"),
        )])
        .await?;
    let peeked = q.peek(10).await?;
    assert_eq!(peeked.len(), 2);
    assert_eq!(peeked[0].data["n"], json!(0));
    assert_eq!(peeked[1].data.get("_raw"), Some(&json!("not json")));
    assert_eq!(q.info().await?.length, 2);
    assert_eq!(dlq.info().await?.length, 0);
    // An undecodable entry can still be dead-lettered or deleted by id.
    assert_eq!(q.dead_letter(&[peeked[1].id], "inspected").await?, 1);
    let dead = dlq.peek(10).await?;
    assert_eq!(dead[0].data.get("_raw"), Some(&json!("not json")));
    assert_eq!(dead[0].failures()[0].reason, "inspected");
    // Requeued, it goes back as it was, its history beside it.
    assert_eq!(dlq.requeue_all().await?, 1);
    let back = q.peek(10).await?;
    assert_eq!(back[1].raw_data(), Some(&b"not json"[..]));
    assert_eq!(back[1].failures()[0].reason, "inspected");
    assert_eq!(back[1].data["_requeues"].as_array().map(Vec::len), Some(1));
    Ok(Outcome::Passed)
}

/// `receive_as` deserializes payloads straight into a type (one with
/// `deny_unknown_fields` too: `_metadata` is not handed to it) and keeps
/// the metadata; an entry that is not a JSON object, or an object that is
/// not of the type, goes to the DLQ with the reason; the rest come back in
/// id order. A DLQ cannot be read this way.
pub async fn receive_as_decodes_typed_and_dead_letters_the_rest(h: &Harness) -> CaseResult {
    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Order {
        n: u64,
        name: String,
    }
    let mq = h.eddy();
    let (q, dlq) = mq.create_queue_pair("typed").await?;
    q.send_with(
        &json!({"n": 1, "name": "a"}),
        &SendOptions::new()
            .message_id("m1")
            .ttl(std::time::Duration::from_secs(60)),
    )
    .await?;
    q.send(&json!({"n": "two", "name": "b"})).await?;
    h.engine()
        .append(&[Append::new(q.keys().clone(), Bytes::from_static(b"{nope"))])
        .await?;
    // Valid JSON the fast path does not take (leading whitespace): the
    // general path still returns it.
    h.engine()
        .append(&[Append::new(
            q.keys().clone(),
            Bytes::from_static(b" {\"name\": \"c\", \"n\": 3}"),
        )])
        .await?;
    q.send(&json!({"name": "d", "n": 4})).await?;

    let got = q.receive_as::<Order>(&take(10, "c")).await?;
    let payloads: Vec<(u64, &str)> = got
        .iter()
        .map(|m| (m.payload.n, m.payload.name.as_str()))
        .collect();
    assert_eq!(payloads, vec![(1, "a"), (3, "c"), (4, "d")]);
    assert!(got.windows(2).all(|w| w[0].id < w[1].id), "id order");
    assert_eq!(got[0].message_id, "m1");
    assert_eq!(got[0].ttl, Some(60));
    assert_eq!(got[0].delivery_count, 1);
    assert_recent(got[0].timestamp, 60.0);
    assert!(!got[2].message_id.is_empty());

    let info = q.info().await?;
    assert_eq!((info.length, info.pending), (3, 3), "the others moved out");
    let dead = dlq.peek(10).await?;
    let reasons: Vec<String> = dead
        .iter()
        .map(|m| m.failures()[0].reason.clone())
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("not valid JSON")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("Order")), "{reasons:?}");
    let mismatched = dead.iter().find(|m| m.data.get("n") == Some(&json!("two")));
    assert!(mismatched.is_some(), "kept whole: {dead:?}");

    q.ack(&got.iter().map(|m| m.id).collect::<Vec<_>>()).await?;
    assert_kind(
        dlq.receive_as::<Order>(&take(1, "c")).await,
        ErrorKind::InvalidArgument,
    );
    assert_kind(
        q.receive_as::<Order>(&take(0, "c")).await,
        ErrorKind::InvalidArgument,
    );
    Ok(Outcome::Passed)
}

/// A count past what Redis parses (a signed 64-bit integer) means "all",
/// on every engine, for peek and receive.
pub async fn counts_past_i64_mean_all(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let (q, _dlq) = mq.create_queue_pair("bigcount").await?;
    send_numbered(&q, 0..3).await?;
    assert_eq!(ns(&q.peek(usize::MAX).await?), vec![0, 1, 2]);
    assert_eq!(ns(&q.receive(&take(usize::MAX, "c")).await?), vec![0, 1, 2]);
    Ok(Outcome::Passed)
}
