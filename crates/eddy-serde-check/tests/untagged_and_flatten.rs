//! An application's own serde types still read floats once it depends on
//! eddy. serde_json's `arbitrary_precision` (which cargo turns on for every
//! crate of a build as soon as one dependency asks for it) makes serde
//! buffer a number as a private map, and an untagged enum or a flattened
//! map then no longer finds the `f64` in it (serde-rs/json#1108,
//! serde-rs/serde#2661). And `preserve_order` would change the order of
//! every `Map` the application builds.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
#[serde(untagged)]
enum Amount {
    Number(f64),
    Text(String),
}

#[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
struct Order {
    amount: Amount,
    #[serde(flatten)]
    prices: BTreeMap<String, f64>,
}

const TEXT: &str = r#"{"amount": 9.5, "a": 1.25, "b": -3.0}"#;

fn expected() -> Order {
    Order {
        amount: Amount::Number(9.5),
        prices: BTreeMap::from([("a".to_owned(), 1.25), ("b".to_owned(), -3.0)]),
    }
}

#[test]
fn untagged_and_flattened_floats_read_from_text() {
    let order: Result<Order, _> = serde_json::from_str(TEXT);
    assert_eq!(order.map_err(|e| e.to_string()), Ok(expected()));
    let text: Result<Amount, _> = serde_json::from_str(r#""ten""#);
    assert_eq!(
        text.map_err(|e| e.to_string()),
        Ok(Amount::Text("ten".into()))
    );
}

#[test]
fn untagged_and_flattened_floats_read_from_a_value() {
    let value: Value = json!({"amount": 9.5, "a": 1.25, "b": -3.0});
    let order: Result<Order, _> = serde_json::from_value(value);
    assert_eq!(order.map_err(|e| e.to_string()), Ok(expected()));
    let parsed: Result<Value, _> = serde_json::from_str(TEXT);
    let order = parsed.and_then(|v| Order::deserialize(&v));
    assert_eq!(order.map_err(|e| e.to_string()), Ok(expected()));
}

#[test]
fn maps_keep_serde_jsons_default_order() {
    // Without `preserve_order` a `Map` is sorted by key.
    let value: Result<Value, _> = serde_json::from_str(r#"{"b": 1, "a": 2}"#);
    assert_eq!(
        value.map(|v| v.to_string()).map_err(|e| e.to_string()),
        Ok(r#"{"a":2,"b":1}"#.to_owned())
    );
}

/// eddy itself reads such a type straight from a message's bytes.
#[tokio::test]
async fn eddy_reads_them_from_a_queue() -> eddy::Result<()> {
    let mq = eddy::Eddy::open("memory://").await?;
    let (q, _) = mq.create_queue_pair("orders").await?;
    q.send(&expected()).await?;
    let got = q.receive_as::<Order>(&eddy::Receive::new()).await?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, expected());
    let got = q.peek(1).await?;
    assert_eq!(got[0].payload::<Order>()?, expected());
    Ok(())
}
