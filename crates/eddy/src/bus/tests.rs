//! Publishing: what an event's entry holds, and what a publish refuses.

use serde_json::{json, Value};

use super::{Bus, Envelope, Subscription};
use crate::{ErrorKind, Receive};

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Shipped {
    order_id: String,
    big: u64,
    total: f64,
}
crate::event!(Shipped);

#[derive(serde::Serialize, serde::Deserialize)]
struct Clash {
    source: String,
}
crate::event!(Clash);

async fn bus() -> Bus {
    match Bus::open("memory://").await {
        Ok(bus) => bus,
        Err(e) => panic!("open: {e}"),
    }
}

#[tokio::test]
async fn an_event_is_stored_as_its_flat_object_with_the_queues_metadata() -> crate::Result<()> {
    let bus = bus().await;
    let q = bus
        .subscribe("s", &Subscription::types(["Shipped"]))
        .await?;
    let ev = Shipped {
        order_id: "o-1 \"quoted\" ü".into(),
        big: u64::MAX,
        total: 25.5,
    };
    let sent = bus.publish(&ev).await?;
    let got = q.receive(&Receive::new()).await?;
    let raw = got[0].raw_data().unwrap_or_default();
    let stored: Value = serde_json::from_slice(raw)?;
    assert_eq!(stored["event_id"], json!(sent.event_id));
    assert_eq!(stored["event_type"], "Shipped");
    assert_eq!(stored["big"], json!(u64::MAX));
    assert_eq!(stored["_metadata"]["id"], json!(sent.event_id));
    assert!(
        raw.starts_with(
            format!(
                r#"{{"event_id":"{}","event_type":"Shipped","#,
                sent.event_id
            )
            .as_bytes()
        ),
        "{}",
        String::from_utf8_lossy(raw)
    );
    // The event's fields as the struct serializes them, straight after
    // the head, then the queue's metadata.
    let text = String::from_utf8_lossy(raw);
    let fields =
        r#","order_id":"o-1 \"quoted\" ü","big":18446744073709551615,"total":25.5,"_metadata":{"#;
    assert!(text.contains(fields), "{text}");
    let env = Envelope::from_message(&got[0])?;
    assert_eq!(env.decode::<Shipped>()?, ev);

    // The envelope's extras that are set follow the event's fields.
    let sent = bus.publish_as("shipping", &ev).await?;
    let got = q.receive(&Receive::new()).await?;
    let text = String::from_utf8_lossy(got[0].raw_data().unwrap_or_default()).into_owned();
    let extras = format!(
        r#""total":25.5,"source":"shipping","correlation_id":"{}","traceparent":"00-"#,
        sent.event_id
    );
    assert!(text.contains(&extras), "{text}");
    let env = Envelope::from_message(&got[0])?;
    assert_eq!(env.source.as_deref(), Some("shipping"));
    assert_eq!(env.causation_id, None);
    let mut again = env.clone();
    again.causation_id = Some("c".into());
    bus.publish_envelope(&again).await?;
    let got = q.receive(&Receive::new()).await?;
    assert_eq!(Envelope::from_message(&got[0])?, again);
    Ok(())
}

#[tokio::test]
async fn an_event_field_named_like_the_envelopes_is_refused() -> crate::Result<()> {
    let bus = bus().await;
    let r = bus.publish(&Clash { source: "x".into() }).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
    let mut env = Envelope::from_parts("Shipped", serde_json::Map::new())?;
    env.data.insert("event_id".into(), json!("mine"));
    let r = bus.publish_envelope(&env).await;
    assert_eq!(r.err().map(|e| e.kind()), Some(ErrorKind::InvalidArgument));
    env.data.clear();
    env.event_type = "bad type!".into();
    assert!(bus.publish_envelope(&env).await.is_err());
    Ok(())
}
