//! The embedded engine's bounded history (`memory://?history=…`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;

use super::MemoryEngine;
use crate::engine::{Engine, Publish};
use crate::error::ErrorKind;
use crate::{Eddy, EddyBuilder, EntryId, Queue, Receive, SendOptions};

fn open(engine: &Arc<MemoryEngine>) -> Eddy {
    let shared: crate::engine::SharedEngine = engine.clone();
    match EddyBuilder::new("memory://").with_engine(shared) {
        Ok(mq) => mq,
        Err(e) => panic!("open: {e}"),
    }
}

/// An engine keeping no history, and its queue `orders` holding `n`
/// messages `{"n": 0..n}`.
async fn orders_with(n: u64) -> (Eddy, Queue) {
    let engine = Arc::new(MemoryEngine::with_history(Duration::ZERO));
    let mq = open(&engine);
    let (q, _) = mq
        .create_queue_pair("orders")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for n in 0..n {
        q.send(&json!({ "n": n }))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    (mq, q)
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

#[test]
fn urls_name_the_history_window() {
    for (url, described) in [
        ("memory://", "memory://"),
        ("memory:///", "memory://"),
        ("memory://?history=0s", "memory://?history=0ms"),
        ("memory:///?history=500ms", "memory://?history=500ms"),
        ("memory://?history=1m", "memory://?history=60000ms"),
        ("memory://?history=1s 500ms", "memory://?history=1500ms"),
    ] {
        let engine = MemoryEngine::from_url(url).map(|e| e.describe());
        assert_eq!(engine.ok().as_deref(), Some(described), "{url}");
    }
    for url in [
        "memory://host",
        "memory:///path",
        "memory://?history=soon",
        "memory://?history=",
        "memory://?keep=1s",
        "memory://?pass=SECRET",
        "memory://?auth=SECRET&history=1s",
        "memory://u:SECRET@",
        "memory:/",
    ] {
        let err = MemoryEngine::from_url(url).map(|e| e.describe());
        assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
        assert_eq!(
            err.as_ref().err().map(|e| e.kind()),
            Some(ErrorKind::InvalidUrl),
            "{url}: {err:?}"
        );
    }
}

#[tokio::test]
async fn acknowledged_entries_leave_oldest_first_and_only_when_all_before_them_are_done() {
    let (_, q) = orders_with(5).await;
    let ids = receive(&q, 3).await;
    assert_eq!(ids.len(), 3);
    // The second is still pending: only the first can go.
    assert_eq!(q.ack(&[ids[0], ids[2]]).await.ok(), Some(2));
    assert_eq!(length(&q).await, 4);
    // Now the first three are acknowledged; the two never read stay.
    assert_eq!(q.ack(&[ids[1]]).await.ok(), Some(1));
    assert_eq!(length(&q).await, 2);
    let rest = receive(&q, 10).await;
    assert_eq!(rest.len(), 2);
    assert_eq!(
        length(&q).await,
        2,
        "delivered but unacknowledged entries stay"
    );
    assert_eq!(q.ack(&rest).await.ok(), Some(2));
    assert_eq!(length(&q).await, 0);
    assert!(q.peek(10).await.unwrap_or_default().is_empty());
    // The queue still works, and its ids keep growing.
    let next = q
        .send(&json!({ "n": 5 }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(next > rest[1]);
    assert_eq!(receive(&q, 10).await, [next]);
}

#[tokio::test]
async fn dead_lettered_and_deleted_entries_let_history_go() {
    let (mq, q) = orders_with(3).await;
    let ids = receive(&q, 3).await;
    // The oldest, pending, holds back the acknowledged ones after it …
    assert_eq!(q.ack(&ids[1..]).await.ok(), Some(2));
    assert_eq!(length(&q).await, 3);
    // … until it is dead-lettered: it moves, and everything goes.
    assert_eq!(q.dead_letter(&ids[..1], "bad").await.ok(), Some(1));
    assert_eq!(length(&q).await, 0);
    let dlq = mq
        .dead_letter_queue("orders")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(length(&dlq).await, 1, "the dead letter itself is kept");
    let more = q
        .send(&json!({ "n": 3 }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let later = q
        .send(&json!({ "n": 4 }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = receive(&q, 2).await;
    assert_eq!(read, [more, later]);
    assert_eq!(q.ack(&[later]).await.ok(), Some(1));
    assert_eq!(q.delete(&[more]).await.ok(), Some(1));
    assert_eq!(length(&q).await, 0);
}

#[tokio::test]
async fn entries_with_a_ttl_leave_the_expiry_index_too() {
    let engine = Arc::new(MemoryEngine::with_history(Duration::ZERO));
    let mq = open(&engine);
    let (q, _) = mq
        .create_queue_pair("orders")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let opts = SendOptions::new().ttl(Duration::from_secs(60));
    q.send_with(&json!({ "n": 1 }), &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids = receive(&q, 1).await;
    assert!(!engine.lock().expiry.is_empty());
    assert_eq!(q.ack(&ids).await.ok(), Some(1));
    assert_eq!(length(&q).await, 0);
    assert!(
        engine.lock().expiry.is_empty(),
        "no TTL left for a gone entry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_window_keeps_recent_history() {
    let engine = Arc::new(MemoryEngine::with_history(Duration::from_secs(60)));
    let mq = open(&engine);
    let (q, _) = mq
        .create_queue_pair("orders")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    q.send(&json!({ "n": 1 }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = receive(&q, 1).await;
    assert_eq!(q.ack(&first).await.ok(), Some(1));
    assert_eq!(length(&q).await, 1, "younger than the window: kept");
    tokio::time::advance(Duration::from_secs(61)).await;
    q.send(&json!({ "n": 2 }))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = receive(&q, 1).await;
    assert_eq!(q.ack(&second).await.ok(), Some(1));
    assert_eq!(length(&q).await, 1, "the old one went, the new one stays");
    assert_eq!(
        q.peek(10)
            .await
            .unwrap_or_default()
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        second
    );
}

#[tokio::test]
async fn the_event_log_keeps_the_window_as_it_grows() {
    // The bus creates its log before publishing; a publish to a missing log fails.
    async fn create(engine: &MemoryEngine) {
        let layout = crate::engine::KeyLayout::new("events:").unwrap_or_else(|e| panic!("{e}"));
        let log = layout.queue("all").unwrap_or_else(|e| panic!("{e}"));
        let dlq = layout.dlq("all").unwrap_or_else(|e| panic!("{e}"));
        engine
            .create_queue(&log, &dlq, &layout.registry())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // The bus creates its log before publishing; a publish to a missing log fails.
    let engine = MemoryEngine::with_history(Duration::ZERO);
    let mut publish = Publish::new(Vec::new(), "t:", Bytes::from_static(b"{}"));
    publish.log = Some("events:all".to_owned());
    let missing = engine.publish(&publish).await.map_err(|e| e.kind());
    assert_eq!(missing.err(), Some(ErrorKind::StreamMissing));
    create(&engine).await;
    for _ in 0..100 {
        engine
            .publish(&publish)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let kept = engine
        .lock()
        .streams
        .get("events:all")
        .map(|s| s.entries.len());
    assert_eq!(kept, Some(0), "a zero window keeps no history at all");

    let unbounded = MemoryEngine::new();
    create(&unbounded).await;
    for _ in 0..100 {
        unbounded
            .publish(&publish)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let kept = unbounded
        .lock()
        .streams
        .get("events:all")
        .map(|s| s.entries.len());
    assert_eq!(kept, Some(100));
}
