//! The dashboard's router called in this process, on the embedded engine
//! and on a redis-server of its own: the same answers on both.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use eddy::bus::{Bus, Subscription};
use eddy::{Eddy, Receive};
use eddy_testkit::RedisServer;

use super::Dashboard;

const TOKEN: &str = "t0ken";

/// `orders` with 3 messages, 2 of them dead-lettered (card declined,
/// timeout) after a delivery to `worker-1`; `emails` with 2 messages, 1 of
/// them pending at `mailer`; a route of `order.paid` to shipping-service
/// and one of every type to audit-service.
async fn fill(mq: &Eddy) {
    let (orders, _) = mq.create_queue_pair("orders").await.unwrap();
    for i in 0..3 {
        orders.send(&json!({ "order": i })).await.unwrap();
    }
    let got = orders
        .receive(&Receive::new().count(2).consumer("worker-1"))
        .await
        .unwrap();
    orders
        .dead_letter(&[got[0].id], "PaymentError: card declined")
        .await
        .unwrap();
    orders
        .dead_letter(&[got[1].id], "Timeout: carrier did not answer")
        .await
        .unwrap();
    let (emails, _) = mq.create_queue_pair("emails").await.unwrap();
    emails
        .send(&json!({ "to": "ada@example.com" }))
        .await
        .unwrap();
    emails
        .send(&json!({ "to": "bob@example.com" }))
        .await
        .unwrap();
    emails
        .receive(&Receive::new().count(1).consumer("mailer"))
        .await
        .unwrap();
    let bus = Bus::with_engine(mq.engine().clone()).await.unwrap();
    bus.subscribe("shipping-service", &Subscription::types(["order.paid"]))
        .await
        .unwrap();
    bus.subscribe("audit-service", &Subscription::All)
        .await
        .unwrap();
}

/// A request to the router; the status and the JSON body.
async fn call(
    d: &Dashboard,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| *k == "host") {
        req = req.header("host", "127.0.0.1:9470");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = d
        .router()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn get(d: &Dashboard, path: &str) -> Value {
    let (status, body) = call(d, "GET", path, &[], "").await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

const JSON: (&str, &str) = ("content-type", "application/json");
const BEARER: (&str, &str) = ("authorization", "Bearer t0ken");

/// (ready, unacked, dead-lettered) of each queue in `/api/queues`.
async fn counts(d: &Dashboard) -> Vec<(String, u64, u64, u64)> {
    get(d, "/api/queues").await["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["ready"].as_u64().unwrap(),
                q["unacked"].as_u64().unwrap(),
                q["dead_lettered"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn the_api_answers(mq: Eddy) {
    fill(&mq).await;
    let d = Dashboard::new(mq.clone(), Some(TOKEN), true).unwrap();
    assert_eq!(
        counts(&d).await,
        [("emails".into(), 1, 1, 0), ("orders".into(), 1, 0, 2)]
    );

    let detail = get(&d, "/api/queues/emails").await;
    assert_eq!(detail["queue"]["consumers"][0]["name"], "mailer");
    assert_eq!(detail["queue"]["consumers"][0]["pending"], 1);
    assert_eq!(detail["dlq"]["length"], 0);

    let dlq = get(&d, "/api/queues/orders/dlq").await;
    assert_eq!(dlq["length"], 2);
    let messages = dlq["messages"].as_array().unwrap();
    assert_eq!(messages[0]["reason"], "PaymentError: card declined");
    assert_eq!(messages[0]["data"], json!({ "order": 0 }));
    assert_eq!(
        messages[1]["failures"][0]["reason"],
        "Timeout: carrier did not answer"
    );
    let first = messages[0]["id"].as_str().unwrap().to_owned();

    let paged = get(&d, "/api/queues/orders/dlq?count=1").await;
    assert_eq!(paged["messages"].as_array().unwrap().len(), 1);
    assert!(paged["next"].is_string());

    // Stream ids are per stream: another queue may hold the same one.
    let found = get(&d, &format!("/api/messages/{first}")).await;
    let found = found["found"].as_array().unwrap();
    assert!(
        found.iter().any(|f| f["queue"] == "orders"
            && f["in_dlq"] == true
            && f["message"]["data"] == json!({ "order": 0 })),
        "{found:?}"
    );
    let only = get(&d, &format!("/api/messages/{first}?queue=orders")).await;
    assert_eq!(only["found"].as_array().unwrap().len(), 1);
    let (status, _) = call(&d, "GET", "/api/messages/1-1", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The sender's message id: a scan of each stream.
    let message_id = messages[1]["message_id"].as_str().unwrap().to_owned();
    let by_message_id = get(&d, &format!("/api/messages/{message_id}")).await;
    let by_message_id = by_message_id["found"].as_array().unwrap();
    assert_eq!(by_message_id.len(), 1, "{by_message_id:?}");
    assert_eq!(by_message_id[0]["queue"], "orders");
    assert_eq!(by_message_id[0]["in_dlq"], true);
    assert_eq!(by_message_id[0]["message"]["id"], messages[1]["id"]);
    let (status, _) = call(&d, "GET", "/api/messages/nonsense", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no message has that id");
    let (status, _) = call(&d, "GET", "/api/queues/nope", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(
        get(&d, "/api/routes").await["routes"],
        json!([
            { "event_type": "*", "services": ["audit-service"] },
            { "event_type": "order.paid", "services": ["shipping-service"] },
        ])
    );

    d.sample().await.unwrap();
    let series = get(&d, "/api/throughput?queue=orders").await;
    assert_eq!(series["points"][0]["dead_lettered"], 2);
    assert_eq!(get(&d, "/api/throughput").await["points"][0]["ready"], 2);
    assert_eq!(get(&d, "/api/throughput").await["rates"], json!([]));

    // A known workload between two samples: 4 sent to `orders`, 3
    // delivered (its one ready message and 2 new), 2 of them acknowledged.
    let orders = mq.queue("orders").await.unwrap();
    for i in 10..14 {
        orders.send(&json!({ "order": i })).await.unwrap();
    }
    let got = orders
        .receive(&Receive::new().count(3).consumer("worker-2"))
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    orders.ack(&[got[0].id, got[1].id]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    d.sample().await.unwrap();
    for path in ["/api/throughput?queue=orders", "/api/throughput"] {
        let series = get(&d, path).await;
        let points = series["points"].as_array().unwrap();
        let secs =
            (points[1]["t"].as_u64().unwrap() - points[0]["t"].as_u64().unwrap()) as f64 / 1000.0;
        let rates = series["rates"].as_array().unwrap();
        assert_eq!(rates.len(), 1, "{path}: {series}");
        assert_eq!(rates[0]["t"], points[1]["t"]);
        let per_interval = |k: &str| rates[0][k].as_f64().unwrap() * secs;
        assert!(
            (per_interval("sent_per_s") - 4.0).abs() < 1e-6,
            "{path}: {series}"
        );
        assert!(
            (per_interval("settled_per_s") - 2.0).abs() < 1e-6,
            "{path}: {series}"
        );
    }
    let emails = get(&d, "/api/throughput?queue=emails").await;
    assert_eq!(emails["rates"][0]["sent_per_s"], 0.0);
    // Back to `orders` as `fill` left it: one ready, none pending.
    orders.ack(&[got[2].id]).await.unwrap();
    let more = orders
        .receive(&Receive::new().count(1).consumer("worker-2"))
        .await
        .unwrap();
    orders.ack(&[more[0].id]).await.unwrap();

    let (status, text) = call(&d, "GET", "/metrics", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.as_str().unwrap().contains("orders"), "{text}");

    // The guard, then the actions.
    let path = "/api/queues/orders/dlq/requeue";
    let one = json!({ "ids": [first] }).to_string();
    let (status, _) = call(&d, "POST", path, &[JSON], &one).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong = ("x-eddy-token", "t0keN");
    let (status, _) = call(&d, "POST", path, &[JSON, wrong], &one).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let form = ("content-type", "application/x-www-form-urlencoded");
    let (status, _) = call(&d, "POST", path, &[form, BEARER], "ids=1").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let foreign = ("origin", "http://evil.example");
    let (status, _) = call(&d, "POST", path, &[JSON, BEARER, foreign], &one).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&d, "GET", "/api/queues", &[("host", "evil.example")], "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(counts(&d).await[1], ("orders".into(), 1, 0, 2));

    let own = ("origin", "http://127.0.0.1:9470");
    let (status, body) = call(&d, "POST", path, &[JSON, BEARER, own], &one).await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "requeued": 1 })));
    assert_eq!(counts(&d).await[1], ("orders".into(), 2, 0, 1));

    let by_reason = "/api/queues/orders/dlq/requeue-reason";
    let (status, body) = call(
        &d,
        "POST",
        by_reason,
        &[JSON, BEARER],
        r#"{"reason":"Payment"}"#,
    )
    .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "requeued": 0 })));
    let (status, body) = call(
        &d,
        "POST",
        by_reason,
        &[JSON, BEARER],
        r#"{"reason":"Timeout"}"#,
    )
    .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "requeued": 1 })));
    assert_eq!(counts(&d).await[1], ("orders".into(), 3, 0, 0));

    let peeked = mq.queue("emails").await.unwrap().peek(1).await.unwrap();
    let delete = json!({ "ids": [peeked[0].id.to_string()] }).to_string();
    let (status, body) = call(
        &d,
        "POST",
        "/api/queues/emails/delete",
        &[JSON, BEARER],
        &delete,
    )
    .await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({ "deleted": 1 })));
    assert_eq!(counts(&d).await[0], ("emails".into(), 1, 0, 0));

    // Read-only: every action refused, with what to do.
    let read_only = Dashboard::new(mq, None, true).unwrap();
    let (status, body) = call(
        &read_only,
        "POST",
        "/api/queues/orders/dlq/requeue-all",
        &[JSON, BEARER],
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("--token"),
        "{body}"
    );
}

#[tokio::test]
async fn the_api_answers_on_the_embedded_engine() {
    the_api_answers(Eddy::open("memory://").await.unwrap()).await;
}

#[tokio::test]
async fn the_api_answers_on_redis() {
    let server = RedisServer::start().unwrap();
    the_api_answers(Eddy::open(&server.url()).await.unwrap()).await;
}

#[tokio::test]
async fn serves_the_page_with_its_files() {
    let d = Dashboard::new(Eddy::open("memory://").await.unwrap(), None, true).unwrap();
    for (path, needle) in [
        ("/", "<canvas"),
        ("/", "Throughput, last 10 minutes"),
        ("/app.js", "fetch("),
        ("/style.css", "table"),
    ] {
        let (status, body) = call(&d, "GET", path, &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.as_str().unwrap().contains(needle), "{path}");
    }
}
