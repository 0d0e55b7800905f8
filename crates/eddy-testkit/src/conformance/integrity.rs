//! Writes that must not build half a queue.

use bytes::Bytes;
use eddy::engine::Publish;
use eddy::ErrorKind;

use super::{assert_kind, ns, take, CaseResult, Harness, Outcome};

/// A fan-out to a route member whose queue does not exist (never created,
/// or deleted while the route stayed) fails with `StreamMissing` and
/// writes nothing: not the other subscribers' copies, not the log, and no
/// stream without a group for the missing one.
pub async fn publish_to_a_route_without_a_queue_writes_nothing(h: &Harness) -> CaseResult {
    let mq = h.eddy();
    let p = h.prefix();
    let (log, _) = mq.create_queue_pair("all").await?;
    let (a, _) = mq.create_queue_pair("sub:a").await?;
    let routes = format!("{p}routes:T");
    mq.engine()
        .set_add(&routes, &["a".to_owned(), "ghost".to_owned()])
        .await?;
    let data = Bytes::from_static(br#"{"n":0,"_metadata":{"id":"x","timestamp":1.0,"ttl":null}}"#);
    let publish = Publish::new(vec![routes], format!("{p}sub:"), data).log(format!("{p}all"));
    if h.capabilities().clustered {
        // A one-step fan-out cannot span a cluster's slots (the bus relays
        // there instead): refused before anything is written.
        assert_kind(mq.engine().publish(&publish).await, ErrorKind::CrossSlot);
        assert_kind(
            mq.engine()
                .publish_many(std::slice::from_ref(&publish))
                .await,
            ErrorKind::CrossSlot,
        );
        assert_eq!(a.info().await?.length, 0, "a subscriber got a copy");
        assert_eq!(log.info().await?.length, 0, "the log got the event");
        return Ok(Outcome::Passed);
    }
    assert_kind(
        mq.engine().publish(&publish).await,
        ErrorKind::StreamMissing,
    );
    assert_kind(
        mq.engine()
            .publish_many(std::slice::from_ref(&publish))
            .await,
        ErrorKind::StreamMissing,
    );
    assert_eq!(a.info().await?.length, 0, "a subscriber got a copy");
    assert_eq!(log.info().await?.length, 0, "the log got the event");
    let ghost = eddy::engine::KeyLayout::new(p)?.queue("sub:ghost")?;
    assert_kind(mq.engine().info(&ghost).await, ErrorKind::QueueNotFound);

    // Once the queue exists, the same publish reaches everyone.
    let (ghost, _) = mq.create_queue_pair("sub:ghost").await?;
    mq.engine().publish(&publish).await?;
    for q in [&a, &ghost, &log] {
        assert_eq!(
            ns(&q.receive(&take(10, "c")).await?),
            vec![0],
            "{}",
            q.name()
        );
    }
    Ok(Outcome::Passed)
}
