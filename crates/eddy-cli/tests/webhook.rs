//! `eddy webhook send|listen|request` against a redis-server of the test's
//! own, with an eddy webhook service (the library) answering requests.

use std::process::Stdio;

use eddy::webhook::{Delivery, Webhook};
use eddy::Fail;
use eddy_testkit::RedisServer;
use serde_json::{json, Value};

/// `eddy --url URL ARGS...`: (exit status, stdout, stderr).
async fn eddy(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .arg("--url")
        .arg(url)
        .args(args)
        .env_remove("EDDY_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the eddy binary");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_then_listen() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let (code, out, err) = eddy(
        &url,
        &[
            "--json",
            "webhook",
            "send",
            "/order/status/",
            r#"{"order_id": 7}"#,
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let sent = &json_lines(&out)[0];
    assert_eq!(sent["path"], "/order/status");
    assert_eq!(sent["queue"], "order_status");
    // Under LeanMQ's webhook prefix by default.
    assert_eq!(
        server.redis_cli(["XLEN", "webhook:order_status"]).unwrap(),
        "1"
    );
    let (code, out, _) = eddy(
        &url,
        &["webhook", "send", "order/status", r#"{"order_id": 8}"#],
    )
    .await;
    assert_eq!(code, Some(0));
    assert!(out.trim().contains('-'), "a stream id: {out}");

    let (code, out, err) = eddy(
        &url,
        &[
            "--json",
            "webhook",
            "listen",
            "/order/status",
            "--count",
            "2",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    let got = json_lines(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["data"]["order_id"], 7);
    assert_eq!(got[1]["data"]["order_id"], 8);
    assert_eq!(got[0]["path"], "/order/status");
    assert_eq!(
        got[0]["data"]["_leanmq"]["webhook"]["path"],
        "/order/status"
    );
    assert_eq!(got[0]["delivery_count"], 1);
    // Acknowledged once printed.
    let webhook = Webhook::open(&url).await.unwrap();
    let info = webhook
        .queue("/order/status")
        .await
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!((info.pending, info.lag), (0, 0), "{info:?}");

    // Human output: one line per delivery.
    webhook
        .send("/order/status", &json!({"order_id": 9}))
        .await
        .unwrap();
    let (code, out, _) = eddy(
        &url,
        &["webhook", "listen", "/order/status", "--count", "1"],
    )
    .await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("/order/status") && out.contains(r#""order_id":9"#),
        "{out}"
    );

    // --prefix still applies.
    let (code, _, err) = eddy(&url, &["--prefix", "hooks:", "webhook", "send", "/x", "{}"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(server.redis_cli(["XLEN", "hooks:x"]).unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_gets_the_reply() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let service = Webhook::open(&url).await.unwrap();
    service
        .on("/order/status", |d: Delivery| async move {
            Ok(json!({"order_id": d.data()["order_id"], "status": "paid"}))
        })
        .unwrap();
    service
        .on("/order/create", |_d: Delivery| async {
            Err::<(), _>(Fail::reject("no items"))
        })
        .unwrap();
    let running = service.start().await.unwrap();

    let (code, out, err) = eddy(
        &url,
        &[
            "webhook",
            "request",
            "/order/status",
            r#"{"order_id": "o-1"}"#,
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap(),
        json!({"order_id": "o-1", "status": "paid"})
    );
    let (code, out, _) = eddy(
        &url,
        &[
            "--json",
            "webhook",
            "request",
            "order/status",
            r#"{"order_id": "o-2"}"#,
        ],
    )
    .await;
    assert_eq!(code, Some(0));
    assert_eq!(json_lines(&out)[0]["reply"]["order_id"], "o-2");

    let (code, out, err) = eddy(&url, &["webhook", "request", "/order/create", "{}"]).await;
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(
        err.starts_with("error: ") && err.contains("no items"),
        "{err}"
    );

    let (code, _, err) = eddy(
        &url,
        &["webhook", "request", "/nobody", "{}", "--timeout", "200ms"],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("no reply from /nobody within 200ms"), "{err}");

    let (code, _, err) = eddy(&url, &["webhook", "request", "/x", "[1]"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("JSON object"), "{err}");

    // Every request removed its reply queue.
    let keys = server.redis_cli(["KEYS", "webhook:reply_*"]).unwrap();
    assert!(keys.trim().is_empty(), "{keys}");
    running.stop().await.unwrap();
}
